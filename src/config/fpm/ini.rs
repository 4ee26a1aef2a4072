//! php-fpm's INI files read into raw entries, as zend's INI scanner (normal mode) and php-fpm's
//! loader give them: `[section]`s, `name = value` and `name[key] = value` lines, `;` comments
//! (and `#` at the start of a line), `"double"` and `'single'` quotes, `${ENV}` (and PHP 8.3's
//! `${ENV:-default}`), `$pool`, yes/no keywords, and `include=` globs.

use std::path::Path;

use super::glob::glob;
use super::{Notes, Sources, FPM_DEFAULT_PREFIX, FPM_MAX_INCLUDE_DEPTH};

/// One `name = value` or `name[index] = value` line.
#[derive(Debug)]
pub(super) struct Entry {
    /// As written (php-fpm matches plain directive names without regard to case).
    pub name: String,
    /// The key of an array directive (`memory_limit` in `php_value[memory_limit]`).
    pub index: Option<String>,
    /// Unquoted, with `${ENV}` and (in a pool) `$pool` substituted.
    pub value: String,
    /// The synthetic line (see [`Sources`]).
    pub line: usize,
}

impl Entry {
    /// The directive as written: `pm.max_children`, `env[PATH]`.
    pub(crate) fn key(&self) -> String {
        match &self.index {
            Some(index) => format!("{}[{index}]", self.name),
            None => self.name.clone(),
        }
    }
}

/// A pool's entries from every `[NAME]` section of that name (php-fpm merges them, and matches
/// the names without regard to case).
#[derive(Debug)]
pub(super) struct Section {
    pub name: String,
    /// The synthetic line of its first header.
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// Everything read: `[global]` entries (and those before any section), then pools in order.
#[derive(Debug, Default)]
pub(super) struct Document {
    pub global: Vec<Entry>,
    pub pools: Vec<Section>,
}

/// Reads `path` and the files it includes. `None` when `path` itself cannot be read.
pub(super) fn read(
    path: &Path,
    prefix: Option<&Path>,
    sources: &mut Sources,
    notes: &mut Notes<'_, '_>,
) -> Option<Document> {
    let text = match std::fs::read(path) {
        Ok(bytes) => decode(path, &bytes, notes),
        Err(err) => {
            notes.errors.push(None, None, None, format!("cannot read the configuration file: {err}"));
            return None;
        }
    };
    let open = file_id(path).into_iter().collect();
    let mut reader = Reader { prefix, sources, notes, document: Document::default(), cursor: Cursor::Global, open };
    reader.text(path, &text, 1);
    reader.notes.set_pool(None);
    Some(reader.document)
}

/// A file's text; bytes that are not UTF-8 are replaced (U+FFFD), with a warning naming the
/// file and the first such line, never silently.
fn decode(file: &Path, bytes: &[u8], notes: &mut Notes<'_, '_>) -> String {
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        let message = format!(
            "{}:{line}: not UTF-8; the bytes that are not were replaced by U+FFFD (save the file as UTF-8)",
            file.display()
        );
        notes.warnings.push(None, None, None, message);
    }
    String::from_utf8_lossy(bytes).into_owned()
}

/// Where the entries being read go.
#[derive(Clone, Copy)]
enum Cursor {
    Global,
    Pool(usize),
    /// After a bad section header: skipped until the next header.
    Skip,
}

struct Reader<'a, 'r, 'p> {
    prefix: Option<&'a Path>,
    sources: &'a mut Sources,
    notes: &'a mut Notes<'r, 'p>,
    document: Document,
    cursor: Cursor,
    /// The files being read (device, inode), the outermost first. A file that includes itself
    /// ends in php-fpm's depth error anyway; reading it again at every level up to the limit
    /// multiplied the reads by its `include` lines at each level (ten such lines: 10^4 reads).
    open: Vec<(u64, u64)>,
}

