//! The command line, declared with `clap`: php-fpm's flags at the top level,
//! kept exactly as php-fpm's getopt takes them (`-tt`, `-dKEY=VALUE` and
//! `-d KEY=VALUE`, `-yFILE`, `--fpm-config=FILE`, repeats where the last one
//! wins), plus rustfpm's `--config` and the subcommands `convert`, `ping` and
//! `top`. As php-fpm, a mistake prints the usage (on stdout) and exits 64.
//!
//! `--help`, the shell completions and the man pages are generated from these
//! declarations (`rustfpm generate DIR`, hidden: the install script calls it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use rustfpm::config::{self, Format, Source};
use rustfpm::php::PhpQuery;
use rustfpm::ping::{self, Target};

/// Exit code for command-line mistakes (EX_USAGE), as php-fpm's.
pub const EXIT_USAGE: u8 = 64;

/// The top-level help starts with the usage line, as php-fpm's does (scripts look for it).
const TOP_HELP: &str = "{usage-heading} {usage}\n\n{about-with-newline}\n{all-args}{after-help}";

const AFTER_HELP: &str = "\
rustfpm reads php-fpm's configuration (-y) or its own TOML (--config) and runs each pool's
php-cgi children. A mistake in the options prints this usage and exits 64; a configuration
error exits 78. SIGQUIT (or SIGTERM with graceful_stop_on_term) stops gracefully, SIGTERM
and SIGINT at once; SIGUSR2 and SIGHUP reload the configuration, SIGUSR1 reopens the log files.";

/// rustfpm's whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "rustfpm",
    version,
    about = "A FastCGI process manager for PHP that replaces php-fpm",
    help_template = TOP_HELP,
    after_help = AFTER_HELP,
    disable_version_flag = true,
    disable_help_subcommand = true,
    args_override_self = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// php-fpm's flags.
    #[command(flatten)]
    pub fpm: FpmArgs,
    /// A subcommand instead of running the pools.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where the configuration is read from: `--config` or `-y`, the last one given.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// rustfpm's TOML configuration
    #[arg(long, value_name = "FILE", overrides_with = "fpm_config", value_hint = clap::ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// php-fpm's configuration (php-fpm.conf and its includes)
    #[arg(short = 'y', long, value_name = "FILE", overrides_with = "config", value_hint = clap::ValueHint::FilePath)]
    pub fpm_config: Option<PathBuf>,
    /// php-fpm's prefix for relative paths in its configuration (with -y)
    #[arg(short, long, value_name = "DIR", value_parser = absolute, value_hint = clap::ValueHint::DirPath)]
    pub prefix: Option<PathBuf>,
}

impl ConfigArgs {
    /// The configuration file named, without the command line's overrides.
    pub fn source(&self) -> Option<Source> {
        let (path, fpm) = match (&self.config, &self.fpm_config) {
            (Some(toml), None) => (toml, false),
            (_, Some(fpm)) => (fpm, true),
            (None, None) => return None,
        };
        let mut source = Source::toml(path.clone());
        if fpm {
            source.format = Format::Fpm { prefix: self.prefix.clone() };
        }
        Some(source)
    }
}

/// PHP's own flags, passed to every pool's children (and to php-cgi for `-v`, `-i`, `-m`).
#[derive(Debug, Clone, Args)]
pub struct PhpArgs {
    /// php.ini (file or directory) for every pool's children
    #[arg(short = 'c', long, value_name = "PATH", value_parser = absolute, value_hint = clap::ValueHint::AnyPath)]
    pub php_ini: Option<PathBuf>,
    /// No php.ini for the children (PHP's -n)
    #[arg(short, long)]
    pub no_php_ini: bool,
    /// INI entry for the children, repeatable (KEY alone: KEY=1; a pool's php_value wins)
    #[arg(short = 'd', long = "define", value_name = "KEY[=VALUE]", value_parser = define)]
    pub defines: Vec<(String, String)>,
    /// Extended information for debuggers and profilers (PHP's -e)
    #[arg(short = 'e', long)]
    pub profile_info: bool,
}

impl PhpArgs {
    /// Applies these flags to `source`.
    pub fn apply(&self, source: &mut Source) {
        source.php_ini.clone_from(&self.php_ini);
        source.defines.clone_from(&self.defines);
        source.php_flags = self.flags();
    }

