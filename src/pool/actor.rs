//! The pool actor: the only owner of a pool's worker state (slots, pids,
//! states, counters) and of its php-cgi parent's lifecycle. Workers and the
//! supervisor report to it by message; a request's start, and its end when
//! the actor granted its worker an express way back (the balancer's
//! `grant_express`: nothing to decide for it), are only noted ([`Note`]),
//! read whenever the actor wakes, so no request wakes it. Everyone else asks
//! it for a [`PoolSnapshot`].
//!
//! This file holds the loop, the requests' flow and the replacement of
//! children; the rest of its state is grouped by concern, each part with its
//! own decisions: the slots (`actor_slot.rs`), the php-cgi parent
//! (`actor_parent.rs`), the counters (`actor_counters.rs`), how far the
//! pool's stop has come (`actor_stopping.rs`), requests whose child crashed (`actor_crashes.rs`),
//! abandoned requests (`actor_abandoned.rs`) and the logs (`actor_logs.rs`).
//! Unit tests feed it messages and read its decisions (`actor_tests.rs`).
//!
//! Words: a child is *replaced* (killed between requests; php-cgi forks a
//! fresh one) for a [`Reason`]; a pool (one generation, after a reload) is
//! *retired*; a child that dies under a request has *crashed*. A request
//! *ends* with the child's END_REQUEST; nginx has a *complete* response
//! once it has its END_REQUEST (possibly early, at `fastcgi_finish_request()`,
//! the only thing called *finish*). ARCHITECTURE.md lists every such word.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::unistd::Pid;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::{sleep_until, Instant as TokioInstant};

use super::balancer::Balancer;
use super::msg::{
    AbandonCause, Abandoned, Note, PoolEvent, PoolMsg, PoolSnapshot, RequestInfo, SlotSnapshot, SlotState,
};
use super::notes::NoteReceiver;
use super::recycle::{self, Policy, Reason, SlotView};
use super::snapshot;
use super::usage;
use super::worker::{ChildSocket, Worker};
use crate::accesslog::{PoolLogs, Record};
use crate::metrics::PoolMetrics;
use crate::spawn::ChildSpec;
use crate::supervisor::{Command, Report, Reporter, Supervisor};
use crate::sys::pidfd::PidFd;

#[path = "actor_abandoned.rs"]
mod abandoned;
#[path = "actor_counters.rs"]
mod counters;
#[path = "actor_crashes.rs"]
mod crashes;
#[path = "actor_logs.rs"]
mod logs;
#[path = "actor_parent.rs"]
mod parent;
#[path = "actor_slot.rs"]
mod slot;
#[path = "actor_stopping.rs"]
mod stopping;
#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;

use counters::Counters;
use crashes::Crashes;
use parent::Parent;
use slot::{slot_snapshot, Carried, Slot};
use stopping::Stopping;

/// How often the children's listener is checked for a stray O_NONBLOCK.
pub const REPAIR_INTERVAL: Duration = Duration::from_millis(200);

/// How often abandoned requests are checked for their child having let go.
const SETTLE_INTERVAL: Duration = Duration::from_millis(20);
/// At most this many events are handled on one wake-up (messages and timers
/// then get their turn; the rest wait for the next).
const EVENTS_PER_WAKE_UP: usize = 64;

/// What a pool actor is built from.
pub struct ActorSetup {
    /// How to exec the pool's php-cgi.
    pub spec: Arc<ChildSpec>,
    /// The children's socket.
    pub socket: Arc<ChildSocket>,
    /// The supervisor thread.
    pub supervisor: Supervisor,
    /// The actor's second inbox, for the supervisor's reports and samples.
    pub events_tx: UnboundedSender<PoolEvent>,
    /// Recycling rules.
    pub policy: Policy,
    /// One epoch per slot (so also the number of slots).
    pub epochs: Arc<[AtomicU32]>,
    /// The idle workers, to which the actor returns the workers of ended requests.
    pub balancer: Arc<Balancer>,
    /// The pool's access log and slowlog.
    pub logs: Arc<PoolLogs>,
    /// Sample each request's CPU and memory for the status page.
    pub sample_usage: bool,
    /// Beaten by the actor's loop, watched by systemd's watchdog.
    pub heartbeat: Arc<super::health::Heartbeat>,
    /// What the front end notes without waking the actor for each (`Pool::note`).
    pub notes: NoteReceiver,
}

