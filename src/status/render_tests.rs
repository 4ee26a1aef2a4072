//! Tests of the status page's formats against php-fpm's output.

use std::time::Duration;

use serde_json::Value;

use super::*;

const START: u64 = 1_700_000_000;
/// A URI with everything that needs escaping somewhere.
const NASTY_URI: &str = "/a\"b\\c/d?x=<1>&y='é😀'\n\t\u{1}";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn now() -> SystemTime {
    at(START + 3600) + Duration::from_millis(500)
}

fn sample() -> PoolStatus {
    PoolStatus {
        pool: "www".into(),
        process_manager: "dynamic",
        start_time: at(START),
        accepted_conn: 1234,
        listen_queue: 1,
        max_listen_queue: 7,
        listen_queue_len: 511,
        idle_processes: 1,
        active_processes: 1,
        total_processes: 2,
        max_active_processes: 2,
        max_children_reached: 3,
        slow_requests: 4,
        processes: vec![
            ProcessStatus {
                pid: 101,
                state: "Running",
                start_time: Some(at(START + 10)),
                requests: 5,
                request_duration: Duration::from_micros(1_234_567),
                request_method: "POST".into(),
                request_uri: NASTY_URI.into(),
                content_length: 42,
                user: "bob".into(),
                script: "/srv/www/index.php".into(),
                last_request_cpu: None,
                last_request_memory: None,
            },
            ProcessStatus {
                pid: 102,
                state: "Idle",
                start_time: None,
                requests: 0,
                request_duration: Duration::ZERO,
                request_method: String::new(),
                request_uri: String::new(),
                content_length: 0,
                user: String::new(),
                script: String::new(),
                last_request_cpu: Some(12.5),
                last_request_memory: Some(2_097_152),
            },
        ],
    }
}

fn expected_text_head() -> String {
    format!(
        "pool:                 www\n\
         process manager:      dynamic\n\
         start time:           {}\n\
         start since:          3600\n\
         accepted conn:        1234\n\
         listen queue:         1\n\
         max listen queue:     7\n\
         listen queue len:     511\n\
         idle processes:       1\n\
         active processes:     1\n\
         total processes:      2\n\
         max active processes: 2\n\
         max children reached: 3\n\
         slow requests:        4\n",
        local_time(at(START))
    )
}

#[test]
fn query_parsing() {
    assert_eq!(parse_query(""), (Format::Text, false));
    assert_eq!(parse_query("full"), (Format::Text, true));
    assert_eq!(parse_query("json"), (Format::Json, false));
    assert_eq!(parse_query("json&full"), (Format::Json, true));
    assert_eq!(parse_query("full&json"), (Format::Json, true));
    assert_eq!(parse_query("xml&full=1"), (Format::Xml, true));
    assert_eq!(parse_query("html"), (Format::Html, false));
    assert_eq!(parse_query("openmetrics"), (Format::OpenMetrics, false));
    assert_eq!(parse_query("openmetrics&full"), (Format::OpenMetrics, true));
    // Only the key's presence counts, as in php-fpm.
    assert_eq!(parse_query("json=0&full=no"), (Format::Json, true));
    // php-fpm's precedence: html, xml, json, openmetrics.
    assert_eq!(parse_query("json&html"), (Format::Html, false));
    assert_eq!(parse_query("openmetrics&xml"), (Format::Xml, false));
    assert_eq!(parse_query("openmetrics&json"), (Format::Json, false));
    // Keys as PHP's $_GET sees them.
    assert_eq!(parse_query("%6Ason&full[]=1"), (Format::Json, true));
    assert_eq!(parse_query("jsonx&fullish&x=json&%"), (Format::Text, false));
    assert_eq!(parse_query("&&json&"), (Format::Json, false));
}

#[test]
fn text_short() {
    let (ct, body) = render(&sample(), Format::Text, false, now());
    assert_eq!(ct, "text/plain;charset=UTF-8");
    assert_eq!(body, expected_text_head());
}

