//! The one thread that writes every pool's access log and slowlog. Async code only
//! [`send`]s to it (never blocking: a full channel drops the line and counts it); the thread
//! renders access lines, batches what has queued up, and writes each file with one `write`
//! per batch. Files are opened on first use and closed on [`reopen`] (SIGUSR1), so that
//! logrotate can move them away.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

// std's channel, not crossbeam's: a receiver with nothing to read parks at once, where
// crossbeam's spins and calls sched_yield() four times first (per request, on a busy host).
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::format::{render, CpuTime, Record};
use super::Probe;
use crate::config::access_format::AccessFormat;
use crate::sys::procfs::{clock_ticks, CpuTable, CpuTicks, ProcFiles};

/// Most lines waiting for the writer; past it, lines are dropped.
pub const QUEUE: usize = 64 * 1024;
/// Most bytes of text those lines may hold (long URIs add up while a log disk
/// stalls); past it, lines are dropped.
pub const QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// How long the writer rests after writing a batch, so that the next one gathers the lines
/// of many requests (one wake-up and one `write` per file for them all).
const BATCH_PAUSE: Duration = Duration::from_millis(5);
/// Bytes of a file's batch buffer kept for the next batch.
const BUFFER_KEPT: usize = 64 * 1024;
/// php-fpm creates its log files readable and writable by their owner only.
const FILE_MODE: u32 = 0o600;

/// What the writer is asked to do.
#[derive(Debug)]
pub enum Msg {
    /// Render `rec` in `format` (after reading what `probe` asks from /proc) and append it
    /// to `path`.
    Access { path: Arc<Path>, format: Arc<AccessFormat>, rec: Box<Record>, probe: Probe },
    /// Append `text` to `path` as it is.
    Text { path: Arc<Path>, text: String },
    /// Close every file; the next line opens it again.
    Reopen,
    /// Answer once everything sent before has been written.
    Flush(SyncSender<()>),
}

static WRITER: OnceLock<SyncSender<Msg>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static QUEUED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Opens `path` for appending as the writer does (creating it, mode 0600), without
/// following a link another user placed ([`crate::sys::safe_fs`]).
pub fn open(path: &Path) -> std::io::Result<File> {
    crate::sys::safe_fs::open_append(path, FILE_MODE)
}

/// Queues `msg` for the writer thread (started on first use). Never blocks.
pub fn send(msg: Msg) {
    let size = msg.text_bytes();
    let queued = QUEUED_BYTES.fetch_add(size, Ordering::Relaxed);
    if queued + size > QUEUE_BYTES || writer().try_send(msg).is_err() {
        QUEUED_BYTES.fetch_sub(size, Ordering::Relaxed);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        crate::metrics::log_lines_dropped(1);
    }
}

impl Msg {
    /// The text a message holds, for [`QUEUE_BYTES`].
    fn text_bytes(&self) -> usize {
        match self {
            Msg::Access { rec, .. } => rec.text_bytes(),
            Msg::Text { text, .. } => text.len(),
            Msg::Reopen | Msg::Flush(_) => 0,
        }
    }
}

/// Lines dropped so far because the writer fell behind.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Asks the writer to close and reopen its files (SIGUSR1).
pub fn reopen() {
    if WRITER.get().is_some() {
        send(Msg::Reopen);
    }
}

/// Waits up to `limit` for the lines sent so far to be written (at exit). Blocks: call it
/// from a plain thread, never from async code.
pub fn flush(limit: Duration) {
    if WRITER.get().is_none() {
        return;
    }
    let (tx, rx) = sync_channel(1);
    send(Msg::Flush(tx));
    let _ = rx.recv_timeout(limit);
}

fn writer() -> &'static SyncSender<Msg> {
    WRITER.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new().name("rustfpm-logs".into()).spawn(move || Writer::default().run(rx));
        if let Err(e) = spawned {
            crate::error!("cannot start the access log writer thread: {e}; access and slow logs are off");
        }
        tx
    })
}

