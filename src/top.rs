//! `rustfpm top --config FILE` (or `-y FILE`): a live terminal view of every
//! pool, what `watch curl .../status?full` gives a php-fpm operator, sorted.
//!
//! Once a second it asks each pool's status page (`pm_status_path`, with
//! `?json&full`) over FastCGI, the way nginx would, through the pool's
//! `pm_status_listen` or else its `listen` (`crate::ping::get`); so it works
//! against php-fpm's status pages too. A pool without a status path is named
//! as such. The screen: one line per pool (processes by state, the queue,
//! req/s from the change of `accepted conn`), then every child, busy ones first,
//! longest-running first: pid, state, requests served, elapsed, resident
//! memory, script, method and URI. `q` (or Esc, or Ctrl-C) quits.
//!
//! The terminal is driven with `crossterm` alone (raw mode, the alternate
//! screen, key events): the view is lines of text in fixed columns, which a
//! layout crate would not make simpler, and it keeps the binary's
//! dependencies to one small crate.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, queue, style, terminal};
use serde::Deserialize;

use crate::config::{Config, ListenAddr, Source};
use crate::ping::{self, Target};
use crate::sys::procfs::rss;

/// How often the pools are asked.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);
/// The query asked of each status page.
const QUERY: &str = "json&full";
/// Exit code for a configuration that cannot be read (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// Where one pool's status page is read, or why it cannot be.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The pool's name.
    pub pool: String,
    /// The address and the status path, or why there is none.
    pub page: Result<(Target, String), String>,
}

/// The status pages of `config`'s pools: through `pm_status_listen` if set,
/// else through `listen`.
pub(crate) fn endpoints(config: &Config) -> Vec<Endpoint> {
    config
        .pools
        .iter()
        .map(|p| {
            let addr = p.pm_status_listen.as_ref().unwrap_or(&p.listen);
            let target = match addr {
                ListenAddr::Unix(path) => Target::Unix(path.clone()),
                ListenAddr::Tcp(addr) => Target::Tcp(*addr),
                // Every address: 127.0.0.1 answers whether [::] or 0.0.0.0 was bound.
                ListenAddr::Port(port) => Target::Tcp((std::net::Ipv4Addr::LOCALHOST, *port).into()),
            };
            let page = match &p.pm_status_path {
                Some(path) => Ok((target, path.clone())),
                None => Err("no pm_status_path: nothing to show (set pm.status_path)".to_string()),
            };
            Endpoint { pool: p.name.clone(), page }
        })
        .collect()
}

/// A pool's status page (`?json&full`), php-fpm's keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PoolStatus {
    /// `pool`
    pub pool: String,
    /// `process manager`
    #[serde(rename = "process manager")]
    pub pm: String,
    /// `accepted conn`
    #[serde(rename = "accepted conn")]
    pub accepted: u64,
    /// `listen queue`
    #[serde(rename = "listen queue")]
    pub queue: u64,
    /// `max listen queue`
    #[serde(rename = "max listen queue")]
    pub max_queue: u64,
    /// `idle processes`
    #[serde(rename = "idle processes")]
    pub idle: u64,
    /// `active processes`
    #[serde(rename = "active processes")]
    pub active: u64,
    /// `total processes`
    #[serde(rename = "total processes")]
    pub total: u64,
    /// `max children reached`
    #[serde(rename = "max children reached")]
    pub max_children_reached: u64,
    /// `slow requests`
    #[serde(rename = "slow requests")]
    pub slow: u64,
    /// `processes`
    pub processes: Vec<Child>,
}

/// One child in a full status page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Child {
    /// `pid`
    pub pid: i64,
    /// `state` ("Idle", "Running", ...)
    pub state: String,
    /// `requests`
    pub requests: u64,
    /// `request duration`, microseconds: the current request's so far, or the last one's.
    #[serde(rename = "request duration")]
    pub duration_us: u64,
    /// `request method`
    #[serde(rename = "request method")]
    pub method: String,
    /// `request uri`
    #[serde(rename = "request uri")]
    pub uri: String,
    /// `script`
    pub script: String,
    /// `last request memory`, bytes.
    #[serde(rename = "last request memory")]
    pub last_memory: u64,
}

