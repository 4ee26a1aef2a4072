//! The raw file type turned into the typed [`Config`], checking every value.
//!
//! Every check reports into the [`Report`] and returns `None` on failure; a pool, or the whole
//! config, is built only when its checks added no error.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Group, User};
use toml::de::DeValue;

use super::access_format::AccessFormat;
use super::error::Report;
use super::file::{Field, RawFile, RawGlobal, RawPool, RawPoolKeys};
use super::{error_log, listen, pm, request_logs, tables};
use super::{parse_duration, parse_size};
use super::{
    Config, Global, ListenAddr, LogLevel, LogTarget, Pool, RlimitCore, SchedPolicy, DEFAULT_CATCH_WORKERS_OUTPUT,
    DEFAULT_CLEAR_ENV, DEFAULT_DECORATE_WORKERS_OUTPUT, DEFAULT_EMERGENCY_RESTART_THRESHOLD, DEFAULT_ERROR_LOG,
    DEFAULT_FASTCGI_FINISH_REQUEST, DEFAULT_GRACEFUL_STOP_ON_TERM, DEFAULT_LISTEN_BACKLOG, DEFAULT_LISTEN_IDLE_TIMEOUT,
    DEFAULT_LISTEN_MAX_CONNECTIONS, DEFAULT_LISTEN_MODE, DEFAULT_LOG_LEVEL, DEFAULT_PHP_CGI, DEFAULT_PING_RESPONSE,
    DEFAULT_PM, DEFAULT_PM_MAX_REQUESTS, DEFAULT_PM_MAX_SPAWN_RATE, DEFAULT_PM_PROCESS_IDLE_TIMEOUT,
    DEFAULT_PROCESS_DUMPABLE, DEFAULT_REQUEST_READ_TIMEOUT, DEFAULT_REQUEST_TERMINATE_TIMEOUT_TRACK_FINISHED,
    DEFAULT_SECURITY_LIMIT_EXTENSIONS, DEFAULT_SYSTEMD_INTERVAL, MAX_CHILDREN, MAX_FRONT_END_THREADS,
    MAX_LISTEN_MAX_CONNECTIONS, MAX_PROCESS_PRIORITY, MIN_PROCESS_PRIORITY,
};

pub(crate) fn config(raw: &RawFile<'_>, path: &Path, r: &mut Report<'_>) -> Option<Config> {
    let before = r.count();
    let global = global(&raw.global, r);
    if raw.pools.is_empty() {
        r.push(None, None, None, "no pool is defined; add a [pool.NAME] table");
    }
    let pools: Vec<Pool> = raw.pools.iter().filter_map(|pool| self::pool(pool, r)).collect();
    distinct_listen(raw, &pools, r);
    let path = path.to_path_buf();
    (r.count() == before).then_some(Config { path, global, pools })
}

fn global(raw: &RawGlobal<'_>, r: &mut Report<'_>) -> Global {
    let mut global = Global {
        error_log: optional(&raw.error_log, r, error_log).unwrap_or(DEFAULT_ERROR_LOG),
        log_level: optional(&raw.log_level, r, log_level).unwrap_or(DEFAULT_LOG_LEVEL),
        pid: optional(&raw.pid, r, absolute_path),
        process_control_timeout: optional(&raw.process_control_timeout, r, duration).filter(|d| !d.is_zero()),
        emergency_restart_threshold: optional(&raw.emergency_restart_threshold, r, count)
            .unwrap_or(DEFAULT_EMERGENCY_RESTART_THRESHOLD),
        emergency_restart_interval: optional(&raw.emergency_restart_interval, r, duration).filter(|d| !d.is_zero()),
        graceful_stop_on_term: optional(&raw.graceful_stop_on_term, r, boolean)
            .unwrap_or(DEFAULT_GRACEFUL_STOP_ON_TERM),
        rlimit_files: optional(&raw.rlimit_files, r, rlimit_files),
        systemd_interval: optional(&raw.systemd_interval, r, duration)
            .map_or(Some(DEFAULT_SYSTEMD_INTERVAL), |d| Some(d).filter(|d| !d.is_zero())),
        metrics_listen: optional(&raw.metrics_listen, r, |f, r| parsed(f, r, listen::parse_tcp)),
        front_end_threads: optional(&raw.front_end_threads, r, |f, r| {
            int_in(f, r, 1..=MAX_FRONT_END_THREADS as i64).map(|n| n as usize)
        }),
        process_sched_policy: optional(&raw.process_sched_policy, r, sched_policy),
        ..Global::default()
    };
    error_log::apply(raw, &mut global, r);
    global
}

