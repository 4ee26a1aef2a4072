//! Readers for /proc: children of a process, which process holds a socket, a
//! process's memory and CPU time (with the clock and page sizes to read them by).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::time::{Duration, Instant};

/// Processes a [`CpuTable`] remembers before forgetting those not sampled for [`FORGET_AFTER`].
pub const REMEMBERED: usize = 16 * 1024;
/// How long a [`CpuTable`] that is full keeps a process that has not been sampled.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Pids of the direct children of `pid` (all its threads); none when /proc
/// cannot tell.
pub fn children(pid: i32) -> Vec<i32> {
    all_children(pid).unwrap_or_default()
}

/// Pids of the direct children of `pid` (all its threads), or an error when
/// /proc cannot list them: `pid` is gone, or no thread's `children` file
/// could be read (a kernel without `CONFIG_PROC_CHILDREN`).
fn all_children(pid: i32) -> io::Result<Vec<i32>> {
    let mut out = Vec::new();
    let mut read = None;
    for task in fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        match fs::read_to_string(task.path().join("children")) {
            Ok(text) => {
                out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
                read = Some(Ok(()));
            }
            // A thread that ended meanwhile: its siblings tell.
            Err(e) => read = read.or(Some(Err(e))),
        }
    }
    read.unwrap_or_else(|| Err(io::ErrorKind::NotFound.into())).map(|()| out)
}

/// Whether process `pid` has a file descriptor open on socket `inode`:
/// false once it is gone; an error when its descriptors are not ours to
/// read.
///
/// Root without `CAP_SYS_PTRACE` (a container's default capabilities) may
/// list another user's descriptors but not follow them; the process's own
/// user may. So a refused read is tried again as that user, by this
/// thread's filesystem ids ([`as_owner_of`]): call it only from a thread
/// that does nothing else meanwhile (rustfpm's supervisor).
pub fn socket_held(pid: i32, inode: u32) -> io::Result<bool> {
    match fds_include(pid, inode) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => as_owner_of(pid, || fds_include(pid, inode)),
        held => held,
    }
}

