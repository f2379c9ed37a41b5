//! Tick rates, sampled once a second on the event loop from the counters.

use std::collections::VecDeque;
use std::time::Instant;

use crate::stats::Stats;

/// Seconds of total-rate history kept (for the web page's chart).
pub const HISTORY_SECONDS: usize = 300;

/// Per-second rates.
#[derive(Debug)]
pub struct Rates {
    last_at: Instant,
    last: [u64; 3],
    /// Ticks per second per connection over the last sample.
    pub per_conn: [f64; 3],
    /// Total ticks per second over the last sample.
    pub total: f64,
    /// (epoch seconds, ticks/s), oldest first.
    pub history: VecDeque<(i64, f64)>,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            last_at: Instant::now(),
            last: [0; 3],
            per_conn: [0.0; 3],
            total: 0.0,
            history: VecDeque::new(),
        }
    }
}

impl Rates {
    /// Takes a sample if a second has passed.
    pub fn sample(&mut self, now: Instant, now_secs: i64, stats: &Stats) {
        let dt = now.duration_since(self.last_at).as_secs_f64();
        if dt < 1.0 {
            return;
        }
        let mut total = 0.0;
        for i in 0..3 {
            let c = stats.conns[i]
                .ticks
                .load(std::sync::atomic::Ordering::Relaxed);
            self.per_conn[i] = c.saturating_sub(self.last[i]) as f64 / dt;
            total += self.per_conn[i];
            self.last[i] = c;
        }
        self.total = total;
        self.last_at = now;
        if self.history.len() == HISTORY_SECONDS {
            self.history.pop_front();
        }
        self.history.push_back((now_secs, total));
    }
}
