//! php-fpm's directives converted: each entry becomes an [`Item`], a TOML key with its value
//! typed as the TOML loader expects it, following the [`directives`](super::directives) table;
//! paths are resolved against the prefixes as php-fpm resolves them. Values are only converted
//! here: the TOML loader's validation checks them.

use std::path::{Path, PathBuf};

use super::directives::{find, unknown, Action, Action::*, Kind, ARRAYS, BOOLEAN, GLOBAL, PATH_SETTINGS, POOL};
use super::ini::{env_var, Document, Entry, Section};
use super::{Notes, Sources};
use super::{
    FPM_DEFAULT_ERROR_LOG, FPM_DEFAULT_PREFIX, FPM_DEFAULT_SECURITY_LIMIT_EXTENSIONS, FPM_DEFAULT_STATE_PREFIX,
};
use crate::config::{listen, parse_duration, ListenAddr};

/// A value typed as the TOML loader expects it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    /// An integer, in decimal.
    Int(String),
    Bool(bool),
    Text(String),
    /// An array of strings, as TOML text (`["/ping", "/status"]`).
    List(String),
}

/// One TOML key and its value. Table entries are keyed `env.NAME`, `php_value.NAME`, ...
#[derive(Debug)]
pub(super) struct Item {
    pub key: String,
    pub value: Value,
    /// The synthetic line of the directive, 0 for a php-fpm default.
    pub line: usize,
}

#[derive(Debug)]
pub(super) struct PoolItems {
    pub name: String,
    pub line: usize,
    pub items: Vec<Item>,
}

#[derive(Debug)]
pub(super) struct Items {
    pub global: Vec<Item>,
    pub pools: Vec<PoolItems>,
}

pub(super) fn interpret(
    document: &Document,
    prefix: Option<&Path>,
    sources: &Sources,
    notes: &mut Notes<'_, '_>,
) -> Items {
    let reader = Interpreter { prefix, sources };
    let global = reader.global(&document.global, notes);
    let pools = document
        .pools
        .iter()
        .map(|section| {
            notes.set_pool(Some(&section.name));
            let pool = reader.pool(section, notes);
            notes.set_pool(None);
            pool
        })
        .collect();
    Items { global, pools }
}

struct Interpreter<'a> {
    prefix: Option<&'a Path>,
    sources: &'a Sources,
}

/// A pool's directives that depend on each other, the last of each.
#[derive(Default)]
struct PoolPaths<'e> {
    prefix: Option<&'e Entry>,
    listen: Option<&'e Entry>,
    status_listen: Option<&'e Entry>,
    allowed_clients: Option<&'e Entry>,
    chroot: Option<&'e Entry>,
    chdir: Option<&'e Entry>,
    /// `access.log` and `slowlog`, with their TOML keys.
    logs: Vec<(&'static str, &'e Entry)>,
}

