//! `front_end_threads = 2`: two runtimes accept on the same listeners and share the
//! pool (one actor, one balancer). Every pool feature must behave as with one thread.

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

fn two_threads(children: usize, extra: &str) -> Stack {
    Stack::with(PoolOptions {
        children,
        global: "front_end_threads = 2".into(),
        extra: format!("pm_status_path = \"/status\"\nping_path = \"/ping\"\n{extra}"),
        ..Default::default()
    })
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
        wait_until(Duration::from_secs(20), || stack.fpm.log_text().contains("configuration reloaded: 1 pool(s)"));
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
