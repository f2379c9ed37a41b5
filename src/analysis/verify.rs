//! `tickcap verify`: is a capture whole and well-formed?
//!
//! Every line parses and has exactly the contract's keys for its kind; a
//! torn or non-UTF-8 line is reported with its position; timestamps never
//! go backwards per connection (in file order, across files). With the
//! replay feed's report: every tick sent was captured exactly once — per
//! instrument, `volume_traded` is 1, 2, …, last_volume with nothing missing,
//! duplicated or out of order (instruments without volume, such as
//! indices, are checked by count).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::scan::{good_or_record, Fold, Line, LineError};

/// What `verify` gathers.
#[derive(Debug, Default)]
pub struct Check {
    /// Good lines.
    pub lines: u64,
    /// Bad lines: (line, reason).
    pub bad: Vec<(usize, String)>,
    /// Lines whose timestamp is earlier than the previous line of the same connection.
    pub backwards: Vec<(usize, u8)>,
    first: [Option<(i64, usize)>; 4],
    last: [Option<i64>; 4],
    /// Per instrument, `volume_traded` in file order (0 where the tick has none).
    pub volumes: HashMap<u32, Vec<u32>>,
    /// Whether to keep `volumes` (only a replay report needs them: a whole
    /// day's would be hundreds of MB).
    pub keep_volumes: bool,
    /// Silences longer than the gap threshold.
    pub gaps: Gaps,
}

/// What a capture shows of its own completeness without a replay report:
/// silences longer than a threshold, per instrument and per connection.
#[derive(Debug, Clone)]
pub struct Gaps {
    /// A silence at least this long is a gap, µs.
    pub threshold_micros: i64,
    /// Per instrument: (first, last) receive time seen, and its connection.
    spans: crate::stats::TokenMap<(i64, i64, u8)>,
    /// Per connection id: (first, last).
    conn_spans: [Option<(i64, i64)>; 4],
    /// (token, connection, from, to) in µs.
    pub instruments: Vec<(u32, u8, i64, i64)>,
    /// (connection, from, to) in µs.
    pub connections: Vec<(u8, i64, i64)>,
}

impl Default for Gaps {
    fn default() -> Self {
        Gaps::new(30_000_000)
    }
}

impl Gaps {
    /// Gaps of at least `threshold_micros`.
    pub fn new(threshold_micros: i64) -> Self {
        Gaps {
            threshold_micros,
            spans: Default::default(),
            conn_spans: [None; 4],
            instruments: Vec::new(),
            connections: Vec::new(),
        }
    }

    fn see(&mut self, token: u32, conn: u8, at: i64) {
        let c = usize::from(conn.min(3));
        if let Some((_, last)) = &mut self.conn_spans[c] {
            if at - *last >= self.threshold_micros {
                self.connections.push((conn, *last, at));
            }
            *last = (*last).max(at);
        } else {
            self.conn_spans[c] = Some((at, at));
        }
        match self.spans.get_mut(&token) {
            Some((_, last, cn)) => {
                if at - *last >= self.threshold_micros {
                    self.instruments.push((token, conn, *last, at));
                }
                *last = (*last).max(at);
                *cn = conn;
            }
            None => {
                self.spans.insert(token, (at, at, conn));
            }
        }
    }

    /// Appends what a later part (chunk or file) saw.
    fn merge(&mut self, next: Gaps) {
        for c in 0..4 {
            self.conn_spans[c] = match (self.conn_spans[c], next.conn_spans[c]) {
                (Some((f, last)), Some((nf, nl))) => {
                    if nf - last >= self.threshold_micros {
                        self.connections.push((c as u8, last, nf));
                    }
                    Some((f, last.max(nl)))
                }
                (a, b) => a.or(b),
            };
        }
        self.connections.extend(next.connections);
        for (t, (nf, nl, nc)) in next.spans {
            match self.spans.get_mut(&t) {
                Some((_, last, c)) => {
                    if nf - *last >= self.threshold_micros {
                        self.instruments.push((t, nc, *last, nf));
                    }
                    *last = (*last).max(nl);
                    *c = nc;
                }
                None => {
                    self.spans.insert(t, (nf, nl, nc));
                }
            }
        }
        self.instruments.extend(next.instruments);
    }

