//! Every php-fpm directive and what becomes of it: the TOML key it sets (and how its value is
//! typed for that key), a warning that rustfpm does not support it yet, or an error when ignoring
//! it would be unsafe. Also the way back, for messages: TOML keys and wording in php-fpm's terms.

use crate::config::error::ConfigError;

/// How a php-fpm value is typed for its TOML key. A value that does not convert is passed on
/// as text, for the validation to report.
#[derive(Debug, Clone, Copy)]
pub(in crate::config) enum Kind {
    Int,
    /// php-fpm's yes/no, on/off, true/false, 1/0 (and empty for no).
    Bool,
    /// php-fpm's `30`, `30s`, `5m`, `1h`, `1d`: the TOML loader's own spelling.
    Duration,
    Text,
    /// Text that php-fpm matches without regard to case (`pm = Dynamic`).
    Lower,
    /// Lower, with php-fpm's `warn` for `warning`.
    LogLevel,
    /// A number of bytes or `unlimited`.
    RlimitCore,
}

/// What becomes of a php-fpm directive.
#[derive(Debug, Clone, Copy)]
pub(in crate::config) enum Action {
    /// Sets this TOML key.
    Set(&'static str, Kind),
    /// Not supported yet: accepted with a warning, which adds this hint when it is not empty.
    /// No warning when the value is empty or a zero, php-fpm's "off".
    Warn(&'static str),
    /// Accepted, but cannot have an effect in rustfpm: a warning saying why (none when the value
    /// is empty or a zero).
    NoEffect(&'static str),
    /// Not supported, and ignoring it would be unsafe: an error saying why.
    Refuse(&'static str),
    /// Converted by its own code (in `interpret`).
    Pid,
    ErrorLog,
    LogBuffering,
    Prefix,
    Listen,
    StatusListen,
    AllowedClients,
    Chroot,
    Chdir,
    /// A log file path, resolved against the pool's prefix, for this TOML key.
    LogPath(&'static str),
}

use Action::*;

const NO_TRACE: &str = "rustfpm cannot read a PHP backtrace from a php-cgi child (php-fpm ptraces its own workers \
                        and reads PHP's memory); the slowlog names the pool, pid, script, request and elapsed \
                        time, without a trace";

/// `[global]` directives (php-fpm 8.2's `ini_fpm_global_options`).
pub(in crate::config) const GLOBAL: &[(&str, Action)] = &[
    ("pid", Pid),
    ("error_log", ErrorLog),
    ("syslog.ident", Set("syslog_ident", Kind::Text)),
    ("syslog.facility", Set("syslog_facility", Kind::Text)),
    ("log_buffering", LogBuffering),
    ("log_level", Set("log_level", Kind::LogLevel)),
    ("log_limit", Set("log_limit", Kind::Int)),
    ("emergency_restart_threshold", Set("emergency_restart_threshold", Kind::Int)),
    ("emergency_restart_interval", Set("emergency_restart_interval", Kind::Duration)),
    ("process_control_timeout", Set("process_control_timeout", Kind::Duration)),
    ("process.max", Warn("each pool's pm.max_children still applies")),
    ("process.priority", Warn("set process.priority in each pool, or Nice= in the systemd unit")),
    ("daemonize", Set("daemonize", Kind::Bool)),
    ("rlimit_files", Set("rlimit_files", Kind::Int)),
    ("rlimit_core", Warn("set rlimit_core in each pool, or LimitCORE= in the systemd unit")),
    ("events.mechanism", Warn("")),
    ("systemd_interval", Set("systemd_interval", Kind::Duration)),
    ("rustfpm.front_end_threads", Set("front_end_threads", Kind::Int)),
    ("rustfpm.process.sched_policy", Set("process_sched_policy", Kind::Lower)),
];

/// Pool directives (php-fpm 8.2's `ini_fpm_pool_options`); the arrays are in [`ARRAYS`].
pub(in crate::config) const POOL: &[(&str, Action)] = &[
    ("prefix", Prefix),
    ("user", Set("user", Kind::Text)),
    ("group", Set("group", Kind::Text)),
    ("listen", Listen),
    ("listen.backlog", Set("listen_backlog", Kind::Int)),
    ("listen.acl_users", Set("listen_acl_users", Kind::Text)),
    ("listen.acl_groups", Set("listen_acl_groups", Kind::Text)),
    ("listen.owner", Set("listen_owner", Kind::Text)),
    ("listen.group", Set("listen_group", Kind::Text)),
    ("listen.mode", Set("listen_mode", Kind::Text)),
    ("listen.allowed_clients", AllowedClients),
    ("listen.setfib", Warn("")),
    ("process.priority", Set("process_priority", Kind::Int)),
    ("process.dumpable", Set("process_dumpable", Kind::Bool)),
    ("rustfpm.process.sched_policy", Set("process_sched_policy", Kind::Lower)),
    ("pm", Set("pm", Kind::Lower)),
    ("pm.max_children", Set("pm_max_children", Kind::Int)),
    ("pm.start_servers", Set("pm_start_servers", Kind::Int)),
    ("pm.min_spare_servers", Set("pm_min_spare_servers", Kind::Int)),
    ("pm.max_spare_servers", Set("pm_max_spare_servers", Kind::Int)),
    ("pm.max_spawn_rate", Set("pm_max_spawn_rate", Kind::Int)),
    ("pm.process_idle_timeout", Set("pm_process_idle_timeout", Kind::Duration)),
    ("pm.max_requests", Set("pm_max_requests", Kind::Int)),
    ("pm.status_path", Set("pm_status_path", Kind::Text)),
    ("pm.status_listen", StatusListen),
    ("ping.path", Set("ping_path", Kind::Text)),
    ("ping.response", Set("ping_response", Kind::Text)),
    ("access.log", LogPath("access_log")),
    ("access.format", Set("access_format", Kind::Text)),
    ("slowlog", LogPath("slowlog")),
    ("request_slowlog_timeout", Set("request_slowlog_timeout", Kind::Duration)),
    ("request_slowlog_trace_depth", NoEffect(NO_TRACE)),
    ("request_terminate_timeout", Set("request_terminate_timeout", Kind::Duration)),
    ("request_terminate_timeout_track_finished", Set("request_terminate_timeout_track_finished", Kind::Bool)),
    ("rlimit_files", Set("rlimit_files", Kind::Int)),
    // 0 is php-fpm's "unset" (the children keep the inherited limit): dropped in `interpret`.
    ("rlimit_core", Set("rlimit_core", Kind::RlimitCore)),
    ("chroot", Chroot),
    ("chdir", Chdir),
    ("catch_workers_output", Set("catch_workers_output", Kind::Bool)),
    ("decorate_workers_output", Set("decorate_workers_output", Kind::Bool)),
    ("clear_env", Set("clear_env", Kind::Bool)),
    ("security.limit_extensions", Set("security_limit_extensions", Kind::Text)),
    (
        "apparmor_hat",
        Refuse("rustfpm cannot change AppArmor hats, so the children would run without the confinement asked for"),
    ),
];

/// php-fpm's arrays and the TOML table each fills; the second name is the php-fpm list it joins
/// (a key set twice in one list keeps its first value).
pub(in crate::config) const ARRAYS: &[(&str, &str)] = &[
    ("env", "env"),
    ("php_value", "php_value"),
    ("php_flag", "php_value"),
    ("php_admin_value", "php_admin_value"),
    ("php_admin_flag", "php_admin_value"),
];

/// INI settings whose relative paths php-fpm makes absolute with the pool's prefix, unless the
/// pool is chrooted (`FPM_PHP_INI_TO_EXPAND`).
pub(super) const PATH_SETTINGS: &[&str] = &[
    "error_log",
    "extension_dir",
    "mime_magic.magicfile",
    "sendmail_path",
    "session.cookie_path",
    "session_pgsql.sem_file_name",
    "soap.wsdl_cache_dir",
    "uploadprogress.file.filename_template",
    "xdebug.output_dir",
    "xdebug.profiler_output_dir",
    "xdebug.trace_output_dir",
    "xmms.path",
    "axis2.client_home",
    "blenc.key_file",
    "coin_acceptor.device",
];

/// What a boolean may be, for messages.
pub(super) const BOOLEAN: &str = "must be a boolean: yes/no, on/off, true/false or 1/0";

/// Directive names are matched without regard to case, as in php-fpm.
pub(super) fn find(table: &[(&str, Action)], name: &str) -> Option<Action> {
    table.iter().find(|(known, _)| known.eq_ignore_ascii_case(name)).map(|(_, action)| *action)
}

/// Explains an unknown directive: one of the other section's, or a TOML key's spelling.
pub(super) fn unknown(name: &str, here: &[(&str, Action)], other: &[(&str, Action)], other_place: &str) -> String {
    if find(other, name).is_some() {
        return format!("unknown directive here; `{name}` belongs in {other_place}");
    }
    let toml_spelling = here.iter().find(|(_, action)| matches!(action, Set(key, _) if *key == name));
    match toml_spelling {
        Some((directive, _)) => format!("unknown php-fpm directive; did you mean `{directive}`?"),
        None => "unknown php-fpm directive".to_string(),
    }
}

/// A validation error in php-fpm's terms: its directive names (`pm.max_children` for
/// `pm_max_children`, `env[PATH]` for `env.PATH`) and its INI spellings.
pub(super) fn in_ini_terms(mut e: ConfigError) -> ConfigError {
    if let Some(key) = &e.key {
        e.key = Some(ini_key(key));
    }
    let mut message = e.message;
    for (toml, ini) in MESSAGE_TERMS {
        message = message.replace(toml, ini);
    }
    for (directive, action) in POOL.iter().chain(GLOBAL) {
        if let Set(key, _) | LogPath(key) = action {
            if key != directive {
                message = message.replace(key, directive);
            }
        }
    }
    e.message = message;
    e
}

/// The TOML loader's wording, and php-fpm's. Values reach the validation as the TOML type
/// expected whenever they convert, so "found a string" means the text did not convert.
const MESSAGE_TERMS: &[(&str, &str)] = &[
    ("expected an integer, found a string", "must be a whole number"),
    ("expected a boolean, found a string", BOOLEAN),
    ("add a [pool.NAME] table", "add a [NAME] section"),
    ("pm = \"dynamic\"", "pm = dynamic"),
    ("pm = \"ondemand\"", "pm = ondemand"),
];

/// Keys whose directive is read by its own code rather than a `Set`, with that directive.
const OWN_KEYS: [(&str, &str); 3] = [
    ("listen_allowed_clients", "listen.allowed_clients"),
    ("pm_status_listen", "pm.status_listen"),
    ("access_suppress_path", "access.suppress_path[]"),
];

/// `pm_max_children` -> `pm.max_children`; `php_value.memory_limit` -> `php_value[memory_limit]`.
fn ini_key(key: &str) -> String {
    if let Some((_, directive)) = OWN_KEYS.iter().find(|(own, _)| *own == key) {
        return directive.to_string();
    }
    if let Some((table, name)) = key.split_once('.') {
        if ARRAYS.iter().any(|(array, _)| *array == table) {
            return format!("{table}[{name}]");
        }
    }
    let directive = POOL.iter().chain(GLOBAL).find(|(_, action)| matches!(action, Set(k, _) | LogPath(k) if *k == key));
    directive.map_or_else(|| key.to_string(), |(directive, _)| directive.to_string())
}
