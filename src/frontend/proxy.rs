//! The proxy: one request from nginx to a child and its response back,
//! streamed both ways through fixed buffers. Records from the child are
//! forwarded byte for byte (the child uses nginx's request id); the cursor only
//! watches where they start and end.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::body::RequestStream;
use super::conn::{answer, Conn, ConnError, Head, Reply};
use super::policy::DROPPED_PARAMS;
use crate::fastcgi::cursor::{Cursor, Flow, Piece};
use crate::fastcgi::{encode_begin_request, encode_pair, encode_stream, RecordType, Role, FCGI_KEEP_CONN};
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
    request_head(head, &mut to_child);
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
    // access log: keep the response head only when the format shows response headers.
    let keep_head = lease.access.is_some() && pool.logs.access().is_some_and(|a| a.wants_headers());
    let mut response = ResponseStream { keep_head, ..ResponseStream::default() };
    let started = lease.started;
    let exchanged = exchange(conn, lease.worker(), &mut to_child, &mut request, &mut response);
    let result = match pool.terminate_timeout {
        Some(limit) => {
            let left = limit.saturating_sub(started.elapsed());
            tokio::time::timeout(left, exchanged).await.unwrap_or(Err(Failure::Timeout))
        }
        None => exchanged.await,
    };
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
        Err(Failure::Child) => fail(conn, lease, head, &mut request, response.sent_any, Lost::Exited).await,
        Err(Failure::Timeout) => fail(conn, lease, head, &mut request, response.sent_any, Lost::TimedOut).await,
        Err(Failure::Client(e)) => Outcome::ClientGone(e),
    }
}

enum Failure {
    Child,
    Timeout,
    Client(ConnError),
}

/// Moves bytes both ways until the child's END_REQUEST has been forwarded.
/// Returns whether what was sent to the child ends on a record boundary.
async fn exchange<R, W>(
    conn: &mut Conn<R, W>,
    worker: &mut Worker,
    to_child: &mut Vec<u8>,
    request: &mut RequestStream,
    response: &mut ResponseStream,
) -> Result<bool, Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some((up, buf)) = worker.io() else {
        return Err(Failure::Child);
    };
    let (mut up_rd, mut up_wr) = up.split();
    let mut written = 0;
    loop {
        let want_client = to_child.len() - written < MAX_BODY_BUFFER && conn.inbuf.pending().len() < MAX_BODY_BUFFER;
        tokio::select! {
            biased;
            n = up_rd.read(buf) => {
                let n = n.map_err(|_| Failure::Child)?;
                if n == 0 {
                    return Err(Failure::Child);
                }
                let used = response.scan(&buf[..n]).map_err(|_| Failure::Child)?;
                conn.wr.write_all(&buf[..used]).await.map_err(|e| Failure::Client(e.into()))?;
                if response.ended {
                    return Ok(request.at_boundary() && written == to_child.len());
                }
            }
            n = up_wr.write(&to_child[written..]), if written < to_child.len() => {
                written += n.map_err(|_| Failure::Child)?;
                if written == to_child.len() {
                    to_child.clear();
                    written = 0;
                }
            }
            n = conn.inbuf.fill(&mut conn.rd), if want_client => {
                let n = n.map_err(|e| Failure::Client(e.into()))?;
                if n == 0 {
                    return Err(Failure::Client(ConnError::UnexpectedEof));
                }
                if !request.done {
                    let used = request.take(conn.inbuf.pending(), to_child).map_err(Failure::Client)?;
                    conn.inbuf.consume(used);
                }
            }
        }
    }
}

/// BEGIN_REQUEST (always FCGI_KEEP_CONN towards the child) and the params,
/// minus those never passed on.
fn request_head(head: &Head, out: &mut Vec<u8>) {
    out.clear();
    encode_begin_request(out, head.id, Role::Responder, FCGI_KEEP_CONN);
    let mut params = Vec::with_capacity(head.params.len());
    for (name, value) in head.params.pairs().flatten() {
        if !DROPPED_PARAMS.contains(&name) {
            encode_pair(&mut params, name, value);
        }
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

/// The response on its way from the child: watches for the HTTP status in the
/// first STDOUT bytes and for END_REQUEST.
struct ResponseStream {
    cursor: Cursor,
    status: u16,
    sent_any: bool,
    ended: bool,
    /// Keep the first STDOUT bytes in `head` (for the access log's `%{..}o`).
    keep_head: bool,
    head: Vec<u8>,
}

impl Default for ResponseStream {
    fn default() -> Self {
        ResponseStream {
            cursor: Cursor::new(),
            status: 200,
            sent_any: false,
            ended: false,
            keep_head: false,
            head: Vec::new(),
        }
    }
}

impl ResponseStream {
    /// Returns how many bytes of `data` to forward (all of them, or up to
    /// the end of END_REQUEST).
    fn scan(&mut self, data: &[u8]) -> Result<usize, crate::fastcgi::CodecError> {
        let (mut status, mut first, mut ended) = (None, !self.sent_any, false);
        let mut stdout = false;
        let (keep_head, head) = (self.keep_head, &mut self.head);
        let used = self.cursor.feed(data, |piece| match piece {
            Piece::Header(h) => {
                stdout = h.record_type == RecordType::Stdout as u8;
                Flow::Continue
            }
            Piece::Content(bytes) if stdout && first => {
                first = false;
                status = parse_status(bytes);
                if keep_head {
                    head.extend_from_slice(&bytes[..bytes.len().min(crate::accesslog::MAX_RESPONSE_HEAD)]);
                }
                Flow::Continue
            }
            Piece::End(h) if h.record_type == RecordType::EndRequest as u8 => {
                ended = true;
                Flow::Stop
            }
            _ => Flow::Continue,
        })?;
        if let Some(s) = status {
            self.status = s;
        }
        self.sent_any |= !first;
        self.ended = ended;
        Ok(used)
    }
}

/// The status a CGI response sets with a `Status:` header (200 if none).
fn parse_status(head: &[u8]) -> Option<u16> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(head.len());
    head[..end].split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(b"Status:").or_else(|| line.strip_prefix(b"status:"))?;
        let digits = rest.trim_ascii_start().get(..3)?;
        std::str::from_utf8(digits).ok()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_cgi_headers() {
        assert_eq!(parse_status(b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nx"), Some(404));
        assert_eq!(parse_status(b"Content-type: text/html\r\nStatus: 302 Found\r\n\r\n"), Some(302));
        assert_eq!(parse_status(b"Content-type: text/html\r\n\r\nStatus: 500"), None);
        assert_eq!(parse_status(b"Status: x"), None);
    }
}
