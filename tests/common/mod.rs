//! Integration-test harness: the real rustfpm binary, real php-cgi and a real
//! nginx, on free ports in a private temp dir; everything is killed and reaped
//! when the guard drops.
#![allow(dead_code)]

pub mod fcgi;
pub mod load;
pub mod php_fpm;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// PHP scripts shipped with the tests (tests/php), copied into each docroot.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/php");

/// True when the tests run as root (CI): pools then run as www-data.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Fails the test unless it runs as root: scripts/test.sh runs the suite as
/// root, so a test that needs root must not pass by doing nothing.
pub fn require_root(why: &str) {
    assert!(is_root(), "this test needs root ({why}); run the suite as root, as scripts/test.sh does");
}

/// Fails the test unless `path` exists (a file a Debian package installs;
/// scripts/test.sh installs the packages).
pub fn require_file(path: &str, package: &str) {
    assert!(Path::new(path).exists(), "{path} is missing: install {package} (scripts/test.sh does)");
}

/// The user test pools run as: www-data when the tests run as root, none
/// (the test's own user) otherwise.
pub fn pool_user() -> Option<&'static str> {
    is_root().then_some("www-data")
}

/// The TOML `user` line of a test pool run as [`pool_user`].
pub fn user_line() -> String {
    pool_user().map(|u| format!("user = \"{u}\"\n")).unwrap_or_default()
}

/// The php-fpm (ini) `user` line of a test pool run as [`pool_user`].
pub fn ini_user_line() -> String {
    pool_user().map(|u| format!("user = {u}\n")).unwrap_or_default()
}

/// A free TCP port on 127.0.0.1, below the kernel's ephemeral range: a port the kernel
/// picks (bind to 0) is one it may hand to another test's outgoing connection before our
/// server binds it (EADDRINUSE: a CI run failed so, the suite's clients open thousands).
/// Calls in one test binary take successive ports from a start that differs per process,
/// skipping ports in use.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let count = ephemeral.saturating_sub(FIRST);
    if count < 1_000 {
        return TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    }
    let start = std::process::id().wrapping_mul(7_919) % count;
    for _ in 0..count {
        let port = FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % count;
        let port = u16::try_from(port).expect("below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{ephemeral}");
}

/// How long [`Rustfpm::wait_log`] waits for a line: far more than any line takes, even on a
/// loaded machine.
pub const LOG_WAIT: Duration = Duration::from_secs(10);

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A temp dir readable by the pool user, with the PHP fixtures in `www/`.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::Builder::new().prefix("rustfpm-test-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir(&www).unwrap();
        for entry in std::fs::read_dir(FIXTURES).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), www.join(entry.file_name())).unwrap();
        }
        // Writable scratch space for scripts (pid files, markers, sessions).
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o1777)).unwrap();
        Site { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    pub fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    /// Writes `text` as the site's `rustfpm.toml`; returns its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path().join("rustfpm.toml");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Lets the requests of `lc_gate.php?name=NAME` end (they wait for scratch/NAME.go).
    pub fn open_gate(&self, name: &str) {
        let go = self.scratch().join(format!("{name}.go"));
        std::fs::write(&go, "").unwrap_or_else(|e| panic!("write {}: {e}", go.display()));
    }

    /// Adds a PHP script to the docroot.
    pub fn script(&self, name: &str, body: &str) {
        std::fs::write(self.www().join(name), body).unwrap();
    }
}

/// A running rustfpm. Killed (TERM, then KILL) and reaped on drop.
pub struct Rustfpm {
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The pid it was started with (kept after it exits, for the cleanup).
    started_pid: u32,
}

