//! One view of a request: each test is an attack on the script checks that
//! must fail, against the real binary and real php-cgi (and real nginx where
//! nginx's shape of the params matters): duplicate SCRIPT_FILENAME,
//! PATH_TRANSLATED with REDIRECT_URL, PATH_INFO underflow (CVE-2019-11043: the
//! script runs as php-fpm 8.2's guard runs it, compared with the real php-fpm,
//! and php-cgi never cuts past PATH_INFO), chroot escapes, forged log lines and
//! a 240 KB SCRIPT_FILENAME.

mod common;

use common::fcgi::{send, Reply, IO_TIMEOUT};
use common::php_fpm::{assert_shows, Pair};
use common::*;

/// What an uploaded "image" with PHP code in it prints when it is run.
const UPLOAD_RAN: &str = "UPLOAD-CODE-RAN";

/// The usual params of a GET for `script` (a path in the docroot).
fn base<'a>(site: &Site, script: &str, owned: &'a mut Vec<String>) -> Vec<(&'static str, &'a [u8])> {
    owned.clear();
    owned.push(site.www().join(script).display().to_string());
    owned.push(format!("/{script}"));
    owned.push(site.www().display().to_string());
    let [filename, name, root] = [&owned[0], &owned[1], &owned[2]];
    vec![
        ("GATEWAY_INTERFACE", b"CGI/1.1"),
        ("SERVER_PROTOCOL", b"HTTP/1.1"),
        ("REQUEST_METHOD", b"GET"),
        ("QUERY_STRING", b""),
        ("REQUEST_URI", name.as_bytes()),
        ("SCRIPT_NAME", name.as_bytes()),
        ("DOCUMENT_ROOT", root.as_bytes()),
        ("SCRIPT_FILENAME", filename.as_bytes()),
    ]
}

/// A site with `index.php` and an uploaded `uploads/a.jpg` that holds PHP code.
fn site_with_upload() -> Site {
    let site = Site::new();
    site.script("index.php", "<?php echo 'INDEX:', $_SERVER['SCRIPT_FILENAME'];");
    std::fs::create_dir(site.www().join("uploads")).unwrap();
    std::fs::write(site.www().join("uploads/a.jpg"), format!("GIF89a<?php echo '{UPLOAD_RAN}';")).unwrap();
    site
}

fn assert_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {reply:?}");
    assert!(reply.stdout.ends_with("Access denied.\n"), "{what}: {reply:?}");
    assert!(!reply.stdout.contains(UPLOAD_RAN), "{what}: the upload ran: {reply:?}");
}

#[test]
fn duplicate_script_filename_is_checked_on_the_value_php_cgi_runs() {
    let site = site_with_upload();
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..PoolOptions::default() });
    let (jpg, index) = (site.www().join("uploads/a.jpg"), site.www().join("index.php"));
    let (jpg, index) = (jpg.display().to_string(), index.display().to_string());
    let mut owned = Vec::new();
    let mut params = base(&site, "index.php", &mut owned);
    params.push(("SCRIPT_FILENAME", jpg.as_bytes()));
    assert_refused(&send(&fpm.socket, &params), "index.php then a.jpg");
    let denied = format!("access to the script '{jpg}' has been denied");
    assert!(wait_until(IO_TIMEOUT, || fpm.log_text().contains(&denied)), "no log line:\n{}", fpm.log_text());
    // The other order: php-cgi runs index.php, the file that was checked.
    let mut params = base(&site, "index.php", &mut owned);
    params.retain(|(n, _)| *n != "SCRIPT_FILENAME");
    params.extend([("SCRIPT_FILENAME", jpg.as_bytes()), ("SCRIPT_FILENAME", index.as_bytes())]);
    let reply = send(&fpm.socket, &params);
    assert_eq!((reply.status, reply.stdout.ends_with(&format!("INDEX:{index}"))), (200, true), "{reply:?}");
    // nginx's fastcgi.conf value, then one built on $realpath_root (a symlinked docroot):
    // served, as php-fpm serves it.
    std::os::unix::fs::symlink(site.www(), site.path().join("current")).unwrap();
    let linked = site.path().join("current/index.php").display().to_string();
    let mut params = base(&site, "index.php", &mut owned);
    params.retain(|(n, _)| *n != "SCRIPT_FILENAME");
    params.extend([("SCRIPT_FILENAME", linked.as_bytes()), ("SCRIPT_FILENAME", index.as_bytes())]);
    let reply = send(&fpm.socket, &params);
    assert_eq!((reply.status, reply.stdout.ends_with(&format!("INDEX:{index}"))), (200, true), "{reply:?}");
}

