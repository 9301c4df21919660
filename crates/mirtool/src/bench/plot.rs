//! `bench plot`: latency percentiles (p50 … max) of every relay run in a
//! results file, one line per target, log-scaled microseconds, as SVG.

use std::path::PathBuf;

use plotters::prelude::*;

use super::report::{Latency, Report};
use super::table::Results;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Results file written by `bench/compare` (or one `bench relay --json` report).
    #[arg(long)]
    pub input: PathBuf,
    /// SVG file to write.
    #[arg(long)]
    pub output: PathBuf,
}

const PERCENTILES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];
const COLORS: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

fn points(l: &Latency) -> [u64; 5] {
    [l.p50, l.p90, l.p99, l.p999, l.max].map(|v| v.max(1))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.input.display()))?;
    let series = load_series(&text)?;
    anyhow::ensure!(
        !series.is_empty(),
        "{} holds no relay runs",
        args.input.display()
    );
    draw(&series, &args.output)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// (legend, percentiles) for every run; accepts a results file or a single report.
fn load_series(text: &str) -> anyhow::Result<Vec<(String, [u64; 5])>> {
    if let Ok(results) = serde_json::from_str::<Results>(text) {
        if !results.relay.is_empty() || !results.relay_half.is_empty() {
            let mut out: Vec<_> = results
                .relay
                .iter()
                .map(|r| {
                    (
                        format!("{} {} (peak)", r.report.target_label, r.report.clients),
                        points(&r.report.latency_us),
                    )
                })
                .collect();
            out.extend(results.relay_half.iter().map(|r| {
                (
                    format!("{} {} (half rate)", r.report.target_label, r.report.clients),
                    points(&r.report.latency_us),
                )
            }));
            return Ok(out);
        }
    }
    let report: Report = serde_json::from_str(text)?;
    Ok(vec![(
        report.target_label.clone(),
        points(&report.latency_us),
    )])
}

fn draw(series: &[(String, [u64; 5])], output: &std::path::Path) -> anyhow::Result<()> {
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .max()
        .unwrap_or(1)
        .max(10) as f64
        * 2.0;
    let root = SVGBackend::new(output, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Relay latency percentiles", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.2f64..4.2f64, (1f64..top).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && (0.0..5.0).contains(&i) {
                PERCENTILES
                    .get(i as usize)
                    .copied()
                    .unwrap_or("")
                    .to_string()
            } else {
                String::new()
            }
        })
        .y_desc("latency (µs, log scale)")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // One colour per target, so its peak (thick) and half-rate (thin) lines pair up.
    let mut targets: Vec<&str> = Vec::new();
    for (name, pts) in series {
        let target = name.split(' ').next().unwrap_or(name);
        let index = targets
            .iter()
            .position(|t| *t == target)
            .unwrap_or_else(|| {
                targets.push(target);
                targets.len() - 1
            });
        let color = COLORS[index % COLORS.len()];
        let style = if name.contains("half") {
            color.stroke_width(1)
        } else {
            color.stroke_width(3)
        };
        chart
            .draw_series(LineSeries::new(
                pts.iter().enumerate().map(|(x, &y)| (x as f64, y as f64)),
                style,
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
