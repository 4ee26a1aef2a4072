//! The access log and the slowlog through real nginx → rustfpm → php-cgi: php-fpm's default
//! format, a format with every kind of placeholder, slow requests, and SIGUSR1 reopening.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A site, rustfpm with `extra` pool lines (`{dir}` is replaced by the site's directory),
/// and nginx.
fn stack_with(extra: &str, tcp: bool) -> Stack {
    let site = Site::new();
    let extra = extra.replace("{dir}", &site.path().display().to_string());
    // One child: every request after the first goes to a child whose pid rustfpm knows.
    let opts = PoolOptions { extra, tcp_port: tcp.then(free_port), children: 1, ..Default::default() };
    let fpm = Rustfpm::start(&site, &opts);
    let nginx = Nginx::start(&site, &fpm);
    Stack { nginx, fpm, site }
}

/// Waits until `path` has at least `n` lines; returns them.
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until(WAIT, || {
        lines = std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
        lines.len() >= n
    });
    assert!(lines.len() >= n, "{} has {} line(s), expected {n}: {lines:?}", path.display(), lines.len());
    lines
}

fn log_path(stack: &Stack, name: &str) -> PathBuf {
    stack.site.path().join(name)
}

#[test]
fn default_format_is_php_fpms() {
    let stack = stack_with("access_log = \"{dir}/access.log\"\nping_path = \"/ping\"", false);
    assert_eq!(get(&stack.url("/hello.php?x=1")).status, 200);
    assert_eq!(get(&stack.url("/missing.php")).status, 404);
    assert_eq!(get(&stack.url("/ping")).status, 200);
    let mut lines = wait_lines(&log_path(&stack, "access.log"), 3);
    // A new connection's first request waits for its child's pid: lines may come out of order.
    lines.sort_by_key(|line| ["hello", "missing", "ping"].iter().position(|w| line.contains(*w)));
    // %R is "-" on a unix socket and %u is empty: php-fpm's double space.
    let after = lines[0].strip_prefix("- -  ").unwrap_or_else(|| panic!("{}", lines[0]));
    let (time, rest) = after.split_at(after.find(' ').map_or(0, |space| space + 6));
    assert!(time.len() == 26 && time.contains('/') && time.contains(':'), "time {time:?} in {}", lines[0]);
    assert_eq!(rest, " \"GET /hello.php\" 200", "{}", lines[0]);
    // Answered by rustfpm itself, and logged as php-fpm's worker logs them.
    assert!(lines[1].ends_with(" \"GET /missing.php\" 404"), "{}", lines[1]);
    assert!(lines[2].ends_with(" \"GET /ping\" 200"), "{}", lines[2]);
}

#[test]
fn rich_format_shows_every_field() {
    let format =
        "%R|%n|%p|%P|%m|%r|%Q%q|%s|%f|%{mili}d|%{kilo}M|%C|%{HTTP_HOST}e|%{Content-Type}o|%{X-A}o|%l|%u|%{%s}t|%%";
    let stack = stack_with(&format!("access_log = \"{{dir}}/access.log\"\naccess_format = '{format}'"), true);
    stack.site.script("fields.php", "<?php header('X-A: from-php'); http_response_code(201); echo getmypid();");
    // The first request of a new connection to a child starts before its pid is known, so
    // its %C is "-"; the second one shows every field.
    assert_eq!(get(&stack.url("/hello.php")).status, 200);
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let r = post(&stack.url("/fields.php?a=1&b=2"), "application/x-www-form-urlencoded", b"k=value");
    assert_eq!(r.status, 201, "{}", r.text());
    let pid: i32 = r.text().trim().parse().expect("the script prints its pid");
    let line = wait_lines(&log_path(&stack, "access.log"), 2).remove(1);
    let f: Vec<&str> = line.split('|').collect();
    assert_eq!(f.len(), 19, "{line}");
    assert_eq!(f[0], "127.0.0.1", "%R is nginx's address on TCP: {line}");
    assert_eq!((f[1], f[2]), ("www", pid.to_string().as_str()), "%n %p: {line}");
    assert!(stack.fpm.php_pids().contains(&pid), "%p {pid} is one of rustfpm's php-cgi children");
    let parent = proc_stat(pid).map(|(_, _, ppid)| ppid.to_string());
    assert_eq!(Some(f[3]), parent.as_deref(), "%P is the child's parent: {line}");
    assert_eq!((f[4], f[5], f[6], f[7]), ("POST", "/fields.php", "?a=1&b=2", "201"), "{line}");
    assert_eq!(f[8], stack.site.www().join("fields.php").display().to_string());
    let millis: f64 = f[9].parse().expect("%{mili}d is a number");
    assert!(millis > 0.0, "{line}");
    let kib: u64 = f[10].parse().expect("%{kilo}M is a number");
    assert!(kib > 0, "the child's private memory: {line}");
    let cpu: f64 = f[11].parse().expect("%C is a number");
    assert!(cpu >= 0.0, "{line}");
    assert_eq!(f[12], "127.0.0.1", "%{{HTTP_HOST}}e: {line}");
    assert_eq!(f[13], "text/html; charset=UTF-8", "{line}");
    assert_eq!((f[14], f[15], f[16]), ("from-php", "7", ""), "%{{X-A}}o %l %u: {line}");
    let arrived: u64 = f[17].parse().expect("%{%s}t is epoch seconds");
    assert!(arrived >= started && arrived < started + 60, "{line}");
    assert_eq!(f[18], "%");
}

