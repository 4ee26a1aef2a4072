//! Listen sockets as php-fpm makes them: a bare port serves both address families (with
//! php-fpm's fallback to IPv4 and its words when the port is taken), and
//! `listen.acl_users`/`listen.acl_groups` reach the unix socket as a POSIX ACL; a php-fpm
//! config's backlog defaults to php-fpm's -1; a TOML `php_ini` must be absolute.

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// rustfpm in the foreground on the php-fpm INI config `ini` (written into `site`), its
/// log on stderr (`-O`); does not wait.
fn spawn_fpm(site: &Site, ini: &str) -> Rustfpm {
    let config = site.path().join("php-fpm.conf");
    std::fs::write(&config, ini).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_rustfpm"));
    command.arg("-y").arg(&config).args(["-n", "-F", "-O", "-R"]);
    Rustfpm::spawn(site, command, &config, &site.path().join("fpm.sock"))
}

/// A pool listening on `listen`, with `extra` lines.
fn ini(site: &Site, listen: &str, extra: &str) -> String {
    let user = if is_root() { "user = www-data\n" } else { "" };
    format!(
        "[global]\nerror_log = {}\n[www]\nlisten = {listen}\n{user}pm = static\npm.max_children = 1\nping.path = /ping\n{extra}",
        site.path().join("error.log").display()
    )
}

fn ready(fpm: &Rustfpm) {
    assert!(wait_until(WAIT, || fpm.log_text().contains("ready to handle connections")), "{}", fpm.log_text());
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn a_bare_port_serves_ipv4_and_ipv6() {
    let site = Site::new();
    let port = free_port();
    let fpm = spawn_fpm(&site, &ini(&site, &port.to_string(), ""));
    ready(&fpm);
    let mut upstreams = vec![format!("127.0.0.1:{port}")];
    if ipv6_available() {
        upstreams.push(format!("[::1]:{port}"));
    }
    for upstream in upstreams {
        let nginx = Nginx::start_upstream(&site, &upstream);
        let r = get(&nginx.url("/ping"));
        assert_eq!((r.status, r.text().as_str()), (200, "pong"), "through {upstream}");
    }
    assert!(!fpm.log_text().contains("Failed implicitly binding"), "{}", fpm.log_text());
}

#[test]
fn a_taken_bare_port_falls_back_to_ipv4_and_fails_in_php_fpms_words() {
    // [::] without IPV6_V6ONLY also holds the port's IPv4 addresses, as php-fpm's test takes it.
    let (busy, port) = match std::net::TcpListener::bind("[::]:0") {
        Ok(l) => {
            let port = l.local_addr().unwrap().port();
            (l, port)
        }
        Err(_) => {
            let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
            let port = l.local_addr().unwrap().port();
            (l, port)
        }
    };
    let site = Site::new();
    let mut fpm = spawn_fpm(&site, &ini(&site, &port.to_string(), ""));
    let status = fpm.wait_exit(WAIT).expect("rustfpm did not exit on a taken port");
    assert_eq!(status.code(), Some(78), "{}", fpm.log_text());
    let log = fpm.log_text();
    let messages: Vec<&str> =
        log.lines().filter_map(|l| l.split_once("] ").map(|(_, m)| m)).filter(|m| !m.starts_with("WARNING")).collect();
    let expected = [
        "NOTICE: Failed implicitly binding to ::, retrying with 0.0.0.0".to_string(),
        format!("ERROR: unable to bind listening socket for address '{port}': Address already in use (98)"),
        "ERROR: FPM initialization failed".to_string(),
    ];
    assert_eq!(messages, expected, "{log}");
    drop(busy);
}

#[test]
fn a_port_in_use_is_reported_once() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let site = Site::new();
    let (config, _) = Rustfpm::write_config(&site, &PoolOptions { tcp_port: Some(port), ..PoolOptions::default() });
    let mut command = Command::new(env!("CARGO_BIN_EXE_rustfpm"));
    command.arg("--config").arg(&config);
    let mut fpm = Rustfpm::spawn(&site, command, &config, &site.path().join("none.sock"));
    fpm.wait_exit(WAIT).expect("rustfpm did not exit on a taken port");
    let log = fpm.log_text();
    assert!(
        log.contains(&format!("[pool www] cannot listen on 127.0.0.1:{port}: Address already in use (os error 98)")),
        "{log}"
    );
    assert_eq!(log.matches("os error 98").count(), 1, "{log}");
}

