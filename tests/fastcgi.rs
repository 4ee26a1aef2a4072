//! FastCGI spoken to rustfpm directly (no nginx): through the fastcgi-client
//! crate, and byte by byte for management records and malformed input. The
//! record encoder here is written by hand so the tests do not depend on
//! rustfpm's own codec.

mod common;
use common::*;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

// ------------------------------------------------------- record encoding

const FCGI_BEGIN_REQUEST: u8 = 1;
const FCGI_END_REQUEST: u8 = 3;
const FCGI_PARAMS: u8 = 4;
const FCGI_STDIN: u8 = 5;
const FCGI_STDOUT: u8 = 6;
const FCGI_STDERR: u8 = 7;
const FCGI_GET_VALUES: u8 = 9;
const FCGI_GET_VALUES_RESULT: u8 = 10;
const FCGI_UNKNOWN_TYPE: u8 = 11;
const FCGI_RESPONDER: u16 = 1;
const FCGI_KEEP_CONN: u8 = 1;
/// How long any single read may take before the test calls it a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One record with version 1, padded to a multiple of 8 bytes.
fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    record_v(1, kind, id, content)
}

fn record_v(version: u8, kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    assert!(content.len() <= 0xffff);
    let padding = (8 - content.len() % 8) % 8;
    let mut out = Vec::with_capacity(8 + content.len() + padding);
    out.push(version);
    out.push(kind);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.push(padding as u8);
    out.push(0);
    out.extend_from_slice(content);
    out.resize(out.len() + padding, 0);
    out
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes());
    }
}

/// One name-value pair.
fn pair(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_len(&mut out, name.len());
    push_len(&mut out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    out
}

fn begin_request(id: u16, keep_conn: bool) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&FCGI_RESPONDER.to_be_bytes());
    body.push(if keep_conn { FCGI_KEEP_CONN } else { 0 });
    body.extend_from_slice(&[0; 5]);
    record(FCGI_BEGIN_REQUEST, id, &body)
}

/// A stream (PARAMS, STDIN) split into records of at most `chunk` bytes,
/// without the empty record that ends it.
fn stream_records(kind: u8, id: u16, bytes: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.min(0xffff)) {
        out.extend(record(kind, id, piece));
    }
    out
}

/// The CGI params of a GET for `script` in the site's docroot.
fn cgi_params(site: &Site, script: &str, query: &str) -> Vec<u8> {
    cgi_params_with(site, script, query, "GET", "")
}

/// The CGI params of a request with `method` and `content_length`.
fn cgi_params_with(site: &Site, script: &str, query: &str, method: &str, content_length: &str) -> Vec<u8> {
    let filename = site.www().join(script);
    let uri = if query.is_empty() { format!("/{script}") } else { format!("/{script}?{query}") };
    let mut out = Vec::new();
    for (k, v) in [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "rustfpm-test"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_METHOD", method),
        ("SCRIPT_FILENAME", filename.to_str().unwrap()),
        ("SCRIPT_NAME", &format!("/{script}")),
        ("DOCUMENT_ROOT", site.www().to_str().unwrap()),
        ("REQUEST_URI", &uri),
        ("DOCUMENT_URI", &format!("/{script}")),
        ("QUERY_STRING", query),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "40000"),
        ("SERVER_ADDR", "127.0.0.1"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "localhost"),
        ("CONTENT_LENGTH", content_length),
        ("CONTENT_TYPE", "application/octet-stream"),
    ] {
        out.extend(pair(k.as_bytes(), v.as_bytes()));
    }
    out
}

/// A complete request: BEGIN_REQUEST, PARAMS, empty PARAMS, empty STDIN.
fn request(site: &Site, id: u16, keep_conn: bool, script: &str, query: &str) -> Vec<u8> {
    let mut out = begin_request(id, keep_conn);
    out.extend(stream_records(FCGI_PARAMS, id, &cgi_params(site, script, query), 0xffff));
    out.extend(record(FCGI_PARAMS, id, b""));
    out.extend(record(FCGI_STDIN, id, b""));
    out
}

// ------------------------------------------------------- record decoding

#[derive(Debug)]
struct Rec {
    kind: u8,
    id: u16,
    content: Vec<u8>,
}

/// Reads one record; Ok(None) on a clean EOF before its first byte.
async fn read_record(s: &mut UnixStream) -> std::io::Result<Option<Rec>> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        let n = timeout(IO_TIMEOUT, s.read(&mut head[got..]))
            .await
            .map_err(|_| std::io::Error::other("timed out reading a record header"))??;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) };
        }
        got += n;
    }
    assert_eq!(head[0], 1, "rustfpm sent a record with version {}", head[0]);
    let len = u16::from_be_bytes([head[4], head[5]]) as usize;
    let padding = head[6] as usize;
    let mut body = vec![0u8; len + padding];
    timeout(IO_TIMEOUT, s.read_exact(&mut body))
        .await
        .map_err(|_| std::io::Error::other("timed out reading a record body"))??;
    body.truncate(len);
    Ok(Some(Rec { kind: head[1], id: u16::from_be_bytes([head[2], head[3]]), content: body }))
}

/// A response read up to its END_REQUEST.
#[derive(Debug, Default)]
struct Reply {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    app_status: u32,
    protocol_status: u8,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn body(&self) -> String {
        let t = self.text();
        match t.split_once("\r\n\r\n") {
            Some((_, body)) => body.to_string(),
            None => t,
        }
    }
}

