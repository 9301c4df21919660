//! The login messages: what each one checks, stores and answers.
//!
//! Reason codes follow the Delphi LoginSrv (PROTOCOL.md §5); the ones the
//! originals leave open (malformed request, server error) are in `code`.

use std::time::{SystemTime, UNIX_EPOCH};

use mir2_proto::codec;
use mir2_proto::ids::MsgKind;
use mir2_proto::packet::Packet;
use mir2_proto::records::{UserEntry, UserEntryAdd};
use mir2_proto::text::{gbk_decode, gbk_encode};
use rand::Rng as _;

use crate::gate::Outbound;
use crate::online::{Claim, Holder};
use crate::reject::reject;
use crate::routes::Selection;
use crate::session::{Client, Reply};
use crate::store::{AccountAuth, NewAccount, Profile};
use crate::validate;

/// `recog` values of the failure replies.
pub mod code {
    /// SM_PASSWD_FAIL: no such account.
    pub const NO_ACCOUNT: i32 = 0;
    /// SM_PASSWD_FAIL: wrong password.
    pub const WRONG_PASSWORD: i32 = -1;
    /// SM_PASSWD_FAIL / SM_CHGPASSWD_FAIL / SM_GETBACKPASSWD_FAIL: locked after repeated failures.
    pub const LOCKED: i32 = -2;
    /// SM_PASSWD_FAIL: already logged in; the old session was kicked, retry.
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
}

/// TUserEntry text fields and their Pascal capacities (for validation).
const USER_NAME_MAX: usize = 20;
const PHONE_MAX: usize = 14;
const QUIZ_MAX: usize = 20;
const ANSWER_MAX: usize = 12;
const EMAIL_MAX: usize = 40;
const BIRTHDAY_MAX: usize = 10;
const MOBILE_MAX: usize = 13;
const MEMO_MAX: usize = 20;

/// Length of a generated recovery password (fits the client's 10-byte field).
const RECOVERY_PASSWORD_LEN: usize = 8;
/// Unambiguous characters for generated passwords (no 0/O, 1/l/I).
const PASSWORD_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Why an account cannot be used right now (see `usable_account`).
enum Unusable {
    /// No account by that name.
    NoAccount,
    /// Locked after repeated wrong passwords, until `locked_until`.
    Locked,
    /// The store failed; already logged and counted.
    DbError,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A registration's decoded and validated records.
struct Registration {
    /// TUserEntry: account, password, contact, first recovery question.
    entry: UserEntry,
    /// TUserEntryAdd: second question, birthday, more contact (empty if not sent).
    add: UserEntryAdd,
}

impl Registration {
    fn profile(&self) -> Profile {
        Profile {
            user_name: self.entry.user_name.clone(),
            phone: self.entry.phone.clone(),
            email: self.entry.email.clone(),
            mobile_phone: self.add.mobile_phone.clone(),
            memo: self.add.memo.clone(),
            memo2: self.add.memo2.clone(),
        }
    }

    /// The secret CM_GETBACKPASSWORD must reproduce; `None` without a first answer.
    fn recovery_secret(&self) -> Option<String> {
        if self.entry.answer.is_empty() {
            return None;
        }
        Some(recovery_secret(
            &self.entry.quiz,
            &self.entry.answer,
            &self.add.quiz2,
            &self.add.answer2,
            &self.add.birthday,
        ))
    }
}

/// Quiz texts are part of the secret, so the questions need not be stored.
fn recovery_secret(
    quiz1: &str,
    answer1: &str,
    quiz2: &str,
    answer2: &str,
    birthday: &str,
) -> String {
    format!("{quiz1}\t{answer1}\t{quiz2}\t{answer2}\t{birthday}")
}

impl Client {
    /// Decoded body as GBK text, or `None` (counted) when unreadable.
    fn body_text(&self, packet: &Packet, what: &'static str) -> Option<String> {
        let bytes = match packet.body_decoded() {
            Ok(b) => b,
            Err(e) => {
                reject(
                    "bad_body_encoding",
                    format_args!("{} {what}: {e}", self.who()),
                );
                return None;
            }
        };
        match gbk_decode(&bytes) {
            Ok(t) => Some(t),
            Err(_) => {
                reject(
                    "bad_body_text",
                    format_args!("{} {what}: not GBK", self.who()),
                );
                None
            }
        }
    }

