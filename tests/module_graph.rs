//! The module graph of `src/` has no two-way imports: no two top-level modules import each other,
//! and no two files of `src/frontend/` do. The source is read and lexed here (comments and
//! literals skipped, `use` groups expanded, `super`/`self` resolved against the file's module,
//! `#[path]` modules placed under their parent, the crate's exported macros counted as uses of the
//! module that defines them); a failure names both directions with file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[test]
fn top_level_modules_import_one_way() {
    let files = read_src();
    let edges = top_level_edges(&files);
    let cycles = two_way(&edges);
    assert!(cycles.is_empty(), "top-level modules of src/ that import each other:\n{cycles}");
}

/// Stronger than pairs: no longer loop either (a → b → c → a), so the modules stack in layers.
#[test]
fn top_level_modules_form_no_cycle() {
    let edges = top_level_edges(&read_src());
    if let Some(cycle) = find_cycle(&edges) {
        panic!("top-level modules of src/ that import each other through others:\n{}", hops(&edges, &cycle));
    }
}

#[test]
fn frontend_files_import_one_way() {
    let files = read_src();
    let edges = file_edges(&files, "frontend");
    let cycles = two_way(&edges);
    assert!(cycles.is_empty(), "files of src/frontend/ that import each other:\n{cycles}");
}

/// The checker itself: comments, strings, chars and lifetimes are skipped; groups, `super`,
/// inline modules and macros resolve; a two-way pair is reported with both places.
#[test]
fn the_checker_finds_what_it_should_and_nothing_else() {
    let a = "// crate::b::x in a comment\n\
             /* crate::b /* nested */ crate::b */\n\
             const S: &str = \"crate::b::x\"; const C: char = '\"'; fn f<'a>(_: &'a str) {}\n\
             use crate::{c::{self, D}, log_it};\n\
             mod inner { fn g() { super::super::d::h(); } }\n";
    let b = "fn f() { crate::a::x(); }\n";
    let c = "#[macro_export]\nmacro_rules! log_it { () => {} }\nfn f() { super::a::x(); }\n";
    let d = "fn f() { log_it!(); }\n";
    let files: Vec<SrcFile> = [("a.rs", a), ("b.rs", b), ("c/mod.rs", c), ("d.rs", d)]
        .into_iter()
        .map(|(path, text)| SrcFile::new(PathBuf::from(path), text))
        .collect();
    let edges = top_level_edges(&files);
    let pairs: BTreeSet<(&str, &str)> = edges.keys().map(|(f, t)| (f.as_str(), t.as_str())).collect();
    let expected: BTreeSet<(&str, &str)> = [("a", "c"), ("a", "d"), ("b", "a"), ("c", "a"), ("d", "c")].into();
    assert_eq!(pairs, expected);
    let report = two_way(&edges);
    assert!(report.contains("a -> c at a.rs:4 (crate::c::self)"), "{report}");
    assert!(report.contains("c -> a at c/mod.rs:3 (super::a::x)"), "{report}");
    assert!(report.starts_with("a <-> c\n") && !report.contains("<-> d"), "{report}");
}

/// Files of one directory: `super` from a `#[path]` module is the file that declares it, and
/// `crate::f::x` is the file x.rs.
#[test]
fn files_of_a_directory_resolve_to_the_file_that_holds_the_module() {
    let outer = "#[cfg(test)]\n#[path = \"outer_extra.rs\"]\nmod extra;\nuse super::sib::X;\n";
    let texts = [
        ("f/mod.rs", "pub struct Thing;\n"),
        ("f/outer.rs", outer),
        ("f/outer_extra.rs", "use super::Y;\nuse super::super::Thing;\n"),
        ("f/sib.rs", "fn g() { crate::f::outer::Y::new(); }\n"),
    ];
    let mut files: Vec<SrcFile> = texts.into_iter().map(|(path, text)| SrcFile::new(path.into(), text)).collect();
    place_path_modules(&mut files);
    let edges = file_edges(&files, "f");
    let pairs: BTreeSet<(&str, &str)> = edges.keys().map(|(f, t)| (f.as_str(), t.as_str())).collect();
    let expected = [
        ("f/outer.rs", "f/sib.rs"),
        ("f/outer_extra.rs", "f/mod.rs"),
        ("f/outer_extra.rs", "f/outer.rs"),
        ("f/sib.rs", "f/outer.rs"),
    ];
    assert_eq!(pairs, expected.into());
    assert!(two_way(&edges).contains("f/sib.rs -> f/outer.rs at f/sib.rs:1 (crate::f::outer::Y::new)"));
}

