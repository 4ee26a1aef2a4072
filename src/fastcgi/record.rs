//! Record framing: the 8-byte header, whole-record parsing, fixed-size
//! bodies (`BEGIN_REQUEST`, `END_REQUEST`, `UNKNOWN_TYPE`) and stream encoders.

use super::{
    CodecError, ProtocolStatus, RecordType, Role, FCGI_KEEP_CONN, HEADER_LEN, MAX_CONTENT_LEN, NULL_REQUEST_ID,
    VERSION_1,
};

/// Number of padding bytes that round `content_len` up to a multiple of 8.
#[inline]
pub(crate) fn padding_for(content_len: usize) -> u8 {
    ((8 - (content_len & 7)) & 7) as u8
}

/// A decoded record header (see the module docs for the byte layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version, always `VERSION_1` once parsed.
    pub version: u8,
    /// Raw record type; may be a type we do not know (see [`Header::kind`]).
    pub record_type: u8,
    /// Request id, `NULL_REQUEST_ID` for management records.
    pub request_id: u16,
    /// Number of content bytes following the header.
    pub content_length: u16,
    /// Number of padding bytes following the content.
    pub padding_length: u8,
}

impl Header {
    /// Header for a record of `content_length` bytes, padded to a multiple of 8.
    #[inline]
    pub(crate) fn new(record_type: RecordType, request_id: u16, content_length: u16) -> Header {
        Header {
            version: VERSION_1,
            record_type: record_type as u8,
            request_id,
            content_length,
            padding_length: padding_for(usize::from(content_length)),
        }
    }

    /// Parse the 8 header bytes. Ok(None) if buf.len() < 8. Err(BadVersion) if version != 1.
    #[inline]
    pub(crate) fn parse(buf: &[u8]) -> Result<Option<Header>, CodecError> {
        let Some(b) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        if b[0] != VERSION_1 {
            return Err(CodecError::BadVersion(b[0]));
        }
        Ok(Some(Header {
            version: b[0],
            record_type: b[1],
            request_id: u16::from_be_bytes([b[2], b[3]]),
            content_length: u16::from_be_bytes([b[4], b[5]]),
            padding_length: b[6],
        }))
    }

    /// The 8 wire bytes of this header (reserved byte zero).
    #[inline]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let [id_hi, id_lo] = self.request_id.to_be_bytes();
        let [len_hi, len_lo] = self.content_length.to_be_bytes();
        let (v, t, pad) = (self.version, self.record_type, self.padding_length);
        [v, t, id_hi, id_lo, len_hi, len_lo, pad, 0]
    }

    /// Append the 8 wire bytes of this header to `out`.
    #[inline]
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// header + content + padding
    #[inline]
    pub(crate) fn record_len(&self) -> usize {
        HEADER_LEN + usize::from(self.content_length) + usize::from(self.padding_length)
    }

    /// The record type, `None` if the raw type byte is unknown.
    #[inline]
    pub fn kind(&self) -> Option<RecordType> {
        RecordType::from_u8(self.record_type)
    }
}

/// A complete record borrowed from a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The record's header.
    pub header: Header,
    /// The content bytes (padding excluded).
    pub content: &'a [u8],
}

/// Parse one complete record from the start of `buf`. Ok(None) = need more bytes (header or body incomplete).
/// Returns the record and the number of bytes it occupies (incl. padding).
#[inline]
pub fn parse_record(buf: &[u8]) -> Result<Option<(Record<'_>, usize)>, CodecError> {
    let Some(header) = Header::parse(buf)? else {
        return Ok(None);
    };
    let total = header.record_len();
    let content_end = HEADER_LEN + usize::from(header.content_length);
    match (buf.len() >= total, buf.get(HEADER_LEN..content_end)) {
        (true, Some(content)) => Ok(Some((Record { header, content }, total))),
        _ => Ok(None),
    }
}

/// Body of a `BEGIN_REQUEST` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BeginRequest {
    /// Raw role number (see [`BeginRequest::role_kind`]).
    pub role: u16,
    /// Flags, e.g. [`FCGI_KEEP_CONN`].
    pub flags: u8,
}

