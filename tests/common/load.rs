//! Load for the fault, soak and stress tests: a small HTTP/1.1 client over a
//! std `TcpStream` (keep-alive, Content-Length and chunked bodies), client
//! threads that send a request mix until told to stop, a tally of every
//! answer, and readers of what the tests check afterwards (the pool's status
//! page, rustfpm's RSS and open descriptors).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `FAULTS_FULL=1` runs the full-size versions (scripts/faults.sh, scripts/soak.sh).
pub fn full() -> bool {
    std::env::var("FAULTS_FULL").is_ok_and(|v| v == "1")
}

/// `ci` in the test suite, `full` with `FAULTS_FULL=1`.
pub fn scale<T>(ci: T, full_size: T) -> T {
    if full() {
        full_size
    } else {
        ci
    }
}

/// Longest a request may take before the client calls it hung.
pub const HANG: Duration = Duration::from_secs(30);

/// One finished HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// An HTTP/1.1 client that keeps its connection to one port while the
/// server lets it.
pub struct HttpClient {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(port: u16, timeout: Duration) -> HttpClient {
        HttpClient { port, conn: None, timeout }
    }

    /// Sends one request (with `body` when it is not empty) and reads its
    /// answer. A kept connection that the server closed before answering a
    /// single byte is replaced once (nginx may close an idle keep-alive
    /// connection at any time).
    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Reply, String> {
        let reused = self.conn.is_some();
        match self.try_request(method, path, body) {
            Err(Failure::Silent(_)) if reused => {
                self.conn = None;
                self.try_request(method, path, body).map_err(|f| f.to_string())
            }
            other => other.map_err(|f| f.to_string()),
        }
    }

    fn try_request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Reply, Failure> {
        let result = self.exchange(method, path, body);
        if !matches!(result, Ok((_, true))) {
            self.conn = None;
        }
        result.map(|(reply, _)| reply)
    }

    /// The reply and whether the connection may be used again.
    fn exchange(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(Reply, bool), Failure> {
        let conn = self.connection()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = conn.get_mut();
        stream.write_all(head.as_bytes()).map_err(|e| Failure::Silent(format!("sending the head: {e}")))?;
        stream.write_all(body).map_err(|e| Failure::Silent(format!("sending the body: {e}")))?;
        let (status, length, chunked, close) = read_head(conn)?;
        let body = match (chunked, length) {
            (true, _) => read_chunked(conn)?,
            (false, Some(n)) => read_exact(conn, n)?,
            (false, None) => read_to_end(conn)?,
        };
        Ok((Reply { status, body }, !close && (chunked || length.is_some())))
    }

    fn connection(&mut self) -> Result<&mut BufReader<TcpStream>, Failure> {
        if self.conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))
                .map_err(|e| Failure::Broken(format!("connect to 127.0.0.1:{}: {e}", self.port)))?;
            s.set_read_timeout(Some(self.timeout)).map_err(|e| Failure::Broken(e.to_string()))?;
            s.set_write_timeout(Some(self.timeout)).map_err(|e| Failure::Broken(e.to_string()))?;
            self.conn = Some(BufReader::with_capacity(64 * 1024, s));
        }
        self.conn.as_mut().ok_or_else(|| Failure::Broken("no connection".into()))
    }
}

/// Why a request got no answer. `Silent`: the server closed or reset the
/// connection before answering a single byte.
enum Failure {
    Silent(String),
    Broken(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Silent(e) => write!(f, "no answer: {e}"),
            Failure::Broken(e) => write!(f, "{e}"),
        }
    }
}

fn broken(what: &str, e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut {
        Failure::Broken(format!("{what}: no answer within {HANG:?} (hung)"))
    } else {
        Failure::Broken(format!("{what}: {e}"))
    }
}

/// Status, Content-Length, chunked, `Connection: close`.
fn read_head(conn: &mut BufReader<TcpStream>) -> Result<(u16, Option<usize>, bool, bool), Failure> {
    let mut line = String::new();
    match conn.read_line(&mut line) {
        Ok(0) => return Err(Failure::Silent("connection closed before the status line".into())),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            return Err(Failure::Silent(format!("reading the status line: {e}")))
        }
        Err(e) => return Err(broken("reading the status line", e)),
        Ok(_) => {}
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::Broken(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        let n = conn.read_line(&mut line).map_err(|e| broken("reading the headers", e))?;
        if n == 0 {
            return Err(Failure::Broken("connection closed inside the headers".into()));
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok((status, length, chunked, close));
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(Failure::Broken(format!("bad header line {header:?}")));
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_ascii_lowercase());
        match name.as_str() {
            "content-length" => {
                length = Some(value.parse().map_err(|_| Failure::Broken(format!("bad Content-Length {value:?}")))?)
            }
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value.contains("close"),
            _ => {}
        }
    }
}

