use super::*;
use crate::config::access_format::DEFAULT_TIME;
use crate::config::DEFAULT_ACCESS_FORMAT;

/// `t` as `%{layout}t` shows it.
fn strftime(layout: &str, t: Option<SystemTime>) -> String {
    let mut out = String::new();
    strftime_into(&mut out, layout, t).unwrap();
    out
}

fn record() -> Record {
    Record {
        remote_ip: Some("127.0.0.1".parse().unwrap()),
        user: "alice".into(),
        method: "POST".into(),
        uri: "/index.php".into(),
        query: "a=1&b=2".into(),
        script: "/var/www/index.php".into(),
        content_length: 42,
        status: 201,
        script_status: None,
        accepted: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)),
        duration: Duration::from_micros(1_234_567),
        params: vec![Some("example.org".into()), None],
        headers: vec![Some("text/html; charset=UTF-8".into())],
        pool: "www".into(),
        pid: Some(1234),
        parent_pid: Some(1200),
        memory: Some(3 * 1024 * 1024 + 512),
        cpu: Some(CpuTime { user: 0.5, system: 0.25 }),
    }
}

fn line(format: &str, rec: &Record) -> String {
    let format = AccessFormat::parse(format).unwrap_or_else(|e| panic!("{format}: {e}"));
    let mut out = String::new();
    render(&format, rec, SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000), &mut out);
    out
}

#[test]
fn every_simple_placeholder() {
    let rec = record();
    let cases = [
        ("%R", "127.0.0.1"),
        ("%u", "alice"),
        ("%m", "POST"),
        ("%r", "/index.php"),
        ("%Q", "?"),
        ("%q", "a=1&b=2"),
        ("%s", "201"),
        ("%f", "/var/www/index.php"),
        ("%n", "www"),
        ("%p", "1234"),
        ("%P", "1200"),
        ("%l", "42"),
        ("%%", "%"),
        ("a%%b", "a%b"),
    ];
    for (format, want) in cases {
        assert_eq!(line(format, &rec), want, "{format}");
    }
}

#[test]
fn unknown_values_render_as_php_fpm_does() {
    let rec = Record { user: String::new(), status: 200, ..Record::default() };
    let cases = [
        ("%R", "-"),
        ("%u", ""),
        ("%m", "-"),
        ("%f", "-"),
        ("%Q%q", ""),
        ("%p", "-"),
        ("%P", "-"),
        ("%M", "-"),
        ("%C", "-"),
        ("%t", "-"),
        ("%n", "-"),
    ];
    for (format, want) in cases {
        assert_eq!(line(format, &rec), want, "{format}");
    }
}

#[test]
fn default_format_matches_php_fpm() {
    let rec = Record { user: String::new(), ..record() };
    let out = line(DEFAULT_ACCESS_FORMAT, &rec);
    let time = strftime(DEFAULT_TIME, rec.accepted);
    assert_eq!(out, format!("127.0.0.1 -  {time} \"POST /index.php\" 201"));
}

#[test]
fn times_use_strftime_layouts() {
    let rec = record();
    assert_eq!(line("%{%s}t", &rec), "1000000000");
    assert_eq!(line("%{%s}T", &rec), "2000000000");
    assert_eq!(line("%{%Y}t", &rec), strftime("%Y", rec.accepted));
    let default = line("%t", &rec);
    assert!(default.contains("/Sep/2001:"), "{default}");
}

#[test]
fn durations_in_each_unit() {
    let rec = record();
    assert_eq!(line("%d", &rec), "1.235");
    assert_eq!(line("%{seconds}d", &rec), "1.235");
    assert_eq!(line("%{mili}d", &rec), "1234.567");
    assert_eq!(line("%{milliseconds}d", &rec), "1234.567");
    assert_eq!(line("%{micro}d", &rec), "1234567");
    assert_eq!(line("%{MICROSECONDS}d", &rec), "1234567");
}

#[test]
fn memory_in_each_unit() {
    let rec = record();
    assert_eq!(line("%M", &rec), (3 * 1024 * 1024 + 512).to_string());
    assert_eq!(line("%{bytes}M", &rec), (3 * 1024 * 1024 + 512).to_string());
    assert_eq!(line("%{kilo}M", &rec), (3 * 1024).to_string());
    assert_eq!(line("%{megabytes}M", &rec), "3");
}

#[test]
fn cpu_as_a_percentage_of_the_duration() {
    let rec = Record { duration: Duration::from_secs(1), ..record() };
    assert_eq!(line("%C", &rec), "75.00");
    assert_eq!(line("%{total}C", &rec), "75.00");
    assert_eq!(line("%{user}C", &rec), "50.00");
    assert_eq!(line("%{system}C", &rec), "25.00");
    let instant = Record { duration: Duration::ZERO, ..record() };
    assert_eq!(line("%C", &instant), "0.00");
}

#[test]
fn params_and_headers_by_name() {
    let rec = record();
    assert_eq!(line("%{HTTP_HOST}e %{MISSING}e", &rec), "example.org -");
    assert_eq!(line("%{Content-Type}o", &rec), "text/html; charset=UTF-8");
    assert_eq!(line("%{content-type}o %{X-None}o", &Record { headers: vec![None, None], ..rec }), "- -");
}

#[test]
fn rich_format_renders_in_order() {
    let rec = record();
    let out = line("%n %p [%m %r%Q%q] %s %{mili}d %{kilo}M %l \"%{HTTP_HOST}e\"", &rec);
    assert_eq!(out, "www 1234 [POST /index.php?a=1&b=2] 201 1234.567 3072 42 \"example.org\"");
}

#[test]
fn control_characters_in_values_cannot_forge_lines() {
    let rec = Record { uri: "/a\n127.0.0.1 - x\r\t.php".into(), ..record() };
    assert_eq!(line("%r%%\t", &rec), "/a\\x0A127.0.0.1 - x\\x0D\\x09.php%\t");
}

#[test]
fn times_laid_out_again_when_the_second_or_the_layout_changes() {
    let at = |secs: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    let direct = |layout: &str, secs: u64| crate::sys::localtime::strftime(layout, secs as i64).unwrap();
    for (layout, secs) in
        [("%s", 1_700_000_000), ("%s", 1_700_000_000), ("%Y %s", 1_700_000_000), ("%s", 1_700_000_001)]
    {
        assert_eq!(strftime(layout, at(secs)), direct(layout, secs), "{layout} at {secs}");
    }
    assert_eq!(strftime("%s", None), "-");
}
