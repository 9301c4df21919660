//! The login messages, one file per message: each reads its request in a
//! `parse` (pure, no I/O) and carries it out in an `apply`.
//!
//! Reason codes follow the Delphi LoginSrv (PROTOCOL.md §5); the ones the
//! originals leave open (malformed request, server error) are in `code`.

mod account;
mod login;
mod password;
mod protocol;
mod recovery;
mod register;
mod select;

use std::time::{SystemTime, UNIX_EPOCH};

use mir2_proto::ids::MsgKind;
use mir2_proto::packet::Packet;
use mir2_proto::text::gbk_decode;

use crate::client::{Client, Reply};
use crate::config::Config;
use crate::reject::reject;
use crate::store::{AccountState, Attempt};

/// `recog` values of the failure replies.
pub mod code {
    /// SM_PASSWD_FAIL: no such account.
    pub const NO_ACCOUNT: i32 = 0;
    /// SM_PASSWD_FAIL: wrong password.
    pub const WRONG_PASSWORD: i32 = -1;
    /// SM_PASSWD_FAIL / SM_CHGPASSWD_FAIL / SM_GETBACKPASSWD_FAIL: locked after repeated failures.
    pub const LOCKED: i32 = -2;
    /// SM_PASSWD_FAIL: already logged in; the old client was kicked, retry.
    pub const ALREADY_ONLINE: i32 = -3;
    /// SM_PASSWD_FAIL: request unreadable (bad encoding, missing `/`).
    pub const MALFORMED: i32 = -4;
    /// Any failure reply: the server could not complete it (database error,
    /// or this client address used up `hashes_per_ip_per_minute`).
    pub const SERVER_ERROR: i32 = -5;
    /// SM_NEWID_FAIL: the name is taken.
    pub const NEWID_EXISTS: i32 = 0;
    /// SM_NEWID_FAIL / SM_UPDATEID_FAIL: invalid fields.
    pub const INVALID: i32 = -1;
    /// SM_CHGPASSWD_FAIL: unknown account or unacceptable new password.
    pub const CHG_REFUSED: i32 = 0;
    /// SM_CHGPASSWD_FAIL / SM_GETBACKPASSWD_FAIL: wrong old password / answers.
    pub const WRONG_SECRET: i32 = -1;
    /// SM_UPDATEID_FAIL: not logged in as that account.
    pub const NOT_LOGGED_IN: i32 = 0;
    /// SM_CHGPASSWD_FAIL / SM_GETBACKPASSWD_FAIL: the password was changed (or the
    /// account locked) by a simultaneous request; nothing was changed, retry.
    pub const CONFLICT: i32 = -6;
}

/// Why a request was refused before any work: the rejection reason (metric
/// label) and a detail for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// `loginsrv_rejected_total{reason}` label.
    pub reason: &'static str,
    /// What was wrong, for the log line (never a secret).
    pub detail: String,
}

impl Malformed {
    fn new(reason: &'static str, detail: impl Into<String>) -> Malformed {
        Malformed {
            reason,
            detail: detail.into(),
        }
    }

    /// This refusal, answered with `reply`.
    fn answer(self, reply: Reply) -> Refused {
        Refused {
            why: self,
            reply: Some(reply),
        }
    }
}

/// A request that is not carried out, and what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// Why (counted and logged by the caller).
    pub why: Malformed,
    /// The failure reply; `None` for messages that get no answer.
    pub reply: Option<Reply>,
}

/// A client request, read and checked, ready to be carried out.
#[derive(Debug)]
pub(crate) enum Command {
    /// CM_PROTOCOL.
    Protocol(protocol::Protocol),
    /// CM_IDPASSWORD.
    Login(login::Login),
    /// CM_ADDNEWUSER.
    Register(register::Register),
    /// CM_CHANGEPASSWORD.
    ChangePassword(password::ChangePassword),
    /// CM_UPDATEUSER.
    UpdateAccount(account::UpdateAccount),
    /// CM_SELECTSERVER.
    SelectServer(select::SelectServer),
    /// CM_GETBACKPASSWORD.
    RecoverPassword(recovery::RecoverPassword),
}

impl Command {
    /// Read the request `packet` of kind `kind`.
    pub fn parse(kind: MsgKind, packet: &Packet, config: &Config) -> Result<Command, Refused> {
        Ok(match kind {
            MsgKind::CmProtocol => Command::Protocol(protocol::Protocol::parse(packet)),
            MsgKind::CmIdPassword => Command::Login(login::Login::parse(packet)?),
            MsgKind::CmAddNewUser => Command::Register(register::Register::parse(
                packet,
                config.security.min_password_len,
            )?),
            MsgKind::CmChangePassword => Command::ChangePassword(password::ChangePassword::parse(
                packet,
                config.security.min_password_len,
            )?),
            MsgKind::CmUpdateUser => Command::UpdateAccount(account::UpdateAccount::parse(packet)?),
            MsgKind::CmSelectServer => Command::SelectServer(select::SelectServer::parse(packet)?),
            MsgKind::CmGetBackPassword => {
                Command::RecoverPassword(recovery::RecoverPassword::parse(packet)?)
            }
            other => {
                return Err(Refused {
                    why: Malformed::new(
                        "unexpected_ident",
                        format!("{} from a client", other.name()),
                    ),
                    reply: None,
                })
            }
        })
    }

