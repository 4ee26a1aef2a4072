//! How far the pool's end has come. A pool stops (shutdown: no more
//! restarts), retires (a reload replaced it: its children are stopped once
//! its last request ends, or when `process_control_timeout` passes), or is
//! detached (every handle is gone: its php-cgi is stopped, and killed if it
//! outlives [`DETACHED_STOP_GRACE`]).

use std::time::Duration;

use tokio::time::Instant as TokioInstant;

/// How long php-cgi of a pool that is gone gets between SIGTERM and SIGKILL.
pub(super) const DETACHED_STOP_GRACE: Duration = Duration::from_secs(5);

/// The pool's end.
#[derive(Debug, Default)]
pub(super) struct Ending {
    /// No parent is restarted, and idle slots are exiting.
    stopping: bool,
    /// Retired: the children are stopped once no request runs.
    retiring: bool,
    /// Every handle is gone: the actor only waits for its php-cgi to exit.
    detached: bool,
    /// When the children are killed if they still run.
    kill_at: Option<TokioInstant>,
}

impl Ending {
    /// The pool is stopping (shutdown, retirement or detachment).
    pub(super) fn stopping(&self) -> bool {
        self.stopping
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
    pub(super) fn stop(&mut self) {
        self.stopping = true;
    }

    /// Retire: stop, and stop the children once idle, killing them after `limit`.
    pub(super) fn retire(&mut self, limit: Option<Duration>) {
        self.stopping = true;
        self.retiring = true;
        self.kill_at = limit.map(|l| TokioInstant::now() + l);
    }

    /// Every handle is gone: stop, and kill the children if they outlive
    /// the grace (or an earlier retirement's limit).
    pub(super) fn detach(&mut self) {
        self.stopping = true;
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
