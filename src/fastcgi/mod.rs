//! Pure FastCGI 1.0 codec: no I/O, no async runtime, no allocation when parsing.
//!
//! Used on both sides of rustfpm: the front end (reading requests from nginx
//! and writing responses back) and the back end (talking to `php-cgi`
//! children).
//!
//! # Record layout
//!
//! Every FastCGI message is a *record*: an 8-byte header followed by
//! `contentLength` bytes of content and `paddingLength` bytes of padding.
//! All multi-byte integers are big-endian.
//!
//! ```text
//! offset  size  field
//!      0     1  version          always 1 (VERSION_1)
//!      1     1  type             RecordType (raw byte, may be unknown)
//!      2     2  requestId        0 (NULL_REQUEST_ID) for management records
//!      4     2  contentLength    0..=65535 (MAX_CONTENT_LEN)
//!      6     1  paddingLength    0..=255, we pad content to a multiple of 8
//!      7     1  reserved
//!      8     n  content
//!    8+n     p  padding          ignored by readers
//! ```
//!
//! Stream records (`PARAMS`, `STDIN`, `STDOUT`, `STDERR`, `DATA`) carry a byte
//! stream split over any number of records; an empty record ends the stream.
//! `PARAMS` and `GET_VALUES` streams hold name-value pairs, each length encoded
//! in 1 byte when below 128, otherwise in 4 bytes with the high bit set.
//!
//! The parsing functions borrow from the caller's buffer ([`parse_record`],
//! `pairs`); the encoders append to a caller-owned `Vec<u8>` so buffers can
//! be reused across requests.

pub(crate) mod cursor;
mod params;
mod record;

pub use params::encode_pair;
pub(crate) use params::{encode_get_values_result, pairs, parse_pairs, value_number, value_text, ParamsBuffer};
pub(crate) use record::{
    close_record, encode_end_request, encode_simple_response, encode_unknown_type, open_record, padding_for,
    BeginRequest, EndRequest, StreamWriter,
};
pub use record::{encode_begin_request, encode_stream, parse_record, Header, Record};

/// The only FastCGI protocol version (`FCGI_VERSION_1`).
pub(crate) const VERSION_1: u8 = 1;
/// Size of a record header in bytes (`FCGI_HEADER_LEN`).
pub(crate) const HEADER_LEN: usize = 8;
/// Largest content length a single record can carry.
pub(crate) const MAX_CONTENT_LEN: usize = 65535;
/// Management records use request id 0.
pub(crate) const NULL_REQUEST_ID: u16 = 0;
/// `BEGIN_REQUEST` flag: keep the connection open after the request ends.
pub const FCGI_KEEP_CONN: u8 = 1;

/// FastCGI record types (`FCGI_BEGIN_REQUEST` .. `FCGI_UNKNOWN_TYPE`).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// Starts a request (web server → application).
    BeginRequest = 1,
    /// Aborts a request (web server → application).
    AbortRequest = 2,
    /// Ends a request (application → web server).
    EndRequest = 3,
    /// Name-value pair stream with the CGI environment.
    Params = 4,
    /// Request body stream.
    Stdin = 5,
    /// Response stream (CGI headers + body).
    Stdout = 6,
    /// Error output stream.
    Stderr = 7,
    /// Extra data stream for the Filter role.
    Data = 8,
    /// Management query for configuration values.
    GetValues = 9,
    /// Management answer to [`RecordType::GetValues`].
    GetValuesResult = 10,
    /// Management answer to a record type the receiver does not know.
    UnknownType = 11,
}

impl RecordType {
    /// Map a raw type byte to a known record type, `None` if unknown.
    pub(crate) fn from_u8(v: u8) -> Option<RecordType> {
        use RecordType::*;
        Some(match v {
            1 => BeginRequest,
            2 => AbortRequest,
            3 => EndRequest,
            4 => Params,
            5 => Stdin,
            6 => Stdout,
            7 => Stderr,
            8 => Data,
            9 => GetValues,
            10 => GetValuesResult,
            11 => UnknownType,
            _ => return None,
        })
    }
}

/// Role requested in a `BEGIN_REQUEST` record.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Classic CGI: produce a response for a request (what PHP does).
    Responder = 1,
    /// Decide whether a request is authorized.
    Authorizer = 2,
    /// Filter an extra data stream.
    Filter = 3,
}

impl Role {
    /// Map a raw role number to a known role, `None` if unknown.
    pub(crate) fn from_u16(v: u16) -> Option<Role> {
        match v {
            1 => Some(Role::Responder),
            2 => Some(Role::Authorizer),
            3 => Some(Role::Filter),
            _ => None,
        }
    }
}

/// Protocol-level outcome reported in an `END_REQUEST` record.
#[allow(dead_code, reason = "the protocol's whole table: rustfpm sends only RequestComplete and UnknownRole")]
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolStatus {
    /// Normal end of request.
    RequestComplete = 0,
    /// Rejected: the application does not multiplex connections.
    CantMpxConn = 1,
    /// Rejected: the application is out of resources.
    Overloaded = 2,
    /// Rejected: the requested role is not supported.
    UnknownRole = 3,
}

impl ProtocolStatus {
    /// Map a raw status byte to a known status, `None` if unknown.
    #[cfg(test)]
    pub(crate) fn from_u8(v: u8) -> Option<ProtocolStatus> {
        match v {
            0 => Some(ProtocolStatus::RequestComplete),
            1 => Some(ProtocolStatus::CantMpxConn),
            2 => Some(ProtocolStatus::Overloaded),
            3 => Some(ProtocolStatus::UnknownRole),
            _ => None,
        }
    }
}

