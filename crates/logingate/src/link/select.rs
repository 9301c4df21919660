//! Which backend a new client goes to: among the links accepting sessions,
//! the one with the fewest live sessions; a link whose LoginSrv has answered
//! comes before one that has only connected (it may be about to close on
//! us); ties go round-robin, starting after the previous pick.
//!
//! Pure, so it is tested without sockets; [`super::LinkSet`] feeds it.

/// What the choice looks at in one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Connected: open frames are accepted.
    pub up: bool,
    /// The LoginSrv sent a valid frame on this connection.
    pub answered: bool,
    /// Sessions open on the link now.
    pub live: usize,
}

/// Index of the link a new client should open on, `None` when none is up.
/// `turn` is a counter the caller advances on every pick: ties are broken by
/// the first candidate at or after `turn % len`.
pub fn pick(candidates: &[Candidate], turn: usize) -> Option<usize> {
    let n = candidates.len();
    if n == 0 {
        return None;
    }
    let start = turn % n;
    let mut best: Option<(usize, (bool, usize))> = None;
    for k in 0..n {
        let i = (start + k) % n;
        let c = candidates[i];
        if !c.up {
            continue;
        }
        // Smaller is better: answered first, then fewer sessions.
        let key = (!c.answered, c.live);
        if best.is_none_or(|(_, b)| key < b) {
            best = Some((i, key));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn up(live: usize) -> Candidate {
        Candidate {
            up: true,
            answered: true,
            live,
        }
    }

    const DOWN: Candidate = Candidate {
        up: false,
        answered: false,
        live: 0,
    };

    #[test]
    fn none_up_means_no_backend() {
        assert_eq!(pick(&[], 0), None);
        assert_eq!(pick(&[DOWN, DOWN], 3), None);
    }

    #[test]
    fn fewest_live_sessions_wins() {
        assert_eq!(pick(&[up(5), up(2), up(9)], 0), Some(1));
        assert_eq!(pick(&[up(5), up(2), up(9)], 2), Some(1));
        // A down link is never chosen, however empty.
        assert_eq!(pick(&[DOWN, up(100)], 0), Some(1));
    }

    #[test]
    fn ties_go_round_robin() {
        let links = [up(3), up(3), up(3)];
        let picks: Vec<_> = (0..6).map(|t| pick(&links, t).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        // Only the tied ones share: the busier link is skipped.
        let links = [up(3), up(4), up(3)];
        let picks: Vec<_> = (0..4).map(|t| pick(&links, t).unwrap()).collect();
        assert_eq!(picks, [0, 2, 2, 0]);
    }

    #[test]
    fn an_answered_link_comes_before_one_only_connected() {
        let fresh = Candidate {
            up: true,
            answered: false,
            live: 0,
        };
        assert_eq!(pick(&[fresh, up(50)], 0), Some(1));
        // Alone, a link that has only connected still takes clients.
        assert_eq!(pick(&[fresh, DOWN], 1), Some(0));
    }

    #[test]
    fn filling_by_picks_keeps_links_level() {
        let mut links = [up(0), up(0)];
        links[1].live = 10;
        for turn in 0..30 {
            let i = pick(&links, turn).unwrap();
            links[i].live += 1;
        }
        assert_eq!((links[0].live, links[1].live), (20, 20));
    }
}