#[test]
fn path_translated_with_redirect_url_cannot_run_an_upload() {
    let site = site_with_upload();
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..PoolOptions::default() });
    let jpg = site.www().join("uploads/a.jpg").display().to_string();
    let mut owned = Vec::new();
    let mut params = base(&site, "index.php", &mut owned);
    params.extend([
        ("PATH_TRANSLATED", jpg.as_bytes()),
        ("REDIRECT_URL", b"/index.php".as_slice()),
        ("REDIRECT_STATUS", b"200".as_slice()),
    ]);
    assert_refused(&send(&fpm.socket, &params), "PATH_TRANSLATED=a.jpg with REDIRECT_URL");
    let denied = format!("access to the script '{jpg}' has been denied");
    assert!(wait_until(IO_TIMEOUT, || fpm.log_text().contains(&denied)), "no log line:\n{}", fpm.log_text());
    // Without REDIRECT_URL php-cgi (cgi.fix_pathinfo=1) would run SCRIPT_FILENAME, but with
    // cgi.fix_pathinfo=0 it runs PATH_TRANSLATED: refused as well.
    let mut params = base(&site, "index.php", &mut owned);
    params.push(("PATH_TRANSLATED", jpg.as_bytes()));
    assert_refused(&send(&fpm.socket, &params), "PATH_TRANSLATED=a.jpg");
    // The redirect to a real script is served, by that script.
    let index = site.www().join("index.php").display().to_string();
    let mut params = base(&site, "uploads/none.php", &mut owned);
    params.extend([("PATH_TRANSLATED", index.as_bytes()), ("REDIRECT_URL", b"/index.php".as_slice())]);
    let reply = send(&fpm.socket, &params);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.stdout.contains(&format!("INDEX:{index}")), "php-cgi ran PATH_TRANSLATED: {reply:?}");
}

/// phuip-fpizdam's PHP_VALUE chain (CVE-2019-11043), as URI paths.
const PHP_VALUE_CHAIN: [&str; 6] = [
    "session.auto_start=1;;;",
    "short_open_tag=1;;;;",
    "html_errors=0;;;;;;;",
    "include_path=/tmp;;;",
    "auto_prepend_file=a;;",
    "log_errors=1;;;;;;;;",
];

/// The script of the underflow tests: PATH_INFO and the settings phuip-fpizdam's chain aims at.
const CHAIN_SCRIPT: &str = "<?php echo 'INDEX:', json_encode([$_SERVER['PATH_INFO'] ?? null,
    ini_get('session.auto_start'), ini_get('short_open_tag'), ini_get('include_path')]);";

#[test]
fn php_value_chain_through_nginx_split_path_info_runs_the_script_as_php_fpm() {
    // The harness's nginx location is the vulnerable shape: fastcgi_split_path_info,
    // PATH_INFO from $fastcgi_path_info, no try_files. Its regex stops at the %0a: nginx sends
    // the whole path as SCRIPT_FILENAME and an empty PATH_INFO, which php-fpm's guard runs as
    // index.php with PATH_INFO "". php-cgi gets SCRIPT_FILENAME = index.php and cuts nothing.
    let stack = Stack::with(PoolOptions { children: 2, ..PoolOptions::default() });
    stack.site.script("index.php", CHAIN_SCRIPT);
    let pids_before = stack.fpm.php_pids_once_started(2);
    let plain = get(&stack.url("/index.php"));
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert!(plain.text().starts_with("INDEX:[\"\",\"0\","), "{}", plain.text());
    let query = "Q".repeat(1700);
    let pisos = format!("8{}D", "=".repeat(1000));
    for setting in PHP_VALUE_CHAIN {
        let setting = setting.replace('=', "%3D").replace(';', "%3B");
        let url = stack.url(&format!("/index.php/PHP_VALUE%0A{setting}?{query}"));
        let resp = get_with(&url, &[("D-Pisos", &pisos), ("Ebut", "mamku tvoyu")]);
        assert_eq!(resp.status, 200, "{url}: {}", resp.text());
        assert_eq!(resp.text(), plain.text(), "{url}: the same script, PATH_INFO and settings as a plain request");
    }
    assert_eq!(sorted(stack.fpm.php_pids()), pids_before, "no php-cgi process died or was replaced");
}

