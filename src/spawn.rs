//! Exec'ing a pool's php-cgi parent: its command line, environment,
//! credentials and process settings, applied between fork and exec with
//! async-signal-safe calls only.

use std::ffi::{CString, OsString};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use nix::unistd::{Gid, Pid, Uid};

use crate::config::SchedPolicy;
use crate::sys::private_ini;

/// Everything needed to exec one pool's php-cgi parent.
#[derive(Debug)]
pub struct ChildSpec {
    /// Pool name, for log lines.
    pub pool: String,
    /// The php-cgi binary.
    pub program: PathBuf,
    /// Arguments after the program name (`-c`, `-d key=value`).
    pub args: Vec<OsString>,
    /// The complete environment of the children.
    pub env: Vec<(OsString, OsString)>,
    /// The pool's private listening socket, handed to php-cgi as fd 0.
    pub listener: OwnedFd,
    /// Credentials to switch to before exec; `None` keeps rustfpm's.
    pub credentials: Option<Credentials>,
    /// Process settings applied between fork and exec.
    pub settings: ProcessSettings,
    /// Where the children's stderr goes.
    pub output: Output,
}

/// php-fpm's per-pool process settings.
#[derive(Debug, Clone, Default)]
pub struct ProcessSettings {
    /// `chroot`: directory to chroot into (before switching user).
    pub chroot: Option<CString>,
    /// `chdir`: working directory (inside the chroot, if any).
    pub chdir: Option<CString>,
    /// `rlimit_files`: RLIMIT_NOFILE.
    pub rlimit_files: Option<u64>,
    /// `rlimit_core`: RLIMIT_CORE (`u64::MAX`: unlimited).
    pub rlimit_core: Option<u64>,
    /// `process_priority`: nice value.
    pub priority: Option<i32>,
    /// `process_sched_policy`. `None`: [`SchedPolicy::default_from`] the policy of the
    /// spawning thread (rustfpm's). One the kernel refuses (see [`spawn_parent`]): inherited.
    pub sched_policy: Option<SchedPolicy>,
}

/// What happens to the children's stdout and stderr (`catch_workers_output`).
#[derive(Debug)]
pub enum Output {
    /// Discarded (php-fpm's default).
    Discard,
    /// Into the pool's output pipes, logged line by line (by `pool::output`).
    Capture(Capture),
}

/// The write ends the children get as their stdout and stderr, and the pid their lines name.
#[derive(Debug)]
pub struct Capture {
    /// The children's fd 1.
    pub stdout: OwnedFd,
    /// The children's fd 2.
    pub stderr: OwnedFd,
    /// The php-cgi parent's pid, set when it is spawned.
    pub pid: Arc<AtomicU32>,
}

/// User, group and supplementary groups of a pool's children.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// User id.
    pub uid: Uid,
    /// Primary group id.
    pub gid: Gid,
    /// Supplementary groups.
    pub groups: Vec<Gid>,
}

