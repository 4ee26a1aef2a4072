//! Limits on what a peer may hold: how long a connection may wait for a
//! request (idle, or in the middle of its head), and how many nginx connections the open-file limit leaves room for.
//! Pure logic; the accept loop and the connection do the waiting.

use std::time::{Duration, Instant};

/// What a connection is waiting for from nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A kept-alive connection between requests (`listen_idle_timeout`).
    Idle,
    /// A request head: from its first byte, or from the connect on a new
    /// connection, which nginx opens only to send a request (`request_read_timeout`).
    Head,
}

/// When a connection waiting for a request head gives up.
#[derive(Debug, Clone, Copy)]
pub struct HeadClock {
    phase: Phase,
    since: Instant,
    deadline: Option<Instant>,
    read_timeout: Option<Duration>,
}

impl HeadClock {
    /// Starts at `now`: a `fresh` connection (nothing read yet) waits for its
    /// head; a kept one is idle until a byte of the next request arrives.
    pub fn new(now: Instant, fresh: bool, read_timeout: Option<Duration>, idle_timeout: Option<Duration>) -> Self {
        let (phase, limit) = if fresh { (Phase::Head, read_timeout) } else { (Phase::Idle, idle_timeout) };
        HeadClock { phase, since: now, deadline: limit.map(|t| now + t), read_timeout }
    }

    /// Bytes of a request have arrived at `now`: an idle wait becomes a head
    /// wait, once (a head that trickles in keeps its first deadline).
    pub fn request_begun(&mut self, now: Instant) {
        if self.phase == Phase::Idle {
            self.phase = Phase::Head;
            self.deadline = self.read_timeout.map(|t| now + t);
        }
    }

    /// When the wait began (a head that trickles in waits since the connect
    /// or since the end of the previous request).
    pub fn waiting_since(&self) -> Instant {
        self.since
    }

    /// What is being waited for.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the wait ends; `None`: never.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// Descriptors kept for each child a pool may have: the worker's connection
/// to it, one more for a second generation during a reload, and the /proc
/// files the usage sampler keeps open for it (a pool with a status page).
pub const FDS_PER_CHILD: u64 = 2 + crate::sys::procfs::FILES_PER_PROCESS;
/// Descriptors kept for each pool: its listeners, its children's socket,
/// logs and pipes.
pub const FDS_PER_POOL: u64 = 8;
/// Descriptors kept for everything else (log files reopened, `php-cgi -i`,
/// /proc reads, the runtime).
pub const FDS_SPARE: u64 = 64;

/// How many nginx connections rustfpm may hold with `nofile` descriptors,
/// `open` of them already in use, and pools with `children` children in all:
/// what is left once the children's connections and a margin are kept. At
/// least 1, so that a tiny limit slows rustfpm down but never wedges it.
pub fn connection_budget(nofile: u64, open: u64, pools: usize, children: usize) -> usize {
    let kept = open + pools as u64 * FDS_PER_POOL + children as u64 * FDS_PER_CHILD + FDS_SPARE;
    nofile.saturating_sub(kept).clamp(1, usize::MAX as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: Duration = Duration::from_secs(2);
    const IDLE: Duration = Duration::from_secs(30);

    #[test]
    fn a_new_connection_waits_for_its_head_from_the_connect() {
        let start = Instant::now();
        let clock = HeadClock::new(start, true, Some(READ), Some(IDLE));
        assert_eq!((clock.phase(), clock.deadline()), (Phase::Head, Some(start + READ)));
    }

    #[test]
    fn a_kept_connection_is_idle_until_a_request_begins_then_keeps_its_head_deadline() {
        let start = Instant::now();
        let mut clock = HeadClock::new(start, false, Some(READ), Some(IDLE));
        assert_eq!((clock.phase(), clock.deadline()), (Phase::Idle, Some(start + IDLE)));
        let first_byte = start + Duration::from_secs(10);
        clock.request_begun(first_byte);
        assert_eq!((clock.phase(), clock.deadline()), (Phase::Head, Some(first_byte + READ)));
        // A slowloris: more bytes do not move the deadline.
        clock.request_begun(first_byte + Duration::from_secs(1));
        assert_eq!(clock.deadline(), Some(first_byte + READ));
    }

    #[test]
    fn no_timeout_means_no_deadline() {
        let mut clock = HeadClock::new(Instant::now(), false, None, None);
        assert_eq!(clock.deadline(), None);
        clock.request_begun(Instant::now());
        assert_eq!((clock.phase(), clock.deadline()), (Phase::Head, None));
    }

    #[test]
    fn budget_keeps_the_childrens_descriptors() {
        // 1024 descriptors, 20 open, one pool of 4 children: 1024 - 20 - 8 - 16 - 64.
        assert_eq!(connection_budget(1024, 20, 1, 4), 916);
        assert_eq!(connection_budget(1 << 20, 20, 2, 256), (1 << 20) - 20 - 16 - 1024 - 64);
    }

    #[test]
    fn budget_keeps_the_proc_files_the_sampler_holds_for_each_child() {
        let mut files = crate::sys::procfs::ProcFiles::default();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id() as i32;
        assert!(files.cpu_ticks(pid).is_some() && files.private_memory(pid).is_some());
        let held = std::fs::read_dir("/proc/self/fd")
            .expect("list my descriptors")
            .flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to.starts_with(format!("/proc/{pid}/"))))
            .count() as u64;
        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");
        assert!(held >= crate::sys::procfs::FILES_PER_PROCESS, "{held} /proc files held for one process");
        // The worker's connection and a reload's second one come on top.
        assert!(FDS_PER_CHILD >= 2 + held, "a child's share of the budget, {FDS_PER_CHILD}, misses its /proc files");
    }

    #[test]
    fn budget_is_never_zero() {
        assert_eq!(connection_budget(64, 30, 1, 4), 1);
    }
}
