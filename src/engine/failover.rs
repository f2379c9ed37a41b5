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
//! - What the tertiary carries is not a copy made at takeover: the
//!   [`Ledger`] derives it from the failed connection's claims while the
//!   takeover lasts, so a control call, hub demand or reload that changes
//!   the failed connection's set during the takeover reaches the tertiary at
//!   once, and handback releases exactly what is carried then.
//! - A connection Kite refused with 401/403 is not taken over when the
//!   tertiary uses the same key and token: Kite would refuse it too.
//!   `/connections` says so instead (`failover_blocked`).
//! - Each takeover is recorded (start, end, instruments, the gap observed with
//!   the tertiary and the gap the failed connection alone would have left).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Role;
use crate::engine::ledger::Ledger;
use crate::net::Connection;
use crate::stats::Stats;

/// Records kept.
const KEEP: usize = 500;

/// What failover needs of a connection: whether and how long it has been
/// down, and whether it delivers. [`Connection`] is the real one; the tests
/// drive [`Failover::step`] with fakes on fake time. What a connection
/// carries is the [`Ledger`]'s business, not the carrier's.
pub trait Carrier {
    /// How long it has not been open (None while open or idle on purpose).
    fn down_for(&self, now: Instant) -> Option<Duration>;
    /// Open, resubscribed, and a frame has arrived since.
    fn is_delivering(&self) -> bool;
    /// Receive time of the first tick since [`Carrier::mark`], epoch µs.
    fn first_tick_since_mark(&self) -> Option<i64>;
    /// Starts watching for the next tick.
    fn mark(&mut self);
    /// Its role, for the log.
    fn role(&self) -> Role;
    /// Kite refused its credentials (401/403) on the last attempt.
    fn refused_credentials(&self) -> bool;
    /// (api_key, access_token) it connects with.
    fn credentials(&self) -> (&str, &str);
}

