//! The command line, run as the real binary.
//!
//! php-fpm's flags in each of their forms (`-tt` and `-t -t`, `-dKEY=VALUE` and
//! `-d KEY=VALUE`, `-yFILE` and `--fpm-config=FILE`, the last of `-D`/`-F`), an
//! unknown option answered as php-fpm answers it (its usage, exit 64), the
//! subcommands' mistakes, the generated man pages (read by `man -l`) and bash
//! completion (loaded by bash).
//!
//! Daemonizing as php-fpm: `-D` / `daemonize` return once the daemon is ready
//! (or with the failure's exit code), the pid file names the daemon, signals
//! stop it and its children; `-F` wins over `daemonize = true`.
//!
//! The test process makes itself a child subreaper, so that a daemon whose
//! original process exited becomes its child and can be reaped here.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A daemonized rustfpm, found through its pid file; stopped and reaped on drop.
struct Daemon {
    pid: i32,
    reaped: bool,
}

impl Daemon {
    fn from_pid_file(path: &Path) -> Daemon {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("pid file {}: {e}", path.display()));
        let pid = text.trim().parse().unwrap_or_else(|_| panic!("pid file holds {text:?}"));
        Daemon { pid, reaped: false }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the daemon this test started.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// Waits for the daemon to exit and reaps it; its exit code.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut code = None;
        wait_until(timeout, || {
            let mut status = 0;
            // SAFETY: waitpid on our (adopted) child, without blocking.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if rc == self.pid {
                code = Some(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 });
            }
            code.is_some()
        });
        self.reaped |= code.is_some();
        code
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                self.signal(libc::SIGKILL);
                self.wait_exit(Duration::from_secs(5));
            }
        }
    }
}

fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
}

/// A TOML config for `site` with a pid file and a log file; `global` adds lines to `[global]`.
fn toml_config(site: &Site, global: &str) -> PathBuf {
    let opts = PoolOptions {
        children: 2,
        error_log: Some(site.path().join("rustfpm.log").display().to_string()),
        log_level: "notice",
        global: format!("pid = \"{}\"\n{global}", pid_file(site).display()),
        ..Default::default()
    };
    Rustfpm::write_config(site, &opts).0
}

fn pid_file(site: &Site) -> PathBuf {
    site.path().join("rustfpm.pid")
}

/// Runs rustfpm with `args` and waits for the command (not the daemon) to return.
fn run(args: &[&str]) -> Output {
    become_subreaper();
    Command::new(env!("CARGO_BIN_EXE_rustfpm")).args(args).stdin(Stdio::null()).output().expect("run rustfpm")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts a daemon with `args`; asserts the command returned 0 once ready.
fn start_daemon(site: &Site, args: &[&str]) -> Daemon {
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "rustfpm {args:?} failed:\n{}", stderr(&out));
    let log = std::fs::read_to_string(site.path().join("rustfpm.log")).unwrap_or_default();
    assert!(log.contains("ready to handle connections"), "returned before ready:\n{log}");
    Daemon::from_pid_file(&pid_file(site))
}

fn link(pid: i32, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/{name}")).map(|p| p.display().to_string()).unwrap_or_default()
}

/// The session id of `pid` (field 6 of /proc/PID/stat).
fn session(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 1..].split_whitespace().nth(3)?.parse().ok()
}

/// True while `pid` runs; a zombie re-parented to this test is reaped.
fn alive(pid: i32) -> bool {
    // SAFETY: waitpid without blocking; it fails harmlessly for a pid that is not our child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    matches!(proc_stat(pid), Some((_, state, _)) if state != 'Z' && state != 'X')
}

