//! The server's lifecycle: Starting → Ready → (Reloading) → Draining → Stopped.
//! Binds every pool's listener, starts the pools, turns signals into intents,
//! reloads the configuration on SIGUSR2 without failing a request, and shuts
//! down by deciding, telling everyone, and waiting with a deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::config::{self, Config};
use crate::frontend::{self, Listener, PoolListeners};
use crate::pool::Pool;
use crate::signals::{Intent, Signals};
use crate::supervisor::{Command, Supervisor};
use crate::sys::daemon::Readiness;
use crate::sys::guard::Guard;

/// How long php-cgi gets between SIGTERM and SIGKILL when stopping.
pub const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long a fast stop waits for connection tasks to notice.
pub const FAST_STOP_WAIT: Duration = Duration::from_secs(2);

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
    config.pools.iter().map(|p| frontend::bind(p).map_err(anyhow::Error::from)).collect()
}

/// Runs rustfpm until it is told to stop. Returns the process exit code.
pub fn run(config: Config, listeners: Vec<PoolListeners>, guard: Guard, opts: Options) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the runtime")?;
    let (supervisor, thread) = Supervisor::start(guard);
    let result = runtime.block_on(async {
        let mut server = Server::start(config, listeners, supervisor.clone(), opts)?;
        server.serve().await
    });
    supervisor.send(Command::Shutdown { grace: STOP_GRACE });
    let _ = thread.join();
    drop(runtime);
    crate::accesslog::writer::flush(crate::accesslog::LOG_FLUSH_WAIT);
    crate::notice!("exiting, bye-bye!");
    result
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
    pools: Vec<Arc<Pool>>,
    shutdown_tx: watch::Sender<bool>,
    done_tx: Option<mpsc::Sender<()>>,
    done_rx: mpsc::Receiver<()>,
}

impl Server {
    fn start(
        config: Config,
        listeners: Vec<PoolListeners>,
        supervisor: Supervisor,
        mut opts: Options,
    ) -> anyhow::Result<Self> {
        let ready = opts.ready.take();
        let signals = Signals::install(config.global.graceful_stop_on_term).context("install signal handlers")?;
        let (shutdown_tx, _) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel::<()>(1);
        let mut server = Server {
            config,
            opts,
            supervisor,
            signals,
            routes: HashMap::new(),
            listen_fds: HashMap::new(),
            pools: Vec::new(),
            shutdown_tx,
            done_tx: Some(done_tx),
            done_rx,
        };
        let pools = start_pools(&server.config, &server.supervisor, server.opts.allow_root)?;
        for ((cfg, pool), listener) in server.config.pools.clone().iter().zip(pools).zip(listeners) {
            server.open_route(cfg, pool, listener)?;
        }
        running_notices();
        crate::log::set_launched();
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
        for listener in std::iter::once(listeners.main).chain(listeners.status) {
            self.accept(cfg, listener, rx.clone())?;
        }
        self.routes.insert(cfg.listen.to_string(), tx);
        self.pools.push(pool);
        Ok(())
    }

    fn accept(&self, cfg: &config::Pool, listener: Listener, rx: watch::Receiver<Arc<Pool>>) -> anyhow::Result<()> {
        let listener = listener.register().with_context(|| format!("[pool {}] register listener", cfg.name))?;
        let done = self.done_tx.clone().context("server is stopping")?;
        tokio::spawn(frontend::accept_loop(listener, rx, self.shutdown_tx.subscribe(), done));
        Ok(())
    }

