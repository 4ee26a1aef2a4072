//! Renders php-fpm's `access.format` (parsed with the configuration,
//! [`crate::config::access_format`]) into one line per request from a [`Record`]. Pure: no I/O,
//! no clock (the caller passes "now").

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::access_format::{AccessFormat, CpuPart, DurationUnit, MemoryUnit, Token};

/// Appends the line for `rec` (without a newline) to `out`; `now` is the time of `%T`.
/// Control characters in values (a decoded `%0A` in SCRIPT_NAME, say) are written as
/// `\xNN`, so a request cannot forge log lines.
pub fn render(format: &AccessFormat, rec: &Record, now: SystemTime, out: &mut String) {
    for token in format.tokens() {
        let start = out.len();
        render_token(format, token, rec, now, out);
        if !matches!(token, Token::Literal(_)) && out[start..].contains(char::is_control) {
            let value = escape_controls(&out[start..]);
            out.truncate(start);
            out.push_str(&value);
        }
    }
}

fn render_token(format: &AccessFormat, token: &Token, rec: &Record, now: SystemTime, out: &mut String) {
    use std::fmt::Write;
    // `write_str`, not `write!`, for text: no formatting machinery, no String made.
    let _ = match token {
        Token::Literal(s) => out.write_str(s),
        Token::RemoteIp => match rec.remote_ip {
            Some(ip) => write!(out, "{ip}"),
            None => out.write_str("-"),
        },
        Token::User => out.write_str(&rec.user),
        Token::Accepted(layout) => strftime_into(out, layout, rec.accepted),
        Token::Now(layout) => strftime_into(out, layout, Some(now)),
        Token::Method => out.write_str(or_dash(&rec.method)),
        Token::Uri => out.write_str(&rec.uri),
        Token::QueryMark => out.write_str(if rec.query.is_empty() { "" } else { "?" }),
        Token::Query => out.write_str(&rec.query),
        Token::Status => write!(out, "{}", rec.status),
        Token::Script => out.write_str(or_dash(&rec.script)),
        Token::Duration(unit) => duration(out, rec.duration, *unit),
        Token::Memory(unit) => memory(out, rec.memory, *unit),
        Token::Cpu(part) => cpu(out, rec, *part),
        Token::Param(name) => out.write_str(value(&format.params, &rec.params, name)),
        Token::Header(name) => out.write_str(value(&format.headers, &rec.headers, name)),
        Token::Pool => out.write_str(or_dash(&rec.pool)),
        Token::Pid => number_or_dash(out, rec.pid),
        Token::ParentPid => number_or_dash(out, rec.parent_pid),
        Token::ContentLength => write!(out, "{}", rec.content_length),
    };
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn number_or_dash(out: &mut String, n: Option<i32>) -> std::fmt::Result {
    use std::fmt::Write;
    match n {
        Some(n) => write!(out, "{n}"),
        None => out.write_str("-"),
    }
}

/// The value collected for `name` (`values` is in the order of `names`), or `-`.
fn value<'r>(names: &[String], values: &'r [Option<String>], name: &str) -> &'r str {
    let at = names.iter().position(|n| n.eq_ignore_ascii_case(name));
    at.and_then(|i| values.get(i)).and_then(|v| v.as_deref()).filter(|v| !v.is_empty()).unwrap_or("-")
}

