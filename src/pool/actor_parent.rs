//! The pool's php-cgi parent as the actor sees it: whether it runs, when the
//! next one starts (with backoff when parents keep exiting right after their
//! start), and the two reasons to kill it on purpose: children exiting in a
//! loop, and php-fpm's emergency restart on SIGSEGV/SIGBUS. Pure decisions: the
//! actor logs them and sends the commands.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::{SIGBUS, SIGSEGV};
use nix::unistd::Pid;
use tokio::time::Instant as TokioInstant;

use crate::pool::crash::{backoff, ExitRate};
use crate::supervisor::ExitKind;

/// The php-cgi parent's lifecycle.
#[derive(Debug)]
pub(super) struct Parent {
    /// The running parent and when it started.
    running: Option<(Pid, Instant)>,
    /// Parents started so far.
    starts: u64,
    /// A Spawn was sent to the supervisor and has not been answered yet.
    spawning: bool,
    /// When the next parent starts, if one is due.
    start_at: Option<TokioInstant>,
    /// Parents in a row that exited right after their start.
    fast_exits: u32,
    /// The running parent was killed for its children's exit loop: its exit
    /// counts as a fast one.
    killed_for_loop: bool,
    /// Recent child exits, to spot a loop.
    child_exits: ExitRate,
    /// Recent SIGSEGV/SIGBUS child exits, for the emergency restart.
    segfaults: VecDeque<Instant>,
}

impl Parent {
    /// No parent yet; the first one is due at once.
    pub(super) fn new() -> Parent {
        Parent {
            running: None,
            starts: 0,
            spawning: false,
            start_at: Some(TokioInstant::now()),
            fast_exits: 0,
            killed_for_loop: false,
            child_exits: ExitRate::default(),
            segfaults: VecDeque::new(),
        }
    }

    /// The running parent's pid.
    pub(super) fn pid(&self) -> Option<Pid> {
        self.running.map(|(pid, _)| pid)
    }

    /// Parents started so far.
    pub(super) fn starts(&self) -> u64 {
        self.starts
    }

    /// When the next parent is due.
    pub(super) fn start_at(&self) -> Option<TokioInstant> {
        self.start_at
    }

    /// A parent runs or is being started.
    pub(super) fn alive(&self) -> bool {
        self.running.is_some() || self.spawning
    }

    /// No parent is to start any more (the pool stops).
    pub(super) fn cancel_start(&mut self) {
        self.start_at = None;
    }

    /// The Spawn command is being sent.
    pub(super) fn spawn_sent(&mut self) {
        self.start_at = None;
        self.spawning = true;
    }

    /// The supervisor could not start it.
    pub(super) fn spawn_failed(&mut self) {
        self.spawning = false;
    }

    /// `pid` runs; true for the pool's first parent.
    pub(super) fn started(&mut self, pid: Pid) -> bool {
        self.spawning = false;
        self.running = Some((pid, Instant::now()));
        self.starts += 1;
        self.starts == 1
    }

    /// `pid` exited: how long it ran (zero when it was killed for a child
    /// exit loop), or `None` if it is not this pool's running parent.
    pub(super) fn exited(&mut self, pid: Pid) -> Option<Duration> {
        let (_, started) = self.running.filter(|(p, _)| *p == pid)?;
        self.running = None;
        Some(if std::mem::take(&mut self.killed_for_loop) { Duration::ZERO } else { started.elapsed() })
    }

    /// Schedules the next start after a parent that ran `ran`: at once after
    /// one that ran a while, with doubling delays while they keep exiting
    /// within [`crate::pool::crash::FAST_EXIT`]. Returns the delay.
    pub(super) fn schedule_start(&mut self, ran: Duration) -> Duration {
        let delay = backoff(&mut self.fast_exits, ran);
        self.start_at = Some(TokioInstant::now() + delay);
        delay
    }

    /// Makes the running parent look started `by` earlier (tests).
    #[cfg(test)]
    pub(super) fn backdate(&mut self, by: Duration) {
        if let Some((_, started)) = &mut self.running {
            *started -= by;
        }
    }

    /// Parents in a row that exited right after their start.
    pub(super) fn fast_exits(&self) -> u32 {
        self.fast_exits
    }

    /// A child exited: the parent to kill when more than `limit` did within
    /// [`crate::pool::crash::CRASH_WINDOW`] (php-cgi re-forks them without any limit).
    pub(super) fn child_exit_loop(&mut self, limit: usize) -> Option<Pid> {
        let pid = self.pid()?;
        if self.killed_for_loop || !self.child_exits.record(Instant::now(), limit) {
            return None;
        }
        self.killed_for_loop = true;
        Some(pid)
    }

    /// Child exits so far do not count towards a loop (its cause was repaired).
    pub(super) fn forget_child_exits(&mut self) {
        self.child_exits = ExitRate::default();
    }

    /// php-fpm's emergency restart: the parent to kill when `threshold`
    /// children exited on SIGSEGV or SIGBUS within `interval`.
    pub(super) fn emergency(&mut self, status: ExitKind, (threshold, interval): (usize, Duration)) -> Option<Pid> {
        let pid = self.pid()?;
        if !matches!(status, ExitKind::Signal(SIGSEGV | SIGBUS)) {
            return None;
        }
        let now = Instant::now();
        self.segfaults.retain(|t| now.duration_since(*t) <= interval);
        self.segfaults.push_back(now);
        if self.segfaults.len() < threshold {
            return None;
        }
        self.segfaults.clear();
        Some(pid)
    }
}
