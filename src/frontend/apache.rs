//! Apache's `mod_proxy_fcgi` params, rewritten as php-fpm's `init_request_info`
//! (`sapi/fpm/fpm/fpm_main.c`, PHP 8.2) rewrites them before a script runs.
//!
//! Apache sends `SCRIPT_FILENAME` as `proxy:fcgi://HOST:PORT/path/to/script.php/path/info?query`
//! (or `proxy:balancer://...`). php-fpm removes the prefix up to the path and the query, and
//! with `cgi.fix_pathinfo=1` splits the path info off the script path the Apache way: PATH_INFO
//! is the part cut off the path, and it is cut off the end of SCRIPT_NAME too (also when
//! SCRIPT_NAME holds it url-decoded, bug 74129). php-cgi has none of this: it would look for a
//! file named `proxy:fcgi://...`.
//!
//! rustfpm therefore sends php-cgi the values php-fpm ends with ([`Puts`]): the script path
//! cut to the script file, PATH_INFO, SCRIPT_NAME, PATH_TRANSLATED and the `ORIG_*` copies.
//! php-cgi finds that SCRIPT_FILENAME names a file and changes nothing, so scripts see what
//! php-fpm shows them. Everything here is pure: the one file-system answer it needs (which
//! prefix of the path is the script) is looked up by the caller, on the lookup threads.

use crate::fastcgi::{encode_pair, CodecError, ParamsBuffer};

/// The prefixes php-fpm removes, in the order it tries them (each compared without case).
pub const PREFIXES: [&[u8]; 2] = [b"proxy:fcgi://", b"proxy:balancer://"];

/// A `SCRIPT_FILENAME` with an Apache prefix, as php-fpm reads it once the prefix is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stripped<'a> {
    /// The value without the prefix (`/path/...`) and without the query.
    pub path: &'a [u8],
    /// A path followed the host (php-fpm's `apache_was_here`): the path info is split off
    /// the Apache way. Without one, only the query is removed.
    pub apache: bool,
}

/// `script_filename` as php-fpm reads it, or None when it has no Apache prefix (every
/// nginx request: the cost is one comparison of its first byte).
pub fn strip(script_filename: &[u8]) -> Option<Stripped<'_>> {
    if !matches!(script_filename.first(), Some(b'p' | b'P')) {
        return None;
    }
    let mut stripped = Stripped { path: script_filename, apache: false };
    let mut matched = false;
    for prefix in PREFIXES {
        let Some(rest) = strip_prefix_ignore_case(stripped.path, prefix) else {
            continue;
        };
        matched = true;
        if let Some(slash) = rest.iter().position(|&b| b == b'/') {
            stripped = Stripped { path: &rest[slash..], apache: true };
        }
        if let Some(query) = stripped.path.iter().position(|&b| b == b'?') {
            stripped.path = &stripped.path[..query];
        }
    }
    matched.then_some(stripped)
}

fn strip_prefix_ignore_case<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &value[prefix.len()..])
}

/// The params php-fpm reads to split the path info off (the last value of each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Env<'a> {
    /// `SCRIPT_NAME`
    pub script_name: Option<&'a [u8]>,
    /// `PATH_INFO`
    pub path_info: Option<&'a [u8]>,
    /// `PATH_TRANSLATED`
    pub path_translated: Option<&'a [u8]>,
    /// `DOCUMENT_ROOT`
    pub document_root: Option<&'a [u8]>,
    /// `REDIRECT_URL`
    pub redirect_url: Option<&'a [u8]>,
}

