//! The proxy: one request from nginx to a child and its response back,
//! streamed both ways through fixed buffers. Records from the child are
//! forwarded byte for byte (the child uses nginx's request id), except STDERR
//! records, rewritten into php-fpm's shape ([`super::response`]). What the
//! child has sent is read until its socket would block and written to nginx
//! in one vectored write; what nginx does not take at once waits in a buffer
//! of its own (at most about two reads' worth), so that the child goes back
//! to the pool as soon as its END_REQUEST is read.

use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::body::RequestStream;
use super::connection::{Connection, Head, Reply};
use super::error::ConnError;
use super::lease::Lease;
use super::policy::DROPPED_PARAMS;
use super::response::ResponseStream;
use crate::fastcgi::{
    close_record, encode_begin_request, encode_end_request, encode_pair, encode_stream, open_record, ProtocolStatus,
    RecordType, FCGI_KEEP_CONN, HEADER_LEN, MAX_CONTENT_LEN,
};
use crate::pool::finish::{Marker, MARKER_PARAM};
use crate::pool::{AbandonCause, PoolMsg, Worker};

/// Most request-body bytes buffered towards a child at once.
pub const MAX_BODY_BUFFER: usize = 128 * 1024;

/// Most times a request is sent again on a new connection after a child's
/// connection closed before taking any of it (a parent that died takes all
/// its children at once).
const RESENDS: usize = 3;

/// Most bytes of an answer held for a slow nginx before the child is no
/// longer read (one more read from the child may come on top).
const UNSENT_MAX: usize = crate::pool::worker::READ_BUF;

/// How a proxied request ended.
#[derive(Debug)]
pub enum Outcome {
    /// The child answered.
    Done,
    /// The child went away mid-request. `answered`: nginx got a 502.
    ChildFailed { answered: bool },
    /// nginx went away (or broke protocol); the child's connection was closed.
    ClientGone(ConnError),
}

/// Runs one request through a child, in four steps: connect to the child,
/// send it the request head, exchange the body and the response, settle the
/// lease. Whatever happens, the lease's worker is released or abandoned on return.
pub async fn run(conn: &mut Connection, mut lease: Lease<'_>, head: &Head) -> Outcome {
    if !connect(&mut lease).await {
        let failed = Failed { how: ChildFailure::Crashed, sent: None, nginx_has: None };
        return fail(conn, lease, head, &mut head.body(), failed).await;
    }
    let marker = lease.pool().finish_marker();
    let mut request = head.body();
    // The connection's scratch buffer carries the request to the child: no
    // allocation per request.
    let mut to_child = conn.take_scratch();
    if let Err(e) = send_head(conn, &mut lease, head, marker.as_ref(), &mut request, &mut to_child) {
        conn.restore_scratch(to_child);
        lease.release(499, false);
        return Outcome::ClientGone(e);
    }
    let mut response = ResponseStream::new(head.id, marker.as_ref().map(Marker::as_bytes));
    let exchanged = exchange(conn, &mut lease, head, &mut to_child, &mut request, &mut response).await;
    conn.restore_scratch(to_child);
    settle(conn, lease, head, &mut request, &response, exchanged).await
}

/// Step 1: the worker's connection to its child, opened if it has none.
/// False: the child cannot be reached (said in the log).
async fn connect(lease: &mut Lease<'_>) -> bool {
    let pool = lease.pool();
    match lease.worker().ensure_connected(&pool.socket).await {
        Ok(()) => true,
        Err(e) => {
            crate::error!("[pool {}] cannot connect to php-cgi: {e}", pool.name);
            false
        }
    }
}

/// Step 2: queues for the child the request head and the body bytes already
/// read (the exchange writes them), and tells the actor of a new connection.
fn send_head(
    conn: &mut Connection,
    lease: &mut Lease<'_>,
    head: &Head,
    marker: Option<&Marker>,
    request: &mut RequestStream<'_>,
    to_child: &mut Vec<u8>,
) -> Result<(), ConnError> {
    // One allocation at most, where growing record by record took several
    // (the scratch buffer of a new connection is empty).
    to_child.clear();
    to_child.reserve(head_room(head, marker) + conn.buffered());
    request_head(head, marker, to_child);
    conn.take_body(request, to_child)?;
    announce(lease);
    Ok(())
}

/// Tells the actor of the worker's connection at its first request, so that
/// it finds the child that accepted it.
fn announce(lease: &mut Lease<'_>) {
    let pool = lease.pool();
    let worker = lease.worker();
    if worker.is_fresh() {
        worker.mark_used();
        let (slot, inode, fd) = (worker.slot(), worker.inode(), worker.fd());
        pool.tell(PoolMsg::Connected { slot, inode, fd });
    }
}

/// How the exchange ended.
struct Exchanged {
    /// Ok: the child ended the request; whether what it was sent ends on a
    /// record boundary.
    result: Result<bool, Failure>,
    /// `request_terminate_timeout`'s deadline, unless the end of the script's main code
    /// (or `fastcgi_finish_request()`) lifted it.
    deadline: Option<Instant>,
    /// The end of the response, still owed to nginx once the child is released.
    tail: Vec<u8>,
}

