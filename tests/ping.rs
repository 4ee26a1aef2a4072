//! `rustfpm ping`: a real FastCGI request for a pool's ping page, over a unix
//! socket or TCP, exiting 0 with `OK: ...` or 1 with `FAIL: <reason>` (64 for
//! a usage mistake), as Docker `HEALTHCHECK` and Kubernetes exec probes want.

mod common;

use std::process::Command;

use common::*;

/// Runs `rustfpm ping ARGS`: (exit code, stdout).
fn ping(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rustfpm")).arg("ping").args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn with_ping_page(tcp_port: Option<u16>) -> PoolOptions {
    PoolOptions { extra: "ping_path = \"/ping\"\nping_response = \"pong!\"\n".into(), tcp_port, ..Default::default() }
}

#[test]
fn a_pool_with_a_ping_page_is_healthy_over_unix_and_tcp() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &with_ping_page(None));
    let (code, out) = ping(&["--socket", fpm.socket.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK: unix:") && out.contains("/ping with 200 (pong!)"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    drop(fpm);

    let port = free_port();
    let site = Site::new();
    let _fpm = Rustfpm::start(&site, &with_ping_page(Some(port)));
    let (code, out) = ping(&["--tcp", &format!("127.0.0.1:{port}"), "--path", "/ping"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with(&format!("OK: 127.0.0.1:{port} answered /ping")), "{out}");
}

#[test]
fn failures_exit_1_with_the_reason() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let socket = fpm.socket.to_str().unwrap();
    // No ping_path: the request reaches php-cgi, which has no such script.
    let (code, out) = ping(&["--socket", socket]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("FAIL: ") && out.contains("/ping with 404"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");

    let missing = site.path().join("nobody.sock");
    let (code, out) = ping(&["--socket", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("FAIL: cannot connect to unix:") && out.contains("nobody.sock"), "{out}");

    let (code, out) = ping(&["--tcp", &format!("127.0.0.1:{}", free_port())]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot connect to 127.0.0.1:"), "{out}");

    // A peer that takes the connection and never answers: said as a timeout.
    let silent = site.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let (code, out) = ping(&["--socket", silent.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no answer within 5 s"), "{out}");
}

#[test]
fn usage_mistakes_exit_64() {
    for args in [&[][..], &["--socket"][..], &["--tcp", "127.0.0.1"][..], &["--bogus"][..]] {
        let (code, out) = ping(args);
        assert_eq!(code, 64, "{args:?}: {out}");
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
}
