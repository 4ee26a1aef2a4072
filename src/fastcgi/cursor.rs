//! Following record boundaries in a byte stream without copying it: the
//! proxy forwards bytes as they arrive and only needs to know where records
//! start and end.

use super::{CodecError, Header, HEADER_LEN};

/// One step through the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// A record header was read.
    Header(Header),
    /// Some content bytes of the current record (padding is skipped).
    Content(&'a [u8]),
    /// The current record (content and padding) is complete.
    End(Header),
}

/// Whether to keep going after a [`Piece::End`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on with the next record.
    Continue,
    /// Stop right after this record.
    Stop,
}

/// Position inside a record stream, kept across reads.
#[derive(Debug, Default, Clone)]
pub(crate) struct Cursor {
    header: [u8; HEADER_LEN],
    have: usize,
    current: Option<Header>,
    content_left: usize,
    padding_left: usize,
}

impl Cursor {
    /// A cursor at a record boundary.
    pub(crate) fn new() -> Cursor {
        Cursor::default()
    }

    /// True when the cursor sits exactly between two records.
    pub(crate) fn at_boundary(&self) -> bool {
        self.current.is_none() && self.have == 0
    }

    /// Walks `data`, reporting each piece to `f`. Returns how many bytes were
    /// consumed: all of `data`, or fewer if `f` returned [`Flow::Stop`] at the
    /// end of a record.
    pub(crate) fn feed(&mut self, data: &[u8], mut f: impl FnMut(Piece<'_>) -> Flow) -> Result<usize, CodecError> {
        let mut pos = 0;
        loop {
            if let Some(h) = self.current.filter(|_| self.content_left == 0 && self.padding_left == 0) {
                self.current = None;
                if f(Piece::End(h)) == Flow::Stop {
                    return Ok(pos);
                }
            }
            if pos == data.len() {
                return Ok(pos);
            }
            pos += self.step(&data[pos..], &mut f)?;
        }
    }

    /// Takes at most one piece from `data`: returns how many bytes were
    /// consumed and the piece they made, if any (`None` for padding or an
    /// incomplete header, whose bytes the cursor keeps). A completed record is
    /// reported as [`Piece::End`] before any further byte is taken.
    pub(crate) fn advance<'d>(&mut self, data: &'d [u8]) -> Result<(usize, Option<Piece<'d>>), CodecError> {
        if let Some(h) = self.current.filter(|_| self.content_left == 0 && self.padding_left == 0) {
            self.current = None;
            return Ok((0, Some(Piece::End(h))));
        }
        if data.is_empty() {
            return Ok((0, None));
        }
        let mut piece = None;
        let used = self.step(data, &mut |p| {
            piece = Some(p);
            Flow::Continue
        })?;
        Ok((used, piece))
    }

    /// The bytes of the record being read that are still to come (content
    /// and padding); 0 between records.
    pub(crate) fn left_in_record(&self) -> usize {
        self.current.map_or(0, |_| self.content_left + self.padding_left)
    }

    /// True inside a record (after its header, before its end was reported).
    pub(crate) fn in_record(&self) -> bool {
        self.current.is_some()
    }

    /// The header bytes of the record being read, once its header is complete.
    pub(crate) fn header_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.header
    }

    fn step<'d>(&mut self, data: &'d [u8], f: &mut impl FnMut(Piece<'d>) -> Flow) -> Result<usize, CodecError> {
        let Some(_) = self.current else {
            let take = (HEADER_LEN - self.have).min(data.len());
            self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            if let Some(h) = Header::parse(&self.header[..self.have])? {
                self.have = 0;
                self.current = Some(h);
                self.content_left = usize::from(h.content_length);
                self.padding_left = usize::from(h.padding_length);
                f(Piece::Header(h));
            }
            return Ok(take);
        };
        if self.content_left > 0 {
            let take = self.content_left.min(data.len());
            self.content_left -= take;
            f(Piece::Content(&data[..take]));
            return Ok(take);
        }
        let take = self.padding_left.min(data.len());
        self.padding_left -= take;
        Ok(take)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastcgi::{encode_end_request, encode_stream, ProtocolStatus, RecordType};

    fn stream() -> Vec<u8> {
        let mut out = Vec::new();
        encode_stream(&mut out, RecordType::Stdout, 1, b"hello world");
        encode_end_request(&mut out, 1, 0, ProtocolStatus::RequestComplete);
        out
    }

    fn walk(bytes: &[u8], chunk: usize) -> (Vec<u8>, usize, Vec<u8>) {
        let mut c = Cursor::new();
        let (mut content, mut ends, mut consumed) = (Vec::new(), Vec::new(), 0);
        for piece in bytes.chunks(chunk) {
            consumed += c
                .feed(piece, |p| {
                    match p {
                        Piece::Content(b) => content.extend_from_slice(b),
                        Piece::End(h) => {
                            ends.push(h.record_type);
                            if h.record_type == RecordType::EndRequest as u8 {
                                return Flow::Stop;
                            }
                        }
                        Piece::Header(_) => {}
                    }
                    Flow::Continue
                })
                .unwrap();
        }
        (content, consumed, ends)
    }

    #[test]
    fn same_result_whatever_the_chunking() {
        let bytes = stream();
        for chunk in 1..bytes.len() {
            let (content, consumed, ends) = walk(&bytes, chunk);
            assert_eq!(consumed, bytes.len(), "chunk {chunk}");
            assert_eq!(ends, [6, 3]);
            assert_eq!(&content[..11], b"hello world");
        }
    }

    #[test]
    fn stops_after_end_request() {
        let mut bytes = stream();
        bytes.extend_from_slice(b"trailing");
        let mut c = Cursor::new();
        let used = c
            .feed(&bytes, |p| match p {
                Piece::End(h) if h.record_type == 3 => Flow::Stop,
                _ => Flow::Continue,
            })
            .unwrap();
        assert_eq!(used, bytes.len() - 8);
        assert!(c.at_boundary());
    }

    #[test]
    fn bad_version_is_an_error() {
        let mut c = Cursor::new();
        assert!(c.feed(&[2, 6, 0, 1, 0, 0, 0, 0], |_| Flow::Continue).is_err());
    }
}
