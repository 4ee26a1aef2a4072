//! php-fpm's `access.format`: parsed once at config time into [`Token`]s, and rendered into
//! one line per request from a [`Record`]. Pure: no I/O, no clock (the caller passes "now").
//!
//! The placeholders are php-fpm's (`sapi/fpm/fpm/fpm_log.c`), with its `%{ARG}X` syntax for
//! the ones that take an argument. Where rustfpm's view differs from php-fpm's, the
//! difference is named on the token.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// php-fpm's default `access.format`.
pub const DEFAULT_FORMAT: &str = "%R - %u %t \"%m %r\" %s";
/// The time layout of `%t` and `%T` without an argument.
const DEFAULT_TIME: &str = "%d/%b/%Y:%H:%M:%S %z";
/// Longest argument between braces (php-fpm cuts at 128 bytes).
const MAX_ARG: usize = 128;

/// Units of `%{..}d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUnit {
    /// `seconds` (the default), three decimals.
    Seconds,
    /// `mili`, `miliseconds` (php-fpm's spelling), three decimals.
    Milli,
    /// `micro`, `microseconds`, whole.
    Micro,
}

/// Units of `%{..}M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryUnit {
    /// `bytes` (the default).
    Bytes,
    /// `kilo`, `kilobytes`.
    Kilo,
    /// `mega`, `megabytes`.
    Mega,
}

/// Which CPU time `%{..}C` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPart {
    /// `total` (the default): user + system.
    Total,
    /// `user`.
    User,
    /// `system`.
    System,
}

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// Text copied as it is (`%%` included, as `%`).
    Literal(String),
    /// `%R`: the IP address of the FastCGI client (the web server, not the browser), `-` on a
    /// Unix socket, as in php-fpm.
    RemoteIp,
    /// `%u`: REMOTE_USER (empty when unset, as in php-fpm).
    User,
    /// `%t` / `%{strftime}t`: when the request arrived.
    Accepted(String),
    /// `%T` / `%{strftime}T`: when the line is written.
    Now(String),
    /// `%m`: REQUEST_METHOD.
    Method,
    /// `%r`: the request URI as PHP sees it (SCRIPT_NAME, without the query string), as in
    /// php-fpm.
    Uri,
    /// `%Q`: `?` when there is a query string.
    QueryMark,
    /// `%q`: QUERY_STRING.
    Query,
    /// `%s`: the HTTP status sent.
    Status,
    /// `%f`: SCRIPT_FILENAME.
    Script,
    /// `%d` / `%{seconds|milli|micro}d`: how long the request took.
    Duration(DurationUnit),
    /// `%M` / `%{bytes|kilo|mega}M`: php-fpm shows PHP's peak memory; rustfpm cannot see
    /// inside PHP and shows the child's private memory (resident minus shared, the measure
    /// `pm_max_memory` uses) when the request ended.
    Memory(MemoryUnit),
    /// `%C` / `%{total|user|system}C`: the child's CPU time for the request (ticks since its
    /// previous request), as a percentage of the request's duration.
    Cpu(CpuPart),
    /// `%{NAME}e`: a FastCGI param of the request.
    Param(String),
    /// `%{Name}o`: a response header (name matched without regard to case).
    Header(String),
    /// `%n`: the pool name.
    Pool,
    /// `%p`: the pid of the php-cgi child that served the request.
    Pid,
    /// `%P`: the pid of that child's parent (the pool's php-cgi parent process).
    ParentPid,
    /// `%l`: CONTENT_LENGTH.
    ContentLength,
}

/// A parsed `access.format`, and what it needs collected for each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    tokens: Vec<Token>,
    /// The names of its `%{..}e` params, in order of first use.
    pub params: Vec<String>,
    /// The names of its `%{..}o` headers, in order of first use.
    pub headers: Vec<String>,
}

impl Format {
    /// True when a line shows something of the child that ran the request (its pid, its
    /// parent's, its CPU time or memory), which the pool actor may have to look up first.
    pub fn wants_child(&self) -> bool {
        self.tokens.iter().any(|t| matches!(t, Token::Pid | Token::ParentPid | Token::Cpu(_) | Token::Memory(_)))
    }

    /// Parses `text`; the error says which placeholder is wrong and why.
    pub fn parse(text: &str) -> Result<Format, String> {
        let tokens = tokenize(text)?;
        let mut format = Format { tokens, params: Vec::new(), headers: Vec::new() };
        for token in &format.tokens {
            match token {
                Token::Param(name) if !format.params.contains(name) => format.params.push(name.clone()),
                Token::Header(name) if !format.headers.iter().any(|h| h.eq_ignore_ascii_case(name)) => {
                    format.headers.push(name.clone())
                }
                _ => {}
            }
        }
        Ok(format)
    }

