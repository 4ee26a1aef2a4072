//! A pool's request logs: `access_log` with `access_format`, and `slowlog` with
//! `request_slowlog_timeout`, with php-fpm's rules.

use std::path::PathBuf;

use toml::de::DeValue;

use super::access_format::AccessFormat;
use super::error::Report;
use super::file::{Field, RawPoolKeys};
use super::validate::{absolute_path, duration, optional, set, string, wrong_type};
use super::Pool;

/// Fills the pool's log fields. An empty path is off, as in php-fpm.
pub(super) fn apply(k: &RawPoolKeys<'_>, pool: &mut Pool, r: &mut Report<'_>) {
    pool.access_log = optional(&k.access_log, r, log_path).flatten();
    let format = |f: &Field<'_>, r: &mut Report<'_>| {
        let text = string(f, r)?;
        match AccessFormat::parse(text) {
            Ok(format) => Some(format),
            Err(e) => {
                r.bad(f, format!("invalid access log format: {e}"));
                None
            }
        }
    };
    set(&mut pool.access_format, optional(&k.access_format, r, format));
    set(&mut pool.access_suppress_path, optional(&k.access_suppress_path, r, uri_paths));
    pool.slowlog = optional(&k.slowlog, r, log_path).flatten();
    pool.request_slowlog_timeout = optional(&k.request_slowlog_timeout, r, duration).filter(|d| !d.is_zero());
    if let (Some(_), None, Some(f)) = (pool.request_slowlog_timeout, &pool.slowlog, &k.request_slowlog_timeout) {
        // php-fpm refuses this too ("'slowlog' must be specified for use with 'request_slowlog_timeout'").
        r.bad(f, "needs `slowlog`: set the file slow requests are logged to, or set the timeout to 0");
    }
}

/// A list of URI paths, each starting with '/'.
fn uri_paths(f: &Field<'_>, r: &mut Report<'_>) -> Option<Vec<String>> {
    let DeValue::Array(items) = f.value else {
        return wrong_type(f, r, "an array of strings");
    };
    let paths: Option<Vec<String>> = items
        .iter()
        .map(|item| match item.get_ref() {
            DeValue::String(s) if s.starts_with('/') => Some(s.to_string()),
            _ => None,
        })
        .collect();
    if paths.is_none() {
        r.bad(f, "must be a list of paths, each starting with '/': [\"/ping\", \"/status\"]");
    }
    paths
}

/// An absolute path, or `""` for off.
fn log_path(f: &Field<'_>, r: &mut Report<'_>) -> Option<Option<PathBuf>> {
    if string(f, r)?.is_empty() {
        return Some(None);
    }
    absolute_path(f, r).map(Some)
}
