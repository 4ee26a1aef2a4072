//! Telling systemd how rustfpm is doing (`Type=notify`, as Debian's
//! php8.2-fpm.service): `READY=1` once every pool's children answer, a
//! `STATUS=` line in php-fpm's wording every `systemd_interval`,
//! `RELOADING=1` … `READY=1` around a reload, `STOPPING=1`, and `WATCHDOG=1`
//! only while every pool actor's loop keeps running.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pool::actor::REPAIR_INTERVAL;
use crate::pool::{Pool, SlotState};
use crate::sys::systemd;

/// How often a pool that does not answer yet is probed again.
const READY_POLL: Duration = Duration::from_millis(100);

/// The server's link to systemd. Does nothing without a `NOTIFY_SOCKET`.
pub struct Notifier {
    enabled: bool,
    pools: watch::Sender<Vec<Arc<Pool>>>,
    /// Waits for the current pools to answer, then sends `READY=1`.
    ready: Option<JoinHandle<()>>,
    /// Sends `STATUS=` and `WATCHDOG=1` on their intervals.
    task: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Starts notifying about `pools`: `READY=1` follows once they answer.
    /// `status_every` is `systemd_interval`. Must run inside the runtime.
    pub fn start(pools: &[Arc<Pool>], status_every: Option<Duration>) -> Notifier {
        let enabled = systemd::enabled();
        let (tx, rx) = watch::channel(pools.to_vec());
        let watchdog = systemd::watchdog_interval().filter(|_| enabled);
        if let Some(every) = watchdog {
            crate::notice!("systemd watchdog: {}ms; pinging while every pool actor runs", every.as_millis());
        }
        let task = enabled.then(|| tokio::spawn(run(rx, status_every, watchdog)));
        let mut notifier = Notifier { enabled, pools: tx, ready: None, task };
        notifier.announce_when_ready();
        notifier
    }

    /// A reload begins (`RELOADING=1`).
    pub fn reloading(&mut self) {
        if self.enabled {
            self.abort_ready();
            told(systemd::reloading());
        }
    }

    /// A reload ended: `pools` serve now (the same as before if it failed);
    /// `READY=1` follows once they answer.
    pub fn reloaded(&mut self, pools: &[Arc<Pool>]) {
        self.pools.send_replace(pools.to_vec());
        self.announce_when_ready();
    }

    /// Shutdown begins (`STOPPING=1`).
    pub fn stopping(&mut self) {
        if self.enabled {
            self.abort_ready();
            told(systemd::stopping());
        }
    }

    fn abort_ready(&mut self) {
        if let Some(task) = self.ready.take() {
            task.abort();
        }
    }

    fn announce_when_ready(&mut self) {
        if !self.enabled {
            return;
        }
        self.abort_ready();
        let pools = self.pools.borrow().clone();
        self.ready = Some(tokio::spawn(async move {
            for pool in &pools {
                while !pool.answers().await {
                    tokio::time::sleep(READY_POLL).await;
                }
            }
            let counts = Counts::of(&pools).await;
            crate::notice!("every pool's children answer; told systemd READY=1");
            told(systemd::ready(&counts.status_line(0.0)));
        }));
    }
}