/// Step 3: moves the body to the child and its response to nginx until the
/// child ends the request, either side fails, or `request_terminate_timeout`.
async fn exchange<'m>(
    conn: &mut Connection,
    lease: &mut Lease<'_>,
    head: &Head,
    to_child: &mut Vec<u8>,
    request: &mut RequestStream<'m>,
    response: &mut ResponseStream<'m>,
) -> Exchanged {
    let pool = lease.pool();
    // access log: keep the response head only when the format shows response headers.
    response.keep_head = lease.access.is_some() && pool.logs.access().is_some_and(|a| a.wants_headers());
    if pool.output.is_some() {
        response.collect_messages();
    }
    let deadline = lease.deadline();
    let lifted = AtomicBool::new(false);
    let mut exchange = Exchange {
        to_child,
        request,
        response: &mut *response,
        deadline,
        lifted: &lifted,
        keep_conn: head.keep_conn,
        pool: &pool.name,
        output: pool.output.as_ref(),
        tail: Vec::new(),
        tail_start: 0,
        balancer: &pool.balancer,
        coming_back: None,
        taken: false,
        input_closed: false,
    };
    let mut result = exchange.run(conn, lease.worker(), pool.track_finished).await;
    // An idle child that died (killed, out of memory) just before the front
    // end saw it go: its connection took no byte of the request, so no child
    // has seen it, and it goes to the pool's children on a new connection.
    for _ in 0..RESENDS {
        if !matches!(result, Err(Failure::Refused)) {
            break;
        }
        crate::debug!("[pool {}] the child's connection closed before it took the request: sent again", pool.name);
        lease.worker().discard();
        if !connect(lease).await {
            break;
        }
        announce(lease);
        result = exchange.run(conn, lease.worker(), pool.track_finished).await;
    }
    if let Some(back) = exchange.coming_back.take() {
        lease.worker().hold(back);
    }
    exchange.tail.drain(..exchange.tail_start);
    let tail = std::mem::take(&mut exchange.tail);
    if let Some(output) = pool.output.as_ref().filter(|_| !response.ended) {
        drop(output.request_done(response.take_messages()));
    }
    Exchanged { result, deadline: deadline.filter(|_| !lifted.load(Ordering::Relaxed)), tail }
}

/// Step 4: the worker goes back to the pool (or is abandoned to the actor),
/// and nginx gets the rest of what it is owed: an error page if the child
/// failed before answering, and the rest of the body is skipped.
async fn settle(
    conn: &mut Connection,
    mut lease: Lease<'_>,
    head: &Head,
    request: &mut RequestStream<'_>,
    response: &ResponseStream<'_>,
    exchanged: Exchanged,
) -> Outcome {
    // After fastcgi_finish_request() nginx has a complete response, whatever
    // happens next: that is what the request is logged with.
    let nginx_has = response.completed.is_some().then_some(response.status);
    match exchanged.result {
        Ok(sent_whole_records) => {
            // The child has ended the request, so its worker is free at once.
            // php-cgi copes with a body it got whole, or with a missing empty
            // end-of-body record (the usual GET); anything else leaves its
            // connection out of step, so it is closed. The rest of the body
            // is then skipped without holding the worker.
            let pool = lease.pool();
            if let (Some(record), Some(log)) = (lease.access.as_mut(), pool.logs.access()) {
                log.response_head(record, &response.head);
                record.script_status = response.script_status();
            }
            lease.release(response.status, sent_whole_records && request.child_in_step());
            if let Err(e) = send_tail(conn, &exchanged.tail, exchanged.deadline).await {
                return Outcome::ClientGone(e);
            }
            match conn.finish_body(request, head.keep_conn).await {
                Ok(()) => Outcome::Done,
                Err(e) => Outcome::ClientGone(e),
            }
        }
        Err(failure @ (Failure::Child | Failure::Refused | Failure::Timeout)) => {
            let how = if matches!(failure, Failure::Timeout) { ChildFailure::TimedOut } else { ChildFailure::Crashed };
            let sent = response.sent_any.then_some(response.status);
            let outcome = fail(conn, lease, head, request, Failed { how, sent, nginx_has }).await;
            if sent.is_some() && nginx_has.is_none() {
                conn.cut_response(head.id, &exchanged.tail, response.left_for_nginx()).await;
            }
            outcome
        }
        Err(Failure::Client(e)) => {
            lease.abandon(AbandonCause::ClientGone, nginx_has.unwrap_or(499), exchanged.deadline, Some(head));
            Outcome::ClientGone(e)
        }
    }
}

/// Writes the end of a response whose child is already released: nginx
/// reads it at its pace, within what is left of `request_terminate_timeout`
/// (as the whole response was before).
async fn send_tail(conn: &mut Connection, tail: &[u8], deadline: Option<Instant>) -> Result<(), ConnError> {
    if tail.is_empty() {
        return Ok(());
    }
    let Some(at) = deadline else {
        return Ok(conn.send(tail).await?);
    };
    match tokio::time::timeout_at(at.into(), conn.send(tail)).await {
        Ok(sent) => Ok(sent?),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the web server did not read the end of the response within request_terminate_timeout",
        )
        .into()),
    }
}

enum Failure {
    /// The child's connection failed after it took (some of) the request.
    Child,
    /// The child's connection closed before it took any byte of the request.
    Refused,
    Timeout,
    Client(ConnError),
}

