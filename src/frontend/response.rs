//! The response on its way from the child to nginx. STDOUT and every other
//! record pass byte for byte (the child uses nginx's request id): the scan
//! only says how much of each read to forward. STDERR records are held and
//! rewritten into php-fpm's shape ([`super::stderr`]); a STDERR line carrying
//! the pool's finish marker means the script called
//! `fastcgi_finish_request()` (see `crate::pool::finish`).

use super::stderr::{Marked, StderrRewriter};
use crate::fastcgi::cursor::{Cursor, Piece};
use crate::fastcgi::{CodecError, RecordType, HEADER_LEN};

/// What to do with one read from the child: send `data[..forward]` to nginx
/// unchanged, then [`ResponseStream::out`], then scan `data[consumed..]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes to forward unchanged.
    pub forward: usize,
    /// Bytes taken in by this scan.
    pub consumed: usize,
}

/// Watches the response: the HTTP status in the first STDOUT bytes,
/// STDERR records, the finish marker and END_REQUEST.
pub struct ResponseStream<'m> {
    id: u16,
    cursor: Cursor,
    /// Type of the record being read.
    record_type: u8,
    stderr: StderrRewriter,
    marker: Option<&'m [u8]>,
    /// What the polyfill said so far.
    marked: Marked,
    /// Bytes for nginx after the forwarded part of the last scan.
    pub out: Vec<u8>,
    /// The HTTP status the child sent.
    pub status: u16,
    /// STDOUT content reached nginx.
    pub sent_any: bool,
    /// The child's END_REQUEST was read.
    pub ended: bool,
    /// Set when the script called `fastcgi_finish_request()`, which completes
    /// nginx's response early: the CGI headers it had not sent yet (empty if
    /// it had).
    pub completed: Option<Vec<u8>>,
    /// Keep the first STDOUT bytes in `head` (for the access log's `%{..}o`).
    pub keep_head: bool,
    /// The start of the response (its CGI headers), when `keep_head`.
    pub head: Vec<u8>,
}

