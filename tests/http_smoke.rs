//! The thinnest end-to-end path: nginx → rustfpm → php-cgi, with and without
//! nginx keepalive.

mod common;
use common::*;

#[test]
fn hello_through_nginx() {
    let stack = Stack::start();
    let r = get(&stack.url("/hello.php"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "Hello, world\n");
    for _ in 0..20 {
        let r = get(&stack.url("/ka/hello.php"));
        assert_eq!((r.status, r.text().as_str()), (200, "Hello, world\n"));
    }
}

#[test]
fn missing_script_is_404_like_php_fpm() {
    let stack = Stack::start();
    let r = get(&stack.url("/nope.php"));
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "File not found.\n");
    let nginx_log = std::fs::read_to_string(stack.site.path().join("nginx-error.log")).unwrap();
    assert!(nginx_log.contains("Primary script unknown"), "{nginx_log}");
}
