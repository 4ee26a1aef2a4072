//! `fastcgi_finish_request()` for php-cgi, which lacks it (php-fpm defines it
//! in `sapi/fpm/fpm/fpm_main.c`).
//!
//! rustfpm writes a small PHP file per pool and starts php-cgi with
//! `-d auto_prepend_file=` pointing at it. The file defines the function
//! when it does not exist: the first call ends every output buffer with
//! flush, `flush()`es, and writes the pool's marker line through the SAPI
//! logger (`error_log(..., 4)`), which php-cgi sends as an FCGI_STDERR record
//! on the same connection, after all output so far; then it returns true
//! (false on later calls, as php-fpm). If the script had sent no output yet,
//! php-cgi has not sent its headers either, so they go first, hex-encoded in
//! `MARKER:HEX` lines of at most 4 KiB, each flushed into a record of its own
//! (a longer line could be split across records). The proxy completes the
//! response for nginx at the `MARKER` line, and discards the rest of the
//! child's output until its own end.
//! Output after the call is also dropped inside PHP by a discarding buffer.
//!
//! The pool's own `auto_prepend_file` is included by the polyfill, and its
//! `open_basedir` gets the polyfill's directory added; both are read from
//! `php-cgi -i` with the pool's arguments (every php.ini, conf.d file and
//! `-d`), else from the pool's config. The marker needs `fastcgi.logging` on (forced unless the
//! pool's ini table sets it). Chroot pools get no polyfill: the file would
//! have to live inside the chroot.
//!
//! The same file defines `fpm_get_status()`, which php-cgi lacks too: it asks
//! rustfpm over the pool's private status socket, beside the file (see
//! `frontend::status_channel`), and turns the status page's JSON into
//! php-fpm's array. Requests that do not call it pay nothing.
//!
//! php-fpm's access log shows the response code a script set last, also one set after its
//! headers went out (`http_response_code(500)` after output: nginx got 200). php-cgi reports
//! no final code, so in a pool whose access log shows `%s` (or drops entries by status,
//! `access.suppress_path`) the polyfill registers a shutdown function that, when the headers
//! were sent and the code is not 200, logs `MARKER=CODE` ([`FINAL_STATUS_SOURCE`]); the proxy takes
//! the line out and logs that code. It costs each request of such a pool one shutdown
//! function (about 3,600 instructions in php-cgi); pools without that pay nothing.
//!
//! Before anything else, the polyfill takes out of the process environment what rustfpm
//! gave php-cgi and php-fpm's workers do not have (`PHP_FCGI_*`, `PHP_INI_SCAN_DIR`): see
//! `finish_env.rs`.

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::spec::define;
use super::PoolError;
use crate::config;
use crate::spawn::ChildSpec;
use crate::supervisor::{QueryError, Supervisor};

#[path = "finish_env.rs"]
mod env;

/// The polyfill file of one pool; removed with its directory on drop.
#[derive(Debug)]
pub struct Polyfill {
    dir: PathBuf,
    file: PathBuf,
    /// Keys for the requests' markers (SipHash, random per pool).
    keys: RandomState,
    /// Requests given a marker so far.
    issued: AtomicU64,
    /// The pool's ini table sets `fastcgi.logging` itself.
    logging_set: bool,
    /// The pool's `open_basedir`, which must let the polyfill in.
    open_basedir: Option<String>,
    /// Told (by being dropped) that the pool is gone: its status socket closes.
    gone: tokio::sync::watch::Sender<()>,
    /// The user the pool's children run as, if not rustfpm's own: the status
    /// socket's owner.
    children_uid: Option<nix::unistd::Uid>,
}