fn pool(raw: &RawPool<'_>, r: &mut Report<'_>) -> Option<Pool> {
    r.pool = Some(raw.name.clone());
    let before = r.count();
    pool_name(raw, r);
    let k = &raw.keys;
    let listen = required(&k.listen, "listen", raw.line, r, |f, r| parsed(f, r, listen::parse_listen));
    let max_children = required(&k.pm_max_children, "pm_max_children", raw.line, r, |f, r| {
        int_in(f, r, 1..=MAX_CHILDREN as i64).map(|n| n as usize)
    });
    // Placeholders stand in for missing required values; such a pool is dropped below.
    let mut pool =
        defaults(raw.name.clone(), listen.unwrap_or(ListenAddr::Unix(PathBuf::new())), max_children.unwrap_or(1));
    listen_settings(k, &mut pool, r);
    pm::apply(k, &mut pool, max_children, r);
    process_settings(k, &mut pool, r);
    request_settings(k, &mut pool, r);
    request_logs::apply(k, &mut pool, r);
    tables::apply(k, &mut pool, r);
    r.pool = None;
    (r.count() == before).then_some(pool)
}

/// A pool with every optional key at its default.
fn defaults(name: String, listen: ListenAddr, pm_max_children: usize) -> Pool {
    Pool {
        name,
        listen,
        listen_backlog: DEFAULT_LISTEN_BACKLOG,
        listen_owner: None,
        listen_group: None,
        listen_acl_users: Vec::new(),
        listen_acl_groups: Vec::new(),
        listen_allowed_clients: Vec::new(),
        listen_mode: DEFAULT_LISTEN_MODE,
        user: None,
        group: None,
        pm: DEFAULT_PM,
        pm_max_children,
        pm_start_servers: None,
        pm_start_servers_defaulted: false,
        pm_min_spare_servers: None,
        pm_max_spare_servers: None,
        pm_max_spawn_rate: DEFAULT_PM_MAX_SPAWN_RATE,
        pm_process_idle_timeout: DEFAULT_PM_PROCESS_IDLE_TIMEOUT,
        pm_max_requests: DEFAULT_PM_MAX_REQUESTS,
        pm_max_memory: None,
        pm_max_lifetime: None,
        php_cgi: PathBuf::from(DEFAULT_PHP_CGI),
        php_ini: None,
        php_flags: Vec::new(),
        clear_env: DEFAULT_CLEAR_ENV,
        chdir: None,
        chroot: None,
        rlimit_files: None,
        rlimit_core: None,
        process_priority: None,
        process_sched_policy: None,
        process_dumpable: DEFAULT_PROCESS_DUMPABLE,
        catch_workers_output: DEFAULT_CATCH_WORKERS_OUTPUT,
        decorate_workers_output: DEFAULT_DECORATE_WORKERS_OUTPUT,
        pm_status_path: None,
        pm_status_listen: None,
        ping_path: None,
        ping_response: DEFAULT_PING_RESPONSE.to_string(),
        env: Vec::new(),
        security_limit_extensions: DEFAULT_SECURITY_LIMIT_EXTENSIONS.iter().map(|ext| ext.to_string()).collect(),
        queue_max_len: DEFAULT_LISTEN_BACKLOG as usize,
        request_terminate_timeout: None,
        request_terminate_timeout_track_finished: DEFAULT_REQUEST_TERMINATE_TIMEOUT_TRACK_FINISHED,
        queue_max_wait: None,
        fastcgi_finish_request: DEFAULT_FASTCGI_FINISH_REQUEST,
        request_read_timeout: Some(DEFAULT_REQUEST_READ_TIMEOUT),
        listen_idle_timeout: Some(DEFAULT_LISTEN_IDLE_TIMEOUT),
        listen_max_connections: DEFAULT_LISTEN_MAX_CONNECTIONS,
        access_log: None,
        access_format: AccessFormat::default(),
        access_suppress_path: Vec::new(),
        slowlog: None,
        request_slowlog_timeout: None,
        ini: Vec::new(),
        admin_ini_keys: Vec::new(),
    }
}

