//! Attacks on rustfpm running as root that must fail (issue 8): a pool's user, who owns a
//! directory rustfpm writes into (as `www-data` owns Debian's `/run/php`), plants symlinks
//! and hard links where rustfpm's pid file, logs and sockets go, before start and before a
//! SIGUSR1 reopen. The attacker is the real unprivileged user `nobody`; the tests need root
//! (CI runs them as root) and fail loudly without it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(10);
/// `nobody` / `nogroup` on Debian: the attacker.
const ATTACKER: u32 = 65534;
/// What the canary holds; it must never change.
const CANARY: &str = "canary\n";

/// A site with `run/`, a directory owned by the attacker, and `canary`, a file of root's
/// (mode 0600) that rustfpm must never write, chown or chmod.
struct Lab {
    site: Site,
}

impl Lab {
    fn new() -> Lab {
        require_root(&format!("it plays an attacker (uid {ATTACKER}) against rustfpm running as root"));
        let site = Site::new();
        let run = site.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::os::unix::fs::chown(&run, Some(ATTACKER), Some(ATTACKER)).unwrap();
        let canary = site.path().join("canary");
        std::fs::write(&canary, CANARY).unwrap();
        std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o600)).unwrap();
        Lab { site }
    }

    fn run(&self, name: &str) -> PathBuf {
        self.site.path().join("run").join(name)
    }

    fn canary(&self) -> PathBuf {
        self.site.path().join("canary")
    }

    /// Runs a command as the attacker.
    fn as_attacker(&self, program: &str, args: &[&Path]) {
        let status = Command::new(program).args(args).uid(ATTACKER).gid(ATTACKER).status().unwrap();
        assert!(status.success(), "{program} {args:?} as uid {ATTACKER}: {status}");
    }

    /// As the attacker: `run/NAME` becomes a symlink to `target`.
    fn plant_symlink(&self, name: &str, target: &Path) {
        self.as_attacker("ln", &[Path::new("-sfn"), target, &self.run(name)]);
    }

    /// As the attacker: rustfpm's `run/NAME` is moved away and replaced by a symlink to the canary.
    fn swap_for_symlink(&self, name: &str) {
        self.as_attacker("mv", &[&self.run(name), &self.run(&format!("{name}.1"))]);
        self.plant_symlink(name, &self.canary());
    }

    fn assert_canary_intact(&self) {
        let meta = std::fs::metadata(self.canary()).unwrap();
        assert_eq!(std::fs::read_to_string(self.canary()).unwrap(), CANARY, "root wrote through the attacker's link");
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o600), "the canary's owner or mode changed");
    }

    /// A config with `global` lines and `pool` lines (`{run}` stands for the attacker's
    /// directory); the pool runs as www-data.
    fn config(&self, global: &str, pool: &str) -> PathBuf {
        self.config_at(&self.socket(), global, pool)
    }

    /// [`Lab::config`] with the pool listening on `listen`.
    fn config_at(&self, listen: &Path, global: &str, pool: &str) -> PathBuf {
        let opts = PoolOptions {
            children: 1,
            user: Some("www-data"),
            error_log: None,
            global: global.into(),
            extra: pool.into(),
            ..Default::default()
        };
        let text = opts.config_text(listen.display());
        self.site.write_config(&text.replace("{run}", &self.site.path().join("run").display().to_string()))
    }

    fn socket(&self) -> PathBuf {
        self.site.path().join("rustfpm.sock")
    }

    /// Starts rustfpm on `config`, its log also on stderr (`-O`): with an `error_log` file,
    /// "ready to handle connections" is written only there otherwise, as php-fpm's.
    fn start(&self, config: &Path) -> Rustfpm {
        Rustfpm::start_command(&self.site, config, Some(self.socket()), |command| {
            command.arg("-O");
        })
    }

    /// Starts rustfpm on `config`, expecting it to refuse: returns what it said.
    fn start_refused(&self, config: &Path) -> String {
        let log = self.site.path().join("refused.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_rustfpm"))
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut status = None;
        wait_until(WAIT, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rustfpm started although it should have refused:\n{text}");
        }
        assert!(status.is_some_and(|s| !s.success()), "rustfpm exited successfully:\n{text}");
        text
    }
}

