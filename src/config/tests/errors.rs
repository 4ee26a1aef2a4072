//! What invalid files report: every error, each naming file, line, pool, key and value.

use std::path::Path;

use super::{dynamic_with, errors, only_pool, parse_ok, pool_with, FILE};
use crate::config::{load, ConfigErrors, SchedPolicy};

/// For each key, a bad value: the error must name that key, show the value and give line 4.
#[test]
fn every_bad_value_names_key_value_and_line() {
    let cases = [
        ("listen_backlog = -2", "listen_backlog", "-2", "between 0 and"),
        ("listen_backlog = \"511\"", "listen_backlog", "511", "without quotes"),
        ("listen_owner = \"no-such-user-xyz\"", "listen_owner", "no-such-user-xyz", "no such user"),
        ("listen_group = \"no-such-group-xyz\"", "listen_group", "no-such-group-xyz", "no such group"),
        ("listen_mode = \"0999\"", "listen_mode", "0999", "octal"),
        ("listen_mode = \"01777\"", "listen_mode", "01777", "0777"),
        ("listen_mode = 660", "listen_mode", "660", "expected a string"),
        ("user = \"no-such-user-xyz\"", "user", "no-such-user-xyz", "no such user"),
        ("group = 33", "group", "33", "put the value in quotes"),
        ("pm = \"fast\"", "pm", "fast", "must be one of: static, dynamic, ondemand"),
        ("pm = 1", "pm", "1", "expected a string"),
        ("php_cgi = \"\"", "php_cgi", "", "empty"),
        ("php_ini = \"/no/such/php.ini\"", "php_ini", "/no/such/php.ini", "no such file"),
        ("php_ini = \"Cargo.toml\"", "php_ini", "Cargo.toml", "must be an absolute path"),
        ("clear_env = \"no\"", "clear_env", "no", "write false"),
        ("security_limit_extensions = \"php\"", "security_limit_extensions", "php", "dot"),
        ("queue_max_len = -1", "queue_max_len", "-1", "at least 0"),
        ("queue_max_len = 1.5", "queue_max_len", "1.5", "expected an integer, found a float"),
        ("env = \"x\"", "env", "x", "expected a table"),
        ("env.PATH = true", "env.PATH", "true", "expected a string"),
        ("php_value.memory_limit = [1]", "php_value.memory_limit", "", "expected a string, number"),
        ("php_flag.display_errors = \"maybe\"", "php_flag.display_errors", "maybe", "a flag"),
        ("php_admin_value.\"a b\" = 1", "php_admin_value.a b", "1", "INI setting name"),
        ("php_admin_flag.log_errors = 2", "php_admin_flag.log_errors", "2", "a flag"),
        ("pm_start_servers = -1", "pm_start_servers", "-1", "at least 0"),
        ("pm_min_spare_servers = \"2\"", "pm_min_spare_servers", "2", "write 2 without quotes"),
        ("pm_max_spare_servers = 1.5", "pm_max_spare_servers", "1.5", "expected an integer"),
        ("pm_max_spawn_rate = 0", "pm_max_spawn_rate", "0", "at least 1"),
        ("pm_process_idle_timeout = \"10 s\"", "pm_process_idle_timeout", "10 s", "not a duration"),
        ("pm_max_requests = -5", "pm_max_requests", "-5", "at least 0"),
        ("pm_max_memory = \"128MB\"", "pm_max_memory", "128MB", "not a size"),
        ("pm_max_memory = 128", "pm_max_memory", "128", "\"128\" for bytes"),
        ("pm_max_lifetime = -1", "pm_max_lifetime", "-1", "cannot be negative"),
        ("pm_max_lifetime = 1.5", "pm_max_lifetime", "1.5", "expected a duration, found a float"),
        ("request_terminate_timeout = \"30x\"", "request_terminate_timeout", "30x", "not a duration"),
        (
            "request_terminate_timeout_track_finished = \"yes\"",
            "request_terminate_timeout_track_finished",
            "yes",
            "write true",
        ),
        ("queue_max_wait = true", "queue_max_wait", "true", "expected a duration"),
        ("chdir = \"var/www\"", "chdir", "var/www", "absolute path"),
        ("chdir = \"/no/such/dir\"", "chdir", "/no/such/dir", "no such directory"),
        ("chdir = \"/etc/passwd\"", "chdir", "/etc/passwd", "not a directory"),
        ("chroot = \"srv\"", "chroot", "srv", "absolute path"),
        ("chroot = \"/no/such/dir\"", "chroot", "/no/such/dir", "no such directory"),
        ("chroot = \"/etc/passwd\"", "chroot", "/etc/passwd", "not a directory"),
        ("rlimit_files = 0", "rlimit_files", "0", "at least 1"),
        ("listen_max_connections = 0", "listen_max_connections", "0", "between 1 and"),
        ("request_read_timeout = \"soon\"", "request_read_timeout", "soon", "not a duration"),
        ("listen_idle_timeout = -1", "listen_idle_timeout", "-1", "duration"),
        ("rlimit_core = -1", "rlimit_core", "-1", "at least 0"),
        ("rlimit_core = \"infinity\"", "rlimit_core", "infinity", "or \"unlimited\""),
        ("rlimit_core = \"1024\"", "rlimit_core", "1024", "without quotes"),
        ("process_priority = 21", "process_priority", "21", "between -19 and 20"),
        ("process_priority = -20", "process_priority", "-20", "between -19 and 20"),
        ("process_sched_policy = \"fifo\"", "process_sched_policy", "fifo", "must be one of: other, batch, idle"),
        ("process_sched_policy = 1", "process_sched_policy", "1", "string"),
        ("process_dumpable = 1", "process_dumpable", "1", "expected a boolean"),
        ("catch_workers_output = \"yes\"", "catch_workers_output", "yes", "write true"),
        ("decorate_workers_output = \"no\"", "decorate_workers_output", "no", "write false"),
    ];
    for (line, key, value, message) in cases {
        let errors = errors(&pool_with(line));
        let [e] = errors.as_slice() else { panic!("{line}: expected one error: {errors:?}") };
        assert_eq!(e.key.as_deref(), Some(key), "{line}");
        assert_eq!(e.value.as_deref().unwrap_or(""), value, "{line}");
        assert_eq!(e.line, Some(4), "{line}");
        assert_eq!(e.pool.as_deref(), Some("www"), "{line}");
        assert!(e.message.contains(message), "{line}: {}", e.message);
    }
}

