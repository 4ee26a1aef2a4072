//! A [`Config`] written as rustfpm's native TOML (the format of `config/rustfpm.toml`), every
//! value explicit, such that parsing the text gives the same config back.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use crate::config::{Config, Global, ListenAddr, LogLevel, LogTarget, PmMode, Pool, RlimitCore};

/// Renders `config` as native TOML: `config::parse(&to_toml(&c), ..)` gives an equivalent config
/// (the same values; `ini` and `admin_ini_keys` possibly in another order, which does not matter).
pub fn to_toml(config: &Config) -> String {
    let mut out = format!("# rustfpm configuration, converted from {}\n", config.path.display());
    global(&mut out, &config.global);
    for pool in &config.pools {
        self::pool(&mut out, pool);
    }
    out
}

fn global(out: &mut String, g: &Global) {
    out.push_str("\n[global]\n");
    let error_log = match &g.error_log {
        LogTarget::Stderr => "stderr".to_string(),
        LogTarget::File(path) => text_of(path),
        LogTarget::Syslog => "syslog".to_string(),
    };
    line(out, "error_log", quote(&error_log));
    line(out, "syslog_facility", quote(crate::config::error_log::facility_name(g.syslog_facility)));
    line(out, "syslog_ident", quote(&g.syslog_ident));
    line(out, "syslog_socket", path(&g.syslog_socket));
    line(out, "log_limit", g.log_limit);
    line(out, "daemonize", g.daemonize);
    let level = LogLevel::ALL.iter().find(|(_, level)| *level == g.log_level).map_or("notice", |(name, _)| name);
    line(out, "log_level", quote(level));
    optional(out, "pid", g.pid.as_deref().map(path));
    optional(out, "process_control_timeout", g.process_control_timeout.map(duration));
    line(out, "emergency_restart_threshold", g.emergency_restart_threshold);
    optional(out, "emergency_restart_interval", g.emergency_restart_interval.map(duration));
    line(out, "graceful_stop_on_term", g.graceful_stop_on_term);
    optional(out, "rlimit_files", g.rlimit_files);
    line(out, "systemd_interval", duration(g.systemd_interval.unwrap_or_default()));
    optional(out, "metrics_listen", g.metrics_listen.map(|a| quote(&a.to_string())));
    optional(out, "front_end_threads", g.front_end_threads);
    optional(out, "process_sched_policy", g.process_sched_policy.map(|p| quote(p.name())));
}

fn pool(out: &mut String, p: &Pool) {
    let _ = write!(out, "\n[pool.{}]\n", key(&p.name));
    let listen = match &p.listen {
        ListenAddr::Unix(socket) => text_of(socket),
        tcp => tcp.to_string(),
    };
    line(out, "listen", quote(&listen));
    line(out, "listen_backlog", p.listen_backlog);
    optional(out, "listen_owner", p.listen_owner.as_deref().map(quote));
    optional(out, "listen_group", p.listen_group.as_deref().map(quote));
    line(out, "listen_mode", quote(&format!("{:04o}", p.listen_mode)));
    for (key, names) in [("listen_acl_users", &p.listen_acl_users), ("listen_acl_groups", &p.listen_acl_groups)] {
        if !names.is_empty() {
            line(out, key, quote(&names.join(",")));
        }
    }
    if !p.listen_allowed_clients.is_empty() {
        let clients: Vec<String> = p.listen_allowed_clients.iter().map(|ip| ip.to_string()).collect();
        line(out, "listen_allowed_clients", quote(&clients.join(",")));
    }
    optional(out, "user", p.user.as_deref().map(quote));
    optional(out, "group", p.group.as_deref().map(quote));
    process_manager(out, p);
    line(out, "php_cgi", path(&p.php_cgi));
    optional(out, "php_ini", p.php_ini.as_deref().map(path));
    line(out, "clear_env", p.clear_env);
    optional(out, "chdir", p.chdir.as_deref().map(path));
    optional(out, "chroot", p.chroot.as_deref().map(path));
    optional(out, "rlimit_files", p.rlimit_files);
    let core = |core: RlimitCore| match core {
        RlimitCore::Limited(bytes) => bytes.to_string(),
        RlimitCore::Unlimited => quote("unlimited"),
    };
    optional(out, "rlimit_core", p.rlimit_core.map(core));
    optional(out, "process_priority", p.process_priority);
    optional(out, "process_sched_policy", p.process_sched_policy.map(|p| quote(p.name())));
    line(out, "process_dumpable", p.process_dumpable);
    line(out, "catch_workers_output", p.catch_workers_output);
    line(out, "decorate_workers_output", p.decorate_workers_output);
    optional(out, "pm_status_path", p.pm_status_path.as_deref().map(quote));
    optional(out, "pm_status_listen", p.pm_status_listen.as_ref().map(|a| quote(&a.to_string())));
    optional(out, "ping_path", p.ping_path.as_deref().map(quote));
    line(out, "ping_response", quote(&p.ping_response));
    line(out, "security_limit_extensions", quote(&p.security_limit_extensions.join(" ")));
    line(out, "queue_max_len", p.queue_max_len);
    optional(out, "queue_max_wait", p.queue_max_wait.map(duration));
    line(out, "fastcgi_finish_request", p.fastcgi_finish_request);
    line(out, "request_read_timeout", p.request_read_timeout.map_or_else(|| quote("0"), duration));
    line(out, "listen_idle_timeout", p.listen_idle_timeout.map_or_else(|| quote("0"), duration));
    line(out, "listen_max_connections", p.listen_max_connections);
    optional(out, "request_terminate_timeout", p.request_terminate_timeout.map(duration));
    line(out, "request_terminate_timeout_track_finished", p.request_terminate_timeout_track_finished);
    optional(out, "access_log", p.access_log.as_deref().map(path));
    line(out, "access_format", quote(p.access_format.text()));
    if !p.access_suppress_path.is_empty() {
        line(out, "access_suppress_path", string_array(&p.access_suppress_path));
    }
    optional(out, "slowlog", p.slowlog.as_deref().map(path));
    optional(out, "request_slowlog_timeout", p.request_slowlog_timeout.map(duration));
    tables(out, p);
}