/// Errors found while decoding FastCGI bytes (or enforcing limits).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The record header's version byte is not 1.
    #[error("unsupported FastCGI version {0} (expected 1)")]
    BadVersion(u8),
    /// A `BEGIN_REQUEST` body had the wrong length.
    #[error("BEGIN_REQUEST body must be 8 bytes, got {0}")]
    BadBeginRequest(usize),
    /// An `END_REQUEST` body had the wrong length.
    #[error("END_REQUEST body must be 8 bytes, got {0}")]
    BadEndRequest(usize),
    /// A name-value pair is cut short. `offset` is where the truncated item
    /// (a length field, or the name+value bytes) starts, `declared` how many
    /// bytes it needs and `remaining` how many bytes are left from `offset`.
    #[error("name-value pair truncated at byte {offset}: declared {declared} bytes, {remaining} remain")]
    TruncatedPair {
        /// Byte offset of the truncated item within the pair buffer.
        offset: usize,
        /// Bytes the item needs.
        declared: usize,
        /// Bytes available from `offset` to the end of the buffer.
        remaining: usize,
    },
    /// The accumulated `PARAMS` stream is larger than allowed.
    #[error("FastCGI params exceed the limit of {limit} bytes")]
    ParamsTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny xorshift64 PRNG so the fuzz-like tests need no extra crates.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn bytes(&mut self, max_len: usize) -> Vec<u8> {
            let len = (self.next() as usize) % (max_len + 1);
            let mut v: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
            // Bias towards plausible headers and short length bytes.
            if let Some(b) = v.first_mut() {
                if self.next().is_multiple_of(2) {
                    *b = VERSION_1;
                }
            }
            if let Some(b) = v.get_mut(4) {
                if self.next().is_multiple_of(2) {
                    *b = 0;
                }
            }
            v
        }
    }

    #[test]
    fn record_type_from_u8_round_trips() {
        for v in 0..=255u8 {
            match RecordType::from_u8(v) {
                Some(t) => assert_eq!(t as u8, v),
                None => assert!(v == 0 || v > 11),
            }
        }
    }

    #[test]
    fn role_and_status_from_raw() {
        assert_eq!(Role::from_u16(1), Some(Role::Responder));
        assert_eq!(Role::from_u16(3), Some(Role::Filter));
        assert_eq!(Role::from_u16(4), None);
        assert_eq!(ProtocolStatus::from_u8(2), Some(ProtocolStatus::Overloaded));
        assert_eq!(ProtocolStatus::from_u8(4), None);
    }

    #[test]
    fn error_messages() {
        let e = CodecError::TruncatedPair { offset: 3, declared: 10, remaining: 2 };
        assert_eq!(e.to_string(), "name-value pair truncated at byte 3: declared 10 bytes, 2 remain");
        assert_eq!(CodecError::BadVersion(2).to_string(), "unsupported FastCGI version 2 (expected 1)");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut complete = 0;
        for _ in 0..20_000 {
            let buf = rng.bytes(300);
            if let Ok(Some((rec, used))) = parse_record(&buf) {
                complete += 1;
                assert!(used <= buf.len());
                assert_eq!(used, rec.header.record_len());
                assert_eq!(rec.content.len(), usize::from(rec.header.content_length));
                let _ = BeginRequest::parse(rec.content);
                let _ = EndRequest::parse(rec.content);
            }
            check_pairs(&buf);
            let mut out = Vec::new();
            let _ = encode_get_values_result(&mut out, &buf, 1, 2, true);
        }
        assert!(complete > 100, "fuzz reached only {complete} complete records");
    }

    #[test]
    fn random_pairs_round_trip() {
        let mut rng = XorShift(7);
        for _ in 0..500 {
            let list: Vec<(Vec<u8>, Vec<u8>)> = (0..rng.next() % 8).map(|_| (rng.bytes(200), rng.bytes(300))).collect();
            let mut buf = Vec::new();
            for (n, v) in &list {
                encode_pair(&mut buf, n, v);
            }
            let got = parse_pairs(&buf).expect("well formed");
            assert!(got.iter().map(|&(n, v)| (n, v)).eq(list.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))));
            if let Some(cut) = buf.len().checked_sub(1) {
                check_pairs(&buf[..cut]);
            }
        }
    }

    fn check_pairs(buf: &[u8]) {
        match parse_pairs(buf) {
            Ok(list) => {
                let total: usize = list.iter().map(|(n, v)| n.len() + v.len()).sum();
                assert!(total <= buf.len());
            }
            Err(CodecError::TruncatedPair { offset, declared, remaining }) => {
                assert_eq!(offset + remaining, buf.len());
                assert!(declared > remaining);
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }

    #[test]
    fn random_valid_streams_round_trip() {
        let mut rng = XorShift(42);
        for _ in 0..500 {
            let data = rng.bytes(3000);
            let id = rng.next() as u16;
            let mut out = Vec::new();
            encode_stream(&mut out, RecordType::Stdin, id, &data);
            let mut rest = out.as_slice();
            let mut got = Vec::new();
            while let Ok(Some((rec, used))) = parse_record(rest) {
                assert_eq!(rec.header.request_id, id);
                assert_eq!(rec.header.record_len() % 8, 0);
                got.extend_from_slice(rec.content);
                rest = &rest[used..];
            }
            assert!(rest.is_empty());
            assert_eq!(got, data);
        }
    }
}
