//! The native TOML configuration: `[global]` and `[pool.NAME]` tables whose keys are php-fpm's
//! directive names with `.` written `_` (`pm_max_children`).
//!
//! Reading happens in two steps, as two types: [`file`] walks the spanned TOML tree into a raw
//! file type that knows every key and its line (unknown keys are errors there), and `validate`
//! turns that into the typed [`Config`]. Neither step stops at the first problem: every error is
//! collected and returned together in [`ConfigErrors`], each naming file, line, pool, key and value.

pub mod access_format;
mod error;
mod error_log;
mod file;
mod fpm;
mod listen;
mod pm;
mod request_logs;
mod source;
mod tables;
mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors};
pub(crate) use error_log::{DEFAULT_LOG_LIMIT, DEFAULT_SYSLOG_FACILITY, DEFAULT_SYSLOG_IDENT, DEFAULT_SYSLOG_SOCKET};
pub(crate) use fpm::ini::{INI_FALSE, INI_TRUE};
pub(crate) use fpm::load_fpm;
pub use fpm::{fpm_dump, fpm_wording, to_toml};
pub use listen::parse_tcp;
pub use source::{Format, Source};
pub(crate) use units::{parse_duration, parse_size};

/// `[global] error_log` when unset.
pub(crate) const DEFAULT_ERROR_LOG: LogTarget = LogTarget::Stderr;
/// `[global] log_level` when unset (php-fpm's default).
pub(crate) const DEFAULT_LOG_LEVEL: LogLevel = LogLevel::Notice;
/// `[global] emergency_restart_threshold` when unset: 0, off (php-fpm's default).
pub(crate) const DEFAULT_EMERGENCY_RESTART_THRESHOLD: usize = 0;
/// `[global] graceful_stop_on_term` when unset: SIGTERM stops at once, as in php-fpm.
pub(crate) const DEFAULT_GRACEFUL_STOP_ON_TERM: bool = false;
/// `[global] daemonize` when unset in the TOML: foreground (systemd's way). A php-fpm INI file
/// without `daemonize` daemonizes, as under php-fpm.
pub(crate) const DEFAULT_DAEMONIZE: bool = false;
/// `[global] systemd_interval` when unset (php-fpm's default): how often the systemd `STATUS=`
/// line is refreshed.
pub(crate) const DEFAULT_SYSTEMD_INTERVAL: Duration = Duration::from_secs(10);
/// The most `[global] front_end_threads`.
pub(crate) const MAX_FRONT_END_THREADS: usize = 256;
/// `listen_backlog` when unset (php-fpm's default).
pub(crate) const DEFAULT_LISTEN_BACKLOG: i32 = 511;
/// What `listen_backlog = -1` ("the maximum", in php-fpm) becomes.
pub(crate) const MAX_LISTEN_BACKLOG: i32 = 65535;
/// `listen_mode` when unset.
pub(crate) const DEFAULT_LISTEN_MODE: u32 = 0o660;
/// `pm` when unset.
pub(crate) const DEFAULT_PM: PmMode = PmMode::Static;
/// Largest accepted `pm_max_children`.
pub(crate) const MAX_CHILDREN: usize = 4096;
/// `pm_max_spawn_rate` when unset (php-fpm's default).
pub(crate) const DEFAULT_PM_MAX_SPAWN_RATE: usize = 32;
/// `pm_process_idle_timeout` when unset (php-fpm's default).
pub(crate) const DEFAULT_PM_PROCESS_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// `pm_max_requests` when unset: 0, children are never recycled for their request count.
pub(crate) const DEFAULT_PM_MAX_REQUESTS: u64 = 0;
/// `request_terminate_timeout_track_finished` when unset (php-fpm's default).
pub(crate) const DEFAULT_REQUEST_TERMINATE_TIMEOUT_TRACK_FINISHED: bool = false;
/// Lowest (most favourable) accepted `process_priority`, as in php-fpm.
pub(crate) const MIN_PROCESS_PRIORITY: i32 = -19;
/// Highest (least favourable) accepted `process_priority`, as in php-fpm.
pub(crate) const MAX_PROCESS_PRIORITY: i32 = 20;
/// `process_dumpable` when unset (php-fpm's default).
pub(crate) const DEFAULT_PROCESS_DUMPABLE: bool = false;
/// `catch_workers_output` when unset (php-fpm's default).
pub(crate) const DEFAULT_CATCH_WORKERS_OUTPUT: bool = false;
/// `ping_response` when unset (php-fpm's default).
pub(crate) const DEFAULT_PING_RESPONSE: &str = "pong";
/// `decorate_workers_output` when unset (php-fpm's default).
pub(crate) const DEFAULT_DECORATE_WORKERS_OUTPUT: bool = true;
/// `php_cgi` when unset; looked up on `PATH` when the children are spawned.
pub(crate) const DEFAULT_PHP_CGI: &str = "php-cgi";
/// `clear_env` when unset (php-fpm's default).
pub(crate) const DEFAULT_CLEAR_ENV: bool = true;
/// `fastcgi_finish_request` when unset: php-cgi gets the polyfill.
pub(crate) const DEFAULT_FASTCGI_FINISH_REQUEST: bool = true;
/// `security_limit_extensions` when unset.
pub(crate) const DEFAULT_SECURITY_LIMIT_EXTENSIONS: &[&str] = &[".php"];
/// `access_format` when unset: php-fpm's default.
pub(crate) const DEFAULT_ACCESS_FORMAT: &str = "%R - %u %t \"%m %r\" %s";
/// `request_read_timeout` when unset: nginx sends a request head (and, with its default
/// request buffering, the body) at once; an unbuffered body pauses at most nginx's
/// `client_body_timeout` (60 s by default) between reads.
pub(crate) const DEFAULT_REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// `listen_idle_timeout` when unset: longer than nginx's upstream `keepalive_timeout` (60 s by
/// default), so that nginx, not rustfpm, closes the idle connections it keeps.
pub(crate) const DEFAULT_LISTEN_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// `listen_max_connections` when unset.
pub(crate) const DEFAULT_LISTEN_MAX_CONNECTIONS: usize = 16 * 1024;
/// Largest accepted `listen_max_connections`.
pub(crate) const MAX_LISTEN_MAX_CONNECTIONS: usize = 1 << 20;

