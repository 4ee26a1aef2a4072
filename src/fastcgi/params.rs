//! Name-value pairs (`PARAMS`, `GET_VALUES`, `GET_VALUES_RESULT` content):
//! encoding, zero-copy parsing, the per-request [`ParamsBuffer`] and the
//! `GET_VALUES` answer.
//!
//! Each pair is `nameLength valueLength nameData valueData`; a length below
//! 128 takes one byte, otherwise four big-endian bytes with the high bit set.

use super::record::{close_record, open_record};
use super::{CodecError, RecordType, NULL_REQUEST_ID};

/// One decoded name-value pair `(name, value)`, borrowed from the params bytes.
pub(crate) type Pair<'a> = (&'a [u8], &'a [u8]);

/// Largest name or value length the 4-byte encoding can express (2^31 - 1).
pub(crate) const MAX_PAIR_LEN: usize = 0x7fff_ffff;

/// Append one length field (1 byte below 128, else 4 bytes with the high bit).
#[inline]
fn encode_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        assert!(len <= MAX_PAIR_LEN, "FastCGI name/value too long: {len}");
        out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
    }
}

/// Append one name-value pair in FastCGI encoding (1-byte length if < 128, else 4-byte with high bit).
///
/// # Panics
/// If `name` or `value` is longer than `MAX_PAIR_LEN` bytes.
pub fn encode_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(8 + name.len() + value.len());
    encode_len(out, name.len());
    encode_len(out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Iterator over the name-value pairs of a params byte string, borrowing
/// from it. Yields `Err` once on a truncated pair, then stops.
#[derive(Debug, Clone)]
pub(crate) struct Pairs<'a> {
    buf: &'a [u8],
    /// Offset of the next unread byte; never exceeds `buf.len()`.
    pos: usize,
    failed: bool,
}

/// Iterator version without allocation.
#[must_use]
pub(crate) fn pairs(buf: &[u8]) -> Pairs<'_> {
    Pairs { buf, pos: 0, failed: false }
}

impl<'a> Pairs<'a> {
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn truncated(&self, declared: usize) -> CodecError {
        CodecError::TruncatedPair { offset: self.pos, declared, remaining: self.buf.len() - self.pos }
    }

    fn read_len(&mut self) -> Result<usize, CodecError> {
        match *self.rest() {
            [b, ..] if b < 0x80 => {
                self.pos += 1;
                Ok(usize::from(b))
            }
            [b0, b1, b2, b3, ..] => {
                self.pos += 4;
                Ok(u32::from_be_bytes([b0 & 0x7f, b1, b2, b3]) as usize)
            }
            [] => Err(self.truncated(1)),
            _ => Err(self.truncated(4)),
        }
    }

    fn next_pair(&mut self) -> Result<Pair<'a>, CodecError> {
        let name_len = self.read_len()?;
        let value_len = self.read_len()?;
        let declared = name_len.saturating_add(value_len);
        let Some(body) = self.rest().get(..declared) else {
            return Err(self.truncated(declared));
        };
        self.pos += declared;
        Ok(body.split_at(name_len))
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<Pair<'a>, CodecError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let item = self.next_pair();
        self.failed = item.is_err();
        Some(item)
    }
}

impl std::iter::FusedIterator for Pairs<'_> {}

/// Parse all name-value pairs of a complete params byte string (concatenated content of PARAMS records
/// or of a GET_VALUES record). Errors on truncated pairs (length says more than remains).
pub(crate) fn parse_pairs(buf: &[u8]) -> Result<Vec<Pair<'_>>, CodecError> {
    pairs(buf).collect()
}

