//! A connection's read deadlines as one timer that stays registered.
//!
//! A kept nginx connection waits for each request with a deadline
//! (`listen_idle_timeout`). A tokio timeout per wait put a timer into the
//! runtime's wheel and took it out again when the request came, on every
//! request (callgrind.sh: 550 instructions of each kept request). The
//! alarm keeps one timer per connection instead, made the first time a read
//! has to wait (a read that is ready at once needs none): a wait whose
//! deadline is at or after the timer's leaves the timer as it is, and the
//! timer, when it fires before the deadline of the wait in progress, is set
//! again for that deadline. A kept connection's timer is touched once per
//! `listen_idle_timeout`, not once per request.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::time::{Instant as TokioInstant, Sleep};

/// One connection's timer for its reads (see the module's doc).
#[derive(Debug, Default)]
pub struct Alarm {
    /// Made the first time a wait is polled; then set for the deadline of
    /// that wait or of an earlier one.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Alarm {
    /// Resolves once `deadline` has passed.
    pub async fn at(&mut self, deadline: Instant) {
        let deadline = TokioInstant::from_std(deadline);
        poll_fn(|cx| self.poll_at(cx, deadline)).await;
    }

    fn poll_at(&mut self, cx: &mut Context<'_>, deadline: TokioInstant) -> Poll<()> {
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        loop {
            ready!(sleep.as_mut().poll(cx));
            if sleep.deadline() >= deadline {
                return Poll::Ready(());
            }
            // It fired for an earlier wait's deadline: on to this one's.
            sleep.as_mut().reset(deadline);
        }
    }

    /// Whether a timer was ever made.
    #[cfg(test)]
    pub(crate) fn armed(&self) -> bool {
        self.sleep.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn now() -> Instant {
        TokioInstant::now().into_std()
    }

    /// Whether `alarm.at(deadline)` resolves within `within` of paused time.
    async fn fires_within(alarm: &mut Alarm, deadline: Instant, within: Duration) -> bool {
        tokio::time::timeout(within, alarm.at(deadline)).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_its_deadline_not_before() {
        let mut alarm = Alarm::default();
        let deadline = now() + Duration::from_secs(5);
        assert!(!fires_within(&mut alarm, deadline, Duration::from_millis(4_990)).await);
        assert!(fires_within(&mut alarm, deadline, Duration::from_millis(20)).await);
        assert!(now() >= deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_waits_past_the_timer_set_for_an_earlier_one() {
        let mut alarm = Alarm::default();
        let start = now();
        // A wait with a deadline at 1 s, given up at once (its read came).
        assert!(!fires_within(&mut alarm, start + Duration::from_secs(1), Duration::ZERO).await);
        // The next wait's deadline is at 10 s: the timer still set for 1 s fires, and the wait goes on.
        let later = start + Duration::from_secs(10);
        assert!(!fires_within(&mut alarm, later, Duration::from_secs(9)).await);
        assert!(fires_within(&mut alarm, later, Duration::from_secs(2)).await);
        assert!(now() >= later && now() < later + Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_timer_forward() {
        let mut alarm = Alarm::default();
        let start = now();
        assert!(!fires_within(&mut alarm, start + Duration::from_secs(300), Duration::ZERO).await);
        let sooner = start + Duration::from_secs(2);
        assert!(fires_within(&mut alarm, sooner, Duration::from_secs(3)).await);
        assert!(now() >= sooner && now() < sooner + Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_past_fires_at_once() {
        let mut alarm = Alarm::default();
        let past = now();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(fires_within(&mut alarm, past, Duration::ZERO).await);
    }
}
