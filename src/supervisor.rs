//! The supervisor: one long-lived thread that starts php-cgi pool parents,
//! signals their process groups, reaps every exit, and finds which child holds
//! a connection. While rustfpm serves, it is the only code that forks: pool
//! parents, and the short php-cgi runs a pool asks (`php-cgi -i` for its
//! settings, [`Supervisor::query`]). It forks from a thread that lives as long
//! as rustfpm, so the children's parent-death signal is sound. (Before it
//! starts, `main` forks the guard it then owns, and daemonizes; `rustfpm -i`,
//! `ping` and `top` are client commands with no supervisor.)
//!
//! Pools talk to it with [`Command`]s and hear back through a [`Reporter`]
//! each pool gives it, which puts [`Report`]s into that pool's own inbox (the
//! supervisor knows none of the pool's types).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::spawn::{spawn_parent, spawn_query, ChildSpec, Query};
use crate::sys::pidfd::PidFd;
use crate::sys::proc_events::ProcEvents;
use crate::sys::{guard::Guard, procfs, sockdiag};

/// How often, and how far apart, the child of a new connection is looked for.
const FIND_CHILD_TRIES: u32 = 40;
const FIND_CHILD_PAUSE: Duration = Duration::from_millis(5);

/// What the supervisor reports to a pool about its processes.
#[derive(Debug)]
pub enum Report {
    /// The php-cgi parent is running.
    ParentStarted { pid: Pid },
    /// The php-cgi parent could not be started.
    SpawnFailed { error: String },
    /// The php-cgi parent exited; `status` says how.
    ParentExited { pid: Pid, status: ExitKind },
    /// The child holding the worker connection `inode` of `slot` is `pid`.
    /// `pidfd` names that process for as long as the handle lives; `started`
    /// is when it was forked (its /proc start time), if /proc says.
    ChildFound { slot: usize, inode: u32, pid: Option<Pid>, pidfd: Option<Arc<PidFd>>, started: Option<Instant> },
    /// A process accepted the worker connection `inode` of `slot`, but no
    /// child of the parent holds it: the child that accepted it died, and a
    /// process its script started holds it open.
    ChildGone { slot: usize, inode: u32 },
    /// Whether the child at the other end of `slot`'s abandoned connection
    /// `inode` still holds it open.
    PeerChecked { slot: usize, inode: u32, open: bool },
    /// A child of the pool's php-cgi parent exited (needs process events).
    ChildExited { pid: Pid, status: ExitKind },
    /// The children `parent` has forked, as /proc lists them now.
    Children { parent: Pid, pids: Vec<i32> },
}

/// Where the supervisor sends one pool's [`Report`]s: a function the pool
/// gives, which puts them into its own inbox (dropping them once it is gone).
#[derive(Clone)]
pub struct Reporter(Arc<dyn Fn(Report) + Send + Sync>);

impl Reporter {
    /// A reporter that hands each report to `deliver`.
    pub fn new(deliver: impl Fn(Report) + Send + Sync + 'static) -> Reporter {
        Reporter(Arc::new(deliver))
    }

    fn send(&self, report: Report) {
        (self.0)(report)
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporter")
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// exit(code)
    Code(i32),
    /// killed by a signal
    Signal(Signal),
}

impl ExitKind {
    /// Decodes a raw wait status.
    pub fn from_wait_status(status: i32) -> ExitKind {
        match Signal::try_from(status & 0x7f) {
            Ok(sig) if status & 0x7f != 0 => ExitKind::Signal(sig),
            _ => ExitKind::Code((status >> 8) & 0xff),
        }
    }
}

impl std::fmt::Display for ExitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitKind::Code(c) => write!(f, "exited with code {c}"),
            ExitKind::Signal(s) => write!(f, "exited on signal {} ({})", *s as i32, s.as_str()),
        }
    }
}

