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
    let (dir, _) = base.create_private_dir(&format!("rustfpm-{}-{pool}-{kind}-", std::process::id()), mode)?;
    Ok(dir.path().to_path_buf())
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
