//! Several LoginSrv instances as one service over one database.
//!
//! The database is the only shared state: each instance registers a row in
//! `loginsrv_instances` (a slot, and a lease renewed by a heartbeat), every
//! account online has one row in `online_sessions` whatever instance serves
//! it, and what one instance must tell the others (kick a client it holds,
//! a session opened or closed for the game servers connected to it) travels
//! as PostgreSQL `NOTIFY` on one channel per schema, heard by each instance's
//! `LISTEN`. No socket connects two instances.
//!
//! On SQLite one instance owns the file (see `dblock`): the same tables are
//! used, and events are handled in process.
//!
//! An instance that dies stops renewing its lease; once `instance_expiry_secs`
//! passes, the next heartbeat of any other instance deletes its row and its
//! sessions. An instance that finds its own row gone (it stalled longer than
//! the expiry) stops: another may hold its slot, and the session ids it would
//! issue could collide.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mir2_proto::link::ServerFrame;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::reject::reject;
use crate::ServerState;

/// Longest channel name PostgreSQL accepts (`NAMEDATALEN - 1`).
const MAX_CHANNEL_BYTES: usize = 63;

/// How long the listener waits before reconnecting after an error.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// What one instance tells the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Close the login client `token` of `instance` holding `account` (`%+-`).
    Kick {
        /// The instance holding the client.
        instance: i64,
        /// Its account.
        account: String,
        /// Its token there.
        token: u64,
    },
    /// SS_OPENSESSION for the game servers named `server`, connected anywhere.
    Open {
        /// The instance that issued the session (already told its own servers).
        origin: i64,
        /// Selected server.
        server: String,
        /// Account key.
        account: String,
        /// The session id the client got.
        session_id: i32,
        /// The client's address.
        ip: IpAddr,
    },
    /// The session ended: SS_CLOSESESSION, and its ticket revoked where it lives.
    Close {
        /// The instance that ended it (already did both).
        origin: i64,
        /// Selected server.
        server: String,
        /// Account key.
        account: String,
        /// The ended session id.
        session_id: i32,
    },
}

/// This instance's identity in the database.
pub struct Cluster {
    /// Random, the `instance_id` of its row and of its sessions.
    pub instance_id: i64,
    /// Its slot (0..`store::SLOTS`), the residue of its session ids.
    pub slot: i64,
    /// The `NOTIFY` channel of this schema (`None` on SQLite).
    channel: Option<String>,
    /// `instance_expiry_secs`.
    expiry: i64,
}

impl Cluster {
    /// Register in the database (after removing expired instances).
    pub async fn join(
        store: &crate::store::Store,
        listen: &str,
        expiry_secs: u64,
    ) -> anyhow::Result<Cluster> {
        let instance_id = rand::random_range(1..i64::MAX);
        let expiry = i64::try_from(expiry_secs).unwrap_or(i64::MAX);
        let host = hostname();
        let slot = store
            .register_instance(instance_id, &host, listen, unix_now(), expiry)
            .await?;
        let channel = match store.postgres() {
            Some(pool) => {
                let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
                    .fetch_one(pool)
                    .await?;
                Some(channel_name(&schema))
            }
            None => None,
        };
        tracing::info!(
            instance = instance_id,
            slot,
            host,
            "LoginSrv instance registered"
        );
        Ok(Cluster {
            instance_id,
            slot,
            channel,
            expiry,
        })
    }
}

/// `loginsrv_<schema>`, cut to PostgreSQL's limit: instances on one schema
/// share the channel, other schemas on the same database never hear it.
fn channel_name(schema: &str) -> String {
    let mut name = format!("loginsrv_{schema}");
    while name.len() > MAX_CHANNEL_BYTES {
        name.pop();
    }
    name
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Carry `event` out: here for what concerns this instance, and through
/// `NOTIFY` for the others.
pub(crate) async fn publish(state: &ServerState, event: Event) {
    let me = state.cluster.instance_id;
    let remote = match &event {
        Event::Kick { instance, .. } => *instance != me,
        Event::Open { .. } | Event::Close { .. } => true,
    };
    if !matches!(&event, Event::Kick { instance, .. } if *instance != me) {
        handle_local(state, &event);
    }
    let (Some(channel), Some(pool), true) = (
        state.cluster.channel.as_deref(),
        state.store.postgres(),
        remote,
    ) else {
        return;
    };
    let payload = match serde_json::to_string(&event) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cluster event not encoded");
            return;
        }
    };
    let _timer = crate::timing::Timer::db();
    match sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(&payload)
        .execute(pool)
        .await
    {
        Ok(_) => metrics::counter!("loginsrv_cluster_events_sent_total").increment(1),
        Err(e) => {
            metrics::counter!("loginsrv_db_errors_total").increment(1);
            tracing::error!(error = %e, %payload, "cluster event not sent");
        }
    }
}