    /// PHP's switches among these flags (`-n`, `-e`).
    fn flags(&self) -> Vec<String> {
        [(self.no_php_ini, "-n"), (self.profile_info, "-e")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, flag)| flag.to_string())
            .collect()
    }

    /// php-cgi's arguments for these flags (`-n` leaves out `-c`, as PHP does).
    pub fn php_cgi_args(&self) -> Vec<String> {
        let mut args = self.flags();
        if let Some(ini) = self.php_ini.as_ref().filter(|_| !self.no_php_ini) {
            args.extend(["-c".into(), ini.display().to_string()]);
        }
        for (k, v) in &self.defines {
            args.extend(["-d".into(), format!("{k}={v}")]);
        }
        args
    }
}

/// php-fpm's command line (rustfpm with no subcommand).
#[derive(Debug, Clone, Args)]
pub struct FpmArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// PHP's flags for the children.
    #[command(flatten)]
    pub php: PhpArgs,
    /// PHP information (phpinfo as text, as php-fpm prints it) and exit
    #[arg(short, long)]
    pub info: bool,
    /// PHP's compiled-in modules and exit
    #[arg(short, long)]
    pub modules: bool,
    /// Pid file, where the configuration sets no `pid` (as php-fpm)
    #[arg(short = 'g', long, value_name = "FILE", value_parser = absolute, value_hint = clap::ValueHint::FilePath)]
    pub pid: Option<PathBuf>,
    /// Check the configuration and exit; twice (-tt) also print it
    #[arg(short, long, action = ArgAction::Count)]
    pub test: u8,
    /// Run in the background (overrides `daemonize`)
    #[arg(short = 'D', long, overrides_with = "nodaemonize")]
    pub daemonize: bool,
    /// Stay in the foreground (overrides `daemonize`)
    #[arg(short = 'F', long, overrides_with = "daemonize")]
    pub nodaemonize: bool,
    /// Log to stderr too, whatever error_log says (in the foreground)
    #[arg(short = 'O', long)]
    pub force_stderr: bool,
    /// Allow pools to run as root
    #[arg(short = 'R', long)]
    pub allow_to_run_as_root: bool,
    /// php-fpm's spellings of -h
    #[arg(short = '?', long = "usage", action = ArgAction::Help, hide = true)]
    usage: Option<bool>,
    /// PHP's version, as php-fpm prints it, and exit
    #[arg(short, long)]
    pub version: bool,
    /// rustfpm's own version
    #[arg(long, action = ArgAction::Version)]
    rustfpm_version: Option<bool>,
}

impl FpmArgs {
    /// The `-D`/`-F` override: the last one given, if any.
    fn daemonize(&self) -> Option<bool> {
        match (self.daemonize, self.nodaemonize) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }

    /// The configuration with every override of the command line, or `None`
    /// when neither `--config` nor `-y` was given.
    pub fn source(&self) -> Option<Source> {
        let mut source = self.config.source()?;
        self.php.apply(&mut source);
        source.pid.clone_from(&self.pid);
        source.force_stderr = self.force_stderr;
        source.daemonize = self.daemonize();
        Some(source)
    }
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print a php-fpm configuration as rustfpm TOML
    Convert(ConvertArgs),
    /// Ask a pool's ping page over FastCGI: exit 0 if it answers 200, else 1 with the reason
    Ping(PingArgs),
    /// Live view of every pool's children, from their status pages (q, Esc or Ctrl-C quits)
    #[command(override_usage = "rustfpm top (--config <FILE> | -y <FILE> [-p <DIR>]) [--once]")]
    Top(TopArgs),
}

/// The hidden subcommand that writes the completions and man pages (left out of them).
const GENERATE: &str = "generate";

/// The command line as parsed: [`Cli`] and the hidden `generate DIR`.
fn command() -> clap::Command {
    let dir = clap::Arg::new("dir")
        .value_name("DIR")
        .required(true)
        .value_parser(clap::value_parser!(PathBuf))
        .help("The directory (bash/, zsh/, fish/ and man1/ are made in it)");
    let generate = clap::Command::new(GENERATE)
        .about("Write the shell completions and man pages into a directory (for installers)")
        .arg(dir);
    Cli::command().subcommand(generate.hide(true))
}

/// `rustfpm convert`.
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// php-fpm's configuration file
    #[arg(value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub file: PathBuf,
    /// php-fpm's prefix for relative paths in it
    #[arg(short, long, value_name = "DIR", value_parser = absolute, value_hint = clap::ValueHint::DirPath)]
    pub prefix: Option<PathBuf>,
    /// PHP's flags, written into every pool
    #[command(flatten)]
    pub php: PhpArgs,
}

