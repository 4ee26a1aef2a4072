//! Review of session 17's notes and express way back (a request's start only
//! noted to the pool actor, a worker with an express budget going straight
//! back to the balancer): through the real binary, nginx and php-cgi, with
//! however many front-end threads the suite runs with (`FRONT_END_THREADS`).

mod common;
use common::*;

use std::collections::BTreeMap;

/// The pid php-cgi answers `url` with (`pm_pid.php`).
fn served_by(url: &str) -> i32 {
    let r = get(url);
    assert_eq!(r.status, 200, "GET {url}: {}", r.text());
    r.text()
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("expected a pid in the response to {url}: {:?}", r.text()))
}

/// `requests` requests one at a time, over plain and keepalive nginx
/// connections in turn: how many each child served.
fn requests_per_child(stack: &Stack, requests: usize) -> BTreeMap<i32, usize> {
    let mut served = BTreeMap::new();
    for i in 0..requests {
        let prefix = if i % 2 == 0 { "" } else { "/ka" };
        *served.entry(served_by(&stack.url(&format!("{prefix}/pm_pid.php")))).or_default() += 1;
    }
    served
}

/// With no status page and no memory limit, every request but each child's
/// last before `pm_max_requests` ends on the express way: each child serves
/// exactly `pm_max_requests`, neither one more (an express request past the
/// limit) nor one less.
#[test]
fn pm_max_requests_is_exact_on_the_express_way() {
    for (children, max) in [(1, 3), (1, 1), (2, 2)] {
        let stack = Stack::with(PoolOptions {
            children,
            extra: format!("pm_max_requests = {max}\n"),
            ..PoolOptions::default()
        });
        let served = requests_per_child(&stack, 4 * children * max);
        // The children serving at the end may not have reached the limit (two
        // children need not take turns); every replaced one has.
        let live = stack.fpm.php_children();
        let wrong: Vec<_> = served.iter().filter(|(pid, n)| **n > max || (**n < max && !live.contains(pid))).collect();
        assert!(
            wrong.is_empty(),
            "{children} child(ren), pm_max_requests = {max}: children that served other than {max} requests \
             (pid, requests): {wrong:?}; all: {served:?}; live: {live:?}\n{}",
            stack.fpm.log_text()
        );
        assert!(served.len() >= 4, "{children} child(ren), pm_max_requests = {max}: {served:?}");
    }
}
