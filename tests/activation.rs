//! Socket activation with systemd's own `systemd-socket-activate`: a pool
//! serves on the socket systemd passed (matched by address, or by
//! `FileDescriptorName=` = pool name), keeps it across reloads, never unlinks
//! it, and php-cgi sees neither the socket nor `LISTEN_*`. The shipped units
//! pass `systemd-analyze verify`, and rustfpm works with only the
//! capabilities the unit's `CapabilityBoundingSet=` leaves it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd");

/// A pool of 2 children on `listen` that keeps rustfpm's environment, with `extra` lines.
fn config(site: &Site, listen: impl std::fmt::Display, extra: &str) -> PathBuf {
    let opts = PoolOptions { children: 2, extra: format!("clear_env = false\n{extra}"), ..Default::default() };
    site.write_config(&opts.config_text(listen))
}

/// systemd's `systemd-socket-activate`, which scripts/test.sh installs.
fn socket_activate() -> Command {
    require_file("/usr/bin/systemd-socket-activate", "systemd");
    Command::new("systemd-socket-activate")
}

/// `systemd-socket-activate -l SOCKET [--fdname=NAME] rustfpm --config CONFIG`:
/// rustfpm starts (as the same process) at the first connection.
fn activate(site: &Site, socket: &Path, fdname: Option<&str>, config: &Path) -> Rustfpm {
    let mut cmd = socket_activate();
    cmd.arg("-l").arg(socket);
    if let Some(name) = fdname {
        cmd.arg(format!("--fdname={name}"));
    }
    cmd.args(["-E", "PATH", "-E", "RUSTFPM_TEST_SECRET=must-not-leak"]);
    cmd.arg(env!("CARGO_BIN_EXE_rustfpm")).arg("--config").arg(config);
    let fpm = Rustfpm::spawn(site, cmd, config, socket);
    let listening = wait_until(Duration::from_secs(10), || socket.exists());
    assert!(listening, "systemd-socket-activate did not listen:\n{}", fpm.log_text());
    // What SocketMode= does under systemd: nginx (www-data) may connect.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    fpm
}

/// The inode of the socket that fd 3 (the first passed socket) of `pid` is.
fn passed_socket(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/3")).map(|p| p.display().to_string()).unwrap_or_default()
}

fn holds(pid: i32, target: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.display().to_string() == target))
}

#[test]
fn a_pool_serves_on_the_socket_systemd_passed_across_reloads() {
    let site = Site::new();
    site.script("env_names.php", "<?php foreach (getenv() as $k => $v) { echo \"$k\\n\"; }");
    let socket = site.path().join("activated.sock");
    let config = config(&site, socket.display(), "");
    let fpm = activate(&site, &socket, None, &config);
    let inode = std::fs::metadata(&socket).unwrap().ino();
    let nginx = Nginx::start(&site, &fpm);

    // The first connection starts rustfpm, which serves it on the passed socket.
    assert_eq!(get(&nginx.url("/hello.php")).status, 200, "{}", fpm.log_text());
    let log = fpm.log_text();
    assert!(log.contains("uses the socket systemd passed (fd 3"), "{log}");
    assert!(!log.contains("another process is already listening"), "{log}");
    let names = get(&nginx.url("/env_names.php")).text();
    for leaked in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "RUSTFPM_TEST_SECRET"] {
        assert!(!names.lines().any(|n| n == leaked), "{leaked} reached php-cgi:\n{names}");
    }
    let passed = passed_socket(fpm.pid());
    assert!(passed.starts_with("socket:["), "fd 3 of rustfpm is {passed:?}");
    let php = fpm.php_pids_once_started(2);
    assert!(!php.iter().any(|p| holds(*p, &passed)), "php-cgi inherited the passed socket {passed}");

    fpm.signal(libc::SIGUSR2);
    let reloaded = wait_until(Duration::from_secs(20), || fpm.log_text().contains("configuration reloaded"));
    assert!(reloaded, "{}", fpm.log_text());
    for _ in 0..4 {
        assert_eq!(get(&nginx.url("/hello.php")).status, 200, "{}", fpm.log_text());
    }
    assert_eq!(passed_socket(fpm.pid()), passed, "the passed socket was replaced");

    let mut fpm = fpm;
    fpm.signal(libc::SIGTERM);
    assert!(fpm.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "{}", fpm.log_text());
    // systemd's socket file: never unlinked by rustfpm.
    assert_eq!(std::fs::metadata(&socket).map(|m| m.ino()).ok(), Some(inode), "the socket file was removed");
}

#[test]
fn a_socket_named_after_the_pool_is_taken_whatever_listen_says() {
    let site = Site::new();
    let socket = site.path().join("named.sock");
    let configured = site.path().join("configured.sock");
    let config = config(&site, configured.display(), "");
    let fpm = activate(&site, &socket, Some("www"), &config);
    let nginx = Nginx::start_upstream(&site, &format!("unix:{}", socket.display()));
    assert_eq!(get(&nginx.url("/hello.php")).status, 200, "{}", fpm.log_text());
    assert!(fpm.log_text().contains("name 'www'"), "{}", fpm.log_text());
    assert!(!configured.exists(), "rustfpm bound its listen path although systemd passed the pool's socket");
}

