//! The read side of a downstream (nginx) connection: a buffer that is filled
//! from the socket and consumed from the front.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Read-chunk size, and the buffer size an idle connection keeps.
pub const CHUNK: usize = 16 * 1024;

/// Bytes read from nginx and not yet handled.
#[derive(Debug, Default)]
pub struct InBuf {
    data: Vec<u8>,
    start: usize,
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
        self.data.reserve(CHUNK);
        rd.read_buf(&mut self.data).await
    }

    /// Releases memory beyond one chunk (between requests).
    pub fn shrink(&mut self) {
        if self.data.capacity() > 4 * CHUNK && self.pending().len() < CHUNK {
            let rest = self.pending().to_vec();
            self.data = rest;
            self.start = 0;
        }
    }
}