/// How a test pool manages its children: `pm` and the numbers that go with it
/// (`pm_max_children` is [`PoolOptions::children`]).
#[derive(Clone, Debug)]
pub enum Pm {
    /// `pm = "static"`: all children all the time.
    Static,
    /// `pm = "dynamic"`: `start` children at first, between `min_spare` and
    /// `max_spare` idle ones later.
    Dynamic { start: usize, min_spare: usize, max_spare: usize },
    /// `pm = "ondemand"`: children start for requests and end after
    /// `idle_timeout` (a duration such as `"1s"`) idle.
    Ondemand { idle_timeout: &'static str },
}

/// A test config: `[global]` and the pool `www` (plus any `tables`).
#[derive(Clone)]
pub struct PoolOptions {
    /// `pm_max_children`.
    pub children: usize,
    /// `pm` and its numbers.
    pub pm: Pm,
    /// The pool's `user` (default: [`pool_user`]).
    pub user: Option<&'static str>,
    /// Extra lines appended inside `[pool.www]`.
    pub extra: String,
    /// Extra TOML appended after the pool (e.g. `[pool.www.env]` tables, other pools).
    pub tables: String,
    /// Listen on TCP 127.0.0.1:PORT instead of a unix socket.
    pub tcp_port: Option<u16>,
    /// `[global]`'s `error_log` (default `stderr`; None writes no line).
    pub error_log: Option<String>,
    /// `[global]`'s `log_level` (default `debug`).
    pub log_level: &'static str,
    /// Extra lines inside `[global]`.
    pub global: String,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            children: 4,
            pm: Pm::Static,
            user: pool_user(),
            extra: String::new(),
            tables: String::new(),
            tcp_port: None,
            error_log: Some("stderr".into()),
            log_level: "debug",
            global: String::new(),
        }
    }
}

impl PoolOptions {
    /// The whole config: `[global]`, then `[pool.www]` listening on `listen`,
    /// then [`PoolOptions::tables`].
    pub fn config_text(&self, listen: impl std::fmt::Display) -> String {
        format!("{}\n{}\n{}\n", self.global_table(), self.pool_table("www", listen), self.tables)
    }

    /// The `[global]` table of these options.
    pub fn global_table(&self) -> String {
        let error_log = self.error_log.as_ref().map(|e| format!("error_log = \"{e}\"\n")).unwrap_or_default();
        format!("[global]\n{error_log}log_level = \"{}\"\n{}\n", self.log_level, self.global)
    }

    /// The `[pool.NAME]` table of these options (without [`PoolOptions::tables`]):
    /// for a config with several pools.
    pub fn pool_table(&self, name: &str, listen: impl std::fmt::Display) -> String {
        let pm = match &self.pm {
            Pm::Static => "pm = \"static\"\n".to_string(),
            Pm::Dynamic { start, min_spare, max_spare } => format!(
                "pm = \"dynamic\"\npm_start_servers = {start}\npm_min_spare_servers = {min_spare}\n\
                 pm_max_spare_servers = {max_spare}\n"
            ),
            Pm::Ondemand { idle_timeout } => {
                format!("pm = \"ondemand\"\npm_process_idle_timeout = \"{idle_timeout}\"\n")
            }
        };
        let user = self.user.map(|u| format!("user = \"{u}\"\n")).unwrap_or_default();
        format!("[pool.{name}]\nlisten = \"{listen}\"\n{pm}pm_max_children = {}\n{user}{}\n", self.children, self.extra)
    }
}

impl Rustfpm {
    /// Writes a config for `site` and starts rustfpm; waits until it listens.
    pub fn start(site: &Site, opts: &PoolOptions) -> Rustfpm {
        let (config, socket) = Self::write_config(site, opts);
        Self::start_with_config(site, &config, socket)
    }

    /// Writes the config of [`Rustfpm::start`] for `site`; returns its path
    /// and the pool's unix socket (None for a TCP pool).
    pub fn write_config(site: &Site, opts: &PoolOptions) -> (PathBuf, Option<PathBuf>) {
        let socket = site.path().join("rustfpm.sock");
        let listen = match opts.tcp_port {
            Some(port) => format!("127.0.0.1:{port}"),
            None => socket.display().to_string(),
        };
        let config = site.write_config(&opts.config_text(&listen));
        (config, opts.tcp_port.is_none().then_some(socket))
    }

    /// Starts rustfpm on an existing config file.
    pub fn start_with_config(site: &Site, config: &Path, socket: Option<PathBuf>) -> Rustfpm {
        Self::start_command(site, config, socket, |_| {})
    }

