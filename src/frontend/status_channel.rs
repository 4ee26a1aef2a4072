//! The private channel behind the polyfill's `fpm_get_status()`: one unix
//! socket per pool, in the polyfill's directory. A connection gets the pool's
//! status page as JSON with every process (`?json&full`), the same data as
//! the status page, and is closed.
//!
//! Only the user the pool's children run as may connect (the socket is
//! theirs, mode 0600), so other local users cannot even make the pool take a
//! snapshot; and only the pool's own children get an answer: the connecting
//! process (the kernel's `SO_PEERCRED`) must be the child of a slot that is
//! serving a request, so another pool's scripts (of the same user) see
//! nothing. Nothing is read from the connection, and no request that does not
//! call `fpm_get_status()` costs anything.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::pool::{Pool, PoolSnapshot, SlotState};
use crate::status::{self, Format};

/// Connections answered at once; more wait in the socket's backlog.
const ANSWERING: usize = 16;
/// Longest an answer may take to be written (a caller that does not read).
const WRITE_WAIT: Duration = Duration::from_secs(5);

/// Opens `pool`'s status socket, if it has the polyfill, and answers on it
/// until the pool is dropped. A socket that cannot be opened is logged:
/// `fpm_get_status()` then returns false.
pub fn serve(pool: &Arc<Pool>) {
    let Some(polyfill) = &pool.finish else { return };
    let path = polyfill.status_socket();
    let listener = match bind(&path, polyfill.children_uid()) {
        Ok(listener) => listener,
        Err(e) => {
            crate::warning!(
                "[pool {}] fpm_get_status() will return false: cannot open {}: {e}",
                pool.name,
                path.display()
            );
            return;
        }
    };
    let (weak, mut gone) = (Arc::downgrade(pool), polyfill.gone());
    tokio::spawn(async move {
        let answering = Arc::new(Semaphore::new(ANSWERING));
        loop {
            let Ok(permit) = answering.clone().acquire_owned().await else { return };
            let stream = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = gone.changed() => return,
            };
            let Ok((stream, _)) = stream else {
                // Out of descriptors, say: not retried in a busy loop.
                tokio::time::sleep(super::ACCEPT_RETRY).await;
                continue;
            };
            let pool = weak.clone();
            tokio::spawn(async move {
                answer(stream, pool).await;
                drop(permit);
            });
        }
    });
}

/// A listening socket at `path` that only `children_uid` (None: rustfpm's own
/// user) may connect to.
fn bind(path: &std::path::Path, children_uid: Option<nix::unistd::Uid>) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    // The directory is rustfpm's own (not writable by others), so the path
    // names the socket just bound; which of the user's processes is answered
    // is decided per connection.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    if let Some(uid) = children_uid {
        std::os::unix::fs::chown(path, Some(uid.as_raw()), None)?;
    }
    Ok(listener)
}

/// Writes the status to one connection, if it comes from one of the pool's
/// busy children; closes it either way.
async fn answer(mut stream: UnixStream, pool: Weak<Pool>) {
    let Some(pid) = stream.peer_cred().ok().and_then(|cred| cred.pid()) else { return };
    let Some(pool) = pool.upgrade() else { return };
    let Some(snapshot) = pool.snapshot().await else { return };
    if !serving(&snapshot, pid) {
        crate::debug!(
            "[pool {}] fpm_get_status(): process {pid} is not one of the pool's busy children; refused",
            pool.name
        );
        return;
    }
    let (_, json) = status::render(&super::pages::pool_status(&pool, &snapshot), Format::Json, true, SystemTime::now());
    drop(pool);
    let _ = tokio::time::timeout(WRITE_WAIT, stream.write_all(json.as_bytes())).await;
}

/// Whether `pid` is the child of one of the snapshot's slots serving a request.
fn serving(snapshot: &PoolSnapshot, pid: i32) -> bool {
    snapshot.slots.iter().any(|slot| slot.state == SlotState::Busy && slot.pid == Some(pid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::msg::SlotSnapshot;
    use std::time::Instant;

    fn slot(pid: i32, state: SlotState) -> SlotSnapshot {
        SlotSnapshot {
            pid: Some(pid),
            state,
            requests: 0,
            since: Instant::now(),
            last_duration: Duration::ZERO,
            child_since: None,
            info: None,
            last_cpu: None,
            last_memory: None,
        }
    }

    #[test]
    fn only_busy_children_are_answered() {
        let snapshot = PoolSnapshot {
            name: "www".into(),
            started: SystemTime::now(),
            parent_pid: Some(10),
            parent_starts: 1,
            forked: 2,
            slots: vec![slot(11, SlotState::Busy), slot(12, SlotState::Idle)],
            accepted: 0,
            max_active: 0,
            max_queue_wait: Duration::ZERO,
            recycled: Default::default(),
            slow_requests: 0,
        };
        assert!(serving(&snapshot, 11));
        assert!(!serving(&snapshot, 12), "an idle child runs no script");
        assert!(!serving(&snapshot, 10), "the php-cgi parent runs no script");
        assert!(!serving(&snapshot, 99), "another process");
    }
}
