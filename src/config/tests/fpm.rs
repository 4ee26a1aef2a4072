//! php-fpm's INI configuration: Debian's real files, then self-contained files in a temp dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::EXAMPLE;
use crate::config::file::{RawGlobal, RawPoolKeys, RawTable};
use crate::config::fpm::directives::{Action, ARRAYS, GLOBAL, POOL};
use crate::config::fpm::glob::wildcard;
use crate::config::fpm::ini::{parse_value, Parsed};
use crate::config::fpm::interpret::fpm_bool;
use crate::config::*;

const DEBIAN: &str = "/etc/php/8.2/fpm/php-fpm.conf";

/// A temp dir of config files.
struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Self {
        Files(tempfile::tempdir().expect("a temp dir"))
    }

    fn dir(&self) -> &Path {
        self.0.path()
    }

    /// Writes `text` to `name` (under the temp dir), creating its directories.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn load_ok(path: &Path, prefix: Option<&Path>) -> (Config, Vec<String>) {
    match load_fpm(path, prefix) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

fn load_errors(path: &Path) -> Vec<ConfigError> {
    match load_fpm(path, None) {
        Ok((config, _)) => panic!("accepted: {config:?}"),
        Err(ConfigErrors(errors)) => errors,
    }
}

/// One file holding `text`, loaded without a prefix.
fn load_text(text: &str) -> (Config, Vec<String>) {
    let files = Files::new();
    load_ok(&files.write("php-fpm.conf", text), None)
}

fn errors_of(text: &str) -> Vec<ConfigError> {
    let files = Files::new();
    load_errors(&files.write("php-fpm.conf", text))
}

/// A valid pool `www` whose `extra` lines start at line 4.
fn pool_with(extra: &str) -> String {
    format!("[www]\nlisten = /run/rustfpm-test/www.sock\npm.max_children = 4\n{extra}\n")
}

fn only_pool(text: &str) -> Pool {
    load_text(text).0.pools.remove(0)
}

/// `config` with the orders that carry no meaning normalised, as text to compare.
fn normalised(config: &Config) -> String {
    let mut config = config.clone();
    config.path = PathBuf::new();
    for pool in &mut config.pools {
        // Converted TOML says the default out loud: it is no longer a default there.
        pool.pm_start_servers_defaulted = false;
        pool.ini.sort();
        pool.admin_ini_keys.sort();
        pool.env.sort();
    }
    format!("{config:#?}")
}

fn assert_round_trip(config: &Config) {
    let text = to_toml(config);
    let again = match parse(&text, &config.path) {
        Ok(again) => again,
        Err(errors) => panic!("to_toml gave an invalid file:\n{errors}\n{text}"),
    };
    assert_eq!(normalised(&again), normalised(config), "{text}");
}

fn ini(pool: &Pool) -> Vec<(&str, &str)> {
    pool.ini.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

// ---- Debian's real configuration ----

fn debian() -> (Config, Vec<String>) {
    assert!(Path::new(DEBIAN).exists(), "{DEBIAN} is missing: install php8.2-fpm (scripts/test.sh does)");
    load_ok(Path::new(DEBIAN), None)
}

#[test]
fn debian_config_is_read() {
    let (config, warnings) = debian();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.path, Path::new(DEBIAN));
    assert_eq!(config.global.pid, Some(PathBuf::from("/run/php/php8.2-fpm.pid")));
    assert_eq!(config.global.error_log, LogTarget::File("/var/log/php8.2-fpm.log".into()));
    let [pool] = config.pools.as_slice() else { panic!("one pool expected: {:?}", config.pools) };
    assert_eq!(pool.name, "www");
    assert_eq!((pool.user.as_deref(), pool.group.as_deref()), (Some("www-data"), Some("www-data")));
    assert_eq!(pool.listen, ListenAddr::Unix("/run/php/php8.2-fpm.sock".into()));
    assert_eq!((pool.listen_owner.as_deref(), pool.listen_group.as_deref()), (Some("www-data"), Some("www-data")));
    assert_eq!(pool.listen_mode, 0o660);
    assert_eq!((pool.pm, pool.pm_max_children), (PmMode::Dynamic, 5));
    let spares = (pool.pm_start_servers, pool.pm_min_spare_servers, pool.pm_max_spare_servers);
    assert_eq!(spares, (Some(2), Some(1), Some(3)));
    assert_eq!(pool.security_limit_extensions, [".php", ".phar"]);
    assert!(pool.clear_env);
}

#[test]
fn debian_config_round_trips_through_toml() {
    let (config, _) = debian();
    assert_round_trip(&config);
}

// ---- the INI format ----

