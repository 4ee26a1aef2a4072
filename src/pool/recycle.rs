//! When to replace a child: the pure planning part of the pool actor, tested
//! without processes. The actor feeds it what it knows of each slot and acts
//! on the answer (kill the child between requests; php-cgi forks a fresh one).

use std::time::{Duration, Instant};

use super::msg::SlotState;

/// Why a child was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `pm_max_requests` reached.
    Requests,
    /// `pm_max_memory` exceeded.
    Memory,
    /// `pm_max_lifetime` reached.
    Lifetime,
    /// Idle past `pm_process_idle_timeout` (ondemand) or beyond the spare
    /// servers (dynamic).
    Idle,
    /// A request ran past `request_terminate_timeout`.
    Timeout,
    /// The child died on its own while serving a request.
    Crash,
}

impl Reason {
    /// Every reason, in the order of [`Reason::index`].
    pub const ALL: [Reason; 6] =
        [Reason::Requests, Reason::Memory, Reason::Lifetime, Reason::Idle, Reason::Timeout, Reason::Crash];

    /// Position in [`Reason::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// Lower-case name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Requests => "requests",
            Reason::Memory => "memory",
            Reason::Lifetime => "lifetime",
            Reason::Idle => "idle",
            Reason::Timeout => "timeout",
            Reason::Crash => "crash",
        }
    }
}

/// What a pool's config asks of recycling.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Replace a child after this many requests (0: never).
    pub max_requests: u64,
    /// Replace a child whose private memory exceeds this many bytes.
    pub max_memory: Option<u64>,
    /// Replace a child this long after it started serving.
    pub max_lifetime: Option<Duration>,
    /// Replace a used child idle this long (ondemand).
    pub idle_timeout: Option<Duration>,
    /// Keep at most this many used children idle (dynamic).
    pub max_spare: Option<usize>,
    /// `emergency_restart_threshold` crashes (SIGSEGV/SIGBUS) within
    /// `emergency_restart_interval` restart the whole pool.
    pub emergency: Option<(usize, Duration)>,
}

/// What the planner needs to know about one slot.
#[derive(Debug, Clone, Copy)]
pub struct SlotView {
    /// Current state.
    pub state: SlotState,
    /// Requests its child has served.
    pub requests: u64,
    /// When its child was first seen serving.
    pub child_since: Option<Instant>,
    /// When it last changed state.
    pub since: Instant,
    /// Its child's private memory, when measured.
    pub memory: Option<u64>,
}

/// Checked after each request: should this slot's child be replaced?
pub fn after_request(policy: &Policy, slot: &SlotView, now: Instant) -> Option<Reason> {
    if policy.max_requests > 0 && slot.requests >= policy.max_requests {
        return Some(Reason::Requests);
    }
    if let (Some(limit), Some(used)) = (policy.max_memory, slot.memory) {
        if used > limit {
            return Some(Reason::Memory);
        }
    }
    lifetime_over(policy, slot, now).then_some(Reason::Lifetime)
}

fn lifetime_over(policy: &Policy, slot: &SlotView, now: Instant) -> bool {
    match (policy.max_lifetime, slot.child_since) {
        (Some(limit), Some(since)) => now.duration_since(since) >= limit,
        _ => false,
    }
}

/// Checked periodically: which idle slots' children should be replaced.
/// Only children that served requests count: a fresh one costs next to nothing.
pub fn idle_plan(policy: &Policy, slots: &[SlotView], now: Instant) -> Vec<(usize, Reason)> {
    let used_idle = |s: &SlotView| s.state == SlotState::Idle && s.requests > 0;
    let mut plan: Vec<(usize, Reason)> = Vec::new();
    for (i, s) in slots.iter().enumerate().filter(|(_, s)| used_idle(s)) {
        if lifetime_over(policy, s, now) {
            plan.push((i, Reason::Lifetime));
        } else if policy.idle_timeout.is_some_and(|t| now.duration_since(s.since) >= t) {
            plan.push((i, Reason::Idle));
        }
    }
    if let Some(max_spare) = policy.max_spare {
        let mut spare: Vec<usize> =
            (0..slots.len()).filter(|i| used_idle(&slots[*i]) && !plan.iter().any(|(p, _)| p == i)).collect();
        // The longest idle go first.
        spare.sort_by_key(|i| slots[*i].since);
        let excess = spare.len().saturating_sub(max_spare);
        plan.extend(spare.into_iter().take(excess).map(|i| (i, Reason::Idle)));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: SlotState, requests: u64, idle_for: Duration, now: Instant) -> SlotView {
        SlotView {
            state,
            requests,
            child_since: Some(now - Duration::from_secs(100)),
            since: now - idle_for,
            memory: None,
        }
    }

    #[test]
    fn after_request_checks_requests_memory_and_lifetime() {
        let now = Instant::now();
        let mut s = view(SlotState::Idle, 9, Duration::ZERO, now);
        let p = Policy { max_requests: 10, ..Policy::default() };
        assert_eq!(after_request(&p, &s, now), None);
        s.requests = 10;
        assert_eq!(after_request(&p, &s, now), Some(Reason::Requests));
        let p = Policy { max_memory: Some(1000), ..Policy::default() };
        s.memory = Some(999);
        assert_eq!(after_request(&p, &s, now), None);
        s.memory = Some(1001);
        assert_eq!(after_request(&p, &s, now), Some(Reason::Memory));
        let p = Policy { max_lifetime: Some(Duration::from_secs(100)), ..Policy::default() };
        assert_eq!(after_request(&p, &s, now), Some(Reason::Lifetime));
        assert_eq!(after_request(&Policy::default(), &s, now), None);
    }

    #[test]
    fn ondemand_replaces_used_children_idle_past_the_timeout() {
        let now = Instant::now();
        let p = Policy { idle_timeout: Some(Duration::from_secs(10)), ..Policy::default() };
        let slots = [
            view(SlotState::Idle, 5, Duration::from_secs(11), now),
            view(SlotState::Idle, 0, Duration::from_secs(60), now), // fresh: free, kept
            view(SlotState::Busy, 5, Duration::from_secs(60), now),
            view(SlotState::Idle, 5, Duration::from_secs(3), now),
        ];
        assert_eq!(idle_plan(&p, &slots, now), [(0, Reason::Idle)]);
    }

    #[test]
    fn dynamic_keeps_at_most_max_spare_used_idle_children() {
        let now = Instant::now();
        let p = Policy { max_spare: Some(1), ..Policy::default() };
        let slots = [
            view(SlotState::Idle, 1, Duration::from_secs(5), now),
            view(SlotState::Idle, 1, Duration::from_secs(9), now),
            view(SlotState::Idle, 1, Duration::from_secs(1), now),
            view(SlotState::Busy, 1, Duration::from_secs(9), now),
        ];
        assert_eq!(idle_plan(&p, &slots, now), [(1, Reason::Idle), (0, Reason::Idle)]);
    }
}
