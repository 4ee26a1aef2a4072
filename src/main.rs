//! The rustfpm command line. Thin: parses flags, loads the config, and hands
//! over to [`rustfpm::server`].

use std::path::PathBuf;
use std::process::ExitCode;

use rustfpm::config;
use rustfpm::server::{self, Options};
use rustfpm::sys::guard::Guard;

/// php-fpm's exit code for configuration errors (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

const USAGE: &str = "\
Usage: rustfpm --config FILE [-t] [-R]

  --config FILE, -y FILE       rustfpm TOML configuration
  -t, --test                   check the configuration and exit
  -R, --allow-to-run-as-root   allow pools to run as root
  -h, --help                   this help
  -v, --version                print the version
";

struct Args {
    config: Option<PathBuf>,
    test: bool,
    allow_root: bool,
}

enum Parsed {
    Run(Args),
    Exit(ExitCode),
}

fn parse_args() -> Result<Parsed, String> {
    let mut args = Args { config: None, test: false, allow_root: false };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        match arg.as_str() {
            "--config" | "-y" | "--fpm-config" => {
                args.config = Some(it.next().ok_or(format!("{arg} needs a file"))?.into());
            }
            s if s.starts_with("--config=") => args.config = Some(s["--config=".len()..].into()),
            "-t" | "--test" => args.test = true,
            "-R" | "--allow-to-run-as-root" => args.allow_root = true,
            "-F" | "--nodaemonize" => {}
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-v" | "--version" => {
                println!("rustfpm {}", env!("CARGO_PKG_VERSION"));
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(Parsed::Run(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Exit(code)) => return code,
        Err(e) => {
            eprintln!("rustfpm: {e}\n\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    let Some(path) = args.config.clone() else {
        eprintln!("rustfpm: --config FILE is required\n\n{USAGE}");
        return ExitCode::from(64);
    };
    let config = match config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("ERROR: {e}");
            }
            eprintln!("ERROR: configuration file {} test failed", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.test {
        eprintln!("NOTICE: configuration file {} test is successful", path.display());
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
    let result = server::run(config, listeners, guard, Options { allow_root: args.allow_root });
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    result
}