async fn read_reply(s: &mut UnixStream, id: u16) -> Result<Reply, String> {
    let mut reply = Reply::default();
    loop {
        let rec = match read_record(s).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(format!("connection closed before END_REQUEST (stdout so far: {:?})", reply.text()))
            }
            Err(e) => return Err(format!("{e} (stdout so far: {:?})", reply.text())),
        };
        if rec.id != id {
            return Err(format!("record for request id {} while waiting for {id}: {rec:?}", rec.id));
        }
        match rec.kind {
            FCGI_STDOUT => reply.stdout.extend(rec.content),
            FCGI_STDERR => reply.stderr.extend(rec.content),
            FCGI_END_REQUEST => {
                let c = &rec.content;
                reply.app_status = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                reply.protocol_status = c[4];
                return Ok(reply);
            }
            other => return Err(format!("unexpected record type {other}: {rec:?}")),
        }
    }
}

fn parse_pairs(mut b: &[u8]) -> Vec<(String, String)> {
    fn len(b: &mut &[u8]) -> usize {
        if b[0] & 0x80 == 0 {
            let n = b[0] as usize;
            *b = &b[1..];
            n
        } else {
            let n = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]) as usize;
            *b = &b[4..];
            n
        }
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = len(&mut b);
        let v = len(&mut b);
        let name = String::from_utf8_lossy(&b[..n]).into_owned();
        let value = String::from_utf8_lossy(&b[n..n + v]).into_owned();
        b = &b[n + v..];
        out.push((name, value));
    }
    out
}

/// Reads (and discards) until the peer closes. Ok(bytes) on EOF or a reset;
/// Err if the connection stays open for `IO_TIMEOUT`.
async fn read_until_closed(s: &mut UnixStream) -> Result<Vec<u8>, String> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match timeout(IO_TIMEOUT, s.read(&mut buf)).await {
            Err(_) => {
                return Err(format!(
                    "connection still open after {IO_TIMEOUT:?} ({} bytes received: {:?})",
                    all.len(),
                    String::from_utf8_lossy(&all[..all.len().min(200)])
                ))
            }
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(all),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Splits raw bytes into records (for checking what arrived before a close).
fn split_records(mut b: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    while b.len() >= 8 {
        let len = u16::from_be_bytes([b[4], b[5]]) as usize;
        let total = 8 + len + b[6] as usize;
        if b.len() < 8 + len {
            break;
        }
        out.push(Rec { kind: b[1], id: u16::from_be_bytes([b[2], b[3]]), content: b[8..8 + len].to_vec() });
        b = &b[total.min(b.len())..];
    }
    out
}

// ------------------------------------------------------- shared checks

async fn connect(fpm: &Rustfpm) -> UnixStream {
    UnixStream::connect(&fpm.socket).await.expect("connect to rustfpm")
}

/// One hello.php request on a fresh connection must succeed.
async fn assert_serves(site: &Site, fpm: &Rustfpm, what: &str) {
    let mut s = connect(fpm).await;
    s.write_all(&request(site, 1, false, "hello.php", "")).await.unwrap();
    let reply = read_reply(&mut s, 1).await.unwrap_or_else(|e| panic!("hello.php {what}: {e}"));
    assert_eq!(reply.body(), "Hello, world\n", "hello.php {what}: {reply:?}");
}

/// Twice as many requests as the default pool's workers, each on its own connection, all
/// served; and no panic in the log.
async fn assert_every_worker_serves(site: &Site, fpm: &Rustfpm, what: &str) {
    for i in 0..8 {
        assert_serves(site, fpm, &format!("#{i} {what}")).await;
    }
    assert_no_panic(fpm);
}

fn assert_no_panic(fpm: &Rustfpm) {
    let log = fpm.log_text();
    assert!(!log.contains("panicked"), "rustfpm panicked:\n{log}");
}

/// `count` requests over ONE kept-alive raw connection, each to
/// fcgi_echo.php with its own query; returns the failures.
async fn keepalive_requests(site: &Site, fpm: &Rustfpm, count: usize) -> Vec<String> {
    let mut s = connect(fpm).await;
    let mut failures = Vec::new();
    for i in 0..count {
        let id = (i % 7 + 1) as u16;
        if let Err(e) = s.write_all(&request(site, id, true, "fcgi_echo.php", &format!("id={i}"))).await {
            failures.push(format!("#{i}: write: {e}"));
            break;
        }
        match read_reply(&mut s, id).await {
            Ok(r) if r.body() == format!("id={i} body=0\n") => {}
            Ok(r) => failures.push(format!("#{i}: {:?}", r.text())),
            Err(e) => {
                failures.push(format!("#{i}: {e}"));
                break;
            }
        }
    }
    failures
}

// ------------------------------------------------------- fastcgi-client

/// tokio's UnixStream seen through the futures-io traits the crate uses.
struct Compat(UnixStream);

impl fastcgi_client::io::AsyncRead for Compat {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let mut rb = tokio::io::ReadBuf::new(buf);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fastcgi_client::io::AsyncWrite for Compat {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}

fn crate_params<'a>(site: &Site, script: &'a str, query: &'a str) -> fastcgi_client::Params<'a> {
    let filename = site.www().join(script).to_str().unwrap().to_string();
    let uri = format!("/{script}?{query}");
    fastcgi_client::Params::default()
        .request_method("GET")
        .script_name(format!("/{script}"))
        .script_filename(filename)
        .document_root(site.www().to_str().unwrap().to_string())
        .request_uri(uri.clone())
        .document_uri(format!("/{script}"))
        .query_string(query)
        .remote_addr("127.0.0.1")
        .remote_port(40000)
        .server_addr("127.0.0.1")
        .server_port(80)
        .server_name("localhost")
        .content_type("")
        .content_length(0)
}

#[tokio::test]
async fn fastcgi_client_crate_gets_hello() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let client = fastcgi_client::Client::new(Compat(connect(&fpm).await));
    let out = timeout(
        IO_TIMEOUT,
        client.execute_once(fastcgi_client::Request::new(
            crate_params(&site, "hello.php", ""),
            fastcgi_client::io::empty(),
        )),
    )
    .await
    .expect("request timed out")
    .expect("fastcgi-client request to hello.php");
    let stdout = String::from_utf8_lossy(out.stdout.as_deref().unwrap_or_default()).into_owned();
    assert!(stdout.contains("Hello, world"), "{stdout:?}");
    assert!(stdout.to_ascii_lowercase().contains("content-type"), "{stdout:?}");
    assert_no_panic(&fpm);
}

#[tokio::test]
async fn fastcgi_client_crate_keep_alive_50_requests_on_one_connection() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let mut client = fastcgi_client::Client::new_keep_alive(Compat(connect(&fpm).await));
    for i in 0..50 {
        let query = format!("id={i}");
        let out = timeout(
            IO_TIMEOUT,
            client.execute(fastcgi_client::Request::new(
                crate_params(&site, "fcgi_echo.php", &query),
                fastcgi_client::io::empty(),
            )),
        )
        .await
        .unwrap_or_else(|_| panic!("keep-alive request {i} timed out"))
        .unwrap_or_else(|e| {
            panic!(
                "keep-alive request {i} on the same connection: {e}. (The crate ends each \
                 body with two empty STDIN records; if rustfpm's log says \"unexpected record \
                 before the request head was complete\", rustfpm rejected the second one, \
                 which php-fpm skips; see the rustfpm log below.)"
            )
        });
        let stdout = String::from_utf8_lossy(out.stdout.as_deref().unwrap_or_default()).into_owned();
        assert!(stdout.ends_with(&format!("\r\n\r\nid={i} body=0\n")), "request {i}: {stdout:?}");
    }
    assert_no_panic(&fpm);
}

