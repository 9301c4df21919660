//! Log output: one line per event on stderr, as text for people or JSON for
//! collectors, filtered by the configured filter, else `RUST_LOG`, else `info`,
//! stamped in UTC or in local time with its offset. The filter can be replaced
//! while the program runs ([`LogControl`]).

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use time::format_description::well_known::Rfc3339;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, OffsetTime, SystemTime};
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

/// The clock of the log lines (`log_timestamps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTimestamps {
    /// RFC 3339 in UTC (`…Z`).
    #[default]
    Utc,
    /// RFC 3339 in the host's local time with its offset (`…+08:00`), the offset
    /// read once at start-up.
    Local,
}

impl fmt::Display for LogTimestamps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogTimestamps::Utc => "utc",
            LogTimestamps::Local => "local",
        })
    }
}

/// The timer of every line: one type for both clocks, so the subscriber is built once.
enum Clock {
    /// UTC, as tracing writes it by default.
    Utc(SystemTime),
    /// A fixed offset read at start-up.
    Local(OffsetTime<Rfc3339>),
}

impl FormatTime for Clock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        match self {
            Clock::Utc(t) => t.format_time(w),
            Clock::Local(t) => t.format_time(w),
        }
    }
}

/// The clock for `timestamps`, and a warning when the local offset cannot be read.
///
/// The offset is read once: reading it from a process with several threads is
/// refused by `time` (the C library's time zone state is not thread-safe), so this
/// runs before the runtime starts, and a host whose zone changes (daylight saving)
/// shows the new offset after a restart.
fn clock(timestamps: LogTimestamps) -> (Clock, Option<String>) {
    match timestamps {
        LogTimestamps::Utc => (Clock::Utc(SystemTime), None),
        LogTimestamps::Local => match time::UtcOffset::current_local_offset() {
            Ok(offset) => (Clock::Local(OffsetTime::new(offset, Rfc3339)), None),
            Err(e) => (
                Clock::Utc(SystemTime),
                Some(format!(
                    "log_timestamps = \"local\": the local offset cannot be read ({e}); logging in UTC"
                )),
            ),
        },
    }
}

/// Whether to write colour codes: only to a terminal, and not when `NO_COLOR` is set,
/// so log files and journals stay plain text.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Install the global subscriber with UTC timestamps.
pub fn init(format: LogFormat) {
    init_with(format, LogTimestamps::Utc, "");
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

/// Install the global subscriber with `timestamps` and `filter` ("" = `RUST_LOG`,
/// else `info`; an invalid one falls back to that too, after a line on stderr); the
/// returned control replaces the filter later. Call before the runtime starts:
/// local time needs the offset read while the process has one thread.
pub fn init_with(format: LogFormat, timestamps: LogTimestamps, filter: &str) -> LogControl {
    let filter = filter_of(filter).unwrap_or_else(|e| {
        eprintln!("{e}; using RUST_LOG or info");
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let (timer, clock_warning) = clock(timestamps);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(timer)
        // A closed stderr (a pipe whose reader died) must not panic the task that logs.
        .log_internal_errors(false)
        .with_ansi(colour());
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
    if let Some(warning) = clock_warning {
        tracing::warn!("{warning}");
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
    fn local_clock_writes_an_offset() {
        // The test harness runs several threads: reading the offset may be refused,
        // which must fall back to UTC with a warning rather than fail.
        let (clock, warning) = clock(LogTimestamps::Local);
        let mut line = String::new();
        clock.format_time(&mut Writer::new(&mut line)).unwrap();
        match warning {
            None => assert!(line.contains('+') || line.contains('-') || line.ends_with('Z')),
            Some(w) => {
                assert!(w.contains("log_timestamps"), "{w}");
                assert!(line.ends_with('Z'), "{line}");
            }
        }
    }

    #[test]
    fn filters_are_checked() {
        check_filter("").unwrap();
        check_filter("info,netcore=debug").unwrap();
        assert!(check_filter("netcore=loud").is_err());
    }
}