fn process_manager(out: &mut String, p: &Pool) {
    let mode = PmMode::ALL.iter().find(|(_, mode)| *mode == p.pm).map_or("static", |(name, _)| name);
    line(out, "pm", quote(mode));
    line(out, "pm_max_children", p.pm_max_children);
    optional(out, "pm_start_servers", p.pm_start_servers);
    optional(out, "pm_min_spare_servers", p.pm_min_spare_servers);
    optional(out, "pm_max_spare_servers", p.pm_max_spare_servers);
    line(out, "pm_max_spawn_rate", p.pm_max_spawn_rate);
    line(out, "pm_process_idle_timeout", duration(p.pm_process_idle_timeout));
    line(out, "pm_max_requests", p.pm_max_requests);
    optional(out, "pm_max_memory", p.pm_max_memory.map(size));
    optional(out, "pm_max_lifetime", p.pm_max_lifetime.map(duration));
}

/// `env`, and the INI settings: php_admin_value for the admin keys, php_value for the others
/// (flags were normalised to "1" and "0", which php_value gives back unchanged).
fn tables(out: &mut String, p: &Pool) {
    let admin = |name: &str| p.admin_ini_keys.iter().any(|key| key == name);
    let php_value: Vec<_> = p.ini.iter().filter(|(name, _)| !admin(name)).collect();
    let php_admin_value: Vec<_> = p.ini.iter().filter(|(name, _)| admin(name)).collect();
    for (table, entries) in
        [("env", p.env.iter().collect()), ("php_value", php_value), ("php_admin_value", php_admin_value)]
    {
        if entries.is_empty() {
            continue;
        }
        let _ = write!(out, "\n[pool.{}.{table}]\n", key(&p.name));
        for (name, value) in entries {
            line(out, &key(name), quote(value));
        }
    }
}

fn line(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{key} = {value}");
}

fn optional(out: &mut String, key: &str, value: Option<impl std::fmt::Display>) {
    if let Some(value) = value {
        line(out, key, value);
    }
}

/// A key: bare when TOML allows it, quoted otherwise (`"date.timezone"`).
fn key(name: &str) -> String {
    let bare = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_string()
    } else {
        quote(name)
    }
}

/// A TOML basic string.
/// A TOML array of strings: `["/ping", "/status"]`.
pub(super) fn string_array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn text_of(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn path(path: &Path) -> String {
    quote(&text_of(path))
}

/// In the largest unit that keeps it whole: `"10s"`, `"5m"`, `"1h"`, `"500ms"`.
fn duration(d: Duration) -> String {
    let millis = d.as_millis();
    let units = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")];
    let text = match units.iter().find(|(size, _)| millis > 0 && millis.is_multiple_of(*size)) {
        Some((size, unit)) => format!("{}{unit}", millis / size),
        None if millis == 0 => "0s".to_string(),
        None => format!("{millis}ms"),
    };
    quote(&text)
}

/// In the largest unit that keeps it whole: `"128M"`, `"1G"`, `"1000"`.
fn size(bytes: u64) -> String {
    let units = [(30, "G"), (20, "M"), (10, "K")];
    let text = match units.iter().find(|(shift, _)| bytes > 0 && bytes.is_multiple_of(1 << shift)) {
        Some((shift, unit)) => format!("{}{unit}", bytes >> shift),
        None => bytes.to_string(),
    };
    quote(&text)
}
