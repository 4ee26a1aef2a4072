//! The pool's php-cgi parent as the actor sees it: whether it runs, when the
//! next one starts (with backoff when parents keep exiting right after their
//! start), and the two reasons to kill it on purpose: children exiting in a
//! loop, and php-fpm's emergency restart on SIGSEGV/SIGBUS. Pure decisions: the
//! actor logs them and sends the commands.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::{self, SIGBUS, SIGSEGV};
use nix::unistd::Pid;
use tokio::time::Instant as TokioInstant;

use super::{PoolActor, SlotState};
use crate::pool::crash::{backoff, crash_loop_limit, ExitRate, CRASH_WINDOW};
use crate::pool::worker;
use crate::supervisor::{Command, ExitKind};

/// How many exits of children the actor killed are awaited at most. Under
/// load the exits come late, in batches, after many more kills (an exit 31
/// kills late with 8 children and `pm_max_requests = 1`): a bound of a few per
/// slot forgot them, and their exits made a crash loop that killed the pool.
/// Exits that come are forgotten at once, so the list is this long only when
/// exit events were lost (ENOBUFS).
const AWAITED_KILLS: usize = 1024;

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
    /// Children the actor killed to replace them, whose exit is not reported
    /// yet: their exits are no loop.
    replaced: VecDeque<Pid>,
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
            replaced: VecDeque::new(),
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

    /// A child exited: true when the running parent is to be killed, because
    /// more than `limit` did within [`crate::pool::crash::CRASH_WINDOW`]
    /// (php-cgi re-forks them without any limit).
    pub(super) fn child_exit_loop(&mut self, limit: usize) -> bool {
        if self.running.is_none() || self.killed_for_loop || !self.child_exits.record(Instant::now(), limit) {
            return false;
        }
        self.killed_for_loop = true;
        true
    }

    /// The actor kills `pid` to replace it: its exit will not count towards a
    /// loop. At most [`AWAITED_KILLS`] such exits are awaited: the oldest is
    /// forgotten (its event was lost, or is later than that many kills).
    pub(super) fn replacing(&mut self, pid: Pid) {
        if self.replaced.len() >= AWAITED_KILLS {
            self.replaced.pop_front();
        }
        self.replaced.push_back(pid);
    }

    /// Whether the exit of `pid` is one the actor caused (then forgotten).
    pub(super) fn was_replaced(&mut self, pid: Pid) -> bool {
        let at = self.replaced.iter().position(|p| *p == pid);
        at.and_then(|at| self.replaced.remove(at)).is_some()
    }

    /// Child exits so far do not count towards a loop (its cause was repaired).
    pub(super) fn forget_child_exits(&mut self) {
        self.child_exits = ExitRate::default();
    }

    /// php-fpm's emergency restart: true when the running parent is to be
    /// killed, because `threshold` children exited on SIGSEGV or SIGBUS
    /// within `interval`.
    pub(super) fn emergency(&mut self, status: ExitKind, (threshold, interval): (usize, Duration)) -> bool {
        if self.running.is_none() || !matches!(status, ExitKind::Signal(SIGSEGV | SIGBUS)) {
            return false;
        }
        let now = Instant::now();
        self.segfaults.retain(|t| now.duration_since(*t) <= interval);
        self.segfaults.push_back(now);
        if self.segfaults.len() < threshold {
            return false;
        }
        self.segfaults.clear();
        true
    }
}

impl PoolActor {
    /// The next parent is due: asks the supervisor to start it (unless the
    /// pool stops meanwhile).
    pub(super) fn spawn_parent(&mut self) {
        self.parent.cancel_start();
        if self.stopping.begun() {
            return;
        }
        self.parent.spawn_sent();
        let events = self.reporter.clone();
        self.supervisor.send(Command::Spawn { spec: self.spec.clone(), events });
    }

    /// The parent runs: waiting slots become idle, and the children of
    /// connections made before it ran are looked up. A stopping pool stops it.
    pub(super) fn parent_started(&mut self, pid: Pid) {
        let first = self.parent.started(pid);
        self.metrics.parent_start(if first { "start" } else { "restart" });
        crate::notice!("[pool {}] php-cgi parent {pid} started with {} children", self.name, self.slots.len());
        for i in 0..self.slots.len() {
            if self.slots[i].state == SlotState::Starting {
                self.set_state(i, SlotState::Idle);
            }
            // Connections made before the parent ran: their child is known now.
            if self.slots[i].pid.is_none() {
                self.look_up_child(i);
            }
        }
        if self.stopping.begun() {
            self.signal_children(Signal::SIGTERM);
        }
    }

    /// The parent exited (its group was killed with it): every child is
    /// forgotten, their connections ended (a job in a session of its own may
    /// hold one open, see `child_exited`), and the next parent scheduled
    /// unless the pool stops.
    pub(super) fn parent_exited(&mut self, pid: Pid, status: ExitKind) {
        let Some(ran) = self.parent.exited(pid) else { return };
        for s in &mut self.slots {
            worker::sever(s.fd, s.inode);
            s.pid = None;
            s.set_connection(0, -1);
        }
        self.carried.clear();
        if self.stopping.begun() {
            return;
        }
        crate::warning!("[pool {}] php-cgi parent {pid} {status}", self.name);
        self.start_parent_later(ran);
    }

    /// Schedules the next parent after one that ran `ran` (see
    /// [`Parent::schedule_start`]), and says so when it is held back.
    pub(super) fn start_parent_later(&mut self, ran: Duration) {
        let delay = self.parent.schedule_start(ran);
        if !delay.is_zero() {
            crate::error!(
                "[pool {}] php-cgi keeps exiting right after start ({} times in a row); next start in {}s",
                self.name,
                self.parent.fast_exits(),
                delay.as_secs()
            );
        }
    }

    /// Children that keep dying (php-cgi re-forks them without any limit) make
    /// the whole pool restart with backoff.
    pub(super) fn check_child_loop(&mut self) {
        let limit = crash_loop_limit(self.slots.len());
        if !self.parent.child_exit_loop(limit) {
            return;
        }
        crate::error!(
            "[pool {}] children are exiting in a loop (more than {limit} in {}s); restarting php-cgi with backoff",
            self.name,
            CRASH_WINDOW.as_secs()
        );
        self.signal_children(Signal::SIGKILL);
    }

    /// php-fpm's emergency restart: too many children dying of SIGSEGV or
    /// SIGBUS within the interval restart the pool's php-cgi.
    pub(super) fn check_emergency(&mut self, status: ExitKind) {
        let Some((threshold, interval)) = self.policy.emergency else { return };
        if !self.parent.emergency(status, (threshold, interval)) {
            return;
        }
        crate::alert!(
            "[pool {}] {threshold} children exited on SIGSEGV or SIGBUS within {}s: emergency restart of php-cgi",
            self.name,
            interval.as_secs()
        );
        self.signal_children(Signal::SIGKILL);
    }
}
