//! The README shows what ships: its `rustfpm --help` is the binary's, and its
//! systemd units are the files in systemd/ (their comment lines left out).

use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("read README.md")
}

/// The body of the README's code block that starts with `opening` (its first line or lines).
fn block(readme: &str, opening: &str) -> String {
    let start = readme.find(opening).unwrap_or_else(|| panic!("README.md has no block starting {opening:?}"));
    let body = &readme[start..];
    let end = body.find("\n```").unwrap_or_else(|| panic!("the block {opening:?} does not end"));
    body[..end + 1].to_string()
}

/// A unit file as the README shows it: no comment lines, no repeated blank lines.
fn shown(path: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines: Vec<&str> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with("# ") && *l != "#") {
        if line.is_empty() && lines.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        lines.push(line);
    }
    while lines.last() == Some(&"") {
        lines.pop();
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn the_help_shown_is_the_binarys() {
    let out = Command::new(env!("CARGO_BIN_EXE_rustfpm")).arg("--help").output().expect("run rustfpm --help");
    assert!(out.status.success());
    let shown = block(&readme(), "$ rustfpm --help\n");
    assert_eq!(shown.trim_start_matches("$ rustfpm --help\n"), String::from_utf8_lossy(&out.stdout));
}

#[test]
fn the_units_shown_are_the_shipped_ones() {
    let readme = readme();
    for (file, opening) in [
        ("systemd/rustfpm.service", "[Unit]\nDescription=rustfpm FastCGI process manager"),
        ("systemd/rustfpm.socket", "[Unit]\nDescription=rustfpm FastCGI socket"),
    ] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        assert_eq!(block(&readme, opening), shown(&path), "README.md's {file} is not the file");
    }
}
