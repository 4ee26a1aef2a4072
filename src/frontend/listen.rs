//! Binding a pool's listen address as php-fpm does: a unix socket with
//! `listen_owner`, `listen_group` and `listen_mode`, or TCP on IPv4/IPv6, each
//! with `listen_backlog`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::socket::{
    bind as sys_bind, listen as sys_listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage, UnixAddr,
};
use nix::unistd::{chown, Group, User};
use tokio::sync::watch;

use super::conn::Conn;
use crate::config::{self, ListenAddr};
use crate::pool::Pool;

/// Errors while binding a listener.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// bind/listen failed.
    #[error("[pool {pool}] cannot listen on {addr}: {source}")]
    Bind { pool: String, addr: String, source: std::io::Error },
    /// Another process serves this unix socket.
    #[error("[pool {pool}] cannot listen on {addr}: another process is already listening there")]
    InUse { pool: String, addr: String },
    /// Owner, group or mode could not be applied.
    #[error("[pool {pool}] cannot set owner/group/mode of {addr}: {message}")]
    Permissions { pool: String, addr: String, message: String },
}

/// A bound listener, before the runtime takes it over.
#[derive(Debug)]
pub struct Listener {
    /// `pm_status_listen`: serves only the pool's status and ping pages.
    pub pages_only: bool,
    fd: OwnedFd,
    unix_path: Option<PathBuf>,
    tokio: Option<TokioListener>,
}

#[derive(Debug)]
enum TokioListener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

/// An accepted nginx connection.
pub enum Accepted {
    /// Over a unix socket.
    Unix(tokio::net::UnixStream),
    /// Over TCP.
    Tcp(tokio::net::TcpStream),
}

impl Accepted {
    /// Serves the connection to its end.
    pub async fn serve(self, current: watch::Receiver<Arc<Pool>>, shutdown: watch::Receiver<bool>, pages_only: bool) {
        match self {
            Accepted::Unix(mut s) => {
                let (rd, wr) = s.split();
                super::conn::serve(Conn::new(rd, wr, pages_only, None), current, shutdown).await
            }
            Accepted::Tcp(mut s) => {
                let _ = s.set_nodelay(true);
                // Only the access log's %R needs nginx's address.
                let wants_peer = current.borrow().logs.access().is_some_and(|log| log.wants_peer());
                let peer = if wants_peer { s.peer_addr().ok().map(|a| a.ip()) } else { None };
                let (rd, wr) = s.split();
                super::conn::serve(Conn::new(rd, wr, pages_only, peer), current, shutdown).await
            }
        }
    }
}

impl Listener {
    /// Accepts the next connection. Must run inside the tokio runtime.
    pub async fn accept(&self) -> std::io::Result<Accepted> {
        match self.tokio.as_ref() {
            Some(TokioListener::Unix(l)) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
            Some(TokioListener::Tcp(l)) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
            None => Err(std::io::Error::other("listener not registered with the runtime")),
        }
    }