#[test]
fn required_values_are_checked() {
    let cases = [
        ("listen = \"[zz]:9000\"\npm_max_children = 1", "listen", "not an IPv6 address"),
        ("listen = \"www.sock\"\npm_max_children = 1", "listen", "absolute socket path"),
        ("pm_max_children = 0\nlisten = \"/a.sock\"", "pm_max_children", "between 1 and 4096"),
        ("pm_max_children = 4097\nlisten = \"/a.sock\"", "pm_max_children", "between 1 and 4096"),
    ];
    for (lines, key, message) in cases {
        let errors = errors(&format!("[pool.a]\n{lines}\n"));
        let [e] = errors.as_slice() else { panic!("{lines}: expected one error: {errors:?}") };
        assert_eq!((e.key.as_deref(), e.line), (Some(key), Some(2)), "{lines}");
        assert!(e.message.contains(message), "{lines}: {}", e.message);
    }
}

#[test]
fn missing_required_keys_name_the_pool_header() {
    let errors = errors("# comment\n[pool.www]\nclear_env = true\n");
    let keys: Vec<_> = errors.iter().map(|e| (e.key.as_deref(), e.line)).collect();
    assert_eq!(keys, [(Some("listen"), Some(2)), (Some("pm_max_children"), Some(2))]);
    assert!(errors.iter().all(|e| e.message == "is required"));
}

#[test]
fn bad_global_values() {
    let text = "[global]\nerror_log = \"rel.log\"\nlog_level = \"info\"\npid = 7\n";
    let errors = errors(&format!("{text}{}", pool_with("")));
    let found: Vec<_> =
        errors.iter().map(|e| (e.line, e.key.as_deref(), e.value.as_deref(), e.pool.as_ref())).collect();
    assert_eq!(
        found,
        [
            (Some(2), Some("error_log"), Some("rel.log"), None),
            (Some(3), Some("log_level"), Some("info"), None),
            (Some(4), Some("pid"), Some("7"), None)
        ]
    );
    assert!(errors[0].message.contains("absolute path"));
    assert!(errors[1].message.contains("debug, notice, warning, error, alert"));
    assert!(errors[2].message.contains("expected a string"));
}

