//! The console's JSON endpoints. Every state change is logged, counted in
//! `gate_admin_actions_total{action}` and shown among the page's events.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use console::body::read_json;
use console::ApiError;
use ipnet::IpNet;
use netcore::{CloseReason, Session};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{error, info};

use super::metrics::ACTIONS;
use super::status::{block_view, sort_blocks, BlockView};
use super::GateView;
use crate::blocklist;
use crate::config::MAX_SECS;

/// `limit` of `/api/sessions` when absent.
pub const SESSIONS_DEFAULT_LIMIT: usize = 100;
/// Largest `limit` of `/api/sessions`.
pub const SESSIONS_MAX_LIMIT: usize = 10_000;
/// Largest `limit` of `GET /api/blocks` (a block list file may be long).
pub const BLOCKS_MAX_LIMIT: usize = 100_000;

type View = State<Arc<GateView>>;

fn action(view: &GateView, name: &'static str, detail: String) {
    metrics::counter!(ACTIONS, "action" => name).increment(1);
    info!(action = name, "console: {detail}");
    view.events.push(name, format!("{detail} (console)"));
}

/// `GET /api/status`.
pub async fn status(State(view): View) -> Response {
    Json(view.status()).into_response()
}

/// Query of `GET /api/sessions`.
#[derive(Debug, Deserialize)]
pub struct SessionQuery {
    /// Only sessions from this IP or range.
    ip: Option<String>,
    /// At most this many (default 100, at most 10 000).
    limit: Option<String>,
}

/// One live session.
#[derive(Debug, Serialize)]
pub struct SessionView {
    /// Session id (the link's id for it).
    pub id: u32,
    /// Client address.
    pub peer: String,
    /// Listener address it connected to.
    pub local: String,
    /// Seconds since it connected.
    pub age_secs: u64,
    /// Bytes from the client.
    pub bytes_in: u64,
    /// Bytes to the client.
    pub bytes_out: u64,
    /// Whole messages forwarded.
    pub messages: u64,
    /// Bytes waiting to be written to the client.
    pub queued_bytes: usize,
    /// `new` (no message yet), `active` or `closing`.
    pub state: &'static str,
}

fn session_view(s: &Session) -> SessionView {
    let stats = s.stats();
    let state = if s.is_closed() {
        "closing"
    } else if stats.messages == 0 {
        "new"
    } else {
        "active"
    };
    SessionView {
        id: s.id().get(),
        peer: s.peer().to_string(),
        local: s.local().to_string(),
        age_secs: stats.age.as_secs(),
        bytes_in: stats.bytes_in,
        bytes_out: stats.bytes_out,
        messages: stats.messages,
        queued_bytes: stats.queued_bytes,
        state,
    }
}

/// An IP or a range, as an operator types it (`1.2.3.4`, `1.2.3.0/24`,
/// `::ffff:1.2.3.4`); host bits of a range are dropped.
fn parse_net(field: &str, text: &str) -> Result<IpNet, ApiError> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    match text.parse::<IpNet>() {
        Ok(IpNet::V6(v6)) if v6.prefix_len() == 128 => Ok(IpNet::from(v6.addr().to_canonical())),
        Ok(net) => Ok(net.trunc()),
        Err(_) => Err(ApiError::bad_field(
            field,
            format!("{text:?} is not an IP address or CIDR range"),
        )),
    }
}

fn parse_limit(text: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_field(
            "limit",
            format!("must be a whole number from 1 to {max} (got {text:?})"),
        )),
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_field("query", e.body_text()))
}

