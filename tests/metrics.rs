//! The Prometheus endpoint (`metrics_listen`): scraped over HTTP after real
//! traffic through nginx, and read with a real Prometheus text parser
//! (`prometheus-parse`): counters by status class, bucketed histograms of
//! request duration and queue wait, children by state, per-child memory,
//! recycles by reason, and hipages/php-fpm_exporter's `phpfpm_*` names.

mod common;

use std::time::Duration;

use common::*;
use prometheus_parse::{Sample, Scrape, Value};

fn scrape(port: u16) -> Scrape {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let body = try_get(&url).unwrap_or_else(|e| panic!("scrape {url}: {e}")).text();
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("the exposition parses")
}

fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// A counter's or gauge's value.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match find(scrape, name, labels)?.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
        _ => None,
    }
}

/// A histogram's observations (its `+Inf` bucket) and how many buckets it has.
fn histogram(scrape: &Scrape, name: &str) -> Option<(f64, usize)> {
    match &find(scrape, name, &[("pool", "www")])?.value {
        Value::Histogram(buckets) => {
            let total = buckets.iter().find(|b| b.less_than.is_infinite()).map(|b| b.count)?;
            Some((total, buckets.len()))
        }
        _ => None,
    }
}

#[test]
fn the_endpoint_serves_pool_metrics_a_prometheus_parser_reads() {
    let port = free_port();
    let global = format!("metrics_listen = \"127.0.0.1:{port}\"");
    let opts = PoolOptions { children: 2, extra: "pm_max_requests = 3\n".into(), global, ..Default::default() };
    let Stack { nginx, fpm, site } = Stack::with(opts);
    assert!(fpm.log_text().contains(&format!("serving Prometheus metrics on http://127.0.0.1:{port}")));

    for _ in 0..10 {
        assert_eq!(get(&nginx.url("/hello.php")).status, 200);
    }
    site.script("gone.php", "<?php http_response_code(404); echo 'gone';");
    assert_eq!(get(&nginx.url("/gone.php")).status, 404);
    // Answered by rustfpm itself (no such script): counted too, but no child was involved.
    assert_eq!(get(&nginx.url("/missing.php")).status, 404);

    // Sampled gauges follow within a couple of seconds: the pool's counts, the children's
    // states (a child recycled after the last requests may still be starting) and their
    // memory (the usage sampler's, after a request ends).
    let www = [("pool", "www")];
    let settled = |s: &Scrape| {
        let children = |state| value(s, "rustfpm_children", &[("pool", "www"), ("state", state)]).unwrap_or(-1.0);
        let memory = |slot| value(s, "rustfpm_child_private_memory_bytes", &[("pool", "www"), ("slot", slot)]);
        value(s, "phpfpm_accepted_connections", &www) == Some(11.0)
            && children("idle") + children("busy") == 2.0
            && ["0", "1"].iter().all(|slot| memory(slot).is_some_and(|b| b > 0.0))
    };
    let mut s = scrape(port);
    let _ = wait_until(Duration::from_secs(10), || {
        s = scrape(port);
        settled(&s)
    });
    assert_eq!(value(&s, "rustfpm_requests_total", &[("pool", "www"), ("status", "2xx")]), Some(10.0));
    assert_eq!(value(&s, "rustfpm_requests_total", &[("pool", "www"), ("status", "4xx")]), Some(2.0));
    assert_eq!(value(&s, "rustfpm_accepted_connections_total", &www), Some(11.0));
    assert_eq!(value(&s, "phpfpm_accepted_connections", &www), Some(11.0), "{:#?}", s.samples);
    let (observed, buckets) = histogram(&s, "rustfpm_request_duration_seconds").expect("a duration histogram");
    assert_eq!(observed, 11.0);
    assert!(buckets > 5, "the duration histogram has {buckets} buckets");
    assert_eq!(histogram(&s, "rustfpm_queue_wait_seconds").map(|(n, _)| n), Some(11.0));
    // 11 requests on 2 children recycled after 3 requests each.
    let recycled = value(&s, "rustfpm_children_recycled_total", &[("pool", "www"), ("reason", "requests")]);
    assert!(recycled.is_some_and(|n| n >= 2.0), "recycled: {recycled:?}");
    assert_eq!(value(&s, "rustfpm_parent_starts_total", &[("pool", "www"), ("reason", "start")]), Some(1.0));
    assert_eq!(value(&s, "rustfpm_child_crashes_total", &www), Some(0.0));

    let idle = value(&s, "rustfpm_children", &[("pool", "www"), ("state", "idle")]).unwrap_or(-1.0);
    let busy = value(&s, "rustfpm_children", &[("pool", "www"), ("state", "busy")]).unwrap_or(-1.0);
    assert_eq!(idle + busy, 2.0, "children by state: idle {idle}, busy {busy}");
    assert_eq!(value(&s, "rustfpm_queue_length", &www), Some(0.0));
    assert!(value(&s, "rustfpm_queue_capacity", &www).is_some_and(|n| n > 0.0));
    for slot in ["0", "1"] {
        let bytes = value(&s, "rustfpm_child_private_memory_bytes", &[("pool", "www"), ("slot", slot)]);
        assert!(bytes.is_some_and(|b| b > 0.0), "slot {slot}: {bytes:?}");
    }
    assert_eq!(value(&s, "phpfpm_up", &www), Some(1.0));
    assert_eq!(value(&s, "phpfpm_total_processes", &www), Some(2.0));
    assert_eq!(value(&s, "phpfpm_listen_queue", &www), Some(0.0));
    assert!(s.docs.contains_key("rustfpm_request_duration_seconds"), "no HELP line: {:?}", s.docs.keys());
}

