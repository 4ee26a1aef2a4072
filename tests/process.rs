//! Process management: recycling (pm_max_requests, pm_max_memory,
//! pm_max_lifetime, idle children of ondemand/dynamic pools),
//! request_terminate_timeout, queue_max_wait, SIGUSR2 reloads,
//! graceful_stop_on_term, process_control_timeout, the per-pool process
//! settings (chdir, rlimit_files, process_priority, catch_workers_output) and
//! two pools in one rustfpm.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// The pid a pm_*.php response printed first.
fn pid_in(r: &Response) -> i32 {
    r.text()
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("expected a pid in the response body (status {}): {:?}", r.status, r.text()))
}

/// GET that must answer 200 with a pid; returns the pid.
fn get_pid(url: &str) -> i32 {
    let r = get(url);
    assert_eq!(r.status, 200, "GET {url}: {}", r.text());
    pid_in(&r)
}

/// Number of log lines containing `needle`.
fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Log lines containing `needle`, for failure messages.
fn lines_with(log: &str, needle: &str) -> String {
    log.lines().filter(|l| l.contains(needle)).collect::<Vec<_>>().join("\n")
}

/// The pid in a "child PID replaced (...)" log line.
fn replaced_pids(log: &str, reason: &str) -> Vec<i32> {
    let needle = format!("replaced ({reason})");
    log.lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            let after = &l[l.find("child ")? + 6..];
            after.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// A static pool of `children`, with extra `[pool.www]` lines.
fn static_stack(children: usize, extra: &str) -> Stack {
    Stack::with(PoolOptions { children, extra: extra.into(), ..PoolOptions::default() })
}

/// Waits until none of `pids` is a live php-cgi; returns the survivors.
fn wait_php_dead(pids: &[i32], timeout: Duration) -> Vec<i32> {
    let mut left = Vec::new();
    wait_until(timeout, || {
        left = pids.iter().copied().filter(|p| is_live_php(*p)).collect();
        left.is_empty()
    });
    left
}

/// SIGKILLs whatever php-cgi of `pids` is still alive (cleanup after a
/// failed shutdown test).
fn kill_php(pids: &[i32]) {
    for p in pids.iter().copied().filter(|p| is_live_php(*p)) {
        // SAFETY: kill(2) on a php-cgi process this test started.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
}

// ---------------------------------------------------------------- recycling

/// pm_max_requests = 5: no child serves more than 5 requests; each is
/// replaced between requests, and every request succeeds.
#[test]
fn max_requests_replaces_children_after_five_requests() {
    let stack = static_stack(2, "pm_max_requests = 5\n");
    let mut seen: BTreeMap<i32, usize> = BTreeMap::new();
    for i in 0..40 {
        let prefix = if i % 2 == 0 { "" } else { "/ka" };
        let pid = get_pid(&stack.url(&format!("{prefix}/pm_pid.php")));
        *seen.entry(pid).or_default() += 1;
    }
    let log = stack.fpm.log_text();
    eprintln!("requests per child: {seen:?}");
    let over: Vec<_> = seen.iter().filter(|(_, n)| **n > 5).collect();
    assert!(
        over.is_empty(),
        "with pm_max_requests = 5, these children served more than 5 requests (pid, count): {over:?}; \
         all pids seen: {seen:?}\nreplacement lines:\n{}",
        lines_with(&log, "replaced")
    );
    assert!(seen.len() >= 8, "40 requests with at most 5 per child need at least 8 children, saw {seen:?}");
    assert!(
        wait_until(Duration::from_secs(3), || stack.fpm.log_text().contains("replaced (requests) after 5 requests")),
        "no 'replaced (requests) after 5 requests' in the log"
    );
}

/// pm_max_memory = "32M": a request that leaves the child holding more
/// private memory than that gets the child replaced after it.
///
/// PHP frees a request's memory at its end, but the Zend allocator keeps
/// cached 2 MB chunks (about the average of the previous count and the last
/// request's peak) and does not return them to the OS: after a request that
/// built ~128 MB of small strings the child still holds ~60 MB private
/// memory (measured: /proc/PID/statm before the next request). So the leak
/// is real and observable; no fake needed.
#[test]
fn max_memory_replaces_a_child_holding_too_much_memory() {
    let stack = static_stack(1, "pm_max_memory = \"32M\"\n");
    // Small requests: the child stays far below 32M and is kept.
    let mut first = 0;
    for i in 0..4 {
        let r = get(&stack.url("/pm_memory.php"));
        assert_eq!(r.status, 200, "{}", r.text());
        let pid = pid_in(&r);
        if i == 0 {
            first = pid;
        }
        assert_eq!(pid, first, "the only child changed without a reason: {}", stack.fpm.log_text());
    }
    assert!(!stack.fpm.log_text().contains("replaced (memory)"), "replaced for memory after small requests");

    // One big request; rustfpm measures after it. The pid of a fresh child is
    // only learnt after its first request, so try a few times.
    let mut big = Vec::new();
    let replaced = wait_until(Duration::from_secs(5), || {
        let r = get(&stack.url("/pm_memory.php?mb=128"));
        assert_eq!(r.status, 200, "{}", r.text());
        big.push(r.text().trim().to_string());
        wait_until(Duration::from_millis(500), || stack.fpm.log_text().contains("replaced (memory)"))
    });
    let log = stack.fpm.log_text();
    assert!(
        replaced,
        "no 'replaced (memory)' after requests leaving the child with ~60 MB private memory \
         (responses 'pid KiB-at-start KiB-at-end': {big:?})"
    );
    assert!(replaced_pids(&log, "memory").contains(&first), "{}", lines_with(&log, "replaced"));
    let r = get(&stack.url("/pm_memory.php"));
    assert_eq!(r.status, 200);
    let next = pid_in(&r);
    assert_ne!(next, first, "the next request was served by the replaced child");
    assert!(wait_php_dead(&[first], Duration::from_secs(3)).is_empty(), "replaced child {first} still alive");
    eprintln!("big requests: {big:?}; next: {}", r.text().trim());
}

/// pm_max_lifetime = 1: a child serving for more than 1 s is replaced
/// between requests; requests keep succeeding.
#[test]
fn max_lifetime_replaces_old_children() {
    let stack = static_stack(1, "pm_max_lifetime = 1\n");
    let first = get_pid(&stack.url("/pm_pid.php"));
    let mut pids = vec![first];
    let started = Instant::now();
    let replaced = wait_until(Duration::from_secs(6), || {
        let prefix = if pids.len() % 2 == 0 { "" } else { "/ka" };
        pids.push(get_pid(&stack.url(&format!("{prefix}/pm_pid.php"))));
        stack.fpm.log_text().contains("replaced (lifetime)")
    });
    assert!(replaced, "no 'replaced (lifetime)' within 6 s of steady requests ({} requests)", pids.len());
    eprintln!("lifetime replacement after {:?}", started.elapsed());
    for prefix in ["", "/ka", "", "/ka"] {
        pids.push(get_pid(&stack.url(&format!("{prefix}/pm_pid.php"))));
    }
    let last = *pids.last().unwrap();
    assert_ne!(last, first, "still served by the first child after its lifetime");
    assert!(wait_php_dead(&[first], Duration::from_secs(3)).is_empty(), "child {first} outlived its lifetime");
}

// ---------------------------------------------------------------- time limits

/// request_terminate_timeout = "1s": a 5 s request (asleep or spinning) gets
/// a 504, is logged as executing too slow, its child is killed and replaced,
/// and the next requests succeed; through `/` and `/ka/`.
fn terminate_timeout(spin: bool) {
    let stack = static_stack(2, "request_terminate_timeout = \"1s\"\n");
    assert_eq!(get(&stack.url("/pm_pid.php")).status, 200);
    let script = stack.site.www().join("pm_sleep.php").display().to_string();
    for (round, prefix) in ["", "/ka"].iter().enumerate() {
        let name = format!("slow{round}");
        let uri = format!("{prefix}/pm_sleep.php?name={name}&ms=5000&spin={}", spin as u8);
        let sent = Instant::now();
        let handle = get_in_thread(stack.url(&uri));
        let pid: i32 = wait_file(&stack.site.scratch().join(&name), Duration::from_secs(5))
            .expect("the slow script never started")
            .trim()
            .parse()
            .unwrap();
        let r = handle.join().unwrap().unwrap_or_else(|e| panic!("slow request via {prefix}/: {e}"));
        let took = sent.elapsed();
        assert_eq!(r.status, 504, "slow request (spin={spin}) via {prefix}/ after {took:?}: {}", r.text());
        assert!(took < Duration::from_millis(4500), "the 504 came only after {took:?} (the script runs 5 s)");
        let mut log = String::new();
        let logged = wait_until(Duration::from_secs(3), || {
            log = stack.fpm.log_text();
            log.lines().any(|l| l.contains("executing too slow") && l.contains(&script) && l.contains(&uri))
        });
        assert!(
            logged,
            "no 'executing too slow' line naming '{script}' and '{uri}'; such lines:\n{}",
            lines_with(&log, "executing too slow")
        );
        assert!(
            wait_php_dead(&[pid], Duration::from_secs(3)).is_empty(),
            "child {pid} of the timed-out request (spin={spin}) still alive 3 s after the 504"
        );
        for p in ["", "/ka", "", "/ka"] {
            let next = get_pid(&stack.url(&format!("{p}/pm_pid.php")));
            assert_ne!(next, pid, "served by the killed child");
        }
    }
    let mut live = Vec::new();
    assert!(
        wait_until(Duration::from_secs(3), || {
            live = stack.fpm.php_pids();
            live.len() == 3
        }),
        "the pool should be back to 1 parent + 2 children: {live:?}"
    );
}

#[test]
fn request_terminate_timeout_kills_a_sleeping_script_with_504() {
    terminate_timeout(false);
}

#[test]
fn request_terminate_timeout_kills_a_spinning_script_with_504() {
    terminate_timeout(true);
}

/// queue_max_wait = "300ms", one child busy for 4 s: a waiting request gets
/// a 503 with Retry-After well before the busy one ends.
#[test]
fn queue_max_wait_answers_503_with_retry_after() {
    let stack = static_stack(1, "queue_max_wait = \"300ms\"\n");
    assert_eq!(get(&stack.url("/pm_pid.php")).status, 200);
    let busy = get_in_thread(stack.url("/pm_sleep.php?name=busy&ms=4000"));
    assert!(wait_file(&stack.site.scratch().join("busy"), Duration::from_secs(5)).is_some(), "busy never started");
    for prefix in ["", "/ka"] {
        let sent = Instant::now();
        let r = get(&stack.url(&format!("{prefix}/pm_pid.php")));
        let took = sent.elapsed();
        assert_eq!(r.status, 503, "queued request via {prefix}/ (after {took:?}): {}", r.text());
        assert!(r.header("Retry-After").is_some(), "503 without Retry-After: {:?}", r.headers);
        // Before the busy request ended (not after a wall-clock bound, which a slow machine
        // may pass): a 503 sent only once the child was free would be no queue limit.
        assert!(!busy.is_finished(), "the 503 via {prefix}/ came only after the busy request ended ({took:?})");
        eprintln!("503 via {prefix}/ after {took:?}");
    }
    let r = busy.join().unwrap().expect("busy request");
    assert_eq!(r.status, 200, "{}", r.text());
    for prefix in ["", "/ka", "", "/ka"] {
        get_pid(&stack.url(&format!("{prefix}/pm_pid.php")));
    }
}

// ---------------------------------------------------------------- pm modes

/// ondemand: a used child idle for more than pm_process_idle_timeout is
/// replaced; requests keep succeeding.
#[test]
fn ondemand_replaces_idle_children() {
    let stack = Stack::with(PoolOptions { children: 2, pm: Pm::Ondemand { idle_timeout: "1s" }, ..Default::default() });
    let mut used = BTreeSet::new();
    for prefix in ["", "/ka", "", "/ka"] {
        used.insert(get_pid(&stack.url(&format!("{prefix}/pm_pid.php"))));
    }
    let idle_from = Instant::now();
    let mut log = String::new();
    let replaced = wait_until(Duration::from_secs(5), || {
        log = stack.fpm.log_text();
        replaced_pids(&log, "idle").iter().any(|p| used.contains(p))
    });
    assert!(
        replaced,
        "no used child ({used:?}) 'replaced (idle)' within 5 s (idle timeout 1 s); replacement lines:\n{}",
        lines_with(&log, "replaced")
    );
    eprintln!("idle replacement {:?} after the last request", idle_from.elapsed());
    let gone: Vec<i32> = replaced_pids(&log, "idle").into_iter().filter(|p| used.contains(p)).collect();
    assert!(wait_php_dead(&gone, Duration::from_secs(3)).is_empty(), "replaced idle children still alive");
    for prefix in ["", "/ka", "", "/ka"] {
        let pid = get_pid(&stack.url(&format!("{prefix}/pm_pid.php")));
        assert!(!gone.contains(&pid), "served by replaced child {pid}");
    }
}

/// ondemand with 32 children: a burst of 32 requests runs at once, each on a child of its
/// own. Each request waits until all 32 have reached a child (up to 30 s), so they can only
/// all say 32 if the pool started children for all of them together: shown so, not by how
/// long the burst took (which a slow machine stretches; the benchmark measures that).
#[test]
fn ondemand_serves_a_burst_of_32_concurrent_requests() {
    let stack =
        Stack::with(PoolOptions { children: 32, pm: Pm::Ondemand { idle_timeout: "10s" }, ..Default::default() });
    stack.site.script(
        "burst.php",
        "<?php touch(__DIR__ . '/../scratch/burst-' . getmypid());\n\
         $end = microtime(true) + 30;\n\
         while (count(glob(__DIR__ . '/../scratch/burst-*')) < 32 && microtime(true) < $end) usleep(10000);\n\
         echo getmypid(), ' ', count(glob(__DIR__ . '/../scratch/burst-*'));",
    );
    assert_eq!(get(&stack.url("/pm_pid.php")).status, 200);
    let started = Instant::now();
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let prefix = if i % 2 == 0 { "" } else { "/ka" };
            get_in_thread(stack.url(&format!("{prefix}/burst.php")))
        })
        .collect();
    let mut pids = BTreeSet::new();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().unwrap().unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        let text = r.text();
        let (pid, arrived) = text.split_once(' ').unwrap_or_else(|| panic!("request {i}: {text:?}"));
        assert_eq!(arrived, "32", "request {i} (child {pid}) saw only {arrived} of the 32 requests running");
        pids.insert(pid.to_string());
    }
    eprintln!("32 concurrent requests (ondemand, 32 children) took {:?} on {} children", started.elapsed(), pids.len());
    assert_eq!(pids.len(), 32, "32 requests running at once on children {pids:?}");
}

