//! The block list file: one IP or CIDR per line, `#` comments, blank lines.
//! Polled for changes; its entries replace the static blocks in netcore's
//! admission. Permanent blocks ordered by the LoginSrv are appended to it.
//!
//! A file missing at start-up is created empty (a new installation); one that
//! exists but cannot be read refuses the start. A file that disappears or
//! becomes unreadable later keeps the last list read in force, with a warning:
//! a moved file must not unblock everyone.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bootstrap::ConfigError;
use ipnet::IpNet;
use limits::LogLimiter;
use netcore::Admission;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Block list reloads, by `outcome` (`ok`, `bad_line`, `unreadable`).
pub const METRIC_RELOADS: &str = "gate_blocklist_reloads_total";
/// Entries in force from the file.
pub const METRIC_ENTRIES: &str = "gate_blocklist_entries";

/// A line that is neither an IP, a CIDR, a comment nor blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// The offending text.
    pub text: String,
}

/// Parse the file's text; bad lines are returned, not fatal.
pub fn parse(text: &str) -> (Vec<IpNet>, Vec<BadLine>) {
    let mut nets = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        match entry_of(raw) {
            None => {}
            Some(Ok(net)) => nets.push(net),
            Some(Err(())) => bad.push(BadLine {
                line: i + 1,
                text: raw
                    .split('#')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .chars()
                    .take(80)
                    .collect(),
            }),
        }
    }
    (nets, bad)
}

/// What one load of the file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Entries now in force from the file.
    pub entries: usize,
    /// Lines skipped as neither an address, a range, a comment nor blank.
    pub bad_lines: usize,
    /// False when the file could not be read (the last list read stays in force).
    pub readable: bool,
}

/// The entry of one line (an IP or CIDR, truncated; IPv4-mapped as IPv4),
/// `None` for comments, blank and bad lines.
fn entry_of(raw: &str) -> Option<Result<IpNet, ()>> {
    let entry = raw.split('#').next().unwrap_or("").trim();
    if entry.is_empty() {
        return None;
    }
    Some(
        entry
            .parse::<IpNet>()
            .map(|n| n.trunc())
            .or_else(|_| {
                entry
                    .parse::<IpAddr>()
                    .map(|ip| IpNet::from(ip.to_canonical()))
            })
            .map_err(|_| ()),
    )
}

/// Read, parse and install the file into `admission`; logs bad lines.
pub fn load_into(path: &Path, admission: &Admission) -> Loaded {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let (nets, bad) = parse(&text);
            for b in &bad {
                warn!(file = %path.display(), line = b.line, text = %b.text, "block list: bad line skipped");
            }
            let outcome = if bad.is_empty() { "ok" } else { "bad_line" };
            metrics::counter!(METRIC_RELOADS, "outcome" => outcome).increment(1);
            metrics::gauge!(METRIC_ENTRIES).set(nets.len() as f64);
            info!(file = %path.display(), entries = nets.len(), bad_lines = bad.len(), "block list loaded");
            let loaded = Loaded {
                entries: nets.len(),
                bad_lines: bad.len(),
                readable: true,
            };
            admission.replace_static(nets);
            loaded
        }
        Err(e) => {
            metrics::counter!(METRIC_RELOADS, "outcome" => "unreadable").increment(1);
            if let Some(suppressed) = UNREADABLE_LOG.check_for("block") {
                warn!(file = %path.display(), error = %e, suppressed, "block list unreadable; the last list read stays in force");
            }
            Loaded {
                entries: 0,
                bad_lines: 0,
                readable: false,
            }
        }
    }
}

/// One warning a minute per list kind about a file that cannot be read (a check
/// runs every `block_list_poll_secs`; a console reload can be asked for at will).
pub(crate) static UNREADABLE_LOG: LogLimiter<&'static str> =
    LogLimiter::new(1, Duration::from_secs(60));

/// Start-up check of a list file named by config `key`: created empty when missing
/// (logged with its absolute path), refused when it exists but cannot be read.
pub fn prepare(key: &'static str, path: &Path) -> Result<(), ConfigError> {
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Read whole, as every reload reads it (a directory opens but cannot be read).
    match std::fs::read_to_string(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(path)
                .or_else(|e| match e.kind() {
                    io::ErrorKind::AlreadyExists => std::fs::File::open(path),
                    _ => Err(e),
                })
                .map_err(|e| {
                    ConfigError::new(
                        key,
                        format!(
                            "{} does not exist and cannot be created: {e}",
                            shown.display()
                        ),
                    )
                })?;
            warn!(key, file = %shown.display(), "list file did not exist: created empty");
            Ok(())
        }
        Err(e) => Err(ConfigError::new(
            key,
            format!("cannot read {}: {e}", shown.display()),
        )),
    }
}

