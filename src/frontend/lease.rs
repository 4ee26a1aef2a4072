//! A worker on loan to one request, and how it goes back: to the pool
//! through the actor (or straight to the balancer when the actor has nothing
//! to decide for it), released when the child has ended the request, or
//! abandoned while the child may still be running it.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::SendError;

use super::connection::Head;
use crate::pool::{AbandonCause, Abandoned, Note, Pool, PoolMsg, RequestInfo, Worker};

/// A worker on loan to one request. It goes back to the pool through the
/// actor (or past it, when the actor has nothing to decide for it):
/// [`Lease::release`] once the child has ended the request, or
/// [`Lease::abandon`] while the child may still be running it (then the actor
/// holds the worker until the child lets go). Dropping a lease that still
/// holds its worker abandons the request.
pub struct Lease<'p> {
    pool: &'p Pool,
    worker: Option<Worker>,
    /// The worker's connection when it was lent (its inode; 0: none): a
    /// request that connected anew is told to the actor (`Connected`), and
    /// its worker goes back through it.
    lent_on: u32,
    /// When the request got its worker.
    pub started: Instant,
    /// The request's access log record, when the pool has an access log.
    pub access: Option<Box<crate::accesslog::Record>>,
}

impl<'p> Lease<'p> {
    /// Takes `worker` for a request that waited `queued` for it.
    pub fn new(pool: &'p Pool, worker: Worker, queued: Duration, info: Option<Box<RequestInfo>>) -> Lease<'p> {
        let started = Instant::now();
        pool.note(Note::Started { slot: worker.slot(), queued, info, at: started });
        Lease { pool, lent_on: worker.inode(), worker: Some(worker), started, access: None }
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
    /// request). The actor decides first whether the child must be replaced;
    /// when its slot's express budget says there is nothing to decide (and the
    /// connection is kept, the one it was lent with), the worker goes straight
    /// to the balancer and the actor is only noted of the request's end, so
    /// that no thread is woken for it (a status page's usage sample is queued
    /// here then, as the actor would have).
    pub fn release(&mut self, status: u16, keep: bool) {
        let Some(mut worker) = self.worker.take() else {
            return;
        };
        if !keep {
            worker.discard();
        }
        // When the child ended the request (the exchange read the clock at its
        // END_REQUEST): nginx, and so the client, may have the whole response before
        // now, and start its next request. Else now, in one reading of the clock. The
        // metrics and the access log get the same duration.
        let (at, duration) = match worker.ended_at() {
            Some(at) => (at, at.saturating_duration_since(self.started)),
            None => {
                let duration = self.started.elapsed();
                (self.started + duration, duration)
            }
        };
        let (slot, access) = (worker.slot(), self.record(status, duration));
        let balancer = &self.pool.balancer;
        let same_connection = worker.is_connected() && worker.inode() == self.lent_on && self.lent_on != 0;
        if let Some(pid) = same_connection.then(|| balancer.take_express(slot)).flatten() {
            // Noted before the worker is back: a request that takes it next is noted after.
            self.pool.note(Note::Ended { slot, status, duration, access, at });
            // Before the child can begin its next request, as the actor samples.
            self.pool.sample_usage(slot, pid, duration);
            return balancer.release(worker);
        }
        balancer.coming_back(&mut worker);
        let msg = PoolMsg::RequestEnded { slot, status, duration, at, worker, access };
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
