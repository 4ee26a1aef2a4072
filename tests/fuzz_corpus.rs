//! Replays the fuzz corpus (`fuzz/corpus/TARGET/`, minimised by `scripts/fuzz.sh`) through the
//! entry points the fuzz targets call, so that an input that once crashed a parser stays fixed.

use std::path::{Path, PathBuf};

/// Every file of `fuzz/corpus/<target>/`, which must not be empty.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
}

/// Runs `entry` on every input of `target`, naming the input that fails.
fn replay(target: &str, entry: impl Fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry(&bytes)));
        assert!(result.is_ok(), "fuzz input {} fails again", path.display());
    }
}

#[test]
fn record_corpus() {
    replay("record", rustfpm::fuzzing::record);
}

#[test]
fn params_corpus() {
    replay("params", rustfpm::fuzzing::params);
}

#[test]
fn request_head_corpus() {
    replay("request_head", rustfpm::fuzzing::request_head);
}

#[test]
fn child_response_corpus() {
    replay("child_response", rustfpm::fuzzing::child_response);
}

#[test]
fn fpm_ini_corpus() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    replay("fpm_ini", |bytes| rustfpm::fuzzing::fpm_ini_in(dir.path(), bytes));
}
