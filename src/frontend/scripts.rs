//! Script lookups on the file system, off the runtime thread.
//!
//! Whether a request's script exists (and which prefix of its path php-cgi
//! would run) takes `stat` calls: one per path component in the worst case,
//! and a slow disk or NFS can stall each of them. They run on a few dedicated
//! threads fed by a bounded channel; the front end only `try_send`s (a full
//! queue answers [`Busy`], never an await on a blocking call) and awaits a
//! oneshot. Answers are cached on the runtime thread, hits and misses alike,
//! for [`CACHE_TTL`], in a cache bounded in entries and bytes. One lookup per
//! path runs at a time: requests for a path being looked up wait for that
//! answer, or take the expired one while it is renewed, so a path that every
//! request asks for sends one job per [`CACHE_TTL`], not one per request in
//! flight when its answer expires (512 of them overflowed the queue: 503s).
//!
//! With a `chroot`, paths are resolved with `openat2(RESOLVE_IN_ROOT)` on the
//! chroot directory: `..` and absolute symlinks stop at the chroot, exactly as
//! for the chrooted children, so no request can make rustfpm look at a host
//! file outside it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

pub use crate::pool::LookupShare as Share;

/// Longest script path looked up (Linux `PATH_MAX`, which counts the final NUL).
pub const PATH_MAX: usize = libc::PATH_MAX as usize - 1;
/// Threads that run the lookups.
pub const LOOKUP_THREADS: usize = 2;
/// Lookups waiting for a thread; past it the request is answered 503.
pub const LOOKUP_QUEUE: usize = 256;
/// How long a request waits for its lookup (a hung NFS server, say) before
/// it is answered 503.
pub const LOOKUP_WAIT: Duration = Duration::from_secs(5);
/// How long an answer is trusted without another look (PHP's own realpath
/// cache trusts paths for 120 s): a new or deleted file is seen within this time.
pub const CACHE_TTL: Duration = Duration::from_secs(1);
/// Most answers cached; the cache is emptied when full.
pub const CACHE_MAX_ENTRIES: usize = 4096;
/// Most path bytes the cache holds; the cache is emptied past it.
pub const CACHE_MAX_BYTES: usize = 1024 * 1024;

/// What to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Query {
    /// The file php-cgi runs for the path with `cgi.fix_pathinfo=1`: the path
    /// itself, or the longest prefix ending before a `/` that is a regular file.
    Primary,
    /// Whether the path itself is a regular file.
    Exact,
}

/// What the file system said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The first `len` bytes of the path name a regular file.
    Script(usize),
    /// No regular file.
    Missing,
}

/// Most lookups of one pool waiting for or on a lookup thread: a pool whose
/// requests ask for costly paths (thousands of components, each prefix
/// another walk) fills its own part of the queue, not the one every pool uses.
pub const SHARE_MAX: usize = LOOKUP_QUEUE / 4;

/// Takes a place in `share` for one more lookup; none past [`SHARE_MAX`].
fn take(share: &Share) -> Option<Held> {
    let held = Held(share.queued.clone());
    (share.queued.fetch_add(1, Ordering::Relaxed) < SHARE_MAX).then_some(held)
}

/// One lookup's place in its pool's share, given back when the lookup ends
/// (dropped with its job, once a thread has run it, or if it is never queued).
struct Held(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a pool's lookups happen: its chroot, and its share of the queue.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The pool's `chroot`: paths are resolved inside it.
    pub chroot: Option<&'a Path>,
    pub share: &'a Share,
}

/// Where and as whom a lookup runs: inside the pool's chroot, if any, and with
/// its user's filesystem ids (a lookup sees only what the pool's user could
/// see, so an answer tells them nothing about a directory they cannot read;
/// none when rustfpm starts no user's children). Answers are kept apart by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Realm<'a> {
    /// The pool's `chroot`.
    pub root: Option<&'a Path>,
    /// The pool user's uid and gid.
    pub ids: Option<(u32, u32)>,
}

/// Every lookup thread is busy and the queue is full (or the threads could
/// not be started): the request gets a 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the script lookup queue is full")]
pub struct Busy;

/// Looks `path` up (inside `root`, when the pool is chrooted): from the
/// cache, else on a lookup thread. Never blocks the calling thread.
pub async fn lookup(scope: Scope<'_>, query: Query, path: &[u8]) -> Result<Found, Busy> {
    let realm = Realm { root: scope.chroot, ids: scope.share.ids };
    let look = || async move { ask(queue().ok_or(Busy)?, scope.share, realm, query, path).await };
    cached_or(realm, query, path, look).await
}