// ------------------------------------------------------- raw records

#[tokio::test]
async fn get_values_answers_the_known_names_only() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let mut s = connect(&fpm).await;
    let mut query = Vec::new();
    for name in ["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS", "RUSTFPM_NO_SUCH_VALUE"] {
        query.extend(pair(name.as_bytes(), b""));
    }
    s.write_all(&record(FCGI_GET_VALUES, 0, &query)).await.unwrap();
    let rec = read_record(&mut s)
        .await
        .expect("reading GET_VALUES_RESULT")
        .expect("rustfpm closed the connection instead of answering GET_VALUES");
    assert_eq!(rec.kind, FCGI_GET_VALUES_RESULT, "{rec:?}");
    assert_eq!(rec.id, 0, "management records use request id 0");
    let pairs = parse_pairs(&rec.content);
    let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    for known in ["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"] {
        assert!(names.contains(&known), "{known} missing from {pairs:?}");
    }
    assert!(!names.contains(&"RUSTFPM_NO_SUCH_VALUE"), "unknown name answered: {pairs:?}");
    for (name, value) in &pairs {
        assert!(!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()), "{name} = {value:?}");
    }
    let mpxs = pairs.iter().find(|(n, _)| n == "FCGI_MPXS_CONNS").unwrap();
    assert_eq!(mpxs.1, "0", "rustfpm does not multiplex");
    // The connection still serves a request afterwards.
    s.write_all(&request(&site, 1, false, "hello.php", "")).await.unwrap();
    let reply = read_reply(&mut s, 1).await.expect("request after GET_VALUES");
    assert_eq!(reply.body(), "Hello, world\n");
    assert_no_panic(&fpm);
}

#[tokio::test]
async fn unknown_record_type_gets_unknown_type() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let mut s = connect(&fpm).await;
    s.write_all(&record(42, 0, b"whatever")).await.unwrap();
    let rec = read_record(&mut s)
        .await
        .expect("reading UNKNOWN_TYPE")
        .expect("rustfpm closed the connection instead of answering UNKNOWN_TYPE");
    assert_eq!(rec.kind, FCGI_UNKNOWN_TYPE, "{rec:?}");
    assert_eq!(rec.id, 0);
    assert_eq!(rec.content.len(), 8, "UNKNOWN_TYPE body is 8 bytes: {rec:?}");
    assert_eq!(rec.content[0], 42, "{rec:?}");
    // And the connection is still usable.
    s.write_all(&request(&site, 1, true, "hello.php", "")).await.unwrap();
    let reply = read_reply(&mut s, 1).await.expect("request after UNKNOWN_TYPE");
    assert_eq!(reply.body(), "Hello, world\n");
    assert_no_panic(&fpm);
}

