//! The proxy: one request from nginx to a child and its response back,
//! streamed both ways through fixed buffers. Records from the child are
//! forwarded byte for byte (the child uses nginx's request id), except STDERR
//! records, rewritten into php-fpm's shape ([`super::response`]).

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::body::RequestStream;
use super::conn::{answer, Conn, ConnError, Head, Reply};
use super::policy::DROPPED_PARAMS;
use super::response::ResponseStream;
use crate::fastcgi::{
    encode_begin_request, encode_end_request, encode_pair, encode_stream, ProtocolStatus, RecordType, Role,
    FCGI_KEEP_CONN,
};
use crate::pool::finish::{Marker, MARKER_PARAM};
use crate::pool::{Pool, PoolMsg, RequestInfo, Worker};

/// Most request-body bytes buffered towards a child at once.
pub const MAX_BODY_BUFFER: usize = 128 * 1024;

/// How a proxied request ended.
#[derive(Debug)]
pub enum Outcome {
    /// The child answered; `status` is the HTTP status it sent.
    Done { status: u16 },
    /// The child went away mid-request. `answered`: nginx got a 502.
    ChildLost { answered: bool },
    /// nginx went away (or broke protocol); the child's connection was closed.
    ClientGone(ConnError),
}

/// A worker on loan to one request. Whatever happens to the request, the
/// worker goes back to the pool and the actor hears how it ended.
pub struct Lease<'p> {
    pool: &'p Pool,
    worker: Option<Worker>,
    /// When the request got its worker.
    pub started: Instant,
    status: Option<u16>,
    /// The request's access log record, when the pool has an access log.
    pub access: Option<Box<crate::accesslog::Record>>,
}

