//! The read side of a downstream (nginx) connection: a buffer that is filled
//! from the socket and consumed from the front.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::alarm::Alarm;

/// Read-chunk size once a request needs more than [`SMALL`] bytes held (a
/// large head, a body).
pub const CHUNK: usize = 16 * 1024;

/// Size of the small buffer every connection reads into first: nginx's
/// request heads mostly fit (hello world's is 480 bytes), so a request
/// without a body needs no allocation of its own, and an idle connection
/// holds no more.
pub const SMALL: usize = 1024;

/// Bytes read from nginx and not yet handled: in the connection's small
/// buffer while they fit, else in a larger one that is dropped once it is
/// emptied between requests.
#[derive(Debug)]
pub struct InBuf {
    /// The small buffer, used while `big` has no capacity. Inline: the
    /// connection's task is boxed once (`spare::Spares::serve`), where a box of its
    /// own cost an allocation per connection (callgrind.sh: 320 instructions).
    small: [u8; SMALL],
    /// End of the bytes read into `small`.
    small_end: usize,
    /// The larger buffer, for more than `small` holds.
    big: Vec<u8>,
    /// Start of the unconsumed bytes (in whichever buffer is in use).
    start: usize,
    /// Nothing was ever read: a new connection.
    read_any: bool,
    /// `request_read_timeout` of the request being read: the longest pause
    /// [`InBuf::fill_timed`] waits for (the pool's, set for each request head).
    pub read_timeout: Option<Duration>,
}

impl Default for InBuf {
    fn default() -> Self {
        InBuf { small: [0; SMALL], small_end: 0, big: Vec::new(), start: 0, read_any: false, read_timeout: None }
    }
}

impl InBuf {
    fn is_big(&self) -> bool {
        self.big.capacity() > 0
    }

    /// Unconsumed bytes.
    pub fn pending(&self) -> &[u8] {
        if self.is_big() {
            &self.big[self.start..]
        } else {
            &self.small[self.start..self.small_end]
        }
    }