/// Daemonizes, serves through nginx, and stops on `sig` leaving no php-cgi behind.
fn daemon_serves_and_stops_on(sig: i32) {
    let site = Site::new();
    let config = toml_config(&site, "");
    let config = config.to_str().unwrap();
    let mut daemon = start_daemon(&site, &["--config", config, "-D"]);
    let pid = daemon.pid;
    assert_eq!(proc_stat(pid).map(|s| s.0), Some("rustfpm".to_string()), "the pid file names no rustfpm");
    assert_eq!(session(pid), Some(pid), "the daemon leads its own session");
    assert_eq!(link(pid, "cwd"), "/");
    for fd in ["fd/0", "fd/1", "fd/2"] {
        assert_eq!(link(pid, fd), "/dev/null", "{fd}");
    }

    let nginx = Nginx::start_upstream(&site, &format!("unix:{}", site.path().join("rustfpm.sock").display()));
    let r = get(&nginx.url("/pm_stderr.php?m=x"));
    assert_eq!(r.status, 200, "{}", r.text());
    let family = descendants(pid);
    assert!(family.iter().any(|p| is_live_php(*p)), "no php-cgi under the daemon");

    daemon.signal(sig);
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0), "the daemon did not stop cleanly");
    let left = || family.iter().copied().filter(|p| alive(*p)).collect::<Vec<_>>();
    assert!(wait_until(Duration::from_secs(5), || left().is_empty()), "processes left behind: {:?}", left());
    assert!(!pid_file(&site).exists(), "the pid file outlived the daemon");
}

#[test]
fn daemon_serves_and_sigterm_stops_it_and_its_children() {
    daemon_serves_and_stops_on(libc::SIGTERM);
}

#[test]
fn daemon_serves_and_sigquit_stops_it_and_its_children() {
    daemon_serves_and_stops_on(libc::SIGQUIT);
}

