//! `tickcap analyze`: per file and overall — ticks, instruments, time range,
//! ticks per mode and per connection, per instrument count, first/last/min/
//! max/mean price and volume, and ticks per second (mean and the peak
//! second); unparsable lines are reported (file:line) and skipped.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::scan::{good_or_record, Fold, Line, LineError};
use crate::kite::Mode;

/// One instrument's figures.
#[derive(Debug, Clone, Default)]
pub struct Instrument {
    /// Ticks.
    pub count: u64,
    /// (receive time, price) of the first and last tick.
    pub first: (i64, f64),
    /// Last.
    pub last: (i64, f64),
    /// Lowest price.
    pub min: f64,
    /// Highest price.
    pub max: f64,
    /// Sum of prices (for the mean).
    pub sum: f64,
    /// First and last `volume_traded` seen.
    pub volume_first: Option<u32>,
    /// Last.
    pub volume_last: Option<u32>,
}

impl Instrument {
    fn add(&mut self, l: &Line) {
        if self.count == 0 {
            *self = Instrument {
                first: (l.ts_micros, l.last_price),
                last: (l.ts_micros, l.last_price),
                min: l.last_price,
                max: l.last_price,
                ..Default::default()
            };
        }
        self.count += 1;
        if l.ts_micros < self.first.0 {
            self.first = (l.ts_micros, l.last_price);
        }
        if l.ts_micros >= self.last.0 {
            self.last = (l.ts_micros, l.last_price);
        }
        self.min = self.min.min(l.last_price);
        self.max = self.max.max(l.last_price);
        self.sum += l.last_price;
        if let Some(v) = l.volume {
            self.volume_first = Some(self.volume_first.map_or(v, |f| f.min(v)));
            self.volume_last = Some(self.volume_last.map_or(v, |x| x.max(v)));
        }
    }

