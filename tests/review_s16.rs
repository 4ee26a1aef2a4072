//! Review of session 16's relay (batched writes to nginx, the tail held for a
//! slow reader, the child released at END_REQUEST): through the real binary
//! and php-cgi, a client that reads slowly in small pieces gets every STDOUT
//! byte in order and each STDERR record where the script wrote it.

mod common;
use common::fcgi::{get_params, request, IO_TIMEOUT};
use common::*;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use rustfpm::fastcgi::{encode_begin_request, encode_pair, encode_stream, RecordType, Role, FCGI_KEEP_CONN};

const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const END_REQUEST: u8 = 3;

/// Chunks the script writes: chunk `i` is `size(i)` copies of one letter, each
/// followed by a message `chunk i`.
const CHUNKS: usize = 150;

fn size(i: usize) -> usize {
    3000 + i * 97
}

/// Reads `n` bytes in reads of at most `piece`.
fn read_in_pieces(s: &mut UnixStream, n: usize, piece: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    let mut at = 0;
    while at < n {
        let end = (at + piece).min(n);
        let got = s.read(&mut out[at..end]).unwrap_or_else(|e| panic!("reading after {at} bytes: {e}"));
        assert!(got > 0, "the connection ended after {at} bytes");
        at += got;
    }
    out
}

#[test]
fn stdout_and_stderr_reach_a_slow_reader_in_the_order_written_byte_for_byte() {
    let site = Site::new();
    let started = site.scratch().join("started");
    site.script(
        "mixed.php",
        &format!(
            "<?php while (ob_get_level() > 0) ob_end_flush(); file_put_contents('{}', 'started');
            for ($i = 0; $i < {CHUNKS}; $i++) {{
                echo str_repeat(chr(65 + $i % 26), 3000 + $i * 97); flush();
                error_log(\"chunk $i\"); flush();
            }}",
            started.display()
        ),
    );
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..PoolOptions::default() });
    let mut s = UnixStream::connect(&fpm.socket).unwrap_or_else(|e| panic!("connect to {}: {e}", fpm.socket.display()));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("set a read timeout");
    let params = get_params(&site, "mixed.php", "");
    let borrowed: Vec<(&str, &[u8])> = params.iter().map(|(k, v)| (*k, &v[..])).collect();
    s.write_all(&request(&borrowed)).expect("send the request");
    assert!(wait_file(&started, IO_TIMEOUT).is_some(), "the script did not start");
    // Not an assertion: a pause, so that the answer backs up (the sockets
    // fill and rustfpm holds a tail) before the first read.
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Records read in small pieces: the answer backs up into rustfpm's tail.
    let (mut stdout, mut messages) = (Vec::new(), Vec::new());
    loop {
        let head = read_in_pieces(&mut s, 8, 8);
        let len = u16::from_be_bytes([head[4], head[5]]) as usize;
        let mut body = read_in_pieces(&mut s, len + head[6] as usize, 997);
        body.truncate(len);
        match head[1] {
            STDOUT => stdout.extend(body),
            STDERR => messages.push((stdout.len(), String::from_utf8_lossy(&body).into_owned())),
            END_REQUEST => break,
            other => panic!("unexpected record type {other}"),
        }
    }
    let at = stdout.windows(4).position(|w| w == b"\r\n\r\n").expect("a CGI head") + 4;
    let mut expected = Vec::new();
    let mut ends = Vec::new();
    for i in 0..CHUNKS {
        expected.extend(std::iter::repeat_n(b'A' + (i % 26) as u8, size(i)));
        ends.push(at + expected.len());
    }
    assert!(stdout[at..] == expected[..], "STDOUT differs ({} bytes, {} expected)", stdout.len() - at, expected.len());
    let texts: Vec<String> = messages.iter().map(|(_, text)| text.clone()).collect();
    assert_eq!(messages.len(), CHUNKS, "one STDERR record per message: {texts:?}");
    for (i, (after, text)) in messages.iter().enumerate() {
        assert!(text.contains(&format!("chunk {i}")), "message {i} is {text:?}");
        assert_eq!(*after, ends[i], "message {i} came after {after} bytes of STDOUT, not after its chunk");
    }
}

/// A kept request (FCGI_KEEP_CONN) of id `id` POSTing `body` to `script`.
fn kept_post(site: &Site, id: u16, script: &str, body: &[u8]) -> Vec<u8> {
    let mut pairs = Vec::new();
    let length = body.len().to_string();
    let mut all = get_params(site, script, "");
    all[1].1 = b"POST".to_vec();
    all.push(("CONTENT_LENGTH", length.into_bytes()));
    all.push(("CONTENT_TYPE", b"application/octet-stream".to_vec()));
    for (name, value) in &all {
        encode_pair(&mut pairs, name.as_bytes(), value);
    }
    let mut out = Vec::new();
    encode_begin_request(&mut out, id, Role::Responder, FCGI_KEEP_CONN);
    encode_stream(&mut out, RecordType::Params, id, &pairs);
    encode_stream(&mut out, RecordType::Params, id, b"");
    encode_stream(&mut out, RecordType::Stdin, id, body);
    encode_stream(&mut out, RecordType::Stdin, id, b"");
    out
}

/// Reads one response to its END_REQUEST: its STDOUT and the request id it carried.
fn read_reply(s: &mut UnixStream) -> (Vec<u8>, u16) {
    let mut stdout = Vec::new();
    loop {
        let head = read_in_pieces(s, 8, 8);
        let len = u16::from_be_bytes([head[4], head[5]]) as usize;
        let mut body = read_in_pieces(s, len + head[6] as usize, 4096);
        body.truncate(len);
        match head[1] {
            STDOUT => stdout.extend(body),
            STDERR => {}
            END_REQUEST => return (stdout, u16::from_be_bytes([head[2], head[3]])),
            other => panic!("unexpected record type {other}"),
        }
    }
}

#[test]
fn kept_requests_written_one_byte_at_a_time_and_back_to_back_get_their_own_answers() {
    let site = Site::new();
    site.script("sum.php", "<?php $in = file_get_contents('php://input'); echo strlen($in), ' ', md5($in);");
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..PoolOptions::default() });
    let mut s = UnixStream::connect(&fpm.socket).unwrap_or_else(|e| panic!("connect to {}: {e}", fpm.socket.display()));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("set a read timeout");
    // Bodies past the 1 KiB head buffer and past a record; the second
    // request right behind the first, so its bytes wait while the first runs.
    let bodies: Vec<Vec<u8>> = vec![(0..70_000).map(|i| (i % 251) as u8).collect(), vec![b'b'; 3000], Vec::new()];
    let mut wire = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        wire.extend(kept_post(&site, i as u16 + 1, "sum.php", body));
    }
    let writer = {
        let mut s = s.try_clone().expect("clone the socket");
        std::thread::spawn(move || {
            for byte in wire.chunks(1).take(8192) {
                s.write_all(byte).expect("write a byte");
            }
            s.write_all(&wire[8192.min(wire.len())..]).expect("write the rest");
        })
    };
    for (i, body) in bodies.iter().enumerate() {
        let (stdout, id) = read_reply(&mut s);
        let text = String::from_utf8_lossy(&stdout);
        let expected = format!("{} {:x}", body.len(), md5::compute(body));
        assert_eq!(id, i as u16 + 1, "answer {i} carries another request's id: {text}");
        assert!(text.ends_with(&expected), "request {i}: {text:?}, expected a body of {expected}");
    }
    writer.join().expect("the writer thread");
}
