//! The hand-off between the event loop and the writer: one rtrb SPSC ring
//! per Kite connection, carrying fixed-size [`Stamped`] ticks by value, and
//! the writer's wake-up signal.
//!
//! A full ring is backpressure, never loss: the producer keeps what did not
//! fit and stops reading that socket until the writer makes room.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
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
#[derive(Debug, Default)]
pub struct Wake {
    sleeping: Sleeper,
    thread: std::sync::OnceLock<Thread>,
}

/// The sleeping side's flag of the fenced handshake above, shared by the
/// writer's [`Wake`] and the hub's [`TeeSignal`] (they differ only in how a
/// sleeper is woken: unpark, or a mio waker).
#[derive(Debug, Default)]
struct Sleeper(AtomicBool);

impl Sleeper {
    /// The sleeper announces it is about to block (then re-checks its rings).
    fn going_to_sleep(&self) {
        self.0.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// The sleeper is awake again.
    fn awake(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    /// The producer's side: true (once) when the sleeper must be woken.
    fn must_wake(&self) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::SeqCst)
    }
}

impl Wake {
    /// Called by the writer thread once, at start.
    pub fn register_current(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// The writer announces it is about to park (then re-checks its rings).
    pub fn going_to_sleep(&self) {
        self.sleeping.going_to_sleep();
    }

    /// The writer is awake again.
    pub fn awake(&self) {
        self.sleeping.awake();
    }

    /// Wakes the writer if it sleeps.
    pub fn notify(&self) {
        if self.sleeping.must_wake() {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// The hub's copy of one connection's ticks: a second SPSC ring, best
/// effort. Capture never waits for it: a full tee ring drops the copy (the
/// tick is still captured), counts it, and the hub then disconnects its
/// clients saying so, rather than serve them a feed with a hole.
pub struct Tee {
    producer: rtrb::Producer<Stamped>,
    /// Shared with the hub.
    pub signal: Arc<TeeSignal>,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee").finish_non_exhaustive()
    }
}

impl Tee {
    /// A tee feeding `producer`, signalling through `signal`.
    pub fn new(producer: rtrb::Producer<Stamped>, signal: Arc<TeeSignal>) -> Self {
        Tee { producer, signal }
    }

    /// Whether the hub wants ticks now (it has clients).
    #[inline]
    pub fn active(&self) -> bool {
        self.signal.active.load(Ordering::Relaxed)
    }

    /// Copies one tick to the hub, or counts it if its ring is full.
    #[inline]
    pub fn offer(&mut self, s: Stamped) {
        if self.producer.push(s).is_err() {
            self.signal.overflowed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the event loop and the hub share besides the tee rings.
#[derive(Debug, Default)]
pub struct TeeSignal {
    /// The hub has clients: the connections copy their ticks to it.
    pub active: AtomicBool,
    /// Ticks not copied because a tee ring was full.
    pub overflowed: AtomicU64,
    sleeping: Sleeper,
    waker: OnceLock<Arc<mio::Waker>>,
    /// Upstream text frames for the hub's clients (order updates and
    /// messages), bounded; each with the connection it came on.
    texts: Mutex<VecDeque<(u8, String)>>,
}

/// Most upstream text frames waiting for the hub.
const MAX_TEXTS: usize = 1024;

impl TeeSignal {
    /// The hub's waker (set once by the hub at start).
    pub fn set_waker(&self, w: Arc<mio::Waker>) {
        let _ = self.waker.set(w);
    }

    /// The hub is about to block in its poll (then re-checks its rings):
    /// the same fence handshake as [`Wake`].
    pub fn going_to_sleep(&self) {
        self.sleeping.going_to_sleep();
    }

    /// The hub is awake again.
    pub fn awake(&self) {
        self.sleeping.awake();
    }

    /// Wakes the hub if it sleeps (a syscall only then).
    pub fn notify(&self) {
        if self.sleeping.must_wake() {
            if let Some(w) = self.waker.get() {
                let _ = w.wake();
            }
        }
    }

    /// Hands an upstream text frame to the hub (dropped, oldest first, past
    /// [`MAX_TEXTS`]; the hub forwards order updates, so they are rare).
    pub fn push_text(&self, connection_id: u8, text: &str) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let mut q = self.texts.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() == MAX_TEXTS {
            q.pop_front();
        }
        q.push_back((connection_id, text.to_owned()));
        drop(q);
        self.notify();
    }

    /// The text frames waiting, oldest first.
    pub fn take_texts(&self) -> Vec<(u8, String)> {
        let mut q = self.texts.lock().unwrap_or_else(PoisonError::into_inner);
        q.drain(..).collect()
    }
}

/// Decodes one binary message and hands its ticks to `producer`, stamped
/// with `recv_micros` and `connection_id`. Ticks that do not fit go to
/// `overflow` (in order, after anything already there): the caller stops
/// reading its socket until overflow drains. A `tee` gets a copy of each
/// (see [`Tee`]). Returns the ticks decoded; each packet that fails to
/// decode is passed to `on_error`.
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
    mut tee: Option<&mut Tee>,
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
                if let Some(t) = tee.as_mut() {
                    t.offer(s);
                }
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
        let (tp, mut tc) = ring(2);
        let mut tee = Tee::new(tp, Arc::default());
        let n = push_frame(&msg, 7, 1, &mut p, &mut overflow, Some(&mut tee), |_| {
            panic!("no errors")
        });
        assert_eq!(n, 10);
        assert_eq!(overflow.len(), 6);
        let got: Vec<u32> = std::iter::from_fn(|| c.pop().ok())
            .map(|s| s.tick.instrument_token)
            .collect();
        assert_eq!(got, [256, 257, 258, 259]);
        assert_eq!(overflow.front().map(|s| s.tick.instrument_token), Some(260));
        // The tee took what fitted and counted the rest; capture lost nothing.
        assert_eq!(tc.pop().map(|s| s.tick.instrument_token), Ok(256));
        assert_eq!(tee.signal.overflowed.load(Ordering::Relaxed), 8);
    }
}