/// dynamic (4 children, 1..2 spare): serves; after a burst that used all
/// four, the used idle children beyond 2 are replaced.
#[test]
fn dynamic_replaces_used_idle_children_beyond_max_spare() {
    let stack = Stack::with(PoolOptions {
        children: 4,
        pm: Pm::Dynamic { start: 2, min_spare: 1, max_spare: 2 },
        ..Default::default()
    });
    for prefix in ["", "/ka", "", "/ka"] {
        get_pid(&stack.url(&format!("{prefix}/pm_pid.php")));
    }
    let before = count_lines(&stack.fpm.log_text(), "replaced (idle)");
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let prefix = if i % 2 == 0 { "" } else { "/ka" };
            get_in_thread(stack.url(&format!("{prefix}/pm_sleep.php?ms=200")))
        })
        .collect();
    let mut used = BTreeSet::new();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().unwrap().unwrap_or_else(|e| panic!("burst request {i}: {e}"));
        assert_eq!(r.status, 200, "burst request {i}: {}", r.text());
        used.insert(pid_in(&r));
    }
    assert!(used.len() >= 3, "8 concurrent 200 ms requests on 4 children used only {used:?}");
    let want = used.len() - 2;
    let mut log = String::new();
    let trimmed = wait_until(Duration::from_secs(3), || {
        log = stack.fpm.log_text();
        count_lines(&log, "replaced (idle)") - before >= want
    });
    assert!(
        trimmed,
        "after a burst on {} children ({used:?}) with pm_max_spare_servers = 2, expected {want} \
         'replaced (idle)' within 3 s; replacement lines:\n{}",
        used.len(),
        lines_with(&log, "replaced")
    );
    for prefix in ["", "/ka", "", "/ka"] {
        get_pid(&stack.url(&format!("{prefix}/pm_pid.php")));
    }
}

