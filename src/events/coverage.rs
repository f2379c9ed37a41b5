//! Coverage: from the events journal, when each instrument was captured.
//!
//! **The rule.** An instrument is *watched* while some connection wants it
//! (it is in that connection's subscriptions: subscribe/unsubscribe events,
//! or a `day_start` snapshot), and *covered* while some connection that
//! wants it is open. A **gap** is watched and not covered, with the cause
//! seen when it began:
//!
//! - a connection closed (`connection 1 closed: read: Connection reset`);
//!   the gap starts at its last frame (`silent_ms` before the close: a
//!   stale connection received nothing for `stale_after_ms` before it was
//!   noticed);
//! - the capture was not running (a `service_start` with no stop before it:
//!   killed or crashed; the gap starts at the previous run's last record —
//!   heartbeats every 10 s bound it);
//! - a connection not yet open since the service started (`startup`: the
//!   first connect; flagged so that `verify` can allow a short one).
//!
//! Watching ends on an unsubscribe (a control call, a reload, the last hub
//! client leaving): coverage ending there is not a gap. Between a clean
//! stop and the next start nothing is watched. A gap shorter than a second
//! is still a gap.
//!
//! The [`Tracker`] is pure (events in, intervals out): `tickcap coverage`,
//! `verify`, `analyze` and the live `/instruments` share it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Event;

/// What kind of gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapKind {
    /// A connection that had been open closed.
    Disconnected,
    /// The capture was not running (no stop record before the next start).
    NotRunning,
    /// The connection had not opened yet since the service started.
    Startup,
}

/// A time an instrument was watched and not captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The instrument.
    pub instrument_token: u32,
    /// Start, epoch µs.
    pub start: i64,
    /// End, epoch µs.
    pub end: i64,
    /// What kind.
    pub kind: GapKind,
    /// Why, in words.
    pub cause: String,
}

/// One instrument's coverage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instrument {
    /// Covered intervals (start, end), epoch µs, in order.
    pub covered: Vec<(i64, i64)>,
    /// Its gaps, in order.
    pub gaps: Vec<Gap>,
    /// Total covered, µs.
    pub covered_micros: i64,
    /// Total watched, µs.
    pub watched_micros: i64,
}

impl Instrument {
    /// Covered share of the watched time (1.0 when never watched).
    pub fn share(&self) -> f64 {
        if self.watched_micros <= 0 {
            1.0
        } else {
            self.covered_micros as f64 / self.watched_micros as f64
        }
    }
}

/// A run of the service: from a start to a stop (or its last record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Run {
    /// Start, epoch µs.
    pub start: i64,
    /// End, epoch µs.
    pub end: i64,
    /// Ended with a stop record (false: killed, crashed, or still running).
    pub clean: bool,
}

#[derive(Debug, Clone, Default)]
struct Conn {
    open: bool,
    opened_in_run: bool,
    wants: BTreeSet<u32>,
    last_problem: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Token {
    covered_since: Option<i64>,
    /// When the cover in progress began (not moved by [`Tracker::roll`]).
    cover_start: Option<i64>,
    /// The last covered intervals (kept across a roll), for bars.
    recent: std::collections::VecDeque<(i64, i64)>,
    watched_since: Option<i64>,
    gap: Option<(i64, GapKind, String)>,
    /// The last time [`Tracker::update`] looked at it: a close that ends a
    /// cover back at its last frame never reaches before this.
    touched: i64,
    out: Instrument,
}

impl Token {
    /// The cover in progress ends at `at`: into today's totals and the
    /// recent intervals bars are checked against.
    fn stop_cover(&mut self, at: i64) {
        if let Some(s) = self.covered_since.take() {
            self.out.covered_micros += at - s;
            if at > s {
                self.out.covered.push((s, at));
            }
        }
        if let Some(s) = self.cover_start.take() {
            if self.recent.len() == 16 {
                self.recent.pop_front();
            }
            self.recent.push_back((s, at));
        }
    }
}

/// Replays events into per-instrument coverage.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    conns: [Conn; 3],
    tokens: BTreeMap<u32, Token>,
    run: Option<(i64, bool)>,
    runs: Vec<Run>,
    last: i64,
    started: bool,
}

