//! A slot as the actor sees it: its child (pid, pidfd, the look-up of a new
//! connection's child), its state and counts, and a mark when its child is
//! to be replaced. And what children whose connection closed had served, so
//! that their counts carry on when another slot's connection meets them.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::{Reason, RequestInfo, SlotSnapshot, SlotState, SlotView};
use crate::sys::pidfd::PidFd;

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) pid: Option<Pid>,
    /// A handle on the process `pid` names (set with it): children are
    /// killed through it, so a recycled pid is never signalled.
    pub(super) pidfd: Option<Arc<PidFd>>,
    /// The pid of this slot's new connection is being looked up.
    pub(super) finding: bool,
    pub(super) info: Option<Box<RequestInfo>>,
    pub(super) child_since: Option<Instant>,
    pub(super) memory: Option<u64>,
    /// The child's memory after its request is being read (`pm_max_memory`,
    /// by the usage sampler): its worker waits for the answer.
    pub(super) measuring: bool,
    /// CPU (%) and memory of the last request, as `usage` sampled them.
    pub(super) last_usage: (Option<f64>, Option<u64>),
    /// The child is to be replaced, for this reason, once the slot is idle.
    pub(super) replace: Option<Reason>,
    /// Our end of the connection whose child is looked up or known: its
    /// inode, and its descriptor in this process (see [`super::worker::sever`]).
    pub(super) inode: u32,
    pub(super) fd: RawFd,
    /// How many children no slot knew had exited when the connection was
    /// made ([`super::crashes::Crashes::unknown_exits`]).
    pub(super) exits_before: u64,
    pub(super) state: SlotState,
    pub(super) requests: u64,
    pub(super) since: Instant,
    pub(super) last_duration: Duration,
    /// The running request was already logged as slow.
    pub(super) slow_logged: bool,
    /// An abandoned request whose child may still be running it.
    pub(super) held: Option<super::abandoned::Held>,
}

impl Slot {
    pub(super) fn new(now: Instant) -> Slot {
        Slot {
            pid: None,
            pidfd: None,
            finding: false,
            info: None,
            child_since: None,
            memory: None,
            measuring: false,
            last_usage: (None, None),
            replace: None,
            inode: 0,
            fd: -1,
            exits_before: 0,
            state: SlotState::Starting,
            requests: 0,
            since: now,
            last_duration: Duration::ZERO,
            slow_logged: false,
            held: None,
        }
    }

    /// What the recycling rules need to know of it.
    pub(super) fn view(&self) -> SlotView {
        let Slot { state, requests, child_since, since, memory, .. } = *self;
        SlotView { state, requests, child_since, since, memory }
    }

    /// Its child's pid is being looked up and not known yet.
    pub(super) fn awaits_pid(&self) -> bool {
        self.finding && self.pid.is_none()
    }

    /// Idle, its child's pid is still being looked up, and the answer may
    /// replace the child: it is marked already, or `counts` (the child may have
    /// served requests for another slot's connection before, which count on).
    pub(super) fn awaits_pid_to_replace(&self, counts: bool) -> bool {
        (self.replace.is_some() || counts) && self.state == SlotState::Idle && self.awaits_pid()
    }

    /// Idle, and its child's memory after the request is being read: the
    /// answer may replace the child, so its worker waits (`pm_max_memory` is
    /// exact, as `pm_max_requests` is).
    pub(super) fn awaits_memory(&self) -> bool {
        self.measuring && self.state == SlotState::Idle
    }

    /// How many of its requests may end with the worker going straight back
    /// to the balancer, the actor only noted of it: none unless the pool's
    /// rules allow it (`express`, see `PoolActor::express`) and its child is
    /// known, not marked for replacement and holds no abandoned request; then
    /// as many as keep the one that reaches `pm_max_requests` coming through
    /// the actor (`requests` is exact when the worker is lent by the actor).
    pub(super) fn express_budget(&self, express: bool, max_requests: u64) -> u64 {
        if !express || self.pid.is_none() || self.finding || self.replace.is_some() || self.held.is_some() {
            return 0;
        }
        match max_requests {
            0 => u64::MAX,
            max => max.saturating_sub(self.requests + 1),
        }
    }

    /// The connection whose child the slot looks up or knows: our end's
    /// inode and descriptor (0 and -1: none).
    pub(super) fn set_connection(&mut self, inode: u32, fd: RawFd) {
        (self.inode, self.fd) = (inode, fd);
    }

    /// Forgets the slot's child (its connection is gone): what it knew of it.
    pub(super) fn forget_child(&mut self) -> (Option<Pid>, Option<Arc<PidFd>>) {
        let known = (self.pid.take(), self.pidfd.take());
        self.set_connection(0, -1);
        (self.finding, self.requests, self.child_since) = (false, 0, None);
        known
    }

    /// Forgets the slot's child (its connection is gone): its pid, if known,
    /// with what it served here, its counts and last request. A slot that
    /// already runs its next request (on a new connection the actor has not
    /// read of yet) has that request's URI, not the child's.
    pub(super) fn let_child_go(&mut self) -> Option<(Pid, Served)> {
        let served = Served {
            requests: self.requests,
            child_since: self.child_since,
            info: self.info.clone().filter(|_| self.state != SlotState::Busy),
            last_duration: self.last_duration,
            last_usage: self.last_usage,
        };
        let (pid, _) = self.forget_child();
        pid.map(|pid| (pid, served))
    }
}

/// What a child served for a slot whose connection closed.
#[derive(Debug)]
pub(super) struct Served {
    pub(super) requests: u64,
    pub(super) child_since: Option<Instant>,
    /// Its last request as the status page shows it: URI and the rest, duration, CPU and memory.
    pub(super) info: Option<Box<RequestInfo>>,
    pub(super) last_duration: Duration,
    pub(super) last_usage: (Option<f64>, Option<u64>),
}

/// Children whose slot's connection was closed: what each served, by pid, so
/// that pm_max_requests and pm_max_lifetime count on when another slot's
/// connection meets it, and the status page shows each child with its own
/// last request meanwhile.
#[derive(Debug, Default)]
pub(super) struct Carried(HashMap<Pid, Served>);

impl Carried {
    /// Remembers what `pid` served, keeping at most `most` children.
    pub(super) fn remember(&mut self, pid: Pid, served: Served, most: usize) {
        if self.0.len() >= most {
            self.0.clear();
        }
        self.0.insert(pid, served);
    }

    pub(super) fn take(&mut self, pid: Pid) -> Option<Served> {
        self.0.remove(&pid)
    }

    /// What `pid` served for slots whose connection closed.
    pub(super) fn peek(&self, pid: Pid) -> Option<&Served> {
        self.0.get(&pid)
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

pub(super) fn slot_snapshot(s: &Slot, pid: Option<i32>) -> SlotSnapshot {
    SlotSnapshot {
        pid,
        state: s.state,
        requests: s.requests,
        since: s.since,
        last_duration: s.last_duration,
        child_since: s.child_since,
        info: s.info.as_deref().cloned(),
        last_cpu: s.last_usage.0,
        last_memory: s.last_usage.1,
    }
}
