//! The short php-cgi runs a pool asks for (`php-cgi -i`, for the settings the
//! `fastcgi_finish_request()` polyfill needs) are started, killed and reaped by
//! rustfpm's supervisor: one that never answers costs the pool its phpinfo,
//! not its start, and leaves no process behind.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The processes under rustfpm named `comm`.
fn descendants_named(fpm: &Rustfpm, comm: &str) -> Vec<i32> {
    descendants(fpm.pid()).into_iter().filter(|p| proc_stat(*p).is_some_and(|(c, _, _)| c == comm)).collect()
}

/// A php_cgi that serves as php-cgi does but, asked `-i`, hangs with its stdout open.
fn hanging_php_cgi(path: &Path) {
    let body = "for arg in \"$@\"; do\n  [ \"$arg\" = -i ] && exec sleep 300\ndone\nexec php-cgi \"$@\"\n";
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_php_cgi_that_never_answers_dash_i_is_killed_and_reaped_and_the_pool_serves() {
    let site = Site::new();
    let php_cgi = site.path().join("hanging-php-cgi");
    hanging_php_cgi(&php_cgi);
    let opts =
        PoolOptions { children: 2, extra: format!("php_cgi = \"{}\"\n", php_cgi.display()), ..Default::default() };
    let (config, socket) = Rustfpm::write_config(&site, &opts);
    let mut command = Command::new(env!("CARGO_BIN_EXE_rustfpm"));
    command.arg("--config").arg(&config);
    let fpm = Rustfpm::spawn(&site, command, &config, socket.as_deref().unwrap());
    let hung = wait_until(Duration::from_secs(30), || !descendants_named(&fpm, "sleep").is_empty());
    assert!(hung, "php_cgi -i never ran under rustfpm:\n{}", fpm.log_text());
    let ready = wait_until(Duration::from_secs(30), || fpm.log_text().contains("ready to handle connections"));
    assert!(ready, "rustfpm did not start:\n{}", fpm.log_text());
    let log = fpm.log_text();
    assert!(log.contains("did not answer within"), "no log line says -i was given up on:\n{log}");
    let reaped = wait_until(Duration::from_secs(10), || descendants_named(&fpm, "sleep").is_empty());
    assert!(reaped, "the php_cgi -i process outlived its limit: {:?}", descendants_named(&fpm, "sleep"));
    let serving = wait_until(Duration::from_secs(10), || fpm.php_pids().len() > 2);
    assert!(serving, "the pool's php-cgi did not start after -i was given up on:\n{}", fpm.log_text());
}

/// `pcntl_fork` is disabled with a `-d disable_functions=` that carries the list php-cgi
/// already has; when php-cgi does not say what that list is (no phpinfo), the list is left
/// alone: a `-d` built from the pool's config alone re-enabled what conf.d disabled.
#[test]
fn without_a_phpinfo_the_disabled_functions_are_left_as_they_are() {
    let site = Site::new();
    let php_cgi = site.path().join("hanging-php-cgi");
    hanging_php_cgi(&php_cgi);
    let confd = site.path().join("conf.d");
    std::fs::create_dir(&confd).unwrap();
    std::fs::write(confd.join("99-site.ini"), "disable_functions = exec,system\n").unwrap();
    let opts = PoolOptions {
        children: 1,
        extra: format!("php_cgi = \"{}\"\n", php_cgi.display()),
        tables: format!("[pool.www.env]\nPHP_INI_SCAN_DIR = \"{}\"\n", confd.display()),
        ..Default::default()
    };
    let stack = Stack::with(opts);
    let r = get(&stack.url("/fork_check.php"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("exec=false"), "conf.d's disable_functions was replaced: {}", r.text());
    assert!(stack.fpm.log_text().contains("pcntl_fork() is not disabled"), "{}", stack.fpm.log_text());
}

/// A `php_cgi` wrapper that gives php-cgi its own php.ini (`PHPRC`, as fcgid/suexec
/// wrappers do) keeps it: the `-c` rustfpm adds names the php.ini php-cgi read for its
/// phpinfo, not the one it was built with.
#[test]
fn a_wrappers_own_php_ini_is_kept() {
    let site = Site::new();
    let ini = site.path().join("siteini");
    std::fs::create_dir(&ini).unwrap();
    std::fs::write(ini.join("php.ini"), "memory_limit = 77M\n").unwrap();
    let wrapper = site.path().join("php-cgi-wrapper");
    std::fs::write(&wrapper, format!("#!/bin/sh\nPHPRC={}\nexport PHPRC\nexec php-cgi \"$@\"\n", ini.display()))
        .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let opts =
        PoolOptions { children: 1, extra: format!("php_cgi = \"{}\"\n", wrapper.display()), ..Default::default() };
    let stack = Stack::with(opts);
    let r = get(&stack.url("/http_ini.php"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("memory_limit='77M'"), "the wrapper's php.ini was overridden: {}", r.text());
}