/// Everything coverage found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Per instrument.
    pub instruments: BTreeMap<u32, Instrument>,
    /// The runs seen.
    pub runs: Vec<Run>,
    /// First and last record, epoch µs.
    pub span: Option<(i64, i64)>,
}

impl Report {
    /// Every gap, by start time then instrument.
    pub fn gaps(&self) -> Vec<&Gap> {
        let mut v: Vec<&Gap> = self.instruments.values().flat_map(|i| &i.gaps).collect();
        v.sort_by_key(|g| (g.start, g.instrument_token));
        v
    }
}

/// A snapshot of one connection (in a `day_start` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnSnapshot {
    /// 1, 2 or 3.
    pub connection_id: u8,
    /// Open at the snapshot.
    pub open: bool,
    /// What it wants.
    pub tokens: Vec<u32>,
    /// Why it last failed.
    pub last_problem: Option<String>,
}

impl Tracker {
    /// Feeds one event at `at` (epoch µs). Times never go back: an event
    /// stamped before the previous one (another thread's clock read) counts
    /// at the previous one's time.
    pub fn feed(&mut self, at: i64, event: &Event) {
        let at = if self.started { at.max(self.last) } else { at };
        self.started = true;
        match event {
            Event::ServiceStart { .. } => {
                if let Some((start, _)) = self.run.take() {
                    // No stop record: the run ended somewhere after its last record.
                    let end = self.last;
                    self.runs.push(Run {
                        start,
                        end,
                        clean: false,
                    });
                    let watched: Vec<u32> = self.watched();
                    for t in &watched {
                        self.end_cover(*t, end);
                        self.end_gap(*t, end);
                        self.begin_gap(
                            *t,
                            end,
                            GapKind::NotRunning,
                            "tickcap was not running (no stop record: killed or crashed)".into(),
                        );
                    }
                }
                // A not-running gap goes on until the instrument is covered
                // again, or until a connection opens without it (this run
                // does not want it).
                self.conns = Default::default();
                self.run = Some((at, true));
                self.last = at;
                return;
            }
            Event::Stopping { .. } | Event::ServiceStop { .. } => {
                if let Some((start, _)) = self.run.take() {
                    let all: Vec<u32> = self.tokens.keys().copied().collect();
                    self.conns = Default::default();
                    for t in all {
                        self.update(t, at, true);
                    }
                    self.runs.push(Run {
                        start,
                        end: at,
                        clean: true,
                    });
                }
                self.last = at;
                return;
            }
            _ => {}
        }
        if self.run.is_none() {
            // Records outside a run (the drain after `stopping`) change
            // nothing; a file that starts mid-run starts a run here.
            if !matches!(event, Event::DayStart { .. }) && !self.runs.is_empty() {
                self.last = at;
                return;
            }
            self.run = Some((at, true));
        }
        self.last = at;
        match event {
            Event::DayStart { connections } => {
                self.conns = Default::default();
                for c in connections {
                    let Some(slot) = conn_slot(c.connection_id) else {
                        continue;
                    };
                    let k = &mut self.conns[slot];
                    k.open = c.open;
                    k.opened_in_run = c.open || c.last_problem.is_some();
                    k.wants = c.tokens.iter().copied().collect();
                    k.last_problem = c.last_problem.clone();
                }
                let touched: BTreeSet<u32> = self
                    .conns
                    .iter()
                    .flat_map(|c| c.wants.iter().copied())
                    .chain(self.tokens.keys().copied())
                    .collect();
                for t in touched {
                    self.update(t, at, true);
                }
            }
            Event::ConnectionOpen { connection_id, .. } => {
                if let Some(slot) = conn_slot(*connection_id) {
                    self.conns[slot].open = true;
                    self.conns[slot].opened_in_run = true;
                    self.update_conn(slot, at);
                    let stale: Vec<u32> = self
                        .tokens
                        .iter()
                        .filter(|(_, t)| matches!(t.gap, Some((_, GapKind::NotRunning, _))))
                        .map(|(k, _)| *k)
                        .collect();
                    for t in stale {
                        self.update(t, at, true);
                    }
                }
            }
            Event::ConnectionClosed {
                connection_id,
                reason,
                silent_ms,
                ..
            } => {
                if let Some(slot) = conn_slot(*connection_id) {
                    self.conns[slot].open = false;
                    self.conns[slot].last_problem = Some(reason.clone());
                    // Nothing arrived after its last frame: the cover ends
                    // there (never before anything already accounted).
                    let silent = silent_ms.map_or(0, |ms| ms as i64 * 1000);
                    let tokens: Vec<u32> = self.conns[slot].wants.iter().copied().collect();
                    for tok in tokens {
                        let t = self.tokens.entry(tok).or_default();
                        let from = (at - silent)
                            .max(t.touched)
                            .max(t.covered_since.unwrap_or(at))
                            .min(at);
                        self.update(tok, from, false);
                    }
                }
            }
            Event::BackingOff {
                connection_id,
                reason,
                ..
            } => {
                if let Some(slot) = conn_slot(*connection_id) {
                    self.conns[slot].last_problem = Some(reason.clone());
                }
            }
            Event::Subscribe {
                connection_id,
                tokens,
                ..
            } => {
                if let Some(slot) = conn_slot(*connection_id) {
                    self.conns[slot].wants.extend(tokens.iter().copied());
                    for t in tokens {
                        self.update(*t, at, false);
                    }
                }
            }
            Event::Unsubscribe {
                connection_id,
                tokens,
                ..
            } => {
                if let Some(slot) = conn_slot(*connection_id) {
                    for t in tokens {
                        self.conns[slot].wants.remove(t);
                    }
                    for t in tokens {
                        self.update(*t, at, false);
                    }
                }
            }
            _ => {}
        }
    }

