//! Turning a pool config into what the supervisor execs: the private socket,
//! the command line, the environment and the credentials of php-cgi.

use std::ffi::{CString, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::unistd::{getgrouplist, Gid, Group, Uid, User};

use super::worker::ChildSocket;
use super::PoolError;
use crate::config;
use crate::spawn::{ChildSpec, Credentials, Output, ProcessSettings};

/// Variables rustfpm itself uses or receives, never passed to children.
const OWN_VARIABLES: [&str; 6] =
    ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Makes a directory only rustfpm's user can enter, and the children's
/// listening socket inside it.
pub fn child_socket(pool: &str) -> Result<ChildSocket, PoolError> {
    let dir = crate::sys::rundir::create(pool, "sock", 0o700).map_err(|source| PoolError::ChildSocket {
        pool: pool.into(),
        path: crate::sys::rundir::RUN_DIR.into(),
        source,
    })?;
    let path = dir.join("children.sock");
    match bind_unix(&path) {
        Ok(listener) => Ok(ChildSocket { path, dir, listener }),
        Err(source) => {
            let _ = std::fs::remove_dir(&dir);
            Err(PoolError::ChildSocket { pool: pool.into(), path, source })
        }
    }
}

fn bind_unix(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new(path)?)?;
    listen(&fd, Backlog::new(4096).unwrap_or(Backlog::MAXCONN))?;
    Ok(fd)
}

/// The complete exec description of a pool's php-cgi parent.
pub fn child_spec(cfg: &config::Pool, socket: &ChildSocket, allow_root: bool) -> Result<ChildSpec, PoolError> {
    let credentials = credentials(cfg, allow_root)?;
    let home_user = match &credentials {
        Some(c) => User::from_uid(c.uid).ok().flatten(),
        None => User::from_uid(Uid::current()).ok().flatten(),
    };
    let program = find_program(&cfg.name, &cfg.php_cgi)?;
    let env = environment(cfg, home_user.as_ref());
    Ok(ChildSpec {
        pool: cfg.name.clone(),
        args: args(cfg, &env),
        program,
        env,
        listener: socket.listener.try_clone().map_err(|source| PoolError::ChildSocket {
            pool: cfg.name.clone(),
            path: socket.path.clone(),
            source,
        })?,
        credentials,
        settings: settings(cfg),
        // Pool::start sets up the capture (`catch_workers_output`).
        output: Output::Discard,
    })
}

fn settings(cfg: &config::Pool) -> ProcessSettings {
    let cstring = |p: &PathBuf| CString::new(p.as_os_str().as_encoded_bytes()).ok();
    ProcessSettings {
        chroot: cfg.chroot.as_ref().and_then(cstring),
        chdir: cfg.chdir.as_ref().and_then(cstring),
        rlimit_files: cfg.rlimit_files,
        rlimit_core: cfg.rlimit_core.map(|c| match c {
            config::RlimitCore::Limited(n) => n,
            config::RlimitCore::Unlimited => u64::MAX,
        }),
        priority: cfg.process_priority,
        sched_policy: cfg.process_sched_policy,
    }
}

fn args(cfg: &config::Pool, env: &[(OsString, OsString)]) -> Vec<OsString> {
    let mut args: Vec<OsString> = cfg.php_flags.iter().map(OsString::from).collect();
    if let Some(ini) = ini_path(cfg, env) {
        args.push("-c".into());
        args.push(ini);
    }
    for (key, value) in &cfg.ini {
        args.push("-d".into());
        args.push(define(key, value).into());
    }
    args
}

/// A `-d` argument that gives php-cgi `key` = `value` as php-fpm applies it.
/// php-cgi reads a `-d` as a line of ini text (quoted only when the value
/// starts with neither a letter, a digit nor a quote), so a value is written as
/// ini: see [`ini_value`].
pub fn define(key: &str, value: &str) -> String {
    format!("{key}={}", ini_value(value))
}