/// `GET /api/sessions?ip=&limit=`: live sessions by id.
pub async fn sessions(
    State(view): View,
    q: Result<Query<SessionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let limit = parse_limit(
        q.limit.as_deref(),
        SESSIONS_DEFAULT_LIMIT,
        SESSIONS_MAX_LIMIT,
    )?;
    let net = q.ip.as_deref().map(|ip| parse_net("ip", ip)).transpose()?;
    let live = view.sessions.len();
    let mut matched: Vec<Session> = view
        .sessions
        .snapshot()
        .into_iter()
        .filter(|s| net.is_none_or(|n| n.contains(&s.peer().ip().to_canonical())))
        .collect();
    matched.sort_by_key(|s| s.id());
    let total = matched.len();
    let list: Vec<SessionView> = matched.iter().take(limit).map(session_view).collect();
    Ok(Json(json!({
        "live": live,
        "matched": total,
        "returned": list.len(),
        "sessions": list,
    }))
    .into_response())
}

/// `POST /api/sessions/{id}/kick`: flush what is queued, then close, as a
/// LoginSrv `%+-` does; the LoginSrv hears `%X`.
pub async fn kick(State(view): View, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id: u32 = id
        .parse()
        .map_err(|_| ApiError::bad_field("id", format!("{id:?} is not a session id")))?;
    let session = view
        .sessions
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("id: no live session {id}")))?;
    session.close(CloseReason::Kicked);
    action(
        &view,
        "kick",
        format!("kicked session {id} ({})", session.peer()),
    );
    Ok(Json(json!({ "kicked": id, "peer": session.peer().to_string() })).into_response())
}

/// Query of `GET /api/blocks`.
#[derive(Debug, Deserialize)]
pub struct BlocksQuery {
    /// At most this many entries (default and maximum 100 000).
    limit: Option<String>,
}

/// `GET /api/blocks`: every block in force, run-time ones first.
pub async fn blocks(
    State(view): View,
    q: Result<Query<BlocksQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let limit = parse_limit(q.limit.as_deref(), BLOCKS_MAX_LIMIT, BLOCKS_MAX_LIMIT)?;
    let mut blocks = view.admission.blocks();
    sort_blocks(&mut blocks);
    let list: Vec<BlockView> = blocks.iter().take(limit).map(block_view).collect();
    Ok(Json(json!({ "total": blocks.len(), "blocks": list })).into_response())
}

/// Body of `POST /api/blocks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// `1.2.3.4` or `1.2.3.0/24`.
    net: String,
    /// Seconds the block lasts; absent = permanent.
    secs: Option<u64>,
}

/// `POST /api/blocks`: block a host or range now and close its live
/// sessions (as the LoginSrv's `%+B`/`%+T` do). A permanent block is also
/// written to `gate.block_list_file` when one is configured, so it survives
/// a restart.
pub async fn block(State(view): View, body: Body) -> Result<Response, ApiError> {
    let req: BlockRequest = read_json(body).await?;
    let net = parse_net("net", &req.net)?;
    let ttl = match req.secs {
        None => None,
        Some(0) => {
            return Err(ApiError::bad_field(
                "secs",
                "must be at least 1 (leave it out for a permanent block)",
            ))
        }
        Some(s) if s > MAX_SECS => {
            return Err(ApiError::bad_field(
                "secs",
                format!(
                    "must be at most {MAX_SECS} (one year; leave it out for a permanent block)"
                ),
            ))
        }
        Some(s) => Some(Duration::from_secs(s)),
    };
    view.admission.block(net, ttl);
    let mut kicked = 0usize;
    for s in view.sessions.snapshot() {
        if net.contains(&s.peer().ip().to_canonical()) {
            s.close(CloseReason::Kicked);
            kicked += 1;
        }
    }
    let mut recorded = false;
    let mut file_error = None;
    if let (None, Some(path)) = (ttl, view.block_file()) {
        let result = tokio::task::spawn_blocking(move || {
            blocklist::record_net(&path, net, "blocked from the console")
        })
        .await;
        match result {
            Ok(Ok(added)) => recorded = added,
            Ok(Err(e)) => file_error = Some(e.to_string()),
            Err(e) => file_error = Some(e.to_string()),
        }
        if let Some(e) = &file_error {
            error!(%net, error = %e, "console: permanent block not recorded in the block list file");
        }
    }
    let how = match ttl {
        Some(d) => format!("for {} s", d.as_secs()),
        None => "permanently".to_owned(),
    };
    action(
        &view,
        "block",
        format!("blocked {net} {how}, {kicked} session(s) closed"),
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "net": net.to_string(),
            "kind": if ttl.is_some() { "temporary" } else { "permanent" },
            "secs": ttl.map(|d| d.as_secs()),
            "kicked": kicked,
            "recorded_in_file": recorded,
            "file_error": file_error,
        })),
    )
        .into_response())
}

