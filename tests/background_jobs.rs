//! A script that starts a background job (`exec('job > /dev/null &')`, common
//! for mail queues and thumbnails) hands the job a copy of its child's FastCGI
//! connection: php-cgi accepts without close-on-exec. The job then holds the
//! child's end open after the child has closed it or died, so its end of file
//! never reaches rustfpm. None of that may cost a request or a worker: the
//! pool goes by its child, not by the connection's end. Each job here runs 60 s,
//! longer than a test waits for an answer (`IO_TIMEOUT`, 30 s).

mod common;
use common::fcgi::{exchange, request_with_flags, IO_TIMEOUT};
use common::*;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// PHP that starts `sleep 60` in the background, its pid written to `pid_file`.
fn start_job(pid_file: &Path) -> String {
    format!("exec('sleep 60 > /dev/null 2>&1 & echo $! > {}');", pid_file.display())
}

/// The jobs the scripts started, killed when the test ends however it ends.
struct Jobs(Vec<PathBuf>);

impl Jobs {
    fn pid(&self, i: usize) -> i32 {
        let path = &self.0[i];
        assert!(wait_until(IO_TIMEOUT, || std::fs::metadata(path).is_ok_and(|m| m.len() > 0)), "no job started");
        std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        for i in 0..self.0.len() {
            let Some(pid) = std::fs::read_to_string(&self.0[i]).ok().and_then(|p| p.trim().parse::<i32>().ok()) else {
                continue;
            };
            // A job that ended (with its pool) left its pid to be reused, maybe by
            // another test's process: only a `sleep` is killed.
            let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if command.starts_with(b"sleep\0") {
                // SAFETY: kill(2) of the job's pid, which the script wrote.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

/// A GET of `script`; `keep`: the connection is kept for more (FCGI_KEEP_CONN).
fn get(site: &Site, script: &str, keep: bool) -> Vec<u8> {
    let params = fcgi::get_params(site, script, "");
    let params: Vec<(&str, &[u8])> = params.iter().map(|(k, v)| (*k, &v[..])).collect();
    request_with_flags(&params, u8::from(keep))
}

/// The answer to `request` on a new connection.
fn fetch(socket: &Path, request: &[u8]) -> fcgi::Reply {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    exchange(&mut s, request)
}

/// Sends `request` and hangs up once its script has made `started`, as nginx
/// does when the browser goes away.
fn abandon_once_started(fpm: &Rustfpm, request: &[u8], started: &Path) {
    let mut abandoned = UnixStream::connect(&fpm.socket).unwrap();
    abandoned.write_all(request).unwrap();
    assert!(wait_until(IO_TIMEOUT, || started.exists()), "the script never ran");
}

/// nginx gives up on a request whose script started a job: once the script
/// has ended, the only child serves the next request, and the job runs on.
#[test]
fn an_abandoned_request_whose_script_left_a_job_running_frees_its_worker() {
    let site = Site::new();
    let jobs = Jobs(vec![site.scratch().join("job.pid")]);
    let started = site.scratch().join("started");
    let job = start_job(&jobs.0[0]);
    site.script("job.php", &format!("<?php {job} touch('{}'); usleep(300000); echo 'late';", started.display()));
    site.script("hello.php", "<?php echo 'hello';");
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..Default::default() });

    abandon_once_started(&fpm, &get(&site, "job.php", false), &started);

    let reply = fetch(&fpm.socket, &get(&site, "hello.php", false));
    assert_eq!((reply.status, reply.body()), (200, "hello"), "{reply:?}");
    assert!(alive(jobs.pid(0)), "the job is the site's, not rustfpm's to stop");
}

/// A child dies under its request after its script started a job: the
/// request is answered 502 at once (whether or not rustfpm knew the child's
/// pid yet), its crash logged, and the next one served.
#[test]
fn a_child_that_dies_under_its_request_with_a_job_running_is_answered_502_at_once() {
    let site = Site::new();
    let jobs = Jobs(vec![site.scratch().join("job.pid")]);
    site.script("crash.php", &format!("<?php {} posix_kill(getmypid(), 9);", start_job(&jobs.0[0])));
    site.script("hello.php", "<?php echo 'hello';");
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..Default::default() });