/// Execs a pool's php-cgi parent; returns its pid, and the private ini file it reads its
/// settings from ([`private_ini`]), which the caller empties once php-cgi has read it
/// ([`private_ini::empty`]). For the supervisor only: it reaps what it starts. A `sched_policy` the kernel refuses is a warning, and php-cgi
/// runs under the policy it inherits: rustfpm may have been started under `SCHED_IDLE`
/// without `CAP_SYS_NICE` (which leaving it takes), or under a seccomp filter.
pub(crate) fn spawn_parent(spec: &ChildSpec) -> std::io::Result<(Pid, Option<OwnedFd>)> {
    let mut settings = spec.settings.clone();
    settings.sched_policy = settings.sched_policy.or_else(|| SchedPolicy::default_from(thread_sched_policy()));
    let wanted = settings.sched_policy;
    // A chroot pool's php-cgi would look for the private file inside the jail.
    let hidden = match settings.chroot {
        None => private_ini::hide(&spec.args, &spec.env)?,
        Some(_) => None,
    };
    let (args, env, ini) = private_ini::command(hidden.as_ref(), &spec.args, &spec.env);
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.args(args).env_clear().envs(env.iter().map(|(k, v)| (k, v))).stdin(Stdio::from(spec.listener.try_clone()?));
    match &spec.output {
        Output::Discard => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
        Output::Capture(c) => cmd.stdout(c.stdout.try_clone()?).stderr(c.stderr.try_clone()?),
    };
    let creds = spec.credentials.clone();
    let parent = std::process::id() as libc::pid_t;
    // The chroot is entered through a descriptor opened here, once its path is
    // known to be out of the pool user's reach (see [`open_chroot`]).
    let root = match &settings.chroot {
        Some(path) => {
            Some(open_chroot(std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes())), creds.as_ref())?)
        }
        None => None,
    };
    let root_fd = root.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe system calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            pre_exec(creds.as_ref(), &settings, root_fd, ini.as_ref().map(|(fd, link)| (*fd, link.as_c_str())), parent)
        });
    }
    let child = cmd.spawn().map_err(|e| unreadable_ini(e, hidden.as_ref()))?;
    drop(cmd);
    drop(root);
    let ini = hidden.map(|h| h.file);
    if let Output::Capture(c) = &spec.output {
        c.pid.store(child.id(), std::sync::atomic::Ordering::Relaxed);
    }
    let pid = child.id() as libc::pid_t;
    // spawn() returns once php-cgi is exec'd: its policy is what pre_exec could set.
    // SAFETY: sched_getscheduler takes a pid and touches no memory.
    let policy = unsafe { libc::sched_getscheduler(pid) };
    if let Some(wanted) = wanted.filter(|w| policy != -1 && policy & !libc::SCHED_RESET_ON_FORK != w.to_libc()) {
        crate::warning!(
            "[pool {}] cannot run php-cgi under process_sched_policy = \"{}\": the kernel refused it; it runs \
             under the policy it inherits from rustfpm",
            spec.pool,
            wanted.name()
        );
    }
    Ok((Pid::from_raw(pid), ini))
}

/// Opens the chroot `path` (as root, following links), refused when the pool's
/// user (`creds`) could change what it names: a directory on the way, as
/// written or as its links resolve, that is theirs, or group-writable by a
/// group of theirs, or writable by all without the sticky bit. By its path, such
/// a user would swap the jail for a link to `/` and restart php-cgi (killing its
/// own parent) to run unconfined. Other users' links on the way are followed (a
/// deploy user's `current -> releases/N`): they are not the pool's.
fn open_chroot(path: &std::path::Path, creds: Option<&Credentials>) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    let resolved = std::fs::canonicalize(path)?;
    if let Some(c) = creds.filter(|c| !c.uid.is_root()) {
        for dir in path.ancestors().skip(1).chain(resolved.ancestors().skip(1)) {
            let meta = std::fs::metadata(dir)?;
            let in_group = meta.gid() == c.gid.as_raw() || c.groups.iter().any(|g| g.as_raw() == meta.gid());
            let changeable = meta.uid() == c.uid.as_raw()
                || (in_group && meta.mode() & 0o020 != 0)
                || (meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0);
            if changeable {
                let why = format!(
                    "refusing the chroot {}: the pool's user (uid {}) can change {} on its way",
                    path.display(),
                    c.uid,
                    dir.display()
                );
                return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, why));
            }
        }
    }
    let flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(&resolved, flags, nix::sys::stat::Mode::empty())?;
    // SAFETY: open returned a new descriptor that nobody else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// The scheduling policy of the calling thread (`sched_getscheduler`; -1 if it cannot tell).
pub(crate) fn thread_sched_policy() -> libc::c_int {
    // SAFETY: sched_getscheduler takes a pid (0: the calling thread) and touches no memory.
    unsafe { libc::sched_getscheduler(0) }
}

