//! The file type: the TOML document walked into [`RawFile`], every known key with its line.
//!
//! This step knows which keys exist where, and nothing about their values. Unknown keys, tables
//! in the wrong place and TOML syntax errors are reported here; values are checked in
//! `validate`. (serde's `deny_unknown_fields` would stop at the first unknown key, so the
//! spanned tree from `toml::de::DeTable` is walked by hand instead.)

use toml::de::{DeTable, DeValue};

use super::error::Report;

/// One `key = value` as written, with the key's 1-based line. A dotted key
/// (`pm.max_children = 4`, or `"pm.max_children" = 4`) has its parts joined with `.`.
#[derive(Debug)]
pub(crate) struct Field<'a> {
    pub key: String,
    pub line: usize,
    pub value: &'a DeValue<'a>,
    /// For a key whose value is kept as a table (`env`, `php_value`, ...): its fields, keyed
    /// `env.NAME`. Empty otherwise.
    pub entries: Vec<Field<'a>>,
}

impl Field<'_> {
    /// The value as shown in messages; `None` for tables and arrays.
    pub(crate) fn shown(&self) -> Option<String> {
        shown(self.value)
    }
}

/// `value` as shown in messages; `None` for tables and arrays.
pub(crate) fn shown(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => Some(i.to_string()),
        DeValue::Float(f) => Some(f.to_string()),
        DeValue::Boolean(b) => Some(b.to_string()),
        DeValue::Datetime(d) => Some(d.to_string()),
        DeValue::Array(_) | DeValue::Table(_) => None,
    }
}

/// Turns byte offsets into 1-based line numbers.
pub(crate) struct LineIndex(Vec<usize>);

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        LineIndex(text.match_indices('\n').map(|(at, _)| at).collect())
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&newline| newline < offset) + 1
    }
}

/// A table's known keys: each one an `Option<Field>` of the struct.
pub(crate) trait RawTable<'a>: Default {
    /// Every key, as written in the file.
    const KEYS: &'static [&'static str];
    /// The keys whose value is itself a table (not flattened into dotted keys).
    const TABLE_KEYS: &'static [&'static str];
    /// Stores `field` in its slot, or gives it back if its key is unknown.
    fn set(&mut self, field: Field<'a>) -> Result<(), Field<'a>>;
}

macro_rules! raw_table {
    ($(#[$doc:meta])* $name:ident { $($key:ident),* $(,)? } tables { $($table:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub(crate) struct $name<'a> {
            $(pub $key: Option<Field<'a>>,)*
            $(pub $table: Option<Field<'a>>,)*
        }

        impl<'a> RawTable<'a> for $name<'a> {
            const KEYS: &'static [&'static str] =
                &[$(stringify!($key),)* $(stringify!($table),)*];
            const TABLE_KEYS: &'static [&'static str] = &[$(stringify!($table),)*];

            fn set(&mut self, field: Field<'a>) -> Result<(), Field<'a>> {
                let slot = match field.key.as_str() {
                    $(stringify!($key) => &mut self.$key,)*
                    $(stringify!($table) => &mut self.$table,)*
                    _ => return Err(field),
                };
                *slot = Some(field);
                Ok(())
            }
        }
    };
}

raw_table! {
    /// `[global]`.
    RawGlobal {
        error_log, log_level, pid, process_control_timeout, emergency_restart_threshold,
        emergency_restart_interval, graceful_stop_on_term,
        syslog_facility, syslog_ident, syslog_socket, log_limit, daemonize, rlimit_files, systemd_interval,
        metrics_listen, front_end_threads, process_sched_policy,
    } tables {}
}

