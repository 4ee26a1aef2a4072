//! A FastCGI client that sends exactly the params it is given (repeats, NULs, Apache's
//! `proxy:fcgi://` shapes) to a unix socket and reads the whole response.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use rustfpm::fastcgi::{encode_begin_request, encode_pair, encode_stream, RecordType, Role};

const END_REQUEST: u8 = 3;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;
/// How long any single read may take before the test calls it a hang.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A request with exactly these params, in this order (repeats included).
pub fn request(params: &[(&str, &[u8])]) -> Vec<u8> {
    request_with_flags(params, 0)
}

/// [`request`] with these BEGIN_REQUEST flags (`FCGI_KEEP_CONN`, as nginx's
/// `fastcgi_keep_conn on` sends).
pub fn request_with_flags(params: &[(&str, &[u8])], flags: u8) -> Vec<u8> {
    let mut pairs = Vec::new();
    for (name, value) in params {
        encode_pair(&mut pairs, name.as_bytes(), value);
    }
    let mut out = Vec::new();
    encode_begin_request(&mut out, 1, Role::Responder, flags);
    encode_stream(&mut out, RecordType::Params, 1, &pairs);
    encode_stream(&mut out, RecordType::Params, 1, b"");
    encode_stream(&mut out, RecordType::Stdin, 1, b"");
    out
}

/// A response: its status (from the CGI head), whole STDOUT and STDERR.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    /// The body: STDOUT after the CGI head.
    pub fn body(&self) -> &str {
        self.stdout.split_once("\r\n\r\n").map_or(&self.stdout[..], |(_, body)| body)
    }
}

/// Sends `params` to the FastCGI server at `socket` and reads the response to its END_REQUEST.
pub fn send(socket: &Path, params: &[(&str, &[u8])]) -> Reply {
    let mut s = UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    exchange(&mut s, &request(params))
}

/// GET of rustfpm's own page `path` (ping or status) with `query`, as nginx asks for it.
pub fn page(socket: &Path, path: &str, query: &str) -> Reply {
    let params: [(&str, &[u8]); 5] = [
        ("REQUEST_METHOD", b"GET"),
        ("SCRIPT_NAME", path.as_bytes()),
        ("SCRIPT_FILENAME", path.as_bytes()),
        ("REQUEST_URI", path.as_bytes()),
        ("QUERY_STRING", query.as_bytes()),
    ];
    send(socket, &params)
}

/// The status page at `path` as JSON (`query` after `json`, e.g. `&full`), parsed.
pub fn status_page(socket: &Path, path: &str, query: &str) -> serde_json::Value {
    let reply = page(socket, path, &format!("json{query}"));
    serde_json::from_str(reply.body()).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
}

/// Sends `request` on `s` (a connection that may carry more) and reads the response to
/// its END_REQUEST.
pub fn exchange(s: &mut UnixStream, request: &[u8]) -> Reply {
    s.write_all(request).expect("send the request");
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    loop {
        let mut head = [0u8; 8];
        s.read_exact(&mut head).unwrap_or_else(|e| panic!("reading a record header: {e}"));
        let len = u16::from_be_bytes([head[4], head[5]]) as usize + head[6] as usize;
        let mut body = vec![0; len];
        s.read_exact(&mut body).unwrap_or_else(|e| panic!("reading a record body: {e}"));
        body.truncate(u16::from_be_bytes([head[4], head[5]]) as usize);
        match head[1] {
            STDOUT => stdout.extend(body),
            STDERR => stderr.extend(body),
            END_REQUEST => break,
            other => panic!("unexpected record type {other}"),
        }
    }
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let status = stdout
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .find_map(|l| l.strip_prefix("Status: "))
        .and_then(|s| s.get(..3)?.parse().ok())
        .unwrap_or(200);
    Reply { status, stdout, stderr: String::from_utf8_lossy(&stderr).into_owned() }
}

/// The params of a GET of `script` in `site` with `query`.
pub fn get_params(site: &super::Site, script: &str, query: &str) -> Vec<(&'static str, Vec<u8>)> {
    let filename = site.www().join(script).display().to_string();
    let uri = if query.is_empty() { format!("/{script}") } else { format!("/{script}?{query}") };
    vec![
        ("GATEWAY_INTERFACE", b"CGI/1.1".to_vec()),
        ("REQUEST_METHOD", b"GET".to_vec()),
        ("SCRIPT_FILENAME", filename.into_bytes()),
        ("SCRIPT_NAME", format!("/{script}").into_bytes()),
        ("REQUEST_URI", uri.into_bytes()),
        ("QUERY_STRING", query.as_bytes().to_vec()),
        ("DOCUMENT_ROOT", site.www().display().to_string().into_bytes()),
        ("SERVER_PROTOCOL", b"HTTP/1.1".to_vec()),
    ]
}
