//! The rustfpm command line: php-fpm's flags, plus `--config` for rustfpm's
//! own TOML and `convert`. Thin: parses flags, loads the config, and hands
//! over to [`rustfpm::server`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use rustfpm::config::{self, Format, Source};
use rustfpm::php::{self, PhpQuery};
use rustfpm::ping::Target;
use rustfpm::server::{self, Options};
use rustfpm::sys::daemon::{self, Readiness};
use rustfpm::sys::guard::Guard;
use rustfpm::sys::safe_fs;

/// php-fpm's exit code for configuration errors (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// Exit code for command-line mistakes (EX_USAGE).
const EXIT_USAGE: u8 = 64;

const USAGE: &str = "\
Usage: rustfpm [--config FILE | --fpm-config FILE] [options]
       rustfpm convert FILE          print a php-fpm config as rustfpm TOML
       rustfpm ping [--socket PATH | --tcp IP:PORT] [--path /ping]
                                     ask a pool's ping page over FastCGI; exit 0 if it answers 200
       rustfpm top (--config FILE | -y FILE)  live view of every pool's children (q quits)

  --config FILE                rustfpm's TOML configuration
  -y, --fpm-config FILE        php-fpm's configuration (php-fpm.conf and its includes)
  -p, --prefix DIR             php-fpm's prefix for relative paths (with -y)
  -c, --php-ini PATH           php.ini (file or directory) for every pool's children
  -n, --no-php-ini             no php.ini for the children (PHP's -n)
  -d, --define KEY[=VALUE]     INI setting for every pool's children (a pool's php_value wins)
  -e, --profile-info           extended information for debuggers/profilers (PHP's -e)
  -i, --info                   PHP information (php-cgi's phpinfo) and exit
  -m, --modules                PHP's compiled-in modules and exit
  -g, --pid FILE               pid file
  -t, --test                   check the configuration and exit (-tt: and print it as TOML)
  -D, --daemonize              run in the background (overrides `daemonize`)
  -F, --nodaemonize            stay in the foreground (overrides `daemonize`)
  -O, --force-stderr           log to stderr whatever error_log says
  -R, --allow-to-run-as-root   allow pools to run as root
  -h, --help                   this help
  -v, --version                PHP's version, as php-fpm prints it, and exit
      --rustfpm-version        rustfpm's own version
";

struct Args {
    source: Option<Source>,
    test: u8,
    allow_root: bool,
    convert: bool,
}

enum Parsed {
    Run(Args),
    /// `-v`, `-i`, `-m`: PHP's answer, asked of php-cgi with these flags.
    Php(PhpQuery, Vec<String>),
    Exit(ExitCode),
}

/// A path from the command line, made absolute: a daemon works in `/`.
fn absolute(path: String) -> Result<PathBuf, String> {
    std::path::absolute(&path).map_err(|e| format!("{path}: {e}"))
}

/// Flags that take a value, short and long; the value may be attached
/// (`-dKEY=VALUE`, `-yFILE`, `--prefix=DIR`) or the next argument.
const WITH_VALUE: [(&str, &str); 6] = [
    ("-y", "--fpm-config"),
    ("-p", "--prefix"),
    ("-c", "--php-ini"),
    ("-d", "--define"),
    ("-g", "--pid"),
    ("", "--config"),
];

/// Splits `arg` into its flag and an attached value.
fn split_flag(arg: &str) -> (&str, Option<&str>) {
    for (short, long) in WITH_VALUE {
        if let Some(v) = arg.strip_prefix(long).and_then(|rest| rest.strip_prefix('=')) {
            return (long, Some(v));
        }
        if !short.is_empty() && arg.len() > 2 && arg.starts_with(short) && !arg.starts_with("--") {
            return (short, Some(&arg[2..]));
        }
    }
    (arg, None)
}

/// PHP's `-d foo[=bar]`: `foo` alone means `foo=1`.
fn define(def: &str) -> (String, String) {
    match def.split_once('=') {
        Some((k, v)) => (k.trim().into(), v.trim().into()),
        None => (def.trim().into(), "1".into()),
    }
}

fn parse_args() -> Result<Parsed, String> {
    let mut args = Args { source: None, test: 0, allow_root: false, convert: false };
    let mut src = Source::toml(PathBuf::new());
    let mut path: Option<(PathBuf, bool)> = None;
    let mut prefix = None;
    let mut query = None;
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (flag, attached) = split_flag(&arg);
        let mut value = || match attached {
            Some(v) => Ok(v.to_string()),
            None => it.next().map(|v| v.to_string_lossy().into_owned()).ok_or(format!("{flag} needs a value")),
        };
        match flag {
            "--config" => path = Some((value()?.into(), false)),
            "-y" | "--fpm-config" => path = Some((value()?.into(), true)),
            "convert" if path.is_none() => {
                args.convert = true;
                path = Some((value()?.into(), true));
            }
            "-p" | "--prefix" => prefix = Some(absolute(value()?)?),
            "-c" | "--php-ini" => src.php_ini = Some(absolute(value()?)?),
            "-d" | "--define" => src.defines.push(define(&value()?)),
            "-g" | "--pid" => src.pid = Some(absolute(value()?)?),
            "-n" | "--no-php-ini" | "-e" | "--profile-info" => {
                let short = if flag.starts_with("-n") || flag == "--no-php-ini" { "-n" } else { "-e" };
                src.php_flags.push(short.into());
            }
            "-t" | "--test" => args.test += 1,
            "-tt" => args.test += 2,
            // As in php-fpm, the last of -D and -F wins, over the config file.
            "-F" | "--nodaemonize" => src.daemonize = Some(false),
            "-D" | "--daemonize" => src.daemonize = Some(true),
            "-O" | "--force-stderr" => src.force_stderr = true,
            "-R" | "--allow-to-run-as-root" => args.allow_root = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-v" | "--version" => query = query.or(Some(PhpQuery::Version)),
            "-i" | "--info" => query = query.or(Some(PhpQuery::Info)),
            "-m" | "--modules" => query = query.or(Some(PhpQuery::Modules)),
            "--rustfpm-version" => {
                println!("rustfpm {}", env!("CARGO_PKG_VERSION"));
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if let Some(query) = query {
        return Ok(Parsed::Php(query, php_args(&src)));
    }
    let (file, fpm) = path.ok_or("--config FILE or --fpm-config FILE is required")?;
    src.path = file;
    src.format = if fpm { Format::Fpm { prefix } } else { Format::Toml };
    args.source = Some(src);
    Ok(Parsed::Run(args))
}

/// php-cgi's arguments for PHP's own flags from the command line.
fn php_args(src: &Source) -> Vec<String> {
    let mut args = src.php_flags.clone();
    if let Some(ini) = src.php_ini.as_ref().filter(|_| !args.iter().any(|f| f == "-n")) {
        args.extend(["-c".into(), ini.display().to_string()]);
    }
    for (k, v) in &src.defines {
        args.extend(["-d".into(), format!("{k}={v}")]);
    }
    args
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "ping") {
        return ping_main();
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "top") {
        return rustfpm::top::main(std::env::args_os().skip(2));
    }
    let mut args = match parse_args() {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Exit(code)) => return code,
        Ok(Parsed::Php(query, php_args)) => return php::answer(query, &php_args),
        Err(e) => {
            // php-fpm's first line is its usage (scripts look for it).
            eprintln!("{USAGE}\nrustfpm: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let Some(source) = args.source.clone() else { return ExitCode::from(EXIT_USAGE) };
    // SAFETY: no thread has been started yet (the environment changes).
    if let Err(e) = unsafe { rustfpm::sys::systemd::take_activated_sockets() } {
        eprintln!("ERROR: cannot take the sockets systemd passed (LISTEN_FDS): {e}");
        return ExitCode::from(1);
    }
    let fpm = matches!(source.format, Format::Fpm { .. });
    let config = match source.load() {
        Ok((config, warnings)) => {
            for w in &warnings {
                rustfpm::warning!("{w}");
            }
            config
        }
        Err(errors) if fpm => {
            // php-fpm's words and layout: scripts and tests read them.
            for e in &errors.0 {
                rustfpm::error!("{}", config::fpm_wording(e));
            }
            rustfpm::error!("FPM initialization failed");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("ERROR: {e}");
            }
            eprintln!("ERROR: configuration file {} test failed", source.path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // As php-fpm's -O, which only counts in the foreground.
    if source.force_stderr && !config.global.daemonize {
        rustfpm::log::force_stderr();
    }
    if args.convert {
        print!("{}", config::to_toml(&config));
        return ExitCode::SUCCESS;
    }
    if args.test > 0 {
        match args.test {
            1 => {}
            // php-fpm's -tt logs the settings as notices.
            _ if fpm => config::fpm_dump(&config).iter().for_each(|line| rustfpm::notice!("{line}")),
            _ => print!("{}", config::to_toml(&config)),
        }
        rustfpm::notice!("configuration file {} test is successful", source.path.display());
        return ExitCode::SUCCESS;
    }
    let ready = match config.global.daemonize.then(|| detach(&mut args)).transpose() {
        Ok(ready) => ready,
        Err(e) => {
            eprintln!("ERROR: cannot daemonize: {e}");
            return ExitCode::from(1);
        }
    };
    match run(config, &args, ready) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            // php-fpm's words and level for a listener it cannot bind (its test-suite reads them).
            match e.downcast_ref::<rustfpm::frontend::ListenError>().filter(|_| fpm) {
                Some(listen) => {
                    rustfpm::error!("{}", listen.fpm_wording());
                    rustfpm::error!("FPM initialization failed");
                }
                None => {
                    rustfpm::alert!("{e:#}");
                    rustfpm::alert!("FPM initialization failed");
                }
            }
            ExitCode::from(1)
        }
    }
}

/// Forks into the background (the original process exits in there). The
/// daemon works in `/`, so the file a reload reads again gets an absolute path
/// (the command line's other paths already have one).
fn detach(args: &mut Args) -> std::io::Result<Readiness> {
    if let Some(source) = &mut args.source {
        source.path = std::path::absolute(&source.path)?;
    }
    // SAFETY: no thread or runtime has been started yet.
    unsafe { daemon::detach() }
}

fn run(config: config::Config, args: &Args, ready: Option<Readiness>) -> anyhow::Result<i32> {
    rustfpm::log::init(&config.global)?;
    rustfpm::sys::rlimit::set_open_files(config.global.rlimit_files)?;
    if ready.is_some() {
        rustfpm::log::daemon_start();
    }
    if ready.is_some() && config.global.error_log == config::LogTarget::Stderr {
        rustfpm::warning!("error_log is stderr: once the daemon is ready, its log goes to /dev/null");
    }
    // Orphaned php-cgi processes re-parent to us, so we can reap them.
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    let listeners = server::bind_all(&config)?;
    // SAFETY: no thread or runtime has been started yet.
    let guard = unsafe { Guard::start() }?;
    let pid_file = config.global.pid.clone();
    let pid_id = match &pid_file {
        // Written under a new name and renamed into place: a link planted at the path is
        // replaced, never written through.
        Some(p) => Some(
            safe_fs::replace(p, format!("{}\n", std::process::id()).as_bytes(), server::PID_FILE_MODE)
                .with_context(|| format!("cannot write the pid file {}", p.display()))?,
        ),
        None => None,
    };
    let opts = Options { allow_root: args.allow_root, source: args.source.clone(), ready };
    let result = server::run(config, listeners, guard, opts);
    if let (Some(p), Some(id)) = (&pid_file, pid_id) {
        let _ = safe_fs::remove_if_same(p, id);
    }
    result
}

/// `rustfpm ping [--socket PATH | --tcp IP:PORT] [--path /ping]`: one line, exit 0 or 1
/// (64 for a usage mistake).
/// The value after `flag` (the next argument).
fn value(it: &mut impl Iterator<Item = std::ffi::OsString>, flag: &str) -> Result<String, String> {
    it.next().map(|v| v.to_string_lossy().into_owned()).ok_or(format!("{flag} needs a value"))
}

fn ping_main() -> ExitCode {
    let parsed = (|| {
        let (mut target, mut path) = (None, rustfpm::ping::DEFAULT_PATH.to_string());
        let mut it = std::env::args_os().skip(2);
        while let Some(arg) = it.next() {
            let arg = arg.to_string_lossy().into_owned();
            match arg.as_str() {
                "--socket" => target = Some(Target::Unix(value(&mut it, &arg)?.into())),
                "--tcp" => {
                    let v = value(&mut it, &arg)?;
                    let addr = config::parse_tcp(&v).map_err(|e| format!("--tcp {v}: {e}"))?;
                    target = Some(Target::Tcp(addr));
                }
                "--path" => path = value(&mut it, &arg)?,
                other => return Err(format!("ping: unknown option '{other}'")),
            }
        }
        Ok::<_, String>((target.ok_or("ping: --socket PATH or --tcp IP:PORT is required")?, path))
    })();
    let (target, path) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rustfpm: {e}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match rustfpm::ping::ping(&target, &path) {
        Ok(pong) => {
            println!("OK: {target} answered {path} with 200 ({}) in {} ms", pong.body, pong.took.as_millis());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}
