//! Slow, idle and greedy peers, and rustfpm's own end: connections that send
//! nothing or trickle a byte a second, idle kept-alive connections, the
//! per-listener connection limit, running out of file descriptors, SIGTERM
//! right after children were killed, and a SIGKILL of rustfpm's whole
//! process group. Real rustfpm, real php-cgi, a plain FastCGI client.

mod common;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustfpm::fastcgi::{
    encode_begin_request, encode_pair, encode_stream, parse_record, RecordType, Role, FCGI_KEEP_CONN,
};

/// Longer than any wait these tests expect to end: a hang check, not a speed check.
const HANG: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- helpers

/// A pool of `children` static children on a unix socket, with `global`
/// lines in `[global]` and `pool` lines in `[pool.www]`.
fn options(children: usize, global: &str, pool: &str) -> PoolOptions {
    PoolOptions { children, global: global.into(), extra: pool.into(), ..Default::default() }
}

fn start(site: &Site, children: usize, global: &str, pool: &str) -> Rustfpm {
    Rustfpm::start(site, &options(children, global, pool))
}

/// A GET of `script` in the site's docroot, kept alive or not.
fn request(site: &Site, script: &str, keep: bool) -> Vec<u8> {
    let file = site.www().join(script);
    let name = format!("/{script}");
    let mut params = Vec::new();
    for (k, v) in [
        ("SCRIPT_FILENAME", file.to_str().unwrap()),
        ("SCRIPT_NAME", &name),
        ("REQUEST_URI", &name),
        ("DOCUMENT_ROOT", site.www().to_str().unwrap()),
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", ""),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
    ] {
        encode_pair(&mut params, k.as_bytes(), v.as_bytes());
    }
    let mut out = Vec::new();
    encode_begin_request(&mut out, 1, Role::Responder, if keep { FCGI_KEEP_CONN } else { 0 });
    encode_stream(&mut out, RecordType::Params, 1, &params);
    encode_stream(&mut out, RecordType::Params, 1, b"");
    encode_stream(&mut out, RecordType::Stdin, 1, b"");
    out
}

