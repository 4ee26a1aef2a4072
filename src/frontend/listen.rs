//! Binding a pool's listen address as php-fpm does: a unix socket with
//! `listen_owner`, `listen_group` and `listen_mode`, or TCP on IPv4/IPv6, each
//! with `listen_backlog`.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::AtFlags;
use nix::sys::socket::{
    bind as sys_bind, listen as sys_listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage, UnixAddr,
};
use nix::sys::stat::{fchmodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Group, Uid, User};
use tokio::sync::watch;

use super::connection::{Connection, Stream};
use crate::config::{self, ListenAddr};
use crate::pool::Pool;
use crate::sys::safe_fs::{self, Dir, FileId};

/// Errors while binding a listener.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// bind/listen failed. (`error` is shown in the message, so it is not the `source`: a
    /// chain would print it twice.)
    #[error("[pool {pool}] cannot listen on {addr}: {error}")]
    Bind { pool: String, addr: String, error: std::io::Error },
    /// Another process serves this unix socket.
    #[error("[pool {pool}] cannot listen on {addr}: another process is already listening there")]
    InUse { pool: String, addr: String },
    /// Owner, group or mode could not be applied.
    #[error("[pool {pool}] cannot set owner/group/mode of {addr}: {message}")]
    Permissions { pool: String, addr: String, message: String },
}

impl ListenError {
    /// php-fpm's words for this error, which scripts and its test-suite read: `unable to bind
    /// listening socket for address '9000': Address already in use (98)`.
    pub fn fpm_wording(&self) -> String {
        match self {
            ListenError::Bind { addr, error, .. } => match error.raw_os_error() {
                Some(n) => format!(
                    "unable to bind listening socket for address '{addr}': {} ({n})",
                    nix::errno::Errno::from_raw(n).desc()
                ),
                None => format!("unable to bind listening socket for address '{addr}': {error}"),
            },
            other => other.to_string(),
        }
    }
}

/// A bound listener. The front-end thread it is given to accepts on it through an
/// [`Acceptor`]; the socket file goes when the listener and every acceptor are dropped.
#[derive(Debug)]
pub struct Listener {
    /// `pm_status_listen`: serves only the pool's status and ping pages.
    pub pages_only: bool,
    fd: OwnedFd,
    /// A unix socket (else TCP).
    is_unix: bool,
    /// A unix socket's path, and the socket file bound there (removed at drop only if
    /// it is still that one); `None` for TCP and for sockets systemd passed.
    unix: Option<(PathBuf, FileId)>,
}

/// A front-end thread's handle on a [`Listener`], registered with that
/// thread's runtime.
#[derive(Debug)]
pub struct Acceptor {
    /// Kept for its socket file, removed when the last acceptor is dropped.
    listener: Arc<Listener>,
    tokio: TokioListener,
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
    pub async fn serve(
        self,
        current: watch::Receiver<Arc<Pool>>,
        shutdown: watch::Receiver<bool>,
        pages_only: bool,
        shed: super::shed::Shed,
    ) {
        match self {
            Accepted::Unix(s) => {
                let conn = Connection::new(Stream::Unix(s), pages_only, None, shed);
                super::conn::serve(conn, current, shutdown).await
            }
            Accepted::Tcp(s) => {
                let _ = s.set_nodelay(true);
                // Only the access log's %R needs nginx's address.
                let (wants_peer, allowed) = {
                    let pool = current.borrow();
                    (pool.logs.access().is_some_and(|log| log.wants_peer()), !pool.allowed_clients.is_empty())
                };
                let peer = if wants_peer || allowed { s.peer_addr().ok().map(|a| a.ip().to_canonical()) } else { None };
                if allowed && !current.borrow().allows(peer) {
                    return;
                }
                let conn = Connection::new(Stream::Tcp(s), pages_only, peer, shed);
                super::conn::serve(conn, current, shutdown).await
            }
        }
    }
}

impl std::os::fd::AsRawFd for Listener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Acceptor {
    /// Accepts the next connection. Must run inside the runtime it was registered with.
    /// tokio's readiness is edge-triggered: after a wake-up, each call accepts from the
    /// kernel's queue until it is empty (one `EAGAIN` per wake-up, not per connection).
    pub async fn accept(&self) -> std::io::Result<Accepted> {
        match &self.tokio {
            TokioListener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
            TokioListener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        }
    }

    /// `pm_status_listen`: serves only the pool's status and ping pages.
    pub fn pages_only(&self) -> bool {
        self.listener.pages_only
    }
}

