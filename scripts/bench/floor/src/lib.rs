//! What the relays share: the few lines of a rustfpm config they read, php-cgi's start,
//! the scheduling policy, accepting, finding where a FastCGI request and an answer end, and
//! the tokio relays' loop.
//!
//! A relay is started as bench.sh starts rustfpm (`RELAY -t --config FILE`, `RELAY --config
//! FILE`), reads that file with rustfpm's own config loader, and takes from its first pool
//! `listen` (a unix socket), `pm_max_children`, `php_cgi` and `php_ini`, and `error_log`. It
//! starts one php-cgi parent with that many children on a private socket (as rustfpm does),
//! keeps one connection to each child (FCGI_KEEP_CONN), and passes each request nginx sends
//! to a free child as it came, the answer back as it came. Nothing else: no params read, no
//! timeouts, no status, no logs. That is the floor: what a relay costs with nothing done.
//! Two knobs add work for experiments: `RELAY_SPIN_NS` ([`spin`]) and `RELAY_TIMERS`
//! ([`timers`]).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use rustfpm::config::{ListenAddr, LogTarget, Source};
use rustfpm::fastcgi::{parse_record, RecordType, FCGI_KEEP_CONN};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};

/// Offset of BEGIN_REQUEST's flags in a request that starts with it (after the 8-byte
/// header and the 2-byte role).
const FLAGS_AT: usize = 10;

/// The settings a relay takes from bench.sh's rustfpm config.
pub struct Settings {
    pub listen: PathBuf,
    pub children: usize,
    pub php_cgi: PathBuf,
    pub php_ini: Option<PathBuf>,
    /// Where "ready to handle connections" goes once the relay is (scripts/bench/callgrind.sh
    /// waits for rustfpm's line).
    pub error_log: Option<PathBuf>,
}

/// Reads the command line (`[-t] --config FILE`); exits 0 after `-t` once the file is read.
pub fn settings() -> Settings {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = args.iter().any(|a| a == "-t");
    let path = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| fail("usage: RELAY [-t] --config FILE"));
    let (config, _) = Source::toml(path.into()).load().unwrap_or_else(|e| fail(&e.to_string()));
    let pool = config.pools.first().unwrap_or_else(|| fail(&format!("{path}: no pool")));
    let ListenAddr::Unix(listen) = &pool.listen else { fail(&format!("{path}: listen is not a unix socket")) };
    let settings = Settings {
        listen: listen.clone(),
        children: pool.pm_max_children,
        php_cgi: pool.php_cgi.clone(),
        php_ini: pool.php_ini.clone(),
        error_log: match &config.global.error_log {
            LogTarget::File(path) => Some(path.clone()),
            LogTarget::Stderr | LogTarget::Syslog => None,
        },
    };
    if test {
        std::process::exit(0);
    }
    settings
}

/// php-cgi's process group (its parent's pid), once started.
static PHP_GROUP: AtomicI32 = AtomicI32::new(0);

/// Says the relay is ready, as rustfpm does, in `error_log` if set.
pub fn ready(s: &Settings) {
    let line = "relay: ready to handle connections\n";
    match &s.error_log {
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
            std::io::Write::write_all(&mut f, line.as_bytes())
                .unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
        }
        None => eprint!("{line}"),
    }
}

/// Prints the message, kills php-cgi's parent and children, and exits 1.
pub fn fail(message: &str) -> ! {
    eprintln!("relay: {message}");
    let group = PHP_GROUP.load(Ordering::Relaxed);
    if group > 0 {
        // SAFETY: a signal to the process group of our own child (its session's leader).
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
    std::process::exit(1)
}

/// Puts this process, and the children it starts, under SCHED_BATCH, as rustfpm's default.
pub fn sched_batch() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain system call on this process with a valid parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        fail(&format!("sched_setscheduler: {}", io::Error::last_os_error()));
    }
}

/// The php-cgi parent and its children's socket, killed when the relay ends.
pub struct Php {
    parent: Child,
    dir: PathBuf,
}

