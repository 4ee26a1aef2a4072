//! Requests the front end gave up on (nginx went away, or the request ran past
//! `request_terminate_timeout`) while their child may still be running them.
//! The actor holds such a worker, counted busy, until the child has closed its
//! end of the connection: then the child is free and the worker is lent again.
//! `request_terminate_timeout` keeps running for it, and kills that child by
//! its own pid.

use std::time::Instant;

use nix::unistd::Pid;

use super::Reason;
use super::{AbandonCause, Abandoned, PoolActor};
use crate::accesslog::format::escape_controls;
use crate::supervisor::Command;

/// An abandoned request the actor holds on to.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) request: Box<Abandoned>,
    /// A CheckPeer is on its way to the supervisor.
    checking: bool,
    /// Its child was killed for `request_terminate_timeout`.
    killed: bool,
    /// The child that accepted its connection, once known: the request is
    /// over when that child no longer holds the connection, whoever else does.
    child: Option<Pid>,
}

impl PoolActor {
    /// Takes over an abandoned request: its slot stays busy until the child
    /// is done with it.
    pub(super) fn hold_abandoned(&mut self, request: Box<Abandoned>) {
        let slot = request.worker.slot();
        crate::debug!(
            "[pool {}] slot {slot}: request abandoned ({:?}); held until its child lets go",
            self.name,
            request.cause
        );
        let timed_out = request.cause == AbandonCause::TimedOut;
        let Some(s) = self.slots.get_mut(slot) else {
            return self.balancer.release(request.worker);
        };
        s.held = Some(Held { request, checking: false, killed: false, child: None });
        if timed_out {
            self.terminate(slot);
        }
        self.check_held();
    }

    /// True while some slot holds an abandoned request.
    pub(super) fn holds_abandoned(&self) -> bool {
        self.slots.iter().any(|s| s.held.is_some())
    }

    /// Kills the children whose abandoned request ran out of time, and asks
    /// the supervisor whether the others still hold their connection.
    pub(super) fn check_held(&mut self) {
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            let Some(held) = &self.slots[slot].held else { continue };
            if !held.killed && held.request.deadline.is_some_and(|d| d <= now) {
                self.terminate(slot);
            }
            let s = &mut self.slots[slot];
            let Some(held) = s.held.as_mut() else { continue };
            let inode = held.request.worker.inode();
            if held.child.is_none() && s.inode == inode {
                held.child = s.pid;
            }
            if !held.checking {
                held.checking = true;
                let (child, events) = (held.child, self.reporter.clone());
                self.supervisor.send(Command::CheckPeer { slot, inode, child, events });
            }
        }
    }

    /// The supervisor's answer to a CheckPeer: once the child has closed the
    /// connection (or exited), the request is over and the worker goes back
    /// to the pool.
    pub(super) fn peer_checked(&mut self, slot: usize, inode: u32, open: bool) {
        let Some(held) = self.slots.get_mut(slot).and_then(|s| s.held.as_mut()) else { return };
        if held.request.worker.inode() != inode {
            return;
        }
        held.checking = false;
        if open {
            return;
        }
        let Some(Held { request, .. }) = self.slots[slot].held.take() else { return };
        let Abandoned { mut worker, status, started, access, .. } = *request;
        worker.discard();
        self.request_ended(slot, status, started.elapsed(), Instant::now(), false);
        // As take_back: the child let go of the connection and may accept another
        // slot's (a look-up still running is answered for this connection first).
        if !self.slots[slot].finding {
            self.unbind(slot);
        }
        if let Some(record) = access {
            self.log_access(slot, record);
        }
        self.returning.push(worker);
    }

    /// Kills the child of `slot`'s abandoned or timed-out request, by its own
    /// pid, and logs the request's script and URI. A child whose pid is still
    /// unknown is looked up first (the worker's socket stays open for that).
    pub(super) fn terminate(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        let Some(held) = s.held.as_mut() else { return };
        let Some(pid) = s.pid else {
            let (inode, fd) = (held.request.worker.inode(), held.request.worker.fd());
            s.set_connection(inode, fd);
            return self.look_up_child(slot);
        };
        held.killed = true;
        if s.inode == held.request.worker.inode() {
            held.child = Some(pid);
        }
        let r = &held.request;
        let gone = if r.cause == AbandonCause::ClientGone { ", abandoned by the web server" } else { "" };
        crate::warning!(
            "[pool {}] child {pid}, script '{}' (uri '{}'{gone}) executing too slow ({:.3} sec), terminating",
            self.name,
            escape_controls(&r.script),
            escape_controls(&r.uri),
            r.started.elapsed().as_secs_f64()
        );
        self.replace_child(slot, Reason::Timeout);
    }
}
