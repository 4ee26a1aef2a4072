//! The server's lifecycle: Starting → Ready → (Reloading) → Draining → Stopped.
//! Binds every pool's listener, starts the pools, turns signals into intents,
//! reloads the configuration on SIGUSR2 without failing a request, and shuts
//! down by deciding, telling everyone, and waiting with a deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::config::{self, Config, SchedPolicy};
use crate::exporter::Sampler;
use crate::frontend::{self, Listener, PoolListeners};
use crate::notify::Notifier;
use crate::pool::{Health, Pool};
use crate::signals::{Intent, Signals};
use crate::supervisor::{Command, Supervisor};
use crate::sys::daemon::Readiness;
use crate::sys::guard::Guard;

/// How long php-cgi gets between SIGTERM and SIGKILL when stopping
/// gracefully (past `process_control_timeout`). A fast stop (SIGTERM, SIGINT)
/// kills php-cgi at once, as php-fpm's children die at once on its SIGTERM:
/// php-cgi would run each idle child's module shutdown first, and a busy one's
/// script on (with hundreds of children, seconds on a loaded machine).
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long a fast stop waits for connection tasks to notice.
pub(crate) const FAST_STOP_WAIT: Duration = Duration::from_secs(2);
/// The pid file's mode (php-fpm's).
pub const PID_FILE_MODE: u32 = 0o644;
/// The longest the end of a stop may take once it is decided (after a graceful
/// stop's drain): past it, rustfpm exits anyway, and the guard kills what is
/// left of the children. Nothing the stop waits for can then hold it up.
pub(crate) const STOP_DEADLINE: Duration = Duration::from_secs(4);

/// Run-time options from the command line.
#[derive(Debug, Default)]
pub struct Options {
    /// `-R`: allow pools to run as root.
    pub allow_root: bool,
    /// Where the configuration comes from, for reloads.
    pub source: Option<config::Source>,
    /// When daemonized: tells the original process that start-up is done.
    pub ready: Option<Readiness>,
}

/// Binds all listeners of `config` (before the runtime starts, so that errors
/// are reported before anything is spawned).
pub fn bind_all(config: &Config) -> anyhow::Result<Vec<PoolListeners>> {
    let none = HashMap::new();
    let listeners = config.pools.iter().map(|p| frontend::bind(p, &none).map_err(anyhow::Error::from)).collect();
    // Its clients would wait for ever (systemd keeps it listening): a mistake in the
    // .socket unit or the config, said at start rather than found by them.
    if let Some(socket) = crate::sys::systemd::activated().iter().find(|s| !s.is_used()) {
        anyhow::bail!(
            "systemd passed a socket (name '{}') that no pool's listen matches by name or address; \
             name it after its pool (FileDescriptorName=) or give the pool its address",
            socket.name
        );
    }
    listeners
}

/// Runs rustfpm until it is told to stop. Returns the process exit code.
pub fn run(config: Config, listeners: Vec<PoolListeners>, guard: Guard, opts: Options) -> anyhow::Result<i32> {
    // First: the metrics exporter's thread inherits it too.
    set_sched_policy(config.global.process_sched_policy);
    if let Some(addr) = config.global.metrics_listen {
        crate::metrics::install(addr)?;
        crate::notice!("serving Prometheus metrics on http://{addr}/metrics");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the runtime")?;
    let threads = config.global.threads();
    let front_ends = FrontEnds::start(runtime.handle().clone(), threads)?;
    let (supervisor, thread) = Supervisor::start(guard);
    let mut started = false;
    let result = runtime.block_on(async {
        let mut server = Server::start(config, listeners, supervisor.clone(), front_ends.handles.clone(), opts).await?;
        started = true;
        server.serve().await
    });
    front_ends.stop();
    supervisor.send(Command::Shutdown { grace: STOP_GRACE });
    // The pools' files and sockets are removed (their actors dropped) while
    // the supervisor reaps php-cgi, not after: with many pools both take a
    // while on a loaded machine.
    drop(runtime);
    let _ = thread.join();
    crate::accesslog::writer::flush(crate::accesslog::LOG_FLUSH_WAIT);
    // A start that failed is said by the caller, as php-fpm says it: no farewell first.
    if started {
        crate::notice!("exiting, bye-bye!");
    }
    result
}

/// Puts this thread, and so every thread it starts later (the metrics exporter's, the front
/// end's, the supervisor's, the log writer's), under `asked`, or unset under
/// [`SchedPolicy::default_from`] the one it was started under. A policy the kernel refuses is
/// a warning: rustfpm runs on under the one it has.
fn set_sched_policy(asked: Option<SchedPolicy>) {
    let started_under = crate::spawn::thread_sched_policy();
    let Some(policy) = asked.or_else(|| SchedPolicy::default_from(started_under)) else {
        crate::notice!(
            "process_sched_policy is not set: rustfpm keeps the policy it was started under ({}), and so do the \
             children of pools that do not set it",
            SchedPolicy::name_of(started_under)
        );
        return;
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler only reads `param`; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, policy.to_libc(), &param) } == -1 {
        let error = std::io::Error::last_os_error();
        crate::warning!("cannot run under [global] process_sched_policy = \"{}\": {error}", policy.name());
    }
}

