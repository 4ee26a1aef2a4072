//! php-cgi's `-d` settings kept off its command line. `/proc/PID/cmdline` is
//! readable by every local user, and a pool's `php_value`s hold secrets (a
//! Redis password in `session.save_path`, a database password); php-fpm keeps
//! them in its memory. So the `-d` arguments become the ini text php-cgi would
//! make of them, in a sealed memfd that php-cgi gets as fd [`FD`] and reads as
//! its last scanned ini file: a link `rustfpm.ini -> /proc/self/fd/3` in a
//! directory added last to `PHP_INI_SCAN_DIR`. php-cgi parses the scanned
//! files and then its `-d` text with the same parser, so the last file is
//! where the `-d` text was. With `-n` (which scans nothing) php-cgi is told to
//! look for its php.ini in that directory, which has none, and to scan only
//! it: `php_ini_loaded_file()` stays false. Only processes that hold the
//! descriptor or may trace them (root, the pool's user) can open it: php-cgi,
//! its children, and the commands a script runs, which inherit it (a `php` CLI
//! would read it through `PHP_INI_SCAN_DIR`, which the polyfill takes out of
//! their environment: `pool::finish_env`).

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Mutex;

/// The descriptor php-cgi finds the text on.
pub const FD: RawFd = 3;
/// Where php-cgi opens it.
const PATH: &str = "/proc/self/fd/3";
/// The link's name in the scanned directory.
const LINK: &str = "rustfpm.ini";

/// A php-cgi command line with its `-d` settings moved into a private file.
#[derive(Debug)]
pub struct Hidden {
    /// The arguments without the `-d`s.
    pub args: Vec<OsString>,
    /// The environment, `PHP_INI_SCAN_DIR` extended.
    pub env: Vec<(OsString, OsString)>,
    /// The ini text (close-on-exec, above stdio): placed on [`FD`] by [`place`].
    pub file: OwnedFd,
    /// The path php-cgi opens it by, for [`check_readable`].
    pub link: std::ffi::CString,
}

/// `args` and `env` with every `-d` moved into a private ini file; `None` when
/// there is no `-d` (nothing to hide).
pub fn hide(args: &[OsString], env: &[(OsString, OsString)]) -> std::io::Result<Option<Hidden>> {
    let mut rest = Vec::with_capacity(args.len());
    let mut text = Vec::new();
    let mut no_ini = false;
    let mut args_iter = args.iter();
    while let Some(arg) = args_iter.next() {
        match arg.as_encoded_bytes() {
            b"-d" => match args_iter.next() {
                Some(define) => text.extend(ini_line(define.as_encoded_bytes())),
                None => rest.push(arg.clone()),
            },
            b"-n" => no_ini = true,
            _ => rest.push(arg.clone()),
        }
    }
    if text.is_empty() {
        return Ok(None);
    }
    let mut env = env.to_vec();
    let dir = scan_dir()?;
    let link = std::ffi::CString::new(dir.join(LINK).into_os_string().into_encoded_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let dir = dir.into_os_string();
    let scan = if no_ini {
        // What -n left php-cgi, the -d text, and no php.ini: php-cgi looks for
        // one only where -c says, here a directory without one.
        rest.extend(["-c".into(), dir.clone()]);
        dir
    } else {
        match env.iter().find(|(k, _)| k == "PHP_INI_SCAN_DIR").map(|(_, v)| v.clone()) {
            Some(v) if v.is_empty() => dir,
            // An empty entry is the directory php-cgi was built with.
            given => [given.unwrap_or_default(), dir].join(OsStr::new(":")),
        }
    };
    env.retain(|(k, _)| k != "PHP_INI_SCAN_DIR");
    env.push(("PHP_INI_SCAN_DIR".into(), scan));
    Ok(Some(Hidden { args: rest, env, file: sealed(&text)?, link }))
}

/// A file to put in place: its descriptor ([`place`]) and the path php-cgi opens it by
/// ([`check_readable`]).
pub type Placement = (RawFd, std::ffi::CString);

/// What a command runs with: `hidden`'s arguments and environment if there is one (else
/// `args` and `env`), and its file's descriptor and path for [`place`] and [`check_readable`].
pub fn command<'a>(
    hidden: Option<&'a Hidden>,
    args: &'a [OsString],
    env: &'a [(OsString, OsString)],
) -> (&'a [OsString], &'a [(OsString, OsString)], Option<Placement>) {
    match hidden {
        Some(h) => (&h.args, &h.env, Some((h.file.as_raw_fd(), h.link.clone()))),
        None => (args, env, None),
    }
}

