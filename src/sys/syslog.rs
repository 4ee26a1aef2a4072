//! A syslog client: one datagram per message to the local syslog socket
//! (`/dev/log`), in the format glibc's `syslog(3)` sends with `LOG_PID`:
//! `<PRI>Nov 26 14:51:02 php-fpm[1234]: [NOTICE] message`.
//!
//! Written here rather than with libc's `openlog`/`syslog` so that the socket
//! is a setting (a chroot, a container, a test can point it elsewhere) and no
//! libc state is shared between threads.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// A connection to the syslog socket, reconnected when the daemon restarts.
#[derive(Debug)]
pub struct Syslog {
    path: PathBuf,
    facility: i32,
    ident: String,
    socket: Option<UnixDatagram>,
}

impl Syslog {
    /// A client for `path`; connects on the first message.
    pub fn new(path: PathBuf, facility: i32, ident: String) -> Syslog {
        Syslog { path, facility, ident, socket: None }
    }

    /// Sends `message` at `priority` (a libc `LOG_*` level). A syslog daemon
    /// that restarted is reconnected once. Never blocks: when the daemon's
    /// queue is full the message is refused (`WouldBlock`), not waited for.
    pub fn send(&mut self, priority: i32, message: &str) -> io::Result<()> {
        let datagram = format(self.facility | priority, &stamp(), &self.ident, std::process::id(), message);
        if let Some(socket) = &self.socket {
            match socket.send(datagram.as_bytes()) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(_) => self.socket = None,
            }
        }
        let socket = UnixDatagram::unbound()?;
        socket.connect(&self.path)?;
        socket.set_nonblocking(true)?;
        socket.send(datagram.as_bytes())?;
        self.socket = Some(socket);
        Ok(())
    }
}

/// One syslog datagram (RFC 3164, as glibc writes it).
pub fn format(pri: i32, stamp: &str, ident: &str, pid: u32, message: &str) -> String {
    format!("<{pri}>{stamp} {ident}[{pid}]: {message}")
}

/// Local time as syslog writes it: `Nov  6 14:51:02` (day padded with a space).
fn stamp() -> String {
    super::localtime::now("%b %e %H:%M:%S")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_is_glibc_format() {
        let pri = libc::LOG_LOCAL3 | libc::LOG_ERR;
        let text = format(pri, "Nov  6 14:51:02", "php-fpm", 42, "[ERROR] oops");
        assert_eq!(text, "<155>Nov  6 14:51:02 php-fpm[42]: [ERROR] oops");
    }

    #[test]
    fn stamp_pads_the_day() {
        let s = stamp();
        assert_eq!(s.len(), "Nov  6 14:51:02".len(), "{s}");
    }

    #[test]
    fn messages_arrive_at_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut client = Syslog::new(path, libc::LOG_DAEMON, "rustfpm-test".into());
        client.send(libc::LOG_NOTICE, "[NOTICE] hello").unwrap();
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("<29>"), "{text}");
        assert!(text.ends_with(&format!(" rustfpm-test[{}]: [NOTICE] hello", std::process::id())), "{text}");
    }

    #[test]
    fn a_full_syslog_queue_refuses_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let _server = UnixDatagram::bind(&path).unwrap();
        let mut client = Syslog::new(path, libc::LOG_DAEMON, "x".into());
        let refused = (0..100_000).map(|_| client.send(libc::LOG_NOTICE, "filler")).find_map(Result::err);
        assert_eq!(refused.map(|e| e.kind()), Some(io::ErrorKind::WouldBlock));
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let mut client = Syslog::new("/nonexistent/log".into(), libc::LOG_DAEMON, "x".into());
        assert!(client.send(libc::LOG_NOTICE, "x").is_err());
    }
}