impl ConvertArgs {
    /// The php-fpm configuration to convert, with the PHP flags applied.
    pub fn source(&self) -> Source {
        let mut source = Source::toml(self.file.clone());
        source.format = Format::Fpm { prefix: self.prefix.clone() };
        self.php.apply(&mut source);
        source
    }
}

/// `rustfpm ping`.
#[derive(Debug, Clone, Args)]
pub struct PingArgs {
    /// Where the pool listens.
    #[command(flatten)]
    pub target: PingTarget,
    /// The ping path asked (the pool's ping_path)
    #[arg(long, value_name = "PATH", default_value = ping::DEFAULT_PATH)]
    pub path: String,
}

/// Where `rustfpm ping` asks: one of a unix socket and a TCP address.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct PingTarget {
    /// The pool's unix socket
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub socket: Option<PathBuf>,
    /// The pool's TCP address
    #[arg(long, value_name = "IP:PORT", value_parser = tcp)]
    pub tcp: Option<SocketAddr>,
}

impl PingTarget {
    /// The address asked (clap requires one).
    pub fn get(&self) -> Option<Target> {
        match (&self.socket, self.tcp) {
            (Some(path), _) => Some(Target::Unix(path.clone())),
            (None, Some(addr)) => Some(Target::Tcp(addr)),
            (None, None) => None,
        }
    }
}

/// `rustfpm top`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// The configuration whose pools are shown.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print one screen as plain text and exit
    #[arg(long)]
    pub once: bool,
}

/// The command line, parsed.
#[derive(Debug)]
pub enum Parsed {
    /// Run the pools (or `-t`) with this configuration.
    Run { source: Source, test: u8, allow_root: bool },
    /// `-v`, `-i`, `-m`: PHP's answer, asked of php-cgi with these flags.
    Php(PhpQuery, Vec<String>),
    /// A subcommand.
    Command(Command),
    /// `generate DIR`: write the completions and man pages there.
    Generate(PathBuf),
}

/// Parses the process's arguments; on `-h`, `--rustfpm-version` or a mistake,
/// prints what php-fpm would and gives the exit code.
pub fn parse() -> Result<Parsed, ExitCode> {
    parse_from(std::env::args_os()).map_err(|e| report(&e))
}

/// Parses `args` (the program's name first).
pub fn parse_from<I, T>(args: I) -> Result<Parsed, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    if let Some((GENERATE, sub)) = matches.subcommand() {
        return Ok(Parsed::Generate(sub.get_one::<PathBuf>("dir").cloned().unwrap_or_default()));
    }
    let cli = Cli::from_arg_matches(&matches)?;
    if let Some(command) = cli.command {
        if let Command::Top(top) = &command {
            if top.config.source().is_none() {
                return Err(missing_config(Some("top")));
            }
        }
        return Ok(Parsed::Command(command));
    }
    let fpm = cli.fpm;
    if let Some(query) = php_query(&matches) {
        return Ok(Parsed::Php(query, fpm.php.php_cgi_args()));
    }
    let source = fpm.source().ok_or_else(|| missing_config(None))?;
    Ok(Parsed::Run { source, test: fpm.test, allow_root: fpm.allow_to_run_as_root })
}

/// `-v`, `-m` or `-i`. php-fpm answers `-v` or `-m` as soon as it reads one, and `-i`
/// once all options are read: so the first of `-v` and `-m`, else `-i`.
fn php_query(matches: &clap::ArgMatches) -> Option<PhpQuery> {
    let at = |id: &str| matches.get_flag(id).then(|| matches.index_of(id)).flatten();
    let first = [(PhpQuery::Version, at("version")), (PhpQuery::Modules, at("modules"))]
        .into_iter()
        .filter_map(|(query, index)| Some((index?, query)))
        .min_by_key(|(index, _)| *index)
        .map(|(_, query)| query);
    first.or(matches.get_flag("info").then_some(PhpQuery::Info))
}

/// The error for a missing `--config`/`-y`, with the usage of `subcommand` (or of rustfpm).
fn missing_config(subcommand: Option<&str>) -> clap::Error {
    let mut cmd = Cli::command();
    cmd.build();
    let cmd = match subcommand.and_then(|name| cmd.find_subcommand_mut(name)) {
        Some(sub) => sub,
        None => &mut cmd,
    };
    cmd.error(ErrorKind::MissingRequiredArgument, "--config FILE or -y/--fpm-config FILE is required")
}