#[test]
fn bad_new_global_values() {
    let text = "[global]\nprocess_control_timeout = \"10 seconds\"\nemergency_restart_threshold = -1\n\
                emergency_restart_interval = \"1w\"\ngraceful_stop_on_term = \"yes\"\n";
    let errors = errors(&format!("{text}{}", pool_with("")));
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref(), e.value.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(2), Some("process_control_timeout"), Some("10 seconds")),
            (Some(3), Some("emergency_restart_threshold"), Some("-1")),
            (Some(4), Some("emergency_restart_interval"), Some("1w")),
            (Some(5), Some("graceful_stop_on_term"), Some("yes")),
        ]
    );
    assert!(errors.iter().all(|e| e.pool.is_none()));
    assert!(errors[0].message.contains("not a duration"), "{}", errors[0].message);
    assert!(errors[1].message.contains("at least 0"), "{}", errors[1].message);
    assert!(errors[2].message.contains("not a duration"), "{}", errors[2].message);
    assert!(errors[3].message.contains("write true"), "{}", errors[3].message);
}

/// One expected error: line, key, value and part of the message.
type Expected = (usize, &'static str, Option<&'static str>, &'static str);

/// php-fpm's rules for "dynamic", each case with its expected errors in order;
/// `pm = "dynamic"` is line 4 and the extra lines start at 5, with 5 children.
#[test]
fn dynamic_rules_are_checked() {
    const REQUIRED: &str = "is required when pm = \"dynamic\"";
    let cases: [(&str, &[Expected]); 9] = [
        ("", &[(4, "pm_min_spare_servers", None, REQUIRED), (4, "pm_max_spare_servers", None, REQUIRED)]),
        ("pm_min_spare_servers = 1", &[(4, "pm_max_spare_servers", None, REQUIRED)]),
        (
            "pm_min_spare_servers = 0\npm_max_spare_servers = 3\npm_start_servers = 0",
            &[(5, "pm_min_spare_servers", Some("0"), "at least 1"), (7, "pm_start_servers", Some("0"), "at least 1")],
        ),
        (
            "pm_min_spare_servers = 6\npm_max_spare_servers = 7",
            &[
                (5, "pm_min_spare_servers", Some("6"), "cannot be greater than pm_max_children (5)"),
                (6, "pm_max_spare_servers", Some("7"), "cannot be greater than pm_max_children (5)"),
            ],
        ),
        (
            "pm_min_spare_servers = 1\npm_max_spare_servers = 6",
            &[(6, "pm_max_spare_servers", Some("6"), "cannot be greater than pm_max_children (5)")],
        ),
        (
            "pm_min_spare_servers = 3\npm_max_spare_servers = 2",
            &[(6, "pm_max_spare_servers", Some("2"), "must not be less than pm_min_spare_servers (3)")],
        ),
        (
            "pm_min_spare_servers = 2\npm_max_spare_servers = 3\npm_start_servers = 4",
            &[(
                7,
                "pm_start_servers",
                Some("4"),
                "must not be less than pm_min_spare_servers (2) and not greater than pm_max_spare_servers (3)",
            )],
        ),
        (
            "pm_start_servers = 1\npm_min_spare_servers = 2\npm_max_spare_servers = 3",
            &[(5, "pm_start_servers", Some("1"), "must not be less than pm_min_spare_servers (2)")],
        ),
        (
            "pm_min_spare_servers = \"x\"",
            &[
                (4, "pm_max_spare_servers", None, REQUIRED),
                (5, "pm_min_spare_servers", Some("x"), "expected an integer"),
            ],
        ),
    ];
    for (extra, expected) in cases {
        let errors = errors(&dynamic_with(extra));
        let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref(), e.value.as_deref())).collect();
        let wanted: Vec<_> = expected.iter().map(|(line, key, value, _)| (Some(*line), Some(*key), *value)).collect();
        assert_eq!(found, wanted, "{extra}");
        for (e, (_, _, _, message)) in errors.iter().zip(expected) {
            assert!(e.message.contains(message), "{extra}: {}", e.message);
            assert_eq!(e.pool.as_deref(), Some("www"));
        }
    }
}

#[test]
fn dynamic_rules_skip_an_invalid_max_children() {
    let text = "[pool.www]\nlisten = \"/a\"\npm_max_children = 0\npm = \"dynamic\"\n\
                pm_min_spare_servers = 8\npm_max_spare_servers = 9\n";
    let errors = errors(text);
    let [e] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("pm_max_children")));
}