/// A short run of php-cgi that prints an answer and exits (`-i`, `-v`): for a
/// pool, its program, arguments, environment and user, but no listener.
#[derive(Debug, Clone)]
pub struct Query {
    /// The php-cgi binary.
    pub program: PathBuf,
    /// Its arguments, the flag last.
    pub args: Vec<OsString>,
    /// Its complete environment.
    pub env: Vec<(OsString, OsString)>,
    /// The user and group to run as; `None` keeps rustfpm's.
    pub credentials: Option<Credentials>,
}

impl ChildSpec {
    /// The pool's php-cgi asked `flag` (`-i`) instead of serving.
    pub fn query(&self, flag: &str) -> Query {
        let mut args = self.args.clone();
        args.push(flag.into());
        Query { program: self.program.clone(), args, env: self.env.clone(), credentials: self.credentials.clone() }
    }
}

/// Starts `query` with its stdout piped (stdin and stderr are /dev/null), its
/// `-d`s off its command line as a pool's php-cgi has them.
/// For the supervisor only: it reaps what it starts.
pub(crate) fn spawn_query(query: &Query) -> std::io::Result<Child> {
    let hidden = private_ini::hide(&query.args, &query.env)?;
    let (args, env, ini) = private_ini::command(hidden.as_ref(), &query.args, &query.env);
    query_command(query, args, env, ini).stderr(Stdio::null()).spawn().map_err(|e| unreadable_ini(e, hidden.as_ref()))
}

/// A spawn's error, said plainly when it is [`private_ini::check_readable`]'s.
fn unreadable_ini(e: std::io::Error, hidden: Option<&private_ini::Hidden>) -> std::io::Error {
    match hidden {
        Some(h) if e.raw_os_error() == Some(private_ini::UNREADABLE) => std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the pool's user cannot read {} (the pool's settings): rustfpm's runtime directory \
                 must be open to it (not RuntimeDirectoryMode=0700, nor a private TMPDIR)",
                h.link.to_string_lossy()
            ),
        ),
        _ => e,
    }
}

/// Runs `query` to its end, its stderr on ours, for a client command that
/// runs without a supervisor (`rustfpm -i`, with the command line's own `-d`s):
/// what it printed and how it ended.
pub fn run_query(query: &Query) -> std::io::Result<std::process::Output> {
    query_command(query, &query.args, &query.env, None).stderr(Stdio::inherit()).output()
}

/// `query` as a command, with `args` and `env` for its own, and the private
/// ini file `ini` (see [`private_ini`]: its descriptor and path) put in place.
fn query_command(
    query: &Query,
    args: &[OsString],
    env: &[(OsString, OsString)],
    ini: Option<private_ini::Placement>,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(&query.program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // php-cgi reads a php.ini (and the extensions it names) from its working
        // directory when told none: never from a directory another user may own.
        .current_dir("/");
    if let Some(creds) = &query.credentials {
        cmd.uid(creds.uid.as_raw()).gid(creds.gid.as_raw());
    }
    // SAFETY: the closure makes only async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            close_inherited()?;
            match &ini {
                // std switched to the query's user before this runs.
                Some((fd, link)) => private_ini::place(*fd).and_then(|()| private_ini::check_readable(link)),
                None => Ok(()),
            }
        });
    }
    cmd
}