fn read_exact(conn: &mut BufReader<TcpStream>, n: usize) -> Result<Vec<u8>, Failure> {
    let mut body = vec![0; n];
    conn.read_exact(&mut body).map_err(|e| broken(&format!("reading a body of {n} bytes"), e))?;
    Ok(body)
}

fn read_to_end(conn: &mut BufReader<TcpStream>) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    conn.read_to_end(&mut body).map_err(|e| broken("reading a body up to the close", e))?;
    Ok(body)
}

fn read_chunked(conn: &mut BufReader<TcpStream>) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line).map_err(|e| broken("reading a chunk size", e))?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).map_err(|_| Failure::Broken(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers (none expected) up to the empty line.
            loop {
                line.clear();
                let n = conn.read_line(&mut line).map_err(|e| broken("reading the last chunk", e))?;
                if n == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        body.extend(read_exact(conn, size)?);
        line.clear();
        conn.read_line(&mut line).map_err(|e| broken("reading a chunk's end", e))?;
    }
}

/// A request of the mix, and what its answer must be.
#[derive(Clone, Debug)]
pub enum Req {
    /// `GET {prefix}/hello.php`: "Hello, world\n".
    Hello { prefix: &'static str },
    /// `GET {prefix}/pm_sleep.php?ms=MS`: a pid.
    Sleep { prefix: &'static str, ms: u32 },
    /// `POST {prefix}/http_input.php` with `bytes` bytes: their length and md5.
    Upload { prefix: &'static str, bytes: usize },
    /// `GET {prefix}/http_big.php?mb=MB`: MB MiB.
    Big { prefix: &'static str, mb: usize },
    /// `GET {path}` that must answer 200 with a body containing `expect`.
    Path { path: String, expect: String },
}

impl Req {
    /// Method, path and body.
    pub fn wire(&self) -> (&'static str, String, Vec<u8>) {
        match self {
            Req::Hello { prefix } => ("GET", format!("{prefix}/hello.php"), Vec::new()),
            Req::Sleep { prefix, ms } => ("GET", format!("{prefix}/pm_sleep.php?ms={ms}"), Vec::new()),
            Req::Upload { prefix, bytes } => ("POST", format!("{prefix}/http_input.php"), upload_body(*bytes)),
            Req::Big { prefix, mb } => ("GET", format!("{prefix}/http_big.php?mb={mb}"), Vec::new()),
            Req::Path { path, .. } => ("GET", path.clone(), Vec::new()),
        }
    }

    /// Whether `body` is the right answer to this request (its status was 200).
    pub fn check(&self, body: &[u8], sent: &[u8]) -> Result<(), String> {
        let text = || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        let ok = match self {
            Req::Hello { .. } => body == b"Hello, world\n",
            Req::Sleep { .. } => text().trim().parse::<i32>().is_ok(),
            Req::Upload { bytes, .. } => text() == format!("{bytes} {}", super::md5_hex(sent)),
            Req::Big { mb, .. } => {
                body.len() == mb << 20 && body.chunks(1 << 20).all(|c| c[1..16] == *b"123456789abcdef")
            }
            Req::Path { expect, .. } => String::from_utf8_lossy(body).contains(expect.as_str()),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("wrong body ({} bytes): {:?}", body.len(), text()))
        }
    }
}

/// A deterministic upload of `bytes` bytes.
pub fn upload_body(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| (i % 251) as u8).collect()
}

/// A request that did not get its right 200 answer.
#[derive(Debug, Clone)]
pub struct Odd {
    pub path: String,
    /// The answer's status, or None when there was no answer.
    pub status: Option<u16>,
    pub body_len: usize,
    /// The transport error, or what was wrong with a 200's body.
    pub what: String,
    /// When the request was sent, and how long it took.
    pub started: Instant,
    pub took: Duration,
}

/// What the clients of a [`Load`] saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Requests sent (answered or not).
    pub sent: u64,
    /// Answers by status.
    pub by_status: BTreeMap<u16, u64>,
    /// Every request that did not get its right 200 answer (the first 10,000).
    pub odd: Vec<Odd>,
    /// Requests that got no answer at all.
    pub unanswered: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.sent += other.sent;
        for (status, n) in other.by_status {
            *self.by_status.entry(status).or_default() += n;
        }
        self.unanswered += other.unanswered;
        let room = 10_000usize.saturating_sub(self.odd.len());
        self.odd.extend(other.odd.into_iter().take(room));
    }

    /// Answers with `status`.
    pub fn count(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    /// The first `n` odd requests, one a line, for failure messages.
    pub fn first_odd(&self, n: usize) -> String {
        self.odd.iter().take(n).map(|o| format!("{o:?}")).collect::<Vec<_>>().join("\n")
    }

    /// One line: sent, answers by status, unanswered.
    pub fn summary(&self) -> String {
        format!("{} requests, answers by status {:?}, {} unanswered", self.sent, self.by_status, self.unanswered)
    }
}

/// Client threads sending a request mix to one port until stopped (or until
/// `limit` requests have been sent in all).
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Tally>>,
}

/// Picks the `n`th request of client `client`.
pub type Mix = Arc<dyn Fn(usize, u64) -> Req + Send + Sync>;

impl Load {
    /// `clients` threads, each with its own keep-alive connection to `port`.
    pub fn start(port: u16, clients: usize, limit: Option<u64>, mix: Mix) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|client| {
                let (stop, sent, mix) = (stop.clone(), sent.clone(), mix.clone());
                std::thread::spawn(move || client_loop(port, client, limit, &stop, &sent, &*mix))
            })
            .collect();
        Load { stop, sent, threads }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until `n` requests have been sent in all; false if `timeout` passed.
    pub fn wait_sent(&self, n: u64, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.sent() >= n)
    }

    /// Stops the clients (each ends its request in flight) and returns what they saw.
    pub fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits for the clients to send their `limit` and returns what they saw.
    pub fn join(mut self) -> Tally {
        let mut all = Tally::default();
        for t in std::mem::take(&mut self.threads) {
            all.add(t.join().expect("a load client thread panicked"));
        }
        all
    }
}