/// The cached answer for `path`; else the answer of the lookup of it already
/// running on this thread (its expired answer meanwhile, if there is one);
/// else the answer of `look` (which this request then runs for the others).
async fn cached_or<F, Fut>(realm: Realm<'_>, query: Query, path: &[u8], look: F) -> Result<Found, Busy>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Found, Busy>>,
{
    let (mut look, mut waited) = (Some(look), false);
    loop {
        let cached = CACHE.with_borrow(|c| c.get_any(realm, query, path, Instant::now()));
        if let Some((found, true)) = cached {
            return Ok(found);
        }
        let key = pending_key(realm, query, path);
        let running = PENDING.with_borrow(|p| p.get(&key).cloned());
        match (running, cached) {
            (Some(_), Some((expired, _))) => return Ok(expired),
            (Some(other), None) if !waited => {
                waited = true;
                let _ = tokio::time::timeout(LOOKUP_WAIT, other.done.notified()).await;
                // Its answer is cached; or it got none (Busy: so would this one, after as
                // long); or its request went away mid-lookup: then this one looks itself.
                if other.failed.load(Ordering::Relaxed) {
                    return Err(Busy);
                }
                continue;
            }
            _ => {}
        }
        let look = look.take().ok_or(Busy)?;
        let running = Running::start(key);
        let found = look().await.inspect_err(|_| running.pending.failed.store(true, Ordering::Relaxed))?;
        CACHE.with_borrow_mut(|c| c.insert(realm, query, path, found, Instant::now()));
        return Ok(found);
    }
}

/// What identifies a lookup in [`PENDING`]: the realm, the query and the path.
fn pending_key(realm: Realm<'_>, query: Query, path: &[u8]) -> Vec<u8> {
    let root = realm.root.map_or(&[][..], |r| r.as_os_str().as_bytes());
    let mut key = Vec::with_capacity(root.len() + path.len() + 11);
    key.extend_from_slice(root);
    key.push(0);
    if let Some((uid, gid)) = realm.ids {
        key.extend_from_slice(&uid.to_le_bytes());
        key.extend_from_slice(&gid.to_le_bytes());
    }
    key.push(query as u8);
    key.extend_from_slice(path);
    key
}

/// What the requests waiting for a lookup see of it.
#[derive(Default)]
struct Pending {
    /// Woken when the lookup ends or its request goes away.
    done: tokio::sync::Notify,
    /// It ended without an answer.
    failed: AtomicBool,
}

/// A lookup running on this thread, in [`PENDING`] until it ends or its
/// request goes away; either way the requests waiting for it are woken.
struct Running {
    key: Vec<u8>,
    pending: Arc<Pending>,
}

impl Running {
    fn start(key: Vec<u8>) -> Running {
        let pending = Arc::<Pending>::default();
        PENDING.with_borrow_mut(|p| p.insert(key.clone(), pending.clone()));
        Running { key, pending }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        PENDING.with_borrow_mut(|p| p.remove(&self.key));
        self.pending.done.notify_waiters();
    }
}

/// Queues one lookup on `tx` and waits for its answer, at most [`LOOKUP_WAIT`].
async fn ask(tx: &Sender<Job>, share: &Share, realm: Realm<'_>, query: Query, path: &[u8]) -> Result<Found, Busy> {
    let held = take(share).ok_or(Busy)?;
    let (reply, answer) = oneshot::channel();
    let root = realm.root.map(Path::to_path_buf);
    let user = realm.ids.map(|(uid, gid)| User { uid, gid, groups: share.groups.clone() });
    let job = Job { root, user, query, path: path.to_vec(), reply, _held: held };
    tx.try_send(job).map_err(|e| match e {
        TrySendError::Full(_) | TrySendError::Disconnected(_) => Busy,
    })?;
    match tokio::time::timeout(LOOKUP_WAIT, answer).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(_)) | Err(_) => Err(Busy),
    }
}

/// One lookup for a lookup thread.
struct Job {
    root: Option<PathBuf>,
    user: Option<User>,
    query: Query,
    path: Vec<u8>,
    reply: oneshot::Sender<Found>,
    _held: Held,
}

static QUEUE: OnceLock<Option<Sender<Job>>> = OnceLock::new();

/// The lookup threads' queue, started on first use; None if no thread could start.
fn queue() -> Option<&'static Sender<Job>> {
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = bounded(LOOKUP_QUEUE);
            let started = (0..LOOKUP_THREADS).filter(|i| spawn_thread(*i, rx.clone())).count();
            (started > 0).then_some(tx)
        })
        .as_ref()
}

fn spawn_thread(i: usize, rx: Receiver<Job>) -> bool {
    let spawned = std::thread::Builder::new().name(format!("rustfpm-lookup-{i}")).spawn(move || {
        for job in rx {
            let found = resolve_as(job.user.as_ref(), job.root.as_deref(), job.query, &job.path);
            let _ = job.reply.send(found);
        }
    });
    match spawned {
        Ok(_) => true,
        Err(e) => {
            crate::error!("cannot start a script lookup thread: {e}");
            false
        }
    }
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (after following symlinks).
    Regular,
    /// Something else that exists: a directory, a device…
    Other,
    /// Nothing (or not reachable).
    Missing,
}