#[test]
fn cycles_of_any_length_are_found() {
    let site = || vec![Site { file: PathBuf::from("src/x.rs"), line: 1, path: "crate::y".into() }];
    let edges = |pairs: &[(&str, &str)]| -> Edges {
        pairs.iter().map(|(from, to)| ((from.to_string(), to.to_string()), site())).collect()
    };
    let chain = edges(&[("x", "y"), ("y", "z"), ("x", "z")]);
    assert_eq!(find_cycle(&chain), None);
    let looped = edges(&[("w", "x"), ("x", "y"), ("y", "z"), ("z", "x")]);
    assert_eq!(find_cycle(&looped), Some(["x", "y", "z", "x"].map(String::from).to_vec()));
    assert!(hops(&looped, &["x", "y", "z", "x"].map(String::from)).contains("z -> x at src/x.rs:1 (crate::y)"));
}

/// One `.rs` file of `src/`: its module path and the paths it names.
struct SrcFile {
    path: PathBuf,
    module: Vec<String>,
    tokens: Vec<Token>,
}

impl SrcFile {
    fn new(path: PathBuf, text: &str) -> Self {
        let mut module: Vec<String> =
            path.with_extension("").iter().map(|part| part.to_string_lossy().into_owned()).collect();
        if module.last().is_some_and(|last| last == "mod") {
            module.pop();
        }
        SrcFile { path, module, tokens: lex(text) }
    }
}

/// Every `.rs` file under `src/` except the crate roots, with `#[path]` modules placed under the
/// module that declares them.
fn read_src() -> Vec<SrcFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    collect_rs(&root, &mut paths);
    let mut files: Vec<SrcFile> = paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            let mut file = SrcFile::new(path.strip_prefix(&root).expect("under src/").to_path_buf(), &text);
            file.path = Path::new("src").join(&file.path);
            let count = |c: char| file.tokens.iter().filter(|t| t.kind == Tok::Punct(c)).count();
            assert_eq!(count('{'), count('}'), "the checker misread {}: its braces do not pair", file.path.display());
            file
        })
        .filter(|file| file.module != ["lib"] && file.module != ["main"])
        .collect();
    place_path_modules(&mut files);
    files
}

/// Gives each file that a `#[path]` module names the module path of that module.
fn place_path_modules(files: &mut [SrcFile]) {
    let moved: Vec<(PathBuf, Vec<String>)> = files.iter().flat_map(path_modules).collect();
    for (path, module) in moved {
        if let Some(file) = files.iter_mut().find(|file| file.path == path) {
            file.module = module;
        }
    }
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("read {}: {e}", dir.display())).path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// `#[path = "x.rs"] mod name;` in `file`: the path of x.rs (beside `file`) and its module.
fn path_modules(file: &SrcFile) -> Vec<(PathBuf, Vec<String>)> {
    let t = &file.tokens;
    let mut out = Vec::new();
    for i in 0..t.len() {
        let window: Vec<&Tok> = t[i..].iter().take(16).map(|tok| &tok.kind).collect();
        let [Tok::Ident(attr), Tok::Punct('='), Tok::Str(target), Tok::Punct(']'), rest @ ..] = window.as_slice()
        else {
            continue;
        };
        let name = rest.iter().position(|k| matches!(k, Tok::Ident(w) if w == "mod")).and_then(|p| rest.get(p + 1));
        if let (true, Some(Tok::Ident(name))) = (attr == "path", name) {
            let dir = file.path.parent().unwrap_or(Path::new(""));
            out.push((dir.join(target), [file.module.clone(), vec![name.clone()]].concat()));
        }
    }
    out
}

/// A use of another module: where it is written and the path as written.
#[derive(Clone)]
struct Site {
    file: PathBuf,
    line: usize,
    path: String,
}

/// (from, to) → where `from` names `to`.
type Edges = BTreeMap<(String, String), Vec<Site>>;

/// Edges between top-level modules; a macro exported by the crate counts as its module.
fn top_level_edges(files: &[SrcFile]) -> Edges {
    let tops: BTreeSet<&str> = files.iter().map(|f| f.module[0].as_str()).collect();
    let macros = exported_macros(files);
    let mut edges = Edges::new();
    for file in files {
        for (abs, written, line) in resolved_paths(file, &macros) {
            let target = match abs.as_slice() {
                [first, ..] if tops.contains(first.as_str()) => Some(first.clone()),
                [only] => macros.get(only).cloned(),
                _ => None,
            };
            if let Some(target) = target.filter(|t| *t != file.module[0]) {
                let site = Site { file: file.path.clone(), line, path: written };
                edges.entry((file.module[0].clone(), target)).or_default().push(site);
            }
        }
    }
    edges
}