impl Drop for Load {
    /// Clients left running by a failed test stop at their next request.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn client_loop(
    port: u16,
    client: usize,
    limit: Option<u64>,
    stop: &AtomicBool,
    sent: &AtomicU64,
    mix: &dyn Fn(usize, u64) -> Req,
) -> Tally {
    let mut http = HttpClient::new(port, HANG);
    let mut tally = Tally::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let seq = sent.fetch_add(1, Ordering::Relaxed);
        if limit.is_some_and(|l| seq >= l) {
            break;
        }
        let req = mix(client, n);
        n += 1;
        tally.sent += 1;
        let (method, path, body) = req.wire();
        let started = Instant::now();
        let odd = |status, body_len, what| Odd {
            path: path.clone(),
            status,
            body_len,
            what,
            started,
            took: started.elapsed(),
        };
        let bad = match http.request(method, &path, &body) {
            Ok(reply) => {
                *tally.by_status.entry(reply.status).or_default() += 1;
                let len = reply.body.len();
                match reply.status {
                    200 => req.check(&reply.body, &body).err().map(|e| odd(Some(200), len, e)),
                    s => Some(odd(Some(s), len, String::from_utf8_lossy(&reply.body[..len.min(200)]).into_owned())),
                }
            }
            Err(e) => {
                tally.unanswered += 1;
                Some(odd(None, 0, e))
            }
        };
        if let Some(o) = bad {
            if tally.odd.len() < 10_000 {
                tally.odd.push(o);
            }
        }
    }
    tally
}