    /// Carry the request out for `client`; the reply to send.
    pub async fn apply(self, client: &mut Client) -> Reply {
        match self {
            Command::Protocol(c) => c.apply(client),
            Command::Login(c) => c.apply(client).await,
            Command::Register(c) => c.apply(client).await,
            Command::ChangePassword(c) => c.apply(client).await,
            Command::UpdateAccount(c) => c.apply(client).await,
            Command::SelectServer(c) => c.apply(client).await,
            Command::RecoverPassword(c) => c.apply(client).await,
        }
    }
}

/// The decoded body as GBK text.
fn body_text(packet: &Packet) -> Result<String, Malformed> {
    let bytes = packet
        .body_decoded()
        .map_err(|e| Malformed::new("bad_body_encoding", e.to_string()))?;
    gbk_decode(&bytes).map_err(|_| Malformed::new("bad_body_text", "not GBK"))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Why an account cannot be used right now (see `usable_account`).
enum Unusable {
    /// No account by that name.
    NoAccount,
    /// Locked after repeated wrong secrets, until `locked_until`.
    Locked,
    /// The store failed; already logged and counted.
    DbError,
}

/// Which stored secret a guess is checked against.
#[derive(Debug, Clone, Copy)]
enum Secret {
    /// The password (login, password change).
    Password,
    /// The recovery answers (password recovery).
    Recovery,
}

/// Outcome of checking a password or recovery answers (see `verify_secret`).
enum Verdict {
    /// The secret matches, and the account was not locked meanwhile. Carries
    /// the password hash the guess was checked against: a change is made only
    /// if it is still the stored one.
    Correct {
        /// The stored password hash at the time of the check.
        password_hash: String,
    },
    /// It does not; counted toward the lockout.
    Wrong {
        /// This failure locked the account.
        locked: bool,
    },
    /// Locked (or its guesses for this window are taken): not evaluated, or
    /// evaluated right but locked by concurrent guesses in the meantime.
    Locked,
    /// Not checked (hash budget used up, no such secret) or the check failed; logged and counted.
    Unavailable,
}

impl Client {
    /// Spend one unit of this client address's Argon2 budget: in the shared
    /// database on PostgreSQL (so every instance draws on one budget), in
    /// this process on SQLite (one instance).
    async fn hash_budget(&self, what: &'static str) -> bool {
        let allowed = match (
            self.server.hash_budget.load_full(),
            self.server.store.postgres(),
        ) {
            (None, _) => true,
            (Some(_), Some(_)) => {
                let per_minute =
                    i64::from(self.server.config.load().security.hashes_per_ip_per_minute);
                let ip = self.ip.to_canonical().to_string();
                match self
                    .server
                    .store
                    .spend_ip_budget(&ip, per_minute, unix_now())
                    .await
                {
                    Ok(allowed) => allowed,
                    Err(e) => {
                        self.db_error("hash budget", &e);
                        return false;
                    }
                }
            }
            (Some(budget), None) => budget.check(self.ip.to_canonical(), std::time::Instant::now()),
        };
        if allowed {
            return true;
        }
        reject(
            "ip_hash_budget",
            format_args!("{} {what}: hashes_per_ip_per_minute used up", self.who()),
        );
        false
    }

    /// A cheap first look: the account exists and is not locked (and whether it
    /// has recovery answers). Only a hint: `verify_secret` decides atomically.
    async fn usable_account(&self, key: &str) -> Result<AccountState, Unusable> {
        let state = match self.server.store.state(key).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(Unusable::NoAccount),
            Err(e) => {
                self.db_error("account lookup", &e);
                return Err(Unusable::DbError);
            }
        };
        if state.locked_until > unix_now() {
            return Err(Unusable::Locked);
        }
        Ok(state)
    }

    /// Judge a guess at account `key`'s password or recovery answers: spend the
    /// client address's hash budget, claim the attempt in the database (counted
    /// as a failure until proven right, see `Store::claim_attempt`), verify, and
    /// on success clear the count unless the account locked meanwhile. The one
    /// place a password or recovery answer is judged.
    async fn verify_secret(
        &self,
        what: &'static str,
        key: &str,
        which: Secret,
        guess: String,
    ) -> Verdict {
        if !self.hash_budget(what).await {
            return Verdict::Unavailable;
        }
        let config = self.server.config.load();
        let sec = &config.security;
        let max = i64::from(sec.max_failed_logins);
        let now = unix_now();
        let lock_until = now.saturating_add(i64::try_from(sec.lockout_secs).unwrap_or(i64::MAX));
        let auth = match self
            .server
            .store
            .claim_attempt(key, max, now, lock_until)
            .await
        {
            Ok(Attempt::Claimed(auth)) => auth,
            Ok(Attempt::Locked) => return Verdict::Locked,
            Ok(Attempt::NoAccount) => {
                reject(
                    "account_vanished",
                    format_args!("{} {what}: no account {key}", self.who()),
                );
                return Verdict::Unavailable;
            }
            Err(e) => {
                self.db_error("attempt claim", &e);
                return Verdict::Unavailable;
            }
        };
        let stored = match which {
            Secret::Password => Some(auth.password_hash.clone()),
            Secret::Recovery => auth.recovery_hash,
        };
        let Some(stored) = stored else {
            reject(
                "recovery_disabled",
                format_args!("{}: {key} has no recovery answers", self.who()),
            );
            return Verdict::Unavailable;
        };
        match self.server.hasher.verify(guess, stored).await {
            Ok(true) => {}
            Ok(false) => {
                return Verdict::Wrong {
                    locked: self.count_failure(key, max, lock_until).await,
                };
            }
            Err(e) => {
                self.db_error(what, &e);
                return Verdict::Unavailable;
            }
        }
        match self.server.store.confirm_success(key, unix_now()).await {
            Ok(true) => Verdict::Correct {
                password_hash: auth.password_hash,
            },
            Ok(false) => {
                reject(
                    "locked_while_verifying",
                    format_args!("{} {what}: {key} locked by concurrent guesses", self.who()),
                );
                Verdict::Locked
            }
            Err(e) => {
                self.db_error("failure reset", &e);
                Verdict::Unavailable
            }
        }
    }

    /// A claimed guess was wrong. It was counted when claimed; once the count is
    /// at the limit, the account locks. `true` if this failure locked it.
    async fn count_failure(&self, key: &str, max: i64, lock_until: i64) -> bool {
        match self
            .server
            .store
            .lock_if_exhausted(key, max, lock_until)
            .await
        {
            Ok(true) => {
                reject(
                    "account_locked",
                    format_args!("{}: account {key} locked", self.who()),
                );
                true
            }
            Ok(false) => false,
            Err(e) => {
                self.db_error("failure count", &e);
                false
            }
        }
    }

    /// Hash `password` and make it the account's password if its hash is still
    /// `expected`; the failure code otherwise (logged).
    async fn store_new_password(
        &self,
        key: &str,
        expected: &str,
        password: String,
    ) -> Result<(), i32> {
        let hash = match self.server.hasher.hash(password).await {
            Ok(h) => h,
            Err(e) => {
                self.db_error("password hash", &e);
                return Err(code::SERVER_ERROR);
            }
        };
        match self
            .server
            .store
            .set_password(key, expected, &hash, unix_now())
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                reject(
                    "password_changed_concurrently",
                    format_args!("{}: {key} changed by a simultaneous request", self.who()),
                );
                Err(code::CONFLICT)
            }
            Err(e) => {
                self.db_error("password update", &e);
                Err(code::SERVER_ERROR)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Requests as a client would send them, for the `parse` tests.
    use bytes::Bytes;
    use mir2_proto::ids::MsgKind;
    use mir2_proto::packet::Packet;
    use mir2_proto::{codec, MsgHeader};

    /// A packet of `kind` whose body is `parts`, each 6-bit encoded separately.
    pub fn packet(kind: MsgKind, recog: i32, parts: &[&[u8]]) -> Packet {
        let body: Vec<u8> = parts.iter().flat_map(|p| codec::encode(p)).collect();
        Packet {
            seq: Some(1),
            header: MsgHeader::new(kind.delphi_id(), recog, 0, 0, 0),
            body: Bytes::from(body),
        }
    }

    /// A packet whose body is GBK `text`.
    pub fn text(kind: MsgKind, text: &str) -> Packet {
        let gbk = mir2_proto::text::gbk_encode(text).unwrap_or_default();
        packet(kind, 0, &[&gbk])
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::packet;
    use super::*;
    use bytes::Bytes;

    #[test]
    fn server_messages_from_a_client_get_no_answer() {
        let p = packet(MsgKind::SmPassOkSelectServer, 0, &[]);
        let refused = Command::parse(MsgKind::SmPassOkSelectServer, &p, &Config::default())
            .err()
            .map(|r| (r.why.reason, r.reply));
        assert_eq!(refused, Some(("unexpected_ident", None)));
    }

    #[test]
    fn undecodable_bodies_are_malformed() {
        let mut p = packet(MsgKind::CmIdPassword, 0, &[]);
        p.body = Bytes::from_static(b"\x01\x01");
        assert_eq!(
            body_text(&p).map_err(|m| m.reason),
            Err("bad_body_encoding")
        );
        let p = packet(MsgKind::CmIdPassword, 0, &[b"\xff\xff"]);
        assert_eq!(body_text(&p).map_err(|m| m.reason), Err("bad_body_text"));
    }
}