/// Registers a shared listener with the current runtime (call inside it): a
/// duplicate of its descriptor, so that the front-end thread it is given to polls it in its own
/// reactor.
pub fn register(listener: &Arc<Listener>) -> std::io::Result<Acceptor> {
    let fd = listener.fd.try_clone()?;
    let tokio = if listener.is_unix {
        let std = std::os::unix::net::UnixListener::from(fd);
        std.set_nonblocking(true)?;
        TokioListener::Unix(tokio::net::UnixListener::from_std(std)?)
    } else {
        let std = std::net::TcpListener::from(fd);
        std.set_nonblocking(true)?;
        TokioListener::Tcp(tokio::net::TcpListener::from_std(std)?)
    };
    Ok(Acceptor { listener: listener.clone(), tokio })
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((path, id)) = &self.unix {
            let _ = safe_fs::remove_if_same(path, *id);
        }
    }
}

/// A pool's listeners: `listen`, and `pm_status_listen` if set.
#[derive(Debug)]
pub struct PoolListeners {
    /// `listen`.
    pub main: Listener,
    /// `pm_status_listen`: shared, as a reload may carry it to a pool whose `listen` changed.
    pub status: Option<Arc<Listener>>,
}

/// Binds the listen addresses of a pool; a `pm_status_listen` among `open`
/// (status listeners by address, of the pools running) is taken as it is.
pub fn bind(cfg: &config::Pool, open: &HashMap<String, Arc<Listener>>) -> Result<PoolListeners, ListenError> {
    let main = bind_at(cfg, &cfg.listen, false)?;
    let status = match &cfg.pm_status_listen {
        Some(addr) => match open.get(&addr.to_string()) {
            Some(listener) => Some(listener.clone()),
            None => Some(Arc::new(bind_at(cfg, addr, true)?)),
        },
        None => None,
    };
    Ok(PoolListeners { main, status })
}

/// Binds `listen` (or the status listener: `pages_only`) with the pool's
/// backlog, owner, group and mode.
fn bind_at(cfg: &config::Pool, listen: &ListenAddr, pages_only: bool) -> Result<Listener, ListenError> {
    let addr = listen.to_string();
    let bind_err = |error: std::io::Error| ListenError::Bind { pool: cfg.name.clone(), addr: addr.clone(), error };
    if let Some(listener) = activated::listener(cfg, listen, pages_only)? {
        return Ok(listener);
    }
    let backlog = Backlog::new(cfg.listen_backlog).unwrap_or(Backlog::MAXCONN);
    let fd = match listen {
        ListenAddr::Unix(path) => {
            let (fd, id) = bind_unix(cfg, path, backlog)?;
            return Ok(Listener { pages_only, fd, is_unix: true, unix: Some((path.clone(), id)) });
        }
        ListenAddr::Tcp(sa) => bind_tcp(*sa, None, backlog),
        // php-fpm's bare port: [::] for both families, else (no IPv6) 0.0.0.0.
        ListenAddr::Port(port) => bind_tcp((Ipv6Addr::UNSPECIFIED, *port).into(), Some(false), backlog).or_else(|_| {
            crate::notice!("Failed implicitly binding to ::, retrying with 0.0.0.0");
            bind_tcp((Ipv4Addr::UNSPECIFIED, *port).into(), None, backlog)
        }),
    };
    Ok(Listener { pages_only, fd: fd.map_err(bind_err)?, is_unix: false, unix: None })
}

/// A listening TCP socket at `sa`; `v6_only` sets `IPV6_V6ONLY` (else the system's default).
fn bind_tcp(sa: SocketAddr, v6_only: Option<bool>, backlog: Backlog) -> std::io::Result<OwnedFd> {
    let family = if sa.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(io)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(io)?;
    if let Some(only) = v6_only {
        setsockopt(&fd, sockopt::Ipv6V6Only, &only).map_err(io)?;
    }
    sys_bind(fd.as_raw_fd(), &SockaddrStorage::from(sa)).map_err(io)?;
    sys_listen(&fd, backlog).map_err(io)?;
    Ok(fd)
}

#[path = "listen_activated.rs"]
mod activated;

/// The name of the socket inside its private directory.
const PRIVATE_NAME: &str = "s";

