//! Private directories for a pool's runtime files (the children's socket,
//! the `fastcgi_finish_request()` polyfill): under `/run/rustfpm` when it
//! exists (systemd's `RuntimeDirectory=`, never aged out like `/tmp` can be),
//! else under the temp dir, with unguessable names (`mkdtemp`), so no other
//! user can take a name rustfpm needs.

use std::path::{Path, PathBuf};

use super::safe_fs::Dir;

/// Where runtime directories go when it is a directory rustfpm may write to.
pub const RUN_DIR: &str = "/run/rustfpm";

/// A new directory `rustfpm-PID-POOL-KIND-XXXXXX` with `mode` (the pid
/// says whose it is; the random end makes it unguessable). Made with `mkdirat` in a
/// directory reached without following another user's links, and refused unless no
/// other user can rename it or a directory above it afterwards (`/tmp` is fine: sticky), so
/// its path can be used as it is.
pub fn create(pool: &str, kind: &str, mode: u32) -> std::io::Result<PathBuf> {
    let base = Dir::open(&base())?;
    let pool = file_name(pool);
    let (dir, _) = base.create_private_dir(&format!("rustfpm-{}-{pool}-{kind}-", std::process::id()), mode)?;
    Ok(dir.path().to_path_buf())
}

/// A pool's name as part of a file name: letters, digits, `_`, `.` and `-`
/// kept, anything else (`/`, a space, `:`, non-ASCII) made `_`.
pub fn file_name(pool: &str) -> String {
    pool.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '_' }).collect()
}

/// Removes what is left of the directories [`create`] made for rustfpm `owner`
/// (a rustfpm that was SIGKILLed could not): its own only, never another
/// user's directory of a like name, and without following a link in them.
pub fn remove_left(owner: u32) {
    use std::os::unix::fs::MetadataExt;
    let prefix = format!("rustfpm-{owner}-");
    let uid = nix::unistd::geteuid().as_raw();
    for base in [PathBuf::from(RUN_DIR), std::env::temp_dir()] {
        for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
            let ours = entry.file_name().to_string_lossy().starts_with(&prefix)
                && std::fs::symlink_metadata(entry.path()).is_ok_and(|m| m.is_dir() && m.uid() == uid);
            if ours {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn base() -> PathBuf {
    let run = Path::new(RUN_DIR);
    if run.is_dir() && nix::unistd::access(run, nix::unistd::AccessFlags::W_OK).is_ok() {
        run.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// What a SIGKILLed rustfpm left goes; a like-named directory of another user stays.
    #[test]
    fn only_our_own_directories_are_removed_for_a_gone_owner() {
        let owner = u32::MAX - u32::from(std::process::id() as u16);
        let base = std::env::temp_dir();
        let ours = base.join(format!("rustfpm-{owner}-www-sock-ours"));
        let theirs = base.join(format!("rustfpm-{owner}-www-sock-theirs"));
        std::fs::create_dir_all(ours.join("inner")).unwrap();
        std::os::unix::fs::symlink("/etc", ours.join("link")).unwrap();
        std::fs::create_dir_all(&theirs).unwrap();
        let other = nix::unistd::geteuid().is_root().then(|| nix::unistd::Uid::from_raw(65534));
        if let Some(uid) = other {
            nix::unistd::chown(&theirs, Some(uid), None).unwrap();
        }
        remove_left(owner);
        assert!(!ours.exists(), "our own directory was left");
        assert!(std::path::Path::new("/etc/passwd").exists(), "a link was followed");
        assert_eq!(theirs.exists(), other.is_some(), "another user's directory was removed");
        let _ = std::fs::remove_dir_all(&theirs);
    }

    #[test]
    fn directories_are_new_each_time_with_the_mode_asked() {
        let a = create("www", "test", 0o755).unwrap();
        let b = create("www", "test", 0o700).unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::metadata(&a).unwrap().mode() & 0o777, 0o755);
        assert_eq!(std::fs::metadata(&b).unwrap().mode() & 0o777, 0o700);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        let prefix = format!("rustfpm-{}-www-test-", std::process::id());
        assert!(name.starts_with(&prefix) && name.len() == prefix.len() + 6, "{name}");
        for dir in [a, b] {
            std::fs::remove_dir(dir).unwrap();
        }
    }
}
