//! The front end: one listener per pool (unix socket or TCP), one task per
//! nginx connection at a time (a task serves the next one when its own ends:
//! [`spare`]).

pub mod alarm;
pub mod apache;
pub mod body;
pub mod conn;
pub mod connection;
pub mod error;
pub mod inbuf;
pub mod lease;
pub mod limits;
pub mod listen;
pub mod pages;
pub mod policy;
pub mod proxy;
pub mod response;
pub mod scripts;
pub mod shed;
pub mod spare;
pub mod status_channel;
pub mod stderr;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};

pub use listen::{bind, register, Acceptor, Listener, PoolListeners};

use crate::log::Throttle;
use crate::pool::Pool;
use shed::{Pressure, Shed, SHED_AFTER};
use spare::{Job, Spares};

/// How often a listener logs that it stopped accepting, at most.
pub const OVERLOAD_LOG_EVERY: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (the connection waits in the listen queue).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The front-end runtime the first listener is given to (the next ones follow in
/// turn): the main one, which runs the pools' actors, so that a single pool's requests
/// and its actor share a thread. Debug builds run with `FRONT_END_THREADS` set (the
/// test suite's switch, see [`crate::config::default_front_end_threads`]) start at the
/// last one instead, so that every test's pool is served on another thread than its actor's.
pub fn first_runtime(threads: usize) -> usize {
    #[cfg(debug_assertions)]
    if std::env::var_os("FRONT_END_THREADS").is_some() {
        return threads.saturating_sub(1);
    }
    let _ = threads;
    0
}

/// What bounds the connections of one listener. Clones share the limits, so any
/// accept loop of the listener takes its permits from the same ones.
#[derive(Debug, Clone)]
pub struct Admission {
    /// `listen_max_connections`: most connections of this listener.
    pub max: usize,
    /// This listener's permits (`max` of them), and the pressure that asks its
    /// connections to make room.
    own: (Arc<Semaphore>, Pressure),
    /// Connections the open-file limit leaves room for, shared by every
    /// listener ([`limits::connection_budget`]).
    pub budget: Arc<Semaphore>,
    /// The budget's size, for messages.
    pub budget_size: usize,
    /// Asks the connections of every listener to make room in the budget.
    pub budget_pressure: Pressure,
    /// How often this listener's accept loops may say that they wait: the
    /// listener's, shared by its loops, so two loops do not say it twice as often.
    throttle: Arc<Throttle>,
}

impl Admission {
    /// `max` connections on this listener, within a shared `budget` of `budget_size`.
    pub fn new(max: usize, budget: Arc<Semaphore>, budget_size: usize, budget_pressure: Pressure) -> Self {
        let own = (Arc::new(Semaphore::new(max)), budget_pressure.sibling());
        let throttle = Arc::new(Throttle::new(OVERLOAD_LOG_EVERY));
        Admission { max, own, budget, budget_size, budget_pressure, throttle }
    }
}

/// The permits one connection holds while it is open.
pub type Held = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// Accepts connections until `shutdown` turns true or `current` (the pool
/// this listener serves, replaced on reload) is closed, then drops the
/// listener and ends its idle connection tasks ([`spare`]). Every connection
/// task holds a clone of `done`, so the caller can wait for all of them by
/// waiting for the channel to close. At the limits of
/// `admission`, new connections wait in the kernel's listen queue; so do they
/// when `accept` fails (out of descriptors), and connections already held are
/// served on.
///
/// The fast path (a permit free, a connection in the queue) registers no waker: the
/// shutdown and reload signals are checked by their version numbers, and each `select!`
/// polls its work first, so the signals' futures are only polled when it would wait.
pub async fn accept_loop(
    listener: Acceptor,
    mut current: watch::Receiver<Arc<Pool>>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
    admission: Admission,
) {
    let own = &admission.own;
    let throttle = &admission.throttle;
    let (pages_only, spares) = (listener.pages_only(), Spares::new(done));
    loop {
        if shutdown.has_changed().unwrap_or(true) {
            return;
        }
        match current.has_changed() {
            Ok(true) => drop(current.borrow_and_update()),
            Ok(false) => {}
            Err(_) => return,
        }
        let held = match try_admit(own, &admission) {
            Some(held) => held,
            None => {
                let names = current.clone();
                tokio::select! {
                    held = admit(own, &admission, &names) => held,
                    _ = shutdown.changed() => return,
                    changed = current.changed() => match changed {
                        Ok(()) => continue,
                        Err(_) => return,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            biased;
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
            changed = current.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        match accepted {
            Ok(stream) => {
                let shed = Shed::new(&own.1, &admission.budget_pressure);
                spares.serve(Job {
                    stream,
                    held,
                    shed,
                    current: current.clone(),
                    shutdown: shutdown.clone(),
                    pages_only,
                });
            }
            Err(e) => {
                if throttle.allow(Instant::now()) {
                    crate::error!(
                        "[pool {}] accept failed: {e}{}; new connections wait in the listen queue, open ones are served",
                        current.borrow().name,
                        accept_failure_cause(&e)
                    );
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// What an `accept` error means for the operator, when it is about descriptors.
fn accept_failure_cause(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EMFILE) => format!(" (rustfpm's open file limit, {}, is reached)", crate::sys::rlimit::open_files()),
        Some(libc::ENFILE) => " (the system's file table is full: fs.file-max)".to_string(),
        _ => String::new(),
    }
}

/// Both permits for one connection, if both are free now.
fn try_admit(own: &(Arc<Semaphore>, Pressure), admission: &Admission) -> Option<Held> {
    let mine = own.0.clone().try_acquire_owned().ok()?;
    let shared = admission.budget.clone().try_acquire_owned().ok()?;
    Some((mine, shared))
}

/// Takes this listener's and the shared budget's permit for one connection,
/// waiting (and saying so, at most once per [`OVERLOAD_LOG_EVERY`]) while
/// either is used up; meanwhile connections that have waited for a request
/// head longer than [`SHED_AFTER`] are asked to close.
async fn admit(own: &(Arc<Semaphore>, Pressure), admission: &Admission, current: &watch::Receiver<Arc<Pool>>) -> Held {
    let overload = |what: String| {
        if admission.throttle.allow(Instant::now()) {
            let pool = current.borrow().name.clone();
            crate::warning!("[pool {pool}] {what}: new connections wait in the listen queue until one closes");
        }
    };
    let max = admission.max;
    let mine = permit(&own.0, &own.1, || overload(format!("listen_max_connections ({max}) reached"))).await;
    let size = admission.budget_size;
    let shared = permit(&admission.budget, &admission.budget_pressure, || {
        overload(format!("the open file limit leaves room for {size} connections, all open"))
    })
    .await;
    (mine, shared)
}

/// A permit of `limit`; `full` is called once if it has to wait for one.
/// While it waits, `pressure` sheds connections that wait for a request.
async fn permit(limit: &Arc<Semaphore>, pressure: &Pressure, full: impl FnOnce()) -> OwnedSemaphorePermit {
    match limit.clone().try_acquire_owned() {
        Ok(p) => return p,
        Err(TryAcquireError::NoPermits) => full(),
        // Never closed: the semaphores live as long as their listeners.
        Err(TryAcquireError::Closed) => return std::future::pending().await,
    }
    loop {
        if let Some(cutoff) = Instant::now().checked_sub(SHED_AFTER) {
            pressure.shed(cutoff);
        }
        tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => return p,
                Err(_) => return std::future::pending().await,
            },
            () = tokio::time::sleep(SHED_AFTER / 4) => {}
        }
    }
}