/// Binds a unix socket that is never reachable at `path` before it has its owner and mode:
/// the ids are looked up first; the socket is bound in a new private directory next to
/// `path` (reached through its descriptor, so the address stays short), given its mode and
/// owner there with calls that follow no link, set listening, and renamed into place. The
/// rename replaces a stale socket; a live one, or anything else in the way, is refused.
fn bind_unix(cfg: &config::Pool, path: &Path, backlog: Backlog) -> Result<(OwnedFd, FileId), ListenError> {
    let bind_err =
        |error: std::io::Error| ListenError::Bind { pool: cfg.name.clone(), addr: path.display().to_string(), error };
    let acl = socket_acl(cfg, path)?;
    let ids = if acl.is_some() { None } else { socket_ids(cfg, path)? };
    let (parent, name) = safe_fs::split(path).map_err(bind_err)?;
    let dir = Dir::open(&parent).map_err(bind_err)?;
    check_in_the_way(cfg, &dir, &name, path)?;
    let (private, private_name) = dir.make_dir(".rustfpm-bind-", 0o700).map_err(bind_err)?;
    let bound = bind_private(cfg, &private, ids, acl.as_deref(), backlog)
        .and_then(|(fd, id)| private.rename_into(OsStr::new(PRIVATE_NAME), &dir, &name).map(|()| (fd, id)));
    if bound.is_err() {
        let _ = private.remove(OsStr::new(PRIVATE_NAME));
    }
    let _ = dir.remove_dir(&private_name);
    bound.map_err(bind_err)
}

/// Owner and group the socket gets: `None` when rustfpm is not root (it cannot chown).
type SocketIds = Option<(Option<Uid>, Option<Gid>)>;

/// Binds, sets mode and owner (or the ACL), and listens, inside the private directory `private`.
fn bind_private(
    cfg: &config::Pool,
    private: &Dir,
    ids: SocketIds,
    acl: Option<&[u8]>,
    backlog: Backlog,
) -> std::io::Result<(OwnedFd, FileId)> {
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(io)?;
    let inside = private.path_through_fd(OsStr::new(PRIVATE_NAME));
    sys_bind(fd.as_raw_fd(), &UnixAddr::new(inside.as_path()).map_err(io)?).map_err(io)?;
    let mode = Mode::from_bits_truncate(cfg.listen_mode);
    fchmodat(Some(private.fd()), PRIVATE_NAME, mode, FchmodatFlags::FollowSymlink).map_err(io)?;
    if let Some((uid, gid)) = ids {
        fchownat(Some(private.fd()), PRIVATE_NAME, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io)?;
    }
    if let Some(acl) = acl {
        private.set_access_acl(OsStr::new(PRIVATE_NAME), acl)?;
    }
    sys_listen(&fd, backlog).map_err(io)?;
    let id = private.id_of(OsStr::new(PRIVATE_NAME))?;
    Ok((fd, id))
}

fn io(e: nix::Error) -> std::io::Error {
    std::io::Error::from(e)
}

/// Refuses what is at `name` in `dir` unless it is a socket no one answers on (left by a
/// dead process; the rename replaces it). Nothing is followed or removed here.
fn check_in_the_way(cfg: &config::Pool, dir: &Dir, name: &OsStr, path: &Path) -> Result<(), ListenError> {
    let addr = path.display().to_string();
    let bind_err = |error: std::io::Error| ListenError::Bind { pool: cfg.name.clone(), addr: addr.clone(), error };
    let Some(st) = dir.entry(name).map_err(bind_err)? else {
        return Ok(());
    };
    if !safe_fs::is(&st, SFlag::S_IFSOCK) {
        let kind = if safe_fs::is(&st, SFlag::S_IFLNK) { "a symbolic link" } else { "a file that is not a socket" };
        let owner = safe_fs::Owner(st.st_uid);
        let message = format!("{kind} is in the way (owned by {owner}); refusing to replace it");
        return Err(bind_err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, message)));
    }
    if std::os::unix::net::UnixStream::connect(dir.path_through_fd(name)).is_ok() {
        return Err(ListenError::InUse { pool: cfg.name.clone(), addr });
    }
    Ok(())
}

