//! php-fpm's ping and status pages, through nginx.

mod common;
use common::*;

fn stack() -> Stack {
    Stack::with(PoolOptions {
        extra: "pm_status_path = \"/status\"\nping_path = \"/ping\"\nping_response = \"pong!\"".into(),
        ..Default::default()
    })
}

#[test]
fn ping_answers_its_response_without_caching() {
    let stack = stack();
    let r = get(&stack.url("/ping"));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "pong!");
    assert!(r.header("Content-Type").unwrap_or_default().starts_with("text/plain"));
    assert!(r.header("Cache-Control").unwrap_or_default().contains("no-cache"));
}

#[test]
fn status_counts_are_exact_in_every_format() {
    let stack = stack();
    for _ in 0..10 {
        assert_eq!(get(&stack.url("/hello.php")).status, 200);
    }
    let json = get_json(&stack.url("/status?json"));
    assert_eq!(json["pool"], "www", "{json}");
    assert_eq!(json["process manager"], "static", "{json}");
    assert_eq!(json["accepted conn"], 10, "{json}");
    assert_eq!(json["total processes"], 4, "{json}");
    assert_eq!(json["active processes"], 0, "{json}");
    for key in ["start time", "start since", "listen queue", "max listen queue", "listen queue len", "idle processes"] {
        assert!(json.get(key).is_some(), "missing {key}: {json}");
    }
    let full = get_json(&stack.url("/status?json&full"));
    let processes = full["processes"].as_array().unwrap_or_else(|| panic!("no processes: {full}"));
    assert_eq!(processes.len(), 4, "{full}");
    assert!(
        processes.iter().any(|p| p["script"].as_str().is_some_and(|s| s.ends_with("hello.php"))),
        "no process shows hello.php as its last script: {full}"
    );
    let text = get(&stack.url("/status")).text();
    assert!(text.contains("pool:") && text.contains("accepted conn:"), "{text}");
    let metrics = get(&stack.url("/status?openmetrics")).text();
    assert!(metrics.contains("phpfpm_accepted_connections") && metrics.trim_end().ends_with("# EOF"), "{metrics}");
    for format in ["xml", "html"] {
        let r = get(&stack.url(&format!("/status?{format}&full")));
        assert_eq!(r.status, 200);
        assert!(r.text().contains("accepted"), "{format}: {}", r.text());
    }
}

#[test]
fn status_shows_running_requests_and_the_listen_queue() {
    let stack =
        Stack::with(PoolOptions { children: 1, extra: "pm_status_path = \"/status\"".into(), ..Default::default() });
    // Both requests hold the one child until the test lets them go (lc_gate.php): the
    // second stays queued for as long as the test looks, however slow the machine.
    let first = get_in_thread(stack.url("/lc_gate.php?name=first"));
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        get_json(&stack.url("/status?json"))["active processes"] == 1
    }));
    let second = get_in_thread(stack.url("/lc_gate.php?name=second"));
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        get_json(&stack.url("/status?json"))["listen queue"] == 1
    }));
    let full = get(&stack.url("/status?json&full")).text();
    assert!(full.contains("Running") && full.contains("/lc_gate.php?name=first"), "{full}");
    stack.site.open_gate("first");
    stack.site.open_gate("second");
    assert_eq!(first.join().unwrap().unwrap().status, 200);
    assert_eq!(second.join().unwrap().unwrap().status, 200);
    let json = get_json(&stack.url("/status?json"));
    assert_eq!(json["max listen queue"], 1, "{json}");
    assert_eq!(json["max children reached"], 1, "{json}");
}