/// The error [`check_readable`] gives, which nothing else between fork and exec gives.
pub const UNREADABLE: i32 = libc::ENOTRECOVERABLE;

/// Between fork and exec, as the pool's user with the text on [`FD`]: whether php-cgi
/// will read it (`link`, from [`Hidden`]). PHP skips a scanned file or directory it cannot
/// read without a word, and the pool would run without its settings (its admin values,
/// `disable_functions`, `open_basedir`): a runtime directory other users cannot enter
/// (`RuntimeDirectoryMode=0700`), a private `TMPDIR`. Fails with [`UNREADABLE`].
/// Only async-signal-safe calls.
pub fn check_readable(link: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: open and close are async-signal-safe; `link` was made before the fork.
    match unsafe { libc::open(link.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) } {
        -1 => Err(std::io::Error::from_raw_os_error(UNREADABLE)),
        fd => {
            // SAFETY: the descriptor just opened.
            unsafe { libc::close(fd) };
            Ok(())
        }
    }
}

/// Between fork and exec: `file` (from [`Hidden`]) on [`FD`], kept across exec.
/// Only async-signal-safe calls.
pub fn place(file: RawFd) -> std::io::Result<()> {
    // SAFETY: dup2 is async-signal-safe; `file` is open (above stdio, so the
    // spawn's stdio set-up did not replace it) and FD is php-cgi's to have.
    match unsafe { libc::dup2(file, FD) } {
        -1 => Err(std::io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// A `-d` argument as php-cgi adds it to its ini text: `name=value`, the value
/// quoted when it starts with neither a letter, a digit nor a quote; `name`
/// alone is `name=1`.
pub fn ini_line(define: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(define.len() + 4);
    match define.iter().position(|&b| b == b'=') {
        Some(eq) => {
            line.extend_from_slice(&define[..=eq]);
            line.extend_from_slice(&define_value(&define[eq + 1..]));
        }
        None => {
            line.extend_from_slice(define);
            line.extend_from_slice(b"=1");
        }
    }
    line.push(b'\n');
    line
}

/// The value of a `-d name=value` as php-cgi (and php-fpm) writes it into its ini text:
/// in double quotes when it starts with neither a letter, a digit nor a quote.
pub fn define_value(value: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match value.first() {
        Some(c) if !c.is_ascii_alphanumeric() && !matches!(c, b'"' | b'\'') => [b"\"", value, b"\""].concat().into(),
        _ => value.into(),
    }
}

/// Empties `file` (a php-cgi parent's, from [`Hidden`]) once the parent has read it, which
/// it has when it has forked a child (php-cgi reads its ini files first): the commands its
/// scripts run inherit the descriptor, and a `php` CLI among them would read the pool's
/// settings through it where the polyfill cannot take `PHP_INI_SCAN_DIR` out of their
/// environment (no polyfill, `putenv()` disabled). The next start of the pool's php-cgi
/// gets a file of its own.
pub fn empty(file: &OwnedFd) {
    // SAFETY: ftruncate on a descriptor owned by the caller.
    unsafe { libc::ftruncate(file.as_raw_fd(), 0) };
}

/// A read-only, sealed memfd holding `text`, close-on-exec, above fd 9.
fn sealed(text: &[u8]) -> std::io::Result<OwnedFd> {
    // SAFETY: memfd_create takes a C string and flags; the descriptor it
    // returns is new and owned here.
    let file = unsafe {
        match libc::memfd_create(c"rustfpm-ini".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) {
            -1 => return Err(std::io::Error::last_os_error()),
            fd => OwnedFd::from_raw_fd(fd),
        }
    };
    let mut file = std::fs::File::from(file);
    file.write_all(text)?;
    // Not F_SEAL_SHRINK: [`empty`] cuts it to nothing once read.
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fchmod and fcntl on a descriptor owned here.
    unsafe {
        if libc::fchmod(file.as_raw_fd(), 0o444) == -1 || libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) == -1
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    // Above stdio: were it fd 0-2 (rustfpm started with one closed), the spawn
    // would put php-cgi's stdio over it before `place` runs.
    let high = nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))?;
    // SAFETY: a new descriptor fcntl returned, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// The directory [`scan_dir`] made: its path and identity.
struct Made {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Made {
    /// Still the directory made, rustfpm's and not writable by others, with its link: a tmp
    /// cleaner may have removed it from `/tmp`, and another user made one of that name.
    fn intact(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| {
            m.is_dir()
                && (m.dev(), m.ino()) == (self.dev, self.ino)
                && m.uid() == nix::unistd::geteuid().as_raw()
                && m.mode() & 0o022 == 0
        });
        ours && std::fs::read_link(self.path.join(LINK)).is_ok_and(|target| target == std::path::Path::new(PATH))
    }
}

/// The directory any user may read that holds the link to [`PATH`], made once, and
/// made anew (under a new name) when it is not intact; the guard removes it with
/// rustfpm's others.
fn scan_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    static DIR: Mutex<Option<Made>> = Mutex::new(None);
    let mut dir = DIR.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(made) = dir.as_ref().filter(|m| m.intact()) {
        return Ok(made.path.clone());
    }
    let path = super::rundir::create("php-cgi", "ini", 0o755)?;
    std::os::unix::fs::symlink(PATH, path.join(LINK))?;
    let meta = std::fs::symlink_metadata(&path)?;
    *dir = Some(Made { path: path.clone(), dev: meta.dev(), ino: meta.ino() });
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defines_become_the_lines_php_cgi_makes_of_them() {
        assert_eq!(ini_line(b"memory_limit=32M"), b"memory_limit=32M\n");
        assert_eq!(ini_line(b"open_basedir=/srv"), b"open_basedir=\"/srv\"\n");
        assert_eq!(ini_line(b"user_agent=\"a;b\""), b"user_agent=\"a;b\"\n");
        assert_eq!(ini_line(b"display_errors"), b"display_errors=1\n");
        assert_eq!(ini_line(b"x="), b"x=\n");
    }

    #[test]
    fn the_defines_leave_the_command_line_and_the_scan_ends_with_them() {
        let args: Vec<OsString> = ["-c", "/etc/php.ini", "-d", "a=1", "-d", "b=/x"].map(Into::into).into();
        let env = vec![("PHP_INI_SCAN_DIR".into(), "/etc/php/conf.d".into())];
        let hidden = hide(&args, &env).unwrap().unwrap();
        assert_eq!(hidden.args, ["-c", "/etc/php.ini"]);
        let scan = &hidden.env.iter().find(|(k, _)| k == "PHP_INI_SCAN_DIR").unwrap().1;
        let dir = scan.to_str().unwrap().strip_prefix("/etc/php/conf.d:").unwrap();
        assert_eq!(std::fs::read_link(std::path::Path::new(dir).join(LINK)).unwrap(), PathBuf::from(PATH));
        let path = format!("/proc/self/fd/{}", hidden.file.as_raw_fd());
        assert_eq!(std::fs::read(&path).unwrap(), b"a=1\nb=\"/x\"\n");
        let written = std::fs::OpenOptions::new().write(true).open(&path).and_then(|mut f| f.write_all(b"c=1\n"));
        assert!(written.is_err(), "the text can be changed");
        empty(&hidden.file);
        assert_eq!(std::fs::read(&path).unwrap(), b"", "once read, nothing is left to read");
        assert!(hidden.file.as_raw_fd() > 9);
        assert!(hide(&["-c".into(), "/etc/php.ini".into()], &[]).unwrap().is_none());
        // With -n: no php.ini in the one directory php-cgi looks in, and only the text scanned.
        let hidden = hide(&["-n".into(), "-d".into(), "a=1".into()], &[]).unwrap().unwrap();
        assert_eq!(hidden.args, [OsStr::new("-c"), OsStr::new(dir)]);
        assert_eq!(hidden.env, [("PHP_INI_SCAN_DIR".into(), dir.into())]);
        // A tmp cleaner removed it and someone made one of that name (here: writable by
        // all, as another user's would not be ours): a new one is made, the other left alone.
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        std::os::unix::fs::symlink(PATH, std::path::Path::new(dir).join(LINK)).unwrap();
        let again = scan_dir().unwrap();
        assert_ne!(again, std::path::Path::new(dir), "a directory rustfpm did not make was taken");
        // No guard in a unit test to remove them when the process ends (no other test spawns
        // php-cgi with a `-d`; a later hide would make one again).
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(again);
    }
}
