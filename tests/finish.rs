//! `fastcgi_finish_request()` under php-cgi, through real nginx → rustfpm →
//! php-cgi: the response completes at the call while the script runs on.
//! The scripts wait for a "go" file the test creates after it has the
//! response, so the order of events is checked without timing.
//!
//! Fixtures: tests/php/finish_*.php.

mod common;
use common::*;

use std::path::PathBuf;
use std::time::Duration;

/// A go file and a result file in the site's scratch dir, and the query
/// string that names them.
fn files(site: &Site, name: &str) -> (PathBuf, PathBuf, String) {
    let go = site.scratch().join(format!("{name}.go"));
    let result = site.scratch().join(format!("{name}.json"));
    let query = format!("go={}&result={}", go.display(), result.display());
    (go, result, query)
}

/// Checks what finish_basic.php saw, once released.
fn release_and_check(go: &std::path::Path, result: &std::path::Path) {
    assert!(!result.exists(), "the script ended before the response was complete");
    std::fs::write(go, "go").unwrap();
    let seen = wait_file(result, Duration::from_secs(30)).expect("the script did not run on after the response");
    assert_eq!(seen, r#"{"first":true,"second":false,"exists":true,"go":true}"#);
}

#[test]
fn response_completes_at_the_call_and_the_script_runs_on() {
    let stack = Stack::start();
    let (go, result, query) = files(&stack.site, "basic");
    let r = get(&stack.url(&format!("/finish_basic.php?{query}")));
    assert_eq!((r.status, r.text().as_str()), (200, "before\n"), "{r:?}");
    assert_eq!(r.header("X-Before"), Some("yes"));
    release_and_check(&go, &result);
    // The worker went back to the pool: all four serve again.
    for _ in 0..8 {
        assert_eq!(get(&stack.url("/hello.php")).status, 200);
    }
    // PHP's messages after the call go to rustfpm's log, not nginx's.
    let late = "after fastcgi_finish_request(): PHP message: PHP Warning:  after finish in";
    assert!(wait_until(Duration::from_secs(10), || stack.fpm.log_text().contains(late)), "{}", stack.fpm.log_text());
    let log = std::fs::read_to_string(stack.site.path().join("nginx-error.log")).unwrap();
    assert!(!log.contains("rustfpm-fastcgi-finish-request"), "the marker reached nginx:\n{log}");
    assert!(!log.contains("after finish"), "output after the call reached nginx:\n{log}");
}

#[test]
fn keepalive_connections_keep_working() {
    let stack = Stack::start();
    let (go, result, query) = files(&stack.site, "ka");
    let r = get(&stack.url(&format!("/ka/finish_basic.php?{query}")));
    assert_eq!((r.status, r.text().as_str()), (200, "before\n"), "{r:?}");
    release_and_check(&go, &result);
    for _ in 0..8 {
        let r = get(&stack.url("/ka/hello.php"));
        assert_eq!(r.status, 200, "{r:?}");
    }
}

#[test]
fn headers_reach_the_client_when_nothing_was_output() {
    let stack = Stack::start();
    let (go, result, query) = files(&stack.site, "redirect");
    let r = get(&stack.url(&format!("/finish_redirect.php?{query}")));
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(r.header("Location"), Some("/elsewhere"));
    assert_eq!(r.header("X-Big").map(str::len), Some(3000));
    assert!(r.headers_named("Set-Cookie").iter().any(|c| c.starts_with("finished=yes")), "{r:?}");
    assert_eq!(r.text(), "");
    assert!(!result.exists());
    std::fs::write(&go, "go").unwrap();
    assert_eq!(wait_file(&result, Duration::from_secs(30)).as_deref(), Some("ok"));
}

/// A prepend file of the user's, and a script that shows whether it ran and
/// whether `fastcgi_finish_request()` exists.
fn user_prepend(site: &Site) -> std::path::PathBuf {
    let prepend = site.www().join("prepend_user.inc");
    std::fs::write(&prepend, "<?php\n$GLOBALS['prepended'] = 'yes';\n").unwrap();
    site.script(
        "finish_prepend.php",
        "<?php\necho ($prepended ?? 'no') . ' ' . var_export(function_exists('fastcgi_finish_request'), true);\n",
    );
    prepend
}

#[test]
fn a_user_prepend_file_still_runs() {
    let site = Site::new();
    let prepend = user_prepend(&site);
    let opts = PoolOptions {
        tables: format!("[pool.www.php_value]\nauto_prepend_file = \"{}\"\n", prepend.display()),
        ..Default::default()
    };
    let fpm = Rustfpm::start(&site, &opts);
    let nginx = Nginx::start(&site, &fpm);
    assert_eq!(get(&nginx.url("/finish_prepend.php")).text(), "yes true");
}

#[test]
fn prepend_and_open_basedir_from_php_ini_are_kept() {
    // php-cgi's own view of its settings (phpinfo) is what the polyfill follows.
    let site = Site::new();
    let prepend = user_prepend(&site);
    let ini = site.path().join("php.ini");
    let text = format!(
        "open_basedir = \"{www}\"\nauto_prepend_file = \"{}\"\n",
        prepend.display(),
        www = site.www().display()
    );
    std::fs::write(&ini, text).unwrap();
    let extra = format!("php_ini = \"{}\"\n", ini.display());
    let fpm = Rustfpm::start(&site, &PoolOptions { extra, ..Default::default() });
    let nginx = Nginx::start(&site, &fpm);
    let r = get(&nginx.url("/finish_prepend.php"));
    assert_eq!((r.status, r.text().as_str()), (200, "yes true"), "{r:?}");
}

/// What `function_exists('fastcgi_finish_request')` says in a pool started
/// with `opts(site)`.
fn function_exists_in(opts: impl FnOnce(&Site) -> PoolOptions) -> String {
    let site = Site::new();
    site.script("finish_exists.php", "<?php\necho var_export(function_exists('fastcgi_finish_request'), true);\n");
    let fpm = Rustfpm::start(&site, &opts(&site));
    let nginx = Nginx::start(&site, &fpm);
    let r = get(&nginx.url("/finish_exists.php"));
    assert_eq!(r.status, 200, "{r:?}");
    r.text()
}

#[test]
fn open_basedir_pools_still_load_the_polyfill() {
    let exists = function_exists_in(|site| {
        let tables = format!("[pool.www.php_admin_value]\nopen_basedir = \"{}\"\n", site.www().display());
        PoolOptions { tables, ..Default::default() }
    });
    assert_eq!(exists, "true");
}

#[test]
fn the_polyfill_can_be_turned_off() {
    let exists =
        function_exists_in(|_| PoolOptions { extra: "fastcgi_finish_request = false".into(), ..Default::default() });
    assert_eq!(exists, "false");
}

#[test]
fn the_terminate_timeout_ends_at_the_call_by_default() {
    // As php-fpm: request_terminate_timeout no longer applies once the
    // script has called fastcgi_finish_request(). The script runs on 2 s
    // past a 1 s limit.
    let stack = Stack::with(PoolOptions { extra: "request_terminate_timeout = \"1s\"\n".into(), ..Default::default() });
    let (_go, result, query) = files(&stack.site, "untracked");
    let r = get(&stack.url(&format!("/finish_sleep.php?{query}")));
    assert_eq!((r.status, r.text().as_str()), (200, "done\n"));
    assert_eq!(wait_file(&result, Duration::from_secs(30)).as_deref(), Some("ran on"), "{}", stack.fpm.log_text());
    assert!(!stack.fpm.log_text().contains("executing too slow"));
}

#[test]
fn the_terminate_timeout_stops_after_the_call_if_tracked() {
    // request_terminate_timeout_track_finished = true: the child of a script
    // that runs on past the limit is killed, though nginx had its answer.
    let opts = PoolOptions {
        extra: "request_terminate_timeout = \"1s\"\nrequest_terminate_timeout_track_finished = true\n".into(),
        ..Default::default()
    };
    let stack = Stack::with(opts);
    let (_go, result, query) = files(&stack.site, "tracked");
    let r = get(&stack.url(&format!("/finish_basic.php?{query}")));
    assert_eq!((r.status, r.text().as_str()), (200, "before\n"));
    let killed = wait_until(Duration::from_secs(20), || stack.fpm.log_text().contains("executing too slow"));
    assert!(killed, "no timeout logged:\n{}", stack.fpm.log_text());
    assert!(!result.exists(), "the script was not stopped");
    assert_eq!(get(&stack.url("/hello.php")).status, 200);
}

/// The marker is this request's own secret: a user's input that looks like a
/// marker in a PHP message neither ends the response nor sets its headers.
#[test]
fn no_input_can_forge_the_marker() {
    let stack = Stack::start();
    stack.site.script("echo_notice.php", "<?php trigger_error($_GET['k'], E_USER_NOTICE); echo 'the body';");
    let fake = format!("rustfpm-finish-request-{}", "0123456789abcdef".repeat(2));
    let headers = "Set-Cookie: sid=attacker\r\n\r\n".bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let input = format!("x\n{fake}:{headers}\n{fake}\n");
    let query: String = input.bytes().map(|b| format!("%{b:02X}")).collect();
    let r = get(&stack.url(&format!("/echo_notice.php?k={query}")));
    assert_eq!((r.status, r.text().as_str()), (200, "the body"), "{r:?}");
    assert!(r.headers_named("Set-Cookie").is_empty(), "{r:?}");
}

/// The status line nginx sends for a head the call completes carries PHP's
/// reason phrase, as php-fpm's does ("302 Found", not a bare "302"); a code
/// PHP has no phrase for stays bare, as php-cgi sends it.
#[test]
fn the_status_line_of_a_finished_head_has_phps_reason_phrase() {
    let stack = Stack::start();
    stack.site.script(
        "finish_code.php",
        "<?php http_response_code((int) $_GET['code']); header('X-Finished: yes'); fastcgi_finish_request();",
    );
    for (code, line) in [(302, "HTTP/1.1 302 Found"), (404, "HTTP/1.1 404 Not Found"), (299, "HTTP/1.1 299")] {
        let bytes: Vec<u8> = raw_chunks(stack.nginx.port, &format!("/finish_code.php?code={code}"))
            .into_iter()
            .flat_map(|(_, c)| c)
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.lines().next().map(str::trim_end), Some(line), "{text}");
    }
}
