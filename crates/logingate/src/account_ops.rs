//! Per-source limits on account registration and password operations, read from the
//! 16-character header of each client message (the body is never decoded).
//!
//! `CM_ADDNEWUSER` counts against `new_accounts_per_ip_per_hour`;
//! `CM_CHANGEPASSWORD` and `CM_GETBACKPASSWORD` against `password_ops_per_ip_per_min`.
//! Each limit is a token bucket per IP in a fixed-memory [`RateTable`], so a flood of
//! distinct sources can evict entries but never grow the gate.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use limits::{Rate, RateTable};
use mir2_proto::ids::{IdTable, MsgKind};
use mir2_proto::MsgHeader;

/// Rate-table slots (16 bytes each, resident once used) per allowed connection, within the bounds below:
/// room for every live source and as many recent ones.
const SLOTS_PER_CONNECTION: usize = 2;
const SLOTS_MIN: usize = 4096;
const SLOTS_MAX: usize = 1 << 20;

/// Which limit a message went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// `new_accounts_per_ip_per_hour`.
    NewAccounts,
    /// `password_ops_per_ip_per_min`.
    PasswordOps,
}

/// What a message that passed the limits was, for the stats line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// `CM_IDPASSWORD`: a login attempt.
    Login,
    /// Any other message (or one whose header does not decode).
    Other,
}

/// The two per-IP limits and the ids they count.
pub struct AccountOps {
    /// `CM_ADDNEWUSER` per IP per hour; `None` when unlimited.
    new_accounts: Option<RateTable<IpAddr>>,
    /// `CM_CHANGEPASSWORD` and `CM_GETBACKPASSWORD` per IP per minute; `None` when unlimited.
    password_ops: Option<RateTable<IpAddr>>,
    /// Id of `CM_ADDNEWUSER` in the client build.
    add_user: u16,
    /// Ids of `CM_CHANGEPASSWORD` and `CM_GETBACKPASSWORD`.
    password: [u16; 2],
    /// Id of `CM_IDPASSWORD`, counted as a login.
    login: u16,
}

impl AccountOps {
    /// Limits of `new_per_hour` and `password_per_min` (0 = unlimited) with the ids of
    /// `ids`, sized for `max_connections`.
    pub fn new(
        new_per_hour: u32,
        password_per_min: u32,
        ids: &IdTable,
        max_connections: usize,
    ) -> Self {
        let slots = max_connections
            .saturating_mul(SLOTS_PER_CONNECTION)
            .clamp(SLOTS_MIN, SLOTS_MAX);
        let table = |count: u32, period: Duration| {
            (count > 0).then(|| RateTable::new(Rate::new(count, period, count), slots))
        };
        AccountOps {
            new_accounts: table(new_per_hour, Duration::from_secs(3600)),
            password_ops: table(password_per_min, Duration::from_secs(60)),
            add_user: ids.id(MsgKind::CmAddNewUser),
            password: [
                ids.id(MsgKind::CmChangePassword),
                ids.id(MsgKind::CmGetBackPassword),
            ],
            login: ids.id(MsgKind::CmIdPassword),
        }
    }

    /// Bytes the tables hold (fixed).
    pub fn memory_bytes(&self) -> usize {
        [&self.new_accounts, &self.password_ops]
            .iter()
            .filter_map(|t| t.as_ref().map(RateTable::memory_bytes))
            .sum()
    }

    /// Counts a whole client message `msg` (`#`, optional check digit, text, `!`) from
    /// `ip` at `now`; `Err` when it goes over a limit (it must not be forwarded).
    /// A message whose header does not decode counts as nothing: the LoginSrv rejects it.
    pub fn check(&self, ip: IpAddr, msg: &[u8], now: Instant) -> Result<Seen, OverLimit> {
        let Some(ident) = ident(msg) else {
            return Ok(Seen::Other);
        };
        let (table, over) = if ident == self.add_user {
            (&self.new_accounts, OverLimit::NewAccounts)
        } else if self.password.contains(&ident) {
            (&self.password_ops, OverLimit::PasswordOps)
        } else if ident == self.login {
            return Ok(Seen::Login);
        } else {
            return Ok(Seen::Other);
        };
        match table {
            Some(t) if !t.check(ip.to_canonical(), now) => Err(over),
            _ => Ok(Seen::Other),
        }
    }
}

