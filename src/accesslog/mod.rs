//! php-fpm's per-pool `access.log` (one line per request, in `access.format`) and `slowlog`
//! (requests running past `request_slowlog_timeout`).
//!
//! The connection task collects what it knows of a request into a [`Record`] (only when the
//! pool has an access log, and only the params and headers the format names); the pool actor
//! adds the child's pid and hands the record to the writer thread, which reads the child's
//! CPU time and memory from /proc when the format shows them, renders the line and writes it.
//! Async code never touches files, /proc included: it `try_send`s to [`writer`], and a full
//! channel drops the line (counted and reported).
//!
//! The slowlog shows pool, pid, script, request and elapsed time, but no PHP backtrace:
//! php-fpm gets one by ptrace-attaching to the child and reading the PHP executor's memory,
//! which only works when the tracer knows the exact PHP build's struct layouts; rustfpm
//! cannot do that safely, so `request_slowlog_trace_depth` has no effect.

pub mod format;
pub mod writer;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use format::Record;

use crate::config;
use crate::config::access_format::{AccessFormat, Token};
use crate::fastcgi::{value_number, value_text, ParamsBuffer};

/// How long rustfpm waits at exit for queued log lines to be written.
pub const LOG_FLUSH_WAIT: Duration = Duration::from_secs(2);
/// Most bytes of a response's head kept to find the `%{..}o` headers.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// A pool's access log and slowlog.
#[derive(Debug, Default)]
pub struct PoolLogs {
    pool: String,
    access: Option<AccessLog>,
    slow: Option<SlowLog>,
}

/// Where and how a pool logs its requests.
#[derive(Debug)]
pub struct AccessLog {
    /// The pool's name, shared by its records (`%n`).
    pool: Arc<str>,
    path: Arc<Path>,
    format: Arc<AccessFormat>,
    cpu: bool,
    memory: bool,
    remote_ip: bool,
    /// `access_suppress_path`.
    suppress: Vec<String>,
}

#[derive(Debug)]
struct SlowLog {
    path: Arc<Path>,
    timeout: Duration,
}

/// What the pool actor knows of the child that served a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChildView {
    /// The child's pid, once looked up.
    pub pid: Option<i32>,
    /// Its parent's (the pool's php-cgi parent).
    pub parent_pid: Option<i32>,
    /// The child's private memory after the request, if already measured (`pm_max_memory`).
    pub memory: Option<u64>,
}

/// The params a request's access log line, status page entry and slowlog entry show, found
/// in one walk over its params: a pool with an access log and a status page reads them once.
#[derive(Debug, Clone, Default)]
pub struct Shown<'a> {
    /// REQUEST_METHOD
    pub method: Option<&'a [u8]>,
    /// SCRIPT_NAME (the access log's `%r`)
    pub script_name: Option<&'a [u8]>,
    /// QUERY_STRING
    pub query: Option<&'a [u8]>,
    /// SCRIPT_FILENAME
    pub script_filename: Option<&'a [u8]>,
    /// The user of HTTP_AUTHORIZATION's `Basic` credentials (see [`Shown::user`]),
    /// decoded once for the access log and the status page alike
    pub basic_user: Option<Vec<u8>>,
    /// CONTENT_LENGTH
    pub content_length: Option<&'a [u8]>,
}

