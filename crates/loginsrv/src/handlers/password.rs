//! CM_CHANGEPASSWORD: `account\told\tnew`.

use mir2_proto::ids::MsgKind;
use mir2_proto::packet::Packet;

use super::{body_text, code, Malformed, Refused, Secret, Unusable, Verdict};
use crate::client::{Client, Reply};
use crate::validate;

/// A password change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangePassword {
    /// Lookup key of the account.
    pub key: String,
    /// The current password, to be verified.
    pub old: String,
    /// The replacement, already checked acceptable.
    pub new: String,
}

fn fail(recog: i32) -> Reply {
    Reply::code(MsgKind::SmChgPasswdFail, recog)
}

impl ChangePassword {
    /// Three tab-separated fields; the new password of at least `min_password_len` bytes.
    pub fn parse(packet: &Packet, min_password_len: usize) -> Result<ChangePassword, Refused> {
        let refuse = |m: Malformed| m.answer(fail(code::CHG_REFUSED));
        let text = body_text(packet).map_err(refuse)?;
        let fields: Vec<&str> = text.split('\t').collect();
        let [account, old, new] = fields[..] else {
            return Err(refuse(Malformed::new(
                "bad_field_count",
                format!("{} fields", fields.len()),
            )));
        };
        validate::account(account)
            .map_err(|e| refuse(Malformed::new(e.as_str(), "invalid account name")))?;
        validate::password(new, min_password_len)
            .map_err(|e| refuse(Malformed::new(e.as_str(), "unacceptable new password")))?;
        Ok(ChangePassword {
            key: validate::account_key(account),
            old: old.to_owned(),
            new: new.to_owned(),
        })
    }

    /// Verify the old password (counted toward the lockout), then store the new one.
    pub async fn apply(self, client: &mut Client) -> Reply {
        let ChangePassword { key, old, new } = self;
        match client.usable_account(&key).await {
            Ok(_) => {}
            Err(Unusable::NoAccount) => return fail(code::CHG_REFUSED),
            Err(Unusable::Locked) => return fail(code::LOCKED),
            Err(Unusable::DbError) => return fail(code::SERVER_ERROR),
        }
        let expected = match client
            .verify_secret("CM_CHANGEPASSWORD", &key, Secret::Password, old)
            .await
        {
            Verdict::Correct { password_hash } => password_hash,
            Verdict::Wrong { locked: true } | Verdict::Locked => return fail(code::LOCKED),
            Verdict::Wrong { locked: false } => return fail(code::WRONG_SECRET),
            Verdict::Unavailable => return fail(code::SERVER_ERROR),
        };
        if let Err(recog) = client.store_new_password(&key, &expected, new).await {
            return fail(recog);
        }
        tracing::info!(account = %key, "{}: password changed", client.who());
        Reply::code(MsgKind::SmChgPasswdSuccess, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::text;

    fn parse(body: &str) -> Result<ChangePassword, Option<(&'static str, i32)>> {
        ChangePassword::parse(&text(MsgKind::CmChangePassword, body), 3)
            .map_err(|r| Some((r.why.reason, r.reply.map_or(i32::MIN, |r| r.recog))))
    }

    #[test]
    fn three_fields() {
        assert_eq!(
            parse("Chg\told/pw\tnew123"),
            Ok(ChangePassword {
                key: "chg".into(),
                old: "old/pw".into(),
                new: "new123".into()
            })
        );
        let refused = |reason| Err(Some((reason, code::CHG_REFUSED)));
        assert_eq!(parse("only\ttwo"), refused("bad_field_count"));
        assert_eq!(parse("a\tb\tc\td"), refused("bad_field_count"));
        assert_eq!(parse("bad$\told\tnew123"), refused("bad_character"));
        assert_eq!(parse("chg\told\tab"), refused("bad_length"));
        assert_eq!(parse("chg\told\tn/w123"), refused("bad_character"));
    }
}
