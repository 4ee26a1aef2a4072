//! The relay from a child to the web server, over rustfpm's FastCGI socket
//! with a client that reads at its own pace: a response larger than every
//! buffer streams with backpressure (the child waits for the reader, rustfpm
//! holds a bounded amount), and a child whose END_REQUEST has been read goes
//! back to the pool while the client is still reading the end of its answer.

mod common;
use common::fcgi::{get_params as params, request, send, IO_TIMEOUT};
use common::load::rss_kib;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

const STDOUT: u8 = 6;
const END_REQUEST: u8 = 3;

/// A pool of one child serving `big.php?n=N` (N bytes of 'x', then a file
/// `done` in the scratch dir once the last byte is written) and `hello.php`.
fn one_child() -> (Site, Rustfpm) {
    let site = Site::new();
    let done = site.scratch().join("done");
    site.script(
        "big.php",
        &format!(
            "<?php echo str_repeat('x', (int)$_GET['n']); flush(); file_put_contents('{}', 'done');",
            done.display()
        ),
    );
    site.script("hello.php", "<?php echo 'hello';");
    let fpm = Rustfpm::start(&site, &PoolOptions { children: 1, ..PoolOptions::default() });
    (site, fpm)
}

/// Sends a GET of `big.php?n={n}` and reads nothing yet.
fn start_big(site: &Site, fpm: &Rustfpm, n: usize) -> UnixStream {
    let mut s = UnixStream::connect(&fpm.socket).unwrap_or_else(|e| panic!("connect to {}: {e}", fpm.socket.display()));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("set a read timeout");
    let params = params(site, "big.php", &format!("n={n}"));
    let borrowed: Vec<(&str, &[u8])> = params.iter().map(|(k, v)| (*k, &v[..])).collect();
    s.write_all(&request(&borrowed)).expect("send the request");
    s
}

/// Reads a response's records to END_REQUEST, in small reads; calls
/// `progress` with the STDOUT bytes read so far after each record. Returns
/// the STDOUT bytes.
fn read_response(s: &mut UnixStream, mut progress: impl FnMut(usize)) -> Vec<u8> {
    let mut stdout = Vec::new();
    loop {
        let mut head = [0u8; 8];
        s.read_exact(&mut head).unwrap_or_else(|e| panic!("reading a record header after {} bytes: {e}", stdout.len()));
        let len = u16::from_be_bytes([head[4], head[5]]) as usize;
        let mut body = vec![0; len + head[6] as usize];
        s.read_exact(&mut body).unwrap_or_else(|e| panic!("reading a record body: {e}"));
        body.truncate(len);
        match head[1] {
            STDOUT => stdout.extend(body),
            END_REQUEST => return stdout,
            other => panic!("unexpected record type {other}"),
        }
        progress(stdout.len());
    }
}

/// The body of a CGI response (after its head), checked to be `n` bytes of 'x'.
fn assert_xs(stdout: &[u8], n: usize) {
    let at = stdout.windows(4).position(|w| w == b"\r\n\r\n").expect("a CGI head") + 4;
    let body = &stdout[at..];
    assert_eq!(body.len(), n, "body length");
    assert!(body.iter().all(|&b| b == b'x'), "the body was altered");
}

/// How many bytes a unix stream socket takes in 64 KiB writes before a
/// writer would block: what rustfpm can write to a client that reads nothing.
fn socket_capacity() -> usize {
    let (a, _b) = UnixStream::pair().expect("a socket pair");
    a.set_nonblocking(true).expect("non-blocking");
    let chunk = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match (&a).write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return total,
            Err(e) => panic!("writing to a socket pair: {e}"),
        }
    }
}

#[test]
fn a_response_larger_than_the_buffers_streams_to_a_slow_reader_and_holds_its_child() {
    let (site, fpm) = one_child();
    let done = site.scratch().join("done");
    let n = 8 << 20;
    let mut s = start_big(&site, &fpm, n);
    let (mut max_rss, mut checked) = (0, false);
    let stdout = read_response(&mut s, |read| {
        // A quarter in, most of the response cannot be anywhere but in the
        // script: the sockets and rustfpm's buffer hold well under 1 MiB.
        if read >= n / 4 && !checked {
            assert!(!done.exists(), "the script finished before the client read its response");
            checked = true;
        }
        max_rss = max_rss.max(rss_kib(fpm.pid()));
    });
    assert!(checked, "the response ended early");
    assert_xs(&stdout, n);
    assert!(wait_file(&done, Duration::from_secs(30)).is_some(), "the script did not finish");
    // rustfpm relayed 8 MiB holding at most its buffers.
    assert!(max_rss < 32 * 1024, "rustfpm's RSS reached {max_rss} KiB while relaying");
}

#[test]
fn a_child_goes_back_to_the_pool_at_its_end_request_while_the_client_still_reads() {
    let (site, fpm) = one_child();
    // A bit more than the client's socket takes: the end of the answer is
    // still in rustfpm when the child ends the request.
    let n = socket_capacity() + 32 * 1024;
    let mut slow = start_big(&site, &fpm, n);
    assert!(
        wait_file(&site.scratch().join("done"), IO_TIMEOUT).is_some(),
        "the script could not write its whole answer while the client read nothing"
    );
    // The only child serves another request while the first client has not read a byte.
    let hello = params(&site, "hello.php", "");
    let borrowed: Vec<(&str, &[u8])> = hello.iter().map(|(k, v)| (*k, &v[..])).collect();
    let reply = send(&fpm.socket, &borrowed);
    assert_eq!((reply.status, reply.body()), (200, "hello"), "{reply:?}");
    // The first client then gets all of its answer.
    assert_xs(&read_response(&mut slow, |_| {}), n);
}
