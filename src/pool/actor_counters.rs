//! The pool's counters for the status page: requests accepted, busy slots
//! and their peak, the longest queue wait, children replaced by reason, slow
//! requests.

use std::time::Duration;

use super::Reason;

/// What the actor counts.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Requests that got a worker.
    pub(super) accepted: u64,
    /// Requests running now (abandoned ones until their child lets go).
    pub(super) busy: usize,
    /// Most requests that ran at once.
    pub(super) max_active: usize,
    /// Longest wait for a worker.
    pub(super) max_queue_wait: Duration,
    /// Children replaced, by reason (indexed like [`Reason::ALL`]).
    pub(super) replaced: [u64; Reason::ALL.len()],
    /// Requests that ran past `request_slowlog_timeout`.
    pub(super) slow_requests: u64,
}

impl Counters {
    /// A request got a worker after waiting `queued`.
    pub(super) fn request_started(&mut self, queued: Duration) {
        self.accepted += 1;
        self.busy += 1;
        self.max_active = self.max_active.max(self.busy);
        self.max_queue_wait = self.max_queue_wait.max(queued);
    }

    /// A request ended.
    pub(super) fn request_ended(&mut self) {
        self.busy = self.busy.saturating_sub(1);
    }

    /// A child was replaced (or died under a request) for `reason`.
    pub(super) fn replaced(&mut self, reason: Reason) {
        self.replaced[reason.index()] += 1;
    }
}