impl Polyfill {
    /// Writes the polyfill for the pool `cfg` whose php-cgi runs with `settings`, as `spec`
    /// says (its environment, and its user: none is rustfpm's own); `None` for a chroot pool
    /// or with `fastcgi_finish_request = false`.
    pub fn for_pool(cfg: &config::Pool, settings: &Settings, spec: &ChildSpec) -> Result<Option<Polyfill>, PoolError> {
        if cfg.chroot.is_some() || !cfg.fastcgi_finish_request {
            return Ok(None);
        }
        let children_uid = spec.credentials.as_ref().map(|c| c.uid);
        let err = |path: &Path, source| PoolError::Polyfill { pool: cfg.name.clone(), path: path.into(), source };
        let dir = runtime_dir(&cfg.name).map_err(|(path, e)| err(&path, e))?;
        let file = dir.join("fastcgi_finish_request.php");
        let (user_file, open_basedir) = (settings.get("auto_prepend_file"), settings.get("open_basedir"));
        let header = error_header(cfg);
        // Unknown (php-cgi did not show its settings): not used, as a call to a disabled
        // function in the polyfill's own code would fail every request.
        let usable = |function: &str| settings.disabled_functions().is_some() && !settings.disables(function);
        let undo_env = if usable("putenv") { env::undo_list(cfg) } else { Vec::new() };
        // The pool's own `fastcgi.logging`; unset, the polyfill's arguments turn it on.
        let logging = cfg.ini.iter().rev().find(|(k, _)| k == "fastcgi.logging").map(|(_, v)| v.as_str());
        let shims = Shims {
            error_header: header.as_deref(),
            final_status: logs_status(cfg),
            main_end: untimed_after_main(cfg, logging.is_none_or(ini_bool))
                && ["error_log", "flush", "ignore_user_abort"].iter().all(|f| usable(f)),
            undo_env: &undo_env,
        };
        let php = source(&cfg.name, user_file.as_deref(), &dir.join(STATUS_SOCKET), &shims);
        let written = crate::sys::safe_fs::replace(&file, php.as_bytes(), 0o644);
        let logging_set = logging.is_some();
        let (keys, issued, gone) = (RandomState::new(), AtomicU64::new(0), tokio::sync::watch::channel(()).0);
        let polyfill = Polyfill { dir, file, keys, issued, logging_set, open_basedir, gone, children_uid };
        written.map_err(|e| err(&polyfill.file, e))?;
        Ok(Some(polyfill))
    }

    /// A new request's marker: the line the polyfill logs when the script
    /// finishes that request. It reaches the polyfill as the param
    /// [`MARKER_PARAM`] and is unknown to the client, so no text a script
    /// writes to its log (a user's input in a warning, say) can end a
    /// response, or forge one.
    pub fn request_marker(&self) -> Marker {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        // 128 bits from one keyed SipHash state: the request's number, then
        // the number followed by a second word (two inputs that no other
        // request's marker hashes). Both halves are unguessable without the
        // pool's random keys, as two separate hashes were, for less work.
        let mut hasher = self.keys.build_hasher();
        hasher.write_u64(n);
        let first = hasher.finish();
        hasher.write_u64(1);
        let second = hasher.finish();
        let mut bytes = [0u8; MARKER_LEN];
        bytes[..MARKER_PREFIX.len()].copy_from_slice(MARKER_PREFIX);
        bytes[MARKER_PREFIX.len()..MARKER_PREFIX.len() + 16].copy_from_slice(&hex(first));
        bytes[MARKER_PREFIX.len() + 16..].copy_from_slice(&hex(second));
        Marker(bytes)
    }

    /// php-cgi arguments that load the polyfill (after the pool's `-d`s).
    pub fn args(&self) -> Vec<OsString> {
        let mut args = vec!["-d".into(), define("auto_prepend_file", &self.file.to_string_lossy()).into()];
        if !self.logging_set {
            args.extend(["-d".into(), "fastcgi.logging=1".into()]);
        }
        if let Some(dirs) = &self.open_basedir {
            args.extend(["-d".into(), define("open_basedir", &format!("{dirs}:{}", self.dir.display())).into()]);
        }
        args
    }

    /// Where `fpm_get_status()` asks rustfpm: a unix socket in the polyfill's
    /// directory, bound by `frontend::status_channel`.
    pub fn status_socket(&self) -> PathBuf {
        self.dir.join(STATUS_SOCKET)
    }

    /// The user the pool's children run as, when it is not rustfpm's own: only
    /// it may connect to the status socket.
    pub fn children_uid(&self) -> Option<nix::unistd::Uid> {
        self.children_uid
    }

    /// A receiver whose `changed()` fails once the polyfill (so the pool) is gone.
    pub fn gone(&self) -> tokio::sync::watch::Receiver<()> {
        self.gone.subscribe()
    }
}

/// The status socket's name in the polyfill's directory.
const STATUS_SOCKET: &str = "status.sock";

impl Drop for Polyfill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.status_socket());
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A new directory any user may read, for files the children load.
fn runtime_dir(pool: &str) -> Result<PathBuf, (PathBuf, std::io::Error)> {
    crate::sys::rundir::create(pool, "php", 0o755).map_err(|e| (PathBuf::from(crate::sys::rundir::RUN_DIR), e))
}

