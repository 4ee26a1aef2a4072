//! systemd's service protocol (sd_notify(3)) through the `sd-notify` crate:
//! readiness, status, reload and stop notifications, and the watchdog's
//! interval (no-ops when rustfpm was not started with a `NOTIFY_SOCKET`);
//! and the listening sockets of socket activation (sd_listen_fds(3)).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use sd_notify::NotifyState;

/// True when a service manager listens for notifications (`NOTIFY_SOCKET` is set).
pub(crate) fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

/// Sends `states` in one datagram. A failure is the caller's to report (never fatal).
fn send(states: &[NotifyState<'_>]) -> std::io::Result<()> {
    sd_notify::notify(states)
}

/// `READY=1`, this process's `MAINPID=` and a `STATUS=` line: every pool answers.
pub(crate) fn ready(status: &str) -> std::io::Result<()> {
    send(&[NotifyState::Ready, NotifyState::MainPid(std::process::id()), NotifyState::Status(status)])
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (systemd 253+ matches the two to time the reload).
pub(crate) fn reloading() -> std::io::Result<()> {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status("Reloading")]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("Reloading")]),
    }
}

/// `STOPPING=1`.
pub(crate) fn stopping() -> std::io::Result<()> {
    send(&[NotifyState::Stopping, NotifyState::Status("Stopping")])
}

/// A new `STATUS=` line.
pub(crate) fn status(line: &str) -> std::io::Result<()> {
    send(&[NotifyState::Status(line)])
}

/// `MAINPID=pid`: sent by the original process of a daemon for the daemon.
pub(crate) fn main_pid(pid: u32) -> std::io::Result<()> {
    send(&[NotifyState::MainPid(pid)])
}

/// `WATCHDOG=1`.
pub(crate) fn watchdog() -> std::io::Result<()> {
    send(&[NotifyState::Watchdog])
}

/// `WatchdogSec=` as systemd passed it (`WATCHDOG_USEC`, for this process), if set.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// A listening socket that systemd passed (socket activation: `LISTEN_FDS`,
/// `LISTEN_PID`, `LISTEN_FDNAMES`). Owned for the life of the process: pools
/// get duplicates, so the socket outlives reloads, and its path is never
/// unlinked by rustfpm.
#[derive(Debug)]
pub(crate) struct Activated {
    /// The descriptor (close-on-exec: never inherited by php-cgi).
    pub fd: OwnedFd,
    /// Its `FileDescriptorName=` (systemd's default is the socket unit's name).
    pub name: String,
    used: AtomicBool,
}

impl Activated {
    /// Marks the socket as taken by a pool.
    pub(crate) fn take(&self) {
        self.used.store(true, Ordering::Relaxed);
    }

    /// True once a pool took it.
    pub(crate) fn is_used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }
}

static ACTIVATED: OnceLock<Vec<Activated>> = OnceLock::new();

/// What [`take_activated_sockets`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// How many sockets systemd passed.
    pub sockets: usize,
    /// `LISTEN_FDNAMES` was set but did not name each socket: its names were set aside, and
    /// the sockets are matched to pools by address only (the caller warns).
    pub names_ignored: bool,
}

/// Takes the sockets systemd passed to this process and removes `LISTEN_PID`,
/// `LISTEN_FDS` and `LISTEN_FDNAMES` from the environment (so no child sees
/// them). Call once, first thing.
///
/// # Safety
/// The process must be single-threaded (the environment is changed).
pub unsafe fn take_activated_sockets() -> std::io::Result<Taken> {
    let fds: Vec<RawFd> = sd_notify::listen_fds()?.collect();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let mut names: Vec<String> = names.map(|n| n.split(':').map(str::to_string).collect()).unwrap_or_default();
    let mut names_ignored = false;
    if !fds.is_empty() && names.len() != fds.len() {
        names_ignored = !names.is_empty();
        names = vec![String::new(); fds.len()];
    }
    for key in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: the caller guarantees no other thread reads or writes the environment.
        unsafe { std::env::remove_var(key) };
    }
    let sockets: Vec<Activated> = fds
        .into_iter()
        .zip(names)
        // SAFETY: systemd hands these descriptors to this process; nothing else owns them.
        .map(|(fd, name)| Activated { fd: unsafe { OwnedFd::from_raw_fd(fd) }, name, used: AtomicBool::new(false) })
        .collect();
    let taken = Taken { sockets: sockets.len(), names_ignored };
    let _ = ACTIVATED.set(sockets);
    Ok(taken)
}

/// The sockets systemd passed (empty without socket activation).
pub(crate) fn activated() -> &'static [Activated] {
    ACTIVATED.get().map_or(&[], Vec::as_slice)
}