#[test]
fn ondemand_needs_an_idle_timeout() {
    let errors = errors(&pool_with("pm = \"ondemand\"\npm_process_idle_timeout = \"0s\""));
    let [e] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!((e.line, e.key.as_deref(), e.value.as_deref()), (Some(5), Some("pm_process_idle_timeout"), Some("0s")));
    assert!(e.message.contains("greater than 0s when pm = \"ondemand\""), "{}", e.message);
}

#[test]
fn status_listen_needs_a_page_and_an_address_of_its_own() {
    let alone = errors(&pool_with("pm_status_listen = \"127.0.0.1:9001\""));
    let [e] = alone.as_slice() else { panic!("{alone:?}") };
    assert_eq!(
        (e.line, e.key.as_deref(), e.value.as_deref()),
        (Some(4), Some("pm_status_listen"), Some("127.0.0.1:9001"))
    );
    assert!(e.message.contains("needs pm_status_path or ping_path"), "{}", e.message);
    let clash = errors(&pool_with("ping_path = \"/ping\"\npm_status_listen = \"/run/www.sock\""));
    let [e] = clash.as_slice() else { panic!("{clash:?}") };
    assert_eq!((e.line, e.key.as_deref()), (Some(5), Some("pm_status_listen")));
    assert!(e.message.contains("pool www already listens on /run/www.sock"), "{}", e.message);
}

#[test]
fn several_new_key_errors_are_all_reported() {
    let text = "[global]\nprocess_control_timeout = -3\ngraceful_stop_on_term = 1\n\n[pool.www]\n\
                listen = \"/a.sock\"\npm_max_children = 4\npm = \"dynamic\"\npm_max_spare_servers = 8\n\
                pm_max_memory = \"lots\"\nchroot = \"/no/such/root\"\nrlimit_core = \"big\"\n\
                process_priority = 99\nqueue_max_wait = \"soon\"\n";
    let errors = errors(text);
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref(), e.pool.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(2), Some("process_control_timeout"), None),
            (Some(3), Some("graceful_stop_on_term"), None),
            (Some(8), Some("pm_min_spare_servers"), Some("www")),
            (Some(9), Some("pm_max_spare_servers"), Some("www")),
            (Some(10), Some("pm_max_memory"), Some("www")),
            (Some(11), Some("chroot"), Some("www")),
            (Some(12), Some("rlimit_core"), Some("www")),
            (Some(13), Some("process_priority"), Some("www")),
            (Some(14), Some("queue_max_wait"), Some("www")),
        ]
    );
    let shown = ConfigErrors(errors).to_string();
    assert_eq!(shown.lines().count(), 9);
    for line in [
        format!("{FILE}:2: process_control_timeout = \"-3\": a duration cannot be negative"),
        format!("{FILE}:8: [pool www] pm_min_spare_servers: is required when pm = \"dynamic\""),
        format!("{FILE}:9: [pool www] pm_max_spare_servers = \"8\": cannot be greater than pm_max_children (4)"),
        format!("{FILE}:13: [pool www] process_priority = \"99\": must be between -19 and 20"),
    ] {
        assert!(shown.contains(&line), "{line}\nnot in\n{shown}");
    }
}

#[test]
fn several_errors_are_all_reported_in_line_order() {
    let text = "[global]\nlog_level = \"loud\"\n\n[pool.www]\nlisten = \"127.0.0.1:0\"\n\
                pm_max_children = 0\npm = \"dynamic\"\nbogus = 1\n\n[pool.b]\nlisten = \"/b.sock\"\n";
    let errors = errors(text);
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(2), Some("log_level")),
            (Some(5), Some("listen")),
            (Some(6), Some("pm_max_children")),
            (Some(7), Some("pm_min_spare_servers")),
            (Some(7), Some("pm_max_spare_servers")),
            (Some(8), Some("bogus")),
            (Some(10), Some("pm_max_children")),
        ]
    );
    let shown = ConfigErrors(errors).to_string();
    assert_eq!(shown.lines().count(), 7);
    assert!(
        shown.contains(&format!("{FILE}:6: [pool www] pm_max_children = \"0\": must be between 1 and 4096")),
        "{shown}"
    );
}

