//! Requests whose child died under them (the front end answered 502): one log
//! line each, with the child's exit status when the kernel reports it. The
//! front end's report and the exit may come in either order, so each waits
//! for the other a little.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::{PoolActor, Reason, SlotState};
use crate::accesslog::format::escape_controls;
use crate::pool::worker;
use crate::supervisor::ExitKind;

/// How many recent child exits are remembered.
const RECENT_EXITS: usize = 64;
/// How long a crashed request's log line waits for the child's exit status.
pub(super) const EXIT_STATUS_WAIT: Duration = Duration::from_millis(500);

/// A request whose child died under it.
#[derive(Debug)]
pub(super) struct CrashedRequest {
    pub(super) pid: Option<Pid>,
    pub(super) script: String,
    pub(super) uri: String,
    /// What the web server got: "answered 502", or the part of the response it has.
    pub(super) answered: &'static str,
    at: Instant,
}

impl CrashedRequest {
    /// The request `script` (`uri`) whose child `pid` died now; `answered` says what the web server got.
    pub(super) fn new(pid: Option<Pid>, script: &str, uri: &str, answered: &'static str) -> CrashedRequest {
        CrashedRequest { pid, script: script.into(), uri: uri.into(), answered, at: Instant::now() }
    }
}

/// Recent exits and the crashed requests that wait for theirs.
#[derive(Debug, Default)]
pub(super) struct Crashes {
    recent_exits: VecDeque<(Pid, ExitKind)>,
    waiting: Vec<CrashedRequest>,
    /// Exits of children that no slot knew and the actor had not replaced.
    unknown_exits: u64,
}

impl Crashes {
    /// A request crashed: it is to be logged now, with its child's exit
    /// status if that came already; or `None`: it waits for the status of its
    /// (known) child.
    pub(super) fn crashed(&mut self, request: CrashedRequest) -> Option<(CrashedRequest, Option<ExitKind>)> {
        let exit = request.pid.and_then(|p| self.recent_exits.iter().find(|(q, _)| *q == p).map(|(_, e)| *e));
        if exit.is_none() && request.pid.is_some() {
            self.waiting.push(request);
            return None;
        }
        Some((request, exit))
    }

    /// A child exited: the crashed request that waited for it, if any (else
    /// the exit is remembered for a report still to come).
    pub(super) fn exited(&mut self, pid: Pid, status: ExitKind) -> Option<CrashedRequest> {
        if let Some(i) = self.waiting.iter().position(|l| l.pid == Some(pid)) {
            return Some(self.waiting.swap_remove(i));
        }
        if self.recent_exits.len() == RECENT_EXITS {
            self.recent_exits.pop_front();
        }
        self.recent_exits.push_back((pid, status));
        None
    }

    /// How many children no slot knew have exited (not replaced by the
    /// actor): one of them may have been the child of a connection whose
    /// look-up has not answered yet.
    pub(super) fn unknown_exits(&self) -> u64 {
        self.unknown_exits
    }

    /// Crashed requests waiting for their child's exit status (tests).
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Crashed requests that waited longer than [`EXIT_STATUS_WAIT`].
    pub(super) fn late(&mut self) -> Vec<CrashedRequest> {
        let (late, waiting) = self.waiting.drain(..).partition(|l| l.at.elapsed() > EXIT_STATUS_WAIT);
        self.waiting = waiting;
        late
    }
}

impl PoolActor {
    /// The child of `slot` died under its request (the front end answered
    /// 502): counted, and logged with its exit status once known.
    pub(super) fn child_crashed(&mut self, slot: usize, script: &str, uri: &str, answered: &'static str) {
        self.counters.replaced(Reason::Crash);
        self.metrics.crash();
        let pid = self.slots.get_mut(slot).and_then(|s| {
            s.set_connection(0, -1);
            s.requests = 0;
            s.pid.take()
        });
        if let Some((request, status)) = self.crashes.crashed(CrashedRequest::new(pid, script, uri, answered)) {
            self.log_crash(&request, status);
        }
    }

