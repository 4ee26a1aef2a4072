//! Whole-file tests: text in, `Config` or every error out. This file: what valid files give;
//! `errors`: what invalid files report.

mod error_log;
mod errors;
mod fpm;
mod request_logs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{RawGlobal, RawPoolKeys, RawTable};
use super::*;

const FILE: &str = "/etc/rustfpm/test.toml";
const EXAMPLE: &str = include_str!("../../../config/rustfpm.toml");

fn parse_ok(text: &str) -> Config {
    match parse(text, Path::new(FILE)) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text, Path::new(FILE)) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(ConfigErrors(errors)) => errors,
    }
}

/// A valid pool whose `extra` lines start at line 4.
fn pool_with(extra: &str) -> String {
    format!("[pool.www]\nlisten = \"/run/www.sock\"\npm_max_children = 4\n{extra}\n")
}

fn only_pool(text: &str) -> Pool {
    parse_ok(text).pools.remove(0)
}

#[test]
fn example_config_parses() {
    let config = parse_ok(EXAMPLE);
    assert_eq!(config.path, PathBuf::from(FILE));
    assert_eq!(config.global.error_log, LogTarget::Stderr);
    assert_eq!(config.global.log_level, LogLevel::Notice);
    assert_eq!(config.global.pid, Some(PathBuf::from("/run/rustfpm/rustfpm.pid")));
    assert_eq!(config.global.process_control_timeout, Some(Duration::from_secs(10)));
    assert_eq!(config.global.emergency_restart_threshold, 0);
    assert_eq!(config.global.emergency_restart_interval, None);
    assert!(!config.global.graceful_stop_on_term);
    let [pool] = config.pools.as_slice() else { panic!("one pool expected") };
    assert_eq!(pool.name, "www");
    assert_eq!(pool.listen, ListenAddr::Unix(PathBuf::from("/run/rustfpm/www.sock")));
    assert_eq!((pool.pm, pool.pm_max_children), (PmMode::Static, 4));
    let spares = (pool.pm_start_servers, pool.pm_min_spare_servers, pool.pm_max_spare_servers);
    assert_eq!(spares, (Some(2), Some(1), Some(3)));
    assert_eq!(pool.pm_process_idle_timeout, Duration::from_secs(10));
    assert_eq!(pool.request_terminate_timeout, None);
    assert_eq!(pool.user.as_deref(), Some("www-data"));
    assert_eq!(pool.listen_owner.as_deref(), Some("www-data"));
    assert_eq!(pool.env, [("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())]);
    assert_eq!(pool.ini.len(), 4);
    assert_eq!(pool.admin_ini_keys, ["memory_limit", "log_errors"]);
}

#[test]
fn defaults_fill_every_optional_key() {
    let config = parse_ok(&pool_with(""));
    assert_eq!(config.global.error_log, DEFAULT_ERROR_LOG);
    assert_eq!(config.global.log_level, DEFAULT_LOG_LEVEL);
    assert_eq!(config.global.pid, None);
    let pool = &config.pools[0];
    assert_eq!(pool.listen_backlog, DEFAULT_LISTEN_BACKLOG);
    assert_eq!(pool.listen_mode, DEFAULT_LISTEN_MODE);
    assert_eq!((pool.listen_owner.as_ref(), pool.listen_group.as_ref()), (None, None));
    assert_eq!((pool.user.as_ref(), pool.group.as_ref()), (None, None));
    assert_eq!(pool.pm, DEFAULT_PM);
    assert_eq!(pool.php_cgi, PathBuf::from(DEFAULT_PHP_CGI));
    assert_eq!(pool.php_ini, None);
    assert_eq!(pool.clear_env, DEFAULT_CLEAR_ENV);
    assert_eq!(pool.security_limit_extensions, DEFAULT_SECURITY_LIMIT_EXTENSIONS);
    assert_eq!(pool.queue_max_len, DEFAULT_LISTEN_BACKLOG as usize);
    assert!(pool.env.is_empty() && pool.ini.is_empty() && pool.admin_ini_keys.is_empty());
}

#[test]
fn defaults_fill_every_new_key() {
    let config = parse_ok(&pool_with(""));
    let global = &config.global;
    assert_eq!(global.process_control_timeout, None);
    assert_eq!(global.emergency_restart_threshold, DEFAULT_EMERGENCY_RESTART_THRESHOLD);
    assert_eq!(global.emergency_restart_interval, None);
    assert_eq!(global.graceful_stop_on_term, DEFAULT_GRACEFUL_STOP_ON_TERM);
    let pool = &config.pools[0];
    assert_eq!((pool.pm_start_servers, pool.pm_min_spare_servers, pool.pm_max_spare_servers), (None, None, None));
    assert_eq!(pool.pm_max_spawn_rate, DEFAULT_PM_MAX_SPAWN_RATE);
    assert_eq!(pool.pm_process_idle_timeout, DEFAULT_PM_PROCESS_IDLE_TIMEOUT);
    assert_eq!(pool.pm_max_requests, DEFAULT_PM_MAX_REQUESTS);
    assert_eq!((pool.pm_max_memory, pool.pm_max_lifetime), (None, None));
    assert_eq!(pool.request_terminate_timeout, None);
    assert_eq!(pool.request_terminate_timeout_track_finished, DEFAULT_REQUEST_TERMINATE_TIMEOUT_TRACK_FINISHED);
    assert_eq!(pool.queue_max_wait, None);
    assert_eq!(pool.request_read_timeout, Some(DEFAULT_REQUEST_READ_TIMEOUT));
    assert_eq!(pool.listen_idle_timeout, Some(DEFAULT_LISTEN_IDLE_TIMEOUT));
    assert_eq!(pool.listen_max_connections, DEFAULT_LISTEN_MAX_CONNECTIONS);
    assert_eq!(config.global.rlimit_files, None);
    assert_eq!((pool.chdir.as_ref(), pool.chroot.as_ref()), (None, None));
    assert_eq!((pool.rlimit_files, pool.rlimit_core, pool.process_priority), (None, None, None));
    assert_eq!(pool.process_dumpable, DEFAULT_PROCESS_DUMPABLE);
    assert_eq!(pool.process_sched_policy, None);
    assert_eq!(pool.catch_workers_output, DEFAULT_CATCH_WORKERS_OUTPUT);
    assert_eq!(pool.decorate_workers_output, DEFAULT_DECORATE_WORKERS_OUTPUT);
    // php-fpm's values.
    assert_eq!((DEFAULT_PM_MAX_SPAWN_RATE, DEFAULT_PM_PROCESS_IDLE_TIMEOUT), (32, Duration::from_secs(10)));
    let flags = (DEFAULT_CATCH_WORKERS_OUTPUT, DEFAULT_DECORATE_WORKERS_OUTPUT, DEFAULT_PROCESS_DUMPABLE);
    assert_eq!(flags, (false, true, false));
}

#[test]
fn every_new_pool_key_is_read() {
    let pool = only_pool(&pool_with(
        "pm = \"ondemand\"\npm_start_servers = 0\npm_min_spare_servers = 9\npm_max_spawn_rate = 4\n\
         pm_process_idle_timeout = \"1m\"\npm_max_requests = 500\npm_max_memory = \"128M\"\n\
         pm_max_lifetime = 3600\nrequest_terminate_timeout = \"30s\"\n\
         request_terminate_timeout_track_finished = true\nqueue_max_wait = \"500ms\"\nchdir = \"/tmp\"\n\
         chroot = \"/\"\nrlimit_files = 65536\nrlimit_core = \"unlimited\"\nprocess_priority = -19\n\
         process_dumpable = true\ncatch_workers_output = true\ndecorate_workers_output = false",
    ));
    assert_eq!(pool.pm, PmMode::Ondemand);
    // Not "dynamic": the spare counts are kept as written (even 0), not checked against each other.
    assert_eq!((pool.pm_start_servers, pool.pm_min_spare_servers, pool.pm_max_spare_servers), (Some(0), Some(9), None));
    assert_eq!(pool.pm_max_spawn_rate, 4);
    assert_eq!(pool.pm_process_idle_timeout, Duration::from_secs(60));
    assert_eq!(pool.pm_max_requests, 500);
    assert_eq!(pool.pm_max_memory, Some(128 << 20));
    assert_eq!(pool.pm_max_lifetime, Some(Duration::from_secs(3600)));
    assert_eq!(pool.request_terminate_timeout, Some(Duration::from_secs(30)));
    assert!(pool.request_terminate_timeout_track_finished);
    assert_eq!(pool.queue_max_wait, Some(Duration::from_millis(500)));
    assert_eq!(pool.chdir, Some(PathBuf::from("/tmp")));
    assert_eq!(pool.chroot, Some(PathBuf::from("/")));
    assert_eq!(pool.rlimit_files, Some(65536));
    assert_eq!(pool.rlimit_core, Some(RlimitCore::Unlimited));
    assert_eq!(pool.process_priority, Some(-19));
    assert!(pool.process_dumpable && pool.catch_workers_output && !pool.decorate_workers_output);
}

#[test]
fn new_global_keys_are_read() {
    let text = format!(
        "[global]\nprocess_control_timeout = 20\nemergency_restart_threshold = 10\n\
         emergency_restart_interval = \"1m\"\ngraceful_stop_on_term = true\n{}",
        pool_with("")
    );
    let global = parse_ok(&text).global;
    assert_eq!(global.process_control_timeout, Some(Duration::from_secs(20)));
    assert_eq!(global.emergency_restart_threshold, 10);
    assert_eq!(global.emergency_restart_interval, Some(Duration::from_secs(60)));
    assert!(global.graceful_stop_on_term);
}

#[test]
fn a_reload_waits_for_a_restart_only_for_keys_whose_effect_changes() {
    let global = |lines: &str| parse_ok(&format!("[global]\n{lines}\n{}", pool_with(""))).global;
    let unset = global("");
    let threads = crate::config::default_front_end_threads();
    let same = global(&format!("front_end_threads = {threads}"));
    assert!(unset.restart_only_changes(&same).is_empty(), "the default spelled out changes nothing");
    let more = global(&format!("front_end_threads = {}\nrlimit_files = 4096", threads + 1));
    assert_eq!(unset.restart_only_changes(&more), ["rlimit_files", "front_end_threads"]);
}

#[test]
fn zero_durations_and_sizes_mean_none() {
    let pool = only_pool(&pool_with(
        "pm_max_memory = \"0\"\npm_max_lifetime = 0\nrequest_terminate_timeout = \"0s\"\nqueue_max_wait = \"0\"",
    ));
    assert_eq!((pool.pm_max_memory, pool.pm_max_lifetime), (None, None));
    assert_eq!((pool.request_terminate_timeout, pool.queue_max_wait), (None, None));
    let text = format!("[global]\nprocess_control_timeout = 0\nemergency_restart_interval = \"0\"\n{}", pool_with(""));
    let global = parse_ok(&text).global;
    assert_eq!((global.process_control_timeout, global.emergency_restart_interval), (None, None));
}

#[test]
fn durations_in_every_spelling() {
    let cases = [
        ("30", Duration::from_secs(30)),
        ("\"30\"", Duration::from_secs(30)),
        ("\"30s\"", Duration::from_secs(30)),
        ("\"5m\"", Duration::from_secs(300)),
        ("\"1h\"", Duration::from_secs(3600)),
        ("\"1d\"", Duration::from_secs(86_400)),
        ("\"250ms\"", Duration::from_millis(250)),
    ];
    for (spelling, expected) in cases {
        let pool = only_pool(&pool_with(&format!("request_terminate_timeout = {spelling}")));
        assert_eq!(pool.request_terminate_timeout, Some(expected), "{spelling}");
    }
}

#[test]
fn rlimit_core_takes_a_number_or_unlimited() {
    for (spelling, expected) in [("0", RlimitCore::Limited(0)), ("1048576", RlimitCore::Limited(1 << 20))] {
        assert_eq!(only_pool(&pool_with(&format!("rlimit_core = {spelling}"))).rlimit_core, Some(expected));
    }
    assert_eq!(only_pool(&pool_with("rlimit_core = \"unlimited\"")).rlimit_core, Some(RlimitCore::Unlimited));
    let priority = |n: i32| only_pool(&pool_with(&format!("process_priority = {n}"))).process_priority;
    assert_eq!((priority(MIN_PROCESS_PRIORITY), priority(MAX_PROCESS_PRIORITY)), (Some(-19), Some(20)));
}

/// A "dynamic" pool of 5 children whose `extra` lines start at line 5 (`pm` is line 4).
fn dynamic_with(extra: &str) -> String {
    format!("[pool.www]\nlisten = \"/run/www.sock\"\npm_max_children = 5\npm = \"dynamic\"\n{extra}\n")
}

#[test]
fn dynamic_pools_get_php_fpm_start_servers() {
    let cases = [
        // (min, max, start as written, start as built)
        (1, 3, None, 2),
        (2, 5, None, 3),
        (1, 2, None, 1),
        (4, 4, None, 4),
        (1, 5, Some(1), 1),
        (1, 5, Some(5), 5),
    ];
    for (min, max, start, expected) in cases {
        let start = start.map(|n| format!("pm_start_servers = {n}")).unwrap_or_default();
        let text = dynamic_with(&format!("pm_min_spare_servers = {min}\npm_max_spare_servers = {max}\n{start}"));
        let pool = only_pool(&text);
        assert_eq!(pool.pm, PmMode::Dynamic);
        assert_eq!(
            (pool.pm_start_servers, pool.pm_min_spare_servers, pool.pm_max_spare_servers),
            (Some(expected), Some(min), Some(max)),
            "{text}"
        );
    }
}

#[test]
fn static_and_ondemand_ignore_the_spare_counts() {
    for mode in ["static", "ondemand"] {
        let text = pool_with(&format!(
            "pm = \"{mode}\"\npm_min_spare_servers = 3\npm_max_spare_servers = 1\npm_start_servers = 9"
        ));
        let pool = only_pool(&text);
        assert_eq!(
            (pool.pm_start_servers, pool.pm_min_spare_servers, pool.pm_max_spare_servers),
            (Some(9), Some(3), Some(1))
        );
    }
    // A zero idle timeout is refused only where it is used.
    let pool = only_pool(&pool_with("pm = \"static\"\npm_process_idle_timeout = 0"));
    assert_eq!(pool.pm_process_idle_timeout, Duration::ZERO);
}

#[test]
fn every_key_is_read() {
    let pool = only_pool(&pool_with(
        "listen_backlog = -1\nlisten_owner = \"root\"\nlisten_group = \"0\"\n\
         listen_mode = \"600\"\nuser = \"root\"\ngroup = \"root\"\nphp_cgi = \"/usr/bin/php-cgi\"\n\
         php_ini = \"/\"\nclear_env = false\nsecurity_limit_extensions = \".php  .phar\"\n\
         queue_max_len = 0",
    ));
    assert_eq!(pool.listen_backlog, MAX_LISTEN_BACKLOG);
    assert_eq!(pool.listen_owner.as_deref(), Some("root"));
    assert_eq!(pool.listen_group.as_deref(), Some("0"));
    assert_eq!(pool.listen_mode, 0o600);
    assert_eq!((pool.user.as_deref(), pool.group.as_deref()), (Some("root"), Some("root")));
    assert_eq!(pool.php_cgi, PathBuf::from("/usr/bin/php-cgi"));
    assert_eq!(pool.php_ini, Some(PathBuf::from("/")));
    assert!(!pool.clear_env);
    assert_eq!(pool.security_limit_extensions, [".php", ".phar"]);
    assert_eq!(pool.queue_max_len, 0);
}

#[test]
fn global_values() {
    let text = format!("[global]\nerror_log = \"/var/log/rustfpm.log\"\nlog_level = \"debug\"\n{}", pool_with(""));
    let global = parse_ok(&text).global;
    assert_eq!(global.error_log, LogTarget::File(PathBuf::from("/var/log/rustfpm.log")));
    assert_eq!(global.log_level, LogLevel::Debug);
    assert!(LogLevel::Debug < LogLevel::Alert);
}

#[test]
fn empty_extension_list_means_no_limit() {
    let pool = only_pool(&pool_with("security_limit_extensions = \"\""));
    assert!(pool.security_limit_extensions.is_empty());
}

#[test]
fn pools_keep_file_order() {
    let text = "[pool.zz]\nlisten = \"/z\"\npm_max_children = 1\n[pool.aa]\nlisten = \"/a\"\npm_max_children = 2\n";
    let names: Vec<_> = parse_ok(text).pools.into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["zz", "aa"]);
}

#[test]
fn listen_spellings_in_a_pool() {
    let cases = [
        ("/run/php/x.sock", ListenAddr::Unix("/run/php/x.sock".into())),
        ("127.0.0.1:9000", ListenAddr::Tcp("127.0.0.1:9000".parse().unwrap())),
        ("[::1]:9000", ListenAddr::Tcp("[::1]:9000".parse().unwrap())),
        ("9000", ListenAddr::Port(9000)),
    ];
    for (spelling, expected) in cases {
        let pool = only_pool(&format!("[pool.a]\nlisten = \"{spelling}\"\npm_max_children = 1\n"));
        assert_eq!(pool.listen, expected);
    }
}

#[test]
fn ini_tables_merge_in_order_and_flags_normalise() {
    let pool = only_pool(&pool_with(
        "[pool.www.php_value]\nmemory_limit = \"32M\"\nmax_input_vars = 2000\nshort_open_tag = true\n\
         date.timezone = \"UTC\"\n\
         [pool.www.php_flag]\ndisplay_errors = \"on\"\nexpose_php = \"No\"\nhtml_errors = 0\n\
         [pool.www.php_admin_value]\nmemory_limit = \"96M\"\n\
         [pool.www.php_admin_flag]\ndisplay_errors = false\n",
    ));
    let ini: Vec<(&str, &str)> = pool.ini.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        ini,
        [
            ("date.timezone", "UTC"),
            ("max_input_vars", "2000"),
            ("memory_limit", "96M"),
            ("short_open_tag", "1"),
            ("display_errors", "0"),
            ("expose_php", "0"),
            ("html_errors", "0"),
        ]
    );
    assert_eq!(pool.admin_ini_keys, ["memory_limit", "display_errors"]);
}

#[test]
fn env_table() {
    let pool = only_pool(&pool_with("[pool.www.env]\nTMPDIR = \"/tmp\"\nWORKERS = 3\n"));
    assert_eq!(pool.env, [("TMPDIR".into(), "/tmp".into()), ("WORKERS".into(), "3".into())]);
    let errors = errors(&pool_with("[pool.www.env]\n\"A=B\" = \"x\"\n"));
    assert_eq!((errors[0].line, errors[0].key.as_deref()), (Some(5), Some("env.A=B")));
}

/// The example must show every key, set or commented out (`# key = ...`).
#[test]
fn example_config_shows_every_key() {
    let shown = |key: &str| {
        EXAMPLE.lines().any(|line| {
            let line = line.trim_start_matches("# ");
            line.starts_with(&format!("{key} = ")) || line.starts_with(&format!("[pool.www.{key}]"))
        })
    };
    let keys = RawGlobal::KEYS.iter().chain(RawPoolKeys::KEYS);
    let missing: Vec<_> = keys.filter(|key| !shown(key)).collect();
    assert!(missing.is_empty(), "config/rustfpm.toml lacks {missing:?}");
}

/// Uncommenting the example's commented-out keys gives a valid file (but for paths that need not
/// exist on this machine).
#[test]
fn example_config_commented_keys_parse() {
    let known = |line: &str| {
        let key = line.split(" = ").next().unwrap_or("");
        line.contains(" = ") && (RawGlobal::KEYS.contains(&key) || RawPoolKeys::KEYS.contains(&key))
    };
    let text: String = EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(setting) if known(setting) => format!("{setting}\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    assert!(text.contains("\npm_max_memory = "), "{text}");
    match parse(&text, Path::new(FILE)) {
        Ok(config) => assert_eq!(config.pools[0].queue_max_wait, Some(Duration::from_secs(30))),
        Err(ConfigErrors(errors)) => {
            let keys: Vec<_> = errors.iter().map(|e| e.key.as_deref().unwrap_or("")).collect();
            assert!(keys.iter().all(|key| ["php_ini", "chroot", "chdir"].contains(key)), "{errors:?}");
        }
    }
}

#[test]
fn load_reads_the_example_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rustfpm.toml");
    assert_eq!(load(&path).unwrap().path, path);
}

#[test]
fn slow_peer_limits_are_read_and_zero_is_no_limit() {
    let text = format!(
        "[global]\nrlimit_files = 4096\n{}",
        pool_with("request_read_timeout = \"2s\"\nlisten_idle_timeout = \"0\"\nlisten_max_connections = 10")
    );
    let config = parse_ok(&text);
    assert_eq!(config.global.rlimit_files, Some(4096));
    let pool = &config.pools[0];
    assert_eq!(pool.request_read_timeout, Some(Duration::from_secs(2)));
    assert_eq!(pool.listen_idle_timeout, None);
    assert_eq!(pool.listen_max_connections, 10);
}

/// An unset process_sched_policy is "batch" for a thread under the kernel's default (or
/// batch), and keeps idle or a real-time policy that rustfpm's parent chose, with or without
/// SCHED_RESET_ON_FORK (which `sched_getscheduler` ORs in).
#[test]
fn an_unset_sched_policy_keeps_idle_and_real_time_ones() {
    let reset = libc::SCHED_RESET_ON_FORK;
    for current in [libc::SCHED_OTHER, libc::SCHED_BATCH, libc::SCHED_OTHER | reset] {
        assert_eq!(SchedPolicy::default_from(current), Some(SchedPolicy::Batch), "from {current:#x}");
    }
    for current in [libc::SCHED_IDLE, libc::SCHED_FIFO, libc::SCHED_RR | reset, libc::SCHED_DEADLINE, -1] {
        assert_eq!(SchedPolicy::default_from(current), None, "from {current:#x}");
    }
    let names: Vec<String> =
        [libc::SCHED_IDLE | reset, libc::SCHED_FIFO, libc::SCHED_BATCH, 42].map(SchedPolicy::name_of).into();
    assert_eq!(names, ["idle", "fifo", "batch", "policy 42"]);
}