/// The refusal names the path and the owner of what was planted.
fn assert_names(said: &str, path: &Path, owner: &str) {
    assert!(said.contains(&path.display().to_string()) && said.contains(owner), "{said}");
}

#[test]
fn pid_file_symlink_is_not_followed() {
    let lab = Lab::new();
    lab.plant_symlink("rf.pid", &lab.canary());
    let pid_file = lab.run("rf.pid");
    let fpm = lab.start(&lab.config(&format!("pid = \"{}\"", pid_file.display()), ""));
    lab.assert_canary_intact();
    let meta = std::fs::symlink_metadata(&pid_file).unwrap();
    assert!(meta.is_file() && meta.uid() == 0, "the link was replaced by root's own pid file: {meta:?}");
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), format!("{}\n", fpm.pid()));
    drop(fpm);
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    lab.assert_canary_intact();
}

#[test]
fn pid_file_replaced_by_the_attacker_is_left_alone_at_exit() {
    let lab = Lab::new();
    let pid_file = lab.run("rf.pid");
    let fpm = lab.start(&lab.config(&format!("pid = \"{}\"", pid_file.display()), ""));
    lab.swap_for_symlink("rf.pid");
    drop(fpm);
    lab.assert_canary_intact();
    assert!(std::fs::symlink_metadata(&pid_file).unwrap().is_symlink(), "rustfpm removes only its own pid file");
}

#[test]
fn error_log_symlink_is_refused_at_start() {
    let lab = Lab::new();
    lab.plant_symlink("error.log", &lab.canary());
    let said = lab.start_refused(&lab.config(&format!("error_log = \"{}\"", lab.run("error.log").display()), ""));
    assert_names(&said, &lab.run("error.log"), "nobody");
    lab.assert_canary_intact();
}

#[test]
fn error_log_symlink_is_not_followed_on_reopen() {
    let lab = Lab::new();
    let log = lab.run("error.log");
    let fpm = lab.start(&lab.config(&format!("error_log = \"{}\"", log.display()), ""));
    assert_eq!(std::fs::metadata(&log).unwrap().mode() & 0o777, 0o600, "php-fpm's mode for the error log");
    lab.swap_for_symlink("error.log");
    fpm.signal(libc::SIGUSR1);
    // The refusal is written to the log rustfpm still holds, now at error.log.1.
    let moved = lab.run("error.log.1");
    let said = || std::fs::read_to_string(&moved).unwrap_or_default();
    assert!(wait_until(WAIT, || said().contains("cannot reopen the error log")), "{}", said());
    assert_names(&said(), &log, "nobody");
    lab.assert_canary_intact();
}

#[test]
fn error_log_symlink_is_not_followed_on_reload() {
    let lab = Lab::new();
    let log = lab.run("error.log");
    let fpm = lab.start(&lab.config(&format!("error_log = \"{}\"", log.display()), ""));
    lab.swap_for_symlink("error.log");
    fpm.signal(libc::SIGUSR2);
    let moved = lab.run("error.log.1");
    let said = || std::fs::read_to_string(&moved).unwrap_or_default();
    assert!(wait_until(WAIT, || said().contains("cannot open the new error_log")), "{}", said());
    assert_names(&said(), &log, "nobody");
    lab.assert_canary_intact();
}

#[test]
fn access_log_symlink_is_not_followed_on_reload() {
    let lab = Lab::new();
    let fpm = lab.start(&lab.config("error_log = \"stderr\"", "access_log = \"{run}/access.log\""));
    lab.swap_for_symlink("access.log");
    fpm.signal(libc::SIGUSR2);
    let refused = "reload failed";
    assert!(wait_until(WAIT, || fpm.log_text().contains(refused)), "{}", fpm.log_text());
    assert_names(&fpm.log_text(), &lab.run("access.log"), "nobody");
    lab.assert_canary_intact();
}

