//! The request body on its way from nginx: STDIN records, followed until the
//! empty one that ends the body, forwarded or skipped without being held whole.
//! Pure: the connection reads the bytes and hands them in.

use super::error::ConnError;
use crate::fastcgi::cursor::{Cursor, Flow, Piece};
use crate::fastcgi::{encode_stream, Header, ParamsBuffer, RecordType, HEADER_LEN};

/// The request body on its way from nginx: STDIN records are copied through
/// until the empty one that ends the body. A record of anything else ends it
/// too, unread: the body is then complete if all of `CONTENT_LENGTH` came (a
/// client that sends no empty STDIN record after a GET, as php-fpm allows),
/// else it is cut short, as php-cgi cuts it (an ABORT_REQUEST mid-body, a
/// client out of step).
pub struct RequestStream<'p> {
    id: u16,
    cursor: Cursor,
    /// The request's params, where `CONTENT_LENGTH` is read when it decides
    /// (rarely: not on a request that ends its body with the empty STDIN record).
    params: &'p ParamsBuffer,
    /// The body is over: its empty STDIN record came, or another record
    /// (left unread) ended it.
    pub ended: bool,
    /// Another record ended the body before `announced` bytes came: nothing
    /// after it is read, and the child's connection is not used again (see
    /// [`RequestStream::take`]).
    pub cut: bool,
    /// Body bytes seen so far.
    pub content: u64,
}