/// `value` as ini text that Zend's parser (normal mode, as php-fpm parsed its
/// config) reads back as php-fpm applies it. A constant expression of names,
/// numbers and `| & ^ ~ ! ( )` (`E_ALL & ~E_DEPRECATED`, `32M`, `files`) stays
/// bare, so php-cgi evaluates it as php-fpm's parser did; one that starts with an
/// operator is written `0|...` (the same number), which php-cgi does not quote.
/// Anything else is double-quoted with `\`, `"` and `$` escaped: a `;`, `=`,
/// `&` or `(` in a session URL or a user agent neither cuts the value short
/// nor breaks the ini text (which made php-cgi drop every later setting), and so is a
/// keyword (`None`, `yes`), which php-fpm's parser would have turned into `""` or `1` bare.
pub fn ini_value(value: &str) -> std::borrow::Cow<'_, str> {
    // php-fpm's parser made a bare keyword "1" or "": one still here was quoted (or is a TOML
    // string), so it stays a word (`session.cookie_samesite = "None"`).
    let keyword = config::INI_TRUE.iter().chain(&config::INI_FALSE).any(|k| value.eq_ignore_ascii_case(k));
    match constant_expression(value) && !keyword {
        true if value.starts_with(|c: char| c.is_ascii_alphanumeric()) => value.into(),
        true if value.starts_with(['~', '!', '(']) => format!("0|{value}").into(),
        _ => {
            let mut quoted = String::with_capacity(value.len() + 2);
            quoted.push('"');
            for c in value.chars() {
                if matches!(c, '\\' | '"' | '$') {
                    quoted.push('\\');
                }
                quoted.push(c);
            }
            quoted.push('"');
            quoted.into()
        }
    }
}

