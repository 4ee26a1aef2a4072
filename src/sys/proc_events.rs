//! Exit statuses of processes that are not our children, through the
//! kernel's process-events connector (netlink, root in the initial
//! namespaces only). php-cgi children are reaped by their php-cgi parent, so
//! this is how rustfpm learns that a child died of SIGSEGV or SIGKILL.
//!
//! The connector reports every fork, exec, uid change and thread exit of the
//! whole machine; a classic BPF filter on the socket drops all but the exits
//! of whole processes in the kernel, so the thread reading it wakes only for
//! those (a busy build host forks thousands of times a second).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_DONE: u16 = 3;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
/// nlmsghdr (16) + cn_msg header (20).
const EVENT_AT: usize = 36;
/// proc_event: what, cpu, timestamp.
const DATA_AT: usize = EVENT_AT + 16;
/// exit_proc_event: process_pid, process_tgid, exit_code, exit_signal, parent_pid.
const TGID_AT: usize = DATA_AT + 4;

/// A process exit reported by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitEvent {
    /// The process that exited.
    pub pid: i32,
    /// Its parent at exit.
    pub parent: i32,
    /// The wait status (as `waitpid` would give it).
    pub wait_status: i32,
}

/// A subscription to process events.
#[derive(Debug)]
pub struct ProcEvents {
    fd: OwnedFd,
    /// The kernel refused the filter: every event is read.
    pub unfiltered: Option<io::Error>,
}

impl ProcEvents {
    /// Subscribes; fails without the privilege to listen.
    pub fn open() -> io::Result<ProcEvents> {
        Self::open_filtered(attach_exit_filter)
    }

    /// Subscribes with `filter` attached to the socket. Without it (the kernel
    /// refused it), every event is read and [`parse_exit`] alone sorts them:
    /// more wake-ups, but exits are still reported.
    fn open_filtered(filter: fn(&OwnedFd) -> io::Result<()>) -> io::Result<ProcEvents> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, NETLINK_CONNECTOR) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Before bind: binding joins the multicast group, and whatever other
        // listeners make the kernel send (forks, execs, thread exits) would
        // queue unfiltered on the socket until the filter is attached.
        let unfiltered = filter(&fd).err();
        enlarge_receive_buffer(&fd);
        // SAFETY: sockaddr_nl is plain data; all-zero is valid before we set fields.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = CN_IDX_PROC;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        // SAFETY: `addr` is a valid sockaddr_nl of `len` bytes.
        if unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_nl).cast(), len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let msg = listen_message();
        // SAFETY: sending an initialised buffer of its own length.
        if unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ProcEvents { fd, unfiltered })
    }

    /// Blocks for the next exit event (other events are skipped).
    pub fn next_exit(&self) -> io::Result<ExitEvent> {
        let mut buf = [0u8; 1024];
        loop {
            let n = self.next_message(&mut buf)?;
            if let Some(event) = parse_exit(&buf[..n]) {
                return Ok(event);
            }
        }
    }

    /// Blocks for the next message the filter lets through; its length.
    fn next_message(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: receiving into a buffer of its own length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            // ENOBUFS: events were dropped under load; keep listening.
            if !matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::ENOBUFS)) {
                return Err(e);
            }
        }
    }
}

/// How many bytes of exit events may wait for the reading thread. The default
/// (`net.core.rmem_default`, ~208 KiB) holds ~270 of them: a burst of exits on
/// a loaded machine (a pool replacing children after each request, a build's
/// processes) while the thread waits for a CPU overflowed it (ENOBUFS), and the
/// lost exits were missing from crash reports and the loop and emergency
/// restart counts. Memory is taken only while events wait.
const RECEIVE_BUFFER: libc::c_int = 4 << 20;

/// Raises the socket's receive buffer to [`RECEIVE_BUFFER`]: past
/// `net.core.rmem_max` with `SO_RCVBUFFORCE` (root, which listening needs
/// anyway), else as far as `SO_RCVBUF` goes. Best effort: a smaller buffer only
/// loses events sooner, as before.
fn enlarge_receive_buffer(fd: &OwnedFd) {
    let len = std::mem::size_of::<libc::c_int>() as u32;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads an int of `len` bytes from a live local.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&RECEIVE_BUFFER as *const libc::c_int).cast(),
                len,
            )
        };
        if set == 0 {
            return;
        }
    }
}

/// A word of the message as the filter's absolute loads read it (big-endian):
/// the connector writes host order.
fn as_loaded(word: u32) -> u32 {
    u32::from_be_bytes(word.to_ne_bytes())
}

