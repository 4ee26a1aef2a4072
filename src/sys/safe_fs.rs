//! Opening and creating files as root without following a link another user placed.
//!
//! The threat: rustfpm runs as root and writes into directories that a pool's user owns
//! (Debian's `/run/php` is `www-data:www-data`). That user can put a symlink or a hard link
//! where rustfpm will write (its pid file, a log) and have root truncate, append to or chown
//! a file of their choosing, or swap a directory on the path while rustfpm walks it.
//!
//! The defence: a path is walked one component at a time from `/` with `openat(O_PATH |
//! O_NOFOLLOW)`, holding each directory by its descriptor, so a component swapped after it
//! was opened changes nothing. A symlink on the way is followed only where no other user
//! could have placed it or swapped it: in a trusted directory (owned by root
//! or by rustfpm's user and writable by no one else), or owned by root/rustfpm's user in a
//! sticky directory owned by them (`/tmp`). Anywhere else it is refused with an error that
//! names the link and its owner. The last component is opened with `O_NOFOLLOW` from the
//! directory's descriptor; in a directory other users can write, the file must be a regular
//! file with one link, owned by root, rustfpm's user or the directory's owner. Files that
//! rustfpm replaces (the pid file) are written under a new random name with `O_EXCL` and
//! renamed into place, which replaces a planted link instead of writing through it.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat, readlinkat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Most symlinks followed while resolving one path (the kernel's limit).
const MAX_SYMLINKS: usize = 40;
/// Attempts at a fresh random name before giving up.
const NAME_ATTEMPTS: usize = 16;

/// Why a path was refused: what was found there, and who owns it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// A symlink in a directory where another user could have placed it.
    #[error("refusing {path}: it is a symbolic link owned by {owner}, in a directory other users can write")]
    Symlink { path: PathBuf, owner: Owner },
    /// A file with more than one hard link, in a directory other users can write.
    #[error("refusing {path}: it has {links} hard links (owner {owner}), in a directory other users can write")]
    HardLinks { path: PathBuf, links: u64, owner: Owner },
    /// Not a regular file, in a directory other users can write.
    #[error("refusing {path}: it is not a regular file (owner {owner}), in a directory other users can write")]
    NotRegular { path: PathBuf, owner: Owner },
    /// A file owned by a third user, in a directory other users can write.
    #[error("refusing {path}: it is owned by {owner}, neither root nor the owner of its directory ({dir_owner})")]
    Foreign { path: PathBuf, owner: Owner, dir_owner: Owner },
    /// A directory that others could rename things in or out of.
    #[error("refusing {path}: other users can replace what it names (directory owned by {owner}, mode {mode:o})")]
    Unstable { path: PathBuf, owner: Owner, mode: u32 },
    /// More symlinks than the kernel would follow.
    #[error("refusing {path}: too many levels of symbolic links")]
    Loop { path: PathBuf },
}

impl From<Refused> for io::Error {
    fn from(r: Refused) -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, r)
    }
}

/// A file's owner, shown as `uid N (name)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner(pub u32);

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(self.0)) {
            Ok(Some(user)) => write!(f, "uid {} ({})", self.0, user.name),
            _ => write!(f, "uid {}", self.0),
        }
    }
}

/// Which file a path named when rustfpm made it, so that rustfpm removes only its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(st: &FileStat) -> FileId {
        FileId { dev: st.st_dev, ino: st.st_ino }
    }
}

/// A directory held by its descriptor (`O_PATH`), reached without following a link that
/// another user could have placed.
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    stat: FileStat,
    /// No other user can change what `path` names: every directory on the way is trusted,
    /// or sticky with the next component owned by root or us.
    stable: bool,
}

impl Dir {
    /// Opens the directory `path` (made absolute against the working directory).
    pub(crate) fn open(path: &Path) -> io::Result<Dir> {
        let path = std::path::absolute(path)?;
        let mut budget = MAX_SYMLINKS;
        walk(root()?, &path, &mut budget)
    }

