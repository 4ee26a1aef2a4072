//! Nothing blocks the runtime thread: slow work that a reload does (reading
//! the configuration, `php-cgi -i` for each pool) runs beside it, while
//! requests keep being served.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// A php-cgi whose `-i` (the probe a pool start runs) waits for a gate file.
fn gated_php_cgi(site: &Site) -> std::path::PathBuf {
    let gate = site.scratch().join("gate");
    std::fs::write(&gate, "").unwrap();
    let wrapper = site.path().join("php-cgi-gated");
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *\" -i \"*) while [ ! -e {} ]; do sleep 0.05; done;; esac\nexec php-cgi \"$@\"\n",
        gate.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

#[test]
fn requests_are_served_while_a_reload_probes_php_cgi() {
    let site = Site::new();
    let wrapper = gated_php_cgi(&site);
    let opts = PoolOptions { extra: format!("php_cgi = \"{}\"", wrapper.display()), ..Default::default() };
    let fpm = Rustfpm::start(&site, &opts);
    let nginx = Nginx::start(&site, &fpm);
    let stack = Stack { nginx, fpm, site };
    assert_eq!(get(&stack.url("/hello.php")).status, 200);

    let gate = stack.site.scratch().join("gate");
    std::fs::remove_file(&gate).unwrap();
    stack.fpm.signal(libc::SIGUSR2);
    assert!(wait_until(Duration::from_secs(10), || stack.fpm.log_text().contains("Reloading in progress")));
    // The new generation's probe is stuck at the gate; the running pool serves.
    for _ in 0..5 {
        assert_eq!(get(&stack.url("/hello.php")).status, 200);
    }
    assert!(!stack.fpm.log_text().contains("configuration reloaded"), "{}", stack.fpm.log_text());
    std::fs::write(&gate, "").unwrap();
    let reloaded = wait_until(Duration::from_secs(10), || stack.fpm.log_text().contains("configuration reloaded"));
    assert!(reloaded, "{}", stack.fpm.log_text());
    assert_eq!(get(&stack.url("/hello.php")).status, 200);
}