/// A validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages and reloads).
    pub path: PathBuf,
    /// `[global]`.
    pub global: Global,
    /// In file order.
    pub pools: Vec<Pool>,
}

/// The `[global]` table.
#[derive(Debug, Clone)]
pub struct Global {
    /// `error_log`: where rustfpm's own log goes.
    pub error_log: LogTarget,
    /// `log_level`: the least severe level written.
    pub log_level: LogLevel,
    /// `pid`: the pid file, written at start and removed at exit.
    pub pid: Option<PathBuf>,
    /// How long children may take to serve their running requests on a graceful stop or reload
    /// before they are killed. `None` (`0`, the default) waits without limit.
    pub process_control_timeout: Option<Duration>,
    /// With `emergency_restart_interval`: this many children dying of SIGSEGV or SIGBUS within
    /// the interval restarts the pool. 0 (the default) is off.
    pub emergency_restart_threshold: usize,
    /// See `emergency_restart_threshold`. `None` (`0`, the default) is off.
    pub emergency_restart_interval: Option<Duration>,
    /// rustfpm extension: SIGTERM drains like SIGQUIT (waiting up to `process_control_timeout`)
    /// instead of stopping at once.
    pub graceful_stop_on_term: bool,
    /// Facility of syslog messages (`syslog_facility`, a libc `LOG_*` value).
    pub syslog_facility: i32,
    /// Name syslog messages carry (`syslog_ident`).
    pub syslog_ident: String,
    /// rustfpm extension: the syslog socket (`syslog_socket`, default `/dev/log`).
    pub syslog_socket: PathBuf,
    /// Longest log line in bytes (`log_limit`); longer children's lines are split.
    pub log_limit: usize,
    /// Detach from the terminal and run in the background (`daemonize`, `-D`/`-F`).
    pub daemonize: bool,
    /// `rlimit_files`: RLIMIT_NOFILE of rustfpm itself (soft and hard, as php-fpm sets its
    /// master's). `None`: the soft limit is raised to the hard limit.
    pub rlimit_files: Option<u64>,
    /// `systemd_interval`: how often the `STATUS=` line is sent to systemd (`None`: `0`, never
    /// refreshed after start-up).
    pub systemd_interval: Option<Duration>,
    /// rustfpm extension: where the Prometheus endpoint listens (`metrics_listen`; off when unset).
    pub metrics_listen: Option<SocketAddr>,
    /// rustfpm extension: how many threads accept and serve nginx's connections
    /// (`front_end_threads`; `None`: [`default_front_end_threads`]).
    pub front_end_threads: Option<usize>,
    /// rustfpm extension: the CPU scheduling policy of rustfpm's own threads
    /// (`process_sched_policy`; `None`: [`SchedPolicy::default_from`] the one it was started
    /// under).
    pub process_sched_policy: Option<SchedPolicy>,
}