// ---------------------------------------------------------------- reload

/// 10 SIGUSR2 reloads under continuous load through `/` and `/ka/`: no
/// request fails, a new php-cgi generation serves, the old one goes.
#[test]
fn reloads_under_load_fail_no_request() {
    let stack = static_stack(4, "");
    for _ in 0..4 {
        get_pid(&stack.url("/pm_pid.php"));
    }
    let mut first_parent = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            first_parent = stack.fpm.php_parent();
            first_parent.is_some() && stack.fpm.php_pids().len() == 5
        }),
        "pool not up: {:?}",
        stack.fpm.php_pids()
    );
    let first_parent = first_parent.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<JoinHandle<usize>> = (0..4)
        .map(|i| {
            let prefix = if i % 2 == 0 { "" } else { "/ka" };
            let url = stack.url(&format!("{prefix}/pm_pid.php"));
            let (stop, failures, done) = (stop.clone(), failures.clone(), done.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    match try_get(&url) {
                        Ok(r) if r.status == 200 && r.text().trim().parse::<i32>().is_ok() => {}
                        Ok(r) => failures.lock().unwrap().push(format!("{url}: {} {:?}", r.status, r.text())),
                        Err(e) => failures.lock().unwrap().push(format!("{url}: {e}")),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                n
            })
        })
        .collect();
    // Let the load run, then reload 10 times, each once the previous one is
    // done (a SIGUSR2 that arrives during a reload is merged with any other
    // pending one into a single reload after it, as signals are).
    assert!(wait_until(Duration::from_secs(5), || done.load(Ordering::Relaxed) >= 20), "the load does not run");
    let mut reloaded = true;
    for i in 1..=10 {
        std::thread::sleep(Duration::from_millis(100));
        stack.fpm.signal(libc::SIGUSR2);
        reloaded &=
            wait_until(Duration::from_secs(10), || count_lines(&stack.fpm.log_text(), "configuration reloaded") >= i);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let total: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let failures = failures.lock().unwrap().clone();
    let log = stack.fpm.log_text();
    eprintln!("{total} requests during 10 reloads, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed during 10 SIGUSR2 reloads (should be none); first ones:\n{}",
        failures.len(),
        failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(total >= 40, "the load barely ran: {total} requests");
    assert_eq!(count_lines(&log, "Reloading in progress"), 10, "{}", lines_with(&log, "eload"));
    assert!(reloaded, "not 10 'configuration reloaded' lines:\n{}", lines_with(&log, "eload"));
    assert!(!log.contains("reload failed") && !log.contains("reload refused"), "{}", lines_with(&log, "reload"));

    let mut now = Vec::new();
    let settled = wait_until(Duration::from_secs(5), || {
        now = stack.fpm.php_pids();
        now.len() <= 5 && stack.fpm.php_parent().is_some_and(|p| p != first_parent)
    });
    assert!(
        settled,
        "5 s after the last reload, expected one new php-cgi parent (not {first_parent}) with 4 children; \
         live php-cgi under rustfpm: {now:?}, parents {:?}",
        stack.fpm.php_parents()
    );
    assert!(!is_live_php(first_parent), "the first php-cgi parent {first_parent} is still alive");
    for prefix in ["", "/ka"] {
        get_pid(&stack.url(&format!("{prefix}/pm_pid.php")));
    }
}

/// A request running during a reload finishes on the old generation, whose
/// php-cgi processes then go away.
#[test]
fn reload_lets_a_running_request_finish() {
    let stack = static_stack(2, "");
    get_pid(&stack.url("/pm_pid.php"));
    let mut parent = None;
    assert!(wait_until(Duration::from_secs(5), || {
        parent = stack.fpm.php_parent();
        parent.is_some() && stack.fpm.php_pids().len() == 3
    }));
    let old = stack.fpm.php_pids();
    // Held until the test lets it go: the reload below may take longer than any fixed time.
    let busy = get_in_thread(stack.url("/ka/lc_gate.php?name=r"));
    let pid: i32 = wait_file(&stack.site.scratch().join("r"), Duration::from_secs(5))
        .expect("request never started")
        .trim()
        .parse()
        .unwrap();
    stack.fpm.signal(libc::SIGUSR2);
    assert!(
        wait_until(Duration::from_secs(5), || stack.fpm.log_text().contains("configuration reloaded")),
        "no reload:\n{}",
        stack.fpm.log_text()
    );
    // New requests go to the new generation meanwhile.
    for prefix in ["", "/ka"] {
        let p = get_pid(&stack.url(&format!("{prefix}/pm_pid.php")));
        assert!(!old.contains(&p), "request after the reload served by old child {p}");
    }
    assert!(is_live_php(pid), "the old child {pid} was stopped while its request ran");
    stack.site.open_gate("r");
    let r = busy.join().unwrap().unwrap_or_else(|e| panic!("request running across the reload: {e}"));
    // The answer of the script that wrote `pid` when it started on the old child.
    assert_eq!((r.status, r.text().as_str()), (200, "END\n"), "request running across the reload");
    let left = wait_php_dead(&old, Duration::from_secs(5));
    assert!(left.is_empty(), "old generation php-cgi {left:?} still alive 5 s after its last request");
}

/// SIGUSR2 with a broken config: the error and the refusal are logged, the
/// running pool keeps serving with the same php-cgi parent.
#[test]
fn reload_with_a_broken_config_is_refused() {
    let stack = static_stack(2, "");
    get_pid(&stack.url("/pm_pid.php"));
    let mut parent = None;
    assert!(wait_until(Duration::from_secs(5), || {
        parent = stack.fpm.php_parent();
        parent.is_some()
    }));
    let text = std::fs::read_to_string(&stack.fpm.config).unwrap();
    assert!(text.contains("pm_max_children = 2\n"), "{text}");
    std::fs::write(&stack.fpm.config, text.replace("pm_max_children = 2\n", "pm_max_children = 0\n")).unwrap();
    stack.fpm.signal(libc::SIGUSR2);
    let mut log = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            log = stack.fpm.log_text();
            log.contains("reload refused")
        }),
        "no 'reload refused' after SIGUSR2 on a config with pm_max_children = 0:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("pm_max_children") && !l.contains("started with")),
        "the log should name the bad key pm_max_children:\n{log}"
    );
    for prefix in ["", "/ka", "", "/ka"] {
        get_pid(&stack.url(&format!("{prefix}/pm_pid.php")));
    }
    assert_eq!(stack.fpm.php_parent(), parent, "the php-cgi parent changed after a refused reload");
    assert!(!log.contains("configuration reloaded"));
}