    /// The directory's path, as asked (symlinks not resolved).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor, for `*at` calls.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// `name` in this directory as a path the kernel resolves through the descriptor
    /// (`/proc/self/fd/N/name`): short enough for a socket's address, and it names this
    /// directory whatever happens to its own path meanwhile.
    pub(crate) fn path_through_fd(&self, name: &std::ffi::OsStr) -> PathBuf {
        Path::new("/proc/self/fd").join(self.fd().to_string()).join(name)
    }

    /// The directory's owner.
    pub(crate) fn owner(&self) -> Owner {
        Owner(self.stat.st_uid)
    }

    /// Owned by root or by rustfpm's user, and writable by no one else: nothing in it can
    /// have been placed by another user.
    pub(crate) fn trusted(&self) -> bool {
        trusted_owner(self.stat.st_uid) && self.stat.st_mode & 0o022 == 0
    }

    /// True when no other user can change what this directory's path names.
    #[cfg(test)]
    pub(crate) fn stable(&self) -> bool {
        self.stable
    }

    /// Another user may create entries here, but not remove or rename ours: sticky and
    /// owned by root or us (`/tmp`), or trusted.
    fn keeps_our_entries(&self) -> bool {
        self.trusted() || (trusted_owner(self.stat.st_uid) && self.stat.st_mode & libc::S_ISVTX != 0)
    }

    /// The entry `name` itself (a link is not followed), or `None` when there is none.
    pub(crate) fn entry(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        match fstatat(Some(self.fd()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(nix::Error::ENOENT) => Ok(None),
            Err(e) => Err(self.io_err(name, e)),
        }
    }

    fn io_err(&self, name: &OsStr, e: nix::Error) -> io::Error {
        let path = self.path.join(name);
        io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", path.display()))
    }

    /// Opens the child directory `name`, following a symlink only where that is safe.
    fn enter(&self, name: &OsStr, budget: &mut usize) -> io::Result<Dir> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(Some(self.fd()), name, flags, Mode::empty()) {
            Ok(fd) => {
                let child = Dir::from_fd(fd, self.path.join(name))?;
                let stable = self.stable && self.keeps(&child.stat);
                Ok(Dir { stable, ..child })
            }
            Err(nix::Error::ENOTDIR | nix::Error::ELOOP) => match self.follow(name, budget)? {
                Some(target) => {
                    let dir = walk(self.try_clone()?, &target, budget)?;
                    Ok(Dir { path: self.path.join(name), ..dir })
                }
                None => Err(self.io_err(name, nix::Error::ENOTDIR)),
            },
            Err(e) => Err(self.io_err(name, e)),
        }
    }

    /// True when another user cannot rename the entry whose status is `st` in or out of
    /// this directory.
    fn keeps(&self, st: &FileStat) -> bool {
        self.trusted() || (self.keeps_our_entries() && trusted_owner(st.st_uid))
    }

    /// The target of the symlink `name`, when it is one and was not placed by another
    /// user; `None` when `name` is not a symlink; an error naming its owner otherwise.
    fn follow(&self, name: &OsStr, budget: &mut usize) -> io::Result<Option<PathBuf>> {
        let Some(st) = self.entry(name)? else {
            return Err(self.io_err(name, nix::Error::ENOENT));
        };
        if !is(&st, SFlag::S_IFLNK) {
            return Ok(None);
        }
        let path = self.path.join(name);
        if !self.keeps(&st) {
            return Err(Refused::Symlink { path, owner: Owner(st.st_uid) }.into());
        }
        if *budget == 0 {
            return Err(Refused::Loop { path }.into());
        }
        *budget -= 1;
        let target = readlinkat(Some(self.fd()), name).map_err(|e| self.io_err(name, e))?;
        Ok(Some(PathBuf::from(target)))
    }

    fn from_fd(fd: RawFd, path: PathBuf) -> io::Result<Dir> {
        // SAFETY: `fd` was just returned by openat and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let stat = fstat(fd.as_raw_fd())
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", path.display())))?;
        Ok(Dir { fd, path, stat, stable: true })
    }

    fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir { fd: self.fd.try_clone()?, path: self.path.clone(), stat: self.stat, stable: self.stable })
    }

    /// Resolves the last component `name`: a symlink is followed (to its target's
    /// directory and name) where that is safe, else refused. The flag is true for a link
    /// of `/proc` (`/proc/self/fd/2`), which only the kernel resolves, so it is opened
    /// through: only links that no other user placed get there.
    fn last(self, name: &OsStr, budget: &mut usize) -> io::Result<(Dir, OsString, bool)> {
        match self.entry(name)? {
            Some(st) if is(&st, SFlag::S_IFLNK) => {
                let Some(target) = self.follow(name, budget)? else {
                    return Err(self.io_err(name, nix::Error::ELOOP));
                };
                if self.on_procfs() {
                    return Ok((self, name.to_os_string(), true));
                }
                let (parent, file) = split(&target)?;
                let dir = if parent.as_os_str().is_empty() { self } else { walk(self, &parent, budget)? };
                dir.last(&file, budget)
            }
            _ => Ok((self, name.to_os_string(), false)),
        }
    }

    fn on_procfs(&self) -> bool {
        nix::sys::statfs::fstatfs(&self.fd).is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
    }

    /// Checks an opened file against the rules of this directory (see the module docs).
    fn check_file(&self, name: &OsStr, st: &FileStat) -> Result<(), Refused> {
        if self.trusted() {
            return Ok(());
        }
        let path = self.path.join(name);
        let owner = Owner(st.st_uid);
        if !is(st, SFlag::S_IFREG) {
            return Err(Refused::NotRegular { path, owner });
        }
        if st.st_nlink > 1 {
            return Err(Refused::HardLinks { path, links: st.st_nlink, owner });
        }
        if !trusted_owner(st.st_uid) && st.st_uid != self.stat.st_uid {
            return Err(Refused::Foreign { path, owner, dir_owner: self.owner() });
        }
        Ok(())
    }

    /// Opens `name` with `flags` (following a link only when `through`), and checks what was
    /// opened.
    fn open_file(&self, name: &OsStr, flags: OFlag, mode: u32, through: bool) -> io::Result<File> {
        let mut flags = flags | OFlag::O_CLOEXEC;
        if !through {
            flags |= OFlag::O_NOFOLLOW;
        }
        if !self.trusted() {
            // A FIFO planted here must not hang the opener (it is refused below).
            flags |= OFlag::O_NONBLOCK;
        }
        let fd = match openat(Some(self.fd()), name, flags, Mode::from_bits_truncate(mode)) {
            Ok(fd) => fd,
            Err(nix::Error::ELOOP) if !through => {
                let owner = self.entry(name)?.map_or(Owner(u32::MAX), |st| Owner(st.st_uid));
                return Err(Refused::Symlink { path: self.path.join(name), owner }.into());
            }
            Err(e) => return Err(self.io_err(name, e)),
        };
        // SAFETY: `fd` was just returned by openat and is owned by no one else.
        let file = unsafe { File::from_raw_fd(fd) };
        let st = fstat(file.as_raw_fd()).map_err(|e| self.io_err(name, e))?;
        self.check_file(name, &st)?;
        Ok(file)
    }

    /// Creates a new directory `PREFIX` + 6 random characters with exactly `mode`, in this
    /// directory; fails unless no other user can remove or rename it afterwards.
    pub(crate) fn create_private_dir(&self, prefix: &str, mode: u32) -> io::Result<(Dir, OsString)> {
        if !(self.stable && self.keeps_our_entries()) {
            let mode = self.stat.st_mode & 0o7777;
            return Err(Refused::Unstable { path: self.path.clone(), owner: self.owner(), mode }.into());
        }
        self.make_dir(prefix, mode)
    }

    /// Creates a new directory `PREFIX` + 6 random characters with exactly `mode`, in this
    /// directory, and opens it. Its path may be renamed by whoever can write here; use its
    /// descriptor.
    pub(crate) fn make_dir(&self, prefix: &str, mode: u32) -> io::Result<(Dir, OsString)> {
        let name = self.fresh_name(prefix, |name| mkdirat(Some(self.fd()), name, Mode::S_IRWXU))?;
        let result = self.open_own_dir(&name, mode);
        // Ours to remove unless another directory took its name (then left alone).
        if result.as_ref().is_err_and(|e| e.kind() != io::ErrorKind::PermissionDenied) {
            let _ = self.remove_dir(&name);
        }
        Ok((result?, name))
    }

    /// Opens the directory `name` that we just made, and gives it `mode`. Whoever
    /// can write here may have put another directory in its place meanwhile
    /// (`renameat2` exchanges two names at once): refused unless what was opened
    /// is ours as made: owned by us, closed to others, with no subdirectory.
    fn open_own_dir(&self, name: &OsStr, mode: u32) -> io::Result<Dir> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(Some(self.fd()), name, flags, Mode::empty()).map_err(|e| self.io_err(name, e))?;
        let dir = Dir::from_fd(fd, self.path.join(name))?;
        let made = dir.stat.st_uid == nix::unistd::geteuid().as_raw()
            && dir.stat.st_mode & 0o077 == 0
            && dir.stat.st_nlink == 2;
        if !made {
            let mode = dir.stat.st_mode & 0o7777;
            return Err(Refused::Unstable { path: dir.path.clone(), owner: dir.owner(), mode }.into());
        }
        fchmod(dir.fd(), Mode::from_bits_truncate(mode)).map_err(|e| self.io_err(name, e))?;
        let stat = fstat(dir.fd()).map_err(|e| self.io_err(name, e))?;
        Ok(Dir { stat, stable: self.stable && self.keeps_our_entries(), ..dir })
    }

    /// Runs `create` on new random names `PREFIX` + 6 characters until one did not exist.
    fn fresh_name(&self, prefix: &str, mut create: impl FnMut(&OsStr) -> nix::Result<()>) -> io::Result<OsString> {
        for _ in 0..NAME_ATTEMPTS {
            let name = OsString::from(format!("{prefix}{}", random_suffix()));
            match create(&name) {
                Ok(()) => return Ok(name),
                Err(nix::Error::EEXIST) => continue,
                Err(e) => return Err(self.io_err(&name, e)),
            }
        }
        Err(self.io_err(OsStr::new(prefix), nix::Error::EEXIST))
    }

    /// Moves our entry `from` of this directory to `to` in `dest`, replacing (not following)
    /// whatever `to` named.
    pub(crate) fn rename_into(&self, from: &OsStr, dest: &Dir, to: &OsStr) -> io::Result<()> {
        renameat(Some(self.fd()), from, Some(dest.fd()), to).map_err(|e| dest.io_err(to, e))
    }

    /// Removes the entry `name` when it is still the file `id`; a link or another file put
    /// in its place is left alone. (A file made after ours was deleted may reuse its inode
    /// number and be removed: harmless, the directory's writers could remove it anyway.)
    pub fn remove_if_same(&self, name: &OsStr, id: FileId) -> io::Result<()> {
        match self.entry(name)? {
            Some(st) if FileId::of(&st) == id => self.remove(name),
            _ => Ok(()),
        }
    }

    /// The identity of the entry `name` (not following a link).
    pub(crate) fn id_of(&self, name: &OsStr) -> io::Result<FileId> {
        match self.entry(name)? {
            Some(st) => Ok(FileId::of(&st)),
            None => Err(self.io_err(name, nix::Error::ENOENT)),
        }
    }

    /// Removes the entry `name` (not a directory).
    pub(crate) fn remove(&self, name: &OsStr) -> io::Result<()> {
        unlinkat(Some(self.fd()), name, UnlinkatFlags::NoRemoveDir).map_err(|e| self.io_err(name, e))
    }

    /// Sets the POSIX access ACL of the entry `name` (the kernel's `system.posix_acl_access`
    /// encoding), not following a link there; the kernel also sets the mode bits it implies.
    pub(crate) fn set_access_acl(&self, name: &OsStr, acl: &[u8]) -> io::Result<()> {
        let path = std::ffi::CString::new(self.path_through_fd(name).into_os_string().into_vec())
            .map_err(|_| self.io_err(name, nix::Error::EINVAL))?;
        // SAFETY: both strings are NUL-terminated and outlive the call; the value pointer and
        // length describe `acl`, which the kernel only reads.
        let rc = unsafe {
            libc::lsetxattr(path.as_ptr(), c"system.posix_acl_access".as_ptr(), acl.as_ptr().cast(), acl.len(), 0)
        };
        match rc {
            0 => Ok(()),
            _ => Err(self.io_err(name, nix::Error::last())),
        }
    }

    /// Removes the empty directory `name`.
    pub(crate) fn remove_dir(&self, name: &OsStr) -> io::Result<()> {
        unlinkat(Some(self.fd()), name, UnlinkatFlags::RemoveDir).map_err(|e| self.io_err(name, e))
    }
}

