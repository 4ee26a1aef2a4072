//! The rustfpm binary. Thin: the command line ([`cli`]: php-fpm's flags,
//! `--config` for rustfpm's own TOML, the subcommands) is parsed, the
//! configuration loaded, and the pools handed over to [`rustfpm::server`].

mod cli;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use cli::{Command, Parsed, PingArgs};
use rustfpm::config::{self, Format, Source};
use rustfpm::php;
use rustfpm::server::{self, Options};
use rustfpm::sys::daemon::{self, Readiness};
use rustfpm::sys::guard::Guard;
use rustfpm::sys::safe_fs;

/// php-fpm's exit code for configuration errors (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// What to do with a loaded configuration.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Run the pools.
    Run,
    /// `-t` (1) or `-tt` (2): check it (and print it) and exit.
    Test(u8),
    /// `convert`: print it as TOML.
    Convert,
}

struct Args {
    source: Source,
    allow_root: bool,
}

fn main() -> ExitCode {
    let (source, action, allow_root) = match cli::parse() {
        Ok(Parsed::Run { source, test: 0, allow_root }) => (source, Action::Run, allow_root),
        Ok(Parsed::Run { source, test, allow_root }) => (source, Action::Test(test), allow_root),
        Ok(Parsed::Php(query, php_args)) => return php::answer(query, &php_args),
        Ok(Parsed::Command(Command::Convert(args))) => (args.source(), Action::Convert, false),
        Ok(Parsed::Command(Command::Ping(args))) => return ping_main(&args),
        Ok(Parsed::Command(Command::Top(args))) => match args.config.source() {
            Some(source) => return rustfpm::top::main(source, args.once),
            None => return ExitCode::from(cli::EXIT_USAGE),
        },
        Ok(Parsed::Generate(dir)) => return generate(&dir),
        Err(code) => return code,
    };
    with_config(Args { source, allow_root }, action)
}

/// Loads the configuration and does `action` with it.
fn with_config(mut args: Args, action: Action) -> ExitCode {
    // SAFETY: no thread has been started yet (the environment changes).
    match unsafe { rustfpm::sys::systemd::take_activated_sockets() } {
        Ok(taken) if taken.names_ignored => {
            rustfpm::warning!("systemd: LISTEN_FDNAMES does not name each of LISTEN_FDS; matching by address only")
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("ERROR: cannot take the sockets systemd passed (LISTEN_FDS): {e}");
            return ExitCode::from(1);
        }
    }
    let source = args.source.clone();
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
    match action {
        Action::Run => {}
        Action::Convert => {
            print!("{}", config::to_toml(&config));
            return ExitCode::SUCCESS;
        }
        Action::Test(times) => {
            // As php-fpm's -t, which opens its logs and looks up the pools' users: a log the
            // start could not open, or a user it would refuse, fails here.
            let mut refused = config::missing_log_dirs(&config);
            refused.extend(server::refused_users(&config, args.allow_root));
            if !refused.is_empty() {
                for m in &refused {
                    rustfpm::error!("{m}");
                }
                rustfpm::error!("configuration file {} test failed", source.path.display());
                return ExitCode::from(EXIT_CONFIG);
            }
            match times {
                1 => {}
                // php-fpm's -tt logs the settings as notices.
                _ if fpm => config::fpm_dump(&config).iter().for_each(|line| rustfpm::notice!("{line}")),
                _ => print!("{}", config::to_toml(&config)),
            }
            rustfpm::notice!("configuration file {} test is successful", source.path.display());
            return ExitCode::SUCCESS;
        }
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
            match e.downcast_ref::<rustfpm::ListenError>().filter(|_| fpm) {
                Some(listen) => {
                    rustfpm::error!("{}", listen.fpm_wording());
                    rustfpm::error!("FPM initialization failed");
                }
                None => {
                    rustfpm::alert!("{e:#}");
                    rustfpm::alert!("FPM initialization failed");
                }
            }
            // php-fpm's exit code for a failed start (FPM_EXIT_CONFIG), which
            // systemd units and scripts may test for (RestartPreventExitStatus=78).
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Forks into the background (the original process exits in there). The
/// daemon works in `/`, so the file a reload reads again gets an absolute path
/// (the command line's other paths already have one).
fn detach(args: &mut Args) -> std::io::Result<Readiness> {
    args.source.path = std::path::absolute(&args.source.path)?;
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
    let opts = Options { allow_root: args.allow_root, source: Some(args.source.clone()), ready };
    let result = server::run(config, listeners, guard, opts);
    if let (Some(p), Some(id)) = (&pid_file, pid_id) {
        let _ = safe_fs::remove_if_same(p, id);
    }
    result
}

/// `rustfpm ping [--socket PATH | --tcp IP:PORT] [--path /ping]`: one line, exit 0 or 1.
fn ping_main(args: &PingArgs) -> ExitCode {
    let Some(target) = args.target.get() else { return ExitCode::from(cli::EXIT_USAGE) };
    let path = &args.path;
    match rustfpm::ping::ping(&target, path) {
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

/// `rustfpm generate DIR`: the completions and man pages, for an installer.
fn generate(dir: &Path) -> ExitCode {
    match cli::generate(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rustfpm generate: cannot write into {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
