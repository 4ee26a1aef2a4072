//! HTTP behaviour through real nginx → rustfpm → php-cgi: what scripts see
//! ($_SERVER, $_GET, $_POST, uploads, php://input), what clients get (big
//! bodies, headers, status codes, cookies, sessions, errors, streaming), many
//! concurrent requests, and php-fpm's security and configuration defaults.
//!
//! Fixtures: tests/php/http_*.php.

mod common;
use common::*;

use std::collections::HashMap;
use std::path::Path;

// ---------------------------------------------------------------- helpers

/// Parses "KEY=value" lines (only lines starting with `prefix`, which is
/// stripped) into a map.
fn key_values(text: &str, prefix: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift64), so bodies are not trivially
/// compressible or periodic.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What `http_input.php` answers for `body`: "LEN MD5".
fn input_report(body: &[u8]) -> String {
    format!("{} {}", body.len(), md5_hex(body))
}

/// The bytes `http_big.php?mb=N` sends: N MiB of "0123456789abcdef", the first
/// byte of MiB i replaced by 'A' + i % 26.
fn big_body(mib: usize) -> Vec<u8> {
    let mut one = b"0123456789abcdef".repeat(65536);
    let mut out = Vec::with_capacity(mib << 20);
    for i in 0..mib {
        one[0] = b'A' + (i % 26) as u8;
        out.extend_from_slice(&one);
    }
    out
}