#[test]
fn metrics_are_off_unless_metrics_listen_is_set() {
    let stack = Stack::start();
    assert!(!stack.fpm.log_text().contains("Prometheus"), "{}", stack.fpm.log_text());
    let listening = std::fs::read_to_string(format!("/proc/{}/net/tcp", stack.fpm.pid())).unwrap_or_default();
    // 0A: TCP_LISTEN. rustfpm's pool listens on a unix socket, so it has no TCP listener at all.
    let own_inodes: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", stack.fpm.pid()))
        .map(|d| {
            d.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).map(|l| l.display().to_string()).collect()
        })
        .unwrap_or_default();
    let listens = listening.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(3) == Some(&"0A") && f.get(9).is_some_and(|ino| own_inodes.contains(&format!("socket:[{ino}]")))
    });
    assert!(!listens, "rustfpm listens on TCP without metrics_listen");
}

/// A reload that removes a pool: its gauges leave the output (an exporter that
/// kept `phpfpm_up 1` for it would keep a dashboard showing a pool that no
/// longer exists, and an alert on it from ever firing), while the kept pool's
/// stay. Counters that count rare events are there at 0 from the start.
#[test]
fn a_removed_pools_gauges_leave_the_output() {
    let port = free_port();
    let site = Site::new();
    let gone =
        PoolOptions { children: 1, ..Default::default() }.pool_table("gone", site.path().join("gone.sock").display());
    let global = format!("metrics_listen = \"127.0.0.1:{port}\"");
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, global, tables: gone.clone(), ..Default::default() });
    let up = |s: &Scrape, pool: &str| value(s, "phpfpm_up", &[("pool", pool)]);
    let both = wait_until(Duration::from_secs(10), || {
        let s = scrape(port);
        up(&s, "www") == Some(1.0) && up(&s, "gone") == Some(1.0)
    });
    assert!(both, "both pools up: {:?}", scrape(port).samples.len());
    let s = scrape(port);
    for (name, labels) in [
        ("rustfpm_slow_requests_total", vec![("pool", "gone")]),
        ("rustfpm_children_recycled_total", vec![("pool", "www"), ("reason", "memory")]),
        ("rustfpm_parent_starts_total", vec![("pool", "www"), ("reason", "restart")]),
        ("rustfpm_log_lines_dropped_total", vec![]),
    ] {
        assert_eq!(value(&s, name, &labels), Some(0.0), "{name} {labels:?} at the start");
    }
    let text = std::fs::read_to_string(&fpm.config).unwrap();
    std::fs::write(&fpm.config, text.replace(&gone, "")).unwrap();
    fpm.signal(libc::SIGUSR2);
    fpm.wait_logged("configuration reloaded: 1 pool(s)");
    let expiry = Duration::from_secs(10) + Duration::from_secs(10);
    let left = wait_until(expiry, || {
        let s = scrape(port);
        up(&s, "gone").is_none()
            && !s.samples.iter().any(|x| x.metric.starts_with("phpfpm_") && x.labels.get("pool") == Some("gone"))
    });
    let s = scrape(port);
    assert!(left, "the removed pool's gauges are still there: {:?}", up(&s, "gone"));
    assert_eq!(up(&s, "www"), Some(1.0), "the kept pool's gauges went too");
    assert!(value(&s, "rustfpm_busy_children", &[("pool", "www")]).is_some(), "the kept pool's busy gauge expired");
}