/// Edges between the files under `src/<top>/`: a path names the file whose module is its longest
/// prefix.
fn file_edges(files: &[SrcFile], top: &str) -> Edges {
    let inside: Vec<&SrcFile> = files.iter().filter(|f| f.module[0] == top).collect();
    let mut edges = Edges::new();
    for file in &inside {
        for (abs, written, line) in resolved_paths(file, &BTreeMap::new()) {
            let owner = inside.iter().filter(|f| abs.starts_with(&f.module)).max_by_key(|f| f.module.len());
            if let Some(owner) = owner.filter(|owner| owner.path != file.path) {
                let key = (file.path.display().to_string(), owner.path.display().to_string());
                edges.entry(key).or_default().push(Site { file: file.path.clone(), line, path: written });
            }
        }
    }
    edges
}

/// Names of `macro_rules!` marked `#[macro_export]` → their top-level module.
fn exported_macros(files: &[SrcFile]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for file in files {
        let t = &file.tokens;
        for i in 0..t.len().saturating_sub(2) {
            let exported = i >= 2 && t[i - 2].is_ident("macro_export");
            if exported && t[i].is_ident("macro_rules") && t[i + 1].kind == Tok::Punct('!') {
                if let Tok::Ident(name) = &t[i + 2].kind {
                    out.insert(name.clone(), file.module[0].clone());
                }
            }
        }
    }
    out
}

/// Every path in `file` that starts at `crate`, `super` or `self` (use groups expanded), plus
/// bare invocations of `macros`: (absolute path, path as written, line).
fn resolved_paths(file: &SrcFile, macros: &BTreeMap<String, String>) -> Vec<(Vec<String>, String, usize)> {
    let t = &file.tokens;
    let mut out = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < t.len() {
        let after_sep = i > 0 && t[i - 1].kind == Tok::Sep;
        match &t[i].kind {
            Tok::Punct('{') => {
                depth += 1;
                if i >= 2 && t[i - 2].is_ident("mod") {
                    if let Tok::Ident(name) = &t[i - 1].kind {
                        inline.push((name.clone(), depth));
                    }
                }
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(word) if !after_sep && matches!(word.as_str(), "crate" | "super" | "self") => {
                let here: Vec<String> =
                    file.module.iter().cloned().chain(inline.iter().map(|(n, _)| n.clone())).collect();
                let mut found = Vec::new();
                i = path_tree(t, i, Vec::new(), &mut found);
                for (segments, line) in found {
                    if let Some(abs) = absolute(&here, &segments) {
                        out.push((abs, segments.join("::"), line));
                    }
                }
                continue;
            }
            // `name!(..)`; a definition reads `macro_rules! name {`.
            Tok::Ident(word) if !after_sep && macros.contains_key(word) && next_is(t, i, Tok::Punct('!')) => {
                out.push((vec![word.clone()], format!("{word}!"), t[i].line));
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn next_is(t: &[Token], i: usize, kind: Tok) -> bool {
    t.get(i + 1).is_some_and(|next| next.kind == kind)
}

/// Reads a path (or a `use` tree) at `i`; pushes each full path with its line; returns the index
/// after it (after `as name` too).
fn path_tree(t: &[Token], mut i: usize, mut prefix: Vec<String>, out: &mut Vec<(Vec<String>, usize)>) -> usize {
    let line = t[i].line;
    while let Some(Tok::Ident(word)) = t.get(i).map(|tok| &tok.kind) {
        prefix.push(word.clone());
        i += 1;
        if t.get(i).map(|tok| &tok.kind) != Some(&Tok::Sep) {
            break;
        }
        i += 1;
        if t.get(i).map(|tok| &tok.kind) == Some(&Tok::Punct('{')) {
            i += 1;
            while i < t.len() && t[i].kind != Tok::Punct('}') {
                if t[i].kind == Tok::Punct(',') {
                    i += 1;
                } else {
                    let before = i;
                    i = path_tree(t, i, prefix.clone(), out);
                    i += usize::from(i == before);
                }
            }
            return i + 1;
        }
    }
    out.push((prefix, line));
    if t.get(i).is_some_and(|tok| tok.is_ident("as")) {
        i += 2;
    }
    i
}

/// `segments` (starting at `crate`/`$crate`, `super` or `self`) as a path from the crate root,
/// seen from module `here`; `None` if it climbs above the root.
fn absolute(here: &[String], segments: &[String]) -> Option<Vec<String>> {
    let mut base = here.to_vec();
    let mut rest = segments;
    match segments.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &segments[1..];
        }
        Some("self") => rest = &segments[1..],
        _ => {}
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    base.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(base)
}

/// Pairs of `edges` that go both ways, each direction with its first three places.
fn two_way(edges: &Edges) -> String {
    let mut report = String::new();
    for ((from, to), sites) in edges {
        if from < to {
            if let Some(back) = edges.get(&(to.clone(), from.clone())) {
                let _ = writeln!(report, "{from} <-> {to}");
                describe(&mut report, from, to, sites);
                describe(&mut report, to, from, back);
            }
        }
    }
    report
}

/// A cycle of `edges`, its first node repeated at the end (depth-first search).
fn find_cycle(edges: &Edges) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from.as_str()).or_default().push(to.as_str());
    }
    let mut done = BTreeSet::new();
    let starts: Vec<&str> = next.keys().copied().collect();
    starts.into_iter().find_map(|start| walk(start, &next, &mut done, &mut Vec::new()))
}

fn walk<'a>(
    node: &'a str,
    next: &BTreeMap<&'a str, Vec<&'a str>>,
    done: &mut BTreeSet<&'a str>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|n| *n == node) {
        return Some(path[at..].iter().chain([&node]).map(|n| n.to_string()).collect());
    }
    if !done.insert(node) {
        return None;
    }
    path.push(node);
    let found = next.get(node).into_iter().flatten().find_map(|to| walk(to, next, done, path));
    path.pop();
    found
}

