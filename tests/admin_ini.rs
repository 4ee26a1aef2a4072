//! `php_admin_value` is unchangeable by scripts, as in php-fpm: neither a
//! `.user.ini` nor `ini_set()` changes it, while a `php_value` loses to
//! `.user.ini` and yields to `ini_set()`. Real nginx → rustfpm → php-cgi.

mod common;
use common::*;

/// What the script in `www/admin/` sees, next to a `.user.ini` that sets
/// both keys.
fn seen(tables: &str) -> String {
    let stack = Stack::with(PoolOptions { children: 1, tables: tables.into(), ..PoolOptions::default() });
    let dir = stack.site.www().join("admin");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(".user.ini"), "memory_limit=64M\ndate.timezone=Europe/Paris\n").unwrap();
    std::fs::write(
        dir.join("ini.php"),
        "<?php echo ini_get('memory_limit'), ' ', ini_get('date.timezone'), ' ', \
         var_export(ini_set('memory_limit', '100M'), true), ' ', ini_get('memory_limit');",
    )
    .unwrap();
    let r = get(&stack.url("/admin/ini.php"));
    assert_eq!(r.status, 200, "{r:?}");
    r.text()
}

#[test]
fn admin_values_win_over_user_ini_and_ini_set() {
    let tables = "[pool.www.php_admin_value]\nmemory_limit = \"32M\"\n\
                  [pool.www.php_value]\n\"date.timezone\" = \"Europe/London\"\n";
    assert_eq!(seen(tables), "32M Europe/Paris false 32M");
}

#[test]
fn plain_values_lose_to_user_ini_and_ini_set() {
    let tables = "[pool.www.php_value]\nmemory_limit = \"32M\"\n\"date.timezone\" = \"Europe/London\"\n";
    assert_eq!(seen(tables), "64M Europe/Paris '64M' 100M");
}

#[test]
fn a_locked_open_basedir_still_lets_the_polyfill_in() {
    let site = Site::new();
    let tables = format!("[pool.www.php_admin_value]\nopen_basedir = \"{}\"\n", site.www().display());
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, tables, ..PoolOptions::default() });
    let nginx = Nginx::start(&site, &fpm);
    site.script(
        "basedir.php",
        "<?php echo ini_get('open_basedir') !== '' ? 'set' : 'unset', ' ', \
         var_export(function_exists('fastcgi_finish_request'), true), ' ', var_export(ini_set('open_basedir', '/'), true);",
    );
    let r = get(&nginx.url("/basedir.php"));
    assert_eq!((r.status, r.text().as_str()), (200, "set true false"), "{r:?}");
}

/// A TOML pool's values (with php.ini and its `conf.d` scanned, no `-n`) are not on
/// php-cgi's command line, which every local user may read; they still arrive, after
/// what php.ini and `conf.d` set.
#[test]
fn values_stay_off_the_command_line_with_php_ini_scanned() {
    let tables = "[pool.www.php_admin_value]\n\"session.save_path\" = \"tcp://db:6379?auth=S3CRET-pw\"\n";
    let stack = Stack::with(PoolOptions { children: 1, tables: tables.into(), ..PoolOptions::default() });
    stack.site.script(
        "scan.php",
        "<?php $conf_d = array_filter(explode(',', (string) php_ini_scanned_files()), \
         fn ($f) => str_ends_with(trim($f), '.ini') && !str_ends_with(trim($f), '/rustfpm.ini')); \
         echo ini_get('session.save_path'), ' ', $conf_d ? 'scanned' : 'none';",
    );
    let r = get(&stack.url("/scan.php"));
    assert_eq!((r.status, r.text().as_str()), (200, "tcp://db:6379?auth=S3CRET-pw scanned"), "{r:?}");
    for pid in [stack.fpm.php_parents(), stack.fpm.php_pids()].concat() {
        let line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&line).contains("S3CRET"), "{}", String::from_utf8_lossy(&line));
    }
}

/// A command a script runs inherits the descriptor php-cgi read its settings from; where the
/// polyfill cannot take `PHP_INI_SCAN_DIR` out of its environment (`putenv()` disabled, as
/// shared hosts do), a php binary it runs would read the pool's settings through it. rustfpm
/// empties it once php-cgi has read it (a helper's soak: the command saw 41M).
#[test]
fn commands_scripts_run_do_not_read_the_pools_settings() {
    let tables = "[pool.www.php_admin_value]\nmemory_limit = \"41M\"\ndisable_functions = \"putenv\"\n";
    let stack = Stack::with(PoolOptions { children: 1, tables: tables.into(), ..PoolOptions::default() });
    stack.site.script("cli.php", "<?php echo ini_get('memory_limit');");
    let cli = stack.site.www().join("cli.php");
    stack.site.script(
        "run.php",
        &format!(
            "<?php echo ini_get('memory_limit'), ' ', trim((string) shell_exec('php-cgi -q {} < /dev/null'));",
            cli.display()
        ),
    );
    let mut seen = String::new();
    let emptied = wait_until(std::time::Duration::from_secs(10), || {
        seen = get(&stack.url("/run.php")).text();
        seen.starts_with("41M ") && !seen.ends_with(" 41M")
    });
    assert!(emptied, "the script's php-cgi read the pool's settings: {seen}");
}
