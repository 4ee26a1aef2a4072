//! php-fpm's own words about a configuration: the `-tt` dump (one `\tkey = value` line per
//! setting, as php-fpm logs them at NOTICE level) and its wording of the configuration
//! errors its users and scripts know.

use crate::config::{Config, ConfigError, LogTarget, PmMode, Pool, SchedPolicy, MAX_LISTEN_BACKLOG};

/// The `-tt` dump of `config` in php-fpm's layout: `[global]`, then a `[NAME]` section per
/// pool, each setting as `\tdirective = value` with php-fpm's directive names. `error_reporting`
/// values are evaluated (`E_ALL` is `32767`) and flags are `1` or `0`, as php-fpm shows them.
pub fn fpm_dump(config: &Config) -> Vec<String> {
    let g = &config.global;
    let mut out = vec!["[global]".to_string()];
    let set = |out: &mut Vec<String>, key: &str, value: String| out.push(format!("\t{key} = {value}"));
    set(&mut out, "pid", g.pid.as_ref().map_or("undefined".into(), |p| p.display().to_string()));
    let error_log = match &g.error_log {
        LogTarget::Stderr => "/proc/self/fd/2".to_string(),
        LogTarget::File(path) => path.display().to_string(),
        LogTarget::Syslog => "syslog".to_string(),
    };
    set(&mut out, "error_log", error_log);
    set(&mut out, "log_limit", g.log_limit.to_string());
    set(&mut out, "daemonize", yes_no(g.daemonize));
    // rustfpm's extensions, under the names its php-fpm INI reads them by.
    set(&mut out, "rustfpm.front_end_threads", g.threads().to_string());
    set(&mut out, "rustfpm.process.sched_policy", sched_policy(g.process_sched_policy));
    for pool in &config.pools {
        out.push(format!("[{}]", pool.name));
        for (key, value) in pool_settings(pool) {
            set(&mut out, &key, value);
        }
    }
    out
}

fn pool_settings(p: &Pool) -> Vec<(String, String)> {
    let listen = p.listen.to_string();
    let count = |n: Option<usize>| n.map_or("0".to_string(), |n| n.to_string());
    let mut s: Vec<(String, String)> = vec![
        ("listen".into(), listen),
        ("listen.backlog".into(), backlog(p.listen_backlog)),
        ("user".into(), p.user.clone().unwrap_or_default()),
        ("group".into(), p.group.clone().unwrap_or_default()),
        ("pm".into(), pm_name(p.pm).into()),
        ("pm.max_children".into(), p.pm_max_children.to_string()),
        ("pm.start_servers".into(), count(p.pm_start_servers)),
        ("pm.min_spare_servers".into(), count(p.pm_min_spare_servers)),
        ("pm.max_spare_servers".into(), count(p.pm_max_spare_servers)),
        ("pm.max_spawn_rate".into(), p.pm_max_spawn_rate.to_string()),
        ("pm.process_idle_timeout".into(), p.pm_process_idle_timeout.as_secs().to_string()),
        ("pm.max_requests".into(), p.pm_max_requests.to_string()),
        ("pm.status_path".into(), p.pm_status_path.clone().unwrap_or_default()),
        ("ping.path".into(), p.ping_path.clone().unwrap_or_default()),
        ("ping.response".into(), p.ping_response.clone()),
        ("catch_workers_output".into(), yes_no(p.catch_workers_output)),
        ("decorate_workers_output".into(), yes_no(p.decorate_workers_output)),
        ("clear_env".into(), yes_no(p.clear_env)),
        ("rustfpm.process.sched_policy".into(), sched_policy(p.process_sched_policy)),
    ];
    s.extend(p.access_suppress_path.iter().map(|path| ("access.suppress_path[]".to_string(), path.clone())));
    s.extend(p.env.iter().map(|(k, v)| (format!("env[{k}]"), v.clone())));
    for (key, value) in &p.ini {
        let table = if p.admin_ini_keys.contains(key) { "php_admin_value" } else { "php_value" };
        s.push((format!("{table}[{key}]"), shown_ini_value(key, value)));
    }
    s
}

/// A policy as the configuration names it; unset is php-fpm's `undefined` (what rustfpm then
/// runs under depends on the policy it was started under, see [`SchedPolicy::default_from`]).
fn sched_policy(policy: Option<SchedPolicy>) -> String {
    policy.map_or("undefined", SchedPolicy::name).to_string()
}

/// php-fpm shows the kernel's maximum as it is written, `-1`.
fn backlog(n: i32) -> String {
    match n {
        MAX_LISTEN_BACKLOG => "-1".to_string(),
        n => n.to_string(),
    }
}

fn pm_name(pm: PmMode) -> &'static str {
    match pm {
        PmMode::Static => "static",
        PmMode::Dynamic => "dynamic",
        PmMode::Ondemand => "ondemand",
    }
}

