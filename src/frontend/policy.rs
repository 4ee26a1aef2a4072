//! php-fpm's request checks that php-cgi lacks, made before any child sees
//! the request: the script must exist (404 `File not found.`) and have an
//! allowed extension (403 `Access denied.`, `security.limit_extensions`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fastcgi::ParamsBuffer;

/// Params never passed on from nginx to a child. `HTTP_PROXY` is the httpoxy
/// hole; the `fastcgi_finish_request()` marker is rustfpm's to set.
pub const DROPPED_PARAMS: [&[u8]; 2] = [b"HTTP_PROXY", crate::pool::finish::MARKER_PARAM];

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to a child.
    Forward,
    /// No SCRIPT_FILENAME, or no file at it: 404 and "Primary script unknown".
    NotFound,
    /// The script that PHP would run has an extension outside the allowed list.
    Denied(PathBuf),
}

/// Checks a request's SCRIPT_FILENAME as php-fpm does. With a `chroot`, the
/// path is the one the children see, inside it.
pub fn check(params: &ParamsBuffer, limit_extensions: &[String], chroot: Option<&Path>) -> Verdict {
    let Some(raw) = params.get(b"SCRIPT_FILENAME").filter(|v| !v.is_empty()) else {
        return Verdict::NotFound;
    };
    match cached_primary_script(raw, chroot) {
        None => Verdict::NotFound,
        Some(script) if allowed(&script, limit_extensions) => Verdict::Forward,
        Some(script) => Verdict::Denied(script),
    }
}

/// How long a script found on disk is trusted without another `stat`
/// (PHP's own realpath cache trusts paths for 120 s). Only hits are cached: a
/// new file is seen at once, a deleted one within this time (php-cgi then
/// answers 404 itself).
pub const SCRIPT_CACHE_TTL: Duration = Duration::from_secs(1);
/// Most entries in the script cache; it is emptied when full.
pub const SCRIPT_CACHE_MAX: usize = 4096;

thread_local! {
    // The front end runs on one thread, so a per-thread cache is never shared.
    static SCRIPTS: RefCell<HashMap<Vec<u8>, (Instant, PathBuf)>> = RefCell::new(HashMap::new());
}

/// [`primary_script`] (under `chroot`), remembered for [`SCRIPT_CACHE_TTL`].
fn cached_primary_script(raw: &[u8], chroot: Option<&Path>) -> Option<PathBuf> {
    let path = Path::new(std::ffi::OsStr::from_encoded_bytes_unchecked_safe(raw));
    let owned;
    let path = match chroot {
        Some(root) => {
            owned = root.join(path.strip_prefix("/").unwrap_or(path));
            owned.as_path()
        }
        None => path,
    };
    let key = path.as_os_str().as_encoded_bytes();
    let now = Instant::now();
    let hit = SCRIPTS.with_borrow(|cache| {
        cache.get(key).filter(|(at, _)| now.duration_since(*at) < SCRIPT_CACHE_TTL).map(|(_, p)| p.clone())
    });
    if hit.is_some() {
        return hit;
    }
    let found = primary_script(path)?;
    SCRIPTS.with_borrow_mut(|cache| {
        if cache.len() >= SCRIPT_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key.to_vec(), (now, found.clone()));
    });
    Some(found)
}

/// The file PHP would run for `path`: with `cgi.fix_pathinfo`, PHP strips
/// trailing components until it finds a regular file (`/x.jpg/y.php` runs
/// `/x.jpg`). None when no such file exists.
pub fn primary_script(path: &Path) -> Option<PathBuf> {
    let mut candidate = Some(path);
    while let Some(p) = candidate.filter(|p| p.as_os_str().len() > 1) {
        match std::fs::metadata(p) {
            Ok(meta) if meta.is_file() => return Some(p.to_path_buf()),
            Ok(_) => return None,
            Err(_) => candidate = p.parent(),
        }
    }
    None
}

/// True if `script` ends with one of `extensions` (or the list is empty).
pub fn allowed(script: &Path, extensions: &[String]) -> bool {
    let bytes = script.as_os_str().as_encoded_bytes();
    extensions.is_empty() || extensions.iter().any(|ext| bytes.ends_with(ext.as_bytes()))
}

/// Byte-to-OsStr conversion for Unix, where any bytes are a valid OsStr.
trait FromBytes {
    fn from_encoded_bytes_unchecked_safe(bytes: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_unchecked_safe(bytes: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastcgi::encode_pair;

    fn params(script: &str) -> ParamsBuffer {
        let mut raw = Vec::new();
        encode_pair(&mut raw, b"SCRIPT_FILENAME", script.as_bytes());
        let mut p = ParamsBuffer::new(4096);
        p.push(&raw).unwrap();
        p
    }

    fn check_(p: &ParamsBuffer, ext: &[String]) -> Verdict {
        check(p, ext, None)
    }

    #[test]
    fn chroot_paths_are_resolved_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("www")).unwrap();
        std::fs::write(dir.path().join("www/a.php"), "<?php").unwrap();
        let php = [".php".to_string()];
        assert_eq!(check(&params("/www/a.php"), &php, Some(dir.path())), Verdict::Forward);
        assert_eq!(check(&params("/www/b.php"), &php, Some(dir.path())), Verdict::NotFound);
    }

    #[test]
    fn checks_like_php_fpm() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("index.php"), "<?php").unwrap();
        std::fs::write(dir.path().join("x.jpg"), "<?php").unwrap();
        let php = [".php".to_string()];
        assert_eq!(check_(&params(&format!("{d}/index.php")), &php), Verdict::Forward);
        assert_eq!(check_(&params(&format!("{d}/index.php/extra/path")), &php), Verdict::Forward);
        assert_eq!(check_(&params(&format!("{d}/missing.php")), &php), Verdict::NotFound);
        assert_eq!(check_(&params(&format!("{d}")), &php), Verdict::NotFound);
        assert_eq!(check_(&params(&format!("{d}/x.jpg/y.php")), &php), Verdict::Denied(dir.path().join("x.jpg")));
        assert_eq!(check_(&params(&format!("{d}/x.jpg/y.php")), &[]), Verdict::Forward);
        assert_eq!(check(&ParamsBuffer::new(10), &php, None), Verdict::NotFound);
    }
}