/// A reload from pm_max_children = 2 to 3: three requests run at once on
/// three different children.
#[test]
fn reload_can_raise_max_children() {
    let stack = static_stack(2, "");
    get_pid(&stack.url("/pm_pid.php"));
    let mut parent = None;
    assert!(wait_until(Duration::from_secs(5), || {
        parent = stack.fpm.php_parent();
        parent.is_some()
    }));
    let text = std::fs::read_to_string(&stack.fpm.config).unwrap();
    std::fs::write(&stack.fpm.config, text.replace("pm_max_children = 2\n", "pm_max_children = 3\n")).unwrap();
    stack.fpm.signal(libc::SIGUSR2);
    let mut now = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            now = stack.fpm.php_pids();
            stack.fpm.log_text().contains("configuration reloaded")
                && stack.fpm.php_parent().is_some_and(|p| Some(p) != parent)
                && now.len() == 4
        }),
        "no new generation of 1 parent + 3 children after the reload: {now:?}\n{}",
        stack.fpm.log_text()
    );
    // Three requests held until all three run (each on a child: a third one queued for a
    // child would never write its pid), then let go.
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let prefix = if i % 2 == 0 { "" } else { "/ka" };
            get_in_thread(stack.url(&format!("{prefix}/lc_gate.php?name=c{i}")))
        })
        .collect();
    let mut pids = BTreeSet::new();
    for i in 0..3 {
        let pid = wait_file(&stack.site.scratch().join(format!("c{i}")), Duration::from_secs(10));
        pids.insert(pid.unwrap_or_else(|| panic!("request c{i} did not start while the others ran: {pids:?}")));
    }
    for i in 0..3 {
        stack.site.open_gate(&format!("c{i}"));
    }
    for h in handles {
        let r = h.join().unwrap().expect("request");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(pids.len(), 3, "3 concurrent requests after raising pm_max_children to 3 ran on {pids:?}");
}