/// The FastCGI param that carries a request's marker to the polyfill; the
/// same param from nginx is dropped. Its name is a single space: PHP skips a
/// variable whose name is only spaces when it builds `$_SERVER` (php-src
/// `main/php_variables.c`, `php_register_variable_ex`), so scripts, `phpinfo()`
/// and `getenv()` without a name never list it, while php-cgi's `getenv(' ')`
/// looks the param up by its exact name (`fcgi_getenv`). No per-request work.
pub const MARKER_PARAM: &[u8] = b" ";
const MARKER_PREFIX: &[u8] = b"rustfpm-finish-request-";
const MARKER_LEN: usize = MARKER_PREFIX.len() + 32;

/// `word` in lowercase hex, most significant digit first, without a loop:
/// each nibble is spread into a byte of its own, then turned into its digit
/// (`'0'` + n, plus the gap up to `'a'` where n > 9) in all bytes at once.
fn hex(word: u64) -> [u8; 16] {
    fn spread(half: u64) -> u64 {
        let x = (half | (half << 16)) & 0x0000_ffff_0000_ffff;
        let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
        (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f
    }
    let digits = |nibbles: u64| {
        let above_nine = ((nibbles + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        (nibbles + 0x3030_3030_3030_3030 + above_nine * (b'a' - b'0' - 10) as u64).to_be_bytes()
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&digits(spread(word >> 32)));
    out[8..].copy_from_slice(&digits(spread(word & 0xffff_ffff)));
    out
}

/// One request's marker: `rustfpm-finish-request-` and 128 random bits in hex.
#[derive(Debug, Clone, Copy)]
pub struct Marker([u8; MARKER_LEN]);

impl Marker {
    /// The marker's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
impl Marker {
    /// A marker of the length requests get, for tests elsewhere.
    pub(crate) fn sample() -> Marker {
        let mut bytes = [b'0'; MARKER_LEN];
        bytes[..MARKER_PREFIX.len()].copy_from_slice(MARKER_PREFIX);
        Marker(bytes)
    }
}

/// Where the pool's own INI settings are read from.
pub enum Settings {
    /// php-cgi's phpinfo (`-i`, which runs no script) with the pool's
    /// arguments: every php.ini and `-d` it would read.
    Phpinfo(String),
    /// php-cgi could not say: the pool's ini table and `php_ini` only.
    Config(Vec<(String, String)>, Option<String>),
}

/// php-cgi's answers to `-i` during one start or reload: pools whose php-cgi runs with the
/// same program, arguments, environment and user get the same phpinfo, which is asked once
/// (a reload of many alike pools would otherwise run php-cgi once per pool).
#[derive(Default)]
pub struct Probes(std::cell::RefCell<Vec<(String, Option<String>)>>);

impl Probes {
    fn phpinfo(&self, spec: &ChildSpec, supervisor: &Supervisor) -> Option<String> {
        let creds = spec.credentials.as_ref().map(|c| (c.uid, c.gid));
        let key = format!("{:?} {:?} {:?} {creds:?}", spec.program, spec.args, spec.env);
        if let Some((_, answer)) = self.0.borrow().iter().find(|(k, _)| *k == key) {
            return answer.clone();
        }
        let answer = phpinfo(spec, supervisor);
        self.0.borrow_mut().push((key, answer.clone()));
        answer
    }
}

impl Settings {
    /// The settings of the pool `cfg` whose php-cgi `spec` runs: php-cgi's own
    /// phpinfo if it answers (a child process the supervisor runs, waited for
    /// here, and asked once per alike pool of `probes`), else the pool's config.
    pub fn of(cfg: &config::Pool, spec: &ChildSpec, supervisor: &Supervisor, probes: &Probes) -> Settings {
        match probes.phpinfo(spec, supervisor) {
            Some(html) if html.contains("<td class=\"e\">open_basedir</td>") => Settings::Phpinfo(html),
            _ => {
                let php_ini = cfg.php_ini.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
                Settings::Config(cfg.ini.clone(), php_ini)
            }
        }
    }

    /// What php-cgi sends as `X-Powered-By` (`PHP/8.2.36`) when `expose_php` is
    /// on, for rustfpm's own pages; `None` when it is off, or unknown (no phpinfo).
    pub fn powered_by(&self) -> Option<String> {
        let Settings::Phpinfo(html) = self else { return None };
        let on = self.get("expose_php").is_some_and(|v| v.eq_ignore_ascii_case("on") || v == "1");
        let version = html.split_once("<h1 class=\"p\">PHP Version ")?.1.split_once('<')?.0.trim();
        on.then(|| format!("PHP/{version}"))
    }

    /// The directory php-cgi reads its php.ini from when given none (PHP's
    /// compiled `PHP_CONFIG_FILE_PATH`, Debian's `/etc/php/8.2/cgi`); unknown
    /// without a phpinfo.
    pub fn config_dir(&self) -> Option<std::path::PathBuf> {
        let Settings::Phpinfo(html) = self else { return None };
        let dir = phpinfo_value(html, "Configuration File (php.ini) Path ")?;
        Some(dir.trim()).filter(|d| d.starts_with('/')).map(Into::into)
    }

    /// The functions PHP disables (`disable_functions`, comma-separated), as
    /// php-cgi's phpinfo says; None without a phpinfo (the pool's config alone
    /// does not show what php.ini and conf.d disable).
    pub fn disabled_functions(&self) -> Option<String> {
        matches!(self, Settings::Phpinfo(_)).then(|| self.raw("disable_functions").unwrap_or_default())
    }

    /// PHP disables `function`, as far as php-cgi's phpinfo says (unknown: false).
    fn disables(&self, function: &str) -> bool {
        let list = self.disabled_functions().unwrap_or_default();
        list.split(',').any(|f| f.trim().eq_ignore_ascii_case(function))
    }

    /// The php.ini php-cgi read for its phpinfo (`Loaded Configuration File`),
    /// if it read one: the one a `php_cgi` wrapper gives it (`PHPRC`, `-c`) too.
    pub fn loaded_ini(&self) -> Option<std::path::PathBuf> {
        let Settings::Phpinfo(html) = self else { return None };
        let file = phpinfo_value(html, "Loaded Configuration File ")?;
        Some(file.trim()).filter(|f| f.starts_with('/')).map(Into::into)
    }

    /// `cgi.fix_pathinfo` (on unless set off), read as PHP reads a boolean INI value.
    pub fn fix_pathinfo(&self) -> bool {
        self.raw("cgi.fix_pathinfo").is_none_or(|v| ini_bool(&v))
    }

    /// The value of `key`, if set and not empty.
    fn get(&self, key: &str) -> Option<String> {
        self.raw(key).filter(|v| !v.is_empty())
    }

    /// The value of `key`, if set (an empty value too).
    fn raw(&self, key: &str) -> Option<String> {
        match self {
            Settings::Phpinfo(html) => phpinfo_value(html, key),
            Settings::Config(ini, php_ini) => match ini.iter().rev().find(|(k, _)| k == key) {
                Some((_, v)) => Some(v.clone()),
                None => php_ini.as_deref().and_then(|text| ini_value(text, key)),
            },
        }
    }
}

/// PHP's `zend_ini_parse_bool`: `on`, `yes` and `true` (any case) are true, anything else is
/// its leading number (`Off`, `no` and the empty value are false).
fn ini_bool(value: &str) -> bool {
    let value = value.trim();
    if ["on", "yes", "true"].iter().any(|word| value.eq_ignore_ascii_case(word)) {
        return true;
    }
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    digits.bytes().take_while(u8::is_ascii_digit).any(|d| d != b'0')
}

/// How long php-cgi gets to print its phpinfo (it runs no script, but its
/// extensions start up).
const PHPINFO_WAIT: Duration = Duration::from_secs(5);

/// php-cgi's phpinfo with the pool's arguments, run by the supervisor as the
/// pool's user; None if it fails or takes longer than [`PHPINFO_WAIT`] (it is
/// killed).
fn phpinfo(spec: &ChildSpec, supervisor: &Supervisor) -> Option<String> {
    match supervisor.query(spec.query("-i"), PHPINFO_WAIT) {
        Ok(printed) => String::from_utf8(printed).ok(),
        Err(e @ QueryError::TimedOut(..)) => {
            crate::warning!("[pool {}] {e}: its settings are read from its config instead", spec.pool);
            None
        }
        Err(e @ QueryError::Failed(..)) => {
            crate::debug!("[pool {}] {e}: its settings are read from its config instead", spec.pool);
            None
        }
    }
}

/// The local value of `key` in php-cgi's HTML phpinfo.
fn phpinfo_value(html: &str, key: &str) -> Option<String> {
    let row = format!("<tr><td class=\"e\">{key}</td><td class=\"v\">");
    let start = html.find(&row)? + row.len();
    let value = &html[start..start + html[start..].find("</td>")?];
    if value.starts_with("<i>") {
        return Some(String::new());
    }
    let unescaped = value.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#039;", "'");
    Some(unescaped.replace("&amp;", "&"))
}

/// The last value of `key` in php.ini text (quotes removed).
fn ini_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.split(';').next().unwrap_or("").trim().trim_matches('"').to_string())
        .next_back()
}

/// True when the pool's access log shows the response code, or drops entries by it: the
/// polyfill then reports a code set after the headers went out ([`FINAL_STATUS_SOURCE`]).
fn logs_status(cfg: &config::Pool) -> bool {
    let shows = cfg.access_format.uses(|t| *t == crate::config::access_format::Token::Status);
    cfg.access_log.is_some() && (shows || !cfg.access_suppress_path.is_empty())
}

/// The shutdown function that reports the code a script ended with, when it is not 200 and
/// the headers went out before: it logs the request's marker, `=`, the code (read in
/// `frontend::stderr`). A named function (cheaper to call than a closure), registered
/// first, so a code set by a later shutdown function is not seen.
const FINAL_STATUS_SOURCE: &str = r#"function rustfpm_final_status(): void
{
    if (headers_sent() && ($code = http_response_code()) !== 200 && is_int($code)) {
        $marker = (string) getenv(' ');
        if ($marker !== '') {
            error_log($marker . '=' . $code, 4);
        }
    }
}
register_shutdown_function('rustfpm_final_status');
"#;

/// The shutdown function that tells rustfpm the script's main code has ended, before the
/// script's own shutdown functions, destructors and output buffers run: `request_terminate_timeout`
/// stops counting there, as php-fpm's does (`fpm_request_end()` runs before
/// `php_request_shutdown()`) unless `request_terminate_timeout_track_finished`. It logs the
/// request's marker and `.` (read in `frontend::stderr`) and flushes, so the line reaches
/// rustfpm while those run; a flush that finds nginx gone does not end the request
/// (`ignore_user_abort` for that moment: the script's shutdown functions still run, as they
/// would under php-fpm, which writes nothing there). Registered only in pools with a terminate
/// timeout that stops at the main code's end: it costs each of their requests a shutdown
/// function, a line and a write (see docs/php-fpm-differences.md for the figures).
const MAIN_END_SOURCE: &str = r#"function rustfpm_main_ended(): void
{
    $marker = (string) getenv(' ');
    if ($marker !== '') {
        error_log($marker . '.', 4);
        $ignored = ignore_user_abort(true);
        flush();
        ignore_user_abort((bool) $ignored);
    }
}
register_shutdown_function('rustfpm_main_ended');
"#;

/// `request_terminate_timeout` stops counting when the script's main code ends: the pool
/// has one, does not track finished requests, and leaves `fastcgi.logging` on (`logging_on`),
/// which carries the line ([`MAIN_END_SOURCE`]; off, it would reach the pool's log and end
/// nothing).
fn untimed_after_main(cfg: &config::Pool, logging_on: bool) -> bool {
    cfg.request_terminate_timeout.is_some() && !cfg.request_terminate_timeout_track_finished && logging_on
}

/// What the polyfill adds to php-cgi besides its two functions.
struct Shims<'a> {
    /// `fastcgi.error_header`, if set.
    error_header: Option<&'a str>,
    /// Report a response code set after the headers went out ([`FINAL_STATUS_SOURCE`]).
    final_status: bool,
    /// Tell rustfpm when the script's main code has ended ([`MAIN_END_SOURCE`]).
    main_end: bool,
    /// The variables of php-cgi's environment the scripts must not see as they are ([`env`]).
    undo_env: &'a [env::Undo],
}

/// php-fpm's `fastcgi.error_header` of the pool (its ini table, then its
/// php.ini), unquoted; php-cgi has no such setting, so the polyfill applies it.
fn error_header(cfg: &config::Pool) -> Option<String> {
    const KEY: &str = "fastcgi.error_header";
    let no_ini = cfg.php_flags.iter().any(|f| f == "-n");
    let value = match cfg.ini.iter().rev().find(|(k, _)| k == KEY) {
        Some((_, v)) => Some(v.clone()),
        None => cfg
            .php_ini
            .as_ref()
            .filter(|_| !no_ini)
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| ini_value(&t, KEY)),
    }?;
    let value = value.trim();
    let unquoted = ['"', '\''].iter().find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)));
    Some(unquoted.unwrap_or(value).to_string()).filter(|v| !v.is_empty())
}