    let reply = fetch(&fpm.socket, &get(&site, "crash.php", false));
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(alive(jobs.pid(0)));
    // With its signal when rustfpm knew the child's pid before it died; a
    // child that dies before its pid is looked up is logged as `child ?`.
    let log = fpm.wait_logged("while serving script");
    assert!(log.contains("exited") && log.contains("crash.php' (uri '/crash.php'): answered 502"), "{log}");
    let reply = fetch(&fpm.socket, &get(&site, "hello.php", false));
    assert_eq!((reply.status, reply.body()), (200, "hello"), "{reply:?}");
}

/// A child dies between requests (here its script's job kills it) while the
/// job holds its connection open: the next request goes to another child,
/// on a kept connection as on a new one.
#[test]
fn an_idle_child_that_dies_with_a_job_running_gets_no_more_requests() {
    let site = Site::new();
    let jobs = Jobs(vec![site.scratch().join("job.pid")]);
    // The job kills the child that started it, once that child is idle.
    site.script(
        "job.php",
        &format!(
            "<?php exec('(sleep 0.3; kill -9 ' . getmypid() . '; sleep 60) > /dev/null 2>&1 & echo $! > {}'); echo getmypid();",
            jobs.0[0].display()
        ),
    );
    site.script("hello.php", "<?php echo 'hello';");
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..Default::default() });

    let mut kept = UnixStream::connect(&fpm.socket).unwrap();
    kept.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let reply = exchange(&mut kept, &get(&site, "job.php", true));
    let child: i32 = reply.body().parse().unwrap_or_else(|_| panic!("{reply:?}"));
    fpm.wait_logged(&format!("child {child} exited on signal 9"));
    assert!(alive(jobs.pid(0)));

    let reply = exchange(&mut kept, &get(&site, "hello.php", true));
    assert_eq!((reply.status, reply.body()), (200, "hello"), "{reply:?}");
    let reply = fetch(&fpm.socket, &get(&site, "hello.php", false));
    assert_eq!((reply.status, reply.body()), (200, "hello"), "{reply:?}");
}

/// A job is in its pool's process group and stops when a reload replaces the
/// pool; one started in a session of its own outlives that, but not rustfpm
/// (docs/php-fpm-differences.md).
#[test]
fn a_job_stops_with_its_pool_unless_it_has_a_session_of_its_own() {
    let site = Site::new();
    let jobs = Jobs(vec![site.scratch().join("job.pid"), site.scratch().join("own.pid")]);
    let own = format!("exec('setsid sleep 60 > /dev/null 2>&1 & echo $! > {}');", jobs.0[1].display());
    site.script("jobs.php", &format!("<?php {} {own} echo 'started';", start_job(&jobs.0[0])));
    let mut fpm = Rustfpm::start(&site, &PoolOptions::default());
    let reply = fetch(&fpm.socket, &get(&site, "jobs.php", false));
    assert_eq!((reply.status, reply.body()), (200, "started"), "{reply:?}");
    let (job, own) = (jobs.pid(0), jobs.pid(1));
    assert!(alive(job) && alive(own));

    let text = std::fs::read_to_string(&fpm.config).unwrap();
    std::fs::write(&fpm.config, text.replace("[pool.www]\n", "[pool.www]\npm_max_requests = 1000\n")).unwrap();
    fpm.signal(libc::SIGUSR2);
    fpm.wait_logged("configuration reloaded");
    assert!(wait_until(IO_TIMEOUT, || !alive(job)), "the pool's job outlived it");
    assert!(alive(own), "the job in a session of its own was stopped with the pool");

    fpm.signal(libc::SIGTERM);
    assert!(fpm.wait_exit(IO_TIMEOUT).is_some());
    assert!(!alive(own), "rustfpm left a process behind");
}

