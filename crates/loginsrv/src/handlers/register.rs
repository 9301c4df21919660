//! CM_ADDNEWUSER: TUserEntry + TUserEntryAdd; creates the account.
//!
//! The records are also what CM_UPDATEUSER sends, so their reading
//! (`Registration`) lives here and `account` reuses it.

use mir2_proto::codec;
use mir2_proto::ids::MsgKind;
use mir2_proto::packet::Packet;
use mir2_proto::records::{UserEntry, UserEntryAdd};

use super::{code, unix_now, Malformed, Refused};
use crate::client::{Client, Reply};
use crate::store::{NewAccount, Profile};
use crate::validate;

/// TUserEntry text fields and their Pascal capacities (for validation).
const USER_NAME_MAX: usize = 20;
const PHONE_MAX: usize = 14;
const QUIZ_MAX: usize = 20;
const ANSWER_MAX: usize = 12;
const EMAIL_MAX: usize = 40;
const BIRTHDAY_MAX: usize = 10;
const MOBILE_MAX: usize = 13;
const MEMO_MAX: usize = 20;

/// A registration's decoded and validated records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    /// TUserEntry: account, password, contact, first recovery question.
    pub entry: UserEntry,
    /// TUserEntryAdd: second question, birthday, more contact (empty if not sent).
    pub add: UserEntryAdd,
}

impl Registration {
    /// TUserEntry, optionally followed by TUserEntryAdd, each 6-bit encoded
    /// separately (198 + 135 chars); every text field within its client capacity.
    pub fn parse(packet: &Packet) -> Result<Registration, Malformed> {
        let body = &packet.body[..];
        let (entry_text, add_text) = match body.len() {
            n if n == UserEntry::ENCODED_LEN + UserEntryAdd::ENCODED_LEN => {
                body.split_at(UserEntry::ENCODED_LEN)
            }
            // Some old clients send TUserEntry alone.
            n if n == UserEntry::ENCODED_LEN => (body, &[][..]),
            n => {
                return Err(Malformed::new(
                    "bad_record_length",
                    format!("body of {n} chars"),
                ))
            }
        };
        let entry = codec::decode(entry_text)
            .map_err(|e| e.to_string())
            .and_then(|b| UserEntry::from_bytes(&b).map_err(|e| e.to_string()))
            .map_err(|e| Malformed::new("bad_user_entry", e))?;
        let add = if add_text.is_empty() {
            UserEntryAdd::default()
        } else {
            codec::decode(add_text)
                .map_err(|e| e.to_string())
                .and_then(|b| UserEntryAdd::from_bytes(&b).map_err(|e| e.to_string()))
                .map_err(|e| Malformed::new("bad_user_entry_add", e))?
        };
        let (e, a) = (&entry, &add);
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
            return Err(Malformed::new(bad.as_str(), "invalid field"));
        }
        Ok(Registration { entry, add })
    }

    /// The account's lookup key.
    pub fn key(&self) -> String {
        validate::account_key(&self.entry.account)
    }

    /// The contact fields kept in the database.
    pub fn profile(&self) -> Profile {
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
    pub fn recovery_secret(&self) -> Option<String> {
        if self.entry.answer.is_empty() {
            return None;
        }
        Some(super::recovery::recovery_secret(
            &self.entry.quiz,
            &self.entry.answer,
            &self.add.quiz2,
            &self.add.answer2,
            &self.add.birthday,
        ))
    }
}

/// A new account request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Register {
    /// The records, with an acceptable password.
    pub registration: Registration,
}

fn fail(recog: i32) -> Reply {
    Reply::code(MsgKind::SmNewIdFail, recog)
}

impl Register {
    /// The records, and a password of at least `min_password_len` bytes.
    pub fn parse(packet: &Packet, min_password_len: usize) -> Result<Register, Refused> {
        let registration =
            Registration::parse(packet).map_err(|m| m.answer(fail(code::INVALID)))?;
        validate::password(&registration.entry.password, min_password_len).map_err(|e| {
            Malformed::new(e.as_str(), "new account with unacceptable password")
                .answer(fail(code::INVALID))
        })?;
        Ok(Register { registration })
    }

