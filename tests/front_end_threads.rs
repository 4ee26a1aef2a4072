//! `front_end_threads = 2`: two runtimes; with two pools each pool's listener is
//! registered with one of them in turn, with one pool with both; the pools (one actor
//! each, one balancer) shared. The pool under test is the
//! second one of its config, so its listener is the second thread's while its actor
//! runs on the first: every pool feature must behave as with one thread.

mod common;
use common::*;

use std::time::Duration;

/// Threads of `pid` named `name` (from /proc/PID/task/*/comm).
fn threads_named(pid: i32, name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// The value of `"key":` in php-fpm's flat JSON status.
fn json_field(json: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_string())
}

/// The pids of the pool's children, from the full status page.
fn child_pids(stack: &Stack) -> Vec<String> {
    let full = get(&stack.url("/status?json&full")).text();
    full.split("\"pid\":").skip(1).filter_map(|rest| rest.split([',', '}']).next()).map(str::to_string).collect()
}

/// rustfpm with 2 front-end threads and nginx in front of its pool `www` (with
/// `children` and `extra`), whose listener is the second thread's: a pool `first`
/// comes before it in the config.
fn two_threads(children: usize, extra: &str) -> Stack {
    let opts = PoolOptions {
        children,
        global: "front_end_threads = 2".into(),
        extra: format!("pm_status_path = \"/status\"\nping_path = \"/ping\"\n{extra}"),
        ..Default::default()
    };
    let site = Site::new();
    let first = PoolOptions { children: 1, extra: String::new(), ..opts.clone() };
    let socket = site.path().join("rustfpm.sock");
    let text = format!(
        "{}\n{}\n{}\n",
        opts.global_table(),
        first.pool_table("first", site.path().join("first.sock").display()),
        opts.pool_table("www", socket.display())
    );
    let fpm = Rustfpm::start_with_config(&site, &site.write_config(&text), Some(socket));
    let nginx = Nginx::start(&site, &fpm);
    Stack { nginx, fpm, site }
}

#[test]
fn two_front_end_threads_serve_every_pool_feature() {
    let mut stack = two_threads(2, "pm_max_requests = 5\nqueue_max_len = 1000\n");
    assert_eq!(threads_named(stack.fpm.pid(), "front-end-1"), 1, "the second front-end thread is missing");
    let first = child_pids(&stack);
    assert_eq!(first.len(), 2, "two children at start: {first:?}");

    // Concurrent requests over both keepalive and plain nginx connections: every one is
    // answered whole, whichever thread accepted it; the pool's one actor counts them all.
    let handles: Vec<_> = (0..48)
        .map(|i| {
            let prefix = if i % 2 == 0 { "" } else { "/ka" };
            (i, get_in_thread(stack.url(&format!("{prefix}/hello.php"))))
        })
        .collect();
    for (i, handle) in handles {
        let r = handle.join().expect("request thread").unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert!(r.text().contains("Hello"), "request {i}: {}", r.text());
    }
    let json = get(&stack.url("/status?json")).text();
    assert_eq!(json_field(&json, "accepted conn").as_deref(), Some("48"), "{json}");
    assert_eq!(json_field(&json, "total processes").as_deref(), Some("2"), "{json}");
    assert_eq!(get(&stack.url("/ping")).text(), "pong");

    // pm_max_requests: the 48 requests over 2 children replaced both of the first ones.
    let after = child_pids(&stack);
    assert!(
        first.iter().all(|pid| !after.contains(pid)),
        "children {first:?} still serve after 48 requests with pm_max_requests = 5: {after:?}"
    );

    // A reload moves both threads' listeners to the new generation.
    std::fs::write(
        &stack.fpm.config,
        std::fs::read_to_string(&stack.fpm.config).unwrap().replace("pm_max_children = 2", "pm_max_children = 3"),
    )
    .unwrap();
    stack.fpm.signal(libc::SIGUSR2);
    let reloaded =
        wait_until(Duration::from_secs(20), || stack.fpm.log_text().contains("configuration reloaded: 2 pool(s)"));
    assert!(reloaded, "no reload:\n{}", stack.fpm.log_text());
    for prefix in ["", "/ka", "", "/ka"] {
        assert_eq!(get(&stack.url(&format!("{prefix}/hello.php"))).status, 200, "after the reload via {prefix}/");
    }
    let json = get(&stack.url("/status?json")).text();
    assert_eq!(json_field(&json, "total processes").as_deref(), Some("3"), "the new generation serves: {json}");

    // A graceful stop drains a request in flight, then every thread ends.
    let slow = get_in_thread(stack.url("/lc_sleep.php?name=drain&ms=1000"));
    assert!(
        wait_file(&stack.site.scratch().join("drain"), Duration::from_secs(10)).is_some(),
        "the slow request never started"
    );
    stack.fpm.signal(libc::SIGQUIT);
    let r = slow.join().expect("request thread").expect("the request in flight at SIGQUIT");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "END\n");
    let status = stack.fpm.wait_exit(Duration::from_secs(10)).expect("rustfpm did not exit after SIGQUIT");
    assert!(status.success(), "exit status after SIGQUIT: {status}");
}