fn listen_settings(k: &RawPoolKeys<'_>, pool: &mut Pool, r: &mut Report<'_>) {
    let backlog = |f: &Field<'_>, r: &mut Report<'_>| {
        let n = integer(f, r)?;
        listen::backlog(n).map_err(|m| r.bad(f, m)).ok()
    };
    set(&mut pool.listen_backlog, optional(&k.listen_backlog, r, backlog));
    pool.listen_owner = optional(&k.listen_owner, r, user);
    pool.listen_group = optional(&k.listen_group, r, group);
    set(&mut pool.listen_acl_users, optional(&k.listen_acl_users, r, names));
    set(&mut pool.listen_acl_groups, optional(&k.listen_acl_groups, r, names));
    let mode = |f: &Field<'_>, r: &mut Report<'_>| parsed(f, r, listen::parse_mode);
    set(&mut pool.listen_mode, optional(&k.listen_mode, r, mode));
    let clients = |f: &Field<'_>, r: &mut Report<'_>| parsed(f, r, listen::allowed_clients);
    set(&mut pool.listen_allowed_clients, optional(&k.listen_allowed_clients, r, clients));
    let connections =
        |f: &Field<'_>, r: &mut Report<'_>| int_in(f, r, 1..=MAX_LISTEN_MAX_CONNECTIONS as i64).map(|n| n as usize);
    set(&mut pool.listen_max_connections, optional(&k.listen_max_connections, r, connections));
    set(&mut pool.request_read_timeout, optional(&k.request_read_timeout, r, duration).map(nonzero));
    set(&mut pool.listen_idle_timeout, optional(&k.listen_idle_timeout, r, duration).map(nonzero));
}

/// A duration where `0` means "no limit".
fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

fn process_settings(k: &RawPoolKeys<'_>, pool: &mut Pool, r: &mut Report<'_>) {
    // Not root: php-fpm ignores user and group (with a notice at start), whatever they name.
    let root = nix::unistd::Uid::effective().is_root();
    let any = |f: &Field<'_>, r: &mut Report<'_>| string(f, r).map(str::to_string);
    pool.user = optional(&k.user, r, if root { user } else { any });
    pool.group = optional(&k.group, r, if root { group } else { any });
    set(&mut pool.php_cgi, optional(&k.php_cgi, r, path));
    pool.php_ini = optional(&k.php_ini, r, existing_path);
    set(&mut pool.clear_env, optional(&k.clear_env, r, boolean));
    pool.chroot = optional(&k.chroot, r, directory);
    // A chroot refused already: the chdir inside it cannot be checked.
    let root = if k.chroot.is_some() && pool.chroot.is_none() { None } else { Some(pool.chroot.as_deref()) };
    pool.chdir = match root {
        Some(root) => optional(&k.chdir, r, |f, r| chdir(f, r, root)),
        None => optional(&k.chdir, r, absolute_path),
    };
    pool.rlimit_files = optional(&k.rlimit_files, r, rlimit_files);
    pool.rlimit_core = optional(&k.rlimit_core, r, rlimit_core);
    let priority = |f: &Field<'_>, r: &mut Report<'_>| {
        int_in(f, r, i64::from(MIN_PROCESS_PRIORITY)..=i64::from(MAX_PROCESS_PRIORITY)).map(|n| n as i32)
    };
    pool.process_priority = optional(&k.process_priority, r, priority);
    pool.process_sched_policy = optional(&k.process_sched_policy, r, sched_policy);
    set(&mut pool.process_dumpable, optional(&k.process_dumpable, r, boolean));
    set(&mut pool.catch_workers_output, optional(&k.catch_workers_output, r, boolean));
    set(&mut pool.decorate_workers_output, optional(&k.decorate_workers_output, r, boolean));
}

