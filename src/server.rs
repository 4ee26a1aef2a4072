//! The server's lifecycle: Starting → Ready → Draining → Stopped.
//! Binds every pool's listener, starts the pools, turns signals into intents,
//! and shuts down by deciding, telling everyone, and waiting with a deadline.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::frontend::{self, Listener};
use crate::pool::Pool;
use crate::signals::{Intent, Signals};
use crate::supervisor::{Command, Supervisor};
use crate::sys::guard::Guard;

/// How long php-cgi gets between SIGTERM and SIGKILL when stopping.
pub const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long a fast stop waits for connection tasks to notice.
pub const FAST_STOP_WAIT: Duration = Duration::from_secs(2);

/// Run-time options from the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-R`: allow pools to run as root.
    pub allow_root: bool,
}

/// Binds all listeners of `config` (before the runtime starts, so that errors
/// are reported before anything is spawned).
pub fn bind_all(config: &Config) -> anyhow::Result<Vec<Listener>> {
    config.pools.iter().map(|p| frontend::bind(p).map_err(anyhow::Error::from)).collect()
}

/// Runs rustfpm until it is told to stop. Returns the process exit code.
pub fn run(config: Config, listeners: Vec<Listener>, guard: Guard, opts: Options) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the runtime")?;
    let (supervisor, thread) = Supervisor::start(guard);
    let result = runtime.block_on(serve(&config, listeners, &supervisor, &opts));
    supervisor.send(Command::Shutdown { grace: STOP_GRACE });
    let _ = thread.join();
    drop(runtime);
    crate::notice!("exiting, bye-bye!");
    result
}

async fn serve(
    config: &Config,
    listeners: Vec<Listener>,
    supervisor: &Supervisor,
    opts: &Options,
) -> anyhow::Result<i32> {
    let mut signals = Signals::install().context("install signal handlers")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut pools = Vec::new();
    for (cfg, listener) in config.pools.iter().zip(listeners) {
        let pool = Pool::start(cfg, supervisor, opts.allow_root)?;
        let listener = listener.register().with_context(|| format!("[pool {}] register listener", cfg.name))?;
        tokio::spawn(frontend::accept_loop(listener, pool.clone(), shutdown_rx.clone(), done_tx.clone()));
        pools.push(pool);
    }
    drop(done_tx);
    crate::notice!("fpm is running, pid {}", std::process::id());
    crate::notice!("ready to handle connections");
    let intent = loop {
        match signals.next().await {
            Intent::Reap => supervisor.send(Command::Reap),
            Intent::ReopenLogs => reopen_logs(),
            Intent::Reload => crate::warning!("reload (SIGUSR2) is not supported yet; ignored"),
            stop => break stop,
        }
    };
    shutdown(intent, &pools, &shutdown_tx, &mut done_rx, &mut signals, supervisor).await;
    Ok(0)
}

fn reopen_logs() {
    match crate::log::reopen() {
        Ok(()) => crate::notice!("error log reopened"),
        Err(e) => crate::error!("cannot reopen the error log: {e}"),
    }
}

/// Decide (the intent), tell (listeners and pools), wait (with a deadline,
/// or until a second signal asks for a fast stop).
async fn shutdown(
    intent: Intent,
    pools: &[Arc<Pool>],
    shutdown_tx: &watch::Sender<bool>,
    done_rx: &mut mpsc::Receiver<()>,
    signals: &mut Signals,
    supervisor: &Supervisor,
) {
    let _ = shutdown_tx.send(true);
    if intent == Intent::GracefulStop {
        crate::notice!("Finishing ...");
        loop {
            tokio::select! {
                _ = done_rx.recv() => break,
                i = signals.next() => match i {
                    Intent::FastStop => { crate::notice!("Terminating ..."); break }
                    Intent::Reap => supervisor.send(Command::Reap),
                    _ => {}
                },
            }
        }
    } else {
        crate::notice!("Terminating ...");
    }
    for pool in pools {
        pool.stop();
    }
    supervisor.send(Command::Shutdown { grace: STOP_GRACE });
    let _ = tokio::time::timeout(FAST_STOP_WAIT, done_rx.recv()).await;
}