/// Lets through only exits of whole processes (pid == tgid), as
/// [`parse_exit`] reads them; the kernel drops everything else.
fn attach_exit_filter(fd: &OwnedFd) -> io::Result<()> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_MEM, BPF_RET, BPF_ST, BPF_W, BPF_X};
    let op = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
    let load = |at: usize| op(BPF_LD | BPF_W | BPF_ABS, at as u32, 0, 0);
    let mut program = [
        load(EVENT_AT),
        op(BPF_JMP | BPF_JEQ | BPF_K, as_loaded(PROC_EVENT_EXIT), 0, 6), // not an exit: drop
        load(TGID_AT),
        op(BPF_ST, 0, 0, 0),
        op(BPF_LDX | BPF_W | BPF_MEM, 0, 0, 0),
        load(DATA_AT),
        op(BPF_JMP | BPF_JEQ | BPF_X, 0, 0, 1), // pid == tgid: keep, else drop
        op(BPF_RET | BPF_K, u32::MAX, 0, 0),
        op(BPF_RET | BPF_K, 0, 0, 0),
    ];
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
    let len = std::mem::size_of::<libc::sock_fprog>() as u32;
    // SAFETY: `prog` points at `program`, alive for the call; the kernel copies it.
    let set = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            len,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn listen_message() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(&40u32.to_ne_bytes());
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&std::process::id().to_ne_bytes());
    for word in [CN_IDX_PROC, CN_VAL_PROC, 0, 0] {
        m.extend_from_slice(&word.to_ne_bytes());
    }
    m.extend_from_slice(&4u16.to_ne_bytes()); // payload length
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    m
}

fn i32_at(buf: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// An exit of a whole process (not of one of its threads), if `buf` is one.
fn parse_exit(buf: &[u8]) -> Option<ExitEvent> {
    if i32_at(buf, EVENT_AT)? as u32 != PROC_EVENT_EXIT {
        return None;
    }
    let (pid, tgid) = (i32_at(buf, DATA_AT)?, i32_at(buf, TGID_AT)?);
    let wait_status = i32_at(buf, DATA_AT + 8)?;
    let parent = i32_at(buf, DATA_AT + 20)?;
    (pid == tgid).then_some(ExitEvent { pid, parent, wait_status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_child_killed_by_a_signal() {
        let events = ProcEvents::open().expect(
            "process events need root in the initial namespaces: run the suite as root, as scripts/test.sh does",
        );
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        child.kill().unwrap();
        child.wait().unwrap();
        let event = std::iter::from_fn(|| events.next_exit().ok()).find(|e| e.pid == pid).unwrap();
        assert_eq!(event.parent, std::process::id() as i32);
        assert_eq!(event.wait_status & 0x7f, libc::SIGKILL);
    }

    #[test]
    fn exits_are_still_reported_when_the_filter_cannot_be_attached() {
        let refused = |_: &OwnedFd| Err(io::Error::from_raw_os_error(libc::ENOMEM));
        let events = ProcEvents::open_filtered(refused).expect("subscribed without the filter");
        assert!(events.unfiltered.is_some());
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id() as i32;
        child.wait().expect("reap true");
        let event = std::iter::from_fn(|| events.next_exit().ok()).find(|e| e.pid == pid);
        assert_eq!(event.map(|e| e.parent), Some(std::process::id() as i32));
    }

    /// The socket joins the group only once its filter is attached: what the
    /// kernel sends meanwhile for other listeners (a fork, here, while the
    /// filter is being attached) must not queue unfiltered. Under load a fork
    /// got through so about once in 15 runs of the test below.
    #[test]
    fn nothing_queues_before_the_filter_is_attached() {
        // The kernel sends process events only while someone listens.
        let _listener = ProcEvents::open().expect("process events need root in the initial namespaces");
        let slow = |fd: &OwnedFd| {
            std::process::Command::new("true").status()?;
            attach_exit_filter(fd)
        };
        let events = ProcEvents::open_filtered(slow).expect("subscribed");
        assert!(events.unfiltered.is_none(), "the filter is attached: {:?}", events.unfiltered);
        std::process::Command::new("true").status().expect("run true");
        let mut buf = [0u8; 1024];
        let n = events.next_message(&mut buf).expect("a message");
        assert!(parse_exit(&buf[..n]).is_some(), "the first message is not a process's exit: {:?}", &buf[..n]);
    }

    /// A burst of exits while the reading thread does not read (it waits for
    /// a CPU on a loaded machine): each is reported. With the default receive
    /// buffer about 270 fit, and the rest were dropped (ENOBUFS).
    #[test]
    fn a_burst_of_exits_waits_for_a_reader_that_is_late() {
        let events = ProcEvents::open().expect("process events need root in the initial namespaces");
        // A dropped exit would otherwise leave the test waiting for ever.
        let timeout = libc::timeval { tv_sec: 10, tv_usec: 0 };
        let len = std::mem::size_of::<libc::timeval>() as u32;
        // SAFETY: setsockopt reads a timeval of `len` bytes from a live local.
        let set = unsafe {
            libc::setsockopt(
                events.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                len,
            )
        };
        assert_eq!(set, 0, "SO_RCVTIMEO: {}", io::Error::last_os_error());
        let mut pids = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut child = std::process::Command::new("true").spawn().expect("spawn true");
            pids.insert(child.id() as i32);
            child.wait().expect("reap true");
        }
        while !pids.is_empty() {
            let event = events.next_exit().expect("the exits are all reported, none dropped");
            pids.remove(&event.pid);
        }
    }

    #[test]
    fn only_exits_of_whole_processes_get_through() {
        let events = ProcEvents::open().expect("process events need root in the initial namespaces");
        // A thread that ends, and a process that forks, execs and exits: only its exit may come.
        std::thread::spawn(|| ()).join().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let mut buf = [0u8; 1024];
        loop {
            let n = events.next_message(&mut buf).unwrap();
            let event = parse_exit(&buf[..n]);
            assert!(event.is_some(), "the filter let through a message that is not a process's exit: {:?}", &buf[..n]);
            if event.is_some_and(|e| e.pid == pid) {
                break;
            }
        }
    }
}
