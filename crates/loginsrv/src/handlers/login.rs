//! CM_IDPASSWORD: `account/password`; answers the server list.

use mir2_proto::ids::MsgKind;
use mir2_proto::link::ServerFrame;
use mir2_proto::packet::Packet;
use mir2_proto::text::gbk_encode;

use super::{body_text, code, Malformed, Refused, Secret, Unusable, Verdict};
use crate::client::{Client, Reply};
use crate::cluster::{publish, Event};
use crate::online::Holder;
use crate::reject::reject;
use crate::store::{OnlineClaim, OnlineOutcome};
use crate::validate;

/// A login request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login {
    /// Lookup key of the account (see `validate::account_key`).
    pub key: String,
    /// The password as typed.
    pub password: String,
}

fn fail(recog: i32) -> Reply {
    Reply::code(MsgKind::SmPasswdFail, recog)
}

impl Login {
    /// `account/password`; the account name must be one a registration could create.
    pub fn parse(packet: &Packet) -> Result<Login, Refused> {
        let text = body_text(packet).map_err(|m| m.answer(fail(code::MALFORMED)))?;
        let Some((account, password)) = text.split_once('/') else {
            return Err(Malformed::new("bad_login_body", "no '/'").answer(fail(code::MALFORMED)));
        };
        validate::account(account).map_err(|e| {
            Malformed::new(e.as_str(), "login with invalid account name")
                .answer(fail(code::NO_ACCOUNT))
        })?;
        Ok(Login {
            key: validate::account_key(account),
            password: password.to_owned(),
        })
    }

    /// Check the password, claim the account for this client (kicking an older
    /// holder) and answer the server list.
    pub async fn apply(self, client: &mut Client) -> Reply {
        let Login { key, password } = self;
        match client.usable_account(&key).await {
            Ok(_) => {}
            Err(Unusable::NoAccount) => {
                client.server.summary.login("no_account");
                reject(
                    "unknown_account",
                    format_args!("{}: login for unknown account {key}", client.who()),
                );
                return fail(code::NO_ACCOUNT);
            }
            Err(Unusable::Locked) => {
                client.server.summary.login("locked");
                return fail(code::LOCKED);
            }
            Err(Unusable::DbError) => return fail(code::SERVER_ERROR),
        }
        match client
            .verify_secret("CM_IDPASSWORD", &key, Secret::Password, password)
            .await
        {
            Verdict::Correct { .. } => {}
            Verdict::Wrong { locked } => {
                client.server.summary.login("wrong_password");
                reject(
                    "wrong_password",
                    format_args!("{}: wrong password for {key}", client.who()),
                );
                return fail(if locked {
                    code::LOCKED
                } else {
                    code::WRONG_PASSWORD
                });
            }
            Verdict::Locked => {
                client.server.summary.login("locked");
                return fail(code::LOCKED);
            }
            Verdict::Unavailable => return fail(code::SERVER_ERROR),
        }
        if let Some(prev) = client.account.take() {
            if prev != key {
                client.release_account(&prev).await;
            }
        }
        claim(client, key).await
    }
}

/// Make this client the account's holder in `online_sessions`, whatever
/// instance holds it now. An older holder is kicked through the instance
/// that holds it, and its session closed at the game servers; this login is
/// then answered "already online" and the player retries, as with the
/// Delphi servers.
async fn claim(client: &mut Client, key: String) -> Reply {
    let state = &client.server;
    let me = state.cluster.instance_id;
    let game_mode = state.game.is_some();
    let row = OnlineClaim {
        key: &key,
        instance_id: me,
        token: client.token,
        gate: client.gate.peer().to_string(),
        client_id: client.id,
        client_ip: client.ip.to_string(),
        now: super::unix_now(),
    };
    // The same client logging in again keeps its row, unless a game server
    // holds a session of it (then that session is closed, as for any other).
    let outcome = state
        .store
        .claim_online(&row, |old| !game_mode || old.session_id.is_none())
        .await;
    let old = match outcome {
        Ok(OnlineOutcome::Claimed) => {
            let holder = Holder {
                gate: client.gate.clone(),
                client: client.id,
                token: client.token,
            };
            if let Some(stale) = state.online.insert(&key, holder) {
                // Its row was taken by a login on another instance; its kick may still be on its way.
                let _ = stale.gate.try_send(ServerFrame::Kick { id: stale.client });
            }
            state.summary.login("ok");
            tracing::info!(account = %key, "{}: logged in", client.who());
            client.account = Some(key);
            return server_list(client);
        }
        Ok(OnlineOutcome::Evicted(old)) => old,
        Err(e) => {
            client.db_error("online claim", &e);
            return fail(code::SERVER_ERROR);
        }
    };
    state.summary.login("duplicate");
    tracing::info!(
        account = %key,
        holder_instance = old.instance_id,
        session = old.session_id,
        "{}: duplicate login, the older client is kicked and its session closed",
        client.who()
    );
    if let Some(token) = old
        .token
        .filter(|t| old.instance_id != me || *t != client.token)
    {
        publish(
            state,
            Event::Kick {
                instance: old.instance_id,
                account: key.clone(),
                token,
            },
        )
        .await;
    }
    if let (true, Some(server), Some(session_id)) = (game_mode, old.server, old.session_id) {
        publish(
            state,
            Event::Close {
                origin: me,
                server,
                account: key.clone(),
                session_id,
            },
        )
        .await;
    }
    state.online.release(&key, client.token);
    fail(code::ALREADY_ONLINE)
}

/// SM_PASSOK_SELECTSERVER: series = count, body `name/status/…/`.
fn server_list(client: &Client) -> Reply {
    let (count, list) = match &client.server.game {
        // Live counts from the game servers of each name.
        Some(game) => client
            .server
            .routes
            .server_list_by(|_, s, _| game.status(&s.name, s.capacity)),
        None => client.server.routes.server_list(),
    };
    // Server names were checked to be GBK at startup.
    let body = gbk_encode(&list).unwrap_or_default();
    Reply {
        kind: MsgKind::SmPassOkSelectServer,
        recog: 0,
        series: count,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::{packet, text};

    fn refusal(p: &Packet) -> Option<(&'static str, i32)> {
        Login::parse(p)
            .err()
            .map(|r| (r.why.reason, r.reply.map_or(i32::MIN, |r| r.recog)))
    }

    #[test]
    fn account_and_password() {
        let login = Login::parse(&text(MsgKind::CmIdPassword, "Player_1/pass/word")).ok();
        assert_eq!(
            login,
            Some(Login {
                key: "player_1".into(),
                password: "pass/word".into()
            }),
            "the account ends at the first '/'"
        );
        let cjk = Login::parse(&text(MsgKind::CmIdPassword, "传奇/pw")).ok();
        assert_eq!(cjk.map(|l| l.key), Some("传奇".into()));
    }

    #[test]
    fn unreadable_logins() {
        assert_eq!(
            refusal(&text(MsgKind::CmIdPassword, "no-slash-here")),
            Some(("bad_login_body", code::MALFORMED))
        );
        assert_eq!(
            refusal(&packet(MsgKind::CmIdPassword, 0, &[b"\xff\xfe/x"])),
            Some(("bad_body_text", code::MALFORMED))
        );
        assert_eq!(
            refusal(&text(MsgKind::CmIdPassword, "bad$name/pw")),
            Some(("bad_character", code::NO_ACCOUNT))
        );
        assert_eq!(
            refusal(&text(MsgKind::CmIdPassword, "/pw")),
            Some(("bad_length", code::NO_ACCOUNT))
        );
    }
}