    /// The tokens, in order.
    #[cfg(test)]
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// True if any token matches `wanted`.
    pub fn uses(&self, wanted: impl Fn(&Token) -> bool) -> bool {
        self.tokens.iter().any(wanted)
    }

    /// Appends the line for `rec` (without a newline) to `out`; `now` is the time of `%T`.
    /// Control characters in values (a decoded `%0A` in SCRIPT_NAME, say) are written as
    /// `\xNN`, so a request cannot forge log lines.
    pub fn render(&self, rec: &Record, now: SystemTime, out: &mut String) {
        for token in &self.tokens {
            let start = out.len();
            self.render_token(token, rec, now, out);
            if !matches!(token, Token::Literal(_)) && out[start..].contains(char::is_control) {
                let value = escape_controls(&out[start..]);
                out.truncate(start);
                out.push_str(&value);
            }
        }
    }

    fn render_token(&self, token: &Token, rec: &Record, now: SystemTime, out: &mut String) {
        use std::fmt::Write;
        let or_dash = |s: &str| if s.is_empty() { "-".to_string() } else { s.to_string() };
        let _ = match token {
            Token::Literal(s) => write!(out, "{s}"),
            Token::RemoteIp => write!(out, "{}", rec.remote_ip.map_or_else(|| "-".to_string(), |ip| ip.to_string())),
            Token::User => write!(out, "{}", rec.user),
            Token::Accepted(layout) => write!(out, "{}", strftime(layout, rec.accepted)),
            Token::Now(layout) => write!(out, "{}", strftime(layout, Some(now))),
            Token::Method => write!(out, "{}", or_dash(&rec.method)),
            Token::Uri => write!(out, "{}", rec.uri),
            Token::QueryMark => write!(out, "{}", if rec.query.is_empty() { "" } else { "?" }),
            Token::Query => write!(out, "{}", rec.query),
            Token::Status => write!(out, "{}", rec.status),
            Token::Script => write!(out, "{}", or_dash(&rec.script)),
            Token::Duration(unit) => duration(out, rec.duration, *unit),
            Token::Memory(unit) => memory(out, rec.memory, *unit),
            Token::Cpu(part) => cpu(out, rec, *part),
            Token::Param(name) => write!(out, "{}", self.value(&self.params, &rec.params, name)),
            Token::Header(name) => write!(out, "{}", self.value(&self.headers, &rec.headers, name)),
            Token::Pool => write!(out, "{}", or_dash(&rec.pool)),
            Token::Pid => write!(out, "{}", rec.pid.map_or_else(|| "-".to_string(), |p| p.to_string())),
            Token::ParentPid => write!(out, "{}", rec.parent_pid.map_or_else(|| "-".to_string(), |p| p.to_string())),
            Token::ContentLength => write!(out, "{}", rec.content_length),
        };
    }

    /// The value collected for `name` (`values` is in the order of `names`), or `-`.
    fn value<'r>(&self, names: &[String], values: &'r [Option<String>], name: &str) -> &'r str {
        let at = names.iter().position(|n| n.eq_ignore_ascii_case(name));
        at.and_then(|i| values.get(i)).and_then(|v| v.as_deref()).filter(|v| !v.is_empty()).unwrap_or("-")
    }
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
    /// `%t`: when the request arrived.
    pub accepted: Option<SystemTime>,
    /// `%d`: how long it took.
    pub duration: Duration,
    /// Values of the format's `%{..}e` params, in the order of [`Format::params`].
    pub params: Vec<Option<String>>,
    /// Values of the format's `%{..}o` headers, in the order of [`Format::headers`].
    pub headers: Vec<Option<String>>,
    /// `%n`: the pool.
    pub pool: String,
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
        let texts = [&self.user, &self.method, &self.uri, &self.query, &self.script, &self.pool];
        let values = self.params.iter().chain(&self.headers).flatten();
        texts.iter().map(|s| s.len()).sum::<usize>() + values.map(String::len).sum::<usize>()
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

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        let (arg, letter) = placeholder(&mut chars)?;
        match placeholder_token(letter, arg)? {
            Token::Literal(s) => literal.push_str(&s),
            token => {
                if !literal.is_empty() {
                    tokens.push(Token::Literal(std::mem::take(&mut literal)));
                }
                tokens.push(token);
            }
        }
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal));
    }
    Ok(tokens)
}