/// The same log file: the same `Arc` (each pool's log has one), else the same path.
fn same(a: &Arc<Path>, b: &Arc<Path>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// Ticks as seconds.
fn cpu_time(ticks: CpuTicks) -> CpuTime {
    let hz = clock_ticks();
    CpuTime { user: ticks.user as f64 / hz, system: ticks.system as f64 / hz }
}

#[derive(Default)]
struct Writer {
    /// The open files (a few: looked up by pointer first, never hashed).
    files: Vec<(Arc<Path>, File)>,
    /// Text waiting to be written, per file, in arrival order of the files;
    /// the buffers are kept (emptied) between batches.
    pending: Vec<(Arc<Path>, String)>,
    /// Files whose last write failed (reported once until a write succeeds).
    failing: Vec<(Arc<Path>, u64)>,
    reported_drops: u64,
    /// The CPU ticks of each child at its last logged request (for `%C`).
    cpu: CpuTable,
    /// The children's /proc files, for `%C` and `%M`.
    proc: ProcFiles,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            let mut acks = Vec::new();
            self.handle(msg, &mut acks);
            while let Ok(msg) = rx.try_recv() {
                self.handle(msg, &mut acks);
            }
            self.write_pending();
            self.report_drops();
            for ack in acks {
                let _ = ack.send(());
            }
            // Lines that come meanwhile wait in the channel: under load one wake-up and
            // one write per file serve many requests (the first line after a quiet spell
            // is written at once).
            std::thread::sleep(BATCH_PAUSE);
        }
    }

    fn handle(&mut self, msg: Msg, acks: &mut Vec<SyncSender<()>>) {
        QUEUED_BYTES.fetch_sub(msg.text_bytes(), Ordering::Relaxed);
        match msg {
            Msg::Access { path, format, mut rec, probe } => {
                self.probe(&mut rec, probe);
                let buf = self.buffer(path);
                render(&format, &rec, SystemTime::now(), buf);
                buf.push('\n');
            }
            Msg::Text { path, text } => self.buffer(path).push_str(&text),
            Msg::Reopen => {
                self.write_pending();
                self.files.clear();
                self.pending.clear();
            }
            Msg::Flush(ack) => acks.push(ack),
        }
    }

    /// Reads the child's memory and CPU ticks, as `probe` asks. CPU time is counted from the
    /// child's previous logged request (the child is idle in between), so the first request
    /// of each child shows `-`; a sample taken late, under load, may count a little of the
    /// next request.
    fn probe(&mut self, rec: &mut Record, probe: Probe) {
        let Some(pid) = rec.pid else {
            return;
        };
        if probe.memory {
            // 0: the child has exited (a zombie's memory is gone), so unknown.
            rec.memory = self.proc.private_memory(pid).filter(|&bytes| bytes > 0);
        }
        if probe.cpu {
            rec.cpu = self.proc.cpu_ticks(pid).and_then(|now| self.cpu.spent(pid, now)).map(cpu_time);
        }
    }

    fn buffer(&mut self, path: Arc<Path>) -> &mut String {
        let at = match self.pending.iter().position(|(p, _)| same(p, &path)) {
            Some(at) => at,
            None => {
                self.pending.push((path, String::new()));
                self.pending.len() - 1
            }
        };
        &mut self.pending[at].1
    }

    fn write_pending(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        for (path, text) in pending.iter_mut().filter(|(_, text)| !text.is_empty()) {
            let result = self.file(path).and_then(|f| f.write_all(text.as_bytes()));
            match result {
                Ok(()) => self.recovered(path),
                Err(e) => {
                    self.files.retain(|(p, _)| !same(p, path));
                    let lines = text.matches('\n').count() as u64;
                    crate::metrics::log_lines_dropped(lines);
                    match self.failing.iter_mut().find(|(p, _)| same(p, path)) {
                        Some((_, dropped)) => *dropped += lines,
                        None => {
                            crate::error!("cannot write to the log {}: {e}; lines are dropped", path.display());
                            self.failing.push((path.clone(), lines));
                        }
                    }
                }
            }
            text.clear();
            text.shrink_to(BUFFER_KEPT);
        }
        self.pending = pending;
    }

    /// A write to `path` succeeded: if it had been failing, say how many
    /// lines were dropped meanwhile.
    fn recovered(&mut self, path: &Arc<Path>) {
        if self.failing.is_empty() {
            return;
        }
        if let Some(at) = self.failing.iter().position(|(p, _)| same(p, path)) {
            let (_, dropped) = self.failing.swap_remove(at);
            crate::notice!(
                "{dropped} line(s) dropped while the log {} could not be written; writing it again",
                path.display()
            );
        }
    }

    fn file(&mut self, path: &Arc<Path>) -> std::io::Result<&mut File> {
        let at = match self.files.iter().position(|(p, _)| same(p, path)) {
            Some(at) => at,
            None => {
                self.files.push((path.clone(), open(path)?));
                self.files.len() - 1
            }
        };
        Ok(&mut self.files[at].1)
    }

    fn report_drops(&mut self) {
        let dropped = dropped();
        if dropped > self.reported_drops {
            crate::warning!(
                "{} access/slow log line(s) dropped: the log writer fell behind (queue of {QUEUE} full)",
                dropped - self.reported_drops
            );
            self.reported_drops = dropped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_read_memory_and_cpu_since_the_previous_request() {
        let mut writer = Writer::default();
        let pid = std::process::id() as i32;
        let probe = Probe { cpu: true, memory: true };
        let mut first = Record { pid: Some(pid), ..Record::default() };
        writer.probe(&mut first, probe);
        assert!(first.memory.is_some_and(|bytes| bytes > 0), "{first:?}");
        assert_eq!(first.cpu, None, "a child's first request has no previous sample");
        let mut second = Record { pid: Some(pid), ..Record::default() };
        writer.probe(&mut second, Probe { cpu: true, memory: false });
        assert!(second.cpu.is_some() && second.memory.is_none(), "{second:?}");
        let mut unknown = Record::default();
        writer.probe(&mut unknown, probe);
        assert!(unknown.cpu.is_none() && unknown.memory.is_none());
    }

    #[test]
    fn lines_are_written_and_files_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path: Arc<Path> = Arc::from(dir.path().join("access.log").as_path());
        let format = Arc::new(AccessFormat::parse("%m %s").unwrap());
        let rec = Box::new(Record { method: "GET".into(), status: 200, ..Record::default() });
        send(Msg::Access { path: path.clone(), format, rec, probe: Probe::default() });
        send(Msg::Text { path: path.clone(), text: "text\n".into() });
        flush(Duration::from_secs(10));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "GET 200\ntext\n");
        let moved = dir.path().join("access.log.1");
        std::fs::rename(&path, &moved).unwrap();
        reopen();
        send(Msg::Text { path: path.clone(), text: "after\n".into() });
        flush(Duration::from_secs(10));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        assert_eq!(std::fs::read_to_string(&moved).unwrap(), "GET 200\ntext\n");
    }
}
