//! PHP's messages on their way to nginx, rewritten into php-fpm's shape.
//!
//! php-cgi writes each message as `message\n` into an FCGI_STDERR record;
//! consecutive messages share one record until output of another type (or a
//! flush) closes it, and nginx logs each record as one `FastCGI sent in
//! stderr: "..."` line. php-fpm writes the same messages into the same
//! stream, but each one prefixed with `PHP message: `, without the newline,
//! and every message of a request after its first preceded by `; `
//! (php-src `sapi/fpm/fpm/fpm_main.c`, `sapi_cgi_log_fastcgi`). Records map
//! one to one, so the rewritten messages reach nginx where php-fpm's would.
//!
//! Where one message ends inside a record is not marked: a message may itself
//! span lines (an uncaught exception's stack trace, `error_log(print_r(..))`).
//! A line starts a new message when it begins a record or starts with `PHP `
//! (every PHP error, warning and notice does); other lines continue the
//! message before them, their newline kept, as php-fpm keeps a multi-line
//! message's. So two `error_log()` lines in one record stay one message.
//!
//! Lines of the `fastcgi_finish_request()` polyfill (`crate::pool::finish`)
//! are taken out here and never reach nginx.
//!
//! Memory: a record's content is at most 65535 bytes and is rewritten when
//! the record ends, so what is held is bounded by one record.

use crate::fastcgi::{parse_record, RecordType, StreamWriter};

/// What php-fpm puts before each message.
pub const MESSAGE_PREFIX: &[u8] = b"PHP message: ";

/// How the lines of an uncaught exception's trace start (besides `#N`).
const TRACE_LINES: [&[u8]; 3] = [b"Stack trace:", b"  thrown in ", b"Next "];

/// What php-fpm puts between two messages of one request.
pub const SEPARATOR: &[u8] = b"; ";

/// Most header bytes the finish marker may carry (nginx refuses headers
/// larger than its `fastcgi_buffer_size` anyway).
pub const MAX_MARKED_HEADERS: usize = 64 * 1024;

/// What the `fastcgi_finish_request()` polyfill said in one record.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Marked {
    /// CGI header bytes the script had not sent (`MARKER:HEX` lines).
    pub headers: Vec<u8>,
    /// The script finished its request (a `MARKER` line).
    pub finished: bool,
    /// The response code the script ended with, set after its headers went out with
    /// another (a `MARKER=CODE` line): what php-fpm's access log shows.
    pub status: Option<u16>,
    /// The script's main code has ended (a `MARKER.` line): its shutdown functions run.
    pub main_ended: bool,
}

/// Rewrites the STDERR records of one response.
#[derive(Debug, Default)]
pub struct StderrRewriter {
    /// Content of the STDERR record being read.
    record: Vec<u8>,
    /// Rewritten content, reused between records.
    scratch: Vec<u8>,
    /// A message was sent in this request: the next one gets `; `.
    started: bool,
    /// The last record ended inside a message (no trailing newline).
    mid_message: bool,
    /// The message being written is a PHP error (`PHP Warning:  ...`), which only
    /// an uncaught exception's trace continues.
    in_php_error: bool,
    /// Every message of the request, as PHP wrote it, when the pool logs them
    /// (`catch_workers_output`: php-fpm's children copy them to their stderr).
    pub messages: Option<Vec<Vec<u8>>>,
}

impl StderrRewriter {
    /// Takes content bytes of the current STDERR record.
    pub fn push(&mut self, bytes: &[u8]) {
        self.record.extend_from_slice(bytes);
    }

    /// Ends the current record: appends its messages, rewritten, to `out` as
    /// STDERR records of request `id`. Lines of the polyfill's `marker` are
    /// left out and reported in `marked`.
    pub fn end_record(&mut self, id: u16, marker: Option<&[u8]>, out: &mut Vec<u8>, marked: &mut Marked) {
        let record = std::mem::take(&mut self.record);
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.rewrite(&record, marker, &mut scratch, marked);
        if !scratch.is_empty() {
            let mut writer = StreamWriter::new(out, RecordType::Stderr, id);
            writer.write(&scratch);
            writer.close();
        }
        self.record = record;
        self.record.clear();
        self.scratch = scratch;
    }

    /// Rewrites one record's content into `out`.
    fn rewrite(&mut self, content: &[u8], marker: Option<&[u8]>, out: &mut Vec<u8>, marked: &mut Marked) {
        if content.is_empty() {
            return;
        }
        let body = content.strip_suffix(b"\n").unwrap_or(content);
        let mut fresh = !self.mid_message;
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            if marker.is_some_and(|m| take_marker(line, m, marked)) {
                fresh = true;
                continue;
            }
            let new_message = fresh || !self.started || (i > 0 && !self.continues(line));
            if new_message {
                self.in_php_error = line.starts_with(b"PHP ");
            }
            if new_message {
                if self.started {
                    out.extend_from_slice(SEPARATOR);
                }
                out.extend_from_slice(MESSAGE_PREFIX);
                self.started = true;
            } else if i > 0 {
                out.push(b'\n');
            }
            out.extend_from_slice(line);
            self.collect(new_message, i > 0, line);
            fresh = false;
        }
        self.mid_message = !content.ends_with(b"\n");
    }
}

