//! One nginx connection's I/O. [`Connection`] owns the socket and the bytes
//! read from it; its methods read request heads (answering management
//! records on the way), write rustfpm's own answers, pass request bodies on or
//! skip them, and carry the child's response to nginx. What to do with a
//! request is decided elsewhere: `conn.rs` dispatches, `proxy.rs` relays.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::watch;

use super::alarm::Alarm;
use super::body::RequestStream;
use super::error::ConnError;
use super::inbuf::{InBuf, CHUNK};
use super::limits::{HeadClock, Phase};
use super::shed::Shed;
use crate::fastcgi::{
    encode_end_request, encode_get_values_result, encode_simple_response, encode_stream, encode_unknown_type,
    parse_record, BeginRequest, ParamsBuffer, ProtocolStatus, RecordType, Role,
};
use crate::pool::Pool;

/// A request head: BEGIN_REQUEST and all PARAMS.
#[derive(Debug)]
pub struct Head {
    /// The request id nginx chose (used unchanged towards the child).
    pub id: u16,
    /// nginx asked to keep the connection open.
    pub keep_conn: bool,
    /// The request's params.
    pub params: ParamsBuffer,
    /// When the first record of the request arrived.
    pub started: Instant,
    /// The role nginx asked for (php-cgi plays the three, as php-fpm does).
    pub role: Role,
}

impl Head {
    /// The request's body, none of it read yet.
    pub fn body(&self) -> RequestStream<'_> {
        RequestStream::new(self.id, &self.params)
    }
}

/// A complete response of rustfpm's own (no child involved).
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    /// HTTP status line, e.g. "404 Not Found".
    pub status: &'a str,
    /// Extra headers (a Content-Type here replaces the text/html default).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
    /// A message for nginx's error log, sent as a STDERR record.
    pub stderr: Option<&'a [u8]>,
}

impl<'a> Reply<'a> {
    /// A reply with a status and a body only.
    pub fn new(status: &'a str, body: &'a [u8]) -> Reply<'a> {
        Reply { status, headers: &[], body, stderr: None }
    }
}

/// An accepted nginx connection's socket.
#[derive(Debug)]
pub enum Stream {
    /// Over a unix socket.
    Unix(UnixStream),
    /// Over TCP.
    Tcp(TcpStream),
}

/// A downstream (nginx) connection: its socket, the bytes read and not yet
/// handled, and a scratch buffer for the records rustfpm writes. Generic only
/// so that the fuzz targets can run it over memory; the server uses [`Stream`].
pub struct Connection<S = Stream> {
    stream: S,
    inbuf: InBuf,
    /// The deadlines of the reads from nginx.
    alarm: Alarm,
    out: Vec<u8>,
    /// Accepted on `pm_status_listen`: only the status and ping pages are served.
    pages_only: bool,
    /// nginx's address on TCP, when the access log or `listen.allowed_clients` needs it.
    peer: Option<IpAddr>,
    /// Asks this connection to close while it waits for a request head, when
    /// its listener needs room.
    shed: Shed,
    /// The peer's records no longer follow a request: a body cut short by
    /// another record, or a request ended without `FCGI_KEEP_CONN`. The
    /// connection closes once what is owed is written; nothing more is read.
    out_of_step: bool,
}

impl<S> Connection<S> {
    /// A new connection over `stream`; `peer` is nginx's address, when it is
    /// known and needed; `shed` tells it when to make room.
    pub fn new(stream: S, pages_only: bool, peer: Option<IpAddr>, shed: Shed) -> Self {
        Connection {
            stream,
            inbuf: InBuf::default(),
            alarm: Alarm::default(),
            out: Vec::new(),
            pages_only,
            peer,
            shed,
            out_of_step: false,
        }
    }

    /// The connection closes once the request it serves is answered (see
    /// `out_of_step`), whatever FCGI_KEEP_CONN said.
    pub fn closes_after(&self) -> bool {
        self.out_of_step
    }

    /// Accepted on `pm_status_listen`: only the status and ping pages are served.
    pub fn pages_only(&self) -> bool {
        self.pages_only
    }

    /// nginx's address, when it was looked up.
    pub fn peer(&self) -> Option<IpAddr> {
        self.peer
    }

