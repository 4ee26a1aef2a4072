//! rustfpm behaves as php-fpm where scripts, operators and php-fpm's own test-suite look:
//! PHP's flags (`-n`, `-v`, `-m`, `-i`, `-dKEY=VALUE`), the `-tt` dump and configuration
//! errors in php-fpm's words, ping's headers, worker output logged line for line, reload and
//! reopen notices, and what a script sees of rustfpm (no marker in `$_SERVER`).

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// rustfpm on a php-fpm INI config (`-y`) with `args` before it, logging to `log` (also
/// its stderr, `-O`); waits until it is ready.
fn start_fpm(site: &Site, ini: &str, args: &[&str]) -> Rustfpm {
    let config = site.path().join("php-fpm.conf");
    std::fs::write(&config, ini).unwrap();
    let args = [args, &["-y", config.to_str().unwrap(), "-F", "-O", "-R"]].concat();
    Rustfpm::start_args(site, &args, &config, &site.path().join("fpm.sock"))
}

/// A pool on `site`'s socket with `extra` lines; `global` lines in `[global]`.
fn ini(site: &Site, global: &str, extra: &str) -> String {
    let user = ini_user_line();
    format!(
        "[global]\nerror_log = {}\n{global}\n[www]\nlisten = {}\n{user}pm = static\npm.max_children = 2\n{extra}\n",
        site.path().join("error.log").display(),
        site.path().join("fpm.sock").display()
    )
}