#[tokio::test]
async fn malformed_input_closes_only_that_connection() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let mut begin3 = record(FCGI_BEGIN_REQUEST, 1, &[0, 1, 0]);
    begin3.extend(record(FCGI_PARAMS, 1, b""));
    let mut version2 = record_v(2, FCGI_BEGIN_REQUEST, 1, &[0, 1, 1, 0, 0, 0, 0, 0]);
    version2.extend(record_v(2, FCGI_PARAMS, 1, b""));
    let garbage = b"GET /hello.php HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    let mut random = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        random.push((x >> 24) as u8);
    }
    random[0] = 0xff; // not version 1
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("version byte 2", version2),
        ("BEGIN_REQUEST with a 3-byte body", begin3),
        ("an HTTP request", garbage),
        ("random bytes", random),
    ];

    let bad = async {
        let mut problems = Vec::new();
        for round in 0..5 {
            for (what, bytes) in &cases {
                let mut s = connect(&fpm).await;
                let _ = s.write_all(bytes).await;
                match read_until_closed(&mut s).await {
                    Ok(_) => {}
                    Err(e) => problems.push(format!("round {round}, {what}: {e}")),
                }
            }
        }
        problems
    };
    // Meanwhile a good kept-alive connection serves 100 requests.
    let (problems, failures) = tokio::join!(bad, keepalive_requests(&site, &fpm, 100));
    assert!(problems.is_empty(), "rustfpm did not close connections that sent malformed FastCGI: {problems:?}");
    assert!(failures.is_empty(), "a good connection failed while others sent garbage: {failures:?}");
    assert_serves(&site, &fpm, "after the malformed connections").await;
    assert_no_panic(&fpm);
}

#[tokio::test]
async fn oversized_params_get_431_and_close() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let mut params = cgi_params(&site, "hello.php", "");
    params.extend(pair(b"HTTP_X_HUGE", &vec![b'a'; 300_000]));
    let mut bytes = begin_request(1, true);
    bytes.extend(stream_records(FCGI_PARAMS, 1, &params, 65535));
    bytes.extend(record(FCGI_PARAMS, 1, b""));
    bytes.extend(record(FCGI_STDIN, 1, b""));

    let s = connect(&fpm).await;
    let (mut rd, mut wr) = s.into_split();
    // Write from a task: rustfpm may stop reading (and close) midway.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        wr
    });
    let good = keepalive_requests(&site, &fpm, 20);
    let read = async {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match timeout(IO_TIMEOUT, rd.read(&mut buf)).await {
                Err(_) => break Err(all),
                Ok(Ok(0)) | Ok(Err(_)) => break Ok(all),
                Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    let (result, failures) = tokio::join!(read, good);
    let wr = writer.await.unwrap();
    drop(wr);
    let (closed, all) = match result {
        Ok(all) => (true, all),
        Err(all) => (false, all),
    };
    let recs = split_records(&all);
    let stdout: Vec<u8> = recs.iter().filter(|r| r.kind == FCGI_STDOUT).flat_map(|r| r.content.clone()).collect();
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        stdout.contains("Status: 431"),
        "300 KB of params should get a 431 on STDOUT; got records {:?}",
        recs.iter().map(|r| (r.kind, r.id, r.content.len())).collect::<Vec<_>>()
    );
    assert!(closed, "rustfpm should close the connection after the 431 (still open after {IO_TIMEOUT:?})");
    assert!(failures.is_empty(), "another connection failed meanwhile: {failures:?}");
    assert_serves(&site, &fpm, "after the oversized request").await;
    assert_no_panic(&fpm);
}

#[tokio::test]
async fn second_begin_request_before_the_head_is_complete_closes_the_connection() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let mut other = connect(&fpm).await;
    other.write_all(&request(&site, 1, true, "hello.php", "")).await.unwrap();
    assert_eq!(read_reply(&mut other, 1).await.unwrap().body(), "Hello, world\n");

    let mut s = connect(&fpm).await;
    let mut bytes = begin_request(1, true);
    bytes.extend(stream_records(FCGI_PARAMS, 1, &cgi_params(&site, "hello.php", ""), 0xffff));
    // No empty PARAMS yet: request 1 is pending. Another BEGIN_REQUEST:
    bytes.extend(request(&site, 2, true, "hello.php", ""));
    s.write_all(&bytes).await.unwrap();
    let got =
        read_until_closed(&mut s).await.unwrap_or_else(|e| panic!("a second BEGIN_REQUEST while one is pending: {e}"));
    let recs = split_records(&got);
    assert!(recs.iter().all(|r| r.kind != FCGI_STDOUT), "neither request may run: {recs:?}");

    // The other connection is undisturbed.
    other.write_all(&request(&site, 3, true, "hello.php", "")).await.unwrap();
    assert_eq!(read_reply(&mut other, 3).await.unwrap().body(), "Hello, world\n");
    assert_serves(&site, &fpm, "after the multiplexing attempt").await;
    assert_no_panic(&fpm);
}

#[tokio::test]
async fn second_begin_request_while_the_body_is_pending_closes_the_connection() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let mut other = connect(&fpm).await;
    other.write_all(&request(&site, 1, true, "hello.php", "")).await.unwrap();
    assert_eq!(read_reply(&mut other, 1).await.unwrap().body(), "Hello, world\n");

    // Request 1 announces a 10-byte body and sends 3: the script blocks
    // reading php://input. Then a BEGIN_REQUEST for request 2 arrives.
    let mut s = connect(&fpm).await;
    let mut bytes = begin_request(1, true);
    bytes.extend(stream_records(
        FCGI_PARAMS,
        1,
        &cgi_params_with(&site, "fcgi_echo.php", "id=1", "POST", "10"),
        0xffff,
    ));
    bytes.extend(record(FCGI_PARAMS, 1, b""));
    bytes.extend(record(FCGI_STDIN, 1, b"abc"));
    s.write_all(&bytes).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = s.write_all(&request(&site, 2, true, "hello.php", "")).await;
    let got = read_until_closed(&mut s)
        .await
        .unwrap_or_else(|e| panic!("BEGIN_REQUEST 2 while request 1's body is pending: {e}"));
    let recs = split_records(&got);
    assert!(recs.iter().all(|r| r.id != 2 || r.kind == FCGI_END_REQUEST), "request 2 must not run: {recs:?}");

    other.write_all(&request(&site, 3, true, "hello.php", "")).await.unwrap();
    assert_eq!(read_reply(&mut other, 3).await.unwrap().body(), "Hello, world\n");
    // The child that served request 1 is usable again (or replaced): every
    // one of the 4 workers keeps serving.
    assert_every_worker_serves(&site, &fpm, "after the multiplexing attempt").await;
}