impl BeginRequest {
    /// content must be exactly 8 bytes else Err(BadBeginRequest)
    pub(crate) fn parse(content: &[u8]) -> Result<BeginRequest, CodecError> {
        let b: &[u8; 8] = content.try_into().map_err(|_| CodecError::BadBeginRequest(content.len()))?;
        Ok(BeginRequest { role: u16::from_be_bytes([b[0], b[1]]), flags: b[2] })
    }

    /// Whether the web server wants the connection kept open afterwards.
    pub(crate) fn keep_conn(&self) -> bool {
        self.flags & FCGI_KEEP_CONN != 0
    }

    /// The role, `None` if the raw role number is unknown.
    pub(crate) fn role_kind(&self) -> Option<Role> {
        Role::from_u16(self.role)
    }
}

/// Body of an `END_REQUEST` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndRequest {
    /// Application exit status (like a CGI exit code).
    pub app_status: u32,
    /// Raw protocol status (a [`ProtocolStatus`] value).
    pub protocol_status: u8,
}

impl EndRequest {
    /// content must be exactly 8 bytes else Err(BadEndRequest)
    pub(crate) fn parse(content: &[u8]) -> Result<EndRequest, CodecError> {
        let b: &[u8; 8] = content.try_into().map_err(|_| CodecError::BadEndRequest(content.len()))?;
        Ok(EndRequest { app_status: u32::from_be_bytes([b[0], b[1], b[2], b[3]]), protocol_status: b[4] })
    }
}

/// Append a record with an 8-byte body (no padding needed).
fn encode_fixed(out: &mut Vec<u8>, record_type: RecordType, request_id: u16, body: [u8; 8]) {
    out.reserve(HEADER_LEN + body.len());
    Header::new(record_type, request_id, 8).encode(out);
    out.extend_from_slice(&body);
}

/// Append a `BEGIN_REQUEST` record.
pub fn encode_begin_request(out: &mut Vec<u8>, request_id: u16, role: Role, flags: u8) {
    let [r0, r1] = (role as u16).to_be_bytes();
    let body = [r0, r1, flags, 0, 0, 0, 0, 0];
    encode_fixed(out, RecordType::BeginRequest, request_id, body);
}

/// Append an `END_REQUEST` record.
pub(crate) fn encode_end_request(out: &mut Vec<u8>, request_id: u16, app_status: u32, status: ProtocolStatus) {
    let [a0, a1, a2, a3] = app_status.to_be_bytes();
    let body = [a0, a1, a2, a3, status as u8, 0, 0, 0];
    encode_fixed(out, RecordType::EndRequest, request_id, body);
}

/// Append an `UNKNOWN_TYPE` management record (request id 0) naming the
/// record type byte we did not understand.
pub(crate) fn encode_unknown_type(out: &mut Vec<u8>, unknown: u8) {
    let body = [unknown, 0, 0, 0, 0, 0, 0, 0];
    encode_fixed(out, RecordType::UnknownType, NULL_REQUEST_ID, body);
}

/// Append a header with a zero length for a record whose content is about
/// to be written; returns the header's offset for [`close_record`].
pub(crate) fn open_record(out: &mut Vec<u8>, record_type: RecordType, request_id: u16) -> usize {
    let start = out.len();
    Header::new(record_type, request_id, 0).encode(out);
    start
}

/// Patch the header at `start` with the length of the content written since
/// [`open_record`] (at most [`MAX_CONTENT_LEN`]) and append the padding.
pub(crate) fn close_record(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start - HEADER_LEN;
    debug_assert!(len <= MAX_CONTENT_LEN);
    // Padding is optional; php-cgi refuses a PARAMS record whose content and
    // padding together pass 65,535 bytes (fastcgi.c's FCGI_MAX_LENGTH check).
    let pad = Some(padding_for(len)).filter(|p| len + usize::from(*p) <= MAX_CONTENT_LEN).unwrap_or(0);
    if let Some(h) = out.get_mut(start + 4..start + HEADER_LEN) {
        h[..2].copy_from_slice(&(len as u16).to_be_bytes());
        h[2] = pad;
    }
    out.resize(out.len() + usize::from(pad), 0);
}