    /// [`Rustfpm::start_with_config`] in a process group of its own (whose id is its pid),
    /// as supervisord starts a program.
    pub fn start_in_own_group(site: &Site, config: &Path, socket: Option<PathBuf>) -> Rustfpm {
        Self::start_command(site, config, socket, |command| {
            command.process_group(0);
        })
    }

    /// [`Rustfpm::start_with_config`], with `setup` applied to the command
    /// first (limits, environment, process group).
    pub fn start_command(
        site: &Site,
        config: &Path,
        socket: Option<PathBuf>,
        setup: impl FnOnce(&mut Command),
    ) -> Rustfpm {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rustfpm"));
        setup(&mut command);
        command.arg("--config").arg(config).env("RUSTFPM_TEST_SECRET", "must-not-leak");
        let fpm = Self::spawn(site, command, config, &socket.unwrap_or_default());
        fpm.wait_ready();
        fpm
    }

    /// Runs rustfpm with `args` (which name `config`, and make it listen on
    /// `socket`) and waits until it is ready.
    pub fn start_args(site: &Site, args: &[&str], config: &Path, socket: &Path) -> Rustfpm {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rustfpm"));
        command.args(args);
        let fpm = Self::spawn(site, command, config, socket);
        fpm.wait_ready();
        fpm
    }

    /// Waits until rustfpm logs that it is ready; fails the test with its log if not.
    pub fn wait_ready(&self) {
        // 30 s: a rustfpm started under SCHED_IDLE beside busy processes waits up to 5 s for
        // `php-cgi -i` and gets the CPU only when no one else wants it.
        let ready = wait_until(Duration::from_secs(30), || self.log_text().contains("ready to handle connections"));
        assert!(ready, "rustfpm did not become ready:\n{}", self.log_text());
    }

    /// Runs `cmd` (rustfpm, or a wrapper that execs it, such as `setpriv` or
    /// `systemd-socket-activate`) with its stderr in `rustfpm.log`; does not wait.
    pub fn spawn(site: &Site, mut cmd: Command, config: &Path, socket: &Path) -> Rustfpm {
        let log = site.path().join("rustfpm.log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
        let started_pid = child.id();
        Rustfpm { child: Some(child), socket: socket.into(), config: config.into(), log, started_pid }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to [`LOG_WAIT`]) until rustfpm's log satisfies `done`, and returns it. A
    /// line that a pool actor, the supervisor or a child's output reader writes may come
    /// after the answer of the request that caused it: read it so, not once. Fails the
    /// test, naming `what`, if the log never does.
    pub fn wait_log(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let mut log = String::new();
        let found = wait_until(LOG_WAIT, || {
            log = self.log_text();
            done(&log)
        });
        assert!(found, "{what}: not in rustfpm's log within {LOG_WAIT:?}:\n{log}");
        log
    }

    /// [`Rustfpm::wait_log`] for a line that contains `needle`.
    pub fn wait_logged(&self, needle: &str) -> String {
        self.wait_log(needle, |log| log.contains(needle))
    }

    /// Sends a signal to rustfpm.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for rustfpm to exit; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pids of the live php-cgi processes under rustfpm (parent and children).
    pub fn php_pids(&self) -> Vec<i32> {
        descendants(self.pid()).into_iter().filter(|p| is_live_php(*p)).collect()
    }

    /// The php-cgi parents under rustfpm (php-cgi processes whose parent is not php-cgi).
    pub fn php_parents(&self) -> Vec<i32> {
        let pids = self.php_pids();
        pids.iter().copied().filter(|p| matches!(proc_stat(*p), Some((_, _, ppid)) if !pids.contains(&ppid))).collect()
    }

    /// The single php-cgi parent of a one-pool rustfpm (None while there is
    /// none, or more than one during a reload).
    pub fn php_parent(&self) -> Option<i32> {
        let parents = self.php_parents();
        (parents.len() == 1).then(|| parents[0])
    }

    /// The php-cgi parent and its `children` (sorted), once php-cgi has forked them all
    /// (they start after rustfpm says it is ready): a list taken before would leave the
    /// late ones out of what a test checks. Fails the test if they do not come within 10 s.
    pub fn php_pids_once_started(&self, children: usize) -> Vec<i32> {
        let mut pids = Vec::new();
        let started = wait_until(Duration::from_secs(10), || {
            pids = self.php_pids();
            pids.len() == children + 1
        });
        assert!(started, "php-cgi did not start {children} children: {pids:?}");
        pids.sort_unstable();
        pids
    }

    /// The php-cgi children under rustfpm (php-cgi processes whose parent is php-cgi).
    pub fn php_children(&self) -> Vec<i32> {
        let pids = self.php_pids();
        pids.iter().copied().filter(|p| matches!(proc_stat(*p), Some((_, _, ppid)) if pids.contains(&ppid))).collect()
    }
}

impl Drop for Rustfpm {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                self.signal(libc::SIGKILL);
                let _ = self.wait_exit(Duration::from_secs(5));
            }
        }
        // A rustfpm a test killed with SIGKILL could not remove its private
        // runtime dirs (`rustfpm-PID-...`); one that stopped has removed them
        // (tests/lifecycle.rs checks that), so this removes nothing then.
        let prefix = format!("rustfpm-{}-", self.started_pid);
        for base in [PathBuf::from("/run/rustfpm"), std::env::temp_dir()] {
            for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        if std::thread::panicking() {
            eprintln!("---- rustfpm log ----\n{}", self.log_text());
        }
    }
}

