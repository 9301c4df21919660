//! A session's one timer, allocated only while a deadline is armed.
//!
//! Tokio's `Sleep` is 112 bytes. Held inline it would be most of an idle session's
//! task when no timeout is configured at all, and it would push the task into the next
//! 128-byte class. Boxed on demand it costs one pointer while disarmed, and about the
//! same as inline while armed (the box replaces the inline bytes).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{sleep_until, Instant, Sleep};

/// A deadline that may be unset; see the module docs.
#[derive(Default)]
pub(crate) struct Timer {
    /// `None` while disarmed.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Timer {
    /// The armed deadline, `None` while disarmed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.sleep.as_ref().map(|s| s.deadline())
    }

    /// Arms the timer for `at`, or disarms it (and frees the `Sleep`) for `None`.
    pub(crate) fn set(&mut self, at: Option<Instant>) {
        match (at, &mut self.sleep) {
            (None, sleep) => *sleep = None,
            (Some(at), Some(sleep)) => sleep.as_mut().reset(at),
            (Some(at), sleep @ None) => *sleep = Some(Box::pin(sleep_until(at))),
        }
    }

    /// Ready once the armed deadline passed; a disarmed timer is never ready.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn disarmed_never_fires_armed_fires_at_its_deadline() {
        let mut timer = Timer::default();
        assert_eq!(timer.deadline(), None);
        let fired = |t: &mut Timer| {
            let waker = std::task::Waker::noop();
            t.poll_expired(&mut Context::from_waker(waker)).is_ready()
        };
        assert!(!fired(&mut timer));
        let at = Instant::now() + Duration::from_secs(5);
        timer.set(Some(at));
        assert_eq!(timer.deadline(), Some(at));
        assert!(!fired(&mut timer));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(fired(&mut timer));
        let later = Instant::now() + Duration::from_secs(1);
        timer.set(Some(later));
        assert!(!fired(&mut timer), "re-armed for later");
        timer.set(None);
        assert_eq!(timer.deadline(), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!fired(&mut timer), "disarmed");
    }
}
