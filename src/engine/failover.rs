//! Failover: the tertiary connection takes over the instruments of a primary
//! or secondary that has not been open for `failover_after_ms`, and hands
//! them back once that connection delivers again.
//!
//! Timeline of one takeover (make before break, both ways):
//!
//! ```text
//!  primary:   ticks ─┤ down ·········· reconnecting ···· open, resubscribed ─ frame ─ ticks ──
//!  tertiary:         │  failover_after │ subscribe ─ ticks ───────────────────────────┤ unsubscribe
//!                    │◄── gap with the tertiary ──►│                                   │
//!                    │◄──────── gap without it (the primary's outage) ───────────────►│
//! ```
//!
//! - **Takeover** starts when the failed connection has been down for
//!   `failover_after_ms`; the tertiary (connected on demand, or already
//!   connected when `warm`) subscribes the failed connection's instruments
//!   in their modes. If both fail, it carries primary's first, then
//!   secondary's, while its 3000-instrument capacity lasts, and logs and
//!   records which it could not carry.
//! - **Handback** waits until the recovered connection is open, has
//!   resubscribed, and has delivered a frame (a tick or a heartbeat) — proof
//!   that it works — and only then unsubscribes the tertiary. Unsubscribing
//!   first would open a second gap if the recovered connection failed again
//!   right after its handshake; keeping both for the short overlap costs at
//!   most one heartbeat interval of double subscription.
//! - Ticks written during a takeover carry `connection_id` 3.
//! - Each takeover is recorded (start, end, instruments, the gap observed with
//!   the tertiary and the gap the failed connection alone would have left).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Role, MAX_INSTRUMENTS};
use crate::kite::Mode;
use crate::net::Connection;
use crate::stats::Stats;

/// Records kept.
const KEEP: usize = 500;

/// What failover needs of a connection: its instruments, whether and how
/// long it has been down, and subscribe/unsubscribe. [`Connection`] is the
/// real one; the tests drive [`Failover::step`] with fakes on fake time.
pub trait Carrier {
    /// Instruments wanted on it, with modes.
    fn desired(&self) -> &BTreeMap<u32, Mode>;
    /// How long it has not been open (None while open or idle on purpose).
    fn down_for(&self, now: Instant) -> Option<Duration>;
    /// Open, resubscribed, and a frame has arrived since.
    fn is_delivering(&self) -> bool;
    /// Receive time of the first tick since [`Carrier::mark`], epoch µs.
    fn first_tick_since_mark(&self) -> Option<i64>;
    /// Starts watching for the next tick.
    fn mark(&mut self);
    /// Adds instruments in `mode`.
    fn subscribe(&mut self, tokens: &[u32], mode: Mode);
    /// Removes instruments.
    fn unsubscribe(&mut self, tokens: &[u32]);
    /// Its role, for the log.
    fn role(&self) -> Role;
}

impl Carrier for Connection {
    fn desired(&self) -> &BTreeMap<u32, Mode> {
        Connection::desired(self)
    }
    fn down_for(&self, now: Instant) -> Option<Duration> {
        Connection::down_for(self, now)
    }
    fn is_delivering(&self) -> bool {
        Connection::is_delivering(self)
    }
    fn first_tick_since_mark(&self) -> Option<i64> {
        Connection::first_tick_since_mark(self)
    }
    fn mark(&mut self) {
        Connection::mark(self)
    }
    fn subscribe(&mut self, tokens: &[u32], mode: Mode) {
        Connection::subscribe(self, tokens, mode)
    }
    fn unsubscribe(&mut self, tokens: &[u32]) {
        Connection::unsubscribe(self, tokens)
    }
    fn role(&self) -> Role {
        Connection::role(self)
    }
}

/// What the tertiary can carry of the failed connections' instruments.
/// `failed` in priority order (primary first); instruments the tertiary
/// already has are neither carried again nor refused.
pub fn plan(
    failed: &[&BTreeMap<u32, Mode>],
    tertiary: &BTreeMap<u32, Mode>,
    capacity: usize,
) -> (Vec<(u32, Mode)>, Vec<u32>) {
    let mut room = capacity.saturating_sub(tertiary.len());
    let mut carried = Vec::new();
    let mut refused = Vec::new();
    for list in failed {
        for (&t, &m) in list.iter() {
            if tertiary.contains_key(&t) || carried.iter().any(|(c, _)| *c == t) {
                continue;
            }
            if room > 0 {
                carried.push((t, m));
                room -= 1;
            } else {
                refused.push(t);
            }
        }
    }
    (carried, refused)
}

