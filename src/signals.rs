//! Signals, mapped to one enum of intents (php-fpm's meanings).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// What a signal asks rustfpm to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// SIGTERM, SIGINT: stop at once.
    FastStop,
    /// SIGQUIT: serve the in-flight requests to their end, then stop.
    GracefulStop,
    /// SIGUSR1: reopen log files.
    ReopenLogs,
    /// SIGUSR2, SIGHUP: reload the configuration (php-fpm 8.2 reloads on both).
    Reload,
    /// SIGCHLD: reap exited processes.
    Reap,
    /// Debug builds only, SIGRTMIN+1: the first pool's actor hangs (to test
    /// that systemd's watchdog pings stop).
    #[cfg(debug_assertions)]
    WedgeActor,
}

/// The signal streams rustfpm listens to.
pub struct Signals {
    streams: Vec<(Signal, Intent)>,
}

impl Signals {
    /// Installs the handlers. With `graceful_term`, SIGTERM drains like
    /// SIGQUIT (`graceful_stop_on_term`). Must run inside the tokio runtime.
    pub fn install(graceful_term: bool) -> std::io::Result<Signals> {
        let term = if graceful_term { Intent::GracefulStop } else { Intent::FastStop };
        let table = [
            (SignalKind::terminate(), term),
            (SignalKind::interrupt(), Intent::FastStop),
            (SignalKind::quit(), Intent::GracefulStop),
            (SignalKind::user_defined1(), Intent::ReopenLogs),
            (SignalKind::user_defined2(), Intent::Reload),
            (SignalKind::hangup(), Intent::Reload),
            (SignalKind::child(), Intent::Reap),
        ];
        let mut streams = Vec::with_capacity(table.len() + 1);
        for (kind, intent) in table {
            streams.push((signal(kind)?, intent));
        }
        #[cfg(debug_assertions)]
        streams.push((signal(SignalKind::from_raw(libc::SIGRTMIN() + 1))?, Intent::WedgeActor));
        Ok(Signals { streams })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Intent {
        std::future::poll_fn(|cx| {
            for (stream, intent) in &mut self.streams {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*intent);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}