/// One request's traffic between nginx and a child.
struct Exchange<'a, 'm> {
    to_child: &'a mut Vec<u8>,
    request: &'a mut RequestStream<'m>,
    response: &'a mut ResponseStream<'m>,
    /// When `request_terminate_timeout` runs out.
    deadline: Option<Instant>,
    /// The deadline no longer holds: set once the script's main code has ended (the
    /// polyfill says so before its shutdown functions run, or at `fastcgi_finish_request()`)
    /// unless the timeout tracks finished requests.
    lifted: &'a AtomicBool,
    /// nginx keeps its connection after the request.
    keep_conn: bool,
    /// The pool's name, for log lines.
    pool: &'a str,
    /// The pool's worker output log (`catch_workers_output`).
    output: Option<&'a crate::pool::output::OutputHandle>,
    /// The part of the answer nginx has not taken yet, from `tail_start`
    /// on (at most [`UNSENT_MAX`] plus one read): written as nginx reads,
    /// and after the child is released for what is left at END_REQUEST.
    tail: Vec<u8>,
    tail_start: usize,
    /// Counts the worker as coming back from the child's END_REQUEST on, before
    /// nginx has the end of the answer and may send the next request to another thread.
    balancer: &'a crate::pool::balancer::Balancer,
    coming_back: Option<crate::pool::worker::ComingBack>,
    /// The child's connection has taken bytes of the request.
    taken: bool,
    /// The child's connection takes no more of the request (a write failed after
    /// it took some): the body is no longer read from nginx.
    input_closed: bool,
}

impl Exchange<'_, '_> {
    /// Moves bytes both ways until the child's END_REQUEST has been read, or
    /// `request_terminate_timeout` runs out, whatever the exchange is waiting
    /// for at that moment (the child, nginx's body, or a slow nginx reading
    /// the response). Returns whether what was sent to the child ends on a
    /// record boundary.
    async fn run(&mut self, conn: &mut Connection, worker: &mut Worker, track_finished: bool) -> Result<bool, Failure> {
        let (deadline, lifted) = (self.deadline, self.lifted);
        let work = self.relay_all(conn, worker, track_finished);
        let Some(at) = deadline else {
            return work.await;
        };
        tokio::pin!(work);
        tokio::select! {
            // The work first: no random branch order drawn on every wake-up.
            biased;
            result = &mut work => return result,
            () = tokio::time::sleep_until(at.into()) => {}
        }
        if lifted.load(Ordering::Relaxed) {
            work.await
        } else {
            Err(Failure::Timeout)
        }
    }

    /// Moves bytes both ways until the child's END_REQUEST has been read.
    /// After `fastcgi_finish_request()`, nginx has its whole response and the
    /// rest of the child's is discarded. Once the script's main code has ended
    /// (that call, or the polyfill's line before the shutdown functions), the
    /// deadline stays only if `track_finished`, as php-fpm's.
    async fn relay_all(
        &mut self,
        conn: &mut Connection,
        worker: &mut Worker,
        track_finished: bool,
    ) -> Result<bool, Failure> {
        let Some((up, buf)) = worker.io() else {
            return Err(Failure::Child);
        };
        let (mut up_rd, mut up_wr) = up.split();
        let (mut written, mut client_open) = (0, true);
        loop {
            let pending = self.to_child.len() - written;
            let read = if self.unsent() == 0 {
                let want_client = client_open
                    && !self.input_closed
                    && pending < MAX_BODY_BUFFER
                    && conn.buffered() < MAX_BODY_BUFFER
                    && !(self.completed() && self.request.ended);
                tokio::select! {
                    biased;
                    n = up_rd.read(buf) => n,
                    n = up_wr.write(&self.to_child[written..]), if pending > 0 => {
                        self.sent_to_child(&mut written, n)?;
                        continue;
                    }
                    // A body that stops coming holds the child: each pause in it
                    // is bounded by request_read_timeout (after the body, nginx
                    // only waits for the response).
                    n = conn.read_body(!self.request.ended), if want_client => {
                        match n {
                            Ok(n) if n > 0 => self.take_body(conn)?,
                            // nginx has its response and may hang up.
                            _ if self.completed() => client_open = false,
                            // A client that shut its writing side waits for the answer:
                            // its body ends there (at a record's end).
                            Ok(_) if self.request.at_boundary() && conn.only_half_closed() => {
                                conn.end_body_here(self.request, self.to_child);
                                client_open = false;
                            }
                            Ok(_) => return Err(Failure::Client(ConnError::UnexpectedEof)),
                            Err(e) => return Err(Failure::Client(e.into())),
                        }
                        continue;
                    }
                }
            } else {
                // nginx has not taken all of the answer yet: the child is read
                // on while at most one more buffer's worth waits for nginx, so
                // that an END_REQUEST that comes meanwhile frees it at once.
                // (The body waits: nginx is not reading either.) Once the
                // response is complete the child is read on whatever nginx
                // holds: what it sends then is discarded, and its deadline
                // may be lifted. nginx first: a child that keeps writing
                // (messages after fastcgi_finish_request()) must not starve it.
                tokio::select! {
                    biased;
                    n = conn.send_some(&self.tail[self.tail_start..]) => {
                        self.tail_sent(n.map_err(client)?);
                        continue;
                    }
                    n = up_rd.read(buf), if self.unsent() < UNSENT_MAX || self.completed() => n,
                    n = up_wr.write(&self.to_child[written..]), if pending > 0 => {
                        self.sent_to_child(&mut written, n)?;
                        continue;
                    }
                }
            };
            let n = read.map_err(|_| self.lost())?;
            if n == 0 {
                return Err(self.lost());
            }
            self.relay(conn, &up_rd, buf, n).await?;
            if !track_finished && self.response.past_main() {
                self.lifted.store(true, Ordering::Relaxed);
            }
            if self.response.ended {
                return Ok(!self.input_closed && self.request.at_boundary() && written == self.to_child.len());
            }
        }
    }

