//! The access log's `%s` is the response code a script set last, as php-fpm logs it, also when
//! the script set it after its headers went out (`http_response_code(500)` after output: the
//! client got 200). Each test sends the same requests to the real rustfpm with real php-cgi
//! and to the real php-fpm8.2, and compares the access logs line for line.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::fcgi::{send, Reply};
use common::php_fpm::PhpFpm;
use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// php-fpm's format of the php-src test (`log-suppress-output`).
const FORMAT: &str = "'%m %r%Q%q' %s";

/// Output that reaches the client first (every output buffer flushed), then a 500.
const LATE_500: &str = "<?php while (ob_get_level() > 0) { ob_end_flush(); }
echo 'Not OK'; flush(); http_response_code(500);";

/// rustfpm and php-fpm8.2 on one site, both with an access log in [`FORMAT`] that suppresses
/// plain successful requests for `/quiet.php`.
struct Logged {
    site: Site,
    rustfpm: Rustfpm,
    php_fpm: PhpFpm,
}

impl Logged {
    fn start() -> Logged {
        let site = Site::new();
        for name in ["late.php", "quiet.php"] {
            site.script(name, LATE_500);
        }
        site.script("early.php", "<?php http_response_code(404); echo 'gone';");
        site.script("ok.php", "<?php echo 'OK';");
        let extra = format!(
            "access_log = \"{}\"\naccess_format = \"{FORMAT}\"\naccess_suppress_path = [\"/quiet.php\"]",
            site.path().join("rustfpm-access.log").display()
        );
        let rustfpm = Rustfpm::start(&site, &PoolOptions { children: 1, extra, ..PoolOptions::default() });
        let lines = format!(
            "access.log = {}\naccess.format = \"{FORMAT}\"\naccess.suppress_path[] = /quiet.php\n",
            site.path().join("php-fpm-access.log").display()
        );
        let php_fpm = PhpFpm::start(&site, &lines);
        Logged { site, rustfpm, php_fpm }
    }

    /// GETs `script` from both; returns rustfpm's reply after checking that the client gets
    /// what php-fpm's gets.
    fn get(&self, script: &str) -> Reply {
        let filename = self.site.www().join(script).display().to_string();
        let name = format!("/{script}");
        let params: [(&str, &[u8]); 4] = [
            ("REQUEST_METHOD", b"GET"),
            ("SCRIPT_FILENAME", filename.as_bytes()),
            ("SCRIPT_NAME", name.as_bytes()),
            ("QUERY_STRING", b""),
        ];
        let (ours, reference) = (send(&self.rustfpm.socket, &params), send(&self.php_fpm.socket, &params));
        assert_eq!((ours.status, ours.body()), (reference.status, reference.body()), "{script}: {reference:?}");
        ours
    }

    fn log(&self, name: &str) -> PathBuf {
        self.site.path().join(name)
    }
}

/// The lines of `path` once it has `n`.
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let read = || std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>();
    wait_until(WAIT, || read().len() >= n);
    read()
}

#[test]
fn the_access_log_shows_the_code_the_script_set_last_as_php_fpm_does() {
    let logged = Logged::start();
    let late = logged.get("late.php");
    assert_eq!((late.status, late.body()), (200, "Not OK"), "the client got 200: the headers went out first");
    logged.get("quiet.php");
    assert_eq!(logged.get("early.php").status, 404);
    logged.get("ok.php");
    // quiet.php is suppressed unless it fails: logged for its 500.
    let theirs = wait_lines(&logged.log("php-fpm-access.log"), 4);
    let ours = wait_lines(&logged.log("rustfpm-access.log"), 4);
    assert_eq!(ours, theirs, "rustfpm's access log (left), php-fpm's (right)");
    let want = ["'GET /late.php' 500", "'GET /quiet.php' 500", "'GET /early.php' 404", "'GET /ok.php' 200"];
    assert_eq!(ours, want);
    // The report never reaches the client or the error log.
    let log = logged.rustfpm.log_text();
    assert!(!log.contains("rustfpm-finish-request"), "{log}");
}

#[test]
fn a_pool_without_an_access_log_runs_no_shutdown_function() {
    let site = Site::new();
    site.script("probe.php", "<?php var_dump(function_exists('rustfpm_final_status'));");
    let with_log = format!("access_log = \"{}\"", site.path().join("access.log").display());
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..PoolOptions::default() });
    let probe = |fpm: &Rustfpm| {
        let filename = site.www().join("probe.php").display().to_string();
        send(&fpm.socket, &[("REQUEST_METHOD", b"GET"), ("SCRIPT_FILENAME", filename.as_bytes())]).body().to_string()
    };
    assert_eq!(probe(&fpm), "bool(false)\n");
    drop(fpm);
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, extra: with_log, ..PoolOptions::default() });
    assert_eq!(probe(&fpm), "bool(true)\n");
}