#[test]
fn error_log_hard_link_to_a_root_file_is_refused() {
    let lab = Lab::new();
    // fs.protected_hardlinks stops `nobody` from making this link; root makes it here to stand
    // for a system without that protection (or a link made before the file was root's).
    std::fs::hard_link(lab.canary(), lab.run("error.log")).unwrap();
    let said = lab.start_refused(&lab.config(&format!("error_log = \"{}\"", lab.run("error.log").display()), ""));
    assert_names(&said, &lab.run("error.log"), "2 hard links");
    lab.assert_canary_intact();
}

#[test]
fn access_log_symlink_is_refused_at_start() {
    let lab = Lab::new();
    lab.plant_symlink("access.log", &lab.canary());
    let said = lab.start_refused(&lab.config("", &format!("access_log = \"{}\"", lab.run("access.log").display())));
    assert_names(&said, &lab.run("access.log"), "nobody");
    lab.assert_canary_intact();
}

#[test]
fn slowlog_symlink_is_refused_at_start() {
    let lab = Lab::new();
    lab.plant_symlink("slow.log", &lab.canary());
    let pool = format!("slowlog = \"{}\"\nrequest_slowlog_timeout = \"1s\"", lab.run("slow.log").display());
    let said = lab.start_refused(&lab.config("", &pool));
    assert_names(&said, &lab.run("slow.log"), "nobody");
    lab.assert_canary_intact();
}

/// Starts rustfpm with `pool` lines and nginx, runs `url` once so that the log `name` is
/// written, swaps it for a symlink, sends SIGUSR1 and runs `url` again: the writer must
/// refuse the link.
fn request_log_reopen_attack(name: &str, pool: &str, url: &str) {
    let lab = Lab::new();
    lab.site.script("sleepy.php", "<?php sleep(2); echo 'slept';");
    let fpm = lab.start(&lab.config("error_log = \"stderr\"", pool));
    let nginx = Nginx::start(&lab.site, &fpm);
    assert_eq!(get(&nginx.url(url)).status, 200);
    assert!(wait_file(&lab.run(name), WAIT).is_some(), "the log {name} is written");
    assert_eq!(std::fs::metadata(lab.run(name)).unwrap().mode() & 0o777, 0o600);
    lab.swap_for_symlink(name);
    fpm.signal(libc::SIGUSR1);
    // Once the access log's writer is told (after "error log file re-opened").
    fpm.wait_logged("access log file re-opened");
    assert_eq!(get(&nginx.url(url)).status, 200);
    let refused = format!("cannot write to the log {}", lab.run(name).display());
    assert!(wait_until(WAIT, || fpm.log_text().contains(&refused)), "{}", fpm.log_text());
    assert_names(&fpm.log_text(), &lab.run(name), "nobody");
    lab.assert_canary_intact();
}

#[test]
fn access_log_symlink_is_not_followed_on_reopen() {
    request_log_reopen_attack("access.log", "access_log = \"{run}/access.log\"", "/hello.php");
}

#[test]
fn slowlog_symlink_is_not_followed_on_reopen() {
    request_log_reopen_attack(
        "slow.log",
        "slowlog = \"{run}/slow.log\"\nrequest_slowlog_timeout = \"1s\"",
        "/sleepy.php",
    );
}

#[test]
fn socket_path_symlink_is_refused() {
    let lab = Lab::new();
    let target = lab.site.path().join("planted.sock");
    lab.plant_symlink("www.sock", &target);
    let said = lab.start_refused(&lab.config_at(&lab.run("www.sock"), "", ""));
    assert_names(&said, &lab.run("www.sock"), "nobody");
    assert!(std::fs::symlink_metadata(&target).is_err(), "nothing was created through the link");
}

