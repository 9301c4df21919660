//! CM_SELECTSERVER: server name; answers the SelGate and a session id.

use mir2_proto::ids::MsgKind;
use mir2_proto::packet::Packet;

use super::{body_text, Refused};
use crate::client::{Client, Reply};
use crate::cluster::{publish, Event};
use crate::reject::reject;
use crate::routes::Selection;

/// A server selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SelectServer {
    /// The server's name as listed in SM_PASSOK_SELECTSERVER.
    pub name: String,
}

fn fail() -> Reply {
    Reply::code(MsgKind::SmStartFail, 0)
}

impl SelectServer {
    /// The body is the server name.
    pub fn parse(packet: &Packet) -> Result<SelectServer, Refused> {
        body_text(packet)
            .map(|name| SelectServer { name })
            .map_err(|m| m.answer(fail()))
    }

    /// Issue a session id on that server if this client is (still) logged in.
    pub async fn apply(self, client: &mut Client) -> Reply {
        let name = self.name;
        let Some(key) = client.account.clone() else {
            reject(
                "select_not_logged_in",
                format_args!("{}: CM_SELECTSERVER", client.who()),
            );
            return fail();
        };
        if !client.server.online.holds(&key, client.token) {
            // Kicked by a newer login of the same account.
            client.account = None;
            reject(
                "select_after_kick",
                format_args!("{}: CM_SELECTSERVER", client.who()),
            );
            return fail();
        }
        if let Some(game) = &client.server.game {
            let max = client
                .server
                .routes
                .servers()
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.capacity);
            if max.is_some_and(|max| game.over_limit(&name, max)) {
                reject(
                    "server_full",
                    format_args!("{}: server {name:?} above max_users", client.who()),
                );
                return fail();
            }
            // Selecting again replaces the account's session: its holder drops the old one.
            if let Some((session_id, server)) =
                crate::game::take_account_session(&client.server, &key)
            {
                publish(
                    &client.server,
                    Event::Close {
                        origin: client.server.cluster.instance_id,
                        server,
                        account: key.clone(),
                        session_id,
                    },
                )
                .await;
            }
        }
        let gate = Some(client.gate.peer().ip());
        match client.server.routes.select(&key, &name, gate) {
            Selection::Ok {
                selgate,
                session_id,
            } => {
                let state = &client.server;
                match state
                    .store
                    .set_online_session(
                        &key,
                        state.cluster.instance_id,
                        client.token,
                        &name,
                        session_id,
                    )
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        // A newer login (on any instance) took the account meanwhile.
                        state.routes.end_session(session_id, &key);
                        state.online.release(&key, client.token);
                        client.account = None;
                        reject(
                            "select_after_kick",
                            format_args!("{}: CM_SELECTSERVER", client.who()),
                        );
                        return fail();
                    }
                    Err(e) => {
                        state.routes.end_session(session_id, &key);
                        client.db_error("session record", &e);
                        return fail();
                    }
                }
                metrics::counter!("loginsrv_sessions_issued_total").increment(1);
                if state.game.is_some() {
                    publish(
                        state,
                        Event::Open {
                            origin: state.cluster.instance_id,
                            server: name.clone(),
                            account: key.clone(),
                            session_id,
                            ip: client.ip,
                        },
                    )
                    .await;
                }
                tracing::info!(account = %key, server = %name, %selgate, "{}: server selected", client.who());
                let body = format!("{}/{}/{}", selgate.ip(), selgate.port(), session_id);
                Reply {
                    kind: MsgKind::SmSelectServerOk,
                    recog: session_id,
                    series: 0,
                    body: body.into_bytes(),
                }
            }
            Selection::Unknown => {
                reject(
                    "unknown_server",
                    format_args!("{}: no server {name:?}", client.who()),
                );
                fail()
            }
            Selection::Full => {
                reject(
                    "server_full",
                    format_args!("{}: server {name:?} full", client.who()),
                );
                fail()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{packet, text};

    #[test]
    fn the_body_is_the_name() {
        let s = SelectServer::parse(&text(MsgKind::CmSelectServer, "传奇"));
        assert_eq!(
            s.ok(),
            Some(SelectServer {
                name: "传奇".into()
            })
        );
        let bad = SelectServer::parse(&packet(MsgKind::CmSelectServer, 0, &[b"\xff\xfe"]));
        assert_eq!(
            bad.err().map(|r| (r.why.reason, r.reply)),
            Some(("bad_body_text", Some(fail())))
        );
    }
}
