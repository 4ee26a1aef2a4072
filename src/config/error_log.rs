//! The `[global]` keys about rustfpm's own log beyond `error_log` and `log_level`: syslog's
//! facility, ident and socket, `log_limit`; and `daemonize`, which decides where stderr goes.

use std::path::PathBuf;

use super::error::Report;
use super::file::{Field, RawGlobal};
use super::validate::{boolean, int_in, optional, string};
use super::Global;

/// `syslog_facility` when unset (php-fpm's default).
pub(crate) const DEFAULT_SYSLOG_FACILITY: i32 = libc::LOG_DAEMON;
/// `syslog_ident` when unset (php-fpm's default).
pub(crate) const DEFAULT_SYSLOG_IDENT: &str = "php-fpm";
/// `syslog_socket` when unset: the local syslog daemon's socket.
pub(crate) const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";
/// `log_limit` when unset (php-fpm's default).
pub(crate) const DEFAULT_LOG_LIMIT: usize = 1024;
/// Smallest accepted `log_limit` (php-fpm's `ZLOG_MIN_LIMIT`).
pub(crate) const MIN_LOG_LIMIT: usize = 512;
/// Largest accepted `log_limit`: a child's line is buffered up to this size.
pub(crate) const MAX_LOG_LIMIT: usize = 1024 * 1024;

/// The facilities php-fpm's `syslog.facility` accepts, with their libc values.
pub(crate) const SYSLOG_FACILITIES: [(&str, i32); 20] = [
    ("auth", libc::LOG_AUTH),
    ("authpriv", libc::LOG_AUTHPRIV),
    ("cron", libc::LOG_CRON),
    ("daemon", libc::LOG_DAEMON),
    ("ftp", libc::LOG_FTP),
    ("kern", libc::LOG_KERN),
    ("lpr", libc::LOG_LPR),
    ("mail", libc::LOG_MAIL),
    ("news", libc::LOG_NEWS),
    ("syslog", libc::LOG_SYSLOG),
    ("user", libc::LOG_USER),
    ("uucp", libc::LOG_UUCP),
    ("local0", libc::LOG_LOCAL0),
    ("local1", libc::LOG_LOCAL1),
    ("local2", libc::LOG_LOCAL2),
    ("local3", libc::LOG_LOCAL3),
    ("local4", libc::LOG_LOCAL4),
    ("local5", libc::LOG_LOCAL5),
    ("local6", libc::LOG_LOCAL6),
    ("local7", libc::LOG_LOCAL7),
];

/// Reads the keys of this module into `global`, reporting every bad value.
pub(super) fn apply(raw: &RawGlobal<'_>, global: &mut Global, r: &mut Report<'_>) {
    if let Some(facility) = optional(&raw.syslog_facility, r, facility) {
        global.syslog_facility = facility;
    }
    if let Some(ident) = optional(&raw.syslog_ident, r, |f, r| string(f, r).map(str::to_string)) {
        global.syslog_ident = ident;
    }
    if let Some(socket) = optional(&raw.syslog_socket, r, socket) {
        global.syslog_socket = socket;
    }
    let limit = MIN_LOG_LIMIT as i64..=MAX_LOG_LIMIT as i64;
    if let Some(n) = optional(&raw.log_limit, r, |f, r| int_in(f, r, limit)) {
        global.log_limit = n as usize;
    }
    if let Some(daemonize) = optional(&raw.daemonize, r, boolean) {
        global.daemonize = daemonize;
    }
}

/// A facility name, matched without regard to case as php-fpm does.
fn facility(f: &Field<'_>, r: &mut Report<'_>) -> Option<i32> {
    let name = string(f, r)?;
    let found = SYSLOG_FACILITIES.iter().find(|(known, _)| known.eq_ignore_ascii_case(name));
    if found.is_none() {
        let names: Vec<&str> = SYSLOG_FACILITIES.iter().map(|(known, _)| *known).collect();
        r.bad(f, format!("unknown syslog facility; use one of: {}", names.join(", ")));
    }
    found.map(|(_, value)| *value)
}

fn socket(f: &Field<'_>, r: &mut Report<'_>) -> Option<PathBuf> {
    let path = PathBuf::from(string(f, r)?);
    if path.is_absolute() {
        return Some(path);
    }
    r.bad(f, "must be an absolute path");
    None
}

/// The facility's name, for `rustfpm convert`.
pub(crate) fn facility_name(value: i32) -> &'static str {
    SYSLOG_FACILITIES.iter().find(|(_, known)| *known == value).map_or("daemon", |(name, _)| name)
}