/// Whether `text` is a constant expression as Zend's ini parser reads one:
/// words (`[A-Za-z0-9_]+`) joined by `|`, `&` and `^`, each after any number of
/// `~` and `!`, with parentheses. Two words in a row, or an empty text, are not.
fn constant_expression(text: &str) -> bool {
    /// One operand after `at`; returns the position after it.
    fn operand(b: &[u8], mut at: usize, depth: usize) -> Option<usize> {
        at = skip_blanks(b, at);
        while matches!(b.get(at), Some(b'~' | b'!')) {
            at = skip_blanks(b, at + 1);
        }
        match b.get(at)? {
            b'(' if depth < 32 => {
                let end = expression(b, at + 1, depth + 1)?;
                (b.get(end) == Some(&b')')).then_some(end + 1)
            }
            c if c.is_ascii_alphanumeric() || *c == b'_' => {
                Some(at + b[at..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count())
            }
            _ => None,
        }
    }
    /// Operands joined by binary operators from `at`; returns where it ends.
    fn expression(b: &[u8], at: usize, depth: usize) -> Option<usize> {
        let mut at = skip_blanks(b, operand(b, at, depth)?);
        while matches!(b.get(at), Some(b'|' | b'&' | b'^')) {
            at = skip_blanks(b, operand(b, at + 1, depth)?);
        }
        Some(at)
    }
    fn skip_blanks(b: &[u8], at: usize) -> usize {
        at + b[at..].iter().take_while(|c| matches!(c, b' ' | b'\t')).count()
    }
    let b = text.as_bytes();
    expression(b, 0, 0) == Some(b.len())
}

/// The children's environment: built from scratch unless `clear_env = false`.
pub fn environment(cfg: &config::Pool, user: Option<&User>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    if !cfg.clear_env {
        env.extend(std::env::vars_os().filter(|(k, _)| {
            let k = k.to_string_lossy();
            !OWN_VARIABLES.contains(&k.as_ref()) && !k.starts_with("RUSTFPM_")
        }));
    }
    if let Some(u) = user {
        set(&mut env, "USER", u.name.clone().into());
        set(&mut env, "HOME", u.dir.clone().into_os_string());
    }
    for (k, v) in &cfg.env {
        set(&mut env, k, v.into());
    }
    if let Some(dir) = scan_dir(cfg).filter(|_| !env.iter().any(|(k, _)| k == "PHP_INI_SCAN_DIR")) {
        set(&mut env, "PHP_INI_SCAN_DIR", dir.into_os_string());
    }
    set(&mut env, "PHP_FCGI_CHILDREN", cfg.pm_max_children.to_string().into());
    // rustfpm recycles children itself; php-cgi's default would recycle every 500.
    set(&mut env, "PHP_FCGI_MAX_REQUESTS", "0".into());
    env
}

/// The `conf.d` beside the pool's php.ini, if there is one: php-fpm's own
/// layout (Debian's `/etc/php/8.2/fpm/php.ini` and `fpm/conf.d`, the Docker
/// images' `/usr/local/etc/php/php.ini` and `php/conf.d`). php-cgi would scan
/// the directory it was built with (Debian's `cgi/conf.d`) whatever its `-c`,
/// so php-fpm's ini files there (`phpenmod -s fpm`, a site's overrides) would
/// be left out. A `PHP_INI_SCAN_DIR` the pool's environment sets wins.
fn scan_dir(cfg: &config::Pool) -> Option<PathBuf> {
    let ini = php_ini(cfg)?;
    let dir = if ini.is_dir() { ini.as_path() } else { ini.parent()? };
    Some(dir.join("conf.d")).filter(|d| d.is_dir())
}

/// Where php-cgi is told to read its php.ini (`-c`): the pool's, else where
/// PHP would look first, the children's `PHPRC`. None with `-n`, or when
/// neither is set: [`super::Pool::start`] then gives the directory php-cgi
/// was built with (its phpinfo says which). Never left to PHP's search:
/// unlike php-fpm, php-cgi also looks in its working directory (the pool's
/// `chdir`), where a pool user who can write there would put a php.ini of
/// their own (`disable_functions` gone, their `extension=` loaded).
fn ini_path(cfg: &config::Pool, env: &[(OsString, OsString)]) -> Option<OsString> {
    if let Some(ini) = php_ini(cfg) {
        return Some(ini.clone().into_os_string());
    }
    env.iter().find(|(k, v)| k == "PHPRC" && !v.is_empty() && !no_ini(cfg)).map(|(_, rc)| rc.clone())
}

/// php-cgi would search for its php.ini, its working directory included:
/// no `-n`, no `-c` and no `PHPRC` (see [`ini_path`]).
pub fn ini_searched(cfg: &config::Pool, spec: &ChildSpec) -> bool {
    !no_ini(cfg) && ini_path(cfg, &spec.env).is_none()
}

/// The pool's php.ini, unless PHP's `-n` (no php.ini) is among its flags.
fn php_ini(cfg: &config::Pool) -> Option<&PathBuf> {
    cfg.php_ini.as_ref().filter(|_| !no_ini(cfg))
}

/// PHP's `-n` (no php.ini) is among the pool's flags.
fn no_ini(cfg: &config::Pool) -> bool {
    cfg.php_flags.iter().any(|f| f == "-n")
}

fn set(env: &mut Vec<(OsString, OsString)>, key: &str, value: OsString) {
    env.retain(|(k, _)| k != key);
    env.push((key.into(), value));
}

/// The start's checks of the pool's `user` and `group` (see [`child_spec`]), for `-t`.
pub fn check_credentials(cfg: &config::Pool, allow_root: bool) -> Result<(), PoolError> {
    credentials(cfg, allow_root).map(drop)
}

fn credentials(cfg: &config::Pool, allow_root: bool) -> Result<Option<Credentials>, PoolError> {
    let err = |message: String| PoolError::Credentials { pool: cfg.name.clone(), message };
    if !Uid::effective().is_root() {
        if cfg.user.is_some() {
            crate::notice!("[pool {}] 'user' directive is ignored when FPM is not running as root", cfg.name);
        }
        return Ok(None);
    }
    let Some(name) = &cfg.user else {
        return if allow_root {
            Ok(None)
        } else {
            Err(err("please specify user and group other than root (or run with -R)".into()))
        };
    };
    let user = user_entry(name).map_err(|e| err(format!("cannot look up user '{name}': {e}")))?;
    let user = user.ok_or_else(|| err(format!("user '{name}' does not exist")))?;
    let gid = match &cfg.group {
        Some(g) => {
            Group::from_name(g)
                .map_err(|e| err(format!("cannot look up group '{g}': {e}")))?
                .ok_or_else(|| err(format!("group '{g}' does not exist")))?
                .gid
        }
        None => user.gid,
    };
    if (user.uid.is_root() || gid == Gid::from_raw(0)) && !allow_root {
        return Err(err("please specify user and group other than root (or run with -R)".into()));
    }
    let cname = std::ffi::CString::new(user.name.as_bytes()).map_err(|_| err(format!("bad user name '{name}'")))?;
    let groups = getgrouplist(&cname, gid).unwrap_or_else(|_| vec![gid]);
    Ok(Some(Credentials { uid: user.uid, gid, groups }))
}

/// The passwd entry of `name`; a number is a uid, as in php-fpm, and one without an entry
/// stands for itself: its group is the same number, its home `/`.
fn user_entry(name: &str) -> nix::Result<Option<User>> {
    let Ok(uid) = name.parse::<u32>() else { return User::from_name(name) };
    Ok(Some(User::from_uid(Uid::from_raw(uid))?.unwrap_or_else(|| User {
        name: name.to_string(),
        passwd: Default::default(),
        uid: Uid::from_raw(uid),
        gid: Gid::from_raw(uid),
        gecos: Default::default(),
        dir: "/".into(),
        shell: "/bin/sh".into(),
    })))
}

fn find_program(pool: &str, program: &Path) -> Result<PathBuf, PoolError> {
    let err = |message: &str| PoolError::PhpCgi { pool: pool.into(), path: program.into(), message: message.into() };
    if program.components().count() > 1 {
        return if program.is_file() { Ok(program.into()) } else { Err(err("no such file")) };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| err("not found on PATH (install php-cgi, or set php_cgi to its path)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What php-fpm applies reaches php-cgi whole: text that ini would read
    /// otherwise is quoted, constant expressions stay for php-cgi to evaluate.
    #[test]
    fn values_are_written_as_ini_that_reads_back_as_php_fpm_applies_them() {
        for (value, ini) in [
            ("32M", "32M"),
            ("files", "files"),
            ("E_ALL & ~E_DEPRECATED & ~E_STRICT", "E_ALL & ~E_DEPRECATED & ~E_STRICT"),
            ("(E_ALL|E_STRICT) ^ E_NOTICE", "0|(E_ALL|E_STRICT) ^ E_NOTICE"),
            ("~E_NOTICE", "0|~E_NOTICE"),
            ("-1", "\"-1\""),
            ("", "\"\""),
            ("/var/lib/php/sessions", "\"/var/lib/php/sessions\""),
            ("2;/var/lib/php/sessions", "\"2;/var/lib/php/sessions\""),
            ("tcp://127.0.0.1:6379?auth=secret&database=2", "\"tcp://127.0.0.1:6379?auth=secret&database=2\""),
            ("Mozilla/5.0 (compatible)", "\"Mozilla/5.0 (compatible)\""),
            (r#"say "hi" \ ${HOME} $x"#, r#""say \"hi\" \\ \${HOME} \$x""#),
            ("two words", "\"two words\""),
            ("E_ALL &", "\"E_ALL &\""),
            ("(E_ALL", "\"(E_ALL\""),
            ("_x", "\"_x\""),
            ("None", "\"None\""),
            ("yes", "\"yes\""),
            ("NULL", "\"NULL\""),
            ("Nonesuch", "Nonesuch"),
        ] {
            assert_eq!(ini_value(value), ini, "{value:?}");
        }
        assert_eq!(define("session.name", "SID;x"), "session.name=\"SID;x\"");
    }
}