/// What identifies a version of the file cheaply (mtime and size).
pub type Stamp = Option<(SystemTime, u64)>;

/// The file's current [`Stamp`]; take it before [`load_into`] so a change
/// racing the load is seen by [`watch`].
pub fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reload the file whenever its mtime or size differs from `last`, checking
/// every `poll`, until `stop`. The file I/O runs on the blocking pool: a
/// huge file or a hung network mount must not stall the runtime, and a
/// check still running simply delays the next one.
pub async fn watch(
    path: PathBuf,
    last: Stamp,
    admission: Admission,
    poll: Duration,
    stop: CancellationToken,
) {
    watch_file(path, last, admission, poll, stop, |p, a| {
        load_into(p, a);
    })
    .await;
}

/// [`watch`] with another loader: any IP/CIDR list file installed into admission
/// (the allow list uses it too).
pub async fn watch_file(
    path: PathBuf,
    mut last: Stamp,
    admission: Admission,
    poll: Duration,
    stop: CancellationToken,
    load: fn(&Path, &Admission),
) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let (p, a) = (path.clone(), admission.clone());
        let check = tokio::task::spawn_blocking(move || {
            let now = stamp(&p);
            if now != last {
                load(&p, &a);
            }
            now
        });
        tokio::select! {
            r = check => match r {
                Ok(now) => last = now,
                Err(e) => warn!(file = %path.display(), error = %e, "block list: reload task failed"),
            },
            () = stop.cancelled() => return,
        }
    }
}

/// Serialises [`record`]: its check-then-append must not interleave.
static RECORD_LOCK: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Append `ip` unless a line of the file already covers it; `Ok(false)` when
/// it was already listed. Repeated blocks of one IP (several sessions, a
/// LoginSrv repeating itself, a restart) must not grow the file.
pub fn record(path: &Path, ip: IpAddr, note: &str) -> io::Result<bool> {
    record_net(path, IpNet::from(ip.to_canonical()), note)
}

/// [`record`] for a range: appended unless a line already covers all of it.
pub fn record_net(path: &Path, net: IpNet, note: &str) -> io::Result<bool> {
    let _serial = RECORD_LOCK.lock();
    let net = canonical_net(net);
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if parse(&text).0.iter().any(|listed| listed.contains(&net)) {
                return Ok(false);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    append_net(path, net, note)?;
    Ok(true)
}

/// Remove the lines whose entry is exactly `net` (comments and every other
/// line kept as written); `Ok(false)` when no line was `net`. The file is
/// replaced through a temporary file and a rename, so a reload never sees
/// half of it.
pub fn remove_net(path: &Path, net: IpNet) -> io::Result<bool> {
    let _serial = RECORD_LOCK.lock();
    let net = canonical_net(net);
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut kept = String::with_capacity(text.len());
    let mut removed = false;
    for line in text.split_inclusive('\n') {
        if matches!(entry_of(line), Some(Ok(listed)) if listed == net) {
            removed = true;
        } else {
            kept.push_str(line);
        }
    }
    if !removed {
        return Ok(false);
    }
    replace_file(path, &kept)?;
    Ok(true)
}

/// Add a line for `net` unless a line already covers all of it (`Ok(false)`),
/// replacing the file through a temporary file and a rename like [`remove_net`]:
/// a reload sees the old file or the new one, never half a line.
pub fn insert_net(path: &Path, net: IpNet, note: &str) -> io::Result<bool> {
    let _serial = RECORD_LOCK.lock();
    let net = canonical_net(net);
    let mut text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    if parse(&text).0.iter().any(|listed| listed.contains(&net)) {
        return Ok(false);
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line_of(net, note));
    replace_file(path, &text)?;
    Ok(true)
}

/// Write `text` to `path` through `<path>.tmp` and a rename.
fn replace_file(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// The file's line for `net`: a single host as a plain address.
fn line_of(net: IpNet, note: &str) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        format!("{} # {note}\n", net.addr())
    } else {
        format!("{net} # {note}\n")
    }
}

/// Every entry of the file, in file order (bad lines skipped).
pub fn entries(path: &Path) -> io::Result<Vec<IpNet>> {
    Ok(parse(&std::fs::read_to_string(path)?).0)
}

/// `net` truncated, an IPv4-mapped host as the IPv4 host.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() == 128 => IpNet::from(v6.addr().to_canonical()),
        other => other.trunc(),
    }
}

/// Append `ip` to the file (creating it), on its own line; on failure the file is
/// left as it was.
pub fn append(path: &Path, ip: IpAddr, note: &str) -> io::Result<()> {
    append_net(path, IpNet::from(ip.to_canonical()), note)
}

