//! `access_log`, `access_format`, `slowlog` and `request_slowlog_timeout`.

use std::path::Path;
use std::time::Duration;

use super::{errors, only_pool, pool_with};
use crate::config::DEFAULT_ACCESS_FORMAT;

#[test]
fn logs_are_off_by_default() {
    let pool = only_pool(&pool_with(""));
    assert_eq!((pool.access_log, pool.slowlog, pool.request_slowlog_timeout), (None, None, None));
    assert_eq!(pool.access_format.text(), DEFAULT_ACCESS_FORMAT);
    assert_eq!(DEFAULT_ACCESS_FORMAT, "%R - %u %t \"%m %r\" %s");
}

#[test]
fn log_keys_are_read() {
    let pool = only_pool(&pool_with(
        "access_log = \"/var/log/a.log\"\naccess_format = \"%m %{mili}d %{HTTP_HOST}e\"\n\
         slowlog = \"/var/log/s.log\"\nrequest_slowlog_timeout = \"2s\"",
    ));
    assert_eq!(pool.access_log.as_deref(), Some(Path::new("/var/log/a.log")));
    assert_eq!(pool.access_format.text(), "%m %{mili}d %{HTTP_HOST}e");
    assert_eq!(pool.slowlog.as_deref(), Some(Path::new("/var/log/s.log")));
    assert_eq!(pool.request_slowlog_timeout, Some(Duration::from_secs(2)));
}

#[test]
fn empty_paths_and_zero_timeout_are_off() {
    let pool = only_pool(&pool_with("access_log = \"\"\nslowlog = \"\"\nrequest_slowlog_timeout = 0"));
    assert_eq!((pool.access_log, pool.slowlog, pool.request_slowlog_timeout), (None, None, None));
}

#[test]
fn bad_log_settings_are_named() {
    let text = pool_with(
        "access_log = \"log/a.log\"\naccess_format = \"%m %x\"\nslowlog = 5\nrequest_slowlog_timeout = \"1s\"",
    );
    let errors = errors(&text);
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref(), e.message.as_str())).collect();
    assert_eq!(errors.len(), 4, "{found:#?}");
    assert_eq!((errors[0].line, errors[0].key.as_deref()), (Some(4), Some("access_log")));
    assert!(errors[0].message.contains("absolute path"), "{}", errors[0].message);
    assert_eq!((errors[1].key.as_deref(), errors[1].value.as_deref()), (Some("access_format"), Some("%m %x")));
    assert!(errors[1].message.contains("unknown placeholder '%x'"), "{}", errors[1].message);
    assert_eq!(errors[2].key.as_deref(), Some("slowlog"));
    assert_eq!(errors[3].key.as_deref(), Some("request_slowlog_timeout"));
    assert!(errors[3].message.contains("needs `slowlog`"), "{}", errors[3].message);
}