/// Marks close-on-exec every descriptor above stdio: those rustfpm inherited
/// without it (from a shell, a supervisor, a test harness) must not reach
/// php-cgi, which runs as the pool's user. Async-signal-safe.
fn close_inherited() -> std::io::Result<()> {
    // SAFETY: close_range takes numbers and flags and touches no memory.
    match unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } {
        -1 => Err(std::io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// Signals whose disposition is reset to the default for php-cgi.
const RESET_SIGNALS: [libc::c_int; 8] = [
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGPIPE,
];

/// Between fork and exec: signal dispositions, session, limits, chroot, credentials, and
/// last the parent-death signal, which the kernel clears on a change of credentials (so
/// it must come after `setuid`). It fires when the forking *thread* exits, and is a second
/// line only: the guard process ([`crate::sys::guard`]) kills every group rustfpm started
/// whatever way rustfpm ends. `PR_SET_DUMPABLE` is not set: `execve` resets it (php-cgi is
/// dumpable whatever `process_dumpable` says), see `explain_settings` in `pool`.
fn pre_exec(
    creds: Option<&Credentials>,
    settings: &ProcessSettings,
    root: Option<RawFd>,
    ini: Option<(RawFd, &std::ffi::CStr)>,
    parent: libc::pid_t,
) -> std::io::Result<()> {
    let check = |rc: libc::c_int| if rc == -1 { Err(std::io::Error::last_os_error()) } else { Ok(()) };
    // SAFETY: signal, prctl, setsid, close_range, setrlimit, setpriority, sched_setscheduler,
    // fchdir, chroot, chdir, setgroups, setgid, setuid and getppid are async-signal-safe system calls;
    // every pointer passed was allocated before the fork and is only read.
    unsafe {
        // Dispositions rustfpm inherited as "ignore" (nohup, background jobs)
        // would survive exec; php-cgi must see the defaults.
        for sig in RESET_SIGNALS {
            libc::signal(sig, libc::SIG_DFL);
        }
        check(libc::setsid())?;
        close_inherited()?;
        if let Some((fd, _)) = ini {
            private_ini::place(fd)?;
        }
        if let Some(n) = settings.rlimit_files {
            check(libc::setrlimit(libc::RLIMIT_NOFILE, &libc::rlimit { rlim_cur: n, rlim_max: n }))?;
        }
        if let Some(n) = settings.rlimit_core {
            let n = if n == u64::MAX { libc::RLIM_INFINITY } else { n };
            check(libc::setrlimit(libc::RLIMIT_CORE, &libc::rlimit { rlim_cur: n, rlim_max: n }))?;
        }
        if let Some(nice) = settings.priority {
            check(libc::setpriority(libc::PRIO_PROCESS, 0, nice))?;
        }
        // Refused, php-cgi runs under the inherited policy ([`spawn_parent`] warns after).
        if let Some(policy) = settings.sched_policy {
            libc::sched_setscheduler(0, policy.to_libc(), &libc::sched_param { sched_priority: 0 });
        }
        if let Some(root) = root {
            check(libc::fchdir(root))?;
            check(libc::chroot(c".".as_ptr()))?;
            check(libc::chdir(c"/".as_ptr()))?;
        }
        if let Some(dir) = &settings.chdir {
            check(libc::chdir(dir.as_ptr()))?;
        }
        if let Some(c) = creds {
            let groups: &[Gid] = &c.groups;
            check(libc::setgroups(groups.len(), groups.as_ptr().cast()))?;
            check(libc::setgid(c.gid.as_raw()))?;
            check(libc::setuid(c.uid.as_raw()))?;
        }
        if let Some((_, link)) = ini {
            private_ini::check_readable(link)?;
        }
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        // The parent may have died before the signal was armed.
        if libc::getppid() != parent {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use std::thread;
    use std::time::{Duration, Instant};

    /// The kernel clears the parent-death signal when credentials change: a child spawned as
    /// another user (when the test runs as root) must still die when its forking thread ends.
    #[test]
    fn the_parent_death_signal_survives_the_user_switch() {
        let credentials = nix::unistd::geteuid().is_root().then(|| Credentials {
            uid: Uid::from_raw(65534),
            gid: Gid::from_raw(65534),
            groups: vec![Gid::from_raw(65534)],
        });
        let spec = ChildSpec {
            pool: "test".into(),
            program: "/bin/sleep".into(),
            args: vec!["60".into()],
            env: Vec::new(),
            listener: std::fs::File::open("/dev/null").unwrap().into(),
            credentials,
            settings: ProcessSettings::default(),
            output: Output::Discard,
        };
        let (pid, _) = thread::spawn(move || spawn_parent(&spec).unwrap()).join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)).unwrap() {
                WaitStatus::StillAlive if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                WaitStatus::StillAlive => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    panic!("the child outlived the thread that forked it by 10 s: no parent-death signal");
                }
                status => break status,
            }
        };
        assert_eq!(status, WaitStatus::Signaled(pid, nix::sys::signal::Signal::SIGKILL, false));
    }
}