impl StderrRewriter {
    /// Whether `line`, after a newline, continues the message before it rather than
    /// starting one: the trace of an uncaught exception continues a PHP error; any line but
    /// a PHP error continues a message of the script's own (`error_log("a\nb")`).
    fn continues(&self, line: &[u8]) -> bool {
        if self.in_php_error {
            TRACE_LINES.iter().any(|start| line.starts_with(start))
                || (line.starts_with(b"#") && line.get(1).is_some_and(u8::is_ascii_digit))
        } else {
            !line.starts_with(b"PHP ")
        }
    }

    /// Keeps a line of a message, when messages are collected.
    fn collect(&mut self, new_message: bool, after_newline: bool, line: &[u8]) {
        let Some(messages) = self.messages.as_mut() else { return };
        match messages.last_mut() {
            Some(last) if !new_message => {
                if after_newline {
                    last.push(b'\n');
                }
                last.extend_from_slice(line);
            }
            _ => messages.push(line.to_vec()),
        }
    }
}

/// The text carried by STDERR records as [`StderrRewriter::end_record`]
/// writes them, without a leading separator (for rustfpm's own log).
pub fn text(records: &[u8]) -> String {
    let (mut text, mut rest) = (Vec::new(), records);
    while let Ok(Some((record, used))) = parse_record(rest) {
        text.extend_from_slice(record.content);
        rest = &rest[used..];
    }
    let text = text.strip_prefix(SEPARATOR).unwrap_or(&text);
    String::from_utf8_lossy(text).into_owned()
}

/// Takes a line of the polyfill's: `marker` alone (the request is finished),
/// `marker:HEX` (header bytes), `marker=CODE` (the code the script ended
/// with) or `marker.` (the script's main code ended). False if `line` is anything else.
fn take_marker(line: &[u8], marker: &[u8], marked: &mut Marked) -> bool {
    let Some(rest) = line.strip_prefix(marker) else {
        return false;
    };
    match rest {
        b"" => marked.finished = true,
        b"." => marked.main_ended = true,
        _ => return take_marked_value(rest, marked),
    }
    true
}