/// `[global] front_end_threads` when unset: how many threads accept and serve
/// nginx's connections (each pool's listener is given to one or more of them in turn,
/// so that none is idle: `server::listener_share`). One: on 2
/// cores a second thread serves as many requests as one, at ~3 µs more CPU per request
/// that PHP could have used (docs/performance.md has the figures).
///
/// Debug builds (the binary the tests start) take the default from the environment
/// variable `FRONT_END_THREADS` when it is set, so that the whole test suite can be
/// run with more threads (`FRONT_END_THREADS=2 cargo test`); release builds ignore it.
pub fn default_front_end_threads() -> usize {
    #[cfg(debug_assertions)]
    if let Some(n) = std::env::var("FRONT_END_THREADS").ok().and_then(|v| v.parse().ok()) {
        if (1..=MAX_FRONT_END_THREADS).contains(&n) {
            return n;
        }
    }
    1
}

impl Global {
    /// How many front-end threads run: `front_end_threads`, or [`default_front_end_threads`].
    pub fn threads(&self) -> usize {
        self.front_end_threads.unwrap_or_else(default_front_end_threads)
    }

    /// The `[global]` keys read only when rustfpm starts whose value differs in `new`: a reload
    /// applies everything else, and says of these that they wait for a restart.
    pub fn restart_only_changes(&self, new: &Global) -> Vec<&'static str> {
        let changed = [
            ("rlimit_files", self.rlimit_files != new.rlimit_files),
            ("systemd_interval", self.systemd_interval != new.systemd_interval),
            ("metrics_listen", self.metrics_listen != new.metrics_listen),
            ("front_end_threads", self.threads() != new.threads()),
            ("process_sched_policy", self.process_sched_policy != new.process_sched_policy),
        ];
        changed.into_iter().filter(|&(_, differs)| differs).map(|(key, _)| key).collect()
    }
}

impl Default for Global {
    fn default() -> Self {
        Global {
            error_log: DEFAULT_ERROR_LOG,
            log_level: DEFAULT_LOG_LEVEL,
            pid: None,
            process_control_timeout: None,
            emergency_restart_threshold: DEFAULT_EMERGENCY_RESTART_THRESHOLD,
            emergency_restart_interval: None,
            graceful_stop_on_term: DEFAULT_GRACEFUL_STOP_ON_TERM,
            syslog_facility: DEFAULT_SYSLOG_FACILITY,
            syslog_ident: DEFAULT_SYSLOG_IDENT.to_string(),
            syslog_socket: PathBuf::from(DEFAULT_SYSLOG_SOCKET),
            log_limit: DEFAULT_LOG_LIMIT,
            daemonize: DEFAULT_DAEMONIZE,
            rlimit_files: None,
            systemd_interval: Some(DEFAULT_SYSTEMD_INTERVAL),
            metrics_listen: None,
            front_end_threads: None,
            process_sched_policy: None,
        }
    }
}

