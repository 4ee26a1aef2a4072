//! Metric names, in one place, and small typed helpers to record them through
//! the `metrics` facade. Handles are registered once per pool, so the hot path
//! builds no labels. With `metrics_listen`, [`install`] puts
//! `metrics-exporter-prometheus` behind the facade: it serves the exposition
//! on its own thread, with bucketed histograms and a HELP line per name.
//! The `phpfpm_*` names are hipages/php-fpm_exporter's, with the same
//! meaning and the same values as the status page, so its dashboards work.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Gauge, Histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use metrics_util::MetricKindMask;

use crate::status::PoolStatus;

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
/// Access and slow log lines dropped because the log writer fell behind, or
/// because their file could not be written (a full disk).
pub const LOG_LINES_DROPPED_TOTAL: &str = "rustfpm_log_lines_dropped_total";
/// Requests that got a child, by pool.
pub const ACCEPTED_TOTAL: &str = "rustfpm_accepted_connections_total";
/// Children by state (`idle`, `busy`, `starting`, `exiting`), sampled.
pub const CHILDREN: &str = "rustfpm_children";
/// Requests waiting for a child right now, sampled.
pub const QUEUE_LENGTH: &str = "rustfpm_queue_length";
/// The most requests that ever waited at once, sampled.
pub const QUEUE_LENGTH_MAX: &str = "rustfpm_queue_length_max";
/// How many requests may wait (`queue_max_len`).
pub const QUEUE_CAPACITY: &str = "rustfpm_queue_capacity";
/// Private (resident, unshared) memory of each child, by pool and slot, sampled.
pub const CHILD_PRIVATE_MEMORY: &str = "rustfpm_child_private_memory_bytes";

/// hipages/php-fpm_exporter's names, from the status page's figures.
pub const PHPFPM_UP: &str = "phpfpm_up";
/// `accepted conn`.
pub const PHPFPM_ACCEPTED: &str = "phpfpm_accepted_connections";
/// `start since`.
pub const PHPFPM_START_SINCE: &str = "phpfpm_start_since";
/// `listen queue`.
pub const PHPFPM_LISTEN_QUEUE: &str = "phpfpm_listen_queue";
/// `max listen queue`.
pub const PHPFPM_MAX_LISTEN_QUEUE: &str = "phpfpm_max_listen_queue";
/// `listen queue len`.
pub const PHPFPM_LISTEN_QUEUE_LENGTH: &str = "phpfpm_listen_queue_length";
/// `idle processes`.
pub const PHPFPM_IDLE: &str = "phpfpm_idle_processes";
/// `active processes`.
pub const PHPFPM_ACTIVE: &str = "phpfpm_active_processes";
/// `total processes`.
pub const PHPFPM_TOTAL: &str = "phpfpm_total_processes";
/// `max active processes`.
pub const PHPFPM_MAX_ACTIVE: &str = "phpfpm_max_active_processes";
/// `max children reached`.
pub const PHPFPM_MAX_CHILDREN_REACHED: &str = "phpfpm_max_children_reached";
/// `slow requests`.
pub const PHPFPM_SLOW_REQUESTS: &str = "phpfpm_slow_requests";

/// Bucket bounds (seconds) of the duration and queue-wait histograms.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Errors while starting the exporter.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The listener or the recorder could not be set up.
    #[error("cannot serve metrics on {addr} (metrics_listen): {source}")]
    Install { addr: SocketAddr, source: metrics_exporter_prometheus::BuildError },
}

/// Serves the Prometheus exposition on `addr` (any path) from a thread of its
/// own. Call before any pool starts (their handles bind to the recorder then),
/// and outside the runtime.
pub fn install(addr: SocketAddr) -> Result<(), ExportError> {
    let err = |source| ExportError::Install { addr, source };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        // A gauge no sample has set for a while belongs to a pool a reload removed
        // (or a slot gone): it leaves the output instead of reporting it up forever.
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_EXPIRY))
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(QUEUE_WAIT.into()), SECONDS_BUCKETS))
        .map_err(err)?
        .install()
        .map_err(err)?;
    describe();
    counter!(LOG_LINES_DROPPED_TOTAL).increment(0);
    Ok(())
}

