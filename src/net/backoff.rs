//! Reconnect delays: exponential from `base`, capped, with jitter so that
//! three connections (or many tickcap instances) do not retry in lockstep.

use std::time::Duration;

use crate::util::SplitMix;

/// Capped exponential backoff with "equal jitter": a delay in `[d/2, d]`
/// where `d = min(cap, base · 2^attempt)`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: SplitMix,
}

impl Backoff {
    /// A backoff starting at `base`, never above `cap`.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
            rng: SplitMix::new(seed),
        }
    }

    /// The delay before the next attempt; each call doubles the ceiling.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter = self.rng.below(half.as_micros().max(1) as u64);
        half + Duration::from_micros(jitter)
    }

    /// A new cap (a reload), used from the next delay on.
    pub fn set_cap(&mut self, cap: Duration) {
        self.cap = cap.max(self.base);
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to `base` (after a connection that worked).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 1);
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let ceilings = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (got, ceil) in d.iter().zip(ceilings) {
            let ceil = Duration::from_millis(ceil);
            assert!(*got >= ceil / 2 && *got <= ceil, "{got:?} vs {ceil:?}");
        }
        assert_eq!(b.attempts(), 8);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