/// Each hop of `cycle` with the first place it is made.
fn hops(edges: &Edges, cycle: &[String]) -> String {
    let mut report = String::new();
    for hop in cycle.windows(2) {
        let sites = &edges[&(hop[0].clone(), hop[1].clone())];
        describe(&mut report, &hop[0], &hop[1], &sites[..1]);
    }
    report
}

fn describe(report: &mut String, from: &str, to: &str, sites: &[Site]) {
    for site in sites.iter().take(3) {
        let _ = writeln!(report, "  {from} -> {to} at {}:{} ({})", site.file.display(), site.line, site.path);
    }
    if sites.len() > 3 {
        let _ = writeln!(report, "  ... and {} more", sites.len() - 3);
    }
}

#[derive(Clone, PartialEq, Debug)]
enum Tok {
    Ident(String),
    Str(String),
    /// `::`
    Sep,
    Punct(char),
}

struct Token {
    kind: Tok,
    line: usize,
}

impl Token {
    fn is_ident(&self, word: &str) -> bool {
        matches!(&self.kind, Tok::Ident(w) if w == word)
    }
}

/// Rust source → identifiers, string literals, `::` and single punctuation, with 1-based lines.
/// Comments (nested block comments too), char and byte literals and lifetimes are dropped; a
/// `$crate` reads as `crate`.
fn lex(text: &str) -> Vec<Token> {
    let c: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    let count_lines = |from: usize, to: usize| c[from..to].iter().filter(|&&ch| ch == '\n').count();
    while i < c.len() {
        let start = i;
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            i = block_comment_end(&c, i);
        } else if let Some((end, body)) = string_literal(&c, i) {
            tokens.push(Token { kind: Tok::Str(body), line });
            i = end;
        } else if ch == '\'' {
            i = quote_end(&c, i);
        } else if ch.is_alphabetic() || ch == '_' {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            tokens.push(Token { kind: Tok::Ident(c[start..i].iter().collect()), line });
        } else if ch == ':' && next == Some(':') {
            tokens.push(Token { kind: Tok::Sep, line });
            i += 2;
        } else if ch == '$' && c[i + 1..].starts_with(&['c', 'r', 'a', 't', 'e']) {
            i += 1;
        } else {
            if !ch.is_whitespace() {
                tokens.push(Token { kind: Tok::Punct(ch), line });
            }
            i += 1;
        }
        line += count_lines(start, i);
    }
    tokens
}

fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// A `"…"`, `b"…"`, `c"…"` or raw `r#"…"#` literal at `i`: the index after it and its text.
fn string_literal(c: &[char], i: usize) -> Option<(usize, String)> {
    let before_ident = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
    if before_ident {
        return None;
    }
    let mut j = i;
    if matches!(c[j], 'b' | 'c') {
        j += 1;
    }
    let raw = c.get(j) == Some(&'r');
    if raw {
        j += 1;
    }
    let hashes = c[j..].iter().take_while(|&&ch| ch == '#').count();
    j += hashes;
    if c.get(j) != Some(&'"') || (!raw && hashes > 0) {
        return None;
    }
    let body_start = j + 1;
    j = body_start;
    while j < c.len() {
        if !raw && c[j] == '\\' {
            j += 2;
        } else if c[j] == '"' && c[j + 1..].iter().take(hashes).filter(|&&ch| ch == '#').count() == hashes {
            let body = c[body_start..j].iter().collect();
            return Some((j + 1 + hashes, body));
        } else {
            j += 1;
        }
    }
    Some((c.len(), c[body_start..].iter().collect()))
}

/// A char literal (`'x'`, `'\n'`, `'\u{1F600}'`) or a lifetime (`'a`) at `i`: the index after it.
fn quote_end(c: &[char], i: usize) -> usize {
    if c.get(i + 1) == Some(&'\\') {
        let close = c[i + 3..].iter().position(|&ch| ch == '\'').map_or(c.len(), |p| i + 3 + p);
        return close + 1;
    }
    if c.get(i + 2) == Some(&'\'') {
        return i + 3;
    }
    i + 1
}