/// A BEGIN_REQUEST sent while request 1 runs (its head and body complete):
/// rustfpm does not multiplex. Request 2 may be refused (END_REQUEST
/// FCGI_CANT_MPX_CONN), the connection closed, or request 2 served after
/// request 1 has ended; its records must never interleave with request 1's.
#[tokio::test]
async fn begin_request_while_a_request_runs_is_never_interleaved() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let mut s = connect(&fpm).await;
    s.write_all(&request(&site, 1, true, "lc_sleep.php", "name=run&ms=500&bytes=70000")).await.unwrap();
    let marker = site.scratch().join("run");
    assert!(wait_until(Duration::from_secs(10), || marker.exists()));
    s.write_all(&request(&site, 2, true, "hello.php", "")).await.unwrap();
    let mut recs = Vec::new();
    let mut ended = [false; 3];
    while !(ended[1] && ended[2]) {
        match read_record(&mut s).await {
            Ok(Some(r)) => {
                if r.kind == FCGI_END_REQUEST && (r.id as usize) < 3 {
                    ended[r.id as usize] = true;
                }
                recs.push(r);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let summary: Vec<(u8, u16, usize)> = recs.iter().map(|r| (r.kind, r.id, r.content.len())).collect();
    let end1 = recs
        .iter()
        .position(|r| r.id == 1 && r.kind == FCGI_END_REQUEST)
        .unwrap_or_else(|| panic!("request 1 never ended: {summary:?}"));
    let stdout1: Vec<u8> =
        recs[..end1].iter().filter(|r| r.id == 1 && r.kind == FCGI_STDOUT).flat_map(|r| r.content.clone()).collect();
    assert!(
        stdout1.ends_with(&[vec![b'x'; 70000], b"END\n".to_vec()].concat()),
        "request 1's response is incomplete: {summary:?}"
    );
    assert!(recs[..end1].iter().all(|r| r.id == 1), "records of request 2 interleaved with request 1: {summary:?}");
    assert_no_panic(&fpm);
    assert_serves(&site, &fpm, "afterwards").await;
}

/// Some FastCGI clients shut their writing side once the request is sent
/// (`shutdown(SHUT_WR)`) and read the answer: php-fpm answers them. So must
/// rustfpm, whether the request runs at once or waits for a worker, while a
/// client that closes still gives its waiting request up.
#[tokio::test]
async fn a_client_that_shuts_its_writing_side_gets_its_answer() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..Default::default() });
    // Running: the child has the request when the client shuts its side.
    let mut running = connect(&fpm).await;
    running.write_all(&request(&site, 1, false, "lc_sleep.php", "name=first&ms=400")).await.unwrap();
    let marker = site.scratch().join("first");
    assert!(wait_until(Duration::from_secs(10), || marker.exists()), "the first request never ran");
    running.shutdown().await.unwrap();
    // Waiting: the only child is busy with the first.
    let mut waiting = connect(&fpm).await;
    waiting.write_all(&request(&site, 2, true, "hello.php", "")).await.unwrap();
    waiting.shutdown().await.unwrap();
    // Closed while waiting: given up, never run.
    let mut closed = connect(&fpm).await;
    closed.write_all(&request(&site, 3, false, "lc_sleep.php", "name=never&ms=1")).await.unwrap();
    drop(closed);
    let first = read_reply(&mut running, 1).await.unwrap_or_else(|e| panic!("the running request: {e}"));
    assert_eq!(first.body(), "END\n", "{first:?}");
    let second = read_reply(&mut waiting, 2).await.unwrap_or_else(|e| panic!("the waiting request: {e}"));
    assert_eq!(second.body(), "Hello, world\n", "{second:?}");
    // Both connections end once answered: the clients send nothing more.
    read_until_closed(&mut running).await.unwrap();
    read_until_closed(&mut waiting).await.unwrap();
    assert_serves(&site, &fpm, "afterwards").await;
    assert!(!site.scratch().join("never").exists(), "a request whose client closed was run");
    assert_no_panic(&fpm);
}

/// BEGIN_REQUEST with `role` (1 responder, 2 authorizer, 3 filter, others unknown).
fn begin_with_role(id: u16, role: u16, keep_conn: bool) -> Vec<u8> {
    let mut body = role.to_be_bytes().to_vec();
    body.push(if keep_conn { FCGI_KEEP_CONN } else { 0 });
    body.extend_from_slice(&[0; 5]);
    record(FCGI_BEGIN_REQUEST, id, &body)
}

/// A request head (BEGIN_REQUEST and PARAMS with their empty record), no body records.
fn head_only(site: &Site, id: u16, keep_conn: bool, script: &str, method: &str, content_length: &str) -> Vec<u8> {
    let mut out = begin_request(id, keep_conn);
    out.extend(record(FCGI_PARAMS, id, &cgi_params_with(site, script, "", method, content_length)));
    out.extend(record(FCGI_PARAMS, id, b""));
    out
}