impl<'a> Shown<'a> {
    /// The values in `params` (the last of a repeated name; none of a malformed list).
    pub fn of(params: &'a ParamsBuffer) -> Shown<'a> {
        let [method, script_name, query, script_filename, authorization, content_length] = params.get_each([
            b"REQUEST_METHOD".as_slice(),
            b"SCRIPT_NAME",
            b"QUERY_STRING",
            b"SCRIPT_FILENAME",
            b"HTTP_AUTHORIZATION",
            b"CONTENT_LENGTH",
        ]);
        let basic_user = authorization.and_then(basic_user);
        Shown { method, script_name, query, script_filename, basic_user, content_length }
    }

    /// The request's user as php-fpm shows it (the access log's `%u`, the status page's
    /// `user`): the user of an `Authorization: Basic` header, as PHP decodes it
    /// (`PHP_AUTH_USER`); empty without one.
    pub fn user(&self) -> String {
        value_text(self.basic_user.as_deref())
    }

    /// The request as php-fpm's status page and slowlog show it: `SCRIPT_NAME`, and
    /// `?QUERY_STRING` when there is one.
    pub fn script_and_query(&self) -> String {
        let mut uri = value_text(self.script_name);
        if let Some(query) = self.query.filter(|q| !q.is_empty()) {
            uri.push('?');
            uri.push_str(&value_text(Some(query)));
        }
        uri
    }
}

/// The user of an HTTP `Authorization` value of the `Basic` scheme (PHP's
/// `php_handle_auth_data`): the decoded credentials up to their first `:`;
/// none for another scheme, or credentials without a `:`.
fn basic_user(authorization: &[u8]) -> Option<Vec<u8>> {
    let rest = authorization.get(..6).filter(|s| s.eq_ignore_ascii_case(b"basic ")).map(|_| &authorization[6..])?;
    let decoded = base64_decode(rest);
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[..colon].to_vec())
}

/// Standard base64, as PHP's non-strict decoder reads it: characters outside
/// the alphabet are skipped and decoding stops at `=`.
fn base64_decode(text: &[u8]) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut bits, mut count) = (Vec::with_capacity(text.len() * 3 / 4), 0u32, 0u32);
    for v in text.iter().take_while(|&&c| c != b'=').filter_map(|&c| value(c)) {
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

/// What the status page and the slowlog show of a request (collected only
/// when the pool has a status page or a slowlog).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// REQUEST_METHOD
    pub method: String,
    /// REQUEST_URI
    pub uri: String,
    /// CONTENT_LENGTH
    pub content_length: u64,
    /// REMOTE_USER
    pub user: String,
    /// SCRIPT_FILENAME
    pub script: String,
}

/// What the writer reads from /proc for a line: only what the format shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    /// `%C`: the child's CPU ticks.
    pub cpu: bool,
    /// `%M`: the child's private memory.
    pub memory: bool,
}

impl RequestInfo {
    /// A request's details for the status page and the slowlog, from its `shown` params.
    pub fn of(shown: &Shown) -> Box<RequestInfo> {
        Box::new(RequestInfo {
            method: value_text(shown.method),
            uri: shown.script_and_query(),
            content_length: value_number(shown.content_length).unwrap_or(0),
            user: shown.user(),
            script: value_text(shown.script_filename),
        })
    }
}

impl PoolLogs {
    /// The logs of pool `cfg`: each file is opened once here, so that a path that cannot be
    /// written is reported at start (the writer thread opens its own handles).
    pub fn new(cfg: &config::Pool) -> Result<PoolLogs, (PathBuf, std::io::Error)> {
        let mut logs = PoolLogs { pool: cfg.name.clone(), access: None, slow: None };
        if let Some(path) = &cfg.access_log {
            writer::open(path).map_err(|e| (path.clone(), e))?;
            let format = &cfg.access_format;
            logs.access = Some(AccessLog {
                pool: Arc::from(cfg.name.as_str()),
                path: Arc::from(path.as_path()),
                cpu: format.uses(|t| matches!(t, Token::Cpu(_))),
                memory: format.uses(|t| matches!(t, Token::Memory(_))),
                remote_ip: format.uses(|t| *t == Token::RemoteIp),
                suppress: cfg.access_suppress_path.clone(),
                format: Arc::new(format.clone()),
            });
        }
        if let (Some(path), Some(timeout)) = (&cfg.slowlog, cfg.request_slowlog_timeout) {
            writer::open(path).map_err(|e| (path.clone(), e))?;
            logs.slow = Some(SlowLog { path: Arc::from(path.as_path()), timeout });
        }
        Ok(logs)
    }