#[test]
fn status_listen_serves_the_pages_while_every_child_is_busy_and_nothing_else() {
    let site = Site::new();
    let status_port = free_port();
    let fpm = Rustfpm::start(
        &site,
        &PoolOptions {
            children: 1,
            extra: format!(
                "pm_status_path = \"/status\"\nping_path = \"/ping\"\npm_status_listen = \"127.0.0.1:{status_port}\""
            ),
            ..Default::default()
        },
    );
    let nginx = Nginx::start_http(
        &site,
        &format!(
            r#"
  server {{
    listen 127.0.0.1:{{port}};
    root {www};
    include /etc/nginx/fastcgi_params;
    fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
    location /monitor/ {{
      rewrite ^/monitor(/.*)$ $1 break;
      fastcgi_pass 127.0.0.1:{status_port};
    }}
    location / {{ fastcgi_pass unix:{socket}; }}
  }}
"#,
            www = site.www().display(),
            socket = fpm.socket.display(),
        ),
    );
    let marker = site.path().join("ran");
    site.script("touch.php", &format!("<?php touch('{}'); echo 'ran';", marker.display()));
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", nginx.port);
    // The one child is busy until the test lets it go.
    let slow = get_in_thread(url("/lc_gate.php?name=slow"));
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        get_json(&url("/monitor/status?json"))["active processes"] == 1
    }));
    assert_eq!(get(&url("/monitor/ping")).text(), "pong");
    let r = get(&url("/monitor/touch.php"));
    assert_eq!(r.status, 404, "{}", r.text());
    site.open_gate("slow");
    assert_eq!(slow.join().unwrap().unwrap().text(), "END\n");
    assert!(!marker.exists(), "a script ran through pm_status_listen");
    // The pool's own listener still serves both pages and scripts.
    assert_eq!(get(&url("/touch.php")).text(), "ran");
    assert_eq!(get(&url("/ping")).text(), "pong");
}

/// A status-page pool's requests end on the express way (the pool's actor
/// only noted, the front end queuing the usage sample) with the figures they
/// had through the actor: `requests` one at a time, over plain and keepalive
/// connections, with one front-end thread and two: `accepted conn` counts
/// each, the slots' request counts add up to it, and every slot that served
/// shows its child's memory after its last request, and its CPU once it
/// served two (a child's first request has nothing to count from; later ones
/// end on the express way, so only their samples show it). Each request
/// burns ~20 ms of CPU: a sample read while the child is still on the CPU
/// misses its current slice (a hello world often shows 0 %), never a tick's
/// worth of it.
#[test]
fn status_counts_and_usage_are_exact_on_the_express_way() {
    let requests = 12;
    for threads in [1, 2] {
        let stack = Stack::with(PoolOptions {
            children: 2,
            global: format!("front_end_threads = {threads}"),
            extra: "pm_status_path = \"/status\"".into(),
            ..Default::default()
        });
        stack.site.script("burn.php", "<?php $t = microtime(true); while (microtime(true) - $t < 0.02) {} echo 'ok';");
        for i in 0..requests {
            let prefix = if i % 2 == 0 { "" } else { "/ka" };
            assert_eq!(get(&stack.url(&format!("{prefix}/burn.php"))).text(), "ok");
        }
        // (requests, last request memory, last request cpu) of each slot that served.
        let served = |full: &serde_json::Value| -> Vec<(u64, f64, f64)> {
            let processes = full["processes"].as_array().map_or(&[][..], Vec::as_slice);
            let figure = |p: &serde_json::Value, key: &str| p[key].as_f64().unwrap_or(0.0);
            let figures = processes.iter().map(|p| {
                (p["requests"].as_u64().unwrap_or(0), figure(p, "last request memory"), figure(p, "last request cpu"))
            });
            figures.filter(|(n, ..)| *n > 0).collect()
        };
        let mut full = serde_json::Value::Null;
        let sampled = wait_until(std::time::Duration::from_secs(10), || {
            full = get_json(&stack.url("/status?json&full"));
            let served = served(&full);
            !served.is_empty() && served.iter().all(|&(n, memory, cpu)| memory > 0.0 && (n < 2 || cpu > 0.0))
        });
        assert!(sampled, "{threads} thread(s): a slot that served shows no memory or cpu: {full}");
        assert_eq!(full["accepted conn"], requests, "{threads} thread(s): {full}");
        let counted: u64 = served(&full).iter().map(|(n, ..)| n).sum();
        assert_eq!(counted, requests, "{threads} thread(s): the slots' requests: {full}");
    }
}

