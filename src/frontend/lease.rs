//! A worker on loan to one request, and how it goes back: to the pool
//! through the actor, released when the child has ended the request, or
//! abandoned while the child may still be running it.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::SendError;

use super::connection::Head;
use crate::pool::{AbandonCause, Abandoned, Pool, PoolMsg, RequestInfo, Worker};

/// A worker on loan to one request. It goes back to the pool only through
/// the actor: [`Lease::release`] once the child has ended the request, or
/// [`Lease::abandon`] while the child may still be running it (then the actor
/// holds the worker until the child lets go). Dropping a lease that still
/// holds its worker abandons the request.
pub struct Lease<'p> {
    pool: &'p Pool,
    worker: Option<Worker>,
    /// When the request got its worker.
    pub started: Instant,
    /// The request's access log record, when the pool has an access log.
    pub access: Option<Box<crate::accesslog::Record>>,
}

impl<'p> Lease<'p> {
    /// Takes `worker` for a request that waited `queued` for it.
    pub fn new(pool: &'p Pool, worker: Worker, queued: Duration, info: Option<Box<RequestInfo>>) -> Lease<'p> {
        pool.tell(PoolMsg::RequestStarted { slot: worker.slot(), queued, info });
        Lease { pool, worker: Some(worker), started: Instant::now(), access: None }
    }

    /// The pool the worker belongs to.
    pub fn pool(&self) -> &'p Pool {
        self.pool
    }

    /// The worker (until it is released or abandoned).
    pub fn worker(&mut self) -> &mut Worker {
        self.worker.as_mut().expect("lease holds its worker until released or abandoned")
    }

    /// When `request_terminate_timeout` runs out for this request, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.pool.terminate_timeout.map(|limit| self.started + limit)
    }

    /// The access record, completed with the request's status and duration.
    fn record(&mut self, status: u16, duration: Duration) -> Option<Box<crate::accesslog::Record>> {
        let mut access = self.access.take();
        if let Some(record) = access.as_mut() {
            (record.status, record.duration) = (status, duration);
        }
        access
    }

    /// The child has ended the request (or is gone): the worker goes back to
    /// the pool, with its connection if `keep` (it is in step for the next
    /// request). The actor decides first whether the child must be replaced.
    pub fn release(&mut self, status: u16, keep: bool) {
        let Some(mut worker) = self.worker.take() else {
            return;
        };
        if !keep {
            worker.discard();
        }
        self.pool.balancer.coming_back(&mut worker);
        // One reading of the clock: the metrics and the access log get the same duration.
        let duration = self.started.elapsed();
        let (slot, access) = (worker.slot(), self.record(status, duration));
        let msg = PoolMsg::RequestEnded { slot, status, duration, worker, access };
        if let Err(SendError(PoolMsg::RequestEnded { worker, .. })) = self.pool.actor.send(msg) {
            // No actor (shutdown): nobody else will lend it again.
            self.pool.balancer.release(worker);
        }
    }

    /// Gives up on a request whose child may still be running it. The actor
    /// holds the worker, counted busy, until the child has let go of the
    /// connection, and kills the child at `deadline`
    /// (`request_terminate_timeout`) or at once for [`AbandonCause::TimedOut`].
    pub fn abandon(&mut self, cause: AbandonCause, status: u16, deadline: Option<Instant>, head: Option<&Head>) {
        let Some(mut worker) = self.worker.take() else {
            return;
        };
        worker.abandon();
        let param = |name: &[u8]| {
            let value = head.and_then(|h| h.params.get(name)).unwrap_or(b"-");
            String::from_utf8_lossy(value).into_owned()
        };
        let abandoned = Abandoned {
            worker,
            cause,
            status,
            started: self.started,
            deadline,
            script: param(b"SCRIPT_FILENAME"),
            uri: param(b"REQUEST_URI"),
            access: self.record(status, self.started.elapsed()),
        };
        if let Err(SendError(PoolMsg::Abandoned(abandoned))) =
            self.pool.actor.send(PoolMsg::Abandoned(Box::new(abandoned)))
        {
            let mut worker = abandoned.worker;
            worker.discard();
            self.pool.balancer.release(worker);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // The request's task was cancelled mid-request (shutdown).
        self.abandon(AbandonCause::ClientGone, 499, self.deadline(), None);
    }
}