// ---------------------------------------------------------------- stopping

/// graceful_stop_on_term = true: SIGTERM lets the running request finish,
/// then rustfpm exits 0.
#[test]
fn graceful_stop_on_term_finishes_the_running_request() {
    let mut stack =
        Stack::with(PoolOptions { children: 2, global: "graceful_stop_on_term = true".into(), ..Default::default() });
    get_pid(&stack.url("/pm_pid.php"));
    let php = stack.fpm.php_pids_once_started(2);
    let busy = get_in_thread(stack.url("/pm_sleep.php?name=g&ms=1000"));
    assert!(wait_file(&stack.site.scratch().join("g"), Duration::from_secs(5)).is_some(), "request never started");
    stack.fpm.signal(libc::SIGTERM);
    let r = busy.join().unwrap().unwrap_or_else(|e| panic!("the request running at SIGTERM failed: {e}"));
    assert_eq!(r.status, 200, "request running at SIGTERM with graceful_stop_on_term: {}", r.text());
    let status = stack.fpm.wait_exit(Duration::from_secs(10)).expect("rustfpm did not exit within 10 s of SIGTERM");
    assert!(status.success(), "rustfpm exit status: {status}");
    let left = wait_php_dead(&php, Duration::from_secs(3));
    kill_php(&left);
    assert!(left.is_empty(), "php-cgi left alive after the graceful stop: {left:?}");
}

/// process_control_timeout = "1s": SIGQUIT with a 10 s request running
/// exits within a few seconds and leaves no php-cgi behind.
#[test]
fn process_control_timeout_bounds_a_graceful_stop() {
    let mut stack = Stack::with(PoolOptions {
        children: 2,
        global: "process_control_timeout = \"1s\"".into(),
        ..Default::default()
    });
    get_pid(&stack.url("/pm_pid.php"));
    let php = stack.fpm.php_pids_once_started(2);
    let busy = get_in_thread(stack.url("/pm_sleep.php?name=q&ms=10000"));
    assert!(wait_file(&stack.site.scratch().join("q"), Duration::from_secs(5)).is_some(), "request never started");
    let sent = Instant::now();
    stack.fpm.signal(libc::SIGQUIT);
    let status = stack.fpm.wait_exit(Duration::from_secs(8));
    let took = sent.elapsed();
    let left = wait_php_dead(&php, Duration::from_secs(3));
    kill_php(&left);
    let status = status.unwrap_or_else(|| {
        panic!("rustfpm did not exit within 8 s of SIGQUIT (process_control_timeout 1s, a 10 s request running)")
    });
    eprintln!("exited {took:?} after SIGQUIT with {status}");
    assert!(took < Duration::from_secs(5), "rustfpm took {took:?} to exit (process_control_timeout 1s)");
    assert!(left.is_empty(), "php-cgi left alive after the stop: {left:?}");
    // The cut-off request ends one way or another: 502/504, a reset, or even
    // a 200, as php-cgi's children take the SIGTERM that precedes the SIGKILL
    // as "finish and exit", which cuts the script's usleep() short.
    match busy.join().unwrap() {
        Ok(r) => eprintln!("the cut-off request got {} {:?}", r.status, r.text()),
        Err(e) => eprintln!("the cut-off request failed: {e}"),
    }
}

// ---------------------------------------------------------------- process settings

/// chdir = "/tmp": the php-cgi processes start in /tmp (php-cgi itself
/// changes to the script's directory for each request, so getcwd() in a
/// script shows that, not `chdir`).
#[test]
fn chdir_sets_the_working_directory_of_php_cgi() {
    let stack = static_stack(2, "chdir = \"/tmp\"\n");
    let r = get(&stack.url("/pm_info.php"));
    assert_eq!(r.status, 200, "{}", r.text());
    let lines: Vec<String> = r.text().lines().map(String::from).collect();
    eprintln!("pm_info.php: {lines:?}");
    let parent: i32 = lines[1].parse().unwrap();
    let cwd = std::fs::read_link(format!("/proc/{parent}/cwd")).unwrap();
    assert_eq!(cwd, PathBuf::from("/tmp"), "cwd of the php-cgi parent {parent}");
    // The idle children were forked in /tmp too (ones that served a request
    // may have moved to the script's directory).
    let children = php_children_of(parent);
    let in_tmp = children
        .iter()
        .filter(|c| std::fs::read_link(format!("/proc/{c}/cwd")).is_ok_and(|d| d == Path::new("/tmp")))
        .count();
    assert!(in_tmp >= 1, "no php-cgi child of {parent} in /tmp: {children:?}");
}

