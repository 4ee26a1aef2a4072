//! The pool actor tested as data: a real actor struct fed messages and
//! supervisor events, with a fake supervisor whose commands are read back.
//! No php-cgi runs; workers connect (where a test needs an inode) to a plain
//! listening socket that nobody accepts on.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::Instant as TokioInstant;

use super::{ActorSetup, PoolActor};
use crate::accesslog::{PoolLogs, RequestInfo};
use crate::pool::msg::PoolEvent;
use crate::pool::notes::{self, NoteSender};
use crate::pool::recycle::{Policy, Reason};
use crate::pool::usage;
use crate::pool::{AbandonCause, Abandoned, Balancer, ChildSocket, Note, PoolMsg, SlotState, Worker};
use crate::spawn::{ChildSpec, Output};
use crate::supervisor::{Command, ExitKind, Report, Supervisor};

const PARENT: i32 = 4000;

struct Harness {
    actor: PoolActor,
    commands: Receiver<Command>,
    balancer: Arc<Balancer>,
    socket: Arc<ChildSocket>,
    /// The actor's second inbox: where the real usage sampler answers.
    events: UnboundedReceiver<PoolEvent>,
    /// What the front end notes (`Pool::note`), read by the actor.
    notes: NoteSender,
    _dir: tempfile::TempDir,
}

fn harness(children: usize, policy: Policy) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("[pool.t]\nlisten = \"{}/t.sock\"\npm_max_children = {children}\n", dir.path().display());
    let mut config = crate::config::parse(&toml, &dir.path().join("t.toml")).unwrap();
    let cfg = config.pools.remove(0);
    let path = dir.path().join("children.sock");
    let listener: OwnedFd = UnixListener::bind(&path).unwrap().into();
    let spec = ChildSpec {
        pool: "t".into(),
        program: "/bin/false".into(),
        args: Vec::new(),
        env: Vec::new(),
        listener: listener.try_clone().unwrap(),
        credentials: None,
        settings: Default::default(),
        output: Output::Discard,
    };
    let socket = Arc::new(ChildSocket { path, dir: dir.path().join("gone"), listener });
    let (supervisor, commands) = Supervisor::fake();
    let (events_tx, events) = unbounded_channel();
    let (notes, notes_rx) = notes::channel();
    let epochs: Arc<[AtomicU32]> = (0..children).map(|_| AtomicU32::new(0)).collect();
    let workers = (0..children).map(|slot| Worker::new(slot, epochs.clone())).collect();
    let balancer = Arc::new(Balancer::new(workers, 16, None));
    let actor = PoolActor::new(ActorSetup {
        spec: Arc::new(spec),
        socket: socket.clone(),
        supervisor,
        events_tx,
        policy,
        epochs,
        balancer: balancer.clone(),
        logs: Arc::new(PoolLogs::new(&cfg).unwrap()),
        sample_usage: false,
        heartbeat: Default::default(),
        notes: notes_rx,
    });
    let mut h = Harness { actor, commands, balancer, socket, events, notes, _dir: dir };
    h.report(Report::ParentStarted { pid: Pid::from_raw(PARENT) });
    h
}

impl Harness {
    /// Lends a worker, connected, as the front end does for a request.
    async fn start_request(&mut self) -> Worker {
        let mut worker = self.lend().await;
        self.connected(&mut worker);
        worker
    }

    /// A request takes a worker and connects it (anew if it has no
    /// connection), its start noted.
    async fn lend(&mut self) -> Worker {
        let (mut worker, queued) = self.balancer.acquire().await.unwrap();
        worker.ensure_connected(&self.socket).await.unwrap();
        self.actor.note(Note::Started { slot: worker.slot(), queued, info: None, at: Instant::now() });
        worker
    }

    /// The request sends its head: the actor is told of a new connection.
    fn connected(&mut self, worker: &mut Worker) {
        if worker.is_fresh() {
            worker.mark_used();
            self.actor.handle(PoolMsg::Connected { slot: worker.slot(), inode: worker.inode(), fd: worker.fd() });
        }
    }

    /// `n` requests, each on the worker lent next, served by child `pid`;
    /// returns the last one's slot.
    async fn serve(&mut self, n: usize, pid: i32) -> usize {
        let mut slot = 0;
        for _ in 0..n {
            let worker = self.start_request().await;
            slot = worker.slot();
            self.child_found(slot, pid);
            self.end_request(worker);
        }
        slot
    }

    /// The child of `worker`'s request died under it: the front end reports
    /// the crash, drops the connection and returns the worker.
    fn crash_request(&mut self, mut worker: Worker) {
        let slot = worker.slot();
        let (script, uri) = ("/srv/boom.php".into(), "/boom.php".into());
        self.actor.handle(PoolMsg::ChildCrashed { slot, script, uri, answered: "answered 502" });
        worker.discard();
        self.actor.handle(PoolMsg::RequestEnded {
            slot,
            status: 502,
            duration: Duration::ZERO,
            at: Instant::now(),
            worker,
            access: None,
        });
        self.actor.replace_and_lend();
    }

    fn end_request(&mut self, worker: Worker) {
        self.end_request_after(worker, Duration::ZERO);
    }

    /// A request that took `duration` ends through the actor.
    fn end_request_after(&mut self, worker: Worker, duration: Duration) {
        let (slot, at) = (worker.slot(), Instant::now());
        self.actor.handle(PoolMsg::RequestEnded { slot, status: 200, duration, at, worker, access: None });
        self.actor.replace_and_lend();
    }

    /// As `Lease::release` ends a request when its slot's express budget allows:
    /// the worker straight back to the balancer, the actor only noted. The
    /// worker back if the budget says it goes through the actor.
    #[allow(clippy::result_large_err)] // a test helper: the worker comes back as it went
    fn end_request_express(&mut self, worker: Worker) -> Result<i32, Worker> {
        self.end_request_express_after(worker, Duration::ZERO)
    }

    /// As [`Self::end_request_express`], for a request that took `duration`;
    /// on a pool that samples usage (a status page) the child the budget was
    /// granted for is sampled as `Pool::sample_usage` does. Its pid.
    #[allow(clippy::result_large_err)]
    fn end_request_express_after(&mut self, worker: Worker, duration: Duration) -> Result<i32, Worker> {
        let slot = worker.slot();
        let Some(pid) = self.balancer.take_express(slot) else { return Err(worker) };
        let at = Instant::now();
        self.actor.note(Note::Ended { slot, status: 200, duration, access: None, at });
        if self.actor.sample_usage {
            let reply = self.actor.events_tx.clone();
            assert!(usage::request(usage::Sample { pid, slot, duration, reply, awaited: false }));
        }
        self.balancer.release(worker);
        Ok(pid)
    }