/// The front end's threads: the main runtime (which also runs the pools' actors and
/// the signals) and `front_end_threads - 1` more, each a current-thread runtime with
/// its own reactor. Each pool's listener is registered with [`listener_share`] of them,
/// in turn (the first with the main runtime), which accept on it and serve what they
/// accepted; the pools and their balancers are shared. As few runtimes per listener as
/// leave none idle: every runtime polling a listener wakes for each of its connections
/// and all but one find the queue empty, and the requests of a thread other than the
/// actor's wake the actor's thread twice each (docs/performance.md has the figures).
struct FrontEnds {
    /// Every front-end runtime, the main one first.
    handles: Vec<tokio::runtime::Handle>,
    /// The extra threads, and what tells each to end.
    threads: Vec<(std::thread::JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
}

impl FrontEnds {
    fn start(main: tokio::runtime::Handle, count: usize) -> anyhow::Result<FrontEnds> {
        let mut front_ends = FrontEnds { handles: vec![main], threads: Vec::new() };
        for n in 1..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start a front-end runtime")?;
            front_ends.handles.push(runtime.handle().clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("front-end-{n}"))
                .spawn(move || {
                    let _ = runtime.block_on(stopped);
                    // Connections still open past the stop's deadline are dropped.
                    runtime.shutdown_background();
                })
                .context("start a front-end thread")?;
            front_ends.threads.push((thread, stop));
        }
        Ok(front_ends)
    }

