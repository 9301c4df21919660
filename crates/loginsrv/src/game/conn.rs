//! One game-server connection: allow-list, reader (framing, dispatch) and writer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mir2_proto::game::{GameFramer, GameKind, GameMessage};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{GameServers, OUTBOUND_QUEUE};
use crate::cluster::{publish, Event};
use crate::reject::reject;
use crate::ServerState;

/// Longest server name accepted in SS_SERVERINFO (GBK bytes).
const MAX_NAME_BYTES: usize = 64;

/// Accept game servers until `cancel`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let Some(game) = state.game.as_ref() else {
        return;
    };
    let max = state.config.load().game_servers.max_servers;
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "game-server accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !state
            .config
            .load()
            .game_servers
            .allow
            .iter()
            .any(|net| net.contains(&peer.ip()))
        {
            reject(
                "game_server_not_allowed",
                format_args!("game server {peer} is not in game_servers.allow"),
            );
            continue;
        }
        if game.connections() >= max {
            reject(
                "too_many_game_servers",
                format_args!("game server {peer} refused: game_servers.max_servers reached"),
            );
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (state, cancel, t) = (state.clone(), cancel.clone(), tracker.clone());
        tracker.spawn(async move {
            tracing::info!(%peer, "game server connected");
            let reason = serve(stream, peer, &state, cancel, &t).await;
            tracing::info!(%peer, reason, "game server disconnected");
        });
    }
}

/// One connection; returns why it ended.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    state: &Arc<ServerState>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> &'static str {
    let Some(game) = state.game.as_ref() else {
        return "game servers off";
    };
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let done = cancel.child_token();
    tracker.spawn(write_loop(wr, rx, done.clone()));
    let id = game.register(peer, tx, done.clone());
    let mut framer = GameFramer::new(state.config.load().game_servers.max_frame_bytes);
    let mut buf = BytesMut::with_capacity(4096);
    let mut junk = 0;
    let reason = 'conn: loop {
        loop {
            match framer.next_frame(&mut buf) {
                Ok(Some(frame)) => handle(state, game, id, peer, frame),
                Ok(None) => break,
                Err(e) => {
                    reject(e.reason(), format_args!("game server {peer}: {e}, closing"));
                    break 'conn "over-long frame";
                }
            }
        }
        if framer.junk_skipped() > junk {
            metrics::counter!("loginsrv_game_junk_bytes_total")
                .increment(framer.junk_skipped() - junk);
            reject(
                "game_junk",
                format_args!(
                    "game server {peer}: {} bytes outside (…) skipped",
                    framer.junk_skipped() - junk
                ),
            );
            junk = framer.junk_skipped();
        }
        tokio::select! {
            () = done.cancelled() => break "shutdown, stalled or write failure",
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break "closed by game server",
                Ok(_) => {}
                Err(_) => break "read error",
            },
        }
    };
    game.unregister(id);
    done.cancel();
    reason
}

/// Writes queued frames, batching what is ready.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    done: CancellationToken,
) {
    let mut out = BytesMut::new();
    loop {
        let first = tokio::select! {
            () = done.cancelled() => break,
            f = rx.recv() => match f { Some(f) => f, None => break },
        };
        out.extend_from_slice(&first);
        while out.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(f) => out.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        let write = wr.write_all(&out);
        let ok = tokio::select! {
            () = done.cancelled() => false,
            r = write => r.is_ok(),
        };
        out.clear();
        if !ok {
            break;
        }
    }
    done.cancel();
}

/// One frame from a game server.
fn handle(state: &Arc<ServerState>, game: &GameServers, id: u64, peer: SocketAddr, frame: Bytes) {
    let msg = match GameMessage::parse(frame) {
        Ok(m) => m,
        Err(e) => {
            metrics::counter!("loginsrv_game_malformed_total").increment(1);
            reject(e.reason(), format_args!("game server {peer}: {e}"));
            return;
        }
    };
    let Some(kind) = game.ids().kind(msg.ident) else {
        metrics::counter!("loginsrv_game_malformed_total").increment(1);
        reject(
            "game_unknown_ident",
            format_args!(
                "game server {peer}: ident {} is not in id set {}",
                msg.ident,
                game.ids().as_str()
            ),
        );
        return;
    };
    metrics::counter!("loginsrv_game_messages_total", "kind" => kind.name()).increment(1);
    match kind {
        GameKind::ServerInfo => server_info(game, id, peer, &msg),
        GameKind::SoftOutSession => soft_out(state, peer, &msg),
        GameKind::LoginCost => {
            // Billing minutes: the Delphi LoginSrv has no handler either; counted above.
            tracing::debug!(%peer, "SS_LOGINCOST ignored (no billing)");
        }
        other => reject(
            "game_unexpected_message",
            format_args!(
                "game server {peer}: {} is not sent by game servers",
                other.name()
            ),
        ),
    }
}

fn malformed(peer: SocketAddr, kind: GameKind, what: &str) {
    metrics::counter!("loginsrv_game_malformed_total").increment(1);
    reject(
        "game_bad_fields",
        format_args!("game server {peer}: {} {what}", kind.name()),
    );
}

/// `name/index/online`: record, answer SS_KEEPALIVE with the total.
fn server_info(game: &GameServers, id: u64, peer: SocketAddr, msg: &GameMessage) {
    let name = msg.text(0).filter(|n| {
        !n.is_empty()
            && msg
                .fields
                .first()
                .is_some_and(|f| f.len() <= MAX_NAME_BYTES)
    });
    let (Some(name), Some(index), Some(online)) =
        (name, msg.number::<i32>(1), msg.number::<u32>(2))
    else {
        return malformed(peer, GameKind::ServerInfo, "needs name/index/online");
    };
    let total = game.report(id, name, index, online);
    let total = total.to_string();
    game.send_to(id, GameKind::KeepAlive, &[total.as_bytes()]);
}

/// `account/sessionId`: end the session, whatever instance issued it, and
/// tell every game server holding it (through every instance).
fn soft_out(state: &Arc<ServerState>, peer: SocketAddr, msg: &GameMessage) {
    let (Some(account), Some(session)) = (msg.text(0), msg.number::<i32>(1)) else {
        return malformed(peer, GameKind::SoftOutSession, "needs account/sessionId");
    };
    let state = Arc::clone(state);
    // The database answers on its own time; the connection goes on reading.
    tokio::spawn(async move {
        let server = match state.store.end_online_session(&account, session).await {
            Ok(Some(server)) => server,
            Ok(None) => {
                return reject(
                    "soft_out_unknown_session",
                    format_args!("game server {peer}: no live session {session} of {account}"),
                )
            }
            Err(e) => {
                metrics::counter!("loginsrv_db_errors_total").increment(1);
                tracing::error!(error = %e, %account, session, "soft-out not recorded");
                return;
            }
        };
        metrics::counter!("loginsrv_game_soft_outs_total").increment(1);
        tracing::info!(%account, session, %peer, "session ended by game server");
        publish(
            &state,
            Event::Close {
                origin: state.cluster.instance_id,
                server,
                account,
                session_id: session,
            },
        )
        .await;
    });
}