    /// `n` more bytes of `to_child` (from `written` on) reached the child.
    fn sent_to_child(&mut self, written: &mut usize, n: std::io::Result<usize>) -> Result<(), Failure> {
        let n = match n {
            Ok(n) => n,
            Err(_) if !self.taken => return Err(Failure::Refused),
            // The child stopped taking the request but may have answered it: php-cgi
            // answers a body past post_max_size and closes without reading the rest. Its
            // answer is read on; the rest of the body is not sent (and nginx's is skipped).
            Err(_) => {
                self.to_child.clear();
                *written = 0;
                self.input_closed = true;
                return Ok(());
            }
        };
        self.taken |= n > 0;
        *written += n;
        if *written == self.to_child.len() {
            self.to_child.clear();
            *written = 0;
        }
        Ok(())
    }

    /// The child's connection failed: whether the child may have seen the request.
    fn lost(&self) -> Failure {
        if self.taken {
            Failure::Child
        } else {
            Failure::Refused
        }
    }

    /// Bytes of the answer that nginx has not taken yet.
    fn unsent(&self) -> usize {
        self.tail.len() - self.tail_start
    }

    /// nginx took `n` more bytes of the tail.
    fn tail_sent(&mut self, n: usize) {
        self.tail_start += n;
        if self.tail_start == self.tail.len() {
            self.tail.clear();
            self.tail_start = 0;
        }
    }

    /// nginx has a complete response: the script called `fastcgi_finish_request()`.
    fn completed(&self) -> bool {
        self.response.completed.is_some()
    }

    /// Passes request body bytes from nginx on towards the child.
    fn take_body(&mut self, conn: &mut Connection) -> Result<(), Failure> {
        conn.take_body(self.request, self.to_child).map_err(Failure::Client)
    }

    /// Sends nginx what it gets of the child's answer: the `filled` bytes read
    /// into `buf`, and what more the child's socket holds (read until it would
    /// block, END_REQUEST, or `buf` is full), in one write where there are
    /// several pieces (forwarded bytes, rewritten STDERR, the end of a
    /// finished response). Nothing once the script has called
    /// `fastcgi_finish_request()`. Once END_REQUEST is read, what nginx does
    /// not take at once is kept in `tail`, so that the child is released
    /// before nginx has read it all.
    async fn relay(
        &mut self,
        conn: &mut Connection,
        up: &UpReader<'_>,
        buf: &mut [u8],
        mut filled: usize,
    ) -> Result<(), Failure> {
        let mut batch = Batch::default();
        let mut pos = 0;
        self.response.out.clear();
        loop {
            while pos < filled && !self.response.ended {
                let discard = self.completed();
                let out_start = self.response.out.len();
                let scan = self.response.scan(&buf[pos..filled]).map_err(|_| Failure::Child)?;
                if self.response.ended && self.coming_back.is_none() {
                    self.coming_back = Some(self.balancer.ending());
                }
                if let Some(output) = self.output.filter(|_| self.response.ended) {
                    // Logged before nginx learns that the request is over (php-fpm's order).
                    let logged = output.request_done(self.response.take_messages());
                    let _ = tokio::time::timeout(crate::pool::output::REQUEST_DONE_WAIT, logged).await;
                }
                if discard {
                    self.log_late_messages(out_start);
                    self.response.out.truncate(out_start);
                } else {
                    batch.push(Piece::Read(pos..pos + scan.forward));
                    batch.push(Piece::Out(out_start..self.response.out.len()));
                    if let Some(headers) = &self.response.completed {
                        let end_start = self.response.out.len();
                        end_of_response(self.response.id(), headers, &mut self.response.out);
                        batch.push(Piece::Out(end_start..self.response.out.len()));
                        self.response.sent_any = true;
                        self.emit(conn, buf, &mut batch)?;
                        if !self.keep_conn {
                            // Without FCGI_KEEP_CONN, nginx ends the response when
                            // the connection closes (php-fpm closes it here too).
                            conn.send(&self.tail[self.tail_start..]).await.map_err(client)?;
                            self.tail_sent(self.unsent());
                            conn.close_write().await.map_err(client)?;
                        }
                    } else if batch.is_full() {
                        self.emit(conn, buf, &mut batch)?;
                    }
                }
                pos += scan.consumed;
            }
            if self.response.ended || filled == buf.len() {
                break;
            }
            // More of the answer may be waiting: one write for all of it. (When
            // nothing is, the read that finds the socket empty is the one the
            // next wait would make anyway.)
            match up.try_read(&mut buf[filled..]) {
                Ok(0) => break, // the child is gone: the next read says so
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(Failure::Child),
            }
        }
        self.emit(conn, buf, &mut batch)
    }

    /// Writes what `batch` holds to nginx in one system call, without
    /// waiting: what nginx does not take at once (or all of it, behind bytes
    /// it has not taken yet) is copied to `tail`, written as nginx reads.
    fn emit(&mut self, conn: &mut Connection, buf: &[u8], batch: &mut Batch) -> Result<(), Failure> {
        if !batch.is_empty() {
            let written = if self.unsent() == 0 {
                let (slices, n) = batch.slices(buf, &self.response.out);
                conn.try_send_vectored(&slices[..n]).map_err(client)?
            } else {
                0
            };
            batch.copy_from(written, buf, &self.response.out, &mut self.tail);
        }
        *batch = Batch::default();
        self.response.out.clear();
        Ok(())
    }
}

/// The child's socket, read without waiting while a batch is gathered.
type UpReader<'a> = tokio::net::unix::ReadHalf<'a>;

fn client(e: std::io::Error) -> Failure {
    Failure::Client(e.into())
}

/// One piece of what nginx gets of a batch of reads from the child.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Bytes of the child's read buffer, forwarded unchanged.
    Read(std::ops::Range<usize>),
    /// Bytes of [`ResponseStream::out`]: rewritten STDERR, held header bytes,
    /// the end of a finished response.
    Out(std::ops::Range<usize>),
}