/// `DELETE /api/blocks/{net}` (`1.2.3.0/24` or `1.2.3.0%2F24`): lift a
/// run-time block and remove the block list file's line for exactly that
/// net (the file is then reloaded). A host inside a wider static range stays
/// blocked by that range.
pub async fn unblock(State(view): View, Path(net): Path<String>) -> Result<Response, ApiError> {
    let net = parse_net("net", &net)?;
    let runtime = view.admission.unblock(net);
    let mut file = false;
    if let Some(path) = view.block_file() {
        let admission = view.admission.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let removed = blocklist::remove_net(&path, net)?;
            if removed {
                blocklist::load_into(&path, &admission);
            }
            Ok::<bool, std::io::Error>(removed)
        })
        .await
        .map_err(|e| ApiError::internal(format!("block list file: {e}")))?;
        file = removed.map_err(|e| ApiError::internal(format!("block list file: {e}")))?;
    }
    if !runtime && !file {
        return Err(ApiError::not_found(format!(
            "net: {net} is not blocked by a run-time block or a line of its own in the block list file"
        )));
    }
    action(&view, "unblock", format!("unblocked {net}"));
    Ok(Json(json!({ "net": net.to_string(), "runtime": runtime, "file": file })).into_response())
}

/// `POST /api/reload`: re-read `gate.block_list_file` now.
pub async fn reload(State(view): View) -> Result<Response, ApiError> {
    if let Some(hook) = view.reload.get().cloned() {
        let outcome = tokio::task::spawn_blocking(move || hook())
            .await
            .map_err(|e| ApiError::internal(format!("config reload: {e}")))?;
        let what = if outcome.ok {
            format!(
                "config reloaded: {} applied, {} need a restart",
                outcome.applied.len(),
                outcome.restart_required.len()
            )
        } else {
            let e = outcome.error.as_ref();
            format!(
                "config reload refused: {}",
                e.map_or(String::new(), |e| format!("{}: {}", e.key, e.problem))
            )
        };
        action(&view, "reload", what);
        let status = if outcome.ok {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        let mut body = json!({ "config": outcome });
        if let Some(path) = view.block_file() {
            let admission = view.admission.clone();
            let loaded =
                tokio::task::spawn_blocking(move || blocklist::load_into(&path, &admission))
                    .await
                    .map_err(|e| ApiError::internal(format!("block list reload: {e}")))?;
            body["entries"] = json!(loaded.entries);
            body["bad_lines"] = json!(loaded.bad_lines);
            body["readable"] = json!(loaded.readable);
        }
        return Ok((status, Json(body)).into_response());
    }
    let Some(path) = view.block_file() else {
        return Err(ApiError::conflict(
            "gate.block_list_file is not set: there is no block list to reload",
        ));
    };
    let admission = view.admission.clone();
    let loaded = tokio::task::spawn_blocking(move || blocklist::load_into(&path, &admission))
        .await
        .map_err(|e| ApiError::internal(format!("block list reload: {e}")))?;
    action(
        &view,
        "reload",
        format!(
            "block list reloaded: {} entries, {} bad lines{}",
            loaded.entries,
            loaded.bad_lines,
            if loaded.readable {
                ""
            } else {
                " (file unreadable)"
            }
        ),
    );
    Ok(Json(json!({
        "entries": loaded.entries,
        "bad_lines": loaded.bad_lines,
        "readable": loaded.readable,
    }))
    .into_response())
}

/// Body of `POST /api/attack`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackRequest {
    /// `true` forces attack mode on, `false` off, `null` hands it back to the
    /// automatic rule; the field must be present.
    #[serde(deserialize_with = "present")]
    on: Option<Option<bool>>,
}

