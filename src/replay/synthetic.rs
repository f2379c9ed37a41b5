//! Synthetic instruments: deterministic random walks, as Kite encodes them.
//!
//! Each instrument's state is seeded from `--seed` and its token alone, so a
//! run with the same seed produces the same sequence of values per
//! instrument whatever the interleaving. `volume_traded` rises by exactly 1
//! per tick sent, which makes loss, duplication and reordering detectable
//! downstream (`tickcap verify`, the engine tests).

use crate::kite::{price_divisor, DepthEntry, Mode, PacketKind, Tick, DEPTH_LEVELS};
use crate::util::SplitMix;

/// One synthetic instrument's day so far.
#[derive(Debug, Clone)]
pub struct Instrument {
    token: u32,
    rng: SplitMix,
    /// Price step in integer units.
    step: u32,
    open: u32,
    high: u32,
    low: u32,
    close: u32,
    last: u32,
    average: u32,
    volume: u32,
    buy_qty: u32,
    sell_qty: u32,
    oi: u32,
}

impl Instrument {
    /// The instrument `token` at the start of the day for `seed`.
    pub fn new(token: u32, seed: u64) -> Self {
        let mut rng = SplitMix::new(seed ^ u64::from(token).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let div = price_divisor(token);
        // A price of 50–5000 rupees (currency pairs 50–100), in integer units.
        let rupees = if div == 10_000_000 {
            50 + rng.below(50)
        } else {
            50 + rng.below(4950)
        };
        let close = (rupees * u64::from(div) + rng.below(u64::from(div))) as u32;
        let step = (div / 20).max(1);
        let pct = |v: u32, p: u64| (u64::from(v) * p / 1000) as u32;
        let open = close - pct(close, 10) + pct(close, rng.below(21));
        let high = open.max(close) + pct(close, 5 + rng.below(20));
        let low = open.min(close) - pct(close, 5 + rng.below(20));
        Instrument {
            token,
            step,
            open,
            high,
            low,
            close,
            last: open,
            average: open,
            volume: 0,
            buy_qty: 100_000 + rng.below(900_000) as u32,
            sell_qty: 100_000 + rng.below(900_000) as u32,
            oi: rng.below(5_000_000) as u32,
            rng,
        }
    }

    /// The instrument token.
    pub fn token(&self) -> u32 {
        self.token
    }

    /// The last `volume_traded` sent (0 before the first tick).
    pub fn volume(&self) -> u32 {
        self.volume
    }

    /// Moves the walk one step and returns the tick for `mode`, with
    /// exchange times at `now_secs`. `volume_traded` is one more than last time.
    pub fn next_tick(&mut self, mode: Mode, now_secs: u32) -> Tick {
        let moves = self.rng.below(5) as i64 - 2;
        let last = i64::from(self.last) + moves * i64::from(self.step);
        self.last = last.clamp(i64::from(self.low), i64::from(self.high)) as u32;
        self.volume = self.volume.wrapping_add(1);
        self.average = ((u64::from(self.average) * 15 + u64::from(self.last)) / 16) as u32;
        let drift =
            |v: u32, r: u64| (i64::from(v) + r as i64 - 500).clamp(0, i64::from(u32::MAX)) as u32;
        let r1 = self.rng.below(1001);
        let r2 = self.rng.below(1001);
        self.buy_qty = drift(self.buy_qty, r1);
        self.sell_qty = drift(self.sell_qty, r2);

        let kind = mode.packet_kind(self.token);
        let mut t = Tick::new(kind, self.token);
        t.last_price = self.last;
        if kind == PacketKind::Ltp {
            return t;
        }
        (t.open, t.high, t.low, t.close) = (self.open, self.high, self.low, self.close);
        match kind {
            PacketKind::IndexQuote | PacketKind::IndexFull => {
                t.index_change = self.last.abs_diff(self.close);
                if kind == PacketKind::IndexFull {
                    t.exchange_timestamp = now_secs;
                }
            }
            _ => {
                t.last_traded_quantity = 1 + self.rng.below(100) as u32;
                t.average_traded_price = self.average;
                t.volume_traded = self.volume;
                t.total_buy_quantity = self.buy_qty;
                t.total_sell_quantity = self.sell_qty;
                if kind == PacketKind::Full {
                    t.last_trade_time = now_secs;
                    t.exchange_timestamp = now_secs;
                    t.oi = self.oi;
                    t.oi_day_high = self.oi + 1000;
                    t.oi_day_low = self.oi.saturating_sub(1000);
                    for i in 0..DEPTH_LEVELS / 2 {
                        let away = self.step * (i as u32 + 1);
                        let q = 1 + self.rng.below(5000) as u32;
                        let o = 1 + self.rng.below(20) as u16;
                        t.depth[i] = DepthEntry {
                            quantity: q,
                            price: self.last.saturating_sub(away),
                            orders: o,
                        };
                        t.depth[DEPTH_LEVELS / 2 + i] = DepthEntry {
                            quantity: q + 7,
                            price: self.last.saturating_add(away),
                            orders: o,
                        };
                    }
                }
            }
        }
        t
    }
}

/// Broadcast mode: one instrument's ticks, generated once (in full mode,
/// re-shaped per subscriber) and kept for a while so that every connection
/// subscribed to it can send the same ones.
#[derive(Debug, Clone)]
pub struct Broadcast {
    inst: Instrument,
    log: std::collections::VecDeque<Tick>,
    /// Sequence number of `log[0]`.
    base: u64,
}

/// Ticks kept per instrument for lagging connections.
const BROADCAST_KEEP: usize = 65_536;

impl Broadcast {
    /// The instrument `token` for `seed`.
    pub fn new(token: u32, seed: u64) -> Self {
        Broadcast {
            inst: Instrument::new(token, seed),
            log: std::collections::VecDeque::new(),
            base: 0,
        }
    }

