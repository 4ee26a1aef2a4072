//! Process file descriptors (`pidfd_open(2)`): a handle on one process that
//! never names another one, even after the process has exited and its pid
//! was given to a new process. Children are killed through them, so a
//! recycled pid is never signalled.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::signal::Signal;

/// A handle on one process.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// Opens a handle on the process `pid` (Linux 5.3 or later).
    pub fn open(pid: i32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Sends `signal` to the process; fails with ESRCH once it has exited.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        let null = std::ptr::null::<libc::siginfo_t>();
        // SAFETY: our own open pidfd, a valid signal number, no siginfo, no flags.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), signal as i32, null, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_its_process_and_not_after_it_exited() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let fd = PidFd::open(child.id() as i32).unwrap();
        fd.signal(Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        let err = fd.signal(Signal::SIGKILL).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
    }
}