    /// Spend one unit of this client address's Argon2 budget.
    fn hash_budget(&self, what: &'static str) -> bool {
        if self.shared.throttle.allow(self.ip) {
            return true;
        }
        reject(
            "ip_hash_budget",
            format_args!("{} {what}: hashes_per_ip_per_minute used up", self.who()),
        );
        false
    }

    /// The account behind `key` if it exists and is not locked, with the time it was
    /// checked at: the one place that decides whether an account may be used now.
    async fn usable_account(&self, key: &str) -> Result<(AccountAuth, i64), Unusable> {
        let auth = match self.shared.store.auth(key).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(Unusable::NoAccount),
            Err(e) => {
                self.db_error("account lookup", &e);
                return Err(Unusable::DbError);
            }
        };
        let now = unix_now();
        if auth.locked_until > now {
            return Err(Unusable::Locked);
        }
        Ok((auth, now))
    }

    fn db_error(&self, what: &str, e: &dyn std::fmt::Display) {
        metrics::counter!("loginsrv_db_errors_total").increment(1);
        tracing::error!(error = %e, "{}: {what} failed", self.who());
    }

    /// CM_PROTOCOL: recog is the client build date.
    pub(crate) fn protocol(&mut self, version: i32) -> Reply {
        let min = self.shared.config.min_client_version;
        if version < min {
            reject(
                "client_too_old",
                format_args!("{}: build {version} < min_client_version {min}", self.who()),
            );
            self.refused = true;
            return Reply::code(MsgKind::SmCertificationFail, 0);
        }
        self.refused = false;
        Reply::code(MsgKind::SmCertificationSuccess, 0)
    }