#[test]
fn status_shows_the_last_requests_cpu_and_memory() {
    let stack =
        Stack::with(PoolOptions { children: 1, extra: "pm_status_path = \"/status\"".into(), ..Default::default() });
    // ~150 ms of CPU.
    stack.site.script(
        "burn.php",
        "<?php $s = str_repeat('x', 8 << 20); $t = microtime(true); while (microtime(true) - $t < 0.15) { md5($s[0]); } echo 'ok';",
    );
    // A child's first request has no previous sample to count from.
    for _ in 0..2 {
        assert_eq!(get(&stack.url("/burn.php")).text(), "ok");
    }
    // The one child's figures, from the full page.
    let child = |json: &serde_json::Value, key: &str| json["processes"][0][key].as_f64().unwrap_or(0.0);
    let mut json = serde_json::Value::Null;
    let sampled = wait_until(std::time::Duration::from_secs(5), || {
        json = get_json(&stack.url("/status?json&full"));
        child(&json, "last request cpu") > 0.0
    });
    assert!(sampled, "{json}");
    let busy = child(&json, "last request cpu");
    // The child's private memory (PHP's heap, at least), not PHP's own peak.
    assert!(child(&json, "last request memory") > 1024.0 * 1024.0, "{json}");
    // A request that sleeps as long shows less CPU than the busy loop (a
    // loaded machine lowers both, so they are compared, not bounded).
    stack.site.script("nap.php", "<?php usleep(150000); echo 'ok';");
    assert_eq!(get(&stack.url("/nap.php")).text(), "ok");
    let napped = wait_until(std::time::Duration::from_secs(5), || {
        json = get_json(&stack.url("/status?json&full"));
        json["processes"][0]["script"].as_str().is_some_and(|s| s.ends_with("nap.php"))
            && child(&json, "last request cpu") < busy
    });
    assert!(napped, "busy loop {busy}%, then: {json}");
    // While a request runs, as php-fpm: both are measured at its end, so 0 meanwhile.
    stack.site.script("long.php", "<?php usleep(1500000); echo 'ok';");
    let long = get_in_thread(stack.url("/long.php"));
    let running = wait_until(std::time::Duration::from_secs(5), || {
        json = get_json(&stack.url("/status?json&full"));
        json["processes"][0]["state"] == "Running"
    });
    assert!(running, "{json}");
    assert_eq!((child(&json, "last request cpu"), child(&json, "last request memory")), (0.0, 0.0), "{json}");
    assert_eq!(long.join().unwrap().expect("long.php answered").text(), "ok");
}

/// A child whose connection rustfpm dropped when nginx gave up on a request (the client went
/// away) still shows what it served: every child showed 0 requests after clients aborted
/// (a wrk run's end) until its next request.
#[test]
fn a_process_shows_its_requests_after_a_client_aborted_one() {
    use std::io::Write;
    let stack =
        Stack::with(PoolOptions { children: 1, extra: "pm_status_path = \"/status\"".into(), ..Default::default() });
    for _ in 0..5 {
        assert_eq!(get(&stack.url("/hello.php")).status, 200);
    }
    let mut client = std::net::TcpStream::connect(("127.0.0.1", stack.nginx.port)).expect("connect to nginx");
    client.write_all(b"GET /lc_gate.php?name=abort HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
    let busy =
        wait_until(std::time::Duration::from_secs(5), || get_json(&stack.url("/status?json"))["active processes"] == 1);
    assert!(busy, "the gated request never reached the child");
    drop(client);
    // The request still runs (its gate is shut) when rustfpm lets its connection go.
    stack.fpm.wait_logged("request abandoned");
    stack.site.open_gate("abort");
    let mut full = serde_json::Value::Null;
    let at_rest = wait_until(std::time::Duration::from_secs(10), || {
        full = get_json(&stack.url("/status?json&full"));
        full["active processes"] == 0
    });
    assert!(at_rest, "the aborted request never ended: {full}");
    let requests = full["processes"][0]["requests"].as_u64();
    assert!(requests >= Some(5), "the child served 5 requests and shows {requests:?}: {full}");
}

/// A reload that moves a pool's `listen` and keeps its `pm_status_listen` carries the status
/// listener over, as php-fpm does: binding it again found the address in use, and the reload
/// was refused (the move never made, though the reload was asked for).
#[test]
fn a_reload_that_moves_listen_keeps_the_status_listener() {
    let site = Site::new();
    let status = site.path().join("status.sock");
    let extra = format!("ping_path = \"/ping\"\npm_status_listen = \"{}\"", status.display());
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, extra, ..Default::default() });
    let ping = |socket: &std::path::Path| common::fcgi::page(socket, "/ping", "").body().to_string();
    assert_eq!(ping(&status), "pong");
    let moved = site.path().join("moved.sock");
    let text = std::fs::read_to_string(&fpm.config).unwrap();
    std::fs::write(&fpm.config, text.replace(&fpm.socket.display().to_string(), &moved.display().to_string())).unwrap();
    fpm.signal(libc::SIGUSR2);
    let done = wait_until(std::time::Duration::from_secs(20), || {
        let log = fpm.log_text();
        log.contains("configuration reloaded") || log.contains("reload failed")
    });
    assert!(done && !fpm.log_text().contains("reload failed"), "{}", fpm.log_text());
    assert_eq!(ping(&moved), "pong", "the moved listen serves");
    assert_eq!(ping(&status), "pong", "the status listener still serves:\n{}", fpm.log_text());
    assert!(!fpm.socket.exists(), "the old listen is closed");
}