    /// The connections' state now, for the next day's `day_start`.
    pub fn snapshot(&self) -> Vec<ConnSnapshot> {
        self.conns
            .iter()
            .enumerate()
            .map(|(i, c)| ConnSnapshot {
                connection_id: i as u8 + 1,
                open: c.open,
                tokens: c.wants.iter().copied().collect(),
                last_problem: c.last_problem.clone(),
            })
            .collect()
    }

    /// Whether a run is going on (started, not stopped).
    pub fn running(&self) -> bool {
        self.run.is_some()
    }

    fn watched(&self) -> Vec<u32> {
        self.tokens
            .iter()
            .filter(|(_, t)| t.watched_since.is_some())
            .map(|(k, _)| *k)
            .collect()
    }

    fn update_conn(&mut self, slot: usize, at: i64) {
        let tokens: Vec<u32> = self.conns[slot].wants.iter().copied().collect();
        for t in tokens {
            self.update(t, at, false);
        }
    }

    fn end_cover(&mut self, token: u32, at: i64) {
        let t = self.tokens.entry(token).or_default();
        t.stop_cover(at);
        if let Some(s) = t.watched_since.take() {
            t.out.watched_micros += at - s;
        }
    }

    fn begin_gap(&mut self, token: u32, at: i64, kind: GapKind, cause: String) {
        let t = self.tokens.entry(token).or_default();
        if t.gap.is_none() {
            t.gap = Some((at, kind, cause));
        }
        t.watched_since.get_or_insert(at);
    }

    fn end_gap(&mut self, token: u32, at: i64) {
        let t = self.tokens.entry(token).or_default();
        if let Some((start, kind, cause)) = t.gap.take() {
            if at > start {
                t.out.gaps.push(Gap {
                    instrument_token: token,
                    start,
                    end: at,
                    kind,
                    cause,
                });
            }
        }
    }