impl<'p> Lease<'p> {
    /// Takes `worker` for a request that waited `queued` for it.
    pub fn new(pool: &'p Pool, worker: Worker, queued: Duration, info: Option<Box<RequestInfo>>) -> Lease<'p> {
        pool.tell(PoolMsg::RequestStarted { slot: worker.slot(), queued, info });
        Lease { pool, worker: Some(worker), started: Instant::now(), status: None, access: None }
    }

    fn worker(&mut self) -> &mut Worker {
        self.worker.as_mut().expect("lease holds its worker until dropped")
    }

    /// Marks the request complete with `status`; the connection is kept.
    pub fn finish(&mut self, status: u16) {
        self.status = Some(status);
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(mut worker) = self.worker.take() else {
            return;
        };
        let status = match self.status {
            Some(status) => status,
            None => {
                // Unfinished: the child may still be mid-request. Closing its
                // connection lets the script see the abort; a new one waits.
                worker.discard();
                499
            }
        };
        let duration = self.started.elapsed();
        let mut access = self.access.take();
        if let Some(record) = access.as_mut() {
            (record.status, record.duration) = (status, duration);
        }
        // The actor lends the worker out again once it has decided whether
        // its child must be replaced; without an actor (shutdown), we do.
        let finished = PoolMsg::RequestFinished { slot: worker.slot(), status, duration, worker, access };
        if let Err(tokio::sync::mpsc::error::SendError(PoolMsg::RequestFinished { worker, .. })) =
            self.pool.actor.send(finished)
        {
            self.pool.balancer.release(worker);
        }
    }
}

/// Runs one request through a child.
pub async fn run<R, W>(conn: &mut Conn<R, W>, lease: &mut Lease<'_>, head: &Head) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let pool = lease.pool;
    if let Err(e) = lease.worker().ensure_connected(&pool.socket).await {
        crate::error!("[pool {}] cannot connect to php-cgi: {e}", pool.name);
        return fail(conn, lease, head, &mut RequestStream::new(head.id), false, Lost::Exited).await;
    }
    // The connection's scratch buffer carries the request to the child: no
    // allocation per request.
    let mut to_child = std::mem::take(&mut conn.out);
    let marker = pool.finish_marker();
    request_head(head, marker.as_ref(), &mut to_child);
    let mut request = RequestStream::new(head.id);
    match request.take(conn.inbuf.pending(), &mut to_child) {
        Ok(used) => conn.inbuf.consume(used),
        Err(e) => return Outcome::ClientGone(e),
    }
    let worker = lease.worker();
    if worker.is_fresh() {
        worker.mark_used();
        let (slot, inode) = (worker.slot(), worker.inode());
        pool.tell(PoolMsg::Connected { slot, inode });
    }
    let mut response = ResponseStream::new(head.id, marker.as_ref().map(Marker::as_bytes));
    // access log: keep the response head only when the format shows response headers.
    response.keep_head = lease.access.is_some() && pool.logs.access().is_some_and(|a| a.wants_headers());
    let deadline = pool.terminate_timeout.map(|limit| lease.started + limit);
    let mut exchange = Exchange {
        to_child: &mut to_child,
        request: &mut request,
        response: &mut response,
        deadline,
        keep_conn: head.keep_conn,
        pool: &pool.name,
    };
    let result = exchange.run(conn, lease.worker(), pool.track_finished).await;
    to_child.clear();
    conn.out = to_child;
    match result {
        Ok(sent_whole_records) => {
            // The child may answer before the body has reached it. php-cgi copes
            // with a body it got whole, or with a missing empty end-of-body
            // record (the usual GET); anything else leaves its connection out of
            // step, so it is closed. The rest of the body is skipped.
            let seen = request.content;
            if let Err(e) = super::body::skip(conn, &mut request).await {
                if response.finished.is_some() {
                    // nginx had its whole response: log that, not a 499.
                    lease.worker().discard();
                    lease.finish(response.status);
                }
                return Outcome::ClientGone(e);
            }
            if !sent_whole_records || request.content != seen {
                lease.worker().discard();
            }
            if let (Some(record), Some(log)) = (lease.access.as_mut(), pool.logs.access()) {
                log.response_head(record, &response.head);
            }
            Outcome::Done { status: response.status }
        }
        Err(failure @ (Failure::Child | Failure::Timeout)) => {
            let how = if matches!(failure, Failure::Child) { Lost::Exited } else { Lost::TimedOut };
            let outcome = fail(conn, lease, head, &mut request, response.sent_any, how).await;
            if response.finished.is_some() {
                // The child failed after fastcgi_finish_request(): nginx had a
                // complete response, and that is what the request logs.
                lease.finish(response.status);
            }
            outcome
        }
        Err(Failure::Client(e)) => Outcome::ClientGone(e),
    }
}

enum Failure {
    Child,
    Timeout,
    Client(ConnError),
}

/// One request's traffic between nginx and a child.
struct Exchange<'a, 'm> {
    to_child: &'a mut Vec<u8>,
    request: &'a mut RequestStream,
    response: &'a mut ResponseStream<'m>,
    /// When `request_terminate_timeout` runs out.
    deadline: Option<Instant>,
    /// nginx keeps its connection after the request.
    keep_conn: bool,
    /// The pool's name, for log lines.
    pool: &'a str,
}

impl Exchange<'_, '_> {
    /// Moves bytes both ways until the child's END_REQUEST has been read.
    /// After `fastcgi_finish_request()`, nginx has its whole response and the
    /// rest of the child's is discarded (the deadline stays only if
    /// `track_finished`). Returns whether what was sent to the child ends on a
    /// record boundary.
    async fn run<R, W>(
        &mut self,
        conn: &mut Conn<R, W>,
        worker: &mut Worker,
        track_finished: bool,
    ) -> Result<bool, Failure>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Some((up, buf)) = worker.io() else {
            return Err(Failure::Child);
        };
        let (mut up_rd, mut up_wr) = up.split();
        let (mut written, mut client_open) = (0, true);
        // One timer per request, polled only while there is a deadline.
        let timer = tokio::time::sleep_until(self.deadline.map_or_else(far_future, tokio::time::Instant::from_std));
        tokio::pin!(timer);
        loop {
            let pending = self.to_child.len() - written;
            let want_client = client_open
                && pending < MAX_BODY_BUFFER
                && conn.inbuf.pending().len() < MAX_BODY_BUFFER
                && !(self.finished() && self.request.done);
            tokio::select! {
                biased;
                () = &mut timer, if self.deadline.is_some() => return Err(Failure::Timeout),
                n = up_rd.read(buf) => {
                    let n = n.map_err(|_| Failure::Child)?;
                    if n == 0 {
                        return Err(Failure::Child);
                    }
                    let was_finished = self.finished();
                    self.relay(conn, &buf[..n]).await?;
                    if self.finished() && !was_finished && !track_finished {
                        self.deadline = None;
                    }
                    if self.response.ended {
                        return Ok(self.request.at_boundary() && written == self.to_child.len());
                    }
                }
                n = up_wr.write(&self.to_child[written..]), if pending > 0 => {
                    written += n.map_err(|_| Failure::Child)?;
                    if written == self.to_child.len() {
                        self.to_child.clear();
                        written = 0;
                    }
                }
                n = conn.inbuf.fill(&mut conn.rd), if want_client => {
                    match n {
                        Ok(n) if n > 0 => self.take_body(conn)?,
                        // nginx has its response and may hang up.
                        _ if self.finished() => client_open = false,
                        Ok(_) => return Err(Failure::Client(ConnError::UnexpectedEof)),
                        Err(e) => return Err(Failure::Client(e.into())),
                    }
                }
            }
        }
    }

    fn finished(&self) -> bool {
        self.response.finished.is_some()
    }

    /// Passes request body bytes from nginx on towards the child.
    fn take_body<R, W>(&mut self, conn: &mut Conn<R, W>) -> Result<(), Failure> {
        if !self.request.done {
            let used = self.request.take(conn.inbuf.pending(), self.to_child).map_err(Failure::Client)?;
            conn.inbuf.consume(used);
        }
        Ok(())
    }