/// The message id from the 16 header chars after `#` and the check digit.
fn ident(msg: &[u8]) -> Option<u16> {
    let start = match msg.get(1) {
        Some(b'1'..=b'9') => 2,
        _ => 1,
    };
    let header = msg.get(start..start + MsgHeader::ENCODED_LEN)?;
    MsgHeader::decode(header).ok().map(|h| h.ident)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ident: u16) -> Vec<u8> {
        let mut m = b"#5".to_vec();
        m.extend_from_slice(&MsgHeader::new(ident, 0, 0, 0, 0).encode());
        m.extend_from_slice(b"<<<<!");
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn new_accounts_per_ip_per_hour() {
        let ops = AccountOps::new(5, 10, &IdTable::delphi(), 100);
        let now = Instant::now();
        let add = msg(2002);
        for _ in 0..5 {
            assert_eq!(ops.check(ip("10.0.0.1"), &add, now), Ok(Seen::Other));
        }
        assert_eq!(
            ops.check(ip("10.0.0.1"), &add, now),
            Err(OverLimit::NewAccounts)
        );
        assert_eq!(
            ops.check(ip("10.0.0.2"), &add, now),
            Ok(Seen::Other),
            "per source"
        );
        // Other messages are not counted; a login is recognised.
        assert_eq!(ops.check(ip("10.0.0.1"), &msg(2001), now), Ok(Seen::Login));
        // One token back every 12 minutes.
        let later = now + Duration::from_secs(12 * 60);
        assert_eq!(ops.check(ip("10.0.0.1"), &add, later), Ok(Seen::Other));
        assert_eq!(
            ops.check(ip("10.0.0.1"), &add, later),
            Err(OverLimit::NewAccounts)
        );
    }

    #[test]
    fn password_ops_per_ip_per_min_count_both_ids_together() {
        let ops = AccountOps::new(5, 10, &IdTable::delphi(), 100);
        let now = Instant::now();
        for i in 0..10 {
            let id = if i % 2 == 0 { 2003 } else { 5003 };
            assert_eq!(ops.check(ip("10.0.0.1"), &msg(id), now), Ok(Seen::Other));
        }
        assert_eq!(
            ops.check(ip("10.0.0.1"), &msg(5003), now),
            Err(OverLimit::PasswordOps)
        );
        assert_eq!(
            ops.check(ip("10.0.0.1"), &msg(2002), now),
            Ok(Seen::Other),
            "separate budget for registrations"
        );
    }

    #[test]
    fn ids_come_from_the_table_and_zero_is_unlimited() {
        let mut ids = IdTable::delphi();
        ids.set("CM_GETBACKPASSWORD", 2010).expect("known name");
        let ops = AccountOps::new(0, 1, &ids, 100);
        let now = Instant::now();
        assert_eq!(ops.check(ip("10.0.0.1"), &msg(2010), now), Ok(Seen::Other));
        assert_eq!(
            ops.check(ip("10.0.0.1"), &msg(2010), now),
            Err(OverLimit::PasswordOps)
        );
        for _ in 0..100 {
            assert_eq!(ops.check(ip("10.0.0.1"), &msg(2002), now), Ok(Seen::Other));
        }
    }

    #[test]
    fn memory_is_fixed_whatever_the_sources() {
        let ops = AccountOps::new(5, 10, &IdTable::delphi(), 100);
        let before = ops.memory_bytes();
        let now = Instant::now();
        for i in 0..100_000u32 {
            let _ = ops.check(IpAddr::from(i.to_be_bytes()), &msg(2002), now);
        }
        assert_eq!(ops.memory_bytes(), before);
    }
}
