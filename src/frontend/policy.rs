//! php-fpm's request checks that php-cgi lacks, made before any child sees
//! the request, on the file php-cgi will actually run: the script must exist
//! (404 `File not found.`) and have an allowed extension (403 `Access
//! denied.`, `security.limit_extensions`).
//!
//! "The file php-cgi will run" is worked out as php-cgi's `init_request_info`
//! (`sapi/cgi/cgi_main.c`, `cgi.fix_pathinfo=1`) does: a repeated param
//! counts with its last value; the path is `SCRIPT_FILENAME` (or
//! `PATH_TRANSLATED` without it), replaced by `PATH_TRANSLATED` when
//! `REDIRECT_URL` is set; trailing components are cut off until a regular
//! file is found. Requests that could make php-cgi run another file than the
//! one checked, or corrupt its memory, are refused with 403 ([`Refusal`]).
//!
//! PATH_INFO shorter than what php-cgi cuts off the path (CVE-2019-11043: nginx's
//! `fastcgi_split_path_info` with `%0a` sends the whole path and an empty PATH_INFO) makes
//! php-cgi 8.2 compute a pointer before the value and write through it. php-fpm guards that
//! line: it leaves PATH_INFO as sent and runs the script. rustfpm sends php-cgi what php-fpm's
//! guard ends with ([`guard`]): SCRIPT_FILENAME is the script found (the original in
//! ORIG_SCRIPT_FILENAME), PATH_TRANSLATED is rebuilt, PATH_INFO is left alone. php-cgi then
//! finds a file at SCRIPT_FILENAME and cuts nothing, so no php-cgi, guarded or not, reaches
//! the underflow. Where php-fpm's result cannot be sent that way (`cgi.fix_pathinfo=0`,
//! `REDIRECT_URL`, no SCRIPT_FILENAME) the request is still refused.
//!
//! Repeated params: php-cgi keeps the last value of a name (`fcgi_hash_set`
//! in `main/fastcgi.c` replaces it), rustfpm passes every pair on in order,
//! and [`ParamsBuffer::get`] returns the last value too, so rustfpm checks
//! (and logs) what php-cgi uses. They are not refused: php-fpm takes the last
//! as well, and nginx configs send differing repeats that work with it
//! (`fastcgi.conf`'s `SCRIPT_FILENAME` followed by one built on
//! `$realpath_root`).
//!
//! Apache's `mod_proxy_fcgi` params (`SCRIPT_FILENAME` = `proxy:fcgi://HOST/path`) are first
//! rewritten as php-fpm rewrites them ([`super::apache`]); the checks then run on the rewritten
//! params, which are what php-cgi is sent. Only requests with that prefix pay for it.

use std::path::{Path, PathBuf};

use super::apache::{self, Stripped};
use super::scripts::{self, Found, Query, PATH_MAX};
use crate::fastcgi::ParamsBuffer;

/// Params never passed on from nginx to a child. `HTTP_PROXY` is the httpoxy
/// hole; the `fastcgi_finish_request()` marker is rustfpm's to set.
pub const DROPPED_PARAMS: [&[u8]; 2] = [b"HTTP_PROXY", crate::pool::finish::MARKER_PARAM];

/// The params that decide which file php-cgi runs (and what it is told about
/// it): a NUL byte in one is refused.
pub const DECIDING: [&str; 6] =
    ["SCRIPT_FILENAME", "PATH_TRANSLATED", "REDIRECT_URL", "PATH_INFO", "SCRIPT_NAME", "DOCUMENT_ROOT"];

/// The first bytes of [`DECIDING`]'s names.
const DECIDING_INITIALS: [u8; 4] = *b"SPRD";

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to a child.
    Forward,
    /// No script path, or no file at it: 404 and "Primary script unknown".
    NotFound,
    /// The script that PHP would run has an extension outside the allowed list.
    Denied(PathBuf),
    /// The request is ambiguous or malformed in a way that could make php-cgi
    /// run another file than the one checked, or corrupt its memory: 403.
    Refused(Refusal),
    /// The script lookup queue is full: 503.
    Busy,
}