/// The POSIX ACL of `path` as `getfacl -cp` prints it.
fn getfacl(path: &std::path::Path) -> String {
    require_file("/usr/bin/getfacl", "acl");
    let out = Command::new("/usr/bin/getfacl").arg("-cp").arg(path).output().unwrap();
    assert!(out.status.success(), "getfacl {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn acl_users_and_groups_get_read_and_write_on_the_socket() {
    let site = Site::new();
    let socket = site.path().join("fpm.sock");
    let extra =
        "listen.acl_users = daemon, bin,daemon\nlisten.acl_groups = sys\nlisten.mode = 0600\nlisten.owner = nobody\n";
    let fpm = spawn_fpm(&site, &ini(&site, &socket.display().to_string(), extra));
    ready(&fpm);
    let acl = getfacl(&socket);
    let expected = "user::rw-\nuser:daemon:rw-\nuser:bin:rw-\ngroup::---\ngroup:sys:rw-\nmask::rw-\nother::---\n\n";
    assert_eq!(acl, expected);
    assert!(
        fpm.log_text().contains("WARNING: [pool www] ACL set, listen.owner = 'nobody' is ignored"),
        "{}",
        fpm.log_text()
    );
    // The socket keeps rustfpm's owner (php-fpm does not chown it with an ACL), who reaches it.
    let ping = Command::new(env!("CARGO_BIN_EXE_rustfpm")).arg("ping").arg("--socket").arg(&socket).output().unwrap();
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));
}

#[test]
fn an_unknown_acl_user_fails_the_start_not_the_configuration_test() {
    let site = Site::new();
    let socket = site.path().join("fpm.sock").display().to_string();
    let text = ini(&site, &socket, "listen.acl_users = no-such-user-here\n");
    let config = site.path().join("php-fpm.conf");
    std::fs::write(&config, &text).unwrap();
    let test = Command::new(env!("CARGO_BIN_EXE_rustfpm")).arg("-t").arg("-y").arg(&config).output().unwrap();
    assert!(test.status.success(), "{}", String::from_utf8_lossy(&test.stderr));
    let mut fpm = spawn_fpm(&site, &text);
    let status = fpm.wait_exit(WAIT).expect("rustfpm did not exit");
    assert_eq!(status.code(), Some(78), "{}", fpm.log_text());
    assert!(fpm.log_text().contains("no user 'no-such-user-here'"), "{}", fpm.log_text());
}

#[test]
fn a_php_fpm_pool_without_a_backlog_queues_as_many_as_the_kernel_would() {
    let site = Site::new();
    let socket = site.path().join("fpm.sock");
    let fpm = spawn_fpm(&site, &ini(&site, &socket.display().to_string(), "pm.status_path = /status\n"));
    ready(&fpm);
    let nginx = Nginx::start(&site, &fpm);
    let json = get(&nginx.url("/status?json")).text();
    assert!(json.contains("\"listen queue len\":65535"), "php-fpm's default backlog is -1 on Linux: {json}");
}

#[test]
fn a_relative_php_ini_is_refused_before_it_can_name_another_file() {
    let site = Site::new();
    std::fs::write(site.path().join("php.ini"), "memory_limit = 64M\n").unwrap();
    let extra = "php_ini = \"php.ini\"\n".to_string();
    let (config, _) = Rustfpm::write_config(&site, &PoolOptions { extra, ..PoolOptions::default() });
    let mut test = Command::new(env!("CARGO_BIN_EXE_rustfpm"));
    let out = test.arg("-t").arg("--config").arg(&config).current_dir(site.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("php_ini = \"php.ini\": must be an absolute path"), "{stderr}");
}
