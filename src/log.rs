//! php-fpm style logging: `[26-Nov-2026 14:51:02] NOTICE: message`.
//!
//! One global logger, set once at start-up. Each line is written with a single
//! `write` call so lines from different threads never interleave.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::config::{LogLevel, LogTarget};

static LEVEL: AtomicU8 = AtomicU8::new(1);
static TARGET: OnceLock<Mutex<Sink>> = OnceLock::new();

enum Sink {
    Stderr,
    File { path: PathBuf, file: File },
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

/// Sets the minimum level and the destination. A file is opened for appending.
pub fn init(level: LogLevel, target: &LogTarget) -> std::io::Result<()> {
    LEVEL.store(level_rank(level), Ordering::Relaxed);
    let sink = match target {
        LogTarget::Stderr => Sink::Stderr,
        LogTarget::File(path) => Sink::File { file: open_append(path)?, path: path.clone() },
    };
    match TARGET.get() {
        Some(current) => *lock(current) = sink,
        None => {
            let _ = TARGET.set(Mutex::new(sink));
        }
    }
    Ok(())
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

fn open_append(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn lock(m: &Mutex<Sink>) -> std::sync::MutexGuard<'_, Sink> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// True when a message at `level` would be written.
pub fn enabled(level: LogLevel) -> bool {
    level_rank(level) >= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line. Use the `notice!`, `warning!`, … macros instead.
pub fn write(level: LogLevel, args: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let line = format!("[{}] {}: {}\n", timestamp(), level_name(level), args);
    match TARGET.get().map(lock).as_deref_mut() {
        Some(Sink::File { file, .. }) => {
            let _ = file.write_all(line.as_bytes());
        }
        _ => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Local time as php-fpm prints it: `26-Nov-2026 14:51:02`.
pub fn timestamp() -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let now = libc_now();
    let month = MONTHS.get(now.tm_mon as usize).copied().unwrap_or("???");
    format!(
        "{:02}-{}-{} {:02}:{:02}:{:02}",
        now.tm_mday,
        month,
        now.tm_year + 1900,
        now.tm_hour,
        now.tm_min,
        now.tm_sec
    )
}

fn libc_now() -> libc::tm {
    // SAFETY: time(NULL) has no preconditions; localtime_r writes only into `tm`,
    // which is a plain C struct for which all-zero bytes are a valid value.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    }
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