/// Requests to the supervisor thread.
#[derive(Debug)]
pub enum Command {
    /// Start a pool parent; reports go to `events`.
    Spawn { spec: Arc<ChildSpec>, events: Reporter },
    /// Send `signal` to the process group of a pool parent.
    SignalGroup { pgid: Pid, signal: Signal },
    /// Find the child of `parent` holding the peer of our socket `inode`.
    FindChild { parent: Pid, slot: usize, inode: u32, events: Reporter },
    /// SIGKILL one php-cgi child: through its pidfd when there is one (a
    /// recycled pid is then never signalled), else by pid.
    KillChild { pid: Pid, pidfd: Option<Arc<PidFd>> },
    /// Tell whether the peer of our socket `inode` still has it open and,
    /// when the child that accepted it is known, whether that child does.
    CheckPeer { slot: usize, inode: u32, child: Option<Pid>, events: Reporter },
    /// Read from /proc which children `parent` has forked (for a pool's
    /// snapshot: the pool actor never reads /proc on the runtime thread).
    ListChildren { parent: Pid, events: Reporter },
    /// Start `query` and tell `respond_to` its pid, then what it printed.
    Query { query: Query, respond_to: Sender<QueryAnswer> },
    /// Kill the query `pid`, unless it was reaped already (its answer came too late).
    EndQuery { pid: Pid },
    /// Reap exited processes (sent on SIGCHLD).
    Reap,
    /// Kill all remaining groups (TERM, then KILL after `grace`; KILL at once
    /// when `grace` is zero), reap them, then return.
    Shutdown { grace: Duration },
}

/// Why a [`Supervisor::query`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// It could not be started, or its output read.
    #[error("{0}: {1}")]
    Failed(String, String),
    /// It printed nothing complete within the limit, and was killed.
    #[error("{0} did not answer within {1:?}; killed")]
    TimedOut(String, Duration),
}

/// What the supervisor tells the asker of a [`Command::Query`].
#[derive(Debug)]
pub enum QueryAnswer {
    /// The query runs as `pid`.
    Started(Pid),
    /// What it printed on stdout, once it closed it.
    Printed(std::io::Result<Vec<u8>>),
    /// It could not be started.
    Failed(String),
}

/// Handle to the supervisor thread.
#[derive(Debug, Clone)]
pub struct Supervisor {
    tx: Sender<Command>,
    /// Set when Shutdown is sent: queued child look-ups are skipped, so a
    /// backlog of them (a kill storm) cannot delay the stop.
    stopping: Arc<AtomicBool>,
    /// A fake for tests: kills are sent as commands, not carried out.
    fake: bool,
}

impl Supervisor {
    /// Starts the supervisor thread, which owns the guard, and the
    /// process-events thread where the kernel allows it.
    pub fn start(guard: Guard) -> (Supervisor, thread::JoinHandle<()>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let exits = start_exit_watch();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let handle = thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || State::new(guard, exits).run(rx, &stop))
            .expect("spawn supervisor thread");
        (Supervisor { tx, stopping, fake: false }, handle)
    }

    /// A supervisor with no thread behind it, for tests: what is sent to it
    /// comes out of the receiver.
    #[cfg(test)]
    pub fn fake() -> (Supervisor, Receiver<Command>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Supervisor { tx, stopping: Arc::new(AtomicBool::new(false)), fake: true }, rx)
    }

    /// SIGKILLs one php-cgi child at once, on the caller's thread (one
    /// non-blocking system call), so that it is dead before its worker is
    /// lent again: through its pidfd, else by pid. A fake records the kill as
    /// [`Command::KillChild`].
    pub fn kill_child(&self, pid: Pid, pidfd: Option<Arc<PidFd>>) {
        if self.fake {
            return self.send(Command::KillChild { pid, pidfd });
        }
        kill_child(pid, pidfd.as_deref());
    }

    /// Runs `query` (the supervisor starts and reaps it) and waits at most
    /// `limit` for what it prints; a query that takes longer is killed.
    /// Blocking: for a thread that may wait (a reload's `spawn_blocking`
    /// thread; at start-up, the runtime thread before anything is served).
    pub fn query(&self, query: Query, limit: Duration) -> Result<Vec<u8>, QueryError> {
        let (respond_to, answers) = crossbeam_channel::bounded(2);
        let program = query.program.display().to_string();
        self.send(Command::Query { query, respond_to });
        let deadline = Instant::now() + limit;
        let mut started = None;
        loop {
            match answers.recv_deadline(deadline) {
                Ok(QueryAnswer::Started(pid)) => started = Some(pid),
                Ok(QueryAnswer::Printed(out)) => return out.map_err(|e| QueryError::Failed(program, e.to_string())),
                Ok(QueryAnswer::Failed(error)) => return Err(QueryError::Failed(program, error)),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(pid) = started {
                        self.send(Command::EndQuery { pid });
                    }
                    return Err(QueryError::TimedOut(program, limit));
                }
                Err(RecvTimeoutError::Disconnected) => return Err(QueryError::Failed(program, "no supervisor".into())),
            }
        }
    }

    /// Sends a command; never blocks (the channel is unbounded).
    pub fn send(&self, cmd: Command) {
        if matches!(cmd, Command::Shutdown { .. }) {
            self.stopping.store(true, Ordering::Relaxed);
        }
        let _ = self.tx.send(cmd);
    }
}

