//! php-fpm's own configuration files, read into the same [`Config`] as the native TOML.
//!
//! Three steps, each in its own module:
//! [`ini`] reads the INI files (sections, comments, quotes, `${ENV}`, `$pool`, `include=` globs)
//! into raw `name = value` entries; [`interpret`] maps each php-fpm directive, following the
//! [`directives`] table, to rustfpm's TOML key with the value typed as the TOML loader expects
//! it, or warns that it is not supported yet, or refuses it when ignoring it would be unsafe;
//! [`raw`] builds the TOML loader's raw file type from those values and runs the TOML loader's own
//! validation on it. [`render`] goes the other way, from a [`Config`] to native TOML
//! (`rustfpm convert`).
//!
//! Entries from many files meet in one raw file, whose fields carry one line number each: every
//! entry gets a *synthetic* line, an index into [`Sources`], which turns the line of every error
//! back into the INI file and line it came from.

pub(super) mod directives;
mod dump;
pub(super) mod glob;
pub(super) mod ini;
pub(super) mod interpret;
mod raw;
mod render;

use std::path::{Path, PathBuf};

use super::error::{ConfigError, ConfigErrors, Report};
use super::Config;

pub use dump::{fpm_dump, fpm_wording};
pub use render::to_toml;

/// php-fpm's compiled-in prefix (`PHP_PREFIX`) on Debian: what relative `include` paths, socket
/// paths, `chdir` and pool `prefix`es are resolved against when no prefix (`-p`) is given.
pub(crate) const FPM_DEFAULT_PREFIX: &str = "/usr";
/// php-fpm's `PHP_LOCALSTATEDIR` on Debian: what relative `error_log` and `pid` paths are resolved
/// against when no prefix is given.
pub(crate) const FPM_DEFAULT_STATE_PREFIX: &str = "/var";
/// php-fpm's `error_log` when unset, relative to the state prefix.
pub(crate) const FPM_DEFAULT_ERROR_LOG: &str = "log/php-fpm.log";
/// php-fpm's `security.limit_extensions` when unset (rustfpm's TOML default is stricter).
pub(crate) const FPM_DEFAULT_SECURITY_LIMIT_EXTENSIONS: &str = ".php .phar";
/// php-fpm refuses to nest includes more than this many files deep (the main file counts).
pub(crate) const FPM_MAX_INCLUDE_DEPTH: usize = 5;

/// Reads php-fpm's configuration at `path` (`php-fpm.conf` and what it includes) into a validated
/// [`Config`]. `prefix` is php-fpm's `-p`. Returns the config with one warning per directive that
/// was accepted but is not supported yet, or every error found, each naming its file and line.
pub(crate) fn load_fpm(path: &Path, prefix: Option<&Path>) -> Result<(Config, Vec<String>), ConfigErrors> {
    let mut sources = Sources::default();
    let mut errors = Report::new(path);
    let mut warnings = Report::new(path);
    let mut notes = Notes { errors: &mut errors, warnings: &mut warnings };
    let Some(document) = ini::read(path, prefix, &mut sources, &mut notes) else {
        return Err(ConfigErrors(errors.in_line_order()));
    };
    let items = interpret::interpret(&document, prefix, &sources, &mut notes);
    let mut checked = Report::new(path);
    let config = raw::validate(&items, path, &mut checked);

    let mut errors = errors.in_line_order();
    errors.extend(checked.in_line_order().into_iter().map(directives::in_ini_terms));
    // Stable: the two lists are each in line order already.
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    let errors: Vec<ConfigError> = errors.into_iter().map(|e| sources.relocate(e)).collect();
    let warnings = warnings.in_line_order().into_iter().map(|w| sources.relocate(w).to_string()).collect();
    match config {
        Some(config) if errors.is_empty() => Ok((config, warnings)),
        _ => Err(ConfigErrors(errors)),
    }
}

/// Where each entry was written: synthetic line `n` (1-based) is the `n`th entry read, in
/// reading order (an included file's entries come where its `include` line is). Line 0 stands for
/// a value no line wrote (a php-fpm default).
#[derive(Debug, Default)]
struct Sources(Vec<(PathBuf, usize)>);

impl Sources {
    /// Records line `line` of `file`, returning its synthetic line.
    fn add(&mut self, file: &Path, line: usize) -> usize {
        self.0.push((file.to_path_buf(), line));
        self.0.len()
    }

    fn get(&self, synthetic: usize) -> Option<&(PathBuf, usize)> {
        synthetic.checked_sub(1).and_then(|i| self.0.get(i))
    }

    /// `file:line` of a synthetic line, for messages.
    fn describe(&self, synthetic: usize) -> String {
        match self.get(synthetic) {
            Some((file, line)) => format!("{}:{line}", file.display()),
            None => "a php-fpm default".to_string(),
        }
    }

    /// Gives `e` the real file and line of its synthetic line (none for line 0).
    fn relocate(&self, mut e: ConfigError) -> ConfigError {
        match e.line.and_then(|synthetic| self.get(synthetic)) {
            Some((file, line)) => {
                e.file = file.clone();
                e.line = Some(*line);
            }
            None => e.line = None,
        }
        e
    }
}

/// The errors and warnings of one load. Both are stamped with the pool being read.
struct Notes<'r, 'p> {
    errors: &'r mut Report<'p>,
    warnings: &'r mut Report<'p>,
}

impl Notes<'_, '_> {
    fn set_pool(&mut self, pool: Option<&str>) {
        self.errors.pool = pool.map(str::to_string);
        self.warnings.pool = pool.map(str::to_string);
    }

    fn error(&mut self, line: usize, key: Option<&str>, value: Option<&str>, message: impl Into<String>) {
        self.errors.push(Some(line), key, value.map(str::to_string), message);
    }

    fn warn(&mut self, line: usize, key: Option<&str>, value: Option<&str>, message: impl Into<String>) {
        self.warnings.push(Some(line), key, value.map(str::to_string), message);
    }
}