    async fn serve(&mut self) -> anyhow::Result<i32> {
        let intent = loop {
            match self.signals.next().await {
                Intent::Reap => self.supervisor.send(Command::Reap),
                Intent::ReopenLogs => reopen_logs(),
                Intent::Reload => self.reload().await,
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
    async fn reload(&mut self) {
        crate::notice!("Reloading in progress ...");
        let source = self.opts.source.clone().unwrap_or_else(|| config::Source::toml(self.config.path.clone()));
        crate::notice!(
            "reloading: re-reading {} (pid {} and its listeners stay)",
            source.path.display(),
            std::process::id()
        );
        let kept: Vec<String> = self.routes.keys().cloned().collect();
        let (supervisor, allow_root) = (self.supervisor.clone(), self.opts.allow_root);
        let prepared = tokio::task::spawn_blocking(move || prepare(&source, &kept, &supervisor, allow_root)).await;
        let generation = match prepared {
            Ok(Ok(generation)) => generation,
            Ok(Err(Refused::Config)) => {
                return crate::error!("reload refused: the configuration has errors; the running pools are kept")
            }
            Ok(Err(Refused::Start(e))) => return crate::error!("reload failed: {e:#}; the running pools are kept"),
            Err(e) => return crate::error!("reload failed: {e}; the running pools are kept"),
        };
        if let Err(e) = self.switch_to(generation) {
            crate::error!("reload failed: {e:#}; the running pools are kept");
        }
    }

    fn switch_to(&mut self, generation: Generation) -> anyhow::Result<()> {
        let Generation { config, fresh, pools } = generation;
        let retiring = std::mem::take(&mut self.pools);
        let mut old_routes = std::mem::take(&mut self.routes);
        // As php-fpm after its re-exec: every listener is carried into the reload; those of
        // pools that are gone are closed below.
        let mut carried: Vec<_> = self.listen_fds.iter().collect();
        carried.sort_by_key(|(_, fd)| **fd);
        for (listen, fd) in carried {
            crate::notice!("using inherited socket fd={fd}, \"{listen}\"");
        }
        for (cfg, pool) in config.pools.iter().zip(&pools) {
            if let Some(tx) = old_routes.remove(&cfg.listen.to_string()) {
                self.warn_kept_status_listener(cfg);
                tx.send_replace(pool.clone());
                self.routes.insert(cfg.listen.to_string(), tx);
                self.pools.push(pool.clone());
            }
        }
        for (cfg, listener) in fresh {
            if let Some(pool) = config.pools.iter().zip(&pools).find(|(c, _)| c.name == cfg.name).map(|(_, p)| p) {
                self.open_route(&cfg, pool.clone(), listener)?;
            }
        }
        for gone in old_routes.keys() {
            self.listen_fds.remove(gone);
        }
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

    /// A kept listener keeps its status listener as it was.
    fn warn_kept_status_listener(&self, cfg: &config::Pool) {
        let old = self.config.pools.iter().find(|p| p.listen == cfg.listen).and_then(|p| p.pm_status_listen.as_ref());
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
        let _ = self.shutdown_tx.send(true);
        self.done_tx = None;
        self.routes.clear();
        if intent == Intent::GracefulStop {
            crate::notice!("Finishing ...");
            self.drain(self.config.global.process_control_timeout).await;
        } else {
            crate::notice!("Terminating ...");
        }
        for pool in &self.pools {
            pool.stop();
        }
        self.supervisor.send(Command::Shutdown { grace: STOP_GRACE });
        let _ = tokio::time::timeout(FAST_STOP_WAIT, self.done_rx.recv()).await;
    }

    /// Waits for every connection to finish its request, at most `limit`.
    async fn drain(&mut self, limit: Option<Duration>) {
        let deadline = tokio::time::sleep(limit.unwrap_or(Duration::from_secs(u32::MAX as u64)));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = self.done_rx.recv() => return,
                _ = &mut deadline => {
                    crate::warning!("process_control_timeout passed with requests still running; terminating");
                    return;
                }
                i = self.signals.next() => match i {
                    Intent::FastStop => { crate::notice!("Terminating ..."); return }
                    Intent::Reap => self.supervisor.send(Command::Reap),
                    _ => {}
                },
            }
        }
    }
}

/// A new generation of pools, started and ready to take over.
struct Generation {
    config: Config,
    /// Pools whose listener is new, with that listener, bound.
    fresh: Vec<(config::Pool, PoolListeners)>,
    /// Every pool of `config`, in its order.
    pools: Vec<Arc<Pool>>,
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
    let mut fresh = Vec::new();
    for cfg in config.pools.iter().filter(|cfg| !kept.contains(&cfg.listen.to_string())) {
        fresh.push((cfg.clone(), frontend::bind(cfg).map_err(|e| Refused::Start(e.into()))?));
    }
    let pools = start_pools(&config, supervisor, allow_root).map_err(Refused::Start)?;
    Ok(Generation { config, fresh, pools })
}

/// Starts every pool of `config` (must run inside the runtime's context).
fn start_pools(config: &Config, supervisor: &Supervisor, allow_root: bool) -> anyhow::Result<Vec<Arc<Pool>>> {
    let probes = crate::pool::finish::Probes::default();
    config.pools.iter().map(|cfg| Ok(Pool::start(cfg, &config.global, supervisor, allow_root, &probes)?)).collect()
}

/// php-fpm's start notices, also logged when a reload is done.
fn running_notices() {
    crate::notice!("fpm is running, pid {}", std::process::id());
    crate::notice!("ready to handle connections");
}

fn reopen_logs() {
    match crate::log::reopen() {
        Ok(()) => crate::notice!("error log file re-opened"),
        Err(e) => crate::error!("cannot reopen the error log: {e}"),
    }
    crate::accesslog::writer::reopen();
    crate::notice!("access log file re-opened");
}