impl Reader<'_, '_, '_> {
    /// Reads one file's text; `depth` counts the files open, this one included.
    fn text(&mut self, file: &Path, text: &str, depth: usize) {
        for (i, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with([';', '#']) {
                let at = self.sources.add(file, i + 1);
                self.line(at, line, depth);
            }
        }
    }

    fn line(&mut self, at: usize, line: &str, depth: usize) {
        if let Some(header) = line.strip_prefix('[') {
            return self.section(at, header);
        }
        if let Cursor::Skip = self.cursor {
            return;
        }
        let Some((key, raw)) = line.split_once('=') else {
            return self.error(at, None, None, "expected `name = value`, a [section] or a comment");
        };
        let key = key.trim();
        let (name, index) = match split_key(key) {
            Ok(split) => split,
            Err(message) => return self.error(at, Some(key).filter(|k| !k.is_empty()), None, message),
        };
        let parsed = match parse_value(raw, &env_var) {
            Ok(parsed) => parsed,
            Err(message) => return self.error(at, Some(key), Some(raw.trim()), message),
        };
        for name in &parsed.unset {
            let message = format!("the environment variable {name} is not set; ${{{name}}} is replaced by nothing");
            self.notes.warn(at, Some(key), None, message);
        }
        if name == "include" && index.is_none() {
            return self.include(at, &parsed.text, depth);
        }
        let value = match self.cursor {
            Cursor::Pool(i) => parsed.text.replace("$pool", &self.document.pools[i].name),
            _ if parsed.text.contains("$pool") => {
                return self.error(at, Some(key), Some(&parsed.text), "`$pool` can only be used in a pool section");
            }
            _ => parsed.text,
        };
        let entry = Entry { name, index, value, line: at };
        match self.cursor {
            Cursor::Pool(i) => self.document.pools[i].entries.push(entry),
            _ => self.document.global.push(entry),
        }
    }

    /// `[global]` or `[NAME]`, `header` being the text after `[`.
    fn section(&mut self, at: usize, header: &str) {
        self.cursor = Cursor::Skip;
        self.notes.set_pool(None);
        let Some((name, after)) = header.split_once(']') else {
            return self.error(at, None, None, "a section header needs its closing `]`");
        };
        let after = after.trim();
        if !after.is_empty() && !after.starts_with([';', '#']) {
            return self.error(at, None, None, format!("unexpected text after the section header: {after}"));
        }
        let name = unquote(name.trim());
        if name.is_empty() {
            return self.error(at, None, None, "a section needs a name: [global] or [POOL]");
        }
        if name.eq_ignore_ascii_case("global") {
            self.cursor = Cursor::Global;
            return;
        }
        let pools = &mut self.document.pools;
        let i = match pools.iter().position(|pool| pool.name.eq_ignore_ascii_case(name)) {
            Some(i) => i,
            None => {
                pools.push(Section { name: name.to_string(), line: at, entries: Vec::new() });
                pools.len() - 1
            }
        };
        self.cursor = Cursor::Pool(i);
        self.notes.set_pool(Some(&pools[i].name));
    }

    /// `include = PATTERN`: the matching files, read where the line is, in name order. A
    /// relative pattern is relative to the prefix, as in php-fpm.
    fn include(&mut self, at: usize, pattern: &str, depth: usize) {
        let pattern = Path::new(self.prefix.map_or(Path::new(FPM_DEFAULT_PREFIX), |p| p)).join(pattern);
        let shown = pattern.display().to_string();
        if depth >= FPM_MAX_INCLUDE_DEPTH {
            let message = format!("includes nest more than {FPM_MAX_INCLUDE_DEPTH} files deep (php-fpm's limit)");
            return self.error(at, Some("include"), Some(&shown), message);
        }
        let files = match glob(&pattern) {
            Ok(files) => files,
            Err(message) => return self.error(at, Some("include"), Some(&shown), message),
        };
        if files.is_empty() {
            self.notes.warn(at, Some("include"), Some(&shown), "no file matches this include pattern");
        }
        for file in files {
            let id = file_id(&file);
            if id.is_some_and(|id| self.open.contains(&id)) {
                let message = format!(
                    "includes nest more than {FPM_MAX_INCLUDE_DEPTH} files deep (php-fpm's limit): the file includes itself"
                );
                self.error(at, Some("include"), Some(&file.display().to_string()), message);
                continue;
            }
            match std::fs::read(&file) {
                Ok(bytes) => {
                    let text = decode(&file, &bytes, self.notes);
                    self.open.extend(id);
                    self.text(&file, &text, depth + 1);
                    if id.is_some() {
                        self.open.pop();
                    }
                }
                Err(err) => {
                    let message = format!("cannot read the included file: {err}");
                    self.error(at, Some("include"), Some(&file.display().to_string()), message);
                }
            }
        }
    }

    fn error(&mut self, at: usize, key: Option<&str>, value: Option<&str>, message: impl Into<String>) {
        self.notes.error(at, key, value, message);
    }
}

/// What tells a file from another whatever path names it: its device and inode.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|meta| (meta.dev(), meta.ino()))
}

