//! Drop-in on Debian's own php-fpm configuration: rustfpm reads
//! /etc/php/8.2/fpm/php-fpm.conf unchanged (pool.d/www.conf: www-data, the
//! /run/php socket, pm dynamic) and serves PHP behind nginx's Debian snippet.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const FPM_CONF: &str = "/etc/php/8.2/fpm/php-fpm.conf";
const SOCKET: &str = "/run/php/php8.2-fpm.sock";

#[test]
fn serves_with_debians_php_fpm_conf() {
    require_file(FPM_CONF, "php8.2-fpm");
    require_root("it runs Debian's pool as www-data");
    let busy = std::os::unix::net::UnixStream::connect(SOCKET).is_ok();
    assert!(!busy, "a php-fpm is serving {SOCKET}: stop it (systemctl stop php8.2-fpm) to run this test");
    std::fs::create_dir_all("/run/php").unwrap();
    let site = Site::new();
    site.script(
        "whoami.php",
        "<?php echo posix_getpwuid(posix_geteuid())['name'], ' ', php_sapi_name(), ' ', ini_get('memory_limit');",
    );
    site.script("paths.php", "<?php echo $_SERVER['SCRIPT_NAME'], '|', $_SERVER['PATH_INFO'] ?? '', '|', $_GET['q'];");
    let args = ["-y", FPM_CONF, "-c", "/etc/php/8.2/fpm/php.ini", "-d", "memory_limit=77M", "-O", "-F"];
    let _fpm = Rustfpm::start_args(&site, &args, Path::new(FPM_CONF), Path::new(SOCKET));
    // nginx resolves the snippet's includes next to its config file, as in /etc/nginx.
    for name in ["snippets", "fastcgi.conf"] {
        std::os::unix::fs::symlink(Path::new("/etc/nginx").join(name), site.path().join(name)).unwrap();
    }
    let nginx = Nginx::start_http(&site, &debian_site(&site));
    let r = get(&nginx.url("/whoami.php"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "www-data cgi-fcgi 77M");
    // The snippet splits PATH_INFO off and passes the query string.
    let r = get(&nginx.url("/paths.php/extra/info?q=7"));
    assert_eq!((r.status, r.text().as_str()), (200, "/paths.php|/extra/info|7"));
    // try_files in the snippet answers a missing script itself.
    assert_eq!(get(&nginx.url("/missing.php")).status, 404);
    let meta = std::fs::metadata(SOCKET).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.mode() & 0o777, 0o660);
}

/// The PHP block of Debian's default nginx site (`sites-available/default`),
/// uncommented, with the site's docroot and a location that also takes
/// `/script.php/path/info` (Debian's `\.php$` would not).
fn debian_site(site: &Site) -> String {
    format!(
        r#"
  server {{
    listen 127.0.0.1:{{port}};
    root {www};
    index index.php index.html;
    location ~ [^/]\.php(/|$) {{
      include snippets/fastcgi-php.conf;
      fastcgi_pass unix:{SOCKET};
    }}
  }}
"#,
        www = site.www().display()
    )
}

#[test]
fn convert_then_check_gives_the_same_config() {
    require_file(FPM_CONF, "php8.2-fpm");
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