/// Conversations that nginx never holds and other FastCGI clients do (Apache's
/// mod_authnz_fcgi, small libraries, clients out of step), each answered as
/// php-fpm answers it, or better where php-fpm resets: never a connection
/// closed on a request that could be answered, never one held open for nothing.
#[tokio::test]
async fn what_other_clients_send_is_answered_as_php_fpm_answers_it() {
    const FCGI_ABORT_REQUEST: u8 = 2;
    const FCGI_UNKNOWN_ROLE: u8 = 3;
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let server_var = |reply: &Reply, name: &str| {
        let text = reply.body();
        let line = text.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).map(str::to_string);
        line.unwrap_or_else(|| panic!("no {name} in {text:?}"))
    };

    // The authorizer and filter roles run the script, as php-fpm runs it, with FCGI_ROLE.
    for (role, name) in [(2u16, "AUTHORIZER"), (3, "FILTER")] {
        let mut s = connect(&fpm).await;
        let mut bytes = begin_with_role(1, role, true);
        bytes.extend(record(FCGI_PARAMS, 1, &cgi_params(&site, "http_server.php", "")));
        bytes.extend(record(FCGI_PARAMS, 1, b""));
        bytes.extend(record(FCGI_STDIN, 1, b""));
        s.write_all(&bytes).await.unwrap();
        let reply = read_reply(&mut s, 1).await.unwrap_or_else(|e| panic!("role {name}: {e}"));
        assert_eq!(server_var(&reply, "FCGI_ROLE"), name);
    }

    // An unknown role sent with its params: FCGI_UNKNOWN_ROLE, then the close keep_conn=0 asks for.
    let mut s = connect(&fpm).await;
    let mut bytes = begin_with_role(1, 9, false);
    bytes.extend(record(FCGI_PARAMS, 1, &cgi_params(&site, "hello.php", "")));
    s.write_all(&bytes).await.unwrap();
    let recs = split_records(&read_until_closed(&mut s).await.expect("closed after FCGI_UNKNOWN_ROLE"));
    let end = recs.iter().find(|r| r.kind == FCGI_END_REQUEST).unwrap_or_else(|| panic!("no END_REQUEST: {recs:?}"));
    assert_eq!(end.content[4], FCGI_UNKNOWN_ROLE, "{recs:?}");

    // A GET without any STDIN record: answered; the next request follows on a kept
    // connection, and one without FCGI_KEEP_CONN is closed once answered.
    let mut s = connect(&fpm).await;
    s.write_all(&head_only(&site, 1, true, "hello.php", "GET", "")).await.unwrap();
    assert_eq!(read_reply(&mut s, 1).await.expect("a GET without STDIN").body(), "Hello, world\n");
    s.write_all(&request(&site, 2, true, "hello.php", "")).await.unwrap();
    assert_eq!(read_reply(&mut s, 2).await.expect("the request after it").body(), "Hello, world\n");
    let mut s = connect(&fpm).await;
    s.write_all(&head_only(&site, 1, false, "hello.php", "GET", "")).await.unwrap();
    assert_eq!(read_reply(&mut s, 1).await.expect("a GET without STDIN, keep_conn=0").body(), "Hello, world\n");
    read_until_closed(&mut s).await.expect("closed without FCGI_KEEP_CONN");

    // The same GET, then the client shuts its writing side: answered.
    let mut s = connect(&fpm).await;
    s.write_all(&head_only(&site, 1, false, "hello.php", "GET", "")).await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(read_reply(&mut s, 1).await.expect("a GET without STDIN, half-closed").body(), "Hello, world\n");

    // Params that end with the body instead of their empty record: answered.
    let mut s = connect(&fpm).await;
    let mut bytes = begin_request(1, false);
    bytes.extend(record(FCGI_PARAMS, 1, &cgi_params(&site, "hello.php", "")));
    bytes.extend(record(FCGI_STDIN, 1, b""));
    s.write_all(&bytes).await.unwrap();
    assert_eq!(read_reply(&mut s, 1).await.expect("no empty PARAMS record").body(), "Hello, world\n");

    // A body cut short, by an ABORT_REQUEST or by the client's half-close: the script
    // runs as php-fpm runs it (PHP drops a body it could not read whole), the client
    // gets its END_REQUEST, and the connection then closes.
    for half_close in [false, true] {
        let mut s = connect(&fpm).await;
        let mut bytes = head_only(&site, 1, true, "fcgi_echo.php", "POST", "1000");
        bytes.extend(record(FCGI_STDIN, 1, &[b'x'; 500]));
        if !half_close {
            bytes.extend(record(FCGI_ABORT_REQUEST, 1, b""));
        }
        s.write_all(&bytes).await.unwrap();
        if half_close {
            s.shutdown().await.unwrap();
        }
        let what = if half_close { "a half-close" } else { "ABORT_REQUEST" };
        let reply = read_reply(&mut s, 1).await.unwrap_or_else(|e| panic!("a body cut by {what}: {e}"));
        assert_eq!(reply.protocol_status, 0, "{what}: {reply:?}");
        read_until_closed(&mut s).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    }

    // One param longer than a record, which php-cgi cannot read: 431, not a 502.
    let mut s = connect(&fpm).await;
    let mut params = cgi_params(&site, "hello.php", "");
    params.extend(pair(b"HTTP_COOKIE", &[b'c'; 70_000]));
    let mut bytes = begin_request(1, true);
    bytes.extend(stream_records(FCGI_PARAMS, 1, &params, 0xffff));
    bytes.extend(record(FCGI_PARAMS, 1, b""));
    bytes.extend(record(FCGI_STDIN, 1, b""));
    s.write_all(&bytes).await.unwrap();
    let reply = read_reply(&mut s, 1).await.expect("a 70 KB param");
    assert!(reply.text().starts_with("Status: 431"), "{reply:?}");
    assert!(!fpm.log_text().contains("exited while serving"), "{}", fpm.log_text());

    // Every worker is still in step.
    assert_every_worker_serves(&site, &fpm, "afterwards").await;
}

