//! Scale-out (docs/deploy.md): two rustfpm instances on two TCP ports behind
//! one nginx `upstream` with `fastcgi_next_upstream error timeout http_503`
//! (a request that reaches an instance as it stops at once gets rustfpm's
//! 503, "all PHP workers are busy": the script did not run). Stopping
//! one under load (SIGTERM with `graceful_stop_on_term`, or SIGKILL): nginx's
//! try on the stopped instance fails (refused connect, or a connection closed
//! before the response header) and nginx passes the request to the other
//! instance, so no client sees an error. A plain SIGTERM (stop at once) may
//! cost the requests in flight on it (rustfpm's own 502). The rule for a
//! request in flight, checked precisely: a request nginx
//! may repeat (GET) that was in flight on the stopped instance is run again
//! on the other one and answered 200; a POST in flight is not repeated (nginx
//! does not retry non-idempotent requests once sent, without
//! `non_idempotent`) and is answered 502.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::load::{Load, Req};
use common::*;

/// The instance's name, from its pool environment.
const WHO: &str = "<?php echo getenv('INSTANCE');\n";

/// Two instances ("a" and "b") serving `site`'s docroot, nginx in front.
struct Cluster {
    site: Site,
    _site_b: Site,
    a: Rustfpm,
    _b: Rustfpm,
    nginx: Nginx,
}

impl Cluster {
    /// `global_a`: extra `[global]` lines for instance a.
    fn start(global_a: &str) -> Cluster {
        let site = Site::new();
        site.script("who.php", WHO);
        // Holds until `release` exists; says where it runs first.
        site.script(
            "hold.php",
            &format!(
                "<?php $who = getenv('INSTANCE'); $s = '{0}';\n\
                 file_put_contents(\"$s/started-$who-\" . $_GET['id'], getmypid());\n\
                 while (!file_exists(\"$s/release\")) usleep(20000);\necho $who;\n",
                site.scratch().display()
            ),
        );
        // The second instance's config and log live in a site of its own; it
        // runs the scripts nginx names (SCRIPT_FILENAME) in the first one's docroot.
        let site_b = Site::new();
        let instance = |site: &Site, name: &str, global: &str| {
            let opts = PoolOptions {
                global: global.to_string(),
                children: 6,
                tcp_port: Some(free_port()),
                tables: format!("[pool.www.env]\nINSTANCE = \"{name}\"\n"),
                ..Default::default()
            };
            (Rustfpm::start(site, &opts), opts.tcp_port.unwrap_or_default())
        };
        let ((a, port_a), (b, port_b)) = (instance(&site, "a", global_a), instance(&site_b, "b", ""));
        let http = format!(
            r#"
  log_format upstreams '$upstream_addr|$upstream_status|$status';
  upstream php {{
    zone php 64k;
    server 127.0.0.1:{port_a} max_fails=1 fail_timeout=30s;
    server 127.0.0.1:{port_b} max_fails=1 fail_timeout=30s;
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{{port}};
    root {www};
    access_log {log} upstreams;
    location / {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_pass php;
      fastcgi_keep_conn on;
      fastcgi_next_upstream error timeout http_503;
      fastcgi_next_upstream_tries 2;
      fastcgi_connect_timeout 2s;
    }}
  }}
"#,
            www = site.www().display(),
            log = site.path().join("upstreams.log").display()
        );
        let nginx = Nginx::start_http(&site, &http);
        Cluster { site, _site_b: site_b, a, _b: b, nginx }
    }

    /// Who answers `/who.php`, `n` times in a row.
    fn who(&self, n: usize) -> Vec<String> {
        (0..n).map(|_| get(&self.nginx.url("/who.php")).text()).collect()
    }

    /// Waits for instance a to exit.
    fn wait_a_exit(&mut self) {
        let exited = self.a.wait_exit(Duration::from_secs(10));
        assert!(exited.is_some(), "instance a did not exit:\n{}", self.a.log_text());
    }

    /// nginx's access log lines of requests it passed to a second server
    /// (`$upstream_addr` names two): `addresses|statuses|status`.
    fn passed_on(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.site.path().join("upstreams.log")).unwrap_or_default();
        log.lines().filter(|l| l.split('|').next().is_some_and(|a| a.contains(", "))).map(String::from).collect()
    }
}

/// Load clients, each with one request at a time.
const CLIENTS: usize = 8;

fn load_fails_over(stop: Stop) {
    let mut cluster = Cluster::start(stop.global());
    let both = cluster.who(4);
    assert!(both.contains(&"a".to_string()) && both.contains(&"b".to_string()), "round robin: {both:?}");

    let mix = Arc::new(|client: usize, n: u64| match (client as u64 + n) % 3 {
        0 => Req::Hello { prefix: "" },
        1 => Req::Sleep { prefix: "", ms: 20 },
        _ => Req::Path { path: "/who.php".into(), expect: String::new() },
    });
    let load = Load::start(cluster.nginx.port, CLIENTS, None, mix);
    assert!(load.wait_sent(300, Duration::from_secs(60)), "the load did not get going");
    cluster.a.signal(stop.signal());
    cluster.wait_a_exit();
    let at_stop = load.sent();
    assert!(load.wait_sent(at_stop + 300, Duration::from_secs(60)), "the load stalled after the stop");
    let tally = load.finish();

    // Stopped at once, a request a was running when its child was stopped may get rustfpm's own
    // 502 (a complete answer: nginx passes it on): at most one per client, the one in flight.
    // Drained or killed, none fails.
    let exited =
        |o: &common::load::Odd| o.status == Some(502) && o.what.contains("process serving this request exited");
    let allowed = if stop == Stop::Term { CLIENTS } else { 0 };
    let unexplained: Vec<_> = tally.odd.iter().filter(|o| !exited(o)).collect();
    assert!(unexplained.is_empty() && tally.odd.len() <= allowed, "{}\n{}", tally.summary(), tally.first_odd(10));
    assert_eq!(tally.count(200) + tally.odd.len() as u64, tally.sent, "{}", tally.summary());
    let after = cluster.who(6);
    assert!(after.iter().all(|w| w == "b"), "after the stop: {after:?}");
    // The stopped instance was tried, and nginx passed the request on (so the answers above are
    // failover, not luck).
    let passed = cluster.passed_on();
    assert!(!passed.is_empty(), "nginx passed no request on from the stopped instance");
    eprintln!("{stop:?}: {}; passed on: {}\n{}", tally.summary(), passed.len(), passed.join("\n"));
}