/// Most pieces written at once (a batch that has more is written in parts).
const MAX_PIECES: usize = 8;

/// What nginx gets of a batch of reads from the child, in order: a fixed
/// list, so that relaying allocates nothing.
#[derive(Default)]
struct Batch {
    pieces: [Option<Piece>; MAX_PIECES],
    len: usize,
}

impl Batch {
    /// Appends `piece`, or extends the last one if it continues it.
    fn push(&mut self, piece: Piece) {
        let (Piece::Read(r) | Piece::Out(r)) = &piece;
        if r.is_empty() {
            return;
        }
        if let Some(last) = self.len.checked_sub(1).and_then(|i| self.pieces[i].as_mut()) {
            match (last, &piece) {
                (Piece::Read(a), Piece::Read(b)) | (Piece::Out(a), Piece::Out(b)) if a.end == b.start => {
                    a.end = b.end;
                    return;
                }
                _ => {}
            }
        }
        self.pieces[self.len] = Some(piece);
        self.len += 1;
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// No room for more than one more piece: a scan can add two.
    fn is_full(&self) -> bool {
        self.len + 2 > MAX_PIECES
    }

    fn bytes<'s, 'b: 's>(&'s self, buf: &'b [u8], out: &'b [u8]) -> impl Iterator<Item = &'b [u8]> + 's {
        self.pieces[..self.len].iter().flatten().map(move |piece| match piece {
            Piece::Read(r) => &buf[r.clone()],
            Piece::Out(r) => &out[r.clone()],
        })
    }

    /// The pieces as slices for one vectored write, and how many there are.
    fn slices<'b>(&self, buf: &'b [u8], out: &'b [u8]) -> ([IoSlice<'b>; MAX_PIECES], usize) {
        let mut slices = [IoSlice::new(&[]); MAX_PIECES];
        for (slice, bytes) in slices.iter_mut().zip(self.bytes(buf, out)) {
            *slice = IoSlice::new(bytes);
        }
        (slices, self.len)
    }

    /// Appends to `tail` what is left of the pieces after their first `written` bytes.
    fn copy_from(&self, mut written: usize, buf: &[u8], out: &[u8], tail: &mut Vec<u8>) {
        for bytes in self.bytes(buf, out) {
            let skip = written.min(bytes.len());
            tail.extend_from_slice(&bytes[skip..]);
            written -= skip;
        }
    }
}

impl Exchange<'_, '_> {
    /// nginx is done with the request: PHP's later messages go to rustfpm's
    /// log, one line each (control characters escaped), split at `log_limit`.
    fn log_late_messages(&self, from: usize) {
        let text = super::stderr::text(&self.response.out[from..]);
        if text.is_empty() {
            return;
        }
        let head = format!("[pool {}] after fastcgi_finish_request(): ", self.pool);
        let text = crate::accesslog::format::escape_controls(&text);
        crate::log::write_split(crate::config::LogLevel::Warning, &head, &text, "");
    }
}

/// What completes a response at `fastcgi_finish_request()`, appended to
/// `out`: the headers not sent yet, the end of STDOUT and END_REQUEST.
fn end_of_response(id: u16, headers: &[u8], out: &mut Vec<u8>) {
    if !headers.is_empty() {
        encode_stream(out, RecordType::Stdout, id, headers);
    }
    encode_stream(out, RecordType::Stdout, id, b"");
    encode_end_request(out, id, 0, ProtocolStatus::RequestComplete);
}

/// BEGIN_REQUEST (always FCGI_KEEP_CONN towards the child) and the params
/// of [`write_params`], encoded straight into `out`: one PARAMS record (or
/// several, past 64 KiB) and the empty one.
fn request_head(head: &Head, marker: Option<&Marker>, out: &mut Vec<u8>) {
    out.clear();
    encode_begin_request(out, head.id, head.role, FCGI_KEEP_CONN);
    let start = open_record(out, RecordType::Params, head.id);
    write_params(head, marker, out);
    match out.len() - start - HEADER_LEN {
        0 => out.truncate(start),
        len if len <= MAX_CONTENT_LEN => close_record(out, start),
        _ => {
            // Rare: more than one record's worth (big cookies, or nginx's
            // one full record and our marker). php-cgi reads the pairs of
            // each record on their own, so a record ends between two pairs (a
            // pair that alone passes a record's room never comes here: it is
            // answered 431, `conn::answer_without_child`).
            let params = out.split_off(start + HEADER_LEN);
            out.truncate(start);
            let (mut record, mut pair) = (Vec::with_capacity(MAX_CONTENT_LEN), Vec::new());
            for (name, value) in crate::fastcgi::pairs(&params).map_while(Result::ok) {
                pair.clear();
                encode_pair(&mut pair, name, value);
                if !record.is_empty() && record.len() + pair.len() > MAX_CONTENT_LEN {
                    encode_stream(out, RecordType::Params, head.id, &record);
                    record.clear();
                }
                record.extend_from_slice(&pair);
            }
            encode_stream(out, RecordType::Params, head.id, &record);
        }
    }
    encode_stream(out, RecordType::Params, head.id, b"");
}

/// At least the bytes [`request_head`] writes: BEGIN_REQUEST, the params and
/// the marker's pair in records of at most [`MAX_CONTENT_LEN`] bytes (each
/// with its header and padding), and the empty PARAMS record.
fn head_room(head: &Head, marker: Option<&Marker>) -> usize {
    let params = head.params.len() + marker.map_or(0, |m| 8 + MARKER_PARAM.len() + m.as_bytes().len());
    // Records end between pairs: two in a row hold more than one's room.
    let records = 2 * (params / MAX_CONTENT_LEN) + 1;
    2 * HEADER_LEN + params + records * (HEADER_LEN + 7) + HEADER_LEN
}

