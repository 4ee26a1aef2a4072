//! Entry points of the fuzz targets (`fuzz/fuzz_targets/`, run by `scripts/fuzz.sh`) and of their
//! corpus replay (`tests/fuzz_corpus.rs`): each takes any bytes, runs one parser over them the way
//! rustfpm does, and panics when the parser breaks one of its promises (on top of the panics,
//! hangs and huge allocations libFuzzer looks for).
//!
//! The parsers are the ones that read bytes from someone else: FastCGI records and params (from
//! nginx and from php-cgi), the request head and its view, with Apache's params rewritten as
//! php-fpm rewrites them (nginx, Apache), the child's response (php-cgi) and the php-fpm INI
//! files (the operator).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::fastcgi::cursor::{Cursor, Flow, Piece};
use crate::fastcgi::{
    encode_get_values_result, encode_pair, encode_stream, pairs, parse_pairs, parse_record, BeginRequest, CodecError,
    EndRequest, Header, ParamsBuffer, RecordType,
};
use crate::frontend::apache;
use crate::frontend::connection::Connection;
use crate::frontend::error::ConnError;
use crate::frontend::policy::View;
use crate::frontend::response::ResponseStream;

/// The params limit of the request-head target: small, so that the 431 path is reached.
pub(crate) const FUZZ_MAX_PARAMS: usize = 4096;

/// The FastCGI record parser: [`parse_record`] over the whole input, checked against the
/// streaming `Cursor` fed in reads of a size the first byte picks; both must see the same
/// records. Every record's content also goes through the fixed-body parsers and is encoded
/// back as a stream.
pub fn record(data: &[u8]) {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let whole = records_at_once(data);
    let streamed = records_streamed(data, usize::from(chunk).max(1));
    assert_eq!(whole, streamed, "parse_record and Cursor disagree");
    for (header, content) in &whole {
        assert_eq!(Header::parse(&header.to_bytes()), Ok(Some(*header)));
        let _ = (BeginRequest::parse(content), EndRequest::parse(content));
        let mut out = Vec::new();
        encode_stream(&mut out, RecordType::Stdout, header.request_id, content);
        let again: Vec<u8> = records_at_once(&out).into_iter().flat_map(|(_, c)| c).collect();
        assert_eq!(&again, content, "a stream does not decode to what was encoded");
    }
}

/// Complete records at the start of `data`, with [`parse_record`].
fn records_at_once(mut data: &[u8]) -> Vec<(Header, Vec<u8>)> {
    let mut found = Vec::new();
    while let Ok(Some((rec, used))) = parse_record(data) {
        assert_eq!(used, rec.header.record_len());
        assert_eq!(rec.content.len(), usize::from(rec.header.content_length));
        found.push((rec.header, rec.content.to_vec()));
        data = &data[used..];
    }
    found
}

/// Complete records at the start of `data`, with a [`Cursor`] fed `chunk` bytes at a time.
fn records_streamed(data: &[u8], chunk: usize) -> Vec<(Header, Vec<u8>)> {
    let (mut cursor, mut found, mut content) = (Cursor::new(), Vec::new(), Vec::new());
    for piece in data.chunks(chunk) {
        let fed = cursor.feed(piece, |p| {
            match p {
                Piece::Header(_) => content.clear(),
                Piece::Content(bytes) => content.extend_from_slice(bytes),
                Piece::End(h) => found.push((h, std::mem::take(&mut content))),
            }
            Flow::Continue
        });
        match fed {
            Ok(used) => assert_eq!(used, piece.len(), "the cursor stopped without being asked to"),
            Err(_) => break,
        }
    }
    found
}

