//! `rustfpm -i` prints phpinfo as `php-fpm8.2 -i` does: PHP's text layout (php-fpm
//! sets `phpinfo_as_text`; rustfpm converts php-cgi's HTML), exit code 0.
//!
//! Both are run with the same PHP flags and compared section by section, line by
//! line. Only these lines may differ, each for a reason the two binaries cannot share:
//! - `Server API` and `Configuration File (php.ini) Path`: each SAPI's own name and
//!   compiled-in directory (`FPM/FastCGI`, `/etc/php/8.2/fpm`; `CGI/FastCGI`, `.../cgi`);
//! - the `cgi-fcgi` section's rows that only one SAPI has: php-fpm's `php-fpm => active`
//!   (a table of its own: its empty line goes with it),
//!   `fpm.config`, `fastcgi.error_header`; php-cgi's `cgi.check_shebang_line`;
//! - the process's environment: the `Environment` section's rows and the
//!   `$_SERVER[...]`/`$_ENV[...]` rows (rustfpm gives php-cgi PATH only, so a CGI
//!   variable in its caller's environment cannot make php-cgi run a script; and
//!   `REQUEST_TIME` is the clock);
//! - opcache's `Interned Strings Used/Free memory` (each binary interns its own strings);
//! - the `pcntl` section when php-fpm lacks the module (Debian builds it into
//!   php-cgi only: `php-fpm8.2 -m` does not list it).

mod common;
use common::*;

use std::process::{Command, Stdio};

const PHP_FPM: &str = "/usr/sbin/php-fpm8.2";

/// The text `program -i` prints with `args` before `-i`; its exit code must be 0.
fn phpinfo(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).arg("-i").stdin(Stdio::null()).output();
    let out = out.unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{program} {args:?} -i: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One section: its heading (a line alone between two empty lines) and its lines.
struct Section<'a> {
    name: &'a str,
    lines: Vec<&'a str>,
}

/// The text cut at its headings (the first section, before any, is named "").
fn sections(text: &str) -> Vec<Section<'_>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = vec![Section { name: "", lines: Vec::new() }];
    for (i, line) in lines.iter().enumerate() {
        let alone = i > 0 && lines[i - 1].is_empty() && lines.get(i + 1).is_some_and(|next| next.is_empty());
        if alone && !line.is_empty() && !line.contains(" => ") {
            found.push(Section { name: line, lines: Vec::new() });
        } else if let Some(section) = found.last_mut() {
            section.lines.push(line);
        }
    }
    found
}

/// Whether `line` of section `section` may differ between php-fpm and rustfpm (see above).
fn may_differ(section: &str, line: &str) -> bool {
    const KEYS: [&str; 8] = [
        "Server API",
        "Configuration File (php.ini) Path",
        "php-fpm",
        "fpm.config",
        "fastcgi.error_header",
        "cgi.check_shebang_line",
        "Interned Strings Used memory",
        "Interned Strings Free memory",
    ];
    let key = line.split(" => ").next().unwrap_or_default();
    let environment = section == "Environment" && line != "Variable => Value";
    KEYS.contains(&key) || environment || key.starts_with("$_SERVER['") || key.starts_with("$_ENV['")
}

/// The lines of `section` that must match: those that may differ left out, and a
/// table left with no row without its empty line.
fn kept_lines(section: &Section) -> Vec<String> {
    let mut kept: Vec<&str> = Vec::new();
    for (i, line) in section.lines.iter().enumerate() {
        if !may_differ(section.name, line) {
            kept.push(line);
        } else if kept.last() == Some(&"") && section.lines.get(i + 1).is_none_or(|next| next.is_empty()) {
            kept.pop();
        }
    }
    kept.into_iter().map(String::from).collect()
}

/// The sections of `text` with their lines that must match, `pcntl` left out unless
/// `pcntl` is true.
fn comparable(text: &str, pcntl: bool) -> Vec<(String, Vec<String>)> {
    let sections = sections(text);
    let kept = sections.iter().filter(|s| pcntl || s.name != "pcntl");
    kept.map(|s| (s.name.to_string(), kept_lines(s))).collect()
}

/// Whether php-fpm has the pcntl module.
fn php_fpm_has_pcntl() -> bool {
    let out = Command::new(PHP_FPM).args(["-n", "-m"]).output().expect("php-fpm -m");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "pcntl")
}

/// Runs both with `args` and compares them; gives rustfpm's text.
fn same_as_php_fpm(args: &[&str]) -> String {
    require_file(PHP_FPM, "php8.2-fpm");
    let fpm = phpinfo(PHP_FPM, args);
    let ours = phpinfo(env!("CARGO_BIN_EXE_rustfpm"), args);
    let (want, got) = (comparable(&fpm, true), comparable(&ours, php_fpm_has_pcntl()));
    let names = |s: &[(String, Vec<String>)]| s.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want), "{args:?}: the sections differ");
    for ((name, got), (_, want)) in got.iter().zip(&want) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g, w, "{args:?}: section {name:?}, line {i} differs");
        }
        assert_eq!(
            got.len(),
            want.len(),
            "{args:?}: section {name:?} has {} lines, php-fpm's {}",
            got.len(),
            want.len()
        );
    }
    assert!(ours.starts_with("phpinfo()\nPHP Version => "), "{ours}");
    ours
}

#[test]
fn dash_n_dash_i_is_php_fpms_text() {
    let ours = same_as_php_fpm(&["-n"]);
    assert!(ours.contains("\nServer API => CGI/FastCGI\n"), "the one SAPI line: {ours}");
    assert!(ours.contains("\nPHP License\nThis program is free software;"), "{ours}");
    // No HTML: the only '<' are those php-fpm prints too (the highlight.* colours).
    let fpm = phpinfo(PHP_FPM, &["-n"]);
    for line in ours.lines().filter(|l| l.replace(" => ", "").contains(['<', '>'])) {
        assert!(line.starts_with("highlight.") && fpm.lines().any(|l| l == line), "HTML left in: {line}");
    }
}

#[test]
fn defines_reach_the_php_cgi_that_prints() {
    let ours = same_as_php_fpm(&["-n", "-d", "memory_limit=77M"]);
    assert!(ours.lines().any(|l| l == "memory_limit => 77M => 77M"), "{ours}");
    let attached = phpinfo(env!("CARGO_BIN_EXE_rustfpm"), &["-n", "-dmemory_limit=78M"]);
    assert!(attached.lines().any(|l| l == "memory_limit => 78M => 78M"), "{attached}");
}

#[test]
fn extensions_boxes_and_the_engine_lines_match() {
    // Phar's notes are a box of lines, opcache adds a line to the engine's.
    for (ext, package) in [("phar", "php8.2-common"), ("opcache", "php8.2-opcache"), ("intl", "php8.2-intl")] {
        require_file(&format!("/usr/lib/php/20220829/{ext}.so"), package);
    }
    let args = ["-n", "-d", "extension=phar", "-d", "zend_extension=opcache", "-d", "extension=intl"];
    let ours = same_as_php_fpm(&args);
    assert!(ours.contains("\nPhar based on pear/PHP_Archive, original concept by Davey Shafik.\n"), "{ours}");
    assert!(ours.contains("\n    with Zend OPcache v"), "{ours}");
}
