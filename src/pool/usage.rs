//! The status page's "last request cpu" and "last request memory", and the
//! memory `pm_max_memory` is checked against. After each request of a pool
//! with a status page or `pm_max_memory`, the actor hands the child's pid to
//! one sampler thread (or the front end does, for a request whose worker went
//! straight back to the balancer: `Pool::sample_usage`), which reads /proc
//! and reports back to the actor as a [`PoolEvent::Usage`], so the actor
//! never reads /proc (the runtime thread never blocks).
//!
//! What rustfpm can know differs from php-fpm's figures: the CPU is the
//! child's time on the CPU since its previous request ended (its process CPU
//! clock's nanoseconds, where php-fpm counts 1/100 s ticks), over the request's
//! duration (as php-fpm's percentage; 0 for a child's first request); the
//! memory is the child's private memory after the request (the
//! `pm_max_memory` measure), where php-fpm shows PHP's peak allocation. A
//! sample read after the child has begun its next request includes what that
//! one spent so far: up to [`BATCH_PAUSE`] of it, so a short request followed
//! by a busy one can show well over 100 % (php-fpm's ticks err as much the
//! other way: a 1 ms request shows 0 % or 1000 %).
//!
//! Under load the sampler reads in batches: after each wake-up it rests
//! [`BATCH_PAUSE`], so that the next one serves the requests of that pause
//! (the status page's figures are then up to that much late); the first
//! sample after a quiet spell is read at once, and a sample a worker waits
//! for (`pm_max_memory`) ends the rest. A child's samples within one batch are
//! read once ([`Batch::merge_per_child`]): its CPU since the previous reading over
//! those requests' summed durations, its memory after the last of them. (Read
//! one by one, a busy pool's samples cost 1.6–2.1 µs of CPU per request.) The rest
//! is 20 ms: with 2 ms, a pool serving a few hundred real pages a second woke the
//! sampler, and through its answers the actor and the log writer, for nearly
//! every request (14.7–18.6 µs of the sampler's CPU per page, 3.8–5.2 µs with
//! 20 ms; docs/performance.md has the runs).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

// std's channel, not crossbeam's: a receiver with nothing to read parks at once, where
// crossbeam's spins and calls sched_yield() four times first (per request, on a busy host).
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use tokio::sync::mpsc::UnboundedSender;

use super::msg::PoolEvent;
use crate::sys::procfs::{CpuTable, ProcFiles};

/// Samples waiting to be read; past this, samples are skipped (the status
/// page then shows the previous figures).
const QUEUE: usize = 4096;
/// How long the sampler rests after each wake-up.
pub const BATCH_PAUSE: Duration = Duration::from_millis(20);

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
    /// A worker waits for this sample (`pm_max_memory`): the sampler does not let it wait
    /// for the end of a rest.
    pub awaited: bool,
}

/// Queues `sample` for the sampler thread; never blocks. False if it was
/// not queued (the queue is full, or the thread could not start): no answer comes.
pub fn request(sample: Sample) -> bool {
    static SAMPLER: OnceLock<Sampler> = OnceLock::new();
    let sampler = SAMPLER.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        Sampler::start(tx, rx, BATCH_PAUSE)
    });
    sampler.request(sample)
}

/// The sampler thread and its queue.
struct Sampler {
    tx: SyncSender<Sample>,
    /// `None` if the thread could not start.
    thread: Option<Thread>,
}

impl Sampler {
    /// Starts the thread that answers what `rx` receives, resting `pause` after batches.
    fn start(tx: SyncSender<Sample>, rx: Receiver<Sample>, pause: Duration) -> Sampler {
        match std::thread::Builder::new().name("rustfpm-usage".into()).spawn(move || run(rx, pause)) {
            Ok(handle) => Sampler { tx, thread: Some(handle.thread().clone()) },
            Err(e) => {
                crate::error!("cannot start the usage sampler thread: {e}; the status page shows no cpu/memory");
                Sampler { tx, thread: None }
            }
        }
    }