/// CVE-2019-11043's shape sent directly (PATH_INFO shorter than what php-cgi would cut off
/// SCRIPT_FILENAME): the script runs with the `$_SERVER` php-fpm 8.2 shows it, and php-cgi is
/// sent the script's own path, so it cuts nothing and no php-cgi process is harmed.
#[test]
fn path_info_underflow_shapes_run_the_script_as_php_fpm_does() {
    let pair = Pair::start(true);
    pair.site.script("chain.php", CHAIN_SCRIPT);
    let pids_before = pair.rustfpm.php_pids_once_started(1);
    let www = pair.www();
    let script = format!("{www}/env.php");
    let long_query = "Q".repeat(1700);
    for setting in PHP_VALUE_CHAIN {
        let script_name = format!("/env.php/PHP_VALUE\n{setting}");
        let filename = format!("{www}{script_name}");
        for path_info in ["", "/", "/x"] {
            let mut params = vec![
                ("SCRIPT_FILENAME", filename.as_str()),
                ("SCRIPT_NAME", &script_name),
                ("PATH_INFO", path_info),
                ("QUERY_STRING", &long_query),
                ("HTTP_D_PISOS", "8=========D"),
            ];
            let what = format!("{setting} with PATH_INFO {path_info:?}");
            pair.same(&format!("{what}, no DOCUMENT_ROOT"), &params);
            params.push(("DOCUMENT_ROOT", &www));
            let reply = pair.same(&what, &params);
            assert_shows(&reply, &[&format!("SCRIPT_FILENAME={script}"), &format!("PATH_INFO={path_info}")]);
            assert!(reply.body().contains(&format!("ORIG_SCRIPT_FILENAME={filename}\n")), "{what}: {reply:?}");
        }
    }
    // php-src's own test of the bug (bug78599): 35 bytes cut, PATH_INFO "", a 5000-byte header.
    let chain = format!("{www}/chain.php");
    let filename = format!("{chain}/{}", "A".repeat(35));
    let header = "PTEST".repeat(1000);
    let params = [("SCRIPT_FILENAME", filename.as_str()), ("PATH_INFO", ""), ("HTTP_HUI", &header)];
    let reply = pair.same("bug78599", &params);
    assert!(reply.body().starts_with("INDEX:[\"\",\"0\","), "{reply:?}");
    // Where php-fpm's result cannot be sent so (cgi.fix_pathinfo=0, REDIRECT_URL), it is refused.
    let redirected = [("SCRIPT_FILENAME", filename.as_str()), ("PATH_INFO", ""), ("REDIRECT_URL", "/r")];
    let reply = send(&pair.rustfpm.socket, &redirected.map(|(n, v)| (n, v.as_bytes())));
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(pair.rustfpm.log_text().contains("PATH_INFO (0 bytes) is shorter than the 36 bytes"));
    assert_eq!(sorted(pair.rustfpm.php_pids()), pids_before, "no php-cgi process died or was replaced");
}

#[test]
fn chroot_escapes_give_no_oracle_on_host_files() {
    require_root("chroot needs root");
    let site = Site::new();
    let jail = site.path().join("jail");
    std::fs::create_dir_all(jail.join("www")).unwrap();
    std::fs::write(jail.join("www/pic.jpg"), "GIF89a").unwrap();
    let host = site.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("present.jpg"), "GIF89a").unwrap();
    std::os::unix::fs::symlink(host.join("present.jpg"), jail.join("www/out-present.jpg")).unwrap();
    std::os::unix::fs::symlink(host.join("absent.jpg"), jail.join("www/out-absent.jpg")).unwrap();
    std::os::unix::fs::symlink("/www/pic.jpg", jail.join("www/in.jpg")).unwrap();
    let opts = PoolOptions {
        children: 1,
        extra: format!("chroot = \"{}\"\nqueue_max_wait = \"1s\"", jail.display()),
        ..PoolOptions::default()
    };
    let fpm = Rustfpm::start(&site, &opts);
    let answer = |script: &str| {
        let reply = send(&fpm.socket, &[("REQUEST_METHOD", b"GET"), ("SCRIPT_FILENAME", script.as_bytes())]);
        (reply.status, reply.stdout.lines().last().unwrap_or_default().to_string(), reply.stderr)
    };
    let ups = "/..".repeat(site.path().components().count() + 2);
    let host_rel = host.strip_prefix("/").unwrap().display().to_string();
    for (present, absent) in [
        (format!("{ups}/{host_rel}/present.jpg"), format!("{ups}/{host_rel}/absent.jpg")),
        (format!("{}/present.jpg", host.display()), format!("{}/absent.jpg", host.display())),
        ("/www/out-present.jpg".to_string(), "/www/out-absent.jpg".to_string()),
        ("/www/out-present.jpg/x.php".to_string(), "/www/out-absent.jpg/x.php".to_string()),
    ] {
        let (a, b) = (answer(&present), answer(&absent));
        assert_eq!(a, b, "{present} and {absent} must get the same answer");
        assert_eq!(a.0, 404, "{present}: {a:?}");
    }
    // Lookups do happen inside the chroot: `..` and absolute links stop at its root.
    for inside in ["/www/pic.jpg", "/../../www/pic.jpg", "/www/in.jpg", "/www/pic.jpg/x.php"] {
        assert_eq!(answer(inside).0, 403, "{inside} names the chroot's /www/pic.jpg");
    }
}