/// Without `CAP_SYS_PTRACE` (a container's default set; rustfpm.service does
/// not keep it either) root may list its children's descriptors but not
/// follow them: rustfpm follows them as the children's user. So it still
/// knows which child runs what: a request that outlasts the look-up (about
/// 0.2 s) is answered, `request_terminate_timeout` kills the child by its
/// pid, and a job holds no abandoned request's worker.
#[test]
fn without_cap_sys_ptrace_rustfpm_still_knows_its_children() {
    require_root("root without CAP_SYS_PTRACE");
    require_file("/usr/bin/setpriv", "util-linux");
    let site = Site::new();
    let jobs = Jobs(vec![site.scratch().join("job.pid")]);
    let started = site.scratch().join("started");
    site.script("slow.php", "<?php usleep(500000); echo 'ok';");
    site.script("spin.php", "<?php $end = microtime(true) + 60; while (microtime(true) < $end) {} echo 'spun';");
    site.script(
        "job.php",
        &format!("<?php {} touch('{}'); usleep(300000); echo 'late';", start_job(&jobs.0[0]), started.display()),
    );
    let extra = "request_terminate_timeout = \"1s\"".to_string();
    let (config, socket) = Rustfpm::write_config(&site, &PoolOptions { children: 1, extra, ..Default::default() });
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace", "--"]);
    cmd.arg(env!("CARGO_BIN_EXE_rustfpm")).arg("--config").arg(&config);
    let fpm = Rustfpm::spawn(&site, cmd, &config, &socket.unwrap());
    fpm.wait_ready();
    for i in 0..2 {
        let reply = fetch(&fpm.socket, &get(&site, "slow.php", false));
        assert_eq!((reply.status, reply.body()), (200, "ok"), "request {i}: {reply:?}\n{}", fpm.log_text());
    }

    assert_eq!(fetch(&fpm.socket, &get(&site, "spin.php", false)).status, 504);
    let reply = fetch(&fpm.socket, &get(&site, "slow.php", false));
    assert_eq!((reply.status, reply.body()), (200, "ok"), "the spinning child was not killed:\n{}", fpm.log_text());
    let log = fpm.wait_logged("terminating");
    assert!(log.contains("spin.php' (uri '/spin.php') executing too slow"), "{log}");
    assert!(!log.contains("child ?"), "{log}");

    abandon_once_started(&fpm, &get(&site, "job.php", false), &started);
    let reply = fetch(&fpm.socket, &get(&site, "slow.php", false));
    assert_eq!((reply.status, reply.body()), (200, "ok"), "{reply:?}");
    assert!(alive(jobs.pid(0)));
}

/// A `php_cgi` wrapper that does not exec php-cgi: the workers are not the
/// parent's children, so no child of the parent holds a connection, which
/// must not read as "its child is gone" either.
#[test]
fn a_php_cgi_wrapper_that_does_not_exec_serves_requests_longer_than_the_look_up() {
    let site = Site::new();
    site.script("slow.php", "<?php usleep(500000); echo 'ok';");
    let wrapper = site.path().join("php-cgi-wrapper");
    std::fs::write(&wrapper, "#!/bin/sh\nphp-cgi \"$@\"\n").unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let opts = PoolOptions { children: 1, extra: format!("php_cgi = \"{}\"", wrapper.display()), ..Default::default() };
    let fpm = Rustfpm::start(&site, &opts);
    for i in 0..3 {
        let reply = fetch(&fpm.socket, &get(&site, "slow.php", false));
        assert_eq!((reply.status, reply.body()), (200, "ok"), "request {i}: {reply:?}\n{}", fpm.log_text());
    }
}

/// The php-cgi parent dies, and rustfpm kills its group: a request running
/// there, whose script left a job in a session of its own (not in the group),
/// is answered 502 at once, and the pool serves again with a new parent.
#[test]
fn a_request_whose_parent_died_is_answered_although_a_job_holds_its_connection() {
    let site = Site::new();
    let jobs = Jobs(vec![site.scratch().join("own.pid")]);
    let own = format!("exec('setsid sleep 60 > /dev/null 2>&1 & echo $! > {}');", jobs.0[0].display());
    site.script("orphan.php", &format!("<?php {own} posix_kill(posix_getppid(), 9); sleep(20); echo 'late';"));
    site.script("hello.php", "<?php echo 'hello';");
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..Default::default() });

    let reply = fetch(&fpm.socket, &get(&site, "orphan.php", false));
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(alive(jobs.pid(0)));
    let reply = fetch(&fpm.socket, &get(&site, "hello.php", false));
    assert_eq!((reply.status, reply.body()), (200, "hello"), "{reply:?}\n{}", fpm.log_text());
}
