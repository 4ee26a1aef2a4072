//! rustfpm's own open-file limit (RLIMIT_NOFILE): php-fpm's global
//! `rlimit_files`, or the soft limit raised to the hard one.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Sets RLIMIT_NOFILE of this process: both limits to `wanted` (as php-fpm
/// sets its master's), or, without it, the soft limit to the hard one.
/// Returns the soft limit now in force.
pub fn set_open_files(wanted: Option<u64>) -> std::io::Result<u64> {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let (soft, hard) = match wanted {
        Some(n) => (n, n),
        None => (hard, hard),
    };
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).map_err(|e| {
        let what = wanted
            .map_or_else(|| format!("raise the open file limit to {hard}"), |n| format!("set rlimit_files to {n}"));
        std::io::Error::new(std::io::Error::from(e).kind(), format!("cannot {what}: {e}"))
    })?;
    Ok(soft)
}

/// The soft RLIMIT_NOFILE in force.
pub(crate) fn open_files() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// How many descriptors this process has open now.
pub(crate) fn open_now() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64)
}
