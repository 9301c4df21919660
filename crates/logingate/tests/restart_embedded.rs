//! A zero-downtime restart of a gate with the embedded LoginSrv: during the drain
//! both processes run a LoginSrv on the same `accounts.db`; accounts written
//! through either are there for the other, and the old process still serves the
//! client it had.
#![cfg(feature = "embedded")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;

use bytes::BytesMut;
use mir2_proto::ids::{IdTable, MsgKind};
use mir2_proto::packet::{write_client_packet, Packet};
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::{ClientFramer, MsgHeader};
use testkit::process::Spawned;
use testkit::{eventually, STEP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_logingate");

/// A game client speaking real login messages.
struct Client {
    stream: TcpStream,
    seq: u8,
    framer: ClientFramer,
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

    async fn ask(&mut self, kind: MsgKind, parts: &[&[u8]]) -> MsgKind {
        let ids = IdTable::delphi();
        self.seq = self.seq % 9 + 1;
        let mut out = BytesMut::new();
        write_client_packet(
            &mut out,
            Some(self.seq),
            &MsgHeader::new(ids.id(kind), 0, 0, 0, 0),
            parts,
        );
        self.stream.write_all(&out).await.unwrap();
        loop {
            if let Some(frame) = self.framer.decode(&mut self.buf).unwrap() {
                return ids
                    .kind(Packet::parse(frame).unwrap().header.ident)
                    .unwrap();
            }
            let n = tokio::time::timeout(STEP, self.stream.read_buf(&mut self.buf))
                .await
                .expect("reply in time")
                .unwrap();
            assert!(n > 0, "the gate closed the client");
        }
    }

    async fn register(&mut self, account: &str) -> MsgKind {
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

    async fn login(&mut self, account: &str) -> MsgKind {
        let body = format!("{account}/pw1234");
        self.ask(MsgKind::CmIdPassword, &[body.as_bytes()]).await
    }
}

async fn wait_line(mut gate: Spawned, needle: &'static str) -> Spawned {
    tokio::task::spawn_blocking(move || {
        gate.wait_for(needle, |l| l.contains(needle).then_some(()));
        gate
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_processes_share_the_accounts_during_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("gate.pid");
    let config = dir.path().join("gate.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[gate]\nlisten = [\"127.0.0.1:0\"]\nmax_conn_per_ip = 0\n\
             conn_rate_per_ip = 0\nnew_accounts_per_ip_per_hour = 0\npid_file = \"{}\"\n\
             [gate.attack]\nenter_conn_rate = 0\n[admin]\nlisten = \"\"\n\
             [embedded.security]\nargon2_m_kib = 8\nargon2_t = 1\nargon2_p = 1\n",
            dir.path().join("data").display(),
            pid_file.display()
        ),
    )
    .unwrap();
    let (gate, addrs) = testkit::process::start_gate(BIN, &config, "link: up").await;
    let addr = addrs.listen;
    let old = gate.id();
    eventually("pid file", || {
        logingate::handover::read_pid_file(&pid_file).ok() == Some(old)
    })
    .await;

    let mut on_old = Client::connect(addr).await;
    assert_eq!(on_old.register("before").await, MsgKind::SmNewIdSuccess);

    let sent = Command::new("kill")
        .args(["-USR2", &old.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut gate = wait_line(gate, "restart: the new process is ready").await;
    eventually("the new process took the pid file over", || {
        logingate::handover::read_pid_file(&pid_file).is_ok_and(|p| p != old)
    })
    .await;
    let new = logingate::handover::read_pid_file(&pid_file).unwrap();

    // The old process still serves its client, on its own LoginSrv.
    assert_eq!(on_old.register("during_old").await, MsgKind::SmNewIdSuccess);
    // A new client reaches the new process, whose LoginSrv sees both accounts.
    let mut on_new = Client::connect(addr).await;
    assert_eq!(on_new.login("before").await, MsgKind::SmPassOkSelectServer);
    assert_eq!(on_new.register("during_new").await, MsgKind::SmNewIdSuccess);
    let mut again = Client::connect(addr).await;
    assert_eq!(
        again.login("during_old").await,
        MsgKind::SmPassOkSelectServer
    );
    // And the old process's LoginSrv sees what the new one wrote.
    assert_eq!(
        on_old.login("during_new").await,
        MsgKind::SmPassOkSelectServer
    );

    drop(on_old);
    let status = tokio::task::spawn_blocking(move || gate.exit_status())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "the old process drained and exited");
    let mut after = Client::connect(addr).await;
    assert_eq!(
        after.login("during_new").await,
        MsgKind::SmPassOkSelectServer
    );
    drop((on_new, again, after));
    let sent = Command::new("kill")
        .args(["-TERM", &new.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    eventually("the new process exited", || !pid_file.exists()).await;
}
