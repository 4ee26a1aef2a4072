//! php-fpm's `access.format`, parsed once when the configuration is read into [`Token`]s (the
//! log writer renders them, `accesslog::format`). Pure: no I/O.
//!
//! The placeholders are php-fpm's (`sapi/fpm/fpm/fpm_log.c`), with its `%{ARG}X` syntax for
//! the ones that take an argument. Where rustfpm's view differs from php-fpm's, the
//! difference is named on the token.

use super::DEFAULT_ACCESS_FORMAT;

/// The time layout of `%t` and `%T` without an argument.
pub const DEFAULT_TIME: &str = "%d/%b/%Y:%H:%M:%S %z";
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
pub struct AccessFormat {
    /// The text it was parsed from.
    text: String,
    tokens: Vec<Token>,
    /// The names of its `%{..}e` params, in order of first use.
    pub params: Vec<String>,
    /// The names of its `%{..}o` headers, in order of first use.
    pub headers: Vec<String>,
}

impl AccessFormat {
    /// Parses `text`; the error says which placeholder is wrong and why.
    pub fn parse(text: &str) -> Result<AccessFormat, String> {
        let tokens = tokenize(text)?;
        let mut format = AccessFormat { text: text.to_string(), tokens, params: Vec::new(), headers: Vec::new() };
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

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The tokens, in order.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// True if any token matches `wanted`.
    pub fn uses(&self, wanted: impl Fn(&Token) -> bool) -> bool {
        self.tokens.iter().any(wanted)
    }

    /// True when a line shows something of the child that ran the request (its pid, its
    /// parent's, its CPU time or memory), which the pool actor may have to look up first.
    pub fn wants_child(&self) -> bool {
        self.uses(|t| matches!(t, Token::Pid | Token::ParentPid | Token::Cpu(_) | Token::Memory(_)))
    }
}

impl Default for AccessFormat {
    /// php-fpm's default, [`DEFAULT_ACCESS_FORMAT`].
    fn default() -> Self {
        let tokens = tokenize(DEFAULT_ACCESS_FORMAT).unwrap_or_default();
        AccessFormat { text: DEFAULT_ACCESS_FORMAT.to_string(), tokens, params: Vec::new(), headers: Vec::new() }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(format: &str) -> String {
        AccessFormat::parse(format).expect_err(format)
    }

    #[test]
    fn the_default_is_php_fpms_and_parses() {
        let default = AccessFormat::default();
        assert_eq!(default, AccessFormat::parse(DEFAULT_ACCESS_FORMAT).unwrap());
        assert_eq!(default.text(), "%R - %u %t \"%m %r\" %s");
        assert_eq!(default.tokens()[0], Token::RemoteIp, "{default:?}");
    }

    #[test]
    fn params_and_headers_are_listed_once() {
        let f = AccessFormat::parse("%{A}e %{B}e %{A}e %{X-Y}o %{x-y}o").unwrap();
        assert_eq!(f.params, ["A", "B"]);
        assert_eq!(f.headers, ["X-Y"]);
    }

    #[test]
    fn tokens_join_adjacent_literals() {
        let f = AccessFormat::parse("a%%b%s").unwrap();
        assert_eq!(f.tokens(), [Token::Literal("a%b".into()), Token::Status]);
        assert!(f.uses(|t| *t == Token::Status));
        assert!(!f.uses(|t| matches!(t, Token::Cpu(_))));
    }

    #[test]
    fn bad_formats_are_refused_with_a_reason() {
        assert!(parse_error("%x").contains("unknown placeholder '%x'"));
        assert!(parse_error("100%").contains("lone '%'"));
        assert!(parse_error("%{abc").contains("no closing"));
        assert!(parse_error("%{abc}").contains("followed by a placeholder letter"));
        assert!(parse_error("%{x}s").contains("takes no argument"));
        assert!(parse_error("%{hours}d").contains("seconds, milli"));
        assert!(parse_error("%{giga}M").contains("bytes, kilo"));
        assert!(parse_error("%{idle}C").contains("total, user, system"));
        assert!(parse_error("%e").contains("param's name"));
        assert!(parse_error("%{}o").contains("header's name"));
        assert!(parse_error(&format!("%{{{}}}e", "x".repeat(200))).contains("longer than"));
    }
}
