//! `mirtool gameserver`: a game-server double on the LoginSrv's port 5600.
//!
//! Connects like an M2Server (index 0..) or a DBServer (index 99), reports its
//! count on the originals' period (10 s, 3 s for a DBServer), prints every
//! session it receives, and optionally soft-outs each one after a delay.

use std::process::ExitCode;
use std::time::Duration;

use bytes::BytesMut;
use clap::Args as ClapArgs;
use mir2_proto::game::{write_message, GameFramer, GameKind, GameMessage, IdSet};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Index a DBServer reports.
const DBSERVER_INDEX: i32 = 99;
/// Longest frame accepted from the LoginSrv.
const MAX_FRAME_BYTES: usize = 4096;

/// `mirtool gameserver` options.
#[derive(ClapArgs)]
pub struct Args {
    /// The LoginSrv's game-server port.
    #[arg(long, default_value = "127.0.0.1:5600")]
    loginsrv: String,
    /// Server name reported (the `[[servers]]` name).
    #[arg(long, default_value = "demo")]
    name: String,
    /// Server index: 0.. for an M2Server, 99 for a DBServer.
    #[arg(long, default_value_t = 0)]
    index: i32,
    /// Online count reported.
    #[arg(long, default_value_t = 0)]
    online: u32,
    /// Numbering of the deployment: 100 or 1000.
    #[arg(long, default_value = "100")]
    id_set: IdSet,
    /// Send SS_SOFTOUTSESSION this many seconds after each session opens.
    #[arg(long)]
    soft_out_after: Option<u64>,
}

/// Run until the LoginSrv closes the connection (exit 1) or it cannot be reached (exit 2).
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mirtool gameserver: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(serve(args))
}

fn frame(ids: IdSet, kind: GameKind, fields: &[&[u8]]) -> Option<BytesMut> {
    let mut out = BytesMut::new();
    write_message(&mut out, ids.id(kind), fields).ok()?;
    Some(out)
}

async fn serve(args: Args) -> ExitCode {
    let stream = match TcpStream::connect(&args.loginsrv).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "mirtool gameserver: cannot connect to {}: {e}",
                args.loginsrv
            );
            return ExitCode::from(2);
        }
    };
    let Ok(name) = mir2_proto::text::gbk_encode(&args.name) else {
        eprintln!("mirtool gameserver: --name is not representable in GBK");
        return ExitCode::from(2);
    };
    let ids = args.id_set;
    let role = if args.index == DBSERVER_INDEX {
        "DBServer"
    } else {
        "M2Server"
    };
    println!(
        "connected to {} as {role} {} index {} (id set {})",
        args.loginsrv,
        args.name,
        args.index,
        ids.as_str()
    );
    let (mut rd, mut wr) = stream.into_split();
    // Soft-outs are scheduled by their own tasks and written here, in order.
    let (soft_tx, mut soft_rx) = mpsc::unbounded_channel::<BytesMut>();
    let period = Duration::from_secs(if args.index == DBSERVER_INDEX { 3 } else { 10 });
    let mut report = tokio::time::interval(period);
    let (index, online) = (args.index.to_string(), args.online.to_string());
    let info = frame(
        ids,
        GameKind::ServerInfo,
        &[&name, index.as_bytes(), online.as_bytes()],
    );
    let mut framer = GameFramer::new(MAX_FRAME_BYTES);
    let mut buf = BytesMut::with_capacity(MAX_FRAME_BYTES);
    loop {
        tokio::select! {
            _ = report.tick() => {
                if let Some(info) = &info {
                    if wr.write_all(info).await.is_err() {
                        break;
                    }
                }
            }
            Some(out) = soft_rx.recv() => {
                if wr.write_all(&out).await.is_err() {
                    break;
                }
            }
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => loop {
                    match framer.next_frame(&mut buf) {
                        Ok(Some(body)) => on_frame(&args, body, &soft_tx),
                        Ok(None) => break,
                        Err(e) => {
                            eprintln!("mirtool gameserver: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                },
            },
        }
    }
    println!("connection closed by the LoginSrv");
    ExitCode::FAILURE
}

fn on_frame(args: &Args, body: bytes::Bytes, soft: &mpsc::UnboundedSender<BytesMut>) {
    let Ok(msg) = GameMessage::parse(body) else {
        return;
    };
    let account = msg.text(0).unwrap_or_default();
    let session = msg.number::<i32>(1).unwrap_or_default();
    match args.id_set.kind(msg.ident) {
        Some(GameKind::OpenSession) => {
            let ip = msg.text(4).unwrap_or_default();
            println!("open {account} {session} from {ip}");
            if let Some(secs) = args.soft_out_after {
                let ids = args.id_set;
                let soft = soft.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    let Ok(acc) = mir2_proto::text::gbk_encode(&account) else {
                        return;
                    };
                    let sid = session.to_string();
                    if let Some(f) = frame(ids, GameKind::SoftOutSession, &[&acc, sid.as_bytes()]) {
                        println!("soft-out {account} {session}");
                        let _ = soft.send(f);
                    }
                });
            }
        }
        Some(GameKind::CloseSession) => println!("close {account} {session}"),
        Some(GameKind::KeepAlive) => {}
        Some(other) => println!("{} {}", other.name(), msg.fields.len()),
        None => println!("unknown ident {}", msg.ident),
    }
}
