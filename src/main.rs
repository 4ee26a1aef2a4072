//! The rustfpm command line: php-fpm's flags, plus `--config` for rustfpm's
//! own TOML and `convert`. Thin: parses flags, loads the config, and hands
//! over to [`rustfpm::server`].

use std::path::PathBuf;
use std::process::ExitCode;

use rustfpm::config::{self, Format, Source};
use rustfpm::server::{self, Options};
use rustfpm::sys::guard::Guard;

/// php-fpm's exit code for configuration errors (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// Exit code for command-line mistakes (EX_USAGE).
const EXIT_USAGE: u8 = 64;

const USAGE: &str = "\
Usage: rustfpm [--config FILE | --fpm-config FILE] [options]
       rustfpm convert FILE          print a php-fpm config as rustfpm TOML

  --config FILE                rustfpm's TOML configuration
  -y, --fpm-config FILE        php-fpm's configuration (php-fpm.conf and its includes)
  -p, --prefix DIR             php-fpm's prefix for relative paths (with -y)
  -c, --php-ini PATH           php.ini (file or directory) for every pool's children
  -d, --define KEY=VALUE       INI setting for every pool's children
  -g, --pid FILE               pid file
  -t, --test                   check the configuration and exit (-tt: and print it as TOML)
  -F, --nodaemonize            stay in the foreground (rustfpm always does)
  -O, --force-stderr           log to stderr whatever error_log says
  -R, --allow-to-run-as-root   allow pools to run as root
  -h, --help                   this help
  -v, --version                print the version
";

struct Args {
    source: Option<Source>,
    test: u8,
    allow_root: bool,
    convert: bool,
}

enum Parsed {
    Run(Args),
    Exit(ExitCode),
}

fn value(it: &mut impl Iterator<Item = std::ffi::OsString>, flag: &str) -> Result<String, String> {
    it.next().map(|v| v.to_string_lossy().into_owned()).ok_or(format!("{flag} needs a value"))
}

fn parse_args() -> Result<Parsed, String> {
    let mut args = Args { source: None, test: 0, allow_root: false, convert: false };
    let mut src = Source::toml(PathBuf::new());
    let mut path: Option<(PathBuf, bool)> = None;
    let mut prefix = None;
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        match arg.as_str() {
            "--config" => path = Some((value(&mut it, &arg)?.into(), false)),
            "-y" | "--fpm-config" => path = Some((value(&mut it, &arg)?.into(), true)),
            "convert" if path.is_none() => {
                args.convert = true;
                path = Some((value(&mut it, &arg)?.into(), true));
            }
            "-p" | "--prefix" => prefix = Some(PathBuf::from(value(&mut it, &arg)?)),
            "-c" | "--php-ini" => src.php_ini = Some(value(&mut it, &arg)?.into()),
            "-d" | "--define" => {
                let def = value(&mut it, &arg)?;
                let (k, v) = def.split_once('=').ok_or(format!("-d {def}: expected key=value"))?;
                src.defines.push((k.trim().into(), v.trim().into()));
            }
            "-g" | "--pid" => src.pid = Some(value(&mut it, &arg)?.into()),
            "-t" | "--test" => args.test += 1,
            "-tt" => args.test += 2,
            "-F" | "--nodaemonize" => {}
            "-D" | "--daemonize" => {
                return Err("-D: rustfpm does not daemonize; run it under systemd or with -F".into())
            }
            "-O" | "--force-stderr" => src.force_stderr = true,
            "-R" | "--allow-to-run-as-root" => args.allow_root = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-v" | "--version" => {
                println!("rustfpm {} (php-fpm compatible command line)", env!("CARGO_PKG_VERSION"));
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    let (file, fpm) = path.ok_or("--config FILE or --fpm-config FILE is required")?;
    src.path = file;
    src.format = if fpm { Format::Fpm { prefix } } else { Format::Toml };
    args.source = Some(src);
    Ok(Parsed::Run(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Exit(code)) => return code,
        Err(e) => {
            eprintln!("rustfpm: {e}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let Some(source) = args.source.clone() else { return ExitCode::from(EXIT_USAGE) };
    let config = match source.load() {
        Ok((config, warnings)) => {
            for w in &warnings {
                eprintln!("WARNING: {w}");
            }
            config
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("ERROR: {e}");
            }
            eprintln!("ERROR: configuration file {} test failed", source.path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.convert {
        print!("{}", config::to_toml(&config));
        return ExitCode::SUCCESS;
    }
    if args.test > 0 {
        if args.test > 1 {
            print!("{}", config::to_toml(&config));
        }
        eprintln!("NOTICE: configuration file {} test is successful", source.path.display());
        return ExitCode::SUCCESS;
    }
    match run(config, &args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            rustfpm::alert!("{e:#}");
            rustfpm::alert!("FPM initialization failed");
            ExitCode::from(1)
        }
    }
}

fn run(config: config::Config, args: &Args) -> anyhow::Result<i32> {
    rustfpm::log::init(config.global.log_level, &config.global.error_log)?;
    // Orphaned php-cgi processes re-parent to us, so we can reap them.
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    let listeners = server::bind_all(&config)?;
    // SAFETY: no thread or runtime has been started yet.
    let guard = unsafe { Guard::start() }?;
    let pid_file = config.global.pid.clone();
    if let Some(p) = &pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))?;
    }
    let opts = Options { allow_root: args.allow_root, source: args.source.clone() };
    let result = server::run(config, listeners, guard, opts);
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    result
}
