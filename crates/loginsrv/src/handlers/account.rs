//! CM_UPDATEUSER: new profile (and recovery answers) for the logged-in account.

use mir2_proto::ids::MsgKind;
use mir2_proto::packet::Packet;

use super::register::Registration;
use super::{code, unix_now, Refused};
use crate::client::{Client, Reply};
use crate::reject::reject;

/// An account update: the same records as a registration; the password in
/// them is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpdateAccount {
    /// The records sent.
    pub registration: Registration,
}

fn fail(recog: i32) -> Reply {
    Reply::code(MsgKind::SmUpdateIdFail, recog)
}

impl UpdateAccount {
    /// The records, as for CM_ADDNEWUSER.
    pub fn parse(packet: &Packet) -> Result<UpdateAccount, Refused> {
        Registration::parse(packet)
            .map(|registration| UpdateAccount { registration })
            .map_err(|m| m.answer(fail(code::INVALID)))
    }

    /// Store the profile if this client is logged in as that account.
    pub async fn apply(self, client: &mut Client) -> Reply {
        let reg = self.registration;
        let key = reg.key();
        let logged_in = client.account.as_deref() == Some(key.as_str())
            && client.server.online.holds(&key, client.token);
        if !logged_in {
            reject(
                "update_not_logged_in",
                format_args!("{}: CM_UPDATEUSER for {key}", client.who()),
            );
            return fail(code::NOT_LOGGED_IN);
        }
        let recovery_hash = match reg.recovery_secret() {
            None => None,
            Some(secret) => match client.server.hasher.hash(secret).await {
                Ok(h) => Some(h),
                Err(e) => {
                    client.db_error("recovery hash", &e);
                    return fail(code::SERVER_ERROR);
                }
            },
        };
        match client
            .server
            .store
            .update_profile(&key, &reg.profile(), recovery_hash.as_deref(), unix_now())
            .await
        {
            Ok(true) => Reply::code(MsgKind::SmUpdateIdSuccess, 0),
            Ok(false) => fail(code::NOT_LOGGED_IN),
            Err(e) => {
                client.db_error("profile update", &e);
                fail(code::SERVER_ERROR)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::register::tests::records;
    use crate::handlers::test_support::packet;

    #[test]
    fn records_without_a_password_check() {
        let (e, a) = records("Upd", "");
        let u = UpdateAccount::parse(&packet(MsgKind::CmUpdateUser, 0, &[&e, &a]));
        assert_eq!(u.map(|u| u.registration.key()).ok(), Some("upd".into()));
        let bad = UpdateAccount::parse(&packet(MsgKind::CmUpdateUser, 0, &[&e[..10]]));
        assert_eq!(
            bad.err().map(|r| (r.why.reason, r.reply.map(|r| r.kind))),
            Some(("bad_record_length", Some(MsgKind::SmUpdateIdFail)))
        );
    }
}
