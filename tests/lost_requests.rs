//! Requests lost to the pool's own bookkeeping: through the real binary,
//! nginx and php-cgi. (The races of the actor's notes with the balancer are
//! shown by the unit harness, `pool/actor_tests.rs`: end to end they
//! reproduce too rarely for a test.)

mod common;
use common::*;

/// The pid php-cgi answers `url` with (`pm_pid.php`).
fn served_by(url: &str, log: impl Fn() -> String) -> i32 {
    let r = get(url);
    assert_eq!(r.status, 200, "GET {url}: {}\n{}", r.text(), log());
    let pid = r.text().split_whitespace().next().and_then(|w| w.parse().ok());
    pid.unwrap_or_else(|| panic!("expected a pid in the response to {url}: {:?}", r.text()))
}

/// `pm_max_requests = 1` replaces a child after each request: the children
/// rustfpm kills itself, dozens a second, are no crash loop. rustfpm took
/// them for one, killed the whole php-cgi parent (a request running on
/// another child then gets 502) and held the next start back.
#[test]
fn children_replaced_after_every_request_are_no_crash_loop() {
    let stack = Stack::with(PoolOptions { children: 2, extra: "pm_max_requests = 1\n".into(), ..Default::default() });
    let log = || stack.fpm.log_text();
    let requests = 40;
    let mut pids: Vec<i32> = (0..requests).map(|_| served_by(&stack.url("/pm_pid.php"), log)).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), requests, "a child per request (pm_max_requests = 1)");
    let text = log();
    let lines = |what: &str| text.lines().filter(|l| l.contains(what)).count();
    assert_eq!(lines("exiting in a loop"), 0, "rustfpm's own replacements taken for a crash loop:\n{text}");
    assert_eq!(lines("php-cgi parent"), 1, "php-cgi started more than once:\n{text}");
}