fn request_settings(k: &RawPoolKeys<'_>, pool: &mut Pool, r: &mut Report<'_>) {
    let extensions = |f: &Field<'_>, r: &mut Report<'_>| parsed(f, r, extensions);
    let extensions = optional(&k.security_limit_extensions, r, extensions);
    set(&mut pool.security_limit_extensions, extensions);
    let queue = |f: &Field<'_>, r: &mut Report<'_>| int_in(f, r, 0..=i64::MAX).map(|n| n as usize);
    // Unset: as many as the listen backlog, where php-fpm's requests would wait.
    pool.queue_max_len = optional(&k.queue_max_len, r, queue).unwrap_or(pool.listen_backlog.max(1) as usize);
    pool.queue_max_wait = optional(&k.queue_max_wait, r, duration).filter(|d| !d.is_zero());
    set(&mut pool.fastcgi_finish_request, optional(&k.fastcgi_finish_request, r, boolean));
    let terminate = optional(&k.request_terminate_timeout, r, duration).filter(|d| !d.is_zero());
    pool.request_terminate_timeout = terminate;
    let track_finished = optional(&k.request_terminate_timeout_track_finished, r, boolean);
    set(&mut pool.request_terminate_timeout_track_finished, track_finished);
    pool.pm_status_path = optional(&k.pm_status_path, r, uri_path).filter(|p| !p.is_empty());
    pool.ping_path = optional(&k.ping_path, r, uri_path).filter(|p| !p.is_empty());
    status_listen(k, pool, r);
    let response = |f: &Field<'_>, r: &mut Report<'_>| string(f, r).map(str::to_string);
    set(&mut pool.ping_response, optional(&k.ping_response, r, response));
}

/// `pm_status_listen`: only useful with a page to serve there.
fn status_listen(k: &RawPoolKeys<'_>, pool: &mut Pool, r: &mut Report<'_>) {
    let Some(f) = &k.pm_status_listen else {
        return;
    };
    pool.pm_status_listen = parsed(f, r, listen::parse_listen);
    if pool.pm_status_listen.is_some() && pool.pm_status_path.is_none() && pool.ping_path.is_none() {
        r.bad(f, "serves only the status and ping pages, so it needs pm_status_path or ping_path");
    }
}

/// A URI path for the status and ping pages: must start with '/' ("" is off).
fn uri_path(f: &Field<'_>, r: &mut Report<'_>) -> Option<String> {
    parsed(f, r, |s| {
        if s.is_empty() || s.starts_with('/') && !s.contains(char::is_whitespace) {
            Ok(s.to_string())
        } else {
            Err("must be a path starting with '/', without spaces".to_string())
        }
    })
}

pub(super) fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// Any name php-fpm takes (`[a b]`, `[shop:8080]`, `[ünï]`), but none with a control
/// character, which would reach the log lines it prefixes. Where a name names a file it is
/// made safe first (`rundir::file_name`).
fn pool_name(raw: &RawPool<'_>, r: &mut Report<'_>) {
    if raw.name.is_empty() || raw.name.chars().any(char::is_control) {
        let message = format!("invalid pool name \"{}\"; a name has no control characters", raw.name.escape_debug());
        r.push(Some(raw.line), None, None, message);
    }
}

