//! The read side of a downstream (nginx) connection: a buffer that is filled
//! from the socket and consumed from the front.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Read-chunk size, and the buffer size an idle connection keeps.
pub const CHUNK: usize = 16 * 1024;

/// Bytes read from nginx and not yet handled.
#[derive(Debug, Default)]
pub struct InBuf {
    data: Vec<u8>,
    start: usize,
    /// Nothing was ever read: a new connection.
    read_any: bool,
    /// `request_read_timeout` of the request being read: the longest pause
    /// [`InBuf::fill_timed`] waits for (the pool's, set for each request head).
    pub read_timeout: Option<Duration>,
}

impl InBuf {
    /// Unconsumed bytes.
    pub fn pending(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// Drops `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.data.len());
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// Reads once more from `rd`. Returns the number of new bytes (0 at EOF).
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> std::io::Result<usize> {
        if self.start > 0 && self.start >= self.data.len() / 2 {
            self.data.drain(..self.start);
            self.start = 0;
        }
        if self.data.capacity() == 0 {
            // A connection waiting for its next request holds no buffer: a
            // read of nothing waits until the socket has a byte (on a unix
            // socket the kernel answers EAGAIN until then; tokio's readiness
            // alone reports a new socket readable at once), then the buffer
            // is allocated for the bytes that came. It costs one system call
            // per wait; 3,000 idle connections take 10 MiB instead of 23 MiB.
            // (A TCP read of nothing returns at once: no saving there.)
            let _nothing: usize = rd.read(&mut []).await?;
        }
        self.data.reserve(CHUNK);
        let n = rd.read_buf(&mut self.data).await?;
        self.read_any |= n > 0;
        Ok(n)
    }

    /// [`InBuf::fill`], giving up at `deadline` with `ErrorKind::TimedOut`.
    pub async fn fill_until<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        deadline: Option<Instant>,
    ) -> std::io::Result<usize> {
        let Some(at) = deadline else {
            return self.fill(rd).await;
        };
        match tokio::time::timeout_at(at.into(), self.fill(rd)).await {
            Ok(read) => read,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// [`InBuf::fill`], giving up after a pause of `read_timeout`, with an
    /// error that says so.
    pub async fn fill_timed<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> std::io::Result<usize> {
        let limit = self.read_timeout;
        let read = self.fill_until(rd, limit.map(|t| Instant::now() + t)).await;
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

    /// Releases the buffer between requests (all of it when nothing is
    /// pending, else what is beyond one chunk).
    pub fn shrink(&mut self) {
        if self.pending().is_empty() {
            // Between requests: an idle connection keeps no buffer.
            self.data = Vec::new();
            self.start = 0;
        } else if self.data.capacity() > 4 * CHUNK && self.pending().len() < CHUNK {
            let rest = self.pending().to_vec();
            self.data = rest;
            self.start = 0;
        }
    }
}
