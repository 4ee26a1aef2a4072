//! The logging and daemonizing keys: syslog, `log_limit`, `daemonize`, in TOML and from php-fpm.

use super::{errors, parse_ok, pool_with};
use crate::config::{load_fpm, Config, LogTarget, DEFAULT_LOG_LIMIT};

fn fpm(global: &str) -> (Config, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("php-fpm.conf");
    let text = format!("[global]\n{global}\n[www]\nlisten = /run/rustfpm-test/www.sock\npm.max_children = 2\n");
    std::fs::write(&path, text).unwrap();
    load_fpm(&path, None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn defaults() {
    let global = parse_ok(&pool_with("")).global;
    assert_eq!(global.syslog_facility, libc::LOG_DAEMON);
    assert_eq!(global.syslog_ident, "php-fpm");
    assert_eq!(global.syslog_socket.to_str(), Some("/dev/log"));
    assert_eq!(global.log_limit, DEFAULT_LOG_LIMIT);
    assert!(!global.daemonize, "TOML defaults to the foreground");
}

#[test]
fn keys_are_read() {
    let text = format!(
        "[global]\nerror_log = \"syslog\"\nsyslog_facility = \"LOCAL3\"\nsyslog_ident = \"shop\"\n\
         syslog_socket = \"/run/log\"\nlog_limit = 4096\ndaemonize = true\n{}",
        pool_with("")
    );
    let global = parse_ok(&text).global;
    assert_eq!(global.error_log, LogTarget::Syslog);
    assert_eq!(global.syslog_facility, libc::LOG_LOCAL3);
    assert_eq!(global.syslog_ident, "shop");
    assert_eq!(global.syslog_socket.to_str(), Some("/run/log"));
    assert_eq!(global.log_limit, 4096);
    assert!(global.daemonize);
}

#[test]
fn bad_values_name_key_and_value() {
    let text = "[global]\nsyslog_facility = \"local9\"\nlog_limit = 100\nsyslog_socket = \"dev/log\"\n\
                daemonize = \"yes\"\n";
    let errors = errors(&format!("{text}{}", pool_with("")));
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref(), e.value.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(2), Some("syslog_facility"), Some("local9")),
            (Some(3), Some("log_limit"), Some("100")),
            (Some(4), Some("syslog_socket"), Some("dev/log")),
            (Some(5), Some("daemonize"), Some("yes")),
        ]
    );
    assert!(errors[0].message.contains("local7"), "{}", errors[0].message);
    assert!(errors[1].message.contains("between 512 and"), "{}", errors[1].message);
    let shown = errors[0].to_string();
    assert!(shown.starts_with("/etc/rustfpm/test.toml:2: syslog_facility = \"local9\""), "{shown}");
}

#[test]
fn php_fpm_directives_map() {
    let (config, warnings) =
        fpm("error_log = syslog\nsyslog.facility = local5\nsyslog.ident = www\nlog_limit = 2048\nlog_buffering = yes");
    assert!(warnings.is_empty(), "{warnings:?}");
    let global = config.global;
    assert_eq!(global.error_log, LogTarget::Syslog);
    assert_eq!(global.syslog_facility, libc::LOG_LOCAL5);
    assert_eq!(global.syslog_ident, "www");
    assert_eq!(global.log_limit, 2048);
}

#[test]
fn php_fpm_daemonizes_unless_told_not_to() {
    assert!(fpm("").0.global.daemonize, "php-fpm's default is daemonize = yes");
    assert!(fpm("daemonize = yes").0.global.daemonize);
    assert!(!fpm("daemonize = no").0.global.daemonize);
}

#[test]
fn php_fpm_bad_facility_is_an_error_in_its_terms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("php-fpm.conf");
    std::fs::write(&path, "[global]\nsyslog.facility = nowhere\n[www]\nlisten = /run/x.sock\npm.max_children = 2\n")
        .unwrap();
    let errors = load_fpm(&path, None).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let shown = errors[0].to_string();
    assert!(shown.contains(":2: syslog.facility = \"nowhere\": unknown syslog facility"), "{shown}");
}

#[test]
fn convert_keeps_the_settings() {
    let (config, _) = fpm("error_log = syslog\nsyslog.facility = cron\nlog_limit = 600\ndaemonize = no");
    let text = crate::config::to_toml(&config);
    let again = crate::config::parse(&text, std::path::Path::new("/x.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.global.error_log, LogTarget::Syslog);
    assert_eq!(again.global.syslog_facility, libc::LOG_CRON);
    assert_eq!(again.global.log_limit, 600);
    assert!(!again.global.daemonize);
}
