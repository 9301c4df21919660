//! An echoing LoginSrv for load through real gates: it accepts any number of gate
//! links (a restarted gate opens a second one while the first drains), answers every
//! client message with the same message in server form (`#1<rest>` → `#<rest>`), answers
//! heartbeats, and keeps a tally per link of open and close frames, so a test can
//! check that every session opened on a link was closed on it exactly once.
//! Speaks the Wemade letters (`%O`, `%A`, `%X`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What one link carried so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkTally {
    /// Close frames seen per session id (each id opened on this link).
    pub sessions: HashMap<u32, u32>,
    /// Open frames for an id already open on this link.
    pub reopened: u32,
    /// Close frames for an id never opened on this link.
    pub stray_closes: u32,
    /// Client messages echoed.
    pub echoed: u64,
    /// Whether the gate closed the link.
    pub ended: bool,
}

impl LinkTally {
    /// Sessions opened on this link.
    pub fn opened(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions closed exactly once.
    pub fn closed_once(&self) -> usize {
        self.sessions.values().filter(|&&n| n == 1).count()
    }

    /// Every session opened was closed exactly once, and nothing else was seen.
    pub fn balanced(&self) -> bool {
        self.reopened == 0 && self.stray_closes == 0 && self.sessions.values().all(|&n| n == 1)
    }
}

/// The echoing LoginSrv; stops when dropped.
pub struct EchoSrv {
    /// Where gates link to.
    addr: SocketAddr,
    /// One tally per link, in accept order.
    links: Arc<Mutex<Vec<LinkTally>>>,
    /// The accept loop.
    task: JoinHandle<()>,
}

impl EchoSrv {
    /// Listen on 127.0.0.1 (ephemeral port).
    pub async fn start() -> EchoSrv {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links = Arc::new(Mutex::new(Vec::new()));
        let tallies = Arc::clone(&links);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut l = tallies.lock().unwrap();
                    l.push(LinkTally::default());
                    l.len() - 1
                };
                tokio::spawn(serve(stream, Arc::clone(&tallies), index));
            }
        });
        EchoSrv { addr, links, task }
    }

    /// The gate port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A copy of every link's tally, in accept order.
    pub fn links(&self) -> Vec<LinkTally> {
        self.links.lock().unwrap().clone()
    }
}

impl Drop for EchoSrv {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: tokio::net::TcpStream, links: Arc<Mutex<Vec<LinkTally>>>, index: usize) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(end) = buf[start..].iter().position(|&b| b == b'$') {
            let frame = &buf[start..start + end + 1];
            start += end + 1;
            let Some(pct) = frame.iter().position(|&b| b == b'%') else {
                continue;
            };
            let frame = &frame[pct..];
            let mut tally = links.lock().unwrap();
            let t = &mut tally[index];
            act(frame, t, &mut out);
        }
        buf.drain(..start);
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            break;
        }
    }
    links.lock().unwrap()[index].ended = true;
}

/// The number after the two-byte command, up to `/` or `$`.
fn id_of(frame: &[u8]) -> Option<u32> {
    let rest = frame.get(2..)?;
    let end = rest.iter().position(|&b| b == b'/' || b == b'$')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

fn act(frame: &[u8], t: &mut LinkTally, out: &mut Vec<u8>) {
    match frame.get(1) {
        Some(b'-') => out.extend_from_slice(b"%++$"),
        Some(b'O') => {
            if let Some(id) = id_of(frame) {
                if t.sessions.insert(id, 0).is_some() {
                    t.reopened += 1;
                }
            }
        }
        Some(b'X') => match id_of(frame).and_then(|id| t.sessions.get_mut(&id)) {
            Some(n) => *n += 1,
            None => t.stray_closes += 1,
        },
        Some(b'A') => {
            let Some(id) = id_of(frame) else { return };
            let Some(slash) = frame.iter().position(|&b| b == b'/') else {
                return;
            };
            let msg = &frame[slash + 1..frame.len() - 1];
            // `#1<rest>!` → `#<rest>!`
            if let Some(rest) = msg.strip_prefix(b"#1") {
                out.extend_from_slice(format!("%{id}/#").as_bytes());
                out.extend_from_slice(rest);
                out.push(b'$');
                t.echoed += 1;
            }
        }
        _ => {}
    }
}