    fn request(&self, sample: Sample) -> bool {
        let awaited = sample.awaited;
        let queued = self.tx.try_send(sample).is_ok();
        if let Some(thread) = self.thread.as_ref().filter(|_| queued && awaited) {
            thread.unpark();
        }
        queued
    }
}

fn run(rx: Receiver<Sample>, pause: Duration) {
    let (mut times, mut files) = (CpuTable::<Duration>::default(), ProcFiles::default());
    let mut read = |sample: Sample| {
        let spent = files.cpu_time(sample.pid).and_then(|now| times.spent(sample.pid, now));
        let cpu = spent.map(|spent| cpu_percent(spent, sample.duration));
        let memory = files.private_memory(sample.pid);
        let _ = sample.reply.send(PoolEvent::Usage { slot: sample.slot, pid: sample.pid, cpu, memory });
    };
    let mut batch = Batch::default();
    while let Ok(first) = rx.recv() {
        batch.samples.push(first);
        batch.samples.extend(rx.try_iter());
        batch.merge_per_child();
        batch.samples.drain(..).for_each(&mut read);
        // Samples that come meanwhile wait in the channel, and their senders wake no one
        // (nothing waits in recv); an awaited one unparks this thread.
        std::thread::park_timeout(pause);
    }
}

/// The samples of one wake-up, and what merging them needs (kept from batch to batch).
#[derive(Default)]
struct Batch {
    samples: Vec<Sample>,
    /// While merging: the index of a child's last sample.
    last: HashMap<i32, usize>,
    /// While merging: whether each sample stays.
    keep: Vec<bool>,
}

impl Batch {
    /// Keeps, of the samples of one child (one pid, one pool), the last, with the durations
    /// of the others added to its own; their order is kept. The last one names the slot the
    /// child serves now: a child whose connection closed may have accepted another slot's
    /// since, and its readings are one series (the actor drops a sample of a slot that no
    /// longer has that child). A sample a worker waits for is never merged: each is answered.
    fn merge_per_child(&mut self) {
        let n = self.samples.len();
        if n < 2 {
            return;
        }
        self.last.clear();
        self.keep.clear();
        self.keep.resize(n, true);
        // Walked from the end: the first sample seen of a child is its last.
        for i in (0..n).rev() {
            let (pid, duration) = (self.samples[i].pid, self.samples[i].duration);
            if self.samples[i].awaited {
                continue;
            }
            match self.last.get(&pid) {
                Some(&at) if self.samples[at].reply.same_channel(&self.samples[i].reply) => {
                    self.samples[at].duration += duration;
                    self.keep[i] = false;
                }
                // The child's last sample; or the same pid in another pool (reused), whose
                // samples stay apart.
                _ => {
                    self.last.insert(pid, i);
                }
            }
        }
        let mut kept = self.keep.iter();
        self.samples.retain(|_| kept.next().copied().unwrap_or(true));
    }
}