    /// The supervisor tells the actor which child serves `slot`.
    fn child_found(&mut self, slot: usize, pid: i32) {
        let inode = self.actor.slots[slot].inode;
        self.report(Report::ChildFound { slot, inode, pid: Some(Pid::from_raw(pid)), pidfd: None, started: None });
    }

    fn abandon(&mut self, mut worker: Worker, cause: AbandonCause, deadline: Option<Instant>) {
        worker.abandon();
        let (script, uri) = ("/srv/spin.php".into(), "/spin.php".into());
        let started = Instant::now();
        let request = Abandoned { worker, cause, status: 499, started, deadline, script, uri, access: None };
        self.actor.handle(PoolMsg::Abandoned(Box::new(request)));
    }

    /// The usage sampler's next answer (it reads /proc on its own thread),
    /// handled as the actor's loop handles it.
    async fn sampled(&mut self) {
        let event = tokio::time::timeout(Duration::from_secs(10), self.events.recv()).await;
        self.actor.on_event(event.expect("the sampler answers").expect("the inbox is open"));
        self.actor.replace_and_lend();
    }

    /// The supervisor reports to the actor.
    fn report(&mut self, report: Report) {
        self.actor.on_event(PoolEvent::Supervisor(report));
    }

    fn commands(&self) -> Vec<Command> {
        self.commands.try_iter().collect()
    }
}

fn kills(commands: &[Command]) -> Vec<i32> {
    commands
        .iter()
        .filter_map(|c| if let Command::KillChild { pid, .. } = c { Some(pid.as_raw()) } else { None })
        .collect()
}

fn group_signals(commands: &[Command]) -> Vec<Signal> {
    commands
        .iter()
        .filter_map(|c| if let Command::SignalGroup { signal, .. } = c { Some(*signal) } else { None })
        .collect()
}

fn spawns(commands: &[Command]) -> usize {
    commands.iter().filter(|c| matches!(c, Command::Spawn { .. })).count()
}

fn look_ups(commands: &[Command]) -> Vec<usize> {
    commands.iter().filter_map(|c| if let Command::FindChild { slot, .. } = c { Some(*slot) } else { None }).collect()
}

fn replaced(h: &Harness, reason: Reason) -> u64 {
    h.actor.snapshot().recycled[reason.index()]
}

fn pid(raw: i32) -> Pid {
    Pid::from_raw(raw)
}

fn peer_checks(commands: &[Command]) -> usize {
    commands.iter().filter(|c| matches!(c, Command::CheckPeer { .. })).count()
}

#[tokio::test]
async fn an_ended_request_counts_and_returns_its_worker() {
    let mut h = harness(2, Policy::default());
    let worker = h.start_request().await;
    let slot = worker.slot();
    assert_eq!((h.actor.counters.busy, h.actor.slots[slot].state), (1, SlotState::Busy));
    assert_eq!(h.balancer.idle(), 1);
    h.end_request(worker);
    assert_eq!((h.actor.counters.busy, h.actor.slots[slot].state), (0, SlotState::Idle));
    assert_eq!((h.actor.counters.accepted, h.actor.slots[slot].requests), (1, 1));
    assert_eq!(h.balancer.idle(), 2);
}

#[tokio::test]
async fn max_requests_kills_the_child_by_pid_before_the_worker_is_lent_again() {
    let mut h = harness(1, Policy { max_requests: 2, ..Policy::default() });
    for n in 1..=2 {
        let worker = h.start_request().await;
        h.child_found(0, 77);
        h.end_request(worker);
        let kills = kills(&h.commands());
        assert_eq!(kills, if n == 2 { vec![77] } else { vec![] }, "after request {n}");
    }
    assert_eq!(h.actor.slots[0].pid, None);
    assert_eq!(h.actor.epochs[0].load(std::sync::atomic::Ordering::Relaxed), 1, "the worker reconnects");
    assert_eq!(h.balancer.idle(), 1);
}

#[tokio::test]
async fn a_note_written_before_a_message_is_read_before_it() {
    let mut h = harness(1, Policy::default());
    let (worker, queued) = h.balancer.acquire().await.unwrap();
    // The actor woke for another message and read the notes before this one
    // was written; the request's end then came in the same batch of messages.
    h.notes.send(Note::Started { slot: 0, queued, info: None, at: Instant::now() });
    h.end_request(worker);
    assert_eq!((h.actor.counters.busy, h.actor.slots[0].state), (0, SlotState::Idle));
    assert_eq!((h.actor.counters.accepted, h.actor.counters.max_active), (1, 1));
}

/// The message by which the front end ends a request through the actor, sent
/// at `at` (the request's end).
fn ended(worker: Worker, at: Instant) -> PoolMsg {
    let slot = worker.slot();
    PoolMsg::RequestEnded { slot, status: 200, duration: Duration::ZERO, at, worker, access: None }
}

#[tokio::test]
async fn a_note_written_after_a_message_is_read_after_it() {
    let mut h = harness(2, Policy::default());
    let first = h.start_request().await;
    // The first request ends through the actor (its child is not known yet),
    // and the message waits in the mailbox...
    let end = Instant::now();
    let message = ended(first, end);
    // ... while the next request of the same client starts on the other worker.
    let (second, queued) = h.balancer.acquire().await.unwrap();
    let at = end + Duration::from_micros(1);
    h.notes.send(Note::Started { slot: second.slot(), queued, info: None, at });
    h.actor.handle(message);
    h.actor.replace_and_lend();
    h.actor.read_notes();
    assert_eq!((h.actor.counters.accepted, h.actor.counters.busy), (2, 1));
    assert_eq!(h.actor.slots[second.slot()].state, SlotState::Busy);
    assert_eq!(h.actor.counters.max_active, 1, "one request at a time: 'max active processes' is 1");
}

