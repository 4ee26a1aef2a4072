//! What the pool actor is told and what it tells: the messages from the
//! front end ([`PoolMsg`]), the events from the supervisor and the pool's
//! own threads ([`PoolEvent`]), and the snapshots it answers with.

use std::os::fd::RawFd;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use super::recycle::Reason;
use super::worker::Worker;
use crate::accesslog::Record;
pub use crate::accesslog::RequestInfo;
use crate::supervisor::Report;

/// What a slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Waiting for the pool's php-cgi parent to run.
    Starting,
    /// Ready for a request.
    Idle,
    /// Serving a request.
    Busy,
    /// The pool is stopping.
    Exiting,
}

/// One slot as the actor sees it.
#[derive(Debug, Clone)]
pub struct SlotSnapshot {
    /// Pid of the php-cgi child serving this slot; for a slot that has not
    /// served yet, one of the parent's children that no slot has met.
    pub pid: Option<i32>,
    /// Current state.
    pub state: SlotState,
    /// Requests served by this slot's current child.
    pub requests: u64,
    /// When the current state began.
    pub since: Instant,
    /// Duration of the last request.
    pub last_duration: Duration,
    /// When the current child was first seen serving.
    pub child_since: Option<Instant>,
    /// The running or last request, when the pool has a status page.
    pub info: Option<RequestInfo>,
    /// CPU (%) of the last request, when sampled (see `pool::usage`).
    pub last_cpu: Option<f64>,
    /// Private memory of the child after the last request, when sampled.
    pub last_memory: Option<u64>,
}

/// An immutable picture of a pool, for status pages and tests.
#[derive(Debug, Clone)]
pub struct PoolSnapshot {
    /// Pool name.
    pub name: String,
    /// When the pool started.
    pub started: SystemTime,
    /// Pid of the php-cgi parent, when running.
    pub parent_pid: Option<i32>,
    /// Times the php-cgi parent was started.
    pub parent_starts: u64,
    /// Children the running parent has forked (read from /proc by the supervisor).
    pub forked: usize,
    /// All slots.
    pub slots: Vec<SlotSnapshot>,
    /// Requests that got a child.
    pub accepted: u64,
    /// Highest number of busy slots seen.
    pub max_active: usize,
    /// Longest queue wait seen.
    #[cfg_attr(not(test), allow(dead_code))] // read by the actor's unit tests
    pub max_queue_wait: Duration,
    /// Children replaced, by reason (indexed like [`Reason::ALL`]).
    #[cfg_attr(not(test), allow(dead_code))] // read by the actor's unit tests
    pub recycled: [u64; Reason::ALL.len()],
    /// Requests that ran past `request_slowlog_timeout`.
    pub slow_requests: u64,
}

/// Why the front end gave up on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbandonCause {
    /// nginx went away (or broke protocol) before the child had answered.
    ClientGone,
    /// The request ran past `request_terminate_timeout`: kill its child.
    TimedOut,
}

/// A request the front end gave up on before its child ended it. The child
/// may still be running the script, so the worker is not lent again until
/// the child has closed its end of the connection (or was killed).
#[derive(Debug)]
pub struct Abandoned {
    /// The worker; its connection is shut down (see [`Worker::abandon`]).
    pub worker: Worker,
    /// Why it was abandoned.
    pub cause: AbandonCause,
    /// The status the request is counted and logged with (499, 504, or what
    /// nginx already got after `fastcgi_finish_request()`).
    pub status: u16,
    /// When the request got its worker.
    pub started: Instant,
    /// When `request_terminate_timeout` runs out for it, if it has one.
    pub deadline: Option<Instant>,
    /// SCRIPT_FILENAME and REQUEST_URI, for the log line if its child is killed.
    pub script: String,
    /// See `script`.
    pub uri: String,
    /// Its access log record, when the pool has an access log.
    pub access: Option<Box<Record>>,
}

/// What the front end tells the actor without waking it (`Pool::note`): the
/// actor reads these whenever it wakes for anything else (a message, an
/// event, its tick), in the order they were written, so that what it decides
/// and shows sees every request that started or ended before; a request's
/// end sent as a message is read after the notes written before it ended and
/// before those written after ([`PoolMsg::RequestEnded`]'s `at`).
#[derive(Debug)]
pub enum Note {
    /// A request got slot `slot` at `at`, after waiting `queued`.
    Started { slot: usize, queued: Duration, info: Option<Box<RequestInfo>>, at: Instant },
    /// A request on `slot` ended with HTTP `status`, and its worker went
    /// straight back to the balancer: the actor had nothing to decide for it
    /// (see `Balancer::take_express`), at `at`. `access` as in [`PoolMsg::RequestEnded`].
    Ended { slot: usize, status: u16, duration: Duration, access: Option<Box<Record>>, at: Instant },
}

impl Note {
    /// When the request started or ended.
    pub fn at(&self) -> Instant {
        match self {
            Note::Started { at, .. } | Note::Ended { at, .. } => *at,
        }
    }
}

/// Messages from the front end to the actor.
#[derive(Debug)]
pub enum PoolMsg {
    /// A request on `slot` ended with HTTP `status` at `at`; `access` is its
    /// access log record, when the pool has an access log. Notes written
    /// after `at` are read after it: a request that started once this one
    /// had ended never counts as running beside it.
    RequestEnded {
        slot: usize,
        status: u16,
        duration: Duration,
        at: Instant,
        worker: Worker,
        access: Option<Box<Record>>,
    },
    /// A new connection on `slot` carries its first request; find its child.
    /// `fd` is the connection's descriptor in this process (see
    /// [`super::worker::sever`]).
    Connected { slot: usize, inode: u32, fd: RawFd },
    /// The child of `slot` died under its request (crashed): the front end
    /// answered 502.
    ChildCrashed { slot: usize, script: String, uri: String, answered: &'static str },
    /// A request was refused because the queue was full.
    Rejected,
    /// The front end gave up on a request whose child may still be running
    /// it; the actor holds the worker until the child is done with it.
    Abandoned(Box<Abandoned>),
    /// Send a snapshot.
    Snapshot { respond_to: oneshot::Sender<PoolSnapshot> },
    /// Stop restarting children: the pool is shutting down.
    Stop,
    /// A reload replaced this pool: stop its children once no request runs
    /// (or when `limit` has passed).
    Retire { limit: Option<Duration> },
}

/// The actor's second inbox: what the supervisor and the pool's helper
/// threads report. It is never closed while the pool's php-cgi may run.
#[derive(Debug)]
pub enum PoolEvent {
    /// What the supervisor reports about the pool's processes.
    Supervisor(Report),
    /// What the last request of `slot`'s child `pid` cost (see `pool::usage`).
    Usage { slot: usize, pid: i32, cpu: Option<f64>, memory: Option<u64> },
}
