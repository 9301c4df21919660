//! The soak as an SVG: gate RSS on top, descriptors and live sessions below,
//! over minutes, with each link drop marked.

use std::path::Path;

use plotters::prelude::*;

use super::SoakResult;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub fn draw(r: &SoakResult, output: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(output, (900, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(350);
    let minutes = |t: f64| t / 60.0;
    let x_max = r.samples.last().map_or(1.0, |s| minutes(s.t)).max(0.1);
    // A link drop lies between the last sample before it and the first after.
    let drops: Vec<f64> = r
        .samples
        .windows(2)
        .filter(|w| w[1].backend.link_kills > w[0].backend.link_kills)
        .map(|w| minutes(w[1].t))
        .collect();

    let rss: Vec<(f64, f64)> = r
        .samples
        .iter()
        .map(|s| (minutes(s.t), s.rss_kib as f64 / 1024.0))
        .collect();
    let rss_max = rss.iter().map(|p| p.1).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&top)
        .caption("logingate RSS under soak", ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..rss_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("VmRSS MiB")
        .draw()
        .map_err(err)?;
    for &x in &drops {
        chart
            .draw_series(LineSeries::new(
                [(x, 0.0), (x, rss_max)],
                RGBColor(200, 200, 200),
            ))
            .map_err(err)?;
    }
    let plateau = r.rss.plateau / 1024.0;
    let band = RED.mix(0.4);
    for level in [
        plateau * (1.0 - r.plan.tolerance),
        plateau * (1.0 + r.plan.tolerance),
    ] {
        chart
            .draw_series(LineSeries::new([(0.0, level), (x_max, level)], band))
            .map_err(err)?;
    }
    chart
        .draw_series(LineSeries::new(rss, BLUE.stroke_width(2)))
        .map_err(err)?
        .label("RSS")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;

    let fds: Vec<(f64, f64)> = r
        .samples
        .iter()
        .map(|s| (minutes(s.t), s.fds as f64))
        .collect();
    let sessions: Vec<(f64, f64)> = r
        .samples
        .iter()
        .filter_map(|s| s.sessions.map(|n| (minutes(s.t), n as f64)))
        .collect();
    let y_max = fds.iter().chain(&sessions).map(|p| p.1).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("descriptors and live sessions", ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("minutes (grey: link dropped)")
        .draw()
        .map_err(err)?;
    for &x in &drops {
        chart
            .draw_series(LineSeries::new(
                [(x, 0.0), (x, y_max)],
                RGBColor(200, 200, 200),
            ))
            .map_err(err)?;
    }
    chart
        .draw_series(LineSeries::new(fds, GREEN.stroke_width(2)))
        .map_err(err)?
        .label("gate fds")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(sessions, MAGENTA.stroke_width(1)))
        .map_err(err)?
        .label("live sessions")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA.stroke_width(1)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
