//! Record parsing is total, and an accepted record writes back without error.
use mir2_proto::records::{UserEntry, UserEntryAdd};

/// The property, for one input; panics when it does not hold.
pub fn check(data: &[u8]) {
    if let Ok(e) = UserEntry::from_bytes(data) {
        let again = e.to_bytes().ok();
        assert!(again.is_some(), "a parsed entry must serialise again");
        assert_eq!(again.and_then(|b| UserEntry::from_bytes(&b).ok()), Some(e));
    }
    if let Ok(a) = UserEntryAdd::from_bytes(data) {
        let again = a.to_bytes().ok();
        assert!(again.is_some(), "a parsed entry must serialise again");
        assert_eq!(
            again.and_then(|b| UserEntryAdd::from_bytes(&b).ok()),
            Some(a)
        );
    }
}
