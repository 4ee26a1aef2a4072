//! php-fpm style logging: `[26-Nov-2026 14:51:02] NOTICE: message`.
//!
//! One global logger, set once at start-up. Each line is written with a single
//! `write` call so lines from different threads never interleave.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{Global, LogLevel, LogTarget, DEFAULT_LOG_LIMIT};
use crate::sys::syslog::Syslog;

static LEVEL: AtomicU8 = AtomicU8::new(1);
static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LOG_LIMIT);
static LAUNCHED: AtomicBool = AtomicBool::new(false);
static FORCE_STDERR: AtomicBool = AtomicBool::new(false);
/// The least level copied to stderr while starting (notices, or errors for a daemon).
static START_LEVEL: AtomicU8 = AtomicU8::new(1);
static TARGET: OnceLock<Mutex<Sink>> = OnceLock::new();

/// Appended to each piece of a message split at `log_limit` by [`write_split`] (PHP's
/// messages after `fastcgi_finish_request()`), except the last.
pub const CONTINUES: &str = " (line continues)";
/// Ends a line of rustfpm's own that was cut at `log_limit` (as php-fpm does).
const CUT: &str = "...";

enum Sink {
    Stderr,
    File { path: PathBuf, file: File },
    Syslog(Syslog),
}

fn level_rank(level: LogLevel) -> u8 {
    match level {
        LogLevel::Debug => 0,
        LogLevel::Notice => 1,
        LogLevel::Warning => 2,
        LogLevel::Error => 3,
        LogLevel::Alert => 4,
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "DEBUG",
        LogLevel::Notice => "NOTICE",
        LogLevel::Warning => "WARNING",
        LogLevel::Error => "ERROR",
        LogLevel::Alert => "ALERT",
    }
}

/// php-fpm's mapping of its levels to syslog priorities (zlog.c). php-fpm sends
/// every message at the priority of the configured `log_level`; rustfpm sends
/// each at its own level's.
fn syslog_priority(level: LogLevel) -> i32 {
    match level {
        LogLevel::Debug => libc::LOG_DEBUG,
        LogLevel::Notice => libc::LOG_NOTICE,
        LogLevel::Warning => libc::LOG_WARNING,
        LogLevel::Error => libc::LOG_ERR,
        LogLevel::Alert => libc::LOG_ALERT,
    }
}

/// Sets the minimum level, the line limit and the destination from the
/// `[global]` settings. A file is opened for appending.
pub fn init(global: &Global) -> std::io::Result<()> {
    let sink = match &global.error_log {
        LogTarget::Stderr => Sink::Stderr,
        LogTarget::File(path) => {
            // php-fpm's words: the line names the setting as well as the file.
            let file = open_append(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("failed to open error_log ({}): {e}", path.display()))
            })?;
            Sink::File { file, path: path.clone() }
        }
        LogTarget::Syslog => {
            Sink::Syslog(Syslog::new(global.syslog_socket.clone(), global.syslog_facility, global.syslog_ident.clone()))
        }
    };
    LEVEL.store(level_rank(global.log_level), Ordering::Relaxed);
    LIMIT.store(global.log_limit, Ordering::Relaxed);
    match TARGET.get() {
        Some(current) => *lock(current) = sink,
        None => {
            let _ = TARGET.set(Mutex::new(sink));
        }
    }
    Ok(())
}

/// `-O`: every line goes to stderr as well as to `error_log` (as php-fpm's `--force-stderr`).
pub fn force_stderr() {
    FORCE_STDERR.store(true, Ordering::Relaxed);
}

/// A daemon's start: only errors and worse reach the caller's stderr (php-fpm's daemon
/// prints nothing else there; the rest is in `error_log`).
pub fn daemon_start() {
    START_LEVEL.store(level_rank(LogLevel::Error), Ordering::Relaxed);
}

/// Marks start-up as done (once the configuration is in force, before any child
/// starts, as php-fpm's `fpm_stdio_init_final`), or not done after all (the start
/// failed). Until then, notices and worse also go to stderr when the log is
/// elsewhere, as in php-fpm, so whoever started rustfpm sees why it failed.
pub fn set_launched(launched: bool) {
    LAUNCHED.store(launched, Ordering::Relaxed);
}