    fn cause(&self, token: u32) -> (GapKind, String) {
        for (i, c) in self.conns.iter().enumerate() {
            if !c.wants.contains(&token) {
                continue;
            }
            let id = i + 1;
            return if c.opened_in_run {
                (
                    GapKind::Disconnected,
                    format!(
                        "connection {id} closed: {}",
                        c.last_problem.as_deref().unwrap_or("no reason recorded")
                    ),
                )
            } else {
                (
                    GapKind::Startup,
                    match &c.last_problem {
                        Some(p) => format!("connection {id} not open yet since the start: {p}"),
                        None => format!("connection {id} not open yet since the start"),
                    },
                )
            };
        }
        (GapKind::Disconnected, "not subscribed".into())
    }

    /// Brings one instrument's state to what the connections say at `at`.
    /// A not-running gap of an instrument no connection wants goes on
    /// unless `end_not_running`.
    fn update(&mut self, token: u32, at: i64, end_not_running: bool) {
        let wanted = self.conns.iter().any(|c| c.wants.contains(&token));
        let covered = self
            .conns
            .iter()
            .any(|c| c.open && c.wants.contains(&token));
        let (cause_kind, cause) = if wanted && !covered {
            self.cause(token)
        } else {
            (GapKind::Disconnected, String::new())
        };
        let t = self.tokens.entry(token).or_default();
        t.touched = t.touched.max(at);
        let not_running = matches!(t.gap, Some((_, GapKind::NotRunning, _)));
        if !wanted && !covered && not_running && !end_not_running {
            return;
        }
        if wanted {
            t.watched_since.get_or_insert(at);
        } else if let Some(s) = t.watched_since.take() {
            t.out.watched_micros += at - s;
        }
        if covered {
            t.covered_since.get_or_insert(at);
            t.cover_start.get_or_insert(at);
            self.end_gap(token, at);
        } else {
            t.stop_cover(at);
            if wanted {
                if t.gap.is_none() {
                    t.gap = Some((at, cause_kind, cause));
                }
            } else {
                self.end_gap(token, at);
            }
        }
    }

    /// Whether `token` was covered without a break from `start` to `end`
    /// (epoch µs; `end` may be now, with the cover still going on): a bar
    /// over that interval saw everything.
    pub fn covered_fully(&self, token: u32, start: i64, end: i64) -> bool {
        let Some(t) = self.tokens.get(&token) else {
            return false;
        };
        t.cover_start.is_some_and(|s| s <= start)
            || t.recent.iter().any(|(s, e)| *s <= start && *e >= end)
    }

    /// Covered and watched µs of each instrument up to `now` (the live
    /// `/instruments` share), without changing the tracker.
    pub fn totals_at(&self, now: i64) -> BTreeMap<u32, (i64, i64)> {
        self.tokens
            .iter()
            .map(|(k, t)| {
                let c = t.out.covered_micros + t.covered_since.map_or(0, |s| (now - s).max(0));
                let w = t.out.watched_micros + t.watched_since.map_or(0, |s| (now - s).max(0));
                (*k, (c, w))
            })
            .collect()
    }

    /// Forgets the totals (a new day), keeping the connections' state:
    /// what is covered or in a gap at `at` goes on from `at`.
    pub fn roll(&mut self, at: i64) {
        for t in self.tokens.values_mut() {
            t.out = Instrument::default();
            if t.covered_since.is_some() {
                t.covered_since = Some(at);
            }
            if t.watched_since.is_some() {
                t.watched_since = Some(at);
            }
            if let Some(g) = &mut t.gap {
                g.0 = at;
            }
        }
        self.runs.clear();
        if let Some(r) = &mut self.run {
            r.0 = at;
        }
    }

