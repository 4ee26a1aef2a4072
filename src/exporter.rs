//! The sampled half of the Prometheus metrics (the other half is counted as
//! it happens, see [`crate::metrics::PoolMetrics`]): every
//! [`SAMPLE_INTERVAL`], each current pool's snapshot gives its children by
//! state, its queue and php-fpm's status figures, and each child's private
//! memory is read from /proc on a blocking thread.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::frontend::pages::pool_status;
use crate::pool::{Pool, SlotState};
use crate::sys::procfs::private_memory;

/// How often the gauges are refreshed.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

/// Refreshes the sampled gauges of the current pools.
pub struct Sampler {
    pools: watch::Sender<Vec<Arc<Pool>>>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pools`. Must run inside the runtime.
    pub fn start(pools: &[Arc<Pool>]) -> Sampler {
        let (tx, rx) = watch::channel(pools.to_vec());
        Sampler { pools: tx, task: tokio::spawn(run(rx)) }
    }

    /// After a reload: sample these pools from now on.
    pub fn update(&self, pools: &[Arc<Pool>]) {
        self.pools.send_replace(pools.to_vec());
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(pools: watch::Receiver<Vec<Arc<Pool>>>) {
    let mut every = tokio::time::interval(SAMPLE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let current = pools.borrow().clone();
        for pool in &current {
            sample(pool).await;
        }
    }
}

async fn sample(pool: &Pool) {
    let Some(snap) = pool.snapshot().await else { return };
    let status = pool_status(pool, &snap);
    let states = [
        ("idle", SlotState::Idle),
        ("busy", SlotState::Busy),
        ("starting", SlotState::Starting),
        ("exiting", SlotState::Exiting),
    ]
    .map(|(name, state)| (name, snap.slots.iter().filter(|s| s.state == state).count()));
    let pids: Vec<Option<i32>> = snap.slots.iter().map(|s| s.pid).collect();
    let memory: Vec<Option<u64>> =
        tokio::task::spawn_blocking(move || pids.into_iter().map(|p| p.and_then(private_memory)).collect())
            .await
            .unwrap_or_default();
    let uptime = SystemTime::now().duration_since(snap.started).unwrap_or_default();
    crate::metrics::sample_pool(&status, &states, &memory, uptime);
}