/// Answers `query` for `path` on the file system. Blocks: lookup threads only.
#[cfg(test)]
pub fn resolve(root: Option<&Path>, query: Query, path: &[u8]) -> Found {
    resolve_as(None, root, query, path)
}

/// Whom a lookup runs as: the pool's user, with its supplementary groups (as its children).
#[derive(Debug, Clone)]
struct User {
    uid: u32,
    gid: u32,
    groups: Arc<[u32]>,
}

/// The lookup thread as `User` until dropped: its filesystem ids and its
/// supplementary groups, set with the raw system call, which changes the
/// calling thread only (glibc's `setgroups` changes every thread's).
struct AsUser {
    _fs: crate::sys::procfs::FsIds,
    groups: Option<Vec<libc::gid_t>>,
}

/// The calling thread's supplementary groups become `ids` (the raw system call); false if refused.
fn set_thread_groups(ids: &[libc::gid_t]) -> bool {
    // SAFETY: SYS_setgroups reads `len` ids from the slice, which lives through the call.
    unsafe { libc::syscall(libc::SYS_setgroups, ids.len(), ids.as_ptr()) == 0 }
}

impl AsUser {
    fn set(user: &User) -> AsUser {
        // getgroups reads the calling thread's groups.
        let before: Option<Vec<libc::gid_t>> =
            nix::unistd::getgroups().ok().map(|groups| groups.iter().map(|g| g.as_raw()).collect());
        let groups = before.filter(|_| set_thread_groups(&user.groups));
        AsUser { _fs: crate::sys::procfs::FsIds::set(user.uid, user.gid), groups }
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        if let Some(before) = &self.groups {
            set_thread_groups(before);
        }
    }
}

/// [`resolve`] as `user` (the pool's), if given. The chroot is opened
/// before, as root: php-cgi is chrooted by root, so the directories above
/// the jail need not be open to the pool's user.
fn resolve_as(user: Option<&User>, root: Option<&Path>, query: Query, path: &[u8]) -> Found {
    let as_user = || user.map(AsUser::set);
    match root {
        None => {
            let _as = as_user();
            // The usual request names its script: one `stat`. Else one walk.
            match (query, path.ends_with(b"/")) {
                (Query::Primary, true) => primary_in_one_walk(path),
                (query, _) => match kind_of(std::fs::metadata(OsStr::from_bytes(path))) {
                    Kind::Regular => Found::Script(path.len()),
                    Kind::Missing if query == Query::Primary => primary_in_one_walk(path),
                    Kind::Missing | Kind::Other => Found::Missing,
                },
            }
        }
        Some(root) => match open_dir(root) {
            Ok(dir) => {
                let _as = as_user();
                answer(query, path, |p| kind_in_root(&dir, p))
            }
            Err(e) => {
                crate::error!("cannot open the chroot {}: {e}; its scripts are not found", root.display());
                Found::Missing
            }
        },
    }
}

/// `query` for `path`, with `stat` saying what each path names: php-cgi's
/// `init_request_info` with `cgi.fix_pathinfo=1`. The path is used as it is
/// when it exists and does not end in `/`; otherwise components are cut off
/// at each `/` from the end until a prefix is a regular file.
pub fn answer(query: Query, path: &[u8], mut stat: impl FnMut(&[u8]) -> Kind) -> Found {
    if path.is_empty() {
        return Found::Missing;
    }
    if query == Query::Exact || !path.ends_with(b"/") {
        match stat(path) {
            Kind::Regular => return Found::Script(path.len()),
            // php-cgi takes an existing path as it is and fails to run a directory.
            Kind::Other => return Found::Missing,
            Kind::Missing if query == Query::Exact => return Found::Missing,
            Kind::Missing => {}
        }
    }
    let mut end = path.len();
    while let Some(slash) = path[..end].iter().rposition(|&b| b == b'/') {
        end = slash;
        if end > 0 && stat(&path[..end]) == Kind::Regular {
            return Found::Script(end);
        }
    }
    Found::Missing
}