/// A running actor reads a reading's worth of notes when it is written, not a
/// tick's worth on its tick: that reading held up every connection on its
/// thread (0.5–0.7 ms every 200 ms at 21k requests a second, measured). The
/// clock is paused: it moves only once every task waits, so a reading before
/// it moved was not the tick's.
#[tokio::test(start_paused = true)]
async fn a_running_actor_reads_a_backlog_of_notes_before_its_tick() {
    let Harness { actor, notes, events, commands: _commands, _dir, .. } = harness(1, Policy::default());
    let (_msgs_tx, msgs) = unbounded_channel();
    let running = tokio::spawn(actor.run(msgs, events));
    tokio::time::sleep(Duration::from_millis(1)).await; // its first tick is behind it
    let write = |n: usize| {
        for i in 0..n {
            let at = Instant::now();
            notes.send(match i % 2 {
                0 => Note::Started { slot: 0, queued: Duration::ZERO, info: None, at },
                _ => Note::Ended { slot: 0, status: 200, duration: Duration::ZERO, access: None, at },
            });
        }
    };
    async fn unread_after_others_ran(notes: &NoteSender) -> usize {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        notes.len()
    }
    let before = TokioInstant::now();
    write(notes::NOTES_PER_READING - 2);
    assert_eq!(unread_after_others_ran(&notes).await, notes::NOTES_PER_READING - 2, "read without a backlog");
    write(2);
    assert_eq!(unread_after_others_ran(&notes).await, 0, "a backlog waited for the tick");
    assert_eq!(TokioInstant::now(), before, "the clock moved: the tick read them");
    write(2);
    tokio::time::sleep(super::REPAIR_INTERVAL).await;
    assert_eq!(unread_after_others_ran(&notes).await, 0, "the tick still reads what waits");
    running.abort();
}

#[tokio::test]
async fn max_requests_stays_exact_when_workers_skip_the_actor() {
    let mut h = harness(1, Policy { max_requests: 3, ..Policy::default() });
    let worker = h.start_request().await;
    h.child_found(0, 77);
    let worker = h.end_request_express(worker).expect_err("lent before its child was known: through the actor");
    h.end_request(worker);
    let worker = h.start_request().await;
    h.end_request_express(worker).expect("request 2 of 3: nothing to decide");
    assert_eq!((h.actor.counters.busy, h.actor.slots[0].requests, h.balancer.idle()), (0, 2, 1));
    let worker = h.start_request().await;
    let worker = h.end_request_express(worker).expect_err("request 3 of 3: the actor decides");
    h.end_request(worker);
    assert_eq!(kills(&h.commands()), vec![77], "replaced after its third request");
    assert_eq!((h.actor.counters.accepted, h.actor.slots[0].requests), (3, 0));
}

#[tokio::test]
async fn a_stop_or_a_measured_pool_sends_every_worker_through_the_actor() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    h.child_found(0, 77);
    h.end_request(worker);
    for _ in 0..3 {
        let worker = h.start_request().await;
        h.end_request_express(worker).expect("no limit: nothing to decide");
    }
    assert_eq!((h.actor.counters.accepted, h.actor.slots[0].requests), (4, 4));
    h.actor.handle(PoolMsg::Stop);
    h.actor.replace_and_lend();
    let worker = h.start_request().await;
    h.end_request_express(worker).expect_err("stopping: the actor decides");

    let mut h = harness(1, Policy { max_memory: Some(32 << 20), ..Policy::default() });
    let worker = h.start_request().await;
    h.child_found(0, 77);
    h.end_request(worker);
    h.sampled().await;
    let worker = h.start_request().await;
    h.end_request_express(worker).expect_err("pm_max_memory: measured after each request");
}

/// A status-page pool's worker takes the express way once its child is
/// known, the front end sampling the child's usage with the pid granted with
/// the budget: the slot shows what an end through the actor shows (requests,
/// state, duration, last request cpu and memory), each end sampled once.
#[tokio::test]
async fn a_status_page_pool_goes_the_express_way_with_the_same_figures() {
    let duration = Duration::from_millis(10);
    let mut figures = Vec::new();
    for express in [false, true] {
        // A process of the test's own stands in for the child: no other test
        // samples it (the sampler's CPU table is shared), so its first sample
        // has no CPU figure and its second one has.
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let mut h = harness(1, Policy::default());
        h.actor.sample_usage = true;
        let worker = h.start_request().await;
        h.child_found(0, pid);
        let worker = h.end_request_express_after(worker, duration).expect_err("lent before its child was known");
        h.end_request_after(worker, duration);
        h.sampled().await;
        let worker = h.start_request().await;
        if express {
            let granted = h.end_request_express_after(worker, duration).expect("nothing to decide: express");
            assert_eq!(granted, pid, "the budget was granted for the slot's child");
        } else {
            h.end_request_after(worker, duration);
        }
        h.sampled().await;
        // Each end was sampled once: a marker queued now is the next answer.
        let reply = h.actor.events_tx.clone();
        assert!(usage::request(usage::Sample { pid, slot: 9, duration, reply, awaited: false }));
        let next = tokio::time::timeout(Duration::from_secs(10), h.events.recv()).await;
        assert!(matches!(next, Ok(Some(PoolEvent::Usage { slot: 9, .. }))), "express: {express}: {next:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        let (snapshot, busy) = (h.actor.snapshot(), h.actor.counters.busy);
        let s = &snapshot.slots[0];
        let (cpu, memory) = (s.last_cpu.is_some(), s.last_memory.is_some_and(|m| m > 0));
        figures.push((snapshot.accepted, snapshot.max_active, busy, s.state, s.requests, s.last_duration, cpu, memory));
    }
    assert_eq!(figures[0], (2, 1, 0, SlotState::Idle, 2, duration, true, true), "through the actor");
    assert_eq!(figures[1], figures[0], "the express way");
}

#[tokio::test]
async fn max_memory_holds_the_worker_until_the_sampler_measured_the_child() {
    let mut h = harness(1, Policy { max_memory: Some(32 << 20), ..Policy::default() });
    let sampled = |h: &mut Harness, memory: u64| {
        let usage = PoolEvent::Usage { slot: 0, pid: 77, cpu: None, memory: Some(memory) };
        h.actor.on_event(usage);
        h.actor.replace_and_lend();
    };
    let worker = h.start_request().await;
    h.child_found(0, 77);
    h.end_request(worker);
    assert_eq!(h.balancer.idle(), 0, "lent again only once the child's memory is known");
    sampled(&mut h, 1 << 20);
    assert_eq!((h.balancer.idle(), kills(&h.commands())), (1, vec![]), "under the limit: kept");
    let worker = h.start_request().await;
    h.end_request(worker);
    assert_eq!(h.balancer.idle(), 0);
    sampled(&mut h, 64 << 20);
    assert_eq!(kills(&h.commands()), vec![77], "over the limit: killed before the worker is lent again");
    assert_eq!((h.balancer.idle(), replaced(&h, Reason::Memory)), (1, 1));
}

#[tokio::test]
async fn an_abandoned_request_holds_its_worker_until_the_child_lets_go() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    h.child_found(0, 77);
    let inode = worker.inode();
    h.abandon(worker, AbandonCause::ClientGone, None);
    h.actor.replace_and_lend();
    assert_eq!((h.actor.counters.busy, h.balancer.idle()), (1, 0), "still busy, not lent");
    assert_eq!(peer_checks(&h.commands()), 1);

    h.report(Report::PeerChecked { slot: 0, inode, open: true });
    h.actor.check_held();
    assert_eq!(peer_checks(&h.commands()), 1, "asked again");
    assert_eq!((h.actor.counters.busy, h.balancer.idle()), (1, 0));

    h.report(Report::PeerChecked { slot: 0, inode, open: false });
    h.actor.replace_and_lend();
    assert_eq!((h.actor.counters.busy, h.balancer.idle()), (0, 1), "released once the child closed");
    assert!(kills(&h.commands()).is_empty(), "nothing killed without a deadline");
}