/// The params parser: `parse_pairs` and its iterator, pairs encoded back and parsed again,
/// `ParamsBuffer` with a limit, and the `GET_VALUES` answer to the input taken as a query.
pub fn params(data: &[u8]) {
    match parse_pairs(data) {
        Ok(list) => {
            let mut encoded = Vec::new();
            for (name, value) in &list {
                encode_pair(&mut encoded, name, value);
            }
            assert_eq!(parse_pairs(&encoded).as_ref(), Ok(&list), "pairs do not survive encoding");
            let mut buffer = ParamsBuffer::new(data.len());
            let (front, back) = data.split_at(data.len() / 2);
            assert_eq!(buffer.push(front).and_then(|()| buffer.push(back)), Ok(()));
            if let Some((name, value)) = list.first() {
                assert_eq!(buffer.get(name), Some(*value));
            }
            assert_eq!(buffer.push(b"x"), Err(CodecError::ParamsTooLarge { limit: data.len() }));
        }
        Err(CodecError::TruncatedPair { offset, declared, remaining }) => {
            assert_eq!(offset + remaining, data.len());
            assert!(declared > remaining, "a pair reported truncated fits");
        }
        Err(e) => panic!("parse_pairs gave {e:?}"),
    }
    let mut items: Vec<_> = pairs(data).collect();
    if let Err(e) = parse_pairs(data) {
        assert_eq!(items.pop(), Some(Err(e)), "the iterator does not end with parse_pairs' error");
    }
    assert!(items.iter().all(Result::is_ok), "the iterator went on after an error");
    let mut out = vec![7];
    match encode_get_values_result(&mut out, data, 1024, 1024, false) {
        Ok(()) => {
            let answer = records_at_once(&out[1..]);
            assert_eq!(answer.len(), 1, "one GET_VALUES_RESULT record");
            assert!(parse_pairs(&answer[0].1).is_ok());
        }
        Err(_) => assert_eq!(out, [7], "a failed answer left bytes behind"),
    }
}

/// The front end's request-head state machine (`Connection::parse_head`) on a connection whose peer sends
/// the input after its first byte, in reads of a size the first byte picks. Heads are read
/// one after the other, each request's body skipped in between, as on a kept connection, until
/// the input ends or the connection would be closed. Everything written back must be whole
/// FastCGI records.
pub fn request_head(data: &[u8]) {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let reader = Chunked { data, step: usize::from(chunk).max(1) };
    let mut conn = Connection::new(tokio::io::join(reader, Vec::new()), false, None, Default::default());
    let _ = run_to_end(heads(&mut conn));
    let written = conn.stream().writer();
    let mut rest = written.as_slice();
    while let Ok(Some((_, used))) = parse_record(rest) {
        rest = &rest[used..];
    }
    assert!(rest.is_empty(), "rustfpm wrote something that is not whole records: {written:?}");
}

/// Reads heads and skips bodies until the input ends or an error.
async fn heads(conn: &mut Connection<tokio::io::Join<Chunked<'_>, Vec<u8>>>) -> Result<(), ConnError> {
    let mut head = None;
    loop {
        if let Some(done) = conn.parse_head(&mut head, FUZZ_MAX_PARAMS).await? {
            assert!(done.params.len() <= FUZZ_MAX_PARAMS);
            let _ = crate::accesslog::RequestInfo::of(&crate::accesslog::Shown::of(&done.params));
            request_view(&done.params);
            conn.skip_body(&mut done.body()).await?;
            if conn.closes_after() {
                return Ok(());
            }
            conn.between_requests();
            continue;
        }
        if conn.closes_after() || conn.fill().await? == 0 {
            return Ok(());
        }
    }
}

/// The request view of a head ([`View::of`]) and, for Apache's `proxy:` shapes, php-fpm's
/// rewrite of its params ([`apache`]) with the script taken to end at the last `/` of the path
/// (the file-system answer the front end gets from a lookup): the rewrite must encode, name
/// that script in its last SCRIPT_FILENAME, stay bounded, and leave nothing for a second one.
fn request_view(params: &ParamsBuffer) {
    let Ok(view) = View::of(params) else {
        return;
    };
    let Some(stripped) = view.apache else {
        return;
    };
    assert!(!stripped.path.contains(&b'?'), "a query is left in {:?}", stripped.path);
    let last_slash = stripped.path.iter().rposition(|&b| b == b'/').filter(|&i| i > 0 && stripped.apache);
    let script = last_slash.unwrap_or(stripped.path.len());
    let mut puts: apache::Puts = vec![(b"SCRIPT_FILENAME", stripped.path.to_vec())];
    puts.extend(apache::split_path_info(stripped.path, script, &view.env));
    let added: usize = puts.iter().map(|(n, v)| n.len() + v.len() + 8).sum();
    let rewritten = apache::rewrite(params, &puts, apache::withheld(&view.env, &puts)).expect("the rewrite encodes");
    assert!(rewritten.len() <= params.len() + added, "{} bytes from {}", rewritten.len(), params.len());
    assert_eq!(rewritten.get(b"SCRIPT_FILENAME"), Some(&stripped.path[..script]));
    let again = View::of(&rewritten).expect("the rewrite adds no NUL");
    assert!(again.apache.is_none() || !stripped.apache, "the rewrite left a proxy: prefix");
}