/// Everything a line can show of one request.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// `%R`: the FastCGI client's address (None on a unix socket).
    pub remote_ip: Option<IpAddr>,
    /// `%u`: REMOTE_USER.
    pub user: String,
    /// `%m`: REQUEST_METHOD.
    pub method: String,
    /// `%r`: SCRIPT_NAME.
    pub uri: String,
    /// `%q`: QUERY_STRING.
    pub query: String,
    /// `%f`: SCRIPT_FILENAME.
    pub script: String,
    /// `%l`: CONTENT_LENGTH.
    pub content_length: u64,
    /// `%s`: the HTTP status.
    pub status: u16,
    /// The code the script set after its headers went out with [`Record::status`]:
    /// php-fpm logs it (and suppresses by it) instead.
    pub script_status: Option<u16>,
    /// `%t`: when the request arrived.
    pub accepted: Option<SystemTime>,
    /// `%d`: how long it took.
    pub duration: Duration,
    /// Values of the format's `%{..}e` params, in the order of [`AccessFormat::params`].
    pub params: Vec<Option<String>>,
    /// Values of the format's `%{..}o` headers, in the order of [`AccessFormat::headers`].
    pub headers: Vec<Option<String>>,
    /// `%n`: the pool.
    pub pool: Arc<str>,
    /// `%p`: the php-cgi child.
    pub pid: Option<i32>,
    /// `%P`: that child's parent.
    pub parent_pid: Option<i32>,
    /// Bytes, see [`Token::Memory`].
    pub memory: Option<u64>,
    /// CPU time of the child during the request.
    pub cpu: Option<CpuTime>,
}

impl Record {
    /// Bytes of text the record holds.
    pub fn text_bytes(&self) -> usize {
        let texts = [&self.user, &self.method, &self.uri, &self.query, &self.script];
        let values = self.params.iter().chain(&self.headers).flatten();
        texts.iter().map(|s| s.len()).sum::<usize>() + self.pool.len() + values.map(String::len).sum::<usize>()
    }
}

/// CPU time spent, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    /// User time.
    pub user: f64,
    /// System time.
    pub system: f64,
}

/// `s` with each control character written as `\xNN`.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn duration(out: &mut String, d: Duration, unit: DurationUnit) -> std::fmt::Result {
    use std::fmt::Write;
    match unit {
        DurationUnit::Seconds => write!(out, "{:.3}", d.as_secs_f64()),
        DurationUnit::Milli => write!(out, "{:.3}", d.as_secs_f64() * 1000.0),
        DurationUnit::Micro => write!(out, "{}", d.as_micros()),
    }
}

fn memory(out: &mut String, bytes: Option<u64>, unit: MemoryUnit) -> std::fmt::Result {
    use std::fmt::Write;
    let Some(bytes) = bytes else {
        return write!(out, "-");
    };
    match unit {
        MemoryUnit::Bytes => write!(out, "{bytes}"),
        MemoryUnit::Kilo => write!(out, "{}", bytes / 1024),
        MemoryUnit::Mega => write!(out, "{}", bytes / 1024 / 1024),
    }
}

fn cpu(out: &mut String, rec: &Record, part: CpuPart) -> std::fmt::Result {
    use std::fmt::Write;
    let (Some(t), secs) = (rec.cpu, rec.duration.as_secs_f64()) else {
        return write!(out, "-");
    };
    let spent = match part {
        CpuPart::Total => t.user + t.system,
        CpuPart::User => t.user,
        CpuPart::System => t.system,
    };
    let percent = if secs > 0.0 { spent / secs * 100.0 } else { 0.0 };
    write!(out, "{percent:.2}")
}

/// `t` in local time, laid out by C's strftime (as php-fpm), appended to
/// `out`; `-` when unknown. The last second laid out is kept per
/// layout (the lines of one second share it: C's strftime and the time zone
/// look-up cost more than the rest of a line).
fn strftime_into(out: &mut String, layout: &str, t: Option<SystemTime>) -> std::fmt::Result {
    thread_local! {
        static LAST: std::cell::RefCell<Vec<(String, i64, String)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let Some(t) = t else {
        out.push('-');
        return Ok(());
    };
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    LAST.with_borrow_mut(|last| {
        let at = match last.iter().position(|(l, _, _)| l == layout) {
            Some(at) => at,
            None => {
                last.push((layout.to_string(), i64::MIN, String::new()));
                last.len() - 1
            }
        };
        let (_, when, text) = &mut last[at];
        if *when != secs {
            *text = crate::sys::localtime::strftime(layout, secs).unwrap_or_default();
            *when = secs;
        }
        out.push_str(text);
    });
    Ok(())
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