    /// The access log, if the pool has one.
    pub fn access(&self) -> Option<&AccessLog> {
        self.access.as_ref()
    }

    /// `request_slowlog_timeout`, when the slowlog is on.
    pub fn slow_timeout(&self) -> Option<Duration> {
        self.slow.as_ref().map(|s| s.timeout)
    }

    /// Logs a request that has ended: completes `rec` with what the actor knows of the child
    /// and sends it to the writer (unless `access.suppress_path` drops it).
    pub fn log_access(&self, mut rec: Box<Record>, child: ChildView) {
        rec.status = rec.script_status.unwrap_or(rec.status);
        let Some(access) = self.access.as_ref().filter(|a| !a.suppressed(&rec)) else {
            return;
        };
        rec.pid = child.pid;
        rec.parent_pid = child.parent_pid;
        rec.memory = child.memory.filter(|_| access.memory);
        let probe = Probe { cpu: access.cpu, memory: access.memory && rec.memory.is_none() };
        writer::send(writer::Msg::Access { path: access.path.clone(), format: access.format.clone(), rec, probe });
    }

    /// Logs a request that has run past `request_slowlog_timeout`: a WARNING in the error
    /// log and an entry in the slowlog, as php-fpm does.
    pub fn slow(&self, pid: Option<i32>, info: Option<&RequestInfo>, elapsed: Duration) {
        let Some(slow) = &self.slow else {
            return;
        };
        // Control characters written as \xNN: a request cannot forge log lines.
        let info = info.map_or_else(RequestInfo::default, |i| RequestInfo {
            method: format::escape_controls(&i.method),
            uri: format::escape_controls(&i.uri),
            script: format::escape_controls(&i.script),
            ..RequestInfo::default()
        });
        crate::warning!("{}", slow_warning(&self.pool, pid, &info, elapsed));
        let entry = slow_entry(&crate::log::timestamp(), &self.pool, pid, &info, elapsed);
        writer::send(writer::Msg::Text { path: slow.path.clone(), text: entry });
    }
}

impl AccessLog {
    /// The record of a request about to be proxied: what its params say (`shown`, found in
    /// `params`, which holds the format's `%{..}e` too). `peer` is the FastCGI client's
    /// address (None on a Unix socket); `arrived`, when its head came in.
    pub fn start(&self, shown: &Shown, params: &ParamsBuffer, peer: Option<IpAddr>, arrived: Instant) -> Box<Record> {
        let wanted = |name: &String| params.get(name.as_bytes()).map(|v| value_text(Some(v)));
        Box::new(Record {
            remote_ip: peer,
            user: shown.user(),
            method: value_text(shown.method),
            uri: value_text(shown.script_name),
            query: value_text(shown.query),
            script: value_text(shown.script_filename),
            content_length: value_number(shown.content_length).unwrap_or(0),
            accepted: SystemTime::now().checked_sub(arrived.elapsed()),
            params: self.format.params.iter().map(wanted).collect(),
            pool: self.pool.clone(),
            ..Record::default()
        })
    }

    /// php-fpm's `access.suppress_path` rule: a plain, successful request for one of the
    /// listed script URIs (GET or HEAD, no query string, no body, 2xx) is not logged.
    pub fn suppressed(&self, rec: &Record) -> bool {
        matches!(rec.method.as_str(), "GET" | "HEAD")
            && rec.query.is_empty()
            && rec.content_length == 0
            && (200..300).contains(&rec.status)
            && self.suppress.contains(&rec.uri)
    }

    /// True when the format shows response headers (the proxy then keeps the response head).
    pub fn wants_headers(&self) -> bool {
        !self.format.headers.is_empty()
    }

    /// True when the format shows the child that ran a request ([`AccessFormat::wants_child`]).
    pub fn wants_child(&self) -> bool {
        self.format.wants_child()
    }

    /// True when the format shows the FastCGI client's address.
    pub fn wants_peer(&self) -> bool {
        self.remote_ip
    }