    /// CM_IDPASSWORD: `account/password`.
    pub(crate) async fn id_password(&mut self, packet: &Packet) -> Reply {
        let fail = |recog| Reply::code(MsgKind::SmPasswdFail, recog);
        let Some(text) = self.body_text(packet, "CM_IDPASSWORD") else {
            return fail(code::MALFORMED);
        };
        let Some((account, password)) = text.split_once('/') else {
            reject("bad_login_body", format_args!("{}: no '/'", self.who()));
            return fail(code::MALFORMED);
        };
        if let Err(e) = validate::account(account) {
            reject(
                e.as_str(),
                format_args!("{}: login with invalid account name", self.who()),
            );
            return fail(code::NO_ACCOUNT);
        }
        let key = validate::account_key(account);
        let (auth, now) = match self.usable_account(&key).await {
            Ok(found) => found,
            Err(Unusable::NoAccount) => {
                metrics::counter!("loginsrv_logins_total", "result" => "no_account").increment(1);
                reject(
                    "unknown_account",
                    format_args!("{}: login for unknown account {key}", self.who()),
                );
                return fail(code::NO_ACCOUNT);
            }
            Err(Unusable::Locked) => {
                metrics::counter!("loginsrv_logins_total", "result" => "locked").increment(1);
                return fail(code::LOCKED);
            }
            Err(Unusable::DbError) => return fail(code::SERVER_ERROR),
        };
        if !self.hash_budget("CM_IDPASSWORD") {
            return fail(code::SERVER_ERROR);
        }
        match self
            .shared
            .hasher
            .verify(password.to_owned(), auth.password_hash)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                metrics::counter!("loginsrv_logins_total", "result" => "wrong_password")
                    .increment(1);
                reject(
                    "wrong_password",
                    format_args!("{}: wrong password for {key}", self.who()),
                );
                return fail(
                    self.count_failure(&key, now)
                        .await
                        .unwrap_or(code::WRONG_PASSWORD),
                );
            }
            Err(e) => {
                self.db_error("password verification", &e);
                return fail(code::SERVER_ERROR);
            }
        }
        if auth.failed_logins > 0 {
            if let Err(e) = self.shared.store.reset_failures(&key).await {
                self.db_error("failure reset", &e);
            }
        }
        if let Some(prev) = self.account.take() {
            if prev != key {
                self.shared.online.release(&prev, self.token);
            }
        }
        let holder = Holder {
            gate: self.gate.clone(),
            client: self.id,
            token: self.token,
        };
        match self.shared.online.claim(&key, holder) {
            Claim::Evicted(old) => {
                tracing::info!(account = %key, "{}: duplicate login, kicking the older session", self.who());
                metrics::counter!("loginsrv_logins_total", "result" => "duplicate").increment(1);
                if !old.gate.try_send(Outbound::Kick { id: old.client }) {
                    // Its link is gone or stalled; the session is evicted either way.
                    reject(
                        "kick_not_delivered",
                        format_args!(
                            "gate {} client {}: kick not queued",
                            old.gate.peer(),
                            old.client
                        ),
                    );
                }
                fail(code::ALREADY_ONLINE)
            }
            Claim::Claimed => {
                metrics::counter!("loginsrv_logins_total", "result" => "ok").increment(1);
                tracing::info!(account = %key, "{}: logged in", self.who());
                self.account = Some(key);
                self.server_list()
            }
        }
    }

    /// Count a wrong password / answer; `Some(LOCKED)` if this one locked the account.
    async fn count_failure(&self, key: &str, now: i64) -> Option<i32> {
        let sec = &self.shared.config.security;
        let until = now.saturating_add(i64::try_from(sec.lockout_secs).unwrap_or(i64::MAX));
        match self
            .shared
            .store
            .record_failure(key, i64::from(sec.max_failed_logins), until)
            .await
        {
            Ok(locked_until) if locked_until > now => {
                reject(
                    "account_locked",
                    format_args!("{}: account {key} locked", self.who()),
                );
                Some(code::LOCKED)
            }
            Ok(_) => None,
            Err(e) => {
                self.db_error("failure count", &e);
                None
            }
        }
    }

    /// SM_PASSOK_SELECTSERVER: series = count, body `name/status/…/`.
    fn server_list(&self) -> Reply {
        let (count, list) = self.shared.routes.server_list();
        // Server names were checked to be GBK at startup.
        let body = gbk_encode(&list).unwrap_or_default();
        Reply {
            kind: MsgKind::SmPassOkSelectServer,
            recog: 0,
            series: count,
            body,
        }
    }

    /// Decode TUserEntry + TUserEntryAdd (encoded separately: 198 + 135 chars).
    fn registration(&self, packet: &Packet, what: &'static str) -> Option<Registration> {
        let body = &packet.body[..];
        let (entry_text, add_text) = match body.len() {
            n if n == UserEntry::ENCODED_LEN + UserEntryAdd::ENCODED_LEN => {
                body.split_at(UserEntry::ENCODED_LEN)
            }
            // Some old clients send TUserEntry alone.
            n if n == UserEntry::ENCODED_LEN => (body, &[][..]),
            n => {
                reject(
                    "bad_record_length",
                    format_args!("{} {what}: body of {n} chars", self.who()),
                );
                return None;
            }
        };
        let entry = codec::decode(entry_text)
            .map_err(|e| e.to_string())
            .and_then(|b| UserEntry::from_bytes(&b).map_err(|e| e.to_string()));
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                reject("bad_user_entry", format_args!("{} {what}: {e}", self.who()));
                return None;
            }
        };
        let add = if add_text.is_empty() {
            UserEntryAdd::default()
        } else {
            let add = codec::decode(add_text)
                .map_err(|e| e.to_string())
                .and_then(|b| UserEntryAdd::from_bytes(&b).map_err(|e| e.to_string()));
            match add {
                Ok(a) => a,
                Err(e) => {
                    reject(
                        "bad_user_entry_add",
                        format_args!("{} {what}: {e}", self.who()),
                    );
                    return None;
                }
            }
        };
        let reg = Registration { entry, add };
        let e = &reg.entry;
        let a = &reg.add;
        let checks = [
            validate::account(&e.account),
            validate::text(&e.user_name, USER_NAME_MAX),
            validate::text(&e.phone, PHONE_MAX),
            validate::text(&e.quiz, QUIZ_MAX),
            validate::text(&e.answer, ANSWER_MAX),
            validate::text(&e.email, EMAIL_MAX),
            validate::text(&a.quiz2, QUIZ_MAX),
            validate::text(&a.answer2, ANSWER_MAX),
            validate::text(&a.birthday, BIRTHDAY_MAX),
            validate::text(&a.mobile_phone, MOBILE_MAX),
            validate::text(&a.memo, MEMO_MAX),
            validate::text(&a.memo2, MEMO_MAX),
        ];
        if let Some(Err(bad)) = checks.into_iter().find(Result::is_err) {
            reject(
                bad.as_str(),
                format_args!("{} {what}: invalid field", self.who()),
            );
            return None;
        }
        Some(reg)
    }

    /// CM_ADDNEWUSER.
    pub(crate) async fn add_new_user(&mut self, packet: &Packet) -> Reply {
        let fail = |recog| Reply::code(MsgKind::SmNewIdFail, recog);
        let Some(reg) = self.registration(packet, "CM_ADDNEWUSER") else {
            return fail(code::INVALID);
        };
        if let Err(e) = validate::password(
            &reg.entry.password,
            self.shared.config.security.min_password_len,
        ) {
            reject(
                e.as_str(),
                format_args!("{}: new account with unacceptable password", self.who()),
            );
            return fail(code::INVALID);
        }
        let key = validate::account_key(&reg.entry.account);
        // Cheap check first: a taken name should not cost an Argon2 hash.
        match self.shared.store.exists(&key).await {
            Ok(true) => return fail(code::NEWID_EXISTS),
            Ok(false) => {}
            Err(e) => {
                self.db_error("account lookup", &e);
                return fail(code::SERVER_ERROR);
            }
        }
        if !self.hash_budget("CM_ADDNEWUSER") {
            return fail(code::SERVER_ERROR);
        }
        let hasher = &self.shared.hasher;
        let password_hash = match hasher.hash(reg.entry.password.clone()).await {
            Ok(h) => h,
            Err(e) => {
                self.db_error("password hash", &e);
                return fail(code::SERVER_ERROR);
            }
        };
        let recovery_hash = match reg.recovery_secret() {
            None => None,
            Some(secret) => match hasher.hash(secret).await {
                Ok(h) => Some(h),
                Err(e) => {
                    self.db_error("recovery hash", &e);
                    return fail(code::SERVER_ERROR);
                }
            },
        };
        let row = NewAccount {
            key,
            account: reg.entry.account.clone(),
            password_hash,
            recovery_hash,
            profile: reg.profile(),
        };
        match self.shared.store.insert(&row, unix_now()).await {
            Ok(true) => {
                metrics::counter!("loginsrv_accounts_created_total").increment(1);
                tracing::info!(account = %row.key, "{}: account created", self.who());
                Reply::code(MsgKind::SmNewIdSuccess, 0)
            }
            // Lost a race with a concurrent registration of the same name.
            Ok(false) => fail(code::NEWID_EXISTS),
            Err(e) => {
                self.db_error("account insert", &e);
                fail(code::SERVER_ERROR)
            }
        }
    }

    /// CM_CHANGEPASSWORD: `account\told\tnew`.
    pub(crate) async fn change_password(&mut self, packet: &Packet) -> Reply {
        let fail = |recog| Reply::code(MsgKind::SmChgPasswdFail, recog);
        let Some(text) = self.body_text(packet, "CM_CHANGEPASSWORD") else {
            return fail(code::CHG_REFUSED);
        };
        let fields: Vec<&str> = text.split('\t').collect();
        let [account, old, new] = fields[..] else {
            reject(
                "bad_field_count",
                format_args!("{}: CM_CHANGEPASSWORD", self.who()),
            );
            return fail(code::CHG_REFUSED);
        };
        if validate::account(account).is_err() {
            return fail(code::CHG_REFUSED);
        }
        if let Err(e) = validate::password(new, self.shared.config.security.min_password_len) {
            reject(
                e.as_str(),
                format_args!("{}: unacceptable new password", self.who()),
            );
            return fail(code::CHG_REFUSED);
        }
        let key = validate::account_key(account);
        let (auth, now) = match self.usable_account(&key).await {
            Ok(found) => found,
            Err(Unusable::NoAccount) => return fail(code::CHG_REFUSED),
            Err(Unusable::Locked) => return fail(code::LOCKED),
            Err(Unusable::DbError) => return fail(code::SERVER_ERROR),
        };
        if !self.hash_budget("CM_CHANGEPASSWORD") {
            return fail(code::SERVER_ERROR);
        }
        match self
            .shared
            .hasher
            .verify(old.to_owned(), auth.password_hash)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return fail(
                    self.count_failure(&key, now)
                        .await
                        .unwrap_or(code::WRONG_SECRET),
                )
            }
            Err(e) => {
                self.db_error("password verification", &e);
                return fail(code::SERVER_ERROR);
            }
        }
        self.store_new_password(&key, new.to_owned(), now)
            .await
            .map_or_else(
                || fail(code::SERVER_ERROR),
                |()| {
                    tracing::info!(account = %key, "{}: password changed", self.who());
                    Reply::code(MsgKind::SmChgPasswdSuccess, 0)
                },
            )
    }

    async fn store_new_password(&self, key: &str, password: String, now: i64) -> Option<()> {
        let hash = match self.shared.hasher.hash(password).await {
            Ok(h) => h,
            Err(e) => {
                self.db_error("password hash", &e);
                return None;
            }
        };
        match self.shared.store.set_password(key, &hash, now).await {
            Ok(true) => Some(()),
            Ok(false) => None,
            Err(e) => {
                self.db_error("password update", &e);
                None
            }
        }
    }

    /// CM_UPDATEUSER: new profile (and recovery answers) for the logged-in account.
    pub(crate) async fn update_user(&mut self, packet: &Packet) -> Reply {
        let fail = |recog| Reply::code(MsgKind::SmUpdateIdFail, recog);
        let Some(reg) = self.registration(packet, "CM_UPDATEUSER") else {
            return fail(code::INVALID);
        };
        let key = validate::account_key(&reg.entry.account);
        let logged_in = self.account.as_deref() == Some(key.as_str())
            && self.shared.online.holds(&key, self.token);
        if !logged_in {
            reject(
                "update_not_logged_in",
                format_args!("{}: CM_UPDATEUSER for {key}", self.who()),
            );
            return fail(code::NOT_LOGGED_IN);
        }
        let recovery_hash = match reg.recovery_secret() {
            None => None,
            Some(secret) => match self.shared.hasher.hash(secret).await {
                Ok(h) => Some(h),
                Err(e) => {
                    self.db_error("recovery hash", &e);
                    return fail(code::SERVER_ERROR);
                }
            },
        };
        match self
            .shared
            .store
            .update_profile(&key, &reg.profile(), recovery_hash.as_deref(), unix_now())
            .await
        {
            Ok(true) => Reply::code(MsgKind::SmUpdateIdSuccess, 0),
            Ok(false) => fail(code::NOT_LOGGED_IN),
            Err(e) => {
                self.db_error("profile update", &e);
                fail(code::SERVER_ERROR)
            }
        }
    }

    /// CM_SELECTSERVER: server name; answers the SelGate and a session id.
    pub(crate) fn select_server(&mut self, packet: &Packet) -> Reply {
        let fail = || Reply::code(MsgKind::SmStartFail, 0);
        let Some(key) = self.account.clone() else {
            reject(
                "select_not_logged_in",
                format_args!("{}: CM_SELECTSERVER", self.who()),
            );
            return fail();
        };
        if !self.shared.online.holds(&key, self.token) {
            // Kicked by a newer login of the same account.
            self.account = None;
            reject(
                "select_after_kick",
                format_args!("{}: CM_SELECTSERVER", self.who()),
            );
            return fail();
        }
        let Some(name) = self.body_text(packet, "CM_SELECTSERVER") else {
            return fail();
        };
        match self.shared.routes.select(&key, &name) {
            Selection::Ok {
                selgate,
                session_id,
            } => {
                metrics::counter!("loginsrv_sessions_issued_total").increment(1);
                tracing::info!(account = %key, server = %name, %selgate, "{}: server selected", self.who());
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
                    format_args!("{}: no server {name:?}", self.who()),
                );
                fail()
            }
            Selection::Full => {
                reject(
                    "server_full",
                    format_args!("{}: server {name:?} full", self.who()),
                );
                fail()
            }
        }
    }

    /// CM_GETBACKPASSWORD: `account\tquiz1\tanswer1\tquiz2\tanswer2\tbirthday`.
    /// The password is only stored hashed, so on correct answers a fresh
    /// random one is set and returned.
    pub(crate) async fn get_back_password(&mut self, packet: &Packet) -> Reply {
        let fail = |recog| Reply::code(MsgKind::SmGetBackPasswdFail, recog);
        let Some(text) = self.body_text(packet, "CM_GETBACKPASSWORD") else {
            return fail(code::NO_ACCOUNT);
        };
        let fields: Vec<&str> = text.split('\t').collect();
        let [account, quiz1, answer1, quiz2, answer2, birthday] = fields[..] else {
            reject(
                "bad_field_count",
                format_args!("{}: CM_GETBACKPASSWORD", self.who()),
            );
            return fail(code::NO_ACCOUNT);
        };
        if validate::account(account).is_err() {
            return fail(code::NO_ACCOUNT);
        }
        let key = validate::account_key(account);
        let (auth, now) = match self.usable_account(&key).await {
            Ok(found) => found,
            Err(Unusable::NoAccount) => return fail(code::NO_ACCOUNT),
            Err(Unusable::Locked) => return fail(code::LOCKED),
            Err(Unusable::DbError) => return fail(code::SERVER_ERROR),
        };
        let Some(recovery_hash) = auth.recovery_hash else {
            reject(
                "recovery_disabled",
                format_args!("{}: {key} has no recovery answers", self.who()),
            );
            return fail(code::WRONG_SECRET);
        };
        if !self.hash_budget("CM_GETBACKPASSWORD") {
            return fail(code::SERVER_ERROR);
        }
        let secret = recovery_secret(quiz1, answer1, quiz2, answer2, birthday);
        match self.shared.hasher.verify(secret, recovery_hash).await {
            Ok(true) => {}
            Ok(false) => {
                return fail(
                    self.count_failure(&key, now)
                        .await
                        .unwrap_or(code::WRONG_SECRET),
                )
            }
            Err(e) => {
                self.db_error("recovery verification", &e);
                return fail(code::SERVER_ERROR);
            }
        }
        let password = random_password();
        match self.store_new_password(&key, password.clone(), now).await {
            Some(()) => {
                tracing::info!(account = %key, "{}: password reset by recovery answers", self.who());
                Reply {
                    kind: MsgKind::SmGetBackPasswdSuccess,
                    recog: 0,
                    series: 0,
                    body: password.into_bytes(),
                }
            }
            None => fail(code::SERVER_ERROR),
        }
    }
}

fn random_password() -> String {
    let mut rng = rand::rng();
    (0..RECOVERY_PASSWORD_LEN)
        .map(|_| {
            let i = rng.random_range(0..PASSWORD_ALPHABET.len());
            char::from(PASSWORD_ALPHABET.get(i).copied().unwrap_or(b'x'))
        })
        .collect()
}
