//! Requests that nginx gives up on (the browser went away), or that rustfpm
//! stops relaying: the worker stays busy until its child has ended the
//! request, `request_terminate_timeout` still kills that child by its pid, and
//! the next request is served. Spoken as raw FastCGI on the pool's socket, the
//! way nginx speaks it, with blocking std sockets.

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long a test waits for anything before calling it a hang.
const HANG: Duration = Duration::from_secs(30);

fn record(kind: u8, content: &[u8]) -> Vec<u8> {
    let padding = (8 - content.len() % 8) % 8;
    let mut out = vec![1, kind, 0, 1];
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.extend_from_slice(&[padding as u8, 0]);
    out.extend_from_slice(content);
    out.resize(out.len() + padding, 0);
    out
}

fn pair(out: &mut Vec<u8>, name: &str, value: &str) {
    for len in [name.len(), value.len()] {
        if len < 128 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
        }
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(value.as_bytes());
}

/// A request's head for `script` of the site, with `body_len` bytes of body
/// announced; the body records are not included.
fn request_head(site: &Site, script: &str, body_len: usize) -> Vec<u8> {
    let filename = site.www().join(script);
    let method = if body_len > 0 { "POST" } else { "GET" };
    let mut params = Vec::new();
    for (k, v) in [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", method),
        ("SCRIPT_FILENAME", filename.to_str().unwrap()),
        ("SCRIPT_NAME", &format!("/{script}")),
        ("REQUEST_URI", &format!("/{script}")),
        ("DOCUMENT_ROOT", site.www().to_str().unwrap()),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("CONTENT_LENGTH", &body_len.to_string()),
        ("CONTENT_TYPE", "application/octet-stream"),
    ] {
        pair(&mut params, k, v);
    }
    let mut out = record(1, &[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend(record(4, &params));
    out.extend(record(4, b""));
    out
}

/// A whole GET request.
fn get(site: &Site, script: &str) -> Vec<u8> {
    let mut out = request_head(site, script, 0);
    out.extend(record(5, b""));
    out
}

/// Sends `request` on a new connection; returns the STDOUT of the response.
fn fetch(socket: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).expect("connect to the pool");
    stream.set_read_timeout(Some(HANG)).unwrap();
    stream.write_all(request).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("a response before the hang limit");
    stdout_of(&reply)
}

/// The STDOUT content of a response's records.
fn stdout_of(mut bytes: &[u8]) -> String {
    let mut out = Vec::new();
    while bytes.len() >= 8 {
        let len = u16::from_be_bytes([bytes[4], bytes[5]]) as usize;
        let end = (8 + len + bytes[6] as usize).min(bytes.len());
        if bytes[1] == 6 {
            out.extend_from_slice(&bytes[8..(8 + len).min(bytes.len())]);
        }
        bytes = &bytes[end..];
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn wait_for_file(path: &Path) {
    assert!(wait_until(HANG, || path.exists()), "{} never appeared", path.display());
}

/// The issue's reproduction: a request abandoned while its script spins
/// without output. `request_terminate_timeout` kills that child (its real pid,
/// its script in the log line), and the request queued behind it is served.
#[test]
fn abandoned_spinning_request_is_killed_and_the_next_is_served() {
    let site = Site::new();
    let started = site.scratch().join("started");
    site.script(
        "spin.php",
        &format!(
            "<?php touch('{}'); $end = microtime(true) + 60; while (microtime(true) < $end) {{}} echo 'spun';",
            started.display()
        ),
    );
    site.script("hello.php", "<?php echo 'hello';");
    let opts = PoolOptions { children: 1, extra: "request_terminate_timeout = \"2s\"".into(), ..Default::default() };
    let fpm = Rustfpm::start(&site, &opts);
    let mut spinning = UnixStream::connect(&fpm.socket).unwrap();
    spinning.write_all(&get(&site, "spin.php")).unwrap();
    wait_for_file(&started);
    drop(spinning);

    assert_eq!(fetch(&fpm.socket, &get(&site, "hello.php")).split("\r\n\r\n").nth(1), Some("hello"));
    assert_eq!(fetch(&fpm.socket, &get(&site, "hello.php")).split("\r\n\r\n").nth(1), Some("hello"));
    let log = fpm.wait_logged("terminating");
    let line = log.lines().find(|l| l.contains("terminating")).unwrap_or_else(|| panic!("no kill logged:\n{log}"));
    assert!(line.contains("spin.php") && line.contains("abandoned by the web server"), "{line}");
    let pid: i32 = line.split("child ").nth(1).and_then(|r| r.split(',').next()).and_then(|p| p.parse().ok()).unwrap();
    assert!(pid > 1, "{line}");
    assert!(!log.contains("hello.php' executing too slow"), "{log}");
}

/// A worker whose request was abandoned is not lent again until its child has
/// ended that request, and the script sees the abort at its next output, as
/// under php-fpm (`connection_status()` is CONNECTION_ABORTED).
#[test]
fn abandoned_request_keeps_its_worker_until_the_script_ends() {
    let site = Site::new();
    let scratch = site.scratch();
    let (started, gate, done, status) =
        (scratch.join("started"), scratch.join("gate"), scratch.join("done"), scratch.join("status"));
    site.script(
        "gated.php",
        &format!(
            "<?php register_shutdown_function(function () {{ file_put_contents('{status}', connection_status()); }});
            touch('{started}');
            while (!file_exists('{gate}')) usleep(10000);
            touch('{done}');
            for ($i = 0; $i < 100; $i++) {{ echo str_repeat('x', 8192), \"\\n\"; flush(); usleep(20000); }}",
            status = status.display(),
            started = started.display(),
            gate = gate.display(),
            done = done.display(),
        ),
    );
    site.script("check.php", &format!("<?php echo file_exists('{}') ? 'after' : 'before';", done.display()));
    let opts = PoolOptions { children: 1, extra: "pm_status_path = \"/status\"".into(), ..Default::default() };
    let fpm = Rustfpm::start(&site, &opts);

    let mut gated = UnixStream::connect(&fpm.socket).unwrap();
    gated.write_all(&get(&site, "gated.php")).unwrap();
    wait_for_file(&started);
    drop(gated);
    let socket = fpm.socket.clone();
    let check = get(&site, "check.php");
    let queued = std::thread::spawn(move || fetch(&socket, &check));

    // The only child still runs the abandoned script: the pool counts it busy,
    // and the new request waits in rustfpm's queue for the worker, instead of
    // being written to a child that is still busy.
    let waiting = wait_until(HANG, || {
        let page = fetch(&fpm.socket, &status_request(&site));
        page.contains("listen queue:         1") && page.contains("active processes:     1")
    });
    assert!(waiting, "{}", fetch(&fpm.socket, &status_request(&site)));
    assert!(!queued.is_finished());
    std::fs::write(&gate, "").unwrap();

    let answer = queued.join().unwrap();
    assert_eq!(answer.split("\r\n\r\n").nth(1), Some("after"), "{answer}");
    wait_for_file(&status);
    // CONNECTION_ABORTED (1): the script was stopped at its first output.
    assert_eq!(std::fs::read_to_string(&status).unwrap(), "1");
}

fn status_request(site: &Site) -> Vec<u8> {
    let mut params = Vec::new();
    for (k, v) in [
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", "/status"),
        ("SCRIPT_FILENAME", &site.www().join("status").display().to_string()),
        ("REQUEST_URI", "/status"),
    ] {
        pair(&mut params, k, v);
    }
    let mut out = record(1, &[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend(record(4, &params));
    out.extend(record(4, b""));
    out.extend(record(5, b""));
    out
}

/// `request_terminate_timeout` also fires while rustfpm is blocked writing a
/// response to a web server that does not read it.
#[test]
fn timeout_fires_while_the_web_server_does_not_read() {
    let site = Site::new();
    // It keeps running after the abort, so only the timeout ends it.
    let started = site.scratch().join("started");
    site.script(
        "big.php",
        &format!(
            "<?php ignore_user_abort(true); touch('{}'); echo str_repeat('x', 64 << 20); sleep(60);",
            started.display()
        ),
    );
    site.script("hello.php", "<?php echo 'hello';");
    let opts = PoolOptions { children: 1, extra: "request_terminate_timeout = \"2s\"".into(), ..Default::default() };
    let fpm = Rustfpm::start(&site, &opts);
    let mut stalled = UnixStream::connect(&fpm.socket).unwrap();
    stalled.write_all(&get(&site, "big.php")).unwrap();
    wait_for_file(&started);

    assert_eq!(fetch(&fpm.socket, &get(&site, "hello.php")).split("\r\n\r\n").nth(1), Some("hello"));
    fpm.wait_log("big.php terminating", |log| log.lines().any(|l| l.contains("big.php") && l.contains("terminating")));
    drop(stalled);
}

/// A client that goes away in the middle of its upload: the child gets the
/// end of the body, ends the request, and the pool serves the next one.
#[test]
fn upload_abandoned_midway_frees_the_worker() {
    let site = Site::new();
    site.script("upload.php", "<?php echo strlen(file_get_contents('php://input'));");
    site.script("hello.php", "<?php echo 'hello';");
    let opts = PoolOptions { children: 1, extra: "pm_status_path = \"/status\"".into(), ..Default::default() };
    let fpm = Rustfpm::start(&site, &opts);
    for _ in 0..3 {
        let mut upload = UnixStream::connect(&fpm.socket).unwrap();
        let mut request = request_head(&site, "upload.php", 1 << 20);
        request.extend(record(5, &[b'u'; 60000]));
        upload.write_all(&request).unwrap();
        drop(upload);
        assert_eq!(fetch(&fpm.socket, &get(&site, "hello.php")).split("\r\n\r\n").nth(1), Some("hello"));
    }
    let idle = wait_until(HANG, || fetch(&fpm.socket, &status_request(&site)).contains("active processes:     0"));
    assert!(idle, "{}", fetch(&fpm.socket, &status_request(&site)));
}

/// A body that stops coming while it is being forwarded would hold the child
/// for ever: after `request_read_timeout` without a byte, the request is
/// abandoned and the worker goes to the next request.
#[test]
fn a_body_that_stops_coming_frees_the_worker_after_request_read_timeout() {
    let site = Site::new();
    let started = site.scratch().join("started");
    let upload = format!("<?php touch('{}'); echo strlen(file_get_contents('php://input'));", started.display());
    site.script("upload.php", &upload);
    site.script("hello.php", "<?php echo 'hello';");
    let opts = PoolOptions { children: 1, extra: "request_read_timeout = \"1s\"".into(), ..Default::default() };
    let fpm = Rustfpm::start(&site, &opts);
    let mut stalled = UnixStream::connect(&fpm.socket).unwrap();
    let mut request = request_head(&site, "upload.php", 1 << 20);
    request.extend(record(5, &[b'u'; 60000]));
    stalled.write_all(&request).unwrap();
    wait_for_file(&started);

    assert_eq!(fetch(&fpm.socket, &get(&site, "hello.php")).split("\r\n\r\n").nth(1), Some("hello"));
    fpm.wait_logged("request_read_timeout");
    drop(stalled);
}

/// A pool of one child held by `count.php` until the test opens its gate; each
/// run of the script adds a line to `runs`.
struct Gated {
    site: Site,
    runs: std::path::PathBuf,
    gate: std::path::PathBuf,
}

impl Gated {
    fn new() -> Gated {
        let site = Site::new();
        let (runs, gate) = (site.scratch().join("runs"), site.scratch().join("gate"));
        site.script(
            "count.php",
            &format!(
                "<?php file_put_contents('{runs}', \"run\\n\", FILE_APPEND);
                while (!file_exists('{gate}')) usleep(10000);
                echo 'ran';",
                runs = runs.display(),
                gate = gate.display(),
            ),
        );
        Gated { site, runs, gate }
    }

    fn start(&self) -> Rustfpm {
        let opts = PoolOptions { children: 1, extra: "pm_status_path = \"/status\"".into(), ..Default::default() };
        Rustfpm::start(&self.site, &opts)
    }

    fn runs(&self) -> usize {
        std::fs::read_to_string(&self.runs).map_or(0, |text| text.lines().count())
    }

    /// Waits until `n` requests wait in rustfpm's queue for the busy child.
    fn wait_queued(&self, fpm: &Rustfpm, n: usize) {
        let line = format!("listen queue:         {n}\n");
        let queued = wait_until(HANG, || fetch(&fpm.socket, &status_request(&self.site)).contains(&line));
        assert!(
            queued,
            "not {n} waiting for the child (given-up requests still queued?): {}",
            fetch(&fpm.socket, &status_request(&self.site))
        );
    }
}

/// Requests whose client goes away while they wait for the only child (busy)
/// never reach it: a GET, a POST whose body rustfpm holds whole, and one whose
/// body was still coming. They leave the queue when their client closes, no
/// child runs them, and the request after them is served.
#[test]
fn requests_given_up_while_queued_never_reach_a_child() {
    let gated = Gated::new();
    let fpm = gated.start();
    let socket = fpm.socket.clone();
    let first_request = get(&gated.site, "count.php");
    let first = std::thread::spawn(move || fetch(&socket, &first_request));
    assert!(wait_until(HANG, || gated.runs() == 1), "the first request never ran");

    let mut whole = request_head(&gated.site, "count.php", 100);
    whole.extend(record(5, &[b'w'; 100]));
    whole.extend(record(5, b""));
    let mut coming = request_head(&gated.site, "count.php", 1 << 20);
    coming.extend(record(5, &[b'c'; 8000]));
    let mut dead = Vec::new();
    for request in [get(&gated.site, "count.php"), whole, coming] {
        let mut client = UnixStream::connect(&fpm.socket).unwrap();
        client.write_all(&request).unwrap();
        dead.push(client);
    }
    gated.wait_queued(&fpm, 3);
    drop(dead);
    gated.wait_queued(&fpm, 0);

    std::fs::write(&gated.gate, "").unwrap();
    assert_eq!(first.join().unwrap().split("\r\n\r\n").nth(1), Some("ran"));
    let live = fetch(&fpm.socket, &get(&gated.site, "count.php"));
    assert_eq!(live.split("\r\n\r\n").nth(1), Some("ran"), "{live}");
    assert_eq!(gated.runs(), 2, "a request given up on while queued ran");
}

/// The same behind real nginx, with and without `fastcgi_keep_conn`: nginx
/// closes its connection to rustfpm when the browser goes away, and the
/// requests it gave up on are not run.
#[test]
fn requests_nginx_gives_up_on_while_queued_never_reach_a_child() {
    let gated = Gated::new();
    let fpm = gated.start();
    let nginx = Nginx::start(&gated.site, &fpm);
    let first = get_in_thread(nginx.url("/count.php"));
    assert!(wait_until(HANG, || gated.runs() == 1), "the first request never ran");

    let mut browsers = Vec::new();
    for path in ["/count.php", "/ka/count.php", "/count.php?again", "/ka/count.php?again"] {
        let mut browser = std::net::TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
        write!(browser, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        browsers.push(browser);
    }
    gated.wait_queued(&fpm, 4);
    drop(browsers);
    gated.wait_queued(&fpm, 0);

    std::fs::write(&gated.gate, "").unwrap();
    assert_eq!(first.join().unwrap().expect("the first request's answer").text(), "ran");
    for path in ["/count.php", "/ka/count.php"] {
        assert_eq!(common::get(&nginx.url(path)).text(), "ran");
    }
    assert_eq!(gated.runs(), 3, "a request nginx gave up on while queued ran");
}

/// A fire-and-forget request (WordPress's cron spawn: a tiny client timeout,
/// `ignore_user_abort` in the script) behind a location with
/// `fastcgi_ignore_client_abort on`: nginx keeps its connection to rustfpm
/// when the client goes, so the request runs once the child is free, as
/// php-fpm would run it (docs/php-fpm-differences.md).
#[test]
fn a_queued_request_behind_fastcgi_ignore_client_abort_runs_when_its_client_has_gone() {
    let gated = Gated::new();
    let fpm = gated.start();
    let http = format!(
        r#"
  server {{
    listen 127.0.0.1:{{port}};
    root {www};
    location / {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_ignore_client_abort on;
      fastcgi_pass unix:{socket};
    }}
  }}
"#,
        www = gated.site.www().display(),
        socket = fpm.socket.display(),
    );
    let nginx = Nginx::start_http(&gated.site, &http);
    let first = get_in_thread(nginx.url("/count.php"));
    assert!(wait_until(HANG, || gated.runs() == 1), "the first request never ran");
    let mut browser = std::net::TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
    write!(browser, "GET /count.php?cron HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    gated.wait_queued(&fpm, 1);
    drop(browser);
    // Without the setting nginx hangs up at once and the request leaves the
    // queue (the test above); with it, the request is still there later.
    std::thread::sleep(Duration::from_millis(500));
    gated.wait_queued(&fpm, 1);

    std::fs::write(&gated.gate, "").unwrap();
    assert_eq!(first.join().unwrap().expect("the first request's answer").text(), "ran");
    assert!(wait_until(HANG, || gated.runs() == 2), "the request whose client went away did not run");
}