/// Reopens the log file (SIGUSR1), so logrotate can move it away.
pub fn reopen() -> std::io::Result<()> {
    let Some(sink) = TARGET.get() else {
        return Ok(());
    };
    let mut sink = lock(sink);
    if let Sink::File { path, file } = &mut *sink {
        *file = open_append(path)?;
    }
    Ok(())
}

/// The error log's mode when rustfpm creates it (php-fpm's).
pub const FILE_MODE: u32 = 0o600;

/// Opens the error log for appending without following a link another user placed
/// ([`crate::sys::safe_fs`]); the error names the path (and the owner of a refused link).
fn open_append(path: &Path) -> std::io::Result<File> {
    crate::sys::safe_fs::open_append(path, FILE_MODE)
}

fn lock(m: &Mutex<Sink>) -> std::sync::MutexGuard<'_, Sink> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// True when a message at `level` would be written.
pub fn enabled(level: LogLevel) -> bool {
    level_rank(level) >= LEVEL.load(Ordering::Relaxed)
}

/// How many bytes of a child's text fit on one line at `level` next to
/// `decoration` bytes of our own, within `log_limit` (newline included).
pub fn room(level: LogLevel, decoration: usize) -> usize {
    let prefix = "[26-Nov-2026 14:51:02] ".len() + level_name(level).len() + ": ".len();
    LIMIT.load(Ordering::Relaxed).saturating_sub(prefix + decoration + 1).max(4)
}

/// Writes one line. Use the `notice!`, `warning!`, … macros instead.
pub fn write(level: LogLevel, args: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let limit = LIMIT.load(Ordering::Relaxed);
    let line = cut(format!("[{}] {}: {}", timestamp(), level_name(level), args), limit) + "\n";
    put(level, line.as_bytes(), || cut(format!("[{}] {}", level_name(level), args), limit));
}

/// Writes a line of a child's output as php-fpm does: `[time] LEVEL: {head}{bytes}{tail}`, or
/// with `raw` the bytes alone (`decorate_workers_output = no`). The bytes are written as they
/// are (php-fpm does not convert them either) and not cut: the caller fits them to
/// [`child_room`].
pub fn write_child(level: LogLevel, raw: bool, head: &str, bytes: &[u8], tail: &str) {
    if !enabled(level) {
        return;
    }
    let mut line =
        if raw { Vec::new() } else { format!("[{}] {}: {head}", timestamp(), level_name(level)).into_bytes() };
    line.extend_from_slice(bytes);
    line.extend_from_slice(tail.as_bytes());
    line.push(b'\n');
    let limit = LIMIT.load(Ordering::Relaxed);
    put(level, &line, || cut(format!("[{}] {head}{}{tail}", level_name(level), String::from_utf8_lossy(bytes)), limit));
}

/// How many bytes of a child's output fit on one line next to `decoration` bytes of ours
/// (none when `raw`), within `log_limit` with the newline, as php-fpm counts.
pub fn child_room(level: LogLevel, raw: bool, decoration: usize) -> usize {
    match raw {
        true => LIMIT.load(Ordering::Relaxed).saturating_sub(1).max(4),
        false => room(level, decoration),
    }
}

/// Sends a formatted line to the sink (and to stderr while starting, or when syslog fails).
fn put(level: LogLevel, line: &[u8], syslog_text: impl FnOnce() -> String) {
    let starting = !LAUNCHED.load(Ordering::Relaxed) && level_rank(level) >= START_LEVEL.load(Ordering::Relaxed);
    let starting = starting || FORCE_STDERR.load(Ordering::Relaxed);
    let to_stderr = match TARGET.get().map(lock).as_deref_mut() {
        Some(Sink::File { file, .. }) => {
            let _ = file.write_all(line);
            starting
        }
        Some(Sink::Syslog(syslog)) => {
            // Without a syslog daemon the line goes to stderr rather than nowhere.
            let sent = syslog.send(syslog_priority(level), &syslog_text()).is_ok();
            starting || !sent
        }
        Some(Sink::Stderr) | None => true,
    };
    if to_stderr {
        let _ = std::io::stderr().write_all(line);
    }
}

/// Writes `text` between `head` and `tail` in as many lines as `log_limit`
/// needs, each but the last marked [`CONTINUES`]: for text from children,
/// which is split, never cut.
pub fn write_split(level: LogLevel, head: &str, text: &str, tail: &str) {
    let room = room(level, head.len() + tail.len() + CONTINUES.len());
    let pieces = split(text, room);
    let last = pieces.len().saturating_sub(1);
    for (i, piece) in pieces.into_iter().enumerate() {
        let mark = if i < last { CONTINUES } else { "" };
        write(level, format_args!("{head}{piece}{tail}{mark}"));
    }
}

