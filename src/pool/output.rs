//! The children's stdout and stderr in rustfpm's log, line for line as php-fpm logs its
//! workers' output (`catch_workers_output`; php-src `fpm_stdio.c`, `zlog_stream`).
//!
//! Each line is `[time] WARNING: [pool P] child N said into stderr: "text"` (or the text alone
//! with `decorate_workers_output = no`). A line longer than `log_limit` is wrapped: every piece
//! but the last fills the limit exactly (newline included), each quoted on its own. Output
//! without a newline waits for the rest of its line, and is flushed when the request ends (a
//! php-fpm child writes its flush marker `\0fscf\0` after every request; php-cgi does not, so
//! the proxy says when). A child's own `\0fscf\0` ends the line too and is not printed. A line
//! cut short by the end of the pipe ends in `, pipe is closed`.
//!
//! php-fpm's children also copy every PHP message (`error_log()`, warnings) to their stderr as
//! `NOTICE: PHP message: ...`; php-cgi sends them on FCGI_STDERR only, so the proxy hands them
//! here and they are logged as that line of the child's stderr, at once.
//!
//! All of a pool's children share one pipe per stream (they are forked by one php-cgi parent),
//! so which child wrote a line cannot be known: `child N` names the php-cgi parent.
//!
//! One thread per pool owns the pipes' read ends and the line buffers; the front end only sends
//! it messages (a crossbeam channel, and a byte on a wake-up pipe so its `poll` returns).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::config::LogLevel;
use crate::spawn::Capture;

/// php-fpm's flush marker in a child's output.
pub const FLUSH_MARKER: &[u8] = b"\0fscf\0";
/// Added to a line the end of the pipe cut short.
pub const PIPE_CLOSED: &str = ", pipe is closed";
/// What the children's copy of a PHP message starts with.
const PHP_MESSAGE: &[u8] = b"NOTICE: PHP message: ";
/// Most messages waiting for the thread; more are dropped (the log is best effort).
const QUEUE: usize = 4096;
/// How long the thread goes on reading after its pool is gone, for the children's last words.
const LINGER: Duration = Duration::from_secs(2);
/// How long the proxy waits for the output thread at the end of a request.
pub const REQUEST_DONE_WAIT: Duration = Duration::from_millis(100);
/// Bytes read at once from a pipe.
const READ_SIZE: usize = 16 * 1024;

/// What the front end tells the output thread.
enum Event {
    /// A request ended: flush partial lines, then say so.
    RequestDone(tokio::sync::oneshot::Sender<()>),
}

/// A PHP message (FCGI_STDERR) as a php-fpm child copies it to its stderr.
fn php_message_line(message: &[u8]) -> Vec<u8> {
    let mut line = PHP_MESSAGE.to_vec();
    line.extend_from_slice(message);
    line.push(b'\n');
    line
}

/// The front end's handle on a pool's output thread; dropping it ends the thread.
#[derive(Debug)]
pub struct OutputHandle {
    tx: Sender<Event>,
    wake: OwnedFd,
    format: Format,
    pid: Arc<AtomicU32>,
}

impl OutputHandle {
    /// A request ended: its PHP `messages` are logged at once, then the thread logs what the
    /// pipes hold and flushes their partial lines. The answer comes when it has (or never, if
    /// its queue is full): the proxy waits for it, a little, before nginx hears of the end, so
    /// a request's lines are in the log before anything that follows it (php-fpm's order).
    pub fn request_done(&self, messages: Vec<Vec<u8>>) -> tokio::sync::oneshot::Receiver<()> {
        let pid = self.pid.load(Ordering::Relaxed);
        let mut lines = Lines::new("stderr");
        for message in messages {
            lines.push(&php_message_line(&message), &self.format, pid);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Event::RequestDone(tx));
        rx
    }

    /// Never blocks: a full queue drops the event, a full wake-up pipe is already awake.
    fn send(&self, event: Event) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(event) {
            return;
        }
        let _ = nix::unistd::write(self.wake.as_fd(), b"!");
    }
}

