//! `php_admin_value` / `php_admin_flag` made unchangeable in php-cgi, as
//! php-fpm makes them: neither `.user.ini` nor `ini_set()` can change them.
//!
//! php-cgi has no admin/user distinction for `-d`, but it has php.ini's
//! `[PATH=/dir]` sections: at the start of each request it applies the
//! sections of the script's directory and of every directory above it
//! (`php_ini_activate_per_dir_config`, from the first level down, never `/`
//! itself) with `PHP_INI_SYSTEM` at the activate stage, which also sets the
//! entry's `modifiable` to `PHP_INI_SYSTEM` for that request (Zend's
//! `zend_alter_ini_entry_ex`). So `.user.ini` (`PHP_INI_PERDIR`, applied
//! after the sections) and `ini_set()` (`PHP_INI_USER`) are refused, as
//! under php-fpm.
//!
//! The sections reach php-cgi in one `-d` argument: php-cgi copies a `-d`
//! value that starts with a letter or digit into its ini text as it is,
//! newlines included, and parses that text after every php.ini (even with
//! `-n`). An ini text cannot leave a `[PATH=...]` section again, so this
//! argument must be php-cgi's last `-d`. One section is written per entry
//! of `/` at start: a script directly in `/`, or under a top-level
//! directory made later, gets the admin values unlocked (still set by `-d`).

use std::ffi::OsString;
use std::path::Path;

use crate::config;

/// The `-d` arguments that lock the pool's admin values (none if it has
/// none); they must come after every other `-d`. The values locked are the
/// last ones the php-cgi arguments `args` give (the polyfill's own
/// `open_basedir` and `auto_prepend_file` included). Values that cannot be
/// written in an ini section (with a newline) are left unlocked and named.
pub fn lock_args(cfg: &config::Pool, args: &[OsString]) -> Vec<OsString> {
    let defines = defines(args);
    let values: Vec<(&str, &str)> = cfg
        .admin_ini_keys
        .iter()
        .filter_map(|key| defines.iter().rev().find(|(k, _)| k == key).copied())
        .filter(|(k, v)| {
            let fits = !k.contains(['\n', '\r', '=', '[', ']']) && !v.contains(['\n', '\r']);
            if !fits {
                crate::warning!("[pool {}] php_admin_value[{k}] cannot be locked: scripts may change it", cfg.name);
            }
            fits
        })
        .collect();
    if values.is_empty() {
        return Vec::new();
    }
    vec!["-d".into(), sections(&top_level_dirs(Path::new("/")), &values).into()]
}

/// The `key=value` pairs of the `-d` arguments in `args`, in order.
fn defines(args: &[OsString]) -> Vec<(&str, &str)> {
    args.windows(2).filter(|pair| pair[0] == "-d").filter_map(|pair| pair[1].to_str()?.split_once('=')).collect()
}

/// The entries of `root` (directories and links to them), as absolute paths.
fn top_level_dirs(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut dirs: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.path().to_str().map(str::to_string))
        .filter(|p| !p.contains(['\n', '\r', ']']))
        .collect();
    dirs.sort();
    dirs
}

/// The ini text: a harmless first entry (php-cgi quotes a `-d` value that
/// does not start with a letter or digit), then one `[PATH=dir]` section per
/// directory with every admin value.
fn sections(dirs: &[String], values: &[(&str, &str)]) -> String {
    let mut text = String::from("rustfpm.php_admin=1\n");
    for dir in dirs {
        text.push_str(&format!("[PATH={dir}]\n"));
        for (key, value) in values {
            // As php-cgi wrote the `-d` that set it.
            text.push_str(&String::from_utf8_lossy(&crate::sys::private_ini::ini_line(
                format!("{key}={value}").as_bytes(),
            )));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_section_per_directory_with_every_value() {
        let dirs = ["/srv".to_string(), "/var".to_string()];
        let text = sections(&dirs, &[("memory_limit", "32M"), ("open_basedir", "/srv:/tmp")]);
        assert_eq!(
            text,
            "rustfpm.php_admin=1\n[PATH=/srv]\nmemory_limit=32M\nopen_basedir=\"/srv:/tmp\"\n\
             [PATH=/var]\nmemory_limit=32M\nopen_basedir=\"/srv:/tmp\"\n"
        );
    }

    #[test]
    fn the_last_define_of_a_key_is_locked() {
        let args: Vec<OsString> =
            ["-n", "-d", "open_basedir=/srv", "-d", "x", "-d", "open_basedir=/srv:/run/p"].map(Into::into).into();
        assert_eq!(defines(&args), [("open_basedir", "/srv"), ("open_basedir", "/srv:/run/p")]);
    }

    #[test]
    fn top_level_entries_are_listed() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("b")).unwrap();
        std::fs::create_dir(root.path().join("a")).unwrap();
        std::fs::write(root.path().join("file"), "").unwrap();
        let base = root.path().display();
        assert_eq!(top_level_dirs(root.path()), [format!("{base}/a"), format!("{base}/b")]);
    }
}