/// [`answer`] for [`Query::Primary`] on the file system in one walk: each
/// component is opened from the directory before it, so a path of n
/// components costs n lookups, where a `stat` of each prefix costs about
/// n²/2 (thousands of `./` made one lookup take ~57 ms). Walking forward, the
/// first component that is a regular file is the only prefix that can be one
/// (past it every path fails), so it is php-cgi's script if it ends the path
/// or a `/` follows it.
fn primary_in_one_walk(path: &[u8]) -> Found {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    // None: the working directory, for a relative path (the kernel's start too).
    let mut dir: Option<OwnedFd> = None;
    if path.starts_with(b"/") {
        match openat(None, "/", flags | OFlag::O_DIRECTORY, Mode::empty()) {
            // SAFETY: openat returned a new descriptor that nobody else owns.
            Ok(fd) => dir = Some(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(_) => return Found::Missing,
        }
    }
    let mut start = 0;
    while start < path.len() {
        let end = path[start..].iter().position(|&b| b == b'/').map_or(path.len(), |i| start + i);
        let name = &path[start..end];
        start = end + 1;
        // `.` names the directory the walk is in (a file before it ended the walk).
        if name.is_empty() || name == b"." {
            continue;
        }
        let Ok(name) = CString::new(name) else { return Found::Missing };
        let Ok(fd) = openat(dir.as_ref().map(AsRawFd::as_raw_fd), name.as_c_str(), flags, Mode::empty()) else {
            return Found::Missing;
        };
        // SAFETY: openat returned a new descriptor that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let Ok(st) = fstat(fd.as_raw_fd()) else { return Found::Missing };
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            // Each open followed at most 40 links; the kernel allows 40 for the
            // whole path, as php-cgi resolves it: one `stat` of the script says.
            SFlag::S_IFREG => {
                return answer(Query::Exact, &path[..end], |p| kind_of(std::fs::metadata(OsStr::from_bytes(p))))
            }
            SFlag::S_IFDIR => dir = Some(fd),
            _ => return Found::Missing,
        }
    }
    Found::Missing
}

fn kind_of(meta: std::io::Result<std::fs::Metadata>) -> Kind {
    match meta {
        Ok(m) if m.is_file() => Kind::Regular,
        Ok(_) => Kind::Other,
        Err(_) => Kind::Missing,
    }
}

