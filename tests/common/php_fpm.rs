//! The real php-fpm8.2 as a reference: tests send it the same params as rustfpm and compare.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::fcgi::{send, Reply};
use super::{require_file, wait_until, PoolOptions, Rustfpm, Site};

/// php-fpm8.2 with one pool on a unix socket in the site's directory. Killed and reaped on drop.
pub struct PhpFpm {
    child: Child,
    /// Its pool's socket.
    pub socket: PathBuf,
}

impl PhpFpm {
    /// Starts php-fpm8.2 (with Debian's php.ini, as rustfpm's php-cgi) with `admin` as the pool's
    /// `php_admin_value` lines; waits until it answers.
    pub fn start(site: &Site, admin: &str) -> PhpFpm {
        require_file("/usr/sbin/php-fpm8.2", "php8.2-fpm");
        let dir = site.path();
        let socket = dir.join("php-fpm.sock");
        let config = dir.join("php-fpm.conf");
        let log = dir.join("php-fpm.log");
        let text = format!(
            "[global]\nerror_log = {}\npid = {}\n[www]\nlisten = {}\npm = static\npm.max_children = 1\n{admin}",
            log.display(),
            dir.join("php-fpm.pid").display(),
            socket.display()
        );
        std::fs::write(&config, text).unwrap();
        let child = Command::new("/usr/sbin/php-fpm8.2")
            .args(["-F", "-R", "-y"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start php-fpm8.2");
        let fpm = PhpFpm { child, socket };
        let ready = || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("ready to handle connections"));
        assert!(wait_until(Duration::from_secs(10), ready), "php-fpm8.2 did not start: {:?}", std::fs::read(&log));
        fpm
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let stopped = wait_until(Duration::from_secs(5), || matches!(self.child.try_wait(), Ok(Some(_))));
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The script: the `$_SERVER` entries Apache's params and php-fpm's rewrite of them decide,
/// in `$_SERVER`'s order, one `NAME=value` line each.
pub const ENV_SCRIPT: &str = r#"<?php
$keys = ['SCRIPT_FILENAME', 'SCRIPT_NAME', 'PATH_INFO', 'PATH_TRANSLATED', 'DOCUMENT_ROOT',
    'REQUEST_URI', 'QUERY_STRING', 'ORIG_SCRIPT_FILENAME', 'ORIG_SCRIPT_NAME', 'ORIG_PATH_INFO',
    'ORIG_PATH_TRANSLATED', 'REDIRECT_URL', 'PHP_SELF'];
foreach ($_SERVER as $k => $v) {
    if (in_array($k, $keys, true)) {
        echo $k, '=', $v, "\n";
    }
}
"#;

/// rustfpm and php-fpm8.2 on one site (with `env.php`), with the same `cgi.*` values.
pub struct Pair {
    /// The site both serve.
    pub site: Site,
    /// rustfpm, one child.
    pub rustfpm: Rustfpm,
    /// php-fpm8.2, one child.
    pub php_fpm: PhpFpm,
}

impl Pair {
    pub fn start(fix_pathinfo: bool) -> Pair {
        let site = Site::new();
        site.script("env.php", ENV_SCRIPT);
        let (fix, discard) = if fix_pathinfo { ("1", "0") } else { ("0", "1") };
        let tables = format!(
            "[pool.www.php_admin_value]\n\"cgi.fix_pathinfo\" = \"{fix}\"\n\"cgi.discard_path\" = \"{discard}\"\n"
        );
        let opts = PoolOptions { children: 1, tables, ..PoolOptions::default() };
        let rustfpm = Rustfpm::start(&site, &opts);
        let admin =
            format!("php_admin_value[cgi.fix_pathinfo] = {fix}\nphp_admin_value[cgi.discard_path] = {discard}\n");
        let php_fpm = PhpFpm::start(&site, &admin);
        Pair { site, rustfpm, php_fpm }
    }

    pub fn www(&self) -> String {
        self.site.www().display().to_string()
    }

    /// Sends `params` (after the usual CGI ones) to both; returns rustfpm's reply after
    /// checking it shows what php-fpm's does.
    pub fn same(&self, what: &str, params: &[(&str, &str)]) -> Reply {
        self.same_but(what, params, None)
    }

    /// [`Pair::same`], but for the `$_SERVER` entry `unseen`, which php-fpm's script sees and
    /// rustfpm's does not.
    pub fn same_but(&self, what: &str, params: &[(&str, &str)], unseen: Option<&str>) -> Reply {
        let mut all: Vec<(&str, &[u8])> =
            vec![("GATEWAY_INTERFACE", b"CGI/1.1"), ("REQUEST_METHOD", b"GET"), ("SERVER_PROTOCOL", b"HTTP/1.1")];
        all.extend(params.iter().map(|(n, v)| (*n, v.as_bytes())));
        let reference = send(&self.php_fpm.socket, &all);
        let ours = send(&self.rustfpm.socket, &all);
        let unseen = unseen.map(|name| format!("{name}="));
        let seen = |line: &&str| unseen.as_ref().is_none_or(|u| !line.starts_with(u.as_str()));
        let expected: Vec<&str> = reference.body().lines().filter(seen).collect();
        assert_eq!(
            (ours.status, ours.body().lines().collect::<Vec<_>>()),
            (reference.status, expected),
            "{what}: rustfpm (left) and php-fpm8.2 (right) differ; php-fpm's reply: {reference:?}"
        );
        ours
    }
}

/// Asserts that each of `lines` is a line of the reply's body.
pub fn assert_shows(reply: &Reply, lines: &[&str]) {
    for line in lines {
        assert!(reply.body().lines().any(|l| l == *line), "{line:?} missing from {:?}", reply.body());
    }
}
