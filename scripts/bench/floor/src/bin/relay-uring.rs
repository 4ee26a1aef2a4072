//! The floor over io_uring: one thread, one ring, every socket operation a submission, all
//! of a wake-up's submissions passed to the kernel in the one `io_uring_enter` that waits for
//! the next completions. Multishot accept; no `epoll_ctl`, no `EAGAIN`. `URING_PLAIN=1`
//! leaves out `SINGLE_ISSUER` and `DEFER_TASKRUN` (completions then run as task work at any
//! system call rather than only in that wait).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use floor_relays::{answer_end, fail, keep_conn, request_end};
use io_uring::{cqueue, opcode, squeue, types, IoUring};

const ACCEPT: u64 = 1;
const SIGNAL: u64 = 2;
const READ_NGINX: u64 = 3;
const WRITE_CHILD: u64 = 4;
const READ_CHILD: u64 = 5;
const WRITE_NGINX: u64 = 6;
const CLOSE: u64 = 7;
/// Room a receive has at least.
const ROOM: usize = 4096;

/// One nginx connection and the request it is at.
struct Conn {
    fd: RawFd,
    request: Vec<u8>,
    at: usize,
    end: usize,
    keep: bool,
    child: Option<usize>,
    answer: Vec<u8>,
    sent: usize,
}

struct Relay {
    ring: IoUring,
    listener: RawFd,
    conns: Vec<Option<Conn>>,
    spare: Vec<usize>,
    children: Vec<RawFd>,
    free: VecDeque<usize>,
    waiting: VecDeque<usize>,
}

fn main() {
    let (settings, _php, conns, listener) = floor_relays::start();
    // SIGTERM and SIGINT (callgrind.sh's) are read from a signalfd; blocked only now, so
    // php-cgi does not inherit the mask (a blocked signal is queued even where a shell
    // started the relay with SIGINT ignored).
    // SAFETY: plain system calls on a set built here.
    let signal_fd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
    };
    if signal_fd < 0 {
        fail(&format!("signalfd: {}", std::io::Error::last_os_error()));
    }
    let mut builder = IoUring::builder();
    if std::env::var_os("URING_PLAIN").is_none() {
        builder.setup_single_issuer().setup_defer_taskrun();
    }
    let ring = builder.build(1024).unwrap_or_else(|e| fail(&format!("io_uring: {e}")));
    let mut relay = Relay {
        ring,
        listener: listener.as_raw_fd(),
        conns: Vec::new(),
        spare: Vec::new(),
        free: (0..conns.len()).collect(),
        children: conns.into_iter().map(|c| c.into_raw_fd()).collect(),
        waiting: VecDeque::new(),
    };
    relay.accept();
    let mut siginfo = [0u8; 128];
    relay.push(opcode::Read::new(types::Fd(signal_fd), siginfo.as_mut_ptr(), 128).build().user_data(SIGNAL));
    floor_relays::ready(&settings);
    let mut done = Vec::with_capacity(1024);
    'run: loop {
        if let Err(e) = relay.ring.submit_and_wait(1) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            fail(&format!("io_uring_enter: {e}"));
        }
        done.extend(relay.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        for (data, result, flags) in done.drain(..) {
            let (conn, op) = ((data >> 8) as usize, data & 0xff);
            match op {
                SIGNAL => break 'run,
                ACCEPT => relay.accepted(result, flags),
                READ_NGINX => relay.read_nginx(conn, result),
                WRITE_CHILD => relay.wrote_child(conn, result),
                READ_CHILD => relay.read_child(conn, result),
                WRITE_NGINX => relay.wrote_nginx(conn, result),
                CLOSE => {
                    relay.conns[conn] = None;
                    relay.spare.push(conn);
                }
                _ => unreachable!("user data {data:#x}"),
            }
        }
    }
    drop(listener);
}

