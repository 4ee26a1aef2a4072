//! systemd's service protocol with a real datagram socket as `NOTIFY_SOCKET`
//! (what systemd listens on): `READY=1` once the children answer, php-fpm's
//! `STATUS=` line, `RELOADING=1` … `READY=1` around SIGUSR2, `STOPPING=1`,
//! `MAINPID=` after daemonizing, and `WATCHDOG=1` pings that stop when a pool
//! actor hangs. None of systemd's variables reach php-cgi.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The service manager's end: a bound datagram socket.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        NotifySocket { sock, path, seen: Vec::new() }
    }

    fn recv(&mut self) -> Option<String> {
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.seen.push(text.clone());
        Some(text)
    }

    /// The first message that `f` accepts, within `timeout`.
    fn wait_for(&mut self, timeout: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(msg) = self.recv().filter(|m| f(m)) {
                return msg;
            }
        }
        panic!("no such notification within {timeout:?}; got: {:#?}", self.seen);
    }

    /// Every message that arrives within `period`.
    fn collect(&mut self, period: Duration) -> Vec<String> {
        let deadline = Instant::now() + period;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            out.extend(self.recv());
        }
        out
    }
}

/// A php_cgi that takes a second to start serving: a READY=1 sent before the
/// children answer would arrive before they exist.
fn slow_php_cgi(site: &Site) -> PathBuf {
    let path = site.path().join("slow-php-cgi");
    let script = "#!/bin/sh\ncase \" $* \" in *\" -i \"*) ;; *) sleep 1 ;; esac\nexec php-cgi \"$@\"\n";
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A pool of 2 children on `rustfpm.sock`, with `global` lines in `[global]`
/// and `pool` lines in `[pool.www]`.
fn write_config(site: &Site, global: &str, pool: &str) -> PathBuf {
    let opts = PoolOptions { children: 2, global: global.into(), extra: pool.into(), ..Default::default() };
    Rustfpm::write_config(site, &opts).0
}

/// Starts rustfpm with systemd's variables; returns once it logs that it listens.
fn start(site: &Site, config: &Path, notify: &NotifySocket, extra_env: &[(&str, &str)]) -> Rustfpm {
    Rustfpm::start_command(site, config, Some(site.path().join("rustfpm.sock")), |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify.path).envs(extra_env.iter().copied());
    })
}

fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn ready_status_reload_and_stop_are_notified() {
    let site = Site::new();
    site.script("env_names.php", "<?php foreach (getenv() as $k => $v) { echo \"$k\\n\"; }");
    let php_cgi = slow_php_cgi(&site);
    let pool = format!("php_cgi = \"{}\"\nclear_env = false\n", php_cgi.display());
    let config = write_config(&site, "systemd_interval = \"1s\"", &pool);
    let mut notify = NotifySocket::bind(site.path());
    let env = [("LISTEN_FDNAMES", "x"), ("WATCHDOG_PID", "1")];
    let mut fpm = start(&site, &config, &notify, &env);

    let ready = notify.wait_for(Duration::from_secs(20), |m| m.contains("READY=1"));
    // Sent once the children answer: the slow php-cgi has forked them by now.
    let php = fpm.php_pids();
    assert!(php.len() >= 3, "READY=1 came before the children ran: php-cgi pids {php:?}");
    assert_eq!(field(&ready, "MAINPID"), Some(fpm.pid().to_string().as_str()), "{ready}");
    assert_eq!(
        field(&ready, "STATUS"),
        Some("Processes active: 0, idle: 2, Requests: 0, slow: 0, Traffic: 0req/sec"),
        "{ready}"
    );

    let nginx = Nginx::start(&site, &fpm);
    for _ in 0..3 {
        assert_eq!(get(&nginx.url("/hello.php")).status, 200);
    }
    let names = get(&nginx.url("/env_names.php")).text();
    for leaked in ["NOTIFY_SOCKET", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC"] {
        assert!(!names.lines().any(|n| n == leaked), "{leaked} reached php-cgi:\n{names}");
    }
    // The STATUS= line follows the traffic (refreshed every systemd_interval).
    let status = notify.wait_for(Duration::from_secs(10), |m| m.contains("Requests: 4,"));
    assert!(field(&status, "STATUS").is_some_and(|s| s.starts_with("Processes active: 0, idle: 2,")), "{status}");

    fpm.signal(libc::SIGUSR2);
    let reloading = notify.wait_for(Duration::from_secs(10), |m| m.contains("RELOADING=1"));
    let usec = field(&reloading, "MONOTONIC_USEC").and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "RELOADING=1 without MONOTONIC_USEC: {reloading}");
    let again = notify.wait_for(Duration::from_secs(20), |m| m.contains("READY=1"));
    assert!(again.contains("STATUS=Processes active: 0, idle: 2,"), "{again}");
    assert!(fpm.log_text().contains("configuration reloaded"), "{}", fpm.log_text());

    fpm.signal(libc::SIGTERM);
    notify.wait_for(Duration::from_secs(10), |m| m.contains("STOPPING=1"));
    assert!(fpm.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

#[test]
fn watchdog_pings_stop_when_a_pool_actor_hangs() {
    let site = Site::new();
    let config = write_config(&site, "", "");
    let mut notify = NotifySocket::bind(site.path());
    let fpm = start(&site, &config, &notify, &[("WATCHDOG_USEC", "1000000")]);
    notify.wait_for(Duration::from_secs(20), |m| m.contains("READY=1"));
    // Pinged every half interval while the actors run.
    for _ in 0..3 {
        notify.wait_for(Duration::from_secs(5), |m| m.contains("WATCHDOG=1"));
    }

    // Debug builds: SIGRTMIN+1 hangs the first pool's actor.
    fpm.signal(libc::SIGRTMIN() + 1);
    let withheld = wait_until(Duration::from_secs(10), || fpm.log_text().contains("withholding the systemd watchdog"));
    assert!(withheld, "the watchdog kept pinging:\n{}", fpm.log_text());
    notify.collect(Duration::from_millis(200));
    let after = notify.collect(Duration::from_secs(3));
    assert!(!after.iter().any(|m| m.contains("WATCHDOG=1")), "pings went on after the actor hung: {after:#?}");
}

#[test]
fn a_daemon_names_itself_as_main_pid() {
    let site = Site::new();
    let pid_file = site.path().join("rustfpm.pid");
    let config = write_config(&site, &format!("pid = \"{}\"", pid_file.display()), "");
    let mut notify = NotifySocket::bind(site.path());
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag: the daemon is adopted and reaped here.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    let status = Command::new(env!("CARGO_BIN_EXE_rustfpm"))
        .arg("--config")
        .arg(&config)
        .arg("-D")
        .env("NOTIFY_SOCKET", &notify.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let daemon = wait_file(&pid_file, Duration::from_secs(10)).and_then(|t| t.trim().parse::<i32>().ok());
    let _stop = daemon.map(StopOnDrop);
    assert!(status.success(), "rustfpm -D exited with {status}");
    let daemon = daemon.expect("the daemon wrote no pid file");
    let first = notify.wait_for(Duration::from_secs(10), |m| m.contains("MAINPID="));
    assert_eq!(field(&first, "MAINPID"), Some(daemon.to_string().as_str()), "{first}");
    let ready = notify.wait_for(Duration::from_secs(20), |m| m.contains("READY=1"));
    assert_eq!(field(&ready, "MAINPID"), Some(daemon.to_string().as_str()), "{ready}");
}

/// Stops the daemon (adopted: the test process is a subreaper) and reaps it.
struct StopOnDrop(i32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for sig in [libc::SIGTERM, libc::SIGKILL] {
            // SAFETY: kill(2) and waitpid(2) on the daemon this test started and adopted.
            unsafe { libc::kill(self.0, sig) };
            let mut status = 0;
            // SAFETY: as above; WNOHANG never blocks.
            if wait_until(
                Duration::from_secs(5),
                || unsafe { libc::waitpid(self.0, &mut status, libc::WNOHANG) } == self.0,
            ) {
                return;
            }
        }
    }
}
