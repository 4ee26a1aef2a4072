//! Finds the peer of a unix socket through the kernel's sock_diag netlink
//! interface (what `ss -xp` uses). rustfpm uses it to learn which php-cgi child
//! accepted a worker's connection.

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_PEER: u16 = 2;
/// `struct unix_diag_rqlen`: bytes unread by us, then bytes unread by the peer.
const UNIX_DIAG_RQLEN: u16 = 4;
const NLMSG_HDRLEN: usize = 16;
const UNIX_DIAG_MSG_LEN: usize = 16;

/// What the kernel says of the peer of one of our unix sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The inode of the socket connected to ours: `None` once the peer has
    /// closed its end, and also while no process has accepted it yet (the
    /// kernel reports 0 for both).
    pub inode: Option<u32>,
    /// What we sent and the peer has not read yet: our socket's send queue,
    /// in the kernel's accounting (buffer memory, not payload bytes). A peer
    /// that closed has dropped it: more than 0 with no peer inode means a
    /// connection still in the listener's accept queue.
    pub unread: u32,
}

impl Peer {
    /// The peer holds the connection, or will once a process accepts it: a
    /// request written to it is, or will be, run.
    pub fn holds(&self) -> bool {
        self.inode.is_some() || self.unread > 0
    }
}

/// The inode of our socket `fd`, as sock_diag and `/proc/PID/fd` name it:
/// `fstat` on the descriptor, which walks no path (cheap enough for the
/// runtime thread: a worker reads it at each connect).
pub fn socket_inode(fd: &impl AsRawFd) -> io::Result<u32> {
    Ok(nix::sys::stat::fstat(fd.as_raw_fd())?.st_ino as u32)
}

/// Returns the inode of the socket connected to the unix socket `inode`, if
/// any: `None` once the peer has closed its end (the kernel then reports 0).
pub fn unix_peer_inode(inode: u32) -> io::Result<Option<u32>> {
    Ok(unix_peer(inode)?.inode)
}

/// The peer of the unix socket `inode` (ours) and what it has not read yet.
/// A socket the kernel does not know has no peer.
pub fn unix_peer(inode: u32) -> io::Result<Peer> {
    let fd = socket(AddressFamily::Netlink, SockType::Datagram, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkSockDiag)?;
    send(fd.as_raw_fd(), &request(inode), MsgFlags::empty())?;
    let mut buf = [0u8; 1024];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    parse_reply(&buf[..n])
}

fn request(inode: u32) -> Vec<u8> {
    let mut msg = Vec::with_capacity(40);
    msg.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    msg.push(libc::AF_UNIX as u8); // sdiag_family
    msg.push(0); // sdiag_protocol
    msg.extend_from_slice(&0u16.to_ne_bytes()); // pad
    msg.extend_from_slice(&u32::MAX.to_ne_bytes()); // all states
    msg.extend_from_slice(&inode.to_ne_bytes());
    msg.extend_from_slice(&(UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN).to_ne_bytes());
    msg.extend_from_slice(&u32::MAX.to_ne_bytes()); // no cookie
    msg.extend_from_slice(&u32::MAX.to_ne_bytes());
    msg
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn parse_reply(buf: &[u8]) -> io::Result<Peer> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "short sock_diag reply");
    let mut peer = Peer { inode: None, unread: 0 };
    let msg_type = u16_at(buf, 4).ok_or_else(bad)?;
    if msg_type == NLMSG_ERROR {
        let errno = u32_at(buf, NLMSG_HDRLEN).ok_or_else(bad)? as i32;
        return match -errno {
            0 | libc::ENOENT => Ok(peer),
            e => Err(io::Error::from_raw_os_error(e)),
        };
    }
    let len = (u32_at(buf, 0).ok_or_else(bad)? as usize).min(buf.len());
    let mut at = NLMSG_HDRLEN + UNIX_DIAG_MSG_LEN;
    while at + 4 <= len {
        let rta_len = u16_at(buf, at).ok_or_else(bad)? as usize;
        let rta_type = u16_at(buf, at + 2).ok_or_else(bad)?;
        if rta_len < 4 {
            break;
        }
        match rta_type {
            UNIX_DIAG_PEER => peer.inode = u32_at(buf, at + 4).filter(|&inode| inode != 0),
            UNIX_DIAG_RQLEN => peer.unread = u32_at(buf, at + 8).ok_or_else(bad)?,
            _ => {}
        }
        at += (rta_len + 3) & !3;
    }
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixStream;

    fn inode_of(s: &UnixStream) -> u32 {
        let fd = s.as_raw_fd();
        std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().ino() as u32
    }

    #[test]
    fn finds_peer_of_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(unix_peer_inode(inode_of(&a)).unwrap(), Some(inode_of(&b)));
        assert_eq!(unix_peer_inode(inode_of(&b)).unwrap(), Some(inode_of(&a)));
    }

    #[test]
    fn unknown_inode_is_none() {
        assert_eq!(unix_peer_inode(u32::MAX - 7).unwrap(), None);
    }

    #[test]
    fn a_connection_not_accepted_yet_holds_what_was_sent_and_a_closed_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let mut queued = UnixStream::connect(dir.path().join("s")).unwrap();
        let unused = unix_peer(inode_of(&queued)).unwrap();
        assert_eq!(unused, Peer { inode: None, unread: 0 }, "nothing sent: looks closed");
        std::io::Write::write_all(&mut queued, b"a request").unwrap();
        let waiting = unix_peer(inode_of(&queued)).unwrap();
        assert!(waiting.inode.is_none() && waiting.unread > 0, "{waiting:?}");
        assert!(waiting.holds());
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(unix_peer(inode_of(&queued)).unwrap().inode, Some(inode_of(&accepted)));
        drop(accepted);
        // A process that another test forks meanwhile holds a copy of
        // `accepted` until it execs (close-on-exec), and the kernel releases
        // the socket when the last copy closes: until then the peer is there,
        // holding what was sent. Ask again until it is gone (10 s at most).
        let mut closed = unix_peer(inode_of(&queued)).unwrap();
        for _ in 0..1000 {
            if closed.inode.is_none() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            closed = unix_peer(inode_of(&queued)).unwrap();
        }
        assert_eq!(closed, Peer { inode: None, unread: 0 });
        assert!(!closed.holds());
    }
}