/// The actor's private state.
pub struct PoolActor {
    name: String,
    started: SystemTime,
    slots: Vec<Slot>,
    parent: Parent,
    stopping: Stopping,
    counters: Counters,
    crashes: Crashes,
    carried: Carried,
    /// Workers of ended requests, lent again once their child is settled.
    returning: Vec<Worker>,
    snapshot_waiters: snapshot::Waiters,
    /// The parent's children, read by the supervisor for snapshots.
    child_list: snapshot::ChildList,
    /// Access records whose child's pid is still being looked up: (slot, when, record).
    pending_access: Vec<(usize, Instant, Box<Record>)>,
    policy: Policy,
    sample_usage: bool,
    spec: Arc<ChildSpec>,
    socket: Arc<ChildSocket>,
    supervisor: Supervisor,
    /// The second inbox's sender (for usage samples), and the same inbox as
    /// the supervisor sees it.
    events_tx: UnboundedSender<PoolEvent>,
    reporter: Reporter,
    epochs: Arc<[AtomicU32]>,
    balancer: Arc<Balancer>,
    metrics: PoolMetrics,
    logs: Arc<PoolLogs>,
    heartbeat: Arc<super::health::Heartbeat>,
    notes: NoteReceiver,
    /// The first note written after the request's end being handled: read
    /// with the next message or wake-up.
    later: Option<Note>,
}

impl PoolActor {
    /// A new actor for `children` slots; call [`PoolActor::run`] to start it.
    pub fn new(setup: ActorSetup) -> PoolActor {
        let ActorSetup {
            spec,
            socket,
            supervisor,
            events_tx,
            policy,
            epochs,
            balancer,
            logs,
            sample_usage,
            heartbeat,
            notes,
        } = setup;
        let now = Instant::now();
        let inbox = events_tx.clone();
        PoolActor {
            name: spec.pool.clone(),
            started: SystemTime::now(),
            slots: (0..epochs.len()).map(|_| Slot::new(now)).collect(),
            parent: Parent::new(),
            stopping: Stopping::default(),
            counters: Counters::default(),
            crashes: Crashes::default(),
            carried: Carried::default(),
            returning: Vec::new(),
            snapshot_waiters: snapshot::Waiters::default(),
            child_list: snapshot::ChildList::default(),
            pending_access: Vec::new(),
            policy,
            sample_usage,
            metrics: PoolMetrics::new(&spec.pool),
            spec,
            socket,
            supervisor,
            events_tx,
            reporter: Reporter::new(move |report| drop(inbox.send(PoolEvent::Supervisor(report)))),
            epochs,
            balancer,
            logs,
            heartbeat,
            notes,
            later: None,
        }
    }