#[test]
fn include_globs_match_file_names_in_order() {
    let files = Files::new();
    let pool = |name: &str| format!("[{name}]\nlisten = /run/rustfpm-test/{name}.sock\npm.max_children = 2\n");
    files.write("pool.d/b.conf", &pool("b"));
    files.write("pool.d/a.conf", &pool("a"));
    files.write("pool.d/notes.txt", "this is not INI\n");
    files.write("pool.d/.hidden.conf", "not = read\n");
    files.write("pool.d/dir.conf/x", "");
    files.write("extra/c1.conf", &pool("c"));
    let absolute = files.dir().join("extra/c?.conf");
    // Relative to the prefix, as php-fpm resolves it.
    let main = files.write(
        "etc/php-fpm.conf",
        &format!("[global]\ninclude = pool.d/*.conf\ninclude = \"{}\"\n", absolute.display()),
    );
    let (config, warnings) = load_ok(&main, Some(files.dir()));
    let names: Vec<_> = config.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn include_globs_take_character_classes() {
    let files = Files::new();
    let pool = |name: &str| format!("[{name}]\nlisten = /run/rustfpm-test/{name}.sock\npm.max_children = 2\n");
    files.write("pool.d/1.conf", &pool("one"));
    files.write("pool.d/2.conf", &pool("two"));
    files.write("pool.d/a.conf", &pool("letter"));
    files.write("pool.d/]x.conf", &pool("bracket"));
    let dir = files.dir().join("pool.d");
    let main = files
        .write("php-fpm.conf", &format!("include = {0}/[0-9]*.conf\ninclude = \"{0}/[]]*.conf\"\n", dir.display()));
    let (config, warnings) = load_ok(&main, None);
    let names: Vec<_> = config.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["one", "two", "bracket"]);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn include_globs_expand_wildcards_in_directories() {
    let files = Files::new();
    let pool = |name: &str| format!("[{name}]\nlisten = /run/rustfpm-test/{name}.sock\npm.max_children = 2\n");
    // The shape of /etc/php/*/fpm/pool.d/*.conf.
    files.write("php/8.2/fpm/pool.d/www.conf", &pool("b"));
    files.write("php/7.4/fpm/pool.d/www.conf", &pool("a"));
    files.write("php/7.4/fpm/pool.d/www.conf.dpkg-old", &pool("old"));
    files.write("php/8.3/cli/php.ini", "not = read\n");
    files.write("php/.git/fpm/pool.d/x.conf", "not = read\n");
    files.write("php/notes", "not a directory\n");
    files.write("other/c.conf", &pool("c"));
    let main = files.write(
        "php-fpm.conf",
        &format!(
            "include = {0}/php/*/fpm/pool.d/*.conf\ninclude = {0}/ot[h]er/c.conf\ninclude = {0}/*/none/*.conf\n",
            files.dir().display()
        ),
    );
    let (config, warnings) = load_ok(&main, None);
    let names: Vec<_> = config.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let [warning] = warnings.as_slice() else { panic!("{warnings:?}") };
    assert!(warning.contains("php-fpm.conf:3:") && warning.contains("no file matches"), "{warning}");
}

#[test]
fn a_long_class_takes_no_exponential_time() {
    let name = [b'a'; 255];
    let pattern = "*[a-z]".repeat(40) + "b";
    assert!(!wildcard(pattern.as_bytes(), &name));
}

#[test]
fn an_include_that_matches_nothing_is_a_warning_and_a_missing_directory_an_error() {
    let files = Files::new();
    std::fs::create_dir(files.dir().join("empty")).unwrap();
    let main =
        files.write("php-fpm.conf", &format!("include = {}/empty/*.conf\n{}", files.dir().display(), pool_with("")));
    let (_, warnings) = load_ok(&main, None);
    let [warning] = warnings.as_slice() else { panic!("{warnings:?}") };
    assert!(warning.contains(&format!("{}:1: include = ", main.display())), "{warning}");
    assert!(warning.contains("no file matches"), "{warning}");
    // glob(3) with GLOB_ERR: a directory written without wildcards must open (php-fpm:
    // "Unable to globalize"); after a wildcard, a missing one matches nothing.
    let main =
        files.write("php-fpm.conf", &format!("include = {}/none/*.conf\n{}", files.dir().display(), pool_with("")));
    let errors = load_errors(&main);
    assert!(errors.iter().any(|e| e.line == Some(1) && e.message.contains("cannot list")), "{errors:?}");
    let main =
        files.write("php-fpm.conf", &format!("include = {}/*/none/*.conf\n{}", files.dir().display(), pool_with("")));
    let (_, warnings) = load_ok(&main, None);
    assert!(warnings.iter().any(|w| w.contains("no file matches")), "{warnings:?}");
}

#[test]
fn includes_nest_at_most_five_files_deep() {
    let files = Files::new();
    let main = files.write("loop.conf", &format!("include = {}/loop.conf\n{}", files.dir().display(), pool_with("")));
    let errors = load_errors(&main);
    assert!(errors.iter().any(|e| e.message.contains("more than 5 files deep")), "{errors:?}");
    assert!(errors.iter().all(|e| e.file == main && e.line.is_some()), "{errors:?}");
}

#[test]
fn a_file_that_includes_itself_is_not_read_again() {
    let files = Files::new();
    let line = format!("include = {}/loop.conf\n", files.dir().display());
    let main = files.write("loop.conf", &format!("{}{}", line.repeat(20), pool_with("")));
    let errors = load_errors(&main);
    // One error per include line; reading the file again at every level made 20^5 (and never ended).
    let refused = errors.iter().filter(|e| e.message.contains("the file includes itself")).count();
    assert_eq!(refused, 20, "{errors:?}");
}

#[test]
fn pool_and_environment_variables_are_substituted() {
    let files = Files::new();
    // The chdir must exist.
    std::fs::create_dir(files.dir().join("one")).unwrap();
    let dir = files.dir().display().to_string();
    std::env::set_var("RUSTFPM_FPM_TEST_DIR", &dir);
    std::env::remove_var("RUSTFPM_FPM_TEST_UNSET");
    let text = "[global]\npid = ${RUSTFPM_FPM_TEST_DIR}/fpm.pid\n\
                [one]\nlisten = /run/rustfpm-test/$pool.sock\npm.max_children = 1\n\
                chdir = \"${RUSTFPM_FPM_TEST_DIR}/$pool\"\n\
                php_value[error_log] = ${RUSTFPM_FPM_TEST_DIR}/$pool.log\n\
                php_value[a] = \"x${RUSTFPM_FPM_TEST_UNSET}y\"\n\
                php_value[b] = ${RUSTFPM_FPM_TEST_UNSET:-fallback}\n\
                php_value[c] = '${RUSTFPM_FPM_TEST_DIR} is kept'\n\
                [two]\nlisten = /run/rustfpm-test/$pool.sock\npm.max_children = 1\n";
    let (config, warnings) = load_text(text);
    assert_eq!(config.global.pid, Some(files.dir().join("fpm.pid")));
    let [one, two] = config.pools.as_slice() else { panic!() };
    assert_eq!(one.listen, ListenAddr::Unix("/run/rustfpm-test/one.sock".into()));
    assert_eq!(two.listen, ListenAddr::Unix("/run/rustfpm-test/two.sock".into()));
    assert_eq!(one.chdir, Some(files.dir().join("one")));
    let log = format!("{dir}/one.log");
    assert_eq!(
        ini(one),
        [("error_log", log.as_str()), ("a", "xy"), ("b", "fallback"), ("c", "${RUSTFPM_FPM_TEST_DIR} is kept")]
    );
    let [warning] = warnings.as_slice() else { panic!("{warnings:?}") };
    assert!(warning.contains(":8: [pool one] php_value[a]: the environment variable RUSTFPM_FPM_TEST_UNSET"));
}

#[test]
fn pool_is_refused_outside_a_pool() {
    let errors = errors_of(&format!("pid = /run/$pool.pid\n{}", pool_with("")));
    let [e] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("pid")));
    assert!(e.message.contains("only be used in a pool section"), "{e}");
}