/// One child and no queue (`queue_max_len = 0`), through two threads: a request
/// right after another ended is served (the worker on its way back is waited for,
/// whichever thread asks), one that finds the child busy gets 503 with Retry-After;
/// `request_terminate_timeout` ends a script that runs too long (504) and the
/// pool serves on; a client that goes away frees its child once the script ends;
/// `fastcgi_finish_request()` completes the response while the script runs on.
#[test]
fn two_front_end_threads_keep_the_queue_timeouts_aborts_and_finish() {
    let stack = two_threads(1, "queue_max_len = 0\nrequest_terminate_timeout = \"2s\"\n");
    for i in 0..40 {
        let prefix = ["", "/ka"][i % 2];
        let r = get(&stack.url(&format!("{prefix}/hello.php")));
        assert_eq!(r.status, 200, "request {i} via {prefix}/, right after the one before ended: {}", r.text());
    }

    // A busy child and no queue: 503 with Retry-After, on either thread. The child is busy
    // until the test lets it go (a fixed time could run out on a slow machine).
    let busy = get_in_thread(stack.url("/lc_gate.php?name=busy"));
    assert!(wait_file(&stack.site.scratch().join("busy"), Duration::from_secs(10)).is_some(), "busy never started");
    for prefix in ["", "/ka", "", "/ka"] {
        let r = get(&stack.url(&format!("{prefix}/hello.php")));
        assert_eq!(r.status, 503, "via {prefix}/ while the only child is busy: {}", r.text());
        assert!(r.header("Retry-After").is_some(), "503 without Retry-After: {:?}", r.headers);
    }
    stack.site.open_gate("busy");
    let r = busy.join().expect("request thread").expect("the busy request");
    assert_eq!((r.status, r.text().as_str()), (200, "END\n"));
    assert_eq!(get(&stack.url("/hello.php")).status, 200, "right after the busy request ended");

    // request_terminate_timeout: the script is killed, its child replaced.
    let r = get(&stack.url("/lc_sleep.php?name=slow&ms=20000"));
    assert_eq!(r.status, 504, "a script past request_terminate_timeout: {}", r.text());
    let killed: i32 = std::fs::read_to_string(stack.site.scratch().join("slow")).unwrap().trim().parse().unwrap();
    assert!(wait_until(Duration::from_secs(10), || !is_live_php(killed)), "child {killed} lives on after its 504");
    let served = wait_until(Duration::from_secs(10), || get(&stack.url("/ka/hello.php")).status == 200);
    assert!(served, "nothing served after the replacement:\n{}", stack.fpm.log_text());

    // A client that goes away mid-request: its child is free again once the script ends,
    // and the status page names the pool's one live child.
    {
        use std::io::Write;
        let mut client = std::net::TcpStream::connect(("127.0.0.1", stack.nginx.port)).unwrap();
        client
            .write_all(b"GET /lc_sleep.php?name=gone&ms=500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert!(wait_file(&stack.site.scratch().join("gone"), Duration::from_secs(10)).is_some(), "never started");
    }
    let served = wait_until(Duration::from_secs(20), || get(&stack.url("/hello.php")).status == 200);
    assert!(served, "the aborted request's child never served again:\n{}", stack.fpm.log_text());
    let pids = child_pids(&stack);
    let live: Vec<String> = stack.fpm.php_children().iter().map(i32::to_string).collect();
    assert!(
        pids.len() == 1 && live.contains(&pids[0]),
        "the status page shows {pids:?}, the live children are {live:?}"
    );

    // fastcgi_finish_request(): the answer is whole before the script ends.
    let go = stack.site.scratch().join("finish.go");
    let result = stack.site.scratch().join("finish.json");
    let query = format!("go={}&result={}", go.display(), result.display());
    for prefix in ["", "/ka"] {
        let _ = std::fs::remove_file(&go);
        let _ = std::fs::remove_file(&result);
        let r = get(&stack.url(&format!("{prefix}/finish_basic.php?{query}")));
        assert_eq!((r.status, r.text().as_str()), (200, "before\n"), "via {prefix}/");
        assert!(!result.exists(), "the script ended before the response was complete");
        std::fs::write(&go, "go").unwrap();
        let seen = wait_file(&result, Duration::from_secs(30)).expect("the script did not run on after the response");
        assert_eq!(seen, r#"{"first":true,"second":false,"exists":true,"go":true}"#);
        let served = wait_until(Duration::from_secs(10), || get(&stack.url("/hello.php")).status == 200);
        assert!(served, "the child never served again after fastcgi_finish_request() via {prefix}/");
    }
}

/// Two pools, each with its listener on both threads: each serves its own
/// scripts and counts its own requests, and its status page is its own.
#[test]
fn two_front_end_threads_serve_several_pools() {
    let site = Site::new();
    let second = site.path().join("second.sock");
    let mut opts = PoolOptions {
        children: 2,
        global: "front_end_threads = 2".into(),
        extra: "pm_status_path = \"/status\"\n".into(),
        ..Default::default()
    };
    opts.tables = opts.pool_table("second", second.display());
    let fpm = Rustfpm::start(&site, &opts);
    assert!(wait_until(Duration::from_secs(10), || second.exists()), "the second pool's socket is missing");
    let location = |name: &str, socket: &std::path::Path| {
        format!(
            r#"    location ^~ /{name}/ {{
      rewrite ^/{name}(/.*)$ $1 break;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_pass unix:{};
    }}
"#,
            socket.display()
        )
    };
    let nginx = Nginx::start_http(
        &site,
        &format!(
            "  server {{\n    listen 127.0.0.1:{{port}};\n    root {};\n{}{}  }}\n",
            site.www().display(),
            location("www", &fpm.socket),
            location("second", &second)
        ),
    );
    let handles: Vec<_> = (0..24)
        .map(|i| {
            let pool = ["www", "second"][i % 2];
            (pool, get_in_thread(nginx.url(&format!("/{pool}/hello.php"))))
        })
        .collect();
    for (pool, handle) in handles {
        let r = handle.join().expect("request thread").unwrap_or_else(|e| panic!("pool {pool}: {e}"));
        assert_eq!(r.status, 200, "pool {pool}: {}", r.text());
    }
    for pool in ["www", "second"] {
        let json = get(&nginx.url(&format!("/{pool}/status?json"))).text();
        assert_eq!(json_field(&json, "pool").as_deref(), Some(pool), "{json}");
        assert_eq!(json_field(&json, "accepted conn").as_deref(), Some("12"), "pool {pool}: {json}");
    }
}

