//! The status page's formats, byte for byte as php-fpm 8.2 writes them
//! (`sapi/fpm/fpm/fpm_status.c`, checked against a running php-fpm 8.2):
//! field names, order, alignment, separators, Content-Types and escaping.
//!
//! Where php-fpm writes a value unescaped and so can produce a broken
//! document (a `"` in a script name inside JSON, say), rustfpm escapes every
//! string the way php-fpm escapes the query string: JSON like PHP's
//! `json_encode` (`\/`, `\u00e9`), XML and HTML with `&amp;` `&lt;` `&gt;`
//! `&quot;`. For ordinary values the output is the same as php-fpm's.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{PoolStatus, ProcessStatus};

/// Output formats, chosen by the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The default: `name:   value` lines.
    Text,
    /// `?json`
    Json,
    /// `?xml`
    Xml,
    /// `?html`
    Html,
    /// `?openmetrics`: Prometheus/OpenMetrics text; `full` adds nothing.
    OpenMetrics,
}

/// php-fpm's Content-Types. PHP appends `;charset=UTF-8` (its
/// `default_charset`) to the `text/*` ones, so php-fpm sends them that way.
const TEXT_TYPE: &str = "text/plain;charset=UTF-8";
const JSON_TYPE: &str = "application/json";
const XML_TYPE: &str = "text/xml;charset=UTF-8";
const HTML_TYPE: &str = "text/html;charset=UTF-8";
const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// From a query string ("json&full", "full", "html", "openmetrics", ""): the
/// format and whether `full` was asked.
///
/// Like php-fpm, only the presence of a key counts (`?json=0` still asks for
/// JSON), and when several formats are named the first of html, xml, json,
/// openmetrics wins, whatever their order in the query.
pub fn parse_query(query: &str) -> (Format, bool) {
    let (mut full, mut html, mut xml, mut json, mut openmetrics) = (false, false, false, false, false);
    for pair in query.split('&') {
        let raw_key = pair.split_once('=').map_or(pair, |(k, _)| k);
        // PHP's `$_GET`: the key is url-decoded and `full[]` is the key `full`.
        let key = percent_decode(raw_key);
        let key = key.split_once('[').map_or(key.as_str(), |(k, _)| k);
        match key {
            "full" => full = true,
            "html" => html = true,
            "xml" => xml = true,
            "json" => json = true,
            "openmetrics" => openmetrics = true,
            _ => {}
        }
    }
    let format = if html {
        Format::Html
    } else if xml {
        Format::Xml
    } else if json {
        Format::Json
    } else if openmetrics {
        Format::OpenMetrics
    } else {
        Format::Text
    };
    (format, full)
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space), lossy on
/// bytes that are not UTF-8.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Content-Type and body for `status` in `format`; `now` is used for
/// "start since" and the per-process "start since".
///
/// `last request cpu` and `last request memory` not measured (yet) are
/// written as `0.00` and `0`, as php-fpm writes them for a process that is
/// running a request.
///
/// A process whose `start_time` is not known yet is shown as started `now`
/// (`start since` 0).
pub fn render(status: &PoolStatus, format: Format, full: bool, now: SystemTime) -> (&'static str, String) {
    let mut out = String::with_capacity(if full { 1024 + 512 * status.processes.len() } else { 1024 });
    let content_type = match format {
        Format::Text => {
            text(&mut out, status, full, now);
            TEXT_TYPE
        }
        Format::Json => {
            json(&mut out, status, full, now);
            JSON_TYPE
        }
        Format::Xml => {
            xml(&mut out, status, full, now);
            XML_TYPE
        }
        Format::Html => {
            html(&mut out, status, full, now);
            HTML_TYPE
        }
        Format::OpenMetrics => {
            openmetrics(&mut out, status, now);
            OPENMETRICS_TYPE
        }
    };
    (content_type, out)
}

/// One process's fields, as php-fpm prints them (empty strings become `-`).
struct Proc<'a> {
    pid: i32,
    state: &'a str,
    start_time: SystemTime,
    start_since: u64,
    requests: u64,
    /// Microseconds, as php-fpm prints `request duration`.
    duration_us: u64,
    method: &'a str,
    uri: &'a str,
    content_length: u64,
    user: &'a str,
    script: &'a str,
    /// `%.2f`
    cpu: String,
    memory: u64,
}