    /// Ends the extra threads (once the server has stopped: its drain waited for
    /// their connections).
    fn stop(self) {
        for (thread, stop) in self.threads {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// The running pools and the listeners that feed them.
struct Server {
    config: Config,
    opts: Options,
    supervisor: Supervisor,
    signals: Signals,
    /// Each listener's current pool; replacing it moves new requests to a
    /// new generation, dropping it ends the listener's accept loop.
    routes: HashMap<String, watch::Sender<Arc<Pool>>>,
    /// Each listener's file descriptor, for php-fpm's reload notices.
    listen_fds: HashMap<String, i32>,
    /// The `pm_status_listen` listeners, by address: a reload that changes a pool's
    /// `listen` but not its `pm_status_listen` carries the listener over (binding it
    /// again would find the address in use).
    status_listeners: HashMap<String, StatusListener>,
    pools: Vec<Arc<Pool>>,
    shutdown_tx: watch::Sender<bool>,
    done_tx: Option<mpsc::Sender<()>>,
    done_rx: mpsc::Receiver<()>,
    /// Connections the open-file limit leaves room for, shared by every listener.
    budget: (Arc<Semaphore>, usize),
    /// Asks waiting connections of every listener to close when the budget is used up.
    budget_pressure: frontend::shed::Pressure,
    /// systemd's `READY=1`, `STATUS=`, `RELOADING=1`, `STOPPING=1`, watchdog.
    notifier: Option<Notifier>,
    /// Refreshes the sampled metrics (with `metrics_listen`).
    sampler: Option<Sampler>,
    /// A SIGUSR2 came while a reload waited for its pools.
    reload_again: bool,
    /// The pid file a reload wrote (the one written at start is its writer's to remove).
    pid_file: Option<(std::path::PathBuf, crate::sys::safe_fs::FileId)>,
    /// The front-end runtimes ([`FrontEnds`]).
    front_ends: Vec<tokio::runtime::Handle>,
    /// Listeners registered so far: the next one goes to runtime `opened % front_ends.len()`.
    opened: usize,
    /// How many runtimes accept on each pool's listener ([`listener_share`]).
    share: usize,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((path, id)) = self.pid_file.take() {
            let _ = crate::sys::safe_fs::remove_if_same(&path, id);
        }
    }
}

impl Server {
    async fn start(
        config: Config,
        listeners: Vec<PoolListeners>,
        supervisor: Supervisor,
        front_ends: Vec<tokio::runtime::Handle>,
        mut opts: Options,
    ) -> anyhow::Result<Self> {
        let ready = opts.ready.take();
        let signals = Signals::install(config.global.graceful_stop_on_term).context("install signal handlers")?;
        let (shutdown_tx, _) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel::<()>(1);
        let budget = connection_budget(&config.pools);
        let mut server = Server {
            config,
            opts,
            supervisor,
            signals,
            routes: HashMap::new(),
            listen_fds: HashMap::new(),
            status_listeners: HashMap::new(),
            pools: Vec::new(),
            shutdown_tx,
            done_tx: Some(done_tx),
            done_rx,
            budget,
            budget_pressure: Default::default(),
            notifier: None,
            sampler: None,
            reload_again: false,
            pid_file: None,
            opened: frontend::first_runtime(front_ends.len()),
            share: 1,
            front_ends,
        };
        server.share = listener_share(server.front_ends.len(), server.config.pools.len());
        // As php-fpm (fpm_stdio_init_final), once the configuration is in force and before any
        // child starts: from here on, lines go only to the error log (a child's start, a note
        // on a setting); a start that fails still says why on stderr.
        crate::log::set_launched(true);
        let failed = |_: &anyhow::Error| crate::log::set_launched(false);
        let pools = start_pools_off_runtime(&server.config, &server.supervisor, server.opts.allow_root)
            .await
            .inspect_err(failed)?;
        for ((cfg, pool), listener) in server.config.pools.clone().iter().zip(pools).zip(listeners) {
            server.open_route(cfg, pool, listener).inspect_err(failed)?;
        }
        running_notices();
        server.notifier = Some(Notifier::start(&server.pools, server.config.global.systemd_interval));
        server.sampler = server.config.global.metrics_listen.map(|_| Sampler::start(&server.pools));
        if let Some(Err(e)) = ready.map(Readiness::notify) {
            // The caller gave up waiting; the daemon serves on regardless, as php-fpm's does.
            crate::warning!("cannot tell the calling process that the daemon is ready: {e}");
        }
        Ok(server)
    }

    /// Starts accepting on a pool's listeners; both follow the same route,
    /// so a reload moves them to the new generation together.
    fn open_route(&mut self, cfg: &config::Pool, pool: Arc<Pool>, listeners: PoolListeners) -> anyhow::Result<()> {
        let (tx, rx) = watch::channel(pool.clone());
        self.listen_fds.insert(cfg.listen.to_string(), std::os::fd::AsRawFd::as_raw_fd(&listeners.main));
        self.accept(cfg, Arc::new(listeners.main), rx.clone(), self.share)?;
        if let (Some(status), Some(addr)) = (listeners.status, &cfg.pm_status_listen) {
            let route = cfg.listen.to_string();
            self.status_listeners.insert(addr.to_string(), StatusListener { route, listener: status.clone() });
            self.accept(cfg, status, rx.clone(), 1)?;
        }
        self.routes.insert(cfg.listen.to_string(), tx);
        self.pools.push(pool);
        Ok(())
    }

    /// Accepts on `listener` in the next `share` front-end runtimes in turn
    /// ([`FrontEnds`]), within the shared open-file budget; the runtimes' accept loops
    /// share the listener's limits.
    fn accept(
        &mut self,
        cfg: &config::Pool,
        listener: Arc<Listener>,
        rx: watch::Receiver<Arc<Pool>>,
        share: usize,
    ) -> anyhow::Result<()> {
        let (budget, size) = (self.budget.0.clone(), self.budget.1);
        let admission =
            frontend::Admission::new(cfg.listen_max_connections, budget, size, self.budget_pressure.clone());
        for _ in 0..share.clamp(1, self.front_ends.len()) {
            let runtime = &self.front_ends[self.opened % self.front_ends.len()];
            self.opened += 1;
            let acceptor = {
                let _inside = runtime.enter();
                frontend::register(&listener).with_context(|| format!("[pool {}] register listener", cfg.name))?
            };
            let done = self.done_tx.clone().context("server is stopping")?;
            let shutdown = self.shutdown_tx.subscribe();
            runtime.spawn(frontend::accept_loop(acceptor, rx.clone(), shutdown, done, admission.clone()));
        }
        Ok(())
    }

    async fn serve(&mut self) -> anyhow::Result<i32> {
        let intent = loop {
            match self.signals.next().await {
                Intent::Reap => self.supervisor.send(Command::Reap),
                Intent::ReopenLogs => reopen_logs(),
                Intent::Reload => {
                    if let Some(stop) = self.reload_while_asked().await {
                        break stop;
                    }
                }
                #[cfg(debug_assertions)]
                Intent::WedgeActor => self.wedge_actor(),
                stop => break stop,
            }
        };
        self.shutdown(intent).await;
        Ok(0)
    }

    /// SIGUSR2: a new generation of pools from the re-read configuration.
    /// Listeners that stay are kept open and handed to the new pools; the old
    /// pools finish their in-flight requests, then their children stop. A
    /// configuration with errors is refused and the running pools are kept.
    /// Reading the files, binding and starting the pools (which runs
    /// `php-cgi -i`) happen on a blocking thread: the runtime keeps serving.
    /// Reloads, again while another SIGUSR2 came during the reload.
    async fn reload_while_asked(&mut self) -> Option<Intent> {
        loop {
            let stop = self.reload().await;
            if stop.is_some() || !std::mem::take(&mut self.reload_again) {
                return stop;
            }
        }
    }

    /// Returns a stop that was asked for while the new pools started.
    async fn reload(&mut self) -> Option<Intent> {
        crate::notice!("Reloading in progress ...");
        self.notify(Notifier::reloading);
        let before = self.config.global.clone();
        let stop = self.reload_pools().await;
        if self.config.global.pid != before.pid {
            self.move_pid_file();
        }
        let pools = self.pools.clone();
        self.notify(|n| n.reloaded(&pools));
        if let Some(sampler) = &self.sampler {
            sampler.update(&pools);
        }
        // rustfpm's threads, limits and exporter run on (a pool's process_sched_policy applies
        // to its new php-cgi).
        for key in before.restart_only_changes(&self.config.global) {
            crate::warning!("[global] {key} changes take effect at the next restart");
        }
        stop
    }

    /// A reload that names another pid file writes it, as php-fpm's re-exec does, and removes
    /// the one an earlier reload wrote.
    fn move_pid_file(&mut self) {
        if let Some((path, id)) = self.pid_file.take() {
            let _ = crate::sys::safe_fs::remove_if_same(&path, id);
        }
        let Some(path) = self.config.global.pid.clone() else { return };
        match crate::sys::safe_fs::replace(&path, format!("{}\n", std::process::id()).as_bytes(), PID_FILE_MODE) {
            Ok(id) => self.pid_file = Some((path, id)),
            Err(e) => crate::error!("cannot write the pid file {}: {e}", path.display()),
        }
    }

    fn notify(&mut self, f: impl FnOnce(&mut Notifier)) {
        if let Some(notifier) = self.notifier.as_mut() {
            f(notifier);
        }
    }

    /// Debug builds: the first pool's actor hangs, as a deadlocked one would.
    #[cfg(debug_assertions)]
    fn wedge_actor(&self) {
        if let Some(pool) = self.pools.first() {
            crate::warning!("[pool {}] debug: wedging the pool's actor (SIGRTMIN+1)", pool.name);
            pool.heartbeat.wedge();
        }
    }

    /// Reads the configuration again and switches to its pools once they
    /// answer, or keeps the running ones when it has errors or they cannot
    /// start. Returns a stop asked for meanwhile (the new pools are dropped).
    async fn reload_pools(&mut self) -> Option<Intent> {
        let source = self.opts.source.clone().unwrap_or_else(|| config::Source::toml(self.config.path.clone()));
        crate::notice!(
            "reloading: re-reading {} (pid {} and its listeners stay)",
            source.path.display(),
            std::process::id()
        );
        let kept: Vec<String> = self.routes.keys().cloned().collect();
        let open = self.status_listeners.clone();
        let (supervisor, allow_root) = (self.supervisor.clone(), self.opts.allow_root);
        let prepared =
            tokio::task::spawn_blocking(move || prepare(&source, &kept, &open, &supervisor, allow_root)).await;
        let generation = match prepared {
            Ok(Ok(generation)) => generation,
            Ok(Err(Refused::Config)) => {
                crate::error!("reload refused: the configuration has errors; the running pools are kept");
                return None;
            }
            Ok(Err(Refused::Start(e))) => {
                crate::error!("reload failed: {e:#}; the running pools are kept");
                return None;
            }
            Err(e) => {
                crate::error!("reload failed: {e}; the running pools are kept");
                return None;
            }
        };
        // As php-fpm after its re-exec: every listener is carried into the new configuration
        // (those of pools that are gone are closed once it serves). Said before its pools
        // answer: with many pools their start takes a while on a loaded machine.
        let mut carried: Vec<_> = self.listen_fds.iter().collect();
        carried.sort_by_key(|(_, fd)| **fd);
        for (listen, fd) in carried {
            crate::notice!("using inherited socket fd={fd}, \"{listen}\"");
        }
        match self.await_start(&generation).await {
            Ok(()) => {}
            Err(outcome) => {
                for pool in &generation.pools {
                    pool.stop();
                }
                return match outcome {
                    NotStarted::Refused(why) => {
                        crate::error!("reload refused: {why}; the running pools are kept");
                        None
                    }
                    NotStarted::Stop(intent) => Some(intent),
                };
            }
        }
        if let Err(e) = self.switch_to(generation) {
            crate::error!("reload failed: {e:#}; the running pools are kept");
        }
        None
    }

    /// Waits until every pool of `generation` answers (at most
    /// [`RELOAD_START_LIMIT`]), handling signals meanwhile: a php_cgi that
    /// exits at start, or pools that never answer, refuse the reload.
    async fn await_start(&mut self, generation: &Generation) -> Result<(), NotStarted> {
        let deadline = tokio::time::Instant::now() + RELOAD_START_LIMIT;
        // Pools that answered are not asked again (each ask is a snapshot and a request).
        let mut waiting: Vec<_> = generation.config.pools.iter().zip(&generation.pools).collect();
        loop {
            let mut starting = None;
            let mut still = Vec::new();
            for (cfg, pool) in waiting {
                match pool.health().await {
                    Health::Answering => {}
                    Health::Starting => {
                        starting = Some(cfg);
                        still.push((cfg, pool));
                    }
                    Health::Failed => {
                        let why = format!(
                            "[pool {}] php_cgi {} exited right after it started",
                            cfg.name,
                            cfg.php_cgi.display()
                        );
                        return Err(NotStarted::Refused(why));
                    }
                }
            }
            let Some(cfg) = starting else { return Ok(()) };
            waiting = still;
            if tokio::time::Instant::now() >= deadline {
                let why = format!(
                    "[pool {}] php_cgi {} did not answer within {} s",
                    cfg.name,
                    cfg.php_cgi.display(),
                    RELOAD_START_LIMIT.as_secs()
                );
                return Err(NotStarted::Refused(why));
            }
            tokio::select! {
                () = tokio::time::sleep(RELOAD_START_POLL) => {}
                intent = self.signals.next() => match intent {
                    Intent::Reap => self.supervisor.send(Command::Reap),
                    Intent::ReopenLogs => reopen_logs(),
                    // Another reload follows this one (signals that arrive
                    // during a reload merge into one).
                    Intent::Reload => self.reload_again = true,
                    #[cfg(debug_assertions)]
                    Intent::WedgeActor => self.wedge_actor(),
                    stop => return Err(NotStarted::Stop(stop)),
                },
            }
        }
    }

    fn switch_to(&mut self, generation: Generation) -> anyhow::Result<()> {
        let Generation { config, fresh, pools } = generation;
        let retiring = std::mem::take(&mut self.pools);
        let mut old_routes = std::mem::take(&mut self.routes);
        for (cfg, pool) in config.pools.iter().zip(&pools) {
            if let Some(tx) = old_routes.remove(&cfg.listen.to_string()) {
                self.warn_kept_status_listener(cfg);
                tx.send_replace(pool.clone());
                self.routes.insert(cfg.listen.to_string(), tx);
                self.pools.push(pool.clone());
            }
        }
        self.share = listener_share(self.front_ends.len(), config.pools.len());
        for (cfg, listener) in fresh {
            if let Some(pool) = config.pools.iter().zip(&pools).find(|(c, _)| c.name == cfg.name).map(|(_, p)| p) {
                self.open_route(&cfg, pool.clone(), listener)?;
            }
        }
        for gone in old_routes.keys() {
            self.listen_fds.remove(gone);
        }
        // Those of routes still open (a kept one keeps its own, a new one took its over).
        let routes = &self.routes;
        self.status_listeners.retain(|_, s| routes.contains_key(&s.route));
        drop(old_routes); // listeners of pools that are gone stop accepting
        for pool in retiring {
            pool.retire(config.global.process_control_timeout);
        }
        if let Err(e) = crate::log::init(&config.global) {
            crate::error!("cannot open the new error_log: {e}; logging as before");
        }
        crate::notice!("configuration reloaded: {} pool(s)", self.pools.len());
        running_notices();
        self.config = config;
        Ok(())
    }

    /// A kept listener keeps its status listener and its connection limit as they were.
    fn warn_kept_status_listener(&self, cfg: &config::Pool) {
        let kept = self.config.pools.iter().find(|p| p.listen == cfg.listen);
        if kept.is_some_and(|p| p.listen_max_connections != cfg.listen_max_connections) {
            crate::warning!(
                "[pool {}] listen_max_connections changes take effect at the next restart (listen {} is kept open)",
                cfg.name,
                cfg.listen
            );
        }
        let old = kept.and_then(|p| p.pm_status_listen.as_ref());
        if old != cfg.pm_status_listen.as_ref() {
            crate::warning!(
                "[pool {}] pm_status_listen changes take effect at the next restart (listen {} is kept open)",
                cfg.name,
                cfg.listen
            );
        }
    }

    /// Decide (the intent), tell (listeners and pools), wait (with a
    /// deadline, or until a second signal asks for a fast stop).
    async fn shutdown(&mut self, intent: Intent) {
        self.notify(Notifier::stopping);
        let _ = self.shutdown_tx.send(true);
        self.budget_pressure.wake_connections();
        self.done_tx = None;
        self.routes.clear();
        // Whether php-cgi still gets its grace: not once a fast stop is asked for.
        let graceful = if intent == Intent::GracefulStop {
            crate::notice!("Finishing ...");
            self.drain(self.config.global.process_control_timeout).await
        } else {
            crate::notice!("Terminating ...");
            false
        };
        exit_by(STOP_DEADLINE, self.config.global.pid.clone());
        for pool in &self.pools {
            pool.stop();
        }
        let grace = if graceful { STOP_GRACE } else { Duration::ZERO };
        self.supervisor.send(Command::Shutdown { grace });
        let _ = tokio::time::timeout(FAST_STOP_WAIT, self.done_rx.recv()).await;
    }

    /// Waits for every connection to finish its request, at most `limit`.
    /// False when a fast stop was asked for meanwhile.
    async fn drain(&mut self, limit: Option<Duration>) -> bool {
        let deadline = tokio::time::sleep(limit.unwrap_or(Duration::from_secs(u32::MAX as u64)));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = self.done_rx.recv() => return true,
                _ = &mut deadline => {
                    crate::warning!("process_control_timeout passed with requests still running; terminating");
                    return true;
                }
                i = self.signals.next() => match i {
                    Intent::FastStop => { crate::notice!("Terminating ..."); return false }
                    Intent::Reap => self.supervisor.send(Command::Reap),
                    _ => {}
                },
            }
        }
    }
}

