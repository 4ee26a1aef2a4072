//! Whole-file tests: text in, `Config` or every error out. This file: what valid files give;
//! `errors`: what invalid files report.

mod errors;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    let [pool] = config.pools.as_slice() else { panic!("one pool expected") };
    assert_eq!(pool.name, "www");
    assert_eq!(pool.listen, ListenAddr::Unix(PathBuf::from("/run/rustfpm/www.sock")));
    assert_eq!((pool.pm, pool.pm_max_children), (PmMode::Static, 4));
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
    assert_eq!(pool.queue_max_len, 4 * DEFAULT_QUEUE_FACTOR);
    assert!(pool.env.is_empty() && pool.ini.is_empty() && pool.admin_ini_keys.is_empty());
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
        ("9000", ListenAddr::Tcp(SocketAddr::from(([0, 0, 0, 0], 9000)))),
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

#[test]
fn load_reads_the_example_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rustfpm.toml");
    assert_eq!(load(&path).unwrap().path, path);
}