/// The params the child gets, appended to `out` as FastCGI pairs: nginx's
/// (copied as they came), minus those never passed on, plus the request's
/// finish marker. The one place where the params towards the child are written.
fn write_params(head: &Head, marker: Option<&Marker>, out: &mut Vec<u8>) {
    head.params.copy_pairs_without(out, |name| DROPPED_PARAMS.contains(&name));
    if let Some(marker) = marker {
        encode_pair(out, MARKER_PARAM, marker.as_bytes());
    }
}

/// How a request failed on the child's side.
enum ChildFailure {
    /// The child exited mid-request: 502.
    Crashed,
    /// The request ran past `request_terminate_timeout`: the actor kills the
    /// child, and nginx gets a 504 (php-fpm gives a bare 502).
    TimedOut,
}

/// How a request failed on the child's side, and what nginx has of it.
struct Failed {
    how: ChildFailure,
    /// Part of the response, with this status, has reached nginx: no error page can follow.
    sent: Option<u16>,
    /// nginx already has a complete response with this status
    /// (`fastcgi_finish_request()`).
    nginx_has: Option<u16>,
}

/// Ends a request whose child failed: the actor hears of it, nginx gets a
/// complete error response if nothing was sent yet, else an abrupt close
/// (the only way to tell it the response is incomplete).
async fn fail(
    conn: &mut Connection,
    mut lease: Lease<'_>,
    head: &Head,
    request: &mut RequestStream<'_>,
    failed: Failed,
) -> Outcome {
    let pool = lease.pool();
    // The body for the client; the STDERR line for nginx's error log, where
    // php-fpm's failures show too (its child's reset connection, its logger).
    let (line, body, stderr): (&str, &[u8], &[u8]) = match failed.how {
        ChildFailure::Crashed => {
            let (script, uri) = (head.params.text(b"SCRIPT_FILENAME"), head.params.text(b"REQUEST_URI"));
            let slot = lease.worker().slot();
            let answered = match (failed.nginx_has, failed.sent) {
                (Some(_), _) => "after fastcgi_finish_request(), with the response complete",
                (None, Some(_)) => "its response cut short (the web server sees it incomplete)",
                (None, None) => "answered 502",
            };
            pool.tell(PoolMsg::ChildCrashed { slot, script, uri, answered });
            lease.release(failed.nginx_has.or(failed.sent).unwrap_or(502), false);
            (
                "502 Bad Gateway",
                b"Bad Gateway: the PHP process serving this request exited.\n",
                b"the PHP process serving this request exited (see rustfpm's log)",
            )
        }
        ChildFailure::TimedOut => {
            // The actor kills the child, by its pid, before lending the worker again.
            let status = failed.nginx_has.or(failed.sent).unwrap_or(504);
            lease.abandon(AbandonCause::TimedOut, status, Some(Instant::now()), Some(head));
            (
                "504 Gateway Timeout",
                b"Gateway Timeout: the PHP script ran past request_terminate_timeout.\n",
                b"the PHP script ran past request_terminate_timeout and is terminated",
            )
        }
    };
    if failed.sent.is_some() {
        return Outcome::ChildFailed { answered: false };
    }
    let reply = Reply { stderr: Some(stderr), ..Reply::new(line, body) };
    let answered = conn.answer(head, reply).await.is_ok() && conn.finish_body(request, head.keep_conn).await.is_ok();
    Outcome::ChildFailed { answered }
}

#[cfg(test)]
mod tests {
    use super::super::connection::Stream;
    use super::super::shed::Shed;
    use super::*;
    use crate::fastcgi::{pairs, parse_record, ParamsBuffer, Role};
    use std::os::unix::net::UnixStream as StdUnixStream;

    fn head_with(params_in: &[(&[u8], &[u8])]) -> Head {
        let mut encoded = Vec::new();
        for (name, value) in params_in {
            encode_pair(&mut encoded, name, value);
        }
        let mut params = ParamsBuffer::new(1 << 20);
        params.push(&encoded).expect("within the limit");
        Head { id: 7, keep_conn: false, params, started: Instant::now(), role: Role::Responder }
    }

    /// The records of `out`: type, request id and content.
    fn records(mut out: &[u8]) -> Vec<(u8, u16, Vec<u8>)> {
        let mut found = Vec::new();
        while let Some((rec, used)) = parse_record(out).expect("valid records") {
            found.push((rec.header.record_type, rec.header.request_id, rec.content.to_vec()));
            out = &out[used..];
        }
        assert!(out.is_empty(), "a record was cut");
        found
    }

    #[test]
    fn the_head_carries_every_param_but_the_dropped_ones() {
        let head = head_with(&[(b"SCRIPT_FILENAME", b"/x.php"), (b"HTTP_PROXY", b"evil"), (b"QUERY_STRING", b"")]);
        let mut out = vec![b'x'; 3];
        request_head(&head, None, &mut out);
        let recs = records(&out);
        let kinds: Vec<_> = recs.iter().map(|(kind, id, _)| (*kind, *id)).collect();
        assert_eq!(kinds, [(1, 7), (4, 7), (4, 7)]);
        let sent: Vec<_> = pairs(&recs[1].2).map(|p| p.expect("whole pairs")).collect();
        assert_eq!(sent, [(&b"SCRIPT_FILENAME"[..], &b"/x.php"[..]), (&b"QUERY_STRING"[..], &b""[..])]);
        assert!(recs[2].2.is_empty());
    }

