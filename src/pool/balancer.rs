//! Balancing: idle workers wait in a queue, a tokio semaphore counts them,
//! and the first request to get a permit takes the longest idle worker whose
//! connection is registered with its own thread's reactor (`Worker::home`) or
//! that has none yet, or the longest idle one if none is: a worker that changes front-end threads
//! costs two `epoll_ctl`s (`Worker::come_home`). The queue's lock is held for a
//! few instructions, never across an await; the semaphore is FIFO, so requests
//! are served in order.
//!
//! A worker whose request has ended goes back through the pool's actor, which
//! decides first whether its child must be replaced; or, when the actor has
//! granted its slot an *express* budget (nothing to decide for that many
//! requests: no `pm_max_requests` reached, no mark for replacement, no stop),
//! straight back here, the actor only noted of it. Until it is back it is
//! counted as coming back, and then in the idle queue until a request takes it:
//! a request that finds no idle worker then may wait
//! for it even when `queue_max_len` is reached, since no request of a child is
//! refused for a child whose request has already ended (with several front-end
//! threads, the next request may reach the balancer before the actor ran).
//! The actor takes an idle worker out of the queue only to replace its child
//! ([`Balancer::withdraw`]), with a permit, as a request takes one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::worker::{ComingBack, Worker};

/// Why no worker was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError {
    /// `queue_max_len` requests are already waiting.
    QueueFull,
    /// The pool is shutting down.
    Closed,
    /// No worker became free within `queue_max_wait`.
    WaitedTooLong,
}

/// The idle-worker queue of one pool.
#[derive(Debug)]
pub struct Balancer {
    permits: Semaphore,
    /// The idle workers, longest idle first; as many as `permits` has.
    idle: Mutex<VecDeque<Worker>>,
    waiting: AtomicUsize,
    /// Workers whose request ended and that no request has taken since: on their
    /// way back (through the actor or not), or in the idle queue.
    coming_back: Arc<AtomicUsize>,
    max_waiting: AtomicUsize,
    /// php-fpm's "max children reached": seconds in which a request found
    /// every worker busy, and the last such second (from `created`, plus one).
    full_seconds: AtomicU64,
    last_full_second: AtomicU64,
    created: Instant,
    queue_max_len: usize,
    queue_max_wait: Option<Duration>,
    /// Per slot: how many more of its requests may end with the worker going
    /// straight back here (set by the actor when it lends the worker, revoked
    /// by it at any time).
    express: Box<[AtomicU64]>,
    /// Per slot: the pid of the child the budget was granted for (the front
    /// end samples its usage after an express end, `Pool::sample_usage`).
    express_pid: Box<[AtomicI32]>,
}

