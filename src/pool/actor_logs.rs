//! The pool actor's side of the access log and slowlog: it knows each slot's child, so it
//! completes access records with the child's pid (the writer thread reads the child's CPU
//! time and memory), and its tick spots requests running past `request_slowlog_timeout`.

use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::{PoolActor, SlotState};
use crate::accesslog::{ChildView, Record};

/// How long an access record waits for its child's pid to be looked up.
const PID_WAIT: Duration = Duration::from_millis(500);

impl PoolActor {
    /// Sends `record` to the access log, or holds it while the slot's child pid is being
    /// looked up (a new connection's first request), so that `%p` names the child. A format
    /// that shows nothing of the child never waits: lines stay in the order requests ended.
    pub(super) fn log_access(&mut self, slot: usize, record: Box<Record>) {
        let wants_child = self.logs.access().is_some_and(|a| a.wants_child());
        let finding = wants_child && self.slots.get(slot).is_some_and(|s| s.awaits_pid());
        if finding {
            self.pending_access.push((slot, Instant::now(), record));
            return;
        }
        self.logs.log_access(record, self.child_view(slot));
    }

    /// Sends the held records of `slot` (its pid is now known), or, with `None`, those that
    /// waited longer than [`PID_WAIT`].
    pub(super) fn flush_access(&mut self, slot: Option<usize>) {
        if self.pending_access.is_empty() {
            return;
        }
        let ready = |(s, at, _): &(usize, Instant, Box<Record>)| match slot {
            Some(slot) => *s == slot,
            None => at.elapsed() > PID_WAIT,
        };
        let (send, keep): (Vec<_>, Vec<_>) = self.pending_access.drain(..).partition(ready);
        self.pending_access = keep;
        for (slot, _, record) in send {
            self.logs.log_access(record, self.child_view(slot));
        }
    }

    /// Sends every held record, known pid or not (the actor is stopping).
    pub(super) fn drain_access(&mut self) {
        for (slot, _, record) in std::mem::take(&mut self.pending_access) {
            self.logs.log_access(record, self.child_view(slot));
        }
    }

    fn child_view(&self, slot: usize) -> ChildView {
        let Some(s) = self.slots.get(slot) else {
            return ChildView::default();
        };
        ChildView { pid: s.pid.map(Pid::as_raw), parent_pid: self.parent.pid().map(Pid::as_raw), memory: s.memory }
    }

    /// Logs, once per request, each request that has run past `request_slowlog_timeout`.
    pub(super) fn check_slow(&mut self) {
        let Some(limit) = self.logs.slow_timeout() else {
            return;
        };
        for s in self.slots.iter_mut() {
            let elapsed = s.since.elapsed();
            if s.state != SlotState::Busy || s.slow_logged || elapsed < limit {
                continue;
            }
            s.slow_logged = true;
            self.counters.slow_requests += 1;
            self.metrics.slow();
            self.logs.slow(s.pid.map(Pid::as_raw), s.info.as_deref(), elapsed);
        }
    }
}