/// All descendants of `pid` (children, grandchildren, ...).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                for c in text.split_whitespace().filter_map(|s| s.parse::<i32>().ok()) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// (comm, state, ppid) of a process, from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(String, char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, state, ppid))
}

/// The live php-cgi children of the php-cgi parent `parent`.
pub fn php_children_of(parent: i32) -> Vec<i32> {
    descendants(parent).into_iter().filter(|p| is_live_php(*p)).collect()
}

/// True if `pid` is a php-cgi process that is alive (not a zombie).
pub fn is_live_php(pid: i32) -> bool {
    matches!(proc_stat(pid), Some((comm, state, _)) if comm.starts_with("php-cgi") && state != 'Z' && state != 'X')
}

/// A running nginx in front of rustfpm. Its whole process group is killed on drop.
pub struct Nginx {
    pub child: Child,
    pub port: u16,
    /// Its error log, shown when a test fails (a request nginx reset says why there).
    pub error_log: PathBuf,
}

impl Nginx {
    /// nginx on a free port; `/` serves `site`'s docroot through rustfpm
    /// (without keepalive); `/ka/...` does the same with `fastcgi_keep_conn on`.
    pub fn start(site: &Site, fpm: &Rustfpm) -> Nginx {
        let upstream = if fpm.socket.as_os_str().is_empty() {
            let text = std::fs::read_to_string(&fpm.config).unwrap();
            let listen = text.lines().find(|l| l.starts_with("listen = ")).unwrap();
            listen.trim_start_matches("listen = ").trim_matches('"').to_string()
        } else {
            format!("unix:{}", fpm.socket.display())
        };
        Self::start_upstream(site, &upstream)
    }

    /// nginx in front of any FastCGI address (`unix:/path` or `host:port`).
    pub fn start_upstream(site: &Site, upstream: &str) -> Nginx {
        let locations = format!(
            r#"
  upstream php_ka {{ server {upstream}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{{port}};
    root {www};
    location ^~ /ka/ {{
      rewrite ^/ka(/.*)$ $1 break;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_param PATH_INFO $fastcgi_path_info;
      fastcgi_keep_conn on;
      fastcgi_pass php_ka;
    }}
    location / {{
      fastcgi_split_path_info ^(.+?\.[a-z]+)(/.*)$;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_param PATH_INFO $fastcgi_path_info;
      fastcgi_pass {upstream};
    }}
  }}
"#,
            www = site.www().display(),
        );
        Self::start_http(site, &locations)
    }