/// Why a request is refused with 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A deciding param holds a NUL byte (php-cgi would cut the value there).
    #[error("the param {0} holds a NUL byte")]
    Nul(&'static str),
    /// The script path is longer than PATH_MAX.
    #[error("the script path is {0} bytes long, over PATH_MAX")]
    TooLong(usize),
    /// PATH_INFO is shorter than what php-cgi cuts off the script path: its
    /// `env_path_info + pilen - slen` would point before the value
    /// (CVE-2019-11043, nginx `fastcgi_split_path_info` with `%0a`), and php-fpm's
    /// guarded result cannot be sent instead (see the module's documentation).
    #[error("PATH_INFO ({path_info} bytes) is shorter than the {cut} bytes cut off the script path")]
    PathInfoUnderflow {
        /// Length of PATH_INFO.
        path_info: usize,
        /// Bytes cut off the script path to find the script.
        cut: usize,
    },
    /// The params of an Apache request, rewritten as php-fpm rewrites them,
    /// would not fit a FastCGI params stream.
    #[error("the params ({0} bytes) cannot be rewritten as php-fpm rewrites Apache's")]
    Rewrite(usize),
}

/// The deciding params of a request as php-cgi reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct View<'a> {
    /// The path php-cgi starts from (before cutting off trailing components).
    pub path: Option<&'a [u8]>,
    /// `SCRIPT_FILENAME` as sent.
    pub script_filename: Option<&'a [u8]>,
    /// `PATH_TRANSLATED`, when it is not the path above (php-cgi runs it
    /// instead when `cgi.fix_pathinfo=0`).
    pub other_path: Option<&'a [u8]>,
    /// `PATH_INFO`.
    pub path_info: Option<&'a [u8]>,
    /// `SCRIPT_FILENAME` with Apache's `proxy:` prefix, as php-fpm reads it: php-fpm
    /// rewrites such a request before anything else, and so must rustfpm.
    pub apache: Option<Stripped<'a>>,
    /// What php-fpm reads to split the path info off an Apache request.
    pub env: apache::Env<'a>,
}