    /// Drops `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        let end = if self.is_big() { self.big.len() } else { self.small_end };
        self.start = (self.start + n).min(end);
        if self.start == end {
            self.big.clear();
            self.small_end = 0;
            self.start = 0;
        }
    }

    /// Reads once more from `rd`. Returns the number of new bytes (0 at EOF).
    /// Reads into the small buffer while it has room, else into a larger one
    /// with room for [`CHUNK`] more.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> std::io::Result<usize> {
        if !self.is_big() && self.start > 0 {
            self.small.copy_within(self.start..self.small_end, 0);
            self.small_end -= self.start;
            self.start = 0;
        }
        let n = if !self.is_big() && self.small_end < SMALL {
            let n = rd.read(&mut self.small[self.small_end..]).await?;
            self.small_end += n;
            n
        } else {
            if !self.is_big() {
                // The small buffer is full: its bytes move to the larger one.
                self.big.reserve(SMALL + CHUNK);
                self.big.extend_from_slice(&self.small[..self.small_end]);
                self.small_end = 0;
            } else if self.start > 0 && self.start >= self.big.len() / 2 {
                self.big.drain(..self.start);
                self.start = 0;
            }
            self.big.reserve(CHUNK);
            rd.read_buf(&mut self.big).await?
        };
        self.read_any |= n > 0;
        Ok(n)
    }

    /// [`InBuf::fill`], giving up at `deadline` (timed by the connection's
    /// `alarm`) with `ErrorKind::TimedOut`.
    pub async fn fill_until<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        alarm: &mut Alarm,
        deadline: Option<Instant>,
    ) -> std::io::Result<usize> {
        let Some(at) = deadline else {
            return self.fill(rd).await;
        };
        tokio::select! {
            // The read first: one that is ready at once needs no timer.
            biased;
            read = self.fill(rd) => read,
            () = alarm.at(at) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// [`InBuf::fill`], giving up after a pause of `read_timeout`, with an
    /// error that says so.
    pub async fn fill_timed<R: AsyncRead + Unpin>(&mut self, rd: &mut R, alarm: &mut Alarm) -> std::io::Result<usize> {
        let limit = self.read_timeout;
        let read = self.fill_until(rd, alarm, limit.map(|t| Instant::now() + t)).await;
        read.map_err(|e| match (e.kind(), limit) {
            (std::io::ErrorKind::TimedOut, Some(t)) => std::io::Error::new(
                e.kind(),
                format!("the web server sent nothing for {} s (request_read_timeout)", t.as_secs_f64()),
            ),
            _ => e,
        })
    }

    /// True until the first byte arrives: a connection that has sent nothing.
    pub fn is_fresh(&self) -> bool {
        !self.read_any
    }

    /// Releases the larger buffer between requests: what is pending moves
    /// back into the small one when it fits (an idle connection holds only
    /// that), else only what is beyond one chunk is released.
    pub fn shrink(&mut self) {
        if !self.is_big() {
            return;
        }
        let pending = self.big.len() - self.start;
        if pending <= SMALL {
            self.small[..pending].copy_from_slice(&self.big[self.start..]);
            (self.small_end, self.start, self.big) = (pending, 0, Vec::new());
        } else if self.big.capacity() > 4 * CHUNK && pending < CHUNK {
            self.big = self.big.split_off(self.start);
            self.start = 0;
        }
    }

    /// Bytes of larger buffer held (0 for a connection whose bytes fit the small one).
    #[cfg(test)]
    fn larger(&self) -> usize {
        self.big.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads everything `input` holds, in the reads `fill` makes, consuming
    /// `keep`-sized pieces as they come; returns what was consumed.
    async fn drain(buf: &mut InBuf, mut input: &[u8]) -> Vec<u8> {
        let mut seen = Vec::new();
        while buf.fill(&mut input).await.expect("in-memory read") > 0 {
            let n = buf.pending().len() / 2 + 1;
            seen.extend_from_slice(&buf.pending()[..n.min(buf.pending().len())]);
            buf.consume(n);
        }
        seen.extend_from_slice(buf.pending());
        seen
    }

    #[tokio::test]
    async fn a_small_request_is_read_into_the_small_buffer() {
        let mut buf = InBuf::default();
        let mut input: &[u8] = &[7u8; 480];
        assert_eq!(buf.fill(&mut input).await.expect("in-memory read"), 480);
        assert_eq!(buf.pending(), &[7u8; 480][..]);
        assert_eq!(buf.larger(), 0);
        buf.consume(480);
        assert!(buf.pending().is_empty() && !buf.is_fresh());
    }

    #[tokio::test]
    async fn bytes_beyond_the_small_buffer_move_to_a_larger_one_and_back() {
        let input: Vec<u8> = (0..3 * CHUNK).map(|i| (i % 251) as u8).collect();
        let mut buf = InBuf::default();
        let mut rest: &[u8] = &input;
        while buf.pending().len() < SMALL + 10 {
            buf.fill(&mut rest).await.expect("in-memory read");
        }
        assert!(buf.larger() > SMALL, "grown past the small buffer");
        buf.consume(buf.pending().len() - 10);
        buf.shrink();
        assert_eq!(buf.larger(), 0, "10 pending bytes fit the small buffer");
        let from = input.len() - rest.len() - 10;
        assert_eq!(drain(&mut buf, rest).await, input[from..]);
    }

    #[tokio::test]
    async fn a_read_ready_at_once_makes_no_timer_and_a_stalled_one_times_out() {
        let mut buf = InBuf::default();
        let mut alarm = Alarm::default();
        let mut input: &[u8] = b"ready";
        let deadline = Some(Instant::now() + Duration::from_secs(60));
        assert_eq!(buf.fill_until(&mut input, &mut alarm, deadline).await.expect("in-memory read"), 5);
        assert!(!alarm.armed(), "no timer for a read that did not wait");
        let (mut stalled, _peer) = tokio::io::duplex(64);
        let soon = Some(Instant::now() + Duration::from_millis(20));
        let err = buf.fill_until(&mut stalled, &mut alarm, soon).await.expect_err("nothing comes");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(alarm.armed());
    }

    #[tokio::test]
    async fn every_byte_comes_out_once_in_order() {
        let input: Vec<u8> = (0..5 * CHUNK + 77).map(|i| (i % 253) as u8).collect();
        let mut buf = InBuf::default();
        assert_eq!(drain(&mut buf, &input).await, input);
    }
}
