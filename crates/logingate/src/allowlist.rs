//! The allow list file ("green channel"): one IP or CIDR per line, `#` comments, the
//! block list's format. Its sources skip the per-IP cap, the connect rate, attack mode
//! and punishment, but not `max_connections` nor an explicit block. Polled for changes
//! like the block list, and like it created empty when missing at start-up; a file that
//! becomes unreadable later keeps the last list read in force, with a warning.

use std::path::Path;

use netcore::Admission;
use tracing::{info, warn};

use crate::blocklist;

/// Allow list reloads, by `outcome` (`ok`, `bad_line`, `unreadable`).
pub const METRIC_RELOADS: &str = "gate_allowlist_reloads_total";
/// Entries in force.
pub const METRIC_ENTRIES: &str = "gate_allowlist_entries";

/// Read, parse and install the file as `admission`'s allow list; logs bad lines.
pub fn load_into(path: &Path, admission: &Admission) {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let (nets, bad) = blocklist::parse(&text);
            for b in &bad {
                warn!(file = %path.display(), line = b.line, text = %b.text, "allow list: bad line skipped");
            }
            let outcome = if bad.is_empty() { "ok" } else { "bad_line" };
            metrics::counter!(METRIC_RELOADS, "outcome" => outcome).increment(1);
            metrics::gauge!(METRIC_ENTRIES).set(nets.len() as f64);
            info!(file = %path.display(), entries = nets.len(), bad_lines = bad.len(), "allow list loaded");
            admission.replace_allow_list(nets);
        }
        Err(e) => {
            metrics::counter!(METRIC_RELOADS, "outcome" => "unreadable").increment(1);
            if let Some(suppressed) = blocklist::UNREADABLE_LOG.check_for("allow") {
                warn!(file = %path.display(), error = %e, suppressed, "allow list unreadable; the last list read stays in force");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;

    #[test]
    fn parses_and_installs_skipping_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("allow.txt");
        std::fs::write(
            &p,
            "# players' office\n10.8.0.0/16\nnonsense\n192.168.1.9 # admin\n",
        )
        .unwrap();
        let adm = Admission::standalone(&netcore::Config::default());
        load_into(&p, &adm);
        assert!(adm.is_allow_listed("10.8.200.1".parse().unwrap()));
        assert!(adm.is_allow_listed("::ffff:192.168.1.9".parse().unwrap()));
        assert!(!adm.is_allow_listed("192.168.1.10".parse().unwrap()));
        std::fs::remove_file(&p).unwrap();
        load_into(&p, &adm);
        assert!(
            adm.is_allow_listed("10.8.200.1".parse().unwrap()),
            "gone = the last list read"
        );
    }

    #[tokio::test]
    async fn reloads_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("allow.txt");
        std::fs::write(&p, "10.0.0.1\n").unwrap();
        let adm = Admission::standalone(&netcore::Config::default());
        let stamp = blocklist::stamp(&p);
        load_into(&p, &adm);
        let stop = CancellationToken::new();
        let task = tokio::spawn(blocklist::watch_file(
            p.clone(),
            stamp,
            adm.clone(),
            Duration::from_millis(20),
            stop.clone(),
            load_into,
        ));
        // A different size changes the stamp even within one mtime tick.
        std::fs::write(&p, "10.0.0.2\n10.0.0.3\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !adm.is_allow_listed("10.0.0.3".parse().unwrap()) {
            assert!(std::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!adm.is_allow_listed("10.0.0.1".parse().unwrap()));
        stop.cancel();
        task.await.unwrap();
    }
}