    /// Runs until every handle and the supervisor's event sender are gone.
    pub async fn run(mut self, mut msgs: UnboundedReceiver<PoolMsg>, mut events: UnboundedReceiver<PoolEvent>) {
        let mut repair = tokio::time::interval(REPAIR_INTERVAL);
        repair.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut settle = tokio::time::interval(SETTLE_INTERVAL);
        settle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let backlog = self.notes.backlog();
        loop {
            let (start_at, kill_at) = (self.parent.start_at(), self.stopping.kill_at());
            let woken = tokio::select! {
                msg = msgs.recv(), if !self.stopping.detached() => Woken::Msg(msg),
                Some(event) = events.recv() => Woken::Event(event),
                _ = until(start_at), if start_at.is_some() => Woken::Start,
                _ = backlog.notified() => Woken::Notes,
                _ = repair.tick() => Woken::Tick,
                _ = settle.tick(), if self.holds_abandoned() => Woken::Settle,
                _ = until(kill_at), if kill_at.is_some() => Woken::Kill,
            };
            match woken {
                Woken::Msg(Some(msg)) => {
                    // Each message reads the notes written before it.
                    self.handle(msg);
                    // The whole mailbox first: decisions below need every
                    // slot's current state (a worker may already be lent again).
                    self.handle_mailbox(&mut msgs);
                    self.read_notes();
                    self.replace_and_lend();
                }
                Woken::Msg(None) => {
                    self.read_notes();
                    self.detach();
                    if self.detach_done() {
                        return self.drain_access();
                    }
                }
                Woken::Event(event) => {
                    self.on_events(event, &mut events, &mut msgs);
                    self.replace_and_lend();
                    if self.detach_done() {
                        return self.drain_access();
                    }
                }
                Woken::Start => {
                    self.catch_up_and_lend(&mut msgs);
                    self.spawn_parent();
                }
                Woken::Notes => self.catch_up_and_lend(&mut msgs),
                Woken::Tick => {
                    self.catch_up(&mut msgs);
                    self.tick();
                    self.heartbeat.beat().await;
                }
                Woken::Settle => {
                    self.catch_up(&mut msgs);
                    self.check_held();
                    self.replace_and_lend();
                }
                Woken::Kill => {
                    self.catch_up_and_lend(&mut msgs);
                    self.kill_deadline_passed();
                }
            }
        }
    }

    /// Handles `first` and the events queued behind it, up to [`EVENTS_PER_WAKE_UP`]
    /// (a status-page pool's sampler sends one per request, exits come in bursts): one
    /// wake-up and one `replace_and_lend` for the lot, not one each. Messages sent before
    /// an event's cause come first: a stop's `Stop` precedes the kills it leads to
    /// (children killed at once would otherwise read as crashes, logged as warnings).
    fn on_events(
        &mut self,
        first: PoolEvent,
        events: &mut UnboundedReceiver<PoolEvent>,
        msgs: &mut UnboundedReceiver<PoolMsg>,
    ) {
        let (mut next, mut handled) = (Some(first), 0);
        while let Some(event) = next {
            self.catch_up(msgs);
            self.on_event(event);
            handled += 1;
            next = if handled < EVENTS_PER_WAKE_UP { events.try_recv().ok() } else { None };
        }
    }

    /// Handles the messages waiting in the mailbox (each after the notes
    /// written before it); true if there were any.
    fn handle_mailbox(&mut self, msgs: &mut UnboundedReceiver<PoolMsg>) -> bool {
        let mut handled = false;
        while let Ok(msg) = msgs.try_recv() {
            self.handle(msg);
            handled = true;
        }
        handled
    }

    /// What came before whatever woke the actor, other than a message: the
    /// messages waiting and every note. True if there were messages (their
    /// workers are then still to be lent).
    fn catch_up(&mut self, msgs: &mut UnboundedReceiver<PoolMsg>) -> bool {
        let handled = self.handle_mailbox(msgs);
        self.read_notes();
        handled
    }

    /// [`catch_up`](Self::catch_up), then lends the workers its messages gave back.
    fn catch_up_and_lend(&mut self, msgs: &mut UnboundedReceiver<PoolMsg>) {
        if self.catch_up(msgs) {
            self.replace_and_lend();
        }
    }

    /// Reads what the front end noted since the last wake-up, in order.
    fn read_notes(&mut self) {
        self.read_notes_until(None);
    }