fn rustfpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rustfpm")).args(args).stdin(Stdio::null()).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn version_is_phps_banner_with_php_fpms_sapi() {
    let out = rustfpm(&["-n", "-v"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("PHP 8") && lines[0].contains("(fpm-fcgi) (built: "), "{stdout}");
    assert_eq!(lines[1], "Copyright (c) The PHP Group");
    assert!(lines[2].starts_with("Zend Engine v"), "{stdout}");
    // An attached -d value is PHP's own spelling.
    let out = rustfpm(&["-dmemory_limit=1G", "-v"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("PHP "), "{}", text(&out));
}

#[test]
fn modules_and_info_are_phps_own() {
    let out = rustfpm(&["-n", "-m"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.starts_with("[PHP Modules]") && stdout.contains("Core"), "{stdout}");
    // -n: no php.ini, so no extension loaded from one; -d still loads one.
    let with = String::from_utf8_lossy(&rustfpm(&["-n", "-d", "extension=posix", "-m"]).stdout).into_owned();
    assert!(with.lines().any(|l| l == "posix"), "{with}");
    let out = rustfpm(&["-n", "-i"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("PHP Version"), "{}", text(&out));
}

#[test]
fn an_unknown_option_prints_usage_first_and_exits_64() {
    let out = rustfpm(&["--memory-limit=1G"]);
    assert_eq!(out.status.code(), Some(64));
    let all = text(&out);
    assert!(all.starts_with("Usage: "), "{all}");
    assert!(all.contains("--memory-limit=1G"), "the option is named: {all}");
}

#[test]
fn dump_shows_settings_as_php_fpm_does() {
    let site = Site::new();
    let config = site.path().join("php-fpm.conf");
    let extra = "pm.max_spawn_rate = 64\naccess.suppress_path[] = /ping\nphp_value[error_reporting] = E_ALL\n\
                 php_flag[display_errors] = On\nphp_admin_flag[log_errors] = 1\n";
    std::fs::write(&config, ini(&site, "", extra)).unwrap();
    let out = rustfpm(&["-tt", "-y", config.to_str().unwrap()]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    for line in [
        "NOTICE: \tpm.max_spawn_rate = 64",
        "NOTICE: \taccess.suppress_path[] = /ping",
        "NOTICE: \tphp_value[error_reporting] = 32767",
        "NOTICE: \tphp_value[display_errors] = 1",
        "NOTICE: \tphp_admin_value[log_errors] = 1",
    ] {
        assert!(all.lines().any(|l| l.starts_with('[') && l.ends_with(line)), "no '{line}' in:\n{all}");
    }
    assert!(all.contains("NOTICE: configuration file"), "{all}");
}

/// `-tt -y` on `extra` in the pool: the lines php-fpm's users see.
fn config_errors(extra: &str, global: &str) -> (Option<i32>, String) {
    let site = Site::new();
    let config = site.path().join("php-fpm.conf");
    std::fs::write(&config, ini(&site, global, extra)).unwrap();
    let out = rustfpm(&["-tt", "-y", config.to_str().unwrap()]);
    (out.status.code(), text(&out))
}

#[test]
fn config_errors_are_worded_as_php_fpms() {
    let cases = [
        ("php_value[] = E_ALL", "", "] You must provide a key for field 'php_value'"),
        ("access.suppress_path[ping] = /ping", "", "] Keys provided to field 'access.suppress_path' are ignored"),
        ("access.suppress_path[] = ping", "", "] Values provided to field 'access.suppress_path' must begin with '/'"),
        ("user = no-such-user-xyz", "", "ERROR: [pool www] cannot get uid for user 'no-such-user-xyz'"),
        ("group = no-such-group-xyz", "", "ERROR: [pool www] cannot get gid for group 'no-such-group-xyz'"),
        ("listen.owner = no-such-user-xyz", "", "ERROR: [pool www] cannot get uid for user 'no-such-user-xyz': "),
        ("", "log_limit = 64", "ERROR: log_limit must be greater than 512"),
    ];
    for (extra, global, expected) in cases {
        let (code, all) = config_errors(extra, global);
        assert_ne!(code, Some(0), "{extra}{global}: {all}");
        assert!(all.contains(expected), "{extra}{global}: no '{expected}' in:\n{all}");
        let last = all.lines().last().unwrap_or_default();
        assert!(last.starts_with('[') && last.ends_with("ERROR: FPM initialization failed"), "{all}");
    }
    let site = Site::new();
    let config = site.path().join("port.conf");
    std::fs::write(&config, "[global]\n[www]\nlisten = 127.0.0.1:69002\npm = static\npm.max_children = 1\n").unwrap();
    let all = text(&rustfpm(&["-t", "-y", config.to_str().unwrap()]));
    assert!(all.lines().any(|l| l.ends_with("ERROR: invalid port value '69002'")), "{all}");
}

#[test]
fn ping_carries_php_fpms_headers() {
    let site = Site::new();
    let fpm = start_fpm(&site, &ini(&site, "", "ping.path = /ping\n"), &["-n"]);
    let nginx = Nginx::start(&site, &fpm);
    let r = get(&nginx.url("/ping"));
    assert_eq!(r.text(), "pong");
    assert_eq!(r.header("Content-type"), Some("text/plain;charset=UTF-8"));
    assert!(r.header("X-Powered-By").is_some_and(|v| v.starts_with("PHP/8")), "{:?}", r.headers);
    drop(nginx);
    drop(fpm);
    // expose_php off in the pool: no X-Powered-By, as from a php-fpm worker.
    let site = Site::new();
    let fpm = start_fpm(&site, &ini(&site, "", "ping.path = /ping\nphp_admin_flag[expose_php] = off\n"), &["-n"]);
    let nginx = Nginx::start(&site, &fpm);
    let r = get(&nginx.url("/ping"));
    assert_eq!(r.text(), "pong");
    assert_eq!(r.header("X-Powered-By"), None, "{:?}", r.headers);
}

#[test]
fn no_php_ini_reaches_the_children_and_the_pool_wins_over_d() {
    let site = Site::new();
    site.script(
        "ini.php",
        "<?php echo var_export(php_ini_loaded_file(), true), ' ', ini_get('memory_limit'), ' ', ini_get('max_input_vars');",
    );
    let extra = "php_value[memory_limit] = 55M\n";
    let fpm = start_fpm(&site, &ini(&site, "", extra), &["-n", "-d", "memory_limit=77M", "-dmax_input_vars=123"]);
    let nginx = Nginx::start(&site, &fpm);
    assert_eq!(get(&nginx.url("/ini.php")).text(), "false 55M 123");
}

/// A pool catching its children's output with `log_limit` 1050 (php-fpm's test-suite's).
fn catching(site: &Site, decorate: bool) -> (Rustfpm, Nginx) {
    let extra =
        format!("catch_workers_output = yes\ndecorate_workers_output = {}\n", if decorate { "yes" } else { "no" });
    let fpm = start_fpm(site, &ini(site, "log_limit = 1050", &extra), &["-n"]);
    let nginx = Nginx::start(site, &fpm);
    (fpm, nginx)
}

/// The lines of the error log that `pred` picks, once there are `n` of them.
fn log_lines(path: &Path, n: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until(WAIT, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        lines = text.lines().filter(|l| pred(l)).map(str::to_string).collect();
        lines.len() >= n
    });
    lines
}

#[test]
fn worker_output_is_wrapped_at_log_limit_as_php_fpm_does() {
    let site = Site::new();
    site.script("long.php", "<?php file_put_contents('php://stderr', str_repeat('a', 2048) . \"\\n\"); echo 'ok';");
    let (_fpm, nginx) = catching(&site, true);
    assert_eq!(get(&nginx.url("/long.php")).text(), "ok");
    let lines = log_lines(&site.path().join("error.log"), 3, |l| l.contains("said into stderr"));
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let head = regex_free_head(&lines[0]);
    assert!(head.starts_with("WARNING: [pool www] child ") && head.ends_with(" said into stderr: \""), "{head}");
    // Every piece but the last fills the limit exactly, newline included.
    assert_eq!(lines[0].len() + 1, 1050);
    assert_eq!(lines[1].len() + 1, 1050);
    let quoted: usize = lines.iter().map(|l| l.split_once(": \"").unwrap().1.trim_end_matches('"').len()).sum();
    assert_eq!(quoted, 2048);
}

/// A decorated line from its level on, up to and including the opening quote.
fn regex_free_head(line: &str) -> String {
    let from = line.find("] ").map_or(0, |i| i + 2);
    let to = line.find(": \"").map_or(line.len(), |i| i + 3);
    line[from..to].to_string()
}

#[test]
fn partial_lines_are_flushed_per_request_and_streams_kept_apart() {
    let site = Site::new();
    site.script(
        "parts.php",
        "<?php file_put_contents('php://stderr', 'msg 1 - '); file_put_contents('php://stdout', 'out 1');\n\
         file_put_contents('php://stderr', 'msg 2'); echo 'ok';",
    );
    let (_fpm, nginx) = catching(&site, true);
    for _ in 0..2 {
        assert_eq!(get(&nginx.url("/parts.php")).text(), "ok");
    }
    let log = site.path().join("error.log");
    let errs = log_lines(&log, 2, |l| l.contains("said into stderr: \"msg 1 - msg 2\""));
    assert_eq!(errs.len(), 2, "one line per request:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    let outs = log_lines(&log, 2, |l| l.contains("said into stdout: \"out 1\""));
    assert_eq!(outs.len(), 2, "{}", std::fs::read_to_string(&log).unwrap_or_default());
}

#[test]
fn php_messages_are_copied_as_the_children_of_php_fpm_write_them() {
    let site = Site::new();
    site.script("msg.php", "<?php error_log(str_repeat('e', 80)); echo 'ok';");
    let (_fpm, nginx) = catching(&site, true);
    assert_eq!(get(&nginx.url("/msg.php")).text(), "ok");
    let expected = format!("said into stderr: \"NOTICE: PHP message: {}\"", "e".repeat(80));
    let lines = log_lines(&site.path().join("error.log"), 1, |l| l.ends_with(&expected));
    assert_eq!(lines.len(), 1, "{}", std::fs::read_to_string(site.path().join("error.log")).unwrap_or_default());
}

#[test]
fn undecorated_output_is_logged_raw_and_the_flush_marker_ends_a_line() {
    let site = Site::new();
    site.script(
        "raw.php",
        "<?php file_put_contents('php://stderr', \"first\\0fscf\\0second\\nx\\0fy\\n\"); echo 'ok';",
    );
    let (_fpm, nginx) = catching(&site, false);
    assert_eq!(get(&nginx.url("/raw.php")).text(), "ok");
    let log = site.path().join("error.log");
    let lines = log_lines(&log, 3, |l| ["first", "second", "x\0fy"].contains(&l));
    assert_eq!(lines, ["first", "second", "x\0fy"], "{}", std::fs::read_to_string(&log).unwrap_or_default());
}

#[test]
fn scripts_see_no_marker_of_rustfpm() {
    let stack = Stack::start();
    stack.site.script(
        "env.php",
        "<?php $odd = fn($keys) => count(array_filter($keys, fn($k) => trim((string) $k) === '' || stripos((string) $k, 'RUSTFPM') !== false));\n\
         ob_start(); phpinfo(); $info = ob_get_clean();\n\
         echo $odd(array_keys($_SERVER)), ' ', $odd(array_keys(getenv())), ' ', substr_count($info, 'rustfpm-finish-request-'), ' ', function_exists('fastcgi_finish_request') ? 'f' : '-';",
    );
    assert_eq!(get(&stack.url("/env.php")).text(), "0 0 0 f");
}

#[test]
fn reload_and_reopen_notices_are_php_fpms() {
    let site = Site::new();
    let fpm = start_fpm(&site, &ini(&site, "", "access.log = /dev/null\n"), &["-n"]);
    let log = site.path().join("error.log");
    fpm.signal(libc::SIGUSR2);
    let ready = |text: &str| text.matches("ready to handle connections").count() >= 2;
    assert!(wait_until(WAIT, || ready(&std::fs::read_to_string(&log).unwrap_or_default())), "{}", fpm.log_text());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let order = ["Reloading in progress ...", "reloading: ", "using inherited socket fd=", "fpm is running, pid "];
    let mut at = text.find(order[0]).unwrap_or_else(|| panic!("{text}"));
    for step in &order[1..] {
        at += text[at..].find(step).unwrap_or_else(|| panic!("no '{step}' after the last step:\n{text}"));
    }
    assert!(text.contains(&format!("\"{}\"", site.path().join("fpm.sock").display())), "{text}");
    fpm.signal(libc::SIGUSR1);
    let reopened = |t: &str| t.contains("error log file re-opened") && t.contains("access log file re-opened");
    assert!(wait_until(WAIT, || reopened(&std::fs::read_to_string(&log).unwrap_or_default())), "{text}");
}

#[test]
fn force_stderr_keeps_the_error_log_file() {
    let site = Site::new();
    let fpm = start_fpm(&site, &ini(&site, "", ""), &["-n"]);
    let file = std::fs::read_to_string(site.path().join("error.log")).unwrap_or_default();
    assert!(file.contains("ready to handle connections"), "error_log: {file}");
    assert!(fpm.log_text().contains("ready to handle connections"), "stderr: {}", fpm.log_text());
}

#[test]
fn a_numeric_user_runs_the_children_with_that_uid() {
    require_root("switching users needs root");
    let site = Site::new();
    site.script("id.php", "<?php echo posix_getuid(), ':', posix_getgid();");
    let text = ini(&site, "", "").replace("user = www-data\n", "user = 33\n");
    let fpm = start_fpm(&site, &text, &["-n", "-d", "extension=posix"]);
    let nginx = Nginx::start(&site, &fpm);
    assert_eq!(get(&nginx.url("/id.php")).text(), "33:33");
}

#[test]
fn allowed_clients_refuse_other_addresses_as_php_fpm_does() {
    for (clients, served) in [("127.0.0.1", true), ("10.0.0.1, ::1", false)] {
        let site = Site::new();
        let port = free_port();
        let text = ini(&site, "", &format!("listen.allowed_clients = {clients}\n")).replace(
            &format!("listen = {}", site.path().join("fpm.sock").display()),
            &format!("listen = 127.0.0.1:{port}"),
        );
        let fpm = start_fpm(&site, &text, &["-n"]);
        let nginx = Nginx::start_upstream(&site, &format!("127.0.0.1:{port}"));
        let r = get(&nginx.url("/hello.php"));
        assert_eq!(r.status == 200, served, "{clients}: {} {}", r.status, r.text());
        let refused = "ERROR: [pool www] Connection disallowed: IP address '127.0.0.1' has been dropped.";
        let logged = wait_until(if served { Duration::ZERO } else { WAIT }, || fpm.log_text().contains(refused));
        assert_eq!(logged, !served, "{}", fpm.log_text());
    }
}

/// nginx logs each FCGI_STDERR record as one entry: a warning, a notice and a script's own
/// `error_log()` line make one entry on one line, as with php-fpm.
#[test]
fn nginx_gets_single_line_entries_for_several_php_messages() {
    let stack = Stack::start();
    stack.site.script(
        "three.php",
        "<?php ini_set('log_errors', '1'); ini_set('display_errors', '0'); error_reporting(E_ALL);\n\
         $a = []; echo @$a['x'] ?? ''; trigger_error('a notice', E_USER_NOTICE);\n\
         trigger_error('a warning', E_USER_WARNING); error_log('my own line'); echo 'ok';",
    );
    assert_eq!(get(&stack.url("/three.php")).text(), "ok");
    let path = stack.site.path().join("nginx-error.log");
    let mut entry = String::new();
    wait_until(WAIT, || {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        entry = log.lines().find(|l| l.contains("a notice")).unwrap_or_default().to_string();
        entry.contains("my own line")
    });
    assert!(
        entry.contains("PHP message: PHP Notice:  a notice")
            && entry.contains("; PHP message: PHP Warning:  a warning")
            && entry.contains("; PHP message: my own line"),
        "{}",
        std::fs::read_to_string(&path).unwrap_or_default()
    );
}

/// Unset `queue_max_len` follows `listen.backlog`: rustfpm queues what php-fpm's kernel queue
/// would have held, and the status page says how much.
#[test]
fn the_queue_follows_the_listen_backlog() {
    let site = Site::new();
    let fpm = start_fpm(&site, &ini(&site, "", "listen.backlog = 4096\npm.status_path = /status\n"), &["-n"]);
    let nginx = Nginx::start(&site, &fpm);
    let json = get_json(&nginx.url("/status?json"));
    assert_eq!(json["listen queue len"], 4096, "{json}");
}

/// `-c` php-fpm's php.ini: the `conf.d` beside it is scanned, as php-fpm
/// scans its own, not php-cgi's built-in one (Debian's `cgi/conf.d`).
#[test]
fn the_conf_d_beside_the_php_ini_is_scanned() {
    let site = Site::new();
    let etc = site.path().join("etc");
    std::fs::create_dir_all(etc.join("conf.d")).unwrap();
    std::fs::write(etc.join("php.ini"), "memory_limit = 64M\n").unwrap();
    std::fs::write(etc.join("conf.d/99-site.ini"), "memory_limit = 77M\n").unwrap();
    // The last file is rustfpm's: the pool's settings (see the README).
    site.script(
        "ini.php",
        "<?php $files = array_map('trim', explode(',', php_ini_scanned_files())); \
         echo ini_get('memory_limit'), ' ', $files[0], ' ', count($files), ' ', basename(end($files));",
    );
    let php_ini = etc.join("php.ini");
    let fpm = start_fpm(&site, &ini(&site, "", ""), &["-c", php_ini.to_str().unwrap()]);
    let params = fcgi::get_params(&site, "ini.php", "");
    let params: Vec<(&str, &[u8])> = params.iter().map(|(k, v)| (*k, &v[..])).collect();
    let reply = fcgi::send(&fpm.socket, &params);
    assert_eq!(reply.body(), format!("77M {} 2 rustfpm.ini", etc.join("conf.d/99-site.ini").display()), "{reply:?}");
}

/// A php-fpm config without `-c`: the php.ini beside it is the children's
/// (php-fpm's layout: `fpm/php.ini` beside `fpm/php-fpm.conf`), with the
/// `conf.d` beside that; `-n` still means none.
#[test]
fn a_php_fpm_config_brings_the_php_ini_beside_it() {
    let site = Site::new();
    std::fs::create_dir_all(site.path().join("conf.d")).unwrap();
    std::fs::write(site.path().join("php.ini"), "memory_limit = 66M\n").unwrap();
    std::fs::write(site.path().join("conf.d/99-site.ini"), "max_input_vars = 1234\n").unwrap();
    site.script("ini.php", "<?php echo ini_get('memory_limit'), ' ', ini_get('max_input_vars');");
    let show = |fpm: &Rustfpm| {
        let params = fcgi::get_params(&site, "ini.php", "");
        let params: Vec<(&str, &[u8])> = params.iter().map(|(k, v)| (*k, &v[..])).collect();
        fcgi::send(&fpm.socket, &params).body().to_string()
    };
    let fpm = start_fpm(&site, &ini(&site, "", ""), &[]);
    assert_eq!(show(&fpm), "66M 1234");
    drop(fpm);
    let fpm = start_fpm(&site, &ini(&site, "", ""), &["-n"]);
    assert_eq!(show(&fpm), "128M 1000", "-n: PHP's defaults");
}

/// Run as root, `-t` refuses what the start refuses in a pool's user, as php-fpm's `-t` does:
/// no `user` (without `-R`), as well as a user that does not exist. It said "successful" for
/// the first, and the start then failed.
#[test]
fn test_refuses_the_users_the_start_refuses() {
    require_root("only root switches to the pools' users");
    let site = Site::new();
    let test = |pool: &str, extra: &[&str]| {
        let config = site.path().join("php-fpm.conf");
        let conf = format!(
            "[global]\nerror_log = {}\n[www]\nlisten = {}\npm = static\npm.max_children = 1\n{pool}",
            site.path().join("error.log").display(),
            site.path().join("fpm.sock").display()
        );
        std::fs::write(&config, conf).unwrap();
        let out = rustfpm(&[&["-t", "-y", config.to_str().unwrap()], extra].concat());
        (out.status.code(), text(&out))
    };
    let (code, said) = test("", &[]);
    assert_eq!(code, Some(78), "{said}");
    assert!(said.contains("[pool www] please specify user and group other than root"), "{said}");
    let (code, said) = test("user = no-such-user-s28\n", &[]);
    assert_eq!(code, Some(78), "{said}");
    assert!(said.contains("cannot get uid for user 'no-such-user-s28'"), "{said}");
    let (code, said) = test("", &["-R"]);
    assert_eq!(code, Some(0), "{said}");
}