/// php-fpm's use of `fastcgi.error_header`: after a script ended with a fatal
/// error (exit status 255) and before any header was sent, the header
/// replaces the status line. A shutdown function registered by the polyfill
/// runs before the script's own ones and before the output buffers are
/// flushed; it costs each request of such a pool one registration.
fn error_header_source(header: &str) -> String {
    format!(
        r#"register_shutdown_function(static function (): void {{
    $error = error_get_last();
    $fatal = E_ERROR | E_PARSE | E_CORE_ERROR | E_COMPILE_ERROR | E_USER_ERROR | E_RECOVERABLE_ERROR;
    if ($error !== null && ($error['type'] & $fatal) !== 0 && !headers_sent()) {{
        header({});
    }}
}});
"#,
        php_string(header)
    )
}

/// The polyfill's PHP source; `fpm_get_status()` asks `status_socket`; a
/// fatal error sends the `shims`' error header, if set.
fn source(pool: &str, user_file: Option<&str>, status_socket: &Path, shims: &Shims<'_>) -> String {
    let mut user = env::source(shims.undo_env, php_string);
    user.extend(shims.error_header.map(error_header_source));
    if shims.final_status {
        user.push_str(FINAL_STATUS_SOURCE);
    }
    if shims.main_end {
        user.push_str(MAIN_END_SOURCE);
    }
    user.extend(user_file.map(|f| format!("require {};\n", php_string(f))));
    // A name may hold `?>`, which ends PHP's code even in a comment.
    let pool_in_comment = crate::sys::rundir::file_name(pool);
    format!(
        r#"<?php
// Written by rustfpm for pool {pool_in_comment}: php-cgi has no fastcgi_finish_request() and
// no fpm_get_status().
// (Nothing here may name the server superglobal: that alone makes PHP build it for
// every request. Both functions are declared unconditionally: php-cgi has neither, and
// opcache binds top-level functions as it loads the file, where a function_exists()
// guard cost each request ~600 instructions of php-cgi's ~54,000 for hello world.)
function fastcgi_finish_request(): bool
{{
    static $finished = false;
    $marker = (string) getenv({param});
    if ($finished || $marker === '') {{
        return false;
    }}
    $finished = true;
    while (ob_get_level() > 0 && @ob_end_flush()) {{
    }}
    flush();
    if (!headers_sent()) {{
        $head = '';
        $code = http_response_code();
        if (is_int($code) && $code !== 200) {{
            // With php-cgi's reason phrase (main/http_status_codes.h): nginx
            // shows "302 Found" as sent, a bare "302" as a bare code.
            $reason = match ($code) {{
                100 => 'Continue', 101 => 'Switching Protocols', 201 => 'Created', 202 => 'Accepted',
                203 => 'Non-Authoritative Information', 204 => 'No Content', 205 => 'Reset Content',
                206 => 'Partial Content', 300 => 'Multiple Choices', 301 => 'Moved Permanently',
                302 => 'Found', 303 => 'See Other', 304 => 'Not Modified', 305 => 'Use Proxy',
                307 => 'Temporary Redirect', 308 => 'Permanent Redirect', 400 => 'Bad Request',
                401 => 'Unauthorized', 402 => 'Payment Required', 403 => 'Forbidden', 404 => 'Not Found',
                405 => 'Method Not Allowed', 406 => 'Not Acceptable', 407 => 'Proxy Authentication Required',
                408 => 'Request Timeout', 409 => 'Conflict', 410 => 'Gone', 411 => 'Length Required',
                412 => 'Precondition Failed', 413 => 'Request Entity Too Large', 414 => 'Request-URI Too Long',
                415 => 'Unsupported Media Type', 416 => 'Requested Range Not Satisfiable',
                417 => 'Expectation Failed', 426 => 'Upgrade Required', 428 => 'Precondition Required',
                429 => 'Too Many Requests', 431 => 'Request Header Fields Too Large',
                451 => 'Unavailable For Legal Reasons', 500 => 'Internal Server Error', 501 => 'Not Implemented',
                502 => 'Bad Gateway', 503 => 'Service Unavailable', 504 => 'Gateway Timeout',
                505 => 'HTTP Version Not Supported', 506 => 'Variant Also Negotiates',
                511 => 'Network Authentication Required', default => '',
            }};
            $head .= rtrim("Status: $code $reason") . "\r\n";
        }}
        $typed = false;
        foreach (headers_list() as $line) {{
            $head .= $line . "\r\n";
            $typed = $typed || stripos($line, 'content-type:') === 0;
        }}
        $mime = (string) ini_get('default_mimetype');
        if (!$typed && $mime !== '') {{
            $charset = (string) ini_get('default_charset');
            $text = $charset !== '' && stripos($mime, 'text/') === 0;
            $head .= 'Content-type: ' . $mime . ($text ? '; charset=' . $charset : '') . "\r\n";
        }}
        // One record per piece: a flush() closes each.
        foreach (str_split(bin2hex($head . "\r\n"), 4096) as $piece) {{
            error_log($marker . ':' . $piece, 4);
            flush();
        }}
    }}
    error_log($marker, 4);
    flush();
    ob_start(static function (string $output): string {{ return ''; }}, 4096);
    return true;
}}
{status}{user}"#,
        param = php_string(std::str::from_utf8(MARKER_PARAM).unwrap_or_default()),
        status = status_source(&php_string(&format!("unix://{}", status_socket.display()))),
    )
}