    fn merge(&mut self, o: &Instrument) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = o.clone();
            return;
        }
        self.count += o.count;
        if o.first.0 < self.first.0 {
            self.first = o.first;
        }
        if o.last.0 >= self.last.0 {
            self.last = o.last;
        }
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.volume_first = match (self.volume_first, o.volume_first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.volume_last = match (self.volume_last, o.volume_last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What `analyze` gathers from lines.
#[derive(Debug, Default, Clone)]
pub struct Analysis {
    /// Ticks (good lines) after the filter.
    pub ticks: u64,
    /// Bad lines: (line number, reason).
    pub bad: Vec<(usize, String)>,
    /// Earliest and latest receive time.
    pub range: Option<(i64, i64)>,
    /// Ticks per mode (ltp, quote, full).
    pub per_mode: [u64; 3],
    /// Ticks per connection id (index 1..=3).
    pub per_connection: [u64; 4],
    /// Per instrument.
    pub instruments: crate::stats::TokenMap<Instrument>,
    /// Ticks per epoch second.
    pub per_second: HashMap<i64, u64>,
    /// Ticks per (epoch second, connection), for plots.
    pub per_second_conn: HashMap<(i64, u8), u64>,
    /// Price series of the filtered instruments, for plots: token → (µs, price).
    pub series: HashMap<u32, Vec<(i64, f64)>>,
    /// Only these instruments (empty: all).
    pub filter: Vec<u32>,
    /// Keep price series (for `--plot`).
    pub keep_series: bool,
}

impl Analysis {
    /// A fold for `filter` (empty: every instrument).
    pub fn new(filter: Vec<u32>, keep_series: bool) -> Self {
        Analysis {
            filter,
            keep_series,
            ..Default::default()
        }
    }
}

fn mode_index(m: Mode) -> usize {
    match m {
        Mode::Ltp => 0,
        Mode::Quote => 1,
        Mode::Full => 2,
    }
}

impl Fold for Analysis {
    fn line(&mut self, no: usize, line: Result<Line, LineError>) {
        let Some(l) = good_or_record(&mut self.bad, no, line) else {
            return;
        };
        if !self.filter.is_empty() && !self.filter.contains(&l.token) {
            return;
        }
        self.ticks += 1;
        self.range = Some(match self.range {
            None => (l.ts_micros, l.ts_micros),
            Some((a, b)) => (a.min(l.ts_micros), b.max(l.ts_micros)),
        });
        self.per_mode[mode_index(l.mode)] += 1;
        self.per_connection[usize::from(l.connection_id.min(3))] += 1;
        self.instruments.entry(l.token).or_default().add(&l);
        let sec = l.ts_micros.div_euclid(1_000_000);
        *self.per_second.entry(sec).or_default() += 1;
        *self
            .per_second_conn
            .entry((sec, l.connection_id))
            .or_default() += 1;
        if self.keep_series {
            self.series
                .entry(l.token)
                .or_default()
                .push((l.ts_micros, l.last_price));
        }
    }

    fn merge(&mut self, next: Self, lines_before: usize) {
        self.ticks += next.ticks;
        self.bad
            .extend(next.bad.into_iter().map(|(n, e)| (n + lines_before, e)));
        self.range = match (self.range, next.range) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (a, b) => a.or(b),
        };
        for i in 0..3 {
            self.per_mode[i] += next.per_mode[i];
        }
        for i in 0..4 {
            self.per_connection[i] += next.per_connection[i];
        }
        for (t, i) in next.instruments {
            self.instruments.entry(t).or_default().merge(&i);
        }
        for (s, n) in next.per_second {
            *self.per_second.entry(s).or_default() += n;
        }
        for (s, n) in next.per_second_conn {
            *self.per_second_conn.entry(s).or_default() += n;
        }
        for (t, v) in next.series {
            self.series.entry(t).or_default().extend(v);
        }
    }
}

/// Merges another file's stats into the overall ones (bad lines stay with
/// their file: line numbers are per file).
pub fn combine(all: &mut Analysis, mut one: Analysis) {
    one.bad.clear();
    all.merge(one, 0);
}

/// The report of one file or of all of them.
/// The report of `s`; with a dump at hand each instrument carries its symbol.
pub fn report(
    s: &Analysis,
    zone: &mut crate::time::ZoneFormatter,
    dir: Option<&crate::kite::Directory>,
) -> Value {
    let mut iso = |micros: i64| {
        let mut b = Vec::new();
        zone.write_micros(&mut b, micros);
        String::from_utf8_lossy(&b).into_owned()
    };
    let (start, end) = s.range.unwrap_or((0, 0));
    let seconds = s.per_second.len().max(1) as f64;
    let peak = s
        .per_second
        .iter()
        .max_by_key(|(t, n)| (**n, -**t))
        .map(|(t, n)| (*t, *n));
    let span = ((end - start) as f64 / 1e6).max(1.0);
    let mut instruments: BTreeMap<u32, Value> = BTreeMap::new();
    for (t, i) in &s.instruments {
        let secs = ((i.last.0 - i.first.0) as f64 / 1e6).max(1.0);
        instruments.insert(
            *t,
            json!({
                "symbol": dir.and_then(|d| d.symbol(*t)),
                "count": i.count,
                "first_price": i.first.1,
                "last_price": i.last.1,
                "min_price": i.min,
                "max_price": i.max,
                "mean_price": if i.count > 0 { i.sum / i.count as f64 } else { 0.0 },
                "first_volume": i.volume_first,
                "last_volume": i.volume_last,
                "volume": match (i.volume_first, i.volume_last) { (Some(a), Some(b)) => Some(b - a), _ => None },
                "ticks_per_second": i.count as f64 / secs,
            }),
        );
    }
    json!({
        "total_ticks": s.ticks,
        "unique_instruments": s.instruments.len(),
        "time_range": if s.range.is_some() {
            json!({"start": iso(start), "end": iso(end), "duration_seconds": (end - start) as f64 / 1e6})
        } else { Value::Null },
        "modes": {"ltp": s.per_mode[0], "quote": s.per_mode[1], "full": s.per_mode[2]},
        "connections": {"1": s.per_connection[1], "2": s.per_connection[2], "3": s.per_connection[3]},
        "ticks_per_second": {
            "mean": s.ticks as f64 / span,
            "mean_over_active_seconds": s.ticks as f64 / seconds,
            "peak": peak.map(|p| p.1),
            "peak_second": peak.map(|p| iso(p.0 * 1_000_000)),
        },
        "instruments": instruments,
        "bad_lines": s.bad.len(),
    })
}
