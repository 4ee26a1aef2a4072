//! Apache's `mod_proxy_fcgi` params: what scripts see in `$_SERVER` is what php-fpm 8.2 shows
//! for the same params. Each test sends Apache's shapes (`proxy:fcgi://HOST/path/info?query`,
//! `proxy:balancer://`, path info in SCRIPT_NAME, url-encoded path info, no DOCUMENT_ROOT,
//! `cgi.fix_pathinfo` on and off) to the real rustfpm with real php-cgi, and the same params to
//! the real php-fpm8.2 as the reference, and compares the answers.

mod common;

use common::php_fpm::{assert_shows, Pair};

/// `proxy:fcgi://HOST` + the site's `www` + `rest`.
fn fcgi(pair: &Pair, host: &str, rest: &str) -> String {
    format!("proxy:fcgi://{host}{}{rest}", pair.www())
}

#[test]
fn apache_handler_params_show_php_fpms_server_vars() {
    let pair = Pair::start(true);
    let (www, script) = (pair.www(), format!("{}/env.php", pair.www()));
    let pinfo = format!("{www}/pinfo");
    let with_pi = [("PATH_INFO", "/pinfo"), ("PATH_TRANSLATED", pinfo.as_str()), ("SCRIPT_NAME", "/env.php")];
    let handler = fcgi(&pair, "localhost", "/env.php");
    let reply =
        pair.same("handler", &[("SCRIPT_FILENAME", &handler), ("SCRIPT_NAME", "/env.php"), ("DOCUMENT_ROOT", &www)]);
    assert_shows(&reply, &[&format!("SCRIPT_FILENAME={script}"), "SCRIPT_NAME=/env.php", "PHP_SELF=/env.php"]);
    let tcp = fcgi(&pair, "127.0.0.1:9000", "/env.php");
    let reply = pair.same(
        "with PATH_INFO",
        &[&[("SCRIPT_FILENAME", tcp.as_str()), ("DOCUMENT_ROOT", &www)], &with_pi[..]].concat(),
    );
    assert_shows(&reply, &[&format!("SCRIPT_FILENAME={script}"), "PATH_INFO=/pinfo", "PHP_SELF=/env.php/pinfo"]);
    let query = fcgi(&pair, "127.0.0.1:9000", "/env.php?q=1");
    let reply = pair.same(
        "with a query",
        &[&[("SCRIPT_FILENAME", query.as_str()), ("QUERY_STRING", "q=1")], &with_pi[..]].concat(),
    );
    assert_shows(&reply, &[&format!("SCRIPT_FILENAME={script}"), "QUERY_STRING=q=1"]);
    let reply = pair.same("without DOCUMENT_ROOT", &[&[("SCRIPT_FILENAME", tcp.as_str())], &with_pi[..]].concat());
    assert_shows(&reply, &[&format!("SCRIPT_FILENAME={script}"), "PHP_SELF=/env.php/pinfo"]);
    let balancer = format!("proxy:balancer://cluster{www}/env.php");
    let reply = pair.same("balancer", &[&[("SCRIPT_FILENAME", balancer.as_str())], &with_pi[..]].concat());
    assert_shows(&reply, &[&format!("SCRIPT_FILENAME={script}"), "PHP_SELF=/env.php/pinfo"]);
}

#[test]
fn path_info_is_cut_off_script_name_as_php_fpm_cuts_it() {
    let pair = Pair::start(true);
    let (www, script) = (pair.www(), format!("{}/env.php", pair.www()));
    let cases: [(&str, &str, &str); 6] = [
        ("basic", "/env.php/pinfo", "/env.php/pinfo"),
        ("encoded (bug 74129)", "/env.php/1%202", "/env.php/1 2"),
        ("encoded with a plus", "/env.php/a+b%20c", "/env.php/a b c"),
        ("SCRIPT_NAME without the path info", "/env.php/pinfoy", "/env.php/pinfox"),
        ("a trailing slash", "/env.php/", "/env.php/"),
        ("deeper path info", "/env.php/a/b/c.php", "/env.php/a/b/c.php"),
    ];
    for (what, path, script_name) in cases {
        let sf = fcgi(&pair, "127.0.0.1:9000", path);
        let uri = path.to_string();
        pair.same(what, &[("SCRIPT_FILENAME", &sf), ("SCRIPT_NAME", script_name), ("REQUEST_URI", &uri)]);
        pair.same(
            &format!("{what}, with DOCUMENT_ROOT"),
            &[("SCRIPT_FILENAME", &sf), ("SCRIPT_NAME", script_name), ("DOCUMENT_ROOT", &www)],
        );
    }
    let sf = fcgi(&pair, "h", "/env.php/pinfo");
    let reply = pair.same("basic", &[("SCRIPT_FILENAME", &sf), ("SCRIPT_NAME", "/env.php/pinfo")]);
    let want = [&format!("SCRIPT_FILENAME={script}"), "SCRIPT_NAME=/env.php", "ORIG_SCRIPT_NAME=/env.php/pinfo"];
    assert_shows(&reply, &[want[0], want[1], want[2], "PATH_INFO=/pinfo", "PHP_SELF=/env.php/pinfo"]);
    // A PATH_INFO Apache sent that is not the one cut off: php-fpm makes it SCRIPT_NAME.
    let other = [("SCRIPT_FILENAME", sf.as_str()), ("SCRIPT_NAME", "/env.php"), ("PATH_INFO", "/other")];
    let reply = pair.same("a different PATH_INFO", &other);
    assert_shows(&reply, &["ORIG_PATH_INFO=/other", "SCRIPT_NAME=/other", "PATH_INFO=/pinfo"]);
}

