//! rustfpm's own log: `log_limit` wrapping a child's long stderr line as
//! php-fpm does, and `error_log = "syslog"` sending php-fpm's syslog lines to
//! a datagram socket (a test-owned one, through `syslog_socket`).

mod common;
use common::*;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

/// A pool of one child whose stderr rustfpm logs, with `global` lines in `[global]`.
fn options(global: &str) -> PoolOptions {
    PoolOptions {
        children: 1,
        extra: "catch_workers_output = true".into(),
        global: global.into(),
        log_level: "notice",
        ..Default::default()
    }
}

/// rustfpm + nginx on a config with `global` lines added to `[global]`.
fn stack_with_global(global: &str) -> Stack {
    Stack::with(options(global))
}

const LONG_LINE_PHP: &str = "<?php\n$fd = fopen('php://stderr', 'w');\n\
     fwrite($fd, 'BEGIN' . str_repeat('a', 5000) . \"END\\n\");\nfclose($fd);\necho 'ok';\n";

/// The text between the quotes of each `said into stderr` line, and the line's length with
/// its newline.
fn pieces(log: &str) -> Vec<(&str, usize)> {
    log.lines()
        .filter_map(|line| {
            let start = line.find(" said into stderr: \"")? + " said into stderr: \"".len();
            line.strip_suffix('"').map(|body| (&body[start..], line.len() + 1))
        })
        .collect()
}

/// php-fpm's wrapping: every piece but the last fills `limit` exactly, the last fits, and
/// together they are the line.
fn assert_wrapped(log: &str, limit: usize) {
    let pieces = pieces(log);
    assert!(pieces.len() >= 5, "5008 bytes in lines of {limit} need at least 5 pieces: {}", pieces.len());
    let (last, others) = pieces.split_last().unwrap();
    assert!(others.iter().all(|(_, len)| *len == limit), "a piece does not fill log_limit:\n{log}");
    assert!(last.1 <= limit, "the last piece is longer than log_limit:\n{log}");
    let joined: String = pieces.iter().map(|(text, _)| *text).collect();
    assert_eq!(joined, format!("BEGIN{}END", "a".repeat(5000)), "pieces lose or add bytes");
}

#[test]
fn a_long_child_line_is_wrapped_at_log_limit() {
    let stack = stack_with_global("log_limit = 1024");
    stack.site.script("long.php", LONG_LINE_PHP);
    assert_eq!(get(&stack.url("/long.php")).text(), "ok");
    let mut log = String::new();
    let complete = wait_until(Duration::from_secs(10), || {
        log = stack.fpm.log_text();
        log.contains("END\"")
    });
    assert!(complete, "the line's end never reached the log:\n{log}");
    assert_wrapped(&log, 1024);
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
    assert_wrapped(&log, 1024);
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
    let global = format!(
        "syslog_facility = \"local4\"\nsyslog_ident = \"fpm-test\"\nsyslog_socket = \"{}\"",
        site.path().join("log.sock").display()
    );
    // Started without waiting for "ready" on stderr: as php-fpm's, it goes to syslog only.
    let (config, socket) =
        Rustfpm::write_config(&site, &PoolOptions { error_log: Some("syslog".into()), ..options(&global) });
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rustfpm"));
    command.arg("--config").arg(&config);
    let fpm = Rustfpm::spawn(&site, command, &config, &socket.unwrap_or_default());
    let ready = receive_until(&syslog, "ready to handle connections").expect("no 'ready' datagram");
    assert!(
        !fpm.log_text().contains("ready to handle"),
        "a notice after start-up reached stderr:
{}",
        fpm.log_text()
    );
    // local4 (20) * 8 + notice (5)
    let expected = format!("fpm-test[{}]: [NOTICE] ready to handle connections", fpm.pid());
    assert!(ready.starts_with("<165>") && ready.ends_with(&expected), "{ready}");

    // A child's stderr line, at WARNING (4): <164>.
    let nginx = Nginx::start(&site, &fpm);
    get(&nginx.url("/pm_stderr.php?m=marker-syslog"));
    let line = receive_until(&syslog, "marker-syslog").expect("the child's line did not reach syslog");
    assert!(
        line.starts_with("<164>") && line.contains("[WARNING] [pool www] child ") && line.contains(" said into stderr"),
        "{line}"
    );

    // Once started, messages go to syslog only, no longer also to stderr.
    fpm.signal(libc::SIGUSR1);
    receive_until(&syslog, "error log file re-opened").expect("no 'reopened' datagram");
    assert!(!fpm.log_text().contains("re-opened"), "after start-up a notice reached stderr too:\n{}", fpm.log_text());
}

#[test]
fn a_reload_applies_the_new_log_settings() {
    let stack = stack_with_global("");
    let file = stack.site.path().join("after-reload.log");
    let text = std::fs::read_to_string(&stack.fpm.config).unwrap();
    let text = text.replace("error_log = \"stderr\"", &format!("error_log = \"{}\"", file.display()));
    std::fs::write(&stack.fpm.config, text).unwrap();
    stack.fpm.signal(libc::SIGUSR2);
    // Not the first line in the new file: the new pools' actors may write there before it.
    let read = || std::fs::read_to_string(&file).unwrap_or_default();
    let moved = wait_until(Duration::from_secs(10), || read().contains("configuration reloaded"));
    assert!(moved, "the log did not move to the new error_log:\n{}", read());
}