/// Append `net` to the file (creating it), on its own line; a single host
/// is written as a plain address.
pub fn append_net(path: &Path, net: IpNet, note: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    // Start on a fresh line if an operator left the last one unterminated.
    let len = f.seek(SeekFrom::End(0))?;
    let mut line = String::new();
    if len > 0 {
        f.seek(SeekFrom::End(-1))?;
        let mut last = [0u8; 1];
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.push('\n');
        }
    }
    line.push_str(&line_of(net, note));
    // A full disk can cut the write short; a line cut inside an address can name
    // another one ("127.0.0.12" → "127.0.0.1"), so a failed append is undone.
    if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_data()) {
        let _ = f.set_len(len);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_ips_cidrs_comments_and_reports_bad_lines() {
        let text = "# header\n\n10.0.0.0/8\n 1.2.3.4  # a note\nnot-an-ip\n::1\n192.168.1.7/24\n300.1.1.1\n";
        let (nets, bad) = parse(text);
        let want: Vec<IpNet> = ["10.0.0.0/8", "1.2.3.4/32", "::1/128", "192.168.1.0/24"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(nets, want);
        assert_eq!(
            bad,
            vec![
                BadLine {
                    line: 5,
                    text: "not-an-ip".into()
                },
                BadLine {
                    line: 8,
                    text: "300.1.1.1".into()
                },
            ]
        );
    }

    #[test]
    fn an_unreadable_file_keeps_the_last_list() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("block.txt");
        std::fs::write(&p, "10.0.0.1\n").unwrap();
        let adm = Admission::standalone(&netcore::Config::default());
        assert!(load_into(&p, &adm).readable);
        std::fs::remove_file(&p).unwrap();
        assert!(!load_into(&p, &adm).readable);
        assert!(adm.is_blocked("10.0.0.1".parse().unwrap()), "still blocked");
        std::fs::create_dir(&p).unwrap();
        assert!(!load_into(&p, &adm).readable);
        assert!(adm.is_blocked("10.0.0.1".parse().unwrap()), "still blocked");
    }

    #[test]
    fn prepare_creates_a_missing_file_and_refuses_an_unreadable_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("block.txt");
        prepare("gate.block_list_file", &p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
        std::fs::write(&p, "10.0.0.1\n").unwrap();
        prepare("gate.block_list_file", &p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "10.0.0.1\n", "kept");
        let e = prepare("gate.block_list_file", &dir.path().join("no/such/dir/x")).unwrap_err();
        assert_eq!(e.key, "gate.block_list_file");
        assert!(e.problem.contains("cannot be created"), "{e}");
    }

    #[test]
    fn append_starts_a_fresh_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("block.txt");
        std::fs::write(&p, "10.0.0.1").unwrap();
        append(&p, "10.0.0.2".parse().unwrap(), "kick").unwrap();
        append(&p, "10.0.0.3".parse().unwrap(), "kick").unwrap();
        let (nets, bad) = parse(&std::fs::read_to_string(&p).unwrap());
        assert!(bad.is_empty());
        assert_eq!(nets.len(), 3);
    }

    #[test]
    fn ranges_are_recorded_once_and_removed_by_their_exact_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("block.txt");
        std::fs::write(&p, "# operators' list\n10.0.0.0/8 # old\n192.0.2.7\n").unwrap();
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert!(!record_net(&p, net("10.1.0.0/16"), "x").unwrap(), "covered");
        assert!(record_net(&p, net("198.51.100.0/24"), "x").unwrap());
        assert!(record_net(&p, net("203.0.113.9/32"), "x").unwrap());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("198.51.100.0/24 # x\n"), "{text}");
        assert!(text.contains("\n203.0.113.9 # x\n"), "{text}");
        assert!(remove_net(&p, net("192.0.2.7/32")).unwrap());
        assert!(!remove_net(&p, net("192.0.2.7/32")).unwrap());
        assert!(
            !remove_net(&p, net("10.1.0.0/16")).unwrap(),
            "only exact lines"
        );
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("# operators' list\n10.0.0.0/8 # old\n"),
            "{text}"
        );
        assert!(!text.contains("192.0.2.7"), "{text}");
    }

    #[test]
    fn record_skips_ips_already_covered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("block.txt");
        std::fs::write(&p, "10.1.0.0/16\n").unwrap();
        assert!(!record(&p, "10.1.2.3".parse().unwrap(), "x").unwrap());
        assert!(record(&p, "10.2.0.1".parse().unwrap(), "x").unwrap());
        assert!(!record(&p, "10.2.0.1".parse().unwrap(), "x").unwrap());
        // An IPv4-mapped address is the same client.
        assert!(!record(&p, "::ffff:10.2.0.1".parse().unwrap(), "x").unwrap());
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