/// `text` in pieces of at most `room` bytes (at least 4), cut between characters.
fn split(mut text: &str, room: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    while text.len() > room {
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, rest) = text.split_at(end);
        pieces.push(piece);
        text = rest;
    }
    pieces.push(text);
    pieces
}

/// `line` cut to `limit - 1` bytes (room for the newline), its end replaced
/// by `...`, when it is longer.
fn cut(mut line: String, limit: usize) -> String {
    if line.len() < limit {
        return line;
    }
    let mut end = limit.saturating_sub(1 + CUT.len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.truncate(end);
    line.push_str(CUT);
    line
}

/// Local time as php-fpm prints it: `26-Nov-2026 14:51:02`.
pub fn timestamp() -> String {
    crate::sys::localtime::now("%d-%b-%Y %H:%M:%S")
}

/// Logs at DEBUG level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::config::LogLevel::Debug, format_args!($($arg)*)) };
}
/// Logs at NOTICE level.
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => { $crate::log::write($crate::config::LogLevel::Notice, format_args!($($arg)*)) };
}
/// Logs at WARNING level.
#[macro_export]
macro_rules! warning {
    ($($arg:tt)*) => { $crate::log::write($crate::config::LogLevel::Warning, format_args!($($arg)*)) };
}
/// Logs at ERROR level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::config::LogLevel::Error, format_args!($($arg)*)) };
}
/// Logs at ALERT level.
#[macro_export]
macro_rules! alert {
    ($($arg:tt)*) => { $crate::log::write($crate::config::LogLevel::Alert, format_args!($($arg)*)) };
}

/// Lets a repeated log line through at most once per `every`. Shared by the
/// threads that may log it (a listener's accept loops): the lock is taken only
/// when there is something to log.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        Throttle { every, last: Mutex::new(None) }
    }

    /// Logs `args` as a warning if one may be logged now, else at debug level
    /// (a peer's repeated fault stays out of the warnings, not out of a debug log).
    pub fn warning(&self, args: std::fmt::Arguments<'_>) {
        let level = if self.allow(Instant::now()) { LogLevel::Warning } else { LogLevel::Debug };
        write(level, args);
    }

    /// Whether a line may be logged at `now` (and if so, counts it).
    pub fn allow(&self, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = last.is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if due {
            *last = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_line_through_per_period() {
        let start = Instant::now();
        let throttle = Throttle::new(Duration::from_secs(1));
        let allowed: Vec<bool> = [0, 100, 999, 1000, 1500, 2100]
            .iter()
            .map(|ms| throttle.allow(start + Duration::from_millis(*ms)))
            .collect();
        assert_eq!(allowed, [true, false, false, true, false, true]);
    }

    #[test]
    fn short_lines_are_kept() {
        assert_eq!(cut("abc".into(), 1024), "abc");
    }

    #[test]
    fn long_lines_end_in_dots_and_fit_with_their_newline() {
        let line = cut("x".repeat(2000), 1024);
        assert_eq!(line.len() + 1, 1024);
        assert!(line.ends_with("x..."), "{line}");
    }

    #[test]
    fn cutting_respects_characters() {
        let line = cut("é".repeat(1000), 512);
        assert!(line.len() < 512 && line.ends_with("é..."), "{line}");
    }

    #[test]
    fn room_leaves_space_for_prefix_decoration_and_newline() {
        // The limit is the default (1024) unless a test binary's other test set it.
        let limit = LIMIT.load(Ordering::Relaxed);
        let prefix = "[26-Nov-2026 14:51:02] WARNING: ".len();
        assert_eq!(room(LogLevel::Warning, 50), limit - prefix - 50 - 1);
        assert_eq!(room(LogLevel::Warning, usize::MAX / 2), 4);
    }

    #[test]
    fn split_keeps_every_byte_and_every_character() {
        assert_eq!(split("", 4), [""]);
        assert_eq!(split("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        let text = "aé€😀".repeat(50);
        let pieces = split(&text, 5);
        assert!(pieces.iter().all(|p| p.len() <= 5 && !p.is_empty()));
        assert_eq!(pieces.concat(), text);
    }
}
