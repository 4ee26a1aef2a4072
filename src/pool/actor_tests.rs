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

use super::{ActorSetup, PoolActor};
use crate::accesslog::PoolLogs;
use crate::pool::recycle::Policy;
use crate::pool::PoolEvent;
use crate::pool::{AbandonCause, Abandoned, Balancer, ChildSocket, PoolMsg, SlotState, Worker};
use crate::spawn::{ChildSpec, Output};
use crate::supervisor::{Command, ExitKind, Report, Supervisor};

const PARENT: i32 = 4000;

struct Harness {
    actor: PoolActor,
    commands: Receiver<Command>,
    balancer: Arc<Balancer>,
    socket: Arc<ChildSocket>,
    _events: UnboundedReceiver<PoolEvent>,
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
    });
    let mut h = Harness { actor, commands, balancer, socket, _events: events, _dir: dir };
    h.report(Report::ParentStarted { pid: Pid::from_raw(PARENT) });
    h
}

impl Harness {
    /// Lends a worker, connected, as the front end does for a request.
    async fn start_request(&mut self) -> Worker {
        let (mut worker, queued) = self.balancer.acquire().await.unwrap();
        worker.ensure_connected(&self.socket).await.unwrap();
        self.actor.handle(PoolMsg::RequestStarted { slot: worker.slot(), queued, info: None });
        if worker.is_fresh() {
            worker.mark_used();
            self.actor.handle(PoolMsg::Connected { slot: worker.slot(), inode: worker.inode() });
        }
        worker
    }

    fn finish_request(&mut self, worker: Worker) {
        let slot = worker.slot();
        let msg = PoolMsg::RequestFinished { slot, status: 200, duration: Duration::ZERO, worker, access: None };
        self.actor.handle(msg);
        self.actor.replace_and_lend();
    }

    /// The supervisor tells the actor which child serves `slot`.
    fn child_found(&mut self, slot: usize, pid: i32) {
        let inode = self.actor.slots[slot].inode;
        self.report(Report::ChildFound { slot, inode, pid: Some(Pid::from_raw(pid)), pidfd: None });
    }

    fn abandon(&mut self, mut worker: Worker, cause: AbandonCause, deadline: Option<Instant>) {
        worker.abandon();
        let (script, uri) = ("/srv/spin.php".into(), "/spin.php".into());
        let started = Instant::now();
        let request = Abandoned { worker, cause, status: 499, started, deadline, script, uri, access: None };
        self.actor.handle(PoolMsg::Abandoned(Box::new(request)));
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

fn peer_checks(commands: &[Command]) -> usize {
    commands.iter().filter(|c| matches!(c, Command::CheckPeer { .. })).count()
}

#[tokio::test]
async fn a_finished_request_counts_and_returns_its_worker() {
    let mut h = harness(2, Policy::default());
    let worker = h.start_request().await;
    let slot = worker.slot();
    assert_eq!((h.actor.counters.busy, h.actor.slots[slot].state), (1, SlotState::Busy));
    assert_eq!(h.balancer.idle(), 1);
    h.finish_request(worker);
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
        h.finish_request(worker);
        let kills = kills(&h.commands());
        assert_eq!(kills, if n == 2 { vec![77] } else { vec![] }, "after request {n}");
    }
    assert_eq!(h.actor.slots[0].pid, None);
    assert_eq!(h.actor.epochs[0].load(std::sync::atomic::Ordering::Relaxed), 1, "the worker reconnects");
    assert_eq!(h.balancer.idle(), 1);
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
    h.report(Report::ChildFound { slot: 0, inode, pid: None, pidfd: None });
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
    h.finish_request(worker);
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
