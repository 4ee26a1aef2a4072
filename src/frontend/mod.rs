//! The front end: one listener per pool (unix socket or TCP), one task per
//! nginx connection.

pub mod body;
pub mod conn;
pub mod inbuf;
pub mod listen;
pub mod pages;
pub mod policy;
pub mod proxy;
pub mod response;
pub mod scripts;
pub mod stderr;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};

pub use listen::{bind, ListenError, Listener, PoolListeners};

use crate::pool::Pool;

/// Most simultaneous nginx connections per pool; past it, new connections
/// wait in the kernel's listen queue.
pub const MAX_CONNECTIONS: usize = 16 * 1024;

/// Accepts connections until `shutdown` turns true or `current` (the pool
/// this listener serves, replaced on reload) is closed, then drops the
/// listener. Every connection task holds a clone of `done`, so the caller can
/// wait for all of them by waiting for the channel to close.
pub async fn accept_loop(
    listener: Listener,
    mut current: watch::Receiver<Arc<Pool>>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let pages_only = listener.pages_only;
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
            changed = current.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        match accepted {
            Ok(stream) => {
                let (current, shutdown, done) = (current.clone(), shutdown.clone(), done.clone());
                tokio::spawn(async move {
                    stream.serve(current, shutdown, pages_only).await;
                    drop((permit, done));
                });
            }
            Err(e) => {
                crate::error!("[pool {}] accept failed: {e}", current.borrow().name);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