/// A pool's status page (`PATH?json&full`) through nginx, parsed.
pub fn status_json(port: u16, path: &str) -> Result<serde_json::Value, String> {
    let mut http = HttpClient::new(port, HANG);
    let reply = http.request("GET", &format!("{path}?json&full"), &[])?;
    if reply.status != 200 {
        return Err(format!("status page {path}: HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body)));
    }
    serde_json::from_slice(&reply.body)
        .map_err(|e| format!("status page {path}: {e}: {}", String::from_utf8_lossy(&reply.body)))
}

/// A number field of the status page.
pub fn field(status: &serde_json::Value, key: &str) -> u64 {
    status[key].as_u64().unwrap_or_else(|| panic!("status page has no number {key:?}: {status}"))
}

/// A pool at rest: `children` processes, all listed and idle, none active,
/// nothing queued. (Callers compare `accepted conn` with what they sent; the
/// processes' `requests` are not summed here: a child replaced under a fault
/// takes its count with it.)
pub fn check_at_rest(status: &serde_json::Value, children: u64) -> Result<(), String> {
    let procs = status["processes"].as_array().ok_or_else(|| format!("no processes list: {status}"))?;
    let want =
        [("total processes", children), ("idle processes", children), ("active processes", 0), ("listen queue", 0)];
    for (key, value) in want {
        if status[key].as_u64() != Some(value) {
            return Err(format!("{key} is {} (want {value}): {status}", status[key]));
        }
    }
    if procs.len() as u64 != children {
        return Err(format!("{} processes listed (want {children}): {status}", procs.len()));
    }
    if let Some(p) = procs.iter().find(|p| p["state"] != "Idle") {
        return Err(format!("a process is not Idle: {p}"));
    }
    Ok(())
}

/// Waits until [`check_at_rest`] holds; the last status and error otherwise.
pub fn wait_at_rest(port: u16, path: &str, children: u64, timeout: Duration) -> Result<serde_json::Value, String> {
    let mut last = Err("never read".to_string());
    super::wait_until(timeout, || {
        last = status_json(port, path).and_then(|s| check_at_rest(&s, children).map(|()| s));
        last.is_ok()
    });
    last
}

/// The path of the status page the fault, soak and stress pools serve.
pub const STATUS: &str = "/status";

/// Hello world, half the clients through nginx keep-alive, every `sleep_every`th
/// request a short sleep (so that kills hit requests in flight).
pub fn hello_mix(sleep_every: u64) -> Mix {
    Arc::new(move |client, n| {
        let prefix = if client % 2 == 0 { "" } else { "/ka" };
        if sleep_every > 0 && n % sleep_every == 0 {
            Req::Sleep { prefix, ms: 20 }
        } else {
            Req::Hello { prefix }
        }
    })
}

/// Waits (15 s) until the pool of `fpm` behind nginx on `port` is at rest
/// ([`check_at_rest`]) and each slot shows a different live child; returns
/// its status.
pub fn pool_at_rest(fpm: &super::Rustfpm, port: u16, children: u64, what: &str) -> serde_json::Value {
    let mut last = Err(String::new());
    super::wait_until(Duration::from_secs(15), || {
        last =
            wait_at_rest(port, STATUS, children, Duration::ZERO).and_then(|s| slots_are_children(&s, fpm).map(|()| s));
        last.is_ok()
    });
    last.unwrap_or_else(|e| panic!("{what}: the pool is not at rest 15 s later: {e}"))
}

/// The status page's pids are the live children of `fpm`, each once.
pub fn slots_are_children(status: &serde_json::Value, fpm: &super::Rustfpm) -> Result<(), String> {
    let mut shown: Vec<i64> =
        status["processes"].as_array().into_iter().flatten().filter_map(|p| p["pid"].as_i64()).collect();
    let mut live: Vec<i64> = fpm.php_children().into_iter().map(i64::from).collect();
    shown.sort_unstable();
    live.sort_unstable();
    if shown != live {
        return Err(format!("the status page shows pids {shown:?}, the pool's live children are {live:?}: {status}"));
    }
    Ok(())
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}: {text}"))
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// Sends `sig` to `pid`.
pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a process the test started (or one of its php-cgi).
    unsafe { libc::kill(pid, sig) };
}

/// A small xorshift generator: the tests' randomness, seeded and repeatable.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `FAULTS_SEED` or the clock; the seed is printed so a run can be repeated.
    pub fn from_env(what: &str) -> Rng {
        let seed = std::env::var("FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        eprintln!("{what}: FAULTS_SEED={seed}");
        Rng(seed | 1)
    }

    /// A generator that repeats the numbers of `seed`.
    pub fn from_seed(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
