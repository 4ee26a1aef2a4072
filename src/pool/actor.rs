//! The pool actor: the only owner of a pool's worker state (slots, pids,
//! states, counters) and of its php-cgi parent's lifecycle. Workers and the
//! supervisor report to it by message; everyone else asks it for a
//! [`PoolSnapshot`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::unistd::Pid;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::{sleep_until, Instant as TokioInstant};

use super::balancer::Balancer;
use super::crash::{backoff, crash_loop_limit, ExitRate, CRASH_WINDOW};
use super::msg::{AbandonCause, Abandoned, PoolMsg, PoolSnapshot, RequestInfo, SlotSnapshot, SlotState};
use super::recycle::{self, Policy, Reason, SlotView};
use super::snapshot;
use super::usage;
use super::worker::{ChildSocket, Worker};
use crate::accesslog::format::escape_controls;
use crate::accesslog::{PoolLogs, Record};
use crate::metrics::PoolMetrics;
use crate::spawn::ChildSpec;
use crate::supervisor::{Command, ExitKind, PoolEvent, Supervisor};
use crate::sys::pidfd::PidFd;

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;

/// How often the children's listener is checked for a stray O_NONBLOCK.
pub const REPAIR_INTERVAL: Duration = Duration::from_millis(200);

#[path = "actor_logs.rs"]
mod logs;

#[path = "actor_abandoned.rs"]
mod abandoned;

/// How often abandoned requests are checked for their child having let go.
const SETTLE_INTERVAL: Duration = Duration::from_millis(20);

/// How long php-cgi of a pool that is gone gets between SIGTERM and SIGKILL.
const DETACHED_STOP_GRACE: Duration = Duration::from_secs(5);
/// How many recent child exits the actor remembers.
const RECENT_EXITS: usize = 64;
/// How long a lost request's log line waits for the child's exit status.
const EXIT_STATUS_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct LostRequest {
    pid: Option<Pid>,
    script: String,
    uri: String,
    at: Instant,
}

impl Slot {
    /// Idle, its child's pid is still being looked up, and the answer may
    /// retire the child: it is marked already, or `counts` (the child may have
    /// served requests for another slot's connection before, which count on).
    fn awaits_pid_to_retire(&self, counts: bool) -> bool {
        (self.retire.is_some() || counts) && self.state == SlotState::Idle && self.finding && self.pid.is_none()
    }
}

#[derive(Debug)]
struct Slot {
    pid: Option<Pid>,
    /// A handle on the process `pid` names (set with it): children are
    /// killed through it, so a recycled pid is never signalled.
    pidfd: Option<Arc<PidFd>>,
    /// The pid of this slot's new connection is being looked up.
    finding: bool,
    info: Option<Box<RequestInfo>>,
    child_since: Option<Instant>,
    memory: Option<u64>,
    /// CPU (%) and memory of the last request, as `usage` sampled them.
    last_usage: (Option<f64>, Option<u64>),
    retire: Option<Reason>,
    inode: u32,
    state: SlotState,
    requests: u64,
    since: Instant,
    last_duration: Duration,
    /// The running request was already logged as slow.
    slow_logged: bool,
    /// An abandoned request whose child may still be running it.
    held: Option<abandoned::Held>,
}

/// What a pool actor is built from.
pub struct ActorSetup {
    /// How to exec the pool's php-cgi.
    pub spec: Arc<ChildSpec>,
    /// The children's socket.
    pub socket: Arc<ChildSocket>,
    /// The supervisor thread.
    pub supervisor: Supervisor,
    /// Where the supervisor reports to this actor.
    pub events_tx: UnboundedSender<PoolEvent>,
    /// Recycling rules.
    pub policy: Policy,
    /// One epoch per slot (so also the number of slots).
    pub epochs: Arc<[AtomicU32]>,
    /// The idle workers, to which the actor returns finished ones.
    pub balancer: Arc<Balancer>,
    /// The pool's access log and slowlog.
    pub logs: Arc<PoolLogs>,
    /// Sample each request's CPU and memory for the status page.
    pub sample_usage: bool,
    /// Beaten by the actor's loop, watched by systemd's watchdog.
    pub heartbeat: Arc<super::health::Heartbeat>,
}