/// php-fpm's "last request cpu": CPU time over wall time, in percent.
fn cpu_percent(spent: Duration, duration: Duration) -> f64 {
    let wall = duration.as_secs_f64();
    if wall > 0.0 {
        spent.as_secs_f64() / wall * 100.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_a_percentage_of_the_request_duration() {
        assert_eq!(cpu_percent(Duration::from_millis(50), Duration::from_millis(100)), 50.0);
        assert_eq!(cpu_percent(Duration::from_millis(50), Duration::ZERO), 0.0);
    }

    #[tokio::test]
    async fn a_sample_of_a_process_comes_back_as_an_event() {
        // A process of this test's own: other tests sample this one (one sampler thread).
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let pid = child.id() as i32;
        let mut answers = Vec::new();
        // One after the other: two samples of one child in one batch are answered once.
        for _ in 0..2 {
            let reply = tx.clone();
            assert!(request(Sample { pid, slot: 3, duration: Duration::from_millis(10), reply, awaited: false }));
            answers.push(tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.ok().flatten());
        }
        let (first, second) = (answers.remove(0), answers.remove(0));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            matches!(first, Some(PoolEvent::Usage { slot: 3, cpu: None, memory: Some(m), .. }) if m > 0),
            "{first:?}"
        );
        assert!(matches!(second, Some(PoolEvent::Usage { cpu: Some(c), .. }) if c >= 0.0), "{second:?}");
    }

    /// Of a batch, each child's last sample is read, carrying the durations of its earlier
    /// ones (on whichever slot); another pool's samples, and those a worker waits for, stay
    /// apart.
    #[test]
    fn a_childs_samples_in_one_batch_are_read_once() {
        let (pool_a, _rx_a) = tokio::sync::mpsc::unbounded_channel();
        let (pool_b, _rx_b) = tokio::sync::mpsc::unbounded_channel();
        let sample = |pid, slot, ms, reply: &UnboundedSender<PoolEvent>, awaited| Sample {
            pid,
            slot,
            duration: Duration::from_millis(ms),
            reply: reply.clone(),
            awaited,
        };
        let samples = vec![
            sample(10, 0, 1, &pool_a, false),
            sample(11, 1, 2, &pool_a, false),
            sample(10, 0, 4, &pool_a, false),
            sample(12, 2, 16, &pool_a, true),
            sample(11, 1, 32, &pool_a, false),
            sample(12, 2, 64, &pool_a, true),
            // Child 10 now serves slot 3 (its connection of slot 0 closed).
            sample(10, 3, 128, &pool_a, false),
            // Another pool's child with the same pid.
            sample(10, 0, 256, &pool_b, false),
        ];
        let mut batch = Batch { samples, ..Batch::default() };
        batch.merge_per_child();
        let read: Vec<_> = batch.samples.iter().map(|s| (s.pid, s.slot, s.duration.as_millis(), s.awaited)).collect();
        assert_eq!(
            read,
            [(12, 2, 16, true), (11, 1, 34, false), (12, 2, 64, true), (10, 3, 133, false), (10, 0, 256, false)]
        );
        assert!(batch.samples[3].reply.same_channel(&pool_a) && batch.samples[4].reply.same_channel(&pool_b));
    }

    /// A sampler rests after a wake-up (here for an hour), and a sample a worker waits for
    /// ends the rest: it and the one that came before it are answered.
    #[tokio::test]
    async fn an_awaited_sample_ends_the_rest_after_a_batch() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let (reply, mut answers) = tokio::sync::mpsc::unbounded_channel();
        let sample =
            |slot, awaited| Sample { pid, slot, duration: Duration::from_millis(1), reply: reply.clone(), awaited };
        let (tx, rx) = sync_channel(QUEUE);
        // Queued before the thread starts: its first wake-up reads a batch of three, one
        // child's, so read once, as the last.
        for slot in 0..3 {
            tx.try_send(sample(slot, false)).unwrap();
        }
        let sampler = Sampler::start(tx, rx, Duration::from_secs(3600));
        let mut slots = vec![answered(&mut answers).await];
        assert!(sampler.request(sample(3, false)));
        assert!(sampler.request(sample(4, true)));
        for _ in 0..2 {
            slots.push(answered(&mut answers).await);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(slots, [2, 3, 4]);
    }

    /// The slot of the next answer; a minute is far more than any read takes, and far less
    /// than the sampler's rest in the test above.
    async fn answered(answers: &mut tokio::sync::mpsc::UnboundedReceiver<PoolEvent>) -> usize {
        match tokio::time::timeout(Duration::from_secs(60), answers.recv()).await {
            Ok(Some(PoolEvent::Usage { slot, .. })) => slot,
            other => panic!("no sample answered: {other:?}"),
        }
    }
}