#[test]
fn unknown_keys_are_errors_everywhere() {
    let text = "colour = 1\n[global]\nevents_mechanism = \"epoll\"\n[pool.www]\nlisten = \"/a\"\n\
                pm_max_children = 1\n\"pm.start_servers\" = 2\naccess.log = \"x\"\n[pool.www.extra]\n";
    let errors = errors(text);
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref(), e.pool.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(1), Some("colour"), None),
            (Some(3), Some("events_mechanism"), None),
            (Some(7), Some("pm.start_servers"), Some("www")),
            (Some(8), Some("access.log"), Some("www")),
            (Some(9), Some("extra"), Some("www")),
        ]
    );
    assert!(errors.iter().all(|e| e.message.starts_with("unknown")));
}

#[test]
fn dotted_php_fpm_directive_gets_the_underscore_spelling() {
    for line in ["\"pm.max_children\" = 4", "pm.max_children = 4"] {
        let errors = errors(&format!("[pool.www]\nlisten = \"/a\"\n{line}\n"));
        let unknown = errors.iter().find(|e| e.key.as_deref() == Some("pm.max_children"));
        let unknown = unknown.unwrap_or_else(|| panic!("{line}: {errors:?}"));
        assert_eq!((unknown.line, unknown.value.as_deref()), (Some(3), Some("4")));
        assert!(unknown.message.contains("written `pm_max_children`"), "{}", unknown.message);
    }
}

#[test]
fn misplaced_keys_say_where_they_belong() {
    let errors = errors("listen = \"/a\"\n[pool]\nlisten = \"/b\"\n");
    assert!(errors[0].message.contains("belongs in a [pool.NAME] table"), "{}", errors[0].message);
    assert_eq!(errors[1].key.as_deref(), Some("pool.listen"));
    assert!(errors.iter().any(|e| e.message.contains("no pool")));
}

#[test]
fn toml_syntax_error_has_a_line() {
    let errors = errors("[global]\nlog_level = \"debug\"\npid = /run/x.pid\n");
    let [e] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!(e.line, Some(3));
    assert!(e.message.starts_with("TOML syntax error"), "{}", e.message);
    assert!(e.to_string().starts_with(&format!("{FILE}:3: TOML syntax error")));
}

#[test]
fn at_least_one_pool() {
    let errors = errors("[global]\nlog_level = \"debug\"\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("no pool"));
}

#[test]
fn pool_names_are_checked() {
    let errors = errors("[pool.\"my\\tpool\"]\nlisten = \"/a\"\npm_max_children = 1\n");
    let [e] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!((e.line, e.pool.as_deref()), (Some(1), Some("my\tpool")));
    assert!(e.message.contains("invalid pool name"));
    // What php-fpm takes.
    for name in ["a-1.b_c", "my pool", "shop:8080", "ünï", "a/b"] {
        let config = parse_ok(&format!("[pool.\"{name}\"]\nlisten = \"/a\"\npm_max_children = 1\n"));
        assert_eq!(config.pools[0].name, name);
    }
}

#[test]
fn two_pools_cannot_share_a_listen_address() {
    let pool = |name: &str, listen: &str| format!("[pool.{name}]\nlisten = \"{listen}\"\npm_max_children = 1\n");
    for (a, b) in [("/a.sock", "/a.sock"), ("127.0.0.1:9000", "127.0.0.1:9000"), ("9000", "127.0.0.1:9000")] {
        let errors = errors(&format!("{}{}", pool("one", a), pool("two", b)));
        let [e] = errors.as_slice() else { panic!("{errors:?}") };
        assert_eq!((e.line, e.pool.as_deref(), e.key.as_deref()), (Some(5), Some("two"), Some("listen")));
        assert!(e.message.contains("pool one already listens"), "{}", e.message);
    }
    parse_ok(&format!("{}{}", pool("one", "127.0.0.1:9000"), pool("two", "127.0.0.2:9000")));
}

#[test]
fn ini_values_cannot_inject_lines() {
    let errors = errors(&pool_with("[pool.www.php_value]\nerror_log = \"/x\\nauto_prepend_file=/y\"\n"));
    assert!(errors[0].message.contains("line breaks"), "{}", errors[0].message);
}

#[test]
fn load_reports_an_unreadable_file() {
    let path = Path::new("/no/such/dir/rustfpm.toml");
    let ConfigErrors(errors) = load(path).unwrap_err();
    let [e] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!(e.file, path);
    assert!(e.to_string().starts_with("/no/such/dir/rustfpm.toml: cannot read"), "{e}");
}

#[test]
fn dotted_key_clash_explains_the_underscore_spelling() {
    let errors = errors(&pool_with("pm = \"static\"\npm.start_servers = 2"));
    let [e] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!(e.line, Some(5));
    assert!(e.message.contains("`listen_owner`"), "{}", e.message);
}

#[test]
fn suppress_paths_must_be_a_list_of_paths() {
    for (line, message) in [
        ("access_suppress_path = \"/ping\"", "expected an array of strings"),
        ("access_suppress_path = [\"ping\"]", "each starting with '/'"),
        ("access_suppress_path = [1]", "each starting with '/'"),
    ] {
        let found = errors(&pool_with(line));
        let [e] = found.as_slice() else { panic!("{line}: {found:?}") };
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("access_suppress_path")), "{line}");
        assert!(e.message.contains(message), "{line}: {}", e.message);
    }
}