/// Writes a byte stream as records of one type, opening a new record every
/// [`MAX_CONTENT_LEN`] bytes, without intermediate copies.
///
/// Many small writes are coalesced into one record. The open record is
/// closed (length patched, padding added) by [`StreamWriter::close`] or on
/// drop. No empty end-of-stream record is written: use [`encode_stream`]
/// with empty data for that.
#[derive(Debug)]
pub(crate) struct StreamWriter<'o> {
    out: &'o mut Vec<u8>,
    record_type: RecordType,
    request_id: u16,
    /// Offset in `out` of the open record's header, if any.
    open: Option<usize>,
}

impl<'o> StreamWriter<'o> {
    /// Start writing `record_type` records for `request_id` at the end of `out`.
    pub(crate) fn new(out: &'o mut Vec<u8>, record_type: RecordType, request_id: u16) -> Self {
        StreamWriter { out, record_type, request_id, open: None }
    }

    /// Append `data` to the stream, splitting it across records as needed.
    pub(crate) fn write(&mut self, mut data: &[u8]) {
        let records = data.len() / MAX_CONTENT_LEN + 1;
        self.out.reserve(data.len() + records * (HEADER_LEN + 7));
        while !data.is_empty() {
            let start = self.current_record();
            let room = MAX_CONTENT_LEN - (self.out.len() - start - HEADER_LEN);
            let (now, rest) = data.split_at(room.min(data.len()));
            self.out.extend_from_slice(now);
            data = rest;
            if now.len() == room {
                self.close_record();
            }
        }
    }

    /// Close the open record, if any (dropping the writer does the same).
    pub(crate) fn close(mut self) {
        self.close_record();
    }

    fn current_record(&mut self) -> usize {
        match self.open {
            Some(start) => start,
            None => {
                let start = open_record(self.out, self.record_type, self.request_id);
                self.open = Some(start);
                start
            }
        }
    }

    fn close_record(&mut self) {
        if let Some(start) = self.open.take() {
            close_record(self.out, start);
        }
    }
}

impl Drop for StreamWriter<'_> {
    fn drop(&mut self) {
        self.close_record();
    }
}

/// Stream record(s) (Params, Stdin, Stdout, Stderr, Data): splits data into records of at most
/// 65535 bytes; pads content to a multiple of 8. If data is empty, writes one empty record (end of stream).
pub fn encode_stream(out: &mut Vec<u8>, record_type: RecordType, request_id: u16, data: &[u8]) {
    if data.is_empty() {
        Header::new(record_type, request_id, 0).encode(out);
        return;
    }
    let mut writer = StreamWriter::new(out, record_type, request_id);
    writer.write(data);
    writer.close();
}