impl Interpreter<'_> {
    fn global(&self, entries: &[Entry], notes: &mut Notes<'_, '_>) -> Vec<Item> {
        let mut items = Vec::new();
        let state = self.prefix.unwrap_or(Path::new(FPM_DEFAULT_STATE_PREFIX));
        for e in entries {
            if e.index.is_some() {
                error(e, notes, "arrays such as php_value[...] and env[...] belong in a pool section, not [global]");
                continue;
            }
            let Some(action) = find(GLOBAL, &e.name) else {
                error(e, notes, unknown(&e.name, GLOBAL, POOL, "a pool section"));
                continue;
            };
            match action {
                Pid if e.value.is_empty() => {}
                Pid => items.push(text("pid", resolve(state, &e.value), e.line)),
                // Empty: php-fpm's default, below.
                ErrorLog if e.value.is_empty() => {}
                ErrorLog if e.value.eq_ignore_ascii_case("syslog") => {
                    items.push(text("error_log", "syslog".to_string(), e.line));
                }
                ErrorLog => items.push(text("error_log", resolve(state, &e.value), e.line)),
                // rustfpm always writes a child's line whole (up to log_limit), as php-fpm's
                // default `log_buffering = yes` does.
                LogBuffering => match fpm_bool(&e.value) {
                    Some(true) => {}
                    Some(false) => warn(e, notes, "rustfpm always buffers a child's output into whole lines; ignored"),
                    None => error(e, notes, BOOLEAN),
                },
                action => simple(e, action, &mut items, notes),
            }
        }
        if !items.iter().any(|item| item.key == "error_log") {
            items.push(text("error_log", resolve(state, FPM_DEFAULT_ERROR_LOG), 0));
        }
        // php-fpm daemonizes unless told otherwise (`daemonize = no`, or -F).
        if !items.iter().any(|item| item.key == "daemonize") {
            items.push(Item { key: "daemonize".to_string(), value: Value::Bool(true), line: 0 });
        }
        items
    }

    fn pool(&self, section: &Section, notes: &mut Notes<'_, '_>) -> PoolItems {
        let mut items = Vec::new();
        let mut paths = PoolPaths::default();
        let mut arrays = Vec::new();
        for e in &section.entries {
            if e.index.is_some() {
                arrays.push(e);
                continue;
            }
            match find(POOL, &e.name) {
                None => error(e, notes, unknown(&e.name, POOL, GLOBAL, "the [global] section")),
                Some(Prefix) => paths.prefix = Some(e),
                Some(Listen) => paths.listen = Some(e),
                Some(StatusListen) => paths.status_listen = Some(e),
                Some(AllowedClients) => paths.allowed_clients = Some(e),
                Some(Chroot) => paths.chroot = Some(e),
                Some(Chdir) => paths.chdir = Some(e),
                Some(LogPath(key)) => paths.logs.push((key, e)),
                Some(action) => simple(e, action, &mut items, notes),
            }
        }
        let pool_prefix = self.pool_prefix(paths.prefix, notes);
        let base = pool_prefix.as_deref().or(self.prefix).unwrap_or(Path::new(FPM_DEFAULT_PREFIX));
        self.paths(&paths, base, &mut items, notes);
        self.arrays(&arrays, base, paths.chroot.is_some_and(|e| !e.value.is_empty()), &mut items, notes);
        php_fpm_defaults(&mut items);
        PoolItems { name: section.name.clone(), line: section.line, items }
    }

    /// The pool's `prefix`, relative to the global prefix; an existing directory.
    fn pool_prefix(&self, e: Option<&Entry>, notes: &mut Notes<'_, '_>) -> Option<PathBuf> {
        let e = e.filter(|e| !e.value.is_empty())?;
        let path = PathBuf::from(resolve(self.prefix.unwrap_or(Path::new(FPM_DEFAULT_PREFIX)), &e.value));
        if !path.is_dir() {
            error(e, notes, format!("the prefix {} does not exist or is not a directory", path.display()));
            return None;
        }
        Some(path)
    }

    /// `listen`, `pm.status_listen`, `listen.allowed_clients`, `chroot` and `chdir`, with relative paths resolved
    /// against `base` as php-fpm does.
    fn paths(&self, paths: &PoolPaths<'_>, base: &Path, items: &mut Vec<Item>, notes: &mut Notes<'_, '_>) {
        if let Some(e) = paths.listen {
            let address = listen_address(&e.value, base);
            if let Some(clients) = paths.allowed_clients {
                allowed_clients(clients, listen::parse_listen(&address).ok(), items);
            }
            items.push(text("listen", address, e.line));
        }
        if let Some(e) = paths.status_listen.filter(|e| !e.value.is_empty()) {
            items.push(text("pm_status_listen", listen_address(&e.value, base), e.line));
        }
        if let Some(e) = paths.chroot.filter(|e| !e.value.is_empty()) {
            match e.value.strip_prefix("$prefix") {
                Some(rest) => items.push(text("chroot", resolve(base, rest.trim_start_matches('/')), e.line)),
                None if e.value.contains("$prefix") => error(e, notes, "`$prefix` can only start the value"),
                None => items.push(text("chroot", resolve(base, &e.value), e.line)),
            }
        }
        if let Some(e) = paths.chdir.filter(|e| !e.value.is_empty()) {
            items.push(text("chdir", resolve(base, &e.value), e.line));
        }
        // Empty is off, as in php-fpm; a relative path is under the prefix (fpm_conf.c).
        for (key, e) in &paths.logs {
            let value = if e.value.is_empty() { String::new() } else { resolve(base, &e.value) };
            items.push(text(key, value, e.line));
        }
    }

    /// `env[...]`, `php_value[...]`, `php_flag[...]`, `php_admin_value[...]`, `php_admin_flag[...]`.
    fn arrays(&self, entries: &[&Entry], base: &Path, chroot: bool, items: &mut Vec<Item>, notes: &mut Notes<'_, '_>) {
        let mut seen: Vec<(&str, &str, usize)> = Vec::new();
        let mut env = Vec::new();
        let mut suppress = Vec::new();
        for e in entries {
            let index = e.index.as_deref().unwrap_or_default();
            let Some(&(table, list)) = ARRAYS.iter().find(|(name, _)| *name == e.name) else {
                match e.name.as_str() {
                    "access.suppress_path" if !index.is_empty() => error(e, notes, SUPPRESS_KEYED),
                    "access.suppress_path" if !e.value.starts_with('/') => error(e, notes, SUPPRESS_SLASH),
                    "access.suppress_path" => suppress.push(e.value.clone()),
                    _ => error(e, notes, "unknown php-fpm directive"),
                }
                continue;
            };
            if index.is_empty() {
                error(e, notes, format!("needs a key: {}[KEY] = value", e.name));
                continue;
            }
            if let Some((.., first)) = seen.iter().find(|(l, i, _)| *l == list && *i == index) {
                let first = self.sources.describe(*first);
                warn(e, notes, format!("already set at {first}; php-fpm keeps the first value, and so does rustfpm"));
                continue;
            }
            seen.push((list, index, e.line));
            let key = format!("{table}.{index}");
            match table {
                "env" if e.value.is_empty() => {
                    error(e, notes, "an env value must not be empty (php-fpm refuses it too)")
                }
                "env" => env.push(Item { key, value: Value::Text(env_value(&e.value)), line: e.line }),
                "php_flag" | "php_admin_flag" => items.push(Item { key, value: flag(&e.value), line: e.line }),
                _ => {
                    items.push(Item { key, value: Value::Text(ini_value(index, &e.value, base, chroot)), line: e.line })
                }
            }
        }
        // Like the TOML table, sorted by name.
        env.sort_by(|a, b| a.key.cmp(&b.key));
        items.extend(env);
        if let Some(first) = entries.iter().find(|e| e.name == "access.suppress_path") {
            let list = Value::List(super::render::string_array(&suppress));
            items.push(Item { key: "access_suppress_path".to_string(), value: list, line: first.line });
        }
    }
}

