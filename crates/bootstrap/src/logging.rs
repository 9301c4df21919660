//! Log output: one line per event on stderr, as text for people or JSON for
//! collectors, filtered by the configured filter, else `RUST_LOG`, else `info`.
//! The filter can be replaced while the program runs ([`LogControl`]).

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Install the global subscriber. Colour codes only when stderr is a
/// terminal, so log files stay plain text.
pub fn init(format: LogFormat) {
    init_with(format, "");
}

/// Replaces the filter of the installed subscriber (a configuration reload).
pub struct LogControl {
    /// The reload handle, typed by the formatter chosen at start.
    set: Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl").finish_non_exhaustive()
    }
}

impl LogControl {
    /// A control that changes nothing (no subscriber of ours is installed).
    pub fn detached() -> Self {
        LogControl {
            set: Box::new(|_| Ok(())),
        }
    }

    /// Puts `filter` ("" = `RUST_LOG`, else `info`) in force for every later event.
    pub fn set_filter(&self, filter: &str) -> Result<(), String> {
        (self.set)(filter_of(filter)?)
    }
}

/// Checks a filter directive (`info`, `logingate=debug,netcore=warn`) without installing it.
pub fn check_filter(filter: &str) -> Result<(), String> {
    filter_of(filter).map(drop)
}

fn filter_of(filter: &str) -> Result<EnvFilter, String> {
    if filter.trim().is_empty() {
        return Ok(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    }
    EnvFilter::try_new(filter.trim()).map_err(|e| format!("not a log filter: {e}"))
}

/// [`init`] with `filter` ("" = `RUST_LOG`, else `info`; an invalid one falls back to
/// that too, after a line on stderr); the returned control replaces it later.
pub fn init_with(format: LogFormat, filter: &str) -> LogControl {
    let filter = filter_of(filter).unwrap_or_else(|e| {
        eprintln!("{e}; using RUST_LOG or info");
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr (a pipe whose reader died) must not panic the task that logs.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    let (installed, control) = match format {
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            let set = move |f| handle.reload(f).map_err(|e| e.to_string());
            (builder.try_init(), LogControl { set: Box::new(set) })
        }
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            let set = move |f| handle.reload(f).map_err(|e| e.to_string());
            (builder.try_init(), LogControl { set: Box::new(set) })
        }
    };
    if let Err(e) = installed {
        eprintln!("logging already initialised: {e}");
        return LogControl::detached();
    }
    control
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(f.to_string().parse::<LogFormat>().unwrap(), f);
        }
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn filters_are_checked() {
        check_filter("").unwrap();
        check_filter("info,netcore=debug").unwrap();
        assert!(check_filter("netcore=loud").is_err());
    }
}