/// A look-up finds the connection of an abandoned request held by no child:
/// that is its child's death (and a job holding the connection) only if a
/// child no slot knew has exited since the connection was made.
#[tokio::test]
async fn a_connection_held_by_no_child_is_its_childs_end_only_after_an_unknown_exit() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    let inode = worker.inode();
    h.abandon(worker, AbandonCause::ClientGone, None);
    h.report(Report::ChildGone { slot: 0, inode });
    h.actor.replace_and_lend();
    assert_eq!((h.actor.counters.busy, h.balancer.idle()), (1, 0), "no exit: the child is just not known");

    h.report(Report::ChildExited { pid: pid(77), status: ExitKind::Signal(Signal::SIGKILL) });
    h.report(Report::ChildGone { slot: 0, inode });
    h.actor.replace_and_lend();
    assert_eq!((h.actor.counters.busy, h.balancer.idle()), (0, 1), "released: its child died");
}

#[tokio::test]
async fn an_abandoned_request_past_its_deadline_kills_that_child() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    h.child_found(0, 77);
    h.abandon(worker, AbandonCause::ClientGone, Some(Instant::now() + Duration::from_secs(3600)));
    h.actor.check_held();
    assert!(kills(&h.commands()).is_empty());

    let held = h.actor.slots[0].held.as_mut().unwrap();
    held.request.deadline = Some(Instant::now());
    h.actor.check_held();
    assert_eq!(kills(&h.commands()), vec![77]);
    h.actor.check_held();
    assert!(kills(&h.commands()).is_empty(), "killed once");
    assert_eq!(h.actor.counters.busy, 1, "busy until the child has let go");
}

#[tokio::test]
async fn a_timed_out_request_with_an_unknown_child_is_looked_up_then_killed() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    // The Connected look-up came back empty: the child is not known.
    let inode = h.actor.slots[0].inode;
    h.report(Report::ChildFound { slot: 0, inode, pid: None, pidfd: None, started: None });
    h.commands();
    h.abandon(worker, AbandonCause::TimedOut, Some(Instant::now()));
    let commands = h.commands();
    assert!(kills(&commands).is_empty());
    assert!(commands.iter().any(|c| matches!(c, Command::FindChild { slot: 0, .. })), "looked up again");

    h.child_found(0, 78);
    h.actor.check_held();
    assert_eq!(kills(&h.commands()), vec![78]);
}

#[tokio::test]
async fn a_retired_pool_stops_its_children_once_the_last_request_ends() {
    let mut h = harness(2, Policy::default());
    let worker = h.start_request().await;
    h.actor.handle(PoolMsg::Retire { limit: None });
    assert!(group_signals(&h.commands()).is_empty(), "a request still runs");
    h.end_request(worker);
    assert_eq!(group_signals(&h.commands()), vec![Signal::SIGTERM]);
}

#[tokio::test]
async fn a_detached_actor_waits_for_the_parent_whose_start_was_on_its_way() {
    let mut h = harness(1, Policy::default());
    h.report(Report::ParentExited { pid: Pid::from_raw(PARENT), status: ExitKind::Code(0) });
    h.actor.spawn_parent();
    h.actor.detach();
    assert!(!h.actor.detach_done(), "a spawn is on its way");
    h.report(Report::ParentStarted { pid: Pid::from_raw(PARENT + 1) });
    assert_eq!(group_signals(&h.commands()), vec![Signal::SIGTERM], "stopped as soon as it started");
    assert!(!h.actor.detach_done());
    let status = ExitKind::Signal(Signal::SIGTERM);
    h.report(Report::ParentExited { pid: Pid::from_raw(PARENT + 1), status });
    assert!(h.actor.detach_done());
}

// A child's replacement after it crashed or exited.

#[tokio::test]
async fn a_crashed_child_is_counted_and_its_slot_looks_up_the_next_one() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    h.child_found(0, 77);
    h.commands();
    h.crash_request(worker);
    assert_eq!(replaced(&h, Reason::Crash), 1);
    assert_eq!((h.actor.slots[0].pid, h.actor.slots[0].requests), (None, 0), "the dead child is forgotten");
    assert_eq!(h.actor.crashes.waiting(), 1, "its log line waits for the exit status");
    h.report(Report::ChildExited { pid: pid(77), status: ExitKind::Signal(Signal::SIGSEGV) });
    assert_eq!(h.actor.crashes.waiting(), 0, "logged with it");
    assert!(kills(&h.commands()).is_empty(), "a dead child is not killed again");

    assert_eq!(h.balancer.idle(), 1, "the worker is lent again");
    let worker = h.start_request().await;
    assert_eq!(look_ups(&h.commands()), vec![0], "its new connection's child is looked up");
    h.child_found(0, 78);
    h.end_request(worker);
    assert_eq!((h.actor.slots[0].pid, h.actor.slots[0].requests), (Some(pid(78)), 1));
}

#[tokio::test]
async fn a_crash_whose_exit_came_first_is_logged_at_once() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    h.child_found(0, 77);
    h.report(Report::ChildExited { pid: pid(77), status: ExitKind::Code(255) });
    assert_eq!(h.actor.slots[0].pid, Some(pid(77)), "a busy slot keeps its child until the front end reports");
    h.crash_request(worker);
    assert_eq!(h.actor.crashes.waiting(), 0);
    assert_eq!(replaced(&h, Reason::Crash), 1);
}

#[tokio::test]
async fn an_idle_childs_exit_frees_its_slot() {
    let mut h = harness(2, Policy::default());
    let worker = h.start_request().await;
    h.child_found(worker.slot(), 77);
    h.end_request(worker);
    h.report(Report::ChildExited { pid: pid(77), status: ExitKind::Code(0) });
    assert!(h.actor.slots.iter().all(|s| s.pid.is_none()));
    assert_eq!(replaced(&h, Reason::Crash), 0, "an exit between requests is no crash");
    assert!(kills(&h.commands()).is_empty());
}