impl Carrier for Connection {
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
    fn role(&self) -> Role {
        Connection::role(self)
    }
    fn refused_credentials(&self) -> bool {
        matches!(self.last_error(), Some(crate::net::ConnError::Auth(_)))
    }
    fn credentials(&self) -> (&str, &str) {
        let c = self.config();
        (c.api_key.as_str(), c.access_token.expose())
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
    /// Instruments carried (now, while active; at handback after).
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

/// The failover state, stepped by the event loop's timers.
#[derive(Debug)]
pub struct Failover {
    after: Duration,
    enabled: bool,
    /// Active takeovers: the record of each (primary, secondary).
    active: [Option<usize>; 2],
    /// Why a down connection is not taken over (same refused credentials).
    blocked: [Option<&'static str>; 2],
    records: Vec<Record>,
    /// Handed-back records still waiting for the recovered connection's
    /// first tick (its first frame may have been a heartbeat): (record, connection index).
    awaiting: Vec<(usize, usize)>,
    /// Takeovers so far.
    pub takeovers: u64,
    /// Records kept (oldest finished ones go first).
    keep: usize,
}

/// Why a 403'd connection is left alone, as `/connections` shows it.
pub const SAME_CREDENTIALS: &str = "Kite refused this connection's credentials (401/403) and the tertiary uses the same api_key and access_token: it would be refused too, so it does not take over (fix the token: tickcap login)";

impl Failover {
    /// Takeover after `after` down; disabled when the tertiary mirrors the
    /// primary (hot standby) — then it carries it all the time.
    pub fn new(after: Duration, enabled: bool) -> Self {
        Failover {
            after,
            enabled,
            active: [None, None],
            blocked: [None, None],
            records: Vec::new(),
            awaiting: Vec::new(),
            takeovers: 0,
            keep: KEEP,
        }
    }

    /// How long a connection must be down before a takeover.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// A reload changed `failover_after_ms`: used from the next step on.
    pub fn set_after(&mut self, after: Duration) {
        self.after = after;
    }

    /// Whether a takeover is active.
    pub fn is_active(&self) -> bool {
        self.active.iter().any(Option::is_some)
    }

    /// Why connection `i` (0-based) is down and not taken over, if so.
    pub fn blocked(&self, i: usize) -> Option<&'static str> {
        self.blocked.get(i).copied().flatten()
    }

    /// Active takeovers: (failed connection id, instruments carried).
    pub fn carrying(&self) -> Vec<(u8, usize)> {
        self.active
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.map(|r| (i as u8 + 1, self.records[r].instruments)))
            .collect()
    }

    /// After the ledger changed (a control call, hub demand, a reload):
    /// the active records say what the tertiary carries now.
    pub fn refresh(&mut self, ledger: &Ledger) {
        for i in 0..2 {
            if let Some(r) = self.active[i] {
                let (carried, refused) = ledger.takeover_split(i);
                let rec = &mut self.records[r];
                rec.instruments = carried.len();
                for t in refused {
                    if !rec.not_carried.contains(&t) {
                        rec.not_carried.push(t);
                    }
                }
            }
        }
    }

    /// Every takeover, oldest first.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Starts or ends takeovers as the connections' states require; the
    /// ledger then derives what the tertiary carries.
    pub fn step<C: Carrier>(
        &mut self,
        now: Instant,
        now_micros: i64,
        conns: &mut [C],
        ledger: &mut Ledger,
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
            match self.active[i] {
                None => {
                    let due = ledger.home_count(i) > 0
                        && conns[i].down_for(now).is_some_and(|d| d >= self.after);
                    if !due {
                        self.blocked[i] = None;
                        continue;
                    }
                    if conns[i].refused_credentials()
                        && conns[i].credentials() == conns[2].credentials()
                    {
                        if self.blocked[i].is_none() {
                            tracing::error!("connection {}: {SAME_CREDENTIALS}", i + 1);
                        }
                        self.blocked[i] = Some(SAME_CREDENTIALS);
                        continue;
                    }
                    self.blocked[i] = None;
                    self.take_over(i, now, now_micros, conns, ledger, stats);
                }
                Some(rec) => {
                    if self.records[rec].tertiary_first_tick_micros.is_none() {
                        self.records[rec].tertiary_first_tick_micros =
                            conns[2].first_tick_since_mark();
                    }
                    if conns[i].is_delivering() {
                        self.hand_back(i, now_micros, conns, ledger);
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
        ledger: &mut Ledger,
        stats: &Stats,
    ) {
        ledger.set_taken_over(i, true);
        let (carried, refused) = ledger.takeover_split(i);
        let down = conns[i].down_for(now).unwrap_or_default();
        let role = conns[i].role().as_str();
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
        conns[2].mark();
        conns[i].mark();
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
        self.active[i] = Some(self.records.len() - 1);
        // The primary comes first: a secondary takeover may now carry less.
        self.refresh(ledger);
    }

    /// Makes room for one record: drops the oldest one no active takeover
    /// points at, and renumbers the references of the rest.
    fn trim(&mut self) {
        if self.records.len() < self.keep {
            return;
        }
        let active: Vec<usize> = self.active.iter().flatten().copied().collect();
        let Some(victim) = (0..self.records.len()).find(|r| !active.contains(r)) else {
            return;
        };
        self.records.remove(victim);
        for a in self.active.iter_mut().flatten() {
            if *a > victim {
                *a -= 1;
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

    fn hand_back<C: Carrier>(
        &mut self,
        i: usize,
        now_micros: i64,
        conns: &mut [C],
        ledger: &mut Ledger,
    ) {
        let Some(rec) = self.active[i].take() else {
            return;
        };
        ledger.set_taken_over(i, false);
        let r = &mut self.records[rec];
        r.end_micros = Some(now_micros);
        r.recovered_first_tick_micros = conns[i].first_tick_since_mark();
        if r.recovered_first_tick_micros.is_none() {
            self.awaiting.push((rec, i));
        }
        let ms =
            |v: Option<f64>| v.map_or_else(|| "not yet known".to_owned(), |g| format!("{g:.0} ms"));
        tracing::info!(
            "connection {} delivers again: tertiary hands back {} instruments after {} ms (gap with the tertiary {}, without it {})",
            i + 1,
            r.instruments,
            (now_micros - r.start_micros) / 1000,
            ms(r.gap_ms()),
            ms(r.outage_ms())
        );
        self.refresh(ledger);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kite::Mode;
    use std::collections::BTreeMap;

    fn list(tokens: std::ops::Range<u32>, mode: Mode) -> BTreeMap<u32, Mode> {
        tokens.map(|t| (t, mode)).collect()
    }

    const MODES: [Mode; 3] = [Mode::Quote, Mode::Full, Mode::Quote];

    fn ledger(p: std::ops::Range<u32>, s: std::ops::Range<u32>, cap: usize) -> Ledger {
        let mut l = Ledger::with_capacity(false, cap);
        let (p, s): (Vec<u32>, Vec<u32>) = (p.collect(), s.collect());
        l.set_config([&p, &s, &[]], MODES).unwrap();
        l
    }

    #[test]
    fn primary_first_then_secondary_while_capacity_lasts() {
        let mut l = ledger(1..2991, 5000..5020, 3000);
        l.set_taken_over(1, true);
        l.set_taken_over(0, true);
        let t = l.derived(2);
        assert_eq!(t.len(), 3000);
        assert_eq!(t.values().filter(|m| **m == Mode::Full).count(), 10);
        assert_eq!(l.takeover_split(1).1, (5010..5020).collect::<Vec<_>>());
    }

    /// A connection on fake time: the test says when it went down and
    /// whether it delivers.
    struct Fake {
        role: Role,
        down_since: Option<Instant>,
        delivering: bool,
        first_tick: Option<i64>,
        refused: bool,
        token: &'static str,
    }

    impl Fake {
        fn new(role: Role) -> Self {
            Fake {
                role,
                down_since: None,
                delivering: true,
                first_tick: None,
                refused: false,
                token: "t",
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
        fn role(&self) -> Role {
            self.role
        }
        fn refused_credentials(&self) -> bool {
            self.refused
        }
        fn credentials(&self) -> (&str, &str) {
            ("k", self.token)
        }
    }

    fn three() -> ([Fake; 3], Ledger) {
        (
            [
                Fake::new(Role::Primary),
                Fake::new(Role::Secondary),
                Fake::new(Role::Tertiary),
            ],
            ledger(1..4, 10..12, 3000),
        )
    }

    const AFTER: Duration = Duration::from_millis(3000);

    #[test]
    fn the_tertiary_takes_over_exactly_when_the_primary_has_been_down_for_the_limit() {
        let stats = Stats::default();
        let (mono, clock) = crate::time::Mono::manual();
        let mut f = Failover::new(AFTER, true);
        let (mut c, mut l) = three();
        c[0].fail(mono.now());
        clock.advance(AFTER - Duration::from_millis(1));
        f.step(mono.now(), 0, &mut c, &mut l, &stats);
        assert!(!f.is_active(), "not before failover_after_ms");
        assert!(l.derived(2).is_empty());
        clock.advance(Duration::from_millis(1));
        f.step(mono.now(), 5, &mut c, &mut l, &stats);
        assert_eq!(f.carrying(), [(1, 3)]);
        assert_eq!(
            l.derived(2),
            list(1..4, Mode::Quote),
            "same instruments, same mode"
        );
        assert_eq!(f.records()[0].start_micros, 5);
        assert_eq!(f.takeovers, 1);
    }

    #[test]
    fn a_connection_refused_with_403_is_not_taken_over_with_the_same_credentials() {
        let stats = Stats::default();
        let (mono, clock) = crate::time::Mono::manual();
        let mut f = Failover::new(AFTER, true);
        let (mut c, mut l) = three();
        c[0].fail(mono.now());
        c[0].refused = true;
        clock.advance(AFTER);
        f.step(mono.now(), 1, &mut c, &mut l, &stats);
        assert!(!f.is_active());
        assert_eq!(f.blocked(0), Some(SAME_CREDENTIALS));
        // A tertiary with its own token can help.
        c[2].token = "other";
        f.step(mono.now(), 2, &mut c, &mut l, &stats);
        assert_eq!(f.carrying(), [(1, 3)]);
        assert_eq!(f.blocked(0), None);
    }

    #[test]
    fn handback_waits_for_delivery_and_keeps_what_another_takeover_carries() {
        let stats = Stats::default();
        let (mono, clock) = crate::time::Mono::manual();
        let mut f = Failover::new(AFTER, true);
        let (mut c, mut l) = three();
        c[0].fail(mono.now());
        c[1].fail(mono.now());
        clock.advance(AFTER);
        f.step(mono.now(), 1, &mut c, &mut l, &stats);
        assert_eq!(f.carrying(), [(1, 3), (2, 2)]);
        // Open again but no frame yet: not proven, keep carrying.
        c[0].down_since = None;
        f.step(mono.now(), 2, &mut c, &mut l, &stats);
        assert_eq!(f.carrying().len(), 2);
        c[0].recover(Some(77));
        f.step(mono.now(), 3, &mut c, &mut l, &stats);
        assert_eq!(f.carrying(), [(2, 2)]);
        assert_eq!(
            l.derived(2),
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
        let (mut c, mut l) = three();
        // The secondary fails for good.
        c[1].fail(mono.now());
        clock.advance(AFTER);
        f.step(mono.now(), 1, &mut c, &mut l, &stats);
        // The primary flaps ten times; its last handback sees no tick yet.
        for k in 0..10 {
            c[0].fail(mono.now());
            clock.advance(AFTER);
            f.step(mono.now(), 10 + k, &mut c, &mut l, &stats);
            c[0].recover(None);
            f.step(mono.now(), 20 + k, &mut c, &mut l, &stats);
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
        f.step(mono.now(), 40, &mut c, &mut l, &stats);
        let last = f.records().last().unwrap();
        assert_eq!(
            (last.connection_id, last.recovered_first_tick_micros),
            (1, Some(999))
        );
        assert_eq!(
            f.records()
                .iter()
                .filter(|r| r.recovered_first_tick_micros == Some(999))
                .count(),
            1,
            "the tick went to one record only"
        );
        // The secondary comes back: its own record is closed.
        c[1].recover(Some(5));
        f.step(mono.now(), 50, &mut c, &mut l, &stats);
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
        let (mut c, mut l) = three();
        c[0].fail(mono.now());
        clock.advance(AFTER);
        f.step(mono.now(), 1, &mut c, &mut l, &stats);
        assert_eq!(l.derived(2), list(1..4, Mode::Quote));
        // The reload changes the (down) primary's list: 1 gone, 4 new.
        l.set_config([&[2, 3, 4], &[10, 11], &[]], MODES).unwrap();
        l.control_mode(&[3], Mode::Full).unwrap();
        f.refresh(&l);
        let mut want = list(2..5, Mode::Quote);
        want.insert(3, Mode::Full);
        assert_eq!(
            l.derived(2),
            want,
            "the tertiary follows, nothing uncaptured"
        );
        assert_eq!(f.records()[0].instruments, 3);
        // Handback then releases exactly the new set.
        c[0].recover(Some(9));
        f.step(mono.now(), 2, &mut c, &mut l, &stats);
        assert!(l.derived(2).is_empty());
    }
}