/// Reads one response; returns its STDOUT. Err on a close or timeout first.
fn read_reply(s: &mut UnixStream, timeout: Duration) -> Result<String, String> {
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let (mut buf, mut stdout) = (Vec::new(), Vec::new());
    loop {
        while let Some((rec, used)) = parse_record(&buf).map_err(|e| format!("bad record: {e}"))? {
            match rec.header.kind() {
                Some(RecordType::Stdout) => stdout.extend_from_slice(rec.content),
                Some(RecordType::EndRequest) => return Ok(String::from_utf8_lossy(&stdout).into_owned()),
                _ => {}
            }
            buf.drain(..used);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => return Err("closed before the end of the response".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Sends a request for hello.php on `s` and checks the answer is the script's.
fn hello(site: &Site, s: &mut UnixStream) -> Result<(), String> {
    s.write_all(&request(site, "hello.php", true)).map_err(|e| format!("write: {e}"))?;
    let reply = read_reply(s, HANG)?;
    match reply.contains("Hello, world") {
        true => Ok(()),
        false => Err(format!("not hello.php's answer: {reply}")),
    }
}

/// One hello.php request on a new connection.
fn hello_once(site: &Site, fpm: &Rustfpm) -> Result<(), String> {
    let mut s = UnixStream::connect(&fpm.socket).map_err(|e| format!("connect: {e}"))?;
    hello(site, &mut s)
}

/// A hello.php request on each of `conns`, each answered.
fn hello_each(site: &Site, conns: &mut [UnixStream]) {
    for s in conns {
        hello(site, s).unwrap();
    }
}

/// `n` connections, each with one request answered and kept open.
fn kept_connections(site: &Site, fpm: &Rustfpm, n: usize) -> Vec<UnixStream> {
    let mut conns: Vec<UnixStream> = (0..n).map(|_| UnixStream::connect(&fpm.socket).unwrap()).collect();
    hello_each(site, &mut conns);
    conns
}

/// Waits until rustfpm closes `s` (a read sees end-of-file or a reset);
/// returns how long that took, or None if it stayed open past `limit`.
fn wait_closed(s: &mut UnixStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => Some(start.elapsed()),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Some(start.elapsed()),
        _ => None,
    }
}

/// A connection whose request (for a script that does not exist) rustfpm has answered 404
/// while its body is still coming: the head and, if given, `first` piece of the body were
/// sent, without the empty STDIN record that ends a body (rustfpm then reads the body to
/// drop it).
fn answered_with_body_coming(site: &Site, fpm: &Rustfpm, first: Option<&[u8]>) -> UnixStream {
    let mut head = request(site, "no-such-script.php", true);
    head.truncate(head.len() - 8); // without the empty STDIN record that ends the body
    if let Some(piece) = first {
        encode_stream(&mut head, RecordType::Stdin, 1, piece);
    }
    let mut s = UnixStream::connect(&fpm.socket).unwrap();
    s.write_all(&head).unwrap();
    let reply = read_reply(&mut s, HANG).unwrap();
    assert!(reply.contains("404"), "{reply}");
    s
}

/// Calls `f` with 0, 1, 2, ... every `every`, until `total` has passed since the first call's
/// wait began; returns how many calls were made.
fn every_until(every: Duration, total: Duration, mut f: impl FnMut(usize)) -> usize {
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < total {
        std::thread::sleep(every);
        f(calls);
        calls += 1;
    }
    calls
}

/// Lines of rustfpm's log that contain `needle`.
fn log_lines(fpm: &Rustfpm, needle: &str) -> usize {
    fpm.log_text().lines().filter(|l| l.contains(needle)).count()
}

/// Open descriptors of process `pid`.
fn open_fds(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64
}

/// Sets the soft RLIMIT_NOFILE of process `pid` (the hard one is kept); returns the old one.
fn set_soft_nofile(pid: i32, soft: u64) -> u64 {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit reads and writes only the two structs passed, which live on this stack.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "prlimit({pid}) read: {}", std::io::Error::last_os_error());
    let new = libc::rlimit { rlim_cur: soft, rlim_max: old.rlim_max };
    // SAFETY: as above.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit({pid}, {soft}): {}", std::io::Error::last_os_error());
    old.rlim_cur
}

/// "Max open files" soft and hard limits of process `pid`, from /proc/PID/limits.
fn nofile_of(pid: i32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    let mut words = line["Max open files".len()..].split_whitespace();
    (words.next().unwrap().to_string(), words.next().unwrap().to_string())
}

// ------------------------------------------------------------------ tests

#[test]
fn silent_and_slowloris_connections_are_closed_after_request_read_timeout() {
    let site = Site::new();
    let fpm = start(&site, 2, "", "request_read_timeout = \"2s\"\nlisten_idle_timeout = \"0\"");
    let mut silent = UnixStream::connect(&fpm.socket).unwrap();
    // A slowloris: one byte of a request head a second, until rustfpm hangs up.
    let mut slow = UnixStream::connect(&fpm.socket).unwrap();
    let head = request(&site, "hello.php", true);
    let mut trickle = slow.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for (sent, byte) in head.iter().enumerate() {
            if trickle.write_all(&[*byte]).is_err() {
                return sent;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        head.len()
    });
    // Meanwhile other requests are served.
    hello_once(&site, &fpm).unwrap();
    assert!(wait_closed(&mut silent, HANG).is_some(), "a connection that sent nothing was kept open");
    assert!(wait_closed(&mut slow, HANG).is_some(), "a slowloris connection was kept open");
    let sent = writer.join().unwrap();
    assert!(sent < request(&site, "hello.php", true).len(), "the slowloris got to send its whole head");
    hello_once(&site, &fpm).unwrap();
    let log = fpm.log_text();
    assert!(log.contains("sent no request within 2 s (request_read_timeout)"), "{log}");
    assert!(log.contains("did not complete a request head within 2 s (request_read_timeout)"), "{log}");
}

#[test]
fn a_request_body_that_stops_coming_is_dropped_after_request_read_timeout() {
    let site = Site::new();
    let fpm = start(&site, 1, "", "request_read_timeout = \"2s\"\nlisten_idle_timeout = \"0\"");
    // The body stops half-way.
    let mut s = answered_with_body_coming(&site, &fpm, Some(b"half a body"));
    assert!(wait_closed(&mut s, HANG).is_some(), "a connection whose body stopped was kept open");
    hello_once(&site, &fpm).unwrap();
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_listen_idle_timeout() {
    let site = Site::new();
    let fpm = start(&site, 1, "", "listen_idle_timeout = \"2s\"\nrequest_read_timeout = \"60s\"");
    let mut kept = UnixStream::connect(&fpm.socket).unwrap();
    hello(&site, &mut kept).unwrap();
    hello(&site, &mut kept).unwrap();
    // Idle now: closed after 2 s, long before request_read_timeout.
    assert!(wait_closed(&mut kept, HANG).is_some(), "an idle kept-alive connection was kept open");
    assert!(fpm.log_text().contains("idle connection closed after listen_idle_timeout"), "{}", fpm.log_text());
    hello_once(&site, &fpm).unwrap();
}

/// `request_read_timeout` bounds each pause in a body, not the whole body: one that comes in
/// pieces 0.4 s apart for 3.5 s under a 2 s timeout is read to its end, and the connection
/// serves the next request (its timer, set at the first pause, fires early and is set again).
#[test]
fn a_body_that_keeps_coming_is_read_past_request_read_timeout() {
    let site = Site::new();
    let fpm = start(&site, 1, "", "request_read_timeout = \"2s\"\nlisten_idle_timeout = \"0\"");
    let mut s = answered_with_body_coming(&site, &fpm, None);
    let pieces = every_until(Duration::from_millis(400), Duration::from_millis(3500), |i| {
        let mut piece = Vec::new();
        encode_stream(&mut piece, RecordType::Stdin, 1, b"a piece of a slow body");
        s.write_all(&piece).unwrap_or_else(|e| panic!("body piece {i}: {e}"));
    });
    let mut end = Vec::new();
    encode_stream(&mut end, RecordType::Stdin, 1, b"");
    s.write_all(&end).unwrap();
    hello(&site, &mut s).unwrap_or_else(|e| panic!("the next request after a {pieces}-piece body: {e}"));
    assert!(!fpm.log_text().contains("request_read_timeout"), "{}", fpm.log_text());
}

/// The idle time counts from the end of the last request: a connection kept busy for longer
/// than `listen_idle_timeout` since its first wait stays open (its timer, set at that first
/// wait, fires early and is set again for the current wait: `frontend/alarm.rs`).
#[test]
fn listen_idle_timeout_counts_from_the_last_request_not_the_first() {
    let site = Site::new();
    let fpm = start(&site, 1, "", "listen_idle_timeout = \"2s\"\nrequest_read_timeout = \"60s\"");
    let mut kept = UnixStream::connect(&fpm.socket).unwrap();
    hello(&site, &mut kept).unwrap();
    // A request every 0.4 s, until the first idle wait's deadline is well past.
    every_until(Duration::from_millis(400), Duration::from_millis(3500), |i| {
        hello(&site, &mut kept).unwrap_or_else(|e| panic!("request {} on the kept connection: {e}", i + 1));
    });
    assert!(!fpm.log_text().contains("idle connection closed"), "{}", fpm.log_text());
    // Idle from now: closed after its 2 s.
    assert!(wait_closed(&mut kept, HANG).is_some(), "an idle kept-alive connection was kept open");
    assert!(fpm.log_text().contains("idle connection closed after listen_idle_timeout"), "{}", fpm.log_text());
}

#[test]
fn a_graceful_stop_closes_connections_waiting_for_a_request_at_once() {
    let site = Site::new();
    let long = "listen_idle_timeout = \"1h\"\nrequest_read_timeout = \"1h\"";
    let mut fpm = start(&site, 1, "process_control_timeout = \"1h\"", long);
    let mut kept = UnixStream::connect(&fpm.socket).unwrap();
    hello(&site, &mut kept).unwrap();
    let mut silent = UnixStream::connect(&fpm.socket).unwrap();
    hello_once(&site, &fpm).unwrap();
    fpm.signal(libc::SIGQUIT);
    // Neither waits for its hour: the stop wakes them (one wake-up for every signal a
    // connection waits for, shutdown among them).
    assert!(wait_closed(&mut kept, HANG).is_some(), "an idle kept-alive connection held up the stop");
    assert!(wait_closed(&mut silent, HANG).is_some(), "a connection that sent nothing held up the stop");
    assert!(fpm.wait_exit(HANG).is_some(), "rustfpm did not exit: {}", fpm.log_text());
}

#[test]
fn listen_max_connections_stops_accepting_and_resumes_while_held_connections_are_served() {
    let site = Site::new();
    let fpm = start(&site, 2, "", "listen_max_connections = 2");
    let mut held = kept_connections(&site, &fpm, 2);
    // A third connection waits in the listen queue: its request is not answered...
    let mut waiting = UnixStream::connect(&fpm.socket).unwrap();
    waiting.write_all(&request(&site, "hello.php", true)).unwrap();
    let started = Instant::now();
    // ...while the held ones are served, again and again (busy, they are never idle long
    // enough to be shed to make room for it).
    while started.elapsed() < Duration::from_millis(1500) {
        hello_each(&site, &mut held);
    }
    let early = read_reply(&mut waiting, Duration::from_millis(10));
    assert!(early.is_err(), "a connection past listen_max_connections was served: {early:?}");
    let lines = log_lines(&fpm, "listen_max_connections (2) reached");
    let allowed = started.elapsed().as_secs() as usize + 2;
    assert!((1..=allowed).contains(&lines), "{lines} limit lines in {:?}:\n{}", started.elapsed(), fpm.log_text());
    // One closes: the waiting connection is accepted and answered.
    drop(held.pop());
    let reply = read_reply(&mut waiting, HANG).unwrap();
    assert!(reply.contains("Hello, world"), "{reply}");
    hello(&site, &mut held[0]).unwrap();
}

#[test]
fn out_of_descriptors_accept_waits_and_held_connections_still_get_answers() {
    let site = Site::new();
    let fpm = start(&site, 1, "", "");
    // The worker's connection to its child is made on the first request and kept.
    let mut held = kept_connections(&site, &fpm, 4);
    // Now not one descriptor more: accept fails with EMFILE.
    let before = set_soft_nofile(fpm.pid(), open_fds(fpm.pid()));
    let mut waiting: Vec<UnixStream> = (0..8).map(|_| UnixStream::connect(&fpm.socket).unwrap()).collect();
    for s in &mut waiting {
        s.write_all(&request(&site, "hello.php", true)).unwrap();
    }
    let started = Instant::now();
    let emfile = "accept failed: Too many open files (os error 24) (rustfpm's open file limit";
    assert!(wait_until(HANG, || log_lines(&fpm, emfile) > 0), "no accept failure:\n{}", fpm.log_text());
    for _ in 0..10 {
        hello_each(&site, &mut held);
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = log_lines(&fpm, "accept failed");
    let allowed = started.elapsed().as_secs() as usize + 2;
    assert!(lines <= allowed, "{lines} accept failures logged in {:?}:\n{}", started.elapsed(), fpm.log_text());
    assert!(!fpm.log_text().contains("502"), "{}", fpm.log_text());
    // Descriptors again: the connections that waited are served.
    set_soft_nofile(fpm.pid(), before);
    for s in &mut waiting {
        let reply = read_reply(s, HANG).unwrap();
        assert!(reply.contains("Hello, world"), "{reply}");
    }
}

#[test]
fn rlimit_files_sets_rustfpms_limit_and_keeps_descriptors_for_the_children() {
    let site = Site::new();
    // 100 descriptors: what is left for nginx connections once the children's are kept is small.
    let fpm = start(&site, 2, "rlimit_files = 100", "");
    assert_eq!(nofile_of(fpm.pid()), ("100".to_string(), "100".to_string()));
    let log = fpm.log_text();
    let budget_line = log.lines().find(|l| l.contains("leaves room for")).unwrap_or_else(|| panic!("{log}"));
    let budget: usize = budget_line
        .split("leaves room for ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{budget_line}"));
    assert!((1..40).contains(&budget), "{budget_line}");
    // Twice the budget of connections: those accepted first are served, then, kept alive and
    // idle, they are shed to make room for the others, which are served too.
    let mut conns: Vec<UnixStream> = (0..2 * budget).map(|_| UnixStream::connect(&fpm.socket).unwrap()).collect();
    for s in &mut conns {
        s.write_all(&request(&site, "hello.php", true)).unwrap();
    }
    let (mut answered, deadline) = (0, Instant::now() + Duration::from_secs(10));
    for s in &mut conns {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
        match read_reply(s, left) {
            Ok(reply) if reply.contains("Hello, world") => answered += 1,
            Ok(reply) => panic!("not hello.php's answer: {reply}"),
            Err(_) => {}
        }
    }
    assert_eq!(answered, 2 * budget, "{}", fpm.log_text());
    assert!(fpm.log_text().contains("closed to make room"), "{}", fpm.log_text());
    assert!(log_lines(&fpm, "the open file limit leaves room for") >= 1, "{}", fpm.log_text());
}

#[test]
fn sigterm_right_after_children_were_killed_exits() {
    let site = Site::new();
    let mut fpm = start(&site, 8, "", "");
    for _ in 0..4 {
        hello_once(&site, &fpm).unwrap();
    }
    // A storm: a php-cgi process killed every 50 ms for 3 s while requests flow.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (socket, stop, head) = (fpm.socket.clone(), stop.clone(), request(&site, "hello.php", false));
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(mut s) = UnixStream::connect(&socket) {
                        let _ = s.write_all(&head);
                        let _ = read_reply(&mut s, Duration::from_secs(2));
                    }
                }
            })
        })
        .collect();
    let storm_end = Instant::now() + Duration::from_secs(3);
    let mut nth = 0;
    while Instant::now() < storm_end {
        if let Some(pid) = fpm.php_pids().get(nth % 9) {
            // SAFETY: kill(2) on a php-cgi pid under our rustfpm.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        nth += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let tree: Vec<i32> = descendants(fpm.pid());
    let asked = Instant::now();
    fpm.signal(libc::SIGTERM);
    let exited = fpm.wait_exit(Duration::from_secs(5));
    eprintln!("exited {:?} after SIGTERM", asked.elapsed());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    clients.into_iter().for_each(|c| c.join().unwrap());
    assert!(exited.is_some(), "rustfpm did not exit on SIGTERM:\n{}", fpm.log_text());
    assert!(wait_until(HANG, || !tree.iter().any(|p| is_live_php(*p))), "php-cgi left behind");
}

#[test]
fn a_sigkill_of_the_whole_process_group_leaves_no_php_cgi_behind() {
    let site = Site::new();
    let (path, socket) = Rustfpm::write_config(&site, &options(4, "", ""));
    let mut fpm = Rustfpm::start_in_own_group(&site, &path, socket);
    hello_once(&site, &fpm).unwrap();
    assert!(wait_until(HANG, || fpm.php_pids().len() >= 5), "php-cgi parent and 4 children expected");
    let php = fpm.php_pids();
    // As supervisord's killasgroup: the group whose id is rustfpm's pid.
    // SAFETY: kill(2) of the process group we made for this rustfpm.
    unsafe { libc::kill(-fpm.pid(), libc::SIGKILL) };
    assert!(fpm.wait_exit(HANG).is_some(), "rustfpm survived SIGKILL");
    let gone = wait_until(Duration::from_secs(30), || !php.iter().any(|p| is_live_php(*p)));
    let left: Vec<i32> = php.iter().copied().filter(|p| is_live_php(*p)).collect();
    for pid in &left {
        // SAFETY: kill(2) of a php-cgi this test saw under its rustfpm, so none is left behind.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert!(gone, "php-cgi processes {left:?} outlived a SIGKILL of rustfpm's process group");
}

#[test]
fn a_stop_held_up_by_a_stopped_guard_ends_at_the_stop_deadline() {
    let site = Site::new();
    let mut fpm = start(&site, 2, "", "");
    hello_once(&site, &fpm).unwrap();
    let php = fpm.php_pids_once_started(2);
    let guard = descendants(fpm.pid())
        .into_iter()
        .find(|p| matches!(proc_stat(*p), Some((comm, _, _)) if comm == "rustfpm-guard"))
        .expect("the guard process");
    // The supervisor waits for the guard at the end of a stop: a stopped guard holds it up.
    // SAFETY: kill(2) of the guard of our own rustfpm.
    unsafe { libc::kill(guard, libc::SIGSTOP) };
    fpm.signal(libc::SIGTERM);
    let exited = fpm.wait_exit(HANG);
    // SAFETY: as above; the guard goes on and kills what is left of the pool.
    unsafe { libc::kill(guard, libc::SIGCONT) };
    assert!(exited.is_some(), "rustfpm did not exit on SIGTERM:\n{}", fpm.log_text());
    assert!(fpm.log_text().contains("stopping took longer than 4s"), "{}", fpm.log_text());
    assert!(wait_until(HANG, || !php.iter().any(|p| is_live_php(*p))), "php-cgi left behind");
}