/// `fpm_get_status()`: the status page's JSON (`?json&full`) from rustfpm,
/// as php-fpm's array (keys with `-`, `request-uri` split from its
/// `query-string`, `request-length`). rustfpm answers only the pool's own
/// children. The caller's own process shows its request even when the pool
/// keeps no request details (no status page or slowlog): it is read from
/// the request's params, as php-fpm would have recorded it.
fn status_source(socket: &str) -> String {
    format!(
        r#"function fpm_get_status(): array|false
{{
    $conn = @stream_socket_client({socket}, $errno, $errstr, 5);
    if ($conn === false) {{
        return false;
    }}
    stream_set_timeout($conn, 5);
    $json = stream_get_contents($conn);
    fclose($conn);
    $page = is_string($json) ? json_decode($json, true) : null;
    if (!is_array($page) || !is_array($page['processes'] ?? null)) {{
        return false;
    }}
    $status = [];
    foreach ($page as $key => $value) {{
        if ($key !== 'processes') {{
            $status[str_replace(' ', '-', $key)] = $value;
        }}
    }}
    $status['procs'] = [];
    foreach ($page['processes'] as $p) {{
        if ($p['pid'] === getmypid() && $p['request method'] === '-') {{
            $p['request method'] = (string) getenv('REQUEST_METHOD');
            $query = (string) getenv('QUERY_STRING');
            $p['request uri'] = getenv('SCRIPT_NAME') . ($query === '' ? '' : '?' . $query);
            $p['content length'] = (int) getenv('CONTENT_LENGTH');
            $auth = (string) getenv('HTTP_AUTHORIZATION');
            $basic = strncasecmp($auth, 'basic ', 6) === 0 ? (string) base64_decode(substr($auth, 6)) : '';
            $p['user'] = strpos($basic, ':') === false ? '' : strstr($basic, ':', true);
            $p['script'] = (string) getenv('SCRIPT_FILENAME');
        }}
        $uri = explode('?', (string) $p['request uri'], 2);
        $status['procs'][] = [
            'pid' => $p['pid'],
            'state' => $p['state'],
            'start-time' => $p['start time'],
            'start-since' => $p['start since'],
            'requests' => $p['requests'],
            'request-duration' => $p['request duration'],
            'request-method' => $p['request method'],
            'request-uri' => $uri[0],
            'query-string' => $uri[1] ?? '',
            'request-length' => $p['content length'],
            'user' => $p['user'] === '' ? '-' : $p['user'],
            'script' => $p['script'],
            'last-request-cpu' => (float) $p['last request cpu'],
            'last-request-memory' => $p['last request memory'],
        ];
    }}
    return $status;
}}
"#
    )
}