#[test]
fn request_values_cannot_forge_log_lines() {
    let site = Site::new();
    let forged = "\n[05-Dec-2026 00:00:00] ALERT: forged line";
    let jpg = format!("evil{forged}.jpg");
    std::fs::write(site.www().join(&jpg), "GIF89a").unwrap();
    let slow = format!("slow{forged}.php");
    site.script(&slow, "<?php usleep(1500000); echo 'slept';");
    let slowlog = site.path().join("slow.log");
    let opts = PoolOptions {
        children: 1,
        extra: format!("slowlog = \"{}\"\nrequest_slowlog_timeout = \"1s\"", slowlog.display()),
        ..PoolOptions::default()
    };
    let fpm = Rustfpm::start(&site, &opts);
    let mut owned = Vec::new();
    let reply = send(&fpm.socket, &base(&site, &jpg, &mut owned));
    assert_eq!(reply.status, 403, "{reply:?}");
    let uri = format!("/x?q=1{forged}");
    let mut params = base(&site, &slow, &mut owned);
    params.retain(|(n, _)| *n != "REQUEST_URI");
    params.push(("REQUEST_URI", uri.as_bytes()));
    assert!(send(&fpm.socket, &params).stdout.ends_with("slept"));
    let entry = wait_file(&slowlog, IO_TIMEOUT).expect("the slowlog is written");
    assert!(wait_until(IO_TIMEOUT, || fpm.log_text().contains("executing too slow")), "{}", fpm.log_text());
    for (name, text) in [("error log", fpm.log_text()), ("slowlog", entry)] {
        assert!(!text.lines().any(|l| l.starts_with("[05-Dec-2026 00:00:00]")), "{name} has a forged line:\n{text}");
        assert!(
            text.contains("\\x0A[05-Dec-2026 00:00:00] ALERT: forged line"),
            "{name} lacks the escaped value:\n{text}"
        );
    }
}

#[test]
fn a_240_kb_script_filename_is_answered_while_other_requests_are_served() {
    let site = Site::new();
    let opts = PoolOptions { children: 2, extra: "queue_max_wait = \"30s\"".into(), ..PoolOptions::default() };
    let fpm = Rustfpm::start(&site, &opts);
    let mut owned = Vec::new();
    let hello = base(&site, "hello.php", &mut owned);
    let huge = "/a".repeat(120_000);
    // Paths just under PATH_MAX, each different (no cache hit), cost a lookup each.
    let deep: Vec<String> =
        (0..64).map(|i| format!("{}/{}/{i}.php", site.www().display(), "d/".repeat(1900))).collect();
    let attackers: Vec<_> = deep
        .into_iter()
        .map(|path| {
            let socket = fpm.socket.clone();
            std::thread::spawn(move || send(&socket, &[("SCRIPT_FILENAME", path.as_bytes())]).status)
        })
        .collect();
    let reply = send(&fpm.socket, &[("SCRIPT_FILENAME", huge.as_bytes())]);
    assert_eq!(reply.status, 403, "{reply:?}");
    for _ in 0..20 {
        let reply = send(&fpm.socket, &hello);
        assert_eq!((reply.status, reply.stdout.ends_with("Hello, world\n")), (200, true), "{reply:?}");
    }
    for attacker in attackers {
        let status = attacker.join().expect("attacker thread");
        assert!(matches!(status, 404 | 503), "a deep path got {status}");
    }
    assert!(fpm.log_text().contains("over PATH_MAX"), "{}", fpm.log_text());
}

fn sorted(mut pids: Vec<i32>) -> Vec<i32> {
    pids.sort_unstable();
    pids
}
