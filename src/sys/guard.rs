//! The guard: a tiny process forked at start-up that kills every php-cgi
//! process group rustfpm started once rustfpm is gone, however it went
//! (SIGKILL included). It learns the groups through a pipe and sees rustfpm's
//! end as end-of-file on it. It runs in a session of its own, so that a
//! SIGKILL sent to rustfpm's whole process group (`kill -9 -PGID`,
//! supervisord's `killasgroup`) leaves it alive to do its work.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, signal, SigHandler, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};

const MAX_GROUPS: usize = 4096;

/// Handle to the guard process. Owned by the supervisor thread.
#[derive(Debug)]
pub struct Guard {
    pipe: File,
    pid: Pid,
}

impl Guard {
    /// Forks the guard.
    ///
    /// # Safety
    /// The calling process must be single-threaded (call it before any thread
    /// or runtime starts), so that the forked child may run ordinary code.
    pub unsafe fn start() -> io::Result<Guard> {
        let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
        // SAFETY: the caller guarantees we are single-threaded.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(write_end);
                run_guard(read_end)
            }
            ForkResult::Parent { child } => Ok(Guard { pipe: File::from(write_end), pid: child }),
        }
    }

    /// A guard with no process behind it, for unit tests of its owner.
    #[cfg(test)]
    pub fn inert() -> Guard {
        let (_, write_end) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
        Guard { pipe: File::from(write_end), pid: Pid::from_raw(0) }
    }

    /// Pid of the guard process.
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Adds a process group to kill when rustfpm dies.
    pub(crate) fn watch_group(&mut self, pgid: Pid) {
        let _ = self.pipe.write_all(&pgid.as_raw().to_ne_bytes());
    }

    /// Removes a process group that rustfpm has reaped itself.
    pub(crate) fn forget_group(&mut self, pgid: Pid) {
        let _ = self.pipe.write_all(&(-pgid.as_raw()).to_ne_bytes());
    }

    /// Ends the guard (closes its pipe) and reaps it (normal shutdown).
    pub(crate) fn close(self) {
        let pid = self.pid;
        drop(self.pipe);
        let _ = waitpid(pid, None);
    }
}

fn run_guard(pipe: OwnedFd) -> ! {
    // rustfpm, whose private directories the guard removes once it is gone.
    let owner = nix::unistd::getppid().as_raw().unsigned_abs();
    // Out of rustfpm's process group (and off its terminal): a group kill
    // must not take the guard with it. A new fork is never a group leader,
    // so this cannot fail.
    let _ = nix::unistd::setsid();
    let fd = pipe.as_raw_fd();
    for other in 3..1024 {
        if other != fd {
            // SAFETY: closing descriptors this forked process does not use.
            unsafe { libc::close(other) };
        }
    }
    // The guard writes nothing; holding rustfpm's stdio open would keep a
    // daemon's caller (`$(rustfpm -D)`) waiting for end-of-file.
    if let Ok(null) = std::fs::File::options().read(true).write(true).open("/dev/null") {
        for std_fd in 0..=2 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), std_fd);
        }
    }
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPIPE,
    ] {
        // SAFETY: installing SIG_IGN has no handler code to be unsafe.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let _ = nix::sys::prctl::set_name(c"rustfpm-guard");
    let groups = read_groups(fd);
    for g in groups.iter().filter(|g| **g > 1) {
        let _ = kill(Pid::from_raw(-*g), Signal::SIGKILL);
    }
    super::rundir::remove_left(owner);
    std::process::exit(0)
}

fn read_groups(fd: i32) -> Vec<i32> {
    let mut groups: Vec<i32> = Vec::new();
    let mut word = [0u8; 4];
    loop {
        // SAFETY: reading into a 4-byte stack buffer we own.
        let n = unsafe { libc::read(fd, word.as_mut_ptr().cast(), 4) };
        if n == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n != 4 {
            return groups;
        }
        let value = i32::from_ne_bytes(word);
        if value < 0 {
            groups.retain(|g| *g != -value);
        } else if groups.len() < MAX_GROUPS {
            groups.push(value);
        }
    }
}