/// The `GET_VALUES` names we answer, in the order of the `values` array.
const KNOWN_VALUES: [&[u8]; 3] = [b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"];

/// Build a GET_VALUES_RESULT record (request id 0) answering the names we know
/// (FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS); unknown names are omitted.
///
/// Each known name is answered once, in query order; `mpxs_conns` is sent as
/// `"1"` or `"0"`. On a malformed query nothing is appended and the error is
/// returned.
pub(crate) fn encode_get_values_result(
    out: &mut Vec<u8>,
    query: &[u8],
    max_conns: u32,
    max_reqs: u32,
    mpxs_conns: bool,
) -> Result<(), CodecError> {
    let values = [max_conns, max_reqs, u32::from(mpxs_conns)];
    let start = open_record(out, RecordType::GetValuesResult, NULL_REQUEST_ID);
    match write_known_values(out, query, &values) {
        Ok(()) => {
            close_record(out, start);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Append a pair for every known name in `query` (at most once each).
/// The content is bounded (< 100 bytes), so it always fits one record.
fn write_known_values(out: &mut Vec<u8>, query: &[u8], values: &[u32; 3]) -> Result<(), CodecError> {
    let mut answered = [false; 3];
    for pair in pairs(query) {
        let (name, _) = pair?;
        let Some(i) = KNOWN_VALUES.iter().position(|k| *k == name) else {
            continue;
        };
        if !std::mem::replace(&mut answered[i], true) {
            let mut digits = [0u8; 10];
            encode_pair(out, name, format_u32(values[i], &mut digits));
        }
    }
    Ok(())
}

/// Format `n` in decimal into `buf`, returning the used tail.
fn format_u32(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Accumulates PARAMS record contents of one request, enforcing a byte limit.
///
/// Call [`ParamsBuffer::clear`] between requests to reuse the allocation.
#[derive(Debug, Clone)]
pub struct ParamsBuffer {
    buf: Vec<u8>,
    limit: usize,
}

impl ParamsBuffer {
    /// An empty buffer that accepts at most `limit` bytes in total.
    pub(crate) fn new(limit: usize) -> Self {
        ParamsBuffer { buf: Vec::new(), limit }
    }

    /// Append one PARAMS record's content. Err(ParamsTooLarge{limit}) once total > limit.
    ///
    /// On error nothing is appended.
    pub(crate) fn push(&mut self, content: &[u8]) -> Result<(), CodecError> {
        // Invariant: buf.len() <= limit, so the subtraction cannot underflow.
        if content.len() > self.limit - self.buf.len() {
            return Err(CodecError::ParamsTooLarge { limit: self.limit });
        }
        self.buf.extend_from_slice(content);
        Ok(())
    }

    /// The accumulated params bytes.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Number of accumulated bytes.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been accumulated.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The byte limit given to [`ParamsBuffer::new`].
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Forget the accumulated bytes, keeping the allocation.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    /// Iterate over the accumulated name-value pairs.
    pub(crate) fn pairs(&self) -> Pairs<'_> {
        pairs(&self.buf)
    }

    /// A param's value as php-cgi sees it: the **last** occurrence of a
    /// repeated name (php-cgi's `fcgi_hash_set` replaces the value it holds).
    /// None if absent or if the params are malformed.
    pub(crate) fn get(&self, name: &[u8]) -> Option<&[u8]> {
        let mut found = None;
        for pair in self.pairs() {
            let (n, v) = pair.ok()?;
            if n == name {
                found = Some(v);
            }
        }
        found
    }

    /// Appends the pairs to `out` as they were received (FastCGI pair
    /// encoding), without those `dropped` names: one copy per run of kept
    /// pairs, no decoding and encoding again. Stops at a malformed pair.
    pub(crate) fn copy_pairs_without(&self, out: &mut Vec<u8>, dropped: impl Fn(&[u8]) -> bool) {
        let mut pairs = self.pairs();
        let mut run = 0;
        loop {
            let start = pairs.pos;
            match pairs.next() {
                Some(Ok((name, _))) if dropped(name) => {
                    out.extend_from_slice(&self.buf[run..start]);
                    run = pairs.pos;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    out.extend_from_slice(&self.buf[run..start]);
                    return;
                }
            }
        }
    }

    /// The longest pair as it is encoded (lengths included): a pair longer than a
    /// record's content cannot be sent to php-cgi, which reads each record's pairs
    /// on their own.
    pub(crate) fn longest_pair(&self) -> usize {
        let encoded = |len: usize| if len < 128 { 1 + len } else { 4 + len };
        self.pairs().map_while(Result::ok).map(|(n, v)| encoded(n.len()) + encoded(v.len())).max().unwrap_or(0)
    }

    /// [`ParamsBuffer::get`] of each of `names`, in one pass over the params.
    pub(crate) fn get_each<const N: usize>(&self, names: [&[u8]; N]) -> [Option<&[u8]>; N] {
        let mut found = [None; N];
        for pair in self.pairs() {
            let Ok((n, v)) = pair else {
                return [None; N];
            };
            if let Some(at) = names.iter().position(|&name| name == n) {
                found[at] = Some(v);
            }
        }
        found
    }

    /// [`ParamsBuffer::get`] as text (invalid UTF-8 replaced), empty if absent.
    pub(crate) fn text(&self, name: &[u8]) -> String {
        value_text(self.get(name))
    }

    /// [`ParamsBuffer::get`] as a number (`CONTENT_LENGTH`), without allocating.
    pub(crate) fn number(&self, name: &[u8]) -> Option<u64> {
        value_number(self.get(name))
    }
}

/// A param's value as text (invalid UTF-8 replaced), empty if absent.
pub(crate) fn value_text(value: Option<&[u8]>) -> String {
    let bytes = value.unwrap_or_default();
    // Valid UTF-8 (nearly every value) is checked by `from_utf8`, whose ASCII runs go a word
    // at a time; `from_utf8_lossy` walks it in chunks, at about twice the instructions.
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// A param's value as a number (`CONTENT_LENGTH`), without allocating.
pub(crate) fn value_number(value: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(value?).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::parse_record;
    use super::*;

    #[test]
    fn pair_length_encodings() {
        let cases: [(usize, usize); 3] = [(0, 1), (127, 1), (128, 4)];
        for (len, prefix) in cases {
            let mut out = Vec::new();
            encode_pair(&mut out, &vec![b'n'; len], b"");
            assert_eq!(out.len(), prefix + 1 + len, "len {len}");
        }
        let mut out = Vec::new();
        encode_pair(&mut out, &[b'n'; 128], &[]);
        assert_eq!(out[..5], [0x80, 0, 0, 128, 0]);
    }

    #[test]
    fn pairs_round_trip_all_sizes() {
        let sizes = [0usize, 1, 127, 128, 70_000];
        let mut buf = Vec::new();
        let mut expected = Vec::new();
        for &n in &sizes {
            for &v in &sizes {
                let name = vec![b'a' + (n % 26) as u8; n];
                let value = vec![b'0' + (v % 10) as u8; v];
                encode_pair(&mut buf, &name, &value);
                expected.push((name, value));
            }
        }
        let got = parse_pairs(&buf).expect("well formed");
        assert_eq!(got.len(), expected.len());
        for ((gn, gv), (en, ev)) in got.iter().zip(&expected) {
            assert_eq!((*gn, *gv), (en.as_slice(), ev.as_slice()));
        }
    }

    #[test]
    fn get_each_finds_the_last_of_each_name_in_one_pass() {
        let mut buf = ParamsBuffer::new(1024);
        let mut bytes = Vec::new();
        for (n, v) in [("A", "1"), ("B", "2"), ("A", "3")] {
            encode_pair(&mut bytes, n.as_bytes(), v.as_bytes());
        }
        buf.push(&bytes).unwrap();
        let [a, b, c] = buf.get_each([b"A", b"B", b"C"]);
        assert_eq!((a, b, c), (Some(&b"3"[..]), Some(&b"2"[..]), None));
        assert_eq!([a, b, c], [buf.get(b"A"), buf.get(b"B"), buf.get(b"C")]);
        buf.push(&[0x05]).unwrap();
        assert_eq!(buf.get_each([b"A"]), [None], "malformed params: nothing, as get says");
    }

    #[test]
    fn empty_buffer_has_no_pairs() {
        assert_eq!(parse_pairs(&[]), Ok(vec![]));
        assert_eq!(pairs(&[]).next(), None);
    }

    #[test]
    fn truncated_body_reports_offset() {
        let mut buf = Vec::new();
        encode_pair(&mut buf, b"OK", b"1"); // 5 bytes
        buf.extend_from_slice(&[3, 4, b'a', b'b']); // declares 7, has 2
        let err = parse_pairs(&buf).expect_err("truncated");
        let want = CodecError::TruncatedPair { offset: 7, declared: 7, remaining: 2 };
        assert_eq!(err, want);
        let mut it = pairs(&buf);
        assert!(matches!(it.next(), Some(Ok((b"OK", b"1")))));
        assert_eq!(it.next(), Some(Err(want)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn truncated_length_fields_report_offset() {
        // 4-byte name length cut after 2 bytes.
        let want = CodecError::TruncatedPair { offset: 0, declared: 4, remaining: 2 };
        assert_eq!(parse_pairs(&[0x80, 0]), Err(want));
        // Name length present, value length missing entirely.
        let want = CodecError::TruncatedPair { offset: 1, declared: 1, remaining: 0 };
        assert_eq!(parse_pairs(&[5]), Err(want));
        // Huge 4-byte lengths do not overflow.
        let huge = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1];
        let err = parse_pairs(&huge).expect_err("truncated");
        assert!(matches!(err, CodecError::TruncatedPair { offset: 8, remaining: 1, .. }));
    }

    #[test]
    fn params_buffer_accumulates_and_finds() {
        let mut stream = Vec::new();
        encode_pair(&mut stream, b"SCRIPT_FILENAME", b"/var/www/index.php");
        encode_pair(&mut stream, b"REQUEST_METHOD", b"GET");
        encode_pair(&mut stream, b"EMPTY", b"");
        let mut pb = ParamsBuffer::new(1024);
        // Split across records mid-pair, as nginx may do.
        for chunk in stream.chunks(7) {
            pb.push(chunk).expect("under limit");
        }
        assert_eq!(pb.bytes(), stream.as_slice());
        assert_eq!(pb.get(b"REQUEST_METHOD"), Some(&b"GET"[..]));
        assert_eq!(pb.get(b"EMPTY"), Some(&b""[..]));
        assert_eq!(pb.get(b"MISSING"), None);
        assert_eq!(pb.pairs().count(), 3);
        pb.clear();
        assert!(pb.is_empty());
        assert_eq!(pb.get(b"REQUEST_METHOD"), None);
    }

    #[test]
    fn repeated_names_resolve_to_the_last_value_as_in_php_cgi() {
        let mut stream = Vec::new();
        encode_pair(&mut stream, b"SCRIPT_FILENAME", b"/srv/www/index.php");
        encode_pair(&mut stream, b"SAME", b"x");
        encode_pair(&mut stream, b"SCRIPT_FILENAME", b"/srv/www/uploads/a.jpg");
        encode_pair(&mut stream, b"SAME", b"x");
        let mut pb = ParamsBuffer::new(1024);
        pb.push(&stream).expect("under limit");
        assert_eq!(pb.get(b"SCRIPT_FILENAME"), Some(&b"/srv/www/uploads/a.jpg"[..]));
        assert_eq!(pb.get(b"SAME"), Some(&b"x"[..]));
    }

    #[test]
    fn params_buffer_get_on_malformed_is_none() {
        let mut pb = ParamsBuffer::new(100);
        pb.push(&[3, 200]).expect("under limit");
        assert_eq!(pb.get(b"abc"), None);
    }

    #[test]
    fn copied_pairs_are_the_pairs_without_the_dropped_ones() {
        let mut enc = Vec::new();
        encode_pair(&mut enc, b"A", b"1");
        encode_pair(&mut enc, b"DROP", b"x");
        encode_pair(&mut enc, b"B", &[b'2'; 300]);
        encode_pair(&mut enc, b"DROP", b"y");
        let mut pb = ParamsBuffer::new(4096);
        pb.push(&enc).unwrap();
        let mut out = Vec::new();
        pb.copy_pairs_without(&mut out, |name| name == b"DROP");
        let mut expected = Vec::new();
        encode_pair(&mut expected, b"A", b"1");
        encode_pair(&mut expected, b"B", &[b'2'; 300]);
        assert_eq!(out, expected);
        // A malformed tail is not copied.
        pb.push(&[5, 9, b'C']).unwrap();
        out.clear();
        pb.copy_pairs_without(&mut out, |_| false);
        assert_eq!(out, enc);
    }

    #[test]
    fn params_buffer_limit() {
        let mut pb = ParamsBuffer::new(10);
        pb.push(&[0; 6]).expect("under limit");
        pb.push(&[0; 4]).expect("exactly at limit");
        assert_eq!(pb.push(&[0]), Err(CodecError::ParamsTooLarge { limit: 10 }));
        assert_eq!(pb.len(), 10);
        assert_eq!(pb.limit(), 10);
    }

    fn get_values(query: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        encode_get_values_result(&mut out, query, 50, 500, false).expect("valid query");
        let (rec, used) = parse_record(&out).expect("valid").expect("complete");
        assert_eq!(used, out.len());
        assert_eq!(rec.header.kind(), Some(RecordType::GetValuesResult));
        assert_eq!(rec.header.request_id, NULL_REQUEST_ID);
        let list = parse_pairs(rec.content).expect("valid pairs");
        list.into_iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
    }

    #[test]
    fn get_values_answers_only_known_names() {
        let mut query = Vec::new();
        for name in ["FCGI_MPXS_CONNS", "X_UNKNOWN", "FCGI_MAX_CONNS", "FCGI_MAX_REQS"] {
            encode_pair(&mut query, name.as_bytes(), b"");
        }
        encode_pair(&mut query, b"FCGI_MAX_CONNS", b""); // duplicate: answered once
        let got = get_values(&query);
        let want: Vec<(Vec<u8>, Vec<u8>)> =
            [("FCGI_MPXS_CONNS", "0"), ("FCGI_MAX_CONNS", "50"), ("FCGI_MAX_REQS", "500")]
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn get_values_empty_and_malformed() {
        assert!(get_values(b"").is_empty());
        let mut out = vec![9];
        let err = encode_get_values_result(&mut out, &[14, 0, b'F'], 1, 1, true);
        assert!(matches!(err, Err(CodecError::TruncatedPair { .. })));
        assert_eq!(out, [9], "nothing appended on error");
    }

    #[test]
    fn format_u32_extremes() {
        let mut buf = [0u8; 10];
        assert_eq!(format_u32(0, &mut buf), b"0");
        assert_eq!(format_u32(u32::MAX, &mut buf), b"4294967295");
    }
}
