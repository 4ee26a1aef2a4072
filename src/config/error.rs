//! Configuration errors, and the [`Report`] that collects them while a file is read.

use std::fmt;
use std::path::{Path, PathBuf};

use super::file::Field;

/// One problem in a configuration file. Displayed as
/// `{file}:{line}: [pool {pool}] {key} = "{value}": {message}`, leaving out the parts that are
/// `None`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(self))]
pub struct ConfigError {
    /// The file with the mistake.
    pub file: PathBuf,
    /// 1-based.
    pub line: Option<usize>,
    /// The pool it is in, if any.
    pub pool: Option<String>,
    /// The key, in the file's own terms (`pm.max_children` in php-fpm's files).
    pub key: Option<String>,
    /// The value as written.
    pub value: Option<String>,
    /// What is wrong, and how to put it right.
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole.
    pub(crate) fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            pool: None,
            key: None,
            value: None,
            message: message.into(),
        }
    }
}

fn render(e: &ConfigError) -> String {
    let mut out = e.file.display().to_string();
    if let Some(line) = e.line {
        out.push_str(&format!(":{line}"));
    }
    out.push_str(": ");
    if let Some(pool) = &e.pool {
        out.push_str(&format!("[pool {pool}] "));
    }
    if let Some(key) = &e.key {
        out.push_str(key);
        if let Some(value) = &e.value {
            out.push_str(&format!(" = \"{}\"", value.escape_debug()));
        }
        out.push_str(": ");
    }
    out.push_str(&e.message);
    out
}

/// Every problem found in a configuration file, in line order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Collects errors while a file is read and validated. `pool` is the pool being validated, and
/// is stamped on every error pushed meanwhile.
pub(crate) struct Report<'p> {
    file: &'p Path,
    pub pool: Option<String>,
    errors: Vec<ConfigError>,
}

impl<'p> Report<'p> {
    pub(crate) fn new(file: &'p Path) -> Self {
        Report { file, pool: None, errors: Vec::new() }
    }

    /// Records one error.
    pub(crate) fn push(
        &mut self,
        line: Option<usize>,
        key: Option<&str>,
        value: Option<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            pool: self.pool.clone(),
            key: key.map(str::to_string),
            value,
            message: message.into(),
        });
    }

    /// Records an error about `field`'s value.
    pub(crate) fn bad(&mut self, field: &Field<'_>, message: impl Into<String>) {
        self.push(Some(field.line), Some(&field.key), field.shown(), message);
    }

    /// How many errors so far; a step that adds none succeeded.
    pub(crate) fn count(&self) -> usize {
        self.errors.len()
    }

    /// The errors in line order (errors without a line last).
    pub(crate) fn in_line_order(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: Option<usize>, pool: Option<&str>, key: Option<&str>) -> ConfigError {
        ConfigError {
            file: PathBuf::from("/etc/rustfpm.toml"),
            line,
            pool: pool.map(str::to_string),
            key: key.map(str::to_string),
            value: key.map(|_| "0".to_string()),
            message: "must be between 1 and 4096".to_string(),
        }
    }

    #[test]
    fn display_has_every_part() {
        let e = error(Some(7), Some("www"), Some("pm_max_children"));
        assert_eq!(
            e.to_string(),
            "/etc/rustfpm.toml:7: [pool www] pm_max_children = \"0\": must be between 1 and 4096"
        );
    }

    #[test]
    fn display_leaves_out_missing_parts() {
        let e = error(None, None, None);
        assert_eq!(e.to_string(), "/etc/rustfpm.toml: must be between 1 and 4096");
    }

    #[test]
    fn errors_display_one_per_line() {
        let errors = ConfigErrors(vec![error(Some(1), None, None), error(Some(2), None, None)]);
        assert_eq!(errors.to_string().lines().count(), 2);
    }
}