/// Starts the output thread of pool `pool`; `decorated` is `decorate_workers_output`.
pub fn start(pool: &str, decorated: bool) -> std::io::Result<(OutputHandle, Capture)> {
    let (out_r, out_w) = std::io::pipe()?;
    let (err_r, err_w) = std::io::pipe()?;
    let (wake_r, wake_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let pid = Arc::new(AtomicU32::new(0));
    let format = Format { pool: pool.to_string(), raw: !decorated };
    let handle = OutputHandle { tx, wake: wake_w, format: format.clone(), pid: pid.clone() };
    let reader = Reader {
        pipes: [OwnedFd::from(err_r), OwnedFd::from(out_r)],
        streams: [Lines::new("stderr"), Lines::new("stdout")],
        wake: wake_r,
        rx,
        format,
        pid: pid.clone(),
    };
    for fd in &reader.pipes {
        set_nonblocking(fd)?;
    }
    std::thread::Builder::new().name(format!("output-{pool}")).spawn(move || reader.run())?;
    Ok((handle, Capture { stdout: out_w.into(), stderr: err_w.into(), pid }))
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The output thread's state: the pipes, one line buffer per stream.
struct Reader {
    /// stderr, stdout (read ends).
    pipes: [OwnedFd; 2],
    streams: [Lines; 2],
    wake: OwnedFd,
    rx: Receiver<Event>,
    format: Format,
    pid: Arc<AtomicU32>,
}

impl Reader {
    fn run(mut self) {
        let mut open = [true, true];
        let mut linger: Option<Instant> = None;
        while open.iter().any(|o| *o) {
            let timeout = linger.map(|end| end.saturating_duration_since(Instant::now()));
            if timeout.is_some_and(|t| t.is_zero()) {
                break;
            }
            // Only what can still say something: a closed end would wake poll for ever.
            let mut watched: Vec<Option<usize>> = if linger.is_none() { vec![None] } else { Vec::new() };
            watched.extend((0..2).filter(|i| open[*i]).map(Some));
            let fd = |w: &Option<usize>| match w {
                None => self.wake.as_fd(),
                Some(i) => self.pipes[*i].as_fd(),
            };
            let mut fds: Vec<PollFd> = watched.iter().map(|w| PollFd::new(fd(w), PollFlags::POLLIN)).collect();
            let wait = timeout.map_or(PollTimeout::NONE, |t| {
                PollTimeout::try_from(t.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::NONE)
            });
            if nix::poll::poll(&mut fds, wait).is_err() {
                continue;
            }
            let ready: Vec<Option<usize>> = watched
                .iter()
                .zip(&fds)
                .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
                .map(|(w, _)| *w)
                .collect();
            drop(fds);
            for which in ready {
                match which {
                    None if !self.drain_wake() => linger = Some(Instant::now() + LINGER),
                    None => {}
                    Some(i) => open[i] = self.read_pipe(i),
                }
            }
            self.handle_events(&mut open);
        }
        let pid = self.pid.load(Ordering::Relaxed);
        for lines in &mut self.streams {
            lines.log_partial(&self.format, pid, PIPE_CLOSED);
        }
    }

    /// Empties the wake-up pipe; false once the handle is gone.
    fn drain_wake(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match nix::unistd::read(self.wake.as_raw_fd(), &mut buf) {
                Ok(0) => return false,
                Ok(_) => continue,
                Err(_) => return true,
            }
        }
    }

    /// Reads what pipe `i` holds now; false at its end.
    fn read_pipe(&mut self, i: usize) -> bool {
        let mut buf = [0u8; READ_SIZE];
        let pid = self.pid.load(Ordering::Relaxed);
        loop {
            match nix::unistd::read(self.pipes[i].as_raw_fd(), &mut buf) {
                Ok(0) => {
                    self.streams[i].log_partial(&self.format, pid, PIPE_CLOSED);
                    return false;
                }
                Ok(n) => self.streams[i].push(&buf[..n], &self.format, pid),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return true,
            }
        }
    }

    fn handle_events(&mut self, open: &mut [bool; 2]) {
        while let Ok(event) = self.rx.try_recv() {
            // What the children wrote before the request ended comes first.
            for (i, is_open) in open.iter_mut().enumerate() {
                if *is_open {
                    *is_open = self.read_pipe(i);
                }
            }
            let pid = self.pid.load(Ordering::Relaxed);
            let Event::RequestDone(done) = event;
            for lines in &mut self.streams {
                lines.log_partial(&self.format, pid, "");
            }
            let _ = done.send(());
        }
    }
}

/// How a pool's lines look.
#[derive(Debug, Clone)]
pub struct Format {
    pool: String,
    /// `decorate_workers_output = no`.
    raw: bool,
}

impl Format {
    fn head(&self, stream: &str, pid: u32) -> String {
        format!("[pool {}] child {pid} said into {stream}: \"", self.pool)
    }

    /// Bytes of output that fit on one line.
    fn room(&self, stream: &str, pid: u32) -> usize {
        crate::log::child_room(LogLevel::Warning, self.raw, self.head(stream, pid).len() + 1)
    }

    fn emit(&self, stream: &str, pid: u32, text: &[u8], suffix: &str) {
        let tail = if self.raw { suffix.to_string() } else { format!("\"{suffix}") };
        crate::log::write_child(LogLevel::Warning, self.raw, &self.head(stream, pid), text, &tail);
    }
}

/// One stream's line being assembled (php-fpm's `zlog_stream`).
#[derive(Debug)]
struct Lines {
    stream: &'static str,
    line: Vec<u8>,
    /// Bytes that may be the start of a flush marker, waiting for the next read.
    held: Vec<u8>,
}

impl Lines {
    fn new(stream: &'static str) -> Lines {
        Lines { stream, line: Vec::new(), held: Vec::new() }
    }

    /// Takes bytes the children wrote: complete lines are logged, wrapped at the room.
    fn push(&mut self, data: &[u8], format: &Format, pid: u32) {
        let mut data_owned;
        let mut data = data;
        if !self.held.is_empty() {
            data_owned = std::mem::take(&mut self.held);
            data_owned.extend_from_slice(data);
            data = &data_owned[..];
        }
        let room = format.room(self.stream, pid);
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            if rest[0] == 0 {
                if rest.starts_with(FLUSH_MARKER) {
                    self.log_partial(format, pid, "");
                    i += FLUSH_MARKER.len();
                    continue;
                }
                if FLUSH_MARKER.starts_with(rest) {
                    self.held = rest.to_vec();
                    return;
                }
            }
            if rest[0] == b'\n' {
                format.emit(self.stream, pid, &self.line, "");
                self.line.clear();
            } else {
                if self.line.len() >= room {
                    format.emit(self.stream, pid, &self.line, "");
                    self.line.clear();
                }
                self.line.push(rest[0]);
            }
            i += 1;
        }
    }

    /// Logs the partial line, if any, with `suffix` after it.
    fn log_partial(&mut self, format: &Format, pid: u32, suffix: &str) {
        let mut held = std::mem::take(&mut self.held);
        self.line.append(&mut held);
        if self.line.is_empty() {
            return;
        }
        let room = format.room(self.stream, pid);
        // The suffix goes on as far as it fits, its rest on a line of its own (php-fpm's way).
        let fits = room.saturating_sub(self.line.len()).min(suffix.len());
        format.emit(self.stream, pid, &self.line, &suffix[..fits]);
        if fits < suffix.len() {
            let head = format.head(self.stream, pid);
            let head = if format.raw { "" } else { head.trim_end_matches('"') };
            crate::log::write_child(LogLevel::Warning, format.raw, head, &suffix.as_bytes()[fits..], "");
        }
        self.line.clear();
    }
}