/// mod_rewrite's REDIRECT_URL: php-fpm keeps the script, PATH_INFO and PATH_TRANSLATED of an
/// Apache request (php-cgi would run PATH_TRANSLATED, or drop both): rustfpm withholds
/// REDIRECT_URL from php-cgi then, and only then.
#[test]
fn a_rewritten_apache_request_runs_the_script_php_fpm_runs() {
    let pair = Pair::start(true);
    let (www, script) = (pair.www(), format!("{}/env.php", pair.www()));
    let pinfo = format!("{www}/pinfo");
    let sf = fcgi(&pair, "h", "/env.php");
    let rewritten = [("SCRIPT_FILENAME", sf.as_str()), ("SCRIPT_NAME", "/env.php"), ("REDIRECT_URL", "/pretty")];
    pair.same("REDIRECT_URL alone", &rewritten);
    let with_pi = [&rewritten[..], &[("PATH_INFO", "/pinfo"), ("PATH_TRANSLATED", pinfo.as_str())]].concat();
    let ours = pair.same_but("REDIRECT_URL and PATH_INFO", &with_pi, Some("REDIRECT_URL"));
    assert_shows(
        &ours,
        &[&format!("SCRIPT_FILENAME={script}"), "PATH_INFO=/pinfo", &format!("PATH_TRANSLATED={pinfo}")],
    );
    let split = fcgi(&pair, "h", "/env.php/pinfo");
    let cut = [("SCRIPT_FILENAME", split.as_str()), ("SCRIPT_NAME", "/env.php/pinfo"), ("REDIRECT_URL", "/x")];
    let ours = pair.same_but("REDIRECT_URL and path info to cut", &cut, Some("REDIRECT_URL"));
    assert_shows(&ours, &[&format!("SCRIPT_FILENAME={script}"), "PATH_INFO=/pinfo", "SCRIPT_NAME=/env.php"]);
}

#[test]
fn fix_pathinfo_off_only_strips_the_prefix() {
    let pair = Pair::start(false);
    let (www, script) = (pair.www(), format!("{}/env.php", pair.www()));
    let sf = fcgi(&pair, "127.0.0.1:9000", "/env.php");
    let pinfo = format!("{www}/pinfo");
    let params = [
        ("SCRIPT_FILENAME", sf.as_str()),
        ("SCRIPT_NAME", "/env.php"),
        ("PATH_INFO", "/pinfo"),
        ("PATH_TRANSLATED", &pinfo),
    ];
    let reply = pair.same("PATH_INFO and PATH_TRANSLATED, cgi.discard_path", &params);
    assert_shows(&reply, &[&format!("SCRIPT_FILENAME={script}"), "PATH_INFO=/pinfo", "PHP_SELF=/pinfo"]);
}

#[test]
fn missing_and_hostile_apache_scripts_are_answered_as_php_fpm_answers() {
    let pair = Pair::start(true);
    let www = pair.www();
    for (what, rest) in [("missing", "/missing.php"), ("dot-dot", "/../env.php"), ("encoded", "/%65nv.php")] {
        let sf = fcgi(&pair, "h", rest);
        let reply = pair.same(what, &[("SCRIPT_FILENAME", &sf), ("SCRIPT_NAME", rest)]);
        assert_eq!(reply.status, 404, "{what}: {reply:?}");
    }
    // No path after the host: php-fpm looks for a file of that name.
    let reply = pair.same("no path", &[("SCRIPT_FILENAME", "proxy:fcgi://localhost:9000")]);
    assert_eq!(reply.status, 404, "{reply:?}");
    // No SCRIPT_FILENAME: PATH_TRANSLATED is the script, as in php-fpm.
    let pt = format!("{www}/env.php");
    pair.same("PATH_TRANSLATED only", &[("PATH_TRANSLATED", &pt), ("SCRIPT_NAME", "/env.php")]);
}

/// The uploaded-image hole through Apache's shape: refused as php-fpm refuses it.
#[test]
fn limit_extensions_hold_on_the_rewritten_path() {
    let pair = Pair::start(true);
    std::fs::write(pair.site.www().join("up.jpg"), "<?php echo 'UPLOAD-RAN';").unwrap();
    for rest in ["/up.jpg/x.php", "/up.jpg?.php", "/up.jpg"] {
        let sf = fcgi(&pair, "h", rest);
        let reply = pair.same(rest, &[("SCRIPT_FILENAME", &sf), ("SCRIPT_NAME", "/up.jpg/x.php")]);
        assert_eq!(reply.status, 403, "{rest}: {reply:?}");
        assert!(!reply.stdout.contains("UPLOAD-RAN"), "{rest}: {reply:?}");
    }
    assert!(pair.rustfpm.log_text().contains("access to the script"), "{}", pair.rustfpm.log_text());
}