    #[test]
    fn the_head_fits_the_room_reserved_for_it() {
        let marker = Marker::sample();
        for len in [0, 10, 200, 65_000, 70_000, 140_000] {
            let head = head_with(&[(b"HTTP_COOKIE", &vec![b'v'; len]), (b"SCRIPT_FILENAME", b"/x.php")]);
            for marker in [None, Some(&marker)] {
                let mut out = Vec::new();
                request_head(&head, marker, &mut out);
                assert!(
                    out.len() <= head_room(&head, marker),
                    "{} > {} for {len}",
                    out.len(),
                    head_room(&head, marker)
                );
            }
        }
    }

    #[test]
    fn params_past_one_record_are_split_and_no_params_make_no_record() {
        let big = vec![b'v'; 70_000];
        let head = head_with(&[(b"HTTP_COOKIE", &big)]);
        let mut out = Vec::new();
        request_head(&head, None, &mut out);
        let recs = records(&out);
        let lens: Vec<_> = recs.iter().map(|(kind, _, content)| (*kind, content.len())).collect();
        let whole = head.params.bytes().len();
        assert_eq!(lens, [(1, 8), (4, MAX_CONTENT_LEN), (4, whole - MAX_CONTENT_LEN), (4, 0)]);
        assert_eq!([&recs[1].2[..], &recs[2].2[..]].concat(), head.params.bytes());

        // Many small pairs past one record (nginx's full record and the
        // marker): no pair is cut, each record reads whole.
        let name_values: Vec<(String, Vec<u8>)> =
            (0..2000).map(|i| (format!("HTTP_X_{i:04}"), vec![b'v'; 24])).collect();
        let many: Vec<(&[u8], &[u8])> = name_values.iter().map(|(n, v)| (n.as_bytes(), &v[..])).collect();
        let head = head_with(&many);
        assert!(head.params.len() > MAX_CONTENT_LEN);
        let marker = Marker::sample();
        request_head(&head, Some(&marker), &mut out);
        assert!(out.len() <= head_room(&head, Some(&marker)));
        let mut sent = Vec::new();
        for (_, _, content) in records(&out).into_iter().filter(|(kind, ..)| *kind == 4) {
            assert!(content.len() <= MAX_CONTENT_LEN);
            sent.extend(pairs(&content).map(|p| p.expect("a record holds whole pairs")).map(|(n, _)| n.to_vec()));
        }
        assert_eq!(sent.len(), 2001, "every pair and the marker's");

        request_head(&head_with(&[(b"HTTP_PROXY", b"x")]), None, &mut out);
        let kinds: Vec<_> = records(&out).iter().map(|(kind, _, content)| (*kind, content.len())).collect();
        assert_eq!(kinds, [(1, 8), (4, 0)]);
    }

    /// A worker connected to a fake child (its end returned), its connection
    /// known writable to the reactor (as after a request), and a connection
    /// from nginx (its end returned), full when `stalled`: nginx reads nothing.
    async fn fake_child(dir: &std::path::Path, stalled: bool) -> (Worker, StdUnixStream, Connection, StdUnixStream) {
        use std::io::Write;
        let path = dir.join("child.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind the fake child's socket");
        let fd = std::os::fd::OwnedFd::from(listener.try_clone().expect("clone the listener"));
        let socket = crate::pool::worker::ChildSocket { path, dir: dir.join("none"), listener: fd };
        let mut worker = Worker::new(0, std::sync::Arc::from(vec![0.into()]));
        worker.ensure_connected(&socket).await.expect("connect to the fake child");
        let (child, _) = listener.accept().expect("accept the worker");
        let (up, _) = worker.io().expect("connected");
        up.writable().await.expect("writable");
        let (ours, nginx) = StdUnixStream::pair().expect("a socket pair");
        ours.set_nonblocking(true).expect("non-blocking");
        while stalled && (&ours).write(&[0u8; 4096]).is_ok() {}
        let stream = Stream::Unix(tokio::net::UnixStream::from_std(ours).expect("a tokio socket"));
        (worker, child, Connection::new(stream, false, None, Shed::default()), nginx)
    }

    /// An exchange of `request` and `response` (nothing to nginx yet, no deadline).
    fn exchange<'a, 'm>(
        to_child: &'a mut Vec<u8>,
        request: &'a mut RequestStream<'m>,
        response: &'a mut ResponseStream<'m>,
        lifted: &'a AtomicBool,
        balancer: &'a crate::pool::balancer::Balancer,
    ) -> Exchange<'a, 'm> {
        Exchange {
            to_child,
            request,
            response,
            deadline: None,
            lifted,
            keep_conn: true,
            pool: "www",
            output: None,
            tail: Vec::new(),
            tail_start: 0,
            balancer,
            coming_back: None,
            taken: false,
            input_closed: false,
        }
    }