/// No two listeners may share an address (nor one take a port's wildcard address and another
/// the same port): pools' `listen` and `pm_status_listen` alike.
fn distinct_listen(raw: &RawFile<'_>, pools: &[Pool], r: &mut Report<'_>) {
    let mut seen: Vec<(&str, &ListenAddr)> = Vec::new();
    for pool in pools {
        let raw_keys = raw.pools.iter().find(|p| p.name == pool.name).map(|p| &p.keys);
        let addresses = [
            (Some(&pool.listen), raw_keys.and_then(|k| k.listen.as_ref())),
            (pool.pm_status_listen.as_ref(), raw_keys.and_then(|k| k.pm_status_listen.as_ref())),
        ];
        for (addr, field) in addresses {
            let (Some(addr), Some(field)) = (addr, field) else {
                continue;
            };
            if let Some((earlier, taken)) = seen.iter().find(|(_, taken)| clash(taken, addr)) {
                r.pool = Some(pool.name.clone());
                r.bad(field, format!("pool {earlier} already listens on {taken}"));
                r.pool = None;
            }
            seen.push((&pool.name, addr));
        }
    }
}

fn clash(a: &ListenAddr, b: &ListenAddr) -> bool {
    match (a.tcp(), b.tcp()) {
        (Some(a), Some(b)) => {
            a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        }
        _ => a == b,
    }
}

// ---- one check per kind of value ----

fn error_log(f: &Field<'_>, r: &mut Report<'_>) -> Option<LogTarget> {
    match string(f, r)? {
        "stderr" => Some(LogTarget::Stderr),
        "syslog" => Some(LogTarget::Syslog),
        _ => absolute_path(f, r).map(LogTarget::File),
    }
}

fn log_level(f: &Field<'_>, r: &mut Report<'_>) -> Option<LogLevel> {
    one_of(f, r, &LogLevel::ALL)
}

fn sched_policy(f: &Field<'_>, r: &mut Report<'_>) -> Option<SchedPolicy> {
    one_of(f, r, &SchedPolicy::ALL)
}

/// A string naming one of `table`'s values.
fn one_of<T: Copy>(f: &Field<'_>, r: &mut Report<'_>, table: &[(&str, T)]) -> Option<T> {
    let s = string(f, r)?;
    let found = table.iter().find(|(name, _)| *name == s);
    if found.is_none() {
        let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
        r.bad(f, format!("must be one of: {}", names.join(", ")));
    }
    found.map(|(_, value)| *value)
}

fn extensions(s: &str) -> Result<Vec<String>, String> {
    let extensions: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    match extensions.iter().find(|ext| !ext.starts_with('.') || ext.len() < 2) {
        Some(bad) => Err(format!(
            "\"{bad}\" is not an extension; write extensions with their dot, separated by \
             spaces (\".php .phar\"), or \"\" for no limit"
        )),
        None => Ok(extensions),
    }
}

/// A user name that exists, or a numeric uid (as php-fpm accepts).
fn user(f: &Field<'_>, r: &mut Report<'_>) -> Option<String> {
    account(f, r, "user", |name| User::from_name(name).map(|u| u.is_some()))
}

/// A group name that exists, or a numeric gid.
fn group(f: &Field<'_>, r: &mut Report<'_>) -> Option<String> {
    account(f, r, "group", |name| Group::from_name(name).map(|g| g.is_some()))
}

fn account(
    f: &Field<'_>,
    r: &mut Report<'_>,
    kind: &str,
    exists: impl FnOnce(&str) -> nix::Result<bool>,
) -> Option<String> {
    let name = string(f, r)?;
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return Some(name.to_string());
    }
    let problem = match exists(name) {
        Ok(true) => return Some(name.to_string()),
        Ok(false) => format!("no such {kind} on this system"),
        Err(err) => format!("cannot look up the {kind}: {err}"),
    };
    r.bad(f, problem);
    None
}

/// Names separated by commas (php-fpm's `listen.acl_users` spelling). As php-fpm, they are
/// looked up when the socket is made, not by a configuration test.
fn names(f: &Field<'_>, r: &mut Report<'_>) -> Option<Vec<String>> {
    let names = string(f, r)?.split(',').map(str::trim).filter(|n| !n.is_empty());
    Some(names.map(String::from).collect())
}

fn path(f: &Field<'_>, r: &mut Report<'_>) -> Option<PathBuf> {
    let s = string(f, r)?;
    let problem = if s.is_empty() {
        "must not be empty"
    } else if s.contains('\0') {
        "must not contain a NUL byte"
    } else {
        return Some(PathBuf::from(s));
    };
    r.bad(f, problem);
    None
}