#[test]
fn php_values_flags_and_env() {
    let pool = only_pool(&pool_with(
        "php_admin_value[memory_limit] = 96M\nphp_value[date.timezone] = \"Europe/Paris\"\n\
         php_flag[display_errors] = off\nphp_admin_flag[log_errors] = on\n\
         env[PATH] = $PATH\nenv[TMP] = /tmp\nenv[HOSTNAME] = $RUSTFPM_FPM_TEST_NEVER_SET",
    ));
    assert_eq!(
        ini(&pool),
        [("date.timezone", "Europe/Paris"), ("display_errors", "0"), ("memory_limit", "96M"), ("log_errors", "1")]
    );
    assert_eq!(pool.admin_ini_keys, ["memory_limit", "log_errors"]);
    let path = std::env::var("PATH").unwrap_or_default();
    let env = [("HOSTNAME".to_string(), String::new()), ("PATH".to_string(), path), ("TMP".into(), "/tmp".into())];
    assert_eq!(pool.env, env);
}

#[test]
fn a_key_set_twice_in_one_list_keeps_the_first_value() {
    let files = Files::new();
    let main = files.write(
        "php-fpm.conf",
        &pool_with("php_value[memory_limit] = 64M\nphp_flag[memory_limit] = on\nphp_admin_value[memory_limit] = 1G"),
    );
    let (config, warnings) = load_ok(&main, None);
    assert_eq!(ini(&config.pools[0]), [("memory_limit", "1G")]);
    let [warning] = warnings.as_slice() else { panic!("{warnings:?}") };
    let first = format!("already set at {}:4", main.display());
    assert!(warning.contains(":5: [pool www] php_flag[memory_limit]") && warning.contains(&first), "{warning}");
}

#[test]
fn booleans_in_every_php_fpm_spelling() {
    let cases =
        [("yes", true), ("On", true), ("TRUE", true), ("1", true), ("\"yes\"", true), ("no", false), ("off", false)];
    let more = [("False", false), ("0", false), ("none", false), ("", false), ("\"\"", false)];
    for (spelling, expected) in cases.into_iter().chain(more) {
        let pool = only_pool(&pool_with(&format!("catch_workers_output = {spelling}")));
        assert_eq!(pool.catch_workers_output, expected, "{spelling}");
    }
    assert_eq!((fpm_bool("maybe"), fpm_bool("2")), (None, None));
}

#[test]
fn every_mapped_pool_directive_is_read() {
    let pool = only_pool(&pool_with(
        "pm = Ondemand\npm.process_idle_timeout = 1m\npm.max_requests = 500\npm.max_spawn_rate = 4\n\
         listen.backlog = -1\nlisten.owner = root\nlisten.group = root\nlisten.mode = 0600\nuser = root\n\
         group = root\nrequest_terminate_timeout = 30s\nrequest_terminate_timeout_track_finished = yes\n\
         rlimit_files = 4096\nrlimit_core = unlimited\nprocess.priority = -5\nprocess.dumpable = yes\n\
         rustfpm.process.sched_policy = Idle\n\
         catch_workers_output = yes\ndecorate_workers_output = no\nclear_env = no\nchroot = /\nchdir = /tmp\n\
         security.limit_extensions = .php .php7",
    ));
    assert_eq!((pool.pm, pool.pm_process_idle_timeout), (PmMode::Ondemand, Duration::from_secs(60)));
    assert_eq!((pool.pm_max_requests, pool.pm_max_spawn_rate), (500, 4));
    assert_eq!((pool.listen_backlog, pool.listen_mode), (MAX_LISTEN_BACKLOG, 0o600));
    assert_eq!((pool.listen_owner.as_deref(), pool.listen_group.as_deref()), (Some("root"), Some("root")));
    assert_eq!((pool.user.as_deref(), pool.group.as_deref()), (Some("root"), Some("root")));
    assert_eq!(pool.request_terminate_timeout, Some(Duration::from_secs(30)));
    assert!(pool.request_terminate_timeout_track_finished);
    assert_eq!(
        (pool.rlimit_files, pool.rlimit_core, pool.process_priority),
        (Some(4096), Some(RlimitCore::Unlimited), Some(-5))
    );
    assert_eq!(pool.process_sched_policy, Some(SchedPolicy::Idle));
    assert!(pool.process_dumpable && pool.catch_workers_output && !pool.decorate_workers_output && !pool.clear_env);
    assert_eq!((pool.chroot, pool.chdir), (Some(PathBuf::from("/")), Some(PathBuf::from("/tmp"))));
    assert_eq!(pool.security_limit_extensions, [".php", ".php7"]);
}