fn root() -> io::Result<Dir> {
    let fd = openat(None, "/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    Dir::from_fd(fd, PathBuf::from("/"))
}

/// Walks `path` from `start` (or from `/` when it is absolute).
fn walk(start: Dir, path: &Path, budget: &mut usize) -> io::Result<Dir> {
    let mut dir = start;
    for component in path.components() {
        dir = match component {
            Component::RootDir => Dir { stable: dir.stable, ..root()? },
            Component::CurDir | Component::Prefix(_) => dir,
            Component::ParentDir => {
                let fd =
                    openat(Some(dir.fd()), "..", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(|e| dir.io_err(OsStr::new(".."), e))?;
                let parent = Dir::from_fd(fd, dir.path.join(".."))?;
                Dir { stable: dir.stable && parent.trusted(), ..parent }
            }
            Component::Normal(name) => dir.enter(name, budget)?,
        };
    }
    Ok(dir)
}

/// `path`'s directory and file name; an error when it names no file (`/`, `..`).
pub(crate) fn split(path: &Path) -> io::Result<(PathBuf, OsString)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !path.as_os_str().as_bytes().ends_with(b"/") => Ok((parent.into(), name.into())),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a file name", path.display()))),
    }
}

/// Opens `path`'s directory safely and resolves its last component (see the module docs).
fn resolve(path: &Path) -> io::Result<(Dir, OsString, bool)> {
    let path = std::path::absolute(path)?;
    let (parent, name) = split(&path)?;
    let mut budget = MAX_SYMLINKS;
    let dir = walk(root()?, &parent, &mut budget)?;
    dir.last(&name, &mut budget)
}