#[tokio::test]
async fn one_wake_up_handles_the_events_queued_behind_the_first_up_to_a_bound() {
    let mut h = harness(2, Policy::default());
    for pid in [77, 78] {
        let worker = h.start_request().await;
        h.child_found(worker.slot(), pid);
        h.end_request(worker);
    }
    let (events, mut inbox) = unbounded_channel();
    let (_msgs, mut mailbox) = unbounded_channel();
    let exit = |raw| PoolEvent::Supervisor(Report::ChildExited { pid: pid(raw), status: ExitKind::Code(0) });
    events.send(exit(78)).unwrap();
    h.actor.on_events(exit(77), &mut inbox, &mut mailbox);
    assert!(h.actor.slots.iter().all(|s| s.pid.is_none()), "both exits handled on one wake-up");

    for raw in 0..super::EVENTS_PER_WAKE_UP as i32 + 5 {
        events.send(exit(1000 + raw)).unwrap();
    }
    let first = inbox.try_recv().unwrap();
    h.actor.on_events(first, &mut inbox, &mut mailbox);
    assert_eq!(inbox.len(), 5, "the events beyond the bound wait for the next wake-up");
}

#[tokio::test]
async fn a_child_whose_slot_let_its_connection_go_shows_what_it_served() {
    let mut h = harness(2, Policy::default());
    let slot = h.serve(3, 77).await;
    let uri = "/last.php".to_string();
    h.actor.slots[slot].info = Some(Box::new(RequestInfo { uri: uri.clone(), ..RequestInfo::default() }));
    h.actor.slots[slot].last_duration = Duration::from_millis(7);
    // An aborted request's connection is dropped (`take_back` with the connection gone):
    // the slot names its child no more until a new connection meets it.
    h.actor.unbind(slot);
    // Shown in either slot (`fill_unbound`): each child with what it served.
    for children in [vec![77, 78], vec![78, 77]] {
        h.actor.child_list.read(PARENT, children);
        let snapshot = h.actor.snapshot();
        let shown = |pid| {
            let s = snapshot.slots.iter().find(|s| s.pid == Some(pid)).unwrap();
            (s.requests, s.info.as_ref().map(|i| i.uri.clone()), s.last_duration)
        };
        let what_77_served = (3, Some(uri.clone()), Duration::from_millis(7));
        assert_eq!(shown(77), what_77_served, "the status page shows what child 77 served: {:?}", snapshot.slots);
        assert_eq!(shown(78), (0, None, Duration::ZERO), "a child that served nothing shows nothing");
    }
}

// Recycling.

#[tokio::test]
async fn max_memory_replaces_a_child_past_the_limit() {
    let mut h = harness(1, Policy { max_memory: Some(1), ..Policy::default() });
    // The test process stands in for the child: its private memory is real.
    let me = std::process::id() as i32;
    let worker = h.start_request().await;
    h.child_found(0, me);
    h.end_request(worker);
    assert!(kills(&h.commands()).is_empty(), "its memory is read first, on the sampler's thread");
    h.sampled().await;
    assert_eq!(kills(&h.commands()), vec![me], "killed (by the fake supervisor: only recorded)");
    assert_eq!(replaced(&h, Reason::Memory), 1);
    assert_eq!(h.actor.epochs[0].load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn max_memory_keeps_a_child_within_the_limit() {
    let mut h = harness(1, Policy { max_memory: Some(u64::MAX), ..Policy::default() });
    let worker = h.start_request().await;
    h.child_found(0, std::process::id() as i32);
    h.end_request(worker);
    h.sampled().await;
    assert!(kills(&h.commands()).is_empty());
    assert_eq!(replaced(&h, Reason::Memory), 0);
    assert_eq!(h.balancer.idle(), 1, "measured: the worker is lent again");
}

#[tokio::test]
async fn max_requests_counts_on_when_another_connection_meets_the_child() {
    let mut h = harness(1, Policy { max_requests: 3, ..Policy::default() });
    h.serve(2, 77).await;
    // The connection closes (nginx went away between requests, say): child 77
    // accepts a new one, and its two requests count on.
    let mut worker = h.start_request().await;
    worker.discard();
    h.actor.handle(ended(worker, Instant::now()));
    h.actor.replace_and_lend();
    assert!(kills(&h.commands()).is_empty(), "request 3 ended on a connection whose child is unknown");
    let worker = h.start_request().await;
    h.child_found(0, 77);
    assert_eq!(h.actor.slots[0].requests, 3);
    h.end_request(worker);
    assert_eq!(kills(&h.commands()), vec![77], "its 4th request is over the limit");
}

/// A request on a new connection ends with that connection closed (the
/// script left part of a POST body unread, say) before the supervisor has
/// answered which child accepted it. The late answer names child 77, whose
/// requests on an earlier connection are carried: they are kept for the next
/// connection that meets it, not dropped with an answer for a connection gone.
#[tokio::test]
async fn a_late_answer_for_a_closed_connection_keeps_the_childs_carried_count() {
    let mut h = harness(1, Policy { max_requests: 4, ..Policy::default() });
    h.serve(2, 77).await;
    let mut worker = h.start_request().await;
    worker.discard();
    h.end_request(worker);
    let mut worker = h.start_request().await;
    let inode = h.actor.slots[0].inode;
    worker.discard();
    h.end_request(worker);
    h.report(Report::ChildFound { slot: 0, inode, pid: Some(pid(77)), pidfd: None, started: None });
    let worker = h.start_request().await;
    h.child_found(0, 77);
    assert_eq!(h.actor.slots[0].requests, 3, "what child 77 served on its first connection");
    h.end_request(worker);
    assert_eq!(kills(&h.commands()), vec![77], "its 4th request counted reaches pm_max_requests");
}

/// A worker drops its connection by itself (`Worker::ensure_connected`: its
/// child closed it while idle) and the child that accepts the new one is the
/// same: what it served counts on.
#[tokio::test]
async fn max_requests_counts_on_when_a_worker_reconnects_to_the_same_child() {
    let mut h = harness(1, Policy { max_requests: 3, ..Policy::default() });
    h.serve(2, 77).await;
    let (mut worker, _) = h.balancer.acquire().await.unwrap();
    worker.discard();
    h.balancer.release(worker);
    let worker = h.start_request().await;
    h.child_found(0, 77);
    assert_eq!(h.actor.slots[0].requests, 2, "what child 77 served before");
    h.end_request(worker);
    assert_eq!(kills(&h.commands()), vec![77], "its third request reaches pm_max_requests");
}

/// A worker reconnects by itself and another slot's new connection meets its
/// old child before the actor has read that the first slot reconnected: the
/// child's count goes with it, and the first slot no longer names it (its
/// idle replacement would kill the child under the other slot's request).
#[tokio::test]
async fn max_requests_counts_on_when_another_slot_meets_the_child_of_a_worker_that_reconnected() {
    let mut h = harness(2, Policy { max_requests: 2, ..Policy::default() });
    let first = h.serve(1, 77).await;
    let (mut a, mut b) = (h.lend().await, h.lend().await);
    if a.slot() != first {
        std::mem::swap(&mut a, &mut b);
    }
    let other = b.slot();
    // Child 77 closed slot `first`'s connection; it accepts slot `other`'s, and
    // `first` reconnects to child 78. `other` is told first.
    a.discard();
    a.ensure_connected(&h.socket).await.unwrap();
    h.connected(&mut b);
    h.child_found(other, 77);
    assert_eq!(h.actor.slots[first].pid, None, "child 77 serves slot {other} now");
    h.connected(&mut a);
    h.child_found(first, 78);
    h.end_request(b);
    assert_eq!(kills(&h.commands()), vec![77], "its second request reaches pm_max_requests");
    h.end_request(a);
    assert_eq!(kills(&h.commands()), Vec::<i32>::new(), "child 78 served one request");
    assert_eq!((h.actor.slots[first].pid, h.actor.slots[first].requests), (Some(pid(78)), 1));
}

#[tokio::test]
async fn a_used_idle_child_beyond_the_spare_count_is_replaced_on_the_tick() {
    let mut h = harness(2, Policy { max_spare: Some(0), ..Policy::default() });
    let busy = h.start_request().await;
    let idle = h.start_request().await;
    h.child_found(busy.slot(), 77);
    h.child_found(idle.slot(), 78);
    h.end_request(idle);
    h.actor.tick();
    assert_eq!(kills(&h.commands()), vec![78], "the busy child is never killed");
    assert_eq!(replaced(&h, Reason::Idle), 1);
}

// Abandoned requests and request_terminate_timeout.

#[tokio::test]
async fn a_timed_out_request_kills_its_child_at_once_and_holds_the_worker_until_it_let_go() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    h.child_found(0, 77);
    let inode = worker.inode();
    // The front end's word is enough: the actor kills whatever the deadline says.
    h.abandon(worker, AbandonCause::TimedOut, None);
    assert_eq!(kills(&h.commands()), vec![77]);
    assert_eq!(replaced(&h, Reason::Timeout), 1);
    h.actor.replace_and_lend();
    assert_eq!((h.actor.counters.busy, h.balancer.idle()), (1, 0), "held");
    h.report(Report::PeerChecked { slot: 0, inode, open: false });
    h.actor.replace_and_lend();
    assert_eq!((h.actor.counters.busy, h.balancer.idle()), (0, 1));
    assert_eq!(h.actor.epochs[0].load(std::sync::atomic::Ordering::Relaxed), 1, "the worker reconnects");
}

#[tokio::test]
async fn a_peer_check_of_an_older_connection_is_ignored() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    let inode = worker.inode();
    h.abandon(worker, AbandonCause::ClientGone, None);
    h.report(Report::PeerChecked { slot: 0, inode: inode.wrapping_add(1), open: false });
    h.actor.replace_and_lend();
    assert_eq!((h.actor.counters.busy, h.balancer.idle()), (1, 0));
}