/// A reload that removes a pool: what runs in it ends with its answer, and
/// each request still waiting in its queue (no generation takes it) gets a 503
/// that says why, with a line in the log and one in the pool's access log.
#[tokio::test]
async fn a_reload_that_removes_a_pool_answers_its_queue_and_says_so() {
    let site = Site::new();
    let gone_socket = site.path().join("gone.sock");
    let access = site.path().join("gone-access.log");
    let gone_opts =
        PoolOptions { children: 1, extra: format!("access_log = \"{}\"", access.display()), ..Default::default() };
    let gone = gone_opts.pool_table("gone", gone_socket.display());
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, tables: gone.clone(), ..Default::default() });
    let mut running = UnixStream::connect(&gone_socket).await.unwrap();
    running.write_all(&request(&site, 1, false, "lc_sleep.php", "name=gone&ms=800")).await.unwrap();
    assert!(wait_until(Duration::from_secs(10), || site.scratch().join("gone").exists()), "the request never ran");
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let mut s = UnixStream::connect(&gone_socket).await.unwrap();
        s.write_all(&request(&site, 1, false, "hello.php", "")).await.unwrap();
        waiting.push(s);
    }
    let text = std::fs::read_to_string(&fpm.config).unwrap();
    std::fs::write(&fpm.config, text.replace(&gone, "")).unwrap();
    fpm.signal(libc::SIGUSR2);
    for (i, s) in waiting.iter_mut().enumerate() {
        let reply = read_reply(s, 1).await.unwrap_or_else(|e| panic!("waiting #{i}: {e}"));
        assert!(reply.text().starts_with("Status: 503"), "waiting #{i}: {reply:?}");
        assert!(reply.body().contains("stopping"), "waiting #{i}: {reply:?}");
    }
    assert_eq!(read_reply(&mut running, 1).await.expect("the running request").body(), "END\n");
    let log = fpm.wait_log("three refusals", |log| log.matches("the pool stopped while").count() == 3);
    assert!(log.contains("configuration reloaded: 1 pool(s)"), "{log}");
    let logged = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&access).is_ok_and(|a| a.lines().filter(|l| l.contains(" 503")).count() == 3)
    });
    assert!(logged, "access log: {:?}", std::fs::read_to_string(&access));
    assert_serves(&site, &fpm, "afterwards").await;
    assert_no_panic(&fpm);
}

/// The threads of process `pid` whose name starts with `prefix`.
fn threads_named(pid: i32, prefix: &str) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let names = tasks.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok());
    names.filter(|name| name.starts_with(prefix)).count()
}

/// nginx keeps idle connections to its upstream (`keepalive`) for as long as
/// it likes: one waiting for its next request must not keep alive the pool
/// generation of its last request once a reload has retired it (its worker
/// output thread, pipes and descriptors, one generation per idle connection).
#[tokio::test]
async fn an_idle_kept_connection_keeps_no_retired_generation_alive() {
    let site = Site::new();
    let opts = PoolOptions { children: 2, extra: "catch_workers_output = true".into(), ..Default::default() };
    let fpm = Rustfpm::start(&site, &opts);
    let mut idle = Vec::new();
    for reload in 1..=4 {
        let mut s = connect(&fpm).await;
        s.write_all(&request(&site, 1, true, "hello.php", "")).await.unwrap();
        assert_eq!(read_reply(&mut s, 1).await.expect("hello.php").body(), "Hello, world\n");
        idle.push(s);
        fpm.signal(libc::SIGUSR2);
        fpm.wait_log("the reload", |log| log.matches("configuration reloaded").count() == reload);
    }
    // A retired generation ends once its last request has: one output thread is left.
    let one_left = wait_until(Duration::from_secs(10), || threads_named(fpm.pid(), "output-") == 1);
    assert!(
        one_left,
        "{} output threads with 4 idle kept connections after 4 reloads",
        threads_named(fpm.pid(), "output-")
    );
    // The idle connections serve their next request with the new generation.
    for (i, s) in idle.iter_mut().enumerate() {
        s.write_all(&request(&site, 2, true, "hello.php", "")).await.unwrap();
        assert_eq!(read_reply(s, 2).await.unwrap_or_else(|e| panic!("idle #{i}: {e}")).body(), "Hello, world\n");
    }
    assert_no_panic(&fpm);
}

/// The fastcgi-client crate (and other clients) send an empty STDIN record
/// twice when the body is empty. php-cgi/php-fpm skip empty STDIN records in
/// front of a BEGIN_REQUEST (main/fastcgi.c, fcgi_read_request), so such a
/// client works with keep-alive; so must rustfpm.
#[tokio::test]
async fn stray_empty_stdin_between_kept_requests_is_skipped_like_php() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions::default());
    let mut s = connect(&fpm).await;
    for id in 1..=3u16 {
        let mut bytes = request(&site, id, true, "hello.php", "");
        bytes.extend(record(FCGI_STDIN, id, b""));
        s.write_all(&bytes).await.unwrap_or_else(|e| {
            panic!(
                "request {id}: write failed ({e}): rustfpm closed the kept-alive connection \
                 because of the extra empty STDIN record after the previous request \
                 (php-fpm skips it); see the rustfpm log below"
            )
        });
        let reply = read_reply(&mut s, id).await.unwrap_or_else(|e| {
            panic!(
                "request {id} on a kept-alive connection whose previous request ended with two \
                 empty STDIN records: {e}. php-fpm/php-cgi skip empty STDIN records before \
                 BEGIN_REQUEST; rustfpm closed the connection (see its log below)"
            )
        });
        assert_eq!(reply.body(), "Hello, world\n");
    }
    assert_no_panic(&fpm);
}

