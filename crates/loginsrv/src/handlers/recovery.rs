//! CM_GETBACKPASSWORD: `account\tquiz1\tanswer1\tquiz2\tanswer2\tbirthday`.
//!
//! The password is only stored hashed, so on correct answers a fresh random
//! one is set and returned.

use mir2_proto::ids::MsgKind;
use mir2_proto::packet::Packet;
use rand::Rng as _;

use super::{body_text, code, Malformed, Refused, Secret, Unusable, Verdict};
use crate::client::{Client, Reply};
use crate::reject::reject;
use crate::validate;

/// Length of a generated recovery password (fits the client's 10-byte field).
const RECOVERY_PASSWORD_LEN: usize = 8;
/// Unambiguous characters for generated passwords (no 0/O, 1/l/I).
const PASSWORD_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// The secret stored (hashed) at registration and reproduced here. Quiz
/// texts are part of it, so the questions need not be stored.
pub(super) fn recovery_secret(
    quiz1: &str,
    answer1: &str,
    quiz2: &str,
    answer2: &str,
    birthday: &str,
) -> String {
    format!("{quiz1}\t{answer1}\t{quiz2}\t{answer2}\t{birthday}")
}

/// A password recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecoverPassword {
    /// Lookup key of the account.
    pub key: String,
    /// Questions, answers and birthday joined as at registration.
    pub secret: String,
}

fn fail(recog: i32) -> Reply {
    Reply::code(MsgKind::SmGetBackPasswdFail, recog)
}

impl RecoverPassword {
    /// Six tab-separated fields, the first a valid account name.
    pub fn parse(packet: &Packet) -> Result<RecoverPassword, Refused> {
        let refuse = |m: Malformed| m.answer(fail(code::NO_ACCOUNT));
        let text = body_text(packet).map_err(refuse)?;
        let fields: Vec<&str> = text.split('\t').collect();
        let [account, quiz1, answer1, quiz2, answer2, birthday] = fields[..] else {
            return Err(refuse(Malformed::new(
                "bad_field_count",
                format!("{} fields", fields.len()),
            )));
        };
        validate::account(account)
            .map_err(|e| refuse(Malformed::new(e.as_str(), "invalid account name")))?;
        Ok(RecoverPassword {
            key: validate::account_key(account),
            secret: recovery_secret(quiz1, answer1, quiz2, answer2, birthday),
        })
    }

    /// Verify the answers (counted toward the lockout), then set and return a
    /// fresh password.
    pub async fn apply(self, client: &mut Client) -> Reply {
        let RecoverPassword { key, secret } = self;
        let state = match client.usable_account(&key).await {
            Ok(state) => state,
            Err(Unusable::NoAccount) => return fail(code::NO_ACCOUNT),
            Err(Unusable::Locked) => return fail(code::LOCKED),
            Err(Unusable::DbError) => return fail(code::SERVER_ERROR),
        };
        if !state.has_recovery {
            reject(
                "recovery_disabled",
                format_args!("{}: {key} has no recovery answers", client.who()),
            );
            return fail(code::WRONG_SECRET);
        }
        let expected = match client
            .verify_secret("CM_GETBACKPASSWORD", &key, Secret::Recovery, secret)
            .await
        {
            Verdict::Correct { password_hash } => password_hash,
            Verdict::Wrong { locked: true } | Verdict::Locked => return fail(code::LOCKED),
            Verdict::Wrong { locked: false } => return fail(code::WRONG_SECRET),
            Verdict::Unavailable => return fail(code::SERVER_ERROR),
        };
        let password = random_password();
        if let Err(recog) = client
            .store_new_password(&key, &expected, password.clone())
            .await
        {
            return fail(recog);
        }
        tracing::info!(account = %key, "{}: password reset by recovery answers", client.who());
        Reply {
            kind: MsgKind::SmGetBackPasswdSuccess,
            recog: 0,
            series: 0,
            body: password.into_bytes(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::text;

    #[test]
    fn six_fields() {
        let r = RecoverPassword::parse(&text(
            MsgKind::CmGetBackPassword,
            "Lost\tpet\tcat\tcity\t北京\t1990/01/01",
        ));
        assert_eq!(
            r.ok(),
            Some(RecoverPassword {
                key: "lost".into(),
                secret: "pet\tcat\tcity\t北京\t1990/01/01".into()
            })
        );
        for (body, reason) in [
            ("a\tb", "bad_field_count"),
            ("x#\t\t\t\t\t", "bad_character"),
        ] {
            let r = RecoverPassword::parse(&text(MsgKind::CmGetBackPassword, body));
            assert_eq!(
                r.err().map(|r| (r.why.reason, r.reply.map(|r| r.recog))),
                Some((reason, Some(code::NO_ACCOUNT))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn generated_passwords_fit_the_client_and_differ() {
        let (a, b) = (random_password(), random_password());
        assert_eq!(a.len(), RECOVERY_PASSWORD_LEN);
        assert!(a.bytes().all(|c| PASSWORD_ALPHABET.contains(&c)), "{a}");
        assert_ne!(a, b);
    }
}
