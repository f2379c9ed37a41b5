//! Hot-standby deduplication: when the tertiary mirrors the primary, every
//! tick arrives twice; the writer keeps the first copy and drops the second.
//!
//! **Rule.** Two ticks are copies when they come from *different*
//! connections, are equal in every field the packet carries (instrument and
//! all values; not the receive time or connection), and arrive within the
//! window (default 1 s). Copies are paired one to one: a kept tick absorbs
//! at most one copy from another connection, and ticks from the same
//! connection never absorb each other.
//!
//! **Why a genuine tick is not dropped.** Each mirrored connection delivers
//! each exchange tick once, in order. A tick T from connection B is dropped
//! only if connection A delivered an identical tick within the window that
//! no B tick has been paired with yet. If both connections deliver the same
//! stream, A's identical unpaired tick *is* T's copy (pairing is one to one,
//! so every genuine repeat — an identical LTP tick a moment later, say — has
//! its own copy on each side and pairs with it). A genuine tick can be lost
//! only when one connection missed a tick that the other delivered *and*
//! the missing side then delivered a different genuine tick identical in
//! every field within the window: the pair is then (T_A, T'_B) instead of
//! (T_A, T_B) and one of the two identical genuine ticks is counted once.
//! That needs a lost tick on one connection plus an exact repeat within 1 s;
//! for quote/full packets `volume_traded` differs between genuine ticks with
//! a trade in between, so it is confined to repeats without trades (and LTP
//! mode). The fingerprint is 64 bits, so an accidental collision is ~2^-64
//! per pair.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use hdrhistogram::Histogram;

use crate::kite::Tick;
use crate::ring::Stamped;
use crate::stats::new_histogram;

/// A fast combining hasher for tick fingerprints (not for untrusted keys:
/// the inputs are Kite's own values).
#[derive(Default)]
struct FpHasher(u64);

impl Hasher for FpHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// The fingerprint of everything a packet carries.
pub fn fingerprint(t: &Tick) -> u64 {
    let mut h = FpHasher::default();
    t.hash(&mut h);
    h.finish()
}

/// The dedup state of the writer.
#[derive(Debug)]
pub struct Dedup {
    window_micros: i64,
    /// (token, fingerprint) → unpaired kept copies: (receive time, connection).
    pending: HashMap<(u32, u64), VecDeque<(i64, u8)>>,
    last_gc: i64,
    /// Copies dropped.
    pub dropped: u64,
    /// Of each dropped pair, which connection delivered first (index = id).
    pub first_by: [u64; 4],
    /// How much earlier the first copy arrived, µs.
    pub lead: Histogram<u64>,
}

impl Dedup {
    /// Pairs copies within `window_micros`.
    pub fn new(window_micros: i64) -> Self {
        Dedup {
            window_micros,
            pending: HashMap::new(),
            last_gc: 0,
            dropped: 0,
            first_by: [0; 4],
            lead: new_histogram(),
        }
    }