/// A look-up that waited for a child to accept an abandoned connection may
/// answer after the slot connected anew: the new connection is looked up
/// then, and the late answer names no child of the slot.
#[tokio::test]
async fn a_late_answer_for_an_older_connection_looks_up_the_current_one() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    let old = worker.inode();
    assert_eq!(look_ups(&h.commands()), vec![0]);
    h.abandon(worker, AbandonCause::ClientGone, None);
    h.report(Report::PeerChecked { slot: 0, inode: old, open: false });
    h.actor.replace_and_lend();
    let worker = h.start_request().await;
    assert_ne!(worker.inode(), old);
    assert_eq!(look_ups(&h.commands()), Vec::<usize>::new(), "one look-up at a time");
    h.report(Report::ChildFound { slot: 0, inode: old, pid: Some(pid(4242)), pidfd: None, started: None });
    assert_eq!(look_ups(&h.commands()), vec![0], "the current connection is looked up");
    assert_eq!(h.actor.slots[0].pid, None, "the late answer binds no child");
    h.child_found(0, 4343);
    assert_eq!(h.actor.slots[0].pid, Some(pid(4343)));
    h.end_request(worker);
}

// Retirement of a generation, stop, and the end of a pool.

#[tokio::test(start_paused = true)]
async fn a_retired_pool_kills_its_children_when_its_limit_passes() {
    let mut h = harness(1, Policy::default());
    let _worker = h.start_request().await;
    h.actor.handle(PoolMsg::Retire { limit: Some(Duration::from_secs(10)) });
    assert_eq!(h.actor.stopping.kill_at(), Some(TokioInstant::now() + Duration::from_secs(10)));
    assert!(group_signals(&h.commands()).is_empty());
    h.actor.kill_deadline_passed();
    assert_eq!(group_signals(&h.commands()), vec![Signal::SIGKILL]);
    assert_eq!(h.actor.stopping.kill_at(), None);
}

#[tokio::test]
async fn an_idle_retired_pool_stops_its_children_at_once_and_never_restarts_them() {
    let mut h = harness(2, Policy::default());
    h.actor.handle(PoolMsg::Retire { limit: None });
    assert_eq!(group_signals(&h.commands()), vec![Signal::SIGTERM]);
    assert!(h.actor.slots.iter().all(|s| s.state == SlotState::Exiting));
    h.report(Report::ParentExited { pid: pid(PARENT), status: ExitKind::Signal(Signal::SIGTERM) });
    assert_eq!(h.actor.parent.start_at(), None, "no restart");
    assert_eq!(h.actor.snapshot().parent_pid, None);
}

#[tokio::test]
async fn a_stopped_pool_lets_its_requests_end_but_starts_no_parent() {
    let mut h = harness(2, Policy::default());
    let worker = h.start_request().await;
    h.actor.handle(PoolMsg::Stop);
    let slot = worker.slot();
    assert_eq!(h.actor.slots[slot].state, SlotState::Busy, "a running request runs on");
    assert!(group_signals(&h.commands()).is_empty(), "stop signals nothing: the supervisor's shutdown does");
    h.end_request(worker);
    assert_eq!(h.actor.slots[slot].state, SlotState::Exiting);
    h.report(Report::ParentExited { pid: pid(PARENT), status: ExitKind::Code(0) });
    h.actor.spawn_parent();
    assert_eq!((h.actor.parent.start_at(), spawns(&h.commands())), (None, 0));
}

// Counters.

