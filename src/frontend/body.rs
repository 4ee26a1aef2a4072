//! The request body on its way from nginx: STDIN records, followed until the
//! empty one that ends the body, forwarded or skipped without being held whole.
//! Pure: the connection reads the bytes and hands them in.

use super::error::ConnError;
use crate::fastcgi::cursor::{Cursor, Flow, Piece};
use crate::fastcgi::RecordType;

/// The request body on its way from nginx: STDIN records are copied through
/// until the empty one that ends the body.
pub struct RequestStream {
    id: u16,
    cursor: Cursor,
    /// The empty STDIN record that ends the body has been seen.
    pub ended: bool,
    /// Body bytes seen so far.
    pub content: u64,
}

impl RequestStream {
    /// The body of request `id`, nothing read yet.
    pub fn new(id: u16) -> RequestStream {
        RequestStream { id, cursor: Cursor::new(), ended: false, content: 0 }
    }

    /// True between two records (what was taken so far is whole records).
    pub fn at_boundary(&self) -> bool {
        self.cursor.at_boundary()
    }

    /// Appends to `out` the body bytes found at the start of `data`; returns
    /// how many bytes of `data` belong to this request.
    pub fn take(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<usize, ConnError> {
        let used = self.skip(data)?;
        out.extend_from_slice(&data[..used]);
        Ok(used)
    }

    /// [`RequestStream::take`] without keeping the bytes (a body nobody reads).
    pub fn skip(&mut self, data: &[u8]) -> Result<usize, ConnError> {
        if self.ended {
            return Ok(0);
        }
        let (id, mut bad, mut ended, mut content) = (self.id, false, false, 0);
        let used = self.cursor.feed(data, |piece| match piece {
            Piece::Content(bytes) => {
                content += bytes.len() as u64;
                Flow::Continue
            }
            Piece::Header(h) => {
                bad |= h.record_type != RecordType::Stdin as u8 || h.request_id != id;
                Flow::Continue
            }
            Piece::End(h) if h.content_length == 0 => {
                ended = true;
                Flow::Stop
            }
            _ => Flow::Continue,
        })?;
        if bad {
            return Err(ConnError::Protocol("expected STDIN records of the current request"));
        }
        self.ended = ended;
        self.content += content;
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastcgi::encode_stream;

    #[test]
    fn request_stream_stops_at_empty_stdin() {
        let mut bytes = Vec::new();
        encode_stream(&mut bytes, RecordType::Stdin, 1, b"body");
        encode_stream(&mut bytes, RecordType::Stdin, 1, b"");
        let len = bytes.len();
        bytes.extend_from_slice(b"next request");
        let mut r = RequestStream::new(1);
        let mut out = Vec::new();
        assert_eq!(r.take(&bytes, &mut out).unwrap(), len);
        assert!(r.ended);
        assert_eq!(out.len(), len);
    }

    #[test]
    fn request_stream_rejects_other_records() {
        let mut bytes = Vec::new();
        encode_stream(&mut bytes, RecordType::Stdout, 1, b"x");
        assert!(RequestStream::new(1).take(&bytes, &mut Vec::new()).is_err());
    }
}
