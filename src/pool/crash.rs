//! Crash loops: a php-cgi parent that keeps dying at start is restarted with
//! doubling delays, and children that keep dying within a short window are
//! noticed (pure rules, used by the pool actor).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A parent that exits sooner than this after starting counts as a crash loop.
pub const FAST_EXIT: Duration = Duration::from_secs(1);
/// Longest wait between restarts of a crash-looping parent.
pub const MAX_BACKOFF: Duration = Duration::from_secs(32);
/// The window in which child exits are counted for crash-loop detection.
pub const CRASH_WINDOW: Duration = Duration::from_secs(1);
/// Child exits within [`CRASH_WINDOW`] beyond which a pool is in a crash loop.
pub fn crash_loop_limit(children: usize) -> usize {
    (children * 2).max(10)
}

/// Exit times of recent children, to spot a crash loop.
#[derive(Debug, Default)]
pub struct ExitRate {
    window: VecDeque<Instant>,
}

impl ExitRate {
    /// Records an exit at `now`; true when more than `limit` happened within
    /// [`CRASH_WINDOW`].
    pub fn record(&mut self, now: Instant, limit: usize) -> bool {
        while self.window.front().is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW) {
            self.window.pop_front();
        }
        self.window.push_back(now);
        if self.window.len() > limit {
            self.window.clear();
            return true;
        }
        false
    }
}

/// The delay before the next start, given how long the last parent ran.
pub fn backoff(streak: &mut u32, ran_for: Duration) -> Duration {
    if ran_for >= FAST_EXIT {
        *streak = 0;
        return Duration::ZERO;
    }
    *streak += 1;
    let secs = 1u64 << (*streak - 1).min(5);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_rate_spots_a_loop_only_within_the_window() {
        let mut rate = ExitRate::default();
        let t0 = Instant::now();
        let spaced = (0..50).any(|i| rate.record(t0 + Duration::from_millis(400 * i), 3));
        assert!(!spaced, "one exit every 400 ms is no loop at limit 3");
        let mut rate = ExitRate::default();
        let burst: Vec<bool> = (0..5).map(|i| rate.record(t0 + Duration::from_millis(i), 3)).collect();
        assert_eq!(burst, [false, false, false, true, false]);
        assert_eq!(crash_loop_limit(4), 10);
        assert_eq!(crash_loop_limit(64), 128);
    }

    #[test]
    fn backoff_doubles_then_caps_and_resets() {
        let mut streak = 0;
        let fast = Duration::from_millis(10);
        let delays: Vec<u64> = (0..8).map(|_| backoff(&mut streak, fast).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 32, 32]);
        assert_eq!(backoff(&mut streak, Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(streak, 0);
        assert_eq!(backoff(&mut streak, fast), Duration::from_secs(1));
    }
}