#[test]
fn a_config_error_with_dash_d_is_printed_and_exits_78() {
    let site = Site::new();
    let config = toml_config(&site, "log_limit = 5");
    let out = run(&["--config", config.to_str().unwrap(), "-D"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("log_limit = \"5\": must be between 512"), "{}", stderr(&out));
    assert!(!pid_file(&site).exists());
}

#[test]
fn a_start_up_failure_after_the_fork_is_printed_with_its_exit_code() {
    let site = Site::new();
    let config = toml_config(&site, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let bad = site.path().join("missing-dir/rustfpm.sock");
    std::fs::write(
        &config,
        text.replace(&site.path().join("rustfpm.sock").display().to_string(), bad.to_str().unwrap()),
    )
    .unwrap();
    let out = run(&["--config", config.to_str().unwrap(), "-D"]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot listen on"), "the daemon's error was not shown:\n{}", stderr(&out));
    assert!(stderr(&out).contains("FPM initialization failed"), "{}", stderr(&out));
}

#[test]
fn daemonize_true_in_the_config_daemonizes() {
    let site = Site::new();
    let config = toml_config(&site, "daemonize = true");
    let daemon = start_daemon(&site, &["--config", config.to_str().unwrap()]);
    assert_eq!(session(daemon.pid), Some(daemon.pid));
}

#[test]
fn dash_f_wins_over_daemonize_true() {
    let site = Site::new();
    let config = toml_config(&site, "daemonize = true");
    become_subreaper();
    let args = ["--config", config.to_str().unwrap(), "-F"];
    let mut fpm = Rustfpm::start_args(&site, &args, &config, &site.path().join("rustfpm.sock"));
    assert!(fpm.wait_exit(Duration::from_millis(300)).is_none(), "rustfpm -F returned: it daemonized");
    assert_eq!(
        wait_file(&pid_file(&site), Duration::from_secs(5)).map(|t| t.trim().to_string()),
        Some(fpm.pid().to_string())
    );
}

#[test]
fn a_php_fpm_config_without_daemonize_daemonizes_as_php_fpm_does() {
    let site = Site::new();
    let conf = site.path().join("php-fpm.conf");
    let user = ini_user_line();
    let text = format!(
        "[global]\npid = {}\nerror_log = {}\n[www]\nlisten = {}\npm = static\npm.max_children = 1\n{user}",
        pid_file(&site).display(),
        site.path().join("rustfpm.log").display(),
        site.path().join("rustfpm.sock").display()
    );
    std::fs::write(&conf, text).unwrap();
    let daemon = start_daemon(&site, &["-y", conf.to_str().unwrap()]);
    assert_eq!(session(daemon.pid), Some(daemon.pid));
}

// ---- php-fpm's flags --------------------------------------------------------------

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A php-fpm config with a relative `error_log` (resolved against `-p`: `log/` is made in the
/// site and in its `one` and `two`, the prefixes the tests give) and no `pid`.
fn fpm_config(site: &Site) -> PathBuf {
    for dir in ["log", "one/log", "two/log"] {
        std::fs::create_dir_all(site.path().join(dir)).unwrap();
    }
    let user = if is_root() { "user = www-data\n" } else { "" };
    let text = format!(
        "[global]\nerror_log = log/fpm.log\n[www]\nlisten = {}\npm = static\npm.max_children = 1\n{user}",
        site.path().join("fpm.sock").display()
    );
    let path = site.path().join("php-fpm.conf");
    std::fs::write(&path, text).unwrap();
    path
}

/// `rustfpm ARGS` on the `-tt` dump: its lines without their timestamps.
fn dump(args: &[&str]) -> Vec<String> {
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "rustfpm {args:?}:\n{}", stderr(&out));
    let lines = stderr(&out).lines().map(|l| l.split_once("] ").map_or(l, |(_, rest)| rest).to_string()).collect();
    lines
}

fn has(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == line)
}

#[test]
fn tt_and_t_t_dump_the_same_and_one_t_only_checks() {
    let site = Site::new();
    let config = fpm_config(&site);
    let config = config.to_str().unwrap();
    let tt = dump(&["-tt", "-y", config]);
    assert!(has(&tt, "NOTICE: \tpm.max_children = 1"), "{tt:?}");
    assert_eq!(dump(&["-t", "-t", "-y", config]), tt);
    assert_eq!(dump(&["--test", "--test", &format!("--fpm-config={config}")]), tt);
    assert_eq!(
        dump(&["-t", &format!("-y{config}")]),
        [format!("NOTICE: configuration file {config} test is successful")]
    );
}

#[test]
fn each_form_of_the_value_flags_is_read() {
    let site = Site::new();
    let config = fpm_config(&site);
    let config = config.to_str().unwrap();
    let dir = site.path().display();
    let lines = dump(&[
        "-tt",
        "-y",
        config,
        "-dmemory_limit=77M",
        "-d",
        "max_input_vars = 12",
        "--define=display_errors",
        "--define",
        "short_open_tag=0",
        "-p",
        &format!("{dir}/one"),
        &format!("--prefix={dir}/two"),
        "-g",
        "first.pid",
        &format!("--pid={dir}/fpm.pid"),
    ]);
    for want in [
        "NOTICE: \tphp_value[memory_limit] = 77M".to_string(),
        "NOTICE: \tphp_value[max_input_vars] = 12".into(),
        "NOTICE: \tphp_value[display_errors] = 1".into(),
        "NOTICE: \tphp_value[short_open_tag] = 0".into(),
        format!("NOTICE: \terror_log = {dir}/two/log/fpm.log"),
        format!("NOTICE: \tpid = {dir}/fpm.pid"),
    ] {
        assert!(has(&lines, &want), "no '{want}' in {lines:#?}");
    }
    // A relative -g is taken from the working directory, as php-fpm's.
    let cwd = std::env::current_dir().unwrap();
    let lines = dump(&["-tt", "-y", config, "-g", "run/x.pid"]);
    assert!(has(&lines, &format!("NOTICE: \tpid = {}", cwd.join("run/x.pid").display())), "{lines:#?}");
    // The configuration's `pid` wins over -g, as php-fpm reads -g first and its file after.
    let text =
        std::fs::read_to_string(config).unwrap().replace("[global]\n", &format!("[global]\npid = {dir}/conf.pid\n"));
    std::fs::write(config, text).unwrap();
    let lines = dump(&["-tt", "-y", config, "-g", "run/x.pid"]);
    assert!(has(&lines, &format!("NOTICE: \tpid = {dir}/conf.pid")), "{lines:#?}");
}

#[test]
fn the_last_of_dash_capital_d_and_dash_capital_f_wins() {
    let site = Site::new();
    let config = fpm_config(&site);
    let config = config.to_str().unwrap();
    for (args, want) in [
        (&[][..], "yes"),
        (&["-F"][..], "no"),
        (&["-D"][..], "yes"),
        (&["-D", "-F"][..], "no"),
        (&["-F", "--daemonize"][..], "yes"),
        (&["--nodaemonize", "-O", "-R"][..], "no"),
        (&["-FOR"][..], "no"),
    ] {
        let lines = dump(&[&["-tt", "-y", config][..], args].concat());
        assert!(has(&lines, &format!("NOTICE: \tdaemonize = {want}")), "{args:?}: {lines:#?}");
    }
}

/// phpinfo (PHP's text layout, as php-fpm prints it) for `args`: the (local) value of `key`.
fn phpinfo_value(args: &[&str], key: &str) -> String {
    let out = run(&[args, &["-i"]].concat());
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let text = stdout(&out);
    let row = text.lines().find_map(|l| l.strip_prefix(&format!("{key} => ")));
    let row = row.unwrap_or_else(|| panic!("no {key} in {text}"));
    row.split(" => ").next().unwrap_or_default().to_string()
}

#[test]
fn php_ini_no_php_ini_and_defines_reach_php() {
    let site = Site::new();
    let ini = site.path().join("custom.ini");
    std::fs::write(&ini, "memory_limit = 33M\n").unwrap();
    let ini = ini.to_str().unwrap();
    assert_eq!(phpinfo_value(&["-c", ini], "Loaded Configuration File"), ini);
    assert_eq!(phpinfo_value(&[&format!("--php-ini={ini}")], "memory_limit"), "33M");
    assert_eq!(phpinfo_value(&["-n", "-c", ini], "Loaded Configuration File"), "(none)");
    assert_eq!(phpinfo_value(&["--no-php-ini", "-dmemory_limit=77M"], "memory_limit"), "77M");
    assert_eq!(phpinfo_value(&["-n", "--define", "memory_limit=78M"], "memory_limit"), "78M");
    let out = run(&["-e", "-n", "-v"]);
    assert!(out.status.success() && stdout(&out).starts_with("PHP "), "{}", stderr(&out));
}

#[test]
fn a_root_pool_needs_dash_capital_r() {
    require_root("pools run as root only with -R");
    let site = Site::new();
    let conf = site.path().join("php-fpm.conf");
    let sock = site.path().join("fpm.sock");
    let text = format!(
        "[global]\nerror_log = {}\n[www]\nlisten = {}\npm = static\npm.max_children = 1\nping.path = /ping\n",
        site.path().join("fpm.log").display(),
        sock.display()
    );
    std::fs::write(&conf, text).unwrap();
    let out = run(&["-F", "-O", "-y", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("please specify user and group other than root"), "{}", stderr(&out));
    // php-fpm's order: the failure, then no farewell (rustfpm said "exiting, bye-bye!" first).
    assert!(!stderr(&out).contains("bye-bye"), "{}", stderr(&out));

    for flag in ["-R", "--allow-to-run-as-root"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rustfpm"));
        cmd.args([flag, "-F", "-O", "-y"]).arg(&conf);
        let fpm = Rustfpm::spawn(&site, cmd, &conf, &sock);
        let ready = wait_until(Duration::from_secs(10), || fpm.log_text().contains("ready to handle connections"));
        assert!(ready, "{flag}: {}", fpm.log_text());
        let ping = run(&["ping", "--socket", sock.to_str().unwrap()]);
        assert_eq!(ping.status.code(), Some(0), "{flag}: {}{}", stdout(&ping), stderr(&ping));
        assert!(stdout(&ping).starts_with("OK: unix:"), "{}", stdout(&ping));
    }
}

#[test]
fn help_forms_print_the_generated_usage_and_exit_0() {
    for flag in ["-h", "--help", "-?", "--usage"] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", stderr(&out));
        let help = stdout(&out);
        assert!(help.starts_with("Usage: rustfpm [OPTIONS]"), "{flag}: {help}");
        for line in ["  -y, --fpm-config <FILE>", "  -t, --test", "  top ", "  ping ", "  convert "] {
            assert!(help.contains(line), "{flag}: no '{line}' in {help}");
        }
        assert!(!help.contains("generate"), "the hidden subcommand is not shown: {help}");
        assert_eq!(stderr(&out), "");
    }
    let out = run(&["--rustfpm-version"]);
    assert_eq!((out.status.code(), stdout(&out)), (Some(0), format!("rustfpm {}\n", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn a_mistake_prints_the_usage_and_exits_64_as_php_fpm() {
    for (args, reason) in [
        (&["--memory-limit=1G"][..], "unexpected argument '--memory-limit=1G'"),
        (&["-x"], "unexpected argument '-x'"),
        (&["-y"], "a value is required for '--fpm-config <FILE>'"),
        (&["-y", "/etc/php-fpm.conf", "extra"], "subcommand 'extra'"),
        (&["-n", "-t"], "--config FILE or -y/--fpm-config FILE is required"),
        (&[], "--config FILE or -y/--fpm-config FILE is required"),
        (
            &["-y", "/etc/php-fpm.conf", "ping", "--socket", "/s"],
            "the subcommand 'ping' cannot be used with '--fpm-config <FILE>'",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).starts_with("Usage: rustfpm [OPTIONS]"), "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains(reason), "{args:?}: no '{reason}' in {}", stderr(&out));
    }
    // php-fpm itself: the same exit code and its usage first on stdout.
    let php_fpm = "/usr/sbin/php-fpm8.2";
    require_file(php_fpm, "php8.2-fpm");
    for args in [&["--memory-limit=1G"][..], &["-x"], &["-y"], &["-y", "/etc/php-fpm.conf", "extra"]] {
        let out = Command::new(php_fpm).args(args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "php-fpm {args:?}");
        assert!(stdout(&out).starts_with("Usage: "), "php-fpm {args:?}: {}", stdout(&out));
    }
}

#[test]
fn subcommand_mistakes_name_the_subcommand_with_its_usage() {
    let site = Site::new();
    for (args, usage, reason) in [
        (&["convert"][..], "Usage: rustfpm convert", "required arguments were not provided"),
        (&["convert", "/f.conf", "--bogus"], "Usage: rustfpm convert", "unexpected argument '--bogus'"),
        (&["ping", "--socket", "/s", "--tcp", "127.0.0.1:9000"], "Usage: rustfpm ping", "cannot be used with"),
        (&["ping", "--tcp", "127.0.0.1"], "Usage: rustfpm ping", "invalid value '127.0.0.1'"),
        (&["top", "--once"], "Usage: rustfpm top (--config <FILE> | -y <FILE>", "is required"),
        (&["top", "--config"], "Usage: rustfpm top", "a value is required for '--config <FILE>'"),
        (&["generate"], "Usage: rustfpm generate <DIR>", "required arguments were not provided"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with(&format!("rustfpm {}: ", args[0])), "{args:?}: {err}");
        assert!(err.contains(usage) && err.contains(reason), "{args:?}: no '{usage}' or '{reason}' in {err}");
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    let missing = site.path().join("missing.conf");
    let out = run(&["convert", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.conf"), "{}", stderr(&out));
    let out = run(&["ping", "--help"]);
    assert!(out.status.success() && stdout(&out).contains("--socket <PATH>"), "{}", stdout(&out));
}

/// `rustfpm generate DIR` into a fresh directory.
fn generated(site: &Site) -> PathBuf {
    let dir = site.path().join("generated");
    let out = run(&["generate", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

#[test]
fn man_renders_the_generated_pages() {
    require_file("/usr/bin/man", "man-db");
    let site = Site::new();
    let man1 = generated(&site).join("man1");
    for (page, wants) in [
        (
            "rustfpm.1",
            &["rustfpm - A FastCGI process manager for PHP", "-y, --fpm-config", "-t, --test", "rustfpm-ping(1)"][..],
        ),
        ("rustfpm-convert.1", &["rustfpm-convert - Print a php-fpm configuration as rustfpm TOML", "-p, --prefix"]),
        ("rustfpm-ping.1", &["--socket", "--tcp", "[default: /ping]"]),
        ("rustfpm-top.1", &["--once", "-y, --fpm-config"]),
    ] {
        let out = Command::new("man").args(["--warnings", "-l"]).arg(man1.join(page)).env("MANWIDTH", "200").output();
        let out = out.expect("run man");
        assert!(out.status.success(), "man -l {page}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "man -l {page} warned");
        let text = stdout(&out);
        for want in wants {
            assert!(text.contains(want), "{page}: no '{want}' in\n{text}");
        }
    }
    assert!(!man1.join("rustfpm-generate.1").exists(), "the hidden subcommand has no page");
}

#[test]
fn bash_loads_the_completion_and_it_completes() {
    let site = Site::new();
    let dir = generated(&site);
    let script = dir.join("bash/rustfpm");
    let complete = |line: &str| {
        // What bash does on TAB: the words so far, the function called as complete -p says.
        let words = line.split(' ').collect::<Vec<_>>();
        let program = format!(
            "source '{}' && complete -p rustfpm && COMP_WORDS=({}) && COMP_CWORD={} && COMP_LINE='{line}' && \
             _rustfpm rustfpm '{}' '{}' && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            words.join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = Command::new("bash").args(["--noprofile", "--norc", "-c", &program]).output().expect("run bash");
        assert!(out.status.success(), "{line}: {}", stderr(&out));
        stdout(&out)
    };
    let out = complete("rustfpm --fpm");
    assert!(out.lines().next().is_some_and(|l| l.contains("-F _rustfpm") && l.ends_with(" rustfpm")), "{out}");
    assert!(out.lines().any(|l| l == "--fpm-config"), "{out}");
    let out = complete("rustfpm ping --so");
    assert!(out.lines().any(|l| l == "--socket"), "{out}");
    let out = complete("rustfpm t");
    assert!(out.lines().any(|l| l == "top"), "{out}");
    // zsh's and fish's are generated beside it (neither shell is needed here).
    let zsh = std::fs::read_to_string(dir.join("zsh/_rustfpm")).unwrap();
    assert!(zsh.starts_with("#compdef rustfpm") && zsh.contains("--fpm-config"), "{zsh}");
    let fish = std::fs::read_to_string(dir.join("fish/rustfpm.fish")).unwrap();
    assert!(fish.contains("complete -c rustfpm") && fish.contains("-l fpm-config"), "{fish}");
}

#[test]
fn the_demo_script_installs_them_where_debian_looks() {
    let site = Site::new();
    let root = site.path().join("root");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh");
    let out = Command::new(script)
        .env("DESTDIR", &root)
        .env("INSTALL_ONLY", "1")
        .env("RUSTFPM_BIN", env!("CARGO_BIN_EXE_rustfpm"))
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/demo.sh");
    assert!(out.status.success(), "{}", stderr(&out));
    let bash = root.join("usr/share/bash-completion/completions/rustfpm");
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &format!("source '{}' && complete -p rustfpm", bash.display())])
        .output()
        .expect("run bash");
    assert!(out.status.success() && stdout(&out).contains("-F _rustfpm"), "{}{}", stdout(&out), stderr(&out));
    for file in ["usr/share/zsh/vendor-completions/_rustfpm", "usr/share/fish/vendor_completions.d/rustfpm.fish"] {
        assert!(root.join(file).is_file(), "{file} not installed");
    }
    for page in ["rustfpm", "rustfpm-convert", "rustfpm-ping", "rustfpm-top"] {
        let path = root.join(format!("usr/share/man/man1/{page}.1.gz"));
        let out = Command::new("man").args(["--warnings", "-l"]).arg(&path).env("MANWIDTH", "200").output();
        let out = out.expect("run man");
        assert!(
            out.status.success() && stdout(&out).contains(&format!("{page} - ")),
            "{}: {}",
            path.display(),
            stderr(&out)
        );
    }
}

/// `-t` fails, as php-fpm's does, on a log in a directory that does not exist (the start
/// would fail to open it): it passed, and the start then failed.
#[test]
fn the_test_fails_on_a_log_whose_directory_does_not_exist() {
    let site = Site::new();
    let config = toml_config(&site, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let log = site.path().join("rustfpm.log").display().to_string();
    let missing = site.path().join("missing-dir/rustfpm.log").display().to_string();
    std::fs::write(&config, text.replace(&log, &missing)).unwrap();
    let out = run(&["-t", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("failed to open error_log ({missing})")), "{}", stderr(&out));
    let slowlog =
        format!("slowlog = \"{}/nowhere/slow.log\"\nrequest_slowlog_timeout = \"5s\"\n", site.path().display());
    std::fs::write(&config, text.replace("[pool.www]\n", &format!("[pool.www]\n{slowlog}"))).unwrap();
    let out = run(&["-t", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("failed to open [pool www] slowlog"), "{}", stderr(&out));
    // The start says the same: it said only the directory ("ALERT: DIR: ENOENT: ...").
    std::fs::write(&config, text.replace(&log, &missing)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rustfpm"))
        .args(["--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("failed to open error_log ({missing})")), "{}", stderr(&out));
}
