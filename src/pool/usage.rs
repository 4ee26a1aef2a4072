//! The status page's "last request cpu" and "last request memory", and the
//! memory `pm_max_memory` is checked against. After each request of a pool
//! with a status page or `pm_max_memory`, the actor hands the child's pid to
//! one sampler thread, which reads /proc and reports back to the actor as a
//! [`PoolEvent::Usage`], so the actor never reads /proc (the runtime thread
//! never blocks).
//!
//! What rustfpm can know differs from php-fpm's figures: the CPU is the
//! child's user + system time since its previous request ended, over the
//! request's duration (as php-fpm's percentage; 0 for a child's first
//! request); the memory is the child's private memory after the request (the
//! `pm_max_memory` measure), where php-fpm shows PHP's peak allocation. A
//! sample taken after the child has begun its next request includes a little
//! of that one.

use std::sync::OnceLock;
use std::time::Duration;

// std's channel, not crossbeam's: a receiver with nothing to read parks at once, where
// crossbeam's spins and calls sched_yield() four times first (per request, on a busy host).
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use tokio::sync::mpsc::UnboundedSender;

use super::msg::PoolEvent;
use crate::sys::procfs::{clock_ticks, CpuTable, ProcFiles};

/// Samples waiting to be read; past this, samples are skipped (the status
/// page then shows the previous figures).
const QUEUE: usize = 4096;

/// One request that has ended, to sample.
#[derive(Debug)]
pub struct Sample {
    /// The child that served it.
    pub pid: i32,
    /// Its slot.
    pub slot: usize,
    /// How long the request took.
    pub duration: Duration,
    /// The pool actor's events.
    pub reply: UnboundedSender<PoolEvent>,
}

/// Queues `sample` for the sampler thread; never blocks. False if it was
/// not queued (the queue is full, or the thread could not start): no answer comes.
pub fn request(sample: Sample) -> bool {
    sampler().try_send(sample).is_ok()
}

fn sampler() -> &'static SyncSender<Sample> {
    static SAMPLER: OnceLock<SyncSender<Sample>> = OnceLock::new();
    SAMPLER.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new().name("rustfpm-usage".into()).spawn(move || run(rx));
        if let Err(e) = spawned {
            crate::error!("cannot start the usage sampler thread: {e}; the status page shows no cpu/memory");
        }
        tx
    })
}

fn run(rx: Receiver<Sample>) {
    let hz = clock_ticks();
    let (mut ticks, mut files) = (CpuTable::default(), ProcFiles::default());
    for sample in rx {
        let spent = files.cpu_ticks(sample.pid).and_then(|now| ticks.spent(sample.pid, now));
        let cpu = spent.map(|spent| cpu_percent(spent.total(), hz, sample.duration));
        let memory = files.private_memory(sample.pid);
        let _ = sample.reply.send(PoolEvent::Usage { slot: sample.slot, pid: sample.pid, cpu, memory });
    }
}

/// php-fpm's "last request cpu": CPU time over wall time, in percent.
fn cpu_percent(ticks: u64, hz: f64, duration: Duration) -> f64 {
    let wall = duration.as_secs_f64();
    if wall > 0.0 {
        ticks as f64 / hz / wall * 100.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_a_percentage_of_the_request_duration() {
        assert_eq!(cpu_percent(5, 100.0, Duration::from_millis(100)), 50.0);
        assert_eq!(cpu_percent(5, 100.0, Duration::ZERO), 0.0);
    }

    #[tokio::test]
    async fn a_sample_of_a_process_comes_back_as_an_event() {
        // A process of this test's own: other tests sample this one (one sampler thread).
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let pid = child.id() as i32;
        for _ in 0..2 {
            assert!(request(Sample { pid, slot: 3, duration: Duration::from_millis(10), reply: tx.clone() }));
        }
        let (first, second) = (rx.recv().await, rx.recv().await);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            matches!(first, Some(PoolEvent::Usage { slot: 3, cpu: None, memory: Some(m), .. }) if m > 0),
            "{first:?}"
        );
        assert!(matches!(second, Some(PoolEvent::Usage { cpu: Some(c), .. }) if c >= 0.0), "{second:?}");
    }
}
