//! Private directories for a pool's runtime files (the children's socket,
//! the `fastcgi_finish_request()` polyfill): under `/run/rustfpm` when it
//! exists (systemd's `RuntimeDirectory=`, never aged out like `/tmp` can be),
//! else under the temp dir, with unguessable names (`mkdtemp`), so no other
//! user can take a name rustfpm needs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where runtime directories go when it is a directory rustfpm may write to.
pub const RUN_DIR: &str = "/run/rustfpm";

/// A new directory `rustfpm-PID-POOL-KIND-XXXXXX` with `mode` (the pid
/// says whose it is; the random end makes it unguessable).
pub fn create(pool: &str, kind: &str, mode: u32) -> std::io::Result<PathBuf> {
    let template = base().join(format!("rustfpm-{}-{pool}-{kind}-XXXXXX", std::process::id()));
    let dir = nix::unistd::mkdtemp(&template)?;
    // mkdtemp makes it 0700.
    if let Err(e) = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)) {
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    Ok(dir)
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
