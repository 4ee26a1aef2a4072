//! The seed's lesson as a stress test (issue 13, item 8): 4 pools, 256
//! children in all, each pool with its own `[env]`, started while their
//! status pages are polled in a loop, then 10 SIGUSR2 reloads under load. No
//! panic, no lost slot, exact counts, every request answered with its own
//! pool's environment. scripts/faults.sh runs it in a release build too.

mod common;
use common::load::*;
use common::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

const POOLS: [&str; 4] = ["a", "b", "c", "d"];
const CHILDREN: usize = 64;
const RELOADS: usize = 10;

/// Four pools, each with its own socket, status page and `[env]`.
fn config(site: &Site) -> String {
    let opts = PoolOptions {
        children: CHILDREN,
        extra: "pm_status_path = \"/status\"".into(),
        log_level: "notice",
        ..Default::default()
    };
    let mut text = opts.global_table();
    for p in POOLS {
        text += &opts.pool_table(p, site.path().join(format!("{p}.sock")).display());
        text += &format!("\n[pool.{p}.env]\nFOO = \"foo-{p}\"\nPOOL_NAME = \"{p}\"\n");
    }
    text
}

/// nginx: `/P/...` goes to pool P with one connection per request,
/// `/kP/...` with keep-alive.
fn nginx(site: &Site) -> Nginx {
    let mut body = String::new();
    for p in POOLS {
        body += &format!(
            "  upstream ka_{p} {{ server unix:{}; keepalive 8; }}\n",
            site.path().join(format!("{p}.sock")).display()
        );
    }
    body += &format!("  server {{\n    listen 127.0.0.1:{{port}};\n    root {};\n", site.www().display());
    for p in POOLS {
        for (prefix, pass) in [
            (p.to_string(), format!("unix:{}", site.path().join(format!("{p}.sock")).display())),
            (format!("k{p}"), format!("ka_{p}")),
        ] {
            let keep = if prefix.starts_with('k') { "fastcgi_keep_conn on;" } else { "" };
            body += &format!(
                "    location ^~ /{prefix}/ {{\n      rewrite ^/{prefix}(/.*)$ $1 break;\n      include /etc/nginx/fastcgi_params;\n      \
                 fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n      {keep}\n      fastcgi_pass {pass};\n    }}\n"
            );
        }
    }
    body += "  }\n";
    Nginx::start_http(site, &body)
}

/// Requests to pool `pool`: its environment page (which must show its own
/// FOO), or its status page (which must name it), half through keep-alive.
fn pool_mix(pool: &'static str, status: bool) -> Mix {
    Arc::new(move |client, n| {
        let prefix = if (client + n as usize).is_multiple_of(2) { pool.to_string() } else { format!("k{pool}") };
        if status {
            Req::Path { path: format!("/{prefix}/status?json"), expect: format!("\"pool\":\"{pool}\"") }
        } else {
            Req::Path { path: format!("/{prefix}/http_env.php"), expect: format!("getenv FOO='foo-{pool}'") }
        }
    })
}

