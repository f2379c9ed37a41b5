//! The hand-off between the event loop and the writer: one rtrb SPSC ring
//! per Kite connection, carrying fixed-size [`Stamped`] ticks by value, and
//! the writer's wake-up signal.
//!
//! A full ring is backpressure, never loss: the producer keeps what did not
//! fit and stops reading that socket until the writer makes room.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;

use crate::kite::Tick;

/// A tick with its receive time and connection: what a JSONL line is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped {
    /// The decoded packet.
    pub tick: Tick,
    /// When its frame was read, epoch microseconds.
    pub recv_micros: i64,
    /// 1, 2 or 3.
    pub connection_id: u8,
}

/// A ring's two ends.
pub fn ring(capacity: usize) -> (rtrb::Producer<Stamped>, rtrb::Consumer<Stamped>) {
    rtrb::RingBuffer::new(capacity)
}

/// Wakes the writer when it parked itself idle. The producer calls
/// [`Wake::notify`] after each frame; it costs one relaxed load unless the
/// writer is actually asleep.
#[derive(Debug)]
pub struct Wake {
    sleeping: AtomicBool,
    thread: std::sync::OnceLock<Thread>,
}

impl Default for Wake {
    fn default() -> Self {
        Wake {
            sleeping: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        }
    }
}

impl Wake {
    /// Called by the writer thread once, at start.
    pub fn register_current(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// The writer announces it is about to park (then re-checks its rings).
    pub fn going_to_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
    }

    /// The writer is awake again.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Wakes the writer if it sleeps.
    pub fn notify(&self) {
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}
