//! The Prometheus recorder behind the `metrics` facade: installed once per
//! process (the first console to start installs it), rendered on
//! `GET /metrics`.
//!
//! Metric handles bind to the recorder present when they are created, so a
//! program installs it before it builds anything that registers counters.
//! Histograms whose name ends in `_seconds` get real buckets (not
//! summaries), so Prometheus can aggregate them across instances.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds of every `*_seconds` histogram: 100 µs to 10 s, covering a
/// heartbeat round trip on loopback as well as a database query under load.
pub const SECONDS_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// How often histogram storage is compacted even when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// `None` when another recorder was installed first (then there is nothing to render).
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the recorder if no recorder is installed yet; true when ours is
/// the process's recorder.
pub fn install() -> bool {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    let upkeep = handle.clone();
                    let spawned = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || loop {
                            std::thread::sleep(UPKEEP_EVERY);
                            upkeep.run_upkeep();
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "metrics: no upkeep thread; histograms compact on scrape only");
                    }
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: another recorder is installed; /metrics stays empty");
                    None
                }
            }
        })
        .is_some()
}

/// The exposition text of every metric so far ("" without our recorder).
pub fn render() -> String {
    match HANDLE.get() {
        Some(Some(handle)) => handle.render(),
        _ => String::new(),
    }
}

/// Kind of a described metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution; the name ends in its unit (`_seconds`).
    Histogram,
}

/// One metric a program emits: what `# HELP` says and the crate README lists.
#[derive(Debug, Clone, Copy)]
pub struct Described {
    /// Full metric name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Labels it carries (for the README), "" for none.
    pub labels: &'static str,
    /// One line for `# HELP`.
    pub help: &'static str,
}

/// A [`Described`] in one line, for the tables of metrics each program keeps.
pub const fn described(
    name: &'static str,
    kind: Kind,
    labels: &'static str,
    help: &'static str,
) -> Described {
    Described {
        name,
        kind,
        labels,
        help,
    }
}

/// Register the descriptions with the recorder (HELP lines; promtool wants one per metric).
pub fn describe(list: &[Described]) {
    for d in list {
        let unit = if d.name.ends_with("_seconds") {
            Some(Unit::Seconds)
        } else if d.name.ends_with("_bytes") || d.name.ends_with("_bytes_total") {
            Some(Unit::Bytes)
        } else {
            None
        };
        match (d.kind, unit) {
            (Kind::Counter, Some(u)) => metrics::describe_counter!(d.name, u, d.help),
            (Kind::Counter, None) => metrics::describe_counter!(d.name, d.help),
            (Kind::Gauge, Some(u)) => metrics::describe_gauge!(d.name, u, d.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(d.name, d.help),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(d.name, u, d.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(d.name, d.help),
        }
    }
}

/// Whether `list` follows the Prometheus naming rules this workspace keeps:
/// snake case, counters end in `_total`, histograms in `_seconds`. Returns
/// the first offender.
pub fn check_names(list: &[Described]) -> Result<(), String> {
    for d in list {
        let snake = d
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let suffix_ok = match d.kind {
            Kind::Counter => d.name.ends_with("_total"),
            Kind::Gauge => !d.name.ends_with("_total"),
            Kind::Histogram => d.name.ends_with("_seconds"),
        };
        if !snake || !suffix_ok || d.help.is_empty() {
            return Err(d.name.to_owned());
        }
    }
    Ok(())
}

/// `GET /metrics`: the exposition text with its content type.
pub async fn scrape() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    )
        .into_response()
}
