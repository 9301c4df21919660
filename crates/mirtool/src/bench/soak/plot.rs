//! The soak as an SVG: gate RSS on top, descriptors and live sessions below,
//! over minutes, with each link drop marked.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::SoakResult;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A panel from 0 to `x_max` minutes and 0 to `y_max`, its mesh drawn ("" = no y label).
fn panel<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    (x_max, y_max): (f64, f64),
) -> anyhow::Result<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_desc);
    if !y_desc.is_empty() {
        mesh.y_desc(y_desc);
    }
    mesh.draw().map_err(err)?;
    Ok(chart)
}

/// A grey vertical line at each link drop.
fn mark_drops(chart: &mut Chart<'_, '_>, drops: &[f64], y_max: f64) -> anyhow::Result<()> {
    for &x in drops {
        chart
            .draw_series(LineSeries::new(
                [(x, 0.0), (x, y_max)],
                RGBColor(200, 200, 200),
            ))
            .map_err(err)?;
    }
    Ok(())
}

/// One labelled series.
fn line(
    chart: &mut Chart<'_, '_>,
    points: Vec<(f64, f64)>,
    style: ShapeStyle,
    label: &str,
) -> anyhow::Result<()> {
    chart
        .draw_series(LineSeries::new(points, style))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    Ok(())
}

/// The legend of the series drawn so far.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)
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
    let mut chart = panel(
        &top,
        "logingate RSS under soak",
        "minutes",
        "VmRSS MiB",
        (x_max, rss_max),
    )?;
    mark_drops(&mut chart, &drops, rss_max)?;
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
    line(&mut chart, rss, BLUE.stroke_width(2), "RSS")?;
    legend(&mut chart)?;

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
    let mut chart = panel(
        &bottom,
        "descriptors and live sessions",
        "minutes (grey: link dropped)",
        "",
        (x_max, y_max),
    )?;
    mark_drops(&mut chart, &drops, y_max)?;
    line(&mut chart, fds, GREEN.stroke_width(2), "gate fds")?;
    line(
        &mut chart,
        sessions,
        MAGENTA.stroke_width(1),
        "live sessions",
    )?;
    legend(&mut chart)?;
    root.present().map_err(err)?;
    Ok(())
}