#[test]
fn metrics_listen_and_systemd_interval_are_checked() {
    let text = "[global]\nmetrics_listen = \"/run/metrics.sock\"\nsystemd_interval = \"often\"\n";
    let errors = errors(&format!("{text}{}", pool_with("")));
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref(), e.value.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(2), Some("metrics_listen"), Some("/run/metrics.sock")),
            (Some(3), Some("systemd_interval"), Some("often")),
        ]
    );
    assert!(errors[0].message.contains("TCP address"), "{}", errors[0].message);

    let defaults = parse_ok(&pool_with(""));
    assert_eq!(defaults.global.metrics_listen, None, "metrics are off by default");
    assert_eq!(defaults.global.systemd_interval, Some(std::time::Duration::from_secs(10)));
    let set = parse_ok(&format!(
        "[global]\nmetrics_listen = \"127.0.0.1:9253\"\nsystemd_interval = \"0\"\n{}",
        pool_with("")
    ));
    assert_eq!(set.global.metrics_listen, Some("127.0.0.1:9253".parse().unwrap()));
    assert_eq!(set.global.systemd_interval, None, "0 turns the STATUS= refresh off");
    let again = parse_ok(&crate::config::to_toml(&set));
    assert_eq!((again.global.metrics_listen, again.global.systemd_interval), (set.global.metrics_listen, None));
}

#[test]
fn the_global_process_sched_policy_is_checked() {
    let errors = errors(&format!("[global]\nprocess_sched_policy = \"rr\"\n{}", pool_with("")));
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref(), e.value.as_deref())).collect();
    assert_eq!(found, [(Some(2), Some("process_sched_policy"), Some("rr"))]);
    assert!(errors[0].message.contains("must be one of: other, batch, idle"), "{}", errors[0].message);

    let unset = parse_ok(&pool_with(""));
    assert_eq!(unset.global.process_sched_policy, None);
    assert!(!crate::config::to_toml(&unset).contains("process_sched_policy"), "unset stays unset in convert");
    let set = parse_ok(&format!("[global]\nprocess_sched_policy = \"other\"\n{}", pool_with("")));
    assert_eq!(set.global.process_sched_policy, Some(SchedPolicy::Other));
    let again = parse_ok(&crate::config::to_toml(&set));
    assert_eq!(again.global.process_sched_policy, Some(SchedPolicy::Other), "kept by convert");
}

#[test]
fn chdir_must_exist_inside_the_chroot() {
    let root = tempfile::tempdir().unwrap();
    let lines = format!("chroot = \"{}\"\nchdir = \"/www\"", root.path().display());
    let found = errors(&pool_with(&lines));
    let [e] = found.as_slice() else { panic!("{found:?}") };
    assert_eq!((e.line, e.pool.as_deref(), e.key.as_deref()), (Some(5), Some("www"), Some("chdir")));
    let inside = root.path().join("www");
    let expected = format!("no such directory inside the chroot {} ({})", root.path().display(), inside.display());
    assert_eq!(e.message, expected);
    std::fs::create_dir(&inside).unwrap();
    assert_eq!(only_pool(&pool_with(&lines)).chdir.as_deref(), Some(Path::new("/www")));
    // A chroot refused is the one error: the chdir inside it is not looked for.
    let found = errors(&pool_with("chroot = \"/no/such/root\"\nchdir = \"/www\""));
    let [e] = found.as_slice() else { panic!("{found:?}") };
    assert_eq!(e.key.as_deref(), Some("chroot"));
}