#[tokio::test]
async fn counters_keep_the_peak_and_the_longest_queue_wait() {
    let mut h = harness(3, Policy::default());
    let waits = [Duration::ZERO, Duration::from_millis(30), Duration::from_millis(5)];
    for (slot, queued) in waits.into_iter().enumerate() {
        h.actor.note(Note::Started { slot, queued, info: None, at: Instant::now() });
    }
    for slot in 0..2 {
        let worker = Worker::new(slot, h.actor.epochs.clone());
        h.actor.handle(ended(worker, Instant::now()));
    }
    h.actor.note(Note::Started { slot: 0, queued: Duration::ZERO, info: None, at: Instant::now() });
    let snapshot = h.actor.snapshot();
    assert_eq!(h.actor.counters.busy, 2);
    assert_eq!((snapshot.accepted, snapshot.max_active), (4, 3));
    assert_eq!(snapshot.max_queue_wait, Duration::from_millis(30));
}

#[tokio::test]
async fn a_queued_request_gets_the_worker_the_actor_returns() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    let balancer = h.balancer.clone();
    let queued = tokio::spawn(async move { balancer.acquire().await.map(|(w, _)| w.slot()) });
    while h.balancer.waiting() == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(h.balancer.max_children_reached(), 1, "max children reached, once");
    h.end_request(worker);
    assert_eq!(queued.await.unwrap(), Ok(0));
    assert_eq!(h.balancer.waiting(), 0);
}

// The php-cgi parent: restarts, backoff, loops.

#[tokio::test(start_paused = true)]
async fn a_parent_that_ran_a_while_is_restarted_at_once_and_its_children_forgotten() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    h.child_found(0, 77);
    h.end_request(worker);
    h.actor.parent.backdate(Duration::from_secs(60));
    h.report(Report::ParentExited { pid: pid(PARENT), status: ExitKind::Signal(Signal::SIGKILL) });
    assert_eq!((h.actor.slots[0].pid, h.actor.slots[0].inode), (None, 0));
    assert_eq!(h.actor.parent.start_at(), Some(TokioInstant::now()));
    h.actor.spawn_parent();
    assert_eq!(spawns(&h.commands()), 1);
}

#[tokio::test(start_paused = true)]
async fn parents_exiting_right_after_start_restart_with_doubling_delays() {
    let mut h = harness(1, Policy::default());
    for (n, delay) in [1, 2, 4].into_iter().enumerate() {
        let parent = pid(PARENT + n as i32);
        h.report(Report::ParentExited { pid: parent, status: ExitKind::Code(1) });
        assert_eq!(h.actor.parent.start_at(), Some(TokioInstant::now() + Duration::from_secs(delay)), "exit {n}");
        h.actor.spawn_parent();
        h.report(Report::ParentStarted { pid: pid(PARENT + n as i32 + 1) });
    }
    h.actor.parent.backdate(Duration::from_secs(60));
    h.report(Report::ParentExited { pid: pid(PARENT + 3), status: ExitKind::Code(1) });
    assert_eq!(h.actor.parent.start_at(), Some(TokioInstant::now()), "a long run resets the backoff");
}

#[tokio::test(start_paused = true)]
async fn a_failed_spawn_is_tried_again_with_backoff() {
    let mut h = harness(1, Policy::default());
    h.report(Report::ParentExited { pid: pid(PARENT), status: ExitKind::Code(0) });
    h.actor.spawn_parent();
    h.commands();
    h.report(Report::SpawnFailed { error: "cannot start /bin/false: denied".into() });
    let delay = Duration::from_secs(2);
    assert_eq!(h.actor.parent.start_at(), Some(TokioInstant::now() + delay), "the second fast failure in a row");
}

#[tokio::test(start_paused = true)]
async fn children_exiting_in_a_loop_kill_the_parent_once_and_delay_its_restart() {
    let mut h = harness(1, Policy::default());
    let limit = crate::pool::crash::crash_loop_limit(1);
    for n in 0..=limit as i32 {
        h.report(Report::ChildExited { pid: pid(100 + n), status: ExitKind::Code(0) });
    }
    assert_eq!(group_signals(&h.commands()), vec![Signal::SIGKILL]);
    h.report(Report::ChildExited { pid: pid(99), status: ExitKind::Code(0) });
    assert!(group_signals(&h.commands()).is_empty(), "killed once");
    h.actor.parent.backdate(Duration::from_secs(60));
    h.report(Report::ParentExited { pid: pid(PARENT), status: ExitKind::Signal(Signal::SIGKILL) });
    let delay = Duration::from_secs(1);
    assert_eq!(h.actor.parent.start_at(), Some(TokioInstant::now() + delay), "killed for the loop: a fast exit");
}

/// Children the actor replaces die of its own SIGKILL (here pm_max_requests = 1:
/// one per request): however many in a second, they are no crash loop, for
/// which the whole pool would be killed, and every request running on
/// another child answered 502.
#[tokio::test]
async fn children_the_actor_replaces_are_no_crash_loop() {
    let mut h = harness(2, Policy { max_requests: 1, ..Policy::default() });
    let limit = crate::pool::crash::crash_loop_limit(2) as i32;
    let mut signals = Vec::new();
    for child in 100..=100 + limit {
        h.serve(1, child).await;
        h.report(Report::ChildExited { pid: pid(child), status: ExitKind::Signal(Signal::SIGKILL) });
        let commands = h.commands();
        assert_eq!(kills(&commands), vec![child]);
        signals.extend(group_signals(&commands));
    }
    assert_eq!(signals, Vec::<Signal>::new(), "the pool was killed for its own replacements");
}

/// Under load the exits of the children the actor killed are reported late,
/// in a batch after many more kills (seen: 8 children, pm_max_requests = 1,
/// 32 clients on a busy host, an exit 31 kills late). They are still its own
/// kills: no crash loop, and no warning.
#[tokio::test]
async fn late_exits_of_children_the_actor_replaced_are_no_crash_loop() {
    let mut h = harness(2, Policy { max_requests: 1, ..Policy::default() });
    let children = 100..100 + 2 * crate::pool::crash::crash_loop_limit(2) as i32;
    for child in children.clone() {
        h.serve(1, child).await;
    }
    assert_eq!(kills(&h.commands()), children.clone().collect::<Vec<_>>());
    for child in children {
        h.report(Report::ChildExited { pid: pid(child), status: ExitKind::Signal(Signal::SIGKILL) });
    }
    assert_eq!(group_signals(&h.commands()), Vec::<Signal>::new(), "the pool was killed for its own replacements");
}