#[test]
fn socket_dir_symlink_is_refused() {
    let lab = Lab::new();
    let private = lab.site.path().join("root-only");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    lab.plant_symlink("sub", &private);
    let said = lab.start_refused(&lab.config_at(&lab.run("sub").join("www.sock"), "", ""));
    assert_names(&said, &lab.run("sub"), "nobody");
    assert_eq!(std::fs::read_dir(&private).unwrap().count(), 0, "nothing was bound in root's directory");
}

#[test]
fn socket_has_its_mode_and_owner_from_the_start() {
    let lab = Lab::new();
    let listen = lab.run("www.sock");
    let config = lab.config_at(&listen, "", "listen_mode = \"0660\"");
    let watch = Inotify::watch(&lab.run(""));
    let fpm = Rustfpm::start_with_config(&lab.site, &config, Some(listen.clone()));
    let meta = std::fs::symlink_metadata(&listen).unwrap();
    let www_data = nix_uid("www-data");
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o660, www_data), "{meta:?}");
    let events = watch.events();
    let arrivals: Vec<_> = events.iter().filter(|(_, name)| name == "www.sock").map(|(mask, _)| *mask).collect();
    assert!(
        !arrivals.is_empty() && arrivals.iter().all(|mask| mask & libc::IN_MOVED_TO != 0),
        "the socket must appear at its path only by a rename, with its mode and owner already set: {events:?}"
    );
    assert!(Nginx::start(&lab.site, &fpm).port > 0);
}

#[test]
fn process_dumpable_no_is_reported_as_having_no_effect() {
    let lab = Lab::new();
    let fpm = lab.start(&lab.config("error_log = \"stderr\"", "process_dumpable = false"));
    assert!(fpm.log_text().contains("process_dumpable = no has no effect"), "{}", fpm.log_text());
    // What the notice says: php-cgi's /proc files belong to its user (it is dumpable).
    let www_data = nix_uid("www-data");
    // The parent and its child, which runs the scripts (not yet forked when the parent is).
    for pid in fpm.php_pids_once_started(1) {
        let owner = std::fs::metadata(format!("/proc/{pid}")).map(|m| m.uid());
        assert!(owner.is_err() || owner.as_ref().is_ok_and(|uid| *uid == www_data), "/proc/{pid}: {owner:?}");
    }
}

fn nix_uid(name: &str) -> u32 {
    let out = Command::new("id").arg("-u").arg(name).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("no user {name}"))
}

/// inotify on one directory: what was created, moved in or changed there, by name.
struct Inotify {
    fd: std::os::fd::OwnedFd,
}

impl Inotify {
    fn watch(dir: &Path) -> Inotify {
        use std::os::fd::FromRawFd;
        // SAFETY: inotify_init1 takes flags only; the fd it returns is owned here.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just returned by inotify_init1.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let mask = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_ATTRIB;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(std::os::fd::AsRawFd::as_raw_fd(&fd), path.as_ptr(), mask) };
        assert!(wd >= 0, "inotify_add_watch {}: {}", dir.display(), std::io::Error::last_os_error());
        Inotify { fd }
    }

    /// The events so far: (mask, name).
    fn events(&self) -> Vec<(u32, String)> {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads at most buf.len() bytes into buf.
            let n =
                unsafe { libc::read(std::os::fd::AsRawFd::as_raw_fd(&self.fd), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n as usize]);
        }
        let mut events = Vec::new();
        let mut rest = bytes.as_slice();
        // struct inotify_event: wd (i32), mask (u32), cookie (u32), len (u32), name[len].
        while rest.len() >= 16 {
            let word = |at: usize| u32::from_ne_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
            let (mask, len) = (word(4), word(12) as usize);
            let Some(name) = rest.get(16..16 + len) else { break };
            let name = String::from_utf8_lossy(name).trim_end_matches('\0').to_string();
            events.push((mask, name));
            rest = &rest[16 + len..];
        }
        events
    }
}