    /// Hands the socket to the tokio runtime (call inside it).
    pub fn register(mut self) -> std::io::Result<Listener> {
        let fd = self.fd.try_clone()?;
        self.tokio = Some(if self.unix_path.is_some() {
            let std = std::os::unix::net::UnixListener::from(fd);
            std.set_nonblocking(true)?;
            TokioListener::Unix(tokio::net::UnixListener::from_std(std)?)
        } else {
            let std = std::net::TcpListener::from(fd);
            std.set_nonblocking(true)?;
            TokioListener::Tcp(tokio::net::TcpListener::from_std(std)?)
        });
        Ok(self)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A pool's listeners: `listen`, and `pm_status_listen` if set.
#[derive(Debug)]
pub struct PoolListeners {
    /// `listen`.
    pub main: Listener,
    /// `pm_status_listen`.
    pub status: Option<Listener>,
}

/// Binds the listen addresses of a pool.
pub fn bind(cfg: &config::Pool) -> Result<PoolListeners, ListenError> {
    let main = bind_at(cfg, &cfg.listen, false)?;
    let status = cfg.pm_status_listen.as_ref().map(|addr| bind_at(cfg, addr, true)).transpose()?;
    Ok(PoolListeners { main, status })
}

/// Binds `listen` (or the status listener: `pages_only`) with the pool's
/// backlog, owner, group and mode.
fn bind_at(cfg: &config::Pool, listen: &ListenAddr, pages_only: bool) -> Result<Listener, ListenError> {
    let addr = listen.to_string();
    let bind_err = |source: std::io::Error| ListenError::Bind { pool: cfg.name.clone(), addr: addr.clone(), source };
    let backlog = Backlog::new(cfg.listen_backlog).unwrap_or(Backlog::MAXCONN);
    match listen {
        ListenAddr::Unix(path) => {
            remove_stale(cfg, path)?;
            let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
                .map_err(io)
                .map_err(bind_err)?;
            sys_bind(fd.as_raw_fd(), &UnixAddr::new(path).map_err(io).map_err(bind_err)?)
                .map_err(io)
                .map_err(bind_err)?;
            sys_listen(&fd, backlog).map_err(io).map_err(bind_err)?;
            let listener = Listener { pages_only, fd, unix_path: Some(path.clone()), tokio: None };
            set_permissions(cfg, path)?;
            Ok(listener)
        }
        ListenAddr::Tcp(sa) => {
            let family = if sa.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
            let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(io).map_err(bind_err)?;
            setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(io).map_err(bind_err)?;
            sys_bind(fd.as_raw_fd(), &SockaddrStorage::from(*sa)).map_err(io).map_err(bind_err)?;
            sys_listen(&fd, backlog).map_err(io).map_err(bind_err)?;
            Ok(Listener { pages_only, fd, unix_path: None, tokio: None })
        }
    }
}

fn io(e: nix::Error) -> std::io::Error {
    std::io::Error::from(e)
}

/// Removes a socket file left by a dead process; refuses if something answers.
fn remove_stale(cfg: &config::Pool, path: &Path) -> Result<(), ListenError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let addr = path.display().to_string();
    if !meta.file_type().is_socket() {
        let source =
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a file that is not a socket is in the way");
        return Err(ListenError::Bind { pool: cfg.name.clone(), addr, source });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ListenError::InUse { pool: cfg.name.clone(), addr });
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

fn set_permissions(cfg: &config::Pool, path: &Path) -> Result<(), ListenError> {
    let err = |message: String| ListenError::Permissions {
        pool: cfg.name.clone(),
        addr: path.display().to_string(),
        message,
    };
    let mode = std::fs::Permissions::from_mode(cfg.listen_mode);
    std::fs::set_permissions(path, mode).map_err(|e| err(e.to_string()))?;
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(());
    }
    // As php-fpm: the socket belongs to the pool's user (and its group) by default.
    let owner = cfg.listen_owner.as_ref().or(cfg.user.as_ref());
    let uid = match owner {
        Some(name) => Some(lookup_user(name).ok_or_else(|| err(format!("no user '{name}'")))?),
        None => None,
    };
    let gid = match cfg.listen_group.as_ref().or(cfg.group.as_ref()) {
        Some(name) => Some(lookup_group(name).ok_or_else(|| err(format!("no group '{name}'")))?),
        None => uid.and_then(|u| User::from_uid(u).ok().flatten()).map(|u| u.gid),
    };
    chown(path, uid, gid).map_err(|e| err(e.to_string()))
}

fn lookup_user(name: &str) -> Option<nix::unistd::Uid> {
    match name.parse::<u32>() {
        Ok(n) => Some(nix::unistd::Uid::from_raw(n)),
        Err(_) => User::from_name(name).ok().flatten().map(|u| u.uid),
    }
}

fn lookup_group(name: &str) -> Option<nix::unistd::Gid> {
    match name.parse::<u32>() {
        Ok(n) => Some(nix::unistd::Gid::from_raw(n)),
        Err(_) => Group::from_name(name).ok().flatten().map(|g| g.gid),
    }
}
