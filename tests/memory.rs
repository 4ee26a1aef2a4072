//! DESIGN.md's memory targets at CI size (scripts/bench/memory.sh measures the full ones):
//! a 256 MiB upload streamed through nginx grows rustfpm's RSS by less than 16 MiB and PHP
//! reads every byte; with 64 children and 1,000 idle kept FastCGI connections rustfpm's own
//! RSS stays within 30 MiB. Resource bounds, not timing.

mod common;
use common::fcgi::{exchange, get_params, request_with_flags, IO_TIMEOUT};
use common::load::{open_fds, rss_kib};
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

use rustfpm::fastcgi::FCGI_KEEP_CONN;
use rustfpm::sys::rlimit::set_open_files;

const MIB: usize = 1 << 20;

/// PHP settings that let php://input stream a body of any size: no `post_max_size`, and no
/// reading of the body before the script does (PHP would spool it to a temp file).
const STREAMING_INPUT: &str = "[pool.www.php_admin_value]\nenable_post_data_reading = \"0\"\npost_max_size = \"0\"\n";

#[test]
fn a_256_mib_upload_streams_through_with_rss_growth_under_16_mib() {
    const BODY_MIB: usize = 256;
    let site = Site::new();
    let fpm =
        Rustfpm::start(&site, &PoolOptions { children: 2, tables: STREAMING_INPUT.into(), ..PoolOptions::default() });
    let nginx = Nginx::start_http(
        &site,
        &format!(
            r#"
  server {{
    listen 127.0.0.1:{{port}};
    root {www};
    location / {{
      fastcgi_request_buffering off;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_pass unix:{sock};
    }}
  }}
"#,
            www = site.www().display(),
            sock = fpm.socket.display(),
        ),
    );
    let before = rss_kib(fpm.pid());
    let mut top = before;
    let mut s = TcpStream::connect(("127.0.0.1", nginx.port)).unwrap_or_else(|e| panic!("connect to nginx: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("set a read timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("set a write timeout");
    let total = BODY_MIB * MIB;
    let head = format!(
        "POST /mem_input_count.php HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {total}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("send the request head");
    let piece = vec![b'x'; MIB];
    for i in 0..BODY_MIB {
        s.write_all(&piece).unwrap_or_else(|e| panic!("send MiB {i} of {BODY_MIB}: {e}"));
        if i % 4 == 3 {
            top = top.max(rss_kib(fpm.pid()));
        }
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap_or_else(|e| panic!("read the answer: {e}"));
    top = top.max(rss_kib(fpm.pid()));
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in the answer: {answer:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "upload answered {head:?}; rustfpm log:\n{}", fpm.log_text());
    assert_eq!(body.trim(), total.to_string(), "PHP read a different number of bytes than were sent");
    let growth = top.saturating_sub(before);
    eprintln!("rustfpm's RSS: {before} KiB before a {BODY_MIB} MiB upload, {top} KiB at most (+{growth} KiB)");
    assert!(
        growth < 16 * 1024,
        "rustfpm's RSS grew by {growth} KiB ({before} KiB before, {top} KiB at most) over a {BODY_MIB} MiB upload"
    );
}

/// Raises this process's open-files limit (rustfpm, started later, inherits it) to at
/// least `want` with rustfpm's own `set_open_files`: the soft limit to the hard one, then
/// both to `want` if that is not enough (as root).
fn raise_nofile(want: u64) {
    let soft = set_open_files(None).unwrap_or_else(|e| panic!("{e}"));
    if soft < want {
        set_open_files(Some(want)).unwrap_or_else(|e| panic!("{e} (run as root, or raise the hard limit)"));
    }
}

#[test]
fn sixty_four_children_and_1000_idle_kept_connections_fit_in_30_mib() {
    const CHILDREN: usize = 64;
    const CONNS: usize = 1000;
    // The test's ends of the connections, rustfpm's ends and its children's.
    raise_nofile((2 * CONNS + 4 * CHILDREN + 256) as u64);
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions { children: CHILDREN, ..PoolOptions::default() });
    fpm.php_pids_once_started(CHILDREN);
    let fds_before = open_fds(fpm.pid());
    // Open the connections straight to rustfpm's socket, as nginx's keepalive cache holds
    // them: each has served one kept request and then sits idle.
    let params = get_params(&site, "hello.php", "");
    let params: Vec<(&str, &[u8])> = params.iter().map(|(name, value)| (*name, &value[..])).collect();
    let request = request_with_flags(&params, FCGI_KEEP_CONN);
    let mut conns = Vec::with_capacity(CONNS);
    for i in 0..CONNS {
        let what = format!("connection {i}");
        let mut s = UnixStream::connect(&fpm.socket)
            .unwrap_or_else(|e| panic!("{what}: connect to {}: {e}", fpm.socket.display()));
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("set a read timeout");
        let out = exchange(&mut s, &request).stdout;
        assert!(out.ends_with("Hello, world\n"), "{what}: hello.php answered {out:?}");
        conns.push(s);
    }
    let held = open_fds(fpm.pid()).saturating_sub(fds_before);
    assert!(held >= CONNS, "rustfpm holds {held} more descriptors than before, expected the {CONNS} connections");
    let rss = rss_kib(fpm.pid());
    eprintln!(
        "rustfpm's RSS with {CHILDREN} children and {CONNS} idle connections ({held} more descriptors): {rss} KiB"
    );
    assert!(
        rss <= 30 * 1024,
        "rustfpm's RSS is {rss} KiB with {CHILDREN} children and {CONNS} idle connections (target 30 MiB)"
    );
    // They are still live kept connections, not ones rustfpm dropped.
    for i in [0, CONNS / 2, CONNS - 1] {
        let out = exchange(&mut conns[i], &request).stdout;
        assert!(out.ends_with("Hello, world\n"), "connection {i}: the second request answered {out:?}");
    }
}