impl<'a> View<'a> {
    /// Reads the deciding params in one pass: the last value of each, as
    /// php-cgi does; refuses NUL bytes.
    pub fn of(params: &'a ParamsBuffer) -> Result<View<'a>, Refusal> {
        let mut values: [Option<&[u8]>; DECIDING.len()] = [None; DECIDING.len()];
        for (name, value) in params.pairs().map_while(Result::ok) {
            // Most of nginx's params (HTTP_*, SERVER_*, REQUEST_*...) are passed
            // over on their first byte.
            if !name.first().is_some_and(|b| DECIDING_INITIALS.contains(b)) {
                continue;
            }
            let Some(i) = DECIDING.iter().position(|d| d.as_bytes() == name) else {
                continue;
            };
            if value.contains(&0) {
                return Err(Refusal::Nul(DECIDING[i]));
            }
            values[i] = Some(value);
        }
        let [script_filename, path_translated, redirect_url, path_info, script_name, document_root] = values;
        let mut path = script_filename.or(path_translated);
        if let (Some(pt), Some(_)) = (path_translated, redirect_url) {
            path = Some(pt);
        }
        let other_path = path_translated.filter(|pt| !pt.is_empty() && Some(*pt) != path);
        let apache = script_filename.and_then(apache::strip);
        let env = apache::Env { script_name, path_info, path_translated, document_root, redirect_url };
        Ok(View { path, script_filename, other_path, path_info, apache, env })
    }

    /// Checks what cutting the path down to its first `found` bytes means for PATH_INFO.
    fn path_info_covers(&self, found: usize) -> Result<(), Underflow> {
        let cut = self.path.map_or(0, |p| p.len() - found);
        match self.path_info {
            Some(pi) if pi.len() < cut => {
                Err(Underflow { script: found, refusal: Refusal::PathInfoUnderflow { path_info: pi.len(), cut } })
            }
            _ => Ok(()),
        }
    }
}

/// A request php-cgi would cut more off than its PATH_INFO holds: the script is the first
/// `script` bytes of the path.
#[derive(Debug)]
struct Underflow {
    script: usize,
    refusal: Refusal,
}

/// php-fpm's guard against the PATH_INFO underflow, as params for php-cgi: what php-fpm's
/// `init_request_info` ends with when PATH_INFO is shorter than the cut (`pilen > slen`
/// fails): the script found in SCRIPT_FILENAME (the original in ORIG_SCRIPT_FILENAME),
/// PATH_TRANSLATED rebuilt from DOCUMENT_ROOT (or SCRIPT_NAME) and PATH_INFO, PATH_INFO and
/// SCRIPT_NAME as sent. None where php-fpm's result cannot be sent so that php-cgi keeps it:
/// with `cgi.fix_pathinfo=0` (php-fpm cuts nothing) and with `REDIRECT_URL` (php-cgi would
/// run PATH_TRANSLATED); and without SCRIPT_FILENAME.
fn guard(params: &ParamsBuffer, view: &View<'_>, script: usize, fix_pathinfo: bool) -> Option<ParamsBuffer> {
    let path = view.script_filename.filter(|_| fix_pathinfo && view.env.redirect_url.is_none())?;
    let mut puts = apache::Puts::new();
    apache::script_found(&mut puts, path, &path[..script], view.env.script_name, view.path_info, &view.env);
    apache::rewrite(params, &puts, &[]).ok()
}

/// Checks a request as php-fpm does, on the file php-cgi will run. With a
/// `chroot`, paths are the ones the children see, resolved inside it. An
/// Apache request's params are first rewritten in place as php-fpm rewrites
/// them (`fix_pathinfo`: the pool's `cgi.fix_pathinfo`), and checked as
/// rewritten: they are what php-cgi is sent.
pub async fn check(
    params: &mut ParamsBuffer,
    limit_extensions: &[String],
    scope: scripts::Scope<'_>,
    fix_pathinfo: bool,
) -> Verdict {
    let rewritten = match View::of(params) {
        Err(refusal) => return Verdict::Refused(refusal),
        Ok(View { apache: Some(stripped), env, .. }) => {
            match normalise(params, stripped, &env, scope, fix_pathinfo).await {
                Ok(rewritten) => rewritten,
                Err(verdict) => return verdict,
            }
        }
        Ok(view) => match check_view(view, limit_extensions, scope).await {
            Ok(verdict) => return verdict,
            Err(underflow) => match guard(params, &view, underflow.script, fix_pathinfo) {
                Some(rewritten) => rewritten,
                None => return Verdict::Refused(underflow.refusal),
            },
        },
    };
    *params = rewritten;
    // Checked again as php-cgi is sent them: a second underflow is refused.
    match View::of(params) {
        Ok(view) => check_view(view, limit_extensions, scope).await.unwrap_or_else(|u| Verdict::Refused(u.refusal)),
        Err(refusal) => Verdict::Refused(refusal),
    }
}

/// The params of an Apache request as php-fpm leaves them, to be sent to
/// php-cgi instead: the `proxy:` prefix and query gone from SCRIPT_FILENAME
/// and, with `cgi.fix_pathinfo`, the path info split off as php-fpm splits it
/// (which needs the script lookup).
async fn normalise(
    params: &ParamsBuffer,
    stripped: Stripped<'_>,
    env: &apache::Env<'_>,
    scope: scripts::Scope<'_>,
    fix_pathinfo: bool,
) -> Result<ParamsBuffer, Verdict> {
    let path = stripped.path;
    let mut puts: apache::Puts = vec![(b"SCRIPT_FILENAME", path.to_vec())];
    let mut withheld: &[&[u8]] = &[];
    if fix_pathinfo && stripped.apache {
        if path.len() > PATH_MAX {
            return Err(Verdict::Refused(Refusal::TooLong(path.len())));
        }
        match scripts::lookup(scope, Query::Primary, path).await {
            Err(scripts::Busy) => return Err(Verdict::Busy),
            Ok(Found::Missing) => return Err(Verdict::NotFound),
            Ok(Found::Script(len)) => puts.extend(apache::split_path_info(path, len, env)),
        }
        withheld = apache::withheld(env, &puts);
    }
    apache::rewrite(params, &puts, withheld).map_err(|_| Verdict::Refused(Refusal::Rewrite(params.len())))
}

/// [`check`] on the params php-cgi is sent; an [`Underflow`] is for the caller to guard
/// or refuse.
async fn check_view(
    view: View<'_>,
    limit_extensions: &[String],
    scope: scripts::Scope<'_>,
) -> Result<Verdict, Underflow> {
    let Some(path) = view.path.filter(|p| !p.is_empty()) else {
        return Ok(Verdict::NotFound);
    };
    for p in [Some(path), view.other_path].into_iter().flatten() {
        if p.len() > PATH_MAX {
            return Ok(Verdict::Refused(Refusal::TooLong(p.len())));
        }
    }
    let script = match scripts::lookup(scope, Query::Primary, path).await {
        Err(scripts::Busy) => return Ok(Verdict::Busy),
        Ok(Found::Missing) => return Ok(Verdict::NotFound),
        Ok(Found::Script(len)) => len,
    };
    view.path_info_covers(script)?;
    if let Some(denied) = denied(&path[..script], limit_extensions) {
        return Ok(denied);
    }
    // With cgi.fix_pathinfo=0, php-cgi runs PATH_TRANSLATED as it is.
    if let Some(other) = view.other_path.filter(|_| !limit_extensions.is_empty()) {
        match scripts::lookup(scope, Query::Exact, other).await {
            Err(scripts::Busy) => return Ok(Verdict::Busy),
            Ok(Found::Script(_)) => return Ok(denied(other, limit_extensions).unwrap_or(Verdict::Forward)),
            Ok(Found::Missing) => {}
        }
    }
    Ok(Verdict::Forward)
}

fn denied(script: &[u8], limit_extensions: &[String]) -> Option<Verdict> {
    let script = Path::new(std::ffi::OsStr::from_encoded_bytes_unchecked_safe(script));
    (!allowed(script, limit_extensions)).then(|| Verdict::Denied(script.to_path_buf()))
}

/// True if `script` ends with one of `extensions` (or the list is empty);
/// like php-fpm, the name must be longer than the extension.
pub fn allowed(script: &Path, extensions: &[String]) -> bool {
    let bytes = script.as_os_str().as_encoded_bytes();
    extensions.is_empty() || extensions.iter().any(|ext| bytes.len() > ext.len() && bytes.ends_with(ext.as_bytes()))
}

/// Byte-to-OsStr conversion for Unix, where any bytes are a valid OsStr.
trait FromBytes {
    fn from_encoded_bytes_unchecked_safe(bytes: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_unchecked_safe(bytes: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastcgi::encode_pair;

    #[test]
    fn the_initials_cover_every_deciding_name() {
        for name in DECIDING {
            assert!(DECIDING_INITIALS.contains(&name.as_bytes()[0]), "{name}");
        }
    }

    fn params_of(pairs: &[(&str, &str)]) -> ParamsBuffer {
        let mut raw = Vec::new();
        for (name, value) in pairs {
            encode_pair(&mut raw, name.as_bytes(), value.as_bytes());
        }
        let mut p = ParamsBuffer::new(1 << 20);
        p.push(&raw).unwrap();
        p
    }

    fn params(script: &str) -> ParamsBuffer {
        params_of(&[("SCRIPT_FILENAME", script)])
    }

    fn check_(p: &ParamsBuffer, ext: &[String], chroot: Option<&Path>) -> Verdict {
        check_fix(&mut p.clone(), ext, chroot, true)
    }

    fn check_fix(p: &mut ParamsBuffer, ext: &[String], chroot: Option<&Path>, fix_pathinfo: bool) -> Verdict {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let share = scripts::Share::default();
        rt.block_on(check(p, ext, scripts::Scope { chroot, share: &share }, fix_pathinfo))
    }

    fn php() -> [String; 1] {
        [".php".to_string()]
    }

    #[test]
    fn chroot_paths_are_resolved_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("www")).unwrap();
        std::fs::write(dir.path().join("www/a.php"), "<?php").unwrap();
        let root = Some(dir.path());
        assert_eq!(check_(&params("/www/a.php"), &php(), root), Verdict::Forward);
        assert_eq!(check_(&params("/www/b.php"), &php(), root), Verdict::NotFound);
    }

