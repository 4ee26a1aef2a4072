//! `include=` patterns expanded as php-fpm expands them: glob(3) with `GLOB_ERR | GLOB_MARK`.
//! Any component of the path may hold `*`, `?`, `[...]` classes (ranges, `!` or `^` negation,
//! `[:digit:]` names, `]` first taken literally, an unclosed `[` literal) and `\` escapes; a
//! leading `.` is matched only by a `.` written in the pattern (`.*` matches `.` and `..`, as in
//! glibc). The results are sorted by their bytes (glob's order in the C locale) and directories,
//! which `GLOB_MARK` marks with a `/`, are left out, as php-fpm skips them.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The files matching `pattern`, sorted, without directories. A directory that does not exist
/// matches nothing, unless no wildcard comes before it: glob(3) then opens it as written, and
/// `GLOB_ERR` makes its absence an error (php-fpm: "Unable to globalize"); one that cannot
/// be listed is an error.
pub(super) fn glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let bytes = pattern.as_os_str().as_bytes();
    let components: Vec<&[u8]> = bytes.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    let Some(last) = components.len().checked_sub(1) else {
        return Err("not a file name or pattern".to_string());
    };
    let root = if bytes.starts_with(b"/") { "/" } else { "" };
    let mut paths = vec![PathBuf::from(root)];
    let mut wildcard_before = false;
    for (i, component) in components.iter().enumerate() {
        paths = match literal(component) {
            Some(name) => paths.into_iter().map(|dir| dir.join(OsStr::from_bytes(&name))).collect(),
            None => {
                // Before the first wildcard, the one directory so far is as written.
                let as_written = !std::mem::replace(&mut wildcard_before, true);
                expand(&paths, component, i < last, as_written)?
            }
        };
    }
    let mut files: Vec<PathBuf> =
        paths.into_iter().filter(|path| path.symlink_metadata().is_ok() && !path.is_dir()).collect();
    files.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    Ok(files)
}

/// The entries of each of `dirs` that match `component`, only directories when more follows.
/// A directory that is not there matches nothing, unless it is `as_written` in the pattern
/// (no wildcard before it): glob(3) with `GLOB_ERR` fails to open it then; one that is not a
/// directory matches nothing.
fn expand(dirs: &[PathBuf], component: &[u8], only_dirs: bool, as_written: bool) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    for dir in dirs {
        let listed = if dir.as_os_str().is_empty() { Path::new(".") } else { dir.as_path() };
        let entries = match std::fs::read_dir(listed) {
            Ok(entries) => entries,
            Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => continue,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) && !as_written => continue,
            Err(err) => return Err(format!("cannot list {}: {err}", listed.display())),
        };
        // read_dir leaves out `.` and `..`, which readdir gives glob(3).
        let names = entries.filter_map(Result::ok).map(|entry| entry.file_name());
        let names = [OsStr::new(".").to_owned(), OsStr::new("..").to_owned()].into_iter().chain(names);
        found.extend(
            names
                .filter(|name| wildcard(component, name.as_bytes()))
                .map(|name| dir.join(name))
                .filter(|path| !only_dirs || path.is_dir()),
        );
    }
    Ok(found)
}

/// `component` without its escapes when it holds no wildcard (glob(3) takes it as it is).
fn literal(component: &[u8]) -> Option<Vec<u8>> {
    let mut name = Vec::with_capacity(component.len());
    let mut p = 0;
    while p < component.len() {
        match component[p] {
            b'*' | b'?' => return None,
            b'[' if class(&component[p..], 0).is_some() => return None,
            b'\\' if p + 1 < component.len() => {
                name.push(component[p + 1]);
                p += 2;
                continue;
            }
            c => name.push(c),
        }
        p += 1;
    }
    Some(name)
}

