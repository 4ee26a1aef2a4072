//! The environment scripts see, closer to php-fpm's. rustfpm starts php-cgi with variables it
//! reads at start and php-fpm's workers do not have (`PHP_FCGI_CHILDREN`,
//! `PHP_FCGI_MAX_REQUESTS`, `PHP_INI_SCAN_DIR`: `pool::spec`, `sys::private_ini`); php-cgi
//! keeps them in its process environment, where `getenv()`, `$_SERVER`, `$_ENV` and every
//! command a script runs would find them.
//!
//! Of those in [`UNDONE`], what php-fpm's worker would not have as it is ([`undo_list`]: not
//! the pool's `env`, nor, with `clear_env = false`, rustfpm's own) is undone by the polyfill
//! before the script and the pool's own prepend run ([`source`]): unset with `putenv()`, or
//! given back the value php-fpm's worker would have. PHP restores what `putenv()` changed at
//! the end of each request, so it is done on every request; a pool whose php-cgi has no such
//! variable pays nothing. Measured: about 2,800 php-cgi instructions per request for
//! `PHP_INI_SCAN_DIR` (hello world 53,850 → 56,620), 7,500 for all three. `$_SERVER` and `$_ENV`
//! are built from the environment when a script first names them (`auto_globals_jit`), after
//! the polyfill ran; only when PHP built them at the request's start (`auto_globals_jit` off)
//! are their entries corrected too. A pool that disables `putenv()` keeps them.

use std::ffi::OsString;

use crate::config;

/// The variables undone: those that change what the commands a script runs do. A `php` CLI
/// reads `PHP_INI_SCAN_DIR`: with rustfpm's it would scan FPM's `conf.d` and rustfpm's private
/// ini file (the pool's settings, `sys::private_ini`). `PHP_FCGI_CHILDREN` and
/// `PHP_FCGI_MAX_REQUESTS` matter only to a php-cgi serving FastCGI, which no script starts:
/// they stay in view, sparing each request two more `putenv()` (about 4,700 instructions).
const UNDONE: [&str; 1] = ["PHP_INI_SCAN_DIR"];

/// A variable of php-cgi's environment that scripts must not see as it is.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Undo {
    name: String,
    /// The value php-fpm's worker would have; None: it would have none.
    value: Option<String>,
}

/// What of php-cgi's environment (pool `cfg`'s) rustfpm sets for php-cgi itself: each of
/// [`UNDONE`], which php-cgi always has (rustfpm adds its private ini's directory to
/// `PHP_INI_SCAN_DIR` when it starts php-cgi: `sys::private_ini`), with the value php-fpm's
/// worker would have. A value that is not UTF-8 is left as it is.
pub(super) fn undo_list(cfg: &config::Pool) -> Vec<Undo> {
    let mut undo = Vec::new();
    for name in UNDONE {
        let fpm_value = match cfg.env.iter().rev().find(|(k, _)| k == name) {
            Some((_, v)) => Some(OsString::from(v)),
            None if !cfg.clear_env => std::env::var_os(name),
            None => None,
        };
        match fpm_value.map(OsString::into_string) {
            None => undo.push(Undo { name: name.into(), value: None }),
            Some(Ok(v)) => undo.push(Undo { name: name.into(), value: Some(v) }),
            Some(Err(_)) => {}
        }
    }
    undo
}

/// The polyfill's top-level code that undoes `undo`, run before anything else of it
/// (empty when there is nothing to undo).
pub(super) fn source(undo: &[Undo], php_string: impl Fn(&str) -> String) -> String {
    if undo.is_empty() {
        return String::new();
    }
    let mut php =
        String::from("// The variables rustfpm gave php-cgi, not the scripts (as php-fpm's workers have none).\n");
    for Undo { name, value } in undo {
        let setting = match value {
            Some(v) => format!("{name}={v}"),
            None => name.clone(),
        };
        php.push_str(&format!("putenv({});\n", php_string(&setting)));
    }
    let names: Vec<String> = undo.iter().map(|u| php_string(&u.name)).collect();
    // `$GLOBALS['_SERVER']` is set only when PHP built the array already: naming it this way
    // does not build it.
    php.push_str(&format!(
        r#"if (isset($GLOBALS['_SERVER']) || isset($GLOBALS['_ENV'])) {{
    (static function (): void {{
        foreach (['_SERVER', '_ENV'] as $array) {{
            foreach ([{names}] as $name) {{
                if (isset($GLOBALS[$array][$name])) {{
                    $value = getenv($name);
                    if ($value === false) {{
                        unset($GLOBALS[$array][$name]);
                    }} else {{
                        $GLOBALS[$array][$name] = $value;
                    }}
                }}
            }}
        }}
    }})();
}}
"#,
        names = names.join(", ")
    ));
    php
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn pool(extra: &str) -> config::Pool {
        let text = format!("[pool.www]\nlisten = \"/run/www.sock\"\npm = \"static\"\npm_max_children = 1\n{extra}");
        config::parse(&text, Path::new("test.toml")).unwrap().pools.remove(0)
    }

    #[test]
    fn what_rustfpm_added_is_undone_and_the_pools_own_values_come_back() {
        let own = pool("[pool.www.env]\nPHP_INI_SCAN_DIR = \"/site/conf.d\"\nAPP = \"1\"\n");
        assert_eq!(undo_list(&own), [Undo { name: "PHP_INI_SCAN_DIR".into(), value: Some("/site/conf.d".into()) }]);
        assert_eq!(undo_list(&pool("")), [Undo { name: "PHP_INI_SCAN_DIR".into(), value: None }]);
    }

    #[test]
    fn the_source_unsets_and_restores_without_naming_the_superglobals() {
        let undo = [
            Undo { name: "PHP_FCGI_CHILDREN".into(), value: None },
            Undo { name: "PHP_INI_SCAN_DIR".into(), value: Some("/it's".into()) },
        ];
        let quote = |s: &str| format!("'{}'", s.replace('\'', "\\'"));
        let php = source(&undo, quote);
        assert!(php.contains("putenv('PHP_FCGI_CHILDREN');\nputenv('PHP_INI_SCAN_DIR=/it\\'s');"), "{php}");
        assert!(!php.contains("$_SERVER") && !php.contains("$_ENV"), "{php}");
        assert_eq!(source(&[], quote), "");
    }
}