    /// Sends nginx what it gets of one read from the child: nothing once the
    /// script has finished the request.
    async fn relay<R, W>(&mut self, conn: &mut Conn<R, W>, mut data: &[u8]) -> Result<(), Failure>
    where
        W: AsyncWrite + Unpin,
    {
        let client = |e: std::io::Error| Failure::Client(e.into());
        while !data.is_empty() && !self.response.ended {
            let discard = self.finished();
            let scan = self.response.scan(data).map_err(|_| Failure::Child)?;
            if !discard {
                conn.wr.write_all(&data[..scan.forward]).await.map_err(client)?;
                conn.wr.write_all(&self.response.out).await.map_err(client)?;
                if let Some(headers) = &self.response.finished {
                    let end = end_of_response(self.response.id(), headers);
                    conn.wr.write_all(&end).await.map_err(client)?;
                    self.response.sent_any = true;
                    if !self.keep_conn {
                        // Without FCGI_KEEP_CONN, nginx ends the response when
                        // the connection closes (php-fpm closes it here too).
                        conn.wr.shutdown().await.map_err(client)?;
                    }
                }
            }
            if discard && !self.response.out.is_empty() {
                self.log_late_messages();
            }
            self.response.out.clear();
            data = &data[scan.consumed..];
        }
        Ok(())
    }
}

impl Exchange<'_, '_> {
    /// nginx is done with the request: PHP's later messages go to rustfpm's
    /// log, one line each (control characters escaped), split at `log_limit`.
    fn log_late_messages(&self) {
        let text = super::stderr::text(&self.response.out);
        if text.is_empty() {
            return;
        }
        let head = format!("[pool {}] after fastcgi_finish_request(): ", self.pool);
        let text = crate::accesslog::format::escape_controls(&text);
        crate::log::write_split(crate::config::LogLevel::Warning, &head, &text, "");
    }
}

/// What completes a response at `fastcgi_finish_request()`: the headers not
/// sent yet, the end of STDOUT and END_REQUEST.
fn end_of_response(id: u16, headers: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.len() + 48);
    if !headers.is_empty() {
        encode_stream(&mut out, RecordType::Stdout, id, headers);
    }
    encode_stream(&mut out, RecordType::Stdout, id, b"");
    encode_end_request(&mut out, id, 0, ProtocolStatus::RequestComplete);
    out
}

/// A deadline that never comes.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

/// BEGIN_REQUEST (always FCGI_KEEP_CONN towards the child) and the params,
/// minus those never passed on, plus the request's finish marker.
fn request_head(head: &Head, marker: Option<&Marker>, out: &mut Vec<u8>) {
    out.clear();
    encode_begin_request(out, head.id, Role::Responder, FCGI_KEEP_CONN);
    let mut params = Vec::with_capacity(head.params.len());
    for (name, value) in head.params.pairs().flatten() {
        if !DROPPED_PARAMS.contains(&name) {
            encode_pair(&mut params, name, value);
        }
    }
    if let Some(marker) = marker {
        encode_pair(&mut params, MARKER_PARAM, marker.as_bytes());
    }
    if !params.is_empty() {
        encode_stream(out, RecordType::Params, head.id, &params);
    }
    encode_stream(out, RecordType::Params, head.id, b"");
}

/// How a request failed on the child's side.
enum Lost {
    /// The child exited mid-request: 502.
    Exited,
    /// The request ran past `request_terminate_timeout`: the actor kills the
    /// child, and nginx gets a 504 (php-fpm gives a bare 502).
    TimedOut,
}

/// Ends a request whose child failed: the actor hears of it, nginx gets a
/// complete error response if nothing was sent yet, else an abrupt close
/// (the only way to tell it the response is incomplete).
async fn fail<R, W>(
    conn: &mut Conn<R, W>,
    lease: &mut Lease<'_>,
    head: &Head,
    request: &mut RequestStream,
    sent_any: bool,
    how: Lost,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (pool, elapsed) = (lease.pool, lease.started.elapsed());
    let worker = lease.worker();
    let slot = worker.slot();
    worker.discard();
    let param = |name: &[u8]| String::from_utf8_lossy(head.params.get(name).unwrap_or_default()).into_owned();
    let (script, uri) = (param(b"SCRIPT_FILENAME"), param(b"REQUEST_URI"));
    let (status, line, body): (u16, &str, &[u8]) = match how {
        Lost::Exited => {
            pool.tell(PoolMsg::ChildLost { slot, script, uri });
            (502, "502 Bad Gateway", b"Bad Gateway: the PHP process serving this request exited.\n")
        }
        Lost::TimedOut => {
            pool.tell(PoolMsg::TimedOut { slot, script, uri, elapsed });
            (504, "504 Gateway Timeout", b"Gateway Timeout: the PHP script ran past request_terminate_timeout.\n")
        }
    };
    lease.finish(status);
    if sent_any {
        return Outcome::ChildLost { answered: false };
    }
    let answered =
        answer(conn, head, Reply::new(line, body)).await.is_ok() && super::body::skip(conn, request).await.is_ok();
    Outcome::ChildLost { answered }
}
