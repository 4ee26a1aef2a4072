//! `request_terminate_timeout` and the script's shutdown functions, through real nginx →
//! rustfpm → php-cgi. php-fpm stops timing a request when its main code ends
//! (`fpm_request_end()` runs before `php_request_shutdown()`, which calls the shutdown
//! functions), unless `request_terminate_timeout_track_finished`; rustfpm's polyfill tells it
//! when that is. The script's shutdown function outlasts the 1 s timeout by 2 s: generous on
//! both sides, no timing is asserted.

mod common;
use common::*;

/// Prints "main"; its shutdown function sleeps 3 s, then prints " from-shutdown".
const SLOW_SHUTDOWN: &str = r#"<?php
register_shutdown_function(function () {
    usleep(3000000);
    echo ' from-shutdown';
});
echo 'main';
"#;

fn stack(extra: &str) -> Stack {
    let stack = Stack::with(PoolOptions { children: 1, extra: extra.into(), ..PoolOptions::default() });
    stack.site.script("slow_shutdown.php", SLOW_SHUTDOWN);
    stack
}

/// Before: the child was killed at 1 s and nginx got a 504.
#[test]
fn shutdown_functions_run_past_request_terminate_timeout() {
    let stack = stack("request_terminate_timeout = \"1s\"");
    let r = get(&stack.url("/slow_shutdown.php"));
    assert_eq!((r.status, r.text().as_str()), (200, "main from-shutdown"), "{r:?}");
    // The child served on: it was not killed, and the next request is timed again.
    let pids = stack.fpm.php_children();
    assert_eq!(get(&stack.url("/hello.php")).status, 200);
    assert_eq!(stack.fpm.php_children(), pids, "the child was replaced");
    let log = std::fs::read_to_string(&stack.nginx.error_log).unwrap_or_default();
    assert!(!log.contains("rustfpm-finish-request"), "the polyfill's line reached nginx:\n{log}");
}

/// `request_terminate_timeout_track_finished` keeps the shutdown functions timed, as php-fpm's.
#[test]
fn track_finished_times_the_shutdown_functions_too() {
    let stack = stack("request_terminate_timeout = \"1s\"\nrequest_terminate_timeout_track_finished = true");
    let r = get(&stack.url("/slow_shutdown.php"));
    assert_eq!(r.status, 504, "{r:?}");
}

/// With `fastcgi.logging` off the polyfill's line could not reach rustfpm: the shutdown
/// functions stay timed (a 504, documented), and the line never reaches the pool's log (it
/// was logged as the child's stderr and ended nothing; a helper's soak).
#[test]
fn with_fastcgi_logging_off_the_main_end_line_is_not_sent() {
    let extra = "request_terminate_timeout = \"1s\"\ncatch_workers_output = true\n\
                 [pool.www.php_value]\n\"fastcgi.logging\" = \"0\"";
    let stack = stack(extra);
    let r = get(&stack.url("/slow_shutdown.php"));
    assert_eq!(r.status, 504, "{r:?}");
    let log = stack.fpm.log_text();
    assert!(!log.contains("rustfpm-finish-request"), "the polyfill's line was logged:\n{log}");
}