/// A descriptor rustfpm inherited without close-on-exec (from a shell, a supervisor) never
/// reaches php-cgi, which runs the pool user's code.
#[test]
fn inherited_descriptors_do_not_reach_php_cgi() {
    let site = Site::new();
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a local array; no close-on-exec, so rustfpm inherits both ends.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let inode = std::fs::metadata(format!("/proc/self/fd/{}", fds[1])).unwrap().ino();
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 2, ..Default::default() });
    // The parent and its two children (php-cgi starts after rustfpm says it is ready).
    let mut php = Vec::new();
    let up = wait_until(WAIT, || {
        php = fpm.php_pids();
        php.len() >= 3
    });
    assert!(up, "php-cgi under rustfpm: {php:?}");
    let rustfpm_has = std::fs::read_dir(format!("/proc/{}/fd", fpm.pid())).unwrap().count();
    assert!(rustfpm_has > 3);
    for pid in php {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let leaked = target.to_string_lossy() == format!("pipe:[{inode}]");
            assert!(!leaked, "php-cgi {pid} holds rustfpm's inherited pipe as fd {:?}", fd.file_name());
        }
    }
    // SAFETY: our own descriptors from pipe(2) above.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

/// Nor do they reach the `php-cgi -i` that rustfpm runs as the pool's user at each start
/// and reload (to read the pool's settings): a wrapper in `php_cgi` lists what it got.
#[test]
fn inherited_descriptors_do_not_reach_the_settings_query() {
    let site = Site::new();
    let seen = site.path().join("seen");
    std::fs::create_dir(&seen).unwrap();
    std::fs::set_permissions(&seen, std::fs::Permissions::from_mode(0o777)).unwrap();
    let wrapper = site.path().join("php-cgi-wrapper");
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *\" -i \"*) ls -l /proc/self/fd/ > {}/fds.$$ ;; esac\nexec php-cgi \"$@\"\n",
        seen.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a local array; no close-on-exec, so rustfpm inherits both ends.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let inode = std::fs::metadata(format!("/proc/self/fd/{}", fds[1])).unwrap().ino();
    let extra = format!("php_cgi = \"{}\"\n", wrapper.display());
    let _fpm = Rustfpm::start(&site, &PoolOptions { children: 1, extra, ..Default::default() });
    let lists: Vec<String> =
        std::fs::read_dir(&seen).unwrap().flatten().map(|f| std::fs::read_to_string(f.path()).unwrap()).collect();
    assert!(!lists.is_empty(), "rustfpm ran no php-cgi -i through the wrapper");
    for list in lists {
        assert!(!list.contains(&format!("pipe:[{inode}]")), "php-cgi -i got rustfpm's inherited pipe:\n{list}");
    }
    // SAFETY: our own descriptors from pipe(2) above.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

/// php-cgi, unlike php-fpm, looks for its php.ini in its working directory (the pool's
/// `chdir`) when given none: a pool user who can write there would replace the system's
/// php.ini (`disable_functions` gone, an `extension=` of theirs loaded). rustfpm always
/// tells php-cgi where its php.ini is.
#[test]
fn a_php_ini_in_the_pool_working_directory_is_not_read() {
    let lab = Lab::new();
    std::fs::write(lab.run("php.ini"), "memory_limit = 7M\n").unwrap();
    std::fs::write(lab.run("php-cgi-fcgi.ini"), "memory_limit = 9M\n").unwrap();
    let fpm = lab.start(&lab.config("", "chdir = \"{run}\""));
    let nginx = Nginx::start(&lab.site, &fpm);
    let r = get(&nginx.url("/http_ini.php"));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), fpm.log_text());
    let text = r.text();
    assert!(text.contains("memory_limit='"), "{text}");
    assert!(!text.contains("'7M'") && !text.contains("'9M'"), "php-cgi read the php.ini planted in its chdir: {text}");
}

