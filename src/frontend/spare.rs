//! Connection tasks that outlive their connection. When a connection ends, its
//! task waits (up to [`MAX_IDLE`] tasks per accept loop) for the accept loop to
//! hand it the next one, instead of ending while a new task is spawned for
//! that one. Spawning costs, per connection: the box of the task's future
//! (kilobytes, the proxy's state included: glibc serves it from its slow path),
//! the copy of the future into it, tokio's cache-aligned task cell (`memalign`),
//! and freeing all three; a hand-over costs a lock and a wake-up
//! (`scripts/bench/callgrind.sh BINARY new`: 22,445 → 20,411 instructions per
//! request).
//!
//! The accept loop owns the [`Spares`]; when it ends (shutdown, or the pool it
//! served replaced by a reload) the idle tasks end too, dropping what they hold
//! (the server waits for every connection task before it exits).

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, watch, Notify};

use super::listen::Accepted;
use super::shed::Shed;
use super::Held;
use crate::pool::Pool;

/// Most tasks an accept loop keeps waiting for a connection; beyond them a
/// task ends with its connection. Each holds its future's box (a few KiB).
pub const MAX_IDLE: usize = 64;

/// One accepted connection and what its task needs to serve it.
pub struct Job {
    /// The connection.
    pub stream: Accepted,
    /// Its permits: this listener's and the shared budget's, returned when it ends.
    pub held: Held,
    /// The pressure that may ask it to close while it waits for a request.
    pub shed: Shed,
    /// The pool it serves (reload swaps it); a clone of the accept loop's, taken at accept.
    pub current: watch::Receiver<Arc<Pool>>,
    /// Shutdown, likewise.
    pub shutdown: watch::Receiver<bool>,
}

impl Job {
    /// Serves the connection to its end, then returns its permits.
    async fn serve(self, pages_only: bool) {
        let Job { stream, held, shed, current, shutdown } = self;
        stream.serve(current, shutdown, pages_only, shed).await;
        drop(held);
    }
}

/// The idle connection tasks of one accept loop, most recently idle last.
#[derive(Default)]
struct Idle {
    tasks: Vec<Arc<Slot>>,
    /// The accept loop has ended: no task waits any more.
    closed: bool,
}

/// Where an idle task is handed its next connection.
#[derive(Default)]
struct Slot {
    /// The connection handed over; none when woken to end.
    job: Mutex<Option<Job>>,
    ready: Notify,
}

/// An accept loop's handle on its idle tasks; dropping it ends them.
pub struct Spares {
    idle: Arc<Mutex<Idle>>,
    pages_only: bool,
    done: mpsc::Sender<()>,
}

impl Spares {
    /// No idle tasks yet. Every task holds a clone of `done` until it ends;
    /// `pages_only` is the listener's.
    pub fn new(pages_only: bool, done: mpsc::Sender<()>) -> Spares {
        Spares { idle: Arc::default(), pages_only, done }
    }

    /// Serves `job` in the task that went idle last, or in a new task if none waits.
    pub fn serve(&self, job: Job) {
        let slot = lock(&self.idle).tasks.pop();
        match slot {
            Some(slot) => {
                *lock(&slot.job) = Some(job);
                slot.ready.notify_one();
            }
            None => {
                let (idle, pages_only, done) = (self.idle.clone(), self.pages_only, self.done.clone());
                // Boxed: the future is kilobytes, and spawning moves a future several
                // times and completing it twice more; a box moves as a pointer
                // (callgrind.sh, 26bceca: 1,860 fewer instructions per new connection).
                tokio::spawn(Box::pin(run(job, idle, pages_only, done)));
            }
        }
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        let tasks = {
            let mut idle = lock(&self.idle);
            idle.closed = true;
            std::mem::take(&mut idle.tasks)
        };
        for slot in tasks {
            slot.ready.notify_one();
        }
    }
}

/// A connection task: serves `job`, then each connection it is handed, until
/// it is not kept idle or the accept loop ends.
async fn run(mut job: Job, idle: Arc<Mutex<Idle>>, pages_only: bool, done: mpsc::Sender<()>) {
    let slot = Arc::new(Slot::default());
    loop {
        job.serve(pages_only).await;
        {
            let mut idle = lock(&idle);
            if idle.closed || idle.tasks.len() >= MAX_IDLE {
                break;
            }
            idle.tasks.push(slot.clone());
        }
        // A hand-over before this wait leaves its permit in `ready`.
        slot.ready.notified().await;
        match lock(&slot.job).take() {
            Some(next) => job = next,
            None => break,
        }
    }
    drop(done);
}

/// Locks `m`; a panic elsewhere while it was held left nothing half-done.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
