//! Process lifecycle: signals (graceful and fast stop), rustfpm being killed,
//! children dying mid-request, a script breaking the shared listener, client
//! aborts, a full queue, config checking and the root guard.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// A process snapshot: pid and command name (to tell a reused pid apart).
#[derive(Debug, Clone, PartialEq)]
struct Proc {
    pid: i32,
    comm: String,
}

/// All live (non-zombie) descendants of `pid`.
fn live_tree(pid: i32) -> Vec<Proc> {
    descendants(pid)
        .into_iter()
        .filter_map(|p| {
            let (comm, state, _) = proc_stat(p)?;
            (state != 'Z' && state != 'X').then_some(Proc { pid: p, comm })
        })
        .collect()
}

/// Those of `procs` that are still alive (same pid, same command, not a zombie).
fn still_alive(procs: &[Proc]) -> Vec<Proc> {
    procs
        .iter()
        .filter(|p| {
            matches!(proc_stat(p.pid), Some((comm, state, _))
                if comm == p.comm && state != 'Z' && state != 'X')
        })
        .cloned()
        .collect()
}

/// Waits until none of `procs` is alive; on failure SIGKILLs the survivors
/// (so the test leaves nothing behind) and returns them.
fn wait_all_dead(procs: &[Proc], timeout: Duration) -> Vec<Proc> {
    let mut left = Vec::new();
    if wait_until(timeout, || {
        left = still_alive(procs);
        left.is_empty()
    }) {
        return Vec::new();
    }
    for p in &left {
        // SAFETY: kill(2) on a pid we just checked is the process we saw.
        unsafe { libc::kill(p.pid, libc::SIGKILL) };
    }
    left
}

fn scratch_file(site: &Site, name: &str) -> PathBuf {
    site.scratch().join(name)
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGKILL => "SIGKILL",
        _ => "signal",
    }
}