    /// Instrument gaps during which their connection kept ticking (a gap of
    /// the whole connection is reported as that, once).
    pub fn instrument_gaps(&self) -> Vec<(u32, u8, i64, i64)> {
        self.instruments
            .iter()
            .copied()
            .filter(|(_, c, from, to)| {
                !self
                    .connections
                    .iter()
                    .any(|(cc, cf, ct)| cc == c && *cf <= *from && *ct >= *to)
            })
            .collect()
    }
}

impl Fold for Check {
    fn line(&mut self, no: usize, line: Result<Line, LineError>) {
        let Some(l) = good_or_record(&mut self.bad, no, line) else {
            return;
        };
        self.lines += 1;
        let c = usize::from(l.connection_id.min(3));
        if self.first[c].is_none() {
            self.first[c] = Some((l.ts_micros, no));
        }
        if self.last[c].is_some_and(|p| l.ts_micros < p) {
            self.backwards.push((no, l.connection_id));
        }
        self.last[c] = Some(self.last[c].map_or(l.ts_micros, |p| p.max(l.ts_micros)));
        if self.keep_volumes {
            self.volumes
                .entry(l.token)
                .or_default()
                .push(l.volume.unwrap_or(0));
        }
        self.gaps.see(l.token, l.connection_id, l.ts_micros);
    }

    fn merge(&mut self, next: Self, lines_before: usize) {
        self.lines += next.lines;
        self.bad
            .extend(next.bad.into_iter().map(|(n, e)| (n + lines_before, e)));
        for c in 0..4 {
            if let (Some(prev), Some((first, no))) = (self.last[c], next.first[c]) {
                if first < prev {
                    self.backwards.push((no + lines_before, c as u8));
                }
            }
            if self.first[c].is_none() {
                self.first[c] = next.first[c].map(|(t, n)| (t, n + lines_before));
            }
            self.last[c] = match (self.last[c], next.last[c]) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        self.backwards.extend(
            next.backwards
                .into_iter()
                .map(|(n, c)| (n + lines_before, c)),
        );
        for (t, v) in next.volumes {
            self.volumes.entry(t).or_default().extend(v);
        }
        self.gaps.merge(next.gaps);
    }
}

impl Check {
    /// A check that reports silences of at least `gap_micros` as gaps.
    pub fn with_gap(gap_micros: i64) -> Self {
        Check {
            gaps: Gaps::new(gap_micros),
            keep_volumes: true,
            ..Check::default()
        }
    }