/// A new generation of pools, started and ready to take over.
/// A `pm_status_listen` listener, and the route (its pool's `listen`) that serves it.
#[derive(Clone)]
struct StatusListener {
    route: String,
    listener: Arc<frontend::Listener>,
}

struct Generation {
    config: Config,
    /// Pools whose listener is new, with that listener, bound.
    fresh: Vec<(config::Pool, PoolListeners)>,
    /// Every pool of `config`, in its order.
    pools: Vec<Arc<Pool>>,
}

/// How long a reload waits for its new pools to answer before it is refused.
const RELOAD_START_LIMIT: Duration = Duration::from_secs(30);
/// How often a reload checks whether its new pools answer.
const RELOAD_START_POLL: Duration = Duration::from_millis(50);

/// Why a reload's new pools were not switched to.
enum NotStarted {
    /// They cannot serve: the reason, for the log.
    Refused(String),
    /// A stop was asked for while they started.
    Stop(Intent),
}

/// Why a reload did not happen (each already logged or carried).
enum Refused {
    /// The configuration has errors (logged, one line each).
    Config,
    /// A listener or a pool could not be started.
    Start(anyhow::Error),
}

/// Reads the configuration again and starts its pools; everything that can
/// fail happens here, before anything is switched. Blocking: runs on a
/// blocking thread, inside the runtime's context (the pools' actors are
/// spawned on it).
fn prepare(
    source: &config::Source,
    kept: &[String],
    open: &HashMap<String, StatusListener>,
    supervisor: &Supervisor,
    allow_root: bool,
) -> Result<Generation, Refused> {
    let config = match source.load() {
        Ok((config, warnings)) => {
            for w in &warnings {
                crate::warning!("{w}");
            }
            config
        }
        Err(errors) => {
            for e in &errors.0 {
                crate::error!("{e}");
            }
            return Err(Refused::Config);
        }
    };
    // A status listener is taken over only from a route that goes (a kept one keeps serving its own).
    let listens: Vec<String> = config.pools.iter().map(|p| p.listen.to_string()).collect();
    let free: HashMap<String, Arc<frontend::Listener>> = open
        .iter()
        .filter(|(_, s)| !listens.contains(&s.route))
        .map(|(addr, s)| (addr.clone(), s.listener.clone()))
        .collect();
    let mut fresh = Vec::new();
    for cfg in config.pools.iter().filter(|cfg| !kept.contains(&cfg.listen.to_string())) {
        fresh.push((cfg.clone(), frontend::bind(cfg, &free).map_err(|e| Refused::Start(e.into()))?));
    }
    let pools = start_pools(&config, supervisor, allow_root).map_err(Refused::Start)?;
    Ok(Generation { config, fresh, pools })
}