/// After a `%`: the optional `{argument}` and the letter.
fn placeholder(chars: &mut std::str::Chars<'_>) -> Result<(Option<String>, char), String> {
    let Some(first) = chars.next() else {
        return Err("ends with a lone '%'; write %% for a percent sign".to_string());
    };
    if first != '{' {
        return Ok((None, first));
    }
    let mut arg = String::new();
    loop {
        match chars.next() {
            Some('}') => break,
            Some(c) => arg.push(c),
            None => return Err(format!("'%{{{arg}' has no closing '}}'")),
        }
    }
    if arg.len() > MAX_ARG {
        return Err(format!("'%{{{arg}}}' is longer than {MAX_ARG} bytes"));
    }
    match chars.next() {
        Some(letter) => Ok((Some(arg), letter)),
        None => Err(format!("'%{{{arg}}}' must be followed by a placeholder letter, e.g. %{{{arg}}}e")),
    }
}

fn placeholder_token(letter: char, arg: Option<String>) -> Result<Token, String> {
    let token = match letter {
        't' => return Ok(Token::Accepted(arg.unwrap_or_else(|| DEFAULT_TIME.to_string()))),
        'T' => return Ok(Token::Now(arg.unwrap_or_else(|| DEFAULT_TIME.to_string()))),
        'd' => return modifier(letter, arg, DURATION_UNITS).map(Token::Duration),
        'M' => return modifier(letter, arg, MEMORY_UNITS).map(Token::Memory),
        'C' => return modifier(letter, arg, CPU_PARTS).map(Token::Cpu),
        'e' | 'o' => return named(letter, arg),
        '%' => Token::Literal("%".to_string()),
        'R' => Token::RemoteIp,
        'u' => Token::User,
        'm' => Token::Method,
        'r' => Token::Uri,
        'Q' => Token::QueryMark,
        'q' => Token::Query,
        's' => Token::Status,
        'f' => Token::Script,
        'n' => Token::Pool,
        'p' => Token::Pid,
        'P' => Token::ParentPid,
        'l' => Token::ContentLength,
        other => return Err(format!("unknown placeholder '%{other}'")),
    };
    match arg {
        Some(arg) => Err(format!("'%{letter}' takes no argument, found '%{{{arg}}}{letter}'")),
        None => Ok(token),
    }
}

const DURATION_UNITS: &[(&str, DurationUnit)] = &[
    ("seconds", DurationUnit::Seconds),
    ("milli", DurationUnit::Milli),
    ("mili", DurationUnit::Milli),
    ("milliseconds", DurationUnit::Milli),
    ("miliseconds", DurationUnit::Milli),
    ("micro", DurationUnit::Micro),
    ("microseconds", DurationUnit::Micro),
];
const MEMORY_UNITS: &[(&str, MemoryUnit)] = &[
    ("bytes", MemoryUnit::Bytes),
    ("kilo", MemoryUnit::Kilo),
    ("kilobytes", MemoryUnit::Kilo),
    ("mega", MemoryUnit::Mega),
    ("megabytes", MemoryUnit::Mega),
];
const CPU_PARTS: &[(&str, CpuPart)] =
    &[("total", CpuPart::Total), ("user", CpuPart::User), ("system", CpuPart::System)];

/// The modifier of `%d`, `%M` or `%C` (the first entry of `allowed` when there is none).
fn modifier<T: Copy>(letter: char, arg: Option<String>, allowed: &[(&str, T)]) -> Result<T, String> {
    let Some(arg) = arg else {
        return Ok(allowed[0].1);
    };
    match allowed.iter().find(|(name, _)| name.eq_ignore_ascii_case(&arg)) {
        Some((_, value)) => Ok(*value),
        None => {
            let names: Vec<&str> = allowed.iter().map(|(name, _)| *name).collect();
            Err(format!("'%{{{arg}}}{letter}': the modifier must be one of {}", names.join(", ")))
        }
    }
}

/// `%{NAME}e` or `%{Name}o`: the name is required.
fn named(letter: char, arg: Option<String>) -> Result<Token, String> {
    let what = if letter == 'e' { "param" } else { "header" };
    match arg.filter(|a| !a.is_empty()) {
        None => Err(format!("'%{letter}' needs the {what}'s name: %{{NAME}}{letter}")),
        Some(name) if letter == 'e' => Ok(Token::Param(name)),
        Some(name) => Ok(Token::Header(name)),
    }
}

/// `t` in local time, laid out by C's strftime (as php-fpm); `-` when unknown.
pub fn strftime(layout: &str, t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "-".to_string();
    };
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as libc::time_t,
        Err(_) => 0,
    };
    let Ok(layout) = std::ffi::CString::new(layout) else {
        return "-".to_string();
    };
    let mut buf = [0u8; 256];
    // SAFETY: localtime_r writes only into `tm` (all-zero bytes are a valid libc::tm);
    // strftime writes at most buf.len() bytes into `buf` and reads the NUL-terminated layout.
    let n = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), layout.as_ptr(), &tm)
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