    /// Whether to write `st` (false: it is the second copy of a tick).
    pub fn keep(&mut self, st: &Stamped) -> bool {
        let now = st.recv_micros;
        if now - self.last_gc > self.window_micros {
            let w = self.window_micros;
            self.pending
                .retain(|_, q| q.back().is_some_and(|(t, _)| now - t <= w));
            self.last_gc = now;
        }
        let key = (st.tick.instrument_token, fingerprint(&st.tick));
        let q = self.pending.entry(key).or_default();
        while q.front().is_some_and(|(t, _)| now - t > self.window_micros) {
            q.pop_front();
        }
        if let Some(pos) = q.iter().position(|(_, c)| *c != st.connection_id) {
            if let Some((t, c)) = q.remove(pos) {
                self.dropped += 1;
                self.first_by[usize::from(c).min(3)] += 1;
                let _ = self.lead.record((now - t).max(1) as u64);
                return false;
            }
        }
        q.push_back((now, st.connection_id));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kite::PacketKind;

    fn st(token: u32, price: u32, at: i64, conn: u8) -> Stamped {
        let mut t = Tick::new(PacketKind::Ltp, token);
        t.last_price = price;
        Stamped {
            tick: t,
            recv_micros: at,
            connection_id: conn,
        }
    }

    #[test]
    fn the_second_copy_from_the_other_connection_is_dropped() {
        let mut d = Dedup::new(1_000_000);
        assert!(d.keep(&st(1, 100, 0, 1)));
        assert!(!d.keep(&st(1, 100, 300, 3)));
        assert_eq!((d.dropped, d.first_by[1]), (1, 1));
        assert_eq!(d.lead.len(), 1);
    }

    #[test]
    fn genuine_repeats_pair_one_to_one_and_same_connection_repeats_are_kept() {
        let mut d = Dedup::new(1_000_000);
        // two genuine identical LTP ticks, each delivered by both connections
        let seq = [
            st(1, 100, 0, 1),
            st(1, 100, 10, 3),
            st(1, 100, 100, 1),
            st(1, 100, 120, 3),
        ];
        let kept: Vec<bool> = seq.iter().map(|s| d.keep(s)).collect();
        assert_eq!(kept, [true, false, true, false]);
        // the same connection repeating is never deduplicated
        let mut d = Dedup::new(1_000_000);
        assert!(d.keep(&st(2, 5, 0, 1)));
        assert!(d.keep(&st(2, 5, 1, 1)));
    }

    #[test]
    fn copies_outside_the_window_or_differing_in_any_field_are_kept() {
        let mut d = Dedup::new(1_000_000);
        assert!(d.keep(&st(1, 100, 0, 1)));
        assert!(d.keep(&st(1, 100, 1_000_001, 3)), "outside the window");
        assert!(d.keep(&st(1, 101, 1_000_002, 1)), "other price");
        assert!(d.keep(&st(9, 100, 1_000_003, 1)), "other instrument");
        assert_eq!(d.dropped, 0);
    }
}

/// Recently seen keys (hashes of text frames) within a time window: the
/// hub forwards an order update once, and the journal keeps it once,
/// though Kite sends it on every socket of the key.
#[derive(Debug, Clone)]
pub struct Recent {
    window_micros: i64,
    cap: usize,
    by_key: HashMap<u64, i64>,
    order: VecDeque<(u64, i64)>,
}

impl Recent {
    /// Remembers keys for `window_micros`, at most `cap` of them (the
    /// oldest go first).
    pub fn new(window_micros: i64, cap: usize) -> Self {
        Recent {
            window_micros,
            cap: cap.max(1),
            by_key: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The key of a text.
    pub fn key_of(bytes: &[u8]) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        h.finish()
    }

    /// Whether `key` was not seen within the window before `at` (µs, any
    /// monotonic clock); remembers it either way.
    pub fn first_sighting(&mut self, key: u64, at: i64) -> bool {
        while let Some(&(k, t)) = self.order.front() {
            if at - t <= self.window_micros && self.order.len() < self.cap {
                break;
            }
            self.order.pop_front();
            if self.by_key.get(&k) == Some(&t) {
                self.by_key.remove(&k);
            }
        }
        if self
            .by_key
            .get(&key)
            .is_some_and(|t| at - *t <= self.window_micros)
        {
            return false;
        }
        self.by_key.insert(key, at);
        self.order.push_back((key, at));
        true
    }
}

#[cfg(test)]
mod recent_tests {
    use super::Recent;

    #[test]
    fn a_text_is_new_once_within_the_window_and_again_after_it() {
        let mut r = Recent::new(10, 2);
        let (a, b, c) = (
            Recent::key_of(b"a"),
            Recent::key_of(b"b"),
            Recent::key_of(b"c"),
        );
        assert!(r.first_sighting(a, 0));
        assert!(!r.first_sighting(a, 5));
        assert!(r.first_sighting(a, 16), "after the window");
        assert!(r.first_sighting(b, 16));
        assert!(r.first_sighting(c, 16), "the oldest goes past the cap");
        assert!(r.first_sighting(a, 17), "a was pushed out by the cap");
    }
}