fn yes_no(on: bool) -> String {
    (if on { "yes" } else { "no" }).to_string()
}

/// An INI value as PHP reads it: flags as `1`/`0`, `error_reporting` expressions evaluated.
fn shown_ini_value(key: &str, value: &str) -> String {
    match value.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => return "1".into(),
        "off" | "no" | "false" | "none" => return "0".into(),
        _ => {}
    }
    if key == "error_reporting" {
        if let Some(n) = error_level(value) {
            return n.to_string();
        }
    }
    value.to_string()
}

/// PHP's error level constants (8.x).
const E_CONSTANTS: [(&str, i64); 16] = [
    ("E_ERROR", 1),
    ("E_WARNING", 2),
    ("E_PARSE", 4),
    ("E_NOTICE", 8),
    ("E_CORE_ERROR", 16),
    ("E_CORE_WARNING", 32),
    ("E_COMPILE_ERROR", 64),
    ("E_COMPILE_WARNING", 128),
    ("E_USER_ERROR", 256),
    ("E_USER_WARNING", 512),
    ("E_USER_NOTICE", 1024),
    ("E_STRICT", 2048),
    ("E_RECOVERABLE_ERROR", 4096),
    ("E_DEPRECATED", 8192),
    ("E_USER_DEPRECATED", 16384),
    ("E_ALL", 32767),
];

/// Evaluates an `error_reporting` expression of constants and numbers joined by `|`, `&`, `^`
/// with `~` in front of a term (left to right, as simple php.ini values are written); `None`
/// for anything else.
fn error_level(expr: &str) -> Option<i64> {
    let mut acc: Option<i64> = None;
    let mut op = '|';
    for token in expr.split_inclusive(['|', '&', '^']) {
        let (term, next) = match token.char_indices().last() {
            Some((i, c @ ('|' | '&' | '^'))) => (&token[..i], c),
            _ => (token, ' '),
        };
        let term = term.trim();
        let (negate, name) = match term.strip_prefix('~') {
            Some(rest) => (true, rest.trim()),
            None => (false, term),
        };
        let mut n = match E_CONSTANTS.iter().find(|(c, _)| *c == name) {
            Some((_, v)) => *v,
            None => name.parse().ok()?,
        };
        if negate {
            n = !n;
        }
        acc = Some(match (acc, op) {
            (None, _) => n,
            (Some(a), '|') => a | n,
            (Some(a), '&') => a & n,
            (Some(a), _) => a ^ n,
        });
        op = next;
    }
    acc
}

/// `e` as php-fpm words it in its log, for the errors php-fpm's users and tests know; any
/// other error as `[FILE:LINE] [pool P] key = "value": message`.
pub fn fpm_wording(e: &ConfigError) -> String {
    let pool = e.pool.as_deref().map(|p| format!("[pool {p}] ")).unwrap_or_default();
    let value = e.value.as_deref().unwrap_or_default();
    let key = e.key.as_deref().unwrap_or_default();
    match key {
        "user" | "listen.owner" if e.message.starts_with("no such user") => {
            let why = if key == "user" { "" } else { ": no such user" };
            return format!("{pool}cannot get uid for user '{value}'{why}");
        }
        "group" | "listen.group" if e.message.starts_with("no such group") => {
            let why = if key == "group" { "" } else { ": no such group" };
            return format!("{pool}cannot get gid for group '{value}'{why}");
        }
        "log_limit" if value.parse::<u64>().is_ok_and(|n| n < 512) => {
            return "log_limit must be greater than 512".into();
        }
        "listen" if e.message.contains("the port must be") => {
            return format!("invalid port value '{}'", value.rsplit(':').next().unwrap_or(value));
        }
        _ => {}
    }
    let place = match e.line {
        Some(line) => format!("[{}:{line}] ", e.file.display()),
        None => format!("[{}] ", e.file.display()),
    };
    if let Some(field) = e.message.strip_prefix("needs a key: ").and_then(|m| m.split('[').next()) {
        return format!("{place}You must provide a key for field '{field}'");
    }
    if e.message.starts_with("Keys provided") || e.message.starts_with("Values provided") {
        return format!("{place}{}", e.message);
    }
    match &e.key {
        Some(key) => format!("{place}{pool}{key} = \"{}\": {}", value.escape_debug(), e.message),
        None => format!("{place}{pool}{}", e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_levels_are_evaluated_as_php_does() {
        assert_eq!(error_level("E_ALL"), Some(32767));
        assert_eq!(error_level("E_ALL & ~E_DEPRECATED & ~E_STRICT"), Some(22527));
        assert_eq!(error_level("E_ERROR|E_WARNING"), Some(3));
        assert_eq!(error_level("E_BOGUS"), None);
        assert_eq!(shown_ini_value("display_errors", "On"), "1");
        assert_eq!(shown_ini_value("date.timezone", "Europe/London"), "Europe/London");
    }
}