/// The reasons `rustfpm_children_recycled_total` counts (a crash is `rustfpm_child_crashes_total`).
const RECYCLE_REASONS: [&str; 5] = ["requests", "memory", "lifetime", "idle", "timeout"];

/// How long a gauge stays in the output without a sample: five sampling rounds.
pub const GAUGE_EXPIRY: Duration = Duration::from_secs(10);

/// The HELP line of every name.
fn describe() {
    describe_counter!(REQUESTS_TOTAL, "Requests answered, by pool and status class.");
    describe_histogram!(REQUEST_DURATION, "Seconds from the request head to the end of the response.");
    describe_histogram!(QUEUE_WAIT, "Seconds a request waited for an idle child.");
    describe_counter!(QUEUE_REJECTED_TOTAL, "Requests refused with 503 because the queue was full.");
    describe_counter!(PARENT_STARTS_TOTAL, "Starts of the pool's php-cgi parent (reason start or restart).");
    describe_counter!(CHILD_CRASHES_TOTAL, "Children that died while serving a request.");
    describe_counter!(CHILDREN_RECYCLED_TOTAL, "Children replaced, by reason.");
    describe_gauge!(BUSY_CHILDREN, "Children serving a request.");
    describe_counter!(SLOW_REQUESTS_TOTAL, "Requests that ran past request_slowlog_timeout.");
    describe_counter!(LOG_LINES_DROPPED_TOTAL, "Access and slow log lines dropped because the writer fell behind.");
    describe_counter!(ACCEPTED_TOTAL, "Requests that got a child.");
    describe_gauge!(CHILDREN, "Children by state.");
    describe_gauge!(QUEUE_LENGTH, "Requests waiting for a child.");
    describe_gauge!(QUEUE_LENGTH_MAX, "The most requests that waited at once since the pool started.");
    describe_gauge!(QUEUE_CAPACITY, "How many requests may wait (queue_max_len).");
    describe_gauge!(CHILD_PRIVATE_MEMORY, "Resident memory a child does not share, in bytes.");
    describe_gauge!(PHPFPM_UP, "Could the pool be reached?");
    describe_gauge!(PHPFPM_ACCEPTED, "The number of requests accepted by the pool.");
    describe_gauge!(PHPFPM_START_SINCE, "The number of seconds since FPM has started.");
    describe_gauge!(PHPFPM_LISTEN_QUEUE, "The number of requests in the queue of pending connections.");
    describe_gauge!(PHPFPM_MAX_LISTEN_QUEUE, "The maximum number of requests in the queue of pending connections.");
    describe_gauge!(PHPFPM_LISTEN_QUEUE_LENGTH, "The size of the queue of pending connections.");
    describe_gauge!(PHPFPM_IDLE, "The number of idle processes.");
    describe_gauge!(PHPFPM_ACTIVE, "The number of active processes.");
    describe_gauge!(PHPFPM_TOTAL, "The number of idle + active processes.");
    describe_gauge!(PHPFPM_MAX_ACTIVE, "The maximum number of active processes since FPM has started.");
    describe_gauge!(PHPFPM_MAX_CHILDREN_REACHED, "The number of times a request found every child busy.");
    describe_gauge!(PHPFPM_SLOW_REQUESTS, "The number of requests that exceeded request_slowlog_timeout.");
}