/// The socket's POSIX ACL (`listen_acl_users`, `listen_acl_groups`), looked up before
/// anything is bound: as php-fpm, the mode's entries plus read and write for each user and
/// group. php-fpm then leaves the owner alone, so `listen_owner`/`listen_group` are ignored.
fn socket_acl(cfg: &config::Pool, path: &Path) -> Result<Option<Vec<u8>>, ListenError> {
    if cfg.listen_acl_users.is_empty() && cfg.listen_acl_groups.is_empty() {
        return Ok(None);
    }
    let err = |message: String| ListenError::Permissions {
        pool: cfg.name.clone(),
        addr: path.display().to_string(),
        message,
    };
    let uids = cfg.listen_acl_users.iter().map(|name| lookup_user(name).map(|u| u.as_raw()).ok_or(name));
    let uids = uids.collect::<Result<BTreeSet<u32>, _>>().map_err(|name| err(format!("no user '{name}'")))?;
    let gids = cfg.listen_acl_groups.iter().map(|name| lookup_group(name).map(|g| g.as_raw()).ok_or(name));
    let gids = gids.collect::<Result<BTreeSet<u32>, _>>().map_err(|name| err(format!("no group '{name}'")))?;
    for (key, value) in [("listen.owner", &cfg.listen_owner), ("listen.group", &cfg.listen_group)] {
        if let Some(value) = value {
            crate::warning!("[pool {}] ACL set, {key} = '{value}' is ignored", cfg.name);
        }
    }
    Ok(Some(posix_acl(cfg.listen_mode, &uids, &gids)))
}

/// The kernel's `system.posix_acl_access` value: the entries of `mode`, read and write for
/// `uids` and `gids`, and the mask they need (entries in the kernel's order, ids ascending).
fn posix_acl(mode: u32, uids: &BTreeSet<u32>, gids: &BTreeSet<u32>) -> Vec<u8> {
    const VERSION: u32 = 2;
    // The kernel's tags (include/uapi/linux/posix_acl.h).
    const USER_OBJ: u16 = 0x01;
    const USER: u16 = 0x02;
    const GROUP_OBJ: u16 = 0x04;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    const NO_ID: u32 = u32::MAX;
    const READ_WRITE: u16 = 0o6;
    let bits = |shift: u32| ((mode >> shift) & 0o7) as u16;
    let mut acl = VERSION.to_le_bytes().to_vec();
    let mut entry = |tag: u16, perm: u16, id: u32| {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    };
    entry(USER_OBJ, bits(6), NO_ID);
    uids.iter().for_each(|&uid| entry(USER, READ_WRITE, uid));
    entry(GROUP_OBJ, bits(3), NO_ID);
    gids.iter().for_each(|&gid| entry(GROUP, READ_WRITE, gid));
    entry(MASK, READ_WRITE | bits(3), NO_ID);
    entry(OTHER, bits(0), NO_ID);
    acl
}

/// The socket's owner and group, looked up before anything is bound. As php-fpm: the
/// socket belongs to the pool's user (and its group) by default.
fn socket_ids(cfg: &config::Pool, path: &Path) -> Result<SocketIds, ListenError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(None);
    }
    let err = |message: String| ListenError::Permissions {
        pool: cfg.name.clone(),
        addr: path.display().to_string(),
        message,
    };
    let owner = cfg.listen_owner.as_ref().or(cfg.user.as_ref());
    let uid = match owner {
        Some(name) => Some(lookup_user(name).ok_or_else(|| err(format!("no user '{name}'")))?),
        None => None,
    };
    let gid = match cfg.listen_group.as_ref().or(cfg.group.as_ref()) {
        Some(name) => Some(lookup_group(name).ok_or_else(|| err(format!("no group '{name}'")))?),
        None => uid.and_then(|u| User::from_uid(u).ok().flatten()).map(|u| u.gid),
    };
    Ok(Some((uid, gid)))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry as the kernel reads it: tag, permissions, id (little-endian).
    fn entries(acl: &[u8]) -> Vec<(u16, u16, u32)> {
        assert_eq!(acl[..4], 2u32.to_le_bytes(), "version");
        let entry = |e: &[u8]| {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            (tag, u16::from_le_bytes([e[2], e[3]]), u32::from_le_bytes([e[4], e[5], e[6], e[7]]))
        };
        acl[4..].chunks(8).map(entry).collect()
    }

    #[test]
    fn an_acl_adds_read_and_write_for_each_user_and_group_to_the_mode() {
        let acl = posix_acl(0o640, &BTreeSet::from([33, 1]), &BTreeSet::from([4]));
        let none = u32::MAX;
        let expected = [
            (0x01, 6, none),
            (0x02, 6, 1),
            (0x02, 6, 33),
            (0x04, 4, none),
            (0x08, 6, 4),
            (0x10, 6, none),
            (0x20, 0, none),
        ];
        assert_eq!(entries(&acl), expected);
        let only_groups = posix_acl(0o600, &BTreeSet::new(), &BTreeSet::from([7]));
        assert_eq!(
            entries(&only_groups),
            [(0x01, 6, none), (0x04, 0, none), (0x08, 6, 7), (0x10, 6, none), (0x20, 0, none)]
        );
    }
}
