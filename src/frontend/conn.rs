//! One nginx connection: read a request head, answer what rustfpm answers
//! itself (management records, 403, 404, 503), hand the rest to a child
//! through the proxy, and keep the connection if nginx asked for FCGI_KEEP_CONN.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::body::RequestStream;
use super::inbuf::InBuf;
use super::limits::{HeadClock, Phase};
use super::policy::{self, Verdict};
use super::proxy::{self, Outcome};
use super::shed::Shed;
use crate::fastcgi::{
    encode_end_request, encode_get_values_result, encode_simple_response, encode_stream, encode_unknown_type,
    parse_record, BeginRequest, CodecError, ParamsBuffer, ProtocolStatus, RecordType, Role,
};
use crate::pool::{AcquireError, Pool, PoolMsg};

/// Seconds nginx is told to wait before retrying after a 503.
pub const RETRY_AFTER: &str = "1";

/// Why a connection was closed early.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// nginx sent bytes that are not valid FastCGI.
    #[error("malformed FastCGI from the web server: {0}")]
    Codec(#[from] CodecError),
    /// nginx sent records in an order FastCGI does not allow.
    #[error("FastCGI protocol error from the web server: {0}")]
    Protocol(&'static str),
    /// nginx closed the connection in the middle of a record or request.
    #[error("the web server closed the connection mid-request")]
    UnexpectedEof,
    /// A socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

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
}

/// A downstream connection, split into halves.
pub struct Conn<R, W> {
    /// Read half.
    pub rd: R,
    /// Write half.
    pub wr: W,
    /// Bytes read and not yet handled.
    pub inbuf: InBuf,
    /// Scratch buffer for records rustfpm writes.
    pub out: Vec<u8>,
    /// Accepted on `pm_status_listen`: only the status and ping pages are served.
    pub pages_only: bool,
    /// nginx's address on TCP, when the access log shows it (`%R`).
    pub peer: Option<std::net::IpAddr>,
    /// Asks this connection to close while it waits for a request head, when
    /// its listener needs room.
    pub shed: Shed,
}

impl<R, W> Conn<R, W> {
    /// A new connection from its halves; `peer` is nginx's address, when it
    /// is known and the access log shows it.
    pub fn new(rd: R, wr: W, pages_only: bool, peer: Option<std::net::IpAddr>) -> Self {
        Conn { rd, wr, inbuf: InBuf::default(), out: Vec::new(), pages_only, peer, shed: Shed::default() }
    }
}

/// Serves one nginx connection until it closes, fails, or shutdown. Each
/// request goes to the pool `current` holds at its start (reload swaps it).
pub async fn serve<R, W>(mut conn: Conn<R, W>, current: watch::Receiver<Arc<Pool>>, mut shutdown: watch::Receiver<bool>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if let Err(e) = serve_requests(&mut conn, &current, &mut shutdown).await {
        let pool = current.borrow().clone();
        match e {
            ConnError::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => {
                crate::warning!("[pool {}] {e}; connection closed", pool.name)
            }
            ConnError::Io(_) | ConnError::UnexpectedEof => {
                crate::debug!("[pool {}] connection closed: {e}", pool.name)
            }
            _ => crate::warning!("[pool {}] {e}; connection closed", pool.name),
        }
    }
}

async fn serve_requests<R, W>(
    conn: &mut Conn<R, W>,
    current: &watch::Receiver<Arc<Pool>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let pool = current.borrow().clone();
        let Some(head) = read_head(conn, &pool, shutdown).await? else {
            return Ok(());
        };
        let keep = handle(conn, current, pool, head).await? && !*shutdown.borrow();
        if !keep {
            return Ok(());
        }
        conn.inbuf.shrink();
    }
}