/// Subscribes `list` on `c`, one request per mode.
fn subscribe_by_mode<C: Carrier>(c: &mut C, list: &[(u32, Mode)]) {
    for mode in [Mode::Ltp, Mode::Quote, Mode::Full] {
        let tokens: Vec<u32> = list
            .iter()
            .filter(|(_, m)| *m == mode)
            .map(|(t, _)| *t)
            .collect();
        if !tokens.is_empty() {
            c.subscribe(&tokens, mode);
        }
    }
}

/// One takeover, for the status port and the log.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The connection that failed.
    pub connection_id: u8,
    /// When the tertiary took over, epoch µs.
    pub start_micros: i64,
    /// When it handed back (None while active).
    pub end_micros: Option<i64>,
    /// Instruments carried.
    pub instruments: usize,
    /// Instruments it could not carry (capacity).
    pub not_carried: Vec<u32>,
    /// Last tick from the failed connection before it failed, epoch µs.
    pub last_tick_before_micros: i64,
    /// First tick on the tertiary after the takeover, epoch µs.
    pub tertiary_first_tick_micros: Option<i64>,
    /// First tick from the recovered connection, epoch µs.
    pub recovered_first_tick_micros: Option<i64>,
}

impl Record {
    /// The gap observed with the tertiary: last tick before the failure →
    /// first tick on the tertiary, ms.
    pub fn gap_ms(&self) -> Option<f64> {
        let first = self.tertiary_first_tick_micros?;
        (self.last_tick_before_micros > 0)
            .then(|| (first - self.last_tick_before_micros) as f64 / 1000.0)
    }

    /// The gap the failed connection alone would have left, ms.
    pub fn outage_ms(&self) -> Option<f64> {
        let first = self.recovered_first_tick_micros?;
        (self.last_tick_before_micros > 0)
            .then(|| (first - self.last_tick_before_micros) as f64 / 1000.0)
    }
}

#[derive(Debug)]
struct Active {
    record: usize,
    carried: Vec<(u32, Mode)>,
}

/// The failover state, stepped by the event loop's timers.
#[derive(Debug)]
pub struct Failover {
    after: Duration,
    enabled: bool,
    active: [Option<Active>; 2],
    records: Vec<Record>,
    /// Handed-back records still waiting for the recovered connection's
    /// first tick (its first frame may have been a heartbeat): (record, connection index).
    awaiting: Vec<(usize, usize)>,
    /// Takeovers so far.
    pub takeovers: u64,
    /// Records kept (oldest finished ones go first).
    keep: usize,
}

impl Failover {
    /// Takeover after `after` down; disabled when the tertiary mirrors the
    /// primary (hot standby) — then it carries it all the time.
    pub fn new(after: Duration, enabled: bool) -> Self {
        Failover {
            after,
            enabled,
            active: [None, None],
            records: Vec::new(),
            awaiting: Vec::new(),
            takeovers: 0,
            keep: KEEP,
        }
    }

    /// Whether a takeover is active.
    pub fn is_active(&self) -> bool {
        self.active.iter().any(Option::is_some)
    }

