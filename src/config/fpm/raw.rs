//! The converted items built into the TOML loader's raw file type, and validated by the TOML
//! loader's own code: the same checks, defaults and messages for both formats.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::interpret::{Item, Items, Value};
use crate::config::error::Report;
use crate::config::file::{Field, RawFile, RawPool, RawTable};
use crate::config::{validate, Config};

/// Validates `items` as the TOML loader validates a file; errors carry synthetic lines.
pub(super) fn validate(items: &Items, path: &Path, r: &mut Report<'_>) -> Option<Config> {
    // The raw file borrows its values: these own them while it lives.
    let table = DeValue::Table(DeTable::new());
    let global = values(&items.global);
    let pools: Vec<Vec<DeValue<'_>>> = items.pools.iter().map(|pool| values(&pool.items)).collect();

    let mut raw = RawFile { global: fill(&items.global, &global, &table, r), pools: Vec::new() };
    for (pool, values) in items.pools.iter().zip(&pools) {
        r.pool = Some(pool.name.clone());
        let keys = fill(&pool.items, values, &table, r);
        r.pool = None;
        raw.pools.push(RawPool { name: pool.name.clone(), line: pool.line, keys });
    }
    validate::config(&raw, path, r)
}

fn values(items: &[Item]) -> Vec<DeValue<'_>> {
    items.iter().map(|item| value(&item.value)).collect()
}

fn value(value: &Value) -> DeValue<'_> {
    match value {
        // toml's integers keep their digits; parsing them is the one way to make one.
        Value::Int(n) => DeValue::parse(n).map(|v| v.into_inner()).unwrap_or_else(|_| DeValue::String(n.into())),
        Value::Bool(b) => DeValue::Boolean(*b),
        Value::Text(s) => DeValue::String(s.into()),
        Value::List(toml) => {
            DeValue::parse(toml).map(|v| v.into_inner()).unwrap_or_else(|_| DeValue::String(toml.into()))
        }
    }
}

/// Sorts the items into a raw table, the later of two items with one key winning (php-fpm's
/// rule). Table entries (`env.PATH`) are gathered under their table's field (`env`), which takes
/// the line of its first entry.
fn fill<'a, T: RawTable<'a>>(
    items: &[Item],
    values: &'a [DeValue<'a>],
    table: &'a DeValue<'a>,
    r: &mut Report<'_>,
) -> T {
    let mut raw = T::default();
    let mut tables: Vec<Field<'a>> = Vec::new();
    for (item, value) in items.iter().zip(values) {
        let field = Field { key: item.key.clone(), line: item.line, value, entries: Vec::new() };
        let Some((name, _)) = item.key.split_once('.') else {
            set(&mut raw, field, r);
            continue;
        };
        match tables.iter_mut().find(|t| t.key == name) {
            Some(t) => t.entries.push(field),
            None => tables.push(Field { key: name.to_string(), line: item.line, value: table, entries: vec![field] }),
        }
    }
    for field in tables {
        set(&mut raw, field, r);
    }
    raw
}

/// Every key comes from the directive table, which a test checks against the raw tables.
fn set<'a, T: RawTable<'a>>(raw: &mut T, field: Field<'a>, r: &mut Report<'_>) {
    if let Err(field) = raw.set(field) {
        r.bad(&field, "internal error: the php-fpm directive maps to an unknown rustfpm key");
    }
}
