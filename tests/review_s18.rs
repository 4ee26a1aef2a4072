//! Review of session 18's pool changes (the actor's own kills are no crash
//! loop; an idle worker is withdrawn from the balancer before its child is
//! replaced): through the real binary, nginx and php-cgi, with however many
//! front-end threads the suite runs with (`FRONT_END_THREADS`).

mod common;
use common::*;

use std::time::Duration;

/// `clients` threads each send `requests` GETs of `path`, pausing between
/// them as `pause(client, request)` says: every status (or error) in order.
fn load(
    stack: &Stack,
    path: &str,
    clients: usize,
    requests: usize,
    pause: fn(usize, usize) -> Duration,
) -> Vec<Result<u16, String>> {
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let url = stack.url(path);
            std::thread::spawn(move || {
                (0..requests)
                    .map(|i| {
                        std::thread::sleep(pause(client, i));
                        try_get(&url).map(|r| r.status)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().expect("client thread")).collect()
}

/// The statuses other than 200.
fn failed(statuses: &[Result<u16, String>]) -> Vec<&Result<u16, String>> {
    statuses.iter().filter(|s| !matches!(s, Ok(200))).collect()
}

/// Waits until rustfpm has taken in the exits of the children it replaced (they are reported
/// late and in batches); returns the log then. Each exit comes as a process event, in the
/// kernel's order, and one may be lost under load (ENOBUFS), so the sign is a last one:
/// once every child logged as replaced is dead, one more request's child is replaced, and
/// the exits before its own are in once its exit is logged. Without process events (not
/// root) no exit is reported at all: the log as it is.
fn replaced_exits_logged(stack: &Stack) -> String {
    let log = stack.fpm.log_text();
    if log.contains("process events unavailable") {
        return log;
    }
    let replaced: Vec<i32> = log
        .lines()
        .filter_map(|l| l.split("[pool www] child ").nth(1)?.split_once(" replaced (")?.0.parse().ok())
        .collect();
    let dead = wait_until(Duration::from_secs(10), || !replaced.iter().any(|p| is_live_php(*p)));
    assert!(dead, "children rustfpm replaced still alive: {:?}", replaced.iter().filter(|p| is_live_php(**p)));
    let r = get(&stack.url("/pm_pid.php"));
    assert_eq!(r.status, 200, "{}", r.text());
    let last = r.text().trim().to_string();
    stack.fpm.wait_logged(&format!("[pool www] child {last} exited "))
}

/// `pm_max_requests = 1` under concurrent load: every request kills its
/// child, many kills in flight at once, and on a busy host their exits are
/// reported late, in batches (one 31 kills late). None of those exits is
/// taken for a crash loop, for which the whole php-cgi parent would be
/// killed, nor warned of as a child killed by someone else; no request is
/// lost. (With 4 busy loops beside it, 6 runs each warned of 3 to 60 such
/// exits when the actor awaited at most 2 per slot, and one of them killed
/// the pool for a loop; on an idle host this rarely fails on such a bug:
/// `actor_tests::late_exits_of_children_the_actor_replaced_are_no_crash_loop`
/// shows it every time.)
#[test]
fn concurrent_replacements_after_every_request_are_no_crash_loop() {
    let stack = Stack::with(PoolOptions { children: 8, extra: "pm_max_requests = 1\n".into(), ..Default::default() });
    let statuses = load(&stack, "/pm_pid.php", 32, 50, |_, _| Duration::ZERO);
    // The load is over before the last exits are reported: until then no warning could be
    // there yet.
    let text = replaced_exits_logged(&stack);
    let lines = |what: &str| text.lines().filter(|l| l.contains(what)).count();
    assert_eq!(lines("exiting in a loop"), 0, "rustfpm's own replacements taken for a crash loop:\n{text}");
    assert_eq!(lines("WARNING: [pool www] child"), 0, "rustfpm's own replacements warned of:\n{text}");
    let failed = failed(&statuses);
    assert!(failed.is_empty(), "{} of {} requests failed: {failed:?}\n{text}", failed.len(), statuses.len());
}

/// Idle children beyond `pm_max_spare_servers` are replaced on the actor's
/// tick while requests keep coming in bursts: the actor withdraws each idle
/// worker from the balancer (with a permit) and lends it again, dozens of
/// times. A permit lost or doubled on the way would wedge the pool or hand a
/// request a permit without a worker (503; a doubled one fails here).
#[test]
fn idle_replacements_under_bursts_lose_no_request() {
    let pm = Pm::Dynamic { start: 1, min_spare: 1, max_spare: 1 };
    let stack = Stack::with(PoolOptions { children: 4, pm, ..Default::default() });
    // Bursts: each client pauses 250 ms before every fourth request, the
    // clients out of step, so that idle spells cross the actor's ticks
    // (every 200 ms) while other clients' requests arrive, and at times every
    // worker is busy.
    let statuses = load(&stack, "/pm_pid.php", 12, 40, |client, i| {
        Duration::from_millis(if (client + i) % 4 == 0 { 250 } else { 0 })
    });
    let text = stack.fpm.log_text();
    let failed = failed(&statuses);
    assert!(failed.is_empty(), "{} of {} requests failed: {failed:?}\n{text}", failed.len(), statuses.len());
    let replaced = text.lines().filter(|l| l.contains("replaced (idle)")).count();
    assert!(replaced > 0, "no idle child was replaced: the test did not test it\n{text}");
}
