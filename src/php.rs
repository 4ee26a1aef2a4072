//! PHP's own informational flags (`-v`, `-i`, `-m`), answered as php-fpm
//! answers them: by the PHP that runs the scripts, here php-cgi, asked with
//! the command line's `-n`, `-c` and `-d`.
//! A client command: php-cgi runs once, through [`crate::spawn::run_query`], with no
//! supervisor (rustfpm does not serve then).

use std::process::ExitCode;

use crate::config::DEFAULT_PHP_CGI;
use crate::spawn::{run_query, Query};

/// What PHP is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhpQuery {
    /// `-v`: the version banner, with php-fpm's SAPI name (`fpm-fcgi`).
    Version,
    /// `-i`: phpinfo, in PHP's text layout as php-fpm prints it (php-cgi's HTML converted).
    Info,
    /// `-m`: the compiled-in and loaded modules.
    Modules,
}

impl PhpQuery {
    fn flag(self) -> &'static str {
        match self {
            PhpQuery::Version => "-v",
            PhpQuery::Info => "-i",
            PhpQuery::Modules => "-m",
        }
    }
}

/// php-cgi's answer to `query` with PHP's flags `php_args`, as php-fpm prints it.
pub(crate) fn output(query: PhpQuery, php_args: &[String]) -> Result<String, String> {
    // A CGI request's variables (SCRIPT_FILENAME, REQUEST_METHOD, ...) in our environment
    // would make php-cgi run that script instead of answering: it gets PATH only.
    let args = php_args.iter().map(Into::into).chain(["-q".into(), query.flag().into()]).collect();
    let env = std::env::var_os("PATH").map(|path| ("PATH".into(), path)).into_iter().collect();
    let php_cgi = Query { program: DEFAULT_PHP_CGI.into(), args, env, credentials: None };
    let out = run_query(&php_cgi).map_err(|e| format!("cannot run {DEFAULT_PHP_CGI} {}: {e}", query.flag()))?;
    if !out.status.success() {
        return Err(format!("{DEFAULT_PHP_CGI} {} failed: {}", query.flag(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(match query {
        PhpQuery::Version => text.replacen("(cgi-fcgi)", "(fpm-fcgi)", 1),
        PhpQuery::Info => crate::phpinfo::to_text(&text),
        _ => text.into_owned(),
    })
}

/// Prints php-cgi's answer to `query` and gives the exit code (1 if php-cgi failed).
pub fn answer(query: PhpQuery, php_args: &[String]) -> ExitCode {
    match output(query, php_args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}