/// Live php-cgi processes (anywhere on the machine) whose command line
/// mentions `needle`.
fn live_php_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if !is_live_php(pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Waits up to `timeout` for a spawned process; kills and reaps it if it is
/// still running. Returns its exit status if it exited by itself.
fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// rustfpm's private runtime dirs (`rustfpm-PID-POOL-KIND-XXXXXX` under
/// /run/rustfpm or $TMPDIR) of `pid`.
fn private_dirs(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("rustfpm-{pid}-");
    [PathBuf::from("/run/rustfpm"), std::env::temp_dir()]
        .iter()
        .flat_map(|base| std::fs::read_dir(base).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Removes what `private_dirs` found (test cleanup); returns them. With
/// `since`, only the dirs made since then: pids are reused (pid_max is often
/// 32768), and a rustfpm killed with SIGKILL by another test leaves its dirs.
fn remove_private_dirs(pid: u32, since: Option<std::time::SystemTime>) -> Vec<PathBuf> {
    let made_since =
        |d: &PathBuf| since.is_none_or(|t| std::fs::metadata(d).and_then(|m| m.modified()).is_ok_and(|m| m >= t));
    let dirs: Vec<PathBuf> = private_dirs(pid).into_iter().filter(made_since).collect();
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    dirs
}

/// What a finished `rustfpm` run left.
struct Run {
    /// None: still running after 15 s (then killed).
    status: Option<std::process::ExitStatus>,
    stderr: String,
    /// Private socket dirs left behind (removed by the test already).
    leftover_dirs: Vec<PathBuf>,
}

/// Runs `rustfpm ARGS` to completion (at most 15 s).
fn run_rustfpm(args: &[&str], log: &Path) -> Run {
    // A second back: file times are kept with the kernel's coarse clock.
    let started = std::time::SystemTime::now() - Duration::from_secs(1);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rustfpm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn rustfpm");
    let pid = child.id();
    let status = wait_child(&mut child, Duration::from_secs(15));
    Run {
        status,
        stderr: std::fs::read_to_string(log).unwrap_or_default(),
        leftover_dirs: remove_private_dirs(pid, Some(started)),
    }
}

// ---------------------------------------------------------------- signals

/// SIGQUIT: in-flight requests finish with their whole body, new connections
/// are refused, rustfpm exits 0 and leaves no process behind.
#[test]
fn sigquit_finishes_in_flight_requests_then_exits() {
    let mut stack = Stack::start();
    let body_len = 300_000;
    // Held until the test lets them go, so that the refusal below is seen while they drain.
    let plain = get_in_thread(stack.url(&format!("/lc_gate.php?name=q1&bytes={body_len}")));
    let kept = get_in_thread(stack.url(&format!("/ka/lc_gate.php?name=q2&bytes={body_len}")));
    for name in ["q1", "q2"] {
        assert!(
            wait_file(&scratch_file(&stack.site, name), Duration::from_secs(10)).is_some(),
            "in-flight request {name} never started"
        );
    }
    let tree = live_tree(stack.fpm.pid());
    assert!(
        tree.iter().filter(|p| p.comm.starts_with("php-cgi")).count() >= 3,
        "expected php-cgi processes under rustfpm, got {tree:?}"
    );
    let quit_at = Instant::now();
    stack.fpm.signal(libc::SIGQUIT);

    // New connections are refused while the in-flight requests drain.
    let socket = stack.fpm.socket.clone();
    let mut last = String::new();
    let refused = wait_until(Duration::from_secs(10), || match UnixStream::connect(&socket) {
        Ok(_) => {
            last = "connect() succeeded".into();
            false
        }
        Err(_) => true,
    });
    assert!(
        refused,
        "after SIGQUIT rustfpm still accepts new connections on {} ({last}) {:?} after the signal",
        socket.display(),
        quit_at.elapsed()
    );
    assert!(stack.fpm.wait_exit(Duration::ZERO).is_none(), "rustfpm exited with two requests in flight");
    stack.site.open_gate("q1");
    stack.site.open_gate("q2");

    for (what, handle) in [("/", plain), ("/ka/", kept)] {
        let r =
            handle.join().unwrap().unwrap_or_else(|e| panic!("in-flight request via {what} failed after SIGQUIT: {e}"));
        assert_eq!(r.status, 200, "in-flight request via {what} after SIGQUIT: {}", r.text());
        assert_eq!(r.body.len(), body_len + 4, "in-flight request via {what}: truncated body after SIGQUIT");
        assert!(r.body.ends_with(b"xEND\n"), "in-flight request via {what}: bad body end");
    }

    let status = stack.fpm.wait_exit(Duration::from_secs(10));
    let status = status.expect("rustfpm did not exit within 10 s of SIGQUIT and the drain");
    assert!(status.success(), "rustfpm exit status after SIGQUIT: {status}");
    let left = wait_all_dead(&tree, Duration::from_secs(2));
    assert!(left.is_empty(), "processes left alive after SIGQUIT exit: {left:?}");
}

/// A connection's task waits for the next connection when its own ends (the
/// front end's spare tasks): after connections served side by side and one after
/// another, the tasks left waiting end with the listener, and SIGQUIT exits at once.
#[test]
fn sigquit_with_idle_connection_tasks_exits() {
    let mut stack = Stack::start();
    for round in 0..3 {
        // Side by side, so that several tasks are left waiting; then one after another,
        // so that the waiting ones are handed new connections.
        let side_by_side: Vec<_> = (0..8).map(|_| get_in_thread(stack.url("/hello.php"))).collect();
        for handle in side_by_side {
            let r = handle.join().unwrap().unwrap_or_else(|e| panic!("round {round}: request failed: {e}"));
            assert_eq!(r.status, 200, "round {round}: {}", r.text());
        }
        for _ in 0..8 {
            assert_eq!(get(&stack.url("/hello.php")).status, 200, "round {round}: a request one after another");
        }
    }
    let tree = live_tree(stack.fpm.pid());
    stack.fpm.signal(libc::SIGQUIT);
    let status = stack.fpm.wait_exit(Duration::from_secs(10));
    let status = status.expect("rustfpm did not exit within 10 s of SIGQUIT with no request running");
    assert!(status.success(), "rustfpm exit status after SIGQUIT: {status}");
    let left = wait_all_dead(&tree, Duration::from_secs(2));
    assert!(left.is_empty(), "processes left alive after SIGQUIT exit: {left:?}");
}

/// SIGTERM and SIGINT stop at once, even with a request running.
fn fast_stop(sig: i32) {
    let mut stack = Stack::start();
    for _ in 0..4 {
        assert_eq!(get(&stack.url("/hello.php")).status, 200);
    }
    // Never let go: rustfpm must stop while it runs (up to 60 s, lc_gate.php's own limit).
    let busy = get_in_thread(stack.url("/lc_gate.php?name=busy"));
    assert!(wait_file(&scratch_file(&stack.site, "busy"), Duration::from_secs(10)).is_some(), "request never started");
    let tree = live_tree(stack.fpm.pid());
    let php: Vec<i32> = tree.iter().filter(|p| p.comm.starts_with("php-cgi")).map(|p| p.pid).collect();
    assert!(php.len() >= 2, "expected php-cgi under rustfpm: {tree:?}");
    let sent = Instant::now();
    stack.fpm.signal(sig);
    let status = stack.fpm.wait_exit(Duration::from_secs(30));
    let status = status.unwrap_or_else(|| {
        panic!("rustfpm did not stop within 30 s of {} (a request that runs 60 s was running)", signal_name(sig))
    });
    assert!(status.success(), "rustfpm exit status after {}: {status}", signal_name(sig));
    let exited_after = sent.elapsed();
    let left = wait_all_dead(&tree, Duration::from_secs(2));
    assert!(
        left.is_empty(),
        "processes of rustfpm's tree still alive 2 s after it exited on {} \
         ({exited_after:?} after the signal; killed by the test now): {left:?}",
        signal_name(sig)
    );
    assert!(php.iter().all(|p| !is_live_php(*p)));
    // The cut-off request ends one way or another (nginx 502 or reset).
    let _ = busy.join();
}

#[test]
fn sigterm_stops_at_once() {
    fast_stop(libc::SIGTERM);
}

#[test]
fn sigint_stops_at_once() {
    fast_stop(libc::SIGINT);
}

/// rustfpm SIGKILLed: its php-cgi processes (and its guard) go too, and its private directories.
#[test]
fn sigkill_of_rustfpm_takes_its_php_cgi_down() {
    let mut stack = Stack::start();
    for _ in 0..8 {
        assert_eq!(get(&stack.url("/hello.php")).status, 200);
    }
    let php = stack.fpm.php_pids_once_started(4);
    let tree = live_tree(stack.fpm.pid());
    let pid = stack.fpm.pid() as u32;
    stack.fpm.signal(libc::SIGKILL);
    assert!(stack.fpm.wait_exit(Duration::from_secs(5)).is_some());
    // A SIGKILLed rustfpm cannot remove its private directories: its guard does.
    let removed = wait_until(Duration::from_secs(5), || private_dirs(pid).is_empty());
    let left = remove_private_dirs(pid, None);
    assert!(removed, "private directories left after rustfpm was SIGKILLed: {left:?}");
    let mut live = Vec::new();
    let gone = wait_until(Duration::from_secs(5), || {
        live = php.iter().copied().filter(|p| is_live_php(*p)).collect();
        live.is_empty()
    });
    let left = wait_all_dead(&tree, Duration::from_secs(1));
    assert!(
        gone,
        "php-cgi processes {live:?} (of {php:?}) still alive 5 s after rustfpm was SIGKILLed \
         (killed by the test now); whole tree left: {left:?}"
    );
    assert!(
        left.is_empty(),
        "processes of rustfpm's tree still alive after SIGKILL (killed by the test now): {left:?}"
    );
}

// ---------------------------------------------------------------- children

/// A child SIGKILLed mid-request: that request gets a 502, the child is
/// replaced, and the following requests are served.
fn child_killed_mid_request(prefix: &str) {
    let stack = Stack::start();
    for _ in 0..4 {
        assert_eq!(get(&stack.url(&format!("{prefix}/hello.php"))).status, 200);
    }
    assert!(wait_until(Duration::from_secs(5), || stack.fpm.php_pids().len() == 5));
    let parent = stack.fpm.php_parent();
    let victim_req = get_in_thread(stack.url(&format!("{prefix}/lc_pid_sleep.php?name=victim")));
    let text = wait_file(&scratch_file(&stack.site, "victim"), Duration::from_secs(10))
        .expect("the script never wrote its pid");
    let victim: i32 = text.trim().parse().unwrap();
    assert!(is_live_php(victim), "pid {victim} from the script is not a live php-cgi");
    // SAFETY: kill(2) on the php-cgi child serving our request.
    unsafe { libc::kill(victim, libc::SIGKILL) };

    let r = victim_req.join().unwrap().unwrap_or_else(|e| panic!("request whose child was killed via {prefix}/: {e}"));
    assert_eq!(r.status, 502, "request whose child was SIGKILLed (via {prefix}/) should be 502, got: {}", r.text());
    assert!(
        r.text().contains("PHP process") && r.text().contains("exited"),
        "502 body should say the PHP process exited: {:?}",
        r.text()
    );
    let log = stack.fpm.log_text();

    let mut pids = Vec::new();
    for i in 0..12 {
        let r = get(&stack.url(&format!("{prefix}/lc_pid.php")));
        assert_eq!(r.status, 200, "request {i} after the kill: {}", r.text());
        let pid: i32 = r.text().trim().parse().unwrap();
        assert_ne!(pid, victim, "served by the killed child");
        pids.push(pid);
    }
    let mut now = Vec::new();
    let replaced = wait_until(Duration::from_secs(5), || {
        now = stack.fpm.php_pids();
        now.len() == 5 && !now.contains(&victim)
    });
    assert!(replaced, "pool should be back to 1 parent + 4 children without {victim}: {now:?}\nlog:\n{log}");
    assert_eq!(stack.fpm.php_parent(), parent, "php-cgi parent changed");
    assert!(!stack.fpm.log_text().contains("panicked"));
}

#[test]
fn child_killed_mid_request_gives_502_and_is_replaced() {
    child_killed_mid_request("");
}

#[test]
fn child_killed_mid_request_gives_502_and_is_replaced_keepalive() {
    child_killed_mid_request("/ka");
}

/// Runs the non-blocking-stdin script a few times (both nginx paths).
fn run_nonblock_script(stack: &Stack) {
    for (i, prefix) in ["", "/ka", "", "/ka"].iter().enumerate() {
        let r = get(&stack.url(&format!("{prefix}/lc_nonblock_stdin.php")));
        assert_eq!(r.status, 200, "nonblocking script run {i}: {}", r.text());
        assert!(r.text().starts_with("nonblocking "), "run {i}: {:?}", r.text());
    }
}

/// A pool with 4 children, warmed up; returns the php-cgi parent's pid.
fn warm_pool(stack: &Stack) -> i32 {
    for _ in 0..4 {
        assert_eq!(get(&stack.url("/hello.php")).status, 200);
    }
    let mut pids = Vec::new();
    let ready = wait_until(Duration::from_secs(5), || {
        pids = stack.fpm.php_pids();
        pids.len() == 5
    });
    assert!(ready, "expected 1 php-cgi parent + 4 children: {pids:?}");
    stack.fpm.php_parent().expect("php-cgi parent")
}

/// After the script: 50 requests all 200, 1 + 4 php-cgi processes that stay
/// the same (no fork loop), and the same php-cgi parent.
fn assert_pool_healthy(stack: &Stack, parent: i32, what: &str) {
    let mut failures = Vec::new();
    for i in 0..50 {
        let prefix = if i % 2 == 0 { "" } else { "/ka" };
        match try_get(&stack.url(&format!("{prefix}/hello.php"))) {
            Ok(r) if r.status == 200 && r.text() == "Hello, world\n" => {}
            Ok(r) => failures.push(format!("#{i} {prefix}: {} {:?}", r.status, r.text())),
            Err(e) => failures.push(format!("#{i} {prefix}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{what}: {} of 50 requests failed: {failures:?}", failures.len());
    let mut pids = Vec::new();
    let settled = wait_until(Duration::from_secs(5), || {
        pids = stack.fpm.php_pids();
        pids.len() == 5
    });
    assert!(settled, "{what}: expected 5 php-cgi processes (parent + 4), got {pids:?}");
    std::thread::sleep(Duration::from_millis(700));
    let mut later = stack.fpm.php_pids();
    pids.sort();
    later.sort();
    assert_eq!(pids, later, "{what}: php-cgi children keep changing (fork loop?)");
    assert_eq!(stack.fpm.php_parent(), Some(parent), "{what}: the php-cgi parent was replaced");
}

/// A script setting O_NONBLOCK on php-cgi's stdin (the shared listener) must
/// not break the pool or send the parent into a fork loop.
#[test]
fn nonblocking_stdin_does_not_break_the_pool() {
    let stack = Stack::start();
    let parent = warm_pool(&stack);
    run_nonblock_script(&stack);
    std::thread::sleep(Duration::from_millis(300));
    assert_pool_healthy(&stack, parent, "after a script made php-cgi's stdin non-blocking");
}

/// The same, when a child exits right after the script: the parent forks a
/// replacement that accept()s at once on the (still non-blocking) shared
/// listener with nothing pending; unless the flag is already cleared it
/// exits with EAGAIN and the parent re-forks in a loop. A child exiting is
/// ordinary (recycled, killed by a time limit, or its connection dropped on
/// a client abort); here the script kills one sibling itself right after
/// setting the flag. Several rounds, 0.4 s apart (1 exit each, far from any
/// crash-loop threshold), so that a periodic repair cannot hide the loop by
/// luck of timing.
#[test]
fn nonblocking_stdin_then_a_child_exit_does_not_restart_the_pool() {
    let stack = Stack::start();
    let parent = warm_pool(&stack);
    run_nonblock_script(&stack);
    for round in 0..8 {
        let r = get(&stack.url("/lc_nonblock_stdin.php?kill_siblings=1"));
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        assert!(
            r.text().starts_with("nonblocking ") && r.text().contains("killed=1"),
            "round {round}: the script should have killed one sibling: {:?}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(400));
        let now = stack.fpm.php_parent();
        assert_eq!(
            now,
            Some(parent),
            "round {round}: the php-cgi parent {parent} was replaced (now {now:?}) after a \
             script set O_NONBLOCK on stdin and one child exited right after: the re-forked \
             children exited in a loop on the non-blocking listener before rustfpm cleared the \
             flag, and rustfpm killed and restarted the whole php-cgi tree (see 'exiting in a \
             loop' in the rustfpm log below). The flag must be cleared before any child can \
             accept again (or at least before a crash loop is declared)"
        );
        assert!(
            wait_until(Duration::from_secs(5), || stack.fpm.php_pids().len() == 5),
            "round {round}: the killed child was not replaced"
        );
    }
    assert_pool_healthy(&stack, parent, "after non-blocking stdin plus child exits");
}

/// nginx drops the request when the client goes: the script must see the
/// abort (connection_status() == ABORTED) soon, and the pool keeps serving.
#[test]
fn client_abort_reaches_the_script() {
    let stack = Stack::start();
    let marker = scratch_file(&stack.site, "aborted");
    let mut s = TcpStream::connect(("127.0.0.1", stack.nginx.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /lc_abort.php?name=aborted HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("tick 0") {
        let n = s.read(&mut buf).expect("first chunk of the streamed response");
        assert!(n > 0, "connection closed before the first chunk: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let _ = s.shutdown(Shutdown::Both);
    drop(s);
    let dropped = Instant::now();

    // The pool is not wedged meanwhile.
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let prefix = if i % 2 == 0 { "" } else { "/ka" };
            get_in_thread(stack.url(&format!("{prefix}/hello.php")))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().unwrap().unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, world\n"), "request {i}");
    }

    let mut text = String::new();
    let seen = wait_until(Duration::from_secs(5), || {
        text = std::fs::read_to_string(&marker).unwrap_or_default();
        !text.is_empty()
    });
    assert!(
        seen,
        "the script did not notice the client abort within {:?} (it streams every 100 ms for 10 s)",
        dropped.elapsed()
    );
    assert!(
        text.contains("status=1") || text.contains("aborted at"),
        "script ended without seeing the abort: {text:?}"
    );
    eprintln!("abort seen after {:?}: {}", dropped.elapsed(), text.trim());
    for _ in 0..5 {
        assert_eq!(get(&stack.url("/hello.php")).status, 200);
    }
}

/// queue_max_len = 0 and the only child busy: 503 with Retry-After at once.
#[test]
fn full_queue_answers_503_with_retry_after() {
    let stack = Stack::with(PoolOptions { children: 1, extra: "queue_max_len = 0\n".into(), ..PoolOptions::default() });
    assert_eq!(get(&stack.url("/hello.php")).status, 200);
    // Busy until the test lets it go: a fixed time could end before the checks on a slow machine.
    let busy = get_in_thread(stack.url("/lc_gate.php?name=busy"));
    assert!(
        wait_file(&scratch_file(&stack.site, "busy"), Duration::from_secs(10)).is_some(),
        "first request never started"
    );
    let r = get(&stack.url("/hello.php"));
    assert_eq!(r.status, 503, "second request while the only child is busy: {}", r.text());
    assert!(r.header("Retry-After").is_some(), "503 without Retry-After: {:?}", r.headers);
    let r = get(&stack.url("/ka/hello.php"));
    assert_eq!(r.status, 503, "via /ka/: {}", r.text());
    assert!(r.header("Retry-After").is_some());
    stack.site.open_gate("busy");

    let first = busy.join().unwrap().expect("first request");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.text(), "END\n");
    for prefix in ["", "/ka", "", "/ka"] {
        let r = get(&stack.url(&format!("{prefix}/hello.php")));
        assert_eq!(r.status, 200, "after the busy request ended: {}", r.text());
    }
}

// ---------------------------------------------------------------- config

#[test]
fn config_test_flag_accepts_good_and_reports_every_error() {
    let site = Site::new();
    let good = site.path().join("good.toml");
    let opts = PoolOptions { children: 2, ..Default::default() };
    std::fs::write(&good, opts.config_text(site.path().join("good.sock").display())).unwrap();
    let log = site.path().join("check.log");
    let run = run_rustfpm(&["-t", "--config", good.to_str().unwrap()], &log);
    let (status, stderr) = (run.status, run.stderr);
    let status = status.expect("rustfpm -t did not exit");
    assert!(status.success(), "rustfpm -t on a good config: {status}\n{stderr}");

    let bad = site.path().join("bad.toml");
    let marker = format!("{}/never-started", site.path().display());
    let text = format!(
        "[global]\n\
         error_log = \"stderr\"\n\
         \n\
         [pool.www]\n\
         listen = \"{}/bad.sock\"\n\
         pm = \"static\"\n\
         pm_max_children = 0\n\
         listen_mode = \"999\"\n\
         foo = 1\n\
         {}\
         \n\
         [pool.www.php_admin_value]\n\
         error_log = \"{marker}\"\n",
        site.path().display(),
        user_line()
    );
    std::fs::write(&bad, text).unwrap();
    let bad_name = bad.display().to_string();
    let run = run_rustfpm(&["-t", "--config", &bad_name], &log);
    let (status, stderr) = (run.status, run.stderr);
    let status = status.expect("rustfpm -t did not exit");
    assert!(!status.success(), "rustfpm -t accepted a bad config:\n{stderr}");
    for (line, key) in [(7, "pm_max_children"), (8, "listen_mode"), (9, "foo")] {
        let wanted = format!("{bad_name}:{line}");
        assert!(
            stderr.lines().any(|l| l.contains(&wanted) && l.contains(key)),
            "rustfpm -t should report `{key}` at {wanted}; stderr was:\n{stderr}"
        );
    }

    // Starting on it fails too, and nothing is left running.
    let run = run_rustfpm(&["--config", &bad_name], &log);
    let status = run.status.expect("rustfpm started on a bad config and kept running (killed)");
    assert!(!status.success(), "rustfpm started on a bad config:\n{}", run.stderr);
    assert!(
        run.leftover_dirs.is_empty(),
        "rustfpm left its private dir behind: {:?}\n{}",
        run.leftover_dirs,
        run.stderr
    );
    let left = live_php_mentioning(&marker);
    for p in &left {
        // SAFETY: kill(2) on a php-cgi started for this test's config.
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "php-cgi left running after a failed start: {left:?}");
}

/// A config whose pool has no `user` (so, as root, would run as root).
fn root_pool_config(site: &Site) -> (PathBuf, PathBuf, String) {
    let socket = site.path().join("root.sock");
    let marker = format!("{}/root-marker", site.path().display());
    let config = site.path().join("root.toml");
    let opts = PoolOptions {
        children: 2,
        user: None,
        log_level: "notice",
        extra: "listen_mode = \"0666\"".into(),
        tables: format!("[pool.www.php_admin_value]\nerror_log = \"{marker}\"\n"),
        ..Default::default()
    };
    std::fs::write(&config, opts.config_text(socket.display())).unwrap();
    (config, socket, marker)
}

/// As root, a pool without `user` is refused unless `-R` is given.
#[test]
fn pools_refuse_to_run_as_root_without_dash_r() {
    require_root("it checks what rustfpm refuses to root");
    let site = Site::new();
    let (config, socket, marker) = root_pool_config(&site);
    let log = site.path().join("refuse.log");
    let run = run_rustfpm(&["--config", config.to_str().unwrap()], &log);
    let stderr = run.stderr;
    let status = run.status.expect("rustfpm ran a pool as root without -R (killed after 15 s)");
    assert!(!status.success(), "rustfpm ran a root pool without -R:\n{stderr}");
    assert!(stderr.contains("root") && stderr.contains("-R"), "the refusal should mention root and -R:\n{stderr}");
    let left = live_php_mentioning(&marker);
    for p in &left {
        // SAFETY: kill(2) on a php-cgi started for this test's config.
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "php-cgi left running after the refusal: {left:?}");

    // With -R it runs, as root.
    let fpm = Rustfpm::start_args(&site, &["-R", "--config", config.to_str().unwrap()], &config, &socket);
    let nginx = Nginx::start(&site, &fpm);
    let r = get(&nginx.url("/lc_whoami.php"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "0\n", "with -R and no user the script runs as root");
    drop(nginx);
    drop(fpm);
}

/// A start that fails after the pools were set up (here: the root refusal)
/// must not leave rustfpm's private socket dir behind in $TMPDIR.
#[test]
fn failed_start_leaves_no_private_socket_dir() {
    require_root("it checks what rustfpm refuses to root");
    let site = Site::new();
    let (config, _, _) = root_pool_config(&site);
    let log = site.path().join("refuse.log");
    let run = run_rustfpm(&["--config", config.to_str().unwrap()], &log);
    assert!(
        matches!(run.status, Some(s) if !s.success()),
        "expected the root refusal: {:?}\n{}",
        run.status,
        run.stderr
    );
    assert!(
        run.leftover_dirs.is_empty(),
        "rustfpm exited (status {:?}, refusing a root pool) but left its private socket dir(s) \
         {:?} behind (removed by the test). stderr:\n{}",
        run.status,
        run.leftover_dirs,
        run.stderr
    );
}