impl<'a> Proc<'a> {
    fn new(p: &'a ProcessStatus, now: SystemTime) -> Self {
        let dash = |s: &'a str| if s.is_empty() { "-" } else { s };
        let start_time = p.start_time.unwrap_or(now);
        let cpu = p.last_request_cpu.filter(|c| c.is_finite()).unwrap_or(0.0);
        Proc {
            pid: p.pid,
            state: p.state,
            start_time,
            start_since: since(start_time, now),
            requests: p.requests,
            duration_us: u64::try_from(p.request_duration.as_micros()).unwrap_or(u64::MAX),
            method: dash(&p.request_method),
            uri: dash(&p.request_uri),
            content_length: p.content_length,
            user: dash(&p.user),
            script: dash(&p.script),
            cpu: format!("{cpu:.2}"),
            memory: p.last_request_memory.unwrap_or(0),
        }
    }
}

fn procs(status: &PoolStatus, now: SystemTime) -> impl Iterator<Item = Proc<'_>> {
    status.processes.iter().map(move |p| Proc::new(p, now))
}

/// A field's value, written by each format its own way (see [`Shown`]).
#[derive(Debug, Clone, Copy)]
enum FieldValue<'a> {
    /// Text from the pool or a request: escaped for the format (quoted in JSON).
    Str(&'a str),
    /// A count or a pid (wide enough for either, as it is).
    Num(i128),
    /// Written as it is (the CPU's `%.2f`).
    Raw(&'a str),
    /// Local time in text and HTML, seconds since the epoch in JSON and XML.
    Time(SystemTime),
}

/// A field's name (php-fpm's, as JSON keys and HTML headers show it) and value.
type Field<'a> = (&'static str, FieldValue<'a>);

/// The pool's fields, in php-fpm's order: every format but OpenMetrics writes
/// these, so a field added here shows in all of them.
fn pool_fields(s: &PoolStatus, now: SystemTime) -> [Field<'_>; 14] {
    let n = |v: u64| FieldValue::Num(v.into());
    let u = |v: usize| FieldValue::Num(v as i128);
    [
        ("pool", FieldValue::Str(&s.pool)),
        ("process manager", FieldValue::Str(s.process_manager)),
        ("start time", FieldValue::Time(s.start_time)),
        ("start since", n(since(s.start_time, now))),
        ("accepted conn", n(s.accepted_conn)),
        ("listen queue", u(s.listen_queue)),
        ("max listen queue", u(s.max_listen_queue)),
        ("listen queue len", u(s.listen_queue_len)),
        ("idle processes", u(s.idle_processes)),
        ("active processes", u(s.active_processes)),
        ("total processes", u(s.total_processes)),
        ("max active processes", u(s.max_active_processes)),
        ("max children reached", n(s.max_children_reached)),
        ("slow requests", n(s.slow_requests)),
    ]
}

/// The names of a process's fields (`full`), in php-fpm's order.
const PROC_NAMES: [&str; 13] = [
    "pid",
    "state",
    "start time",
    "start since",
    "requests",
    "request duration",
    "request method",
    "request uri",
    "content length",
    "user",
    "script",
    "last request cpu",
    "last request memory",
];

/// A process's fields, named by [`PROC_NAMES`].
fn proc_fields<'p>(p: &'p Proc<'_>) -> [Field<'p>; 13] {
    let n = |v: u64| FieldValue::Num(v.into());
    let values = [
        FieldValue::Num(p.pid.into()),
        FieldValue::Str(p.state),
        FieldValue::Time(p.start_time),
        n(p.start_since),
        n(p.requests),
        n(p.duration_us),
        FieldValue::Str(p.method),
        FieldValue::Str(p.uri),
        n(p.content_length),
        FieldValue::Str(p.user),
        FieldValue::Str(p.script),
        FieldValue::Raw(&p.cpu),
        n(p.memory),
    ];
    std::array::from_fn(|i| (PROC_NAMES[i], values[i]))
}

/// A value as `format` writes it.
struct Shown<'a>(Format, FieldValue<'a>);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0, self.1) {
            (_, FieldValue::Num(n)) => write!(f, "{n}"),
            (_, FieldValue::Raw(s)) => f.write_str(s),
            (Format::Json, FieldValue::Str(s)) => write!(f, "\"{}\"", JsonStr(s)),
            (Format::Xml | Format::Html, FieldValue::Str(s)) => write!(f, "{}", Markup(s)),
            (_, FieldValue::Str(s)) => write!(f, "{}", Plain(s)),
            (Format::Json | Format::Xml, FieldValue::Time(t)) => write!(f, "{}", unix_secs(t)),
            (_, FieldValue::Time(t)) => f.write_str(&local_time(t)),
        }
    }
}