/// Answers one request. Returns whether the connection may serve another.
async fn handle<R, W>(
    conn: &mut Conn<R, W>,
    current: &watch::Receiver<Arc<Pool>>,
    mut pool: Arc<Pool>,
    mut head: Head,
) -> Result<bool, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if let Some(page) = super::pages::which(&pool, &head.params) {
        log_alone(conn, &pool, &head, 200);
        return super::pages::answer(conn, &pool, &head, page).await;
    }
    if conn.pages_only {
        let reply = Reply {
            stderr: Some(b"only the status and ping pages are served on pm_status_listen"),
            ..Reply::new("404 Not Found", b"File not found.\n")
        };
        log_alone(conn, &pool, &head, 404);
        return answer_alone(conn, &head, reply).await;
    }
    match policy::check(&mut head.params, &pool.limit_extensions, pool.chroot.as_deref(), pool.fix_pathinfo).await {
        Verdict::Forward => {}
        Verdict::NotFound => {
            crate::debug!("[pool {}] Primary script unknown", pool.name);
            let reply =
                Reply { stderr: Some(b"Primary script unknown"), ..Reply::new("404 Not Found", b"File not found.\n") };
            log_alone(conn, &pool, &head, 404);
            return answer_alone(conn, &head, reply).await;
        }
        Verdict::Denied(script) => {
            let script = crate::accesslog::format::escape_controls(&script.to_string_lossy());
            crate::warning!(
                "[pool {}] access to the script '{script}' has been denied (see security_limit_extensions)",
                pool.name
            );
            log_alone(conn, &pool, &head, 403);
            return answer_alone(conn, &head, Reply::new("403 Forbidden", b"Access denied.\n")).await;
        }
        Verdict::Refused(why) => {
            crate::warning!("[pool {}] request refused: {why}; answered 403", pool.name);
            log_alone(conn, &pool, &head, 403);
            return answer_alone(conn, &head, Reply::new("403 Forbidden", b"Access denied.\n")).await;
        }
        Verdict::Busy => {
            crate::warning!("[pool {}] script lookup queue full: answered 503", pool.name);
            log_alone(conn, &pool, &head, 503);
            return unavailable(conn, &head).await;
        }
    }
    let (worker, queued) = loop {
        match pool.balancer.acquire().await {
            Ok(got) => break got,
            Err(AcquireError::Closed) => {
                // A reload retired this pool while we queued: the new one takes over.
                let next = current.borrow().clone();
                if Arc::ptr_eq(&next, &pool) {
                    return unavailable(conn, &head).await.map(|_| false);
                }
                pool = next;
            }
            Err(e) => return refused(conn, &pool, &head, e).await,
        }
    };
    let wants_info = pool.pages.status_path.is_some() || pool.logs.slow_timeout().is_some();
    let info = wants_info.then(|| super::pages::request_info(&head.params));
    let mut lease = proxy::Lease::new(&pool, worker, queued, info);
    lease.access = pool.logs.access().map(|log| log.start(&pool.name, &head.params, conn.peer, head.started));
    match proxy::run(conn, lease, &head).await {
        Outcome::Done { .. } => Ok(head.keep_conn),
        Outcome::ChildLost { answered } => Ok(answered && head.keep_conn),
        Outcome::ClientGone(e) => Err(e),
    }
}

/// The access log line of a request rustfpm answers in php-fpm's stead (php-fpm's worker
/// answers and logs these: 403, 404, the status and ping pages): no child is involved.
fn log_alone<R, W>(conn: &Conn<R, W>, pool: &Pool, head: &Head, status: u16) {
    crate::metrics::answered_without_child(&pool.name, status);
    if let Some(log) = pool.logs.access() {
        let mut record = log.start(&pool.name, &head.params, conn.peer, head.started);
        (record.status, record.duration) = (status, head.started.elapsed());
        pool.logs.finish(record, crate::accesslog::ChildView::default());
    }
}

/// 503 for a request that found the queue full or waited too long.
async fn refused<R, W>(conn: &mut Conn<R, W>, pool: &Pool, head: &Head, why: AcquireError) -> Result<bool, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pool.tell(PoolMsg::Rejected);
    log_alone(conn, pool, head, 503);
    match why {
        AcquireError::QueueFull => {
            crate::warning!("[pool {}] queue full ({} waiting): answered 503", pool.name, pool.balancer.waiting())
        }
        _ => crate::warning!("[pool {}] no child became free within queue_max_wait: answered 503", pool.name),
    }
    unavailable(conn, head).await
}

async fn unavailable<R, W>(conn: &mut Conn<R, W>, head: &Head) -> Result<bool, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let body = b"Service temporarily unavailable: all PHP workers are busy.\n";
    let reply = Reply { headers: &[("Retry-After", RETRY_AFTER)], ..Reply::new("503 Service Unavailable", body) };
    answer_alone(conn, head, reply).await
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

/// Writes `reply`. Returns whether the connection may be kept.
pub async fn answer<R, W>(conn: &mut Conn<R, W>, head: &Head, reply: Reply<'_>) -> Result<bool, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    conn.out.clear();
    if let Some(msg) = reply.stderr {
        encode_stream(&mut conn.out, RecordType::Stderr, head.id, msg);
        encode_stream(&mut conn.out, RecordType::Stderr, head.id, b"");
    }
    encode_simple_response(&mut conn.out, head.id, reply.status, reply.headers, reply.body);
    conn.wr.write_all(&conn.out).await?;
    Ok(head.keep_conn)
}

/// [`answer`] for a request no child has seen: its body is read and dropped.
pub(super) async fn answer_alone<R, W>(conn: &mut Conn<R, W>, head: &Head, reply: Reply<'_>) -> Result<bool, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let keep = answer(conn, head, reply).await?;
    super::body::skip(conn, &mut RequestStream::new(head.id)).await?;
    Ok(keep)
}

