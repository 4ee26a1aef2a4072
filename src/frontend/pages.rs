//! php-fpm's ping and status pages, answered by rustfpm itself (no child is
//! involved, so they answer even when every child is busy).

use std::time::{Instant, SystemTime};

use super::connection::{Connection, Head, Reply};
use super::error::ConnError;
use crate::fastcgi::ParamsBuffer;
use crate::pool::{Pool, PoolSnapshot, SlotState};
use crate::status::{self, PoolStatus, ProcessStatus};

/// php-fpm's headers for both pages: never cache.
const NO_CACHE: [(&str, &str); 2] =
    [("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"), ("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0")];

/// The ping page's type, as php-fpm sends it.
const PING_TYPE: &str = "text/plain;charset=UTF-8";

/// Which page a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `ping_path`
    Ping,
    /// `pm_status_path`
    Status,
}

/// The page a request's SCRIPT_NAME names, if the pool has it.
pub fn which(pool: &Pool, params: &ParamsBuffer) -> Option<Page> {
    let pages = &pool.pages;
    if pages.ping_path.is_none() && pages.status_path.is_none() {
        return None;
    }
    let name = params.get(b"SCRIPT_NAME")?;
    if pages.ping_path.as_deref().is_some_and(|p| p.as_bytes() == name) {
        return Some(Page::Ping);
    }
    pages.status_path.as_deref().is_some_and(|p| p.as_bytes() == name).then_some(Page::Status)
}

/// Answers a page request. Returns whether the connection may be kept.
pub async fn answer(conn: &mut Connection, pool: &Pool, head: &Head, page: Page) -> Result<bool, ConnError> {
    let (content_type, body) = match page {
        Page::Ping => (PING_TYPE, pool.pages.ping_response.clone()),
        Page::Status => {
            let query = String::from_utf8_lossy(head.params.get(b"QUERY_STRING").unwrap_or_default()).into_owned();
            let (format, full) = status::parse_query(&query);
            let Some(snapshot) = pool.snapshot().await else {
                return conn.answer_alone(head, Reply::new("503 Service Unavailable", b"pool stopping\n")).await;
            };
            status::render(&pool_status(pool, &snapshot), format, full, SystemTime::now())
        }
    };
    let mut headers = vec![("Content-type", content_type), NO_CACHE[0], NO_CACHE[1]];
    if let Some(powered_by) = &pool.pages.powered_by {
        headers.insert(0, ("X-Powered-By", powered_by));
    }
    conn.answer_alone(head, Reply { headers: &headers, ..Reply::new("200 OK", body.as_bytes()) }).await
}

/// php-fpm's status fields from a snapshot. Counts come from the actor, so
/// they are exact; "listen queue" is the real number of waiting requests.
pub fn pool_status(pool: &Pool, snap: &PoolSnapshot) -> PoolStatus {
    let (now, now_sys) = (Instant::now(), SystemTime::now());
    let wall = |at: Instant| now_sys - now.saturating_duration_since(at);
    let active = snap.slots.iter().filter(|s| s.state == SlotState::Busy).count();
    let processes = snap
        .slots
        .iter()
        .map(|s| {
            let info = s.info.clone().unwrap_or_default();
            let running = s.state == SlotState::Busy;
            ProcessStatus {
                pid: s.pid.unwrap_or(0),
                state: if running { "Running" } else { "Idle" },
                start_time: s.child_since.map(wall),
                // php-fpm counts a request when it starts.
                requests: s.requests + u64::from(running),
                request_duration: if running { now.saturating_duration_since(s.since) } else { s.last_duration },
                request_method: info.method,
                request_uri: info.uri,
                content_length: info.content_length,
                user: info.user,
                script: info.script,
                // As php-fpm: measured at a request's end, so 0 while one runs.
                last_request_cpu: if running { Some(0.0) } else { s.last_cpu },
                last_request_memory: if running { Some(0) } else { s.last_memory },
            }
        })
        .collect();
    PoolStatus {
        pool: snap.name.clone(),
        process_manager: pool.pages.pm,
        start_time: snap.started,
        accepted_conn: snap.accepted,
        listen_queue: pool.balancer.waiting(),
        max_listen_queue: pool.balancer.max_waiting(),
        listen_queue_len: pool.balancer.queue_max_len(),
        idle_processes: snap.slots.len() - active,
        active_processes: active,
        total_processes: snap.slots.len(),
        max_active_processes: snap.max_active,
        max_children_reached: pool.balancer.max_children_reached(),
        slow_requests: snap.slow_requests,
        processes,
    }
}