impl Child {
    fn busy(&self) -> bool {
        !self.state.eq_ignore_ascii_case("idle")
    }
}

/// One pool as last read.
#[derive(Debug, Clone)]
pub(crate) struct PoolView {
    /// The pool's name (from the configuration).
    pub pool: String,
    /// Where it was read.
    pub target: Option<Target>,
    /// Its status, or why there is none.
    pub status: Result<PoolStatus, String>,
    /// Requests a second since the previous reading.
    pub rate: Option<f64>,
}

/// Reads every pool once; `previous` (accepted conn and when, by pool) gives req/s.
pub(crate) fn sample(endpoints: &[Endpoint], previous: &mut HashMap<String, (u64, Instant)>) -> Vec<PoolView> {
    endpoints
        .iter()
        .map(|e| {
            let (target, status) = match &e.page {
                Err(why) => (None, Err(why.clone())),
                Ok((target, path)) => (Some(target.clone()), read(target, path)),
            };
            let now = Instant::now();
            let rate = status.as_ref().ok().and_then(|s| {
                let before = previous.insert(e.pool.clone(), (s.accepted, now));
                before
                    .map(|(n, at)| s.accepted.saturating_sub(n) as f64 / now.duration_since(at).as_secs_f64().max(1e-3))
            });
            PoolView { pool: e.pool.clone(), target, status, rate }
        })
        .collect()
}

fn read(target: &Target, path: &str) -> Result<PoolStatus, String> {
    let (body, _) = ping::get(target, path, QUERY).map_err(|e| e.to_string())?;
    serde_json::from_str(&body).map_err(|e| format!("{target} {path}?{QUERY} is not a JSON status page: {e}"))
}

/// Whether pids read from `target` are this host's (so `/proc` describes them).
fn local(target: &Option<Target>) -> bool {
    match target {
        Some(Target::Unix(_)) => true,
        Some(Target::Tcp(a)) => a.ip().is_loopback(),
        None => false,
    }
}

/// `1.5s`, `320ms`, `2m05s`, `1h02m`.
pub(crate) fn elapsed(us: u64) -> String {
    let ms = us / 1000;
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// `512K`, `12.3M`, `1.1G`.
pub(crate) fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let n = n as f64;
    if n < K * K {
        format!("{:.0}K", n / K)
    } else if n < K * K * K {
        format!("{:.1}M", n / (K * K))
    } else {
        format!("{:.1}G", n / (K * K * K))
    }
}

/// Keeps the last `width` characters of `s` (the end of a path says most), marking a cut.
fn tail(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let skip = n - (width - 1);
    std::iter::once('…').chain(s.chars().skip(skip)).collect()
}

/// The status page's `-` (nothing) as nothing.
fn dash(s: &str) -> &str {
    if s == "-" {
        ""
    } else {
        s
    }
}