/// php-fpm's reading of a value it takes but that is surely a mistake, with a warning: the
/// value to convert instead, when it is another.
fn doubtful(e: &Entry, key: &str, notes: &mut Notes<'_, '_>) -> Option<&'static str> {
    match key {
        "listen_backlog" if integer(&e.value).as_deref() == Some("0") => {
            let message = "passed to listen(2) as php-fpm passes it, Linux then holds a single connection waiting \
                           (and queue_max_len defaults to 1 request); unset, the backlog is the kernel's maximum";
            warn(e, notes, message);
            None
        }
        // php-fpm's heartbeat is the shortest timeout / 3: negative, it never runs.
        "request_terminate_timeout" if negative_time(&e.value) => {
            let message = "a negative timeout is no limit to php-fpm (which then checks no pool's timeouts or \
                           slowlogs); read as 0, no limit";
            warn(e, notes, message);
            Some("0")
        }
        // php-fpm's timer for a negative timeout fires at once, as for 0.
        "process_control_timeout" if negative_time(&e.value) => {
            let message = "php-fpm reads a negative timeout as 0 (its master stops the children at once); read as \
                           0, which to rustfpm is no limit";
            warn(e, notes, message);
            Some("0")
        }
        _ => None,
    }
}

/// A negative time as php-fpm writes them: `-5`, `-5s`, `-1m`.
fn negative_time(value: &str) -> bool {
    let digits = value.strip_prefix('-').map(|rest| rest.strip_suffix(['s', 'm', 'h', 'd']).unwrap_or(rest));
    digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// `Set`, `Warn` and `Refuse`: the actions that need nothing but the entry.
fn simple(e: &Entry, action: Action, items: &mut Vec<Item>, notes: &mut Notes<'_, '_>) {
    match action {
        Set(key, kind) => {
            let value = doubtful(e, key, notes).unwrap_or(&e.value);
            items.push(Item { key: key.to_string(), value: convert(kind, value), line: e.line });
        }
        Warn(_) if means_off(&e.value) => {}
        Warn("") => warn(e, notes, "not supported yet by rustfpm; ignored"),
        Warn(hint) => warn(e, notes, format!("not supported yet by rustfpm; ignored ({hint})")),
        NoEffect(_) if means_off(&e.value) => {}
        NoEffect(why) => warn(e, notes, format!("has no effect: {why}")),
        Refuse(why) => error(e, notes, format!("not supported by rustfpm, and ignoring it would be unsafe: {why}")),
        _ => error(e, notes, "internal error: this directive has no conversion"),
    }
}

/// php-fpm's defaults where they differ from the TOML loader's, and php-fpm's reading of
/// `pm.start_servers = 0` ("unset") for a dynamic pool and of `rlimit_core = 0` (unset: the
/// children keep the limit they inherit, `fpm_unix_init_child`; the TOML's 0 is no core files).
fn php_fpm_defaults(items: &mut Vec<Item>) {
    let last =
        |items: &[Item], key: &str| items.iter().rev().find(|item| item.key == key).map(|item| item.value.clone());
    let zero = Some(Value::Int("0".to_string()));
    let dynamic = last(items, "pm") == Some(Value::Text("dynamic".to_string()));
    if dynamic && last(items, "pm_start_servers") == zero {
        items.retain(|item| item.key != "pm_start_servers");
    }
    if last(items, "rlimit_core") == zero {
        items.retain(|item| item.key != "rlimit_core");
    }
    // php-fpm 8.2's FPM_BACKLOG_DEFAULT on Linux: -1, the kernel's maximum.
    if last(items, "listen_backlog").is_none() {
        items.push(Item { key: "listen_backlog".to_string(), value: Value::Int("-1".to_string()), line: 0 });
    }
    if last(items, "security_limit_extensions").is_none() {
        items.push(text("security_limit_extensions", FPM_DEFAULT_SECURITY_LIMIT_EXTENSIONS.to_string(), 0));
    }
}

/// php-fpm's `listen` in the TOML loader's spelling: `*:PORT` is every address (as a bare port
/// is), and a relative socket path is relative to the pool's prefix.
fn listen_address(value: &str, base: &Path) -> String {
    if let Some(port) = value.strip_prefix("*:") {
        return port.to_string();
    }
    // php-fpm's test: a ':' or only digits is TCP, anything else a Unix socket path.
    let unix = !value.contains(':') && !value.bytes().all(|b| b.is_ascii_digit());
    if unix && !value.is_empty() {
        resolve(base, value)
    } else {
        value.to_string()
    }
}

/// `listen.allowed_clients`. php-fpm checks it on TCP listeners only, so on a Unix socket it is
/// honoured by doing nothing.
fn allowed_clients(e: &Entry, listen: Option<ListenAddr>, items: &mut Vec<Item>) {
    if matches!(listen, Some(ListenAddr::Tcp(_) | ListenAddr::Port(_))) && !e.value.trim().is_empty() {
        items.push(text("listen_allowed_clients", e.value.clone(), e.line));
    }
}

/// An `env[...]` value: `$NAME` is that variable of rustfpm's environment (empty when unset),
/// as php-fpm reads it from its own.
fn env_value(value: &str) -> String {
    match value.strip_prefix('$') {
        Some(name) => env_var(name).unwrap_or_default(),
        None => value.to_string(),
    }
}

/// A `php_flag[...]`: a boolean as php-fpm reads them, or the text for the validation to refuse.
fn flag(value: &str) -> Value {
    fpm_bool(value).map_or_else(|| Value::Text(value.to_string()), Value::Bool)
}

/// A `php_value[...]`: relative paths of [`PATH_SETTINGS`] are made absolute, as php-fpm does.
fn ini_value(name: &str, value: &str, base: &Path, chroot: bool) -> String {
    let path_setting = PATH_SETTINGS.iter().any(|setting| setting.eq_ignore_ascii_case(name));
    if path_setting && !chroot && !value.is_empty() && !value.eq_ignore_ascii_case("syslog") {
        resolve(base, value)
    } else {
        value.to_string()
    }
}

fn convert(kind: Kind, value: &str) -> Value {
    let as_text = || Value::Text(value.to_string());
    match kind {
        Kind::Int => integer(value).map_or_else(as_text, Value::Int),
        Kind::Bool => fpm_bool(value).map_or_else(as_text, Value::Bool),
        Kind::Duration | Kind::Text => as_text(),
        Kind::Lower => Value::Text(value.to_ascii_lowercase()),
        Kind::LogLevel => match value.to_ascii_lowercase().as_str() {
            "warn" => Value::Text("warning".to_string()),
            level => Value::Text(level.to_string()),
        },
        Kind::RlimitCore if value.eq_ignore_ascii_case("unlimited") => Value::Text("unlimited".to_string()),
        Kind::RlimitCore => integer(value).map_or_else(as_text, Value::Int),
    }
}

/// An integer as php-fpm writes them: digits with an optional leading `-`.
fn integer(value: &str) -> Option<String> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<i64>().ok().map(|n| n.to_string())
}

