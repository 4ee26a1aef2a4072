//! systemd's service protocol (sd_notify(3)) through the `sd-notify` crate:
//! readiness, status, reload and stop notifications, and the watchdog's
//! interval. Everything is a no-op when rustfpm was not started with a
//! `NOTIFY_SOCKET`.

use std::time::Duration;

use sd_notify::NotifyState;

/// True when a service manager listens for notifications (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

/// Sends `states` in one datagram; a failure is logged, never fatal.
fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        crate::warning!("cannot notify systemd (NOTIFY_SOCKET): {e}");
    }
}

/// `READY=1`, this process's `MAINPID=` and a `STATUS=` line: every pool answers.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::MainPid(std::process::id()), NotifyState::Status(status)]);
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (systemd 253+ matches the two to time the reload).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status("Reloading")]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("Reloading")]),
    }
}

/// `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("Stopping")]);
}

/// A new `STATUS=` line.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// `MAINPID=pid`: sent by the original process of a daemon for the daemon.
pub fn main_pid(pid: u32) {
    send(&[NotifyState::MainPid(pid)]);
}

/// `WATCHDOG=1`.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// `WatchdogSec=` as systemd passed it (`WATCHDOG_USEC`, for this process), if set.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}
