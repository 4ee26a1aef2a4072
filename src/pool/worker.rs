//! A worker: one slot of a pool and its private, persistent FastCGI
//! connection to the php-cgi child that accepted it. Connected lazily (a child
//! drops a connection that stays silent for 5 s), kept with FCGI_KEEP_CONN.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::net::UnixStream;

use crate::sys::sockdiag;

/// Size of a worker's read buffer: one full record plus header and padding.
pub const READ_BUF: usize = 64 * 1024 + 512;

/// The private socket that a pool's php-cgi children accept on. Its file
/// and directory are removed when the last handle drops.
#[derive(Debug)]
pub struct ChildSocket {
    /// Path of the socket, inside a directory only rustfpm can enter.
    pub path: PathBuf,
    /// That directory.
    pub dir: PathBuf,
    /// rustfpm's handle on the listening socket that the children share.
    pub listener: OwnedFd,
}

impl Drop for ChildSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl ChildSocket {
    /// Clears O_NONBLOCK on the children's shared listener. A script that made
    /// `php://stdin` non-blocking set it, and php-cgi exits when its next
    /// `accept()` would block. Returns true if the flag was set.
    pub fn repair(&self) -> bool {
        let Ok(bits) = fcntl(self.listener.as_fd().as_raw_fd(), FcntlArg::F_GETFL) else {
            return false;
        };
        let flags = OFlag::from_bits_truncate(bits);
        if !flags.contains(OFlag::O_NONBLOCK) {
            return false;
        }
        let _ = fcntl(self.listener.as_raw_fd(), FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK));
        true
    }
}

/// Counts a worker as coming back to its balancer (its request ended) for as
/// long as it is held: dropped when a request takes the worker again, or with it.
#[derive(Debug)]
pub struct ComingBack(Arc<AtomicUsize>, Instant);

impl ComingBack {
    /// Adds one to `count` until dropped.
    pub fn count(count: &Arc<AtomicUsize>) -> ComingBack {
        count.fetch_add(1, Ordering::SeqCst);
        ComingBack(count.clone(), Instant::now())
    }

    /// When the worker's request ended (the token was taken).
    pub fn since(&self) -> Instant {
        self.1
    }
}

impl Drop for ComingBack {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One slot's connection state.
#[derive(Debug)]
pub struct Worker {
    slot: usize,
    /// Bumped by the pool actor when this slot's child was replaced.
    epochs: Arc<[AtomicU32]>,
    epoch: u32,
    conn: Option<UnixStream>,
    /// The front-end thread whose runtime's reactor `conn` is registered with.
    home: Option<std::thread::ThreadId>,
    inode: u32,
    fresh: bool,
    /// Set from its request's end until a request takes it from the balancer again
    /// ([`super::balancer::Balancer::coming_back`]).
    pub(super) coming_back: Option<ComingBack>,
    /// Buffer for reading the child's records.
    pub buf: Vec<u8>,
}

impl Worker {
    /// A worker for `slot`, not yet connected.
    pub fn new(slot: usize, epochs: Arc<[AtomicU32]>) -> Worker {
        Worker {
            slot,
            epochs,
            epoch: 0,
            conn: None,
            home: None,
            inode: 0,
            fresh: true,
            coming_back: None,
            buf: Vec::new(),
        }
    }

    /// The slot index in the pool.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// True until the current connection has been used for a request.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Inode of our end of the current connection (0 when not connected).
    pub fn inode(&self) -> u32 {
        self.inode
    }