#[test]
fn text_full() {
    let (ct, body) = render(&sample(), Format::Text, true, now());
    assert_eq!(ct, "text/plain;charset=UTF-8");
    let expected = format!(
        "{}\n\
         ************************\n\
         pid:                  101\n\
         state:                Running\n\
         start time:           {}\n\
         start since:          3590\n\
         requests:             5\n\
         request duration:     1234567\n\
         request method:       POST\n\
         request URI:          /a\"b\\c/d?x=<1>&y='é😀'\\x0A\\x09\\x01\n\
         content length:       42\n\
         user:                 bob\n\
         script:               /srv/www/index.php\n\
         last request cpu:     0.00\n\
         last request memory:  0\n\
         \n\
         ************************\n\
         pid:                  102\n\
         state:                Idle\n\
         start time:           {}\n\
         start since:          0\n\
         requests:             0\n\
         request duration:     0\n\
         request method:       -\n\
         request URI:          -\n\
         content length:       0\n\
         user:                 -\n\
         script:               -\n\
         last request cpu:     12.50\n\
         last request memory:  2097152\n",
        expected_text_head(),
        local_time(at(START + 10)),
        local_time(now()),
    );
    assert_eq!(body, expected);
}

#[test]
fn json_short_is_php_fpms_line() {
    let (ct, body) = render(&sample(), Format::Json, false, now());
    assert_eq!(ct, "application/json");
    assert_eq!(
        body,
        "{\"pool\":\"www\",\"process manager\":\"dynamic\",\"start time\":1700000000,\"start since\":3600,\
         \"accepted conn\":1234,\"listen queue\":1,\"max listen queue\":7,\"listen queue len\":511,\
         \"idle processes\":1,\"active processes\":1,\"total processes\":2,\"max active processes\":2,\
         \"max children reached\":3,\"slow requests\":4}"
    );
    assert!(!keys(&parse_json(&body)).contains(&"processes"));
}

const POOL_KEYS: [&str; 14] = [
    "pool",
    "process manager",
    "start time",
    "start since",
    "accepted conn",
    "listen queue",
    "max listen queue",
    "listen queue len",
    "idle processes",
    "active processes",
    "total processes",
    "max active processes",
    "max children reached",
    "slow requests",
];
const PROCESS_KEYS: [&str; 13] = [
    "pid",
    "state",
    "start time",
    "start since",
    "requests",
    "request duration",
    "request method",
    "request uri",
    "content length",
    "user",
    "script",
    "last request cpu",
    "last request memory",
];

