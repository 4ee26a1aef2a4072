//! Is a pool alive? Its actor's heartbeat (for systemd's watchdog: a wedged
//! actor stops beating) and a probe that its php-cgi children answer (for
//! systemd's `READY=1`).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fastcgi::{encode_pair, padding_for, Header, RecordType, HEADER_LEN, NULL_REQUEST_ID};

/// How long the probe waits for php-cgi's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The process-wide origin of heartbeat times.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn millis_since_origin(now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(origin()).as_millis()).unwrap_or(u64::MAX)
}

/// When a pool actor's loop last ran. Written only by the actor, read by the
/// watchdog (a time that only moves forward: an atomic is enough).
#[derive(Debug)]
pub struct Heartbeat {
    last: AtomicU64,
    /// Debug builds only: the actor stops at its next beat (to test the watchdog).
    #[cfg(debug_assertions)]
    wedged: std::sync::atomic::AtomicBool,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            last: AtomicU64::new(millis_since_origin(Instant::now())),
            #[cfg(debug_assertions)]
            wedged: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Heartbeat {
    /// Called from the actor's loop. In debug builds, after [`Heartbeat::wedge`],
    /// it never returns: the actor hangs as a deadlocked one would.
    pub async fn beat(&self) {
        #[cfg(debug_assertions)]
        if self.wedged.load(Ordering::Relaxed) {
            return std::future::pending().await;
        }
        self.last.store(millis_since_origin(Instant::now()), Ordering::Relaxed);
    }

    /// How long ago the actor's loop last ran.
    pub fn age(&self, now: Instant) -> Duration {
        Duration::from_millis(millis_since_origin(now).saturating_sub(self.last.load(Ordering::Relaxed)))
    }

    /// Debug builds only: makes the actor hang at its next beat.
    #[cfg(debug_assertions)]
    pub fn wedge(&self) {
        self.wedged.store(true, Ordering::Relaxed);
    }
}

/// True when a php-cgi child accepts on `socket` and answers a FastCGI
/// `GET_VALUES` (php-cgi answers it, then closes and accepts again).
pub async fn answers(socket: &Path) -> bool {
    tokio::time::timeout(PROBE_TIMEOUT, get_values(socket)).await.is_ok_and(|r| r.unwrap_or(false))
}

async fn get_values(socket: &Path) -> std::io::Result<bool> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    let mut content = Vec::new();
    encode_pair(&mut content, b"FCGI_MPXS_CONNS", b"");
    let mut out = Vec::new();
    let len = u16::try_from(content.len()).unwrap_or(0);
    Header::new(RecordType::GetValues, NULL_REQUEST_ID, len).encode(&mut out);
    out.extend_from_slice(&content);
    out.resize(out.len() + usize::from(padding_for(content.len())), 0);
    stream.write_all(&out).await?;
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let answer = Header::parse(&header).ok().flatten().and_then(|h| h.kind());
    Ok(answer == Some(RecordType::GetValuesResult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_heartbeat_ages_until_the_next_beat() {
        let beat = Heartbeat::default();
        beat.beat().await;
        let later = Instant::now() + Duration::from_secs(3);
        assert!(beat.age(later) >= Duration::from_secs(2), "{:?}", beat.age(later));
        assert!(beat.age(Instant::now()) < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn nothing_answers_on_a_missing_socket() {
        assert!(!answers(Path::new("/nonexistent/rustfpm-probe.sock")).await);
    }
}