/// hipages/php-fpm_exporter's view of the status page: its field names and
/// types (Go's decoder refuses a string or a fraction where it wants an
/// integer, as serde does).
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct ExporterPool {
    pool: String,
    #[serde(rename = "process manager")]
    process_manager: String,
    #[serde(rename = "start time")]
    start_time: i64,
    #[serde(rename = "start since")]
    start_since: i64,
    #[serde(rename = "accepted conn")]
    accepted_conn: i64,
    #[serde(rename = "listen queue")]
    listen_queue: i64,
    #[serde(rename = "max listen queue")]
    max_listen_queue: i64,
    #[serde(rename = "listen queue len")]
    listen_queue_len: i64,
    #[serde(rename = "idle processes")]
    idle_processes: i64,
    #[serde(rename = "active processes")]
    active_processes: i64,
    #[serde(rename = "total processes")]
    total_processes: i64,
    #[serde(rename = "max active processes")]
    max_active_processes: i64,
    #[serde(rename = "max children reached")]
    max_children_reached: i64,
    #[serde(rename = "slow requests")]
    slow_requests: i64,
    processes: Vec<ExporterProcess>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct ExporterProcess {
    pid: i64,
    state: String,
    #[serde(rename = "start time")]
    start_time: i64,
    #[serde(rename = "start since")]
    start_since: i64,
    requests: i64,
    #[serde(rename = "request duration")]
    request_duration: i64,
    #[serde(rename = "request method")]
    request_method: String,
    #[serde(rename = "request uri")]
    request_uri: String,
    #[serde(rename = "content length")]
    content_length: i64,
    user: String,
    script: String,
    #[serde(rename = "last request cpu")]
    last_request_cpu: f64,
    #[serde(rename = "last request memory")]
    last_request_memory: i64,
}

/// The exporter asks the pool's socket directly, with these params, and
/// decodes the body as JSON.
#[tokio::test]
async fn status_json_decodes_as_php_fpm_exporter_reads_it() {
    let site = Site::new();
    let opts = PoolOptions { extra: "pm_status_path = \"/status\"".into(), ..Default::default() };
    let fpm = Rustfpm::start(&site, &opts);
    for _ in 0..3 {
        assert_serves(&site, &fpm, "warm-up").await;
    }
    let params = fastcgi_client::Params::default()
        .script_filename("/status")
        .script_name("/status")
        .server_software("go / php-fpm_exporter")
        .remote_addr("127.0.0.1")
        .query_string("json&full");
    let client = fastcgi_client::Client::new(Compat(connect(&fpm).await));
    let request = fastcgi_client::Request::new(params, fastcgi_client::io::empty());
    let out = timeout(IO_TIMEOUT, client.execute_once(request)).await.expect("timed out").expect("status request");
    let response = String::from_utf8(out.stdout.unwrap_or_default()).unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    let pool: ExporterPool = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!((pool.pool.as_str(), pool.process_manager.as_str()), ("www", "static"));
    assert_eq!((pool.accepted_conn, pool.total_processes, pool.processes.len()), (3, 4, 4));
    // The exporter counts processes by state and knows only these two.
    assert!(pool.processes.iter().all(|p| p.state == "Idle" || p.state == "Running"), "{body}");
    assert_eq!(pool.processes.iter().map(|p| p.requests).sum::<i64>(), 3, "{body}");
    assert!(pool.processes.iter().all(|p| is_live_php(p.pid as i32)), "{body}");
    let mut pids: Vec<i64> = pool.processes.iter().map(|p| p.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 4, "one process per pid: {body}");
}

/// Params of every size up to one full record (nginx sends up to 65,535 bytes in one) are
/// served. rustfpm adds its finish marker, so its records to php-cgi were cut inside a pair
/// once they passed one record, and a record of 65,529 bytes or more was padded past
/// 65,535, which php-cgi refuses: a 502 and a "child exited" line from 65,475 bytes of
/// params on, where php-fpm serves up to 65,520.
#[test]
fn params_of_every_size_up_to_a_full_record_are_served() {
    let site = Site::new();
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..Default::default() });
    let script = site.www().join("hello.php").display().to_string();
    let encoded = |params: &[(String, Vec<u8>)]| {
        params.iter().map(|(n, v)| n.len() + v.len() + if v.len() > 127 { 5 } else { 2 }).sum::<usize>()
    };
    for target in (65_380..=65_535).step_by(3) {
        let mut params: Vec<(String, Vec<u8>)> =
            vec![("SCRIPT_FILENAME".into(), script.clone().into_bytes()), ("REQUEST_METHOD".into(), b"GET".to_vec())];
        let mut i = 0;
        while encoded(&params) + 40 < target - 300 {
            params.push((format!("HTTP_X_{i:05}"), vec![b'v'; 26]));
            i += 1;
        }
        let pad = target - encoded(&params) - 5 - "HTTP_PAD".len();
        params.push(("HTTP_PAD".into(), vec![b'p'; pad]));
        assert_eq!(encoded(&params), target);
        let sent: Vec<(&str, &[u8])> = params.iter().map(|(n, v)| (n.as_str(), &v[..])).collect();
        let reply = common::fcgi::send(&fpm.socket, &sent);
        assert_eq!(reply.status, 200, "params of {target} bytes: {reply:?}\n{}", fpm.log_text());
    }
}