#[test]
fn sigterm_on_one_instance_under_load_fails_over_losing_at_most_the_requests_in_flight() {
    load_fails_over(Stop::Term);
}

#[test]
fn a_draining_sigterm_on_one_instance_under_load_fails_over_without_errors() {
    load_fails_over(Stop::Drain);
}

#[test]
fn sigkill_on_one_instance_under_load_fails_over_without_errors() {
    load_fails_over(Stop::Kill);
}

/// How instance a is stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// SIGTERM, php-fpm's stop at once (the default).
    Term,
    /// SIGTERM with `graceful_stop_on_term = true`: a drains first.
    Drain,
    /// SIGKILL.
    Kill,
}

impl Stop {
    fn signal(self) -> i32 {
        if self == Stop::Kill {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        }
    }

    fn global(self) -> &'static str {
        if self == Stop::Drain {
            "graceful_stop_on_term = true\n"
        } else {
            ""
        }
    }
}

/// Requests in flight on the stopped instance, a script that runs until
/// released (the worst case: it does not end when php-cgi gets SIGTERM).
/// Stopped at once (SIGTERM), rustfpm ends them with its own complete 502,
/// which nginx passes on (a complete answer is no `error` to retry). Drained,
/// they finish on a (200) while new requests go to b. Killed (SIGKILL), the
/// connection just closes: nginx runs a GET again on b (200) but not a POST (502).
fn in_flight(stop: Stop) {
    let mut cluster = Cluster::start(stop.global());
    let scratch: PathBuf = cluster.site.scratch();
    let ran_on = |who: &str, id: usize| scratch.join(format!("started-{who}-{id}")).exists();
    let started = |id: usize| ["a", "b"].into_iter().find(|who| ran_on(who, id));
    // One at a time, so round robin alternates: two GETs and two POSTs on each instance.
    let mut requests = Vec::new();
    for id in 1..=8 {
        let url = cluster.nginx.url(&format!("/hold.php?id={id}"));
        let post = id > 4;
        let thread =
            std::thread::spawn(
                move || {
                    if post {
                        Ok(common::post(&url, "text/plain", b"payload"))
                    } else {
                        try_get(&url)
                    }
                },
            );
        requests.push((id, post, thread));
        assert!(wait_until(Duration::from_secs(10), || started(id).is_some()), "hold.php?id={id} did not start");
    }
    let on_a: Vec<(usize, bool)> =
        requests.iter().filter(|(id, ..)| started(*id) == Some("a")).map(|(id, post, _)| (*id, *post)).collect();
    assert!(on_a.iter().any(|r| !r.1) && on_a.iter().any(|r| r.1), "need a GET and a POST on a: {on_a:?}");

    cluster.a.signal(stop.signal());
    match stop {
        Stop::Kill => {
            for (id, _) in on_a.iter().filter(|r| !r.1) {
                let again = wait_until(Duration::from_secs(10), || ran_on("b", *id));
                assert!(again, "GET id={id}, in flight on the killed a, was not run again on b");
            }
        }
        // Once a has begun to drain, it takes no new request.
        Stop::Drain => {
            let draining = wait_until(Duration::from_secs(10), || cluster.a.log_text().contains("Finishing ..."));
            assert!(draining, "a did not start draining:\n{}", cluster.a.log_text());
            assert_eq!(cluster.who(4), ["b", "b", "b", "b"]);
        }
        Stop::Term => {}
    }
    if stop != Stop::Drain {
        cluster.wait_a_exit();
    }
    std::fs::write(scratch.join("release"), "").unwrap();
    for (id, post, thread) in requests {
        let answer = thread.join().unwrap().unwrap_or_else(|e| panic!("id={id}: no answer: {e}"));
        let got = (answer.status, answer.text());
        let want_status = match (on_a.contains(&(id, post)), stop, post) {
            (false, ..) | (true, Stop::Kill, false) => (200, Some("b")),
            (true, Stop::Drain, _) => (200, Some("a")),
            (true, Stop::Kill, true) => (502, None),
            (true, Stop::Term, _) => (502, None),
        };
        assert_eq!(got.0, want_status.0, "id={id} post={post} on_a={on_a:?} {stop:?}: {got:?}");
        if let Some(body) = want_status.1 {
            assert_eq!(got.1, body, "id={id} post={post} {stop:?}");
        }
        if (stop, on_a.contains(&(id, post))) == (Stop::Term, true) {
            assert!(got.1.contains("exited"), "rustfpm's own 502 for id={id}: {got:?}");
            assert!(!ran_on("b", id), "id={id} was run again on b");
        }
    }
    if stop == Stop::Drain {
        cluster.wait_a_exit();
    }
}

#[test]
fn in_flight_on_sigterm_are_answered_502_by_rustfpm() {
    in_flight(Stop::Term);
}

#[test]
fn in_flight_on_a_draining_sigterm_finish() {
    in_flight(Stop::Drain);
}

#[test]
fn in_flight_on_sigkill_gets_are_run_again_posts_are_502() {
    in_flight(Stop::Kill);
}
