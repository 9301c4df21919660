//! Message ids of the login path (PROTOCOL.md §5), Delphi numbering, plus a data-driven
//! table for client builds that renumber a few of them.

macro_rules! message_ids {
    ($( $(#[$doc:meta])* $konst:ident = $id:expr => $kind:ident ),+ $(,)?) => {
        $( $(#[$doc])* pub const $konst: u16 = $id; )+

        /// Every login-path message, independent of its numeric id in a given build.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MsgKind { $( $(#[$doc])* $kind ),+ }

        impl MsgKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [MsgKind] = &[$(MsgKind::$kind),+];

            /// The protocol name, e.g. `"CM_IDPASSWORD"`.
            pub fn name(self) -> &'static str {
                match self { $(MsgKind::$kind => stringify!($konst)),+ }
            }

            /// The Delphi id of this kind.
            pub fn delphi_id(self) -> u16 {
                match self { $(MsgKind::$kind => $konst),+ }
            }

            /// The kind with this protocol name (exact, upper case).
            pub fn from_name(name: &str) -> Option<MsgKind> {
                match name { $(stringify!($konst) => Some(MsgKind::$kind),)+ _ => None }
            }
        }
    };
}

message_ids! {
    /// Client version handshake; recog = client version date.
    CM_PROTOCOL = 2000 => CmProtocol,
    /// Login: body encode(`account/password`).
    CM_IDPASSWORD = 2001 => CmIdPassword,
    /// New account: body encode(TUserEntry) + encode(TUserEntryAdd).
    CM_ADDNEWUSER = 2002 => CmAddNewUser,
    /// Change password: body encode(`account\told\tnew`).
    CM_CHANGEPASSWORD = 2003 => CmChangePassword,
    /// Update the logged-in account's details; body as CM_ADDNEWUSER.
    CM_UPDATEUSER = 2004 => CmUpdateUser,
    /// Select a game server: body encode(server name).
    CM_SELECTSERVER = 104 => CmSelectServer,
    /// Password recovery (2010 in some builds).
    CM_GETBACKPASSWORD = 5003 => CmGetBackPassword,
    /// Reply to CM_PROTOCOL: version accepted.
    SM_CERTIFICATION_SUCCESS = 500 => SmCertificationSuccess,
    /// Reply to CM_PROTOCOL: version refused.
    SM_CERTIFICATION_FAIL = 501 => SmCertificationFail,
    /// Login refused; recog says why.
    SM_PASSWD_FAIL = 503 => SmPasswdFail,
    /// Account created.
    SM_NEWID_SUCCESS = 504 => SmNewIdSuccess,
    /// Account not created; recog says why.
    SM_NEWID_FAIL = 505 => SmNewIdFail,
    /// Password changed.
    SM_CHGPASSWD_SUCCESS = 506 => SmChgPasswdSuccess,
    /// Password not changed; recog says why.
    SM_CHGPASSWD_FAIL = 507 => SmChgPasswdFail,
    /// Password recovered (5005 in some builds).
    SM_GETBACKPASSWD_SUCCESS = 508 => SmGetBackPasswdSuccess,
    /// Password not recovered (5006 in some builds).
    SM_GETBACKPASSWD_FAIL = 509 => SmGetBackPasswdFail,
    /// Selected server full or unknown.
    SM_STARTFAIL = 526 => SmStartFail,
    /// The gate is closing the connection.
    SM_OUTOFCONNECTION = 528 => SmOutOfConnection,
    /// Login accepted; series = server count, body = `name/status/…/`.
    SM_PASSOK_SELECTSERVER = 529 => SmPassOkSelectServer,
    /// Server selected; body = `selGateIP/selGatePort/sessionId`.
    SM_SELECTSERVER_OK = 530 => SmSelectServerOk,
    /// The account must fill in its details first.
    SM_NEEDUPDATE_ACCOUNT = 531 => SmNeedUpdateAccount,
    /// Account details updated.
    SM_UPDATEID_SUCCESS = 532 => SmUpdateIdSuccess,
    /// Account details not updated.
    SM_UPDATEID_FAIL = 533 => SmUpdateIdFail,
}

/// [`IdTable::set`] was given a name that is not a known message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown message name {0:?}")]
pub struct UnknownName(pub String);

/// Maps message kinds to numeric ids and back for one client build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTable {
    /// `ids[k as usize]` is the id of kind `k` in this build.
    ids: Vec<u16>,
}

impl Default for IdTable {
    fn default() -> Self {
        Self::delphi()
    }
}

impl IdTable {
    /// The Delphi numbering used by most clients.
    pub fn delphi() -> Self {
        IdTable {
            ids: MsgKind::ALL.iter().map(|k| k.delphi_id()).collect(),
        }
    }

    /// Overrides the id of the message called `name` (e.g. `("CM_GETBACKPASSWORD", 2010)`).
    /// If two kinds end up sharing an id, [`IdTable::kind`] returns the one declared first.
    pub fn set(&mut self, name: &str, id: u16) -> Result<(), UnknownName> {
        let kind = MsgKind::from_name(name).ok_or_else(|| UnknownName(name.to_owned()))?;
        if let Some(slot) = self.ids.get_mut(kind as usize) {
            *slot = id;
        }
        Ok(())
    }

    /// The id of `kind` in this build.
    pub fn id(&self, kind: MsgKind) -> u16 {
        self.ids
            .get(kind as usize)
            .copied()
            .unwrap_or_else(|| kind.delphi_id())
    }

    /// The kind numbered `id` in this build, if any.
    pub fn kind(&self, id: u16) -> Option<MsgKind> {
        // ~25 entries: a linear scan beats hashing and keeps overrides trivial.
        self.ids
            .iter()
            .position(|&x| x == id)
            .and_then(|i| MsgKind::ALL.get(i).copied())
    }

    /// The protocol name of `id` in this build, if any.
    pub fn name(&self, id: u16) -> Option<&'static str> {
        self.kind(id).map(MsgKind::name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn delphi_numbers() {
        let expected: &[(&str, u16)] = &[
            ("SM_CERTIFICATION_SUCCESS", 500),
            ("SM_CERTIFICATION_FAIL", 501),
            ("SM_PASSWD_FAIL", 503),
            ("SM_NEWID_SUCCESS", 504),
            ("SM_NEWID_FAIL", 505),
            ("SM_CHGPASSWD_SUCCESS", 506),
            ("SM_CHGPASSWD_FAIL", 507),
            ("SM_GETBACKPASSWD_SUCCESS", 508),
            ("SM_GETBACKPASSWD_FAIL", 509),
            ("SM_STARTFAIL", 526),
            ("SM_OUTOFCONNECTION", 528),
            ("SM_PASSOK_SELECTSERVER", 529),
            ("SM_SELECTSERVER_OK", 530),
            ("SM_NEEDUPDATE_ACCOUNT", 531),
            ("SM_UPDATEID_SUCCESS", 532),
            ("SM_UPDATEID_FAIL", 533),
            ("CM_PROTOCOL", 2000),
            ("CM_IDPASSWORD", 2001),
            ("CM_ADDNEWUSER", 2002),
            ("CM_CHANGEPASSWORD", 2003),
            ("CM_UPDATEUSER", 2004),
            ("CM_SELECTSERVER", 104),
            ("CM_GETBACKPASSWORD", 5003),
        ];
        assert_eq!(expected.len(), MsgKind::ALL.len());
        let t = IdTable::delphi();
        for &(name, id) in expected {
            let kind = MsgKind::from_name(name).unwrap();
            assert_eq!(kind.name(), name);
            assert_eq!(t.id(kind), id, "{name}");
            assert_eq!(t.kind(id), Some(kind));
            assert_eq!(t.name(id), Some(name));
        }
        assert_eq!(CM_IDPASSWORD, 2001);
        assert_eq!(SM_SELECTSERVER_OK, 530);
    }

    #[test]
    fn overrides_map_both_ways() {
        let mut t = IdTable::delphi();
        t.set("CM_GETBACKPASSWORD", 2010).unwrap();
        t.set("SM_GETBACKPASSWD_SUCCESS", 5005).unwrap();
        assert_eq!(t.id(MsgKind::CmGetBackPassword), 2010);
        assert_eq!(t.kind(2010), Some(MsgKind::CmGetBackPassword));
        assert_eq!(t.kind(5003), None, "old id no longer maps");
        assert_eq!(t.name(5005), Some("SM_GETBACKPASSWD_SUCCESS"));
        assert_eq!(t.set("CM_NOPE", 1), Err(UnknownName("CM_NOPE".into())));
        assert_eq!(t.kind(1), None);
    }
}
