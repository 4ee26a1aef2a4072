//! The front end's notes to a pool's actor ([`Note`]): written without waking
//! the actor, read in batches. The actor reads them whenever it wakes for
//! anything else, and is woken to read them once [`NOTES_PER_READING`] wait:
//! the actor runs on the front end's thread, so a backlog read at once (a
//! tick's worth at tens of thousands of requests a second) would hold up
//! every connection for as long as the reading takes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::msg::Note;

/// The backlog that wakes the actor: one wake-up per this many notes, and a
/// reading of some 40 µs (scaled from a tick's ~4,000 notes, which took
/// 0.5–0.7 ms: about two requests' worth of the front end's time).
pub const NOTES_PER_READING: usize = 256;

/// What both ends share: the notes written and not taken yet, in order. A
/// lock held for a push or a swap (the reader takes all that wait at once and
/// hands back the empty buffer it read before), where a channel paid atomic
/// operations for each note at both ends.
#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    backlog: Arc<Notify>,
}

/// The notes not taken yet, and whether anyone will take them.
#[derive(Debug, Default)]
struct Queue {
    notes: Vec<Note>,
    /// The reader is gone: notes are dropped.
    closed: bool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The front end's end ([`Pool::note`](super::Pool::note)).
#[derive(Debug)]
pub struct NoteSender {
    shared: Arc<Shared>,
}

/// The actor's end.
#[derive(Debug)]
pub struct NoteReceiver {
    shared: Arc<Shared>,
    /// Taken from `shared` and not read yet.
    taken: VecDeque<Note>,
}

/// A new pair of ends.
pub fn channel() -> (NoteSender, NoteReceiver) {
    let shared = Arc::new(Shared::default());
    (NoteSender { shared: shared.clone() }, NoteReceiver { shared, taken: VecDeque::new() })
}

impl NoteSender {
    /// Writes `note`; wakes the actor if [`NOTES_PER_READING`] now wait.
    /// A note to an actor that is gone is dropped.
    pub fn send(&self, note: Note) {
        let waiting = {
            let mut queue = self.shared.queue();
            if queue.closed {
                return;
            }
            queue.notes.push(note);
            queue.notes.len()
        };
        if waiting >= NOTES_PER_READING {
            self.shared.backlog.notify_one();
        }
    }

    /// How many notes wait to be read.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shared.queue().notes.len()
    }
}

impl NoteReceiver {
    /// The next note, if one waits.
    pub fn try_recv(&mut self) -> Option<Note> {
        if self.taken.is_empty() {
            // The emptied buffer goes back for the next notes (capacity kept, nothing copied).
            let empty = Vec::from(std::mem::take(&mut self.taken));
            self.taken = VecDeque::from(std::mem::replace(&mut self.shared.queue().notes, empty));
        }
        self.taken.pop_front()
    }

    /// What the actor waits on: notified once a backlog of
    /// [`NOTES_PER_READING`] has been written since it last returned.
    pub fn backlog(&self) -> Arc<Notify> {
        self.shared.backlog.clone()
    }
}

impl Drop for NoteReceiver {
    fn drop(&mut self) {
        let mut queue = self.shared.queue();
        queue.closed = true;
        queue.notes.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn started() -> Note {
        Note::Started { slot: 0, queued: Duration::ZERO, info: None, at: Instant::now() }
    }

    /// True if `notify` holds a notification (consumed by the check).
    async fn notified(notify: &Notify) -> bool {
        tokio::select! {
            biased;
            _ = notify.notified() => true,
            _ = std::future::ready(()) => false,
        }
    }

    #[tokio::test]
    async fn a_full_backlog_wakes_the_reader_and_a_smaller_one_does_not() {
        let (tx, mut rx) = channel();
        let backlog = rx.backlog();
        for _ in 1..NOTES_PER_READING {
            tx.send(started());
        }
        assert!(!notified(&backlog).await, "{} notes woke the reader", NOTES_PER_READING - 1);
        tx.send(started());
        assert!(notified(&backlog).await, "{NOTES_PER_READING} notes did not wake the reader");
        // Read, the count starts again.
        while rx.try_recv().is_some() {}
        tx.send(started());
        assert!(!notified(&backlog).await, "one note after a reading woke the reader");
    }

    #[test]
    fn a_note_to_a_reader_that_is_gone_is_dropped() {
        let (tx, rx) = channel();
        drop(rx);
        for _ in 0..2 * NOTES_PER_READING {
            tx.send(started());
        }
        assert_eq!(tx.len(), 0);
    }
}