    /// Fills `rec`'s `%{..}o` values from the start of the response (CGI headers).
    pub fn response_head(&self, rec: &mut Record, head: &[u8]) {
        rec.headers = header_values(head, &self.format.headers);
    }
}

/// The values of the headers `names` in a CGI response head (names matched without regard
/// to case; the first of repeated headers wins).
pub fn header_values(head: &[u8], names: &[String]) -> Vec<Option<String>> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(head.len());
    let lines: Vec<&[u8]> = head[..end].split(|&b| b == b'\n').collect();
    let find = |name: &String| {
        lines.iter().find_map(|line| {
            let (key, value) = line.split_at(line.iter().position(|&b| b == b':')?);
            key.eq_ignore_ascii_case(name.as_bytes())
                .then(|| String::from_utf8_lossy(value[1..].trim_ascii()).into_owned())
        })
    };
    names.iter().map(find).collect()
}

/// php-fpm's error-log line for a slow request (with its microseconds).
pub fn slow_warning(pool: &str, pid: Option<i32>, info: &RequestInfo, elapsed: Duration) -> String {
    format!(
        "[pool {pool}] child {}, script '{}' (request: \"{} {}\") executing too slow ({:.6} sec), logging",
        pid_text(pid),
        info.script,
        info.method,
        info.uri,
        elapsed.as_secs_f64()
    )
}

/// A slowlog entry: php-fpm's header lines, then the request and the time it has run, and
/// why there is no backtrace.
pub fn slow_entry(timestamp: &str, pool: &str, pid: Option<i32>, info: &RequestInfo, elapsed: Duration) -> String {
    format!(
        "\n[{timestamp}]  [pool {pool}] pid {}\nscript_filename = {}\nrequest = {} {}\nelapsed = {:.3} sec\n\
         (no backtrace: rustfpm cannot read PHP's stack from a php-cgi child)\n",
        pid_text(pid),
        info.script,
        info.method,
        info.uri,
        elapsed.as_secs_f64()
    )
}