/// Encode a complete CGI response (STDOUT with `"Status: <status>\r\n"` + each extra header line +
/// `"Content-type: text/html; charset=UTF-8\r\n\r\n"` + body, then empty STDOUT, then END_REQUEST
/// app_status 0 RequestComplete).
///
/// Header names and values are written verbatim: callers must not pass
/// values containing CR or LF.
pub(crate) fn encode_simple_response(
    out: &mut Vec<u8>,
    request_id: u16,
    status: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut w = StreamWriter::new(out, RecordType::Stdout, request_id);
    for part in ["Status: ", status, "\r\n"] {
        w.write(part.as_bytes());
    }
    for (name, value) in extra_headers {
        for part in [*name, ": ", *value, "\r\n"] {
            w.write(part.as_bytes());
        }
    }
    if !extra_headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
        w.write(b"Content-type: text/html; charset=UTF-8\r\n");
    }
    w.write(b"\r\n");
    w.write(body);
    w.close();
    encode_stream(out, RecordType::Stdout, request_id, &[]);
    encode_end_request(out, request_id, 0, ProtocolStatus::RequestComplete);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse every record in `buf`, asserting it is fully consumed.
    fn all_records(mut buf: &[u8]) -> Vec<Record<'_>> {
        let mut recs = Vec::new();
        while !buf.is_empty() {
            let (rec, used) = parse_record(buf).expect("valid").expect("complete");
            recs.push(rec);
            buf = &buf[used..];
        }
        recs
    }

    #[test]
    fn padding_rounds_up_to_eight() {
        assert_eq!(padding_for(0), 0);
        assert_eq!(padding_for(1), 7);
        assert_eq!(padding_for(8), 0);
        assert_eq!(padding_for(13), 3);
        assert_eq!(padding_for(MAX_CONTENT_LEN), 1);
    }

    /// php-cgi reads a PARAMS record only if its content and padding fit in 65,535 bytes.
    #[test]
    fn no_record_passes_65535_bytes_with_its_padding() {
        for len in [0, 1, 65_520, 65_527, 65_528, 65_529, 65_534, MAX_CONTENT_LEN] {
            let mut out = Vec::new();
            let start = open_record(&mut out, RecordType::Params, 1);
            out.resize(out.len() + len, b'x');
            close_record(&mut out, start);
            let pad = usize::from(out[6]);
            assert!(len + pad <= MAX_CONTENT_LEN, "{len} + {pad}");
            assert_eq!(out.len(), HEADER_LEN + len + pad);
            assert!(pad == 0 || (len + pad) % 8 == 0, "{len} + {pad}");
        }
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            version: VERSION_1,
            record_type: 200,
            request_id: 0xABCD,
            content_length: 0x1234,
            padding_length: 5,
        };
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out, [1, 200, 0xAB, 0xCD, 0x12, 0x34, 5, 0]);
        assert_eq!(Header::parse(&out), Ok(Some(h)));
        assert_eq!(h.record_len(), 8 + 0x1234 + 5);
        assert_eq!(h.kind(), None);
    }

    #[test]
    fn header_needs_eight_bytes() {
        assert_eq!(Header::parse(&[]), Ok(None));
        assert_eq!(Header::parse(&[1, 1, 0, 1, 0, 8, 0]), Ok(None));
    }

    #[test]
    fn bad_version_is_an_error() {
        let buf = [2, 1, 0, 1, 0, 0, 0, 0];
        assert_eq!(Header::parse(&buf), Err(CodecError::BadVersion(2)));
        assert_eq!(parse_record(&buf).err(), Some(CodecError::BadVersion(2)));
    }

    #[test]
    fn parse_record_truncations_need_more() {
        let mut out = Vec::new();
        encode_stream(&mut out, RecordType::Stdout, 7, b"hello"); // 8 + 5 + 3 padding
        assert_eq!(out.len(), 16);
        for cut in 0..out.len() {
            // cut < 8: header; 8..13: content; 13..16: padding.
            assert!(parse_record(&out[..cut]).expect("valid").is_none(), "cut {cut}");
        }
        let (rec, used) = parse_record(&out).expect("valid").expect("complete");
        assert_eq!((rec.content, used), (&b"hello"[..], 16));
        assert_eq!(rec.header.kind(), Some(RecordType::Stdout));
    }

    #[test]
    fn content_length_past_end_needs_more() {
        let buf = [1, 6, 0, 1, 0xFF, 0xFF, 0, 0, b'x', b'y'];
        assert_eq!(parse_record(&buf).map(|r| r.is_none()), Ok(true));
    }

    #[test]
    fn parse_record_skips_odd_padding_and_leaves_rest() {
        // 3 content bytes with 200 bytes of (non-zero) padding, then another record.
        let mut buf = vec![1, 5, 0, 2, 0, 3, 200, 0, b'a', b'b', b'c'];
        buf.extend(std::iter::repeat_n(0xEE, 200));
        encode_stream(&mut buf, RecordType::Stdin, 2, &[]);
        let (rec, used) = parse_record(&buf).expect("valid").expect("complete");
        assert_eq!((rec.content, used), (&b"abc"[..], 211));
        let (next, used2) = parse_record(&buf[used..]).expect("valid").expect("complete");
        assert_eq!((next.content.len(), used2), (0, 8));
    }

    #[test]
    fn begin_request_round_trip() {
        let mut out = Vec::new();
        encode_begin_request(&mut out, 513, Role::Responder, FCGI_KEEP_CONN);
        let recs = all_records(&out);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].header.kind(), Some(RecordType::BeginRequest));
        assert_eq!(recs[0].header.request_id, 513);
        let br = BeginRequest::parse(recs[0].content).expect("8 bytes");
        assert_eq!(br, BeginRequest { role: 1, flags: 1 });
        assert!(br.keep_conn());
        assert_eq!(br.role_kind(), Some(Role::Responder));
        let no_keep = BeginRequest::parse(&[0, 2, 0, 0, 0, 0, 0, 0]).expect("8 bytes");
        assert!(!no_keep.keep_conn());
        assert_eq!(no_keep.role_kind(), Some(Role::Authorizer));
    }

    #[test]
    fn begin_request_wrong_length() {
        assert_eq!(BeginRequest::parse(&[0; 7]), Err(CodecError::BadBeginRequest(7)));
        assert_eq!(BeginRequest::parse(&[0; 9]), Err(CodecError::BadBeginRequest(9)));
    }

    #[test]
    fn end_request_round_trip() {
        let mut out = Vec::new();
        encode_end_request(&mut out, 9, 0xDEAD_BEEF, ProtocolStatus::Overloaded);
        let recs = all_records(&out);
        assert_eq!(recs[0].header.kind(), Some(RecordType::EndRequest));
        let er = EndRequest::parse(recs[0].content).expect("8 bytes");
        assert_eq!(er.app_status, 0xDEAD_BEEF);
        assert_eq!(ProtocolStatus::from_u8(er.protocol_status), Some(ProtocolStatus::Overloaded));
        assert_eq!(EndRequest::parse(&[0; 3]), Err(CodecError::BadEndRequest(3)));
    }

    #[test]
    fn unknown_type_round_trip() {
        let mut out = Vec::new();
        encode_unknown_type(&mut out, 42);
        let recs = all_records(&out);
        assert_eq!(recs[0].header.kind(), Some(RecordType::UnknownType));
        assert_eq!(recs[0].header.request_id, NULL_REQUEST_ID);
        assert_eq!(recs[0].content, [42, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn empty_stream_is_one_empty_record() {
        let mut out = Vec::new();
        encode_stream(&mut out, RecordType::Params, 3, &[]);
        assert_eq!(out, [1, 4, 0, 3, 0, 0, 0, 0]);
    }

    #[test]
    fn stream_splits_200k_into_four_records() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        encode_stream(&mut out, RecordType::Stdout, 1, &data);
        let recs = all_records(&out);
        let lens: Vec<usize> = recs.iter().map(|r| r.content.len()).collect();
        assert_eq!(lens, [65535, 65535, 65535, 200_000 - 3 * 65535]);
        // Padded to 8 where the padding keeps a record within 65,535 bytes.
        assert!(recs.iter().all(|r| r.header.record_len() % 8 == 0 || r.header.padding_length == 0));
        let joined: Vec<u8> = recs.iter().flat_map(|r| r.content.iter().copied()).collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn stream_writer_coalesces_and_splits() {
        let mut out = Vec::new();
        let mut w = StreamWriter::new(&mut out, RecordType::Stderr, 4);
        w.write(b"ab");
        w.write(&[]);
        w.write(&vec![b'z'; MAX_CONTENT_LEN - 2]); // exactly fills record 1
        w.write(b"c");
        drop(w); // drop closes the open record
        let recs = all_records(&out);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].content.len(), MAX_CONTENT_LEN);
        assert_eq!(recs[1].content, b"c");
    }

    #[test]
    fn simple_response_layout() {
        let mut out = Vec::new();
        encode_simple_response(&mut out, 5, "404 Not Found", &[("X-A", "1")], b"<h1>nope</h1>");
        let recs = all_records(&out);
        assert_eq!(recs.len(), 3);
        let expected = "Status: 404 Not Found\r\nX-A: 1\r\n\
            Content-type: text/html; charset=UTF-8\r\n\r\n<h1>nope</h1>";
        assert_eq!(recs[0].content, expected.as_bytes());
        assert_eq!(recs[1].header.kind(), Some(RecordType::Stdout));
        assert!(recs[1].content.is_empty());
        let end = EndRequest::parse(recs[2].content).expect("8 bytes");
        assert_eq!(end, EndRequest { app_status: 0, protocol_status: 0 });
        assert!(recs.iter().all(|r| r.header.request_id == 5));
    }

    #[test]
    fn simple_response_with_large_body() {
        let body = vec![b'x'; 100_000];
        let mut out = Vec::new();
        encode_simple_response(&mut out, 1, "503 Service Unavailable", &[], &body);
        let recs = all_records(&out);
        assert_eq!(recs.len(), 4); // 2 data records, end of stream, end request
        let stdout: usize = recs[..2].iter().map(|r| r.content.len()).sum();
        assert_eq!(stdout, 100_000 + "Status: 503 Service Unavailable\r\n".len() + 42);
    }
}