fn fds_include(pid: i32, inode: u32) -> io::Result<bool> {
    let want = format!("socket:[{inode}]");
    let fds = match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(fds) => fds,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for fd in fds {
        match fs::read_link(fd?.path()) {
            Ok(target) if target.as_os_str() == want.as_str() => return Ok(true),
            Ok(_) => {}
            // Closed meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Listed but not ours to follow (root without CAP_SYS_PTRACE).
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Runs `read` with this thread's filesystem uid and gid set to those of
/// process `pid` (all four of its uids alike, and of its gids: not a set-id
/// program), and back. Linux keeps these ids per thread, and glibc does not
/// pass `setfsuid` on to the other threads: nothing else in the process
/// reads or writes a file as that user. Needs `CAP_SETUID` and
/// `CAP_SETGID`; without them the ids stay and `read` is refused again.
fn as_owner_of<T>(pid: i32, read: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let (Some(uid), Some(gid)) = (single_id(&status, "Uid:"), single_id(&status, "Gid:")) else {
        return Err(io::ErrorKind::PermissionDenied.into());
    };
    let _back = FsIds::set(uid, gid);
    read()
}

/// The id a `/proc/PID/status` line (`Uid:` or `Gid:`) gives four times, if
/// all four are one.
fn single_id(status: &str, key: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    let ids: Vec<u32> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    (ids.len() == 4 && ids.iter().all(|&id| id == ids[0])).then_some(ids[0])
}

/// This thread's filesystem ids as they were, put back when dropped. While
/// they are another user's, the thread's file permission checks are that
/// user's (root's `CAP_DAC_*` do not apply).
pub(crate) struct FsIds(nix::unistd::Uid, nix::unistd::Gid);

impl FsIds {
    /// Makes this thread's filesystem ids `uid` and `gid` until the guard drops.
    pub(crate) fn set(uid: u32, gid: u32) -> FsIds {
        let gid = nix::unistd::setfsgid(nix::unistd::Gid::from_raw(gid));
        FsIds(nix::unistd::setfsuid(nix::unistd::Uid::from_raw(uid)), gid)
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        nix::unistd::setfsuid(self.0);
        nix::unistd::setfsgid(self.1);
    }
}

/// The child of `parent` that holds socket `inode`: `Ok(None)` when /proc
/// shows that none of its children (at least one) does, an error when it
/// cannot show it (the children, or a child's descriptors, could not be read).
pub fn child_holding_socket(parent: i32, inode: u32) -> io::Result<Option<i32>> {
    let children = all_children(parent)?;
    if children.is_empty() {
        return Err(io::Error::other("no children"));
    }
    let mut unreadable = None;
    for pid in children {
        match socket_held(pid, inode) {
            Ok(true) => return Ok(Some(pid)),
            Ok(false) => {}
            Err(e) => unreadable = Some(e),
        }
    }
    unreadable.map_or(Ok(None), Err)
}

/// Resident memory of process `pid` in bytes, from `/proc/PID/status` (`VmRSS`).
pub fn rss(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A process's private memory in bytes: resident minus shared pages, from
/// `/proc/PID/statm` (cheap enough to read after every request).
pub fn private_memory(pid: i32) -> Option<u64> {
    parse_private_memory(&fs::read_to_string(format!("/proc/{pid}/statm")).ok()?)
}

/// Resident minus shared pages of a /proc/PID/statm line, in bytes.
fn parse_private_memory(text: &str) -> Option<u64> {
    let mut fields = text.split_whitespace().skip(1).map(|f| f.parse::<u64>().ok());
    let resident = fields.next()??;
    let shared = fields.next()??;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some(resident.saturating_sub(shared) * page)
}

/// Processes whose /proc files a [`ProcFiles`] keeps open; past it, it closes them all.
const KEPT_OPEN: usize = 256;
/// Files a [`ProcFiles`] keeps open for each process it reads (`stat` and `statm`).
pub const FILES_PER_PROCESS: u64 = 2;

/// The `/proc/PID/stat` and `/proc/PID/statm` files of the processes sampled after each of
/// their requests, kept open and read again with one `pread` each (procfs lays them out
/// anew at offset 0): one system call per figure, where opening and reading the file took
/// five (`open`, `statx`, two `read`s, `close`). A file of a process that has ended (or of
/// an earlier process with the same pid) fails to read; it is opened again once.
#[derive(Debug, Default)]
pub struct ProcFiles {
    open: HashMap<i32, PidFiles>,
}

#[derive(Debug, Default)]
struct PidFiles {
    stat: Option<fs::File>,
    statm: Option<fs::File>,
}

impl PidFiles {
    /// The process still exists (a file of one that has ended fails to read).
    fn alive(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let file = self.stat.as_ref().or(self.statm.as_ref());
        file.is_some_and(|file| file.read_at(&mut [0u8; 1], 0).is_ok())
    }
}

impl ProcFiles {
    /// `pid`'s CPU ticks (utime, stime), from `/proc/PID/stat`.
    pub fn cpu_ticks(&mut self, pid: i32) -> Option<CpuTicks> {
        let mut buf = [0u8; 1024];
        parse_cpu_ticks(self.read(pid, "stat", |f| &mut f.stat, &mut buf)?)
    }

    /// The CPU time `pid` has had, in nanoseconds: its process CPU clock
    /// (`clock_getcpuclockid`), which counts the slice it may be running in right now, with one
    /// system call and no text (`/proc/PID/schedstat` is up to a tick late while it runs).
    /// Where that clock cannot be read, from the ticks `cpu_ticks` counts in 1/100 s.
    pub fn cpu_time(&mut self, pid: i32) -> Option<Duration> {
        process_cpu_clock(pid).or_else(|| {
            let ticks = self.cpu_ticks(pid)?;
            Some(Duration::from_secs_f64(ticks.total() as f64 / clock_ticks()))
        })
    }

    /// `pid`'s private memory, as [`private_memory`] reads it.
    pub fn private_memory(&mut self, pid: i32) -> Option<u64> {
        let mut buf = [0u8; 256];
        parse_private_memory(self.read(pid, "statm", |f| &mut f.statm, &mut buf)?)
    }

    /// The text of `/proc/PID/NAME`, read into `buf` through the file kept open (opened
    /// again once if it fails: the process may be a new one with the same pid).
    fn read<'b>(
        &mut self,
        pid: i32,
        name: &str,
        slot: fn(&mut PidFiles) -> &mut Option<fs::File>,
        buf: &'b mut [u8],
    ) -> Option<&'b str> {
        use std::os::unix::fs::FileExt;
        if !self.open.contains_key(&pid) {
            // A new process (once per child): the files of those that have
            // ended go, else a pool that replaces its children keeps two
            // descriptors per child it ever had, up to KEPT_OPEN.
            self.open.retain(|_, files| files.alive());
            if self.open.len() >= KEPT_OPEN {
                self.open.clear();
            }
        }
        let file = slot(self.open.entry(pid).or_default());
        let mut n = None;
        for _ in 0..2 {
            if file.is_none() {
                *file = Some(fs::File::open(format!("/proc/{pid}/{name}")).ok()?);
            }
            // A full buffer may be a cut line: as good as unread.
            n = file.as_ref()?.read_at(buf, 0).ok().filter(|&n| n > 0 && n < buf.len());
            if n.is_some() {
                break;
            }
            *file = None;
        }
        std::str::from_utf8(&buf[..n?]).ok()
    }
}

/// A process's CPU time, in clock ticks ([`clock_ticks`] a second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// In user mode (utime).
    pub user: u64,
    /// In the kernel (stime).
    pub system: u64,
}

impl CpuTicks {
    /// User + system.
    pub fn total(self) -> u64 {
        self.user + self.system
    }
}

/// utime and stime (fields 14 and 15) of a /proc/PID/stat line; the command name, in
/// parentheses, may contain spaces.
fn parse_cpu_ticks(stat: &str) -> Option<CpuTicks> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    Some(CpuTicks { user: fields.next()?.parse().ok()?, system: fields.next()?.parse().ok()? })
}