type Registration = (Pid, Reporter);

struct State {
    guard: Guard,
    parents: HashMap<Pid, (String, Reporter)>,
    /// The private ini files of parents that may not have read theirs yet
    /// (`private_ini::empty`): emptied and dropped once a child of theirs is found.
    inis: HashMap<Pid, OwnedFd>,
    /// Queries started and not reaped yet: their pid cannot name another process.
    queries: HashSet<Pid>,
    exits: Option<Sender<Registration>>,
    /// Child look-ups waiting for a child to accept their connection: tried
    /// again from the loop, so that other commands (a CheckPeer above all)
    /// are never held up behind one.
    lookups: Vec<Lookup>,
}

/// A [`Command::FindChild`] still looking.
struct Lookup {
    parent: Pid,
    slot: usize,
    inode: u32,
    events: Reporter,
    tries: u32,
    due: Instant,
}

impl State {
    fn new(guard: Guard, exits: Option<Sender<Registration>>) -> State {
        State {
            guard,
            parents: HashMap::new(),
            inis: HashMap::new(),
            queries: HashSet::new(),
            exits,
            lookups: Vec::new(),
        }
    }

    fn run(mut self, rx: Receiver<Command>, stopping: &AtomicBool) {
        loop {
            // Before each command too: a steady stream of commands (CheckPeer
            // every few ms) would otherwise never let a due look-up time out.
            self.retry_lookups(stopping.load(Ordering::Relaxed));
            let next = match self.lookups.iter().map(|l| l.due).min() {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(due) => rx.recv_deadline(due),
            };
            let cmd = match next {
                Ok(cmd) => cmd,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            match cmd {
                Command::FindChild { .. } if stopping.load(Ordering::Relaxed) => {}
                Command::Spawn { spec, events } => self.spawn(&spec, events),
                Command::SignalGroup { pgid, signal } => signal_group(pgid, signal),
                Command::KillChild { pid, pidfd } => kill_child(pid, pidfd.as_deref()),
                Command::FindChild { parent, slot, inode, events } => {
                    self.look_up(Lookup { parent, slot, inode, events, tries: 0, due: Instant::now() })
                }
                Command::CheckPeer { slot, inode, child, events } => {
                    let open = peer_open(inode, child);
                    events.send(Report::PeerChecked { slot, inode, open });
                }
                Command::ListChildren { parent, events } => {
                    events.send(Report::Children { parent, pids: procfs::children(parent.as_raw()) })
                }
                Command::Query { query, respond_to } => self.query(&query, respond_to),
                Command::EndQuery { pid } => {
                    if self.queries.contains(&pid) {
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                }
                Command::Reap => self.reap(),
                Command::Shutdown { grace } => return self.shutdown(&rx, grace),
            }
        }
        self.shutdown(&rx, Duration::from_secs(1));
    }

    /// Looks for the child holding `lookup`'s connection once; reports it,
    /// or, while no child holds the connection, tries again
    /// `FIND_CHILD_PAUSE` later (up to `FIND_CHILD_TRIES` times).
    fn look_up(&mut self, mut lookup: Lookup) {
        let found = find_child(lookup.parent, lookup.inode);
        if !matches!(found, Holder::Child(..)) && lookup.tries < FIND_CHILD_TRIES {
            lookup.tries += 1;
            lookup.due = Instant::now() + FIND_CHILD_PAUSE;
            return self.lookups.push(lookup);
        }
        let Lookup { parent, slot, inode, events, .. } = lookup;
        if let (Holder::Child(..), Some(ini)) = (&found, self.inis.remove(&parent)) {
            crate::sys::private_ini::empty(&ini);
        }
        events.send(match found {
            Holder::Child(pid, pidfd) => {
                let started = procfs::age(pid.as_raw()).and_then(|age| Instant::now().checked_sub(age));
                Report::ChildFound { slot, inode, pid: Some(pid), pidfd, started }
            }
            Holder::NotKnown => Report::ChildFound { slot, inode, pid: None, pidfd: None, started: None },
            Holder::Other => Report::ChildGone { slot, inode },
        });
    }

    /// Tries the look-ups that are due again (drops them all once stopping).
    fn retry_lookups(&mut self, stopping: bool) {
        let now = Instant::now();
        if !stopping && self.lookups.iter().all(|l| l.due > now) {
            return;
        }
        let (due, waiting): (Vec<Lookup>, Vec<Lookup>) =
            std::mem::take(&mut self.lookups).into_iter().partition(|l| l.due <= now && !stopping);
        self.lookups = if stopping { Vec::new() } else { waiting };
        for lookup in due {
            self.look_up(lookup);
        }
    }

    /// Starts `query`; a thread of its own reads what it prints, so the
    /// supervisor never waits for it. Its exit is reaped with the others.
    fn query(&mut self, query: &Query, respond_to: Sender<QueryAnswer>) {
        let program = query.program.display().to_string();
        let mut child = match spawn_query(query) {
            Ok(child) => child,
            Err(e) => {
                let _ = respond_to.send(QueryAnswer::Failed(format!("cannot start it: {e}")));
                return;
            }
        };
        let pid = Pid::from_raw(child.id() as i32);
        self.queries.insert(pid);
        let _ = respond_to.send(QueryAnswer::Started(pid));
        let Some(mut stdout) = child.stdout.take() else { return };
        let read = move || {
            let mut out = Vec::new();
            let printed = stdout.read_to_end(&mut out).map(|_| out);
            let _ = respond_to.send(QueryAnswer::Printed(printed));
        };
        if let Err(e) = thread::Builder::new().name("query-output".into()).spawn(read) {
            crate::error!("cannot read what {program} prints: {e}; killed");
            let _ = kill(pid, Signal::SIGKILL);
        }
    }

    fn spawn(&mut self, spec: &ChildSpec, events: Reporter) {
        match spawn_parent(spec) {
            Ok((pid, ini)) => {
                if let Some(ini) = ini {
                    self.inis.insert(pid, ini);
                }
                self.guard.watch_group(pid);
                if let Some(exits) = &self.exits {
                    let _ = exits.send((pid, events.clone()));
                }
                self.parents.insert(pid, (spec.pool.clone(), events.clone()));
                events.send(Report::ParentStarted { pid });
            }
            Err(e) => {
                let error = format!("cannot start {}: {e}", spec.program.display());
                events.send(Report::SpawnFailed { error });
            }
        }
    }

    /// Drains `waitpid(-1, WNOHANG)`: pool parents are reported, orphaned
    /// grandchildren (we are their subreaper) are simply reaped.
    fn reap(&mut self) {
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitKind::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitKind::Signal(sig)),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            self.queries.remove(&pid);
            if pid == self.guard.pid() {
                crate::alert!("the guard process {pid} {status}; children may outlive a crash of rustfpm");
                continue;
            }
            self.inis.remove(&pid);
            if let Some((_, events)) = self.parents.remove(&pid) {
                // The group may still hold children: they must not outlive their parent.
                // The group only: the parent is reaped, and its pid, no longer a group's
                // once the group is empty, may already be another process's.
                let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
                self.guard.forget_group(pid);
                events.send(Report::ParentExited { pid, status });
            }
        }
    }