/// `s` as a single-quoted PHP string literal.
fn php_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_gets_its_own_marker() {
        let polyfill = Polyfill {
            dir: PathBuf::new(),
            file: PathBuf::new(),
            keys: RandomState::new(),
            issued: AtomicU64::new(0),
            logging_set: false,
            open_basedir: None,
            gone: tokio::sync::watch::channel(()).0,
            children_uid: None,
        };
        let (a, b) = (polyfill.request_marker(), polyfill.request_marker());
        assert_ne!(a.as_bytes(), b.as_bytes());
        let text = std::str::from_utf8(a.as_bytes()).unwrap();
        let hex = text.strip_prefix("rustfpm-finish-request-").unwrap();
        assert!(hex.len() == 32 && hex.bytes().all(|c| c.is_ascii_hexdigit()), "{text}");
    }

    #[test]
    fn hex_is_what_format_writes() {
        for word in [0, 1, 9, 10, 15, 0xdead_beef_0123_4567, u64::MAX, 0x0f1e_2d3c_4b5a_6978] {
            assert_eq!(hex(word), format!("{word:016x}").as_bytes(), "{word:#x}");
        }
    }

    #[test]
    fn php_ini_prepend_is_found() {
        let text =
            "; auto_prepend_file = /commented\nauto_prepend_file =\nauto_prepend_file = \"/srv/pre.php\" ; note\n";
        assert_eq!(ini_value(text, "auto_prepend_file").as_deref(), Some("/srv/pre.php"));
        assert_eq!(ini_value("x = 1\n", "auto_prepend_file"), None);
    }

    #[test]
    fn phpinfo_values_are_read() {
        let html = "<tr><td class=\"e\">auto_prepend_file</td><td class=\"v\">/x/a&amp;b.php</td><td class=\"v\">/y</td></tr>\n\
                    <tr><td class=\"e\">open_basedir</td><td class=\"v\"><i>no value</i></td><td class=\"v\"><i>no value</i></td></tr>";
        assert_eq!(phpinfo_value(html, "auto_prepend_file").as_deref(), Some("/x/a&b.php"));
        assert_eq!(phpinfo_value(html, "open_basedir").as_deref(), Some(""));
        assert_eq!(phpinfo_value(html, "open"), None);
    }

    #[test]
    fn the_php_ini_directory_is_read_from_phpinfo() {
        let html =
            "<tr><td class=\"e\">Configuration File (php.ini) Path </td><td class=\"v\">/etc/php/8.2/cgi </td></tr>\n\
                    <tr><td class=\"e\">Loaded Configuration File </td><td class=\"v\">(none) </td></tr>";
        assert_eq!(Settings::Phpinfo(html.into()).config_dir(), Some("/etc/php/8.2/cgi".into()));
        assert_eq!(Settings::Phpinfo(html.into()).loaded_ini(), None, "(none)");
        let loaded = html.replace("(none)", "/site/etc/php.ini");
        assert_eq!(Settings::Phpinfo(loaded).loaded_ini(), Some("/site/etc/php.ini".into()));
        assert_eq!(Settings::Config(Vec::new(), None).disabled_functions(), None, "not known: not replaced");
        assert_eq!(Settings::Phpinfo(String::new()).config_dir(), None);
        assert_eq!(Settings::Config(Vec::new(), None).config_dir(), None);
    }

    #[test]
    fn fix_pathinfo_is_read_as_php_reads_booleans() {
        for (value, on) in [("On", true), ("1", true), ("yes", true), ("TRUE", true), ("2", true)] {
            assert_eq!(ini_bool(value), on, "{value}");
        }
        for value in ["Off", "0", "no", "", "false", "none", "00"] {
            assert!(!ini_bool(value), "{value}");
        }
        let config = |value: &str| Settings::Config(vec![("cgi.fix_pathinfo".into(), value.into())], None);
        assert!(!config("no").fix_pathinfo());
        assert!(!config("").fix_pathinfo(), "an empty value is off, not unset");
        assert!(Settings::Config(Vec::new(), None).fix_pathinfo(), "PHP's default is on");
    }

    #[test]
    fn source_includes_the_user_file_quoted() {
        let socket = Path::new("/run/rustfpm/www-php/status.sock");
        let none = Shims { error_header: None, final_status: false, main_end: false, undo_env: &[] };
        let php = source("www", Some("/srv/it's.php"), socket, &none);
        assert!(php.contains(r"require '/srv/it\'s.php';"), "{php}");
        assert!(php.contains("getenv(' ')"), "{php}");
        assert!(php.contains("stream_socket_client('unix:///run/rustfpm/www-php/status.sock'"), "{php}");
        assert!(!php.contains("$_SERVER"), "PHP would build $_SERVER for every request: {php}");
        assert!(!source("www", None, socket, &none).contains("require"));
        assert!(!php.contains("register_shutdown_function"), "{php}");
        let header = Shims { error_header: Some("HTTP/1.1 500 PHP's Error"), ..none };
        let php = source("www", None, socket, &header);
        assert!(php.contains(r"header('HTTP/1.1 500 PHP\'s Error');"), "{php}");
        assert!(!php.contains("rustfpm_final_status"), "{php}");
        let php = source("www", None, socket, &Shims { final_status: true, ..none });
        assert!(php.contains("register_shutdown_function('rustfpm_final_status');"), "{php}");
        assert!(!php.contains("$_SERVER"), "{php}");
        assert!(!php.contains("rustfpm_main_ended"), "{php}");
        let php = source("www", Some("/srv/pre.php"), socket, &Shims { main_end: true, ..none });
        let registered = php.find("register_shutdown_function('rustfpm_main_ended');").expect("registered");
        assert!(registered < php.find("require").expect("the user's prepend"), "before the pool's own: {php}");
    }

    #[test]
    fn only_pools_that_log_the_status_report_it() {
        let text = "[pool.www]\nlisten = \"/run/www.sock\"\npm = \"static\"\npm_max_children = 1\n";
        let mut cfg = config::parse(text, Path::new("test.toml")).unwrap().pools.remove(0);
        assert!(!logs_status(&cfg), "no access log");
        cfg.access_log = Some("/var/log/a.log".into());
        assert!(logs_status(&cfg), "the default format shows %s");
        cfg.access_format = crate::config::access_format::AccessFormat::parse("%m %r").unwrap();
        assert!(!logs_status(&cfg));
        cfg.access_suppress_path = vec!["/ping".into()];
        assert!(logs_status(&cfg), "suppression depends on the status");
    }
}