    /// The sequence number the next new tick will get.
    pub fn head(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    /// The ticks kept (the newest [`BROADCAST_KEEP`]), oldest first.
    pub fn ticks(&self) -> impl Iterator<Item = &Tick> {
        self.log.iter()
    }

    /// Last `volume_traded` generated.
    pub fn volume(&self) -> u32 {
        self.inst.volume()
    }

    /// Tick number `seq` if it was generated (never generates); a `seq`
    /// that fell out of the log is moved up to the oldest kept. Returns the
    /// tick and the sequence number actually used.
    pub fn peek(&self, seq: u64) -> Option<(Tick, u64)> {
        let seq = seq.max(self.base);
        self.log.get((seq - self.base) as usize).map(|t| (*t, seq))
    }

    /// Tick number `seq` (generating it when it is the next one); a `seq`
    /// that fell out of the log is moved up to the oldest kept. Returns the
    /// tick and the sequence number actually used.
    pub fn get(&mut self, seq: u64, now_secs: u32) -> (Tick, u64) {
        let seq = seq.clamp(self.base, self.head());
        if seq == self.head() {
            let t = self.inst.next_tick(Mode::Full, now_secs);
            self.log.push_back(t);
            if self.log.len() > BROADCAST_KEEP {
                self.log.pop_front();
                self.base += 1;
            }
            return (t, self.head() - 1);
        }
        (self.log[(seq - self.base) as usize], seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_stays_inside_the_days_range_and_volume_counts_ticks() {
        for token in [408_065u32, 256_265, 0x0100_0003, 0x0100_0006] {
            let mut i = Instrument::new(token, 7);
            for n in 1..=5000u32 {
                let t = i.next_tick(Mode::Full, 1_764_046_523);
                assert!(
                    t.low <= t.last_price && t.last_price <= t.high,
                    "{token} tick {n}"
                );
                if t.kind == PacketKind::Full {
                    assert_eq!(t.volume_traded, n);
                    assert!(
                        t.depth[0].price < t.depth[5].price,
                        "best bid below best ask"
                    );
                }
            }
        }
    }

    #[test]
    fn broadcast_hands_every_reader_the_same_ticks_once() {
        let mut b = Broadcast::new(408_065, 1);
        let (a1, s1) = b.get(b.head(), 0);
        let (a2, s2) = b.get(s1 + 1, 0);
        // a second reader that starts at the first tick sees the same two
        assert_eq!(b.get(s1, 0), (a1, s1));
        assert_eq!(b.get(s2, 0), (a2, s2));
        assert_eq!((a1.volume_traded, a2.volume_traded), (1, 2));
        assert_eq!(b.head(), 2);
    }

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Instrument::new(408_065, 42);
        let mut b = Instrument::new(408_065, 42);
        let mut c = Instrument::new(408_065, 43);
        let ta: Vec<_> = (0..50).map(|_| a.next_tick(Mode::Quote, 0)).collect();
        let tb: Vec<_> = (0..50).map(|_| b.next_tick(Mode::Quote, 0)).collect();
        let tc: Vec<_> = (0..50).map(|_| c.next_tick(Mode::Quote, 0)).collect();
        assert_eq!(ta, tb);
        assert_ne!(ta, tc);
    }
}