/// rlimit_files = 1234: the children's open file limit.
#[test]
fn rlimit_files_sets_the_open_file_limit() {
    let stack = static_stack(2, "rlimit_files = 1234\n");
    let pid = get_pid(&stack.url("/pm_pid.php"));
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files line").to_string();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], &["1234", "1234"], "child {pid}: {line}");
}

/// process_priority = 5: the children's nice value.
#[test]
fn process_priority_sets_the_nice_value() {
    let stack = static_stack(2, "process_priority = 5\n");
    let pid = get_pid(&stack.url("/pm_pid.php"));
    let nice = |p: i32| stat_field(p, 19); // nice
    assert_eq!(nice(pid), 5, "nice of child {pid}");
    let parent = php_parent_of(pid);
    assert_eq!(nice(parent), 5, "nice of parent {parent}");
    // rustfpm itself keeps its own priority.
    assert_eq!(nice(stack.fpm.pid()), 0, "rustfpm's own nice value changed");
}

/// Field `n` (numbered from 1, as in proc(5)) of `/proc/PID/stat`.
fn stat_field(pid: i32, n: usize) -> i64 {
    stat_field_of(&format!("/proc/{pid}/stat"), n)
}

/// Field `n` of a `stat` file (a process's or a thread's).
fn stat_field_of(path: &str, n: usize) -> i64 {
    let text = std::fs::read_to_string(path).unwrap();
    // The fields after the command (field 2, which may hold spaces) start at field 3.
    let rest: Vec<&str> = text[text.rfind(')').unwrap() + 1..].split_whitespace().collect();
    rest[n - 3].parse().unwrap()
}

/// The php-cgi parent of php-cgi child `child`.
fn php_parent_of(child: i32) -> i32 {
    let parent = proc_stat(child).map(|(_, _, ppid)| ppid).unwrap_or_else(|| panic!("child {child} is gone"));
    assert!(is_live_php(parent), "the parent {parent} of child {child} is no php-cgi");
    parent
}

/// The scheduling policy (stat field 41) of php-cgi's parent and a child, and of the main
/// thread (the front end) of rustfpm. The parent is the serving child's: rustfpm may have
/// more php-cgi of its own for a while (a `php-cgi -i` it killed, which under SCHED_IDLE
/// beside busy processes takes seconds to get the CPU it needs to die), so "the one php-cgi
/// whose parent is not php-cgi" may be two.
fn policies(stack: &Stack) -> (i64, i64, i64) {
    let child = get_pid(&stack.url("/pm_pid.php"));
    let parent = php_parent_of(child);
    (stat_field(parent, 41), stat_field(child, 41), stat_field(stack.fpm.pid(), 41))
}

/// process_sched_policy unset: php-cgi and rustfpm's front end run under SCHED_BATCH (3).
#[test]
fn rustfpm_and_the_children_run_under_sched_batch_by_default() {
    let stack = static_stack(2, "");
    assert_eq!(policies(&stack), (3, 3, 3), "policies of (php-cgi parent, child, rustfpm)");
}

/// A pool's process_sched_policy = "other" and "idle": its children run under SCHED_OTHER
/// (0) and SCHED_IDLE (5); rustfpm stays under SCHED_BATCH.
#[test]
fn process_sched_policy_sets_the_childrens_policy() {
    for (name, policy) in [("other", 0), ("idle", 5)] {
        let stack = static_stack(2, &format!("process_sched_policy = \"{name}\"\n"));
        assert_eq!(policies(&stack), (policy, policy, 3), "{name}: policies of (php-cgi parent, child, rustfpm)");
    }
}

/// `[global] process_sched_policy = "other"`: every thread of rustfpm runs under SCHED_OTHER
/// (0), the children under their pool's default SCHED_BATCH (3).
#[test]
fn the_global_process_sched_policy_sets_rustfpms_own() {
    let options =
        PoolOptions { children: 2, global: "process_sched_policy = \"other\"\n".into(), ..PoolOptions::default() };
    let stack = Stack::with(options);
    assert_eq!(policies(&stack), (3, 3, 0), "policies of (php-cgi parent, child, rustfpm)");
    for (task, policy) in thread_policies(stack.fpm.pid()) {
        assert_eq!(policy, 0, "thread {task} of rustfpm");
    }
}

/// The scheduling policy of each thread of `pid`, by thread id.
fn thread_policies(pid: i32) -> Vec<(i32, i64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let ids = tasks.map(|t| t.unwrap().file_name().to_string_lossy().parse::<i32>().unwrap());
    ids.map(|task| (task, stat_field_of(&format!("/proc/{pid}/task/{task}/stat"), 41))).collect()
}

/// Every thread of rustfpm runs under the default SCHED_BATCH (3), also those that start
/// early: the Prometheus exporter's (metrics_listen) and a second front end's.
#[test]
fn every_thread_of_rustfpm_runs_under_its_policy() {
    let global = format!("metrics_listen = \"127.0.0.1:{}\"\nfront_end_threads = 2\n", free_port());
    let stack = Stack::with(PoolOptions { children: 2, global, ..PoolOptions::default() });
    let threads = thread_policies(stack.fpm.pid());
    assert!(threads.len() > 3, "rustfpm's threads: {threads:?}");
    let other: Vec<_> = threads.iter().filter(|(_, policy)| *policy != 3).collect();
    assert!(other.is_empty(), "threads (id, policy) of rustfpm not under SCHED_BATCH: {other:?} of {threads:?}");
}