pub(super) fn absolute_path(f: &Field<'_>, r: &mut Report<'_>) -> Option<PathBuf> {
    let path = path(f, r)?;
    if path.is_absolute() {
        return Some(path);
    }
    r.bad(f, "must be an absolute path");
    None
}

/// An absolute path to an existing directory.
fn directory(f: &Field<'_>, r: &mut Report<'_>) -> Option<PathBuf> {
    let path = absolute_path(f, r)?;
    match not_a_directory(&path) {
        None => Some(path),
        Some(problem) => {
            r.bad(f, problem);
            None
        }
    }
}

/// `chdir`: an absolute path to an existing directory, inside `chroot` when there is one (the
/// children would not start otherwise; php-fpm's `-t` checks it the same way).
fn chdir(f: &Field<'_>, r: &mut Report<'_>, chroot: Option<&Path>) -> Option<PathBuf> {
    let Some(root) = chroot else {
        return directory(f, r);
    };
    let path = absolute_path(f, r)?;
    let inside = root.join(path.strip_prefix("/").unwrap_or(&path));
    match not_a_directory(&inside) {
        None => Some(path),
        Some(problem) => {
            r.bad(f, format!("{problem} inside the chroot {} ({})", root.display(), inside.display()));
            None
        }
    }
}

/// What is wrong with `path` as a directory, if anything.
fn not_a_directory(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => None,
        Ok(_) => Some("not a directory".to_string()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Some("no such directory".to_string()),
        Err(err) => Some(format!("cannot read the directory: {err}")),
    }
}

/// An absolute path to an existing file: a relative one would name another file once the
/// daemon works in `/`.
fn existing_path(f: &Field<'_>, r: &mut Report<'_>) -> Option<PathBuf> {
    let path = absolute_path(f, r)?;
    if path.exists() {
        return Some(path);
    }
    r.bad(f, "no such file");
    None
}

/// A count: an integer of at least 0.
fn count(f: &Field<'_>, r: &mut Report<'_>) -> Option<usize> {
    int_in(f, r, 0..=i64::MAX).map(|n| n as usize)
}

/// `rlimit_files`: a number of descriptors, at least 1.
fn rlimit_files(f: &Field<'_>, r: &mut Report<'_>) -> Option<u64> {
    int_in(f, r, 1..=i64::MAX).map(|n| n as u64)
}

/// `rlimit_core`: a number of bytes, or `"unlimited"`.
fn rlimit_core(f: &Field<'_>, r: &mut Report<'_>) -> Option<RlimitCore> {
    match f.value {
        DeValue::String(s) if s == "unlimited" => Some(RlimitCore::Unlimited),
        DeValue::Integer(_) => int_in(f, r, 0..=i64::MAX).map(|n| RlimitCore::Limited(n as u64)),
        DeValue::String(s) if s.parse::<i64>().is_ok() => {
            r.bad(f, format!("must be a number of bytes or \"unlimited\"; write {s} without quotes"));
            None
        }
        _ => {
            r.bad(f, "must be a number of bytes (0 or more) or \"unlimited\"");
            None
        }
    }
}

/// A duration: a string in php-fpm's spelling (`"30s"`, `"5m"`, see [`parse_duration`]), or a
/// TOML integer of seconds.
pub(super) fn duration(f: &Field<'_>, r: &mut Report<'_>) -> Option<Duration> {
    match f.value {
        DeValue::String(s) => parse_duration(s).map_err(|message| r.bad(f, message)).ok(),
        DeValue::Integer(_) => {
            let seconds = integer(f, r)?;
            let seconds = u64::try_from(seconds).map_err(|_| r.bad(f, "a duration cannot be negative")).ok()?;
            Some(Duration::from_secs(seconds))
        }
        _ => wrong_type(f, r, "a duration"),
    }
}