/// Where rustfpm's own log goes: `"stderr"`, `"syslog"` or an absolute file path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// rustfpm's stderr.
    Stderr,
    /// Appended to this file (reopened on SIGUSR1).
    File(PathBuf),
    /// Datagrams to the `syslog_socket`, with `syslog_facility` and `syslog_ident`.
    Syslog,
}

/// php-fpm's log levels, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `notice`
    Notice,
    /// `warning` (php-fpm also reads `warn`)
    Warning,
    /// `error`
    Error,
    /// `alert`
    Alert,
}

impl LogLevel {
    /// Every level with its php-fpm spelling.
    pub(crate) const ALL: [(&'static str, LogLevel); 5] = [
        ("debug", LogLevel::Debug),
        ("notice", LogLevel::Notice),
        ("warning", LogLevel::Warning),
        ("error", LogLevel::Error),
        ("alert", LogLevel::Alert),
    ];
}

/// `process_sched_policy`: the Linux scheduling policy rustfpm's threads (`[global]`) or a
/// pool's php-cgi and its children run under, named as systemd's `CPUSchedulingPolicy=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedPolicy {
    /// `SCHED_OTHER`: the kernel's default, as php-fpm's children run.
    Other,
    /// `SCHED_BATCH` (the default, see [`SchedPolicy::default_from`]): a task woken by another does not preempt it, but waits
    /// for it to sleep or use up its time slice. A child woken by the front end lets the
    /// front end go on relaying other requests; the front end woken by a child's 8 KiB of
    /// output lets the child go on writing, and then relays it all at once.
    Batch,
    /// `SCHED_IDLE`: runs only when nothing else wants the CPU.
    Idle,
}

impl SchedPolicy {
    /// Every policy with its spelling in the config.
    pub(crate) const ALL: [(&'static str, SchedPolicy); 3] =
        [("other", SchedPolicy::Other), ("batch", SchedPolicy::Batch), ("idle", SchedPolicy::Idle)];

    /// Its name in the config.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, p)| *p == self).map_or("other", |(name, _)| name)
    }

    /// The `sched_setscheduler` policy number.
    pub fn to_libc(self) -> libc::c_int {
        match self {
            SchedPolicy::Other => libc::SCHED_OTHER,
            SchedPolicy::Batch => libc::SCHED_BATCH,
            SchedPolicy::Idle => libc::SCHED_IDLE,
        }
    }

    /// What an unset `process_sched_policy` means for a thread under `current` (what
    /// `sched_getscheduler` returns): "batch" if that is the kernel's default or batch; `None`
    /// (keep it) if it is idle or a real-time policy, which the parent that started rustfpm
    /// chose (systemd's `CPUSchedulingPolicy=`, `chrt`) or `[global]` asked for.
    pub fn default_from(current: libc::c_int) -> Option<SchedPolicy> {
        let current = current & !libc::SCHED_RESET_ON_FORK;
        matches!(current, libc::SCHED_OTHER | libc::SCHED_BATCH).then_some(SchedPolicy::Batch)
    }

    /// The name of what `sched_getscheduler` returns, as `CPUSchedulingPolicy=` spells it.
    pub fn name_of(current: libc::c_int) -> String {
        match current & !libc::SCHED_RESET_ON_FORK {
            libc::SCHED_FIFO => "fifo".into(),
            libc::SCHED_RR => "rr".into(),
            libc::SCHED_DEADLINE => "deadline".into(),
            n => Self::ALL
                .iter()
                .find(|(_, p)| p.to_libc() == n)
                .map_or(format!("policy {n}"), |(name, _)| name.to_string()),
        }
    }
}

/// A pool's `listen` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A unix socket at this path.
    Unix(PathBuf),
    /// TCP on this address and port.
    Tcp(SocketAddr),
    /// A bare port (`listen = 9000`): every address of both families, as php-fpm binds it:
    /// `[::]` dual-stack, or `0.0.0.0` when IPv6 is unavailable.
    Port(u16),
}