/// A field that must be given, `null` included: `Some(value)` whenever it is there.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<bool>>, D::Error> {
    Option::<bool>::deserialize(d).map(Some)
}

/// `POST /api/attack {"on": true | false | null}`: force attack mode on or off,
/// or back to automatic; the new limits apply to new connections at once.
pub async fn attack(State(view): View, body: Body) -> Result<Response, ApiError> {
    let req: AttackRequest = read_json(body).await?;
    let on = req
        .on
        .ok_or_else(|| ApiError::bad_field("on", "is required: true, false or null (automatic)"))?;
    view.attack.apply(&view.admission, view.attack.force(on));
    let how = match on {
        Some(true) => "forced attack mode on",
        Some(false) => "forced attack mode off",
        None => "attack mode back to automatic",
    };
    action(&view, "attack", how.to_owned());
    Ok(Json(json!({
        "on": view.attack.is_on(),
        "forced": on.is_some(),
    }))
    .into_response())
}

/// `gate.allow_list_file`, or 409 when none is configured.
fn allow_file(view: &GateView) -> Result<std::path::PathBuf, ApiError> {
    view.allow_file.clone().ok_or_else(|| {
        ApiError::conflict("gate.allow_list_file is not set: there is no allow list to edit")
    })
}

/// `GET /api/allow`: the allow list file's entries, in file order.
pub async fn allow_list(State(view): View) -> Result<Response, ApiError> {
    let path = allow_file(&view)?;
    let nets = tokio::task::spawn_blocking(move || blocklist::entries(&path))
        .await
        .map_err(|e| ApiError::internal(format!("allow list file: {e}")))?
        .map_err(|e| ApiError::internal(format!("allow list file: {e}")))?;
    let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
    Ok(Json(json!({ "total": list.len(), "allow": list })).into_response())
}

/// Body of `POST /api/allow`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRequest {
    /// `1.2.3.4` or `1.2.3.0/24`.
    net: String,
}

/// `POST /api/allow`: add a host or range to the allow list file (replaced
/// through a rename) and put the file in force now.
pub async fn allow(State(view): View, body: Body) -> Result<Response, ApiError> {
    let req: AllowRequest = read_json(body).await?;
    let net = parse_net("net", &req.net)?;
    let path = allow_file(&view)?;
    let admission = view.admission.clone();
    let added = tokio::task::spawn_blocking(move || {
        let added = blocklist::insert_net(&path, net, "allowed from the console")?;
        crate::allowlist::load_into(&path, &admission);
        Ok::<bool, std::io::Error>(added)
    })
    .await
    .map_err(|e| ApiError::internal(format!("allow list file: {e}")))?
    .map_err(|e| ApiError::internal(format!("allow list file: {e}")))?;
    action(&view, "allow", format!("allow-listed {net}"));
    Ok((
        StatusCode::CREATED,
        Json(json!({ "net": net.to_string(), "added": added })),
    )
        .into_response())
}

/// `DELETE /api/allow/{net}`: remove the allow list file's line for exactly
/// that net and put the file in force now.
pub async fn disallow(State(view): View, Path(net): Path<String>) -> Result<Response, ApiError> {
    let net = parse_net("net", &net)?;
    let path = allow_file(&view)?;
    let admission = view.admission.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let removed = blocklist::remove_net(&path, net)?;
        if removed {
            crate::allowlist::load_into(&path, &admission);
        }
        Ok::<bool, std::io::Error>(removed)
    })
    .await
    .map_err(|e| ApiError::internal(format!("allow list file: {e}")))?
    .map_err(|e| ApiError::internal(format!("allow list file: {e}")))?;
    if !removed {
        return Err(ApiError::not_found(format!(
            "net: {net} has no line of its own in the allow list file"
        )));
    }
    action(
        &view,
        "disallow",
        format!("removed {net} from the allow list"),
    );
    Ok(Json(json!({ "net": net.to_string(), "removed": true })).into_response())
}