/// `pid`'s process CPU clock (every thread's time, the running slice included).
fn process_cpu_clock(pid: i32) -> Option<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t to the pointer it is given.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec to the pointer it is given.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(Duration::new(u64::try_from(now.tv_sec).ok()?, u32::try_from(now.tv_nsec).ok()?))
}

/// How long ago `pid` was started: its start time (/proc/PID/stat field 22,
/// clock ticks after boot) against the time since boot (`CLOCK_BOOTTIME`, the
/// clock that start time counts on).
pub fn age(pid: i32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let start: u64 = stat[stat.rfind(')')? + 1..].split_whitespace().nth(19)?.parse().ok()?;
    let mut boot = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec to the pointer it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut boot) } != 0 {
        return None;
    }
    let since_boot = Duration::new(u64::try_from(boot.tv_sec).ok()?, u32::try_from(boot.tv_nsec).ok()?);
    since_boot.checked_sub(Duration::from_secs_f64(start as f64 / clock_ticks()))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Each process's CPU figure (ticks, or its CPU clock's time) at its previous sample, to tell
/// what it spent in between (a php-cgi child between the ends of two requests: it is idle in
/// between). Bounded: past [`REMEMBERED`] processes, those not sampled for [`FORGET_AFTER`]
/// are forgotten.
#[derive(Debug)]
pub struct CpuTable<T = CpuTicks> {
    last: HashMap<i32, (T, Instant)>,
}

impl<T> Default for CpuTable<T> {
    fn default() -> Self {
        CpuTable { last: HashMap::new() }
    }
}

/// A CPU figure that only grows: what was spent between two readings.
pub trait CpuSpent: Copy {
    /// `self` less `before` (nothing if the figure went back: a new process, same pid).
    fn since(self, before: Self) -> Self;
}

impl CpuSpent for CpuTicks {
    fn since(self, before: Self) -> Self {
        CpuTicks { user: self.user.saturating_sub(before.user), system: self.system.saturating_sub(before.system) }
    }
}

impl CpuSpent for Duration {
    fn since(self, before: Self) -> Self {
        self.saturating_sub(before)
    }
}