impl<'m> ResponseStream<'m> {
    /// A response to request `id`; `marker` is the pool's finish marker.
    pub fn new(id: u16, marker: Option<&'m [u8]>) -> ResponseStream<'m> {
        ResponseStream {
            id,
            cursor: Cursor::new(),
            record_type: 0,
            stderr: StderrRewriter::default(),
            marker,
            marked: Marked::default(),
            out: Vec::new(),
            status: 200,
            sent_any: false,
            ended: false,
            completed: None,
            keep_head: false,
            head: Vec::new(),
        }
    }

    /// Keeps every PHP message of the response, for [`ResponseStream::take_messages`].
    pub fn collect_messages(&mut self) {
        self.stderr.messages = Some(Vec::new());
    }

    /// The PHP messages kept so far (none unless [`ResponseStream::collect_messages`]).
    pub fn take_messages(&mut self) -> Vec<Vec<u8>> {
        self.stderr.messages.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The response code the script ended with, when it set it after its headers
    /// went out with another (the polyfill reports it): what php-fpm's access log
    /// shows, where nginx got [`ResponseStream::status`].
    pub fn script_status(&self) -> Option<u16> {
        self.marked.status
    }

    /// The script's main code has ended (the polyfill said so, or it called
    /// `fastcgi_finish_request()`): php-fpm's `request_terminate_timeout` stops there.
    pub fn past_main(&self) -> bool {
        self.marked.main_ended || self.completed.is_some()
    }

    /// The request id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Scans `data` up to the end of a STDERR record, END_REQUEST or `data`.
    /// A header split across reads is held until its type is known.
    pub fn scan(&mut self, data: &[u8]) -> Result<Scan, CodecError> {
        let (mut pos, mut forward) = (0, 0);
        loop {
            let (used, piece) = self.cursor.advance(&data[pos..])?;
            pos += used;
            match piece {
                Some(Piece::Header(h)) => {
                    self.record_type = h.record_type;
                    if self.in_stderr() {
                        continue;
                    }
                    if used < HEADER_LEN {
                        // Its first bytes came with the last read and were held.
                        self.out.extend_from_slice(self.cursor.header_bytes());
                        return Ok(Scan { forward, consumed: pos });
                    }
                    forward = pos;
                }
                Some(Piece::Content(bytes)) if self.in_stderr() => self.stderr.push(bytes),
                Some(Piece::Content(bytes)) => {
                    self.watch_stdout(bytes);
                    forward = pos;
                }
                Some(Piece::End(_)) if self.in_stderr() => {
                    self.end_stderr();
                    return Ok(Scan { forward, consumed: pos });
                }
                Some(Piece::End(h)) if h.record_type == RecordType::EndRequest as u8 => {
                    self.ended = true;
                    return Ok(Scan { forward, consumed: pos });
                }
                Some(Piece::End(_)) => {}
                None if used == 0 => return Ok(Scan { forward, consumed: pos }),
                // Padding is forwarded with its record; header bytes are held.
                None if self.cursor.in_record() && !self.in_stderr() => forward = pos,
                None => {}
            }
        }
    }

    /// The bytes that would complete the record nginx is in the middle of,
    /// as far as the child's bytes were forwarded (0 between records: a STDERR
    /// record and a header are held until whole).
    pub fn left_for_nginx(&self) -> usize {
        if self.in_stderr() {
            0
        } else {
            self.cursor.left_in_record()
        }
    }

    fn in_stderr(&self) -> bool {
        self.record_type == RecordType::Stderr as u8
    }

    fn watch_stdout(&mut self, bytes: &[u8]) {
        if self.record_type == RecordType::Stdout as u8 && !self.sent_any {
            self.sent_any = true;
            if let Some(status) = parse_status(bytes) {
                self.status = status;
            }
            self.keep(bytes);
        }
    }

    /// Keeps the response's head for the access log, when it wants it.
    fn keep(&mut self, bytes: &[u8]) {
        if self.keep_head && self.head.is_empty() {
            self.head.extend_from_slice(&bytes[..bytes.len().min(crate::accesslog::MAX_RESPONSE_HEAD)]);
        }
    }

    fn end_stderr(&mut self) {
        self.record_type = 0;
        self.stderr.end_record(self.id, self.marker, &mut self.out, &mut self.marked);
        if !self.marked.finished || self.completed.is_some() {
            return;
        }
        let mut headers = std::mem::take(&mut self.marked.headers);
        if self.sent_any {
            headers.clear();
        } else if let Some(status) = parse_status(&headers) {
            self.status = status;
        }
        self.keep(&headers);
        self.completed = Some(headers);
    }
}

/// The status a CGI response sets with a `Status:` header (200 if none).
pub fn parse_status(head: &[u8]) -> Option<u16> {
    // Line by line up to the empty line that ends the head (one pass; the
    // first STDOUT bytes of every response go through here).
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        let Some(rest) = line.strip_prefix(b"Status:").or_else(|| line.strip_prefix(b"status:")) else {
            continue;
        };
        return match *rest.trim_ascii_start() {
            [a @ b'0'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9', ..] => {
                Some([a, b, c].iter().fold(0, |n, d| n * 10 + u16::from(d - b'0')))
            }
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastcgi::{encode_end_request, encode_stream, ProtocolStatus};

    #[test]
    fn status_from_cgi_headers() {
        assert_eq!(parse_status(b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nx"), Some(404));
        assert_eq!(parse_status(b"Content-type: text/html\r\nStatus: 302 Found\r\n\r\n"), Some(302));
        assert_eq!(parse_status(b"Content-type: text/html\r\n\r\nStatus: 500"), None);
        assert_eq!(parse_status(b"Status: x"), None);
    }

    /// What nginx receives for `input` read in chunks of `chunk` bytes.
    fn relay(input: &[u8], chunk: usize, marker: Option<&[u8]>) -> (Vec<u8>, ResponseStream<'static>) {
        let marker: Option<&'static [u8]> = marker.map(|m| &*Vec::leak(m.to_vec()));
        let mut r = ResponseStream::new(1, marker);
        let mut sent = Vec::new();
        for mut data in input.chunks(chunk) {
            while !data.is_empty() && !r.ended {
                let scan = r.scan(data).unwrap();
                sent.extend_from_slice(&data[..scan.forward]);
                sent.append(&mut r.out);
                data = &data[scan.consumed..];
            }
        }
        (sent, r)
    }

    fn response(stderr: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_stream(&mut out, RecordType::Stdout, 1, b"Status: 404 Not Found\r\n\r\nbody");
        for s in stderr {
            encode_stream(&mut out, RecordType::Stderr, 1, s);
        }
        encode_stream(&mut out, RecordType::Stdout, 1, b"more");
        encode_stream(&mut out, RecordType::Stdout, 1, b"");
        encode_end_request(&mut out, 1, 0, ProtocolStatus::RequestComplete);
        out
    }

    #[test]
    fn stdout_passes_unchanged_whatever_the_chunking() {
        let input = response(&[]);
        for chunk in 1..=input.len() {
            let (sent, r) = relay(&input, chunk, None);
            assert_eq!(sent, input, "chunk {chunk}");
            assert!(r.ended && r.sent_any);
            // The status is read from the first STDOUT bytes of one read.
            if chunk >= 64 {
                assert_eq!(r.status, 404);
            }
        }
    }

    #[test]
    fn stderr_is_rewritten_in_place_whatever_the_chunking() {
        let input = response(&[b"PHP Warning:  a\nPHP Warning:  b\n"]);
        let expected = response(&[b"PHP message: PHP Warning:  a; PHP message: PHP Warning:  b"]);
        for chunk in 1..=input.len() {
            assert_eq!(relay(&input, chunk, None).0, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn the_marker_finishes_and_carries_the_headers() {
        let mut input = Vec::new();
        encode_stream(&mut input, RecordType::Stderr, 1, b"PHP Notice:  n\n");
        encode_stream(&mut input, RecordType::Stderr, 1, b"MARK:5374617475733a\n");
        encode_stream(&mut input, RecordType::Stderr, 1, b"MARK:203330320d0a0d0a\n");
        encode_stream(&mut input, RecordType::Stderr, 1, b"MARK\n");
        let mut expected = Vec::new();
        encode_stream(&mut expected, RecordType::Stderr, 1, b"PHP message: PHP Notice:  n");
        for chunk in [1, 7, 9, 64, input.len()] {
            let (sent, r) = relay(&input, chunk, Some(b"MARK"));
            assert_eq!(sent, expected, "chunk {chunk}");
            assert_eq!(r.completed.as_deref(), Some(&b"Status: 302\r\n\r\n"[..]));
            assert_eq!(r.status, 302);
        }
    }

    #[test]
    fn a_code_set_after_the_headers_is_reported_apart_from_the_one_sent() {
        let input = response(&[b"PHP Notice:  n\nMARK=500\n"]);
        let mut expected = response(&[b"PHP message: PHP Notice:  n"]);
        for chunk in [1, 5, 64, input.len()] {
            let (sent, r) = relay(&input, chunk, Some(b"MARK"));
            assert_eq!(sent, expected, "chunk {chunk}: the line never reaches nginx");
            assert_eq!(r.script_status(), Some(500), "chunk {chunk}");
            // The status is read from the first STDOUT bytes of one read.
            assert!(chunk < 64 || r.status == 404, "chunk {chunk}: {}", r.status);
            assert!(r.completed.is_none(), "the request is not finished early");
        }
        expected = response(&[b"MARK=500\n"]);
        let (_, r) = relay(&expected, expected.len(), Some(b"OTHER"));
        assert_eq!(r.script_status(), None, "another request's marker");
    }

    #[test]
    fn headers_already_sent_are_not_sent_again() {
        let input = response(&[b"MARK:5374617475733a203330320d0a0d0a\nMARK\n"]);
        let (_, r) = relay(&input, input.len(), Some(b"MARK"));
        assert_eq!(r.completed.as_deref(), Some(&b""[..]));
        assert_eq!(r.status, 404);
    }
}
