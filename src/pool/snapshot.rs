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

/// The php-cgi parent's children as the supervisor last read them from /proc
/// ([`crate::supervisor::Command::ListChildren`]). The actor asks for a
/// reading when a snapshot is asked for and answers once it is back: it never
/// reads /proc itself, so the runtime thread never waits on it.
#[derive(Debug, Default)]
pub struct ChildList {
    /// The parent read, and its children.
    read: Option<(i32, Vec<i32>)>,
    /// When the reading on its way was asked for.
    asked: Option<Instant>,
}

impl ChildList {
    /// Whether to ask for a reading now: none is on its way (or the one on
    /// its way is overdue by [`LOOKUP_WAIT`]: the supervisor is stopping).
    pub fn ask(&mut self, now: Instant) -> bool {
        if self.asked.is_some_and(|at| now < at + LOOKUP_WAIT) {
            return false;
        }
        self.asked = Some(now);
        true
    }

    /// A reading is on its way.
    pub fn pending(&self) -> bool {
        self.asked.is_some()
    }

    /// The supervisor's reading of `parent`'s children.
    pub fn read(&mut self, parent: i32, pids: Vec<i32>) {
        self.asked = None;
        self.read = Some((parent, pids));
    }

    /// The children of `parent` as last read (none if it never was).
    pub fn of(&self, parent: i32) -> &[i32] {
        match &self.read {
            Some((read, pids)) if *read == parent => pids,
            _ => &[],
        }
    }
}

/// Gives each slot without a pid one of `children` (the php-cgi parent's, from
/// a [`ChildList`]) that no slot has: children that have not
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
    fn a_child_list_is_asked_once_until_read_and_names_its_parent() {
        let (mut list, now) = (ChildList::default(), Instant::now());
        assert!(!list.pending() && list.of(10).is_empty());
        assert!(list.ask(now));
        assert!(!list.ask(now), "one reading at a time");
        assert!(list.pending());
        list.read(10, vec![11, 12]);
        assert!(!list.pending());
        assert_eq!(list.of(10), [11, 12]);
        assert!(list.of(20).is_empty(), "another parent's children are not known");
        assert!(list.ask(now));
        assert!(list.ask(now + LOOKUP_WAIT), "a reading that never came is asked again");
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