/// A boolean as php-fpm accepts them (the INI reader has already turned bare yes/on/true into
/// "1" and no/off/false/none into "").
pub(in crate::config) fn fpm_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Some(true),
        "" | "0" | "no" | "off" | "false" | "none" => Some(false),
        _ => None,
    }
}

/// Empty, or a zero: what php-fpm reads as "off" for the directives it makes optional.
fn means_off(value: &str) -> bool {
    value.is_empty() || parse_duration(value).is_ok_and(|d| d.is_zero())
}

/// `value` as a path: absolute as it is, else under `base` (php-fpm's `fpm_evaluate_full_path`).
fn resolve(base: &Path, value: &str) -> String {
    base.join(value).to_string_lossy().into_owned()
}

fn text(key: &str, value: String, line: usize) -> Item {
    Item { key: key.to_string(), value: Value::Text(value), line }
}

/// php-fpm's words for an `access.suppress_path[KEY]` entry.
pub(super) const SUPPRESS_KEYED: &str = "Keys provided to field 'access.suppress_path' are ignored";
/// php-fpm's words for an `access.suppress_path[]` value that is not a path.
pub(super) const SUPPRESS_SLASH: &str = "Values provided to field 'access.suppress_path' must begin with '/'";

fn error(e: &Entry, notes: &mut Notes<'_, '_>, message: impl Into<String>) {
    notes.error(e.line, Some(&e.key()), Some(&e.value), message);
}

fn warn(e: &Entry, notes: &mut Notes<'_, '_>, message: impl Into<String>) {
    notes.warn(e.line, Some(&e.key()), Some(&e.value), message);
}
