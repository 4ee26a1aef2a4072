//! Running in the background as php-fpm does (`daemonize = yes`, `-D`; php-fpm's
//! `fpm_unix_init_main`): the original process forks and waits; the daemon
//! starts a new session, leaves the working directory, and once it is ready to
//! handle connections sends one byte through a pipe, moves its stdin, stdout
//! and stderr to /dev/null, and the original process exits 0. Until then the
//! daemon still writes to the terminal, so start-up errors are seen there; if
//! it exits first (a failed start), the original process exits 70 (EX_SOFTWARE), as php-fpm's.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, dup2, fork, pipe2, setsid, ForkResult, Pid};

/// How long the original process waits for the daemon's word (php-fpm's 10 s).
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Exit code of the original process when the daemon failed to start, said
/// nothing in time, or died of a signal (EX_SOFTWARE, as php-fpm).
pub(crate) const EXIT_NO_WORD: i32 = 70;
/// The byte that says "ready".
const READY: u8 = b'1';

/// The daemon's end of the pipe to the original process.
#[derive(Debug)]
pub struct Readiness {
    pipe: File,
}

/// Forks into the background. Returns in the daemon only; the original process
/// waits for the daemon's word and exits.
///
/// # Safety
/// The process must be single-threaded (no thread or runtime started yet).
pub unsafe fn detach() -> io::Result<Readiness> {
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: the caller guarantees we are single-threaded.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            drop(write_end);
            // Under systemd (Type=notify), the daemon becomes the service's main process.
            if super::systemd::enabled() {
                if let Err(e) = super::systemd::main_pid(child.as_raw().unsigned_abs()) {
                    eprintln!("WARNING: cannot notify systemd (NOTIFY_SOCKET) of the daemon's pid {child}: {e}");
                }
            }
            std::process::exit(wait_for_word(read_end, child))
        }
        ForkResult::Child => {
            drop(read_end);
            setsid()?;
            chdir("/")?;
            Ok(Readiness { pipe: File::from(write_end) })
        }
    }
}

/// In the original process: 0 once the daemon is ready; [`EXIT_NO_WORD`] if
/// it fails first or says nothing in time.
fn wait_for_word(pipe: OwnedFd, daemon: Pid) -> i32 {
    let mut pipe = File::from(pipe);
    let timeout = PollTimeout::try_from(READY_TIMEOUT).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
    if !matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
        eprintln!("ERROR: the daemon (pid {daemon}) did not report its status within {}s", READY_TIMEOUT.as_secs());
        return EXIT_NO_WORD;
    }
    let mut byte = [0u8; 1];
    if matches!(pipe.read(&mut byte), Ok(1)) && byte[0] == READY {
        return 0;
    }
    match waitpid(daemon, None) {
        // Its failure is said on the terminal; the code is php-fpm's (EX_SOFTWARE).
        Ok(WaitStatus::Exited(_, 0)) => 0,
        Ok(WaitStatus::Exited(..)) => EXIT_NO_WORD,
        Ok(WaitStatus::Signaled(_, signal, _)) => {
            eprintln!("ERROR: the daemon (pid {daemon}) was killed by {signal} while starting");
            EXIT_NO_WORD
        }
        _ => EXIT_NO_WORD,
    }
}

impl Readiness {
    /// In the daemon, once it is ready to handle connections: detaches from
    /// the terminal (stdin, stdout, stderr to /dev/null) and tells the
    /// original process, which then exits 0.
    pub(crate) fn notify(self) -> io::Result<()> {
        let null = File::options().read(true).write(true).open("/dev/null")?;
        for fd in 0..=2 {
            dup2(null.as_raw_fd(), fd)?;
        }
        let mut pipe = self.pipe;
        pipe.write_all(&[READY])
    }
}