    /// Active takeovers: (failed connection id, instruments carried).
    pub fn carrying(&self) -> Vec<(u8, usize)> {
        self.active
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.as_ref().map(|a| (i as u8 + 1, a.carried.len())))
            .collect()
    }

    /// The tokens the active takeovers carry.
    fn tokens_carried(&self) -> Vec<u32> {
        self.active
            .iter()
            .flatten()
            .flat_map(|o| o.carried.iter().map(|(t, _)| *t))
            .collect()
    }

    /// What the tertiary carries for active takeovers (not its own list).
    pub fn carried(&self) -> BTreeMap<u32, Mode> {
        self.active
            .iter()
            .flatten()
            .flat_map(|a| a.carried.iter().copied())
            .collect()
    }

    /// After a reload changed the failed connections' lists: each active
    /// takeover carries the new list (capacity permitting), drops what left
    /// it (unless the tertiary's own list, `own`, or the other takeover has
    /// it), and follows mode changes.
    pub fn resync<C: Carrier>(&mut self, conns: &mut [C], own: &std::collections::BTreeSet<u32>) {
        if conns.len() < 3 {
            return;
        }
        for i in 0..2 {
            let Some(mut a) = self.active[i].take() else {
                continue;
            };
            let (failed, rest) = conns.split_at_mut(2);
            let tertiary = &mut rest[0];
            let want = failed[i].desired();
            let others = self.tokens_carried();
            let left: Vec<u32> = a
                .carried
                .iter()
                .map(|(t, _)| *t)
                .filter(|t| !want.contains_key(t))
                .collect();
            let drop: Vec<u32> = left
                .iter()
                .copied()
                .filter(|t| !own.contains(t) && !others.contains(t))
                .collect();
            if !drop.is_empty() {
                tertiary.unsubscribe(&drop);
            }
            a.carried.retain(|(t, _)| want.contains_key(t));
            // New instruments and mode changes, while the tertiary has room.
            let mut room = MAX_INSTRUMENTS.saturating_sub(tertiary.desired().len());
            let mut subscribe: Vec<(u32, Mode)> = Vec::new();
            for (&t, &m) in want {
                match a.carried.iter_mut().find(|(c, _)| *c == t) {
                    Some(entry) if entry.1 != m => {
                        entry.1 = m;
                        subscribe.push((t, m));
                    }
                    Some(_) => {}
                    None if tertiary.desired().contains_key(&t) => {}
                    None if room > 0 => {
                        room -= 1;
                        a.carried.push((t, m));
                        subscribe.push((t, m));
                    }
                    None => self.records[a.record].not_carried.push(t),
                }
            }
            subscribe_by_mode(tertiary, &subscribe);
            self.records[a.record].instruments = a.carried.len();
            if !left.is_empty() || !subscribe.is_empty() {
                tracing::info!(
                    "reload during a takeover of connection {}: the tertiary now carries {} of its instruments ({} dropped, {} added or re-moded)",
                    i + 1,
                    a.carried.len(),
                    left.len(),
                    subscribe.len()
                );
            }
            self.active[i] = Some(a);
        }
    }

    /// Every takeover, oldest first.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Starts or ends takeovers as the connections' states require.
    pub fn step<C: Carrier>(
        &mut self,
        now: Instant,
        now_micros: i64,
        conns: &mut [C],
        stats: &Stats,
    ) {
        if !self.enabled || conns.len() < 3 {
            return;
        }
        let records = &mut self.records;
        self.awaiting.retain(|&(rec, i)| {
            match (records.get_mut(rec), conns[i].first_tick_since_mark()) {
                (Some(r), Some(first)) => {
                    r.recovered_first_tick_micros = Some(first);
                    false
                }
                (Some(_), None) => true,
                (None, _) => false,
            }
        });
        for i in 0..2 {
            match &self.active[i] {
                None => {
                    let due = !conns[i].desired().is_empty()
                        && conns[i].down_for(now).is_some_and(|d| d >= self.after);
                    if due {
                        self.take_over(i, now, now_micros, conns, stats);
                    }
                }
                Some(a) => {
                    let rec = a.record;
                    if self.records[rec].tertiary_first_tick_micros.is_none() {
                        self.records[rec].tertiary_first_tick_micros =
                            conns[2].first_tick_since_mark();
                    }
                    if conns[i].is_delivering() {
                        self.hand_back(i, now_micros, conns);
                    }
                }
            }
        }
    }

    fn take_over<C: Carrier>(
        &mut self,
        i: usize,
        now: Instant,
        now_micros: i64,
        conns: &mut [C],
        stats: &Stats,
    ) {
        let (failed, rest) = conns.split_at_mut(2);
        let tertiary = &mut rest[0];
        let (mut carried, mut refused) =
            plan(&[failed[i].desired()], tertiary.desired(), MAX_INSTRUMENTS);
        if i == 0 && !refused.is_empty() {
            // The secondary failed (and was taken over) first, but the
            // primary's instruments come first: make room by giving up the
            // secondary's last carried instruments.
            if let Some(sec) = self.active[1].as_mut() {
                let n = refused.len().min(sec.carried.len());
                let evicted: Vec<u32> = sec
                    .carried
                    .split_off(sec.carried.len() - n)
                    .into_iter()
                    .map(|(t, _)| t)
                    .collect();
                tertiary.unsubscribe(&evicted);
                let r = &mut self.records[sec.record];
                r.instruments -= evicted.len();
                r.not_carried.extend(&evicted);
                tracing::warn!(
                    "tertiary gives up {} of connection 2's instruments to carry connection 1's first",
                    evicted.len()
                );
                (carried, refused) =
                    plan(&[failed[0].desired()], tertiary.desired(), MAX_INSTRUMENTS);
            }
        }
        let down = failed[i].down_for(now).unwrap_or_default();
        let role = failed[i].role().as_str();
        if refused.is_empty() {
            tracing::warn!(
                "connection {} ({role}) down for {} ms: tertiary takes over its {} instruments",
                i + 1,
                down.as_millis(),
                carried.len()
            );
        } else {
            tracing::error!(
                "connection {} ({role}) down for {} ms: tertiary takes over {} instruments; {} NOT carried (tertiary full): {:?}",
                i + 1,
                down.as_millis(),
                carried.len(),
                refused.len(),
                &refused[..refused.len().min(50)]
            );
        }
        subscribe_by_mode(tertiary, &carried);
        tertiary.mark();
        failed[i].mark();
        // A record still waiting for this connection's first tick after an
        // earlier handback never gets one: it failed again before a tick.
        self.awaiting.retain(|&(_, c)| c != i);
        self.trim();
        self.records.push(Record {
            connection_id: i as u8 + 1,
            start_micros: now_micros,
            end_micros: None,
            instruments: carried.len(),
            not_carried: refused,
            last_tick_before_micros: stats.conns[i].last_tick_micros.load(Ordering::Relaxed),
            tertiary_first_tick_micros: None,
            recovered_first_tick_micros: None,
        });
        self.takeovers += 1;
        self.active[i] = Some(Active {
            record: self.records.len() - 1,
            carried,
        });
    }

    /// Makes room for one record: drops the oldest one no active takeover
    /// points at, and renumbers the references of the rest.
    fn trim(&mut self) {
        if self.records.len() < self.keep {
            return;
        }
        let active: Vec<usize> = self.active.iter().flatten().map(|a| a.record).collect();
        let Some(victim) = (0..self.records.len()).find(|r| !active.contains(r)) else {
            return;
        };
        self.records.remove(victim);
        for a in self.active.iter_mut().flatten() {
            if a.record > victim {
                a.record -= 1;
            }
        }
        self.awaiting.retain_mut(|(rec, _)| {
            if *rec == victim {
                return false;
            }
            if *rec > victim {
                *rec -= 1;
            }
            true
        });
    }

    fn hand_back<C: Carrier>(&mut self, i: usize, now_micros: i64, conns: &mut [C]) {
        let Some(a) = self.active[i].take() else {
            return;
        };
        // Keep what the other active takeover also carries.
        let other = self.tokens_carried();
        let tokens: Vec<u32> = a
            .carried
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| !other.contains(t))
            .collect();
        conns[2].unsubscribe(&tokens);
        let r = &mut self.records[a.record];
        r.end_micros = Some(now_micros);
        r.recovered_first_tick_micros = conns[i].first_tick_since_mark();
        if r.recovered_first_tick_micros.is_none() {
            self.awaiting.push((a.record, i));
        }
        tracing::info!(
            "connection {} delivers again: tertiary hands back {} instruments after {} ms (gap with the tertiary {:?} ms, without it {:?} ms)",
            i + 1,
            tokens.len(),
            (now_micros - r.start_micros) / 1000,
            r.gap_ms().map(|g| g.round()),
            r.outage_ms().map(|g| g.round())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(tokens: std::ops::Range<u32>, mode: Mode) -> BTreeMap<u32, Mode> {
        tokens.map(|t| (t, mode)).collect()
    }

    #[test]
    fn primary_first_then_secondary_while_capacity_lasts() {
        let p = list(1..2991, Mode::Quote); // 2990
        let s = list(5000..5020, Mode::Full); // 20
        let (carried, refused) = plan(&[&p, &s], &BTreeMap::new(), 3000);
        assert_eq!(carried.len(), 3000);
        assert!(carried[..2990].iter().all(|(_, m)| *m == Mode::Quote));
        assert_eq!(
            carried[2990..]
                .iter()
                .filter(|(_, m)| *m == Mode::Full)
                .count(),
            10
        );
        assert_eq!(refused, (5010..5020).collect::<Vec<_>>());
    }

    #[test]
    fn instruments_already_on_the_tertiary_count_against_capacity_but_are_not_refused() {
        let p = list(1..6, Mode::Quote);
        let t = list(3..5, Mode::Quote);
        let (carried, refused) = plan(&[&p], &t, 3);
        assert_eq!(carried.iter().map(|c| c.0).collect::<Vec<_>>(), [1]);
        assert_eq!(refused, [2, 5]);
    }

    /// A connection on fake time: the test says when it went down and
    /// whether it delivers.
    struct Fake {
        role: Role,
        desired: BTreeMap<u32, Mode>,
        down_since: Option<Instant>,
        delivering: bool,
        first_tick: Option<i64>,
    }

    impl Fake {
        fn new(role: Role, desired: BTreeMap<u32, Mode>) -> Self {
            Fake {
                role,
                desired,
                down_since: None,
                delivering: true,
                first_tick: None,
            }
        }
        fn fail(&mut self, at: Instant) {
            self.down_since = Some(at);
            self.delivering = false;
        }
        fn recover(&mut self, first_tick: Option<i64>) {
            self.down_since = None;
            self.delivering = true;
            self.first_tick = first_tick;
        }
    }

    impl Carrier for Fake {
        fn desired(&self) -> &BTreeMap<u32, Mode> {
            &self.desired
        }
        fn down_for(&self, now: Instant) -> Option<Duration> {
            self.down_since.map(|t| now.saturating_duration_since(t))
        }
        fn is_delivering(&self) -> bool {
            self.delivering
        }
        fn first_tick_since_mark(&self) -> Option<i64> {
            self.first_tick
        }
        fn mark(&mut self) {
            self.first_tick = None;
        }
        fn subscribe(&mut self, tokens: &[u32], mode: Mode) {
            self.desired.extend(tokens.iter().map(|t| (*t, mode)));
        }
        fn unsubscribe(&mut self, tokens: &[u32]) {
            for t in tokens {
                self.desired.remove(t);
            }
        }
        fn role(&self) -> Role {
            self.role
        }
    }

    fn three() -> [Fake; 3] {
        [
            Fake::new(Role::Primary, list(1..4, Mode::Quote)),
            Fake::new(Role::Secondary, list(10..12, Mode::Full)),
            Fake::new(Role::Tertiary, BTreeMap::new()),
        ]
    }

    const AFTER: Duration = Duration::from_millis(3000);

    #[test]
    fn the_tertiary_takes_over_exactly_when_the_primary_has_been_down_for_the_limit() {
        let stats = Stats::default();
        let (mono, clock) = crate::time::Mono::manual();
        let mut f = Failover::new(AFTER, true);
        let mut c = three();
        c[0].fail(mono.now());
        clock.advance(AFTER - Duration::from_millis(1));
        f.step(mono.now(), 0, &mut c, &stats);
        assert!(!f.is_active(), "not before failover_after_ms");
        assert!(c[2].desired.is_empty());
        clock.advance(Duration::from_millis(1));
        f.step(mono.now(), 5, &mut c, &stats);
        assert_eq!(f.carrying(), [(1, 3)]);
        assert_eq!(
            c[2].desired,
            list(1..4, Mode::Quote),
            "same instruments, same mode"
        );
        assert_eq!(f.records()[0].start_micros, 5);
        assert_eq!(f.takeovers, 1);
    }

    #[test]
    fn handback_waits_for_delivery_and_keeps_what_another_takeover_carries() {
        let stats = Stats::default();
        let (mono, clock) = crate::time::Mono::manual();
        let mut f = Failover::new(AFTER, true);
        let mut c = three();
        c[0].fail(mono.now());
        c[1].fail(mono.now());
        clock.advance(AFTER);
        f.step(mono.now(), 1, &mut c, &stats);
        assert_eq!(f.carrying(), [(1, 3), (2, 2)]);
        // Open again but no frame yet: not proven, keep carrying.
        c[0].down_since = None;
        f.step(mono.now(), 2, &mut c, &stats);
        assert_eq!(f.carrying().len(), 2);
        c[0].recover(Some(77));
        f.step(mono.now(), 3, &mut c, &stats);
        assert_eq!(f.carrying(), [(2, 2)]);
        assert_eq!(
            c[2].desired,
            list(10..12, Mode::Full),
            "only the secondary's remain"
        );
        let r = &f.records()[0];
        assert_eq!(
            (r.end_micros, r.recovered_first_tick_micros),
            (Some(3), Some(77))
        );
    }

    #[test]
    fn a_takeover_that_outlives_hundreds_of_others_keeps_its_record() {
        let stats = Stats::default();
        let (mono, clock) = crate::time::Mono::manual();
        let mut f = Failover::new(AFTER, true);
        f.keep = 4;
        let mut c = three();
        // The secondary fails for good.
        c[1].fail(mono.now());
        clock.advance(AFTER);
        f.step(mono.now(), 1, &mut c, &stats);
        // The primary flaps ten times; its last handback sees no tick yet.
        for k in 0..10 {
            c[0].fail(mono.now());
            clock.advance(AFTER);
            f.step(mono.now(), 10 + k, &mut c, &stats);
            c[0].recover(None);
            f.step(mono.now(), 20 + k, &mut c, &stats);
        }
        assert_eq!(f.records().len(), 4);
        let active: Vec<&Record> = f
            .records()
            .iter()
            .filter(|r| r.end_micros.is_none())
            .collect();
        assert_eq!(
            active.len(),
            1,
            "the secondary's takeover is still recorded"
        );
        assert_eq!(active[0].connection_id, 2);
        assert_eq!(active[0].start_micros, 1);
        // The primary's last record waits for its first tick, and gets it.
        c[0].first_tick = Some(999);
        f.step(mono.now(), 40, &mut c, &stats);
        let last = f.records().last().unwrap();
        assert_eq!(
            (last.connection_id, last.recovered_first_tick_micros),
            (1, Some(999))
        );
        assert!(
            f.records()
                .iter()
                .filter(|r| r.recovered_first_tick_micros == Some(999))
                .count()
                == 1,
            "the tick went to one record only"
        );
        // The secondary comes back: its own record is closed.
        c[1].recover(Some(5));
        f.step(mono.now(), 50, &mut c, &stats);
        let sec: Vec<&Record> = f
            .records()
            .iter()
            .filter(|r| r.connection_id == 2)
            .collect();
        assert_eq!(sec.len(), 1);
        assert_eq!((sec[0].start_micros, sec[0].end_micros), (1, Some(50)));
    }

    #[test]
    fn a_reload_during_a_takeover_moves_the_carried_set_with_the_failed_list() {
        let stats = Stats::default();
        let (mono, clock) = crate::time::Mono::manual();
        let mut f = Failover::new(AFTER, true);
        let mut c = three();
        c[0].fail(mono.now());
        clock.advance(AFTER);
        f.step(mono.now(), 1, &mut c, &stats);
        assert_eq!(c[2].desired, list(1..4, Mode::Quote));
        // The reload changed the (down) primary's list: 1 gone, 4 new, 3 to full.
        c[0].desired = list(2..5, Mode::Quote);
        c[0].desired.insert(3, Mode::Full);
        f.resync(&mut c, &std::collections::BTreeSet::new());
        let mut want = list(2..5, Mode::Quote);
        want.insert(3, Mode::Full);
        assert_eq!(
            c[2].desired, want,
            "the tertiary follows, nothing uncaptured"
        );
        assert_eq!(f.carried(), want);
        assert_eq!(f.records()[0].instruments, 3);
        // Handback then releases exactly the new set.
        c[0].recover(Some(9));
        f.step(mono.now(), 2, &mut c, &stats);
        assert!(c[2].desired.is_empty());
    }
}