/// Starts every pool of `config` on a blocking thread, as a reload does
/// ([`prepare`]): each pool waits there for its `php-cgi -i` (up to 5 s),
/// never on the runtime thread.
async fn start_pools_off_runtime(
    config: &Config,
    supervisor: &Supervisor,
    allow_root: bool,
) -> anyhow::Result<Vec<Arc<Pool>>> {
    let (config, supervisor) = (config.clone(), supervisor.clone());
    tokio::task::spawn_blocking(move || start_pools(&config, &supervisor, allow_root))
        .await
        .context("the thread starting the pools panicked")?
}

/// Starts every pool of `config`. Blocking (each pool waits for its
/// `php-cgi -i`): runs on a blocking thread inside the runtime's context
/// (the pools' actors are spawned on it).
fn start_pools(config: &Config, supervisor: &Supervisor, allow_root: bool) -> anyhow::Result<Vec<Arc<Pool>>> {
    let probes = crate::pool::finish::Probes::default();
    let start = |cfg| -> anyhow::Result<Arc<Pool>> {
        let pool = Pool::start(cfg, &config.global, supervisor, allow_root, &probes)?;
        frontend::status_channel::serve(&pool);
        Ok(pool)
    };
    config.pools.iter().map(start).collect()
}

/// php-fpm's start notices, also logged when a reload is done.
/// How many front-end runtimes accept on each pool's `listen`: one each while there
/// are at least as many pools as runtimes (a connection then wakes one thread, and a
/// pool's requests stay on one thread), and the runtimes shared out among the pools
/// when there are fewer, so that every thread serves (each connection then wakes every
/// runtime of its listener, and one of them accepts it). A `pm_status_listen` has one.
fn listener_share(runtimes: usize, pools: usize) -> usize {
    (runtimes / pools.max(1)).max(1)
}