raw_table! {
    /// The keys of one `[pool.NAME]`.
    RawPoolKeys {
        listen, listen_backlog, listen_owner, listen_group, listen_mode, listen_acl_users, listen_acl_groups,
        listen_allowed_clients, user, group,
        pm, pm_max_children, pm_start_servers, pm_min_spare_servers, pm_max_spare_servers,
        pm_max_spawn_rate, pm_process_idle_timeout, pm_max_requests, pm_max_memory, pm_max_lifetime,
        php_cgi, php_ini, clear_env, security_limit_extensions, queue_max_len, queue_max_wait,
        request_read_timeout, listen_idle_timeout, listen_max_connections,
        fastcgi_finish_request,
        request_terminate_timeout, request_terminate_timeout_track_finished, chdir, chroot,
        rlimit_files, rlimit_core, process_priority, process_sched_policy, process_dumpable, catch_workers_output,
        decorate_workers_output, pm_status_path, pm_status_listen, ping_path, ping_response, access_log,
        access_format, access_suppress_path, slowlog, request_slowlog_timeout,
    } tables { env, php_value, php_flag, php_admin_value, php_admin_flag }
}

/// One `[pool.NAME]`: its name, the line of its header, and its keys.
#[derive(Debug)]
pub(crate) struct RawPool<'a> {
    pub name: String,
    pub line: usize,
    pub keys: RawPoolKeys<'a>,
}

/// The whole file; pools in file order.
#[derive(Debug, Default)]
pub(crate) struct RawFile<'a> {
    pub global: RawGlobal<'a>,
    pub pools: Vec<RawPool<'a>>,
}

/// Parses `text` and walks it into a [`RawFile`], calling `then` with it: the tree borrows from
/// the parsed document, which lives only for this call. TOML syntax errors are all reported, and
/// then `then` is not called.
pub(crate) fn read<T>(
    text: &str,
    report: &mut Report<'_>,
    then: impl FnOnce(&RawFile<'_>, &mut Report<'_>) -> Option<T>,
) -> Option<T> {
    let lines = LineIndex::new(text);
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        syntax_errors(&errors, &lines, report);
        return None;
    }
    let raw = walk(root.get_ref(), &lines, report);
    then(&raw, report)
}

/// TOML refuses `listen.owner = ...` after `listen = ...`: php-fpm's spelling is the likely cause.
const DOTTED_KEY_HINT: &str =
    " (php-fpm's dotted directives are written with `_` here: `listen.owner` is `listen_owner`)";

/// One error per line: the parser's recovery often finds a second error where the first ended.
fn syntax_errors(errors: &[toml::de::Error], lines: &LineIndex, report: &mut Report<'_>) {
    let mut seen = Vec::new();
    for error in errors {
        let line = error.span().map(|span| lines.line(span.start));
        if !seen.contains(&line) {
            seen.push(line);
            let mut message = format!("TOML syntax error: {}", error.message());
            if error.message().contains("dotted key") {
                message.push_str(DOTTED_KEY_HINT);
            }
            report.push(line, None, None, message);
        }
    }
}

fn walk<'a>(root: &'a DeTable<'a>, lines: &LineIndex, report: &mut Report<'_>) -> RawFile<'a> {
    let mut raw = RawFile::default();
    for (key, value) in root.iter() {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("global", DeValue::Table(table)) => raw.global = fill(table, lines, report),
            ("pool", DeValue::Table(pools)) => raw.pools = walk_pools(pools, lines, report),
            (key_text, value) => {
                let message = match key_text {
                    "global" => "must be a table: [global]".to_string(),
                    "pool" => "must be a table of pools: [pool.NAME]".to_string(),
                    _ => top_level_message(key_text),
                };
                let line = Some(lines.line(key.span().start));
                report.push(line, Some(key_text), shown(value), message);
            }
        }
    }
    raw
}

fn walk_pools<'a>(pools: &'a DeTable<'a>, lines: &LineIndex, report: &mut Report<'_>) -> Vec<RawPool<'a>> {
    let mut raw = Vec::new();
    for (name, value) in pools.iter() {
        let line = lines.line(value.span().start);
        let DeValue::Table(table) = value.get_ref() else {
            let message = "pool keys go inside a pool's table: [pool.NAME]";
            report.push(Some(line), Some(&format!("pool.{}", name.get_ref())), shown(value.get_ref()), message);
            continue;
        };
        report.pool = Some(name.get_ref().to_string());
        let keys = fill(table, lines, report);
        report.pool = None;
        raw.push(RawPool { name: name.get_ref().to_string(), line, keys });
    }
    raw.sort_by_key(|pool| pool.line);
    raw
}