    /// Ends the replay at `end` (None: the last record) and reports. A run
    /// still going (no stop record: still running, or killed) ends there.
    pub fn finish(mut self, end: Option<i64>) -> Report {
        let end = end.unwrap_or(self.last).max(self.last);
        let first = self.runs.first().map(|r| r.start).or(self.run.map(|r| r.0));
        if let Some((start, _)) = self.run.take() {
            self.runs.push(Run {
                start,
                end,
                clean: false,
            });
        }
        let keys: Vec<u32> = self.tokens.keys().copied().collect();
        for k in keys {
            self.end_cover(k, end);
            self.end_gap(k, end);
        }
        Report {
            instruments: self.tokens.into_iter().map(|(k, t)| (k, t.out)).collect(),
            span: first.map(|f| (f, end)),
            runs: self.runs,
        }
    }
}

fn conn_slot(id: u8) -> Option<usize> {
    (1..=3).contains(&id).then(|| usize::from(id - 1))
}

/// Replays event lines (a day's journal, in file order) into a report.
/// Lines that do not parse are counted, not fatal.
pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> (Report, u64) {
    let mut t = Tracker::default();
    let mut bad = 0;
    for line in lines {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match super::parse_event_line(line) {
            Ok((at, e)) => t.feed(at, &e),
            Err(_) => bad += 1,
        }
    }
    (t.finish(None), bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Why;
    use proptest::prelude::*;

    const S: i64 = 1_000_000;

    fn start() -> Event {
        Event::ServiceStart {
            version: "t".into(),
            config_digest: "d".into(),
            pid: 1,
        }
    }
    fn sub(c: u8, tokens: &[u32]) -> Event {
        Event::Subscribe {
            connection_id: c,
            why: Why::Config,
            mode: "quote".into(),
            tokens: tokens.to_vec(),
        }
    }
    fn unsub(c: u8, tokens: &[u32]) -> Event {
        Event::Unsubscribe {
            connection_id: c,
            why: Why::Control,
            tokens: tokens.to_vec(),
        }
    }
    fn open(c: u8) -> Event {
        Event::ConnectionOpen {
            connection_id: c,
            role: "primary".into(),
            instruments: 1,
            down_ms: None,
        }
    }
    fn closed(c: u8) -> Event {
        closed_silent(c, None)
    }
    fn closed_silent(c: u8, silent_ms: Option<u64>) -> Event {
        Event::ConnectionClosed {
            connection_id: c,
            error: "read".into(),
            reason: "read: reset".into(),
            close_code: None,
            open_ms: 1,
            silent_ms,
        }
    }
    fn stop() -> Event {
        Event::Stopping {
            reason: "signal".into(),
        }
    }

    fn run(events: &[(i64, Event)]) -> Report {
        let mut t = Tracker::default();
        for (at, e) in events {
            t.feed(*at, e);
        }
        t.finish(None)
    }

    #[test]
    fn a_dropped_connection_is_a_gap_of_exactly_its_downtime() {
        let r = run(&[
            (0, start()),
            (S / 10, sub(1, &[256265, 738561])),
            (S / 5, open(1)),
            (10 * S, closed(1)),
            (10 * S + 400_000, open(1)),
            (20 * S, stop()),
        ]);
        for tok in [256265, 738561] {
            let i = &r.instruments[&tok];
            let kinds: Vec<_> = i.gaps.iter().map(|g| (g.start, g.end, g.kind)).collect();
            assert_eq!(
                kinds,
                [
                    (S / 10, S / 5, GapKind::Startup),
                    (10 * S, 10 * S + 400_000, GapKind::Disconnected)
                ]
            );
            assert_eq!(i.gaps[1].cause, "connection 1 closed: read: reset");
            assert_eq!(i.covered, [(S / 5, 10 * S), (10 * S + 400_000, 20 * S)]);
            assert_eq!(i.watched_micros, 20 * S - S / 10);
        }
        assert_eq!(
            r.runs,
            [Run {
                start: 0,
                end: 20 * S,
                clean: true
            }]
        );
    }

    #[test]
    fn a_takeover_covers_the_down_connections_instruments() {
        let r = run(&[
            (0, start()),
            (0, sub(1, &[5])),
            (0, open(1)),
            (0, open(3)),
            (5 * S, closed(1)),
            (
                6 * S,
                Event::Subscribe {
                    connection_id: 3,
                    why: Why::Failover,
                    mode: "quote".into(),
                    tokens: vec![5],
                },
            ),
            (9 * S, open(1)),
            (
                9 * S,
                Event::Unsubscribe {
                    connection_id: 3,
                    why: Why::Failover,
                    tokens: vec![5],
                },
            ),
            (10 * S, stop()),
        ]);
        let i = &r.instruments[&5];
        assert_eq!(i.gaps.len(), 1);
        assert_eq!((i.gaps[0].start, i.gaps[0].end), (5 * S, 6 * S));
        assert_eq!(i.covered_micros, 9 * S);
    }

    #[test]
    fn an_unsubscribe_ends_coverage_without_a_gap() {
        let r = run(&[
            (0, start()),
            (0, sub(1, &[5, 6])),
            (0, open(1)),
            (3 * S, unsub(1, &[5])),
            (4 * S, closed(1)),
            (10 * S, stop()),
        ]);
        assert!(r.instruments[&5].gaps.is_empty());
        assert_eq!(r.instruments[&5].covered, [(0, 3 * S)]);
        assert_eq!(r.instruments[&6].gaps.len(), 1);
        assert_eq!(r.instruments[&6].gaps[0].end, 10 * S);
    }

    #[test]
    fn a_kill_is_a_gap_from_the_last_record_to_the_next_cover() {
        let r = run(&[
            (0, start()),
            (0, sub(1, &[5])),
            (0, open(1)),
            (
                10 * S,
                Event::Heartbeat {
                    received: 1,
                    written: 1,
                },
            ),
            (30 * S, start()),
            (30 * S, sub(1, &[5])),
            (31 * S, open(1)),
            (40 * S, stop()),
        ]);
        let i = &r.instruments[&5];
        assert_eq!(i.gaps.len(), 1, "{:?}", i.gaps);
        assert_eq!(
            (i.gaps[0].start, i.gaps[0].end, i.gaps[0].kind),
            (10 * S, 31 * S, GapKind::NotRunning)
        );
        assert_eq!(r.runs.len(), 2);
        assert!(!r.runs[0].clean && r.runs[1].clean);
    }

    #[test]
    fn between_a_clean_stop_and_the_next_start_nothing_is_watched() {
        let r = run(&[
            (0, start()),
            (0, sub(1, &[5])),
            (0, open(1)),
            (10 * S, stop()),
            (10 * S, closed(1)),
            (50 * S, start()),
            (50 * S, sub(1, &[5])),
            (50 * S, open(1)),
            (60 * S, stop()),
        ]);
        assert!(r.instruments[&5].gaps.is_empty());
        assert_eq!(r.instruments[&5].covered_micros, 20 * S);
    }

    #[test]
    fn a_day_start_snapshot_carries_the_state_into_a_new_file() {
        let mut t = Tracker::default();
        t.feed(0, &start());
        t.feed(0, &sub(2, &[7]));
        t.feed(0, &open(2));
        t.feed(S, &closed(2));
        let snap = t.snapshot();
        let r = run(&[
            (
                100 * S,
                Event::DayStart {
                    connections: snap.clone(),
                },
            ),
            (101 * S, open(2)),
            (110 * S, stop()),
        ]);
        let g = &r.instruments[&7].gaps;
        assert_eq!(g.len(), 1);
        assert_eq!((g[0].start, g[0].end), (100 * S, 101 * S));
        assert_eq!(g[0].cause, "connection 2 closed: read: reset");
    }

    #[test]
    fn a_bar_is_covered_only_without_a_break_and_across_midnight() {
        let mut t = Tracker::default();
        t.feed(0, &start());
        t.feed(0, &sub(1, &[5]));
        t.feed(S, &open(1));
        t.feed(100 * S, &closed(1));
        t.feed(101 * S, &open(1));
        assert!(t.covered_fully(5, 2 * S, 60 * S));
        assert!(!t.covered_fully(5, 0, 60 * S), "before the open");
        assert!(!t.covered_fully(5, 90 * S, 150 * S), "the drop");
        t.roll(120 * S);
        assert!(
            t.covered_fully(5, 110 * S, 130 * S),
            "the roll keeps the cover's start"
        );
        assert!(!t.covered_fully(6, 110 * S, 130 * S));
    }

    #[test]
    fn a_short_reconnect_is_still_a_gap() {
        let r = run(&[
            (0, start()),
            (0, sub(1, &[5])),
            (0, open(1)),
            (S, closed(1)),
            (S + 3_000, open(1)),
            (2 * S, stop()),
        ]);
        assert_eq!(r.instruments[&5].gaps.len(), 1);
        assert_eq!(
            r.instruments[&5].gaps[0].end - r.instruments[&5].gaps[0].start,
            3_000
        );
    }

    #[test]
    fn a_stale_connection_is_a_gap_from_its_last_frame_never_before_what_was_counted() {
        let r = run(&[
            (0, start()),
            (0, sub(1, &[5])),
            (S, open(1)),
            // 5 s without a frame, noticed at 20 s: nothing arrived after 15 s.
            (20 * S, closed_silent(1, Some(5_000))),
            (21 * S, open(1)),
            // 4 s after the reopen, silent "for 9 s": the cover ends at the
            // reopen, not before it.
            (25 * S, closed_silent(1, Some(9_000))),
            (26 * S, open(1)),
            (30 * S, stop()),
        ]);
        let i = &r.instruments[&5];
        let gaps: Vec<_> = i.gaps.iter().map(|g| (g.start, g.end, g.kind)).collect();
        assert_eq!(
            gaps,
            [
                (0, S, GapKind::Startup),
                (15 * S, 21 * S, GapKind::Disconnected),
                (21 * S, 26 * S, GapKind::Disconnected)
            ]
        );
        assert_eq!(i.covered, [(S, 15 * S), (26 * S, 30 * S)]);
        assert_eq!(i.covered_micros + 12 * S, i.watched_micros);
    }

    proptest! {
        /// Whatever happens, per instrument: covered + gaps = watched, the
        /// intervals are ordered and disjoint, and a live total never
        /// disagrees with the final one.
        #[test]
        fn covered_plus_gaps_is_watched(ops in proptest::collection::vec((0u8..8, 1u8..4, 0u32..4, 0i64..5_000_000), 1..60)) {
            let mut t = Tracker::default();
            let mut at = 0;
            for (op, c, tok, dt) in ops {
                at += dt;
                let e = match op {
                    0 => start(),
                    1 => sub(c, &[tok]),
                    2 => unsub(c, &[tok]),
                    3 => open(c),
                    4 => closed(c),
                    5 => stop(),
                    6 => Event::Heartbeat { received: 0, written: 0 },
                    _ => closed_silent(c, Some(u64::from(tok) * 700 + dt as u64 / 1000)),
                };
                t.feed(at, &e);
            }
            let live = t.totals_at(at);
            let r = t.finish(Some(at));
            for (tok, i) in &r.instruments {
                let gaps: i64 = i.gaps.iter().map(|g| g.end - g.start).sum();
                prop_assert_eq!(i.covered_micros + gaps, i.watched_micros, "{}: {:?}", tok, i);
                prop_assert_eq!(i.covered_micros, i.covered.iter().map(|(s, e)| e - s).sum::<i64>());
                for w in i.covered.windows(2) {
                    prop_assert!(w[0].1 <= w[1].0);
                }
                for g in &i.gaps {
                    prop_assert!(g.start < g.end);
                    prop_assert!(i.covered.iter().all(|(s, e)| *e <= g.start || *s >= g.end), "{tok}: gap inside cover {i:?}");
                }
                prop_assert_eq!(live.get(tok).map(|x| x.0), Some(i.covered_micros));
                prop_assert_eq!(live.get(tok).map(|x| x.1), Some(i.watched_micros));
            }
        }
    }
}