impl Php {
    /// Starts php-cgi with `children` children on a socket beside `listen`, and returns it
    /// with one connection to each child (each connection is accepted by a child of its own,
    /// which then serves it alone, as rustfpm's workers are).
    pub fn start(s: &Settings) -> (Php, Vec<UnixStream>) {
        let dir = s.listen.with_extension("children");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
        let sock = dir.join("php.sock");
        let mut cmd = Command::new(&s.php_cgi);
        if let Some(ini) = &s.php_ini {
            cmd.arg("-c").arg(ini);
        }
        cmd.arg("-b").arg(&sock);
        cmd.env("PHP_FCGI_CHILDREN", s.children.to_string()).env("PHP_FCGI_MAX_REQUESTS", "0");
        // A session of its own (php-cgi's parent signals its whole process group when it
        // ends), and killed if the relay is.
        // SAFETY: setsid and prctl only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let parent = cmd.spawn().unwrap_or_else(|e| fail(&format!("{}: {e}", s.php_cgi.display())));
        PHP_GROUP.store(parent.id() as i32, Ordering::Relaxed);
        let php = Php { parent, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        let conns = (0..s.children)
            .map(|_| loop {
                match UnixStream::connect(&sock) {
                    Ok(c) => break c,
                    Err(e) if Instant::now() > deadline => fail(&format!("{}: {e}", sock.display())),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            })
            .collect();
        (php, conns)
    }
}

impl Drop for Php {
    fn drop(&mut self) {
        // php-cgi's parent ends its children on SIGTERM.
        // SAFETY: a signal to our own child, not yet reaped.
        unsafe { libc::kill(self.parent.id() as i32, libc::SIGTERM) };
        let _ = self.parent.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Binds the socket nginx connects to, open to every user (nginx runs as www-data).
pub fn bind(path: &std::path::Path) -> UnixListener {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
    open_to_all(path);
    listener
}

/// Lets every user connect to the socket at `path`.
pub fn open_to_all(path: &std::path::Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
}

/// Scans whole records of `buf` from `*at` (the start of a record) and returns where the
/// record of type `last` with `empty` content ends, if it is in `buf`; `*at` moves past
/// the whole records seen. A record rustfpm's parser refuses ends the relay.
fn scan(buf: &[u8], at: &mut usize, last: RecordType, empty: bool) -> Option<usize> {
    loop {
        let (record, len) = parse_record(&buf[*at..]).unwrap_or_else(|e| fail(&e.to_string()))?;
        *at += len;
        if record.header.kind() == Some(last) && (!empty || record.content.is_empty()) {
            return Some(*at);
        }
    }
}

/// Where nginx's request ends: past its empty STDIN record.
pub fn request_end(buf: &[u8], at: &mut usize) -> Option<usize> {
    scan(buf, at, RecordType::Stdin, true)
}

/// Where a child's answer ends: past its END_REQUEST record.
pub fn answer_end(buf: &[u8], at: &mut usize) -> Option<usize> {
    scan(buf, at, RecordType::EndRequest, false)
}

/// A relay's start: its settings read, itself under SCHED_BATCH, php-cgi started (with a
/// connection to each child) and nginx's socket bound.
pub fn start() -> (Settings, Php, Vec<UnixStream>, UnixListener) {
    let settings = settings();
    sched_batch();
    let (php, conns) = Php::start(&settings);
    let listener = bind(&settings.listen);
    (settings, php, conns, listener)
}

/// `listener`, non-blocking and registered with the current tokio runtime for [`accept`]
/// (std's accept: nothing registered per connection by tokio).
pub fn register_listener(listener: UnixListener) -> AsyncFd<UnixListener> {
    listener.set_nonblocking(true).unwrap_or_else(|e| fail(&e.to_string()));
    // SAFETY: the AsyncFd owns the listener, whose descriptor stays open while registered.
    unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }.unwrap_or_else(|e| fail(&e.to_string()))
}

/// The next connection nginx makes (a failed accept is reported and the wait goes on).
async fn accept(listener: &AsyncFd<UnixListener>) -> UnixStream {
    loop {
        let mut ready = listener.readable().await.unwrap_or_else(|e| fail(&e.to_string()));
        match listener.get_ref().accept() {
            Ok((nginx, _)) => return nginx,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
            Err(e) => eprintln!("relay: accept: {e}"),
        }
    }
}

/// The children's connections that are free, in the order they came back, and a permit for
/// each: a request takes the one free longest, or waits its turn (the semaphore is FIFO).
pub struct Children<S> {
    free: std::cell::RefCell<std::collections::VecDeque<S>>,
    permits: tokio::sync::Semaphore,
}

impl<S> Children<S> {
    pub fn new(free: impl IntoIterator<Item = S>) -> Children<S> {
        let free: std::collections::VecDeque<S> = free.into_iter().collect();
        Children { permits: tokio::sync::Semaphore::new(free.len()), free: std::cell::RefCell::new(free) }
    }

    /// The child free longest, once one is.
    pub async fn take(&self) -> S {
        self.permits.acquire().await.expect("never closed").forget();
        self.free.borrow_mut().pop_front().expect("a permit per free child")
    }

    /// A child back, for the request that waited longest.
    pub fn give_back(&self, child: S) {
        self.free.borrow_mut().push_back(child);
        self.permits.add_permits(1);
    }
}

/// Resolves at SIGTERM or SIGINT (callgrind.sh's), which end the relay as they end rustfpm.
pub async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind| signal(kind).unwrap_or_else(|e| fail(&e.to_string()));
    let (mut term, mut int) = (listen(SignalKind::terminate()), listen(SignalKind::interrupt()));
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Whether nginx asked to keep the connection; the request then asks the child to keep its.
pub fn keep_conn(request: &mut [u8]) -> bool {
    let keep = request[FLAGS_AT] & FCGI_KEEP_CONN != 0;
    request[FLAGS_AT] |= FCGI_KEEP_CONN;
    keep
}

/// Spins `RELAY_SPIN_NS` nanoseconds (unset: none), once per request: a relay made to spend
/// what rustfpm spends beyond it, to see what that much CPU per request does to latency.
pub fn spin() {
    static SPIN: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    let spin = *SPIN.get_or_init(|| {
        let ns = std::env::var("RELAY_SPIN_NS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        Duration::from_nanos(ns)
    });
    if !spin.is_zero() {
        let start = Instant::now();
        while start.elapsed() < spin {
            std::hint::spin_loop();
        }
    }
}

/// Whether `RELAY_TIMERS` is set: each read of the tokio relays then runs under a tokio
/// timeout (300 s), the child's as well as nginx's (rustfpm, before its alarm, timed only
/// nginx's), and the runtime has tokio's time driver, as rustfpm's has. What a timer per
/// read and the driver cost.
pub fn timers() -> bool {
    static TIMERS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TIMERS.get_or_init(|| std::env::var_os("RELAY_TIMERS").is_some_and(|v| !v.is_empty()))
}

/// A current-thread runtime, with tokio's time driver under `RELAY_TIMERS`.
pub fn runtime() -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_io();
    if timers() {
        builder.enable_time();
    }
    builder.build().unwrap_or_else(|e| fail(&e.to_string()))
}

/// `read`, under a 300 s timeout when `RELAY_TIMERS` is set (a timeout fails the read).
async fn timed(read: impl std::future::Future<Output = io::Result<usize>>) -> io::Result<usize> {
    if !timers() {
        return read.await;
    }
    tokio::time::timeout(Duration::from_secs(300), read).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Says the relay is ready, then gives each connection nginx makes ([`accept`]) to `each`,
/// until SIGTERM or SIGINT.
pub async fn accept_until_stopped(
    settings: &Settings,
    listener: &AsyncFd<UnixListener>,
    mut each: impl FnMut(UnixStream),
) {
    ready(settings);
    let stopped = stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            nginx = accept(listener) => each(nginx),
            () = &mut stopped => return,
        }
    }
}

/// Relays the requests of one nginx connection, one at a time, until nginx closes it or
/// fails (a child that fails ends the relay): the tokio relays' loop (relay-epoll's
/// streams and relay-epoll-ro's sockets).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut nginx: S, children: &Children<S>) {
    let child_failed = |e: io::Error| -> ! { fail(&format!("a child's connection: {e}")) };
    let mut request = Vec::with_capacity(4096);
    let mut answer = Vec::with_capacity(4096);
    loop {
        request.clear();
        let mut at = 0;
        let end = loop {
            if !matches!(timed(nginx.read_buf(&mut request)).await, Ok(1..)) {
                return; // nginx closed or failed (between requests, or gave up on one)
            }
            if let Some(end) = request_end(&request, &mut at) {
                break end;
            }
            request.reserve(4096);
        };
        spin();
        let keep = keep_conn(&mut request);
        let mut child = children.take().await;
        child.write_all(&request[..end]).await.unwrap_or_else(|e| child_failed(e));
        answer.clear();
        let mut at = 0;
        loop {
            match timed(child.read_buf(&mut answer)).await {
                Ok(0) => child_failed(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) => child_failed(e),
            }
            if answer_end(&answer, &mut at).is_some() {
                break;
            }
            answer.reserve(4096);
        }
        children.give_back(child);
        if nginx.write_all(&answer).await.is_err() || !keep {
            return;
        }
    }
}
