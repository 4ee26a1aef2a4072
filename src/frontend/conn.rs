//! One nginx connection's requests, dispatched: answer what rustfpm answers
//! itself (the status and ping pages, 403, 404, 503), hand the rest to a child
//! through the proxy, and keep the connection if nginx asked for
//! FCGI_KEEP_CONN. The connection's I/O is [`Connection`]'s.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::connection::{Connection, Head, Reply};
use super::error::ConnError;
use super::lease::Lease;
use super::pages;
use super::policy::{self, Verdict};
use super::proxy::{self, Outcome};
use crate::accesslog::{RequestInfo, Shown};
use crate::fastcgi::MAX_CONTENT_LEN;
use crate::pool::{AcquireError, Pool, PoolMsg, Worker};

/// Seconds nginx is told to wait before retrying after a 503.
pub const RETRY_AFTER: &str = "1";

/// Serves one nginx connection until it closes, fails, or shutdown. Each
/// request goes to the pool `current` holds at its start (reload swaps it).
pub async fn serve(mut conn: Connection, current: watch::Receiver<Arc<Pool>>, mut shutdown: watch::Receiver<bool>) {
    // The request loop's state (the proxy's included) is kilobytes: the
    // accept loop boxes the connection's whole future once (`spare::Spares::serve`).
    if let Err(e) = serve_requests(&mut conn, &current, &mut shutdown).await {
        let pool = current.borrow().clone();
        match e {
            ConnError::Io(ref io) if io.kind() != std::io::ErrorKind::TimedOut => {
                crate::debug!("[pool {}] connection closed: {e}", pool.name)
            }
            ConnError::UnexpectedEof => crate::debug!("[pool {}] connection closed: {e}", pool.name),
            // A timeout or what the peer sent: its fault, a warning at most once a second.
            _ => pool.client_warnings.warning(format_args!("[pool {}] {e}; connection closed", pool.name)),
        }
    }
}