#[test]
fn status_listen_is_read_like_listen() {
    let pool = only_pool(&pool_with("pm.status_path = /status\npm.status_listen = 127.0.0.1:9001"));
    assert_eq!(pool.pm_status_listen.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:9001"));
    let pool = only_pool(&pool_with("ping.path = /ping\npm.status_listen = *:9002"));
    assert_eq!(pool.pm_status_listen, Some(ListenAddr::Port(9002)));
}

#[test]
fn every_mapped_global_directive_is_read() {
    let text = format!(
        "[global]\nlog_level = WARN\nemergency_restart_threshold = 10\nemergency_restart_interval = 1m\n\
         process_control_timeout = 10s\nerror_log = /var/log/fpm.log\npid = /run/fpm.pid\n\
         rustfpm.process.sched_policy = other\n{}",
        pool_with("")
    );
    let (config, warnings) = load_text(&text);
    let g = &config.global;
    assert_eq!(g.log_level, LogLevel::Warning);
    assert_eq!(g.emergency_restart_threshold, 10);
    assert_eq!(g.emergency_restart_interval, Some(Duration::from_secs(60)));
    assert_eq!(g.process_control_timeout, Some(Duration::from_secs(10)));
    assert_eq!(g.error_log, LogTarget::File("/var/log/fpm.log".into()));
    assert_eq!(g.pid, Some(PathBuf::from("/run/fpm.pid")));
    assert_eq!(g.process_sched_policy, Some(SchedPolicy::Other));
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn php_fpm_defaults_where_they_differ() {
    let (config, _) = load_text(&pool_with("pm = dynamic\npm.min_spare_servers = 1\npm.max_spare_servers = 3"));
    assert_eq!(config.global.error_log, LogTarget::File("/var/log/php-fpm.log".into()));
    let pool = &config.pools[0];
    assert_eq!(pool.security_limit_extensions, [".php", ".phar"]);
    // pm.start_servers = 0 is php-fpm's "unset" for a dynamic pool.
    let pool =
        only_pool(&pool_with("pm = dynamic\npm.start_servers = 0\npm.min_spare_servers = 2\npm.max_spare_servers = 4"));
    assert_eq!(pool.pm_start_servers, Some(3));
}

#[test]
fn relative_paths_resolve_against_the_prefix() {
    let files = Files::new();
    let main = files.write(
        "php-fpm.conf",
        "error_log = log/fpm.log\npid = run/fpm.pid\n[a]\nlisten = a.sock\npm.max_children = 1\nchdir = www\n\
         php_admin_value[error_log] = log/a.log\nphp_value[sendmail_path] = /usr/sbin/sendmail -t\n\
         [b]\nprefix = pool-b\nlisten = b.sock\npm.max_children = 1\n[c]\nlisten = *:9000\npm.max_children = 1\n",
    );
    std::fs::create_dir(files.dir().join("pool-b")).unwrap();
    std::fs::create_dir(files.dir().join("www")).unwrap();
    let (config, _) = load_ok(&main, Some(files.dir()));
    let under = |path: &str| files.dir().join(path);
    assert_eq!(config.global.error_log, LogTarget::File(under("log/fpm.log")));
    assert_eq!(config.global.pid, Some(under("run/fpm.pid")));
    let [a, b, c] = config.pools.as_slice() else { panic!() };
    assert_eq!(a.listen, ListenAddr::Unix(under("a.sock")));
    assert_eq!(a.chdir, Some(under("www")));
    let log = under("log/a.log");
    // php_value first, then php_admin_value.
    assert_eq!(ini(a), [("sendmail_path", "/usr/sbin/sendmail -t"), ("error_log", log.to_str().unwrap())]);
    assert_eq!(b.listen, ListenAddr::Unix(under("pool-b/b.sock")));
    assert_eq!(c.listen, ListenAddr::Port(9000));
    // Without a prefix: php-fpm's compiled-in ones.
    let (config, _) = load_text("error_log = fpm.log\n[a]\nlisten = a.sock\npm.max_children = 1\n");
    assert_eq!(config.global.error_log, LogTarget::File("/var/fpm.log".into()));
    assert_eq!(config.pools[0].listen, ListenAddr::Unix("/usr/a.sock".into()));
}

#[test]
fn rlimit_core_zero_is_unset_as_in_php_fpm() {
    // php-fpm's children keep the limit they inherit (fpm_unix_init_child skips a 0).
    assert_eq!(only_pool(&pool_with("rlimit_core = 0")).rlimit_core, None);
    assert_eq!(only_pool(&pool_with("rlimit_core = 1024")).rlimit_core, Some(RlimitCore::Limited(1024)));
    // The TOML format keeps its own meaning: no core files.
    let toml = "[pool.www]\nlisten = \"/run/www.sock\"\npm_max_children = 1\nrlimit_core = 0\n";
    let config = parse(toml, Path::new("/etc/rustfpm/rustfpm.toml")).unwrap();
    assert_eq!(config.pools[0].rlimit_core, Some(RlimitCore::Limited(0)));
}

#[test]
fn negative_timeouts_read_as_php_fpm_reads_them() {
    let text = format!("[global]\nprocess_control_timeout = -5\n{}", pool_with("request_terminate_timeout = -1s"));
    let (config, warnings) = load_text(&text);
    assert_eq!(config.global.process_control_timeout, None);
    assert_eq!(config.pools[0].request_terminate_timeout, None);
    let [control, terminate] = warnings.as_slice() else { panic!("{warnings:?}") };
    assert!(control.contains(":2: process_control_timeout = \"-5\": php-fpm reads a negative"), "{control}");
    assert!(terminate.contains(":6: [pool www] request_terminate_timeout = \"-1s\": a negative"), "{terminate}");
    // Not a time at all is still an error.
    assert!(!errors_of(&pool_with("request_terminate_timeout = -x")).is_empty());
}

#[test]
fn sections_of_one_name_make_one_pool() {
    let (config, _) = load_text(&format!("{}[global]\nlog_level = debug\n[WWW]\npm.max_children = 7\n", pool_with("")));
    let [pool] = config.pools.as_slice() else { panic!("{:?}", config.pools) };
    assert_eq!((pool.name.as_str(), pool.pm_max_children), ("www", 7));
    assert_eq!(config.global.log_level, LogLevel::Debug);
}

#[test]
fn values_as_zend_reads_them() {
    let env = |name: &str| (name == "HOME").then(|| "/home/x".to_string());
    let text = |raw: &str| parse_value(raw, &env).map(|p| p.text);
    assert_eq!(text("  plain value  ; comment"), Ok("plain value".into()));
    assert_eq!(text("\"quoted ; not a comment\" ; comment"), Ok("quoted ; not a comment".into()));
    assert_eq!(text(r#""%R \"%m %r\" %s""#), Ok("%R \"%m %r\" %s".into()));
    assert_eq!(text("'${HOME} raw'"), Ok("${HOME} raw".into()));
    assert_eq!(text("${HOME}/x"), Ok("/home/x/x".into()));
    assert_eq!(text("\"${HOME}\""), Ok("/home/x".into()));
    assert_eq!(text(r#""\${HOME} costs \$5""#), Ok("${HOME} costs $5".into()));
    assert_eq!(text("Yes"), Ok("1".into()));
    assert_eq!(text("\"yes\""), Ok("yes".into()));
    assert_eq!(text("off"), Ok("".into()));
    assert_eq!(text("#not-a-comment"), Ok("#not-a-comment".into()));
    assert_eq!(parse_value("${NOPE}", &env), Ok(Parsed { text: String::new(), unset: vec!["NOPE".into()] }));
    for bad in ["\"open", "'open", "${OPEN"] {
        assert!(parse_value(bad, &env).is_err(), "{bad}");
    }
}

#[test]
fn wildcards_match_as_glob_does() {
    let cases = [
        ("*.conf", "www.conf", true),
        ("*.conf", "www.conf.bak", false),
        ("*.conf", ".hidden.conf", false),
        (".*.conf", ".hidden.conf", true),
        ("w?w.conf", "www.conf", true),
        ("*", "anything", true),
        ("a*b*c", "aXXbYYc", true),
        ("a*b*c", "aXXbYY", false),
        ("*b", "abab", true),
        ("a*", "", false),
        ("**", "", true),
        ("?", "", false),
        ("*a?", "xab", true),
        // glob(3)'s classes: ranges, negation (`!`, and `^` as glibc), `]` first, names.
        ("[0-9]*.conf", "1.conf", true),
        ("[0-9]*.conf", "a.conf", false),
        ("[abc].conf", "b.conf", true),
        ("[a-cx-z].conf", "y.conf", true),
        ("[!0-9]*", "a1", true),
        ("[!0-9]*", "1a", false),
        ("[^0-9]*", "a1", true),
        ("[]]x", "]x", true),
        ("[!]]x", "]x", false),
        ("[a-]", "-", true),
        ("[[:digit:]][[:alpha:]]", "1a", true),
        ("[[:digit:]]", "a", false),
        ("[[:nonsense:]]", "a", false),
        ("[\\\\]b", "\\b", true),
        ("[\\]b", "[]b", true),
        // An unclosed `[` is itself; `\` escapes.
        ("[a.conf", "[a.conf", true),
        ("x[", "x[", true),
        ("\\*", "*", true),
        ("\\*", "a", false),
        // A leading `.` is matched only by a `.`.
        ("[.]conf", ".conf", false),
        ("?conf", ".conf", false),
        ("\\.conf", ".conf", true),
        ("*.conf", "a.conf", true),
        ("*[0-9]", "abc1", true),
        ("*[0-9]a", "1a2a", true),
    ];
    for (pattern, name, expected) in cases {
        assert_eq!(wildcard(pattern.as_bytes(), name.as_bytes()), expected, "{pattern} {name}");
    }
}

#[test]
fn wildcards_take_no_exponential_time() {
    // Every split tried at every `*` would take longer than the universe has.
    let name = [b'a'; 255];
    assert!(!wildcard(b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", &name));
    assert!(wildcard(b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*", &name));
}

// ---- what is warned about, refused, or an error ----

#[test]
fn unsupported_directives_are_warnings_that_name_them() {
    let text = "[global]\nlog_buffering = no\nevents.mechanism = epoll\nlog_limit = 4096\nerror_log = syslog\n\
                syslog.ident = php-fpm\nrlimit_files = 1024\n\
                [www]\nlisten = /run/rustfpm-test/www.sock\npm.max_children = 4\npm.status_path = /status\n\
                ping.path = /ping\nping.response = pong\naccess.log = /var/log/$pool.access.log\n\
                access.format = \"%R %u\"\nslowlog = /var/log/slow.log\nrequest_slowlog_timeout = 5s\n\
                listen.setfib = 1\naccess.suppress_path[] = /ping\nrequest_slowlog_trace_depth = 20\n";
    let (config, warnings) = load_text(text);
    assert_eq!(config.global.rlimit_files, Some(1024), "the global rlimit_files is rustfpm's own");
    let expected = [
        (2, "log_buffering", "whole lines"),
        (3, "events.mechanism", "not supported yet"),
        (18, "listen.setfib", "not supported yet"),
        (20, "request_slowlog_trace_depth", "cannot read a PHP backtrace"),
    ];
    assert_eq!(warnings.len(), expected.len(), "{warnings:#?}");
    for (warning, (line, key, message)) in warnings.iter().zip(expected) {
        assert!(warning.contains(&format!(":{line}: ")) && warning.contains(key), "{key}: {warning}");
        assert!(warning.contains(message), "{warning}");
    }
    assert!(warnings[2].contains("[pool www] listen.setfib = \"1\""), "{}", warnings[2]);
    assert_eq!(config.pools[0].access_log.as_deref(), Some(std::path::Path::new("/var/log/www.access.log")));
    assert_eq!(config.global.error_log, LogTarget::Syslog);
    assert_eq!(config.pools[0].access_suppress_path, ["/ping"]);
}

#[test]
fn directives_set_to_off_need_no_warning() {
    let text = format!(
        "daemonize = no\nprocess.max = 0\n{}",
        pool_with("request_slowlog_timeout = 0\nslowlog =\naccess.log = \"\"\npm.status_path =")
    );
    let (_, warnings) = load_text(&text);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn unknown_directives_are_errors() {
    let files = Files::new();
    let main = files.write(
        "php-fpm.conf",
        "[global]\nbogus = 1\nuser = root\n[www]\nlisten = /run/rustfpm-test/www.sock\npm.max_children = 4\n\
         pm.max_childs = 5\npm_max_requests = 5\npid = /run/x.pid\nphp_values[x] = 1\nenv[] = x\n",
    );
    let errors = load_errors(&main);
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref(), e.pool.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(2), Some("bogus"), None),
            (Some(3), Some("user"), None),
            (Some(7), Some("pm.max_childs"), Some("www")),
            (Some(8), Some("pm_max_requests"), Some("www")),
            (Some(9), Some("pid"), Some("www")),
            (Some(10), Some("php_values[x]"), Some("www")),
            (Some(11), Some("env[]"), Some("www")),
        ]
    );
    assert!(errors.iter().all(|e| e.file == main));
    assert!(errors[0].to_string().starts_with(&format!("{}:2: bogus = \"1\": unknown", main.display())));
    assert!(errors[1].message.contains("belongs in a pool section"), "{}", errors[1]);
    assert!(errors[3].message.contains("did you mean `pm.max_requests`"), "{}", errors[3]);
    assert!(errors[4].message.contains("belongs in the [global] section"), "{}", errors[4]);
    assert!(errors[6].message.contains("needs a key"), "{}", errors[6]);
}

#[test]
fn several_errors_are_all_reported_with_file_and_line() {
    let files = Files::new();
    let pool = files.write(
        "pool.d/www.conf",
        "[www]\nlisten = 127.0.0.1:0\npm.max_children = many\npm = dynamic\nbogus.directive = 1\n\
         catch_workers_output = perhaps\nrequest_terminate_timeout = 30x\n",
    );
    let main = files.write(
        "php-fpm.conf",
        &format!("[global]\nlog_level = loud\ninclude = {}/pool.d/*.conf\nbad line\n", files.dir().display()),
    );
    let errors = load_errors(&main);
    let found: Vec<_> = errors.iter().map(|e| (e.file.as_path(), e.line, e.key.as_deref())).collect();
    assert_eq!(
        found,
        [
            (main.as_path(), Some(2), Some("log_level")),
            (pool.as_path(), Some(2), Some("listen")),
            (pool.as_path(), Some(3), Some("pm.max_children")),
            (pool.as_path(), Some(4), Some("pm.min_spare_servers")),
            (pool.as_path(), Some(4), Some("pm.max_spare_servers")),
            (pool.as_path(), Some(5), Some("bogus.directive")),
            (pool.as_path(), Some(6), Some("catch_workers_output")),
            (pool.as_path(), Some(7), Some("request_terminate_timeout")),
            (main.as_path(), Some(4), None),
        ]
    );
    let shown = ConfigErrors(errors).to_string();
    for line in [
        format!("{}:3: [pool www] pm.max_children = \"many\": must be a whole number", pool.display()),
        format!("{}:4: [pool www] pm.min_spare_servers: is required when pm = dynamic", pool.display()),
        format!("{}:6: [pool www] catch_workers_output = \"perhaps\": must be a boolean", pool.display()),
        // An include leaves the reader in the included file's last section, as in php-fpm.
        format!("{}:4: [pool www] expected `name = value`", main.display()),
    ] {
        assert!(shown.contains(&line), "{line}\nnot in\n{shown}");
    }
}

#[test]
fn validation_messages_use_php_fpm_names() {
    let errors = errors_of(&pool_with("pm = dynamic\npm.min_spare_servers = 1\npm.max_spare_servers = 6"));
    let [e] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!((e.line, e.key.as_deref()), (Some(6), Some("pm.max_spare_servers")));
    assert_eq!(e.message, "cannot be greater than pm.max_children (4)");
    let errors = errors_of("[global]\nlog_level = debug\n");
    assert!(errors[0].message.contains("add a [NAME] section"), "{}", errors[0]);
}

#[test]
fn allowed_clients_are_read_for_tcp_listeners() {
    let tcp = |listen: &str, clients: &str| {
        format!("[www]\nlisten = {listen}\npm.max_children = 1\nlisten.allowed_clients = {clients}\n")
    };
    let pool = only_pool(&tcp("[::]:9000", "127.0.0.1, ::1"));
    let expected: Vec<std::net::IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    assert_eq!(pool.listen_allowed_clients, expected);
    let errors = errors_of(&tcp("0.0.0.0:9000", "xxx"));
    let [e] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("listen.allowed_clients")));
    assert!(e.message.contains("Wrong IP address 'xxx' in listen.allowed_clients"), "{e}");
    // php-fpm itself ignores the list on a Unix socket.
    let (config, warnings) = load_text(&tcp("/run/rustfpm-test/www.sock", "10.0.0.1"));
    assert!(warnings.is_empty() && config.pools[0].listen_allowed_clients.is_empty(), "{warnings:?}");
}

#[test]
fn apparmor_hat_is_refused() {
    let errors = errors_of(&pool_with("apparmor_hat = www"));
    let [e] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("apparmor_hat")));
    assert!(e.message.contains("would be unsafe"), "{e}");
}

#[test]
fn syntax_errors_are_reported() {
    let errors = errors_of(
        "[www\nlisten = /a\n[www]\nlisten = /run/x.sock\npm.max_children = 1\nphp_value[x] = \"open\n\
         pm[x] = 1\n= 2\nphp_value[x = 1\n",
    );
    let found: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(1), None),
            (Some(6), Some("php_value[x]")),
            (Some(7), Some("pm[x]")),
            (Some(8), None),
            (Some(9), Some("php_value[x"))
        ]
    );
    assert!(errors[0].message.contains("closing `]`"), "{}", errors[0]);
    assert!(errors[1].message.contains("closing \""), "{}", errors[1]);
}

#[test]
fn an_unreadable_file_is_one_error() {
    let path = Path::new("/no/such/dir/php-fpm.conf");
    let ConfigErrors(errors) = load_fpm(path, None).unwrap_err();
    let [e] = errors.as_slice() else { panic!("{errors:?}") };
    assert!(e.to_string().starts_with("/no/such/dir/php-fpm.conf: cannot read"), "{e}");
}

// ---- to_toml ----

#[test]
fn a_rich_config_round_trips_through_toml() {
    let (config, _) = load_text(
        "[global]\nlog_level = debug\npid = /run/fpm.pid\nemergency_restart_threshold = 3\n\
         emergency_restart_interval = 90s\nprocess_control_timeout = 1h\n\
         [www]\nlisten = 127.0.0.1:9000\npm = dynamic\npm.max_children = 8\npm.min_spare_servers = 2\n\
         pm.max_spare_servers = 4\nlisten.backlog = 128\nuser = root\nrlimit_core = 0\nchdir = /tmp\n\
         request_terminate_timeout = 1d\nsecurity.limit_extensions =\n\
         php_value[date.timezone] = \"UTC\"\nphp_value[memory_limit] = 32M\nphp_admin_value[memory_limit] = 64M\n\
         php_admin_flag[log_errors] = on\nphp_flag[display_errors] = off\nenv[QUOTE] = \"a \\\"b\\\" \\\\ c\"\n\
         [\"other.pool\"]\nlisten = [::1]:9001\npm = ondemand\npm.max_children = 2\npm.process_idle_timeout = 2m\n",
    );
    assert_eq!(config.pools[1].name, "other.pool");
    assert_eq!(config.pools[0].env, [("QUOTE".to_string(), "a \"b\" \\ c".to_string())]);
    assert!(config.pools[0].security_limit_extensions.is_empty());
    assert_round_trip(&config);
    let text = to_toml(&config);
    assert!(text.contains("[pool.\"other.pool\"]\n") && text.contains("\"date.timezone\" = \"UTC\""), "{text}");
    assert!(text.contains("process_control_timeout = \"1h\"") && text.contains("listen_mode = \"0660\""), "{text}");
}

#[test]
fn the_example_toml_round_trips() {
    let config = parse(EXAMPLE, Path::new("/etc/rustfpm/rustfpm.toml")).unwrap();
    assert_round_trip(&config);
}

// ---- the directive table ----

#[test]
fn every_directive_maps_to_a_known_key() {
    for (table, keys) in [(GLOBAL, RawGlobal::KEYS), (POOL, RawPoolKeys::KEYS)] {
        for (directive, action) in table {
            if let Action::Set(key, _) = action {
                assert!(keys.contains(key), "{directive} -> {key}");
            }
        }
    }
    for (array, _) in ARRAYS {
        assert!(RawPoolKeys::TABLE_KEYS.contains(array), "{array}");
    }
}

/// Every rustfpm key is filled from php-fpm, but for rustfpm's own extensions.
#[test]
fn every_key_has_a_php_fpm_directive() {
    const EXTENSIONS: &[&str] = &[
        "graceful_stop_on_term",
        "metrics_listen",
        "syslog_socket",
        "pm_max_memory",
        "pm_max_lifetime",
        "php_cgi",
        "php_ini",
        "queue_max_len",
        "queue_max_wait",
        "fastcgi_finish_request",
        "request_read_timeout",
        "listen_idle_timeout",
        "listen_max_connections",
    ];
    let own =
        [("pid", "pid"), ("error_log", "error_log"), ("listen", "listen"), ("chroot", "chroot"), ("chdir", "chdir")];
    let own = [
        own.as_slice(),
        &[
            ("pm_status_listen", "pm.status_listen"),
            ("access_suppress_path", "access.suppress_path[]"),
            ("listen_allowed_clients", "listen.allowed_clients"),
        ],
    ]
    .concat();
    let mapped = |key: &str| {
        GLOBAL
            .iter()
            .chain(POOL)
            .any(|(_, action)| matches!(action, Action::Set(k, _) | Action::LogPath(k) if *k == key))
            || own.iter().any(|(k, _)| *k == key)
            || ARRAYS.iter().any(|(array, _)| *array == key)
    };
    let keys = RawGlobal::KEYS.iter().chain(RawPoolKeys::KEYS);
    let missing: Vec<_> = keys.filter(|key| !mapped(key) && !EXTENSIONS.contains(key)).collect();
    assert!(missing.is_empty(), "no php-fpm directive fills {missing:?}");
}

#[test]
fn a_missing_chdir_is_an_error_naming_file_line_and_pool() {
    let files = Files::new();
    let root = files.dir().join("root");
    std::fs::create_dir(&root).unwrap();
    let main = files.write(
        "php-fpm.conf",
        &format!(
            "{}[jail]\nlisten = /run/j.sock\npm.max_children = 1\nchroot = {}\nchdir = /www\n",
            pool_with("chdir = /no/such/dir"),
            root.display()
        ),
    );
    let errors = load_errors(&main);
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let [missing, jailed] = shown.as_slice() else { panic!("{shown:?}") };
    let at = |line: usize| format!("{}:{line}: ", main.display());
    assert!(missing.starts_with(&at(4)) && missing.contains("[pool www] chdir = "), "{missing}");
    assert!(missing.contains("/no/such/dir") && missing.ends_with("no such directory"), "{missing}");
    assert!(jailed.starts_with(&at(9)) && jailed.contains("[pool jail] chdir = "), "{jailed}");
    let inside = format!("inside the chroot {} ({})", root.display(), root.join("www").display());
    assert!(jailed.ends_with(&format!("no such directory {inside}")), "{jailed}");
}

#[test]
fn log_directives_resolve_against_the_prefix() {
    let files = Files::new();
    let main = files.write(
        "php-fpm.conf",
        "[www]\nlisten = www.sock\npm.max_children = 1\naccess.log = log/$pool.access.log\n\
         access.format = \"%R - %u %t \\\"%m %r%Q%q\\\" %s %f %{milli}d %{kilo}M %{user}C%%\"\n\
         slowlog = /var/log/$pool.slow\n\
         request_slowlog_timeout = 3s\n",
    );
    let (config, warnings) = load_ok(&main, Some(files.dir()));
    assert!(warnings.is_empty(), "{warnings:?}");
    let pool = &config.pools[0];
    assert_eq!(pool.access_log, Some(files.dir().join("log/www.access.log")));
    // Debian's example format, as www.conf has it.
    assert_eq!(pool.access_format.text(), "%R - %u %t \"%m %r%Q%q\" %s %f %{milli}d %{kilo}M %{user}C%%");
    assert_eq!(pool.slowlog, Some(PathBuf::from("/var/log/www.slow")));
    assert_eq!(pool.request_slowlog_timeout, Some(Duration::from_secs(3)));
    assert_round_trip(&config);
}

#[test]
fn log_errors_in_php_fpm_terms() {
    let errors = errors_of(&pool_with("access.format = \"%Z\"\nrequest_slowlog_timeout = 10"));
    let keys: Vec<_> = errors.iter().map(|e| e.key.as_deref()).collect();
    assert_eq!(keys, [Some("access.format"), Some("request_slowlog_timeout")], "{errors:?}");
    assert!(errors[0].message.contains("unknown placeholder '%Z'"), "{}", errors[0].message);
    assert!(errors[1].message.contains("needs `slowlog`"), "{}", errors[1].message);
}

#[test]
fn bytes_that_are_not_utf8_are_warned_about() {
    let files = Files::new();
    let bytes: Vec<u8> =
        pool_with("ping.response = po@ng").into_bytes().into_iter().map(|b| if b == b'@' { 0xff } else { b }).collect();
    let path = files.write("php-fpm.conf", "");
    std::fs::write(&path, bytes).unwrap();
    let (config, warnings) = load_ok(&path, None);
    assert_eq!(config.pools[0].ping_response, "po\u{fffd}ng");
    assert!(warnings.iter().any(|w| w.contains("php-fpm.conf:4: not UTF-8")), "{warnings:?}");
}

#[test]
fn listen_backlog_defaults_to_php_fpms_kernel_maximum() {
    let pool = only_pool(&pool_with(""));
    assert_eq!((pool.listen_backlog, pool.queue_max_len), (MAX_LISTEN_BACKLOG, MAX_LISTEN_BACKLOG as usize));
    let dump = crate::config::fpm_dump(&load_text(&pool_with("")).0);
    assert!(dump.iter().any(|line| line.ends_with("listen.backlog = -1")), "{dump:#?}");
    assert_eq!(only_pool(&pool_with("listen.backlog = 511")).listen_backlog, 511);
    // php-fpm passes 0 to listen(2); so does rustfpm, with a warning.
    let (config, warnings) = load_text(&pool_with("listen.backlog = 0"));
    assert_eq!((config.pools[0].listen_backlog, config.pools[0].queue_max_len), (0, 1));
    let [warning] = warnings.as_slice() else { panic!("{warnings:?}") };
    assert!(warning.contains(":4: [pool www] listen.backlog = \"0\": passed to listen(2)"), "{warning}");
}

#[test]
fn the_dump_shows_rustfpms_extensions_under_their_ini_names() {
    let globals = "[global]\nrustfpm.front_end_threads = 3\nrustfpm.process.sched_policy = other\n";
    let text = format!("{globals}{}", pool_with("rustfpm.process.sched_policy = idle"));
    let dump = crate::config::fpm_dump(&load_text(&text).0);
    let pool = dump.iter().position(|line| line.starts_with("[www")).unwrap_or(dump.len());
    let (global, pool) = dump.split_at(pool);
    for (section, want) in [
        (global, "\trustfpm.front_end_threads = 3"),
        (global, "\trustfpm.process.sched_policy = other"),
        (pool, "\trustfpm.process.sched_policy = idle"),
    ] {
        assert!(section.iter().any(|line| line == want), "{want:?} not in {section:#?}");
    }
    let unset = crate::config::fpm_dump(&load_text(&pool_with("")).0);
    let undefined = unset.iter().filter(|line| *line == "\trustfpm.process.sched_policy = undefined").count();
    assert_eq!(undefined, 2, "{unset:#?}");
}