/// The actor's private state.
pub struct PoolActor {
    name: String,
    sample_usage: bool,
    slots: Vec<Slot>,
    spec: Arc<ChildSpec>,
    socket: Arc<ChildSocket>,
    supervisor: Supervisor,
    events_tx: UnboundedSender<PoolEvent>,
    parent: Option<(Pid, Instant)>,
    crash_streak: u32,
    recent_exits: VecDeque<(Pid, ExitKind)>,
    child_exits: ExitRate,
    killed_for_loop: bool,
    pending_lost: Vec<LostRequest>,
    respawn_at: Option<TokioInstant>,
    stopping: bool,
    started: SystemTime,
    parent_starts: u64,
    accepted: u64,
    busy: usize,
    max_active: usize,
    max_queue_wait: Duration,
    recycled: [u64; Reason::ALL.len()],
    crashes: VecDeque<Instant>,
    retiring: bool,
    /// A Spawn was sent to the supervisor and has not been answered yet.
    spawning: bool,
    /// Every handle is gone: the actor only waits for its php-cgi to exit.
    detached: bool,
    retire_deadline: Option<TokioInstant>,
    policy: Policy,
    epochs: Arc<[AtomicU32]>,
    balancer: Arc<Balancer>,
    returning: Vec<Worker>,
    snapshot_waiters: snapshot::Waiters,
    metrics: PoolMetrics,
    logs: Arc<PoolLogs>,
    slow_requests: u64,
    /// Children whose slot's connection was closed: what each served, by pid.
    unbound: std::collections::HashMap<Pid, (u64, Option<Instant>)>,
    /// Access records whose child's pid is still being looked up: (slot, when, record).
    pending_access: Vec<(usize, Instant, Box<Record>)>,
    heartbeat: Arc<super::health::Heartbeat>,
}

impl PoolActor {
    /// A new actor for `children` slots; call [`PoolActor::run`] to start it.
    pub fn new(setup: ActorSetup) -> PoolActor {
        let ActorSetup { spec, socket, supervisor, events_tx, policy, epochs, balancer, logs, sample_usage, heartbeat } =
            setup;
        let children = epochs.len();
        let now = Instant::now();
        let slot = || Slot {
            pid: None,
            pidfd: None,
            finding: false,
            info: None,
            child_since: None,
            memory: None,
            last_usage: (None, None),
            retire: None,
            inode: 0,
            state: SlotState::Starting,
            requests: 0,
            since: now,
            last_duration: Duration::ZERO,
            slow_logged: false,
            held: None,
        };
        PoolActor {
            name: spec.pool.clone(),
            sample_usage,
            metrics: PoolMetrics::new(&spec.pool),
            slots: (0..children).map(|_| slot()).collect(),
            spec,
            socket,
            supervisor,
            events_tx,
            parent: None,
            crash_streak: 0,
            recent_exits: VecDeque::new(),
            child_exits: ExitRate::default(),
            killed_for_loop: false,
            pending_lost: Vec::new(),
            respawn_at: Some(TokioInstant::now()),
            stopping: false,
            started: SystemTime::now(),
            parent_starts: 0,
            accepted: 0,
            busy: 0,
            max_active: 0,
            max_queue_wait: Duration::ZERO,
            recycled: [0; Reason::ALL.len()],
            crashes: VecDeque::new(),
            retiring: false,
            spawning: false,
            detached: false,
            retire_deadline: None,
            policy,
            epochs,
            balancer,
            returning: Vec::new(),
            snapshot_waiters: snapshot::Waiters::default(),
            logs,
            slow_requests: 0,
            pending_access: Vec::new(),
            unbound: Default::default(),
            heartbeat,
        }
    }