/// Voluntary context switches of the thread of `pid` named `name` (it sleeps in its
/// reactor and wakes once per batch of readiness).
fn wake_ups_of(pid: i32, name: &str) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let status = std::fs::read_to_string(task.path().join("status")).expect("task status");
            return status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("voluntary_ctxt_switches");
        }
    }
    panic!("rustfpm {pid} has no thread named {name}");
}

/// With one pool and two threads, both accept on the pool's listener: a second thread
/// is not left idle (with as many pools as threads, each listener has one thread).
#[test]
fn one_pool_is_served_by_both_front_end_threads() {
    let stack = Stack::with(PoolOptions { children: 2, global: "front_end_threads = 2".into(), ..Default::default() });
    let pid = stack.fpm.pid();
    assert_eq!(threads_named(pid, "front-end-1"), 1, "the second front-end thread is missing");
    let before = wake_ups_of(pid, "front-end-1");
    for round in 0..6 {
        let handles: Vec<_> = (0..10).map(|_| get_in_thread(stack.url("/hello.php"))).collect();
        for handle in handles {
            let r = handle.join().expect("request thread").unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    let woken = wake_ups_of(pid, "front-end-1") - before;
    // 60 connections, each through a new nginx connection to rustfpm: the second
    // thread wakes for them (a thread without the listener would not wake at all).
    assert!(woken >= 6, "the second front-end thread woke {woken} times for 60 connections");
}