    #[tokio::test]
    async fn a_child_that_finishes_early_is_read_to_its_end_request_while_nginx_reads_nothing() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (mut worker, mut child, mut conn, _nginx) = fake_child(dir.path(), true).await;
        let marker = b"MARK";
        let no_params = ParamsBuffer::new(0);
        let (mut to_child, mut request) = (Vec::new(), RequestStream::new(1, &no_params));
        let mut response = ResponseStream::new(1, Some(marker));
        let lifted = AtomicBool::new(false);
        let balancer = crate::pool::balancer::Balancer::new(Vec::new(), 0, None);
        let mut exchange = exchange(&mut to_child, &mut request, &mut response, &lifted, &balancer);
        // One read's worth: 66,032 bytes of STDOUT records, then the finish
        // marker (16 bytes). Completed, the response leaves more than
        // UNSENT_MAX bytes for nginx; the script then ends.
        let mut answer = Vec::new();
        encode_stream(&mut answer, RecordType::Stdout, 1, &[b'x'; 65_528]);
        encode_stream(&mut answer, RecordType::Stdout, 1, &[b'y'; 488]);
        encode_stream(&mut answer, RecordType::Stderr, 1, b"MARK\n");
        assert_eq!(answer.len(), crate::pool::worker::READ_BUF);
        child.write_all(&answer).expect("the fake child writes its answer");
        let mut end = Vec::new();
        encode_end_request(&mut end, 1, 0, ProtocolStatus::RequestComplete);
        let script_ends = async {
            while !lifted.load(Ordering::Relaxed) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            child.write_all(&end).expect("the fake child ends the request");
        };
        let both = async { tokio::join!(exchange.run(&mut conn, &mut worker, false), script_ends).0 };
        let ended = tokio::time::timeout(std::time::Duration::from_secs(20), both).await;
        assert!(matches!(ended, Ok(Ok(_))), "the exchange did not read the child's END_REQUEST");
        assert!(exchange.unsent() > UNSENT_MAX, "nginx was to have read nothing");
    }

    /// What the fake child does in [`exchange_with`].
    enum ChildDoes {
        /// Closes its end before the request, the reactor not told yet.
        Closes,
        /// Closes its end, and the reactor reads so before the request.
        ClosesSeen,
        /// Reads some of the request and then closes its end.
        ReadsThenCloses,
        /// Has taken part of the request, answers it whole and closes its end
        /// (php-cgi with a body past `post_max_size`).
        AnswersAndCloses,
    }

    /// How the exchange of a request head with a fake child ends.
    async fn exchange_with(does: ChildDoes) -> Result<bool, Failure> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (mut worker, child, mut conn, _nginx) = fake_child(dir.path(), false).await;
        let head = head_with(&[(b"SCRIPT_FILENAME", b"/x.php")]);
        let (mut to_child, mut request) = (Vec::new(), head.body());
        request_head(&head, None, &mut to_child);
        let mut response = ResponseStream::new(head.id, None);
        let lifted = AtomicBool::new(false);
        let balancer = crate::pool::balancer::Balancer::new(Vec::new(), 0, None);
        let mut exchange = exchange(&mut to_child, &mut request, &mut response, &lifted, &balancer);
        exchange.taken = matches!(does, ChildDoes::AnswersAndCloses);
        let close = |child: &StdUnixStream| child.shutdown(std::net::Shutdown::Both).expect("close the child's end");
        let reader = match does {
            ChildDoes::AnswersAndCloses => {
                use std::io::Write;
                let mut answer = Vec::new();
                encode_stream(&mut answer, RecordType::Stdout, head.id, b"Status: 200\r\n\r\nanswered");
                encode_end_request(&mut answer, head.id, 0, ProtocolStatus::RequestComplete);
                (&child).write_all(&answer).expect("the child answers");
                close(&child);
                None
            }
            ChildDoes::Closes => {
                close(&child);
                None
            }
            ChildDoes::ClosesSeen => {
                close(&child);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                None
            }
            ChildDoes::ReadsThenCloses => Some(std::thread::spawn(move || {
                use std::io::Read;
                let read = (&child).read(&mut [0u8; 16]).expect("the child reads");
                close(&child);
                read
            })),
        };
        let ended =
            tokio::time::timeout(std::time::Duration::from_secs(20), exchange.run(&mut conn, &mut worker, false));
        let ended = ended.await.expect("the exchange ended");
        if let Some(reader) = reader {
            assert!(reader.join().expect("the child's thread") > 0, "the child read the head");
        }
        ended
    }

    /// An idle child that died before the front end saw it: its connection
    /// takes no byte of the request (the write fails, or the end of file is
    /// read first), so no child saw the request and it can go to another.
    /// A child that took some of it may have run the script: that is a crash.
    #[tokio::test]
    async fn a_connection_closed_before_it_took_the_request_is_told_from_a_crash() {
        assert!(matches!(exchange_with(ChildDoes::Closes).await, Err(Failure::Refused)));
        assert!(matches!(exchange_with(ChildDoes::ClosesSeen).await, Err(Failure::Refused)));
        assert!(matches!(exchange_with(ChildDoes::ReadsThenCloses).await, Err(Failure::Child)));
    }

    /// A child that stops taking the request but answers it (php-cgi with a body past
    /// `post_max_size`): its answer is read and the request ends there, the connection not
    /// to be used again (what it was sent is out of step).
    #[tokio::test]
    async fn a_child_that_answers_and_closes_before_taking_the_whole_request_is_read() {
        assert!(matches!(exchange_with(ChildDoes::AnswersAndCloses).await, Ok(false)));
    }

    #[test]
    fn a_batch_keeps_the_order_joins_neighbours_and_copies_what_was_not_written() {
        let (buf, out) = (b"0123456789", b"abcdef");
        let mut batch = Batch::default();
        batch.push(Piece::Read(0..3));
        batch.push(Piece::Read(3..5));
        batch.push(Piece::Out(0..0));
        batch.push(Piece::Out(0..2));
        batch.push(Piece::Read(7..10));
        batch.push(Piece::Out(2..6));
        assert_eq!(batch.len, 4, "neighbours joined, empty pieces dropped");
        let (slices, n) = batch.slices(buf, out);
        let all: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(all, b"01234ab789cdef");
        for written in 0..=all.len() {
            let mut tail = Vec::new();
            batch.copy_from(written, buf, out, &mut tail);
            assert_eq!(tail, all[written..], "after {written} bytes written");
        }
    }
}