/// Logs a notification systemd could not be sent (never fatal).
fn told(sent: std::io::Result<()>) {
    if let Err(e) = sent {
        crate::warning!("cannot notify systemd (NOTIFY_SOCKET): {e}");
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.abort_ready();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Sends `STATUS=` every `status_every` and, with a watchdog, `WATCHDOG=1`
/// every half interval while no pool actor's heartbeat is stale.
async fn run(pools: watch::Receiver<Vec<Arc<Pool>>>, status_every: Option<Duration>, watchdog: Option<Duration>) {
    let far = Duration::from_secs(86400);
    let mut status = tokio::time::interval(status_every.unwrap_or(far));
    status.tick().await; // READY=1 carries the first line
    let mut ping = tokio::time::interval(watchdog.map_or(far, |w| w / 2));
    let stale_after = watchdog.map_or(far, |w| (w / 2).max(REPAIR_INTERVAL * 3));
    let mut traffic = Traffic::since(Instant::now());
    let mut withheld = false;
    loop {
        tokio::select! {
            _ = status.tick(), if status_every.is_some() => {
                let current = pools.borrow().clone();
                let counts = Counts::of(&current).await;
                told(systemd::status(&counts.status_line(traffic.rate(counts.requests, Instant::now()))));
            }
            _ = ping.tick(), if watchdog.is_some() => {
                let stale = stale_pool(&pools.borrow(), stale_after, Instant::now());
                match stale {
                    None => {
                        withheld = false;
                        told(systemd::watchdog());
                    }
                    Some((pool, age)) if !withheld => {
                        withheld = true;
                        crate::alert!("[pool {pool}] its actor has not run for {}ms; withholding the systemd watchdog ping", age.as_millis());
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// The first pool whose actor's loop has not run for `limit`, with how long.
fn stale_pool(pools: &[Arc<Pool>], limit: Duration, now: Instant) -> Option<(String, Duration)> {
    pools.iter().map(|p| (p.name.clone(), p.heartbeat.age(now))).find(|(_, age)| *age > limit)
}

/// php-fpm's figures for the `STATUS=` line, summed over the pools.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    active: usize,
    idle: usize,
    requests: u64,
    slow: u64,
}

impl Counts {
    async fn of(pools: &[Arc<Pool>]) -> Counts {
        let mut counts = Counts::default();
        for pool in pools {
            let Some(s) = pool.snapshot().await else { continue };
            counts.active += s.slots.iter().filter(|s| s.state == SlotState::Busy).count();
            counts.idle += s.slots.iter().filter(|s| s.state == SlotState::Idle).count();
            counts.requests += s.accepted;
            counts.slow += s.slow_requests;
        }
        counts
    }

    /// php-fpm's wording (fpm_systemd.c), `Traffic` formatted as C's `%.3g`.
    fn status_line(&self, per_sec: f64) -> String {
        format!(
            "Processes active: {}, idle: {}, Requests: {}, slow: {}, Traffic: {}req/sec",
            self.active,
            self.idle,
            self.requests,
            self.slow,
            format_g3(per_sec)
        )
    }
}

/// Requests per second between two status lines.
#[derive(Debug)]
struct Traffic {
    last: Option<(Instant, u64)>,
}

impl Traffic {
    /// Counting from `start`, as php-fpm's first line counts every request since it began.
    fn since(start: Instant) -> Traffic {
        Traffic { last: Some((start, 0)) }
    }

    fn rate(&mut self, requests: u64, now: Instant) -> f64 {
        let rate = match self.last {
            Some((at, before)) if now > at => requests.saturating_sub(before) as f64 / (now - at).as_secs_f64(),
            _ => 0.0,
        };
        self.last = Some((now, requests));
        rate
    }
}

/// `x` as C's `printf("%.3g")` writes it: 3 significant digits, trailing
/// zeros dropped, exponent form below 1e-4 and from 1e3 on.
fn format_g3(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return if x.is_finite() { "0".to_string() } else { x.to_string() };
    }
    let sci = format!("{x:.2e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..3).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.abs());
    }
    let decimals = usize::try_from(2 - exp).unwrap_or(0);
    trim_zeros(&format!("{x:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_is_formatted_as_printf_g3() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (12.345, "12.3"),
            (100.0, "100"),
            (999.4, "999"),
            (1234.0, "1.23e+03"),
            (25000.0, "2.5e+04"),
            (0.000123, "0.000123"),
            (0.00001, "1e-05"),
        ];
        for (x, want) in cases {
            assert_eq!(format_g3(x), want, "{x}");
        }
    }

    #[test]
    fn the_status_line_reads_as_php_fpm_s() {
        let counts = Counts { active: 1, idle: 3, requests: 42, slow: 2 };
        assert_eq!(counts.status_line(2.5), "Processes active: 1, idle: 3, Requests: 42, slow: 2, Traffic: 2.5req/sec");
    }

    #[test]
    fn traffic_is_requests_per_second_between_lines() {
        let t0 = Instant::now();
        let mut traffic = Traffic::since(t0);
        // The first line counts from the start (it showed 0 after requests).
        assert_eq!(traffic.rate(100, t0 + Duration::from_secs(10)), 10.0);
        assert_eq!(traffic.rate(120, t0 + Duration::from_secs(20)), 2.0);
        // A reload starts the counters again: never negative.
        assert_eq!(traffic.rate(5, t0 + Duration::from_secs(30)), 0.0);
    }
}
