//! Shedding waiting connections under pressure. When a listener cannot
//! accept (its `listen_max_connections`, or the open-file budget, is used
//! up), connections that have been waiting for a request head for a while (idle
//! keep-alive connections, silent ones, slowloris heads) are closed to make
//! room: nginx sends a request head in one go as soon as it connects, so the
//! connections that wait are the ones holding places without using them.
//! Without this, a flood of idle connections fills the kernel's listen queue and
//! nginx's own connections are refused (502).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::futures::OwnedNotified;
use tokio::sync::{watch, Notify};

/// How long a connection must have waited for a request head before it may
/// be shed.
pub const SHED_AFTER: Duration = Duration::from_secs(1);

/// The sending side: a listener (or the shared budget) that needs room.
/// Pressures made with [`Pressure::sibling`] wake the same connections: a
/// connection waits for one wake-up, whatever its signals (shutdown, its
/// listener's pressure, the budget's), and then looks at each; a wait costs
/// one registration, not one per signal.
#[derive(Debug, Clone)]
pub struct Pressure {
    cutoff: Arc<watch::Sender<Option<Instant>>>,
    wake: Arc<Notify>,
}

impl Default for Pressure {
    fn default() -> Self {
        Pressure { cutoff: Arc::new(watch::channel(None).0), wake: Arc::new(Notify::new()) }
    }
}

impl Pressure {
    /// Asks every connection waiting for a head since before `cutoff` to close.
    pub fn shed(&self, cutoff: Instant) {
        self.cutoff.send_replace(Some(cutoff));
        self.wake.notify_waiters();
    }

    /// A pressure of its own (a listener's) that wakes the connections this
    /// one wakes (the budget's: every connection's).
    pub fn sibling(&self) -> Pressure {
        Pressure { cutoff: Arc::new(watch::channel(None).0), wake: self.wake.clone() }
    }

    /// Wakes every connection waiting for a request head to look at its
    /// signals: after shutdown is sent, so that idle connections close.
    pub fn wake_connections(&self) {
        self.wake.notify_waiters();
    }

    /// What a new connection listens to.
    pub fn subscribe(&self) -> watch::Receiver<Option<Instant>> {
        self.cutoff.subscribe()
    }
}

/// The receiving side, held by each connection: its listener's pressure and
/// the shared budget's, and the wake-up they share.
#[derive(Debug, Default)]
pub struct Shed {
    listener: Option<watch::Receiver<Option<Instant>>>,
    budget: Option<watch::Receiver<Option<Instant>>>,
    wake: Arc<Notify>,
}

impl Shed {
    /// Listens to its listener's and the budget's pressure (siblings).
    pub fn new(listener: &Pressure, budget: &Pressure) -> Shed {
        Shed { listener: Some(listener.subscribe()), budget: Some(budget.subscribe()), wake: budget.wake.clone() }
    }

    /// The next wake-up. Made before the signals are looked at, it resolves
    /// for any wake-up from then on, also one before it is first awaited.
    pub fn signalled(&self) -> OwnedNotified {
        self.wake.clone().notified_owned()
    }

    /// A cutoff sent since the last look, at once; else, after the wake-up
    /// `signalled` (shutdown, or a pressure), the cutoff sent meanwhile, if any.
    pub async fn next(&mut self, signalled: OwnedNotified) -> Option<Instant> {
        if let Some(cutoff) = self.sent() {
            return Some(cutoff);
        }
        signalled.await;
        self.sent()
    }

    /// The latest cutoff of either pressure not looked at yet.
    fn sent(&mut self) -> Option<Instant> {
        let (a, b) = (sent(&mut self.listener), sent(&mut self.budget));
        a.max(b)
    }
}

/// The cutoff `rx` has sent since it was last looked at; a receiver whose
/// sender is gone is dropped.
fn sent(rx: &mut Option<watch::Receiver<Option<Instant>>>) -> Option<Instant> {
    match rx.as_mut()?.has_changed() {
        Ok(true) => *rx.as_mut()?.borrow_and_update(),
        Ok(false) => None,
        Err(_) => {
            *rx = None;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_connection_hears_its_listener_the_budget_and_a_bare_wake_up() {
        let budget = Pressure::default();
        let (listener, other) = (budget.sibling(), budget.sibling());
        let mut shed = Shed::new(&listener, &budget);
        let cutoff = Instant::now();
        let signalled = shed.signalled();
        listener.shed(cutoff);
        assert_eq!(shed.next(signalled).await, Some(cutoff));
        let later = cutoff + Duration::from_secs(1);
        let signalled = shed.signalled();
        budget.shed(later);
        assert_eq!(shed.next(signalled).await, Some(later));
        // Another listener's pressure, or shutdown: a wake-up without a cutoff for this one.
        let signalled = shed.signalled();
        other.shed(later);
        assert_eq!(shed.next(signalled).await, None);
        let signalled = shed.signalled();
        budget.wake_connections();
        assert_eq!(shed.next(signalled).await, None);
    }
}