    /// Runs until every handle and the supervisor's event sender are gone.
    pub async fn run(mut self, mut msgs: UnboundedReceiver<PoolMsg>, mut events: UnboundedReceiver<PoolEvent>) {
        let mut repair = tokio::time::interval(REPAIR_INTERVAL);
        repair.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut settle = tokio::time::interval(SETTLE_INTERVAL);
        settle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let respawn_at = self.respawn_at;
            tokio::select! {
                msg = msgs.recv(), if !self.detached => match msg {
                    Some(msg) => {
                        self.handle(msg);
                        // The whole mailbox first: decisions below need every
                        // slot's current state (a worker may already be lent again).
                        while let Ok(msg) = msgs.try_recv() {
                            self.handle(msg);
                        }
                        self.apply_retirements();
                    }
                    None => {
                        self.detach();
                        if self.finished_detaching() {
                            return self.drain_access();
                        }
                    }
                },
                Some(event) = events.recv() => {
                    self.on_event(event);
                    self.apply_retirements();
                    if self.finished_detaching() {
                        return self.drain_access();
                    }
                }
                _ = sleep_until(respawn_at.unwrap_or_else(far_future)), if respawn_at.is_some() => self.spawn_parent(),
                _ = repair.tick() => {
                    self.tick();
                    self.heartbeat.beat().await;
                }
                _ = settle.tick(), if self.holds_abandoned() => {
                    self.check_held();
                    self.apply_retirements();
                }
                _ = sleep_until(self.retire_deadline.unwrap_or_else(far_future)), if self.retire_deadline.is_some() => {
                    if self.detached {
                        crate::warning!("[pool {}] php-cgi still running {}s after SIGTERM; killing", self.name, DETACHED_STOP_GRACE.as_secs());
                    } else {
                        crate::warning!("[pool {}] process_control_timeout passed with {} request(s) running; killing", self.name, self.busy);
                    }
                    self.stop_children(nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }

    fn handle(&mut self, msg: PoolMsg) {
        match msg {
            PoolMsg::RequestStarted { slot, queued, info } => self.request_started(slot, queued, info),
            PoolMsg::RequestFinished { slot, status, duration, worker, access } => {
                self.request_finished(slot, status, duration);
                if let Some(record) = access {
                    self.log_access(slot, record);
                }
                if !worker.is_connected() {
                    self.unbind(slot);
                }
                self.returning.push(worker);
            }
            PoolMsg::Connected { slot, inode } => self.find_child(slot, inode),
            PoolMsg::ChildLost { slot, script, uri } => self.child_lost(slot, &script, &uri),
            PoolMsg::Rejected => self.metrics.rejected(),
            PoolMsg::Abandoned(request) => self.hold_abandoned(request),
            PoolMsg::Snapshot { respond_to } => {
                self.snapshot_waiters.hold(respond_to, Instant::now());
                self.answer_snapshots();
            }
            PoolMsg::Stop => self.stop(),
            PoolMsg::Retire { limit } => self.retire(limit),
        }
    }

    fn set_state(&mut self, slot: usize, state: SlotState) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.state = state;
            s.since = Instant::now();
        }
    }

    fn request_started(&mut self, slot: usize, queued: Duration, info: Option<Box<RequestInfo>>) {
        self.set_state(slot, SlotState::Busy);
        self.accepted += 1;
        self.busy += 1;
        self.max_active = self.max_active.max(self.busy);
        self.max_queue_wait = self.max_queue_wait.max(queued);
        self.metrics.queued(queued);
        self.metrics.busy(self.busy);
        if let Some(s) = self.slots.get_mut(slot) {
            s.slow_logged = false;
            if info.is_some() {
                s.info = info;
            }
        }
    }

    fn request_finished(&mut self, slot: usize, status: u16, duration: Duration) {
        self.busy = self.busy.saturating_sub(1);
        let next = if self.stopping { SlotState::Exiting } else { SlotState::Idle };
        self.set_state(slot, next);
        let max_memory = self.policy.max_memory;
        if let Some(s) = self.slots.get_mut(slot) {
            s.requests += 1;
            s.last_duration = duration;
            s.memory = max_memory.and(s.pid).and_then(|p| crate::sys::procfs::private_memory(p.as_raw()));
            if let Some(pid) = s.pid.filter(|_| self.sample_usage) {
                let reply = self.events_tx.clone();
                usage::request(usage::Sample { pid: pid.as_raw(), slot, duration, reply });
            }
        }
        if let Some(view) = self.view(slot) {
            let reason = recycle::after_request(&self.policy, &view, Instant::now());
            if let Some(s) = self.slots.get_mut(slot).filter(|_| reason.is_some()) {
                s.retire = reason;
            }
        }
        self.metrics.request(status, duration);
        self.metrics.busy(self.busy);
        self.stop_children_when_idle();
    }

    /// A new connection of `slot` served its first request: look up the
    /// child that accepted it (once the parent runs, if it does not yet).
    fn find_child(&mut self, slot: usize, inode: u32) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.inode = inode;
            s.requests = 0;
        }
        self.look_up_child(slot);
    }

    /// The slot's connection was closed: its child is free to accept another
    /// slot's connection, so it is no longer this slot's (unless its pid is
    /// still being looked up, for the access log).
    /// What it served is remembered with its pid, so that pm_max_requests and
    /// pm_max_lifetime count on when another slot's connection meets it.
    fn unbind(&mut self, slot: usize) {
        let most = self.slots.len().max(1) * 2;
        let Some(s) = self.slots.get_mut(slot) else { return };
        if let Some(pid) = s.pid.take() {
            if self.unbound.len() >= most {
                self.unbound.clear();
            }
            self.unbound.insert(pid, (s.requests, s.child_since));
        }
        (s.pidfd, s.inode, s.finding, s.requests, s.child_since) = (None, 0, false, 0, None);
    }

    /// Asks the supervisor which child holds `slot`'s connection.
    fn look_up_child(&mut self, slot: usize) {
        let (Some((parent, _)), Some(s)) = (self.parent, self.slots.get_mut(slot)) else {
            return;
        };
        if s.inode == 0 || s.finding {
            return;
        }
        s.finding = true;
        let (inode, events) = (s.inode, self.events_tx.clone());
        self.supervisor.send(Command::FindChild { parent, slot, inode, events });
    }

    fn child_lost(&mut self, slot: usize, script: &str, uri: &str) {
        self.recycled[Reason::Crash.index()] += 1;
        self.metrics.crash();
        let pid = self.slots.get_mut(slot).and_then(|s| {
            s.inode = 0;
            s.requests = 0;
            s.pid.take()
        });
        let lost = LostRequest { pid, script: script.into(), uri: uri.into(), at: Instant::now() };
        let exit = pid.and_then(|p| self.recent_exits.iter().find(|(q, _)| *q == p).map(|(_, e)| *e));
        match exit {
            Some(status) => self.log_lost(&lost, Some(status)),
            None if pid.is_some() => self.pending_lost.push(lost),
            None => self.log_lost(&lost, None),
        }
    }

    /// One line per request lost to a dying child, with the exit status when
    /// the kernel reported it.
    fn log_lost(&self, lost: &LostRequest, status: Option<ExitKind>) {
        let pid = lost.pid.map_or_else(|| "?".to_string(), |p| p.to_string());
        let how = status.map_or_else(|| "exited".to_string(), |s| s.to_string());
        crate::warning!(
            "[pool {}] child {pid} {how} while serving script '{}' (uri '{}'): answered 502",
            self.name,
            escape_controls(&lost.script),
            escape_controls(&lost.uri)
        );
    }

    fn child_exited(&mut self, pid: Pid, status: ExitKind) {
        self.unbound.remove(&pid);
        // The usual cause of children dying at once: a script made the shared
        // listener non-blocking. Repairing it ends the loop without a restart.
        if self.repair_listener() {
            self.child_exits = ExitRate::default();
        } else {
            self.check_child_loop();
        }
        self.check_emergency(status);
        if let Some(i) = self.pending_lost.iter().position(|l| l.pid == Some(pid)) {
            let lost = self.pending_lost.swap_remove(i);
            return self.log_lost(&lost, Some(status));
        }
        // A busy slot's child: the front end's report of the lost request
        // follows, and is logged together with this status.
        let busy = self.slots.iter().any(|s| s.pid == Some(pid) && s.state == SlotState::Busy);
        for s in self.slots.iter_mut().filter(|s| s.pid == Some(pid) && s.state != SlotState::Busy) {
            s.pid = None;
        }
        if !busy {
            match status {
                ExitKind::Signal(_) => crate::warning!("[pool {}] child {pid} {status}", self.name),
                ExitKind::Code(0) => crate::debug!("[pool {}] child {pid} {status}", self.name),
                ExitKind::Code(_) => crate::notice!("[pool {}] child {pid} {status}", self.name),
            }
        }
        if self.recent_exits.len() == RECENT_EXITS {
            self.recent_exits.pop_front();
        }
        self.recent_exits.push_back((pid, status));
    }

    /// Lost requests whose exit status never came are logged without it.
    fn flush_lost(&mut self) {
        let (late, waiting): (Vec<_>, Vec<_>) =
            self.pending_lost.drain(..).partition(|l| l.at.elapsed() > EXIT_STATUS_WAIT);
        self.pending_lost = waiting;
        for lost in &late {
            self.log_lost(lost, None);
        }
    }

    fn on_event(&mut self, event: PoolEvent) {
        match event {
            PoolEvent::ParentStarted { pid } => self.parent_started(pid),
            PoolEvent::SpawnFailed { error } => {
                self.spawning = false;
                crate::error!("[pool {}] {error}", self.name);
                self.schedule_respawn(Duration::ZERO);
            }
            PoolEvent::ParentExited { pid, status } => self.parent_exited(pid, status),
            PoolEvent::ChildExited { pid, status } => self.child_exited(pid, status),
            PoolEvent::PeerChecked { slot, inode, open } => self.peer_checked(slot, inode, open),
            PoolEvent::Usage { slot, pid, cpu, memory } => {
                if let Some(s) = self.slots.get_mut(slot).filter(|s| s.pid == Some(Pid::from_raw(pid))) {
                    s.last_usage = (cpu, memory);
                }
            }
            PoolEvent::ChildFound { slot, inode, pid, pidfd } => {
                let carried = pid.and_then(|p| self.unbound.remove(&p));
                let mut recheck = false;
                if let Some(s) = self.slots.get_mut(slot).filter(|s| s.inode == inode) {
                    if let Some((requests, since)) = carried {
                        // A child another connection of this pool had: it counts on.
                        s.requests += requests;
                        s.child_since = since;
                        recheck = s.state == SlotState::Idle && s.retire.is_none();
                    } else if s.pid != pid {
                        s.child_since = pid.map(|_| Instant::now());
                        s.last_usage = (None, None);
                    }
                    s.pid = pid;
                    s.pidfd = pidfd;
                    s.finding = false;
                }
                if let Some(view) = self.view(slot).filter(|_| recheck) {
                    self.slots[slot].retire = recycle::after_request(&self.policy, &view, Instant::now());
                }
                self.answer_snapshots();
                self.flush_access(Some(slot));
            }
        }
    }

    /// Answers the status page once no pid lookup runs (or it waited enough).
    fn answer_snapshots(&mut self) {
        let finding = self.slots.iter().any(|s| s.finding);
        if self.snapshot_waiters.due(finding, Instant::now()) {
            let snapshot = self.snapshot();
            self.snapshot_waiters.answer(snapshot);
        }
    }

    fn spawn_parent(&mut self) {
        self.respawn_at = None;
        if self.stopping {
            return;
        }
        let events = self.events_tx.clone();
        self.spawning = true;
        self.supervisor.send(Command::Spawn { spec: self.spec.clone(), events });
    }

    /// The pool is gone (every handle dropped): its php-cgi must not outlive
    /// it, including a parent whose start is still on its way.
    fn detach(&mut self) {
        self.detached = true;
        self.stop();
        self.balancer.close();
        if let Some((pgid, _)) = self.parent {
            self.supervisor.send(Command::SignalGroup { pgid, signal: nix::sys::signal::Signal::SIGTERM });
        }
        if self.retire_deadline.is_none() {
            self.retire_deadline = Some(TokioInstant::now() + DETACHED_STOP_GRACE);
        }
    }

    /// Detached, and no php-cgi of this pool runs or is being started.
    fn finished_detaching(&self) -> bool {
        self.detached && self.parent.is_none() && !self.spawning
    }

    fn parent_started(&mut self, pid: Pid) {
        self.spawning = false;
        self.parent = Some((pid, Instant::now()));
        self.parent_starts += 1;
        self.metrics.parent_start(if self.parent_starts == 1 { "start" } else { "restart" });
        crate::notice!("[pool {}] php-cgi parent {pid} started with {} children", self.name, self.slots.len());
        for i in 0..self.slots.len() {
            if self.slots[i].state == SlotState::Starting {
                self.set_state(i, SlotState::Idle);
            }
            // Connections made before the parent ran: their child is known now.
            if self.slots[i].pid.is_none() {
                self.look_up_child(i);
            }
        }
        if self.stopping {
            self.supervisor.send(Command::SignalGroup { pgid: pid, signal: nix::sys::signal::Signal::SIGTERM });
        }
    }

    fn parent_exited(&mut self, pid: Pid, status: ExitKind) {
        let started = match self.parent {
            Some((p, started)) if p == pid => started,
            _ => return,
        };
        self.parent = None;
        for s in &mut self.slots {
            s.pid = None;
            s.inode = 0;
        }
        self.unbound.clear();
        if self.stopping {
            return;
        }
        crate::warning!("[pool {}] php-cgi parent {pid} {status}", self.name);
        // A parent we killed for a child crash loop counts as a fast exit.
        let ran = if std::mem::take(&mut self.killed_for_loop) { Duration::ZERO } else { started.elapsed() };
        self.schedule_respawn(ran);
    }

    /// Children that keep dying (php-cgi re-forks them without any limit) make
    /// the whole pool restart with backoff.
    fn check_child_loop(&mut self) {
        let Some((parent, _)) = self.parent else {
            return;
        };
        let limit = crash_loop_limit(self.slots.len());
        if self.killed_for_loop || !self.child_exits.record(Instant::now(), limit) {
            return;
        }
        crate::error!(
            "[pool {}] children are exiting in a loop (more than {limit} in {}s); restarting php-cgi with backoff",
            self.name,
            CRASH_WINDOW.as_secs()
        );
        self.killed_for_loop = true;
        self.supervisor.send(Command::SignalGroup { pgid: parent, signal: nix::sys::signal::Signal::SIGKILL });
    }

    /// php-fpm's emergency restart: too many children dying of SIGSEGV or
    /// SIGBUS within the interval restart the pool's php-cgi.
    fn check_emergency(&mut self, status: ExitKind) {
        use nix::sys::signal::Signal::{SIGBUS, SIGKILL, SIGSEGV};
        let (Some((threshold, interval)), Some((parent, _))) = (self.policy.emergency, self.parent) else { return };
        if !matches!(status, ExitKind::Signal(SIGSEGV | SIGBUS)) {
            return;
        }
        let now = Instant::now();
        self.crashes.retain(|t| now.duration_since(*t) <= interval);
        self.crashes.push_back(now);
        if self.crashes.len() >= threshold {
            self.crashes.clear();
            crate::alert!(
                "[pool {}] {threshold} children exited on SIGSEGV or SIGBUS within {}s: emergency restart of php-cgi",
                self.name,
                interval.as_secs()
            );
            self.supervisor.send(Command::SignalGroup { pgid: parent, signal: SIGKILL });
        }
    }

    /// Restarts at once after a parent that ran a while; with doubling delays
    /// when parents keep dying within [`FAST_EXIT`] of starting.
    fn schedule_respawn(&mut self, ran: Duration) {
        let delay = backoff(&mut self.crash_streak, ran);
        if !delay.is_zero() {
            crate::error!(
                "[pool {}] php-cgi keeps exiting right after start ({} times in a row); next start in {}s",
                self.name,
                self.crash_streak,
                delay.as_secs()
            );
        }
        self.respawn_at = Some(TokioInstant::now() + delay);
    }

    fn tick(&mut self) {
        self.answer_snapshots();
        self.flush_lost();
        self.check_slow();
        self.flush_access(None);
        self.repair_listener();
        let views: Vec<SlotView> = (0..self.slots.len()).filter_map(|i| self.view(i)).collect();
        for (slot, reason) in recycle::idle_plan(&self.policy, &views, Instant::now()) {
            self.slots[slot].retire = Some(reason);
        }
        self.apply_retirements();
    }

    fn view(&self, slot: usize) -> Option<SlotView> {
        self.slots.get(slot).map(|s| SlotView {
            state: s.state,
            requests: s.requests,
            child_since: s.child_since,
            since: s.since,
            memory: s.memory,
        })
    }

    /// Replaces the children of idle slots marked for retirement (busy ones
    /// wait for their request to end: a child is never killed mid-request),
    /// then lends the returned workers out again. Deciding before a worker is
    /// lent again is what makes `pm_max_requests` exact.
    fn apply_retirements(&mut self) {
        for slot in 0..self.slots.len() {
            let s = &self.slots[slot];
            // A child being looked up is waited for: only a known child can be killed.
            if s.state == SlotState::Idle && !(s.finding && s.pid.is_none()) {
                if let Some(reason) = s.retire {
                    self.replace_child(slot, reason);
                }
            }
        }
        let slots = &self.slots;
        let counts = self.policy.max_requests > 0 || self.policy.max_lifetime.is_some();
        let (waiting, ready): (Vec<Worker>, Vec<Worker>) =
            self.returning.drain(..).partition(|w| slots.get(w.slot()).is_some_and(|s| s.awaits_pid_to_retire(counts)));
        self.returning = waiting;
        for worker in ready {
            self.balancer.release(worker);
        }
    }

    /// Kills the slot's child (php-cgi forks a fresh one) and tells its worker,
    /// through the slot's epoch, to connect anew before its next request.
    fn replace_child(&mut self, slot: usize, reason: Reason) {
        let s = &mut self.slots[slot];
        let (pid, pidfd, requests, memory) = (s.pid.take(), s.pidfd.take(), s.requests, s.memory);
        s.retire = None;
        s.finding = false;
        s.requests = 0;
        s.child_since = None;
        s.memory = None;
        s.inode = 0;
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
        self.recycled[reason.index()] += 1;
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

    fn retire(&mut self, limit: Option<Duration>) {
        self.stop();
        self.retiring = true;
        self.retire_deadline = limit.map(|l| TokioInstant::now() + l);
        crate::notice!("[pool {}] retiring: {} request(s) still running", self.name, self.busy);
        self.stop_children_when_idle();
    }

    /// Ends a retired pool's children once its last request is done.
    fn stop_children_when_idle(&mut self) {
        if self.retiring && self.busy == 0 {
            self.stop_children(nix::sys::signal::Signal::SIGTERM);
        }
    }

    fn stop_children(&mut self, signal: nix::sys::signal::Signal) {
        self.retiring = false;
        self.retire_deadline = None;
        if let Some((pgid, _)) = self.parent {
            self.supervisor.send(Command::SignalGroup { pgid, signal });
        }
    }

    fn stop(&mut self) {
        self.stopping = true;
        self.respawn_at = None;
        for i in 0..self.slots.len() {
            if self.slots[i].state != SlotState::Busy {
                self.set_state(i, SlotState::Exiting);
            }
        }
    }

    fn snapshot(&self) -> PoolSnapshot {
        let mut pids: Vec<Option<i32>> = self.slots.iter().map(|s| s.pid.map(Pid::as_raw)).collect();
        if let Some((parent, _)) = self.parent {
            snapshot::fill_unbound(&mut pids, &crate::sys::procfs::children(parent.as_raw()));
        }
        PoolSnapshot {
            name: self.name.clone(),
            started: self.started,
            parent_pid: self.parent.map(|(p, _)| p.as_raw()),
            parent_starts: self.parent_starts,
            slots: self
                .slots
                .iter()
                .enumerate()
                .map(|(slot, s)| SlotSnapshot {
                    slot,
                    pid: pids[slot],
                    state: s.state,
                    requests: s.requests,
                    since: s.since,
                    last_duration: s.last_duration,
                    child_since: s.child_since,
                    info: s.info.as_deref().cloned(),
                    last_cpu: s.last_usage.0,
                    last_memory: s.last_usage.1,
                })
                .collect(),
            accepted: self.accepted,
            max_active: self.max_active,
            max_queue_wait: self.max_queue_wait,
            recycled: self.recycled,
            slow_requests: self.slow_requests,
        }
    }
}

fn far_future() -> TokioInstant {
    TokioInstant::now() + Duration::from_secs(86400)
}
