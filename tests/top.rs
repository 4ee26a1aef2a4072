//! `rustfpm top` in a real terminal: tmux runs it against a real rustfpm
//! whose pool has a status page and a child busy in a request; the screen
//! (`tmux capture-pane -p`) shows the pool, that child's pid, its script and
//! URI, and a pool without a status page says so; `q` and Ctrl-C end it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A tmux server of the test's own (its socket in the site), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts `command` in a detached 200x50 session named `top`; the pane
    /// stays (dead) when the command exits, so its exit can be seen.
    fn start(dir: &Path, name: &str, command: &str) -> Tmux {
        require_file("/usr/bin/tmux", "tmux");
        let tmux = Tmux { socket: dir.join(format!("tmux-{name}.sock")) };
        let out = tmux.run(&["new-session", "-d", "-s", "top", "-x", "200", "-y", "50", command]);
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        tmux.run(&["set-option", "-t", "top", "remain-on-exit", "on"]);
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").arg("-S").arg(&self.socket).args(args).output().expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Once the pane's process has exited: its exit status, or `signal N`.
    fn dead(&self) -> Option<String> {
        let format = "#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}";
        let out = self.run(&["display-message", "-p", "-t", "top", format]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match text.split(':').collect::<Vec<_>>()[..] {
            // tmux may mark the pane dead a moment before it has the status.
            ["1", "", ""] => None,
            ["1", "", signal] => Some(format!("signal {signal}")),
            ["1", status, _] => Some(status.to_string()),
            _ => None,
        }
    }

    /// The pane's process has exited (its status may not be known yet).
    fn pane_dead(&self) -> bool {
        let out = self.run(&["display-message", "-p", "-t", "top", "#{pane_dead}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    /// Waits until the screen shows `pool www` (drawn in raw mode, so keys are keys).
    fn wait_drawn(&self) -> String {
        let mut screen = String::new();
        let drawn = wait_until(Duration::from_secs(15), || {
            screen = self.screen();
            screen.contains("pool www")
        });
        assert!(drawn, "top drew nothing: {:?}\n{screen}", self.dead());
        screen
    }

    /// Sends `key`, waits until top has ended, and returns its exit status if tmux
    /// reports it (on a loaded machine tmux may mark the pane dead without one).
    fn quit_with(&self, key: &str) -> Option<String> {
        self.run(&["send-keys", "-t", "top", key]);
        let ended = wait_until(Duration::from_secs(15), || self.pane_dead());
        assert!(ended, "{key} did not end top; the screen:\n{}", self.screen());
        let mut status = None;
        wait_until(Duration::from_secs(1), || {
            status = self.dead();
            status.is_some()
        });
        status
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn top_shows_the_busy_child_and_quits_on_q_and_ctrl_c() {
    let site = Site::new();
    let scratch = site.scratch();
    // Busy until the test lets it go: writes its pid, then waits for `release`.
    site.script(
        "busy.php",
        &format!(
            "<?php file_put_contents('{0}/pid', getmypid());\n\
             while (!file_exists('{0}/release')) usleep(20000);\necho 'done';\n",
            scratch.display()
        ),
    );
    let api_socket = site.path().join("api.sock");
    let opts = PoolOptions {
        children: 2,
        extra: "pm_status_path = \"/fpm-status\"\n".into(),
        tables: PoolOptions { children: 1, ..Default::default() }.pool_table("api", api_socket.display()),
        ..Default::default()
    };
    let fpm = Rustfpm::start(&site, &opts);
    let nginx = Nginx::start(&site, &fpm);
    let release = scratch.join("release");
    let busy = get_in_thread(nginx.url("/busy.php?from=top-test"));
    let pid = wait_file(&scratch.join("pid"), Duration::from_secs(10)).expect("busy.php did not start");

    let command = format!("{} top --config {}", env!("CARGO_BIN_EXE_rustfpm"), fpm.config.display());
    let tmux = Tmux::start(site.path(), "q", &command);
    let mut screen = String::new();
    let shown = wait_until(Duration::from_secs(15), || {
        screen = tmux.screen();
        let row = screen.lines().find(|l| l.starts_with("www ") && l.split_whitespace().nth(1) == Some(pid.trim()));
        let pool = screen.lines().find(|l| l.starts_with("pool www: "));
        pool.is_some_and(|l| l.ends_with(&format!(" | unix:{}", fpm.socket.display())))
            && row.is_some_and(|r| r.contains("busy.php") && r.contains("GET /busy.php?from=top-test"))
            // A second reading gives req/s: the screen refreshes.
            && pool.is_some_and(|l| l.contains("req/s ") && !l.contains("req/s -"))
    });
    assert!(shown, "the busy child {pid} is not on the screen:\n{screen}");
    assert!(screen.contains("pool api: no pm_status_path"), "{screen}");
    assert!(tmux.dead().is_none(), "top exited on its own:\n{screen}");
    if let Ok(path) = std::env::var("TOP_CAPTURE") {
        std::fs::write(path, &screen).unwrap();
    }

    let status = tmux.quit_with("q");
    assert!(status.as_deref().is_none_or(|s| s == "0"), "top's exit status after q: {status:?}");

    // Ctrl-C too (raw mode makes it a key, not a signal: top exits 0), in a fresh terminal.
    drop(tmux);
    let tmux = Tmux::start(site.path(), "ctrl-c", &command);
    tmux.wait_drawn();
    let status = tmux.quit_with("C-c");
    assert!(status.as_deref().is_none_or(|s| s == "0"), "top's exit status after Ctrl-C: {status:?}");

    // --once: the same screen as plain text, without a terminal.
    let once =
        Command::new(env!("CARGO_BIN_EXE_rustfpm")).args(["top", "--once", "--config"]).arg(&fpm.config).output();
    let once = once.expect("run rustfpm top --once");
    let text = String::from_utf8_lossy(&once.stdout);
    assert!(once.status.success() && text.contains("GET /busy.php?from=top-test"), "{once:?}");

    std::fs::write(&release, "").unwrap();
    let answer = busy.join().unwrap().expect("busy.php answered");
    assert_eq!((answer.status, answer.text()), (200, "done".to_string()));
}

/// Killed (SIGTERM, as `kill` or a closing session sends it), top leaves the
/// terminal as it found it, as `q` does: not raw, echo on, off the alternate screen.
#[test]
fn a_killed_top_leaves_the_terminal_as_it_was() {
    let site = Site::new();
    let fpm = Rustfpm::start(
        &site,
        &PoolOptions { extra: "pm_status_path = \"/fpm-status\"\n".into(), ..Default::default() },
    );
    let (pid_file, stty_file) = (site.path().join("top.pid"), site.path().join("stty.txt"));
    // The shell stays after top to say how it left the terminal.
    let command = format!(
        "sh -c 'echo $$ > {pid}; exec sh -c \"{bin} top --config {config}; stty -a > {stty}; sleep 60\"'",
        pid = pid_file.display(),
        bin = env!("CARGO_BIN_EXE_rustfpm"),
        config = fpm.config.display(),
        stty = stty_file.display(),
    );
    let tmux = Tmux::start(site.path(), "term", &command);
    tmux.wait_drawn();
    let shell: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let top = wait_until(Duration::from_secs(5), || !descendants(shell).is_empty());
    assert!(top, "no top process under the pane's shell");
    for pid in descendants(shell) {
        // SAFETY: kill(2) on the top process this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let recorded = wait_file(&stty_file, Duration::from_secs(10)).expect("the shell did not go on after top");
    let flags: Vec<&str> = recorded.split_whitespace().collect();
    for flag in ["icanon", "echo", "opost"] {
        assert!(flags.contains(&flag), "the terminal was left with -{flag}:\n{recorded}");
    }
    let out = tmux.run(&["display-message", "-p", "-t", "top", "#{alternate_on}"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "left on the alternate screen");
}

#[test]
fn usage_mistakes_exit_64_and_a_bad_config_78() {
    let site = Site::new();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_rustfpm")).arg("top").args(args).output().unwrap();
    for args in [&[][..], &["--config"][..], &["--bogus"][..]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: rustfpm top"), "{args:?}: {out:?}");
    }
    let missing = site.path().join("missing.toml");
    let out = run(&["--config", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"), "{out:?}");
}