    /// Reads, in order, what the front end noted up to `until` (all without):
    /// the first note written later waits for the next reading.
    fn read_notes_until(&mut self, until: Option<Instant>) {
        while let Some(note) = self.later.take().or_else(|| self.notes.try_recv()) {
            if until.is_some_and(|until| note.at() > until) {
                self.later = Some(note);
                return;
            }
            self.note(note);
        }
    }

    fn note(&mut self, note: Note) {
        match note {
            Note::Started { slot, queued, info, at } => self.request_started(slot, queued, info, at),
            Note::Ended { slot, status, duration, access, at } => {
                // The front end queued its usage sample (`Pool::sample_usage`).
                self.request_ended(slot, status, duration, at, true);
                if let Some(record) = access {
                    self.log_access(slot, record);
                }
            }
        }
    }

    fn handle(&mut self, msg: PoolMsg) {
        // Notes written before the message was sent come first (a request's
        // start before its end), also for a message read in a batch after the
        // notes were last read; those written after a request's end, after it.
        let until = match &msg {
            PoolMsg::RequestEnded { at, .. } => Some(*at),
            _ => None,
        };
        self.read_notes_until(until);
        match msg {
            PoolMsg::RequestEnded { slot, status, duration, at, worker, access } => {
                self.request_ended(slot, status, duration, at, false);
                self.take_back(worker, access);
            }
            PoolMsg::Connected { slot, inode, fd } => self.find_child(slot, inode, fd),
            PoolMsg::ChildCrashed { slot, script, uri, answered } => self.child_crashed(slot, &script, &uri, answered),
            PoolMsg::Rejected => self.metrics.rejected(),
            PoolMsg::Abandoned(request) => self.hold_abandoned(request),
            PoolMsg::Snapshot { respond_to } => {
                self.snapshot_waiters.hold(respond_to, Instant::now());
                self.list_children();
                self.answer_snapshots();
            }
            PoolMsg::Stop => self.stop(),
            PoolMsg::Retire { limit } => self.retire(limit),
        }
    }