fn running_notices() {
    crate::notice!("fpm is running, pid {}", std::process::id());
    crate::notice!("ready to handle connections");
}

/// How many nginx connections the open-file limit leaves room for, once the
/// pools' connections to their children are kept (computed at start; a reload
/// keeps it).
fn connection_budget(pools: &[config::Pool]) -> (Arc<Semaphore>, usize) {
    let nofile = crate::sys::rlimit::open_files();
    let children = pools.iter().map(|p| p.pm_max_children).sum();
    let size = frontend::limits::connection_budget(nofile, crate::sys::rlimit::open_now(), pools.len(), children);
    let wanted: usize = pools.iter().map(|p| p.listen_max_connections).sum();
    if size < wanted {
        crate::notice!(
            "the open file limit ({nofile}) leaves room for {size} nginx connections in all (listen_max_connections add up to {wanted})"
        );
    }
    (Arc::new(Semaphore::new(size)), size)
}

/// Ends the process after `limit`, if it has not ended by then (removing the
/// pid file first, as a normal exit does).
fn exit_by(limit: Duration, pid_file: Option<std::path::PathBuf>) {
    let spawned = std::thread::Builder::new().name("stop-deadline".into()).spawn(move || {
        std::thread::sleep(limit);
        crate::alert!(
            "stopping took longer than {}s: exiting now; the guard kills the remaining children",
            limit.as_secs()
        );
        if let Some(path) = pid_file {
            let _ = std::fs::remove_file(path);
        }
        // SAFETY: _exit ends the process at once; it touches no memory of ours.
        unsafe { libc::_exit(1) }
    });
    if let Err(e) = spawned {
        crate::warning!("cannot start the stop deadline: {e}");
    }
}

fn reopen_logs() {
    match crate::log::reopen() {
        Ok(()) => crate::notice!("error log file re-opened"),
        Err(e) => crate::error!("cannot reopen the error log: {e}"),
    }
    crate::accesslog::writer::reopen();
    crate::notice!("access log file re-opened");
}

/// What the start would refuse in the pools' `user` and `group` (root without `-R`, a
/// user or group that does not exist), for `-t`, which checks them as php-fpm's does.
pub fn refused_users(config: &config::Config, allow_root: bool) -> Vec<String> {
    config
        .pools
        .iter()
        .filter_map(|p| crate::pool::spec::check_credentials(p, allow_root).err())
        .map(|e| e.to_string())
        .collect()
}

#[cfg(test)]
mod share_tests {
    use super::listener_share;

    #[test]
    fn runtimes_are_shared_out_among_fewer_pools_and_one_each_otherwise() {
        assert_eq!(listener_share(1, 1), 1);
        assert_eq!(listener_share(2, 1), 2);
        assert_eq!(listener_share(4, 2), 2);
        assert_eq!(listener_share(4, 3), 1);
        assert_eq!(listener_share(2, 5), 1);
        assert_eq!(listener_share(3, 0), 3);
    }
}
