//! Group commit of read entries. redb has one writer and no group commit of
//! its own, so readers queue their entries here and one of them (the
//! leader) writes the whole queue in one transaction and one fsync.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use super::{AuditError, Queued};

type FlushResult = Result<(), String>;

/// How read entries reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditDurability {
    /// A read returns only after its audit entry is durable (the default).
    /// Concurrent readers share one commit.
    Durable,
    /// A read returns once its entry is queued. A background thread commits
    /// the queue at least every `flush_interval`, and early once it holds
    /// half of `max_pending`; a reader waits only if the queue is full
    /// (`max_pending` entries). Closing the engine commits what is queued.
    /// A crash can lose the entries queued since the last commit. Writes are
    /// always durable with their entry.
    Buffered {
        /// Longest time an entry waits in memory.
        flush_interval: std::time::Duration,
        /// Most entries held in memory before a reader flushes them itself.
        max_pending: usize,
    },
}

impl AuditDurability {
    /// Buffered with a 100 ms flush interval and at most 10,000 pending entries.
    pub const fn buffered() -> Self {
        AuditDurability::Buffered {
            flush_interval: std::time::Duration::from_millis(100),
            max_pending: 10_000,
        }
    }
}

struct State {
    queue: Vec<Queued>,
    /// Completion of the batch now filling.
    batch: Arc<OnceLock<FlushResult>>,
    flushing: bool,
    /// A failed background flush; reads fail closed until a flush succeeds.
    failed: Option<String>,
    /// The background flusher was asked to stop.
    stopped: bool,
}

pub(crate) struct Batcher {
    state: Mutex<State>,
    flushed: Condvar,
    /// Wakes the background flusher early.
    wake: Condvar,
    mode: AuditDurability,
}

impl Batcher {
    pub(crate) fn new(mode: AuditDurability) -> Self {
        Self {
            state: Mutex::new(State {
                queue: Vec::new(),
                batch: Arc::new(OnceLock::new()),
                flushing: false,
                failed: None,
                stopped: false,
            }),
            flushed: Condvar::new(),
            wake: Condvar::new(),
            mode,
        }
    }

    pub(crate) fn mode(&self) -> AuditDurability {
        self.mode
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item`. In durable mode, returns once it is committed.
    pub(crate) fn record(
        &self,
        item: Queued,
        write: &dyn Fn(&[Queued]) -> FlushResult,
    ) -> Result<(), AuditError> {
        let mut state = self.lock();
        if let Some(err) = &state.failed {
            return Err(AuditError::Unwritable(err.clone()));
        }
        state.queue.push(item);
        if let AuditDurability::Buffered { max_pending, .. } = self.mode {
            if state.queue.len() >= max_pending / 2 {
                self.wake.notify_one();
            }
            if state.queue.len() < max_pending {
                return Ok(());
            }
        }
        let mine = Arc::clone(&state.batch);
        loop {
            if let Some(result) = mine.get() {
                return result.clone().map_err(AuditError::Unwritable);
            }
            state = if state.flushing {
                self.flushed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner)
            } else {
                self.lead(state, write)
            };
        }
    }

    /// The background flusher's loop (buffered mode): commits the queue
    /// every `interval`, or as soon as it is half full, until [`Batcher::stop`].
    pub(crate) fn run_flusher(
        &self,
        interval: std::time::Duration,
        write: &dyn Fn(&[Queued]) -> FlushResult,
    ) {
        let half = match self.mode {
            AuditDurability::Buffered { max_pending, .. } => max_pending / 2,
            AuditDurability::Durable => return,
        };
        let mut state = self.lock();
        while !state.stopped {
            // Checked under the lock before waiting, so a wake-up sent while
            // this thread was writing is not lost. Waiting (which releases
            // the lock) whenever there is nothing this thread can do now:
            // another thread is writing, or the last write failed and is
            // retried only after an interval.
            let urgent = state.queue.len() >= half.max(1);
            if !urgent || state.flushing || state.failed.is_some() {
                state = self
                    .wake
                    .wait_timeout(state, interval)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if !state.stopped && !state.flushing && !state.queue.is_empty() {
                state = self.lead(state, write);
            }
        }
    }

    /// Ends [`Batcher::run_flusher`].
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_all();
    }

    /// Commits everything queued so far.
    pub(crate) fn flush(&self, write: &dyn Fn(&[Queued]) -> FlushResult) -> Result<(), AuditError> {
        let mut state = self.lock();
        while state.flushing {
            state = self
                .flushed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let mine = Arc::clone(&state.batch);
        let state = self.lead(state, write);
        if let Some(e) = &state.failed {
            return Err(AuditError::Unwritable(e.clone()));
        }
        match mine.get() {
            Some(Err(e)) => Err(AuditError::Unwritable(e.clone())),
            _ => Ok(()),
        }
    }

    /// Takes the queue, writes it without holding the lock, publishes the
    /// result to everyone waiting on that batch.
    fn lead<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        write: &dyn Fn(&[Queued]) -> FlushResult,
    ) -> MutexGuard<'a, State> {
        let queue = std::mem::take(&mut state.queue);
        let done = std::mem::replace(&mut state.batch, Arc::new(OnceLock::new()));
        state.flushing = true;
        drop(state);
        let result = if queue.is_empty() {
            Ok(())
        } else {
            // A panic must not leave `flushing` set, or every later reader
            // would wait forever: it becomes a failed write instead.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(&queue)))
                .unwrap_or_else(|_| Err("the audit write panicked".into()))
        };
        let mut state = self.lock();
        let published = match result {
            Ok(()) => {
                state.failed = None;
                Ok(())
            }
            Err(e) if matches!(self.mode, AuditDurability::Buffered { .. }) => {
                // Buffered entries stay queued for the next attempt, like any
                // buffered entry, so the readers that queued them (even one
                // that waited for room) were served. Further reads are
                // refused until a write succeeds.
                let mut kept = queue;
                kept.append(&mut state.queue);
                state.queue = kept;
                state.failed = Some(e);
                Ok(())
            }
            // Durable: the readers waiting on this batch are refused; the
            // next reader tries again.
            Err(e) => Err(e),
        };
        let _ = done.set(published);
        state.flushing = false;
        self.flushed.notify_all();
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Queued {
        Queued::from(super::super::Record {
            at: 0,
            actor: "admin".into(),
            action: "customer.read".into(),
            target: None,
            customers: vec![1],
            fields: Vec::new(),
            purpose: "test".into(),
            outcome: super::super::Outcome::Ok,
        })
    }

    #[test]
    fn a_panicking_write_fails_its_batch_and_the_next_one_proceeds() {
        let batcher = Batcher::new(AuditDurability::Durable);
        let failed = batcher.record(record(), &|_| panic!("disk driver bug"));
        assert!(
            matches!(failed, Err(AuditError::Unwritable(_))),
            "{failed:?}"
        );
        let written = std::sync::atomic::AtomicUsize::new(0);
        let ok = batcher.record(record(), &|records| {
            written.fetch_add(records.len(), std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        assert_eq!(ok, Ok(()));
        assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
