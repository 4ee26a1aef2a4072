//! How far the pool's stop has come. A pool stops (shutdown: no more
//! restarts), retires (a reload replaced it: its children are stopped once
//! its last request ends, or when `process_control_timeout` passes), or is
//! detached (every handle is gone: its php-cgi is stopped, and killed if it
//! outlives [`DETACHED_STOP_GRACE`]).

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant as TokioInstant;

use super::{PoolActor, SlotState};
use crate::supervisor::Command;

/// How long php-cgi of a pool that is gone gets between SIGTERM and SIGKILL.
pub(super) const DETACHED_STOP_GRACE: Duration = Duration::from_secs(5);

/// How far the pool's stop has come.
#[derive(Debug, Default)]
pub(super) struct Stopping {
    /// No parent is restarted, and idle slots are exiting.
    begun: bool,
    /// Retired: the children are stopped once no request runs.
    retiring: bool,
    /// Every handle is gone: the actor only waits for its php-cgi to exit.
    detached: bool,
    /// When the children are killed if they still run.
    kill_at: Option<TokioInstant>,
}

impl Stopping {
    /// The pool is stopping (shutdown, retirement or detachment).
    pub(super) fn begun(&self) -> bool {
        self.begun
    }

    /// Every handle is gone.
    pub(super) fn detached(&self) -> bool {
        self.detached
    }

    /// When the children are to be killed.
    pub(super) fn kill_at(&self) -> Option<TokioInstant> {
        self.kill_at
    }

    /// Stop: no more restarts.
    /// Stops: no parent starts any more, and every slot but the busy ones exits.
    pub(super) fn stop(&mut self) {
        self.begun = true;
    }

    /// Retire: stop, and stop the children once idle, killing them after `limit`.
    pub(super) fn retire(&mut self, limit: Option<Duration>) {
        self.begun = true;
        self.retiring = true;
        self.kill_at = limit.map(|l| TokioInstant::now() + l);
    }

    /// Every handle is gone: stop, and kill the children if they outlive
    /// the grace (or an earlier retirement's limit).
    pub(super) fn detach(&mut self) {
        self.begun = true;
        self.detached = true;
        self.kill_at.get_or_insert_with(|| TokioInstant::now() + DETACHED_STOP_GRACE);
    }

    /// A retired pool whose last request has ended: time to stop its children.
    pub(super) fn children_due_to_stop(&self, busy: usize) -> bool {
        self.retiring && busy == 0
    }

    /// The children were signalled: no retirement or deadline is pending.
    pub(super) fn children_stopped(&mut self) {
        self.retiring = false;
        self.kill_at = None;
    }
}

impl PoolActor {
    /// A reload replaced this pool: its children stop once its last request
    /// ends (or are killed when `limit` passes).
    pub(super) fn retire(&mut self, limit: Option<Duration>) {
        self.stop();
        self.stopping.retire(limit);
        crate::notice!("[pool {}] retiring: {} request(s) still running", self.name, self.counters.busy);
        self.stop_children_when_idle();
    }

    /// Ends a retired pool's children once its last request is done.
    pub(super) fn stop_children_when_idle(&mut self) {
        if self.stopping.children_due_to_stop(self.counters.busy) {
            self.stop_children(Signal::SIGTERM);
        }
    }

    /// The children outlived their time (a retired pool's limit, or a
    /// detached pool's grace): killed.
    pub(super) fn kill_deadline_passed(&mut self) {
        if self.stopping.detached() {
            crate::warning!(
                "[pool {}] php-cgi still running {}s after SIGTERM; killing",
                self.name,
                DETACHED_STOP_GRACE.as_secs()
            );
        } else {
            crate::warning!(
                "[pool {}] process_control_timeout passed with {} request(s) running; killing",
                self.name,
                self.counters.busy
            );
        }
        self.stop_children(Signal::SIGKILL);
    }

    /// Signals the children to stop: nothing is pending after that.
    pub(super) fn stop_children(&mut self, signal: Signal) {
        self.stopping.children_stopped();
        self.signal_children(signal);
    }

    /// Signals the php-cgi parent's whole group, if it runs.
    pub(super) fn signal_children(&self, signal: Signal) {
        if let Some(pgid) = self.parent.pid() {
            self.supervisor.send(Command::SignalGroup { pgid, signal });
        }
    }

    pub(super) fn stop(&mut self) {
        self.stopping.stop();
        self.parent.cancel_start();
        for i in 0..self.slots.len() {
            if self.slots[i].state != SlotState::Busy {
                self.set_state(i, SlotState::Exiting);
            }
        }
    }

    /// The pool is gone (every handle dropped): its php-cgi must not outlive
    /// it, including a parent whose start is still on its way.
    pub(super) fn detach(&mut self) {
        self.stop();
        self.stopping.detach();
        self.balancer.close();
        self.signal_children(Signal::SIGTERM);
    }

    /// Detached, and no php-cgi of this pool runs or is being started.
    pub(super) fn detach_done(&self) -> bool {
        self.stopping.detached() && !self.parent.alive()
    }
}
