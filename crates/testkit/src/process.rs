//! A binary under test as a child process: its log lines (stderr) or its
//! output lines (stdout) read on a thread as they come, waited for under
//! [`STEP`], and the child killed when the test ends, pass or fail.

use std::io::{BufRead as _, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::STEP;

/// A running child and the lines it has written so far.
pub struct Spawned {
    /// The process; killed and reaped on drop.
    child: std::process::Child,
    /// Lines of the watched stream, in order, from the reader thread.
    lines: Receiver<String>,
    /// Every line received so far, for assertions on the whole log.
    pub seen: Vec<String>,
}

impl Spawned {
    /// Start `cmd` watching its stderr, where the binaries log; stdout is discarded.
    pub fn logs(mut cmd: Command) -> Spawned {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the binary");
        let stderr = child.stderr.take().expect("piped stderr");
        Spawned::watch(child, stderr)
    }

    /// Start `cmd` watching its stdout, where the tools print.
    pub fn output(mut cmd: Command) -> Spawned {
        cmd.stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the binary");
        let stdout = child.stdout.take().expect("piped stdout");
        Spawned::watch(child, stdout)
    }

    fn watch(child: std::process::Child, stream: impl Read + Send + 'static) -> Spawned {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Reads lines until `found` returns a value for one; panics naming
    /// `what` when none does within [`STEP`] or the stream ends first.
    pub fn wait_for<T>(&mut self, what: &str, mut found: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + STEP;
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| panic!("{what}: {e}; lines so far {:#?}", self.seen));
            let hit = found(&line);
            self.seen.push(line);
            if let Some(v) = hit {
                return v;
            }
        }
    }

    /// Like [`wait_for`](Self::wait_for), with every line required to be one JSON object.
    pub fn wait_for_json<T>(
        &mut self,
        what: &str,
        mut found: impl FnMut(&serde_json::Value) -> Option<T>,
    ) -> T {
        self.wait_for(what, |line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("every log line is JSON ({e}): {line}"));
            found(&v)
        })
    }

    /// Send SIGTERM, as a service manager stops a daemon.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.id());
    }

    /// Kill (SIGKILL) and reap the child, then return every line it wrote.
    pub fn kill(mut self) -> Vec<String> {
        self.child.kill().expect("kill the child");
        self.child.wait().expect("reap the child");
        // The pipe is closed now: the reader thread ends after the last line.
        while let Ok(line) = self.lines.recv_timeout(STEP) {
            self.seen.push(line);
        }
        std::mem::take(&mut self.seen)
    }

    /// The exit status, which must come within [`STEP`].
    pub fn exit_status(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return status;
            }
            assert!(Instant::now() < deadline, "the binary did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where a started gate serves, read from its startup line.
#[derive(Debug, Clone, Copy)]
pub struct GateAddrs {
    /// The first client listener (`listen=[…]`).
    pub listen: std::net::SocketAddr,
    /// The console (`admin=…`), when it runs.
    pub admin: Option<std::net::SocketAddr>,
}

/// Starts the `logingate` binary `bin` with `--config config` and text logs, and
/// reads its log until the startup line has named its addresses and a line
/// contains `link_line` (`"link: connected"`, or `"link: up"` once the LoginSrv
/// has answered).
pub async fn start_gate(
    bin: &str,
    config: &std::path::Path,
    link_line: &'static str,
) -> (Spawned, GateAddrs) {
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut gate = Spawned::logs(cmd);
    tokio::task::spawn_blocking(move || {
        let mut addrs = None;
        let mut linked = false;
        let found = gate.wait_for("startup and link lines", |line| {
            if line.contains("logingate started") {
                let field = |name: &str, end: char| {
                    let start = line.find(name)? + name.len();
                    let stop = start + line[start..].find(end)?;
                    line[start..stop].parse().ok()
                };
                addrs = Some(GateAddrs {
                    listen: field("listen=[", ']').expect("a listen address"),
                    admin: field("admin=", ' '),
                });
            }
            linked |= line.contains(link_line);
            if linked {
                addrs
            } else {
                None
            }
        });
        (gate, found)
    })
    .await
    .expect("the log reader")
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `bin --check-config --config <config>`: asserts exit 0 when `bad_key` is
/// `None`, else exit 2 with the stderr naming `` `bad_key` `` (as both binaries word it).
pub fn assert_check_config(bin: &str, config: &std::path::Path, bad_key: Option<&str>) {
    let out = Command::new(bin)
        .args(["--check-config", "--config"])
        .arg(config)
        .output()
        .expect("run --check-config");
    let err = String::from_utf8_lossy(&out.stderr);
    match bad_key {
        None => assert_eq!(out.status.code(), Some(0), "{err}"),
        Some(key) => {
            assert_eq!(out.status.code(), Some(2), "{key}: {err}");
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }
}