/// The variable `name` of rustfpm's environment, if it is set (as text, if it is not UTF-8).
pub(in crate::config) fn env_var(name: &str) -> Option<String> {
    // std may panic on such names.
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

/// `name` or `name[index]`.
fn split_key(key: &str) -> Result<(String, Option<String>), &'static str> {
    let (name, index) = match key.split_once('[') {
        None if key.contains(']') => return Err("expected `name` or `name[key]` before `=`"),
        None => (key, None),
        Some((name, rest)) => {
            let index = rest.strip_suffix(']').ok_or("expected `name[key]` before `=`")?;
            (name.trim(), Some(unquote(index.trim()).to_string()))
        }
    };
    if name.is_empty() {
        return Err("expected a directive name before `=`");
    }
    Ok((name.to_string(), index))
}

/// `"x"` or `'x'` without its quotes; anything else as it is.
fn unquote(s: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(quote).and_then(|s| s.strip_suffix(quote)) {
            return inner;
        }
    }
    s
}

/// The bare words Zend's ini parser (normal mode) reads as true (`"1"`).
pub(crate) const INI_TRUE: [&str; 3] = ["true", "on", "yes"];
/// The bare words it reads as false or null (`""`).
pub(crate) const INI_FALSE: [&str; 5] = ["false", "off", "no", "none", "null"];

/// A value as php-fpm receives it.
#[derive(Debug, Default, PartialEq)]
pub(in crate::config) struct Parsed {
    pub text: String,
    /// The `${NAME}` variables that were not set (replaced by nothing).
    pub unset: Vec<String>,
}

/// Parses the text after `=`: a `;` outside quotes starts a comment; `"..."` keeps its text
/// (with `\"`, `\\` and `\$` escapes, and `${ENV}` substituted); `'...'` keeps its text as it is; bare
/// text is trimmed, has `${ENV}` substituted, and the bare keywords true/on/yes become "1" and
/// false/off/no/none/null become "" (zend's normal mode, which php-fpm uses).
pub(in crate::config) fn parse_value(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut rest = raw.trim();
    // The length of the text without trailing bare whitespace; whether all of it was bare.
    let (mut keep, mut bare) = (0, true);
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            ';' => break,
            '"' => rest = double_quoted(rest, &mut parsed, env)?,
            '\'' => {
                let (inner, after) = rest.split_once('\'').ok_or("missing the closing ' of a quoted value")?;
                parsed.text.push_str(inner);
                rest = after;
            }
            '$' if rest.starts_with('{') => rest = variable(&rest[1..], &mut parsed, env)?,
            c => parsed.text.push(c),
        }
        bare &= !matches!(c, '"' | '\'' | '$');
        if !c.is_whitespace() {
            keep = parsed.text.len();
        }
    }
    parsed.text.truncate(keep);
    if bare {
        let is = |words: &[&str]| words.iter().any(|w| parsed.text.eq_ignore_ascii_case(w));
        if is(&INI_TRUE) {
            parsed.text = "1".to_string();
        } else if is(&INI_FALSE) {
            parsed.text.clear();
        }
    }
    Ok(parsed)
}

/// The rest of a `"..."` string after its opening quote; returns what follows the closing one.
fn double_quoted<'s>(
    mut rest: &'s str,
    parsed: &mut Parsed,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<&'s str, String> {
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '"' => return Ok(rest),
            // zend's escapes in double quotes: `\"`, `\\`, and `\$` (a literal `$`, no `${..}`).
            '\\' if rest.starts_with(['"', '\\', '$']) => {
                parsed.text.push_str(&rest[..1]);
                rest = &rest[1..];
            }
            '$' if rest.starts_with('{') => rest = variable(&rest[1..], parsed, env)?,
            c => parsed.text.push(c),
        }
    }
    Err("missing the closing \" of a quoted value".to_string())
}

/// The rest of `${NAME}` after `${`, or of `${NAME:-default}`; returns what follows the `}`.
fn variable<'s>(rest: &'s str, parsed: &mut Parsed, env: &dyn Fn(&str) -> Option<String>) -> Result<&'s str, String> {
    let (inside, after) = rest.split_once('}').ok_or("missing the closing } of a ${VARIABLE}")?;
    let (name, default) = match inside.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inside, None),
    };
    match (env(name), default) {
        (Some(value), _) => parsed.text.push_str(&value),
        (None, Some(default)) => parsed.text.push_str(default),
        (None, None) => parsed.unset.push(name.to_string()),
    }
    Ok(after)
}