#[test]
fn slow_request_is_logged_once_with_a_warning() {
    let stack = stack_with(
        "slowlog = \"{dir}/slow.log\"\nrequest_slowlog_timeout = \"1s\"\npm_status_path = \"/status\"",
        false,
    );
    stack.site.script("sleepy.php", "<?php sleep(2); echo getmypid();");
    let r = get(&stack.url("/sleepy.php?n=1"));
    assert_eq!(r.status, 200);
    let pid = r.text();
    let slow = wait_file(&log_path(&stack, "slow.log"), WAIT).expect("the slowlog is written");
    let script = stack.site.www().join("sleepy.php").display().to_string();
    assert!(slow.contains(&format!("]  [pool www] pid {pid}\n")), "{slow}");
    assert!(slow.contains(&format!("script_filename = {script}\n")), "{slow}");
    assert!(slow.contains("request = GET /sleepy.php?n=1\n") && slow.contains("elapsed = "), "{slow}");
    assert_eq!(slow.matches("script_filename").count(), 1, "logged once: {slow}");
    let log = stack.fpm.log_text();
    let warning = format!(
        "WARNING: [pool www] child {pid}, script '{script}' (request: \"GET /sleepy.php?n=1\") executing too slow"
    );
    assert!(log.contains(&warning) && log.contains("sec), logging"), "{log}");
    let json = get_json(&stack.url("/status?json"));
    assert_eq!(json["slow requests"], 1, "{json}");
    assert_eq!(get(&stack.url("/hello.php")).status, 200);
    assert_eq!(std::fs::read_to_string(log_path(&stack, "slow.log")).unwrap().matches("script_filename").count(), 1);
}

#[test]
fn sigusr1_reopens_the_access_log() {
    let stack = stack_with("access_log = \"{dir}/access.log\"\naccess_format = \"%r\"", false);
    let (path, moved) = (log_path(&stack, "access.log"), log_path(&stack, "access.log.1"));
    assert_eq!(get(&stack.url("/hello.php")).status, 200);
    wait_lines(&path, 1);
    std::fs::rename(&path, &moved).unwrap();
    stack.fpm.signal(libc::SIGUSR1);
    // Not "error log file re-opened": rustfpm says that before it tells the access log's
    // writer, and a request's line sent in between would still go to the old file.
    stack.fpm.wait_logged("access log file re-opened");
    assert_eq!(get(&stack.url("/pm_pid.php")).status, 200);
    assert_eq!(wait_lines(&path, 1), ["/pm_pid.php"]);
    assert_eq!(std::fs::read_to_string(&moved).unwrap(), "/hello.php\n");
}

#[test]
fn an_unwritable_log_stops_the_start() {
    let site = Site::new();
    let config = site.path().join("bad.toml");
    let text = format!(
        "[pool.www]\nlisten = \"{}/bad.sock\"\npm_max_children = 1\naccess_log = \"{}/no/such/dir/a.log\"\n",
        site.path().display(),
        site.path().display()
    );
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rustfpm"))
        .arg("--config")
        .arg(&config)
        .arg("-R")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("[pool www] cannot open the log") && stderr.contains("no/such/dir/a.log"), "{stderr}");
}

#[test]
fn suppressed_paths_are_left_out_only_when_plain_and_successful() {
    let extra = "access_log = \"{dir}/access.log\"\naccess_format = \"%m %r%Q%q %s\"\nping_path = \"/ping\"\n\
                 access_suppress_path = [\"/ping\", \"/hello.php\"]";
    let stack = stack_with(extra, false);
    stack.site.script("other.php", "<?php echo 'other';");
    stack.site.script("fail.php", "<?php http_response_code(500);");
    for path in ["/ping", "/hello.php", "/ping?full", "/other.php"] {
        assert_eq!(get(&stack.url(path)).status, 200, "{path}");
    }
    assert_eq!(get(&stack.url("/fail.php")).status, 500);
    wait_lines(&log_path(&stack, "access.log"), 3);
    // Whatever was to be logged of the requests above is written by now.
    assert_eq!(get(&stack.url("/other.php?last")).status, 200);
    let mut lines = wait_lines(&log_path(&stack, "access.log"), 4);
    lines.sort();
    assert_eq!(lines, ["GET /fail.php 500", "GET /other.php 200", "GET /other.php?last 200", "GET /ping?full 200"]);
}