/// What `event` means on this instance.
fn handle_local(state: &ServerState, event: &Event) {
    match event {
        Event::Kick { account, token, .. } => kick_local(state, account, *token),
        Event::Open {
            server,
            account,
            session_id,
            ip,
            ..
        } => {
            if let Some(game) = &state.game {
                let sent = game.open_session(server, account, *session_id, *ip);
                tracing::debug!(%account, session = session_id, sent, "SS_OPENSESSION queued");
            }
        }
        Event::Close {
            server,
            account,
            session_id,
            ..
        } => {
            state.routes.end_session(*session_id, account);
            if let Some(game) = &state.game {
                let sent = game.close_session(server, account, *session_id);
                metrics::counter!("loginsrv_game_sessions_closed_total").increment(1);
                tracing::info!(%account, session = session_id, server, sent, "session closed");
            }
        }
    }
}

/// Close this instance's login client `token` if it still holds `account`.
pub(crate) fn kick_local(state: &ServerState, account: &str, token: u64) {
    let Some(holder) = state.online.holder(account).filter(|h| h.token == token) else {
        return;
    };
    state.online.release(account, token);
    if !holder
        .gate
        .try_send(ServerFrame::Kick { id: holder.client })
    {
        // Its link is gone or stalled; the client is evicted either way.
        reject(
            "kick_not_delivered",
            format_args!(
                "gate {} client {}: kick not queued",
                holder.gate.peer(),
                holder.client
            ),
        );
    }
}

/// Hear the other instances' events until `cancel` (PostgreSQL only).
pub(crate) async fn listen(state: Arc<ServerState>, cancel: CancellationToken) {
    let (Some(channel), Some(pool)) = (state.cluster.channel.clone(), state.store.postgres())
    else {
        return;
    };
    let me = state.cluster.instance_id;
    loop {
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cluster listener cannot connect; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(LISTEN_RETRY) => continue,
                }
            }
        };
        if let Err(e) = listener.listen(&channel).await {
            tracing::warn!(error = %e, "cluster LISTEN failed; retrying");
            tokio::time::sleep(LISTEN_RETRY).await;
            continue;
        }
        tracing::info!(%channel, "listening for the other instances' events");
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => return,
                r = listener.try_recv() => r,
            };
            match received {
                Ok(Some(n)) => match serde_json::from_str::<Event>(n.payload()) {
                    Ok(event) => {
                        metrics::counter!("loginsrv_cluster_events_received_total").increment(1);
                        let for_me = match &event {
                            Event::Kick { instance, .. } => *instance == me,
                            Event::Open { origin, .. } | Event::Close { origin, .. } => {
                                *origin != me
                            }
                        };
                        if for_me {
                            handle_local(&state, &event);
                        }
                    }
                    Err(e) => reject(
                        "cluster_bad_event",
                        format_args!("event {:?}: {e}", n.payload()),
                    ),
                },
                // The connection dropped; the next call reconnects. Events sent meanwhile are lost.
                Ok(None) => {
                    reject(
                        "cluster_listener_lost",
                        format_args!("LISTEN connection lost; reconnecting"),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster listener failed; reconnecting");
                    break;
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(LISTEN_RETRY) => {}
        }
    }
}

/// Renew this instance's lease and remove dead instances, every third of
/// the expiry, until `cancel`. Cancels `fatal` if this instance's row is gone.
pub(crate) async fn heartbeat(
    state: Arc<ServerState>,
    cancel: CancellationToken,
    fatal: CancellationToken,
) {
    let c = &state.cluster;
    let period = Duration::from_secs(u64::try_from((c.expiry / 3).max(1)).unwrap_or(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = unix_now();
        match state.store.heartbeat(c.instance_id, now, c.expiry).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(
                    instance = c.instance_id,
                    slot = c.slot,
                    "this instance's row in loginsrv_instances is gone (no heartbeat for \
                     instance_expiry_secs): another instance judged it dead; stopping"
                );
                fatal.cancel();
                return;
            }
            Err(e) => {
                metrics::counter!("loginsrv_db_errors_total").increment(1);
                tracing::warn!(error = %e, "instance heartbeat failed");
                continue;
            }
        }
        match state.store.expire_instances(now).await {
            Ok((0, 0)) => {}
            Ok((instances, sessions)) => {
                tracing::info!(
                    instances,
                    sessions,
                    "expired instances and their sessions removed"
                );
            }
            Err(e) => {
                metrics::counter!("loginsrv_db_errors_total").increment(1);
                tracing::warn!(error = %e, "expiring instances failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_round_trip_as_json() {
        let e = Event::Open {
            origin: 7,
            server: "传奇".into(),
            account: "a".into(),
            session_id: 129,
            ip: "192.0.2.7".parse().unwrap(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.starts_with(r#"{"event":"open""#), "{text}");
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
    }

    #[test]
    fn channel_names_fit_postgres() {
        assert_eq!(channel_name("public"), "loginsrv_public");
        let long = "s".repeat(80);
        assert_eq!(channel_name(&long).len(), MAX_CHANNEL_BYTES);
    }
}