impl<T: CpuSpent> CpuTable<T> {
    /// Remembers `now` as `pid`'s figure; returns what it spent since its previous sample
    /// (None for its first).
    pub fn spent(&mut self, pid: i32, now: T) -> Option<T> {
        self.record(pid, now, Instant::now())
    }

    /// Remembers `figure` as `pid`'s at `at`; returns what it spent since its previous sample.
    fn record(&mut self, pid: i32, figure: T, at: Instant) -> Option<T> {
        if self.last.len() >= REMEMBERED {
            self.last.retain(|_, (_, seen)| at.saturating_duration_since(*seen) < FORGET_AFTER);
        }
        let (before, _) = self.last.insert(pid, (figure, at))?;
        Some(figure.since(before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process forked a moment ago is a moment old; this one, older.
    #[test]
    fn a_process_age_is_read_from_its_start_time() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let young = age(child.id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        let young = young.expect("the child's age");
        assert!(young >= Duration::from_millis(250) && young < Duration::from_secs(20), "{young:?}");
        assert!(age(std::process::id() as i32).expect("our age") >= young);
        assert_eq!(age(i32::MAX), None);
    }
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_single_id_is_one_given_four_times() {
        let status = "Name:\tphp-cgi\nUid:\t33\t33\t33\t33\nGid:\t33\t33\t0\t33\n";
        assert_eq!(single_id(status, "Uid:"), Some(33));
        assert_eq!(single_id(status, "Gid:"), None, "a set-id program is not followed as its user");
        assert_eq!(single_id("Uid:\t33\t33\n", "Uid:"), None);
    }

    /// As root: reads as the owner of another user's process, then this
    /// thread's filesystem ids are root's again.
    #[test]
    fn reading_as_a_process_owner_puts_the_ids_back() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        use std::os::unix::process::CommandExt;
        let mut other = std::process::Command::new("sleep").arg("30").uid(33).gid(33).spawn().unwrap();
        // A query: setfsuid with an invalid id changes nothing and says the current one.
        let fsuid = || nix::unistd::setfsuid(nix::unistd::Uid::from_raw(u32::MAX)).as_raw();
        // spawn() returns once `sleep` runs, as www-data.
        let seen = as_owner_of(other.id() as i32, || Ok(fsuid()));
        other.kill().unwrap();
        other.wait().unwrap();
        assert_eq!(seen.unwrap(), 33, "read as the process's user");
        assert_eq!(fsuid(), 0);
    }

    #[test]
    fn finds_own_socket() {
        let (a, _b) = UnixStream::pair().unwrap();
        let ino = crate::sys::sockdiag::socket_inode(&a).unwrap();
        let through_proc = fs::read_link(format!("/proc/self/fd/{}", a.as_raw_fd())).unwrap();
        assert_eq!(
            through_proc.to_str(),
            Some(format!("socket:[{ino}]").as_str()),
            "fstat names the socket as /proc does"
        );
        assert!(socket_held(std::process::id() as i32, ino).unwrap());
        assert!(!socket_held(std::process::id() as i32, u32::MAX - 3).unwrap());
        assert!(!socket_held(i32::MAX, ino).unwrap(), "a process that is gone holds nothing");
    }

    /// The kernel's task and children lists are read without a lock: a listing of
    /// /proc/PID/task stops early when the thread it is at exits meanwhile (next_tid), and
    /// a `children` file may skip one (proc(5)). Other tests' threads end all the time, so
    /// one reading may miss the test's own thread; the child, alive all along, must be
    /// seen within a few.
    #[test]
    fn lists_children() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let seen = (0..100).any(|_| {
            let found = children(std::process::id() as i32).contains(&pid);
            if !found {
                std::thread::sleep(Duration::from_millis(10));
            }
            found
        });
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(seen, "child {pid} of this test not listed in 100 readings");
    }

    #[test]
    fn cpu_time_counts_every_thread_to_the_nanosecond() {
        // The test runs on a thread of its own: what it burns counts (the main thread's
        // schedstat would not see it), the slice it is running in included.
        let me = std::process::id() as i32;
        let mut files = ProcFiles::default();
        let before = files.cpu_time(me).expect("own CPU clock");
        let thread_before = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - thread_before < Duration::from_millis(3) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let burnt = thread_cpu() - thread_before;
        let after = files.cpu_time(me).expect("own CPU clock");
        assert!(after - before >= burnt, "process {:?} < this thread's {burnt:?}", after - before);
        // Another process's clock reads too (rustfpm reads its children's).
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let other = process_cpu_clock(child.id() as i32);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(other.is_some(), "a child's CPU clock");
        let mut table = CpuTable::default();
        assert_eq!(table.spent(me, before), None);
        assert_eq!(table.spent(me, before), Some(Duration::ZERO));
        assert_eq!(table.spent(me, before / 2), Some(Duration::ZERO), "a figure that went back");
    }

    /// This thread's CPU time.
    fn thread_cpu() -> Duration {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec to the pointer it is given.
        assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) }, 0);
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }

    #[test]
    fn reads_own_private_and_resident_memory() {
        let me = std::process::id() as i32;
        assert!(private_memory(me).is_some_and(|m| m > 0));
        assert!(rss(me).is_some_and(|m| m > 0));
        assert_eq!(private_memory(-5), None);
        assert_eq!(rss(-5), None);
    }

    #[test]
    fn cpu_ticks_from_proc_stat() {
        let stat = "1234 (php cgi) S 1 2 3 4 5 6 7 8 9 10 250 37 0 0 20 0 1 0 100 200 300";
        assert_eq!(parse_cpu_ticks(stat), Some(CpuTicks { user: 250, system: 37 }));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert!(ProcFiles::default().cpu_ticks(std::process::id() as i32).is_some());
        assert!(clock_ticks() > 0.0);
    }

    #[test]
    fn the_table_counts_from_the_previous_sample_of_the_same_process() {
        let (mut table, now) = (CpuTable::default(), Instant::now());
        let ticks = |user, system| CpuTicks { user, system };
        assert_eq!(table.record(10, ticks(50, 5), now), None);
        assert_eq!(table.record(11, ticks(7, 0), now), None);
        assert_eq!(table.record(10, ticks(53, 9), now), Some(ticks(3, 4)));
        assert_eq!(table.record(11, ticks(7, 0), now), Some(ticks(0, 0)));
        let me = std::process::id() as i32;
        assert_eq!(table.spent(me, ticks(1, 1)), None, "a first sample");
        assert_eq!(table.spent(me, ticks(2, 1)), Some(ticks(1, 0)));
    }

    #[test]
    fn the_files_of_ended_processes_are_closed_when_a_new_one_is_read() {
        let mut files = ProcFiles::default();
        for _ in 0..3 {
            let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
            let pid = child.id() as i32;
            assert!(files.cpu_ticks(pid).is_some() && files.private_memory(pid).is_some());
            child.kill().expect("kill sleep");
            child.wait().expect("reap sleep");
        }
        // A replaced child is never sampled again: its files go when a newer one comes.
        assert_eq!(files.open.len(), 1, "only the last child's files are kept");
    }

    #[test]
    fn files_kept_open_read_what_a_fresh_read_does() {
        let mut files = ProcFiles::default();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        // Stopped, so that its ticks stay as they are between the two readings.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP).unwrap();
        for _ in 0..2 {
            let fresh = parse_cpu_ticks(&fs::read_to_string(format!("/proc/{pid}/stat")).unwrap());
            assert_eq!(files.cpu_ticks(pid), fresh);
            assert!(files.private_memory(pid).is_some_and(|m| m > 0));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(files.cpu_ticks(pid), None, "the process is gone");
        assert_eq!(files.private_memory(pid), None);
        assert_eq!(files.cpu_ticks(-5), None);
    }

    #[test]
    fn the_table_forgets_processes_not_seen_for_long_when_full() {
        let (mut table, start) = (CpuTable::default(), Instant::now());
        for pid in 0..REMEMBERED as i32 {
            table.record(pid, CpuTicks::default(), start);
        }
        table.record(-1, CpuTicks::default(), start + FORGET_AFTER);
        assert_eq!(table.last.len(), 1, "only the newest is kept");
    }
}