/// Decrements the waiting count when a queued request leaves the queue,
/// whether it got a worker or its task was dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Balancer {
    /// A balancer over `workers`, all idle. Requests wait at most
    /// `queue_max_wait` (if set), and at most `queue_max_len` of them at once.
    pub fn new(workers: Vec<Worker>, queue_max_len: usize, queue_max_wait: Option<Duration>) -> Balancer {
        let count = workers.len();
        let express = (0..count).map(|_| AtomicU64::new(0)).collect();
        let express_pid = (0..count).map(|_| AtomicI32::new(0)).collect();
        Balancer {
            permits: Semaphore::new(count),
            idle: Mutex::new(workers.into()),
            waiting: AtomicUsize::new(0),
            coming_back: Arc::new(AtomicUsize::new(0)),
            max_waiting: AtomicUsize::new(0),
            full_seconds: AtomicU64::new(0),
            last_full_second: AtomicU64::new(0),
            created: Instant::now(),
            queue_max_len,
            queue_max_wait,
            express,
            express_pid,
        }
    }

    /// The actor lends `slot`'s worker, connected to child `pid`: its next
    /// `requests` requests may end with the worker going straight back
    /// ([`Self::take_express`]). Only the actor, holding the worker, grants:
    /// no request of the slot reads the pair meanwhile (the idle queue's lock
    /// orders the stores before the next request's reads).
    pub fn grant_express(&self, slot: usize, requests: u64, pid: i32) {
        if let (Some(budget), Some(child)) = (self.express.get(slot), self.express_pid.get(slot)) {
            child.store(pid, Ordering::Relaxed);
            budget.store(requests, Ordering::Relaxed);
        }
    }

    /// The actor has something to decide when `slot`'s next request ends.
    /// A request that took its express pass just before still goes straight
    /// back (the actor reads its note before it decides anything).
    pub fn revoke_express(&self, slot: usize) {
        if let Some(budget) = self.express.get(slot).filter(|b| b.load(Ordering::Relaxed) != 0) {
            budget.store(0, Ordering::Relaxed);
        }
    }

    /// Whether the request of `slot` that has just ended may put its worker
    /// straight back ([`Self::release`]): then the pid of the child it was
    /// granted for, which served the request (the budget holds only for the
    /// connection the worker was lent with). Uses one request of its budget.
    pub fn take_express(&self, slot: usize) -> Option<i32> {
        let (budget, child) = (self.express.get(slot)?, self.express_pid.get(slot)?);
        let granted = match budget.load(Ordering::Relaxed) {
            0 => false,
            u64::MAX => true,
            _ => budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1)).is_ok(),
        };
        granted.then(|| child.load(Ordering::Relaxed))
    }

    /// Waits for an idle worker; returns it with the time spent queued.
    pub async fn acquire(&self) -> Result<(Worker, Duration), AcquireError> {
        if let Ok(permit) = self.permits.try_acquire() {
            permit.forget();
            return self.take().map(|w| (w, Duration::ZERO));
        }
        let ahead = self.waiting.fetch_add(1, Ordering::SeqCst);
        if ahead >= self.queue_max_len + self.coming_back.load(Ordering::SeqCst) {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            // A worker that came back meanwhile (its permit is added before it stops
            // counting as coming back) is taken rather than refused.
            if let Ok(permit) = self.permits.try_acquire() {
                permit.forget();
                return self.take().map(|w| (w, Duration::ZERO));
            }
            self.found_all_busy();
            return Err(AcquireError::QueueFull);
        }
        self.found_all_busy();
        self.max_waiting.fetch_max(ahead + 1, Ordering::Relaxed);
        let queued = Waiting(&self.waiting);
        let start = Instant::now();
        let permit = match self.queue_max_wait {
            Some(limit) => {
                tokio::time::timeout(limit, self.permits.acquire()).await.map_err(|_| AcquireError::WaitedTooLong)?
            }
            None => self.permits.acquire().await,
        };
        permit.map_err(|_| AcquireError::Closed)?.forget();
        // Out of the queue before its worker stops counting as coming back (in `take`):
        // the pair is always counted in one of the two.
        drop(queued);
        self.take().map(|w| (w, start.elapsed()))
    }

    /// The idle worker for a request that got a permit: the longest idle of
    /// those at home on this thread or not connected yet (one thread: the
    /// longest idle, so requests one at a time go round every child), else the
    /// longest idle.
    fn take(&self) -> Result<Worker, AcquireError> {
        let here = std::thread::current().id();
        let mut idle = self.idle_queue();
        let at_home = idle.iter().position(|w| w.home().is_none_or(|home| home == here)).unwrap_or(0);
        let mut worker = idle.remove(at_home).ok_or_else(|| {
            crate::error!("internal: a permit was granted but no idle worker was queued");
            AcquireError::Closed
        })?;
        drop(idle);
        // Handed out: no longer on its way to a waiting request.
        worker.coming_back = None;
        Ok(worker)
    }

    /// Takes `slot`'s worker out of the idle queue for the actor, which replaces
    /// its child before lending it again ([`Self::release`]). None when the
    /// worker is not there (a request has it, whether the actor has read its
    /// start or not) or when every queued worker is promised to a request that
    /// holds its permit. The actor takes a permit as a request does, so no
    /// request is granted one for the withdrawn worker.
    pub fn withdraw(&self, slot: usize) -> Option<Worker> {
        let permit = self.permits.try_acquire().ok()?;
        let mut idle = self.idle_queue();
        let worker = idle.iter().position(|w| w.slot() == slot).and_then(|at| idle.remove(at));
        drop(idle);
        if worker.is_some() {
            permit.forget();
        }
        // Otherwise the permit goes back, now that the lock is released.
        worker
    }

    /// The idle queue (a worker is never dropped while the lock is held, so a
    /// panic cannot have left it half-changed).
    fn idle_queue(&self) -> MutexGuard<'_, VecDeque<Worker>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `worker`'s request has ended: it is counted as coming back (a request
    /// may wait for it rather than be refused) until a request takes it again.
    pub fn coming_back(&self, worker: &mut Worker) {
        if worker.coming_back.is_none() {
            worker.hold(self.ending());
        }
    }

    /// A request's child has ended it (its END_REQUEST is read) while its worker is
    /// still borrowed: the worker counts as coming back for as long as the token is
    /// held (then [`Worker::hold`] it, and [`Self::coming_back`] keeps that count).
    pub fn ending(&self) -> ComingBack {
        ComingBack::count(&self.coming_back)
    }

    /// Puts a worker back in the idle queue; once the balancer is closed, the
    /// worker is dropped instead, closing its connection so that its child,
    /// which would wait on a kept connection for ever, can exit.
    ///
    /// It counts as coming back until a request takes it ([`Self::take`]): its
    /// permit may go to a waiting request whose task has not run yet, which
    /// still counts as waiting, and a full queue must not refuse a request
    /// for that (bench.sh keep512 got 503 "queue full (511 waiting)" with 512
    /// connections and 4 children).
    pub fn release(&self, mut worker: Worker) {
        if self.permits.is_closed() {
            drop(worker);
        } else {
            self.coming_back(&mut worker);
            self.idle_queue().push_back(worker);
            self.permits.add_permits(1);
        }
        if self.permits.is_closed() {
            // Closed meanwhile: close() may have drained the queue before our send.
            self.drain_idle();
        }
    }

    /// Requests waiting for a worker right now (php-fpm's "listen queue").
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The most requests that ever waited at once.
    pub fn max_waiting(&self) -> usize {
        self.max_waiting.load(Ordering::Relaxed)
    }

    /// A request found every worker busy: counted once a second at most, as
    /// php-fpm counts a dynamic pool at its limit (once a maintenance tick), so
    /// that a saturated pool shows seconds, not requests.
    fn found_all_busy(&self) {
        let second = self.created.elapsed().as_secs() + 1;
        if self.last_full_second.swap(second, Ordering::Relaxed) != second {
            self.full_seconds.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// php-fpm's "max children reached": the seconds in which a request found
    /// every worker busy.
    pub fn max_children_reached(&self) -> u64 {
        self.full_seconds.load(Ordering::Relaxed)
    }

    /// Most requests that may wait.
    pub fn queue_max_len(&self) -> usize {
        self.queue_max_len
    }

    /// Idle workers right now.
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.permits.available_permits()
    }

    /// Refuses all current and future waiters (shutdown, or a reload retired
    /// the pool) and closes the idle workers' connections to their children.
    pub fn close(&self) {
        self.permits.close();
        self.drain_idle();
    }

    fn drain_idle(&self) {
        // Dropped outside the lock: closing a connection is a system call.
        let workers = std::mem::take(&mut *self.idle_queue());
        drop(workers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn workers(n: usize) -> Vec<Worker> {
        let epochs: std::sync::Arc<[std::sync::atomic::AtomicU32]> =
            (0..n).map(|_| std::sync::atomic::AtomicU32::new(0)).collect();
        (0..n).map(|i| Worker::new(i, epochs.clone())).collect()
    }

    /// A saturated pool counts the seconds it was full, not its requests (php-fpm's
    /// exporters alert on the rate of "max children reached").
    #[tokio::test]
    async fn max_children_reached_counts_seconds_not_requests() {
        let b = Balancer::new(Vec::new(), 0, None);
        for _ in 0..100 {
            assert!(matches!(b.acquire().await, Err(AcquireError::QueueFull)));
        }
        assert_eq!(b.max_children_reached(), 1);
    }

    #[tokio::test]
    async fn hands_out_each_worker_once() {
        let b = Balancer::new(workers(2), 4, None);
        let (a, _) = b.acquire().await.unwrap();
        let (c, _) = b.acquire().await.unwrap();
        assert_ne!(a.slot(), c.slot());
        assert_eq!(b.idle(), 0);
        b.release(a);
        assert_eq!(b.idle(), 1);
    }

    #[tokio::test]
    async fn a_request_takes_a_worker_at_home_on_its_thread_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("children.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let socket =
            Arc::new(super::super::ChildSocket { path, dir: dir.path().join("gone"), listener: listener.into() });
        let b = Arc::new(Balancer::new(workers(2), 4, None));
        let (mut here, _) = b.acquire().await.unwrap();
        here.ensure_connected(&socket).await.unwrap();
        let (elsewhere, socket2) = (b.clone(), socket.clone());
        let other_thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (mut w, _) = elsewhere.acquire().await.unwrap();
                w.ensure_connected(&socket2).await.unwrap();
                elsewhere.release(w);
            })
        });
        other_thread.join().unwrap();
        let slot = here.slot();
        b.release(here);
        let (first, _) = b.acquire().await.unwrap();
        assert_eq!(first.slot(), slot, "the worker at home here, though the other one was idle longer");
        let (second, _) = b.acquire().await.unwrap();
        assert_ne!(second.slot(), slot, "then the other one");
    }

    #[tokio::test]
    async fn full_queue_is_refused() {
        let b = std::sync::Arc::new(Balancer::new(workers(1), 1, None));
        let (w, _) = b.acquire().await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.map(|(w, _)| w.slot()) });
        tokio::task::yield_now().await;
        assert_eq!(b.waiting(), 1);
        assert_eq!(b.acquire().await.err(), Some(AcquireError::QueueFull));
        b.release(w);
        assert_eq!(waiter.await.unwrap(), Ok(0));
        assert_eq!(b.waiting(), 0);
    }

    #[tokio::test]
    async fn a_request_waits_for_a_worker_coming_back_rather_than_being_refused() {
        let b = std::sync::Arc::new(Balancer::new(workers(1), 0, None));
        let (mut w, _) = b.acquire().await.unwrap();
        assert_eq!(b.acquire().await.err(), Some(AcquireError::QueueFull), "busy, no queue: refused");
        // Its request ended; the worker is on its way back (through the actor).
        b.coming_back(&mut w);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.map(|(w, _)| w.slot()) });
        tokio::task::yield_now().await;
        assert_eq!(b.waiting(), 1, "the request waits for the worker coming back");
        assert_eq!(b.acquire().await.err(), Some(AcquireError::QueueFull), "one worker coming back, one waiter");
        b.release(w);
        assert_eq!(waiter.await.unwrap(), Ok(0));
        assert_eq!(b.coming_back.load(Ordering::SeqCst), 0, "back once released");
    }

    /// A worker released to a waiter whose task has not run yet: the waiter still counts as
    /// waiting, so the worker must count as on its way, or a full queue refuses a request
    /// that a worker is free for (bench.sh keep512: 503 "queue full (511 waiting)" with 512
    /// connections, 4 children and a handful of requests each 5 s).
    #[tokio::test]
    async fn a_worker_handed_to_a_waiter_leaves_room_in_the_queue() {
        let b = std::sync::Arc::new(Balancer::new(workers(1), 1, None));
        let (w, _) = b.acquire().await.unwrap();
        let b2 = b.clone();
        let first = tokio::spawn(async move { b2.acquire().await.map(|(w, _)| w) });
        tokio::task::yield_now().await;
        assert_eq!(b.waiting(), 1);
        assert_eq!(b.acquire().await.err(), Some(AcquireError::QueueFull), "queue of 1 full, worker busy");
        b.release(w); // the permit goes to `first`, whose task has not run yet
        assert_eq!(b.waiting(), 1, "the first waiter has not taken its worker yet");
        // Polled once, here, before `first` runs: it must queue, not be refused.
        let mut second = Box::pin(b.acquire());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let polled = second.as_mut().poll(&mut cx).map(|r| r.map(|(w, _)| w.slot()));
        assert!(polled.is_pending(), "the second request waits instead of being refused: {polled:?}");
        let w = first.await.unwrap().expect("the first waiter gets the worker");
        assert_eq!(b.waiting(), 1, "the second request waits");
        b.release(w);
        assert_eq!(second.await.map(|(w, _)| w.slot()), Ok(0));
        assert_eq!(b.waiting(), 0);
    }

    /// The actor withdraws an idle worker to replace its child: no request gets a
    /// permit for it meanwhile, and a worker a request has taken is not withdrawn.
    #[tokio::test]
    async fn a_withdrawn_worker_is_handed_to_no_request() {
        let b = Balancer::new(workers(2), 4, None);
        let (taken, _) = b.acquire().await.unwrap();
        assert!(b.withdraw(taken.slot()).is_none(), "a request has it");
        assert_eq!(b.idle(), 1, "the permit taken for the look goes back");
        let other = 1 - taken.slot();
        let withdrawn = b.withdraw(other).expect("idle: withdrawn");
        assert_eq!((withdrawn.slot(), b.idle()), (other, 0));
        assert!(b.permits.try_acquire().is_err(), "no permit for the withdrawn worker");
        b.release(withdrawn);
        assert_eq!(b.acquire().await.map(|(w, _)| w.slot()), Ok(other));
    }

    /// An express budget counts down and names the child it was granted for
    /// until it is used up or revoked.
    #[test]
    fn an_express_budget_names_its_child_until_used_up_or_revoked() {
        let b = Balancer::new(workers(2), 4, None);
        assert_eq!(b.take_express(0), None, "nothing granted");
        b.grant_express(0, 2, 77);
        assert_eq!((b.take_express(0), b.take_express(1)), (Some(77), None));
        assert_eq!((b.take_express(0), b.take_express(0)), (Some(77), None), "two requests, then the actor");
        b.grant_express(0, u64::MAX, 78);
        assert_eq!((b.take_express(0), b.take_express(0)), (Some(78), Some(78)), "no limit");
        b.revoke_express(0);
        assert_eq!(b.take_express(0), None);
        assert_eq!(b.take_express(9), None, "no such slot");
    }

    #[tokio::test]
    async fn a_worker_dropped_on_its_way_back_stops_counting() {
        let b = Balancer::new(workers(1), 0, None);
        let (mut w, _) = b.acquire().await.unwrap();
        b.coming_back(&mut w);
        b.coming_back(&mut w);
        assert_eq!(b.coming_back.load(Ordering::SeqCst), 1, "counted once");
        drop(w);
        assert_eq!(b.coming_back.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_too_long_is_refused() {
        let b = Balancer::new(workers(1), 8, Some(Duration::from_secs(5)));
        let (_w, _) = b.acquire().await.unwrap();
        assert_eq!(b.acquire().await.err(), Some(AcquireError::WaitedTooLong));
        assert_eq!(b.waiting(), 0);
    }

    #[tokio::test]
    async fn close_drops_idle_and_returning_workers() {
        let b = Balancer::new(workers(2), 8, None);
        let (w, _) = b.acquire().await.unwrap();
        b.close();
        assert!(b.idle_queue().is_empty(), "idle workers dropped at close");
        b.release(w);
        assert!(b.idle_queue().is_empty(), "a worker returned after close is dropped");
    }

    #[tokio::test]
    async fn close_wakes_waiters() {
        let b = std::sync::Arc::new(Balancer::new(workers(1), 8, None));
        let (_w, _) = b.acquire().await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.err() });
        tokio::task::yield_now().await;
        b.close();
        assert_eq!(waiter.await.unwrap(), Some(AcquireError::Closed));
        assert_eq!(b.waiting(), 0);
    }
}