#[tokio::test]
async fn segfaults_past_the_emergency_threshold_restart_the_parent() {
    let emergency = Some((2, Duration::from_secs(60)));
    let mut h = harness(4, Policy { emergency, ..Policy::default() });
    h.report(Report::ChildExited { pid: pid(101), status: ExitKind::Signal(Signal::SIGSEGV) });
    h.report(Report::ChildExited { pid: pid(102), status: ExitKind::Code(255) });
    assert!(group_signals(&h.commands()).is_empty(), "one segfault, one ordinary exit");
    h.report(Report::ChildExited { pid: pid(103), status: ExitKind::Signal(Signal::SIGBUS) });
    assert_eq!(group_signals(&h.commands()), vec![Signal::SIGKILL]);
}

// Status page snapshots.

#[tokio::test]
async fn a_snapshot_waits_for_the_look_up_of_a_new_connections_child() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    let (respond_to, mut answer) = tokio::sync::oneshot::channel();
    h.actor.handle(PoolMsg::Snapshot { respond_to });
    assert!(answer.try_recv().is_err(), "the pid is being looked up");
    h.child_found(0, 77);
    assert!(answer.try_recv().is_err(), "the parent's children are being read");
    h.report(Report::Children { parent: pid(PARENT), pids: vec![77] });
    assert_eq!(answer.try_recv().unwrap().slots[0].pid, Some(77));
    h.end_request(worker);
}

#[tokio::test]
async fn a_snapshot_shows_the_children_the_supervisor_read_in_the_slots_without_one() {
    let mut h = harness(3, Policy::default());
    let (respond_to, mut answer) = tokio::sync::oneshot::channel();
    h.actor.handle(PoolMsg::Snapshot { respond_to });
    let asked: Vec<i32> = h
        .commands()
        .iter()
        .filter_map(|c| if let Command::ListChildren { parent, .. } = c { Some(parent.as_raw()) } else { None })
        .collect();
    assert_eq!(asked, vec![PARENT], "the actor asks the supervisor, never reads /proc itself");
    assert!(answer.try_recv().is_err(), "answered only once the children are read");
    h.report(Report::Children { parent: pid(PARENT), pids: vec![41, 42] });
    let snapshot = answer.try_recv().unwrap();
    let pids: Vec<Option<i32>> = snapshot.slots.iter().map(|s| s.pid).collect();
    assert_eq!(pids, vec![Some(41), Some(42), None]);
    assert_eq!(snapshot.forked, 2, "two of three children forked: the pool does not answer yet");
}

#[tokio::test]
async fn a_child_marked_for_replacement_is_killed_only_once_its_request_ended() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    h.child_found(0, 77);
    h.actor.slots[0].replace = Some(Reason::Lifetime);
    h.actor.replace_and_lend();
    assert!(kills(&h.commands()).is_empty(), "never mid-request");
    h.end_request(worker);
    assert_eq!(kills(&h.commands()), vec![77]);
    assert_eq!(replaced(&h, Reason::Lifetime), 1);
}

#[tokio::test(start_paused = true)]
async fn a_detached_pool_stops_its_running_parent_and_kills_it_after_the_grace() {
    let mut h = harness(1, Policy::default());
    h.actor.detach();
    assert_eq!(group_signals(&h.commands()), vec![Signal::SIGTERM]);
    assert_eq!(h.actor.stopping.kill_at(), Some(TokioInstant::now() + super::stopping::DETACHED_STOP_GRACE));
    assert!(!h.actor.detach_done(), "its parent runs");
    h.actor.kill_deadline_passed();
    assert_eq!(group_signals(&h.commands()), vec![Signal::SIGKILL]);
    h.report(Report::ParentExited { pid: pid(PARENT), status: ExitKind::Signal(Signal::SIGKILL) });
    assert!(h.actor.detach_done());
    assert_eq!(spawns(&h.commands()), 0);
}

/// Once the child of an abandoned request has let go of the connection, it may
/// accept another slot's: the slot names it no more.
#[tokio::test]
async fn a_child_that_let_go_of_an_abandoned_connection_is_no_longer_the_slots() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    let inode = worker.inode();
    h.child_found(0, 4242);
    h.abandon(worker, AbandonCause::ClientGone, None);
    h.report(Report::PeerChecked { slot: 0, inode, open: false });
    assert_eq!(h.actor.slots[0].pid, None, "slot 0 still names the child that let go");
}

/// A request takes the idle worker from the balancer (its start only a note,
/// not read yet) just before the tick that finds the slot idle past its
/// limit: the actor must not kill the child under the request (502) nor move
/// the worker to a new connection; once the request has ended and the slot is
/// due again, the child is replaced.
#[tokio::test]
async fn an_idle_child_is_not_replaced_under_a_request_whose_start_is_not_read_yet() {
    let mut h = harness(1, Policy { idle_timeout: Some(Duration::ZERO), ..Policy::default() });
    let worker = h.start_request().await;
    h.child_found(0, 77);
    h.end_request(worker);
    assert_eq!(h.balancer.idle(), 1);
    let (worker, queued) = h.balancer.acquire().await.unwrap();
    h.actor.tick();
    assert_eq!(kills(&h.commands()), Vec::<i32>::new(), "child 77 killed under the request that took its worker");
    assert_eq!(h.actor.epochs[0].load(std::sync::atomic::Ordering::Relaxed), 0, "the worker keeps its connection");
    assert_eq!((h.balancer.idle(), h.actor.returning.len()), (0, 0), "the request keeps its worker");
    h.actor.note(Note::Started { slot: 0, queued, info: None, at: Instant::now() });
    h.end_request_express(worker).expect("nothing decided for slot 0: it was not idle");
    h.actor.read_notes();
    h.actor.tick();
    assert_eq!(kills(&h.commands()), vec![77], "idle again past the timeout: replaced");
    assert_eq!(replaced(&h, Reason::Idle), 1);
    assert_eq!(h.actor.epochs[0].load(std::sync::atomic::Ordering::Relaxed), 1, "the worker connects anew");
    assert_eq!(h.balancer.idle(), 1, "and is lent again, one permit for one worker");
    let (worker, _) = h.balancer.acquire().await.unwrap();
    assert_eq!(worker.slot(), 0);
}

/// A child's start time on the status page is when it was forked (as php-fpm's), which
/// the supervisor reads from /proc when it finds the child, not when it was found.
#[tokio::test]
async fn a_childs_start_is_when_it_was_forked() {
    let mut h = harness(1, Policy::default());
    let worker = h.start_request().await;
    let inode = h.actor.slots[0].inode;
    let forked = Instant::now() - Duration::from_secs(3600);
    h.report(Report::ChildFound { slot: 0, inode, pid: Some(pid(77)), pidfd: None, started: Some(forked) });
    assert_eq!(h.actor.slots[0].child_since, Some(forked));
    h.end_request(worker);
}