/// A peer that has sent `data` and closed, read at most `step` bytes at a time.
struct Chunked<'d> {
    data: &'d [u8],
    step: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// Runs a future whose I/O is all in memory: it never waits, so one poll runs it to its end.
fn run_to_end<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a future over in-memory I/O waited"),
    }
}

/// The finish marker the child-response target gives the stream when the second byte asks.
const FUZZ_MARKER: &[u8] = b"MARK";

/// The child-response parser (`ResponseStream::scan`, with the STDERR rewriting behind it)
/// over the input after two bytes: the first picks the size of the reads from the child, the
/// second whether a finish marker is set and the response head kept. What reaches nginx must be
/// whole records up to the cut where the input ends, and no STDERR line of it the marker.
pub fn child_response(data: &[u8]) {
    let [chunk, flags, data @ ..] = data else {
        return;
    };
    let marker = (flags & 1 != 0).then_some(FUZZ_MARKER);
    let mut stream = ResponseStream::new(1, marker);
    stream.keep_head = flags & 2 != 0;
    let mut sent = Vec::new();
    'reads: for mut read in data.chunks(usize::from(*chunk).max(1)) {
        // Each scan takes at least one byte or one record's end, and a record ends once.
        let mut scans = 2 * read.len() + 2;
        while !read.is_empty() && !stream.ended {
            scans = scans.checked_sub(1).expect("ResponseStream::scan makes no progress");
            let Ok(scan) = stream.scan(read) else {
                break 'reads;
            };
            assert!(scan.forward <= scan.consumed && scan.consumed <= read.len(), "{scan:?} of {}", read.len());
            sent.extend_from_slice(&read[..scan.forward]);
            sent.append(&mut stream.out);
            read = &read[scan.consumed..];
        }
    }
    check_sent(&sent, marker);
}

/// What [`child_response`] sent: whole records then at most a cut one, no marker line.
fn check_sent(sent: &[u8], marker: Option<&[u8]>) {
    let mut rest = sent;
    loop {
        match parse_record(rest) {
            Ok(Some((rec, used))) => {
                if rec.header.record_type == RecordType::Stderr as u8 {
                    let lines = rec.content.split(|&b| b == b'\n');
                    assert!(!lines.clone().any(|l| Some(l) == marker), "a marker line reached nginx");
                    let _ = crate::frontend::stderr::text(&sent[sent.len() - rest.len()..][..used]);
                }
                rest = &rest[used..];
            }
            Ok(None) => return,
            Err(e) => panic!("rustfpm sent nginx a bad record: {e}"),
        }
    }
}

/// The php-fpm INI reader: the input as `php-fpm.conf` (in a directory of its own, which is also
/// the prefix), loaded with `crate::config::load_fpm`. A config it accepts must convert to
/// TOML that the native loader accepts (`rustfpm convert`).
pub fn fpm_ini(data: &[u8]) {
    fpm_ini_in(&fuzz_dir(), data)
}

/// [`fpm_ini`] in the directory `dir`, which it writes `php-fpm.conf` into.
pub fn fpm_ini_in(dir: &Path, data: &[u8]) {
    let file = dir.join("php-fpm.conf");
    if let Err(e) = std::fs::write(&file, data) {
        panic!("cannot write {}: {e}", file.display());
    }
    match crate::config::load_fpm(&file, Some(dir)) {
        Ok((config, warnings)) => {
            assert!(warnings.iter().all(|w| !w.is_empty()));
            let text = crate::config::to_toml(&config);
            if let Err(errors) = crate::config::parse(&text, &file) {
                panic!("the converted config is refused:\n{errors}\n{text}");
            }
        }
        Err(errors) => assert!(!errors.to_string().is_empty()),
    }
}

/// A directory for this process's [`fpm_ini`] input, made on first use in `$TMPDIR` (which
/// `scripts/fuzz.sh` makes and removes).
fn fuzz_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rustfpm-fuzz-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        dir
    })
    .clone()
}