    fn on_event(&mut self, event: PoolEvent) {
        match event {
            PoolEvent::Supervisor(report) => self.on_report(report),
            PoolEvent::Usage { slot, pid, cpu, memory } => self.usage_sampled(slot, pid, cpu, memory),
        }
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::ParentStarted { pid } => self.parent_started(pid),
            Report::SpawnFailed { error } => {
                crate::error!("[pool {}] {error}", self.name);
                self.parent.spawn_failed();
                self.start_parent_later(Duration::ZERO);
            }
            Report::ParentExited { pid, status } => self.parent_exited(pid, status),
            Report::ChildExited { pid, status } => self.child_exited(pid, status),
            Report::PeerChecked { slot, inode, open } => self.peer_checked(slot, inode, open),
            Report::ChildFound { slot, inode, pid, pidfd, started } => {
                self.child_found(slot, inode, pid, pidfd, started)
            }
            Report::ChildGone { slot, inode } => self.child_gone(slot, inode),
            Report::Children { parent, pids } => {
                self.child_list.read(parent.as_raw(), pids);
                self.answer_snapshots();
            }
        }
    }

    fn set_state(&mut self, slot: usize, state: SlotState) {
        self.set_state_at(slot, state, Instant::now());
    }

    /// `slot` is in `state` since `at` (a note read later says when it happened).
    fn set_state_at(&mut self, slot: usize, state: SlotState, at: Instant) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.state = state;
            s.since = at;
        }
    }

    /// A request got `slot` at `at`, after waiting `queued`.
    fn request_started(&mut self, slot: usize, queued: Duration, info: Option<Box<RequestInfo>>, at: Instant) {
        self.set_state_at(slot, SlotState::Busy, at);
        self.counters.request_started(queued);
        self.metrics.queued(queued);
        self.metrics.busy(self.counters.busy);
        if let Some(s) = self.slots.get_mut(slot) {
            s.slow_logged = false;
            if info.is_some() {
                s.info = info;
            }
        }
    }

    /// A request of `slot` ended (or its abandoned request was let go): the
    /// slot is idle, and its child is marked for replacement if a limit says so.
    /// Its child's usage is sampled unless the front end has done so
    /// (`sampled`: an express end, see `Pool::sample_usage`).
    fn request_ended(&mut self, slot: usize, status: u16, duration: Duration, at: Instant, sampled: bool) {
        self.counters.request_ended();
        let next = if self.stopping.begun() { SlotState::Exiting } else { SlotState::Idle };
        self.set_state_at(slot, next, at);
        let measure = self.policy.max_memory.is_some();
        if let Some(s) = self.slots.get_mut(slot) {
            s.requests += 1;
            s.last_duration = duration;
            s.memory = None;
            // /proc is read on the sampler thread, never here (the runtime thread).
            if let Some(pid) = s.pid.filter(|_| (self.sample_usage && !sampled) || measure) {
                let reply = self.events_tx.clone();
                let sample = usage::Sample { pid: pid.as_raw(), slot, duration, reply, awaited: measure };
                let queued = usage::request(sample);
                s.measuring = queued && measure;
            }
        }
        // When the request ended, not when its note is read: no clock reading per request.
        self.mark_if_due(slot, at);
        self.metrics.request(status, duration);
        self.metrics.busy(self.counters.busy);
        self.stop_children_when_idle();
    }

    /// The sampler read what the last request of `slot`'s child `pid` cost:
    /// shown on the status page, and checked against `pm_max_memory` (the
    /// slot's worker waited for it). A sample of a child the slot no longer
    /// has only ends the wait.
    fn usage_sampled(&mut self, slot: usize, pid: i32, cpu: Option<f64>, memory: Option<u64>) {
        let Some(s) = self.slots.get_mut(slot) else { return };
        let measured = std::mem::take(&mut s.measuring);
        if s.pid != Some(Pid::from_raw(pid)) {
            return;
        }
        s.last_usage = (cpu, memory);
        if measured {
            s.memory = memory;
            self.mark_if_due(slot, Instant::now());
        }
    }

    /// Takes back the worker of an ended request (to be lent again by
    /// [`Self::replace_and_lend`]) and logs the request.
    fn take_back(&mut self, worker: Worker, access: Option<Box<Record>>) {
        let slot = worker.slot();
        if let Some(record) = access {
            self.log_access(slot, record);
        }
        if !worker.is_connected() {
            self.unbind(slot);
        }
        self.returning.push(worker);
    }

    /// Marks the child of `slot` for replacement if a limit (requests,
    /// memory, lifetime) says so; an existing mark stays.
    fn mark_if_due(&mut self, slot: usize, now: Instant) {
        let Some(view) = self.slots.get(slot).map(Slot::view) else { return };
        if let Some(reason) = recycle::after_request(&self.policy, &view, now) {
            self.slots[slot].replace = Some(reason);
        }
    }

    /// A new connection of `slot` served its first request: look up the
    /// child that accepted it (once the parent runs, if it does not yet). The
    /// worker may have dropped the connection to a known child by itself
    /// (`Worker::ensure_connected`: the child closed it while idle), so that
    /// child is no longer the slot's, and what it served is carried with its pid.
    fn find_child(&mut self, slot: usize, inode: u32, fd: RawFd) {
        if self.slots.get(slot).is_some_and(|s| s.pid.is_some()) {
            self.unbind(slot);
        }
        let exits = self.crashes.unknown_exits();
        if let Some(s) = self.slots.get_mut(slot) {
            s.set_connection(inode, fd);
            (s.requests, s.exits_before) = (0, exits);
        }
        self.look_up_child(slot);
    }

    /// `pid` accepted `slot`'s connection, so no other slot's connection is
    /// its any more: a slot still naming it reconnected without the actor
    /// having read so yet (its `Connected` comes later). What the child served
    /// there is carried to `slot`.
    fn unbind_elsewhere(&mut self, slot: usize, pid: Pid) {
        for other in 0..self.slots.len() {
            if other != slot && self.slots[other].pid == Some(pid) {
                self.unbind(other);
            }
        }
    }

    /// The slot's connection was closed: its child is free to accept another
    /// slot's connection, so it is no longer this slot's (unless its pid is
    /// still being looked up, for the access log). What it served is carried
    /// with its pid.
    fn unbind(&mut self, slot: usize) {
        let most = self.slots.len().max(1) * 2;
        if let Some((pid, served)) = self.slots.get_mut(slot).and_then(Slot::let_child_go) {
            self.carried.remember(pid, served, most);
        }
    }

    /// Asks the supervisor which child holds `slot`'s connection.
    fn look_up_child(&mut self, slot: usize) {
        let (Some(parent), Some(s)) = (self.parent.pid(), self.slots.get_mut(slot)) else {
            return;
        };
        if s.inode == 0 || s.finding {
            return;
        }
        s.finding = true;
        let (inode, events) = (s.inode, self.reporter.clone());
        self.supervisor.send(Command::FindChild { parent, slot, inode, events });
    }

    /// The supervisor found (or not) the child of `slot`'s connection `inode`.
    /// A child another connection of this pool had counts on from there.
    pub(super) fn child_found(
        &mut self,
        slot: usize,
        inode: u32,
        pid: Option<Pid>,
        pidfd: Option<Arc<PidFd>>,
        started: Option<Instant>,
    ) {
        // The answer for a connection the slot has since replaced (its look-up
        // waited for a child to accept while the slot connected anew): the
        // current connection was not looked up (one look-up at a time), so it
        // is now.
        if let Some(s) = self.slots.get_mut(slot).filter(|s| s.inode != inode && s.finding) {
            s.finding = false;
            self.look_up_child(slot);
        }
        // An answer for a connection the slot no longer has binds nothing and
        // takes nothing: what the child served elsewhere waits for the
        // connection that meets it next.
        let pid = pid.filter(|_| self.slots.get(slot).is_some_and(|s| s.inode == inode));
        if let Some(pid) = pid {
            self.unbind_elsewhere(slot, pid);
        }
        let carried = pid.and_then(|p| self.carried.take(p));
        let mut recheck = false;
        if let Some(s) = self.slots.get_mut(slot).filter(|s| s.inode == inode) {
            if let Some(served) = carried {
                s.requests += served.requests;
                s.child_since = served.child_since;
                s.last_usage = served.last_usage;
                recheck = s.state == SlotState::Idle && s.replace.is_none();
            } else if s.pid != pid {
                // When it was forked (php-fpm's "start time"), else when it was found.
                s.child_since = pid.map(|_| started.unwrap_or_else(Instant::now));
                s.last_usage = (None, None);
            }
            s.pid = pid;
            s.pidfd = pidfd;
            s.finding = false;
        }
        if recheck {
            self.mark_if_due(slot, Instant::now());
        }
        self.answer_snapshots();
        self.flush_access(Some(slot));
    }

    /// Asks the supervisor which children the parent has forked, for the
    /// snapshots waiting (unless a reading is on its way).
    fn list_children(&mut self) {
        let Some(parent) = self.parent.pid() else { return };
        if self.child_list.ask(Instant::now()) {
            self.supervisor.send(Command::ListChildren { parent, events: self.reporter.clone() });
        }
    }

    /// Answers the status page once no pid lookup runs and the parent's
    /// children have been read (or it waited enough).
    fn answer_snapshots(&mut self) {
        let finding = self.slots.iter().any(|s| s.finding) || self.child_list.pending();
        if self.snapshot_waiters.due(finding, Instant::now()) {
            let snapshot = self.snapshot();
            self.snapshot_waiters.answer(snapshot);
        }
    }

    fn tick(&mut self) {
        self.answer_snapshots();
        self.log_late_crashes();
        self.check_slow();
        self.flush_access(None);
        self.repair_listener();
        self.mark_idle_due();
        self.replace_and_lend();
    }

    /// Marks the idle children that the idle rules (lifetime,
    /// `pm_process_idle_timeout`, `pm_max_spare_servers`) replace.
    fn mark_idle_due(&mut self) {
        let views: Vec<SlotView> = self.slots.iter().map(Slot::view).collect();
        for (slot, reason) in recycle::idle_plan(&self.policy, &views, Instant::now()) {
            self.slots[slot].replace = Some(reason);
        }
    }

    /// Replaces the children of idle slots marked for replacement (busy ones
    /// wait for their request to end: a child is never killed mid-request),
    /// then lends the returned workers out again. Deciding before a worker is
    /// lent again is what makes `pm_max_requests` exact.
    fn replace_and_lend(&mut self) {
        for slot in 0..self.slots.len() {
            let s = &self.slots[slot];
            // A child being looked up is waited for: only a known child can be killed.
            if s.state == SlotState::Idle && !s.awaits_pid() {
                if let Some(reason) = s.replace {
                    self.replace_idle(slot, reason);
                }
            }
        }
        let slots = &self.slots;
        let counts = self.policy.max_requests > 0 || self.policy.max_lifetime.is_some();
        let ready =
            |w: &mut Worker| !slots.get(w.slot()).is_some_and(|s| s.awaits_pid_to_replace(counts) || s.awaits_memory());
        let express = self.express();
        // The budget, and the child it holds for (the front end samples its usage).
        let grant = |s: &Slot| (s.express_budget(express, self.policy.max_requests), s.pid.map_or(0, Pid::as_raw));
        // In place: no Vec is allocated per wake-up.
        for worker in self.returning.extract_if(.., ready) {
            let slot = worker.slot();
            let (budget, pid) = slots.get(slot).map_or((0, 0), grant);
            self.balancer.grant_express(slot, budget, pid);
            self.balancer.release(worker);
        }
        for (slot, s) in self.slots.iter().enumerate() {
            if s.express_budget(express, self.policy.max_requests) == 0 {
                self.balancer.revoke_express(slot);
            }
        }
    }

    /// Replaces the child of `slot`, idle as far as the actor has read, once
    /// it holds the slot's worker: taken back, or withdrawn from the balancer's
    /// idle queue. A request may have taken the worker since the actor last
    /// read the notes (its start is not read yet): the slot is not idle then,
    /// and its child runs that request. It is left alone, and a mark of the
    /// idle rules is dropped (the request has just used the child); other
    /// marks wait for the request's end, which comes through the actor.
    fn replace_idle(&mut self, slot: usize, reason: Reason) {
        if !self.returning.iter().any(|w| w.slot() == slot) {
            let Some(worker) = self.balancer.withdraw(slot) else {
                if reason == Reason::Idle {
                    self.slots[slot].replace = None;
                }
                return;
            };
            self.returning.push(worker);
        }
        self.replace_child(slot, reason);
    }

    /// Whether the pool's rules let a worker skip the actor at all on its way
    /// back: no worker waits for a measure after its request (`pm_max_memory`;
    /// the status page's CPU and memory per request are sampled by the front
    /// end then, with the pid granted with the budget), no child ages out
    /// mid-loan (`pm_max_lifetime`), the pool is not stopping. Per slot, see
    /// [`Slot::express_budget`].
    fn express(&self) -> bool {
        !self.stopping.begun() && self.policy.max_memory.is_none() && self.policy.max_lifetime.is_none()
    }

    /// Kills the slot's child (php-cgi forks a fresh one) and tells its worker,
    /// through the slot's epoch, to connect anew before its next request.
    fn replace_child(&mut self, slot: usize, reason: Reason) {
        let s = &mut self.slots[slot];
        let (requests, memory) = (s.requests, s.memory.take());
        s.replace = None;
        let (pid, pidfd) = s.forget_child();
        if let Some(epoch) = self.epochs.get(slot) {
            epoch.fetch_add(1, Ordering::Relaxed);
        }
        let Some(pid) = pid else {
            crate::debug!(
                "[pool {}] slot {slot}: child unknown, reconnecting instead ({})",
                self.name,
                reason.as_str()
            );
            return;
        };
        self.supervisor.kill_child(pid, pidfd);
        self.parent.replacing(pid);
        self.counters.replaced(reason);
        self.metrics.recycled(reason.as_str());
        let detail = match reason {
            Reason::Memory => format!(", {} KiB private memory", memory.unwrap_or(0) / 1024),
            _ => String::new(),
        };
        crate::notice!(
            "[pool {}] child {pid} replaced ({}) after {requests} requests{detail}",
            self.name,
            reason.as_str()
        );
    }

    /// Clears a stray O_NONBLOCK on the children's listener; true if it was set.
    fn repair_listener(&mut self) -> bool {
        let repaired = self.socket.repair();
        if repaired {
            crate::warning!(
                "[pool {}] a script set O_NONBLOCK on php://stdin (the children's listening socket); cleared it",
                self.name
            );
        }
        repaired
    }

    /// What the status page shows of `slot` with `pid`. A slot without a connection
    /// shows one of the children no slot has (`fill_unbound`): with what that child served
    /// for slots before (`Carried`: its counts and last request), not the slot's zeroed
    /// counts (after clients aborted, every child showed 0 requests until its next
    /// request) nor another child's last request; a child that served none shows none.
    fn shown_slot(&self, slot: &Slot, pid: Option<i32>) -> SlotSnapshot {
        let mut shown = slot_snapshot(slot, pid);
        let Some(pid) = pid.filter(|_| slot.pid.is_none() && slot.inode == 0) else { return shown };
        let served = self.carried.peek(Pid::from_raw(pid));
        (shown.requests, shown.child_since) = served.map_or((0, None), |s| (s.requests, s.child_since));
        shown.info = served.and_then(|s| s.info.as_deref().cloned());
        shown.last_duration = served.map_or(Duration::ZERO, |s| s.last_duration);
        (shown.last_cpu, shown.last_memory) = served.map_or((None, None), |s| s.last_usage);
        shown
    }

    fn snapshot(&self) -> PoolSnapshot {
        let mut pids: Vec<Option<i32>> = self.slots.iter().map(|s| s.pid.map(Pid::as_raw)).collect();
        let children = self.parent.pid().map_or(&[][..], |parent| self.child_list.of(parent.as_raw()));
        snapshot::fill_unbound(&mut pids, children);
        let c = &self.counters;
        PoolSnapshot {
            name: self.name.clone(),
            started: self.started,
            parent_pid: self.parent.pid().map(Pid::as_raw),
            parent_starts: self.parent.starts(),
            forked: children.len(),
            slots: self.slots.iter().zip(&pids).map(|(s, pid)| self.shown_slot(s, *pid)).collect(),
            accepted: c.accepted,
            max_active: c.max_active,
            max_queue_wait: c.max_queue_wait,
            recycled: c.replaced,
            slow_requests: c.slow_requests,
        }
    }
}

/// What woke the actor's loop.
enum Woken {
    Msg(Option<PoolMsg>),
    Event(PoolEvent),
    Start,
    /// The front end's notes reached `notes::NOTES_PER_READING`.
    Notes,
    Tick,
    Settle,
    Kill,
}

/// Sleeps until `at`, or for ever without one. Building it reads no clock:
/// `select!` builds every branch's future on each turn of the actor's loop,
/// also the disabled ones (a far-future `sleep_until` cost two clock reads
/// per wake-up).
async fn until(at: Option<TokioInstant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}
