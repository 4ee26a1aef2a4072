//! rustfpm's own log: `log_limit` splitting a child's long stderr line into
//! marked pieces, and `error_log = "syslog"` sending php-fpm's syslog lines to
//! a datagram socket (a test-owned one, through `syslog_socket`).

mod common;
use common::*;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

fn user_line() -> &'static str {
    if is_root() {
        "user = \"www-data\"\n"
    } else {
        ""
    }
}

/// rustfpm + nginx on a config with `global` lines added to `[global]`.
fn stack_with_global(global: &str) -> Stack {
    let site = Site::new();
    let socket = site.path().join("rustfpm.sock");
    let text = format!(
        "[global]\nerror_log = \"stderr\"\n{global}\n[pool.www]\nlisten = \"{}\"\npm_max_children = 1\n\
         catch_workers_output = true\n{}",
        socket.display(),
        user_line()
    );
    let config = site.path().join("rustfpm.toml");
    std::fs::write(&config, text).unwrap();
    let fpm = Rustfpm::start_with_config(&site, &config, Some(socket));
    let nginx = Nginx::start(&site, &fpm);
    Stack { nginx, fpm, site }
}

const LONG_LINE_PHP: &str = "<?php\n$fd = fopen('php://stderr', 'w');\n\
     fwrite($fd, 'BEGIN' . str_repeat('a', 5000) . \"END\\n\");\nfclose($fd);\necho 'ok';\n";

/// The text between the quotes of each `said into stderr` line, and whether it is marked.
fn pieces(log: &str) -> Vec<(&str, bool, usize)> {
    let head = "child said into stderr: \"";
    log.lines()
        .filter_map(|line| {
            let start = line.find(head)? + head.len();
            let (body, marked) = match line.strip_suffix("\" (line continues)") {
                Some(body) => (body, true),
                None => (line.strip_suffix('"')?, false),
            };
            Some((&body[start..], marked, line.len() + 1))
        })
        .collect()
}

#[test]
fn a_long_child_line_is_logged_in_marked_pieces_within_log_limit() {
    let stack = stack_with_global("log_limit = 1024");
    stack.site.script("long.php", LONG_LINE_PHP);
    assert_eq!(get(&stack.url("/long.php")).text(), "ok");
    let mut log = String::new();
    let complete = wait_until(Duration::from_secs(10), || {
        log = stack.fpm.log_text();
        log.contains("END\"")
    });
    assert!(complete, "the line's end never reached the log:\n{log}");
    let pieces = pieces(&log);
    assert!(pieces.len() >= 5, "5000 bytes in lines of 1024 need at least 5 pieces: {}", pieces.len());
    let (last, others) = pieces.split_last().unwrap();
    assert!(others.iter().all(|(_, marked, _)| *marked), "every piece but the last is marked:\n{log}");
    assert!(!last.1, "the last piece is not marked:\n{log}");
    assert!(pieces.iter().all(|(_, _, len)| *len <= 1024), "a line is longer than log_limit:\n{log}");
    let joined: String = pieces.iter().map(|(text, _, _)| *text).collect();
    assert_eq!(joined, format!("BEGIN{}END", "a".repeat(5000)), "pieces lose or add bytes");
}

#[test]
fn the_default_log_limit_is_php_fpms_1024() {
    let stack = stack_with_global("");
    stack.site.script("long.php", LONG_LINE_PHP);
    get(&stack.url("/long.php"));
    let mut log = String::new();
    assert!(wait_until(Duration::from_secs(10), || {
        log = stack.fpm.log_text();
        log.contains("END\"")
    }));
    let lengths: Vec<usize> = pieces(&log).iter().map(|(_, _, len)| *len).collect();
    assert!(lengths.len() >= 5 && lengths.iter().all(|len| *len <= 1024), "{lengths:?}");
}

/// Receives datagrams until one contains `needle`, for at most 10 s.
fn receive_until(socket: &UnixDatagram, needle: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.contains(needle) {
                return Some(text);
            }
        }
    }
    None
}

fn syslog_socket(dir: &Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(dir.join("log.sock")).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    socket
}

#[test]
fn syslog_receives_php_fpm_lines_with_facility_and_ident() {
    let site = Site::new();
    let syslog = syslog_socket(site.path());
    let socket = site.path().join("rustfpm.sock");
    let text = format!(
        "[global]\nerror_log = \"syslog\"\nsyslog_facility = \"local4\"\nsyslog_ident = \"fpm-test\"\n\
         syslog_socket = \"{}\"\n[pool.www]\nlisten = \"{}\"\npm_max_children = 1\ncatch_workers_output = true\n{}",
        site.path().join("log.sock").display(),
        socket.display(),
        user_line()
    );
    let config = site.path().join("rustfpm.toml");
    std::fs::write(&config, text).unwrap();
    let fpm = Rustfpm::start_with_config(&site, &config, Some(socket));
    let ready = receive_until(&syslog, "ready to handle connections").expect("no 'ready' datagram");
    // local4 (20) * 8 + notice (5)
    let expected = format!("fpm-test[{}]: [NOTICE] ready to handle connections", fpm.pid());
    assert!(ready.starts_with("<165>") && ready.ends_with(&expected), "{ready}");

    // A child's stderr line, at WARNING (4): <164>.
    let nginx = Nginx::start(&site, &fpm);
    get(&nginx.url("/pm_stderr.php?m=marker-syslog"));
    let line = receive_until(&syslog, "marker-syslog").expect("the child's line did not reach syslog");
    assert!(line.starts_with("<164>") && line.contains("[WARNING] [pool www] child said into stderr"), "{line}");

    // Once started, messages go to syslog only, no longer also to stderr.
    fpm.signal(libc::SIGUSR1);
    receive_until(&syslog, "error log file re-opened").expect("no 'reopened' datagram");
    assert!(!fpm.log_text().contains("reopened"), "after start-up a notice reached stderr too:\n{}", fpm.log_text());
}

#[test]
fn a_reload_applies_the_new_log_settings() {
    let stack = stack_with_global("");
    let file = stack.site.path().join("after-reload.log");
    let text = std::fs::read_to_string(&stack.fpm.config).unwrap();
    let text = text.replace("error_log = \"stderr\"", &format!("error_log = \"{}\"", file.display()));
    std::fs::write(&stack.fpm.config, text).unwrap();
    stack.fpm.signal(libc::SIGUSR2);
    let moved = wait_file(&file, Duration::from_secs(10)).unwrap_or_default();
    assert!(moved.contains("configuration reloaded"), "the log did not move to the new error_log:\n{moved}");
}