    /// Without per-instrument volumes (no replay report to check against).
    pub fn without_volumes(mut self) -> Self {
        self.keep_volumes = false;
        self
    }
}

/// Appends the next file's check (line numbers are per file: already reported).
pub fn chain(all: &mut Check, next: Check) {
    for c in 0..4 {
        if let (Some(prev), Some((first, _))) = (all.last[c], next.first[c]) {
            if first < prev {
                all.backwards.push((0, c as u8));
            }
        }
        all.last[c] = match (all.last[c], next.last[c]) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    all.lines += next.lines;
    for (t, v) in next.volumes {
        all.volumes.entry(t).or_default().extend(v);
    }
    all.gaps.merge(next.gaps);
}

/// Loss, duplication and reordering against the replay feed's report
/// (`last_volume`: token → last volume sent; `sent`: total).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Against {
    /// Ticks the feed sent.
    pub sent: u64,
    /// Ticks captured (of the report's instruments).
    pub captured: u64,
    /// Sent, never captured.
    pub missing: u64,
    /// Captured more than once.
    pub duplicated: u64,
    /// Captured before an earlier-sent tick of the same instrument.
    pub out_of_order: u64,
    /// Per instrument with a problem: (token, missing, duplicated, out of order).
    pub worst: Vec<(u32, u64, u64, u64)>,
}

impl Against {
    /// Whether every tick sent was captured exactly once, in order.
    pub fn complete(&self) -> bool {
        self.missing == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.captured == self.sent
    }
}

/// Compares the capture with the report's `last_volume` and `sent`.
pub fn against_report(check: &Check, last_volume: &BTreeMap<String, u64>, sent: u64) -> Against {
    let mut a = Against {
        sent,
        ..Default::default()
    };
    for (tok, last) in last_volume {
        let Ok(token) = tok.parse::<u32>() else {
            continue;
        };
        let empty = Vec::new();
        let vols = check.volumes.get(&token).unwrap_or(&empty);
        a.captured += vols.len() as u64;
        let (missing, dup, ooo) = if vols.iter().all(|v| *v == 0) {
            // no volume in these ticks (indices, LTP): count only
            let n = vols.len() as u64;
            (last.saturating_sub(n), n.saturating_sub(*last), 0)
        } else {
            let mut seen = vec![0u32; *last as usize + 1];
            let mut ooo = 0u64;
            let mut beyond = 0u64;
            let mut prev = 0u32;
            for &v in vols {
                match seen.get_mut(v as usize) {
                    Some(s) if v > 0 => *s += 1,
                    _ => beyond += 1,
                }
                if v < prev {
                    ooo += 1;
                }
                prev = prev.max(v);
            }
            let missing = seen.iter().skip(1).filter(|&&s| s == 0).count() as u64;
            let dup = seen
                .iter()
                .map(|&s| u64::from(s.saturating_sub(1)))
                .sum::<u64>()
                + beyond;
            (missing, dup, ooo)
        };
        a.missing += missing;
        a.duplicated += dup;
        a.out_of_order += ooo;
        if missing + dup + ooo > 0 {
            a.worst.push((token, missing, dup, ooo));
        }
    }
    a.worst.sort_by_key(|w| std::cmp::Reverse(w.1 + w.2 + w.3));
    a.worst.truncate(20);
    a
}

/// The JSON form of an [`Against`].
pub fn against_json(a: &Against) -> Value {
    json!({
        "sent": a.sent, "captured": a.captured, "missing": a.missing, "duplicated": a.duplicated,
        "out_of_order": a.out_of_order, "complete": a.complete(),
        "instruments_with_problems": a.worst.iter().map(|(t, m, d, o)| json!({"instrument_token": t, "missing": m, "duplicated": d, "out_of_order": o})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(vols: &[(u32, u32)]) -> Check {
        let mut c = Check::default();
        for &(t, v) in vols {
            c.volumes.entry(t).or_default().push(v);
        }
        c.lines = vols.len() as u64;
        c
    }

    fn report(pairs: &[(u32, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(t, v)| (t.to_string(), *v)).collect()
    }

    #[test]
    fn exactly_once_is_complete() {
        let c = check(&[(1, 1), (1, 2), (2, 1), (1, 3)]);
        let a = against_report(&c, &report(&[(1, 3), (2, 1)]), 4);
        assert!(a.complete(), "{a:?}");
    }

    #[test]
    fn missing_duplicated_and_reordered_ticks_are_counted() {
        let c = check(&[(1, 1), (1, 3), (1, 2), (1, 3), (2, 1)]);
        let a = against_report(&c, &report(&[(1, 4), (2, 2)]), 6);
        assert_eq!(
            (a.missing, a.duplicated, a.out_of_order),
            (2, 1, 1),
            "{a:?}"
        );
        assert!(!a.complete());
        assert_eq!(a.worst[0].0, 1);
    }

    #[test]
    fn instruments_without_volume_are_checked_by_count() {
        let c = check(&[(9, 0), (9, 0)]);
        assert_eq!(against_report(&c, &report(&[(9, 3)]), 3).missing, 1);
        assert!(against_report(&c, &report(&[(9, 2)]), 2).complete());
    }

    #[test]
    fn a_hole_in_one_instrument_while_its_connection_ticks_is_a_gap() {
        let mut g = Gaps::new(30_000_000);
        let s = 1_000_000;
        for t in 0..200 {
            g.see(1, 1, t * s); // instrument 1 ticks every second ...
            if !(50..120).contains(&t) {
                g.see(2, 1, t * s); // ... instrument 2 has a 70 s hole
            }
        }
        assert_eq!(g.instrument_gaps(), [(2, 1, 49 * s, 120 * s)]);
        assert!(g.connections.is_empty());
        // The same hole split across two parts is still found.
        let (mut a, mut b) = (Gaps::new(30 * s), Gaps::new(30 * s));
        a.see(2, 1, 49 * s);
        a.see(1, 1, 60 * s);
        b.see(1, 1, 61 * s);
        b.see(2, 1, 120 * s);
        a.merge(b);
        assert_eq!(a.instrument_gaps(), [(2, 1, 49 * s, 120 * s)]);
    }

    #[test]
    fn a_silent_connection_is_one_connection_gap_not_one_per_instrument() {
        let mut g = Gaps::new(30_000_000);
        let s = 1_000_000;
        for t in [0, 1, 2, 100, 101] {
            g.see(1, 2, t * s);
            g.see(2, 2, t * s);
        }
        assert_eq!(g.connections, [(2, 2 * s, 100 * s)]);
        assert!(g.instrument_gaps().is_empty());
    }
}
