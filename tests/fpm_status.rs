//! `fpm_get_status()` under php-cgi, through real nginx → rustfpm → php-cgi:
//! the polyfill asks rustfpm over the pool's private status socket and gets
//! php-fpm's array, with the same counts as the status page. Only the pool's
//! own busy children are answered: another pool's script, or any other
//! process, connecting to the socket reads nothing; another user cannot connect.

mod common;
use common::*;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use serde_json::Value;

/// Prints what `fpm_get_status()` returned, the types PHP gave its numbers,
/// and the script's own pid.
const STATUS_SCRIPT: &str = r#"<?php
$s = fpm_get_status();
$types = is_array($s) ? [gettype($s['procs'][0]['last-request-cpu']), gettype($s['start-time'])] : [];
echo json_encode(['pid' => getmypid(), 'status' => $s, 'types' => $types]);
"#;

/// Connects to the unix socket in `?socket=` and prints what it read.
const FOREIGN_SCRIPT: &str = r#"<?php
$conn = stream_socket_client('unix://' . $_GET['socket'], $errno, $errstr, 5);
$read = $conn === false ? null : stream_get_contents($conn);
echo json_encode(['connected' => $conn !== false, 'read' => $read, 'own' => is_array(fpm_get_status())]);
"#;

/// Keys of php-fpm 8.2's `fpm_get_status()`, in its order.
const POOL_KEYS: [&str; 15] = [
    "pool",
    "process-manager",
    "start-time",
    "start-since",
    "accepted-conn",
    "listen-queue",
    "max-listen-queue",
    "listen-queue-len",
    "idle-processes",
    "active-processes",
    "total-processes",
    "max-active-processes",
    "max-children-reached",
    "slow-requests",
    "procs",
];
const PROC_KEYS: [&str; 14] = [
    "pid",
    "state",
    "start-time",
    "start-since",
    "requests",
    "request-duration",
    "request-method",
    "request-uri",
    "query-string",
    "request-length",
    "user",
    "script",
    "last-request-cpu",
    "last-request-memory",
];

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
}

fn json(r: &Response) -> Value {
    serde_json::from_str(&r.text()).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

/// The status socket of `pool` in rustfpm `pid`'s runtime directories.
fn status_socket(pid: i32, pool: &str) -> PathBuf {
    let prefix = format!("rustfpm-{pid}-{pool}-php-");
    [PathBuf::from("/run/rustfpm"), std::env::temp_dir()]
        .iter()
        .filter_map(|base| std::fs::read_dir(base).ok())
        .flatten()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path().join("status.sock"))
        .unwrap_or_else(|| panic!("no runtime directory {prefix}*"))
}

#[test]
fn a_script_gets_its_pools_status_as_php_fpm_shapes_it() {
    let stack = Stack::start();
    stack.site.script("fpm_status.php", STATUS_SCRIPT);
    let r = get(&stack.url("/fpm_status.php?a=b"));
    assert_eq!(r.status, 200, "{r:?}");
    let out = json(&r);
    let s = &out["status"];
    assert_eq!(keys(s), POOL_KEYS, "{s}");
    assert_eq!((s["pool"].as_str(), s["process-manager"].as_str()), (Some("www"), Some("static")));
    // The calling script's own worker is busy: the counts are the status page's.
    assert_eq!(s["total-processes"], 4, "{s}");
    assert!(s["active-processes"].as_u64() >= Some(1), "{s}");
    assert_eq!(s["idle-processes"].as_u64().unwrap() + s["active-processes"].as_u64().unwrap(), 4, "{s}");
    assert!(s["accepted-conn"].as_u64() >= Some(1), "{s}");
    let procs = s["procs"].as_array().expect("procs");
    assert_eq!(procs.len(), 4, "{s}");
    assert!(procs.iter().all(|p| keys(p) == PROC_KEYS), "{s}");
    let mine = procs.iter().find(|p| p["pid"] == out["pid"]).unwrap_or_else(|| panic!("own pid missing: {out}"));
    assert_eq!(mine["state"], "Running", "{mine}");
    assert_eq!(mine["request-method"], "GET", "{mine}");
    assert_eq!(mine["request-uri"], "/fpm_status.php", "{mine}");
    assert_eq!(mine["query-string"], "a=b", "{mine}");
    assert_eq!(mine["request-length"], 0, "{mine}");
    assert_eq!(mine["requests"], 1, "php-fpm counts the running request: {mine}");
    assert_eq!(mine["user"], "-", "{mine}");
    assert!(mine["script"].as_str().is_some_and(|s| s.ends_with("/www/fpm_status.php")), "{mine}");
    assert_eq!(out["types"], serde_json::json!(["double", "integer"]), "{out}");
}

#[test]
fn other_pools_and_other_processes_get_nothing() {
    let site = Site::new();
    site.script("fpm_status_foreign.php", FOREIGN_SCRIPT);
    let other = site.path().join("other.sock");
    let tables = format!(
        "[pool.other]\nlisten = \"{}\"\npm = \"static\"\npm_max_children = 1\n{}",
        other.display(),
        user_line()
    );
    let fpm = Rustfpm::start(&site, &PoolOptions { tables, ..PoolOptions::default() });
    let nginx = Nginx::start(&site, &fpm);
    let (own, foreign) = (status_socket(fpm.pid(), "www"), status_socket(fpm.pid(), "other"));

    // This test process is no child of the pool: connected, then closed unanswered.
    let mut read = Vec::new();
    let mut conn = UnixStream::connect(&own).unwrap_or_else(|e| panic!("{}: {e}", own.display()));
    conn.read_to_end(&mut read).unwrap();
    assert!(read.is_empty(), "a foreign process read: {}", String::from_utf8_lossy(&read));

    // Another local user cannot connect at all: the socket is the pool user's, 0600.
    if is_root() {
        let connect = format!(
            "echo @stream_socket_client('unix://{}', $errno, $errstr, 5) === false ? 'refused' : 'connected';",
            own.display()
        );
        let out = std::process::Command::new("php")
            .args(["-n", "-r", &connect])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap_or_else(|e| panic!("php -r as nobody: {e}"));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "refused", "{out:?}");
    }

    // A www script asks the other pool's socket: it connects and reads nothing,
    // while its own pool's status works.
    let r = get(&nginx.url(&format!("/fpm_status_foreign.php?socket={}", foreign.display())));
    assert_eq!(json(&r), serde_json::json!({"connected": true, "read": "", "own": true}), "{r:?}");
}
