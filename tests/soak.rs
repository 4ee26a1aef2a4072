//! Soak (issue 13, item 7): hello world mixed with 1 MiB uploads and 1 MiB
//! responses through nginx; rustfpm's RSS and open descriptors at the end
//! stay within 2 MiB and 5 descriptors of their values after the first
//! 10,000 requests. The test suite sends 20,000 requests; scripts/soak.sh
//! sends 1,000,000 (`FAULTS_FULL=1`, or `SOAK_REQUESTS=N`).

mod common;
use common::load::*;
use common::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILDREN: usize = 4;
/// Requests before the baseline is taken.
const WARM_UP: u64 = 10_000;

/// Mostly hello world; one request in 100 uploads 1 MiB, one in 100 downloads
/// 1 MiB; half the clients through nginx keep-alive.
fn soak_mix() -> Mix {
    Arc::new(|client, n| {
        let prefix = if client % 2 == 0 { "" } else { "/ka" };
        match n % 100 {
            50 => Req::Upload { prefix, bytes: 1 << 20 },
            99 => Req::Big { prefix, mb: 1 },
            _ => Req::Hello { prefix },
        }
    })
}

/// Sends `n` requests of the mix from 4 clients; every one must answer 200
/// with the right body. Then waits for the pool to be at rest and returns
/// its status.
fn run(stack: &Stack, n: u64, what: &str) -> serde_json::Value {
    let started = Instant::now();
    let tally = Load::start(stack.nginx.port, 4, Some(n), soak_mix()).join();
    let took = started.elapsed();
    eprintln!("{what}: {} in {took:.1?} ({:.0} req/s)", tally.summary(), n as f64 / took.as_secs_f64());
    assert_eq!(tally.sent, n, "{what}: {}", tally.summary());
    assert!(tally.odd.is_empty(), "{what}: {}\n{}", tally.summary(), tally.first_odd(10));
    wait_at_rest(stack.nginx.port, STATUS, CHILDREN as u64, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{what}: the pool is not at rest: {e}"))
}

#[test]
fn soak_keeps_rss_and_fds_flat() {
    let total: u64 = std::env::var("SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| scale(20_000, 1_000_000))
        .max(WARM_UP + 1);
    let stack = Stack::with(PoolOptions {
        children: CHILDREN,
        extra: format!("pm_status_path = \"{STATUS}\"\n"),
        ..PoolOptions::default()
    });
    let pid = stack.fpm.pid();
    run(&stack, WARM_UP, "warm-up");
    let (rss0, fds0) = (rss_kib(pid), open_fds(pid));
    eprintln!("after {WARM_UP} requests: rustfpm RSS {rss0} KiB, {fds0} open fds");
    let status = run(&stack, total - WARM_UP, "soak");
    let (rss1, fds1) = (rss_kib(pid), open_fds(pid));
    eprintln!(
        "after {total} requests: rustfpm RSS {rss1} KiB ({:+} KiB), {fds1} open fds ({:+})",
        rss1 as i64 - rss0 as i64,
        fds1 as i64 - fds0 as i64
    );
    assert_eq!(field(&status, "accepted conn"), total, "every request reached a child once: {status}");
    assert!(rss1 <= rss0 + 2048, "rustfpm's RSS grew from {rss0} KiB to {rss1} KiB (limit +2 MiB)");
    assert!(fds1.abs_diff(fds0) <= 5, "rustfpm's open fds went from {fds0} to {fds1} (limit ±5)");
}