/// Sorts `table`'s fields into a `T`, reporting the unknown ones.
fn fill<'a, T: RawTable<'a>>(table: &'a DeTable<'a>, lines: &LineIndex, report: &mut Report<'_>) -> T {
    let mut raw = T::default();
    for field in flatten(table, "", T::TABLE_KEYS, lines) {
        if let Err(field) = raw.set(field) {
            report.bad(&field, unknown_key_message(&field.key, T::KEYS));
        }
    }
    raw
}

/// The fields of `table`, nested tables flattened into dotted keys except those named in
/// `keep` (whose fields become the field's `entries`), each key prefixed with `prefix.` when
/// `prefix` is not empty.
fn flatten<'a>(table: &'a DeTable<'a>, prefix: &str, keep: &[&str], lines: &LineIndex) -> Vec<Field<'a>> {
    let mut out = Vec::new();
    for (key, value) in table.iter() {
        let key_text = match prefix {
            "" => key.get_ref().to_string(),
            _ => format!("{prefix}.{}", key.get_ref()),
        };
        let line = lines.line(key.span().start);
        match value.get_ref() {
            DeValue::Table(inner) if keep.contains(&key_text.as_str()) => {
                let entries = flatten(inner, &key_text, &[], lines);
                out.push(Field { key: key_text, line, value: value.get_ref(), entries });
            }
            DeValue::Table(inner) if !inner.is_empty() => out.extend(flatten(inner, &key_text, &[], lines)),
            value => out.push(Field { key: key_text, line, value, entries: Vec::new() }),
        }
    }
    out
}

fn top_level_message(key: &str) -> String {
    let first = key.split('.').next().unwrap_or(key);
    if RawGlobal::KEYS.contains(&first) {
        format!("unknown top-level key; `{first}` belongs in the [global] table")
    } else if RawPoolKeys::KEYS.contains(&first) {
        format!("unknown top-level key; `{first}` belongs in a [pool.NAME] table")
    } else {
        "unknown top-level key; only [global] and [pool.NAME] tables are allowed".to_string()
    }
}

/// Explains an unknown key, suggesting php-fpm's dotted spellings written with `_`, and near
/// misses.
pub(crate) fn unknown_key_message(key: &str, known: &[&str]) -> String {
    let underscored = key.replace('.', "_");
    if key.contains('.') {
        if known.contains(&underscored.as_str()) {
            return format!("unknown key; php-fpm's `{key}` is written `{underscored}` here");
        }
        if let Some(hint) = closest(&underscored, known) {
            return format!("unknown key; did you mean `{hint}`?");
        }
        return format!("unknown key; `{underscored}` is not a supported key either");
    }
    match closest(key, known) {
        Some(hint) => format!("unknown key; did you mean `{hint}`?"),
        None => format!("unknown key; the keys here are: {}", known.join(", ")),
    }
}

/// The known key within edit distance 2 of `key`, if any.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let lines = LineIndex::new("a\nbc\n\nd");
        assert_eq!(lines.line(0), 1);
        assert_eq!(lines.line(1), 1);
        assert_eq!(lines.line(2), 2);
        assert_eq!(lines.line(5), 3);
        assert_eq!(lines.line(6), 4);
    }

    #[test]
    fn dotted_php_fpm_spelling_is_suggested() {
        let message = unknown_key_message("pm.max_children", RawPoolKeys::KEYS);
        assert!(message.contains("`pm_max_children`"), "{message}");
    }

    #[test]
    fn near_misses_are_suggested() {
        let message = unknown_key_message("pm_max_chidlren", RawPoolKeys::KEYS);
        assert!(message.contains("did you mean `pm_max_children`"), "{message}");
    }

    #[test]
    fn far_misses_list_the_keys() {
        let message = unknown_key_message("colour", RawGlobal::KEYS);
        assert!(message.contains("error_log, log_level, pid"), "{message}");
    }

    #[test]
    fn unsupported_dotted_directive_is_named() {
        let message = unknown_key_message("listen.setfib", RawPoolKeys::KEYS);
        assert!(message.contains("`listen_setfib` is not a supported key"), "{message}");
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
