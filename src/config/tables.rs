//! A pool's tables: `env`, and the INI settings `php_value`, `php_flag`, `php_admin_value`
//! and `php_admin_flag`.

use toml::de::DeValue;

use super::error::Report;
use super::file::{Field, RawPoolKeys};
use super::validate::{integer, string, wrong_type};
use super::Pool;

/// Fills `pool.env`, `pool.ini` and `pool.admin_ini_keys` from the pool's tables.
pub(super) fn apply(k: &RawPoolKeys<'_>, pool: &mut Pool, r: &mut Report<'_>) {
    pool.env = entries(&k.env, r).filter_map(|f| env_var(f, r)).collect();
    let mut ini = Vec::new();
    let mut admin_keys = Vec::new();
    for (table, admin) in
        [(&k.php_value, false), (&k.php_flag, false), (&k.php_admin_value, true), (&k.php_admin_flag, true)]
    {
        for field in entries(table, r) {
            let Some((key, value)) = ini_setting(field, r) else {
                continue;
            };
            if admin && !admin_keys.contains(&key) {
                admin_keys.push(key.clone());
            }
            merge(&mut ini, key, value);
        }
    }
    pool.ini = ini;
    pool.admin_ini_keys = admin_keys;
}

/// The fields of a table key (`env.NAME`, `php_value.NAME`, ...), or none if it is absent or
/// not a table.
fn entries<'f, 'a>(table: &'f Option<Field<'a>>, r: &mut Report<'_>) -> impl Iterator<Item = &'f Field<'a>> {
    let fields = match table {
        Some(f) if matches!(f.value, DeValue::Table(_)) => f.entries.as_slice(),
        Some(f) => wrong_type(f, r, "a table").unwrap_or_default(),
        None => &[],
    };
    fields.iter()
}

/// The variable's name: the field's key after `env.`.
fn env_var(f: &Field<'_>, r: &mut Report<'_>) -> Option<(String, String)> {
    let name = after_dot(&f.key);
    if name.is_empty() || name.contains(['=', '\0']) {
        r.bad(f, "an environment variable name must not be empty or contain '=' or NUL");
        return None;
    }
    let value = match f.value {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(_) => integer(f, r)?.to_string(),
        _ => return wrong_type(f, r, "a string"),
    };
    if value.contains('\0') {
        r.bad(f, "an environment variable's value must not contain NUL");
        return None;
    }
    Some((name.to_string(), value))
}

/// One `-d key=value` setting; flags are normalised to "1" and "0".
fn ini_setting(f: &Field<'_>, r: &mut Report<'_>) -> Option<(String, String)> {
    let name = after_dot(&f.key);
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || !name.chars().all(valid) {
        r.bad(f, "an INI setting name may hold only letters, digits, '_', '.' and '-'");
        return None;
    }
    let value = if f.key.starts_with("php_flag.") || f.key.starts_with("php_admin_flag.") {
        flag(f, r)?
    } else {
        ini_value(f, r)?
    };
    if value.contains(['\0', '\n', '\r']) {
        r.bad(f, "an INI value must not contain NUL or line breaks");
        return None;
    }
    Some((name.to_string(), value))
}

/// A php_flag: a TOML boolean, 0/1, or a string on/off/yes/no/true/false/1/0.
fn flag(f: &Field<'_>, r: &mut Report<'_>) -> Option<String> {
    let on = match f.value {
        DeValue::Boolean(b) => Some(*b),
        DeValue::String(s) => match s.to_ascii_lowercase().as_str() {
            "on" | "yes" | "true" | "1" => Some(true),
            "off" | "no" | "false" | "0" => Some(false),
            _ => None,
        },
        DeValue::Integer(i) if i.as_str() == "1" => Some(true),
        DeValue::Integer(i) if i.as_str() == "0" => Some(false),
        _ => None,
    };
    if on.is_none() {
        r.bad(f, "a flag must be true or false (or \"on\", \"off\", \"yes\", \"no\", 1, 0)");
    }
    on.map(|on| if on { "1" } else { "0" }.to_string())
}

/// A php_value: a string, a number, or a boolean (written "1" / "0").
fn ini_value(f: &Field<'_>, r: &mut Report<'_>) -> Option<String> {
    match f.value {
        DeValue::String(_) => string(f, r).map(str::to_string),
        DeValue::Integer(_) => integer(f, r).map(|n| n.to_string()),
        DeValue::Float(x) => Some(x.as_str().to_string()),
        DeValue::Boolean(b) => Some(if *b { "1" } else { "0" }.to_string()),
        _ => wrong_type(f, r, "a string, number or boolean"),
    }
}

/// `php_value.memory_limit` -> `memory_limit` (INI names keep their own dots).
fn after_dot(key: &str) -> &str {
    key.split_once('.').map_or("", |(_, rest)| rest)
}

/// Sets `key` in `ini`, replacing an earlier value in place.
fn merge(ini: &mut Vec<(String, String)>, key: String, value: String) {
    match ini.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => ini.push((key, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_tables_win_and_keep_one_entry() {
        let mut ini = Vec::new();
        merge(&mut ini, "a".into(), "1".into());
        merge(&mut ini, "b".into(), "2".into());
        merge(&mut ini, "a".into(), "3".into());
        assert_eq!(ini, [("a".into(), "3".into()), ("b".into(), "2".into())]);
    }

    #[test]
    fn names_keep_their_dots() {
        assert_eq!(after_dot("php_value.date.timezone"), "date.timezone");
        assert_eq!(after_dot("env.PATH"), "PATH");
    }
}
