//! Answers to appends: each append's result goes into its own slot, and the appenders of a
//! whole batch are woken by one advance of the store's [`WakeWord`] (one system call however
//! many appenders, the kernel batching the wake-ups per CPU), where a channel per append woke
//! them one by one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use epoch_pipe::WakeWord;

use crate::error::{Failure, FailureSlot, Result, StoreError};
use crate::event::Receipt;
use crate::writer::this_thread;

/// The word every waiting appender of one store sleeps on.
#[derive(Debug, Default)]
pub struct Answers {
    word: WakeWord,
    /// The store's failure slot: a reply dropped by an unwinding thread records the panic
    /// there before it answers.
    failure: FailureSlot,
}

impl Answers {
    /// Answers for a store whose first failure goes into `failure`.
    pub fn new(failure: FailureSlot) -> Self {
        Answers {
            word: WakeWord::default(),
            failure,
        }
    }

    /// A reply (for the writer's side) and its waiter (for the appender).
    pub fn pair(self: &Arc<Self>) -> (Reply, Waiter) {
        let slot = Arc::new(Slot::default());
        let reply = Reply {
            slot: Arc::clone(&slot),
            answers: Arc::clone(self),
        };
        let waiter = Waiter {
            slot,
            answers: Arc::clone(self),
        };
        (reply, waiter)
    }

    /// Wakes every appender whose reply was filled with [`Reply::fill`] since the last wake.
    pub fn wake(&self) {
        self.word.advance();
    }
}

/// Wakes the answered appenders when dropped (guards a thread that fills answers).
#[derive(Debug)]
pub struct WakeOnDrop(pub Arc<Answers>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        self.0.wake();
    }
}

#[derive(Debug, Default)]
struct Slot {
    answered: AtomicBool,
    result: Mutex<Option<Result<Receipt>>>,
}

impl Slot {
    fn put(&self, result: Result<Receipt>) {
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        self.answered.store(true, Ordering::Release);
    }
}

/// The writer's side of one append's answer. Dropped unanswered by a store thread that unwinds
/// (those threads answer every reply they take otherwise), it records
/// [`Failure::Panicked`] unless a failure came first, then answers with the recorded one;
/// dropped unanswered otherwise, [`StoreError::Closed`].
#[derive(Debug)]
pub struct Reply {
    slot: Arc<Slot>,
    answers: Arc<Answers>,
}

impl Reply {
    /// Answers and wakes the appender at once.
    pub fn send(self, result: Result<Receipt>) {
        self.slot.put(result);
        self.answers.wake();
    }

    /// Answers without waking: the caller then calls [`Answers::wake`] once for the batch.
    pub fn fill(self, result: Result<Receipt>) {
        self.slot.put(result);
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.slot.answered.load(Ordering::Acquire) {
            // Recorded before the wake below: a woken appender that appends again is refused.
            // Only for the store's own threads: an appender that unwinds while its request
            // is refused (the store closed) drops its reply too, and that is no failure.
            // `panicking` first: the thread lookup is needed only on that (rare) path.
            let thread = std::thread::panicking()
                .then(this_thread)
                .filter(|thread| *thread != "unknown");
            let error = match thread {
                Some(thread) => {
                    StoreError::Failed(self.answers.failure.record(Failure::Panicked { thread }))
                }
                None => StoreError::Closed,
            };
            self.slot.put(Err(error));
            self.answers.wake();
        }
    }
}

/// The appender's side: waits for its answer.
#[derive(Debug)]
pub struct Waiter {
    slot: Arc<Slot>,
    answers: Arc<Answers>,
}

impl Waiter {
    /// Blocks until the reply is answered (or dropped).
    pub fn wait(self) -> Result<Receipt> {
        let slot = &self.slot;
        self.answers
            .word
            .wait_until(|| slot.answered.load(Ordering::Acquire));
        slot.result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or(Err(StoreError::Closed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_reply_is_seen_after_the_wake() {
        let answers = Arc::new(Answers::default());
        let (reply, waiter) = answers.pair();
        let appender = std::thread::spawn(move || waiter.wait());
        let receipt = Receipt {
            first_position: 4,
            last_position: 5,
            last_versions: vec![1],
        };
        reply.fill(Ok(receipt.clone()));
        answers.wake();
        assert_eq!(appender.join().expect("appender").ok(), Some(receipt));
    }

    #[test]
    fn a_dropped_reply_answers_closed() {
        let answers = Arc::new(Answers::default());
        let (reply, waiter) = answers.pair();
        let appender = std::thread::spawn(move || waiter.wait());
        drop(reply);
        assert!(matches!(
            appender.join().expect("appender"),
            Err(StoreError::Closed)
        ));
    }
}