impl Relay {
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry points at lives in a `Conn` (its heap part does not
            // move while the operation is in flight: no buffer is grown before its completion)
            // or in `main`'s frame, which outlives the ring's use.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            self.ring.submit().unwrap_or_else(|e| fail(&format!("io_uring_enter: {e}")));
        }
    }

    fn accept(&mut self) {
        self.push(opcode::AcceptMulti::new(types::Fd(self.listener)).build().user_data(ACCEPT));
    }

    fn accepted(&mut self, result: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept();
        }
        if result < 0 {
            eprintln!("relay: accept: {}", std::io::Error::from_raw_os_error(-result));
            return;
        }
        let conn = Conn {
            fd: result,
            request: Vec::with_capacity(ROOM),
            at: 0,
            end: 0,
            keep: false,
            child: None,
            answer: Vec::with_capacity(ROOM),
            sent: 0,
        };
        let id = match self.spare.pop() {
            Some(id) => {
                self.conns[id] = Some(conn);
                id
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        self.recv_nginx(id);
    }

    fn conn(&mut self, id: usize) -> &mut Conn {
        self.conns[id].as_mut().expect("an operation's connection is open")
    }

    fn recv_nginx(&mut self, id: usize) {
        let c = self.conn(id);
        if c.request.capacity() - c.request.len() < ROOM / 4 {
            c.request.reserve(ROOM);
        }
        let (fd, room) = (c.fd, c.request.capacity() - c.request.len());
        // SAFETY: the spare capacity of the request buffer, filled only by this receive.
        let ptr = unsafe { c.request.as_mut_ptr().add(c.request.len()) };
        self.push(opcode::Recv::new(types::Fd(fd), ptr, room as u32).build().user_data(op(id, READ_NGINX)));
    }

    fn read_nginx(&mut self, id: usize, result: i32) {
        if result <= 0 {
            return self.close(id); // nginx closed (between requests, or gave up on one)
        }
        let c = self.conn(id);
        // SAFETY: the kernel wrote `result` bytes into the spare capacity.
        unsafe { c.request.set_len(c.request.len() + result as usize) };
        let mut at = c.at;
        let end = request_end(&c.request, &mut at);
        c.at = at;
        let Some(end) = end else { return self.recv_nginx(id) };
        c.end = end;
        c.keep = keep_conn(&mut c.request);
        match self.free.pop_front() {
            Some(child) => self.start(id, child),
            None => self.waiting.push_back(id),
        }
    }

    fn start(&mut self, id: usize, child: usize) {
        let fd = self.children[child];
        let c = self.conn(id);
        c.child = Some(child);
        c.sent = 0;
        let (ptr, len) = (c.request.as_ptr(), c.end);
        self.push(opcode::Send::new(types::Fd(fd), ptr, len as u32).build().user_data(op(id, WRITE_CHILD)));
    }

    fn wrote_child(&mut self, id: usize, result: i32) {
        if result < 0 {
            fail(&format!("send to a child: {}", std::io::Error::from_raw_os_error(-result)));
        }
        let child = self.conn(id).child.expect("a request being sent has its child");
        let fd = self.children[child];
        let c = self.conn(id);
        c.sent += result as usize;
        if c.sent < c.end {
            // SAFETY: within the request's bytes.
            let ptr = unsafe { c.request.as_ptr().add(c.sent) };
            let len = c.end - c.sent;
            return self.push(opcode::Send::new(types::Fd(fd), ptr, len as u32).build().user_data(op(id, WRITE_CHILD)));
        }
        c.answer.clear();
        c.at = 0;
        self.recv_child(id);
    }

    fn recv_child(&mut self, id: usize) {
        let child = self.conn(id).child.expect("an answer being read has its child");
        let fd = self.children[child];
        let c = self.conn(id);
        if c.answer.capacity() - c.answer.len() < ROOM / 4 {
            c.answer.reserve(ROOM);
        }
        let room = c.answer.capacity() - c.answer.len();
        // SAFETY: the spare capacity of the answer buffer, filled only by this receive.
        let ptr = unsafe { c.answer.as_mut_ptr().add(c.answer.len()) };
        self.push(opcode::Recv::new(types::Fd(fd), ptr, room as u32).build().user_data(op(id, READ_CHILD)));
    }

    fn read_child(&mut self, id: usize, result: i32) {
        if result <= 0 {
            fail(&format!("a child's connection: {}", std::io::Error::from_raw_os_error(-result)));
        }
        let c = self.conn(id);
        // SAFETY: the kernel wrote `result` bytes into the spare capacity.
        unsafe { c.answer.set_len(c.answer.len() + result as usize) };
        let mut at = c.at;
        let end = answer_end(&c.answer, &mut at);
        c.at = at;
        if end.is_none() {
            return self.recv_child(id);
        }
        let child = c.child.take().expect("an answer being read has its child");
        c.sent = 0;
        let (fd, ptr, len) = (c.fd, c.answer.as_ptr(), c.answer.len());
        self.push(opcode::Send::new(types::Fd(fd), ptr, len as u32).build().user_data(op(id, WRITE_NGINX)));
        match self.waiting.pop_front() {
            Some(next) => self.start(next, child),
            None => self.free.push_back(child),
        }
    }

    fn wrote_nginx(&mut self, id: usize, result: i32) {
        if result < 0 {
            return self.close(id);
        }
        let c = self.conn(id);
        c.sent += result as usize;
        if c.sent < c.answer.len() {
            // SAFETY: within the answer's bytes.
            let ptr = unsafe { c.answer.as_ptr().add(c.sent) };
            let (fd, len) = (c.fd, c.answer.len() - c.sent);
            return self.push(opcode::Send::new(types::Fd(fd), ptr, len as u32).build().user_data(op(id, WRITE_NGINX)));
        }
        if !c.keep {
            return self.close(id);
        }
        c.request.clear();
        c.at = 0;
        self.recv_nginx(id);
    }

    fn close(&mut self, id: usize) {
        let fd = self.conn(id).fd;
        self.push(opcode::Close::new(types::Fd(fd)).build().user_data(op(id, CLOSE)));
    }
}

fn op(conn: usize, kind: u64) -> u64 {
    (conn as u64) << 8 | kind
}
