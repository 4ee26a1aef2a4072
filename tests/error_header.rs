//! php-fpm's `fastcgi.error_header` under php-cgi (which has no such
//! setting): the polyfill sends it when a script ends with a fatal error
//! before any header was sent, and only then. Real nginx → rustfpm → php-cgi.

mod common;
use common::*;

/// A fatal error unless `?q` is given.
const SCRIPT: &str = r#"<?php
if (isset($_GET['q'])) {
    echo 'ok';
} else {
    d();
}
"#;

#[test]
fn a_fatal_error_sends_the_error_header_and_the_next_request_does_not() {
    // display_errors on: without the header php-cgi would answer the fatal error 200.
    let tables = "[pool.www.php_value]\n\"fastcgi.error_header\" = '\"HTTP/1.1 500 PHP Error\"'\n\
                  output_buffering = \"4096\"\ndisplay_errors = \"1\"\n"
        .to_string();
    let stack = Stack::with(PoolOptions { children: 1, tables, ..PoolOptions::default() });
    stack.site.script("error_header.php", SCRIPT);
    let r = get(&stack.url("/error_header.php"));
    assert_eq!(r.status, 500, "{r:?}");
    assert!(r.text().contains("Call to undefined function d()"), "{r:?}");
    let r = get(&stack.url("/error_header.php?q=1"));
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
    assert!(!stack.fpm.log_text().contains("Cannot modify header information"), "{}", stack.fpm.log_text());
}

#[test]
fn without_the_setting_a_fatal_error_keeps_php_cgis_status() {
    let tables = "[pool.www.php_value]\noutput_buffering = \"4096\"\ndisplay_errors = \"1\"\n".to_string();
    let stack = Stack::with(PoolOptions { children: 1, tables, ..PoolOptions::default() });
    stack.site.script("error_header.php", SCRIPT);
    let r = get(&stack.url("/error_header.php"));
    assert_eq!(r.status, 200, "{r:?}");
}
