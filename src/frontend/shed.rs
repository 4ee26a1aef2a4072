//! Shedding waiting connections under pressure. When a listener cannot
//! accept (its `listen_max_connections`, or the open-file budget, is used
//! up), connections that have been waiting for a request head for a while (idle
//! keep-alive connections, silent ones, slowloris heads) are closed to make
//! room: nginx sends a request head in one go as soon as it connects, so the
//! connections that wait are the ones holding places without using them.
//! Without this, a flood of idle connections fills the kernel's listen queue and
//! nginx's own connections are refused (502).

use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How long a connection must have waited for a request head before it may
/// be shed.
pub const SHED_AFTER: Duration = Duration::from_secs(1);

/// The sending side: a listener (or the shared budget) that needs room.
#[derive(Debug, Clone)]
pub struct Pressure(std::sync::Arc<watch::Sender<Option<Instant>>>);

impl Default for Pressure {
    fn default() -> Self {
        Pressure(std::sync::Arc::new(watch::channel(None).0))
    }
}

impl Pressure {
    /// Asks every connection waiting for a head since before `cutoff` to close.
    pub fn shed(&self, cutoff: Instant) {
        self.0.send_replace(Some(cutoff));
    }

    /// What a new connection listens to.
    pub fn subscribe(&self) -> watch::Receiver<Option<Instant>> {
        self.0.subscribe()
    }
}

/// The receiving side, held by each connection: its listener's pressure and
/// the shared budget's.
#[derive(Debug, Default)]
pub struct Shed {
    listener: Option<watch::Receiver<Option<Instant>>>,
    budget: Option<watch::Receiver<Option<Instant>>>,
}

impl Shed {
    /// Listens to its listener's and the budget's pressure.
    pub fn new(listener: &Pressure, budget: &Pressure) -> Shed {
        Shed { listener: Some(listener.subscribe()), budget: Some(budget.subscribe()) }
    }

    /// Waits for the next request to shed; returns its cutoff. Never returns
    /// for a connection that listens to nothing.
    pub async fn next(&mut self) -> Instant {
        tokio::select! {
            Some(cutoff) = changed(&mut self.listener) => cutoff,
            Some(cutoff) = changed(&mut self.budget) => cutoff,
            else => std::future::pending().await,
        }
    }
}

/// The next cutoff `rx` sends; `None` once its sender is gone (or if there is none).
async fn changed(rx: &mut Option<watch::Receiver<Option<Instant>>>) -> Option<Instant> {
    let r = rx.as_mut()?;
    loop {
        if r.changed().await.is_err() {
            *rx = None;
            return None;
        }
        if let Some(cutoff) = *r.borrow_and_update() {
            return Some(cutoff);
        }
    }
}
