//! Daemonizing as php-fpm: `-D` / `daemonize` return once the daemon is ready
//! (or with the failure's exit code), the pid file names the daemon, signals
//! stop it and its children; `-F` wins over `daemonize = true`.
//!
//! The test process makes itself a child subreaper, so that a daemon whose
//! original process exited becomes its child and can be reaped here.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A daemonized rustfpm, found through its pid file; stopped and reaped on drop.
struct Daemon {
    pid: i32,
    reaped: bool,
}

impl Daemon {
    fn from_pid_file(path: &Path) -> Daemon {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("pid file {}: {e}", path.display()));
        let pid = text.trim().parse().unwrap_or_else(|_| panic!("pid file holds {text:?}"));
        Daemon { pid, reaped: false }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the daemon this test started.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// Waits for the daemon to exit and reaps it; its exit code.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut code = None;
        wait_until(timeout, || {
            let mut status = 0;
            // SAFETY: waitpid on our (adopted) child, without blocking.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if rc == self.pid {
                code = Some(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 });
            }
            code.is_some()
        });
        self.reaped |= code.is_some();
        code
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                self.signal(libc::SIGKILL);
                self.wait_exit(Duration::from_secs(5));
            }
        }
    }
}

fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
}

/// A TOML config for `site` with a pid file and a log file; `global` adds lines to `[global]`.
fn toml_config(site: &Site, global: &str) -> PathBuf {
    let opts = PoolOptions {
        children: 2,
        error_log: Some(site.path().join("rustfpm.log").display().to_string()),
        log_level: "notice",
        global: format!("pid = \"{}\"\n{global}", pid_file(site).display()),
        ..Default::default()
    };
    Rustfpm::write_config(site, &opts).0
}

fn pid_file(site: &Site) -> PathBuf {
    site.path().join("rustfpm.pid")
}

/// Runs rustfpm with `args` and waits for the command (not the daemon) to return.
fn run(args: &[&str]) -> Output {
    become_subreaper();
    Command::new(env!("CARGO_BIN_EXE_rustfpm")).args(args).stdin(Stdio::null()).output().expect("run rustfpm")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts a daemon with `args`; asserts the command returned 0 once ready.
fn start_daemon(site: &Site, args: &[&str]) -> Daemon {
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "rustfpm {args:?} failed:\n{}", stderr(&out));
    let log = std::fs::read_to_string(site.path().join("rustfpm.log")).unwrap_or_default();
    assert!(log.contains("ready to handle connections"), "returned before ready:\n{log}");
    Daemon::from_pid_file(&pid_file(site))
}

fn link(pid: i32, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/{name}")).map(|p| p.display().to_string()).unwrap_or_default()
}

/// The session id of `pid` (field 6 of /proc/PID/stat).
fn session(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 1..].split_whitespace().nth(3)?.parse().ok()
}

/// True while `pid` runs; a zombie re-parented to this test is reaped.
fn alive(pid: i32) -> bool {
    // SAFETY: waitpid without blocking; it fails harmlessly for a pid that is not our child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    matches!(proc_stat(pid), Some((_, state, _)) if state != 'Z' && state != 'X')
}

/// Daemonizes, serves through nginx, and stops on `sig` leaving no php-cgi behind.
fn daemon_serves_and_stops_on(sig: i32) {
    let site = Site::new();
    let config = toml_config(&site, "");
    let config = config.to_str().unwrap();
    let mut daemon = start_daemon(&site, &["--config", config, "-D"]);
    let pid = daemon.pid;
    assert_eq!(proc_stat(pid).map(|s| s.0), Some("rustfpm".to_string()), "the pid file names no rustfpm");
    assert_eq!(session(pid), Some(pid), "the daemon leads its own session");
    assert_eq!(link(pid, "cwd"), "/");
    for fd in ["fd/0", "fd/1", "fd/2"] {
        assert_eq!(link(pid, fd), "/dev/null", "{fd}");
    }

    let nginx = Nginx::start_upstream(&site, &format!("unix:{}", site.path().join("rustfpm.sock").display()));
    let r = get(&nginx.url("/pm_stderr.php?m=x"));
    assert_eq!(r.status, 200, "{}", r.text());
    let family = descendants(pid);
    assert!(family.iter().any(|p| is_live_php(*p)), "no php-cgi under the daemon");

    daemon.signal(sig);
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0), "the daemon did not stop cleanly");
    let left = || family.iter().copied().filter(|p| alive(*p)).collect::<Vec<_>>();
    assert!(wait_until(Duration::from_secs(5), || left().is_empty()), "processes left behind: {:?}", left());
    assert!(!pid_file(&site).exists(), "the pid file outlived the daemon");
}

#[test]
fn daemon_serves_and_sigterm_stops_it_and_its_children() {
    daemon_serves_and_stops_on(libc::SIGTERM);
}

#[test]
fn daemon_serves_and_sigquit_stops_it_and_its_children() {
    daemon_serves_and_stops_on(libc::SIGQUIT);
}

#[test]
fn a_config_error_with_dash_d_is_printed_and_exits_78() {
    let site = Site::new();
    let config = toml_config(&site, "log_limit = 5");
    let out = run(&["--config", config.to_str().unwrap(), "-D"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("log_limit = \"5\": must be between 512"), "{}", stderr(&out));
    assert!(!pid_file(&site).exists());
}

#[test]
fn a_start_up_failure_after_the_fork_is_printed_with_its_exit_code() {
    let site = Site::new();
    let config = toml_config(&site, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let bad = site.path().join("missing-dir/rustfpm.sock");
    std::fs::write(
        &config,
        text.replace(&site.path().join("rustfpm.sock").display().to_string(), bad.to_str().unwrap()),
    )
    .unwrap();
    let out = run(&["--config", config.to_str().unwrap(), "-D"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot listen on"), "the daemon's error was not shown:\n{}", stderr(&out));
    assert!(stderr(&out).contains("FPM initialization failed"), "{}", stderr(&out));
}

#[test]
fn daemonize_true_in_the_config_daemonizes() {
    let site = Site::new();
    let config = toml_config(&site, "daemonize = true");
    let daemon = start_daemon(&site, &["--config", config.to_str().unwrap()]);
    assert_eq!(session(daemon.pid), Some(daemon.pid));
}

#[test]
fn dash_f_wins_over_daemonize_true() {
    let site = Site::new();
    let config = toml_config(&site, "daemonize = true");
    become_subreaper();
    let args = ["--config", config.to_str().unwrap(), "-F"];
    let mut fpm = Rustfpm::start_args(&site, &args, &config, &site.path().join("rustfpm.sock"));
    assert!(fpm.wait_exit(Duration::from_millis(300)).is_none(), "rustfpm -F returned: it daemonized");
    assert_eq!(
        wait_file(&pid_file(&site), Duration::from_secs(5)).map(|t| t.trim().to_string()),
        Some(fpm.pid().to_string())
    );
}

#[test]
fn a_php_fpm_config_without_daemonize_daemonizes_as_php_fpm_does() {
    let site = Site::new();
    let conf = site.path().join("php-fpm.conf");
    let user = ini_user_line();
    let text = format!(
        "[global]\npid = {}\nerror_log = {}\n[www]\nlisten = {}\npm = static\npm.max_children = 1\n{user}",
        pid_file(&site).display(),
        site.path().join("rustfpm.log").display(),
        site.path().join("rustfpm.sock").display()
    );
    std::fs::write(&conf, text).unwrap();
    let daemon = start_daemon(&site, &["-y", conf.to_str().unwrap()]);
    assert_eq!(session(daemon.pid), Some(daemon.pid));
}