/// Reads records until a request head is complete. Management records are
/// answered on the way. Ok(None): nginx closed an idle connection, it stayed
/// idle past `listen_idle_timeout`, or shutdown. A head not complete within
/// `request_read_timeout` closes the connection.
async fn read_head<R, W>(
    conn: &mut Conn<R, W>,
    pool: &Pool,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Head>, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut head: Option<Head> = None;
    conn.inbuf.read_timeout = pool.read_timeout;
    let mut clock = HeadClock::new(Instant::now(), conn.inbuf.is_fresh(), pool.read_timeout, pool.idle_timeout);
    loop {
        if let Some(done) = parse_head(conn, &mut head, pool.max_params).await? {
            return Ok(Some(done));
        }
        let idle = head.is_none() && conn.inbuf.pending().is_empty();
        if idle && *shutdown.borrow() {
            return Ok(None);
        }
        if !idle {
            clock.request_begun(Instant::now());
        }
        let n = tokio::select! {
            n = conn.inbuf.fill_until(&mut conn.rd, clock.deadline()) => n,
            _ = shutdown.changed(), if idle => continue,
            cutoff = conn.shed.next() => {
                if clock.waiting_since() <= cutoff {
                    crate::debug!("[pool {}] connection waiting for a request closed to make room", pool.name);
                    return Ok(None);
                }
                continue;
            }
        };
        match n {
            Ok(0) if idle => return Ok(None),
            Ok(0) => return Err(ConnError::UnexpectedEof),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return head_timed_out(pool, clock.phase(), idle),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The end of a connection whose wait for a request head ran out: quiet for
/// an idle one, a warning for a peer that began a request and did not finish
/// its head (or never sent a byte on a new connection).
fn head_timed_out(pool: &Pool, phase: Phase, idle: bool) -> Result<Option<Head>, ConnError> {
    if phase == Phase::Idle {
        crate::debug!("[pool {}] idle connection closed after listen_idle_timeout", pool.name);
        return Ok(None);
    }
    let secs = pool.read_timeout.map_or(0.0, |t| t.as_secs_f64());
    let what = if idle { "sent no request" } else { "did not complete a request head" };
    crate::warning!(
        "[pool {}] the web server {what} within {secs} s (request_read_timeout); connection closed",
        pool.name
    );
    Ok(None)
}

/// Handles the complete records in the buffer; returns the head once its
/// empty PARAMS record has arrived.
pub(crate) async fn parse_head<R, W>(
    conn: &mut Conn<R, W>,
    head: &mut Option<Head>,
    max_params: usize,
) -> Result<Option<Head>, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    conn.out.clear();
    let mut finished = None;
    while let Some((rec, used)) = parse_record(conn.inbuf.pending())? {
        let h = rec.header;
        match (h.kind(), head.as_mut()) {
            (Some(RecordType::BeginRequest), None) => {
                let begin = BeginRequest::parse(rec.content)?;
                if begin.role_kind() == Some(Role::Responder) {
                    *head = Some(Head {
                        id: h.request_id,
                        keep_conn: begin.keep_conn(),
                        params: ParamsBuffer::new(max_params),
                        started: Instant::now(),
                    });
                } else {
                    encode_end_request(&mut conn.out, h.request_id, 0, ProtocolStatus::UnknownRole);
                }
            }
            (Some(RecordType::Params), Some(hd)) if hd.id == h.request_id => {
                if rec.content.is_empty() {
                    conn.inbuf.consume(used);
                    finished = head.take();
                    break;
                }
                if let Err(e) = hd.params.push(rec.content) {
                    let id = hd.id;
                    conn.out.clear();
                    encode_simple_response(
                        &mut conn.out,
                        id,
                        "431 Request Header Fields Too Large",
                        &[],
                        b"Request headers too large.\n",
                    );
                    conn.wr.write_all(&conn.out).await?;
                    return Err(e.into());
                }
            }
            (Some(RecordType::GetValues), _) if h.request_id == 0 => {
                encode_get_values_result(&mut conn.out, rec.content, 1024, 1024, false)?;
            }
            (Some(RecordType::AbortRequest), Some(hd)) if hd.id == h.request_id => {
                encode_end_request(&mut conn.out, h.request_id, 0, ProtocolStatus::RequestComplete);
                *head = None;
            }
            (None, _) => encode_unknown_type(&mut conn.out, h.record_type),
            // As php-cgi: stray empty STDIN records between requests are skipped.
            (Some(RecordType::Stdin), None) if rec.content.is_empty() => {}
            (Some(RecordType::BeginRequest), Some(_)) => {
                return Err(ConnError::Protocol("cannot multiplex requests on one connection"))
            }
            _ => return Err(ConnError::Protocol("unexpected record before the request head was complete")),
        }
        conn.inbuf.consume(used);
    }
    if !conn.out.is_empty() {
        conn.wr.write_all(&conn.out).await?;
    }
    Ok(finished)
}
