//! `kill -9` of the `logingate` binary with its embedded LoginSrv while clients register
//! through it, then a restart on the same data directory: every registration the gate
//! acknowledged is there (counted, and each logs in).
#![cfg(feature = "embedded")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mir2_proto::ids::{IdTable, MsgKind};
use mir2_proto::packet::{write_client_packet, Packet};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::{ClientFramer, MsgHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_logingate");
/// Clients registering at once.
const CLIENTS: usize = 4;
/// Gate with the embedded LoginSrv: cheapest Argon2id, no per-IP limits (every client
/// is 127.0.0.1).
/// Every client speaks from 127.0.0.1 and registers as fast as it can: no per-IP
/// caps, registration limit or attack mode, which would stop it long before the kill.
const CONFIG: &str =
    "[gate]\nmax_conn_per_ip = 0\nconn_rate_per_ip = 0\nnew_accounts_per_ip_per_hour = 0\n\
    [gate.attack]\nenter_conn_rate = 0\n\
    [embedded.security]\nargon2_m_kib = 8\nargon2_t = 1\nargon2_p = 1\n\
    hashes_per_ip_per_minute = 0\n\
    [[embedded.servers]]\nname = \"alpha\"\nselgates = [\"127.0.0.1:7100\"]\ncapacity = 100\n";

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cfg: &Path, data: &Path) -> (Child, SocketAddr) {
    let mut child = Child(
        Command::new(BIN)
            .arg("--config")
            .arg(cfg)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Ready once it has said both where it listens and that its link is up
    // (in either order): a client admitted before the link is up is refused.
    std::thread::spawn(move || {
        let (mut addr, mut link_up) = (None, false);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("logingate started") {
                let start = line.find("listen=[").unwrap() + "listen=[".len();
                let end = start + line[start..].find(']').unwrap();
                addr = Some(line[start..end].parse::<SocketAddr>().unwrap());
            }
            link_up |= line.contains("link: up");
            if let (Some(a), true) = (addr, link_up) {
                let _ = tx.send(a);
                addr = None;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("startup and link-up lines");
    (child, addr)
}

/// A game client: numbered packets out, whole replies in.
struct Client {
    /// The connection to the gate.
    stream: TcpStream,
    /// Check digit of the next packet (1..=9).
    seq: u8,
    /// Splits replies.
    framer: ClientFramer,
    /// Bytes read and not yet framed.
    buf: BytesMut,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            seq: 0,
            framer: ClientFramer::new(8192),
            buf: BytesMut::new(),
        }
    }

    /// Sends one message and returns the reply's kind, or `None` when the gate is gone.
    async fn ask(&mut self, kind: MsgKind, parts: &[&[u8]]) -> Option<MsgKind> {
        let ids = IdTable::delphi();
        self.seq = self.seq % 9 + 1;
        let mut out = BytesMut::new();
        let header = MsgHeader::new(ids.id(kind), 0, 0, 0, 0);
        write_client_packet(&mut out, Some(self.seq), &header, parts);
        self.stream.write_all(&out).await.ok()?;
        loop {
            if let Some(frame) = self.framer.decode(&mut self.buf).ok()? {
                return ids.kind(Packet::parse(frame).ok()?.header.ident);
            }
            let n =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("reply in time")
                    .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    async fn register(&mut self, account: &str) -> Option<MsgKind> {
        let e = UserEntry {
            account: account.into(),
            password: "pw1234".into(),
            user_name: "player".into(),
            ss_no: "11010119900101".into(),
            phone: "555-0100".into(),
            quiz: "pet".into(),
            answer: "cat".into(),
            email: "p@example.com".into(),
        };
        let a = UserEntryAdd {
            quiz2: "city".into(),
            answer2: "town".into(),
            birthday: "1990/01/01".into(),
            mobile_phone: "13800000000".into(),
            memo: "".into(),
            memo2: "".into(),
        };
        let (e, a) = (e.to_bytes().unwrap(), a.to_bytes().unwrap());
        self.ask(MsgKind::CmAddNewUser, &[&e, &a]).await
    }

    async fn login(&mut self, account: &str) -> Option<MsgKind> {
        let body = format!("{account}/pw1234");
        self.ask(MsgKind::CmIdPassword, &[body.as_bytes()]).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_registrations_survive_kill_9_of_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gate.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let (mut child, addr) = spawn(&cfg, &data);

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let stop = Arc::clone(&stop);
        let acknowledged = Arc::clone(&acknowledged);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut acked = Vec::new();
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let account = format!("g{c}n{n}");
                match client.register(&account).await {
                    Some(MsgKind::SmNewIdSuccess) => {
                        acked.push(account);
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    None => break,
                    other => panic!("registration of {account}: {other:?}"),
                }
            }
            acked
        }));
    }
    // Kill while registrations are flowing: after the first acknowledgements,
    // however slow the machine is to produce them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::Relaxed) < CLIENTS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "registrations acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        !acked.is_empty(),
        "registrations were acknowledged before the kill"
    );

    let (_child, addr) = spawn(&cfg, &data);
    for account in &acked {
        let mut client = Client::connect(addr).await;
        assert_eq!(
            client.login(account).await,
            Some(MsgKind::SmPassOkSelectServer),
            "acknowledged {account} logs in after kill -9 ({} acknowledged)",
            acked.len()
        );
    }
    eprintln!(
        "gate kill -9 under load: {} acknowledged, all present",
        acked.len()
    );
}