    /// The socket (for the fuzz targets: what was written to it).
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// Between two requests on a kept connection: releases what the read
    /// buffer holds beyond what is pending.
    pub fn between_requests(&mut self) {
        self.inbuf.shrink();
    }

    /// Bytes read from nginx and not handled yet.
    pub fn buffered(&self) -> usize {
        self.inbuf.pending().len()
    }

    /// Lends the scratch buffer (empty) to a request that streams records
    /// through it, so that no request allocates one; see [`Connection::restore_scratch`].
    pub fn take_scratch(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Takes the scratch buffer back, emptied.
    pub fn restore_scratch(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        self.out = buf;
    }

    /// Moves the body bytes of `body` found in the read buffer into `out`.
    pub fn take_body(&mut self, body: &mut RequestStream<'_>, out: &mut Vec<u8>) -> Result<(), ConnError> {
        let used = body.take(self.inbuf.pending(), out)?;
        self.inbuf.consume(used);
        self.out_of_step |= body.cut;
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Reads records until a request head is complete. Management records are
    /// answered on the way. Ok(None): nginx closed an idle connection, it stayed
    /// idle past `listen_idle_timeout`, it was shed, or shutdown. A head not
    /// complete within `request_read_timeout` closes the connection. The
    /// limits are those of the pool `current` holds as the wait begins; no pool
    /// is held while the connection waits, so that an idle kept connection
    /// keeps no generation alive that a reload retired.
    pub async fn read_head(
        &mut self,
        current: &watch::Receiver<Arc<Pool>>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Option<Head>, ConnError> {
        let mut head: Option<Head> = None;
        let (read_timeout, idle_timeout, max_params) = {
            let pool = current.borrow();
            (pool.read_timeout, pool.idle_timeout, pool.max_params)
        };
        self.inbuf.read_timeout = read_timeout;
        let mut clock = HeadClock::new(Instant::now(), self.inbuf.is_fresh(), read_timeout, idle_timeout);
        loop {
            if let Some(complete) = self.parse_head(&mut head, max_params).await? {
                return Ok(Some(complete));
            }
            if self.out_of_step {
                return Ok(None);
            }
            // Made before shutdown is looked at: a shutdown sent after the look wakes it.
            let signalled = self.shed.signalled();
            let idle = head.is_none() && self.inbuf.pending().is_empty();
            if idle && *shutdown.borrow() {
                return Ok(None);
            }
            if !idle {
                clock.request_begun(Instant::now());
            }
            let n = tokio::select! {
                // Bytes first: the branches are checked in this order instead
                // of tokio's random one (which costs on every request).
                biased;
                n = self.inbuf.fill_until(&mut self.stream, &mut self.alarm, clock.deadline()) => n,
                // Shutdown (looked at above, when idle) or pressure: one wake-up for both.
                cutoff = self.shed.next(signalled) => {
                    if cutoff.is_some_and(|cutoff| clock.waiting_since() <= cutoff) {
                        crate::debug!(
                            "[pool {}] connection waiting for a request closed to make room",
                            current.borrow().name
                        );
                        return Ok(None);
                    }
                    continue;
                }
            };
            match n {
                Ok(0) if idle => return Ok(None),
                Ok(0) => return Err(ConnError::UnexpectedEof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return head_timed_out(&current.borrow(), clock.phase(), idle)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Handles the complete records in the read buffer; returns the head once
    /// its empty PARAMS record has arrived. `head` holds a head begun in an
    /// earlier call. What management records are owed is written before an
    /// error is returned.
    pub(crate) async fn parse_head(
        &mut self,
        head: &mut Option<Head>,
        max_params: usize,
    ) -> Result<Option<Head>, ConnError> {
        self.out.clear();
        let parsed = self.parse_records(head, max_params);
        if !self.out.is_empty() {
            let written = self.stream.write_all(&self.out).await;
            if parsed.is_ok() {
                written?;
            }
        }
        parsed
    }

    /// [`Connection::parse_head`]'s records, with what is owed for them in `out`.
    fn parse_records(&mut self, head: &mut Option<Head>, max_params: usize) -> Result<Option<Head>, ConnError> {
        while let Some((rec, used)) = parse_record(self.inbuf.pending())? {
            let h = rec.header;
            match (h.kind(), head.as_mut()) {
                (Some(RecordType::BeginRequest), None) => {
                    let begin = BeginRequest::parse(rec.content)?;
                    if let Some(role) = begin.role_kind() {
                        *head = Some(Head {
                            id: h.request_id,
                            keep_conn: begin.keep_conn(),
                            params: ParamsBuffer::new(max_params),
                            started: Instant::now(),
                            role,
                        });
                    } else {
                        encode_end_request(&mut self.out, h.request_id, 0, ProtocolStatus::UnknownRole);
                        if !begin.keep_conn() {
                            self.out_of_step = true;
                            return Ok(None);
                        }
                    }
                }
                (Some(RecordType::Params), Some(hd)) if hd.id == h.request_id => {
                    if rec.content.is_empty() {
                        self.inbuf.consume(used);
                        return Ok(head.take());
                    }
                    if let Err(e) = hd.params.push(rec.content) {
                        let id = hd.id;
                        self.out.clear();
                        let (status, body) = ("431 Request Header Fields Too Large", b"Request headers too large.\n");
                        encode_simple_response(&mut self.out, id, status, &[], body);
                        return Err(e.into());
                    }
                }
                // The body begins without the empty PARAMS record: the params are
                // complete, as php-cgi takes them (the STDIN record is the body's).
                (Some(RecordType::Stdin), Some(hd)) if hd.id == h.request_id => return Ok(head.take()),
                (Some(RecordType::GetValues), _) => {
                    encode_get_values_result(&mut self.out, rec.content, 1024, 1024, false)?;
                }
                (Some(RecordType::AbortRequest), Some(hd)) if hd.id == h.request_id => {
                    encode_end_request(&mut self.out, h.request_id, 0, ProtocolStatus::RequestComplete);
                    let keep = hd.keep_conn;
                    *head = None;
                    if !keep {
                        self.inbuf.consume(used);
                        self.out_of_step = true;
                        return Ok(None);
                    }
                }
                // An abort of a request already answered (a client that sent no
                // empty STDIN record, or aborted as the answer came): nothing to end.
                (Some(RecordType::AbortRequest), None) => {}
                (None, _) => encode_unknown_type(&mut self.out, h.record_type),
                // As php-cgi: stray empty STDIN records between requests are skipped.
                (Some(RecordType::Stdin), None) if rec.content.is_empty() => {}
                (Some(RecordType::BeginRequest), Some(_)) => {
                    return Err(ConnError::Protocol("cannot multiplex requests on one connection"))
                }
                _ => return Err(ConnError::Protocol("unexpected record before the request head was complete")),
            }
            self.inbuf.consume(used);
        }
        Ok(None)
    }

    /// Writes `reply` to request `head`. Returns whether the connection may be kept.
    pub async fn answer(&mut self, head: &Head, reply: Reply<'_>) -> Result<bool, ConnError> {
        self.out.clear();
        if let Some(msg) = reply.stderr {
            encode_stream(&mut self.out, RecordType::Stderr, head.id, msg);
            encode_stream(&mut self.out, RecordType::Stderr, head.id, b"");
        }
        encode_simple_response(&mut self.out, head.id, reply.status, reply.headers, reply.body);
        self.stream.write_all(&self.out).await?;
        Ok(head.keep_conn)
    }

    /// [`Connection::answer`] for a request no child has seen: its body is read and dropped.
    pub async fn answer_alone(&mut self, head: &Head, reply: Reply<'_>) -> Result<bool, ConnError> {
        let keep = self.answer(head, reply).await?;
        self.finish_body(&mut head.body(), head.keep_conn).await?;
        Ok(keep)
    }

    /// The client shut its writing side between two records of the body (see
    /// [`Connection::only_half_closed`]): the body ends there (see [`RequestStream::end_here`]).
    pub fn end_body_here(&mut self, body: &mut RequestStream<'_>, out: &mut Vec<u8>) {
        body.end_here(out);
        self.out_of_step |= body.cut;
    }

    /// After the answer: [`Connection::skip_body`]. Without FCGI_KEEP_CONN, a
    /// body that has not ended is first shown the end of the answer (the
    /// writing side shut, as php-fpm's close shows it), then what the peer
    /// still sends is read and dropped until it closes (a client that sends no
    /// empty STDIN record, a body of unknown length nobody read): a close with
    /// bytes unread would reset the connection, and nginx may not have read the
    /// answer yet. Each pause is bounded by `request_read_timeout`.
    pub async fn finish_body(&mut self, body: &mut RequestStream<'_>, keep_conn: bool) -> Result<(), ConnError> {
        if keep_conn || body.ended {
            return self.skip_body(body).await;
        }
        let used = body.skip(self.inbuf.pending())?;
        self.inbuf.consume(used);
        if body.ended {
            return Ok(());
        }
        self.close_write().await?;
        loop {
            self.inbuf.consume(self.inbuf.pending().len());
            if self.inbuf.fill_timed(&mut self.stream, &mut self.alarm).await? == 0 {
                return Ok(());
            }
        }
    }

    /// Reads and drops the rest of a request body, so that the connection is at
    /// the next request (or can be closed without resetting unread data). A pause
    /// longer than `request_read_timeout` ends it with `ErrorKind::TimedOut`.
    pub async fn skip_body(&mut self, body: &mut RequestStream<'_>) -> Result<(), ConnError> {
        loop {
            let used = body.skip(self.inbuf.pending())?;
            self.inbuf.consume(used);
            if body.ended {
                self.out_of_step |= body.cut;
                return Ok(());
            }
            if self.inbuf.fill_timed(&mut self.stream, &mut self.alarm).await? == 0 {
                return Err(ConnError::UnexpectedEof);
            }
        }
    }

    /// Resolves once nginx has closed the connection of a request that waits
    /// for a worker: nginx gave up on it (the browser went away, wrk ended a
    /// round). Until then it reads what nginx sends (the rest of a body sent
    /// with the head; the exchange passes it on), up to one [`CHUNK`] held:
    /// then it stops watching rather than hold more, and never resolves. A
    /// peer that only shut its writing side waits for its answer: no more to watch.
    /// Polled only while a request waits: it costs one read per wake-up.
    pub async fn hung_up(&mut self)
    where
        S: PeerEnd,
    {
        while self.inbuf.pending().len() < CHUNK {
            match self.inbuf.fill(&mut self.stream).await {
                Ok(0) if self.stream.only_half_closed() => break,
                // EOF, or a reset: nobody is left to answer.
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        std::future::pending().await
    }

    /// At end of file from the peer: it shut only its writing side and still
    /// reads (see [`PeerEnd`]).
    pub fn only_half_closed(&self) -> bool
    where
        S: PeerEnd,
    {
        self.stream.only_half_closed()
    }

    /// Reads once more from nginx, without a time limit. Returns the number of
    /// new bytes (0 at EOF).
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.inbuf.fill(&mut self.stream).await
    }

    /// Reads more from nginx: with `request_read_timeout` while the body is
    /// still coming, without a limit once it is complete.
    pub async fn read_body(&mut self, body_coming: bool) -> io::Result<usize> {
        if body_coming {
            self.inbuf.fill_timed(&mut self.stream, &mut self.alarm).await
        } else {
            self.fill().await
        }
    }

    /// Writes `bytes` (part of a child's response) to nginx.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Writes what nginx takes of `bytes` once it takes any: how many.
    pub async fn send_some(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self.stream.write(bytes).await? {
            0 => Err(io::ErrorKind::WriteZero.into()),
            n => Ok(n),
        }
    }

    /// Shuts the write side: nginx sees the end of the response.
    pub async fn close_write(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}

impl Connection<Stream> {
    /// Tells nginx that the response it has part of will not end (its child
    /// died): a close alone reads as its end without FCGI_KEEP_CONN, and the
    /// client would take a cut body for a whole one. Over TCP the connection
    /// is reset, as a dying php-fpm child resets it. A unix socket cannot be
    /// reset: `tail` (what nginx has not taken yet) and `left` zeros complete
    /// the record nginx is reading, then a STDERR line says why and a record
    /// of no FastCGI version makes nginx drop the response as broken.
    pub async fn cut_response(&mut self, id: u16, tail: &[u8], left: usize) {
        match &self.stream {
            Stream::Tcp(s) => {
                let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                // SAFETY: setsockopt on the socket's own descriptor with a linger value of its size.
                unsafe {
                    libc::setsockopt(
                        std::os::fd::AsRawFd::as_raw_fd(s),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        std::ptr::from_ref(&linger).cast(),
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
            }
            Stream::Unix(_) => {
                self.out.clear();
                self.out.extend_from_slice(tail);
                self.out.resize(self.out.len() + left, 0);
                encode_stream(&mut self.out, RecordType::Stderr, id, CUT_LINE);
                self.out.extend_from_slice(&[0; crate::fastcgi::HEADER_LEN]);
                // nginx reads what its upstream sends unless its client stalls it.
                let _ = tokio::time::timeout(CUT_WRITE_TIMEOUT, self.stream.write_all(&self.out)).await;
            }
        }
    }

    /// Writes what nginx takes of `bufs` now, without waiting: the number of
    /// bytes written (0 when its socket is full).
    pub fn try_send_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let sent = match &self.stream {
            Stream::Unix(s) => s.try_write_vectored(bufs),
            Stream::Tcp(s) => s.try_write_vectored(bufs),
        };
        match sent {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            sent => sent,
        }
    }
}

/// What nginx's error log gets when a response is cut short.
const CUT_LINE: &[u8] = b"the PHP process serving this request exited mid-response (see rustfpm's log)";

/// How long [`Connection::cut_response`] tries to tell nginx.
const CUT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The end of a connection whose wait for a request head ran out: quiet for
/// an idle one, a warning for a peer that began a request and did not complete
/// its head (or never sent a byte on a new connection).
fn head_timed_out(pool: &Pool, phase: Phase, idle: bool) -> Result<Option<Head>, ConnError> {
    if phase == Phase::Idle {
        crate::debug!("[pool {}] idle connection closed after listen_idle_timeout", pool.name);
        return Ok(None);
    }
    let secs = pool.read_timeout.map_or(0.0, |t| t.as_secs_f64());
    let what = if idle { "sent no request" } else { "did not complete a request head" };
    pool.client_warnings.warning(format_args!(
        "[pool {}] the web server {what} within {secs} s (request_read_timeout); connection closed",
        pool.name
    ));
    Ok(None)
}

/// What a socket tells of its peer once a read has returned end of file.
pub trait PeerEnd {
    /// The peer shut only its writing side (`shutdown(SHUT_WR)`, as some
    /// FastCGI clients do once their request is sent) and still reads: it waits
    /// for its answer. False when it closed (nginx only ever closes), or when
    /// that cannot be told.
    fn only_half_closed(&self) -> bool {
        false
    }
}

impl PeerEnd for Stream {
    /// Told on unix sockets, whose peer's close hangs up both ways (`POLLHUP`)
    /// where its `shutdown(SHUT_WR)` ends only the reading side. Over TCP both send
    /// one FIN, so an end of file is taken as the peer gone.
    fn only_half_closed(&self) -> bool {
        let Stream::Unix(s) = self else { return false };
        let mut fd = libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(s), events: 0, revents: 0 };
        // SAFETY: one valid pollfd, no waiting.
        let polled = unsafe { libc::poll(&mut fd, 1, 0) };
        polled >= 0 && fd.revents & (libc::POLLHUP | libc::POLLERR) == 0
    }
}

/// In-memory streams (unit tests and fuzz targets): an end of file is a close.
impl<R, W> PeerEnd for tokio::io::Join<R, W> {}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastcgi::{encode_begin_request, encode_pair, FCGI_KEEP_CONN};

    /// A socket over memory: what the peer sent, and what was written to it.
    type Memory<'a> = tokio::io::Join<&'a [u8], Vec<u8>>;

    /// A connection whose peer sent `input` and closed.
    fn over(input: &[u8]) -> Connection<Memory<'_>> {
        Connection::new(tokio::io::join(input, Vec::new()), false, None, Shed::default())
    }

    /// A request as nginx sends it: head, then `body` in one STDIN record and the empty one.
    fn request(out: &mut Vec<u8>, id: u16, script: &[u8], body: &[u8]) {
        encode_begin_request(out, id, Role::Responder, FCGI_KEEP_CONN);
        let mut params = Vec::new();
        encode_pair(&mut params, b"SCRIPT_NAME", script);
        encode_stream(out, RecordType::Params, id, &params);
        encode_stream(out, RecordType::Params, id, b"");
        if !body.is_empty() {
            encode_stream(out, RecordType::Stdin, id, body);
        }
        encode_stream(out, RecordType::Stdin, id, b"");
    }

    /// Reads records until a head is complete, as `read_head` does without a pool.
    async fn next_head(conn: &mut Connection<Memory<'_>>) -> Option<Head> {
        let mut head = None;
        loop {
            if let Some(complete) = conn.parse_head(&mut head, 1024).await.expect("valid records") {
                return Some(complete);
            }
            if conn.fill().await.expect("in-memory read") == 0 {
                return None;
            }
        }
    }

    /// The types of the records written to the connection.
    fn written(conn: &Connection<Memory<'_>>) -> Vec<u8> {
        let mut rest = conn.stream().writer().as_slice();
        let mut kinds = Vec::new();
        while let Some((rec, used)) = parse_record(rest).expect("whole records") {
            kinds.push(rec.header.record_type);
            rest = &rest[used..];
        }
        assert!(rest.is_empty(), "a record was cut");
        kinds
    }

    #[tokio::test]
    async fn an_answer_skips_the_body_and_the_next_head_follows() {
        let mut input = Vec::new();
        request(&mut input, 1, b"/first.php", b"a body nobody reads");
        request(&mut input, 2, b"/second.php", b"");
        let mut conn = over(&input);
        let first = next_head(&mut conn).await.expect("first head");
        assert_eq!((first.id, first.keep_conn), (1, true));
        assert!(conn.answer_alone(&first, Reply::new("404 Not Found", b"gone\n")).await.expect("answered"));
        conn.between_requests();
        let second = next_head(&mut conn).await.expect("second head");
        assert_eq!(second.params.get(b"SCRIPT_NAME"), Some(&b"/second.php"[..]));
        conn.skip_body(&mut second.body()).await.expect("empty body");
        assert!(next_head(&mut conn).await.is_none());
        let (stdout, end) = (RecordType::Stdout as u8, RecordType::EndRequest as u8);
        assert_eq!(written(&conn), [stdout, stdout, end]);
    }

    #[tokio::test]
    async fn management_records_are_answered_while_the_head_is_read() {
        let mut input = Vec::new();
        encode_stream(&mut input, RecordType::GetValues, 0, b"");
        input.extend_from_slice(&[1, 99, 0, 0, 0, 0, 0, 0]);
        request(&mut input, 1, b"/x.php", b"");
        let mut conn = over(&input);
        assert_eq!(next_head(&mut conn).await.expect("head").id, 1);
        assert_eq!(written(&conn), [RecordType::GetValuesResult as u8, RecordType::UnknownType as u8]);
    }

    #[tokio::test]
    async fn a_waiting_request_keeps_the_body_that_comes_and_sees_nginx_hang_up() {
        let mut input = Vec::new();
        request(&mut input, 1, b"/x.php", &[b'b'; 3000]);
        let mut conn = over(&input);
        let head = next_head(&mut conn).await.expect("head");
        conn.hung_up().await;
        let mut body = head.body();
        conn.take_body(&mut body, &mut Vec::new()).expect("the body's records");
        assert!(body.ended && body.content == 3000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_request_holding_a_chunk_is_not_watched_further() {
        let input = vec![0u8; CHUNK + 8];
        let mut conn = over(&input);
        while conn.buffered() < CHUNK {
            assert!(conn.fill().await.expect("in-memory read") > 0, "the input ended");
        }
        let watched = tokio::time::timeout(std::time::Duration::from_secs(3600), conn.hung_up()).await;
        assert!(watched.is_err(), "hung_up resolved with a full buffer");
    }

    #[tokio::test]
    async fn a_second_request_before_the_first_head_is_complete_is_refused() {
        let mut input = Vec::new();
        encode_begin_request(&mut input, 1, Role::Responder, FCGI_KEEP_CONN);
        encode_begin_request(&mut input, 2, Role::Responder, FCGI_KEEP_CONN);
        let mut conn = over(&input);
        conn.fill().await.expect("in-memory read");
        let err = conn.parse_head(&mut None, 1024).await.expect_err("multiplexing");
        assert!(matches!(err, ConnError::Protocol(_)), "{err}");
    }
}