/// A multipart/form-data body with one file field; returns (content type, body).
fn multipart_file(field: &str, filename: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----rustfpm-test-boundary-7d3f9a";
    let mut body = Vec::with_capacity(data.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn nginx_error_log(site_dir: &Path) -> String {
    std::fs::read_to_string(site_dir.join("nginx-error.log")).unwrap_or_default()
}

/// Asserts a 200 with exactly `body`, naming the request in the message.
fn assert_ok(what: &str, r: &Response, body: &str) {
    assert_eq!((r.status, r.text().as_str()), (200, body), "{what}: unexpected answer (headers {:?})", r.headers);
}

// ------------------------------------------------------------------ tests

#[test]
fn server_variables_from_nginx() {
    let stack = Stack::start();
    let www = stack.site.www().display().to_string();
    let r = get_with(&stack.url("/http_server.php/extra/path?q=1&r=two"), &[("X-Test", "hello-rustfpm")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let s = key_values(&r.text(), "");
    let expect = [
        ("REQUEST_METHOD", "GET".to_string()),
        ("QUERY_STRING", "q=1&r=two".to_string()),
        ("REQUEST_URI", "/http_server.php/extra/path?q=1&r=two".to_string()),
        ("SCRIPT_FILENAME", format!("{www}/http_server.php")),
        ("SCRIPT_NAME", "/http_server.php".to_string()),
        ("DOCUMENT_ROOT", www.clone()),
        ("SERVER_PROTOCOL", "HTTP/1.1".to_string()),
        ("REMOTE_ADDR", "127.0.0.1".to_string()),
        // Debian's fastcgi_params sets `HTTP_HOST $host`, which drops the port.
        ("HTTP_HOST", "127.0.0.1".to_string()),
        ("HTTP_X_TEST", "hello-rustfpm".to_string()),
        ("PATH_INFO", "/extra/path".to_string()),
    ];
    for (key, want) in expect {
        assert_eq!(s.get(key).map(String::as_str), Some(want.as_str()), "$_SERVER['{key}'] (all: {s:#?})");
    }
}

#[test]
fn get_query_is_decoded() {
    let stack = Stack::start();
    let r = get(&stack.url("/http_get.php?a=1&b[]=x&b[]=y&c=%C3%A9"));
    assert_ok("GET with query", &r, r#"{"a":"1","b":["x","y"],"c":"é"}"#);
}

#[test]
fn post_urlencoded_form() {
    let stack = Stack::start();
    let r = post(
        &stack.url("/http_post.php"),
        "application/x-www-form-urlencoded",
        b"name=J%C3%BCrgen+M&list[]=1&list[]=2&empty=&amp=a%26b",
    );
    assert_ok("POST form", &r, r#"{"name":"Jürgen M","list":["1","2"],"empty":"","amp":"a&b"}"#);
}

#[test]
fn multipart_upload_of_20_mb() {
    let stack = Stack::with(PoolOptions {
        tables: "[pool.www.php_admin_value]\nupload_max_filesize = \"64M\"\npost_max_size = \"64M\"\n".into(),
        ..Default::default()
    });
    let data = pseudo_random(20 << 20, 0x5eed);
    let (content_type, body) = multipart_file("upload", "blob.bin", &data);
    let r = post(&stack.url("/http_upload.php"), &content_type, &body);
    let want = format!("upload blob.bin {} {} 0\n", data.len(), md5_hex(&data));
    assert_ok("multipart upload of 20 MiB", &r, &want);
}

#[test]
fn raw_body_of_0_1_and_8_mb() {
    let stack = Stack::start();
    for body in [Vec::new(), b"x".to_vec(), pseudo_random(8 << 20, 42)] {
        let r = post(&stack.url("/http_input.php"), "application/octet-stream", &body);
        assert_ok(&format!("raw body of {} bytes", body.len()), &r, &input_report(&body));
    }
}

#[test]
fn response_of_32_mb() {
    let stack = Stack::start();
    let r = get(&stack.url("/http_big.php?mb=32"));
    let want = big_body(32);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), want.len(), "32 MiB response length");
    assert_eq!(md5_hex(&r.body), md5_hex(&want), "32 MiB response content");
}

#[test]
fn headers_status_codes_and_cookies() {
    let stack = Stack::start();
    let url = |case: &str| stack.url(&format!("/http_headers.php?case={case}"));

    let r = get(&url("created"));
    assert_eq!((r.status, r.header("X-A")), (201, Some("1")), "{r:?}");
    assert_eq!(r.text(), "created\n");

    let r = get(&url("redirect"));
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(r.header("Location"), Some("/elsewhere.php?x=1"), "{r:?}");

    let r = get(&url("teapot"));
    assert_eq!((r.status, r.text().as_str()), (418, "teapot\n"), "{r:?}");

    let r = get(&url("cookies"));
    assert_eq!(r.status, 200, "{r:?}");
    // (The harness's Response lists a repeated header once per occurrence
    // *times* the number of occurrences, so compare distinct values.)
    let cookies: std::collections::BTreeSet<&str> = r.headers_named("Set-Cookie").into_iter().collect();
    let names: Vec<&str> = cookies.iter().filter_map(|c| c.split(';').next()).collect();
    assert_eq!(names, ["c1=one", "c2=two", "c3=three"], "Set-Cookie headers: {cookies:?}");
}

#[test]
fn session_survives_across_requests() {
    let stack = Stack::start();
    let url = stack.url("/http_session.php");
    let first = get(&url);
    assert_ok("first session request", &first, "1");
    let cookie = first
        .headers_named("Set-Cookie")
        .into_iter()
        .find(|c| c.starts_with("PHPSESSID="))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no PHPSESSID cookie: {first:?}"))
        .to_string();
    for n in ["2", "3"] {
        let r = get_with(&url, &[("Cookie", &cookie)]);
        assert_ok(&format!("session request with {cookie}"), &r, n);
    }
}

#[test]
fn fatal_error_is_500_and_logged_by_nginx() {
    // Debian's /etc/php/8.2/cgi/php.ini: display_errors Off, log_errors On, no
    // error_log: the message goes to FastCGI stderr, which nginx logs.
    let stack = Stack::start();
    let r = get(&stack.url("/http_fatal.php"));
    assert_eq!(r.status, 500, "{r:?}");
    let body = r.text();
    let www = stack.site.www().display().to_string();
    assert!(!body.contains(&www), "error body leaks the path: {body}");
    assert!(!body.contains("this_function_does_not_exist"), "{body}");

    let logged = wait_until(std::time::Duration::from_secs(5), || {
        let log = nginx_error_log(stack.site.path());
        log.contains("FastCGI sent in stderr")
            && log.contains("Call to undefined function this_function_does_not_exist_rustfpm()")
    });
    assert!(logged, "nginx error log lacks the PHP message:\n{}", nginx_error_log(stack.site.path()));
}

#[test]
fn flushed_output_streams_through() {
    let stack = Stack::start();
    let chunks = raw_chunks(stack.nginx.port, "/http_flush.php");
    let find = |needle: &[u8]| chunks.iter().position(|(_, c)| c.windows(needle.len()).any(|w| w == needle));
    let all: Vec<u8> = chunks.iter().flat_map(|(_, c)| c.clone()).collect();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (first, second) = (find(b"first"), find(b"second"));
    assert!(
        matches!((first, second), (Some(a), Some(b)) if a < b),
        "\"first\" (flushed 300 ms before \"second\") must arrive in an earlier read \
         than \"second\": chunk indexes {first:?} / {second:?}, chunks {:?}",
        chunks.iter().map(|(_, c)| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>()
    );
}

/// 50 threads × 4 mixed requests under `prefix` ("" or "/ka"); every answer checked.
fn mixed_load(stack: &Stack, prefix: &str) {
    let base = stack.url(prefix);
    let threads: Vec<_> = (0..50u64)
        .map(|t| {
            let base = base.clone();
            std::thread::spawn(move || {
                let r = get(&format!("{base}/hello.php"));
                assert_ok("GET hello", &r, "Hello, world\n");

                let r = get(&format!("{base}/http_get.php?t={t}&s=a%20b"));
                assert_ok("GET query", &r, &format!(r#"{{"t":"{t}","s":"a b"}}"#));

                let size = (t.wrapping_mul(2654435761) % (256 * 1024)) as usize;
                let body = pseudo_random(size, t + 1);
                let r = post(&format!("{base}/http_input.php"), "application/octet-stream", &body);
                assert_ok(&format!("POST {size} bytes"), &r, &input_report(&body));

                let r = get(&format!("{base}/http_sleep.php"));
                assert_ok("GET sleep", &r, "slept\n");
            })
        })
        .collect();
    let failures: Vec<String> = threads
        .into_iter()
        .filter_map(|h| h.join().err())
        .map(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 50 client threads failed (prefix {prefix:?}); first: {}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn concurrent_mixed_requests_with_and_without_keepalive() {
    let stack = Stack::with(PoolOptions { children: 8, ..Default::default() });
    mixed_load(&stack, "");
    mixed_load(&stack, "/ka");
}

#[test]
fn path_info_hole_is_closed() {
    // php-fpm's security.limit_extensions: /x.jpg/y.php must not run x.jpg as PHP.
    let stack = Stack::start();
    stack.site.script("x.jpg", "<?php file_put_contents(__DIR__ . '/../scratch/jpg-ran', 'x'); echo 'JPG-EXECUTED';\n");
    let r = get(&stack.url("/x.jpg/y.php"));
    assert_eq!((r.status, r.text().as_str()), (403, "Access denied.\n"), "{r:?}");
    assert!(!stack.site.scratch().join("jpg-ran").exists(), "x.jpg was executed as PHP");
    // php-fpm's words reach nginx's error log, as php-fpm's logger sends them.
    let log = nginx_error_log(stack.site.path());
    assert!(
        log.contains("Access to the script '")
            && log.contains("x.jpg' has been denied (see security.limit_extensions)"),
        "{log}"
    );
}

/// A child that dies under its request, and one that runs past
/// `request_terminate_timeout`: nginx gets rustfpm's 502 and 504, and a line
/// in its error log (php-fpm's failures show there as well).
#[test]
fn a_crash_and_a_timeout_are_in_nginxs_error_log() {
    let stack = Stack::with(PoolOptions { extra: "request_terminate_timeout = \"1s\"".into(), ..Default::default() });
    stack.site.script("crash.php", "<?php posix_kill(getmypid(), 9);");
    stack.site.script("spin.php", "<?php while (true) {}");
    assert_eq!(get(&stack.url("/crash.php")).status, 502);
    assert_eq!(get(&stack.url("/spin.php")).status, 504);
    let log = nginx_error_log(stack.site.path());
    assert!(log.contains("FastCGI sent in stderr: \"the PHP process serving this request exited"), "{log}");
    assert!(log.contains("FastCGI sent in stderr: \"the PHP script ran past request_terminate_timeout"), "{log}");
}

#[test]
fn httpoxy_header_is_dropped() {
    let stack = Stack::start();
    let r = get_with(&stack.url("/http_env.php"), &[("Proxy", "evil")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.contains("server HTTP_PROXY=NULL\n"), "{text}");
    assert!(text.contains("getenv HTTP_PROXY=false\n"), "{text}");
    assert!(!text.contains("evil"), "{text}");
}

#[test]
fn child_environment_is_clean_plus_pool_env() {
    let stack = Stack::with(PoolOptions { tables: "[pool.www.env]\nFOO = \"bar\"\n".into(), ..Default::default() });
    let r = get(&stack.url("/http_env.php"));
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let env = key_values(&text, "env ");
    for leaked in ["RUSTFPM_TEST_SECRET", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"] {
        assert!(!env.contains_key(leaked), "{leaked} leaked into the child: {env:#?}");
    }
    assert!(!text.contains("must-not-leak"), "{text}");
    if let Some(user) = pool_user() {
        assert_eq!(env.get("USER").map(String::as_str), Some(user), "{env:#?}");
    }
    assert!(text.contains("getenv FOO='bar'\n"), "{text}");
}

#[test]
fn ini_values_from_config() {
    let stack = Stack::with(PoolOptions {
        tables: "[pool.www.php_admin_value]\nmemory_limit = \"96M\"\n\n\
                 [pool.www.php_flag]\ndisplay_errors = false\nignore_user_abort = true\n"
            .into(),
        ..Default::default()
    });
    let r = get(&stack.url("/http_ini.php"));
    assert_eq!(r.status, 200, "{}", r.text());
    let ini = key_values(&r.text(), "");
    assert_eq!(ini.get("memory_limit").map(String::as_str), Some("'96M'"), "{ini:?}");
    let display = ini.get("display_errors").map(String::as_str);
    assert!(matches!(display, Some("''" | "'0'")), "display_errors: {display:?}");
    // Off is also Debian's default; a flag whose default is off proves the table applies.
    assert_eq!(ini.get("ignore_user_abort").map(String::as_str), Some("'1'"), "{ini:?}");
}

/// A script cannot fork its php-cgi child (php-fpm has no pcntl; a fork would answer other
/// users' requests on the child's connection), and the pool's own disabled functions stay.
#[test]
fn pcntl_fork_is_disabled_and_the_pools_disabled_functions_stay() {
    for (tables, exec) in [("", "true"), ("[pool.www.php_admin_value]\ndisable_functions = \"exec\"\n", "false")] {
        let stack = Stack::with(PoolOptions { children: 1, tables: tables.into(), ..Default::default() });
        let r = get(&stack.url("/fork_check.php"));
        assert_eq!(r.status, 200, "{}", r.text());
        let found = key_values(&r.text(), "");
        assert_eq!(found.get("pcntl_fork").map(String::as_str), Some("false"), "{found:?}");
        assert_eq!(found.get("exec").map(String::as_str), Some(exec), "{tables}: {found:?}");
        assert_eq!(found.get("getmypid").map(String::as_str), Some("true"), "{found:?}");
    }
}

#[test]
fn children_share_one_opcache() {
    // Debian loads opcache.so for php-cgi (conf.d) and opcache.enable defaults
    // to 1 for non-CLI SAPIs. The fixtures were written a moment ago, and
    // OPcache does not cache files younger than opcache.file_update_protection
    // (2 s): turn that off so the target is cached on its first run.
    let stack = Stack::with(PoolOptions {
        tables: "[pool.www.php_admin_value]\nopcache.file_update_protection = \"0\"\n".into(),
        ..Default::default()
    });
    assert_ok("target", &get(&stack.url("/http_opcache_target.php")), "target\n");

    // Concurrent requests (each holds its child 50 ms) to reach several children.
    let url = stack.url("/http_opcache.php");
    let reports: Vec<String> = (0..16)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || get(&url).text())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let mut by_pid: HashMap<String, (String, String)> = HashMap::new();
    for line in &reports {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 3, "bad report {line:?}");
        assert_ne!(f[1], "off", "OPcache is not running in php-cgi: {reports:?}");
        by_pid.insert(f[0].into(), (f[1].into(), f[2].into()));
    }
    assert!(by_pid.len() >= 2, "16 concurrent requests reached one child: {by_pid:?}");
    let starts: std::collections::HashSet<_> = by_pid.values().map(|(s, _)| s).collect();
    assert_eq!(starts.len(), 1, "children report different OPcache start times: {by_pid:?}");
    // The script one child compiled is in every child's cache: the cache is shared.
    assert!(
        by_pid.values().all(|(_, cached)| cached == "yes"),
        "a child does not see the script another child cached: {by_pid:?}"
    );
}

/// nginx with `fastcgi_request_buffering off` relays a chunked upload as it
/// comes, with an empty CONTENT_LENGTH (php-cgi then reads none of it), and
/// without `fastcgi_keep_conn` expects its upstream to close once it answers.
/// rustfpm shows the end of the answer and reads the rest of the body until
/// nginx closes: closing with the body unread reset the connection before
/// nginx had read the answer (a 502 or an empty 200, some of the time).
#[test]
fn unbuffered_chunked_uploads_get_their_answer_without_keep_conn() {
    use std::io::{Read, Write};
    let site = Site::new();
    site.script("noread.php", "<?php echo 'answered';");
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 2, ..PoolOptions::default() });
    let http = format!(
        "server {{ listen 127.0.0.1:{{port}}; root {www};\n  location ~ \\.php$ {{ include /etc/nginx/fastcgi_params; \
         fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name; fastcgi_request_buffering off; \
         fastcgi_pass unix:{socket}; }}\n  }}",
        www = site.www().display(),
        socket = fpm.socket.display(),
    );
    let nginx = Nginx::start_http(&site, &http);
    let chunk = vec![b'u'; 64 * 1024];
    for i in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        let head =
            "POST /noread.php HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        s.write_all(head.as_bytes()).unwrap();
        for _ in 0..16 {
            // nginx may answer (and close) before it has read all of the upload.
            if write!(s, "{:x}\r\n", chunk.len())
                .and_then(|()| s.write_all(&chunk))
                .and_then(|()| s.write_all(b"\r\n"))
                .is_err()
            {
                break;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.starts_with("HTTP/1.1 200") && reply.contains("answered"),
            "upload #{i}: {reply:?}\n{}",
            nginx_error_log(site.path())
        );
    }
}