    fn shutdown(mut self, rx: &Receiver<Command>, grace: Duration) {
        if !grace.is_zero() {
            for pid in self.parents.keys() {
                signal_group(*pid, Signal::SIGTERM);
            }
        }
        let deadline = std::time::Instant::now() + grace;
        while !self.parents.is_empty() && std::time::Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(_) | Err(RecvTimeoutError::Timeout) => self.reap(),
                Err(RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(20)),
            }
        }
        for pid in self.parents.keys() {
            signal_group(*pid, Signal::SIGKILL);
        }
        // The guard kills what is left of the groups and exits.
        self.guard.close();
        reap_everything();
    }
}

/// Starts the thread that reports exits of php-cgi children to their pools.
/// Pools are registered by their parent's pid through the returned channel.
fn start_exit_watch() -> Option<Sender<Registration>> {
    let events = match ProcEvents::open() {
        Ok(events) => events,
        Err(e) => {
            // Expected when not root (the connector needs CAP_NET_ADMIN): no news to log then.
            let message =
                format!("exit statuses of php-cgi children will not be logged: process events unavailable ({e})");
            match e.raw_os_error() {
                Some(libc::EPERM) => crate::debug!("{message}"),
                _ => crate::notice!("{message}"),
            }
            return None;
        }
    };
    if let Some(e) = &events.unfiltered {
        crate::debug!("process events: the kernel refused their filter ({e}); every event is read");
    }
    let (tx, rx) = crossbeam_channel::unbounded::<Registration>();
    let spawned = thread::Builder::new().name("proc-events".into()).spawn(move || {
        let mut parents: HashMap<i32, Reporter> = HashMap::new();
        while let Ok(exit) = events.next_exit() {
            parents.extend(rx.try_iter().map(|(pid, tx)| (pid.as_raw(), tx)));
            parents.remove(&exit.pid);
            if let Some(pool) = parents.get(&exit.parent) {
                let status = ExitKind::from_wait_status(exit.wait_status);
                pool.send(Report::ChildExited { pid: Pid::from_raw(exit.pid), status });
            }
        }
    });
    spawned.ok().map(|_| tx)
}

