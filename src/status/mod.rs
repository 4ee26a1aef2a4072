//! php-fpm's status page: the data, taken from a pool actor's snapshot, and
//! its formats (text, `?json`, `?xml`, `?html`, `?openmetrics`, each with
//! `?full`), with php-fpm's field names so existing exporters parse it.

mod render;

use std::time::{Duration, SystemTime};

pub use render::{parse_query, render, Format};

/// One pool's status, as php-fpm reports it.
#[derive(Debug, Clone)]
pub struct PoolStatus {
    /// `pool`
    pub pool: String,
    /// `process manager`: static, dynamic or ondemand.
    pub process_manager: &'static str,
    /// `start time`
    pub start_time: SystemTime,
    /// `accepted conn`: requests accepted by the pool.
    pub accepted_conn: u64,
    /// `listen queue`: requests waiting for a child right now.
    pub listen_queue: usize,
    /// `max listen queue`: the most that ever waited.
    pub max_listen_queue: usize,
    /// `listen queue len`: how many may wait (`queue_max_len`).
    pub listen_queue_len: usize,
    /// `idle processes`
    pub idle_processes: usize,
    /// `active processes`
    pub active_processes: usize,
    /// `total processes`
    pub total_processes: usize,
    /// `max active processes`
    pub max_active_processes: usize,
    /// `max children reached`: seconds in which a request found every child busy.
    pub max_children_reached: u64,
    /// `slow requests`
    pub slow_requests: u64,
    /// Per-process details, for `?full`.
    pub processes: Vec<ProcessStatus>,
}

/// One child, for `?full`.
#[derive(Debug, Clone)]
pub struct ProcessStatus {
    /// `pid` (0 when not known yet).
    pub pid: i32,
    /// `state`: "Idle" or "Running" (php-fpm's names).
    pub state: &'static str,
    /// `start time`: when this child was first seen serving (None: not yet).
    pub start_time: Option<SystemTime>,
    /// `requests` served by this child.
    pub requests: u64,
    /// `request duration`: of the running request, or of the last one.
    pub request_duration: Duration,
    /// `request method`
    pub request_method: String,
    /// `request URI` (with the query string, as php-fpm shows it).
    pub request_uri: String,
    /// `content length`
    pub content_length: u64,
    /// `user` (REMOTE_USER)
    pub user: String,
    /// `script`
    pub script: String,
    /// `last request cpu` in percent; None: not measured (see `pool::usage`).
    pub last_request_cpu: Option<f64>,
    /// `last request memory` in bytes; None: not measured (see `pool::usage`).
    pub last_request_memory: Option<u64>,
}