/// The params php-fpm sets (`FCGI_PUTENV`), in its order: name and new value.
pub type Puts = Vec<(&'static [u8], Vec<u8>)>;

/// What php-fpm sets with `cgi.fix_pathinfo=1` for an Apache request whose stripped `path`
/// names the script file in its first `script` bytes, with more after them (the path info).
/// `SCRIPT_FILENAME`'s stripped value itself is not among them (the caller sets it first).
pub fn split_path_info(path: &[u8], script: usize, env: &Env<'_>) -> Puts {
    let (file, info) = path.split_at(script.min(path.len()));
    let mut puts = Puts::new();
    if info.is_empty() {
        // The whole path is the script: php-fpm changes nothing.
        return puts;
    }
    // php-fpm cuts SCRIPT_NAME in place: PATH_TRANSLATED below sees the cut one.
    let mut script_name = env.script_name;
    let mut path_info = env.path_info;
    if env.path_info != Some(info) {
        if let Some(orig) = env.path_info {
            // php-fpm compares SCRIPT_NAME with the PATH_INFO Apache sent, and takes that.
            puts.push((b"ORIG_PATH_INFO", orig.to_vec()));
            if env.script_name != Some(orig) {
                if let Some(name) = env.script_name {
                    puts.push((b"ORIG_SCRIPT_NAME", name.to_vec()));
                }
                puts.push((b"SCRIPT_NAME", orig.to_vec()));
            }
        } else if let Some(name) = env.script_name {
            if let Some(end) = info_start(name, info) {
                puts.push((b"ORIG_SCRIPT_NAME", name.to_vec()));
                puts.push((b"SCRIPT_NAME", name[..end].to_vec()));
                script_name = Some(&name[..end]);
            }
        }
        puts.push((b"PATH_INFO", info.to_vec()));
        path_info = Some(info);
    }
    script_found(&mut puts, path, file, script_name, path_info, env);
    puts
}

/// What php-fpm's `init_request_info` sets (`cgi.fix_pathinfo=1`) once cutting trailing
/// components off `path` (SCRIPT_FILENAME as sent) found the script `file`, given the
/// SCRIPT_NAME and PATH_INFO it has settled on: SCRIPT_FILENAME (the original kept in
/// ORIG_SCRIPT_FILENAME) and PATH_TRANSLATED, DOCUMENT_ROOT (or `file` minus SCRIPT_NAME)
/// plus PATH_INFO. Shared by Apache's requests and the PATH_INFO underflow guard
/// (in `policy.rs`).
pub fn script_found(
    puts: &mut Puts,
    path: &[u8],
    file: &[u8],
    script_name: Option<&[u8]>,
    path_info: Option<&[u8]>,
    env: &Env<'_>,
) {
    puts.push((b"ORIG_SCRIPT_FILENAME", path.to_vec()));
    puts.push((b"SCRIPT_FILENAME", file.to_vec()));
    let base = match (env.document_root, script_name) {
        (Some(root), _) => Some(root.strip_suffix(b"/").unwrap_or(root)),
        (None, Some(name)) if contains(file, name) => Some(&file[..file.len() - name.len()]),
        (None, _) => None,
    };
    if let Some(base) = base {
        if let Some(orig) = env.path_translated {
            puts.push((b"ORIG_PATH_TRANSLATED", orig.to_vec()));
        }
        puts.push((b"PATH_TRANSLATED", [base, path_info.unwrap_or_default()].concat()));
    }
}

/// The params php-cgi must not be sent so that it keeps what php-fpm keeps of an Apache
/// request (`cgi.fix_pathinfo=1`): with `REDIRECT_URL` set, php-cgi runs PATH_TRANSLATED
/// instead of the script, or else drops PATH_INFO and PATH_TRANSLATED (php-fpm does neither
/// for Apache's requests). So REDIRECT_URL is not sent when either of them is.
pub fn withheld(env: &Env<'_>, puts: &Puts) -> &'static [&'static [u8]] {
    let set = |name: &[u8]| puts.iter().any(|(n, _)| *n == name);
    let info = env.path_info.is_some() || env.path_translated.is_some() || set(b"PATH_INFO") || set(b"PATH_TRANSLATED");
    match env.redirect_url {
        Some(_) if info => &[b"REDIRECT_URL"],
        _ => &[],
    }
}

/// Where the path info starts in `script_name`, if it ends with it, as sent or url-decoded
/// (SCRIPT_NAME must be longer than the path info).
fn info_start(script_name: &[u8], info: &[u8]) -> Option<usize> {
    let len = script_name.len();
    if len > info.len() && script_name.ends_with(info) {
        return Some(len - info.len());
    }
    if !info.contains(&b'%') {
        return None;
    }
    let decoded = raw_url_decode(info);
    (len > decoded.len() && script_name.ends_with(&decoded)).then(|| len - decoded.len())
}

/// `strstr(haystack, needle) != NULL`: an empty needle is found.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// PHP's `php_raw_url_decode` (what php-fpm 8.2 decodes the path info with): `%XX` (two hex
/// digits) is a byte, anything else (`+` too) itself.
pub fn raw_url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = |at: usize| s.get(at).and_then(|&b| char::from(b).to_digit(16));
        match s[i] {
            b'%' => {
                if let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// `params` with php-fpm's changes applied as php-fpm's `fcgi_hash_set` applies them: a
/// param it sets keeps its place (every repeat takes the new value), a new one is added at
/// the end, in the order first set; the `withheld` ones are left out. Fails only if the
/// result is too large to encode.
pub fn rewrite(params: &ParamsBuffer, puts: &Puts, withheld: &[&[u8]]) -> Result<ParamsBuffer, CodecError> {
    let last = |name: &[u8]| puts.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.as_slice());
    let extra: usize = puts.iter().map(|(n, v)| n.len() + v.len() + 8).sum();
    let mut out = Vec::with_capacity(params.len() + extra);
    let mut present = vec![false; puts.len()];
    for (name, value) in params.pairs().map_while(Result::ok) {
        for (seen, (put, _)) in present.iter_mut().zip(puts) {
            *seen |= *put == name;
        }
        if !withheld.contains(&name) {
            encode_pair(&mut out, name, last(name).unwrap_or(value));
        }
    }
    for (i, (name, _)) in puts.iter().enumerate() {
        let first = puts[..i].iter().all(|(n, _)| n != name);
        if let (true, false, Some(value)) = (first, present[i], last(name)) {
            encode_pair(&mut out, name, value);
        }
    }
    let mut rewritten = ParamsBuffer::new(out.len().max(params.limit()));
    rewritten.push(&out)?;
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(path: &str, apache: bool) -> Option<Stripped<'_>> {
        Some(Stripped { path: path.as_bytes(), apache })
    }

    #[test]
    fn prefixes_and_queries_are_removed_as_php_fpm_does() {
        assert_eq!(strip(b"/var/www/a.php"), None);
        assert_eq!(strip(b"php/a.php"), None);
        assert_eq!(strip(b"proxy:fcgi://127.0.0.1:9000/w/a.php/x"), stripped("/w/a.php/x", true));
        assert_eq!(strip(b"PROXY:FCGI://localhost/w/a.php?q=1/b"), stripped("/w/a.php", true));
        assert_eq!(strip(b"proxy:balancer://cluster/w/a.php"), stripped("/w/a.php", true));
        // No path after the host: only the query goes, and the value stays as it is.
        assert_eq!(strip(b"proxy:fcgi://host?x"), stripped("proxy:fcgi://host", false));
        assert_eq!(strip(b"proxy:fcgi://host"), stripped("proxy:fcgi://host", false));
        assert_eq!(strip(b"proxy:fcgi:/"), None);
        assert_eq!(strip(b"proxy:fcgi://"), stripped("proxy:fcgi://", false));
        // The path starts at the first `/` after the prefix, as php-fpm's does.
        assert_eq!(strip(b"proxy:fcgi://proxy:balancer://h/w/a.php"), stripped("//h/w/a.php", true));
        assert_eq!(strip(b"proxy:balancer://b?q"), stripped("proxy:balancer://b", false));
        // The first `/` may be in the query: php-fpm looks for it before removing the query.
        assert_eq!(strip(b"proxy:balancer://b?x=/y"), stripped("/y", true));
        assert_eq!(strip(b"proxy:fcgi://h/../a.php"), stripped("/../a.php", true));
    }

    fn env<'a>(
        name: Option<&'a str>,
        info: Option<&'a str>,
        translated: Option<&'a str>,
        root: Option<&'a str>,
    ) -> Env<'a> {
        Env {
            script_name: name.map(str::as_bytes),
            path_info: info.map(str::as_bytes),
            path_translated: translated.map(str::as_bytes),
            document_root: root.map(str::as_bytes),
            redirect_url: None,
        }
    }

    fn puts(list: &[(&'static str, &str)]) -> Puts {
        list.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn path_info_is_cut_off_script_name_the_apache_way() {
        let path = b"/w/a.php/pinfo";
        let got = split_path_info(path, 8, &env(Some("/a.php/pinfo"), None, None, Some("/w/")));
        let want = puts(&[
            ("ORIG_SCRIPT_NAME", "/a.php/pinfo"),
            ("SCRIPT_NAME", "/a.php"),
            ("PATH_INFO", "/pinfo"),
            ("ORIG_SCRIPT_FILENAME", "/w/a.php/pinfo"),
            ("SCRIPT_FILENAME", "/w/a.php"),
            ("PATH_TRANSLATED", "/w/pinfo"),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn encoded_path_info_matches_a_decoded_script_name() {
        let got = split_path_info(b"/w/a.php/1%202", 8, &env(Some("/a.php/1 2"), None, None, None));
        assert_eq!(got[..2], puts(&[("ORIG_SCRIPT_NAME", "/a.php/1 2"), ("SCRIPT_NAME", "/a.php")])[..]);
        assert_eq!(got[2], (&b"PATH_INFO"[..], b"/1%202".to_vec()), "PATH_INFO stays encoded");
        // SCRIPT_NAME that does not end with the path info is left alone.
        let got = split_path_info(b"/w/a.php/pinfoy", 8, &env(Some("/a.php/pinfox"), None, None, None));
        assert!(!got.iter().any(|(n, _)| n.ends_with(b"SCRIPT_NAME")), "{got:?}");
        // The cut SCRIPT_NAME is inside the script path: PATH_TRANSLATED = path minus name plus info.
        let got = split_path_info(b"/w/a.php/x", 8, &env(Some("/a.php/x"), None, Some("/t"), None));
        assert_eq!(got[got.len() - 2..], puts(&[("ORIG_PATH_TRANSLATED", "/t"), ("PATH_TRANSLATED", "/w/x")])[..]);
    }

    #[test]
    fn a_path_info_apache_sent_becomes_script_name_as_in_php_fpm() {
        let got = split_path_info(b"/w/a.php/x", 8, &env(Some("/a.php"), Some("/other"), None, None));
        let want = puts(&[
            ("ORIG_PATH_INFO", "/other"),
            ("ORIG_SCRIPT_NAME", "/a.php"),
            ("SCRIPT_NAME", "/other"),
            ("PATH_INFO", "/x"),
            ("ORIG_SCRIPT_FILENAME", "/w/a.php/x"),
            ("SCRIPT_FILENAME", "/w/a.php"),
            // SCRIPT_NAME (not cut) is in the script path: the rest of it plus PATH_INFO.
            ("PATH_TRANSLATED", "/w/x"),
        ]);
        assert_eq!(got, want);
        // The same PATH_INFO as the cut: only the script path changes.
        let got = split_path_info(b"/w/a.php/x", 8, &env(None, Some("/x"), None, None));
        assert_eq!(got, puts(&[("ORIG_SCRIPT_FILENAME", "/w/a.php/x"), ("SCRIPT_FILENAME", "/w/a.php")]));
    }

    #[test]
    fn redirect_url_is_withheld_only_where_php_cgi_would_act_on_it() {
        let mut e = env(Some("/a.php"), None, None, None);
        assert!(withheld(&e, &Puts::new()).is_empty());
        e.redirect_url = Some(b"/pretty");
        assert!(withheld(&e, &Puts::new()).is_empty(), "nothing for php-cgi to take or drop");
        assert_eq!(withheld(&e, &puts(&[("PATH_INFO", "/x")])), [b"REDIRECT_URL"]);
        e.path_translated = Some(b"/w/x");
        assert_eq!(withheld(&e, &Puts::new()), [b"REDIRECT_URL"]);
    }

    #[test]
    fn hostile_values_never_panic() {
        let long = "/a".repeat(50_000);
        for (path, script) in [(&b"/"[..], 0), (b"/a/", 2), (b"", 0), (long.as_bytes(), 2), (b"/a", 9)] {
            for name in [None, Some(""), Some("/"), Some("%"), Some(&long[..])] {
                let e = env(name, Some("%zz%4"), Some(""), Some(""));
                let _ = split_path_info(path, script, &e);
                let _ = split_path_info(path, script, &Env::default());
            }
        }
        assert_eq!(raw_url_decode(b"%41%4g%+%2"), b"A%4g%+%2");
        assert_eq!(raw_url_decode(b"%e9%E9"), [0xe9, 0xe9]);
    }

    #[test]
    fn rewrite_keeps_places_and_appends_new_names() {
        let mut raw = Vec::new();
        for (n, v) in
            [("SCRIPT_FILENAME", "proxy:fcgi://h/w/a.php/x"), ("SCRIPT_NAME", "/a.php/x"), ("SCRIPT_NAME", "/b")]
        {
            encode_pair(&mut raw, n.as_bytes(), v.as_bytes());
        }
        let mut params = ParamsBuffer::new(raw.len());
        params.push(&raw).unwrap();
        let changes = puts(&[
            ("SCRIPT_FILENAME", "/w/a.php/x"),
            ("ORIG_SCRIPT_NAME", "/b"),
            ("SCRIPT_NAME", "/a.php"),
            ("ORIG_SCRIPT_FILENAME", "/w/a.php/x"),
            ("SCRIPT_FILENAME", "/w/a.php"),
        ]);
        let rewritten = rewrite(&params, &changes, &[]).unwrap();
        let got: Vec<_> = rewritten.pairs().map(Result::unwrap).collect();
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"SCRIPT_FILENAME", b"/w/a.php"),
            (b"SCRIPT_NAME", b"/a.php"),
            (b"SCRIPT_NAME", b"/a.php"),
            (b"ORIG_SCRIPT_NAME", b"/b"),
            (b"ORIG_SCRIPT_FILENAME", b"/w/a.php/x"),
        ];
        assert_eq!(got, want);
        assert!(rewritten.limit() >= rewritten.len());
    }
}