impl<'p> RequestStream<'p> {
    /// The body of request `id`, whose params are `params`; nothing read yet.
    pub fn new(id: u16, params: &'p ParamsBuffer) -> RequestStream<'p> {
        RequestStream { id, cursor: Cursor::new(), params, ended: false, cut: false, content: 0 }
    }

    /// `CONTENT_LENGTH`: the body bytes the request announced.
    fn announced(&self) -> u64 {
        self.params.number(b"CONTENT_LENGTH").unwrap_or(0)
    }

    /// True between two records (what was taken so far is whole records).
    pub fn at_boundary(&self) -> bool {
        self.cursor.at_boundary()
    }

    /// Appends to `out` the body bytes found at the start of `data`; returns
    /// how many bytes of `data` belong to this request. A body cut short ends
    /// with an empty DATA record from here: php-cgi reads past an empty STDIN
    /// record until `CONTENT_LENGTH` is reached, and stops at a record of
    /// another type, as php-fpm stops at the client's (after which it closes
    /// that connection).
    pub fn take(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<usize, ConnError> {
        let was_ended = self.ended;
        let used = self.skip(data)?;
        out.extend_from_slice(&data[..used]);
        if !was_ended {
            self.end_childs_input(out);
        }
        Ok(used)
    }

    /// The client sends no more (it shut its writing side between two
    /// records): the body ends here, cut short if `announced` bytes did not
    /// all come, in which case the child's input ends as [`RequestStream::take`] ends it.
    pub fn end_here(&mut self, out: &mut Vec<u8>) {
        if !self.ended {
            self.end_early();
            self.end_childs_input(out);
        }
    }

    /// Whether php-cgi has read all it was sent, so that its connection is in
    /// step for the next request: it reads the body up to `CONTENT_LENGTH` or
    /// the empty STDIN record (and skips that record before its next request);
    /// what it leaves unread (a body past `CONTENT_LENGTH`, or one of unknown
    /// length, which it does not read) closes its connection at the next
    /// request, and so does the DATA record that ends a body cut short.
    pub fn child_in_step(&self) -> bool {
        if self.content == 0 && self.ended && !self.cut {
            return true; // the usual GET, without reading the params
        }
        let announced = self.announced();
        !self.cut && self.content <= announced && (self.ended || self.content == announced)
    }

    /// A record that is not the body's ends it, or the client's end of file:
    /// cut short unless all the announced bytes came.
    fn end_early(&mut self) {
        self.ended = true;
        self.cut = self.content < self.announced();
    }

    /// After a body cut short just now, the record that ends php-cgi's read of it.
    fn end_childs_input(&self, out: &mut Vec<u8>) {
        if self.cut {
            encode_stream(out, RecordType::Data, self.id, b"");
        }
    }

    /// [`RequestStream::take`] without keeping the bytes (a body nobody reads).
    pub fn skip(&mut self, data: &[u8]) -> Result<usize, ConnError> {
        let mut used = 0;
        while !self.ended && used < data.len() {
            let rest = &data[used..];
            if self.cursor.at_boundary() {
                // A record's header is looked at whole before any of it is taken.
                let Some(header) = rest.get(..HEADER_LEN) else { break };
                if !matches!(Header::parse(header), Ok(Some(h)) if h.record_type == RecordType::Stdin as u8 && h.request_id == self.id)
                {
                    self.end_early();
                    break;
                }
            }
            // One record at a time, so that the next one's header is looked at first.
            let (mut ended, mut content) = (false, 0);
            used += self.cursor.feed(rest, |piece| match piece {
                Piece::Content(bytes) => {
                    content += bytes.len() as u64;
                    Flow::Continue
                }
                // Its header was looked at: one of this body's STDIN records.
                Piece::End(h) => {
                    ended = h.content_length == 0;
                    Flow::Stop
                }
                Piece::Header(_) => Flow::Continue,
            })?;
            self.ended = ended;
            self.content += content;
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastcgi::{encode_begin_request, encode_pair, Role};

    /// Params that announce `length` body bytes.
    fn announcing(length: &str) -> ParamsBuffer {
        let (mut params, mut pair) = (ParamsBuffer::new(1024), Vec::new());
        encode_pair(&mut pair, b"CONTENT_LENGTH", length.as_bytes());
        params.push(&pair).unwrap();
        params
    }

    #[test]
    fn request_stream_stops_at_empty_stdin() {
        let mut bytes = Vec::new();
        encode_stream(&mut bytes, RecordType::Stdin, 1, b"body");
        encode_stream(&mut bytes, RecordType::Stdin, 1, b"");
        let len = bytes.len();
        bytes.extend_from_slice(b"next request");
        let four = announcing("4");
        let mut r = RequestStream::new(1, &four);
        let mut out = Vec::new();
        assert_eq!(r.take(&bytes, &mut out).unwrap(), len);
        assert!(r.ended && !r.cut);
        assert_eq!(out, bytes[..len]);
    }

    /// Fed in pieces of `chunk` bytes, as reads bring them: what is taken, and what is left.
    fn take_in_pieces(r: &mut RequestStream, bytes: &[u8], chunk: usize) -> (Vec<u8>, usize) {
        let (mut out, mut used, mut have) = (Vec::new(), 0, 0);
        while have < bytes.len() {
            have = (have + chunk).min(bytes.len());
            used += r.take(&bytes[used..have], &mut out).unwrap();
        }
        // Reads after the end take nothing more.
        assert_eq!(r.take(&bytes[used..], &mut out).unwrap(), 0);
        (out, used)
    }

    #[test]
    fn another_record_after_the_announced_bytes_ends_the_body_unread() {
        let mut body = Vec::new();
        encode_stream(&mut body, RecordType::Stdin, 7, b"abc");
        let mut next = Vec::new();
        encode_begin_request(&mut next, 8, Role::Responder, 0);
        let three = announcing("3");
        for chunk in 1..=body.len() + next.len() {
            let mut r = RequestStream::new(7, &three);
            let (out, used) = take_in_pieces(&mut r, &[&body[..], &next[..]].concat(), chunk);
            assert!(r.ended && !r.cut && r.content == 3, "chunk {chunk}");
            assert_eq!((out, used), (body.clone(), body.len()), "chunk {chunk}");
        }
    }

    #[test]
    fn another_record_before_the_announced_bytes_cuts_the_body_and_ends_the_childs() {
        let mut body = Vec::new();
        encode_stream(&mut body, RecordType::Stdin, 7, b"abc");
        let mut end = Vec::new();
        encode_stream(&mut end, RecordType::Data, 7, b"");
        let ten = announcing("10");
        for other in [RecordType::AbortRequest, RecordType::Data, RecordType::GetValues, RecordType::Stdout] {
            let mut rest = Vec::new();
            encode_stream(&mut rest, other, 7, b"xy");
            encode_stream(&mut rest, RecordType::Stdin, 7, b"late");
            for chunk in [1, 3, 8, 100] {
                let mut r = RequestStream::new(7, &ten);
                let (out, used) = take_in_pieces(&mut r, &[&body[..], &rest[..]].concat(), chunk);
                assert!(r.ended && r.cut && r.content == 3, "{other:?}, chunk {chunk}");
                assert_eq!(out, [&body[..], &end[..]].concat(), "{other:?}, chunk {chunk}");
                assert_eq!(used, body.len());
            }
        }
        // A STDIN record of another request, or of another version, ends it as well.
        let mut other_id = Vec::new();
        encode_stream(&mut other_id, RecordType::Stdin, 8, b"x");
        let mut r = RequestStream::new(7, &ten);
        assert_eq!(r.skip(&other_id).unwrap(), 0);
        assert!(r.cut);
        let mut r = RequestStream::new(7, &ten);
        assert_eq!(r.skip(&[2, 5, 0, 7, 0, 0, 0, 0]).unwrap(), 0);
        assert!(r.cut);
    }
}
