//! `rustfpm ping`: a health probe for Docker `HEALTHCHECK` and Kubernetes exec
//! probes (what php-fpm users install php-fpm-healthcheck for). It sends a
//! real FastCGI request for a pool's ping path (`ping_path`) to a unix socket
//! or a TCP address, as nginx would, and reports in one line; healthy means
//! a complete response with status 200. It works against php-fpm too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::fastcgi::{encode_begin_request, encode_pair, encode_stream, parse_record, EndRequest, RecordType, Role};

/// How long the whole exchange may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);
/// The path asked for when none is given (php-fpm's usual `ping.path`).
pub const DEFAULT_PATH: &str = "/ping";
/// Most response bytes kept (a full status page of a large pool fits).
const KEEP: usize = 4 * 1024 * 1024;
/// The request id used.
const REQUEST_ID: u16 = 1;

/// Where the pool listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// Why a ping failed (each says what failed and where).
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// Connecting failed.
    #[error("cannot connect to {target}: {source}")]
    Connect { target: Target, source: std::io::Error },
    /// Sending or receiving failed (or timed out).
    #[error("{target} did not answer {path}: {source}")]
    Io { target: Target, path: String, source: std::io::Error },
    /// The answer is not well-formed FastCGI.
    #[error("{target} sent a malformed FastCGI answer to {path}: {message}")]
    Protocol { target: Target, path: String, message: String },
    /// A complete answer, but not a 200.
    #[error("{target} answered {path} with {status}{}", first_line(.body))]
    Status { target: Target, path: String, status: String, body: String },
}

fn first_line(body: &str) -> String {
    body.lines().next().filter(|l| !l.trim().is_empty()).map(|l| format!(": {}", l.trim())).unwrap_or_default()
}

/// A healthy answer.
#[derive(Debug)]
pub struct Pong {
    /// The body's first line (`pong`).
    pub body: String,
    /// How long the exchange took.
    pub took: Duration,
}

/// Sends the request for `path` to `target` and reads the answer.
pub fn ping(target: &Target, path: &str) -> Result<Pong, PingError> {
    let (body, took) = get(target, path, "")?;
    Ok(Pong { body: first_line(&body).trim_start_matches(": ").to_string(), took })
}

/// Sends `GET path?query` to `target` over FastCGI; the body of a 200 answer
/// and how long the exchange took (any other status is an error). `rustfpm
/// top` reads the status pages with it.
pub(crate) fn get(target: &Target, path: &str, query: &str) -> Result<(String, Duration), PingError> {
    let started = Instant::now();
    let io = |source| PingError::Io { target: target.clone(), path: path.to_string(), source: timed_out(source) };
    let connect = |source| PingError::Connect { target: target.clone(), source };
    let mut stream: Box<dyn ReadWrite> = match target {
        Target::Unix(p) => {
            let s = UnixStream::connect(p).map_err(connect)?;
            s.set_read_timeout(Some(TIMEOUT)).and_then(|()| s.set_write_timeout(Some(TIMEOUT))).map_err(io)?;
            Box::new(s)
        }
        Target::Tcp(a) => {
            let s = TcpStream::connect_timeout(a, TIMEOUT).map_err(connect)?;
            s.set_read_timeout(Some(TIMEOUT)).and_then(|()| s.set_write_timeout(Some(TIMEOUT))).map_err(io)?;
            Box::new(s)
        }
    };
    stream.write_all(&request(path, query)).map_err(io)?;
    let stdout = read_stdout(&mut stream, target, path)?;
    let (status, body) = split_response(&stdout);
    if status.starts_with("200") {
        return Ok((body, started.elapsed()));
    }
    Err(PingError::Status { target: target.clone(), path: path.to_string(), status, body })
}

/// A socket timeout (which reads as "Resource temporarily unavailable") said as what it is.
fn timed_out(e: std::io::Error) -> std::io::Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {} s", TIMEOUT.as_secs()))
        }
        _ => e,
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The FastCGI request nginx would send for `GET path?query`.
pub(crate) fn request(path: &str, query: &str) -> Vec<u8> {
    let uri = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
    let mut params = Vec::new();
    for (name, value) in [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "rustfpm-ping"),
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", path),
        ("SCRIPT_FILENAME", path),
        ("REQUEST_URI", &uri),
        ("DOCUMENT_URI", path),
        ("QUERY_STRING", query),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("SERVER_NAME", "localhost"),
    ] {
        encode_pair(&mut params, name.as_bytes(), value.as_bytes());
    }
    let mut out = Vec::new();
    encode_begin_request(&mut out, REQUEST_ID, Role::Responder, 0);
    encode_stream(&mut out, RecordType::Params, REQUEST_ID, &params);
    encode_stream(&mut out, RecordType::Params, REQUEST_ID, &[]);
    encode_stream(&mut out, RecordType::Stdin, REQUEST_ID, &[]);
    out
}

/// Reads records until END_REQUEST; returns the start of STDOUT.
fn read_stdout(stream: &mut impl Read, target: &Target, path: &str) -> Result<Vec<u8>, PingError> {
    let protocol = |message: String| PingError::Protocol { target: target.clone(), path: path.to_string(), message };
    let mut buf = Vec::new();
    let mut stdout = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some((record, used)) = parse_record(&buf).map_err(|e| protocol(e.to_string()))? {
            match record.header.kind() {
                Some(RecordType::Stdout) => {
                    let room = KEEP.saturating_sub(stdout.len());
                    stdout.extend_from_slice(&record.content[..record.content.len().min(room)]);
                }
                Some(RecordType::EndRequest) => {
                    EndRequest::parse(record.content).map_err(|e| protocol(e.to_string()))?;
                    return Ok(stdout);
                }
                _ => {}
            }
            buf.drain(..used);
        }
        let n = stream.read(&mut chunk).map_err(|source| PingError::Io {
            target: target.clone(),
            path: path.to_string(),
            source: timed_out(source),
        })?;
        if n == 0 {
            return Err(protocol("the connection closed before END_REQUEST".to_string()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The CGI status (`200 OK` when there is no `Status:` header) and the body.
pub(crate) fn split_response(stdout: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(stdout);
    let (head, body) = text.split_once("\r\n\r\n").or_else(|| text.split_once("\n\n")).unwrap_or((&text, ""));
    let status = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("status")))
        .map_or_else(|| "200 OK".to_string(), |(_, v)| v.trim().to_string());
    (status, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_header_is_read_and_defaults_to_200() {
        let (status, body) = split_response(b"Content-type: text/plain\r\n\r\npong");
        assert_eq!((status.as_str(), body.as_str()), ("200 OK", "pong"));
        let (status, body) =
            split_response(b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n");
        assert_eq!((status.as_str(), body.as_str()), ("404 Not Found", "File not found.\n"));
    }

    #[test]
    fn a_request_is_well_formed_fastcgi() {
        let bytes = request("/ping", "");
        let mut at = 0;
        let mut kinds = Vec::new();
        while let Ok(Some((record, used))) = parse_record(&bytes[at..]) {
            kinds.push(record.header.kind());
            at += used;
        }
        assert_eq!(at, bytes.len());
        let want = [RecordType::BeginRequest, RecordType::Params, RecordType::Params, RecordType::Stdin];
        assert_eq!(kinds, want.map(Some).to_vec());
    }

    #[test]
    fn a_closed_connection_is_a_protocol_error() {
        let target = Target::Tcp("127.0.0.1:9".parse().unwrap());
        let err = read_stdout(&mut std::io::empty(), &target, "/ping").unwrap_err();
        assert!(err.to_string().contains("closed before END_REQUEST"), "{err}");
    }
}