/// Kills and reaps every remaining child of rustfpm, including processes a
/// script moved out of its group, which re-parented to us as subreaper.
fn reap_everything() {
    let me = std::process::id() as i32;
    for _ in 0..250 {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(_) => return, // ECHILD: nothing left
            }
        }
        for pid in procfs::children(me) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        thread::sleep(Duration::from_millis(20));
    }
    crate::alert!("some child processes could not be reaped");
}

fn kill_child(pid: Pid, pidfd: Option<&PidFd>) {
    let _ = match pidfd {
        Some(fd) => fd.signal(Signal::SIGKILL).map_err(|_| ()),
        None => kill(pid, Signal::SIGKILL).map_err(|_| ()),
    };
}

fn signal_group(pgid: Pid, signal: Signal) {
    let _ = kill(Pid::from_raw(-pgid.as_raw()), signal);
    let _ = kill(pgid, signal);
}

/// Whether the peer of our socket `inode` may still run what we sent it.
///
/// A connection still in the children's accept queue has no peer inode, like
/// a closed one, but its request will run: what it was sent is still there,
/// unread. A peer that is open need not be the child's any more: a process
/// the script started (`exec('job &')`) inherits the connection and keeps it
/// open after the child closed it or died; so when the `child` that accepted
/// it is known, the connection is open only while that child holds it (or
/// while /proc cannot show the child's descriptors). An error (no netlink)
/// counts as closed: the worker then reconnects and waits in the children's
/// accept queue.
fn peer_open(inode: u32, child: Option<Pid>) -> bool {
    let Ok(peer) = sockdiag::unix_peer(inode) else { return false };
    match (peer.inode, child) {
        (Some(theirs), Some(child)) => procfs::socket_held(child.as_raw(), theirs).unwrap_or(true),
        _ => peer.holds(),
    }
}

/// Who holds the other end of one of our connections to a pool's children.
enum Holder {
    /// This child of the parent, named by this pidfd when there is one.
    Child(Pid, Option<Arc<PidFd>>),
    /// Not known: no process has accepted the connection yet (it waits in
    /// the children's accept queue), or sock_diag or /proc cannot tell.
    NotKnown,
    /// A process that is not one of the parent's children: /proc showed
    /// every child's descriptors, and none has the connection.
    Other,
}

