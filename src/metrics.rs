//! Metric names, in one place, and small typed helpers to record them through
//! the `metrics` facade. Handles are registered once per pool, so the hot path
//! builds no labels.

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// Requests answered, by pool and status class (`2xx`, `3xx`, `4xx`, `5xx`).
pub const REQUESTS_TOTAL: &str = "rustfpm_requests_total";
/// Time from the first byte of the request head to END_REQUEST.
pub const REQUEST_DURATION: &str = "rustfpm_request_duration_seconds";
/// Time a request waited for an idle child.
pub const QUEUE_WAIT: &str = "rustfpm_queue_wait_seconds";
/// Requests refused because the queue was full.
pub const QUEUE_REJECTED_TOTAL: &str = "rustfpm_queue_rejected_total";
/// Pool parent (re)starts, by reason.
pub const PARENT_STARTS_TOTAL: &str = "rustfpm_parent_starts_total";
/// Children that died while serving a request.
pub const CHILD_CRASHES_TOTAL: &str = "rustfpm_child_crashes_total";
/// Children replaced, by pool and reason.
pub const CHILDREN_RECYCLED_TOTAL: &str = "rustfpm_children_recycled_total";
/// Busy children right now.
pub const BUSY_CHILDREN: &str = "rustfpm_busy_children";
/// Requests that ran past `request_slowlog_timeout`, by pool.
pub const SLOW_REQUESTS_TOTAL: &str = "rustfpm_slow_requests_total";
/// Access and slow log lines dropped because the log writer fell behind.
pub const LOG_LINES_DROPPED_TOTAL: &str = "rustfpm_log_lines_dropped_total";

/// Records access or slow log lines dropped (no pool label: one writer serves all pools).
pub fn log_lines_dropped(n: u64) {
    counter!(LOG_LINES_DROPPED_TOTAL).increment(n);
}

/// The registered metric handles of one pool.
#[derive(Clone)]
pub struct PoolMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
    queue_wait: Histogram,
    rejected: Counter,
    crashes: Counter,
    busy: Gauge,
    pool: String,
}

impl std::fmt::Debug for PoolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PoolMetrics({})", self.pool)
    }
}

impl PoolMetrics {
    /// Registers the handles of pool `pool`.
    pub fn new(pool: &str) -> PoolMetrics {
        let p = pool.to_string();
        let class = |c: &'static str| counter!(REQUESTS_TOTAL, "pool" => p.clone(), "status" => c);
        PoolMetrics {
            by_class: [class("1xx"), class("2xx"), class("3xx"), class("4xx"), class("5xx")],
            duration: histogram!(REQUEST_DURATION, "pool" => p.clone()),
            queue_wait: histogram!(QUEUE_WAIT, "pool" => p.clone()),
            rejected: counter!(QUEUE_REJECTED_TOTAL, "pool" => p.clone()),
            crashes: counter!(CHILD_CRASHES_TOTAL, "pool" => p.clone()),
            busy: gauge!(BUSY_CHILDREN, "pool" => p.clone()),
            pool: p,
        }
    }

    /// Records one answered request.
    pub fn request(&self, status: u16, duration: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].increment(1);
        self.duration.record(duration.as_secs_f64());
    }

    /// Records the queue wait of a request that got a child.
    pub fn queued(&self, wait: Duration) {
        self.queue_wait.record(wait.as_secs_f64());
    }

    /// Records a request refused with 503 because the queue was full.
    pub fn rejected(&self) {
        self.rejected.increment(1);
    }

    /// Records a child that died mid-request.
    pub fn crash(&self) {
        self.crashes.increment(1);
    }

    /// Sets the busy-children gauge.
    pub fn busy(&self, n: usize) {
        self.busy.set(n as f64);
    }

    /// Records a child replaced for `reason`.
    pub fn recycled(&self, reason: &'static str) {
        counter!(CHILDREN_RECYCLED_TOTAL, "pool" => self.pool.clone(), "reason" => reason).increment(1);
    }

    /// Records a request that ran past `request_slowlog_timeout`.
    pub fn slow(&self) {
        counter!(SLOW_REQUESTS_TOTAL, "pool" => self.pool.clone()).increment(1);
    }

    /// Records a start of the pool's php-cgi parent.
    pub fn parent_start(&self, reason: &'static str) {
        counter!(PARENT_STARTS_TOTAL, "pool" => self.pool.clone(), "reason" => reason).increment(1);
    }
}
