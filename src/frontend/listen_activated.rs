//! Listeners from systemd's socket activation: a pool's `listen` takes the
//! passed socket named after the pool (`FileDescriptorName=NAME`), else the
//! one bound to the same address (also for `pm_status_listen`). The pool gets
//! a duplicate: the passed socket stays open across reloads, and its path is
//! never unlinked by rustfpm.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{getsockname, getsockopt, sockopt, SockaddrLike, SockaddrStorage};

use super::{ListenError, Listener};
use crate::config::{self, ListenAddr};
use crate::sys::systemd::{self, Activated};

/// The listener for `listen` from the sockets systemd passed, if one is meant for it.
pub(super) fn listener(
    cfg: &config::Pool,
    listen: &ListenAddr,
    pages_only: bool,
) -> Result<Option<Listener>, ListenError> {
    let sockets = systemd::activated();
    let by_name = sockets.iter().find(|s| !pages_only && s.name == cfg.name);
    let Some(socket) = by_name.or_else(|| sockets.iter().find(|s| address(s).is_some_and(|a| same(&a, listen)))) else {
        return Ok(None);
    };
    let err = |message: String| ListenError::Bind {
        pool: cfg.name.clone(),
        addr: listen.to_string(),
        error: std::io::Error::other(message),
    };
    let fd_no = socket.fd.as_raw_fd();
    if !getsockopt(&socket.fd, sockopt::AcceptConn).unwrap_or(false) {
        return Err(err(format!("the socket systemd passed (fd {fd_no}) is not a listening stream socket")));
    }
    let bound = address(socket);
    let fd = socket.fd.try_clone().map_err(|e| err(format!("cannot duplicate the socket systemd passed: {e}")))?;
    socket.take();
    let shown = bound.as_ref().map_or_else(|| "?".to_string(), ToString::to_string);
    crate::notice!(
        "[pool {}] {} uses the socket systemd passed (fd {fd_no}, name '{}', bound to {shown})",
        cfg.name,
        listen,
        socket.name
    );
    let is_unix = matches!(bound, Some(ListenAddr::Unix(_)));
    Ok(Some(Listener { pages_only, fd, is_unix, unix: None }))
}

/// The address a passed socket is bound to.
fn address(socket: &Activated) -> Option<ListenAddr> {
    let addr: SockaddrStorage = getsockname(socket.fd.as_fd().as_raw_fd()).ok()?;
    if let Some(unix) = addr.as_unix_addr() {
        return unix.path().map(|p| ListenAddr::Unix(p.to_path_buf()));
    }
    let tcp = match addr.family()? {
        nix::sys::socket::AddressFamily::Inet => addr.as_sockaddr_in().map(|a| SocketAddr::V4((*a).into())),
        nix::sys::socket::AddressFamily::Inet6 => addr.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into())),
        _ => None,
    };
    tcp.map(ListenAddr::Tcp)
}

/// The same address; any unspecified address (`0.0.0.0:P`, `[::]:P`, php-fpm's `listen = P`)
/// also matches systemd's dual-stack `[::]:P` (`ListenStream=P`).
fn same(bound: &ListenAddr, listen: &ListenAddr) -> bool {
    match (bound.tcp(), listen.tcp()) {
        (Some(b), Some(l)) if b.port() == l.port() => {
            b.ip() == l.ip() || (b.ip().is_unspecified() && l.ip().is_unspecified())
        }
        _ => bound == listen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> ListenAddr {
        ListenAddr::Tcp(s.parse().unwrap())
    }

    #[test]
    fn addresses_match_as_systemd_binds_them() {
        assert!(same(&tcp("[::]:9000"), &tcp("0.0.0.0:9000")));
        assert!(same(&tcp("[::]:9000"), &ListenAddr::Port(9000)));
        assert!(same(&tcp("0.0.0.0:9000"), &ListenAddr::Port(9000)));
        assert!(!same(&tcp("[::]:9001"), &ListenAddr::Port(9000)));
        assert!(same(&tcp("127.0.0.1:9000"), &tcp("127.0.0.1:9000")));
        assert!(!same(&tcp("127.0.0.1:9000"), &tcp("127.0.0.1:9001")));
        assert!(!same(&tcp("[::]:9000"), &tcp("127.0.0.1:9000")));
        let unix = ListenAddr::Unix("/run/rustfpm-www.sock".into());
        assert!(same(&unix, &unix.clone()));
        assert!(!same(&unix, &ListenAddr::Unix("/run/other.sock".into())));
    }
}