    /// One line per request whose child crashed under it, with the exit
    /// status when the kernel reported it.
    pub(super) fn log_crash(&self, crashed: &CrashedRequest, status: Option<ExitKind>) {
        let pid = crashed.pid.map_or_else(|| "?".to_string(), |p| p.to_string());
        let how = status.map_or_else(|| "exited".to_string(), |s| s.to_string());
        crate::warning!(
            "[pool {}] child {pid} {how} while serving script '{}' (uri '{}'): {}",
            self.name,
            escape_controls(&crashed.script),
            escape_controls(&crashed.uri),
            crashed.answered
        );
    }

    pub(super) fn child_exited(&mut self, pid: Pid, status: ExitKind) {
        self.carried.take(pid);
        let replaced = self.parent.was_replaced(pid);
        // The usual cause of children dying at once: a script made the shared
        // listener non-blocking. Repairing it ends the loop without a restart.
        if self.repair_listener() {
            self.parent.forget_child_exits();
        } else if !replaced {
            // The actor's own kills, however many, are no loop.
            self.check_child_loop();
        }
        self.check_emergency(status);
        if !replaced && !self.slots.iter().any(|s| s.pid == Some(pid)) {
            self.crashes.unknown_exits += 1;
        }
        // Its connection ends here, not when its end of it closes: a process
        // its script started may hold that open (the front end would wait
        // for it, or send the next request there).
        for s in self.slots.iter().filter(|s| s.pid == Some(pid)) {
            worker::sever(s.fd, s.inode);
        }
        if let Some(crashed) = self.crashes.exited(pid, status) {
            return self.log_crash(&crashed, Some(status));
        }
        // A busy slot's child: the front end's report of the crashed request
        // follows, and is logged together with this status.
        let busy = self.slots.iter().any(|s| s.pid == Some(pid) && s.state == SlotState::Busy);
        for s in self.slots.iter_mut().filter(|s| s.pid == Some(pid) && s.state != SlotState::Busy) {
            s.pid = None;
        }
        if !busy {
            match status {
                // Its replacement was logged ("replaced (reason) after N requests").
                _ if replaced => crate::debug!("[pool {}] child {pid} {status}", self.name),
                // Killed by the pool's own stop: as php-fpm, no warning.
                ExitKind::Signal(_) if self.stopping.begun() => {
                    crate::notice!("[pool {}] child {pid} {status}", self.name)
                }
                ExitKind::Signal(_) => crate::warning!("[pool {}] child {pid} {status}", self.name),
                ExitKind::Code(0) => crate::debug!("[pool {}] child {pid} {status}", self.name),
                ExitKind::Code(_) => crate::notice!("[pool {}] child {pid} {status}", self.name),
            }
        }
    }

    /// A look-up found `slot`'s connection `inode` held by no child of the
    /// parent. If a child no slot knew has exited since the connection was
    /// made, that was its child, dead before it was known: the connection is
    /// ended as `child_exited` ends a known child's, and a request abandoned
    /// on it is over. Otherwise (a `php_cgi` wrapper that does not exec, whose
    /// workers are not the parent's children) the child is just not known.
    pub(super) fn child_gone(&mut self, slot: usize, inode: u32) {
        let exits = self.crashes.unknown_exits();
        let gone = self.slots.get(slot).filter(|s| s.inode == inode && exits > s.exits_before).map(|s| s.fd);
        if let Some(fd) = gone {
            worker::sever(fd, inode);
        }
        self.child_found(slot, inode, None, None, None);
        if gone.is_some() {
            self.peer_checked(slot, inode, false);
        }
    }

    /// Crashed requests whose exit status never came are logged without it.
    pub(super) fn log_late_crashes(&mut self) {
        for crashed in self.crashes.late() {
            self.log_crash(&crashed, None);
        }
    }
}