/// Prints what a parse error calls for and gives the exit code: help and version on
/// stdout with 0; a mistake at the top level as php-fpm (its usage on stdout, exit 64)
/// with the reason on stderr; a subcommand's mistake on stderr with its usage, exit 64.
fn report(e: &clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let mut cmd = command();
    cmd.build();
    let first = args().nth(1).unwrap_or_default();
    match cmd.find_subcommand_mut(&first) {
        Some(sub) => eprintln!("rustfpm {first}: {}\n\n{}", reason(e), sub.render_usage()),
        None => {
            print!("{}", cmd.render_help());
            eprintln!("\nrustfpm: {}", reason(e));
        }
    }
    ExitCode::from(EXIT_USAGE)
}

/// clap's words for a mistake without its usage and hint lines; an unknown
/// `--name=value` is named whole, as it was given.
fn reason(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let end = ["\nUsage:", "\nFor more information"].iter().filter_map(|m| text.find(m)).min();
    let reason = text[..end.unwrap_or(text.len())].trim_end().trim_start_matches("error: ");
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return reason.to_string() };
    let given = args().skip(1).find(|a| a.starts_with(&format!("{arg}=")));
    match given {
        Some(given) => reason.replacen(&format!("'{arg}'"), &format!("'{given}'"), 1),
        None => reason.to_string(),
    }
}

/// The process's arguments as text (a byte that is not UTF-8 shown as U+FFFD).
fn args() -> impl Iterator<Item = String> {
    std::env::args_os().map(|a| a.to_string_lossy().into_owned())
}

/// A path from the command line, made absolute: a daemon works in `/`.
fn absolute(path: &str) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{path}: {e}"))
}

/// PHP's `-d foo[=bar]`: `foo` alone means `foo=1`.
fn define(def: &str) -> Result<(String, String), String> {
    let (k, v) = def.split_once('=').unwrap_or((def, "1"));
    match k.trim() {
        "" => Err(format!("'{def}': no INI entry name before '='")),
        k => Ok((k.to_string(), v.trim().to_string())),
    }
}

fn tcp(value: &str) -> Result<SocketAddr, String> {
    config::parse_tcp(value)
}

