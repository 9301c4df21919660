//! `GET /`: the status page, rendered on the server from [`Status`]; every
//! string on it (addresses, reasons, event details) goes through escaping.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;
use console::html::{self, badge, card, duration, figure, Table};

use super::status::Status;
use super::GateView;

/// `GET /`.
pub async fn index(State(view): State<Arc<GateView>>) -> Html<String> {
    let status = view.status();
    #[allow(unused_mut)]
    let mut extra = String::new();
    #[cfg(feature = "embedded")]
    if let Some(l) = &view.loginsrv {
        extra = l.page_section();
    }
    Html(render(&status, &extra))
}

fn ago(secs: u64) -> String {
    format!("{} ago", duration(secs))
}

/// The page for `s`; `extra` is a further (already escaped) section.
pub fn render(s: &Status, extra: &str) -> String {
    let mut main = String::new();

    let figs = [
        figure("sessions-live", s.sessions.live, "live sessions"),
        figure("sessions-opened", s.sessions.opened_per_sec, "opened / s"),
        figure("sessions-closed", s.sessions.closed_per_sec, "closed / s"),
        figure("sessions-max", s.sessions.max, "max sessions"),
    ]
    .concat();
    main.push_str(&card(
        "Sessions",
        &format!("<div class=\"figs\">{figs}</div>"),
    ));

    let l = &s.link;
    let state = badge(if l.up { "up" } else { "down" }, l.up);
    let since = l
        .since_secs
        .map_or_else(|| "never connected".to_owned(), ago);
    let rtt = l
        .heartbeat_rtt_ms
        .map_or_else(|| "not measured yet".to_owned(), |ms| format!("{ms} ms"));
    let mut history = Table::new(&["when", "change", "detail"]);
    for c in l.history.iter().take(8) {
        history.row([ago(c.ago_secs), c.kind.replace('_', " "), c.detail.clone()]);
    }
    main.push_str(&card(
        "LoginSrv link",
        &format!(
            "<dl><dt>state</dt><dd id=\"link-state\">{state} <span class=\"muted\">{}</span></dd>\
             <dt>server</dt><dd>{}{}</dd><dt>dialect</dt><dd>{}</dd>\
             <dt>connects</dt><dd>{}</dd><dt>heartbeat</dt><dd>{}</dd>\
             <dt>frames / write</dt><dd>{}</dd><dt>dropped replies</dt><dd>{}</dd>\
             <dt>bad frames</dt><dd>{}</dd></dl><h2 style=\"margin-top:10px\">History</h2>{}",
            html::esc(since),
            html::esc(&l.server),
            if l.embedded { " (embedded)" } else { "" },
            html::esc(&l.dialect),
            l.connects,
            html::esc(rtt),
            l.frames_per_write,
            l.replies_dropped,
            l.parse_errors,
            history.render("link-history", "no change yet"),
        ),
    ));

    let mut backends = Table::new(&[
        "backend",
        "dialect",
        "state",
        "#sessions",
        "connects",
        "heartbeat",
        "frames / write",
        "dropped replies",
        "bad frames",
        "refused at connect",
        "silent windows",
    ]);
    for b in &s.backends {
        let state = match (b.up, b.answered) {
            (true, true) => "up",
            (true, false) => "connected, no frame yet",
            (false, _) => "down",
        };
        backends.row([
            b.server.clone(),
            b.dialect.clone(),
            state.to_owned(),
            b.sessions.to_string(),
            b.connects.to_string(),
            b.heartbeat_rtt_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms")),
            b.frames_per_write.to_string(),
            b.replies_dropped.to_string(),
            b.parse_errors.to_string(),
            b.early_closes.to_string(),
            b.silent.to_string(),
        ]);
    }
    main.push_str(&card("Backends", &backends.render("backends", "none")));

    let mut closes = Table::new(&["reason", "#sessions"]);
    let mut by_count: Vec<_> = s.closes.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1));
    for (reason, n) in by_count {
        closes.row([reason.replace('_', " "), n.to_string()]);
    }
    let mut refused = Table::new(&["reason", "#clients"]);
    for (reason, n) in &s.refusals {
        refused.row([reason.replace('_', " "), n.to_string()]);
    }
    main.push_str(&card(
        "Closes by reason",
        &format!(
            "{}<h2 style=\"margin-top:10px\">Refused at open</h2>{}",
            closes.render("closes", "no session closed yet"),
            refused.render("refusals", "none")
        ),
    ));

    let a = &s.attack;
    let c = &a.config;
    main.push_str(&card(
        "Attack mode",
        &format!(
            "<dl><dt>state</dt><dd id=\"attack-state\">{} <span class=\"muted\">{}</span></dd>\
             <dt>connections / s</dt><dd id=\"attack-rate\">{}</dd>\
             <dt>on at</dt><dd>{} / s</dd><dt>off after</dt><dd>{} s under {} / s</dd>\
             <dt>while on</dt><dd>{} per IP, first message within {} s{}</dd></dl>",
            badge(if a.on { "on" } else { "off" }, !a.on),
            html::esc(a.mode.replace('_', " ")),
            a.conn_rate,
            c.enter_conn_rate,
            c.exit_after_secs,
            c.exit_conn_rate,
            c.max_conn_per_ip,
            c.first_packet_timeout_secs,
            if c.allow_listed_only {
                ", allow-listed sources only"
            } else {
                ""
            },
        ),
    ));

    let mut ips = Table::new(&["source IP", "#sessions"]);
    for ip in &s.top_ips {
        ips.row([ip.ip.clone(), ip.sessions.to_string()]);
    }
    main.push_str(&card(
        "Top source IPs",
        &ips.render("top-ips", "no live session"),
    ));

    let b = &s.blocks;
    let mut blocks = Table::new(&["net", "kind", "time left"]);
    for v in &b.list {
        let left = v
            .secs_left
            .map_or_else(|| "until removed".to_owned(), duration);
        blocks.row([v.net.clone(), v.kind.to_owned(), left]);
    }
    let total = b.static_count + b.temporary_count + b.permanent_count;
    let more = if total > b.list.len() {
        format!(
            "<p class=\"muted\">showing {} of {total}; all of them: GET /api/blocks</p>",
            b.list.len()
        )
    } else {
        String::new()
    };
    main.push_str(&card(
        "Blocks",
        &format!(
            "<div class=\"figs\">{}{}{}</div>{}{more}",
            figure("blocks-temporary", b.temporary_count, "temporary"),
            figure("blocks-permanent", b.permanent_count, "permanent"),
            figure("blocks-static", b.static_count, "from the file"),
            blocks.render("blocks", "nothing blocked"),
        ),
    ));

    main.push_str(extra);

    let mut events = Table::new(&["when", "event", "detail"]);
    for e in &s.events {
        events.row([ago(e.ago_secs), e.kind.replace('_', " "), e.detail.clone()]);
    }
    main.push_str(&format!(
        "<section class=\"card wide\"><h2>Recent events</h2>{}</section>",
        events.render("events", "nothing notable yet")
    ));

    let console = format!(
        "state changes {}; {} refused for a bad token",
        if s.console.token_set {
            "need the bearer token"
        } else {
            "need no token (loopback console)"
        },
        s.console.unauthorized
    );
    main.push_str(&format!(
        "<p class=\"muted\" style=\"grid-column:1/-1\">{} · metrics at /metrics · JSON at /api/status</p>",
        html::esc(console)
    ));

    let subtitle = format!(
        "v{} · up {} · clients on {} · console {}",
        s.version,
        duration(s.uptime_secs),
        s.listen.join(", "),
        s.admin
    );
    html::page("logingate", &subtitle, &main)
}