/// Whether the file name `name` matches `pattern` as glob(3) matches one component. It
/// backtracks only to the last `*`: time bounded by the product of the two lengths (trying
/// every split at every `*` took exponential time: `*a*a*a*a*a*a*a*a*a*a*b` against a long name
/// of `a`s never ended); a class is read again at each try, at most its length.
pub(in crate::config) fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // The last `*` seen, and where in `name` its run of characters ends for now.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let leading_dot = n == 0 && name[0] == b'.';
        match pattern.get(p) {
            Some(b'*') if !leading_dot => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(_) => {
                if let Some(len) = element(&pattern[p..], name[n], leading_dot) {
                    (p, n) = (p + len, n + 1);
                    continue;
                }
            }
            None => {}
        }
        match star {
            Some((at, end)) => {
                star = Some((at, end + 1));
                (p, n) = (at + 1, end + 1);
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// How long the element that starts `pattern` (not a `*`) is, if it matches the byte `c`. A
/// leading `.` of a name is matched only by a `.` (or `\.`).
fn element(pattern: &[u8], c: u8, leading_dot: bool) -> Option<usize> {
    match pattern[0] {
        b'?' => (!leading_dot).then_some(1),
        b'[' => match class(pattern, c) {
            Some((len, hit)) => (hit && !leading_dot).then_some(len),
            None => (c == b'[').then_some(1),
        },
        // A trailing `\` matches nothing, as in glibc.
        b'\\' => (pattern.get(1) == Some(&c)).then_some(2),
        literal => (literal == c).then_some(1),
    }
}

/// The bracket expression that starts `pattern`: its length and whether `c` is in it; `None`
/// when no `]` closes it (the `[` is then an ordinary character).
fn class(pattern: &[u8], c: u8) -> Option<(usize, bool)> {
    let negated = matches!(pattern.get(1), Some(b'!' | b'^'));
    let mut i = if negated { 2 } else { 1 };
    let mut hit = false;
    // glibc matches nothing with a class name it does not know.
    let mut unknown = false;
    let mut first = true;
    loop {
        let &b = pattern.get(i)?;
        if b == b']' && !first {
            return Some((i + 1, !unknown && hit != negated));
        }
        first = false;
        if let Some((name, len)) = class_name(&pattern[i..]) {
            match named(name) {
                Some(is) => hit |= is(&c),
                None => unknown = true,
            }
            i += len;
            continue;
        }
        let (low, len) = escaped(&pattern[i..])?;
        i += len;
        if pattern.get(i) == Some(&b'-') && pattern.get(i + 1).is_some_and(|&e| e != b']') {
            let (high, len) = escaped(&pattern[i + 1..])?;
            i += 1 + len;
            hit |= (low..=high).contains(&c);
        } else {
            hit |= low == c;
        }
    }
}

/// `[:name:]` at the start of `pattern`: the name and the length.
fn class_name(pattern: &[u8]) -> Option<(&[u8], usize)> {
    let rest = pattern.strip_prefix(b"[:")?;
    let end = rest.windows(2).position(|w| w == b":]")?;
    Some((&rest[..end], end + 4))
}

fn named(name: &[u8]) -> Option<fn(&u8) -> bool> {
    Some(match name {
        b"alnum" => u8::is_ascii_alphanumeric,
        b"alpha" => u8::is_ascii_alphabetic,
        b"blank" => |c: &u8| matches!(c, b' ' | b'\t'),
        b"cntrl" => u8::is_ascii_control,
        b"digit" => u8::is_ascii_digit,
        b"graph" => u8::is_ascii_graphic,
        b"lower" => u8::is_ascii_lowercase,
        b"print" => |c: &u8| c.is_ascii_graphic() || *c == b' ',
        b"punct" => u8::is_ascii_punctuation,
        b"space" => |c: &u8| c.is_ascii_whitespace() || *c == b'\x0b',
        b"upper" => u8::is_ascii_uppercase,
        b"xdigit" => u8::is_ascii_hexdigit,
        _ => return None,
    })
}

/// The character at the start of `pattern` in a class, `\` escaping the next, and its length.
fn escaped(pattern: &[u8]) -> Option<(u8, usize)> {
    match pattern {
        [b'\\', c, ..] => Some((*c, 2)),
        [c, ..] => Some((*c, 1)),
        [] => None,
    }
}