/// A size in bytes, as a string in PHP's spelling (`"128M"`, see [`parse_size`]). A bare TOML
/// integer is refused: `128` would be 128 bytes, rarely what was meant.
pub(super) fn size(f: &Field<'_>, r: &mut Report<'_>) -> Option<u64> {
    match f.value {
        DeValue::String(s) => parse_size(s).map_err(|message| r.bad(f, message)).ok(),
        _ => wrong_type(f, r, "a size"),
    }
}

// ---- typed access to a field, reporting the wrong type ----

pub(super) fn optional<'a, T>(
    field: &Option<Field<'a>>,
    r: &mut Report<'_>,
    check: impl FnOnce(&Field<'a>, &mut Report<'_>) -> Option<T>,
) -> Option<T> {
    field.as_ref().and_then(|f| check(f, r))
}

fn required<'a, T>(
    field: &Option<Field<'a>>,
    key: &str,
    pool_line: usize,
    r: &mut Report<'_>,
    check: impl FnOnce(&Field<'a>, &mut Report<'_>) -> Option<T>,
) -> Option<T> {
    if field.is_none() {
        r.push(Some(pool_line), Some(key), None, "is required");
    }
    optional(field, r, check)
}

/// Applies `parse` to a string field, reporting its error.
fn parsed<T>(f: &Field<'_>, r: &mut Report<'_>, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
    let s = string(f, r)?;
    parse(s).map_err(|message| r.bad(f, message)).ok()
}

pub(super) fn string<'f>(f: &'f Field<'_>, r: &mut Report<'_>) -> Option<&'f str> {
    match f.value {
        DeValue::String(s) => Some(s),
        _ => wrong_type(f, r, "a string"),
    }
}

pub(super) fn integer(f: &Field<'_>, r: &mut Report<'_>) -> Option<i64> {
    let DeValue::Integer(i) = f.value else {
        return wrong_type(f, r, "an integer");
    };
    let n = i64::from_str_radix(i.as_str(), i.radix()).ok();
    if n.is_none() {
        r.bad(f, "the number is too large");
    }
    n
}

pub(super) fn int_in(f: &Field<'_>, r: &mut Report<'_>, range: RangeInclusive<i64>) -> Option<i64> {
    let n = integer(f, r)?;
    if range.contains(&n) {
        return Some(n);
    }
    let message = match *range.end() {
        i64::MAX => format!("must be at least {}", range.start()),
        end => format!("must be between {} and {end}", range.start()),
    };
    r.bad(f, message);
    None
}

pub(super) fn boolean(f: &Field<'_>, r: &mut Report<'_>) -> Option<bool> {
    match f.value {
        DeValue::Boolean(b) => Some(*b),
        _ => wrong_type(f, r, "a boolean"),
    }
}

/// Reports that `f` is not of the `expected` type, with a hint when the value only needs its
/// quotes added or removed.
pub(super) fn wrong_type<T>(f: &Field<'_>, r: &mut Report<'_>, expected: &str) -> Option<T> {
    let found = f.value.type_str();
    let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    let hint = match (expected, f.value) {
        ("an integer", DeValue::String(s)) if s.parse::<i64>().is_ok() => {
            format!("; write {s} without quotes")
        }
        ("a boolean", DeValue::String(s)) => match s.to_ascii_lowercase().as_str() {
            "yes" | "on" | "true" | "1" => "; write true, without quotes".to_string(),
            "no" | "off" | "false" | "0" => "; write false, without quotes".to_string(),
            _ => String::new(),
        },
        ("a string", DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_)) => {
            "; put the value in quotes".to_string()
        }
        ("a duration", _) => {
            "; write a string such as \"30s\", \"5m\" or \"500ms\", or an integer of seconds".to_string()
        }
        ("a size", DeValue::Integer(i)) => {
            format!("; write a string: \"{}\" for bytes, or with a unit such as \"128M\"", i.as_str())
        }
        ("a size", _) => "; write a string such as \"128M\"".to_string(),
        _ => String::new(),
    };
    r.bad(f, format!("expected {expected}, found {article} {found}{hint}"));
    None
}