/// The chroot's path runs through a directory the pool's user can write: they swap the jail
/// for a link to `/` and kill their php-cgi parent, which rustfpm restarts. rustfpm refuses
/// a chroot whose way the pool's user can change: php-cgi does not start, the log says why,
/// and nothing runs outside the jail.
#[test]
fn a_chroot_the_pool_user_can_swap_is_refused() {
    let lab = Lab::new();
    let theirs = lab.site.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::symlink("/", theirs.join("jail")).unwrap();
    let www_data = nix_uid("www-data");
    std::os::unix::fs::lchown(theirs.join("jail"), Some(www_data), Some(www_data)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(www_data), Some(www_data)).unwrap();
    let fpm = lab.start(&lab.config("", &format!("chroot = \"{}/jail\"", theirs.display())));
    let said = wait_until(WAIT, || fpm.log_text().contains("can change"));
    assert!(said, "no line refuses the chroot:\n{}", fpm.log_text());
    assert!(fpm.log_text().contains(&format!("the pool's user (uid {www_data}) can change {}", theirs.display())));
    for pid in fpm.php_pids() {
        let root = std::fs::read_link(format!("/proc/{pid}/root"));
        assert!(root.is_err(), "php-cgi {pid} runs with its root at {root:?}");
    }
}

/// Another user's link on the way (a deploy user's `current -> releases/N`) is followed:
/// that user is not the pool's.
#[test]
fn a_chroot_through_another_users_link_is_entered() {
    let lab = Lab::new();
    let release = lab.site.path().join("releases/1");
    std::fs::create_dir_all(release.join("www")).unwrap();
    lab.plant_symlink("current", &release);
    let fpm = lab.start(&lab.config("", "chroot = \"{run}/current\""));
    // The jail holds no php-cgi: its start fails inside it, not on the way there.
    let tried = wait_until(WAIT, || fpm.log_text().contains("cannot start"));
    let log = fpm.log_text();
    assert!(tried && log.contains("No such file or directory") && !log.contains("refusing"), "{log}");
}

/// rustfpm looks a script up (as root) before php-cgi runs it; it looks as the pool's user,
/// so its answer tells that user nothing about a directory they cannot read: a file that
/// exists there and one that does not get the same answer. (As root, the one that exists
/// went on to php-cgi, which answered otherwise, and the other got "Primary script unknown".)
#[test]
fn a_lookup_tells_nothing_of_a_directory_the_pool_user_cannot_read() {
    let lab = Lab::new();
    let private = lab.site.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join("exists.php"), "<?php echo 'secret';").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let _fpm = lab.start(&lab.config("", ""));
    let answer = |script: &Path| {
        let filename = script.display().to_string();
        let params: [(&str, &[u8]); 2] = [("REQUEST_METHOD", b"GET"), ("SCRIPT_FILENAME", filename.as_bytes())];
        let reply = common::fcgi::send(&lab.socket(), &params);
        (reply.status, reply.body().to_string(), reply.stderr)
    };
    let (exists, missing) = (answer(&private.join("exists.php")), answer(&private.join("missing.php")));
    assert_eq!(exists, missing, "a file that exists and one that does not, in root's 0700 directory");
    assert_eq!(exists.0, 404);
}

/// When the pool's user cannot read rustfpm's runtime directory (a private `TMPDIR`, a
/// `RuntimeDirectoryMode=0700`), php-cgi would skip the pool's settings without a word (its
/// admin values, `disable_functions`, `open_basedir`): rustfpm does not start it, and says
/// why (a helper's review of 3e542b3).
#[test]
fn a_pool_whose_settings_its_user_cannot_read_does_not_start() {
    require_root("the pool's user must be another user than rustfpm's");
    let site = Site::new();
    let private = site.path().join("private-tmp");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let opts = PoolOptions {
        children: 1,
        tables: "[pool.www.php_admin_value]\nmemory_limit = \"77M\"\n".into(),
        ..Default::default()
    };
    let (config, socket) = Rustfpm::write_config(&site, &opts);
    let fpm = Rustfpm::start_command(&site, &config, socket, |command| {
        command.env("TMPDIR", &private);
    });
    let said = fpm.wait_logged("cannot read");
    assert!(said.contains("rustfpm.ini (the pool's settings)"), "{said}");
    assert!(fpm.php_pids().is_empty(), "php-cgi runs without its settings: {:?}\n{said}", fpm.php_pids());
}