fn pid_text(pid: Option<i32>) -> String {
    pid.map_or_else(|| "?".to_string(), |p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_from_a_cgi_head() {
        let head = b"Status: 404 Not Found\r\nContent-type: text/html; charset=UTF-8\r\nX-A:  b \r\n\r\nX-B: body";
        let names = ["Content-Type".to_string(), "x-a".to_string(), "X-B".to_string()];
        let values = header_values(head, &names);
        assert_eq!(values, [Some("text/html; charset=UTF-8".to_string()), Some("b".to_string()), None]);
    }

    #[test]
    fn slow_lines_name_pool_pid_script_and_request() {
        let info = RequestInfo {
            method: "GET".into(),
            uri: "/x.php?a=1".into(),
            script: "/var/www/x.php".into(),
            ..RequestInfo::default()
        };
        let warning = slow_warning("www", Some(1234), &info, Duration::from_millis(1005));
        assert_eq!(
            warning,
            "[pool www] child 1234, script '/var/www/x.php' (request: \"GET /x.php?a=1\") executing too slow \
             (1.005000 sec), logging"
        );
        let entry = slow_entry("26-Nov-2026 14:51:02", "www", Some(1234), &info, Duration::from_millis(1005));
        assert!(entry.starts_with("\n[26-Nov-2026 14:51:02]  [pool www] pid 1234\nscript_filename = /var/www/x.php\n"));
        assert!(entry.contains("request = GET /x.php?a=1\nelapsed = 1.005 sec\n"), "{entry}");
    }

    /// One walk serves the access log and the status page, each with its own URI; the
    /// last of a repeated param wins and invalid UTF-8 is replaced.
    #[test]
    fn the_log_record_and_the_status_info_come_from_one_walk() {
        let mut raw = Vec::new();
        for (name, value) in [
            (&b"REQUEST_METHOD"[..], &b"GET"[..]),
            (b"SCRIPT_NAME", b"/index.php"),
            (b"REQUEST_URI", b"/blog/?p=\xff"),
            (b"QUERY_STRING", b"p=1"),
            (b"SCRIPT_FILENAME", b"/srv/www/index.php"),
            (b"REMOTE_USER", b"bob"),
            (b"HTTP_AUTHORIZATION", b"Basic YWxpY2U6c2VjcmV0"),
            (b"CONTENT_LENGTH", b"12"),
            (b"REQUEST_METHOD", b"POST"),
            (b"HTTP_X_ID", b"7"),
        ] {
            crate::fastcgi::encode_pair(&mut raw, name, value);
        }
        let mut params = ParamsBuffer::new(1024);
        params.push(&raw).unwrap();
        let shown = Shown::of(&params);
        let log = test_log("%m %r %{HTTP_X_ID}e", &[]);
        let rec = log.start(&shown, &params, None, Instant::now());
        assert_eq!((rec.method.as_str(), rec.uri.as_str(), rec.query.as_str()), ("POST", "/index.php", "p=1"));
        assert_eq!((rec.script.as_str(), rec.user.as_str(), rec.content_length), ("/srv/www/index.php", "alice", 12));
        assert_eq!((&*rec.pool, rec.params.as_slice()), ("www", &[Some("7".to_string())][..]));
        let info = RequestInfo::of(&shown);
        // php-fpm's: the script and the query (not REQUEST_URI), the Basic user (not REMOTE_USER).
        assert_eq!((info.method.as_str(), info.uri.as_str(), info.content_length), ("POST", "/index.php?p=1", 12));
        assert_eq!((info.script.as_str(), info.user.as_str()), ("/srv/www/index.php", "alice"));
    }

    /// The user of a `Basic` Authorization header, as PHP decodes it.
    #[test]
    fn the_user_is_the_basic_authorizations() {
        let user = |auth: &[u8]| basic_user(auth).map(|u| String::from_utf8(u).unwrap());
        assert_eq!(user(b"Basic YWxpY2U6c2VjcmV0").as_deref(), Some("alice"));
        assert_eq!(user(b"basic Ym9iOjo6").as_deref(), Some("bob"), "bob:::, any case of the scheme");
        assert_eq!(user(b"Basic OnB3").as_deref(), Some(""), ":pw");
        assert_eq!(user(b"Basic YWxpY2U="), None, "no colon");
        assert_eq!(user(b"Bearer YWxpY2U6c2VjcmV0"), None);
        assert_eq!(user(b"Basic"), None);
        assert_eq!(base64_decode(b"aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(base64_decode(b"aGVs\nbG8="), b"hello", "outside the alphabet: skipped");
    }

    /// Pool www's access log to /dev/null in `format`, suppressing `suppress`.
    fn test_log(format: &str, suppress: &[&str]) -> AccessLog {
        AccessLog {
            pool: Arc::from("www"),
            path: Arc::from(Path::new("/dev/null")),
            format: Arc::new(AccessFormat::parse(format).unwrap()),
            cpu: false,
            memory: false,
            remote_ip: false,
            suppress: suppress.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn only_plain_successful_requests_for_listed_paths_are_suppressed() {
        let log = test_log("%r", &["/ping"]);
        let plain = || Record { method: "GET".into(), uri: "/ping".into(), status: 200, ..Record::default() };
        assert!(log.suppressed(&plain()));
        assert!(log.suppressed(&Record { method: "HEAD".into(), ..plain() }));
        assert!(!log.suppressed(&Record { uri: "/ping2".into(), ..plain() }));
        assert!(!log.suppressed(&Record { method: "POST".into(), ..plain() }));
        assert!(!log.suppressed(&Record { query: "full".into(), ..plain() }));
        assert!(!log.suppressed(&Record { content_length: 1, ..plain() }));
        assert!(!log.suppressed(&Record { status: 500, ..plain() }));
    }
}
