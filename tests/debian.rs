//! Drop-in on Debian's own php-fpm configuration: rustfpm reads
//! /etc/php/8.2/fpm/php-fpm.conf unchanged (pool.d/www.conf: www-data, the
//! /run/php socket, pm dynamic) and serves PHP behind nginx's Debian snippet.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const FPM_CONF: &str = "/etc/php/8.2/fpm/php-fpm.conf";
const SOCKET: &str = "/run/php/php8.2-fpm.sock";

#[test]
fn serves_with_debians_php_fpm_conf() {
    if !std::path::Path::new(FPM_CONF).exists() || !is_root() {
        eprintln!("php8.2-fpm's config is not installed or not root; skipped");
        return;
    }
    if std::os::unix::net::UnixStream::connect(SOCKET).is_ok() {
        eprintln!("a php-fpm is serving {SOCKET}; skipped");
        return;
    }
    std::fs::create_dir_all("/run/php").unwrap();
    let site = Site::new();
    site.script(
        "whoami.php",
        "<?php echo posix_getpwuid(posix_geteuid())['name'], ' ', php_sapi_name(), ' ', ini_get('memory_limit');",
    );
    let log = site.path().join("rustfpm.log");
    let child = Command::new(env!("CARGO_BIN_EXE_rustfpm"))
        .args(["-y", FPM_CONF, "-c", "/etc/php/8.2/fpm/php.ini", "-d", "memory_limit=77M", "-O", "-F"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let fpm = Rustfpm { child: Some(child), socket: SOCKET.into(), config: FPM_CONF.into(), log };
    assert!(
        wait_until(Duration::from_secs(10), || fpm.log_text().contains("ready to handle connections")),
        "{}",
        fpm.log_text()
    );
    let nginx = Nginx::start_upstream(&site, &format!("unix:{SOCKET}"));
    let r = get(&nginx.url("/whoami.php"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "www-data cgi-fcgi 77M");
    let meta = std::fs::metadata(SOCKET).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.mode() & 0o777, 0o660);
}

#[test]
fn convert_then_check_gives_the_same_config() {
    if !std::path::Path::new(FPM_CONF).exists() {
        eprintln!("php8.2-fpm's config is not installed; skipped");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_rustfpm")).args(["convert", FPM_CONF]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let toml = String::from_utf8(out.stdout).unwrap();
    assert!(toml.contains("pm = \"dynamic\"") && toml.contains("user = \"www-data\""), "{toml}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("converted.toml");
    std::fs::write(&path, &toml).unwrap();
    let dumped = Command::new(env!("CARGO_BIN_EXE_rustfpm")).args(["-tt", "--config"]).arg(&path).output().unwrap();
    assert!(dumped.status.success(), "{}", String::from_utf8_lossy(&dumped.stderr));
    let again = String::from_utf8(dumped.stdout).unwrap();
    let body = |s: &str| s.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&again), body(&toml));
}
