//! The feed's rate limit and tick budget, shared by every connection.
//!
//! `--rate N` is the total over all connections, so the sessions draw from
//! one token bucket. Backlog is capped at 50 ms worth of ticks (or the
//! `--send-every` interval, when sessions send that seldom): a pause (no
//! client, a stall) does not turn into a burst that would skew a measured
//! rate. `--count N` is a second, global budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared by all sessions.
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    /// Ticks per second; 0 = unlimited.
    rate: u64,
    /// Ticks granted so far (the bucket's fill level, in ticks since start).
    granted: AtomicU64,
    /// Ticks left under `--count`; `u64::MAX` = no limit.
    budget: AtomicU64,
    /// The most backlog kept, in ticks.
    backlog: u64,
}

impl Pacer {
    /// A pacer for `rate` ticks/s (0 = unlimited) and at most `count` ticks.
    pub fn new(rate: u64, count: Option<u64>) -> Self {
        Pacer {
            start: Instant::now(),
            rate,
            granted: AtomicU64::new(0),
            budget: AtomicU64::new(count.unwrap_or(u64::MAX)),
            backlog: (rate / 20).max(1),
        }
    }

    /// Keeps `window` of backlog (at least the default 50 ms): sessions that
    /// send every `window` get all that came due meanwhile.
    pub fn with_backlog(mut self, window: Duration) -> Self {
        let ticks = (u128::from(self.rate) * window.as_nanos() / 1_000_000_000) as u64;
        self.backlog = self.backlog.max(ticks.saturating_mul(2));
        self
    }

    /// Asks for up to `want` ticks; returns how many may be sent now.
    pub fn claim(&self, want: u64) -> u64 {
        let mut n = want;
        if self.rate > 0 {
            let due =
                (self.start.elapsed().as_nanos() * u128::from(self.rate) / 1_000_000_000) as u64;
            let floor = due.saturating_sub(self.backlog);
            let mut cur = self.granted.load(Ordering::Relaxed);
            loop {
                let base = cur.max(floor);
                let take = due.saturating_sub(base).min(want);
                if take == 0 {
                    return 0;
                }
                match self.granted.compare_exchange_weak(
                    cur,
                    base + take,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        n = take;
                        break;
                    }
                    Err(c) => cur = c,
                }
            }
        }
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                if b == u64::MAX {
                    Some(b)
                } else {
                    Some(b - b.min(n))
                }
            })
            .map(|b| if b == u64::MAX { n } else { b.min(n) })
            .unwrap_or(0)
    }

    /// Whether `--count` is used up.
    pub fn exhausted(&self) -> bool {
        self.budget.load(Ordering::Relaxed) == 0
    }

    /// How long until one more tick is due: zero when one is due now (or
    /// unpaced), `None` when `--count` is used up (nothing will ever be due).
    pub fn next_due(&self) -> Option<Duration> {
        if self.exhausted() {
            return None;
        }
        if self.rate == 0 {
            return Some(Duration::ZERO);
        }
        let granted = self.granted.load(Ordering::Relaxed);
        let due_ns = (u128::from(granted) + 1) * 1_000_000_000 / u128::from(self.rate);
        let elapsed = self.start.elapsed().as_nanos();
        Some(Duration::from_nanos(
            due_ns.saturating_sub(elapsed).min(u128::from(u64::MAX)) as u64,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_pacer_grants_all_until_the_count() {
        let p = Pacer::new(0, Some(10));
        assert_eq!(p.claim(4), 4);
        assert_eq!(p.claim(4), 4);
        assert_eq!(p.claim(4), 2);
        assert_eq!(p.claim(4), 0);
        assert!(p.exhausted());
        let p = Pacer::new(0, None);
        assert_eq!(p.claim(u64::from(u32::MAX)), u64::from(u32::MAX));
    }

    #[test]
    fn rate_limited_pacer_grants_nothing_ahead_of_time() {
        let p = Pacer::new(1000, None);
        // at t≈0 at most one tick (rounding) is due
        assert!(p.claim(1000) <= 1);
        std::thread::sleep(Duration::from_millis(20));
        let got = p.claim(1000);
        // 20 ms at 1000/s is ~20 ticks; never the whole request
        assert!((1..=60).contains(&got), "{got}");
    }
}
