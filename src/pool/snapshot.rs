//! Snapshots for the status page: answered once every slot's child is
//! known, with a real pid for each slot.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::msg::PoolSnapshot;

/// Longest a snapshot waits for pid lookups in progress.
pub const LOOKUP_WAIT: Duration = Duration::from_millis(300);

/// Snapshot requests held back while a slot's child is being looked up (a
/// status page asked right after a request would otherwise show pid 0).
#[derive(Debug, Default)]
pub struct Waiters {
    waiting: Vec<oneshot::Sender<PoolSnapshot>>,
    until: Option<Instant>,
}

impl Waiters {
    /// Holds `respond_to` back until [`Waiters::answer`] sends it a snapshot.
    pub fn hold(&mut self, respond_to: oneshot::Sender<PoolSnapshot>, now: Instant) {
        self.until.get_or_insert(now + LOOKUP_WAIT);
        self.waiting.push(respond_to);
    }

    /// True when requests wait and either no lookup runs any more or they
    /// have waited long enough.
    pub fn due(&self, lookups_running: bool, now: Instant) -> bool {
        !self.waiting.is_empty() && (!lookups_running || self.until.is_some_and(|until| now >= until))
    }

    /// Sends `snapshot` to everyone waiting.
    pub fn answer(&mut self, snapshot: PoolSnapshot) {
        self.until = None;
        for respond_to in self.waiting.drain(..) {
            let _ = respond_to.send(snapshot.clone());
        }
    }
}

/// Gives each slot without a pid one of `children` (the php-cgi parent's, from
/// [`crate::sys::procfs::children`]) that no slot has: children that have not
/// served a connection yet belong to no slot, and the status page shows them in
/// the slots that have none.
pub fn fill_unbound(pids: &mut [Option<i32>], children: &[i32]) {
    let free: Vec<i32> = children.iter().copied().filter(|child| !pids.contains(&Some(*child))).collect();
    let mut free = free.into_iter();
    for pid in pids.iter_mut().filter(|pid| pid.is_none()) {
        *pid = free.next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbound_slots_get_the_children_no_slot_has() {
        let mut pids = [Some(11), None, Some(13), None, None];
        fill_unbound(&mut pids, &[10, 11, 12, 13]);
        assert_eq!(pids, [Some(11), Some(10), Some(13), Some(12), None]);
    }

    #[test]
    fn waiters_are_due_when_lookups_end_or_time_is_up() {
        let mut waiters = Waiters::default();
        let now = Instant::now();
        assert!(!waiters.due(false, now), "nobody waits");
        let (tx, _rx) = oneshot::channel();
        waiters.hold(tx, now);
        assert!(!waiters.due(true, now));
        assert!(waiters.due(false, now));
        assert!(waiters.due(true, now + LOOKUP_WAIT));
    }
}
