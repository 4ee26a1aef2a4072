//! A reload that names another pid file writes it (php-fpm's re-exec writes the new one), and
//! every pid file rustfpm wrote is gone after it exits. SIGHUP reloads as SIGUSR2 does (php-fpm
//! 8.2 reloads on both; the default action would end rustfpm and leave its pid file).

mod common;
use common::*;

use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_reload_writes_the_new_pid_file() {
    let site = Site::new();
    let [first, second, third] = ["first.pid", "second.pid", "third.pid"].map(|name| site.path().join(name));
    let global = format!("pid = \"{}\"", first.display());
    let mut fpm = Rustfpm::start(&site, &PoolOptions { global, ..PoolOptions::default() });
    let pid = format!("{}\n", fpm.pid());
    assert_eq!(std::fs::read_to_string(&first).ok().as_deref(), Some(pid.as_str()));
    let text = std::fs::read_to_string(&fpm.config).unwrap();
    for (from, to, signal) in [(&first, &second, libc::SIGUSR2), (&second, &third, libc::SIGHUP)] {
        let renamed = text.replace(&first.display().to_string(), &to.display().to_string());
        std::fs::write(&fpm.config, renamed).unwrap();
        fpm.signal(signal);
        let written = wait_until(WAIT, || std::fs::read_to_string(to).ok().as_deref() == Some(pid.as_str()));
        assert!(written, "{} was not written at the reload:\n{}", to.display(), fpm.log_text());
        // The one an earlier reload wrote is gone; the first stays until exit (it names us).
        assert!(from == &first || !from.exists(), "{} is left after the reload", from.display());
    }
    assert!(first.exists());
    fpm.signal(libc::SIGTERM);
    assert!(fpm.wait_exit(WAIT).is_some(), "rustfpm did not stop:\n{}", fpm.log_text());
    assert!(!first.exists() && !third.exists(), "a pid file is left after exit:\n{}", fpm.log_text());
}