#[test]
fn json_full_parses_back_with_every_key() {
    let (_, body) = render(&sample(), Format::Json, true, now());
    // php-fpm's exact separator before the list, and PHP's escaping.
    assert!(body.contains("\"slow requests\":4, \"processes\":[{\"pid\":101,"), "{body}");
    assert!(body.ends_with("}]}"), "{body}");
    assert!(body.contains(r#""request uri":"\/a\"b\\c\/d?x=<1>&y='\u00e9\ud83d\ude00'\n\t\u0001","#), "{body}");
    assert!(body.is_ascii());

    let top = parse_json(&body);
    let mut want: Vec<&str> = POOL_KEYS.to_vec();
    want.push("processes");
    assert_eq!(keys(&top), want, "php-fpm's keys in php-fpm's order");
    assert_eq!(top["pool"], "www");
    assert_eq!(top["start time"], START);
    assert_eq!(top["start since"], 3600);

    let procs = top["processes"].as_array().expect("processes is an array");
    assert_eq!(procs.len(), 2);
    for p in procs {
        assert_eq!(keys(p), PROCESS_KEYS);
    }
    let (first, second) = (&procs[0], &procs[1]);
    assert_eq!(first["request uri"], NASTY_URI, "round-trips exactly");
    assert_eq!(first["request duration"], 1_234_567);
    assert_eq!(first["start since"], 3590);
    assert_eq!(first["start time"], START + 10);
    assert_eq!(first["last request cpu"].as_f64(), Some(0.0));
    assert_eq!(first["last request memory"], 0);
    assert_eq!(second["request method"], "-");
    assert_eq!(second["user"], "-");
    assert_eq!(second["last request cpu"].as_f64(), Some(12.5));
    assert!(body.contains("\"last request cpu\":0.00,"), "php-fpm's %.2f: {body}");
}

#[test]
fn json_escapes_like_php() {
    let s = |x: &str| JsonStr(x).to_string();
    assert_eq!(s("plain"), "plain");
    assert_eq!(s("a\"b"), "a\\\"b");
    assert_eq!(s("a\\b"), "a\\\\b");
    assert_eq!(s("/x/"), "\\/x\\/");
    assert_eq!(s("\n\r\t\u{8}\u{c}\u{0}\u{1f}"), "\\n\\r\\t\\b\\f\\u0000\\u001f");
    assert_eq!(s("é€😀"), "\\u00e9\\u20ac\\ud83d\\ude00");
    assert_eq!(s("'<>&\u{7f}"), "'<>&\u{7f}");
    for tricky in ["", "\"", "é", "😀x", NASTY_URI, "\\\\\"\"", "a\u{10ffff}"] {
        let doc = format!("\"{}\"", JsonStr(tricky));
        assert_eq!(parse_json(&doc), tricky, "{doc}");
    }
}

#[test]
fn xml_short_and_full() {
    let (ct, short) = render(&sample(), Format::Xml, false, now());
    assert_eq!(ct, "text/xml;charset=UTF-8");
    let head = "<?xml version=\"1.0\" ?>\n<status>\n<pool>www</pool>\n<process-manager>dynamic</process-manager>\n\
                <start-time>1700000000</start-time>\n<start-since>3600</start-since>\n\
                <accepted-conn>1234</accepted-conn>\n<listen-queue>1</listen-queue>\n\
                <max-listen-queue>7</max-listen-queue>\n<listen-queue-len>511</listen-queue-len>\n\
                <idle-processes>1</idle-processes>\n<active-processes>1</active-processes>\n\
                <total-processes>2</total-processes>\n<max-active-processes>2</max-active-processes>\n\
                <max-children-reached>3</max-children-reached>\n<slow-requests>4</slow-requests>\n";
    assert_eq!(short, format!("{head}</status>"));

    let (_, full) = render(&sample(), Format::Xml, true, now());
    let expected = format!(
        "{head}<processes>\n\
         <process><pid>101</pid><state>Running</state><start-time>1700000010</start-time>\
         <start-since>3590</start-since><requests>5</requests><request-duration>1234567</request-duration>\
         <request-method>POST</request-method>\
         <request-uri>/a&quot;b\\c/d?x=&lt;1&gt;&amp;y='é😀'\n\t\u{fffd}</request-uri>\
         <content-length>42</content-length><user>bob</user><script>/srv/www/index.php</script>\
         <last-request-cpu>0.00</last-request-cpu><last-request-memory>0</last-request-memory></process>\n\
         <process><pid>102</pid><state>Idle</state><start-time>{}</start-time><start-since>0</start-since>\
         <requests>0</requests><request-duration>0</request-duration><request-method>-</request-method>\
         <request-uri>-</request-uri><content-length>0</content-length><user>-</user><script>-</script>\
         <last-request-cpu>12.50</last-request-cpu><last-request-memory>2097152</last-request-memory>\
         </process>\n</processes>\n</status>",
        unix_secs(now())
    );
    assert_eq!(full, expected);
}

#[test]
fn html_short_and_full() {
    let (ct, short) = render(&sample(), Format::Html, false, now());
    assert_eq!(ct, "text/html;charset=UTF-8");
    let head = format!(
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \
         \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n\
         <head><title>PHP-FPM Status Page</title></head>\n<body>\n<table>\n\
         <tr><th>pool</th><td>www</td></tr>\n\
         <tr><th>process manager</th><td>dynamic</td></tr>\n\
         <tr><th>start time</th><td>{}</td></tr>\n\
         <tr><th>start since</th><td>3600</td></tr>\n\
         <tr><th>accepted conn</th><td>1234</td></tr>\n\
         <tr><th>listen queue</th><td>1</td></tr>\n\
         <tr><th>max listen queue</th><td>7</td></tr>\n\
         <tr><th>listen queue len</th><td>511</td></tr>\n\
         <tr><th>idle processes</th><td>1</td></tr>\n\
         <tr><th>active processes</th><td>1</td></tr>\n\
         <tr><th>total processes</th><td>2</td></tr>\n\
         <tr><th>max active processes</th><td>2</td></tr>\n\
         <tr><th>max children reached</th><td>3</td></tr>\n\
         <tr><th>slow requests</th><td>4</td></tr>\n\
         </table>\n",
        local_time(at(START))
    );
    assert_eq!(short, format!("{head}</body></html>"));

    let (_, full) = render(&sample(), Format::Html, true, now());
    let expected = format!(
        "{head}<table border=\"1\">\n<tr><th>pid</th><th>state</th><th>start time</th><th>start since</th>\
         <th>requests</th><th>request duration</th><th>request method</th><th>request uri</th>\
         <th>content length</th><th>user</th><th>script</th><th>last request cpu</th>\
         <th>last request memory</th></tr>\n\
         <tr><td>101</td><td>Running</td><td>{}</td><td>3590</td><td>5</td><td>1234567</td><td>POST</td>\
         <td>/a&quot;b\\c/d?x=&lt;1&gt;&amp;y='é😀'\n\t\u{fffd}</td><td>42</td><td>bob</td>\
         <td>/srv/www/index.php</td><td>0.00</td><td>0</td></tr>\n\
         <tr><td>102</td><td>Idle</td><td>{}</td><td>0</td><td>0</td><td>0</td><td>-</td><td>-</td>\
         <td>0</td><td>-</td><td>-</td><td>12.50</td><td>2097152</td></tr>\n\
         </table></body></html>",
        local_time(at(START + 10)),
        local_time(now()),
    );
    assert_eq!(full, expected);
}

#[test]
fn markup_escapes_every_special_character_in_every_field() {
    let mut status = sample();
    status.pool = "<p&\"o'>".into();
    let p = &mut status.processes[1];
    p.request_method = "<M>".into();
    p.user = "a&b".into();
    p.script = "/x\"y<z>.php".into();
    for format in [Format::Xml, Format::Html] {
        for full in [false, true] {
            let (_, body) = render(&status, format, full, now());
            assert!(body.contains("&lt;p&amp;&quot;o'&gt;"), "{format:?}: {body}");
            assert!(!body.contains("<p&") && !body.contains("\"o'"), "{format:?}: {body}");
            if full {
                for escaped in ["&lt;M&gt;", "a&amp;b", "/x&quot;y&lt;z&gt;.php", "&lt;1&gt;&amp;y="] {
                    assert!(body.contains(escaped), "{format:?} lacks {escaped}: {body}");
                }
            }
            // Every `&` starts one of the four entities.
            for (i, _) in body.match_indices('&') {
                let rest = &body[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;"].iter().any(|e| rest.starts_with(e)),
                    "{format:?}: bare & at {i}: {body}"
                );
            }
            assert!(!body.contains('\u{1}'));
        }
    }
    assert_eq!(Markup("<&>\"'é\t\u{0}").to_string(), "&lt;&amp;&gt;&quot;'é\t\u{fffd}");
}

#[test]
fn openmetrics_as_php_fpm_8_2() {
    let (ct, body) = render(&sample(), Format::OpenMetrics, false, now());
    assert_eq!(ct, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let expected = "# HELP phpfpm_up Could pool www using a dynamic PM on PHP-FPM be reached?\n\
# TYPE phpfpm_up gauge\n\
phpfpm_up 1\n\
# HELP phpfpm_start_since The number of seconds since FPM has started.\n\
# TYPE phpfpm_start_since counter\n\
phpfpm_start_since 3600\n\
# HELP phpfpm_accepted_connections The number of requests accepted by the pool.\n\
# TYPE phpfpm_accepted_connections counter\n\
phpfpm_accepted_connections 1234\n\
# HELP phpfpm_listen_queue The number of requests in the queue of pending connections.\n\
# TYPE phpfpm_listen_queue gauge\n\
phpfpm_listen_queue 1\n\
# HELP phpfpm_max_listen_queue The maximum number of requests in the queue of pending connections since FPM has started.\n\
# TYPE phpfpm_max_listen_queue counter\n\
phpfpm_max_listen_queue 7\n\
# TYPE phpfpm_listen_queue_length gauge\n\
# HELP phpfpm_listen_queue_length The size of the socket queue of pending connections.\n\
phpfpm_listen_queue_length 511\n\
# HELP phpfpm_idle_processes The number of idle processes.\n\
# TYPE phpfpm_idle_processes gauge\n\
phpfpm_idle_processes 1\n\
# HELP phpfpm_active_processes The number of active processes.\n\
# TYPE phpfpm_active_processes gauge\n\
phpfpm_active_processes 1\n\
# HELP phpfpm_total_processes The number of idle + active processes.\n\
# TYPE phpfpm_total_processes gauge\n\
phpfpm_total_processes 2\n\
# HELP phpfpm_max_active_processes The maximum number of active processes since FPM has started.\n\
# TYPE phpfpm_max_active_processes counter\n\
phpfpm_max_active_processes 2\n\
# HELP phpfpm_max_children_reached The number of times, the process limit has been reached, when pm tries to start more children (works only for pm 'dynamic' and 'ondemand').\n\
# TYPE phpfpm_max_children_reached counter\n\
phpfpm_max_children_reached 3\n\
# HELP phpfpm_slow_requests The number of requests that exceeded your 'request_slowlog_timeout' value.\n\
# TYPE phpfpm_slow_requests counter\n\
phpfpm_slow_requests 4\n\
# EOF\n";
    assert_eq!(body, expected);
    // php-fpm has no per-process metrics: `full` is the same page.
    assert_eq!(render(&sample(), Format::OpenMetrics, true, now()).1, expected);

    let mut odd = sample();
    odd.pool = "a\\b\"c\nd".into();
    let (_, body) = render(&odd, Format::OpenMetrics, false, now());
    assert!(body.starts_with("# HELP phpfpm_up Could pool a\\\\b\\\"c\\nd using a dynamic PM"), "{body}");
    assert_eq!(body.lines().count(), expected.lines().count());
}

#[test]
fn start_since_never_negative_and_unknown_start_is_now() {
    let mut status = sample();
    status.start_time = now() + Duration::from_secs(5);
    let (_, body) = render(&status, Format::Json, true, now());
    assert!(body.contains("\"start since\":0,\"accepted conn\""), "{body}");
    let second = &parse_json(&body)["processes"][1];
    assert_eq!(second["start time"], unix_secs(now()));
    assert_eq!(second["start since"], 0);
}

#[test]
fn empty_process_list_in_full() {
    let mut status = sample();
    status.processes.clear();
    assert!(render(&status, Format::Json, true, now()).1.ends_with(", \"processes\":[]}"));
    assert!(render(&status, Format::Xml, true, now()).1.ends_with("<processes>\n</processes>\n</status>"));
    assert_eq!(render(&status, Format::Text, true, now()).1, expected_text_head());
    assert!(parse_json(&render(&status, Format::Json, true, now()).1).is_object());
}

#[test]
fn unix_seconds_round_down() {
    assert_eq!(unix_secs(UNIX_EPOCH), 0);
    assert_eq!(unix_secs(at(START) + Duration::from_millis(999)), START as i64);
    assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(500)), -1);
    assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(2)), -2);
    assert_eq!(since(at(START), at(START + 3600) + Duration::from_millis(999)), 3600);
}

/// The local time agrees with the UTC instant once its own `%z` offset
/// is applied, and has strftime's `%d/%b/%Y:%H:%M:%S %z` shape.
#[test]
fn local_time_is_php_fpms_strftime() {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    for secs in [0, 86_399, 951_782_400, 1_700_000_000, 1_709_251_199, 4_102_444_800] {
        let text = local_time(at(secs));
        let b = text.as_bytes();
        assert_eq!(b.len(), 26, "{text}");
        assert_eq!((b[2], b[6], b[11], b[14], b[17], b[20]), (b'/', b'/', b':', b':', b':', b' '), "{text}");
        let num = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
        let (day, year, hour, min, sec) = (num(0..2), num(7..11), num(12..14), num(15..17), num(18..20));
        let month = MONTHS.iter().position(|m| *m == &text[3..6]).unwrap() as i64 + 1;
        let sign = match b[21] {
            b'+' => 1,
            b'-' => -1,
            other => panic!("sign {other}"),
        };
        let offset = sign * (num(22..24) * 3600 + num(24..26) * 60);
        let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
        assert_eq!(local - offset, secs as i64, "{text}");
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a rendered JSON page with a real JSON parser, keeping key order.
fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().expect("an object").keys().map(String::as_str).collect()
}