/// Cuts `s` to `width` characters.
fn head(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// The screen as lines of at most `width` characters.
pub(crate) fn render(views: &[PoolView], width: usize, now: SystemTime) -> Vec<String> {
    let clock = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (h, m, s) = (clock / 3600 % 24, clock / 60 % 60, clock % 60);
    let mut lines = vec![format!(
        "rustfpm top - {} pool{} - {h:02}:{m:02}:{s:02} UTC - every {}s, q quits",
        views.len(),
        if views.len() == 1 { "" } else { "s" },
        REFRESH.as_secs()
    )];
    let mut rows = Vec::new();
    for v in views {
        let at = v.target.as_ref().map(|t| format!(" | {t}")).unwrap_or_default();
        match &v.status {
            Err(why) => lines.push(format!("pool {}: {why}{at}", v.pool)),
            Ok(s) => {
                let rate = v.rate.map_or_else(|| "-".to_string(), |r| format!("{r:.1}"));
                // The figures that change first (an 80-column screen shows them), the address last.
                lines.push(format!(
                    "pool {}: req/s {rate} | active {} idle {} total {} | queue {} (max {}) | {}, accepted {}, \
                     slow {}, max children reached {}{at}",
                    v.pool,
                    s.active,
                    s.idle,
                    s.total,
                    s.queue,
                    s.max_queue,
                    s.pm,
                    s.accepted,
                    s.slow,
                    s.max_children_reached
                ));
                let here = local(&v.target);
                rows.extend(s.processes.iter().map(|c| (v.pool.as_str(), here, c)));
            }
        }
    }
    // Busy children first, longest-running first; idle ones after, by pid.
    rows.sort_by(|a, b| {
        let key = |c: &Child| (!c.busy(), if c.busy() { u64::MAX - c.duration_us } else { 0 }, c.pid);
        key(a.2).cmp(&key(b.2))
    });
    lines.push(String::new());
    let fixed = format!("{:<12} {:>8} {:<9} {:>6} {:>8} {:>7} ", "POOL", "PID", "STATE", "REQS", "ELAPSED", "RSS");
    let rest = width.saturating_sub(fixed.chars().count());
    let script_width = (rest / 2).clamp(10, 80);
    lines.push(format!("{fixed}{:<script_width$} REQUEST", "SCRIPT"));
    for (pool, here, c) in rows {
        let took = if c.busy() { elapsed(c.duration_us) } else { "-".to_string() };
        // Resident memory of a live child when it runs on this host; else what the page says.
        let memory = here
            .then(|| i32::try_from(c.pid).ok().and_then(rss))
            .flatten()
            .or((c.last_memory > 0).then_some(c.last_memory));
        let memory = memory.map_or_else(|| "-".to_string(), bytes);
        lines.push(format!(
            "{:<12} {:>8} {:<9} {:>6} {:>8} {:>7} {:<script_width$} {} {}",
            head(pool, 12),
            c.pid,
            head(&c.state, 9),
            c.requests,
            took,
            memory,
            tail(dash(&c.script), script_width),
            dash(&c.method),
            dash(&c.uri)
        ));
    }
    // A request's URI or script reaches the terminal as text, never as its control sequences.
    lines.into_iter().map(|l| head(&crate::accesslog::format::escape_controls(&l), width)).collect()
}

/// `rustfpm top`: the live view of `source`'s pools, or with `once` one
/// screen as plain text (the command line is parsed in the binary).
pub fn main(source: Source, once: bool) -> ExitCode {
    let config = match source.load() {
        Ok((config, _warnings)) => config,
        Err(e) => {
            eprintln!("rustfpm top: cannot read {}: {e}", source.path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let endpoints = endpoints(&config);
    if once {
        let views = sample(&endpoints, &mut HashMap::new());
        // Plain text is not cut to a width.
        for line in render(&views, usize::MAX, SystemTime::now()) {
            println!("{}", line.trim_end());
        }
        // For scripts: a status page that did not answer, or no pool read at all, is a failure.
        let unread = views.iter().any(|v| v.target.is_some() && v.status.is_err());
        return if unread || views.iter().all(|v| v.status.is_err()) { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    match live(endpoints) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rustfpm top: the terminal failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Set by SIGTERM or SIGHUP during the live view, which then ends as `q` ends it.
static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn stop(_: libc::c_int) {
    STOPPED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Raw mode and the alternate screen while it lives; the terminal as it was after.
struct Screen;

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        terminal::enable_raw_mode()?;
        let screen = Screen;
        crossterm::execute!(std::io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = crossterm::execute!(std::io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

/// The live view: a thread reads the pools every [`REFRESH`] (a slow pool does
/// not hold up the keys); this one draws and waits for `q`.
fn live(endpoints: Vec<Endpoint>) -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut previous = HashMap::new();
        loop {
            let started = Instant::now();
            if tx.send(sample(&endpoints, &mut previous)).is_err() {
                return;
            }
            std::thread::sleep(REFRESH.saturating_sub(started.elapsed()));
        }
    });
    // A kill (or the terminal going away) restores the terminal as `q` does, where the
    // default action left it raw, echo off, on the alternate screen.
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, stop as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
    let _screen = Screen::enter()?;
    let mut views = Vec::new();
    let mut out = std::io::stdout();
    loop {
        if STOPPED.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let mut redraw = false;
        while let Ok(v) = rx.try_recv() {
            views = v;
            redraw = true;
        }
        let ready = match event::poll(Duration::from_millis(100)) {
            // A signal that stops the view may interrupt the wait.
            Err(_) if STOPPED.load(std::sync::atomic::Ordering::Relaxed) => return Ok(()),
            ready => ready?,
        };
        if ready {
            match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => match k.code {
                    KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                    _ => {}
                },
                Event::Resize(..) => redraw = true,
                _ => {}
            }
        }
        if redraw {
            let (width, height) = terminal::size()?;
            queue!(out, terminal::Clear(terminal::ClearType::All))?;
            for (row, line) in render(&views, width.into(), SystemTime::now()).iter().take(height.into()).enumerate() {
                let row = u16::try_from(row).unwrap_or(u16::MAX);
                queue!(out, cursor::MoveTo(0, row), style::Print(line))?;
            }
            out.flush()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(pid: i64, state: &str, us: u64, script: &str) -> Child {
        Child { pid, state: state.into(), duration_us: us, script: script.into(), ..Default::default() }
    }

    #[test]
    fn busy_children_come_first_longest_running_first() {
        let status = PoolStatus {
            processes: vec![
                child(11, "Idle", 9_000_000, "/old.php"),
                child(12, "Running", 2_000_000, "/two.php"),
                child(13, "Running", 7_000_000, "/seven.php"),
            ],
            ..Default::default()
        };
        let views = [PoolView { pool: "www".into(), target: None, status: Ok(status), rate: Some(2.0) }];
        let lines = render(&views, 200, SystemTime::UNIX_EPOCH);
        let pids: Vec<&str> =
            lines.iter().filter(|l| l.starts_with("www ")).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
        assert_eq!(pids, ["13", "12", "11"], "{lines:#?}");
        assert!(lines.iter().any(|l| l.contains("req/s 2.0")), "{lines:#?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 200));
    }

    /// A request's URI is shown as text: its control sequences never reach the terminal.
    #[test]
    fn control_characters_are_shown_escaped() {
        let mut child = child(7, "Running", 1000, "/www/x.php");
        child.uri = "/x.php?\x1b[41m\x1b]2;title\x07".into();
        let status = PoolStatus { processes: vec![child], ..Default::default() };
        let views = [PoolView { pool: "www".into(), target: None, status: Ok(status), rate: None }];
        let lines = render(&views, 200, SystemTime::UNIX_EPOCH);
        assert!(lines.iter().all(|l| !l.chars().any(char::is_control)), "{lines:#?}");
        assert!(lines.iter().any(|l| l.contains("/x.php?\\x1B[41m")), "{lines:#?}");
    }

    #[test]
    fn a_pool_without_a_status_page_says_so() {
        let views =
            [PoolView { pool: "api".into(), target: None, status: Err("no pm_status_path".into()), rate: None }];
        let lines = render(&views, 80, SystemTime::UNIX_EPOCH);
        assert!(lines.iter().any(|l| l == "pool api: no pm_status_path"), "{lines:#?}");
    }

    #[test]
    fn figures_read_well() {
        assert_eq!(
            (elapsed(320_000), elapsed(1_500_000), elapsed(125_000_000)),
            ("320ms".into(), "1.5s".into(), "2m05s".into())
        );
        assert_eq!((bytes(512 * 1024), bytes(12_900_000)), ("512K".into(), "12.3M".into()));
        assert_eq!(tail("/var/www/app/index.php", 10), "…index.php");
    }

    #[test]
    fn the_json_status_page_is_read() {
        let page = r#"{"pool":"www","process manager":"static","accepted conn":5,"listen queue":1,
            "processes":[{"pid":42,"state":"Running","requests":3,"request duration":1200,
            "request method":"GET","request uri":"/slow.php?x=1","script":"/www/slow.php","last request memory":0}]}"#;
        let s: PoolStatus = serde_json::from_str(page).unwrap();
        assert_eq!((s.accepted, s.queue, s.processes[0].pid, s.processes[0].uri.as_str()), (5, 1, 42, "/slow.php?x=1"));
    }
}