/// Finds the child holding the peer of our socket `inode`, and a pidfd for
/// it, opened while it still holds the socket (so the pidfd names that very
/// process).
fn find_child(parent: Pid, inode: u32) -> Holder {
    let Some(peer) = sockdiag::unix_peer_inode(inode).ok().flatten() else { return Holder::NotKnown };
    let pid = match procfs::child_holding_socket(parent.as_raw(), peer) {
        Ok(Some(pid)) => pid,
        Ok(None) => return Holder::Other,
        Err(_) => return Holder::NotKnown,
    };
    // A kernel without pidfds: the pid alone.
    let pidfd = PidFd::open(pid).ok();
    if pidfd.is_some() {
        match procfs::socket_held(pid, peer) {
            Ok(true) => {}
            Ok(false) => return Holder::Other,
            Err(_) => return Holder::NotKnown,
        }
    }
    Holder::Child(Pid::from_raw(pid), pidfd.map(Arc::new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::os::unix::process::CommandExt;

    fn inode_of(s: &UnixStream) -> u32 {
        sockdiag::socket_inode(s).unwrap()
    }

    /// A connection waits for a child, is held by a child of the parent, or
    /// by another process (the child that accepted it died, a job holds it).
    #[test]
    fn find_child_tells_who_holds_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("s")).unwrap();
        let conn = UnixStream::connect(dir.path().join("s")).unwrap();
        // `sh` with one child, `sleep`, which holds none of our sockets.
        let parent = Sleeper::start("sleep 30 & wait");
        assert!(wait_until(|| !procfs::children(parent.pid().as_raw()).is_empty()), "sh started no child");
        assert!(matches!(find_child(parent.pid(), inode_of(&conn)), Holder::NotKnown));
        let (_accepted, _) = listener.accept().unwrap();
        assert!(matches!(find_child(parent.pid(), inode_of(&conn)), Holder::Other));
        // A parent without children tells nothing.
        let childless = Sleeper::start("exec sleep 30");
        assert!(matches!(find_child(childless.pid(), inode_of(&conn)), Holder::NotKnown));
        // This process holds it, and is a child of its parent.
        let me = Pid::from_raw(std::process::id() as i32);
        assert!(matches!(find_child(nix::unistd::getppid(), inode_of(&conn)), Holder::Child(pid, _) if pid == me));
    }

    /// A shell running `script`, killed with its children when dropped.
    struct Sleeper(std::process::Child);

    impl Sleeper {
        fn start(script: &str) -> Sleeper {
            let mut command = std::process::Command::new("sh");
            command.args(["-c", script]).process_group(0);
            Sleeper(command.spawn().unwrap())
        }

        fn pid(&self) -> Pid {
            Pid::from_raw(self.0.id() as i32)
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            signal_group(self.pid(), Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }

    /// Polls `done` for up to 10 s.
    fn wait_until(mut done: impl FnMut() -> bool) -> bool {
        (0..1000).any(|_| {
            done() || {
                thread::sleep(Duration::from_millis(10));
                false
            }
        })
    }

    /// A peer socket that another process holds open counts as open only
    /// while the child that accepted it (here: this process) holds it too.
    #[test]
    fn an_open_peer_is_the_childs_only_while_the_child_holds_it() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let me = Pid::from_raw(std::process::id() as i32);
        let other = Sleeper::start("exec sleep 30");
        assert!(peer_open(inode_of(&ours), None));
        assert!(peer_open(inode_of(&ours), Some(me)));
        assert!(!peer_open(inode_of(&ours), Some(other.pid())), "the child no longer holds it");
    }

    /// A connection no child has accepted yet is looked up again later from
    /// the loop: the look-up returns at once, so a CheckPeer queued behind it
    /// is answered without waiting for it (a burst of aborted requests used
    /// to stall a pool for seconds, one look-up after another).
    #[test]
    fn a_pending_look_up_does_not_hold_the_thread() {
        let dir = std::env::temp_dir().join(format!("rustfpm-lookup-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let _listener = UnixListener::bind(&dir).unwrap();
        let conn = UnixStream::connect(&dir).unwrap();
        let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let events = Reporter::new(move |r| drop(tx.send(r)));
        let mut state = State::new(Guard::inert(), None);
        let parent = Pid::from_raw(std::process::id() as i32);
        let inode = inode_of(&conn);
        state.look_up(Lookup { parent, slot: 3, inode, events, tries: 0, due: Instant::now() });
        assert!(heard.try_recv().is_err(), "nothing is reported while no child has accepted");
        assert_eq!(state.lookups.len(), 1);
        // Due or not, every retry counts; once they are used up, the pool hears "not found".
        for _ in 0..=FIND_CHILD_TRIES {
            for l in &mut state.lookups {
                l.due = Instant::now();
            }
            state.retry_lookups(false);
        }
        match heard.try_recv() {
            Ok(Report::ChildFound { slot: 3, inode: i, pid: None, .. }) => assert_eq!(i, inode),
            other => panic!("expected ChildFound without a pid, got {other:?}"),
        }
        assert!(state.lookups.is_empty());
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn stopping_drops_pending_look_ups() {
        let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let events = Reporter::new(move |r| drop(tx.send(r)));
        let mut state = State::new(Guard::inert(), None);
        let parent = Pid::from_raw(std::process::id() as i32);
        state.lookups.push(Lookup { parent, slot: 0, inode: 1, events, tries: 1, due: Instant::now() });
        state.retry_lookups(true);
        assert!(state.lookups.is_empty());
        assert!(heard.try_recv().is_err());
    }
}