    /// nginx with `http_body` (upstreams and one server, whose `listen`
    /// is written `{port}`) inside the harness's usual `http` block.
    pub fn start_http(site: &Site, http_body: &str) -> Nginx {
        let port = free_port();
        let dir = site.path();
        let user = pool_user().map(|u| format!("user {u};")).unwrap_or_default();
        let conf = format!(
            r#"{user}
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/nginx-body;
  fastcgi_temp_path {d}/nginx-fastcgi;
  proxy_temp_path {d}/nginx-proxy;
  uwsgi_temp_path {d}/nginx-uwsgi;
  scgi_temp_path {d}/nginx-scgi;
  client_max_body_size 0;
  fastcgi_read_timeout 60s;
{body}
}}
"#,
            d = dir.display(),
            body = http_body.replace("{port}", &port.to_string()),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        require_file("/usr/sbin/nginx", "nginx");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start nginx: {e}"));
        let nginx = Nginx { child, port, error_log: dir.join("nginx-error.log") };
        let up = wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(
            up,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
        );
        nginx
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group we created for nginx.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.error_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("---- nginx error log (port {}), last lines ----\n{}", self.port, tail.join("\n"));
        }
    }
}

/// rustfpm + nginx + a site: the usual test setup.
pub struct Stack {
    pub nginx: Nginx,
    pub fpm: Rustfpm,
    pub site: Site,
}

impl Stack {
    pub fn start() -> Stack {
        Self::with(PoolOptions::default())
    }

    pub fn with(opts: PoolOptions) -> Stack {
        let site = Site::new();
        let fpm = Rustfpm::start(&site, &opts);
        let nginx = Nginx::start(&site, &fpm);
        Stack { nginx, fpm, site }
    }

    pub fn url(&self, path: &str) -> String {
        self.nginx.url(path)
    }
}

/// A finished HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).redirects(0).build()
}

fn read_response(result: Result<ureq::Response, ureq::Error>) -> Result<Response, String> {
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let mut names = resp.headers_names();
    names.sort();
    names.dedup();
    let headers = names.iter().flat_map(|n| resp.all(n).into_iter().map(move |v| (n.clone(), v.to_string()))).collect();
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).map_err(|e| format!("reading body: {e}"))?;
    Ok(Response { status, headers, body })
}

fn finish(result: Result<ureq::Response, ureq::Error>) -> Response {
    read_response(result).unwrap_or_else(|e| panic!("HTTP request failed: {e}"))
}

/// GET that reports transport errors instead of panicking.
pub fn try_get(url: &str) -> Result<Response, String> {
    read_response(agent().get(url).call())
}

/// [`try_get`] on its own thread.
pub fn get_in_thread(url: String) -> std::thread::JoinHandle<Result<Response, String>> {
    std::thread::spawn(move || try_get(&url))
}

/// Waits for a (non-empty) file and returns its contents.
pub fn wait_file(path: &Path, timeout: Duration) -> Option<String> {
    let mut text = None;
    wait_until(timeout, || {
        text = std::fs::read_to_string(path).ok().filter(|t| !t.is_empty());
        text.is_some()
    });
    text
}

/// GET `url`.
pub fn get(url: &str) -> Response {
    finish(agent().get(url).call())
}

/// GET `url`, which must answer 200 with JSON (a status page's `?json`); decoded.
pub fn get_json(url: &str) -> serde_json::Value {
    let r = get(url);
    assert_eq!(r.status, 200, "GET {url}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {}", r.text()))
}

/// GET with extra request headers.
pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    finish(req.call())
}

/// POST `body` with `content_type`.
pub fn post(url: &str, content_type: &str, body: &[u8]) -> Response {
    finish(agent().post(url).set("Content-Type", content_type).send_bytes(body))
}

/// Sends a raw HTTP/1.0 request and returns each chunk of bytes as it arrived,
/// with its arrival time (to see streaming).
pub fn raw_chunks(port: u16, path: &str) -> Vec<(Instant, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.push((Instant::now(), buf[..n].to_vec())),
        }
    }
}

/// Hex md5 of bytes.
pub fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", md5::compute(bytes))
}