    /// Descriptor of the current connection (-1 when not connected).
    pub fn fd(&self) -> RawFd {
        self.conn.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Holds a connection to a child.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The thread whose reactor its connection is registered with (a request
    /// on another thread moves it, see [`Self::ensure_connected`]).
    pub fn home(&self) -> Option<std::thread::ThreadId> {
        self.home
    }

    /// When the child ended the request it runs (its END_REQUEST was read),
    /// if it has: nginx may have the whole response before the worker is
    /// released.
    pub fn ended_at(&self) -> Option<Instant> {
        self.coming_back.as_ref().map(ComingBack::since)
    }

    /// Counts this worker as coming back to its balancer until it is back.
    pub fn hold(&mut self, coming_back: ComingBack) {
        self.coming_back = Some(coming_back);
    }

    /// Marks the connection as used.
    pub fn mark_used(&mut self) {
        self.fresh = false;
    }

    /// Makes sure there is a live connection to a child: (re)connects if there
    /// is none or the child closed it while idle.
    pub async fn ensure_connected(&mut self, socket: &ChildSocket) -> io::Result<()> {
        let epoch = self.epochs.get(self.slot).map_or(0, |e| e.load(Ordering::Relaxed));
        if epoch != self.epoch || self.conn.as_ref().is_some_and(closed_while_idle) {
            self.epoch = epoch;
            self.discard();
        }
        if self.conn.is_some() && self.come_home().is_err() {
            self.discard();
        }
        if self.conn.is_none() {
            self.connect(&socket.path, socket).await?;
        }
        if self.buf.len() < READ_BUF {
            self.buf = vec![0; READ_BUF];
        }
        Ok(())
    }

    /// The connection and the read buffer, borrowed together.
    pub fn io(&mut self) -> Option<(&mut UnixStream, &mut [u8])> {
        let conn = self.conn.as_mut()?;
        Some((conn, &mut self.buf[..]))
    }

    /// Registers the connection with the reactor of the thread that runs this request,
    /// if another front-end thread's reactor has it: otherwise each readiness of the
    /// child's socket would wake that other thread, which then wakes this one. Two
    /// `epoll_ctl`s, on the requests that change threads.
    fn come_home(&mut self) -> io::Result<()> {
        let here = std::thread::current().id();
        if self.home == Some(here) {
            return Ok(());
        }
        let Some(conn) = self.conn.take() else { return Ok(()) };
        let std = conn.into_std()?;
        self.conn = Some(UnixStream::from_std(std)?);
        self.home = Some(here);
        Ok(())
    }

    async fn connect(&mut self, path: &Path, socket: &ChildSocket) -> io::Result<()> {
        socket.repair();
        self.home = Some(std::thread::current().id());
        let stream = UnixStream::connect(path).await?;
        self.inode = sockdiag::socket_inode(&stream).unwrap_or(0);
        self.conn = Some(stream);
        self.fresh = true;
        Ok(())
    }

    /// Gives up on the request the child may still be running: both
    /// directions of the connection are shut down but it stays open. The
    /// child's next write fails (its script sees the abort at its next
    /// output, as under php-fpm) and it then closes its end, which the pool
    /// actor watches for (the supervisor's `CheckPeer`) before it lends the
    /// worker again.
    pub fn abandon(&mut self) {
        if let Some(conn) = &self.conn {
            let _ = nix::sys::socket::shutdown(conn.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
    }

    /// Closes the connection: the child sees its client gone and, once its
    /// script ends, accepts the next connection.
    pub fn discard(&mut self) {
        self.conn = None;
        self.home = None;
        self.inode = 0;
        self.fresh = true;
    }
}

/// Shuts down both directions of our connection `inode`, through its
/// descriptor `fd` in this process, if `fd` still names it; true if it did.
///
/// The pool actor's way to end a connection a front-end task owns when the
/// child at the other end has died: a process the child's script started
/// may hold the child's end open, so the end of file the task waits for
/// would not come. After this the task reads it at once (a running request
/// is answered 502, an idle connection is replaced before its next request).
/// `fd` may have been closed and its number reused since (on another
/// front-end thread, meanwhile): the copy taken first names one socket
/// throughout, and is shut down only if it is `inode`.
pub fn sever(fd: RawFd, inode: u32) -> bool {
    if fd < 0 || inode == 0 {
        return false;
    }
    let Ok(copy) = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(0)) else { return false };
    // SAFETY: `copy` is a descriptor fcntl just made, owned by nothing else.
    let copy = unsafe { OwnedFd::from_raw_fd(copy) };
    let Ok(stat) = nix::sys::stat::fstat(copy.as_raw_fd()) else { return false };
    stat.st_mode & libc::S_IFMT == libc::S_IFSOCK
        && stat.st_ino == u64::from(inode)
        && nix::sys::socket::shutdown(copy.as_raw_fd(), nix::sys::socket::Shutdown::Both).is_ok()
}

/// An idle connection should have nothing to read. If the runtime has seen it
/// readable, the child closed it (or broke protocol): either way, replace it.
/// When not marked readable this costs no system call.
fn closed_while_idle(conn: &UnixStream) -> bool {
    let mut probe = [0u8; 1];
    !matches!(conn.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sever` shuts a connection down through its descriptor only while the
    /// descriptor still names that connection.
    #[test]
    fn sever_shuts_down_only_the_connection_it_names() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let inode = sockdiag::socket_inode(&ours).unwrap();
        let other = sockdiag::socket_inode(&theirs).unwrap();
        assert!(!sever(ours.as_raw_fd(), other), "another socket's inode");
        assert!(!sever(-1, inode) && !sever(ours.as_raw_fd(), 0));
        theirs.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        assert!(std::io::Read::read(&mut &theirs, &mut byte).is_err(), "still open: nothing to read");
        assert!(sever(ours.as_raw_fd(), inode));
        assert_eq!(std::io::Read::read(&mut &ours, &mut byte).unwrap(), 0, "our read ends at once");
        assert_eq!(std::io::Read::read(&mut &theirs, &mut byte).unwrap(), 0, "so does the peer's");
    }
}