async fn serve_requests(
    conn: &mut Connection,
    current: &watch::Receiver<Arc<Pool>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnError> {
    loop {
        let Some(head) = conn.read_head(current, shutdown).await? else {
            return Ok(());
        };
        let pool = current.borrow().clone();
        let keep = handle(conn, current, pool, head).await? && !conn.closes_after() && !*shutdown.borrow();
        if !keep {
            return Ok(());
        }
        conn.between_requests();
    }
}

/// Answers one request. Returns whether the connection may serve another.
async fn handle(
    conn: &mut Connection,
    current: &watch::Receiver<Arc<Pool>>,
    pool: Arc<Pool>,
    mut head: Head,
) -> Result<bool, ConnError> {
    if let Some(answered) = answer_without_child(conn, &pool, &mut head).await {
        return answered;
    }
    let (pool, worker, queued) = match acquire(conn, current, pool).await {
        Lent::Worker(pool, worker, queued) => (pool, worker, queued),
        Lent::Refused(pool, why) => return refused(conn, &pool, &head, why).await,
        Lent::Retired(pool) => {
            // A reload removed the pool, or rustfpm stops: no generation takes the request.
            let uri = crate::accesslog::format::escape_controls(&head.params.text(b"REQUEST_URI"));
            crate::warning!("[pool {}] the pool stopped while {uri} waited for a child: answered 503", pool.name);
            log_alone(conn, &pool, &head, 503);
            let body = b"Service temporarily unavailable: the PHP pool is stopping.\n";
            return unavailable(conn, &head, body).await.map(|_| false);
        }
        Lent::Dead(pool) => {
            let uri = crate::accesslog::format::escape_controls(&head.params.text(b"REQUEST_URI"));
            crate::debug!("[pool {}] the web server gave up on {uri} while it waited for a child: not run", pool.name);
            log_alone(conn, &pool, &head, 499);
            return Ok(false);
        }
    };
    let wants_info = pool.pages.status_path.is_some() || pool.logs.slow_timeout().is_some();
    let access = pool.logs.access();
    let shown = if wants_info || access.is_some() { Shown::of(&head.params) } else { Shown::default() };
    let info = wants_info.then(|| RequestInfo::of(&shown));
    let mut lease = Lease::new(&pool, worker, queued, info);
    lease.access = access.map(|log| log.start(&shown, &head.params, conn.peer(), head.started));
    match proxy::run(conn, lease, &head).await {
        Outcome::Done => Ok(head.keep_conn),
        Outcome::ChildFailed { answered } => Ok(answered && head.keep_conn),
        Outcome::ClientGone(e) => Err(e),
    }
}

/// Answers the requests no child sees: the pages, anything but the pages on
/// `pm_status_listen`, and what the script policy refuses. None: the request
/// goes to a child.
async fn answer_without_child(conn: &mut Connection, pool: &Pool, head: &mut Head) -> Option<Result<bool, ConnError>> {
    if let Some(page) = pages::which(pool, &head.params) {
        log_alone(conn, pool, head, 200);
        return Some(pages::answer(conn, pool, head, page).await);
    }
    if conn.pages_only() {
        let reply = Reply {
            stderr: Some(b"only the status and ping pages are served on pm_status_listen"),
            ..Reply::new("404 Not Found", b"File not found.\n")
        };
        log_alone(conn, pool, head, 404);
        return Some(conn.answer_alone(head, reply).await);
    }
    // The line a refusal sends nginx's error log, when it is not a constant.
    let denied: String;
    let (status, reply) = match policy::check(
        &mut head.params,
        &pool.limit_extensions,
        super::scripts::Scope { chroot: pool.chroot.as_deref(), share: &pool.lookups },
        pool.fix_pathinfo,
    )
    .await
    {
        // Rare: only params past one record's room can hold a pair longer than it.
        Verdict::Forward if head.params.len() > MAX_CONTENT_LEN && head.params.longest_pair() > MAX_CONTENT_LEN => {
            pool.client_warnings.warning(format_args!(
                "[pool {}] a request param is longer than a FastCGI record ({MAX_CONTENT_LEN} bytes), which php-cgi cannot read; answered 431",
                pool.name
            ));
            let reply = Reply {
                stderr: Some(b"a request param is longer than a FastCGI record (65535 bytes)"),
                ..Reply::new("431 Request Header Fields Too Large", b"Request headers too large.\n")
            };
            (431, reply)
        }
        Verdict::Forward => return None,
        Verdict::NotFound => {
            crate::debug!("[pool {}] Primary script unknown", pool.name);
            let reply =
                Reply { stderr: Some(b"Primary script unknown"), ..Reply::new("404 Not Found", b"File not found.\n") };
            (404, reply)
        }
        Verdict::Denied(script) => {
            let script = crate::accesslog::format::escape_controls(&script.to_string_lossy());
            crate::warning!(
                "[pool {}] access to the script '{script}' has been denied (see security_limit_extensions)",
                pool.name
            );
            // php-fpm's words, which its logger also sends nginx.
            denied = format!("Access to the script '{script}' has been denied (see security.limit_extensions)");
            (403, Reply { stderr: Some(denied.as_bytes()), ..Reply::new("403 Forbidden", b"Access denied.\n") })
        }
        Verdict::Refused(why) => {
            crate::warning!("[pool {}] request refused: {why}; answered 403", pool.name);
            (403, Reply::new("403 Forbidden", b"Access denied.\n"))
        }
        Verdict::Busy => {
            if pool.lookups.busy_log.allow(std::time::Instant::now()) {
                crate::warning!(
                    "[pool {}] script lookup queue full: answered 503 (said at most once a second)",
                    pool.name
                );
            }
            log_alone(conn, pool, head, 503);
            return Some(unavailable(conn, head, BUSY).await);
        }
    };
    log_alone(conn, pool, head, status);
    Some(conn.answer_alone(head, reply).await)
}

/// What a request that waits for a worker gets.
enum Lent {
    /// A worker of this pool, after waiting this long.
    Worker(Arc<Pool>, Worker, Duration),
    /// This pool refused: its queue is full, or no worker came within `queue_max_wait`.
    Refused(Arc<Pool>, AcquireError),
    /// The pool stopped and no other took over: a reload removed it, or rustfpm stops.
    Retired(Arc<Pool>),
    /// nginx closed the connection while the request waited: it gave up on
    /// the request, which no child will run (nginx logs it 499; so does
    /// rustfpm's access log, and the metrics count it in 4xx).
    Dead(Arc<Pool>),
}

/// A worker of the pool `current` holds. A pool that a reload retires while
/// the request waits hands it on to the new one. While the request waits,
/// `conn` is watched: a request nginx gives up on leaves the queue at once
/// and never reaches a child (php-fpm's child would run it). One that gets
/// its worker at once never looks at its connection here.
async fn acquire(conn: &mut Connection, current: &watch::Receiver<Arc<Pool>>, mut pool: Arc<Pool>) -> Lent {
    loop {
        let acquired = tokio::select! {
            biased;
            acquired = pool.balancer.acquire() => acquired,
            () = conn.hung_up() => return Lent::Dead(pool),
        };
        match acquired {
            Ok((worker, queued)) => return Lent::Worker(pool, worker, queued),
            Err(AcquireError::Closed) => {
                let next = current.borrow().clone();
                if Arc::ptr_eq(&next, &pool) {
                    return Lent::Retired(pool);
                }
                pool = next;
            }
            Err(e) => return Lent::Refused(pool, e),
        }
    }
}

/// The access log line of a request rustfpm answers in php-fpm's stead (php-fpm's worker
/// answers and logs these: 403, 404, the status and ping pages): no child is involved.
fn log_alone(conn: &Connection, pool: &Pool, head: &Head, status: u16) {
    crate::metrics::answered_without_child(&pool.name, status);
    if let Some(log) = pool.logs.access() {
        let mut record = log.start(&Shown::of(&head.params), &head.params, conn.peer(), head.started);
        (record.status, record.duration) = (status, head.started.elapsed());
        pool.logs.log_access(record, crate::accesslog::ChildView::default());
    }
}

/// 503 for a request that found the queue full or waited too long.
async fn refused(conn: &mut Connection, pool: &Pool, head: &Head, why: AcquireError) -> Result<bool, ConnError> {
    pool.tell(PoolMsg::Rejected);
    log_alone(conn, pool, head, 503);
    match why {
        AcquireError::QueueFull => {
            crate::warning!("[pool {}] queue full ({} waiting): answered 503", pool.name, pool.balancer.waiting())
        }
        _ => crate::warning!("[pool {}] no child became free within queue_max_wait: answered 503", pool.name),
    }
    unavailable(conn, head, BUSY).await
}

/// What a request that no worker will take is told.
const BUSY: &[u8] = b"Service temporarily unavailable: all PHP workers are busy.\n";

/// A 503 with `Retry-After` and `body`, for a request no child has seen.
async fn unavailable(conn: &mut Connection, head: &Head, body: &[u8]) -> Result<bool, ConnError> {
    let reply = Reply { headers: &[("Retry-After", RETRY_AFTER)], ..Reply::new("503 Service Unavailable", body) };
    conn.answer_alone(head, reply).await
}