/// Text: every label padded to 22 columns, as php-fpm aligns them.
fn text(out: &mut String, s: &PoolStatus, full: bool, now: SystemTime) {
    fn lines(out: &mut String, fields: &[Field<'_>]) {
        for &(name, value) in fields {
            // php-fpm's one capitalised label.
            let label = if name == "request uri" { "request URI" } else { name };
            let _ = writeln!(out, "{:<22}{}", format!("{label}:"), Shown(Format::Text, value));
        }
    }
    lines(out, &pool_fields(s, now));
    if !full {
        return;
    }
    for p in procs(s, now) {
        out.push_str("\n************************\n");
        lines(out, &proc_fields(&p));
    }
}

/// JSON on one line, php-fpm's keys (with spaces) and its `, "processes":[`.
fn json(out: &mut String, s: &PoolStatus, full: bool, now: SystemTime) {
    fn object(out: &mut String, fields: &[Field<'_>]) {
        out.push('{');
        for (i, &(name, value)) in fields.iter().enumerate() {
            let comma = if i > 0 { "," } else { "" };
            let _ = write!(out, "{comma}\"{name}\":{}", Shown(Format::Json, value));
        }
    }
    object(out, &pool_fields(s, now));
    if full {
        out.push_str(", \"processes\":[");
        for (i, p) in procs(s, now).enumerate() {
            if i > 0 {
                out.push(',');
            }
            object(out, &proc_fields(&p));
            out.push('}');
        }
        out.push(']');
    }
    out.push('}');
}

/// XML: one element a line for the pool, one line a `<process>`.
fn xml(out: &mut String, s: &PoolStatus, full: bool, now: SystemTime) {
    fn elements(out: &mut String, fields: &[Field<'_>], end: &str) {
        for &(name, value) in fields {
            let tag = name.replace(' ', "-");
            let _ = write!(out, "<{tag}>{}</{tag}>{end}", Shown(Format::Xml, value));
        }
    }
    out.push_str("<?xml version=\"1.0\" ?>\n<status>\n");
    elements(out, &pool_fields(s, now), "\n");
    if full {
        out.push_str("<processes>\n");
        for p in procs(s, now) {
            out.push_str("<process>");
            elements(out, &proc_fields(&p), "");
            out.push_str("</process>\n");
        }
        out.push_str("</processes>\n");
    }
    out.push_str("</status>");
}

/// HTML (XHTML 1.0 Strict): a table for the pool, a bordered one for `full`.
fn html(out: &mut String, s: &PoolStatus, full: bool, now: SystemTime) {
    out.push_str(
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \
         \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n\
         <head><title>PHP-FPM Status Page</title></head>\n<body>\n<table>\n",
    );
    for (name, value) in pool_fields(s, now) {
        let _ = writeln!(out, "<tr><th>{name}</th><td>{}</td></tr>", Shown(Format::Html, value));
    }
    out.push_str("</table>\n");
    if !full {
        out.push_str("</body></html>");
        return;
    }
    out.push_str("<table border=\"1\">\n<tr>");
    for name in PROC_NAMES {
        let _ = write!(out, "<th>{name}</th>");
    }
    out.push_str("</tr>\n");
    for p in procs(s, now) {
        out.push_str("<tr>");
        for (_, value) in proc_fields(&p) {
            let _ = write!(out, "<td>{}</td>", Shown(Format::Html, value));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></body></html>");
}

/// OpenMetrics: php-fpm 8.2's `phpfpm_*` families, in its order and with its
/// HELP texts (including its `# TYPE` before `# HELP` for
/// `phpfpm_listen_queue_length`). php-fpm has no per-process metrics, so
/// `full` changes nothing.
fn openmetrics(out: &mut String, s: &PoolStatus, now: SystemTime) {
    let _ = writeln!(
        out,
        "# HELP phpfpm_up Could pool {} using a {} PM on PHP-FPM be reached?",
        HelpText(&s.pool),
        HelpText(s.process_manager)
    );
    out.push_str("# TYPE phpfpm_up gauge\nphpfpm_up 1\n");
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn std::fmt::Display| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    family("phpfpm_start_since", "counter", "The number of seconds since FPM has started.", &since(s.start_time, now));
    family("phpfpm_accepted_connections", "counter", "The number of requests accepted by the pool.", &s.accepted_conn);
    family(
        "phpfpm_listen_queue",
        "gauge",
        "The number of requests in the queue of pending connections.",
        &s.listen_queue,
    );
    family(
        "phpfpm_max_listen_queue",
        "counter",
        "The maximum number of requests in the queue of pending connections since FPM has started.",
        &s.max_listen_queue,
    );
    let _ = write!(
        out,
        "# TYPE phpfpm_listen_queue_length gauge\n\
         # HELP phpfpm_listen_queue_length The size of the socket queue of pending connections.\n\
         phpfpm_listen_queue_length {}\n",
        s.listen_queue_len
    );
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn std::fmt::Display| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    family("phpfpm_idle_processes", "gauge", "The number of idle processes.", &s.idle_processes);
    family("phpfpm_active_processes", "gauge", "The number of active processes.", &s.active_processes);
    family("phpfpm_total_processes", "gauge", "The number of idle + active processes.", &s.total_processes);
    family(
        "phpfpm_max_active_processes",
        "counter",
        "The maximum number of active processes since FPM has started.",
        &s.max_active_processes,
    );
    family(
        "phpfpm_max_children_reached",
        "counter",
        "The number of times, the process limit has been reached, when pm tries to start more children \
         (works only for pm 'dynamic' and 'ondemand').",
        &s.max_children_reached,
    );
    family(
        "phpfpm_slow_requests",
        "counter",
        "The number of requests that exceeded your 'request_slowlog_timeout' value.",
        &s.slow_requests,
    );
    out.push_str("# EOF\n");
}

/// Seconds since the epoch, rounded down (negative before 1970), as
/// php-fpm's `time_t`.
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -secs - i64::from(d.subsec_nanos() > 0)
        }
    }
}

/// php-fpm's "start since": whole seconds between the two epochs (0 if
/// `start` is in the future).
fn since(start: SystemTime, now: SystemTime) -> u64 {
    u64::try_from(unix_secs(now).saturating_sub(unix_secs(start))).unwrap_or(0)
}

/// `t` as php-fpm's `strftime("%d/%b/%Y:%H:%M:%S %z", localtime(..))` in the
/// C locale, e.g. `26/Nov/2026:17:47:08 +0000`. `-` if the C library cannot
/// convert it (a year out of `int`'s range).
fn local_time(t: SystemTime) -> String {
    crate::sys::localtime::strftime("%d/%b/%Y:%H:%M:%S %z", unix_secs(t)).unwrap_or_else(|| "-".to_owned())
}

/// The inside of a JSON string, escaped as PHP's `json_encode` does by
/// default (which php-fpm uses for the request URI): `"` `\` `/` and control
/// characters escaped, every non-ASCII character as `\uXXXX` (UTF-16).
struct JsonStr<'a>(&'a str);

impl std::fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(|c: char| matches!(c, '"' | '\\' | '/') || c < ' ' || !c.is_ascii()) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or_default();
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '/' => f.write_str("\\/")?,
                '\u{8}' => f.write_str("\\b")?,
                '\u{c}' => f.write_str("\\f")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                _ => {
                    for unit in c.encode_utf16(&mut [0; 2]) {
                        write!(f, "\\u{unit:04x}")?;
                    }
                }
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Text for XML and HTML, escaped as php-fpm escapes the query string
/// (`&` `<` `>` `"`; `'` and non-ASCII stay). Control characters that XML 1.0
/// forbids (all below U+0020 but tab, LF and CR) become U+FFFD, so the
/// document always parses; php-fpm passes them through.
struct Markup<'a>(&'a str);

impl std::fmt::Display for Markup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(|c: char| matches!(c, '&' | '<' | '>' | '"') || is_xml_forbidden(c)) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or_default();
            f.write_str(match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                _ => "\u{fffd}",
            })?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

fn is_xml_forbidden(c: char) -> bool {
    c < ' ' && !matches!(c, '\t' | '\n' | '\r')
}

/// A request's value on a line of the text format: control characters as
/// `\xNN` (as in the logs), so a request cannot add lines to the page.
struct Plain<'a>(&'a str);

impl std::fmt::Display for Plain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "\\x{:02X}", u32::from(c))?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// An OpenMetrics HELP text: `\`, newline and `"` escaped.
struct HelpText<'a>(&'a str);

impl std::fmt::Display for HelpText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '"' => f.write_str("\\\"")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