/// A passed socket that no pool takes would leave its clients waiting for ever
/// (systemd keeps it listening): rustfpm refuses to start, saying which.
#[test]
fn a_socket_no_pool_takes_is_refused_at_start() {
    let site = Site::new();
    let socket = site.path().join("typo.sock");
    let config = config(&site, site.path().join("www.sock").display(), "");
    let mut cmd = socket_activate();
    cmd.arg("-l").arg(&socket).arg("--fdname=ww").args(["-E", "PATH"]);
    cmd.arg(env!("CARGO_BIN_EXE_rustfpm")).arg("--config").arg(&config);
    let mut fpm = Rustfpm::spawn(&site, cmd, &config, &socket);
    assert!(wait_until(Duration::from_secs(10), || socket.exists()), "systemd-socket-activate did not listen");
    // The first connection starts rustfpm.
    let _client = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let status = fpm.wait_exit(Duration::from_secs(10)).expect("rustfpm kept running with a socket no pool takes");
    assert_eq!(status.code(), Some(78), "{}", fpm.log_text());
    assert!(fpm.log_text().contains("(name 'ww') that no pool's listen matches"), "{}", fpm.log_text());
}

#[test]
fn a_tcp_socket_is_matched_by_address() {
    let site = Site::new();
    let port = free_port();
    let config = config(&site, format!("127.0.0.1:{port}"), "");
    let mut cmd = socket_activate();
    cmd.arg("-l").arg(format!("127.0.0.1:{port}")).args(["-E", "PATH"]);
    cmd.arg(env!("CARGO_BIN_EXE_rustfpm")).arg("--config").arg(&config);
    let fpm = Rustfpm::spawn(&site, cmd, &config, Path::new(""));
    let listening = wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(listening, "systemd-socket-activate did not listen:\n{}", fpm.log_text());
    let nginx = Nginx::start_upstream(&site, &format!("127.0.0.1:{port}"));
    assert_eq!(get(&nginx.url("/hello.php")).status, 200, "{}", fpm.log_text());
    assert!(fpm.log_text().contains(&format!("bound to 127.0.0.1:{port}")), "{}", fpm.log_text());
}

/// The shipped units, with this build's paths, as systemd itself reads them.
#[test]
fn the_shipped_units_pass_systemd_analyze_verify() {
    let site = Site::new();
    let config = config(&site, site.path().join("rustfpm.sock").display(), "");
    let dir = site.path().join("units");
    std::fs::create_dir(&dir).unwrap();
    for unit in ["rustfpm.service", "rustfpm.socket"] {
        let text = std::fs::read_to_string(Path::new(UNITS).join(unit)).unwrap();
        let text = text
            .replace("/usr/local/bin/rustfpm", env!("CARGO_BIN_EXE_rustfpm"))
            .replace("/etc/rustfpm/rustfpm.toml", &config.display().to_string());
        std::fs::write(dir.join(unit), text).unwrap();
    }
    require_file("/usr/bin/systemd-analyze", "systemd");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("rustfpm.service"))
        .arg(dir.join("rustfpm.socket"))
        .output()
        .expect("run systemd-analyze (apt-get install systemd)");
    let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {}\n{said}", out.status);
    let service = std::fs::read_to_string(dir.join("rustfpm.service")).unwrap();
    assert!(service.lines().any(|l| l == "Type=notify"), "{service}");
}

/// The capabilities rustfpm.service leaves (`CapabilityBoundingSet=`), in setpriv's spelling.
fn unit_capabilities() -> String {
    let text = std::fs::read_to_string(Path::new(UNITS).join("rustfpm.service")).unwrap();
    let caps: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .flat_map(|l| l.split_whitespace())
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    assert!(!caps.is_empty(), "rustfpm.service sets no CapabilityBoundingSet=");
    caps.join(",")
}

/// With only the unit's capabilities: children run as the pool's user, their
/// connections are traced to their pids, and a child is recycled by signal.
#[test]
fn rustfpm_works_with_only_the_units_capabilities() {
    require_root("capabilities matter only there");
    let site = Site::new();
    let socket = site.path().join("rustfpm.sock");
    let extra = "pm_max_requests = 2\npm_status_path = \"/status\"\n";
    let config = config(&site, socket.display(), extra);
    require_file("/usr/bin/setpriv", "util-linux");
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--bounding-set=-all,{}", unit_capabilities()));
    cmd.arg(env!("CARGO_BIN_EXE_rustfpm")).arg("--config").arg(&config);
    let fpm = Rustfpm::spawn(&site, cmd, &config, &socket);
    fpm.wait_ready();
    let status = std::fs::read_to_string(format!("/proc/{}/status", fpm.pid())).unwrap();
    let cap_bnd = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap_or_default().to_string();
    assert!(!cap_bnd.ends_with("000001ffffffffff"), "the bounding set was not limited: {cap_bnd}");

    let nginx = Nginx::start(&site, &fpm);
    for _ in 0..6 {
        let r = get(&nginx.url("/lc_whoami.php"));
        assert_eq!(r.status, 200, "{}\n{}", r.text(), fpm.log_text());
        assert_eq!(r.text().trim(), "33", "php-cgi does not run as www-data");
    }
    // pm_max_requests = 2 with 2 children: 8 requests need at least 4 children, so the
    // first ones were killed (a kill that failed would leave them serving).
    let mut pids: Vec<String> = (0..8).map(|_| get(&nginx.url("/lc_pid.php")).text()).collect();
    pids.sort();
    pids.dedup();
    assert!(pids.len() >= 4, "children were not replaced: pids {pids:?}\n{}", fpm.log_text());
    // Every slot shows a real pid once php-cgi has re-forked the children killed last.
    let mut full = String::new();
    let found = wait_until(Duration::from_secs(5), || {
        full = get(&nginx.url("/status?full")).text();
        !full.contains("pid:                  0\n")
    });
    assert!(found, "a child's pid was not found:\n{full}");
    let log = fpm.log_text();
    assert!(!log.contains("Operation not permitted") && !log.contains("EPERM"), "{log}");
}