/// A busy process's request on the status page is shown as php-fpm shows it: the script and
/// its query (not REQUEST_URI, which a front controller's rewrite changes), and the user of
/// the `Authorization: Basic` header (not REMOTE_USER).
#[test]
fn the_status_page_shows_the_script_and_the_basic_user_as_php_fpm() {
    let site = Site::new();
    let extra = "pm_status_path = \"/status\"\n".to_string();
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 2, extra, ..Default::default() });
    let script = site.www().join("lc_gate.php").display().to_string();
    let socket = fpm.socket.clone();
    let slow = std::thread::spawn(move || {
        let params: [(&str, &[u8]); 7] = [
            ("REQUEST_METHOD", b"GET"),
            ("SCRIPT_FILENAME", script.as_bytes()),
            ("SCRIPT_NAME", b"/lc_gate.php"),
            ("REQUEST_URI", b"/blog/post?name=slow"),
            ("QUERY_STRING", b"name=slow"),
            ("REMOTE_USER", b"bob"),
            ("HTTP_AUTHORIZATION", b"Basic YWxpY2U6c2VjcmV0"),
        ];
        common::fcgi::send(&socket, &params)
    });
    let status = || common::fcgi::status_page(&fpm.socket, "/status", "&full");
    let mut busy = None;
    let seen = wait_until(std::time::Duration::from_secs(10), || {
        busy = status()["processes"].as_array().unwrap().iter().find(|p| p["state"] == "Running").cloned();
        busy.as_ref().is_some_and(|p| p["request uri"] != "/status?json&full")
    });
    let busy = busy.unwrap();
    assert!(seen, "{busy}");
    assert_eq!(busy["request uri"], "/lc_gate.php?name=slow", "{busy}");
    assert_eq!(busy["user"], "alice", "{busy}");
    site.open_gate("slow");
    assert_eq!(slow.join().unwrap().body(), "END\n");
}

/// A reload never hands a status listener a kept pool still serves to another pool: the
/// moved pool asking for pool b's status address (b asking for another, which takes effect
/// at the next restart) is refused, and that address stays b's.
#[test]
fn a_reload_does_not_take_a_kept_pools_status_listener() {
    let site = Site::new();
    let (status_w, status_b, b_sock) =
        (site.path().join("status-w.sock"), site.path().join("status-b.sock"), site.path().join("b.sock"));
    let extra = format!("pm_status_path = \"/status\"\npm_status_listen = \"{}\"", status_w.display());
    let tables = format!(
        "[pool.b]\nlisten = \"{}\"\npm_max_children = 1\npm_status_path = \"/status\"\npm_status_listen = \"{}\"\n{}",
        b_sock.display(),
        status_b.display(),
        pool_user().map(|u| format!("user = \"{u}\"\n")).unwrap_or_default()
    );
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, extra, tables, ..Default::default() });
    let pool_at = |socket: &std::path::Path| {
        common::fcgi::status_page(socket, "/status", "")["pool"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!((pool_at(&status_w), pool_at(&status_b)), ("www".into(), "b".into()));
    let moved = site.path().join("moved.sock");
    let text = std::fs::read_to_string(&fpm.config).unwrap();
    // Pool b asks for another status address (it keeps its listen, so its status listener
    // stays as it is, with a warning); www moves and asks for b's.
    let other = site.path().join("status-b2.sock");
    let text = text.replace(&fpm.socket.display().to_string(), &moved.display().to_string());
    let text = text.replace(&status_b.display().to_string(), &other.display().to_string());
    std::fs::write(&fpm.config, text.replace(&status_w.display().to_string(), &status_b.display().to_string()))
        .unwrap();
    fpm.signal(libc::SIGUSR2);
    let done = wait_until(std::time::Duration::from_secs(20), || {
        let log = fpm.log_text();
        log.contains("configuration reloaded") || log.contains("reload failed") || log.contains("reload refused")
    });
    assert!(done, "{}", fpm.log_text());
    for _ in 0..10 {
        assert_eq!(pool_at(&status_b), "b", "{}", fpm.log_text());
    }
}
