//! systemd's readiness protocol (`Type=notify`): each call is one datagram to
//! `$NOTIFY_SOCKET`, and does nothing when the variable is unset (not under systemd).
//! A failed send is logged at debug level only: the service itself is unaffected.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    // `unset_env = false`: a successor started by a zero-downtime restart must still
    // find the socket, and removing a variable is unsound once threads run.
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::debug!(%error, "cannot notify the service manager");
    }
}

/// Start-up finished: listeners bound and serving.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// A configuration reload begins (systemd wants the monotonic time with it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The reload finished (whether or not it applied anything): serving again.
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The orderly shutdown begins.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// `pid` is the service's main process from now on (a successor after a
/// zero-downtime restart; needs `NotifyAccess=all` for it to be accepted).
pub fn main_pid(pid: u32, status: &str) {
    send(&[
        NotifyState::MainPid(pid),
        NotifyState::Ready,
        NotifyState::Status(status),
    ]);
}

/// A free-form status line (`systemctl status` shows it).
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}