/// Starts the 4 pools while their status pages are polled, sends 10
/// SIGUSR2 under load (each once the previous one was taken; with `settle`,
/// the first once the pools are up and each once the previous generation
/// is up and the one before it gone),
/// and checks: no panic, every request answered by its own pool, every
/// poll after start answered, each pool at rest with its 64 children (each
/// shown once), and exact counts for requests sent after the reloads.
fn stress(settle: bool) {
    let site = Site::new();
    let config_path = site.write_config(&config(&site));
    let nginx = nginx(&site);
    let started = Instant::now();
    let pollers: Vec<Load> = POOLS.iter().map(|p| Load::start(nginx.port, 1, None, pool_mix(p, true))).collect();
    let fpm = Rustfpm::start_with_config(&site, &config_path, None);
    let ready = Instant::now();
    eprintln!("4 pools of {CHILDREN} ready after {:?}", ready - started);
    let loads: Vec<Load> = POOLS.iter().map(|p| Load::start(nginx.port, 2, None, pool_mix(p, false))).collect();
    if settle {
        for p in POOLS {
            wait_at_rest_under_load(nginx.port, p);
        }
    }
    // Each signal once the previous one was taken (signals that arrive
    // during a reload are merged into one).
    for i in 1..=RELOADS {
        let parents = fpm.php_parents();
        fpm.signal(libc::SIGUSR2);
        let taken =
            wait_until(Duration::from_secs(20), || fpm.log_text().matches("Reloading in progress").count() >= i);
        assert!(taken, "SIGUSR2 #{i} was not taken within 20 s:\n{}", fpm.log_text());
        if settle {
            one_generation(&fpm, i, &parents);
        }
    }
    let mut log = String::new();
    let reloaded = wait_until(Duration::from_secs(30), || {
        log = fpm.log_text();
        log.matches("configuration reloaded").count() >= RELOADS
    });
    let stalled: Vec<&str> = POOLS
        .iter()
        .zip(&loads)
        .filter(|(_, load)| {
            let sent = load.sent();
            !load.wait_sent(sent + 20, Duration::from_secs(10))
        })
        .map(|(p, _)| *p)
        .collect();
    let tallies: Vec<Tally> = loads.into_iter().map(Load::finish).collect();
    let polls: Vec<Tally> = pollers.into_iter().map(Load::finish).collect();
    eprintln!(
        "{} reloads logged ({} 'Reloading in progress') after {:?}",
        log.matches("configuration reloaded").count(),
        log.matches("Reloading in progress").count(),
        ready.elapsed()
    );
    for (p, (t, s)) in POOLS.iter().zip(tallies.iter().zip(&polls)) {
        eprintln!("pool {p}: requests {}; status polls {}", t.summary(), s.summary());
        eprintln!("{}\n{}", t.first_odd(5), s.first_odd(5));
    }
    assert!(!log.contains("panicked"), "rustfpm panicked:\n{log}");
    assert!(stalled.is_empty(), "pools {stalled:?} served no request for 10 s after the reloads");
    assert!(fpm.child.is_some() && rustfpm_alive(&fpm), "rustfpm is gone:\n{log}");
    assert!(reloaded, "not {RELOADS} 'configuration reloaded' lines:\n{log}");
    for (p, t) in POOLS.iter().zip(&tallies) {
        assert!(t.odd.is_empty(), "pool {p}: requests failed: {}\n{}", t.summary(), t.first_odd(10));
        assert!(t.sent > 0, "pool {p} got no requests");
    }
    for (p, s) in POOLS.iter().zip(&polls) {
        let late: Vec<&Odd> = s.odd.iter().filter(|o| o.started > ready).collect();
        assert!(late.is_empty(), "pool {p}: status polls failed after rustfpm was ready: {}\n{late:#?}", s.summary());
    }
    let mut shown = Vec::new();
    for p in POOLS {
        let path = format!("/{p}/status");
        let status = wait_at_rest(nginx.port, &path, CHILDREN as u64, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("pool {p} is not at rest 30 s after the reloads: {e}"));
        assert_eq!(status["pool"], p, "{status}");
        shown.extend(status["processes"].as_array().into_iter().flatten().filter_map(|x| x["pid"].as_i64()));
    }
    let mut live = Vec::new();
    let settled = wait_until(Duration::from_secs(30), || {
        live = fpm.php_pids();
        live.len() == POOLS.len() * (CHILDREN + 1)
    });
    assert!(settled, "{} php-cgi processes under rustfpm (want {})", live.len(), POOLS.len() * (CHILDREN + 1));
    shown.sort_unstable();
    let before = shown.len();
    shown.dedup();
    assert_eq!(before, shown.len(), "a pid is shown by two slots");
    let kids: Vec<i64> = live
        .iter()
        .copied()
        .filter(|p| matches!(proc_stat(*p), Some((_, _, pp)) if live.contains(&pp)))
        .map(i64::from)
        .collect();
    let mut kids = kids;
    kids.sort_unstable();
    assert_eq!(shown, kids, "the status pages' pids are not the live children");
    exact_counts(nginx.port);
}

/// Waits until reload `i` is done and only its generation runs: 4 php-cgi
/// parents, none of them one of `before`, with 64 children each.
fn one_generation(fpm: &Rustfpm, i: usize, before: &[i32]) {
    let mut live = Vec::new();
    let done = wait_until(Duration::from_secs(30), || {
        live = fpm.php_pids();
        let parents = fpm.php_parents();
        fpm.log_text().matches("configuration reloaded").count() >= i
            && parents.len() == POOLS.len()
            && parents.iter().all(|p| !before.contains(p))
            && live.len() == POOLS.len() * (CHILDREN + 1)
    });
    assert!(
        done,
        "reload #{i}: {} php-cgi processes 30 s later (want {}):\n{}",
        live.len(),
        POOLS.len() * (CHILDREN + 1),
        fpm.log_text()
    );
}

/// Waits until pool `p` shows its 64 children, none of them queued for.
fn wait_at_rest_under_load(port: u16, p: &str) {
    let path = format!("/{p}/status");
    let mut last = String::new();
    let up = wait_until(Duration::from_secs(30), || match status_json(port, &path) {
        Ok(s) => {
            last = s.to_string();
            s["total processes"].as_u64() == Some(CHILDREN as u64) && s["listen queue"].as_u64() == Some(0)
        }
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(up, "pool {p} did not come up with {CHILDREN} children: {last}");
}

/// 50 requests to each pool raise its `accepted conn` by exactly 50.
fn exact_counts(port: u16) {
    for p in POOLS {
        let path = format!("/{p}/status");
        let before = field(&status_json(port, &path).unwrap_or_else(|e| panic!("{e}")), "accepted conn");
        let tally = Load::start(port, 2, Some(50), pool_mix(p, false)).join();
        assert!(tally.odd.is_empty() && tally.sent == 50, "pool {p}: {}\n{}", tally.summary(), tally.first_odd(5));
        let after = status_json(port, &path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(field(&after, "accepted conn"), before + 50, "pool {p}, 50 requests after {before}: {after}");
    }
}

/// Each reload once the previous generation is up and the one before it gone.
#[test]
fn four_pools_of_64_survive_start_and_settled_reloads_under_polling() {
    stress(true);
}

/// Reloads back to back, from the moment rustfpm is ready.
#[test]
#[ignore = "load: a reload now waits until its 256 new children answer, which takes 1-20 s each on a loaded 2-core machine, past this test's 20 s per SIGUSR2; the settled variant runs in CI"]
fn four_pools_of_64_survive_start_and_back_to_back_reloads_under_polling() {
    stress(false);
}

/// True while rustfpm runs.
fn rustfpm_alive(fpm: &Rustfpm) -> bool {
    matches!(proc_stat(fpm.pid()), Some((_, state, _)) if state != 'Z')
}