    #[test]
    fn checks_like_php_fpm() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("index.php"), "<?php").unwrap();
        std::fs::write(dir.path().join("x.jpg"), "<?php").unwrap();
        let php = php();
        assert_eq!(check_(&params(&format!("{d}/index.php")), &php, None), Verdict::Forward);
        assert_eq!(check_(&params(&format!("{d}/index.php/extra/path")), &php, None), Verdict::Forward);
        assert_eq!(check_(&params(&format!("{d}/missing.php")), &php, None), Verdict::NotFound);
        assert_eq!(check_(&params(&format!("{d}")), &php, None), Verdict::NotFound);
        let jpg = Verdict::Denied(dir.path().join("x.jpg"));
        assert_eq!(check_(&params(&format!("{d}/x.jpg/y.php")), &php, None), jpg);
        assert_eq!(check_(&params(&format!("{d}/x.jpg/")), &php, None), jpg);
        assert_eq!(check_(&params(&format!("{d}/x.jpg/y.php")), &[], None), Verdict::Forward);
        assert_eq!(check_(&ParamsBuffer::new(10), &php, None), Verdict::NotFound);
    }

    #[test]
    fn the_last_of_repeated_values_is_what_php_cgi_runs() {
        let same = params_of(&[("SCRIPT_FILENAME", "/w/a.php"), ("SCRIPT_FILENAME", "/w/a.php")]);
        assert_eq!(View::of(&same).unwrap().path, Some(&b"/w/a.php"[..]));
        let two = params_of(&[("SCRIPT_FILENAME", "/w/a.php"), ("SCRIPT_FILENAME", "/w/up/a.jpg")]);
        assert_eq!(View::of(&two).unwrap().path, Some(&b"/w/up/a.jpg"[..]));
        let info = params_of(&[("PATH_INFO", "/long/enough"), ("SCRIPT_FILENAME", "/w/a.php/x/y"), ("PATH_INFO", "")]);
        assert_eq!(View::of(&info).unwrap().path_info, Some(&b""[..]), "the underflow check sees the last PATH_INFO");
        let nul = params_of(&[("SCRIPT_FILENAME", "/w/a.jpg\0.php")]);
        assert_eq!(View::of(&nul), Err(Refusal::Nul("SCRIPT_FILENAME")));
    }

    #[test]
    fn path_translated_counts_where_php_cgi_uses_it() {
        let only = params_of(&[("PATH_TRANSLATED", "/w/a.jpg")]);
        assert_eq!(View::of(&only).unwrap().path, Some(&b"/w/a.jpg"[..]));
        let plain = params_of(&[("SCRIPT_FILENAME", "/w/i.php"), ("PATH_TRANSLATED", "/w/a.jpg")]);
        let view = View::of(&plain).unwrap();
        assert_eq!((view.path, view.other_path), (Some(&b"/w/i.php"[..]), Some(&b"/w/a.jpg"[..])));
        let redirected =
            params_of(&[("SCRIPT_FILENAME", "/w/i.php"), ("PATH_TRANSLATED", "/w/a.jpg"), ("REDIRECT_URL", "")]);
        let view = View::of(&redirected).unwrap();
        assert_eq!((view.path, view.other_path), (Some(&b"/w/a.jpg"[..]), None));
    }

    #[test]
    fn redirect_url_and_path_translated_cannot_run_an_upload() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("index.php"), "<?php").unwrap();
        std::fs::write(dir.path().join("a.jpg"), "<?php").unwrap();
        let (index, jpg) = (format!("{d}/index.php"), format!("{d}/a.jpg"));
        let jpg_denied = Verdict::Denied(dir.path().join("a.jpg"));
        let redirected = params_of(&[
            ("SCRIPT_FILENAME", &index),
            ("PATH_TRANSLATED", &jpg),
            ("REDIRECT_URL", "/index.php"),
            ("REDIRECT_STATUS", "200"),
        ]);
        assert_eq!(check_(&redirected, &php(), None), jpg_denied);
        // cgi.fix_pathinfo=0 runs PATH_TRANSLATED even without REDIRECT_URL.
        let plain = params_of(&[("SCRIPT_FILENAME", &index), ("PATH_TRANSLATED", &jpg)]);
        assert_eq!(check_(&plain, &php(), None), jpg_denied);
        // The usual nginx PATH_TRANSLATED (docroot + PATH_INFO, no such file) is fine.
        let usual = params_of(&[("SCRIPT_FILENAME", &index), ("PATH_TRANSLATED", &format!("{d}/foo"))]);
        assert_eq!(check_(&usual, &php(), None), Verdict::Forward);
    }

    /// A docroot with `index.php` and `x.jpg`, its path as text, and the CVE-2019-11043
    /// SCRIPT_FILENAME nginx builds for `/index.php/PHP_VALUE%0A...`.
    fn underflow_site() -> (tempfile::TempDir, String, String) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.php"), "<?php").unwrap();
        std::fs::write(dir.path().join("x.jpg"), "<?php").unwrap();
        let d = dir.path().display().to_string();
        let split = format!("{d}/index.php/PHP_VALUE\nsession.auto_start=1");
        (dir, d, split)
    }

    fn values<'p>(p: &'p ParamsBuffer, name: &str) -> Vec<&'p [u8]> {
        p.pairs().map(Result::unwrap).filter(|(n, _)| *n == name.as_bytes()).map(|(_, v)| v).collect()
    }

    #[test]
    fn path_info_shorter_than_the_cut_is_sent_as_php_fpms_guard_leaves_it() {
        let (_dir, d, split) = underflow_site();
        let script = format!("{d}/index.php");
        for path_info in ["", "/x", "/"] {
            let mut p = params_of(&[
                ("SCRIPT_FILENAME", &split),
                ("SCRIPT_NAME", "/index.php/PHP_VALUE\nsession.auto_start=1"),
                ("PATH_INFO", path_info),
                ("DOCUMENT_ROOT", &format!("{d}/")),
                ("PATH_TRANSLATED", "/sent"),
            ]);
            assert_eq!(check_fix(&mut p, &php(), None, true), Verdict::Forward, "PATH_INFO {path_info:?}");
            assert_eq!(p.get(b"SCRIPT_FILENAME"), Some(script.as_bytes()));
            assert_eq!(p.get(b"ORIG_SCRIPT_FILENAME"), Some(split.as_bytes()));
            assert_eq!(p.get(b"PATH_INFO"), Some(path_info.as_bytes()), "php-fpm's guard leaves PATH_INFO");
            assert_eq!(p.get(b"SCRIPT_NAME"), Some(&b"/index.php/PHP_VALUE\nsession.auto_start=1"[..]));
            assert_eq!(p.get(b"PATH_TRANSLATED"), Some(format!("{d}{path_info}").as_bytes()));
            assert_eq!(p.get(b"ORIG_PATH_TRANSLATED"), Some(&b"/sent"[..]));
            assert_eq!(p.get(b"ORIG_PATH_INFO"), None);
            // What php-cgi is sent names the script: it cuts nothing, whatever PATH_INFO holds.
            let view = View::of(&p).unwrap();
            assert!(view.path_info_covers(script.len()).is_ok());
        }
        // Without DOCUMENT_ROOT, PATH_TRANSLATED is the script path minus SCRIPT_NAME.
        let mut p = params_of(&[("SCRIPT_FILENAME", &split), ("SCRIPT_NAME", "/index.php"), ("PATH_INFO", "")]);
        assert_eq!(check_fix(&mut p, &php(), None, true), Verdict::Forward);
        assert_eq!(p.get(b"PATH_TRANSLATED"), Some(d.as_bytes()));
        // Neither: no PATH_TRANSLATED, as in php-fpm.
        let mut p = params_of(&[("SCRIPT_FILENAME", &split), ("PATH_INFO", "")]);
        assert_eq!(check_fix(&mut p, &php(), None, true), Verdict::Forward);
        assert_eq!(p.get(b"PATH_TRANSLATED"), None);
        // Untouched where php-cgi cuts no more than PATH_INFO holds, or has no PATH_INFO to cut.
        for pairs in [
            vec![("SCRIPT_FILENAME", split.clone())],
            vec![("SCRIPT_FILENAME", format!("{d}/index.php/a/b")), ("PATH_INFO", "/a/b".into())],
            vec![("SCRIPT_FILENAME", format!("{d}/index.php/a/b")), ("PATH_INFO", "/long/a/b".into())],
        ] {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let original = params_of(&pairs);
            let mut p = original.clone();
            assert_eq!(check_fix(&mut p, &php(), None, true), Verdict::Forward, "{pairs:?}");
            assert_eq!(p.bytes(), original.bytes(), "{pairs:?}");
        }
    }

    #[test]
    fn hostile_underflow_shapes_never_reach_php_cgi_with_a_cut() {
        let (dir, d, split) = underflow_site();
        let script = format!("{d}/index.php");
        let refused = |path_info: usize, cut: usize| Verdict::Refused(Refusal::PathInfoUnderflow { path_info, cut });
        let cut = split.len() - script.len();
        // cgi.fix_pathinfo=0: php-fpm would not cut; still refused.
        let mut p = params_of(&[("SCRIPT_FILENAME", &split), ("PATH_INFO", "")]);
        assert_eq!(check_fix(&mut p, &php(), None, false), refused(0, cut));
        // REDIRECT_URL: php-cgi would run the rebuilt PATH_TRANSLATED; still refused.
        let mut p = params_of(&[("SCRIPT_FILENAME", &split), ("PATH_INFO", ""), ("REDIRECT_URL", "/r")]);
        assert_eq!(check_fix(&mut p, &php(), None, true), refused(0, cut));
        // No SCRIPT_FILENAME: the path is PATH_TRANSLATED; still refused.
        let mut p = params_of(&[("PATH_TRANSLATED", &split), ("PATH_INFO", "/x")]);
        assert_eq!(check_fix(&mut p, &php(), None, true), refused(2, cut));
        // The script found is checked as php-cgi will run it.
        let jpg = format!("{d}/x.jpg/PHP_VALUE\nx=1");
        let mut p = params_of(&[("SCRIPT_FILENAME", &jpg), ("PATH_INFO", "")]);
        assert_eq!(check_fix(&mut p, &php(), None, true), Verdict::Denied(dir.path().join("x.jpg")));
        let mut p = params_of(&[("SCRIPT_FILENAME", &split), ("PATH_INFO", "\0")]);
        assert_eq!(check_fix(&mut p, &php(), None, true), Verdict::Refused(Refusal::Nul("PATH_INFO")));
        // Repeats, and a forged ORIG_SCRIPT_FILENAME: every repeat carries the new value.
        let mut p = params_of(&[
            ("PATH_INFO", "/long/enough/to/cover/the/cut/of/the/path"),
            ("ORIG_SCRIPT_FILENAME", "/forged"),
            ("SCRIPT_FILENAME", &format!("{d}/x.jpg")),
            ("SCRIPT_FILENAME", &split),
            ("PATH_INFO", ""),
        ]);
        assert_eq!(check_fix(&mut p, &php(), None, true), Verdict::Forward);
        assert_eq!(values(&p, "SCRIPT_FILENAME"), [script.as_bytes(), script.as_bytes()]);
        assert_eq!(values(&p, "ORIG_SCRIPT_FILENAME"), [split.as_bytes()]);
        assert_eq!(values(&p, "PATH_INFO").last(), Some(&&b""[..]));
        // A trailing slash, many slashes, a path of slashes: answered, never a cut past PATH_INFO.
        for tail in ["/", "//////", "/a/b/c/d/e/f/g/h", &"/".repeat(3000)] {
            let mut p = params_of(&[("SCRIPT_FILENAME", &format!("{script}{tail}")), ("PATH_INFO", "")]);
            assert_eq!(check_fix(&mut p, &php(), None, true), Verdict::Forward, "{tail}");
            assert_eq!(p.get(b"SCRIPT_FILENAME"), Some(script.as_bytes()), "{tail}");
        }
    }

    #[test]
    fn paths_past_path_max_are_refused_without_a_lookup() {
        let long = "/a".repeat(120_000);
        assert_eq!(check_(&params(&long), &php(), None), Verdict::Refused(Refusal::TooLong(240_000)));
    }

    /// A docroot with `a.php` and an uploaded `x.jpg`; its path as text.
    fn apache_site() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.php"), "<?php").unwrap();
        std::fs::write(dir.path().join("x.jpg"), "<?php").unwrap();
        let d = dir.path().display().to_string();
        (dir, d)
    }

    #[test]
    fn apache_params_are_rewritten_as_php_fpm_does_then_checked() {
        let (_dir, d) = apache_site();
        let sf = format!("proxy:fcgi://127.0.0.1:9000{d}/a.php/pinfo?q=1");
        let mut p = params_of(&[("SCRIPT_FILENAME", &sf), ("SCRIPT_NAME", "/a.php/pinfo"), ("DOCUMENT_ROOT", &d)]);
        assert_eq!(check_fix(&mut p, &php(), None, true), Verdict::Forward);
        let script = format!("{d}/a.php");
        assert_eq!(p.get(b"SCRIPT_FILENAME"), Some(script.as_bytes()));
        assert_eq!(p.get(b"ORIG_SCRIPT_FILENAME"), Some(format!("{d}/a.php/pinfo").as_bytes()));
        assert_eq!(p.get(b"SCRIPT_NAME"), Some(&b"/a.php"[..]));
        assert_eq!(p.get(b"ORIG_SCRIPT_NAME"), Some(&b"/a.php/pinfo"[..]));
        assert_eq!(p.get(b"PATH_INFO"), Some(&b"/pinfo"[..]));
        assert_eq!(p.get(b"PATH_TRANSLATED"), Some(format!("{d}/pinfo").as_bytes()));
        // cgi.fix_pathinfo=0: only the prefix and the query go.
        let mut p = params_of(&[("SCRIPT_FILENAME", &format!("PROXY:balancer://b{d}/a.php?q"))]);
        assert_eq!(check_fix(&mut p, &php(), None, false), Verdict::Forward);
        assert_eq!(p.get(b"SCRIPT_FILENAME"), Some(script.as_bytes()));
        assert_eq!(p.get(b"PATH_INFO"), None);
    }

    #[test]
    fn nginx_params_are_left_byte_for_byte() {
        let (_dir, d) = apache_site();
        let original = params_of(&[("SCRIPT_FILENAME", &format!("{d}/a.php/x")), ("PATH_INFO", "/x")]);
        let mut p = original.clone();
        assert_eq!(check_fix(&mut p, &php(), None, true), Verdict::Forward);
        assert_eq!(p.bytes(), original.bytes());
    }

    #[test]
    fn hostile_apache_shapes_get_a_precise_answer() {
        let (dir, d) = apache_site();
        let fcgi = |path: &str| format!("proxy:fcgi://h{path}");
        let check_sf = |sf: &str| check_fix(&mut params(sf), &php(), None, true);
        let jpg = Verdict::Denied(dir.path().join("x.jpg"));
        assert_eq!(check_sf(&fcgi(&format!("{d}/x.jpg/y.php"))), jpg, "the extension of the file php-cgi runs");
        assert_eq!(check_sf(&fcgi(&format!("{d}/x.jpg?.php"))), jpg, "the query is not the script");
        assert_eq!(check_sf(&fcgi(&format!("{d}/../missing.php"))), Verdict::NotFound);
        assert_eq!(check_sf(&fcgi(&format!("{d}/%61.php"))), Verdict::NotFound, "php-fpm 8.2 does not decode it");
        assert_eq!(check_sf("proxy:fcgi://no-path"), Verdict::NotFound);
        assert_eq!(check_sf("proxy:fcgi://"), Verdict::NotFound);
        let mut nul = params_of(&[("SCRIPT_FILENAME", &fcgi(&format!("{d}/x.jpg\0.php")))]);
        assert_eq!(check_fix(&mut nul, &php(), None, true), Verdict::Refused(Refusal::Nul("SCRIPT_FILENAME")));
        let long = fcgi(&"/a".repeat(120_000));
        assert_eq!(check_sf(&long), Verdict::Refused(Refusal::TooLong(240_000)));
        // The last SCRIPT_FILENAME is the one rewritten and checked.
        let mut twice =
            params_of(&[("SCRIPT_FILENAME", &format!("{d}/a.php")), ("SCRIPT_FILENAME", &fcgi(&format!("{d}/x.jpg")))]);
        assert_eq!(check_fix(&mut twice, &php(), None, true), jpg);
        // Many repeats of every param it rewrites: one answer, the values bounded.
        let mut pairs = Vec::new();
        let (sf, info) = (fcgi(&format!("{d}/a.php/i")), "/j".repeat(1000));
        for _ in 0..100 {
            pairs.extend([("SCRIPT_FILENAME", sf.as_str()), ("SCRIPT_NAME", &info), ("PATH_INFO", &info)]);
        }
        let mut many = params_of(&pairs);
        let before = many.len();
        assert_eq!(check_fix(&mut many, &php(), None, true), Verdict::Forward);
        assert!(many.len() < before + 4 * 2100, "{} bytes from {before}", many.len());
    }

    #[test]
    fn apache_paths_stay_inside_the_chroot() {
        let (_host, root) = crate::frontend::scripts::tests::jail();
        let jail = Some(root.as_path());
        let mut inside = params("proxy:fcgi://h/www/a.php/x");
        assert_eq!(check_fix(&mut inside, &php(), jail, true), Verdict::Forward);
        assert_eq!(inside.get(b"SCRIPT_FILENAME"), Some(&b"/www/a.php"[..]));
        for escape in ["proxy:fcgi://h/../secret.php", "proxy:fcgi://h/www/../../secret.php/x"] {
            assert_eq!(check_fix(&mut params(escape), &php(), jail, true), Verdict::NotFound, "{escape}");
        }
    }

    #[test]
    fn extensions_match_like_php_fpm() {
        let php = php();
        assert!(allowed(Path::new("/a.php"), &php));
        assert!(!allowed(Path::new(".php"), &php), "php-fpm wants more than the extension");
        assert!(!allowed(Path::new("/a.phps"), &php));
        assert!(allowed(Path::new("/a.jpg"), &[]));
    }
}