impl ListenAddr {
    /// The TCP address to reach or compare: a bare port is `[::]` (which also serves IPv4).
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Unix(_) => None,
            ListenAddr::Tcp(addr) => Some(*addr),
            ListenAddr::Port(port) => Some(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, *port))),
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "{}", path.display()),
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Port(port) => write!(f, "{port}"),
        }
    }
}

/// How a pool's children are managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmMode {
    /// A fixed number (`pm_max_children`) of children, always running.
    Static,
    /// `pm_start_servers` children at start, then between `pm_min_spare_servers` and
    /// `pm_max_spare_servers` idle ones, at most `pm_max_children` in all.
    Dynamic,
    /// No children at start; one is forked when a request finds none idle (at most
    /// `pm_max_children`), and stopped after `pm_process_idle_timeout` idle.
    Ondemand,
}

impl PmMode {
    /// Every mode with its php-fpm spelling.
    pub(crate) const ALL: [(&'static str, PmMode); 3] =
        [("static", PmMode::Static), ("dynamic", PmMode::Dynamic), ("ondemand", PmMode::Ondemand)];
}

/// `rlimit_core`: the largest core file a child may dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlimitCore {
    /// At most this many bytes (0: no core files).
    Limited(u64),
    /// `"unlimited"`.
    Unlimited,
}

/// A validated `[pool.NAME]` table.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The pool's name (`[pool.NAME]`, php-fpm's `[NAME]`).
    pub name: String,
    /// `listen`: where nginx connects.
    pub listen: ListenAddr,
    /// `listen_backlog`: the kernel's accept queue length.
    pub listen_backlog: i32,
    /// `listen_owner`: owner of a unix socket (default: the pool's user).
    pub listen_owner: Option<String>,
    /// `listen_group`: group of a unix socket (default: the pool's group).
    pub listen_group: Option<String>,
    /// `listen_mode`: mode of a unix socket.
    pub listen_mode: u32,
    /// `listen_acl_users`: users given read and write access to a unix socket by a POSIX ACL
    /// (names or uids). With this or `listen_acl_groups`, `listen_owner`/`listen_group` are
    /// ignored, as php-fpm does.
    pub listen_acl_users: Vec<String>,
    /// `listen_acl_groups`: groups given read and write access to a unix socket by a POSIX ACL.
    pub listen_acl_groups: Vec<String>,
    /// `listen_allowed_clients`: the only client addresses a TCP listener serves (IPv4 clients
    /// of an IPv6 listener count as IPv4). Empty: any.
    pub listen_allowed_clients: Vec<std::net::IpAddr>,
    /// `user`: the children's user (when rustfpm runs as root).
    pub user: Option<String>,
    /// `group`: the children's group (default: the user's).
    pub group: Option<String>,
    /// `pm`: static, dynamic or ondemand.
    pub pm: PmMode,
    /// `pm_max_children`: the number of children (the most, for dynamic and ondemand).
    pub pm_max_children: usize,
    /// Children forked at start. Always `Some` when `pm` is `Dynamic` (when unset:
    /// `min + (max - min) / 2` of the spare servers, as php-fpm); otherwise as written (unused).
    pub pm_start_servers: Option<usize>,
    /// `pm_start_servers` was not set and got its default (php-fpm says so at start).
    pub pm_start_servers_defaulted: bool,
    /// Fewest idle children. Always `Some` when `pm` is `Dynamic`; otherwise as written (unused).
    pub pm_min_spare_servers: Option<usize>,
    /// Most idle children. Always `Some` when `pm` is `Dynamic`; otherwise as written (unused).
    pub pm_max_spare_servers: Option<usize>,
    /// Most children forked at once when `Dynamic` needs more (at least 1).
    pub pm_max_spawn_rate: usize,
    /// How long an `Ondemand` child may stay idle before it is stopped (more than zero then).
    pub pm_process_idle_timeout: Duration,
    /// Requests a child serves before it is replaced; 0 means never.
    pub pm_max_requests: u64,
    /// rustfpm extension: a child whose memory grows past this many bytes is replaced after
    /// its request. `None` (unset or `"0"`) is no limit.
    pub pm_max_memory: Option<u64>,
    /// rustfpm extension: a child older than this is replaced after its request. `None`
    /// (unset or `0`) is no limit.
    pub pm_max_lifetime: Option<Duration>,
    /// Not resolved here: a bare name is looked up on `PATH` at spawn time.
    pub php_cgi: PathBuf,
    /// Passed to the children as `-c`.
    pub php_ini: Option<PathBuf>,
    /// PHP's own flags from rustfpm's command line, passed to the children: `-n` (no
    /// php.ini; `php_ini` is then not passed) and `-e` (extended information).
    pub php_flags: Vec<String>,
    /// `clear_env`: the children start with an empty environment plus `env`.
    pub clear_env: bool,
    /// Directory the children start in (inside `chroot` when that is set). Absolute; a
    /// directory when the config was read (as php-fpm checks it). `None`: rustfpm's working
    /// directory (`/` after a chroot).
    pub chdir: Option<PathBuf>,
    /// Directory the children chroot to; an existing directory.
    pub chroot: Option<PathBuf>,
    /// RLIMIT_NOFILE of the children. `None`: inherited.
    pub rlimit_files: Option<u64>,
    /// RLIMIT_CORE of the children. `None`: inherited.
    pub rlimit_core: Option<RlimitCore>,
    /// Nice value of the children, `MIN_PROCESS_PRIORITY..=MAX_PROCESS_PRIORITY`. `None`:
    /// inherited.
    pub process_priority: Option<i32>,
    /// The children's CPU scheduling policy (`process_sched_policy`; `None`:
    /// [`SchedPolicy::default_from`] the one rustfpm's threads run under).
    pub process_sched_policy: Option<SchedPolicy>,
    /// php-fpm's `process.dumpable`. No effect here: exec() leaves php-cgi dumpable whatever it
    /// says (a notice tells so at start).
    pub process_dumpable: bool,
    /// Send the children's stdout and stderr to rustfpm's log instead of discarding them.
    pub catch_workers_output: bool,
    /// With `catch_workers_output`: prefix each caught line with the pool, child and stream.
    pub decorate_workers_output: bool,
    /// `pm.status_path`: the URI (SCRIPT_NAME) answered with the pool's status page.
    pub pm_status_path: Option<String>,
    /// `pm.status_listen`: a second listener that serves only the status and ping pages.
    pub pm_status_listen: Option<ListenAddr>,
    /// `ping.path`: the URI answered with `ping_response`.
    pub ping_path: Option<String>,
    /// `ping.response`.
    pub ping_response: String,
    /// `[pool.NAME.env]`, sorted by name.
    pub env: Vec<(String, String)>,
    /// Empty means no limit.
    pub security_limit_extensions: Vec<String>,
    /// 0 means no queue: a request that finds every child busy is answered 503 at once.
    /// Unset: `listen_backlog` (where php-fpm's requests would wait), so rustfpm never
    /// refuses what php-fpm would have queued.
    pub queue_max_len: usize,
    /// A request running longer than this has its child killed. `None` (`0`, the default) is
    /// no limit.
    pub request_terminate_timeout: Option<Duration>,
    /// Whether `request_terminate_timeout` still applies after the script called
    /// `fastcgi_finish_request()` or finished and is running its shutdown functions (php-fpm
    /// stops the clock there by default).
    pub request_terminate_timeout_track_finished: bool,
    /// rustfpm extension: a queued request that waited this long for a child is answered 503.
    /// `None` (unset or `0`) waits without limit (`queue_max_len` still applies).
    pub queue_max_wait: Option<Duration>,
    /// rustfpm extension: give php-cgi a `fastcgi_finish_request()` (a prepended polyfill).
    pub fastcgi_finish_request: bool,
    /// rustfpm extension: a request head must arrive within this time of its first byte (of the
    /// connection, on a new one), and a request body may not pause longer; the connection is
    /// closed otherwise. `None` (`0`) is no limit.
    pub request_read_timeout: Option<Duration>,
    /// rustfpm extension: a kept-alive connection idle this long between requests is closed.
    /// `None` (`0`) is no limit.
    pub listen_idle_timeout: Option<Duration>,
    /// rustfpm extension: most connections open at once on each of the pool's listeners; past
    /// it, new connections wait in the kernel's listen queue.
    pub listen_max_connections: usize,
    /// `access.log`: one line per request is appended here. `None`: no access log.
    pub access_log: Option<PathBuf>,
    /// `access.format`: php-fpm's `%` placeholders, parsed.
    pub access_format: access_format::AccessFormat,
    /// `access.suppress_path[]`: script URIs (SCRIPT_NAME) whose plain successful requests
    /// are not logged (a GET or HEAD without query string or body, answered 2xx).
    pub access_suppress_path: Vec<String>,
    /// `slowlog`: requests running past `request_slowlog_timeout` are logged here.
    pub slowlog: Option<PathBuf>,
    /// `request_slowlog_timeout`. `None` (`0`, the default) is off; requires `slowlog`.
    pub request_slowlog_timeout: Option<Duration>,
    /// `-d key=value` pairs for the children: php_value, php_flag, php_admin_value and
    /// php_admin_flag merged in that order, one entry per key, the later table winning.
    pub ini: Vec<(String, String)>,
    /// The keys of `ini` that came from php_admin_value or php_admin_flag.
    pub admin_ini_keys: Vec<String>,
}