/// A stack whose rustfpm is started under SCHED_IDLE, as systemd's
/// `CPUSchedulingPolicy=idle` starts a service; without CAP_SYS_NICE if `no_sys_nice` (a
/// service that is not root, or a container without that capability).
fn stack_started_under_idle(options: PoolOptions, no_sys_nice: bool) -> Stack {
    use std::os::unix::process::CommandExt;
    const CAP_SYS_NICE: libc::c_ulong = 23;
    let site = Site::new();
    let (config, socket) = Rustfpm::write_config(&site, &options);
    let fpm = Rustfpm::start_command(&site, &config, socket, |command| {
        let idle = move || -> std::io::Result<()> {
            // SAFETY: setrlimit, sched_setscheduler and prctl are async-signal-safe and only
            // read what they are passed.
            unsafe {
                if no_sys_nice {
                    // Leaving SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE of 20; a test
                    // run as root drops the capability (one that is not has none to drop).
                    libc::setrlimit(libc::RLIMIT_NICE, &libc::rlimit { rlim_cur: 0, rlim_max: 0 });
                    libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0);
                }
                if libc::sched_setscheduler(0, libc::SCHED_IDLE, &libc::sched_param { sched_priority: 0 }) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: the closure makes only async-signal-safe system calls.
        unsafe { command.pre_exec(idle) };
    });
    let nginx = Nginx::start(&site, &fpm);
    Stack { nginx, fpm, site }
}

/// "batch" asked for where the kernel refuses it (rustfpm started under SCHED_IDLE without
/// CAP_SYS_NICE): the pool must still serve, its children under the policy they inherit,
/// and each refusal is a warning that names the pool, the key and the value.
#[test]
fn a_sched_policy_the_kernel_refuses_leaves_the_inherited_one() {
    let batch = "process_sched_policy = \"batch\"\n".to_string();
    let options = PoolOptions { children: 2, global: batch.clone(), extra: batch, ..PoolOptions::default() };
    let stack = stack_started_under_idle(options, true);
    assert_eq!(policies(&stack), (5, 5, 5), "policies of (php-cgi parent, child, rustfpm)");
    // The pool's warning is written as its php-cgi parent starts, which may be after rustfpm
    // says it is ready: wait for it rather than read the log once.
    let warned = |needle: &str| {
        wait_until(Duration::from_secs(5), || {
            stack.fpm.log_text().lines().any(|l| l.contains("WARNING") && l.contains(needle))
        })
    };
    let log = || stack.fpm.log_text();
    assert!(warned("[pool www] cannot run php-cgi under process_sched_policy = \"batch\""), "{}", log());
    assert!(warned("cannot run under [global] process_sched_policy = \"batch\""), "{}", log());
}

/// process_sched_policy unset, rustfpm started under SCHED_IDLE (5) by its parent (systemd's
/// `CPUSchedulingPolicy=idle`): the default "batch" does not override what the parent chose;
/// rustfpm and its children stay under SCHED_IDLE, and a notice says so.
#[test]
fn the_default_keeps_a_policy_rustfpm_was_started_under() {
    let stack = stack_started_under_idle(PoolOptions { children: 2, ..PoolOptions::default() }, false);
    assert_eq!(policies(&stack), (5, 5, 5), "policies of (php-cgi parent, child, rustfpm)");
    let log = stack.fpm.log_text();
    let kept = "process_sched_policy is not set: rustfpm keeps the policy it was started under (idle)";
    assert_eq!(count_lines(&log, kept), 1, "{log}");
    // No warning about the policy (the pool's would come as its php-cgi parent starts, before
    // a child served). Others may come: under SCHED_IDLE beside busy processes `php-cgi -i`
    // can take longer than rustfpm waits for it, which it says in a warning.
    let warned = log.lines().filter(|l| l.contains("WARNING") && l.contains("process_sched_policy")).count();
    assert_eq!(warned, 0, "{log}");
}

/// A reload applies a pool's process_sched_policy to its new children; rustfpm's own threads
/// keep theirs (they are not started again), and a changed `[global] process_sched_policy`
/// says so rather than being dropped without a word.
#[test]
fn a_reload_changes_the_childrens_policy_and_warns_about_the_global_one() {
    let stack = static_stack(2, "");
    assert_eq!(policies(&stack), (3, 3, 3), "policies of (php-cgi parent, child, rustfpm) at start");
    let text = std::fs::read_to_string(&stack.fpm.config).unwrap();
    let text = text.replace("[global]\n", "[global]\nprocess_sched_policy = \"other\"\n");
    let text = text.replace("[pool.www]\n", "[pool.www]\nprocess_sched_policy = \"other\"\n");
    std::fs::write(&stack.fpm.config, text).unwrap();
    stack.fpm.signal(libc::SIGUSR2);
    let reloaded = wait_until(Duration::from_secs(20), || stack.fpm.log_text().contains("configuration reloaded"));
    assert!(reloaded, "no reload:\n{}", stack.fpm.log_text());
    let retired = wait_until(Duration::from_secs(10), || stack.fpm.php_parents().len() == 1);
    assert!(retired, "the old php-cgi parent is still there: {:?}", stack.fpm.php_parents());
    assert_eq!(policies(&stack), (0, 0, 3), "policies of (php-cgi parent, child, rustfpm) after the reload");
    // Written after "configuration reloaded", once the new pools are in place.
    let warning = "[global] process_sched_policy changes take effect at the next restart";
    let log = stack.fpm.wait_logged(warning);
    assert_eq!(count_lines(&log, warning), 1, "{log}");
}

/// Every `[global]` key read only at start says so when a reload changes it, once, and the
/// reload goes on: the pools are replaced, rustfpm's threads and limits stay as they are.
#[test]
fn a_reload_names_each_global_key_that_waits_for_a_restart() {
    let stack = static_stack(2, "");
    let text = std::fs::read_to_string(&stack.fpm.config).unwrap();
    let globals = "[global]\nfront_end_threads = 3\nrlimit_files = 4096\nsystemd_interval = \"7s\"\n";
    std::fs::write(&stack.fpm.config, text.replace("[global]\n", globals)).unwrap();
    stack.fpm.signal(libc::SIGUSR2);
    let reloaded = wait_until(Duration::from_secs(20), || stack.fpm.log_text().contains("configuration reloaded"));
    assert!(reloaded, "no reload:\n{}", stack.fpm.log_text());
    // The warnings come after "configuration reloaded", once the new pools are in place.
    let warnings = ["front_end_threads", "rlimit_files", "systemd_interval"]
        .map(|key| format!("[global] {key} changes take effect at the next restart"));
    let log = stack.fpm.wait_log("the three warnings", |log| warnings.iter().all(|w| log.contains(w.as_str())));
    for warning in &warnings {
        assert_eq!(count_lines(&log, warning), 1, "{warning}:\n{log}");
    }
    assert_eq!(count_lines(&log, "process_sched_policy changes"), 0, "unchanged keys are not named:\n{log}");
}

/// catch_workers_output = true: what a child writes to its stderr (fd 2)
/// shows up in rustfpm's log.
#[test]
fn catch_workers_output_logs_the_children_stderr() {
    let stack = static_stack(2, "catch_workers_output = true\n");
    for prefix in ["", "/ka"] {
        let marker = format!("marker-caught{}", prefix.len());
        get_pid(&stack.url(&format!("{prefix}/pm_stderr.php?m={marker}")));
        let mut log = String::new();
        assert!(
            wait_until(Duration::from_secs(3), || {
                log = stack.fpm.log_text();
                log.lines().any(|l| l.contains("said into stderr") && l.contains(&marker))
            }),
            "'{marker}' written to fd 2 by the script is not in the log as 'said into stderr':\n{log}"
        );
    }
}

/// catch_workers_output off (the default): the children's stderr is
/// discarded.
#[test]
fn without_catch_workers_output_stderr_is_discarded() {
    let stack = static_stack(2, "");
    get_pid(&stack.url("/pm_stderr.php?m=marker-discarded"));
    // The positive case shows up within milliseconds; give it generous time.
    let leaked = wait_until(Duration::from_millis(700), || stack.fpm.log_text().contains("marker-discarded"));
    assert!(!leaked, "the child's stderr reached the log without catch_workers_output:\n{}", stack.fpm.log_text());
    assert!(!stack.fpm.log_text().contains("said into stderr"));
}

// ---------------------------------------------------------------- two pools

/// Two pools in one rustfpm, each behind its own socket and nginx: each
/// serves with its own php-cgi parent and child count, and killing every
/// child of one does not disturb the other.
#[test]
fn two_pools_are_independent() {
    let site = Site::new();
    let (sock_a, sock_b) = (site.path().join("a.sock"), site.path().join("b.sock"));
    let pool = |children| PoolOptions { children, ..Default::default() };
    let config = site.write_config(&format!(
        "{}{}{}",
        pool(2).global_table(),
        pool(2).pool_table("alpha", sock_a.display()),
        pool(3).pool_table("beta", sock_b.display())
    ));
    let fpm = Rustfpm::start_with_config(&site, &config, Some(sock_a.clone()));
    // One nginx per pool, each in its own site dir (nginx.conf, pid file).
    let (site_a, site_b) = (Site::new(), Site::new());
    let nginx_a = Nginx::start_upstream(&site_a, &format!("unix:{}", sock_a.display()));
    let nginx_b = Nginx::start_upstream(&site_b, &format!("unix:{}", sock_b.display()));

    let info = |nginx: &Nginx, path: &str| -> (i32, i32) {
        let r = get(&nginx.url(path));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let l: Vec<i32> = r.text().lines().take(2).map(|x| x.parse().unwrap()).collect();
        (l[0], l[1])
    };
    let (_, parent_a) = info(&nginx_a, "/pm_info.php");
    let (_, parent_b) = info(&nginx_b, "/ka/pm_info.php");
    assert_ne!(parent_a, parent_b, "both pools served by the same php-cgi parent");
    let mut counts = (0, 0);
    assert!(
        wait_until(Duration::from_secs(5), || {
            counts = (php_children_of(parent_a).len(), php_children_of(parent_b).len());
            counts == (2, 3)
        }),
        "children of alpha (pm_max_children 2) and beta (3): {counts:?}"
    );
    for _ in 0..6 {
        assert_eq!(info(&nginx_a, "/pm_info.php").1, parent_a);
        assert_eq!(info(&nginx_b, "/pm_info.php").1, parent_b);
    }

    let victims = php_children_of(parent_a);
    let beta_before = php_children_of(parent_b);
    for v in &victims {
        // SAFETY: kill(2) on a php-cgi child of pool alpha.
        unsafe { libc::kill(*v, libc::SIGKILL) };
    }
    // beta is untouched and serves at once.
    for prefix in ["", "/ka", "", "/ka"] {
        let (pid, parent) = info(&nginx_b, &format!("{prefix}/pm_info.php"));
        assert_eq!(parent, parent_b);
        assert!(beta_before.contains(&pid), "beta served by {pid}, not one of its children {beta_before:?}");
    }
    assert_eq!(php_children_of(parent_b), beta_before, "beta's children changed when alpha's were killed");
    // alpha recovers.
    assert!(wait_php_dead(&victims, Duration::from_secs(3)).is_empty());
    let mut served = false;
    assert!(
        wait_until(Duration::from_secs(5), || {
            served = try_get(&nginx_a.url("/pm_info.php")).is_ok_and(|r| r.status == 200);
            served && php_children_of(parent_a).len() == 2
        }),
        "alpha did not recover after its children were killed (served: {served}):\n{}",
        fpm.log_text()
    );
    for _ in 0..4 {
        let (pid, parent) = info(&nginx_a, "/pm_info.php");
        assert_eq!(parent, parent_a);
        assert!(!victims.contains(&pid));
    }
    drop(nginx_a);
    drop(nginx_b);
    drop(fpm);
}
