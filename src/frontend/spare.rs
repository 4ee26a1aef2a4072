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

use std::future::Future;
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
    /// Accepted on `pm_status_listen`: only the status and ping pages are served.
    pub pages_only: bool,
}

/// What a connection task does with what it is handed (a [`Job`]; the tests
/// hand it others).
pub trait Serve: Send + 'static {
    /// Serves it to its end.
    fn serve(self) -> impl Future<Output = ()> + Send;
}

impl Serve for Job {
    /// Serves the connection to its end, then returns its permits.
    async fn serve(self) {
        let Job { stream, held, shed, current, shutdown, pages_only } = self;
        stream.serve(current, shutdown, pages_only, shed).await;
        drop(held);
    }
}

/// The idle connection tasks of one accept loop, most recently idle last.
struct Idle<J> {
    tasks: Vec<Arc<Slot<J>>>,
    /// The accept loop has ended: no task waits any more.
    closed: bool,
}

impl<J> Default for Idle<J> {
    fn default() -> Self {
        Idle { tasks: Vec::new(), closed: false }
    }
}

/// Where an idle task is handed its next connection.
struct Slot<J> {
    /// The connection handed over; none when woken to end.
    job: Mutex<Option<J>>,
    ready: Notify,
}

/// An accept loop's handle on its idle tasks; dropping it ends them.
pub struct Spares<J: Serve = Job> {
    idle: Arc<Mutex<Idle<J>>>,
    done: mpsc::Sender<()>,
}

impl<J: Serve> Spares<J> {
    /// No idle tasks yet. Every task holds a clone of `done` until it ends.
    pub fn new(done: mpsc::Sender<()>) -> Self {
        Spares { idle: Arc::default(), done }
    }

    /// Serves `job` in the task that went idle last, or in a new task if none waits.
    pub fn serve(&self, job: J) {
        let slot = lock(&self.idle).tasks.pop();
        match slot {
            Some(slot) => {
                *lock(&slot.job) = Some(job);
                slot.ready.notify_one();
            }
            None => {
                let (idle, done) = (self.idle.clone(), self.done.clone());
                // Boxed: the future is kilobytes, and spawning moves a future several
                // times and completing it twice more; a box moves as a pointer
                // (callgrind.sh, 26bceca: 1,860 fewer instructions per new connection).
                tokio::spawn(Box::pin(run(job, idle, done)));
            }
        }
    }
}

impl<J: Serve> Drop for Spares<J> {
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
async fn run<J: Serve>(mut job: J, idle: Arc<Mutex<Idle<J>>>, done: mpsc::Sender<()>) {
    let slot = Arc::new(Slot { job: Mutex::new(None), ready: Notify::new() });
    loop {
        job.serve().await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// A job that says which task served it, once `go` lets it end.
    struct Probe {
        served_by: oneshot::Sender<tokio::task::Id>,
        go: Option<oneshot::Receiver<()>>,
    }

    impl Serve for Probe {
        async fn serve(self) {
            if let Some(go) = self.go {
                let _ = go.await;
            }
            let _ = self.served_by.send(tokio::task::id());
        }
    }

    /// A job that ends at once; the id of the task that served it.
    fn quick() -> (Probe, oneshot::Receiver<tokio::task::Id>) {
        let (tx, rx) = oneshot::channel();
        (Probe { served_by: tx, go: None }, rx)
    }

    /// A job that ends when its sender is used or dropped.
    fn held() -> (Probe, oneshot::Receiver<tokio::task::Id>, oneshot::Sender<()>) {
        let (tx, rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        (Probe { served_by: tx, go: Some(go_rx) }, rx, go_tx)
    }

    fn idle_count(spares: &Spares<Probe>) -> usize {
        lock(&spares.idle).tasks.len()
    }

    /// Lets the tasks run until `n` of them are idle.
    async fn until_idle(spares: &Spares<Probe>, n: usize) {
        for _ in 0..1000 {
            if idle_count(spares) == n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{} tasks idle, not {n}", idle_count(spares));
    }

    #[tokio::test]
    async fn a_task_whose_job_ended_serves_the_next_one() {
        let (done, _rx) = mpsc::channel(1);
        let spares = Spares::new(done);
        let (first, first_by) = quick();
        spares.serve(first);
        let first_by = first_by.await.unwrap();
        until_idle(&spares, 1).await;
        let (second, second_by) = quick();
        spares.serve(second);
        assert_eq!(second_by.await.unwrap(), first_by, "the idle task was handed the next job");
        until_idle(&spares, 1).await;
    }

    #[tokio::test]
    async fn jobs_side_by_side_get_tasks_of_their_own_and_at_most_max_idle_wait() {
        let (done, _rx) = mpsc::channel(1);
        let spares = Spares::new(done);
        let mut running = Vec::new();
        for _ in 0..MAX_IDLE + 3 {
            let (job, by, go) = held();
            spares.serve(job);
            running.push((by, go));
        }
        assert_eq!(idle_count(&spares), 0);
        let mut ids = std::collections::HashSet::new();
        for (by, go) in running {
            go.send(()).unwrap();
            ids.insert(by.await.unwrap());
        }
        assert_eq!(ids.len(), MAX_IDLE + 3, "each job running at once had a task of its own");
        until_idle(&spares, MAX_IDLE).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(idle_count(&spares), MAX_IDLE, "the tasks beyond MAX_IDLE ended");
    }

    #[tokio::test]
    async fn dropping_the_spares_ends_the_idle_tasks() {
        let (done, mut done_rx) = mpsc::channel(1);
        let spares = Spares::new(done);
        let mut running = Vec::new();
        for _ in 0..3 {
            let (job, by, go) = held();
            spares.serve(job);
            running.push((by, go));
        }
        for (by, go) in running {
            go.send(()).unwrap();
            by.await.unwrap();
        }
        until_idle(&spares, 3).await;
        drop(spares);
        let closed = tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await;
        assert_eq!(closed, Ok(None), "every task dropped its clone of done");
    }

    #[tokio::test]
    async fn a_task_that_ends_its_job_after_the_spares_are_gone_ends_too() {
        let (done, mut done_rx) = mpsc::channel(1);
        let spares = Spares::new(done);
        let (job, by, go) = held();
        spares.serve(job);
        drop(spares);
        go.send(()).unwrap();
        by.await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await;
        assert_eq!(closed, Ok(None), "the task did not wait after the accept loop ended");
    }
}