/// Sets one pool's sampled gauges: children by state, queue, the `phpfpm_*`
/// figures, and each child's private memory (`memory[slot]`).
pub fn sample_pool(s: &PoolStatus, states: &[(&'static str, usize)], memory: &[Option<u64>], uptime: Duration) {
    let pool = s.pool.clone();
    let set = |name: &'static str, value: f64| gauge!(name, "pool" => pool.clone()).set(value);
    for (state, n) in states {
        gauge!(CHILDREN, "pool" => pool.clone(), "state" => *state).set(*n as f64);
        if *state == "busy" {
            // Also set as it changes (`PoolMetrics::busy`); sampled so that it does not expire.
            set(BUSY_CHILDREN, *n as f64);
        }
    }
    set(QUEUE_LENGTH, s.listen_queue as f64);
    set(QUEUE_LENGTH_MAX, s.max_listen_queue as f64);
    set(QUEUE_CAPACITY, s.listen_queue_len as f64);
    set(PHPFPM_UP, 1.0);
    set(PHPFPM_ACCEPTED, s.accepted_conn as f64);
    set(PHPFPM_START_SINCE, uptime.as_secs() as f64);
    set(PHPFPM_LISTEN_QUEUE, s.listen_queue as f64);
    set(PHPFPM_MAX_LISTEN_QUEUE, s.max_listen_queue as f64);
    set(PHPFPM_LISTEN_QUEUE_LENGTH, s.listen_queue_len as f64);
    set(PHPFPM_IDLE, s.idle_processes as f64);
    set(PHPFPM_ACTIVE, s.active_processes as f64);
    set(PHPFPM_TOTAL, s.total_processes as f64);
    set(PHPFPM_MAX_ACTIVE, s.max_active_processes as f64);
    set(PHPFPM_MAX_CHILDREN_REACHED, s.max_children_reached as f64);
    set(PHPFPM_SLOW_REQUESTS, s.slow_requests as f64);
    for (slot, bytes) in memory.iter().enumerate() {
        if let Some(bytes) = bytes {
            gauge!(CHILD_PRIVATE_MEMORY, "pool" => pool.clone(), "slot" => slot.to_string()).set(*bytes as f64);
        }
    }
}

/// Records access or slow log lines dropped (no pool label: one writer serves all pools).
pub fn log_lines_dropped(n: u64) {
    counter!(LOG_LINES_DROPPED_TOTAL).increment(n);
}

/// The status classes of [`REQUESTS_TOTAL`], indexed by the status's first digit less one.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// Counts a response rustfpm gave without a child (403, 404, 503, the status
/// and ping pages); those a child gave are counted by [`PoolMetrics::request`].
pub fn answered_without_child(pool: &str, status: u16) {
    let class = STATUS_CLASSES[class_index(status)];
    counter!(REQUESTS_TOTAL, "pool" => pool.to_string(), "status" => class).increment(1);
}

/// The registered metric handles of one pool.
#[derive(Clone)]
pub struct PoolMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
    queue_wait: Histogram,
    accepted: Counter,
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
        let metrics = PoolMetrics {
            by_class: STATUS_CLASSES.map(|c| counter!(REQUESTS_TOTAL, "pool" => p.clone(), "status" => c)),
            duration: histogram!(REQUEST_DURATION, "pool" => p.clone()),
            queue_wait: histogram!(QUEUE_WAIT, "pool" => p.clone()),
            accepted: counter!(ACCEPTED_TOTAL, "pool" => p.clone()),
            rejected: counter!(QUEUE_REJECTED_TOTAL, "pool" => p.clone()),
            crashes: counter!(CHILD_CRASHES_TOTAL, "pool" => p.clone()),
            busy: gauge!(BUSY_CHILDREN, "pool" => p.clone()),
            pool: p,
        };
        // Counted only when it happens: shown at 0 from the start, so that a rate of them is defined.
        for reason in RECYCLE_REASONS {
            counter!(CHILDREN_RECYCLED_TOTAL, "pool" => pool.to_string(), "reason" => reason).increment(0);
        }
        for reason in ["start", "restart"] {
            counter!(PARENT_STARTS_TOTAL, "pool" => pool.to_string(), "reason" => reason).increment(0);
        }
        counter!(SLOW_REQUESTS_TOTAL, "pool" => pool.to_string()).increment(0);
        metrics
    }

    /// Records one answered request.
    pub fn request(&self, status: u16, duration: Duration) {
        self.by_class[class_index(status)].increment(1);
        self.duration.record(duration.as_secs_f64());
    }

    /// Records a request that got a child, and how long it waited for it.
    pub fn queued(&self, wait: Duration) {
        self.accepted.increment(1);
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
