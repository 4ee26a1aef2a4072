//! Readers for /proc: children of a process, which process holds a socket,
//! and a process's memory.

use std::fs;
use std::io;

/// Pids of the direct children of `pid` (all its threads).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(text) = fs::read_to_string(path) {
            out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

/// True if process `pid` has a file descriptor open on socket `inode`.
pub fn holds_socket(pid: i32, inode: u32) -> bool {
    let want = format!("socket:[{inode}]");
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == want.as_str()))
}

/// The child of `parent` that holds socket `inode`, if any.
pub fn child_holding_socket(parent: i32, inode: u32) -> Option<i32> {
    children(parent).into_iter().find(|&pid| holds_socket(pid, inode))
}

/// The inode of an open file descriptor of this process (sockets included).
pub fn fd_inode(fd: i32) -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata(format!("/proc/self/fd/{fd}"))?.ino() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn finds_own_socket() {
        let (a, _b) = UnixStream::pair().unwrap();
        let ino = fd_inode(a.as_raw_fd()).unwrap();
        assert!(holds_socket(std::process::id() as i32, ino));
        assert!(!holds_socket(std::process::id() as i32, u32::MAX - 3));
    }

    #[test]
    fn lists_children() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let kids = children(std::process::id() as i32);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(kids.contains(&(child.id() as i32)));
    }
}
