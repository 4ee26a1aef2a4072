//! PHP's messages reach nginx's error log in php-fpm's shape (`PHP message: `
//! before each, `; ` between the messages of a request) through real nginx →
//! rustfpm → php-cgi, compared line by line with real php-fpm where php-fpm
//! is installed; response bodies are unaffected.
//!
//! Fixtures: tests/php/stderr_*.php.

mod common;
use common::*;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The content of each `FastCGI sent in stderr: "..."` entry of nginx's error
/// log (entries may span lines), with the site's path replaced by `SITE`.
fn stderr_entries(site: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(site.join("nginx-error.log")).unwrap_or_default();
    let log = log.replace(&site.display().to_string(), "SITE");
    let mut entries = Vec::new();
    let mut rest = log.as_str();
    while let Some(start) = rest.find("FastCGI sent in stderr: \"") {
        rest = &rest[start + "FastCGI sent in stderr: \"".len()..];
        let end = rest.find("\" while ").unwrap_or(rest.len());
        entries.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    entries
}

/// Waits until nginx has logged at least `n` stderr entries; returns them.
fn wait_entries(site: &Path, n: usize) -> Vec<String> {
    wait_until(Duration::from_secs(10), || stderr_entries(site).len() >= n);
    stderr_entries(site)
}

#[test]
fn two_warnings_are_one_line_in_php_fpm_shape() {
    let stack = Stack::start();
    let r = get(&stack.url("/stderr_two.php"));
    assert_eq!((r.status, r.text().as_str()), (200, "body\nend\n"));
    let entries = wait_entries(stack.site.path(), 1);
    assert_eq!(
        entries,
        ["PHP message: PHP Warning:  Undefined variable $undefined_a in SITE/www/stderr_two.php on line 3; \
          PHP message: PHP Warning:  Undefined variable $undefined_b in SITE/www/stderr_two.php on line 4"]
    );
}

/// What nginx logs, line by line, for the messages of stderr_records.php.
const RECORDS_EXPECTED: [&str; 4] = [
    "PHP message: PHP Warning:  first in SITE/www/stderr_records.php on line 3",
    "; PHP message: PHP Notice:  second in SITE/www/stderr_records.php on line 6",
    "; PHP message: custom message",
    "; PHP message: PHP Fatal error:  Uncaught Exception: boom in SITE/www/stderr_records.php:12\n\
     Stack trace:\n#0 {main}\n  thrown in SITE/www/stderr_records.php on line 12",
];

#[test]
fn messages_in_several_records_keep_their_order_and_separator() {
    let stack = Stack::start();
    let r = get(&stack.url("/ka/stderr_records.php"));
    assert_eq!((r.status, r.text().as_str()), (500, "abc\n"), "{r:?}");
    assert_eq!(wait_entries(stack.site.path(), 4), RECORDS_EXPECTED);
    // The keepalive connection still serves.
    assert_eq!(get(&stack.url("/ka/hello.php")).status, 200);
}

#[test]
fn many_and_long_messages_all_arrive_and_the_body_is_intact() {
    let stack = Stack::start();
    let r = get(&stack.url("/stderr_many.php"));
    let body: String = "start\n".to_string()
        + &(0..300).filter(|i| i % 5 == 4).map(|i| format!("line {i}\n")).collect::<String>()
        + "done\n";
    assert_eq!((r.status, r.text()), (200, body));
    let entries = wait_entries(stack.site.path(), 61);
    // nginx logs a record in pieces when it spans two of its reads, and
    // trims spaces (and dots) at the end of each piece.
    let all = entries.concat().replace("; ", ";");
    for i in 0..300 {
        let sep = if i == 0 { "" } else { ";" };
        let message = format!(
            "{sep}PHP message: PHP Warning:  msg-{i} {} in SITE/www/stderr_many.php on line 11",
            "x".repeat(40)
        );
        assert!(all.contains(&message), "message {i} missing or not in php-fpm's shape:\n{all}");
    }
    assert!(all.contains(";PHP message: long-start yyyy"), "{all}");
    // The long message is cut by nginx's line limit, not by rustfpm: the
    // next request still works and nothing was mixed into the body.
    assert_eq!(get(&stack.url("/hello.php")).status, 200);
}

/// php-fpm 8.2 on a unix socket in `site`; its whole process group (master
/// and workers) is killed on drop.
struct PhpFpm {
    child: Child,
    socket: std::path::PathBuf,
}

impl PhpFpm {
    fn start(site: &Site) -> PhpFpm {
        let program = "/usr/sbin/php-fpm8.2";
        require_file(program, "php8.2-fpm");
        let dir = site.path();
        let socket = dir.join("php-fpm.sock");
        let user = pool_user().map(|u| format!("user = {u}\ngroup = {u}\nlisten.owner = {u}\n")).unwrap_or_default();
        let conf = format!(
            "[global]\nerror_log = {d}/php-fpm.log\ndaemonize = no\npid = {d}/php-fpm.pid\n\n[www]\n{user}\
             listen = {s}\npm = static\npm.max_children = 2\n",
            d = dir.display(),
            s = socket.display()
        );
        std::fs::write(dir.join("php-fpm.conf"), conf).unwrap();
        // The same php.ini as rustfpm's php-cgi.
        let child = Command::new(program)
            .args(["-F", "-c", "/etc/php/8.2/cgi/php.ini", "-y"])
            .arg(dir.join("php-fpm.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start php-fpm");
        let fpm = PhpFpm { child, socket };
        assert!(wait_until(Duration::from_secs(10), || fpm.socket.exists()), "php-fpm did not start");
        fpm
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group we created for php-fpm.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

#[test]
fn php_fpm_logs_the_same_lines() {
    let site = Site::new();
    let fpm = PhpFpm::start(&site);
    let nginx = Nginx::start_upstream(&site, &format!("unix:{}", fpm.socket.display()));
    assert_eq!(get(&nginx.url("/stderr_two.php")).text(), "body\nend\n");
    assert_eq!(get(&nginx.url("/stderr_records.php")).text(), "abc\n");
    let fpm_entries = wait_entries(site.path(), 5);

    let stack = Stack::start();
    get(&stack.url("/stderr_two.php"));
    get(&stack.url("/stderr_records.php"));
    assert_eq!(wait_entries(stack.site.path(), 5), fpm_entries);
    assert_eq!(&fpm_entries[1..], RECORDS_EXPECTED);
}