/// Reads and validates the configuration file at `path`.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(err) => {
            Err(ConfigErrors(vec![ConfigError::file(path, format!("cannot read the configuration file: {err}"))]))
        }
    }
}

/// Parses and validates `text`; `path` is used only in messages and [`Config::path`].
pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut report = error::Report::new(path);
    let config = file::read(text, &mut report, |raw, report| validate::config(raw, path, report));
    match (config, report.in_line_order()) {
        (Some(config), errors) if errors.is_empty() => Ok(config),
        (_, errors) => Err(ConfigErrors(errors)),
    }
}

/// The logs of `config` (the error log, each pool's access log and slowlog)
/// whose directory does not exist: a start would fail to open them. Said as
/// php-fpm says it.
pub fn missing_log_dirs(config: &Config) -> Vec<String> {
    let mut logs: Vec<(String, &std::path::Path)> = Vec::new();
    if let LogTarget::File(path) = &config.global.error_log {
        logs.push(("error_log".into(), path));
    }
    for pool in &config.pools {
        for (key, path) in [("access_log", &pool.access_log), ("slowlog", &pool.slowlog)] {
            if let Some(path) = path {
                logs.push((format!("[pool {}] {key}", pool.name), path));
            }
        }
    }
    logs.into_iter()
        .filter(|(_, path)| path.parent().is_some_and(|dir| !dir.as_os_str().is_empty() && !dir.is_dir()))
        .map(|(what, path)| format!("failed to open {what} ({}): No such file or directory (2)", path.display()))
        .collect()
}
