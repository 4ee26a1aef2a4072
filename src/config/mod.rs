//! The native TOML configuration: `[global]` and `[pool.NAME]` tables whose keys are php-fpm's
//! directive names with `.` written `_` (`pm_max_children`).
//!
//! Reading happens in two steps, as two types: [`file`] walks the spanned TOML tree into a raw
//! file type that knows every key and its line (unknown keys are errors there), and [`validate`]
//! turns that into the typed [`Config`]. Neither step stops at the first problem: every error is
//! collected and returned together in [`ConfigErrors`], each naming file, line, pool, key and value.

mod error;
mod file;
mod listen;
mod tables;
mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use error::{ConfigError, ConfigErrors};
pub use units::{parse_duration, parse_size};

/// `[global] error_log` when unset.
pub const DEFAULT_ERROR_LOG: LogTarget = LogTarget::Stderr;
/// `[global] log_level` when unset (php-fpm's default).
pub const DEFAULT_LOG_LEVEL: LogLevel = LogLevel::Notice;
/// `listen_backlog` when unset (php-fpm's default).
pub const DEFAULT_LISTEN_BACKLOG: i32 = 511;
/// What `listen_backlog = -1` ("the maximum", in php-fpm) becomes.
pub const MAX_LISTEN_BACKLOG: i32 = 65535;
/// `listen_mode` when unset.
pub const DEFAULT_LISTEN_MODE: u32 = 0o660;
/// `pm` when unset.
pub const DEFAULT_PM: PmMode = PmMode::Static;
/// Largest accepted `pm_max_children`.
pub const MAX_CHILDREN: usize = 4096;
/// `php_cgi` when unset; looked up on `PATH` when the children are spawned.
pub const DEFAULT_PHP_CGI: &str = "php-cgi";
/// `clear_env` when unset (php-fpm's default).
pub const DEFAULT_CLEAR_ENV: bool = true;
/// `security_limit_extensions` when unset.
pub const DEFAULT_SECURITY_LIMIT_EXTENSIONS: &[&str] = &[".php"];
/// `queue_max_len` when unset is `pm_max_children * DEFAULT_QUEUE_FACTOR`.
pub const DEFAULT_QUEUE_FACTOR: usize = 16;

/// A validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages and reloads).
    pub path: PathBuf,
    pub global: Global,
    /// In file order.
    pub pools: Vec<Pool>,
}

/// The `[global]` table.
#[derive(Debug, Clone)]
pub struct Global {
    pub error_log: LogTarget,
    pub log_level: LogLevel,
    pub pid: Option<PathBuf>,
}

impl Default for Global {
    fn default() -> Self {
        Global { error_log: DEFAULT_ERROR_LOG, log_level: DEFAULT_LOG_LEVEL, pid: None }
    }
}

/// Where rustfpm's own log goes: `"stderr"` or an absolute file path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    File(PathBuf),
}

/// php-fpm's log levels, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Notice,
    Warning,
    Error,
    Alert,
}

impl LogLevel {
    /// Every level with its php-fpm spelling.
    pub const ALL: [(&'static str, LogLevel); 5] = [
        ("debug", LogLevel::Debug),
        ("notice", LogLevel::Notice),
        ("warning", LogLevel::Warning),
        ("error", LogLevel::Error),
        ("alert", LogLevel::Alert),
    ];
}

/// A pool's `listen` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "{}", path.display()),
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// How a pool's children are managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmMode {
    /// A fixed number (`pm_max_children`) of children, always running.
    Static,
}

/// A validated `[pool.NAME]` table.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub listen: ListenAddr,
    pub listen_backlog: i32,
    pub listen_owner: Option<String>,
    pub listen_group: Option<String>,
    pub listen_mode: u32,
    pub user: Option<String>,
    pub group: Option<String>,
    pub pm: PmMode,
    pub pm_max_children: usize,
    /// Not resolved here: a bare name is looked up on `PATH` at spawn time.
    pub php_cgi: PathBuf,
    /// Passed to the children as `-c`.
    pub php_ini: Option<PathBuf>,
    pub clear_env: bool,
    /// `[pool.NAME.env]`, sorted by name.
    pub env: Vec<(String, String)>,
    /// Empty means no limit.
    pub security_limit_extensions: Vec<String>,
    /// 0 means no queue: a request that finds every child busy is answered 503 at once.
    pub queue_max_len: usize,
    /// `-d key=value` pairs for the children: php_value, php_flag, php_admin_value and
    /// php_admin_flag merged in that order, one entry per key, the later table winning.
    pub ini: Vec<(String, String)>,
    /// The keys of `ini` that came from php_admin_value or php_admin_flag.
    pub admin_ini_keys: Vec<String>,
}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(err) => {
            Err(ConfigErrors(vec![ConfigError::file(path, format!("cannot read the configuration file: {err}"))]))
        }
    }
}

/// Parses and validates `text`; `path` is used only in messages and [`Config::path`].
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut report = error::Report::new(path);
    let config = file::read(text, &mut report, |raw, report| validate::config(raw, path, report));
    match (config, report.finish()) {
        (Some(config), errors) if errors.is_empty() => Ok(config),
        (_, errors) => Err(ConfigErrors(errors)),
    }
}