    /// Hash the password and recovery answers and insert the account.
    pub async fn apply(self, client: &mut Client) -> Reply {
        let reg = self.registration;
        let key = reg.key();
        // Cheap check first: a taken name should not cost an Argon2 hash.
        match client.server.store.exists(&key).await {
            Ok(true) => return fail(code::NEWID_EXISTS),
            Ok(false) => {}
            Err(e) => {
                client.db_error("account lookup", &e);
                return fail(code::SERVER_ERROR);
            }
        }
        if !client.hash_budget("CM_ADDNEWUSER").await {
            return fail(code::SERVER_ERROR);
        }
        let hasher = &client.server.hasher;
        let password_hash = match hasher.hash(reg.entry.password.clone()).await {
            Ok(h) => h,
            Err(e) => {
                client.db_error("password hash", &e);
                return fail(code::SERVER_ERROR);
            }
        };
        let recovery_hash = match reg.recovery_secret() {
            None => None,
            Some(secret) => match hasher.hash(secret).await {
                Ok(h) => Some(h),
                Err(e) => {
                    client.db_error("recovery hash", &e);
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
        match client.server.store.insert(&row, unix_now()).await {
            Ok(true) => {
                metrics::counter!("loginsrv_accounts_created_total").increment(1);
                tracing::info!(account = %row.key, "{}: account created", client.who());
                Reply::code(MsgKind::SmNewIdSuccess, 0)
            }
            // Lost a race with a concurrent registration of the same name.
            Ok(false) => fail(code::NEWID_EXISTS),
            Err(e) => {
                client.db_error("account insert", &e);
                fail(code::SERVER_ERROR)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::handlers::test_support::packet;

    /// TUserEntry + TUserEntryAdd bytes for `account` / `password`.
    pub fn records(account: &str, password: &str) -> (Vec<u8>, Vec<u8>) {
        let e = UserEntry {
            account: account.into(),
            password: password.into(),
            user_name: "张三".into(),
            quiz: "pet".into(),
            answer: "cat".into(),
            ..UserEntry::default()
        };
        let a = UserEntryAdd {
            quiz2: "city".into(),
            answer2: "北京".into(),
            birthday: "1990/01/01".into(),
            ..UserEntryAdd::default()
        };
        (
            e.to_bytes().unwrap().to_vec(),
            a.to_bytes().unwrap().to_vec(),
        )
    }

    fn reason(r: Result<Register, Refused>) -> Option<(&'static str, i32)> {
        r.err()
            .map(|r| (r.why.reason, r.reply.map_or(i32::MIN, |r| r.recog)))
    }

    #[test]
    fn both_records_or_the_entry_alone() {
        let (e, a) = records("Newbie", "pw1234");
        let reg = Register::parse(&packet(MsgKind::CmAddNewUser, 0, &[&e, &a]), 3).unwrap();
        assert_eq!(reg.registration.key(), "newbie");
        assert_eq!(reg.registration.profile().user_name, "张三");
        assert_eq!(
            reg.registration.recovery_secret().as_deref(),
            Some("pet\tcat\tcity\t北京\t1990/01/01")
        );
        let alone = Register::parse(&packet(MsgKind::CmAddNewUser, 0, &[&e]), 3).unwrap();
        assert_eq!(alone.registration.add, UserEntryAdd::default());
    }

    #[test]
    fn bad_records_and_passwords() {
        let p = packet(MsgKind::CmAddNewUser, 0, &[b"short"]);
        assert_eq!(
            reason(Register::parse(&p, 3)),
            Some(("bad_record_length", code::INVALID))
        );
        let (e, a) = records("bad$name", "pw1234");
        let p = packet(MsgKind::CmAddNewUser, 0, &[&e, &a]);
        assert_eq!(
            reason(Register::parse(&p, 3)),
            Some(("bad_character", code::INVALID))
        );
        let (e, a) = records("newbie", "pw");
        let p = packet(MsgKind::CmAddNewUser, 0, &[&e, &a]);
        assert_eq!(
            reason(Register::parse(&p, 3)),
            Some(("bad_length", code::INVALID))
        );
    }
}