/// `marker=CODE` or `marker:HEX` without the marker.
fn take_marked_value(rest: &[u8], marked: &mut Marked) -> bool {
    if let Some(digits) = rest.strip_prefix(b"=") {
        let code = std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok());
        marked.status = code.filter(|c| (100..1000).contains(c)).or(marked.status);
        return code.is_some();
    }
    let Some(hex) = rest.strip_prefix(b":").filter(|h| h.len() % 2 == 0) else {
        return false;
    };
    let bytes: Option<Vec<u8>> =
        hex.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()).collect();
    match bytes {
        Some(bytes) if marked.headers.len() + bytes.len() <= MAX_MARKED_HEADERS => {
            marked.headers.extend_from_slice(&bytes);
            true
        }
        Some(_) => true,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastcgi::Header;

    /// The content of each STDERR record in `bytes`.
    fn records(bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let h = Header::parse(rest).unwrap().unwrap();
            assert_eq!(h.record_type, RecordType::Stderr as u8);
            let len = usize::from(h.content_length);
            out.push(String::from_utf8(rest[8..8 + len].to_vec()).unwrap());
            rest = &rest[8 + len + usize::from(h.padding_length)..];
        }
        out
    }

    /// Rewrites each of `inputs` as one record of one request.
    fn rewrite_all(inputs: &[&str]) -> Vec<String> {
        let mut r = StderrRewriter::default();
        let mut out = Vec::new();
        for input in inputs {
            r.push(input.as_bytes());
            r.end_record(1, None, &mut out, &mut Marked::default());
        }
        records(&out)
    }

    #[test]
    fn messages_are_prefixed_and_joined() {
        let got = rewrite_all(&["PHP Warning:  a in /x.php on line 2\nPHP Notice:  b in /x.php on line 3\n"]);
        assert_eq!(
            got,
            ["PHP message: PHP Warning:  a in /x.php on line 2; PHP message: PHP Notice:  b in /x.php on line 3"]
        );
    }

    /// nginx logs each record as one entry: a script's own line after a PHP error is a
    /// message of its own, so the entry stays on one line, as php-fpm's does.
    #[test]
    fn a_script_line_after_a_php_error_is_its_own_message() {
        let got = rewrite_all(&["PHP Warning:  w in /x.php on line 2\nPHP Notice:  n in /x.php on line 3\nmine\n"]);
        assert_eq!(
            got,
            ["PHP message: PHP Warning:  w in /x.php on line 2; PHP message: PHP Notice:  n in /x.php on line 3; \
              PHP message: mine"]
        );
    }

    #[test]
    fn later_records_of_a_request_start_with_the_separator() {
        let got = rewrite_all(&["PHP Warning:  a\n", "PHP Warning:  b\n"]);
        assert_eq!(got, ["PHP message: PHP Warning:  a", "; PHP message: PHP Warning:  b"]);
    }

    #[test]
    fn multi_line_messages_stay_whole() {
        let trace = "PHP Fatal error:  Uncaught Exception: boom in /x.php:3\nStack trace:\n#0 {main}\n  thrown in /x.php on line 3\n";
        let got = rewrite_all(&[&format!("PHP Warning:  w\n{trace}")]);
        let expected = format!("PHP message: PHP Warning:  w; PHP message: {}", trace.strip_suffix('\n').unwrap());
        assert_eq!(got, [expected]);
    }

    #[test]
    fn a_record_starts_a_message_unless_the_last_one_was_cut() {
        // A message longer than php-cgi's buffer continues in the next record.
        let got = rewrite_all(&["custom line one\nline two\n", "PHP Warning:  long", " tail\n", "next\n"]);
        assert_eq!(
            got,
            [
                "PHP message: custom line one\nline two",
                "; PHP message: PHP Warning:  long",
                " tail",
                "; PHP message: next",
            ]
        );
    }

    #[test]
    fn the_marker_lines_are_taken_out() {
        let mut r = StderrRewriter::default();
        let (mut out, mut marked) = (Vec::new(), Marked::default());
        r.push(b"PHP Warning:  a\nMARK:410d\n");
        r.end_record(1, Some(b"MARK"), &mut out, &mut marked);
        r.push(b"MARK:0a\n");
        r.end_record(1, Some(b"MARK"), &mut out, &mut marked);
        assert_eq!(marked, Marked { headers: b"A\r\n".to_vec(), ..Marked::default() });
        r.push(b"MARK\n");
        r.end_record(1, Some(b"MARK"), &mut out, &mut marked);
        assert!(marked.finished);
        r.push(b"MARKER\nMARK:4\nMARK:zz\n");
        r.end_record(1, Some(b"MARK"), &mut out, &mut marked);
        assert_eq!(marked.headers, b"A\r\n");
        assert_eq!(records(&out), ["PHP message: PHP Warning:  a", "; PHP message: MARKER\nMARK:4\nMARK:zz"]);
    }

    #[test]
    fn the_final_status_line_is_taken_out_and_read() {
        let mut r = StderrRewriter::default();
        let (mut out, mut marked) = (Vec::new(), Marked::default());
        r.push(b"PHP Warning:  a\nMARK=500\n");
        r.end_record(1, Some(b"MARK"), &mut out, &mut marked);
        assert_eq!((marked.status, marked.finished), (Some(500), false));
        r.push(b"MARK=5000\nMARK=x\nOTHER=404\nMARK=\n");
        r.end_record(1, Some(b"MARK"), &mut out, &mut marked);
        assert_eq!(marked.status, Some(500), "no code outside 100-999 is taken");
        let got = records(&out);
        assert_eq!(got, ["PHP message: PHP Warning:  a", "; PHP message: MARK=x\nOTHER=404\nMARK="]);
        // Without a marker (no polyfill) the line is a message like any other.
        let (mut out, mut marked) = (Vec::new(), Marked::default());
        let mut r = StderrRewriter::default();
        r.push(b"MARK=500\n");
        r.end_record(1, None, &mut out, &mut marked);
        assert_eq!((marked.status, records(&out)), (None, vec!["PHP message: MARK=500".to_string()]));
    }

    #[test]
    fn the_main_end_line_is_taken_out_and_ends_nothing() {
        let mut r = StderrRewriter::default();
        let (mut out, mut marked) = (Vec::new(), Marked::default());
        r.push(b"MARK.\nMARK..\n");
        r.end_record(1, Some(b"MARK"), &mut out, &mut marked);
        assert_eq!(marked, Marked { main_ended: true, ..Marked::default() }, "the response goes on");
        assert_eq!(records(&out), ["PHP message: MARK.."]);
    }

    #[test]
    fn text_is_read_back_for_the_log() {
        let mut r = StderrRewriter::default();
        let mut out = Vec::new();
        r.push(b"PHP Warning:  a\n");
        r.end_record(1, None, &mut out, &mut Marked::default());
        out.clear();
        r.push(b"PHP Warning:  b\nPHP Notice:  c\n");
        r.end_record(1, None, &mut out, &mut Marked::default());
        assert_eq!(text(&out), "PHP message: PHP Warning:  b; PHP message: PHP Notice:  c");
    }

    #[test]
    fn big_records_are_split_and_nothing_is_kept() {
        let long = format!("PHP Warning:  {}\n", "x".repeat(70_000));
        let mut r = StderrRewriter::default();
        let mut out = Vec::new();
        r.push(&long.as_bytes()[..65_535]);
        r.end_record(1, None, &mut out, &mut Marked::default());
        r.push(&long.as_bytes()[65_535..]);
        r.end_record(1, None, &mut out, &mut Marked::default());
        let got = records(&out).concat();
        assert_eq!(got, format!("PHP message: {}", long.trim_end()));
        assert!(r.record.is_empty());
    }
}