fn open_dir(root: &Path) -> std::io::Result<OwnedFd> {
    let c = CString::new(root.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string; the fd is checked before use.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The kernel's `struct open_how` (openat2(2)).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// What `path` names inside the directory `root`, resolved as if `root` were
/// `/` (`RESOLVE_IN_ROOT`): `..` and absolute symlinks cannot leave it.
fn kind_in_root(root: &OwnedFd, path: &[u8]) -> Kind {
    let Ok(c) = CString::new(path) else {
        return Kind::Missing;
    };
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and an
    // open_how whose size is passed with it.
    let fd =
        unsafe { libc::syscall(libc::SYS_openat2, root.as_raw_fd(), c.as_ptr(), &how, std::mem::size_of::<OpenHow>()) };
    if fd < 0 {
        return Kind::Missing;
    }
    // SAFETY: the syscall returned a new descriptor that nobody else owns.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    kind_of(file.metadata())
}

thread_local! {
    // The front end runs on one thread: a per-thread cache is never shared.
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    /// The lookups running on this thread, by [`pending_key`].
    static PENDING: RefCell<HashMap<Vec<u8>, Arc<Pending>>> = RefCell::new(HashMap::new());
}

/// Whose answers a [`Cache`] entry keeps: a realm's root and ids, and a query.
type Kept = (Option<PathBuf>, Option<(u32, u32)>, Query);

/// Answers for one root and query: path → (when looked up, answer).
type Answers = HashMap<Vec<u8>, (Instant, Found)>;

/// Lookup answers per root (`None`: no chroot) and query, each with the time
/// it was looked up. Bounded by [`CACHE_MAX_ENTRIES`] and [`CACHE_MAX_BYTES`].
#[derive(Debug, Default)]
pub struct Cache {
    roots: Vec<(Kept, Answers)>,
    entries: usize,
    bytes: usize,
    /// The answer inserted last, compared before the map is hashed: a site with one
    /// front controller asks for the same path on every request, and the comparison
    /// spares it the map's SipHash (kept for paths that clients choose): ~300
    /// instructions per request in `callgrind.sh` (851e2e6).
    last: Option<Last>,
}

/// [`Cache::last`]: an answer and where it is in the cache.
#[derive(Debug)]
struct Last {
    /// Index of its root and query in [`Cache::roots`].
    root: usize,
    path: Vec<u8>,
    at: Instant,
    found: Found,
}

impl Cache {
    /// The answer for `path`, if it was looked up less than [`CACHE_TTL`] before `now`.
    #[cfg(test)]
    pub fn get(&self, realm: Realm<'_>, query: Query, path: &[u8], now: Instant) -> Option<Found> {
        self.get_any(realm, query, path, now).filter(|(_, fresh)| *fresh).map(|(found, _)| found)
    }

    /// The answer for `path`, and whether it is still fresh (looked up less than
    /// [`CACHE_TTL`] before `now`).
    pub fn get_any(&self, realm: Realm<'_>, query: Query, path: &[u8], now: Instant) -> Option<(Found, bool)> {
        let i = self.position(realm, query)?;
        let (at, found) = match &self.last {
            Some(last) if last.root == i && last.path == path => (last.at, last.found),
            _ => *self.roots[i].1.get(path)?,
        };
        Some((found, now.saturating_duration_since(at) < CACHE_TTL))
    }

    /// Remembers `found` for `path`; empties the cache first when it is full.
    pub fn insert(&mut self, realm: Realm<'_>, query: Query, path: &[u8], found: Found, now: Instant) {
        let size = path.len() + realm.root.map_or(0, |r| r.as_os_str().len());
        if self.entries >= CACHE_MAX_ENTRIES || self.bytes + size > CACHE_MAX_BYTES {
            *self = Cache::default();
        }
        let at = match self.position(realm, query) {
            Some(at) => at,
            None => {
                self.roots.push(((realm.root.map(Path::to_path_buf), realm.ids, query), HashMap::new()));
                self.roots.len() - 1
            }
        };
        if self.roots[at].1.insert(path.to_vec(), (now, found)).is_none() {
            self.entries += 1;
            self.bytes += size;
        }
        match &mut self.last {
            Some(last) if last.root == at && last.path == path => (last.at, last.found) = (now, found),
            // Another path (a client asking for many may make this every request): its
            // bytes go into the buffer the last one had.
            Some(last) => {
                last.path.clear();
                last.path.extend_from_slice(path);
                (last.root, last.at, last.found) = (at, now, found);
            }
            None => self.last = Some(Last { root: at, path: path.to_vec(), at: now, found }),
        }
    }

    /// Where the answers of `realm` and `query` are kept.
    fn position(&self, realm: Realm<'_>, query: Query) -> Option<usize> {
        self.roots.iter().position(|((r, ids, q), _)| r.as_deref() == realm.root && *ids == realm.ids && *q == query)
    }

    /// Answers held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Path bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A host directory with `secret.php` and, inside it, a chroot `jail` with `www/a.php`.
    pub(crate) fn jail() -> (tempfile::TempDir, PathBuf) {
        let host = tempfile::tempdir().unwrap();
        let root = host.path().join("jail");
        std::fs::create_dir_all(root.join("www")).unwrap();
        std::fs::write(root.join("www/a.php"), "<?php").unwrap();
        std::fs::write(host.path().join("secret.php"), "<?php").unwrap();
        (host, root)
    }

    /// A fake file system: the regular files and the directories.
    fn fs<'a>(files: &'a [&str], dirs: &'a [&str]) -> impl FnMut(&[u8]) -> Kind + 'a {
        move |p: &[u8]| {
            if files.iter().any(|f| f.as_bytes() == p) {
                Kind::Regular
            } else if dirs.iter().any(|d| d.as_bytes() == p) {
                Kind::Other
            } else {
                Kind::Missing
            }
        }
    }

    #[test]
    fn primary_script_is_found_as_php_cgi_finds_it() {
        let (files, dirs) = (&["/w/index.php", "/w/x.jpg", "/w/d/../x.jpg"][..], &["/w", "/w/d"][..]);
        let primary = |p: &str| answer(Query::Primary, p.as_bytes(), fs(files, dirs));
        assert_eq!(primary("/w/index.php"), Found::Script(12));
        assert_eq!(primary("/w/index.php/a/b"), Found::Script(12));
        assert_eq!(primary("/w/x.jpg/y.php"), Found::Script(8));
        // A trailing slash makes php-cgi cut even an existing path.
        assert_eq!(primary("/w/x.jpg/"), Found::Script(8));
        // php-cgi cuts at every `/`, also in `.` and `..` components.
        assert_eq!(primary("/w/x.jpg/."), Found::Script(8));
        assert_eq!(primary("/w/d/../x.jpg/z"), Found::Script(13));
        assert_eq!(primary("/w/d"), Found::Missing, "a directory is not run");
        assert_eq!(primary("/w/missing.php"), Found::Missing);
        assert_eq!(primary(""), Found::Missing);
        assert_eq!(answer(Query::Exact, b"/w/x.jpg/y.php", fs(files, dirs)), Found::Missing);
        assert_eq!(answer(Query::Exact, b"/w/x.jpg", fs(files, dirs)), Found::Script(8));
    }

    /// As the pool's user, a lookup finds what that user can reach, and in a chroot
    /// whose parent directories only root may enter (php-cgi is chrooted by root).
    #[test]
    fn lookups_as_the_pool_user_see_what_it_sees() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let groups_before = nix::unistd::getgroups().unwrap();
        let nobody = User { uid: 65534, gid: 65534, groups: Arc::from([65534]) };
        let (host, root) = jail();
        std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(resolve_as(Some(&nobody), Some(&root), Query::Primary, b"/www/a.php/x"), Found::Script(10));
        let secret = host.path().join("secret.php");
        let secret = secret.as_os_str().as_bytes();
        assert_eq!(resolve_as(None, None, Query::Primary, secret), Found::Script(secret.len()));
        assert_eq!(resolve_as(Some(&nobody), None, Query::Primary, secret), Found::Missing);
        assert_eq!(resolve_as(Some(&nobody), None, Query::Exact, secret), Found::Missing);
        // A directory open to a supplementary group of the user (gid 100) is open to the lookup.
        std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::chown(host.path(), Some(0), Some(100)).unwrap();
        let member = User { groups: Arc::from([65534, 100]), ..nobody.clone() };
        assert_eq!(resolve_as(Some(&member), None, Query::Primary, secret), Found::Script(secret.len()));
        assert_eq!(resolve_as(Some(&nobody), None, Query::Primary, secret), Found::Missing);
        assert_eq!(nix::unistd::setfsuid(nix::unistd::Uid::from_raw(0)).as_raw(), 0, "root's ids are back");
        assert_eq!(nix::unistd::getgroups().unwrap(), groups_before, "root's groups are back");
    }

    /// Answers are kept per user: one pool's answer is not another's.
    #[test]
    fn answers_are_kept_apart_by_user() {
        let mut cache = Cache::default();
        let t0 = Instant::now();
        let www = Realm { root: None, ids: Some((33, 33)) };
        cache.insert(www, Query::Primary, b"/a", Found::Script(2), t0);
        assert_eq!(cache.get(www, Query::Primary, b"/a", t0), Some(Found::Script(2)));
        assert_eq!(cache.get(Realm::default(), Query::Primary, b"/a", t0), None);
        assert_eq!(cache.get(Realm { root: None, ids: Some((34, 34)) }, Query::Primary, b"/a", t0), None);
        assert_ne!(pending_key(www, Query::Primary, b"/a"), pending_key(Realm::default(), Query::Primary, b"/a"));
    }

    /// The one walk gives what a `stat` of each prefix gives, for every shape of path.
    #[test]
    fn the_one_walk_answers_as_the_prefix_stats_do() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().display().to_string();
        std::fs::create_dir_all(tmp.path().join("d/e")).unwrap();
        std::fs::write(tmp.path().join("a.php"), "").unwrap();
        std::fs::write(tmp.path().join("d/b.php"), "").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("a.php"), tmp.path().join("file-link")).unwrap();
        std::os::unix::fs::symlink("d", tmp.path().join("dir-link")).unwrap();
        std::os::unix::fs::symlink("nowhere", tmp.path().join("dangling")).unwrap();
        std::os::unix::fs::symlink("loop", tmp.path().join("loop")).unwrap();
        // 41 links in one path, each a link to the directory: the kernel allows 40.
        std::os::unix::fs::symlink(".", tmp.path().join("d/here")).unwrap();
        let links = "here/".repeat(41);
        let dots = "./".repeat(300);
        let shapes = [
            "/a.php",
            "/a.php/",
            "/a.php/x/y",
            "/a.php/.",
            "/a.php/../a.php",
            "//a.php",
            "/./a.php//x",
            "/d",
            "/d/",
            "/d/b.php",
            "/d/b.php/info",
            "/d/e/../b.php/i",
            "/d/e/../../a.php",
            "/missing.php",
            "/d/missing/x",
            "/file-link",
            "/file-link/info",
            "/dir-link/b.php/x",
            "/dangling/x",
            "/loop/x",
            "/d/e/",
            "",
            "/",
        ];
        let stat = |p: &[u8]| kind_of(std::fs::metadata(OsStr::from_bytes(p)));
        let mut paths: Vec<String> = shapes.iter().map(|s| format!("{t}{s}")).collect();
        paths.push(format!("{t}/{dots}d/{dots}b.php/{dots}x"));
        paths.extend([format!("{t}/d/{links}b.php/x"), format!("{t}/d/{}b.php/x", "here/".repeat(39))]);
        paths.extend(["relative/x.php".to_string(), "/".to_string(), String::new()]);
        for path in &paths {
            let p = path.as_bytes();
            assert_eq!(primary_in_one_walk(p), answer(Query::Primary, p, stat), "{path}");
            assert_eq!(resolve(None, Query::Primary, p), answer(Query::Primary, p, stat), "{path}");
            assert_eq!(resolve(None, Query::Exact, p), answer(Query::Exact, p, stat), "{path}");
        }
        assert_eq!(primary_in_one_walk(format!("{t}/d/b.php/x").as_bytes()), Found::Script(t.len() + 8));
    }

    #[test]
    fn chroot_lookups_stay_inside_the_chroot() {
        let (host, root) = jail();
        std::os::unix::fs::symlink(host.path().join("secret.php"), root.join("www/abs.php")).unwrap();
        std::os::unix::fs::symlink("/www/a.php", root.join("www/inside.php")).unwrap();
        let r = Some(root.as_path());
        assert_eq!(resolve(r, Query::Primary, b"/www/a.php"), Found::Script(10));
        assert_eq!(resolve(r, Query::Primary, b"/www/inside.php"), Found::Script(15));
        assert_eq!(resolve(r, Query::Primary, b"/../secret.php"), Found::Missing);
        assert_eq!(resolve(r, Query::Primary, b"/www/../../secret.php"), Found::Missing);
        assert_eq!(resolve(r, Query::Primary, b"/www/abs.php"), Found::Missing, "an absolute link resolves inside");
        let outside = format!("{}/secret.php", host.path().display());
        assert_eq!(resolve(r, Query::Primary, outside.as_bytes()), Found::Missing);
        assert_eq!(resolve(None, Query::Primary, outside.as_bytes()), Found::Script(outside.len()));
    }

    #[test]
    fn a_full_queue_or_a_stuck_lookup_is_busy_never_a_wait() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let (tx, rx) = bounded(1);
        let share = Share::default();
        rt.block_on(async {
            // Nobody takes the first job: its request waits LOOKUP_WAIT (paused clock), then 503.
            assert_eq!(ask(&tx, &share, Realm::default(), Query::Primary, b"/a").await, Err(Busy));
            // The queue still holds it: the next request is refused at once.
            assert_eq!(ask(&tx, &share, Realm::default(), Query::Primary, b"/b").await, Err(Busy));
            assert_eq!(rx.len(), 1);
            drop(rx);
            assert_eq!(ask(&tx, &share, Realm::default(), Query::Primary, b"/c").await, Err(Busy), "no lookup thread");
        });
    }

    /// A pool whose lookups fill its share (costly paths on a slow disk) gets 503s;
    /// another pool's lookups are queued and answered meanwhile.
    #[test]
    fn a_pool_that_fills_its_share_leaves_the_queue_to_the_others() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let (tx, rx) = bounded(LOOKUP_QUEUE);
        let (hostile, other) = (Arc::new(Share::default()), Share::default());
        rt.block_on(async {
            // As many as the whole queue holds: past its share they are refused at once.
            let waiting: Vec<_> = (0..LOOKUP_QUEUE)
                .map(|i| {
                    let (tx, hostile) = (tx.clone(), hostile.clone());
                    tokio::spawn(async move {
                        ask(&tx, &hostile, Realm::default(), Query::Primary, format!("/{i}").as_bytes()).await
                    })
                })
                .collect();
            for _ in 0..1000 {
                tokio::task::yield_now().await;
            }
            assert_eq!(rx.len(), SHARE_MAX, "the hostile pool's lookups wait in the queue");
            let answered = async {
                for job in std::iter::from_fn(|| rx.try_recv().ok()).collect::<Vec<_>>() {
                    let _ = job.reply.send(Found::Missing);
                }
            };
            let (mine, ()) = tokio::join!(ask(&tx, &other, Realm::default(), Query::Primary, b"/mine"), async {
                tokio::task::yield_now().await;
                answered.await
            });
            assert_eq!(mine, Ok(Found::Missing), "the other pool's lookup was queued and answered");
            let mut answers = Vec::new();
            for w in waiting {
                answers.push(w.await.unwrap());
            }
            assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), SHARE_MAX, "{answers:?}");
            let again = tokio::spawn({
                let (tx, hostile) = (tx.clone(), hostile.clone());
                async move { ask(&tx, &hostile, Realm::default(), Query::Primary, b"/again").await }
            });
            for _ in 0..1000 {
                tokio::task::yield_now().await;
            }
            assert_eq!(rx.len(), 1, "answered, the share is free again");
            drop(again);
        });
    }

    #[tokio::test]
    async fn lookups_of_one_path_share_one_look_up_while_it_runs() {
        use std::sync::atomic::AtomicUsize;
        let (looks, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(tokio::sync::Semaphore::new(0)));
        let spawn = |path: &'static [u8]| {
            let (looks, gate) = (looks.clone(), gate.clone());
            tokio::spawn(async move {
                let look = || async move {
                    looks.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.map_err(|_| Busy)?.forget();
                    Ok(Found::Script(path.len()))
                };
                cached_or(Realm::default(), Query::Primary, path, look).await
            })
        };
        // Never looked up: every request waits for the one lookup.
        let asked: Vec<_> = (0..300).map(|_| spawn(b"/cold.php")).collect();
        tokio::task::yield_now().await;
        assert_eq!(looks.load(Ordering::SeqCst), 1, "one lookup runs");
        gate.add_permits(1);
        for answer in asked {
            assert_eq!(answer.await.unwrap(), Ok(Found::Script(9)));
        }
        // Expired: one request looks again, the others take the expired answer meanwhile.
        let old = Instant::now() - CACHE_TTL * 2;
        CACHE.with_borrow_mut(|c| c.insert(Realm::default(), Query::Primary, b"/warm.php", Found::Missing, old));
        let renewing = spawn(b"/warm.php");
        tokio::task::yield_now().await;
        let others: Vec<_> = (0..300).map(|_| spawn(b"/warm.php")).collect();
        for answer in others {
            assert_eq!(answer.await.unwrap(), Ok(Found::Missing), "the expired answer");
        }
        assert_eq!(looks.load(Ordering::SeqCst), 2, "one more lookup");
        gate.add_permits(1);
        assert_eq!(renewing.await.unwrap(), Ok(Found::Script(9)));
        assert_eq!(
            cached_or(Realm::default(), Query::Primary, b"/warm.php", || async { Err(Busy) }).await,
            Ok(Found::Script(9))
        );
        // A lookup that gets no answer (a hung file system: Busy after LOOKUP_WAIT) answers
        // its waiters Busy too, rather than each waiting as long again for a lookup of its own.
        let hung = Arc::new(tokio::sync::Semaphore::new(0));
        let released = hung.clone();
        let failing = tokio::spawn(async move {
            let look = || async move {
                let _ = released.acquire().await;
                Err(Busy)
            };
            cached_or(Realm::default(), Query::Primary, b"/hung.php", look).await
        });
        tokio::task::yield_now().await;
        let waiters: Vec<_> = (0..10).map(|_| spawn(b"/hung.php")).collect();
        tokio::task::yield_now().await;
        hung.add_permits(1);
        assert_eq!(failing.await.unwrap(), Err(Busy));
        for answer in waiters {
            assert_eq!(answer.await.unwrap(), Err(Busy));
        }
        assert_eq!(looks.load(Ordering::SeqCst), 2, "the waiters looked up nothing themselves");
    }

    #[test]
    fn the_answer_inserted_last_is_the_one_its_query_and_path_have() {
        let mut cache = Cache::default();
        let t0 = Instant::now();
        cache.insert(Realm::default(), Query::Primary, b"/a", Found::Missing, t0);
        cache.insert(Realm::default(), Query::Exact, b"/b", Found::Script(2), t0);
        assert_eq!(cache.get(Realm::default(), Query::Primary, b"/b", t0), None, "the last answer is another query's");
        assert_eq!(
            cache.get(Realm { root: Some(Path::new("/j")), ids: None }, Query::Exact, b"/b", t0),
            None,
            "and another root's"
        );
        assert_eq!(cache.get(Realm::default(), Query::Exact, b"/b", t0), Some(Found::Script(2)));
        assert_eq!(cache.get(Realm::default(), Query::Primary, b"/a", t0), Some(Found::Missing), "an earlier one");
        let t1 = t0 + CACHE_TTL / 2;
        cache.insert(Realm::default(), Query::Exact, b"/b", Found::Missing, t1);
        assert_eq!(
            cache.get(Realm::default(), Query::Exact, b"/b", t0 + CACHE_TTL),
            Some(Found::Missing),
            "renewed at t1"
        );
        cache.insert(Realm::default(), Query::Primary, b"/a", Found::Script(2), t1);
        assert_eq!(cache.get(Realm::default(), Query::Exact, b"/b", t1), Some(Found::Missing), "no longer the last");
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let mut cache = Cache::default();
        let t0 = Instant::now();
        cache.insert(Realm::default(), Query::Primary, b"/a", Found::Missing, t0);
        assert_eq!(
            cache.get(Realm::default(), Query::Primary, b"/a", t0),
            Some(Found::Missing),
            "misses are cached too"
        );
        assert_eq!(cache.get(Realm::default(), Query::Exact, b"/a", t0), None);
        assert_eq!(cache.get(Realm { root: Some(Path::new("/j")), ids: None }, Query::Primary, b"/a", t0), None);
        assert_eq!(cache.get(Realm::default(), Query::Primary, b"/a", t0 + CACHE_TTL), None);
        for i in 0..CACHE_MAX_ENTRIES * 2 {
            cache.insert(Realm::default(), Query::Primary, format!("/p{i}").as_bytes(), Found::Missing, t0);
            assert!(cache.len() <= CACHE_MAX_ENTRIES);
        }
        let long = vec![b'a'; PATH_MAX];
        for i in 0..(CACHE_MAX_BYTES / PATH_MAX) * 3 {
            let mut path = long.clone();
            path.extend_from_slice(i.to_string().as_bytes());
            cache.insert(Realm { root: Some(Path::new("/j")), ids: None }, Query::Primary, &path, Found::Missing, t0);
            assert!(cache.bytes() <= CACHE_MAX_BYTES, "{} bytes", cache.bytes());
        }
    }
}