/// Opens `path` for appending, creating it with `mode` (less the umask) if missing, without
/// following a link another user placed (see the module docs). For logs, at start and on
/// every reopen.
pub(crate) fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let (dir, name, through) = resolve(path)?;
    dir.open_file(&name, OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT, mode, through)
}

/// Replaces `path` with a new file holding `contents`, with exactly `mode`: written
/// under a random name with `O_EXCL` and renamed into place, so a link at `path` is replaced,
/// never written through. Returns the new file's identity, for [`remove_if_same`].
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> io::Result<FileId> {
    let path = std::path::absolute(path)?;
    let (parent, name) = split(&path)?;
    let dir = Dir::open(&parent)?;
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
    let mut file = None;
    let prefix = format!(".{}.", name.to_string_lossy());
    let temp = dir.fresh_name(&prefix, |temp| {
        let fd =
            openat(Some(dir.fd()), temp, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::from_bits_truncate(mode))?;
        // SAFETY: `fd` was just returned by openat and is owned by no one else.
        file = Some(unsafe { File::from_raw_fd(fd) });
        Ok(())
    })?;
    let written = match file.as_mut() {
        Some(f) => f
            .write_all(contents)
            .and_then(|()| fchmod(f.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(io::Error::from))
            .and_then(|()| fstat(f.as_raw_fd()).map_err(io::Error::from)),
        None => Err(io::Error::other("temporary file vanished")),
    };
    let result = written.and_then(|st| dir.rename_into(&temp, &dir, &name).map(|()| FileId::of(&st)));
    if result.is_err() {
        let _ = unlinkat(Some(dir.fd()), temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
    }
    result
}

/// Removes `path` if it is still the file `id` that rustfpm made (see [`replace`]).
pub fn remove_if_same(path: &Path, id: FileId) -> io::Result<()> {
    let path = std::path::absolute(path)?;
    let (parent, name) = split(&path)?;
    Dir::open(&parent)?.remove_if_same(&name, id)
}

fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// True when `st` is of `kind` (`S_IFREG`, `S_IFLNK`, `S_IFSOCK`, ...).
pub(crate) fn is(st: &FileStat, kind: SFlag) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == kind.bits()
}

/// Six characters from the kernel's random pool (or the clock, if that fails).
fn random_suffix() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = [0u8; 6];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer it is given.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        bytes = (nanos as u64 ^ std::process::id() as u64).to_le_bytes()[..6].try_into().unwrap_or_default();
    }
    bytes.iter().map(|b| CHARS[*b as usize % CHARS.len()] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    /// A temp dir with `trusted/` (0755, ours) and `open/` (0777: other users can write, so
    /// nothing in it is trusted), and a `target` file that must never be written.
    struct Dirs {
        tmp: tempfile::TempDir,
    }

    impl Dirs {
        fn new() -> Dirs {
            let tmp = tempfile::tempdir().unwrap();
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            for (name, mode) in [("trusted", 0o755), ("open", 0o777)] {
                std::fs::create_dir(tmp.path().join(name)).unwrap();
                std::fs::set_permissions(tmp.path().join(name), std::fs::Permissions::from_mode(mode)).unwrap();
            }
            std::fs::write(tmp.path().join("target"), "canary").unwrap();
            Dirs { tmp }
        }
        fn path(&self, rel: &str) -> PathBuf {
            self.tmp.path().join(rel)
        }
        fn target_intact(&self) -> bool {
            std::fs::read_to_string(self.path("target")).unwrap() == "canary"
        }
    }

    fn refused(e: io::Error) -> String {
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        e.to_string()
    }

    /// The directory `make_dir` just made may have had another put in its place before it
    /// was opened (by whoever can write in its parent): only one that is ours as made is taken.
    #[test]
    fn a_directory_put_in_the_place_of_ours_is_refused() {
        let d = Dirs::new();
        let open = Dir::open(&d.path("open")).unwrap();
        let make = |name: &str, mode: u32| {
            std::fs::create_dir(d.path(&format!("open/{name}"))).unwrap();
            std::fs::set_permissions(d.path(&format!("open/{name}")), std::fs::Permissions::from_mode(mode)).unwrap();
        };
        make("ours", 0o700);
        assert!(open.open_own_dir(OsStr::new("ours"), 0o755).is_ok());
        make("readable", 0o755);
        refused(open.open_own_dir(OsStr::new("readable"), 0o700).unwrap_err());
        make("full", 0o700);
        std::fs::create_dir(d.path("open/full/sub")).unwrap();
        refused(open.open_own_dir(OsStr::new("full"), 0o700).unwrap_err());
        if nix::unistd::geteuid().is_root() {
            make("theirs", 0o700);
            std::os::unix::fs::chown(d.path("open/theirs"), Some(65534), Some(65534)).unwrap();
            refused(open.open_own_dir(OsStr::new("theirs"), 0o755).unwrap_err());
            let mode = std::fs::metadata(d.path("open/theirs")).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o700, "their directory's mode was changed");
        }
    }

    #[test]
    fn logs_are_created_with_the_mode_asked_and_appended_to() {
        let d = Dirs::new();
        for dir in ["trusted", "open"] {
            let path = d.path(&format!("{dir}/x.log"));
            open_append(&path, 0o600).unwrap().write_all(b"a\n").unwrap();
            open_append(&path, 0o600).unwrap().write_all(b"b\n").unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_symlink_in_a_directory_others_can_write_is_refused() {
        let d = Dirs::new();
        symlink(d.path("target"), d.path("open/x.log")).unwrap();
        let e = refused(open_append(&d.path("open/x.log"), 0o600).unwrap_err());
        assert!(e.contains("open/x.log") && e.contains("symbolic link owned by uid"), "{e}");
        assert!(d.target_intact());
    }

    #[test]
    fn a_symlink_in_a_trusted_directory_is_followed() {
        let d = Dirs::new();
        symlink("../open/real.log", d.path("trusted/x.log")).unwrap();
        open_append(&d.path("trusted/x.log"), 0o600).unwrap().write_all(b"line\n").unwrap();
        assert_eq!(std::fs::read_to_string(d.path("open/real.log")).unwrap(), "line\n");
        // ... but not onward through a link in the open directory.
        symlink(d.path("target"), d.path("open/onward.log")).unwrap();
        symlink("../open/onward.log", d.path("trusted/y.log")).unwrap();
        refused(open_append(&d.path("trusted/y.log"), 0o600).unwrap_err());
        assert!(d.target_intact());
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_refused_where_others_can_write() {
        let d = Dirs::new();
        symlink(d.path("trusted"), d.path("open/sub")).unwrap();
        let e = refused(open_append(&d.path("open/sub/x.log"), 0o600).unwrap_err());
        assert!(e.contains("open/sub"), "{e}");
        assert!(!d.path("trusted/x.log").exists());
        let e = refused(Dir::open(&d.path("open/sub")).unwrap_err());
        assert!(e.contains("open/sub"), "{e}");
    }

    #[test]
    fn hard_links_and_fifos_are_refused_where_others_can_write() {
        let d = Dirs::new();
        std::fs::hard_link(d.path("target"), d.path("open/x.log")).unwrap();
        let e = refused(open_append(&d.path("open/x.log"), 0o600).unwrap_err());
        assert!(e.contains("2 hard links"), "{e}");
        nix::unistd::mkfifo(&d.path("open/fifo"), Mode::S_IRWXU).unwrap();
        let e = open_append(&d.path("open/fifo"), 0o600).unwrap_err();
        assert!(e.to_string().contains("open/fifo"), "{e}");
        assert!(d.target_intact());
    }

    #[test]
    fn devices_and_proc_links_still_open() {
        open_append(Path::new("/dev/null"), 0o600).unwrap().write_all(b"x").unwrap();
        let (read, write) = std::io::pipe().unwrap();
        let path = PathBuf::from(format!("/proc/self/fd/{}", write.as_raw_fd()));
        open_append(&path, 0o600).unwrap().write_all(b"through proc\n").unwrap();
        drop(write);
        assert_eq!(std::io::read_to_string(read).unwrap(), "through proc\n");
    }

    #[test]
    fn replace_puts_a_new_file_in_place_of_a_link() {
        let d = Dirs::new();
        symlink(d.path("target"), d.path("open/rf.pid")).unwrap();
        let id = replace(&d.path("open/rf.pid"), b"42\n", 0o644).unwrap();
        assert!(d.target_intact());
        let meta = std::fs::symlink_metadata(d.path("open/rf.pid")).unwrap();
        assert!(meta.is_file() && meta.mode() & 0o777 == 0o644, "{meta:?}");
        assert_eq!(std::fs::read_to_string(d.path("open/rf.pid")).unwrap(), "42\n");
        let names: Vec<_> = std::fs::read_dir(d.path("open")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["rf.pid"], "no temporary file is left behind");
        // Only the file rustfpm made is removed at exit.
        std::fs::write(d.path("open/other"), "someone else's").unwrap();
        std::fs::rename(d.path("open/other"), d.path("open/rf.pid")).unwrap();
        remove_if_same(&d.path("open/rf.pid"), id).unwrap();
        assert!(d.path("open/rf.pid").exists());
        let id = replace(&d.path("open/rf.pid"), b"43\n", 0o644).unwrap();
        remove_if_same(&d.path("open/rf.pid"), id).unwrap();
        assert!(!d.path("open/rf.pid").exists());
    }

    #[test]
    fn private_dirs_only_where_no_one_else_can_move_them() {
        let d = Dirs::new();
        let e = refused(Dir::open(&d.path("open")).unwrap().create_private_dir("p-", 0o700).unwrap_err());
        assert!(e.contains("other users can replace"), "{e}");
        let (dir, name) = Dir::open(&d.path("trusted")).unwrap().create_private_dir("p-", 0o711).unwrap();
        assert!(name.to_string_lossy().starts_with("p-") && name.len() == 8, "{name:?}");
        assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o711);
        assert!(dir.trusted() && dir.stable());
        // A sticky directory such as /tmp keeps our entries.
        std::fs::set_permissions(d.path("open"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        Dir::open(&d.path("open")).unwrap().create_private_dir("p-", 0o700).unwrap();
    }
}
