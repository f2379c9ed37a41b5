//! The hand-off between the event loop and the writer: one rtrb SPSC ring
//! per Kite connection, carrying fixed-size [`Stamped`] ticks by value, and
//! the writer's wake-up signal.
//!
//! A full ring is backpressure, never loss: the producer keeps what did not
//! fit and stops reading that socket until the writer makes room.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;

use std::collections::VecDeque;

use crate::kite::{decode_message, DecodeError, Tick};

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
/// [`Wake::notify`] after each frame; it costs a fence and a load unless the
/// writer is actually asleep.
///
/// The handshake is Dekker's: the writer stores `sleeping = true`, fences,
/// then re-checks the rings; the producer pushes, fences, then loads
/// `sleeping`. With both fences (SeqCst) at least one side sees the other's
/// store, so a push can never go unnoticed by a writer about to park (a
/// relaxed load alone could be reordered before the push and miss it,
/// leaving the writer asleep until its timeout).
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
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// The writer is awake again.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Wakes the writer if it sleeps.
    pub fn notify(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// Decodes one binary message and hands its ticks to `producer`, stamped
/// with `recv_micros` and `connection_id`. Ticks that do not fit go to
/// `overflow` (in order, after anything already there): the caller stops
/// reading its socket until overflow drains. Returns the ticks decoded;
/// each packet that fails to decode is passed to `on_error`.
///
/// This is the event loop's per-frame hot path: no allocation unless the
/// ring is full and `overflow` must grow, no lock.
#[inline]
pub fn push_frame(
    payload: &[u8],
    recv_micros: i64,
    connection_id: u8,
    producer: &mut rtrb::Producer<Stamped>,
    overflow: &mut VecDeque<Stamped>,
    mut on_error: impl FnMut(&DecodeError),
) -> u64 {
    let mut n = 0u64;
    for r in decode_message(payload) {
        match r {
            Ok(tick) => {
                let s = Stamped {
                    tick,
                    recv_micros,
                    connection_id,
                };
                if overflow.is_empty() {
                    if let Err(rtrb::PushError::Full(s)) = producer.push(s) {
                        overflow.push_back(s);
                    }
                } else {
                    overflow.push_back(s);
                }
                n += 1;
            }
            Err(e) => on_error(&e),
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kite::{encode_message, PacketKind};

    #[test]
    fn a_full_ring_keeps_the_rest_in_order_in_overflow() {
        let (mut p, mut c) = ring(4);
        let ticks: Vec<Tick> = (0..10)
            .map(|i| Tick::new(PacketKind::Ltp, 256 + i))
            .collect();
        let mut msg = Vec::new();
        encode_message(&ticks, &mut msg);
        let mut overflow = VecDeque::new();
        let n = push_frame(&msg, 7, 1, &mut p, &mut overflow, |_| panic!("no errors"));
        assert_eq!(n, 10);
        assert_eq!(overflow.len(), 6);
        let got: Vec<u32> = std::iter::from_fn(|| c.pop().ok())
            .map(|s| s.tick.instrument_token)
            .collect();
        assert_eq!(got, [256, 257, 258, 259]);
        assert_eq!(overflow.front().map(|s| s.tick.instrument_token), Some(260));
    }
}