/// Writes bash, zsh and fish completions and the man pages (rustfpm(1) and one
/// per subcommand) into `dir`: `bash/rustfpm`, `zsh/_rustfpm`, `fish/rustfpm.fish`,
/// `man1/rustfpm*.1`.
pub fn generate(dir: &Path) -> std::io::Result<()> {
    use clap_complete::Shell;
    let mut cmd = Cli::command();
    cmd.build();
    for (shell, sub, name) in
        [(Shell::Bash, "bash", "rustfpm"), (Shell::Zsh, "zsh", "_rustfpm"), (Shell::Fish, "fish", "rustfpm.fish")]
    {
        std::fs::create_dir_all(dir.join(sub))?;
        let mut file = std::fs::File::create(dir.join(sub).join(name))?;
        clap_complete::generate(shell, &mut cmd, "rustfpm", &mut file);
    }
    let man = dir.join("man1");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(cmd, &man)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, clap::Error> {
        parse_from(std::iter::once("rustfpm").chain(args.iter().copied()))
    }

    fn run(args: &[&str]) -> (Source, u8, bool) {
        match parse(args) {
            Ok(Parsed::Run { source, test, allow_root }) => (source, test, allow_root),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn the_declarations_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defines_attached_and_separate_in_order() {
        let (source, ..) = run(&["-y", "/f.conf", "-dmemory_limit=1G", "-d", "a = b", "--define=flag", "-d", "x=y=z"]);
        let want = [("memory_limit", "1G"), ("a", "b"), ("flag", "1"), ("x", "y=z")];
        assert_eq!(source.defines, want.map(|(k, v)| (k.to_string(), v.to_string())));
        assert!(parse(&["-y", "/f.conf", "-d", "=1"]).is_err());
    }

    #[test]
    fn test_counts_and_tt_is_twice() {
        for (args, want) in [(&["-t"][..], 1), (&["-tt"][..], 2), (&["-t", "--test"][..], 2), (&[][..], 0)] {
            let (_, test, _) = run(&[&["--config", "/f.toml"][..], args].concat());
            assert_eq!(test, want, "{args:?}");
        }
    }

    #[test]
    fn the_last_of_config_and_fpm_config_wins_and_values_attach() {
        let (source, ..) = run(&["--config", "/a.toml", "-y", "/b.conf"]);
        assert_eq!((source.path.to_str(), matches!(source.format, Format::Fpm { .. })), (Some("/b.conf"), true));
        let (source, ..) = run(&["-y/b.conf", "--config=/a.toml"]);
        assert_eq!((source.path.to_str(), matches!(source.format, Format::Toml)), (Some("/a.toml"), true));
        let (source, ..) = run(&["--fpm-config=/c.conf", "-p", "/usr", "-y", "/d.conf"]);
        assert_eq!(source.path.to_str(), Some("/d.conf"));
        assert!(matches!(source.format, Format::Fpm { prefix: Some(ref p) } if p == Path::new("/usr")));
    }

    #[test]
    fn the_last_of_dash_d_and_dash_f_wins() {
        for (args, want) in
            [(&["-D", "-F"][..], Some(false)), (&["-F", "-D"][..], Some(true)), (&["-FOR"][..], Some(false))]
        {
            let (source, _, _) = run(&[&["-y", "/f.conf"][..], args].concat());
            assert_eq!(source.daemonize, want, "{args:?}");
        }
        let (source, _, root) = run(&["-y", "/f.conf", "-O", "-R"]);
        assert_eq!((source.daemonize, source.force_stderr, root), (None, true, true));
    }

    #[test]
    fn php_flags_and_paths_are_absolute() {
        let (source, ..) = run(&["-y", "f.conf", "-n", "-e", "-c", "php.ini", "-g", "run/fpm.pid", "-p", "pre"]);
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(source.php_flags, ["-n", "-e"]);
        assert_eq!(source.php_ini, Some(cwd.join("php.ini")));
        assert_eq!(source.pid, Some(cwd.join("run/fpm.pid")));
        assert_eq!(source.path, PathBuf::from("f.conf"), "the config's path is made absolute only to daemonize");
        assert!(matches!(source.format, Format::Fpm { prefix: Some(ref p) } if *p == cwd.join("pre")));
    }

    #[test]
    fn php_queries_take_php_flags_and_the_first_of_v_and_m() {
        let query = |args: &[&str]| match parse(args) {
            Ok(Parsed::Php(query, php_args)) => (query, php_args),
            other => panic!("{args:?}: {other:?}"),
        };
        assert_eq!(query(&["-v"]).0, PhpQuery::Version);
        assert_eq!(query(&["-m", "-v"]).0, PhpQuery::Modules);
        assert_eq!(query(&["-i", "-v"]).0, PhpQuery::Version);
        assert_eq!(query(&["-i", "--config", "/f.toml"]).0, PhpQuery::Info);
        let (_, args) = query(&["-n", "-c", "/etc/php.ini", "-dx=1", "-m"]);
        assert_eq!(args, ["-n", "-d", "x=1"], "-n leaves out -c");
        assert_eq!(query(&["-c", "/etc/php.ini", "-m"]).1, ["-c", "/etc/php.ini"]);
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for args in [
            &["--bogus"][..],
            &["-x"],
            &["-y"],
            &["extra", "-y", "/f.conf"],
            &[],
            &["-t"],
            &["-y", "/f.conf", "ping", "--socket", "/s"],
            &["ping"],
            &["ping", "--socket", "/s", "--tcp", "127.0.0.1:9000"],
            &["ping", "--tcp", "127.0.0.1"],
            &["top", "--once"],
            &["convert"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} parsed"));
            assert!(!matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion), "{args:?}");
        }
        for args in [&["-h"][..], &["--help"], &["-?"], &["--usage"], &["--rustfpm-version"], &["top", "-h"]] {
            let err = parse(args).expect_err(&format!("{args:?} parsed"));
            assert!(matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion), "{args:?}: {err}");
        }
    }

    #[test]
    fn subcommands_take_their_own_flags() {
        let Ok(Parsed::Command(Command::Ping(ping))) = parse(&["ping", "--tcp", "127.0.0.1:9000"]) else { panic!() };
        assert_eq!(
            (ping.target.get().map(|t| t.to_string()), ping.path.as_str()),
            (Some("127.0.0.1:9000".into()), "/ping")
        );
        let Ok(Parsed::Command(Command::Top(top))) = parse(&["top", "-y", "/f.conf", "--once"]) else { panic!() };
        assert!(top.once && matches!(top.config.source().map(|s| s.format), Some(Format::Fpm { .. })));
        let Ok(Parsed::Command(Command::Convert(c))) = parse(&["convert", "/f.conf", "-d", "x=1"]) else { panic!() };
        assert_eq!(c.source().defines, [("x".to_string(), "1".to_string())]);
    }
}
