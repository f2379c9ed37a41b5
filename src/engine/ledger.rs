//! The subscription ledger: the one owner of "who wants which instrument,
//! in which mode, on which connection".
//!
//! Every way of choosing instruments — the config (at start and on each
//! reload), control calls, hub clients, failover takeover and handback, the
//! hot standby's mirror — changes *claims* here, never a connection's
//! upstream set directly. What each connection is subscribed to upstream is
//! [derived](Ledger::derived) from the claims, and the event loop sends Kite
//! only the difference ([`sync`]).
//!
//! Invariants (held by every operation, checked by the property test below
//! and by `debug_assert`s):
//!
//! 1. **One home per token.** A token is claimed on exactly one connection
//!    (its home); every claim on it (config, control, hub) lives there, so a
//!    token is never carried twice per key. The only deliberate copies are
//!    derived ones on the tertiary: a takeover of a down connection and the
//!    hot standby's mirror of the primary.
//! 2. **Capacity before sending.** No connection's derived set exceeds
//!    [`MAX_INSTRUMENTS`]. A claim that does not fit is refused *before*
//!    anything is sent. Config and control claims outrank hub claims: to
//!    make room for them, hub-only tokens move to another connection with
//!    room, or are released (their clients get Kite's error).
//! 3. **Removing a claim removes only that claim.** A hub client leaving
//!    drops the hub's claim; a token the config or a control call wants stays
//!    carried. A reload replaces the config's claims and nothing else.
//! 4. **Derived mode = the highest live claim's mode.**

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::MAX_INSTRUMENTS;
use crate::kite::Mode;

/// The connections, by index: primary, secondary, tertiary.
pub const CONNS: usize = 3;
const TERTIARY: usize = 2;

/// Who wants an instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Claimant {
    /// The config file (at start or the last reload).
    Config,
    /// A control call (`/subscribe`, `/mode`).
    Control,
    /// One or more hub clients (the hub counts them per token).
    Hub,
}

impl Claimant {
    const ALL: [Claimant; 3] = [Claimant::Config, Claimant::Control, Claimant::Hub];

    fn index(self) -> usize {
        self as usize
    }

    /// The name `/instruments` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Claimant::Config => "config",
            Claimant::Control => "control",
            Claimant::Hub => "hub",
        }
    }
}

/// One token's claims and home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The connection (index) it lives on.
    home: usize,
    /// The mode each claimant wants (`None`: no claim).
    claims: [Option<Mode>; 3],
}

impl Entry {
    fn mode(&self) -> Option<Mode> {
        self.claims.iter().flatten().copied().max()
    }

    fn is_empty(&self) -> bool {
        self.claims.iter().all(Option::is_none)
    }

    /// Only hub clients want it: it may move, or give way to the user's claims.
    fn hub_only(&self) -> bool {
        self.claims[Claimant::Hub.index()].is_some()
            && self.claims[Claimant::Config.index()].is_none()
            && self.claims[Claimant::Control.index()].is_none()
    }

    fn user_claimed(&self) -> bool {
        !self.hub_only() && !self.is_empty()
    }
}

/// A claim the ledger refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The connection would carry more than Kite allows.
    #[error("connection {connection_id} would carry {would_carry} instruments; Kite allows {MAX_INSTRUMENTS} (these do not fit: {})", preview(.tokens))]
    Full {
        /// The connection (1-based).
        connection_id: u8,
        /// What it would carry.
        would_carry: usize,
        /// The tokens that do not fit.
        tokens: Vec<u32>,
    },
    /// The user already placed these tokens on another connection.
    #[error("already claimed on connection {connection_id} (by the config or a control call): {}", preview(.tokens))]
    Elsewhere {
        /// Where they are (1-based).
        connection_id: u8,
        /// The tokens.
        tokens: Vec<u32>,
    },
    /// The tertiary mirrors the primary and carries nothing of its own.
    #[error("connection 3 is the hot standby: it mirrors connection 1 and takes no instruments of its own (subscribe them on connection 1)")]
    Mirror,
    /// Nobody claims these tokens.
    #[error("not subscribed on any connection: {}", preview(.tokens))]
    Unknown {
        /// The tokens.
        tokens: Vec<u32>,
    },
}

fn preview(tokens: &[u32]) -> String {
    let shown: Vec<String> = tokens.iter().take(20).map(u32::to_string).collect();
    if tokens.len() > 20 {
        format!("{} … ({} in all)", shown.join(", "), tokens.len())
    } else {
        shown.join(", ")
    }
}

/// What an accepted change did beyond the claim itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Hub-only tokens released to make room for the user's claims (their
    /// clients are told the instrument is no longer available).
    pub hub_released: Vec<u32>,
    /// Hub-only tokens moved to another connection to make room.
    pub hub_moved: Vec<u32>,
}

/// Who wants which instrument, per connection. Cloning is cheap enough to
/// try a change on a copy and commit it only when it fits.
#[derive(Debug, Clone)]
pub struct Ledger {
    entries: BTreeMap<u32, Entry>,
    /// Home entries per connection.
    count: [usize; CONNS],
    /// A takeover is active for primary / secondary.
    taken_over: [bool; 2],
    /// The tertiary mirrors the primary (hot standby).
    mirror: bool,
    /// Per connection: whether it can be used at all (has credentials).
    usable: [bool; CONNS],
    capacity: usize,
}

impl Ledger {
    /// An empty ledger; `mirror` makes the tertiary carry the primary's set.
    pub fn new(mirror: bool) -> Self {
        Ledger::with_capacity(mirror, MAX_INSTRUMENTS)
    }

    /// An empty ledger with another per-connection capacity (tests).
    pub fn with_capacity(mirror: bool, capacity: usize) -> Self {
        Ledger {
            entries: BTreeMap::new(),
            count: [0; CONNS],
            taken_over: [false; 2],
            mirror,
            usable: [true; CONNS],
            capacity,
        }
    }

    /// Marks which connections have credentials (hub claims are placed
    /// only on those).
    pub fn set_usable(&mut self, usable: [bool; CONNS]) {
        self.usable = usable;
    }

    /// Whether the tertiary mirrors the primary.
    pub fn mirror(&self) -> bool {
        self.mirror
    }

    /// The per-connection capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Instruments claimed with `i` as home.
    pub fn home_count(&self, i: usize) -> usize {
        self.count[i]
    }

    /// How many more home claims connection `i` can take. The tertiary's
    /// room counts its mirror of the primary; takeovers do not reduce it
    /// (its own claims come first, a takeover carries what is left).
    pub fn room(&self, i: usize) -> usize {
        self.capacity.saturating_sub(self.used(i))
    }

    /// Home claims on `i`, plus the mirror on the tertiary.
    fn used(&self, i: usize) -> usize {
        self.count[i]
            + if i == TERTIARY && self.mirror {
                self.count[0]
            } else {
                0
            }
    }

    /// What connection `i` must be subscribed to upstream: its home claims
    /// at their highest mode; for the tertiary also the primary's set when
    /// mirroring, and the sets of taken-over connections (primary's first)
    /// while room lasts.
    pub fn derived(&self, i: usize) -> BTreeMap<u32, Mode> {
        let mut out: BTreeMap<u32, Mode> = self.home_set(i).collect();
        if i == TERTIARY {
            if self.mirror {
                for (t, m) in self.home_set(0) {
                    let e = out.entry(t).or_insert(m);
                    *e = (*e).max(m);
                }
            }
            for j in 0..2 {
                if self.taken_over[j] {
                    for (t, m) in self.home_set(j) {
                        if out.len() >= self.capacity {
                            break;
                        }
                        out.entry(t).or_insert(m);
                    }
                }
            }
        }
        out
    }

    fn home_set(&self, i: usize) -> impl Iterator<Item = (u32, Mode)> + '_ {
        self.entries
            .iter()
            .filter(move |(_, e)| e.home == i)
            .filter_map(|(t, e)| e.mode().map(|m| (*t, m)))
    }

    /// For an active takeover of `j`: (carried by the tertiary, not carried).
    pub fn takeover_split(&self, j: usize) -> (Vec<u32>, Vec<u32>) {
        let tertiary = self.derived(TERTIARY);
        self.home_set(j)
            .map(|(t, _)| t)
            .partition(|t| tertiary.contains_key(t))
    }

    /// Starts or ends the tertiary's carry of connection `j` (0 or 1).
    pub fn set_taken_over(&mut self, j: usize, on: bool) {
        if j < 2 {
            self.taken_over[j] = on;
        }
    }

    /// Whether connection `j`'s set is carried by the tertiary.
    pub fn is_taken_over(&self, j: usize) -> bool {
        j < 2 && self.taken_over[j]
    }

    /// Each token's home and claims, for `/instruments`.
    pub fn claims(&self) -> impl Iterator<Item = (u32, usize, Vec<(Claimant, Mode)>)> + '_ {
        self.entries.iter().map(|(t, e)| {
            let list = Claimant::ALL
                .iter()
                .filter_map(|c| e.claims[c.index()].map(|m| (*c, m)))
                .collect();
            (*t, e.home, list)
        })
    }

    /// The home of `token`, if anyone claims it.
    pub fn home(&self, token: u32) -> Option<usize> {
        self.entries.get(&token).map(|e| e.home)
    }

    /// Whether anyone claims `token`.
    pub fn contains(&self, token: u32) -> bool {
        self.entries.contains_key(&token)
    }

    fn set_claim(&mut self, token: u32, home: usize, who: Claimant, mode: Option<Mode>) {
        let e = self.entries.entry(token).or_insert_with(|| Entry {
            home,
            claims: [None; 3],
        });
        if e.is_empty() {
            e.home = home;
            self.count[home] += 1;
        } else if e.home != home {
            self.count[e.home] -= 1;
            e.home = home;
            self.count[home] += 1;
        }
        e.claims[who.index()] = mode;
        if e.is_empty() {
            self.count[home] -= 1;
            self.entries.remove(&token);
        }
    }

    fn drop_claim(&mut self, token: u32, who: Claimant) {
        if let Some(e) = self.entries.get(&token).copied() {
            self.set_claim(token, e.home, who, None);
        }
    }

    /// Makes every connection fit: hub-only tokens on an over-full
    /// connection move to another usable one with room, else are released.
    /// Fails (naming the user's tokens that do not fit) when the user's own
    /// claims exceed a connection.
    fn fit(&mut self, out: &mut Outcome) -> Result<(), LedgerError> {
        for i in 0..CONNS {
            let over = self.used(i).saturating_sub(self.capacity);
            if over == 0 {
                continue;
            }
            let hub: Vec<u32> = self
                .entries
                .iter()
                .filter(|(_, e)| e.home == i && e.hub_only())
                .map(|(t, _)| *t)
                .rev()
                .take(over)
                .collect();
            for t in hub {
                let mode = self.entries[&t].claims[Claimant::Hub.index()];
                let other = (0..2).find(|&k| k != i && self.usable[k] && self.room(k) > 0);
                match other {
                    Some(k) => {
                        self.set_claim(t, k, Claimant::Hub, mode);
                        out.hub_moved.push(t);
                    }
                    None => {
                        self.drop_claim(t, Claimant::Hub);
                        out.hub_released.push(t);
                    }
                }
            }
            let used = self.used(i);
            if used > self.capacity {
                let extra = used - self.capacity;
                let mut tokens: Vec<u32> = self
                    .entries
                    .iter()
                    .filter(|(_, e)| e.home == i && e.user_claimed())
                    .map(|(t, _)| *t)
                    .collect();
                tokens = tokens.split_off(tokens.len().saturating_sub(extra));
                return Err(LedgerError::Full {
                    connection_id: i as u8 + 1,
                    would_carry: used,
                    tokens,
                });
            }
        }
        Ok(())
    }

    /// Replaces the config's claims with `lists[i]` in `modes[i]` (start and
    /// every reload). Control and hub claims stay; a token the config moves
    /// to another connection takes its other claims with it. With the
    /// mirror on, the tertiary's list is the mirror and is not claimed.
    /// All or nothing.
    pub fn set_config(
        &mut self,
        lists: [&[u32]; CONNS],
        modes: [Mode; CONNS],
    ) -> Result<Outcome, LedgerError> {
        let mut next = self.clone();
        let configured: Vec<u32> = next
            .entries
            .iter()
            .filter(|(_, e)| e.claims[Claimant::Config.index()].is_some())
            .map(|(t, _)| *t)
            .collect();
        for t in configured {
            next.drop_claim(t, Claimant::Config);
        }
        for i in 0..CONNS {
            if i == TERTIARY && next.mirror {
                continue;
            }
            for &t in lists[i] {
                next.set_claim(t, i, Claimant::Config, Some(modes[i]));
            }
        }
        let mut out = Outcome::default();
        next.fit(&mut out)?;
        *self = next;
        self.check();
        Ok(out)
    }

    /// A control call's `/subscribe` on connection `i`. Tokens the user
    /// (config or control) placed on another connection are refused;
    /// hub-only tokens move here. All or nothing.
    pub fn control_subscribe(
        &mut self,
        i: usize,
        tokens: &[u32],
        mode: Mode,
    ) -> Result<Outcome, LedgerError> {
        if i == TERTIARY && self.mirror {
            return Err(LedgerError::Mirror);
        }
        let elsewhere: Vec<(usize, u32)> = tokens
            .iter()
            .filter_map(|t| self.entries.get(t).map(|e| (e, *t)))
            .filter(|(e, _)| e.home != i && e.user_claimed())
            .map(|(e, t)| (e.home, t))
            .collect();
        if let Some(&(home, _)) = elsewhere.first() {
            return Err(LedgerError::Elsewhere {
                connection_id: home as u8 + 1,
                tokens: elsewhere.iter().map(|(_, t)| *t).collect(),
            });
        }
        let mut next = self.clone();
        for &t in tokens {
            next.set_claim(t, i, Claimant::Control, Some(mode));
        }
        let mut out = Outcome::default();
        next.fit(&mut out)?;
        *self = next;
        self.check();
        Ok(out)
    }

    /// A control call's `/unsubscribe`: drops the config's and control
    /// calls' claims (the config's come back at the next reload if the file
    /// still lists them). Hub clients' claims stay: returns the tokens
    /// still carried for them.
    pub fn control_unsubscribe(&mut self, tokens: &[u32]) -> Result<Vec<u32>, LedgerError> {
        self.known(tokens)?;
        let mut kept = Vec::new();
        for &t in tokens {
            self.drop_claim(t, Claimant::Config);
            self.drop_claim(t, Claimant::Control);
            if self.entries.contains_key(&t) {
                kept.push(t);
            }
        }
        self.check();
        Ok(kept)
    }

    /// A control call's `/mode`: the user's claims on these tokens take
    /// `mode`; a token only hub clients hold becomes the user's, in `mode`.
    pub fn control_mode(&mut self, tokens: &[u32], mode: Mode) -> Result<(), LedgerError> {
        self.known(tokens)?;
        for &t in tokens {
            let e = self.entries[&t];
            let mut any = false;
            for who in [Claimant::Config, Claimant::Control] {
                if e.claims[who.index()].is_some() {
                    self.set_claim(t, e.home, who, Some(mode));
                    any = true;
                }
            }
            if !any {
                self.set_claim(t, e.home, Claimant::Control, Some(mode));
            }
        }
        self.check();
        Ok(())
    }

    fn known(&self, tokens: &[u32]) -> Result<(), LedgerError> {
        let unknown: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|t| !self.entries.contains_key(t))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(LedgerError::Unknown { tokens: unknown })
        }
    }

    /// The hub's clients now want `wanted` (token → highest mode any
    /// client wants). Drops hub claims nobody wants, raises or lowers the
    /// rest, and places new tokens on a user connection (primary,
    /// secondary; the tertiary stays free for failover): one that is up
    /// first (`up[i]`), then one already in that mode (`modes`), then the
    /// one with most room. Returns the tokens that fit nowhere.
    pub fn hub_demand(
        &mut self,
        wanted: &BTreeMap<u32, Mode>,
        up: [bool; CONNS],
        modes: [Mode; CONNS],
    ) -> Vec<u32> {
        let held: Vec<u32> = self
            .entries
            .iter()
            .filter(|(t, e)| e.claims[Claimant::Hub.index()].is_some() && !wanted.contains_key(t))
            .map(|(t, _)| *t)
            .collect();
        for t in held {
            self.drop_claim(t, Claimant::Hub);
        }
        let mut rejected = Vec::new();
        for (&t, &m) in wanted {
            if let Some(e) = self.entries.get(&t).copied() {
                self.set_claim(t, e.home, Claimant::Hub, Some(m));
                continue;
            }
            let pick = (0..2)
                .filter(|&i| self.usable[i] && self.room(i) > 0)
                .min_by_key(|&i| (!up[i], modes[i] != m, usize::MAX - self.room(i)));
            match pick {
                Some(i) => self.set_claim(t, i, Claimant::Hub, Some(m)),
                None => rejected.push(t),
            }
        }
        self.check();
        rejected
    }

    /// Tokens the hub holds (for `/health` and metrics).
    pub fn hub_held(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.claims[Claimant::Hub.index()].is_some())
            .count()
    }

    /// Tokens held only for hub clients.
    pub fn hub_only(&self) -> BTreeSet<u32> {
        self.entries
            .iter()
            .filter(|(_, e)| e.hub_only())
            .map(|(t, _)| *t)
            .collect()
    }

    /// Checks the invariants (debug builds and tests).
    fn check(&self) {
        if cfg!(debug_assertions) {
            let mut count = [0; CONNS];
            for e in self.entries.values() {
                debug_assert!(!e.is_empty(), "an entry without claims");
                count[e.home] += 1;
            }
            debug_assert_eq!(count, self.count, "home counts drifted");
            for i in 0..CONNS {
                debug_assert!(
                    self.derived(i).len() <= self.capacity,
                    "connection {i} over capacity"
                );
            }
        }
    }
}

/// One connection's change, as [`diff`] computes it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// Tokens to unsubscribe.
    pub unsubscribe: Vec<u32>,
    /// Tokens to subscribe, by mode.
    pub subscribe: BTreeMap<Mode, Vec<u32>>,
    /// Tokens whose mode changes, by new mode.
    pub remode: BTreeMap<Mode, Vec<u32>>,
}

impl Diff {
    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.unsubscribe.is_empty() && self.subscribe.is_empty() && self.remode.is_empty()
    }

    /// Tokens subscribed.
    pub fn subscribed(&self) -> usize {
        self.subscribe.values().map(Vec::len).sum()
    }

    /// Tokens whose mode changed.
    pub fn remoded(&self) -> usize {
        self.remode.values().map(Vec::len).sum()
    }
}

/// What turns `current` into `want`: only the difference is sent to Kite.
pub fn diff(current: &BTreeMap<u32, Mode>, want: &BTreeMap<u32, Mode>) -> Diff {
    let mut d = Diff {
        unsubscribe: current
            .keys()
            .copied()
            .filter(|t| !want.contains_key(t))
            .collect(),
        ..Diff::default()
    };
    for (&t, &m) in want {
        match current.get(&t) {
            None => d.subscribe.entry(m).or_default().push(t),
            Some(&c) if c != m => d.remode.entry(m).or_default().push(t),
            Some(_) => {}
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MODES: [Mode; 3] = [Mode::Quote, Mode::Full, Mode::Quote];
    const UP: [bool; 3] = [true, true, true];

    fn toks(r: std::ops::Range<u32>) -> Vec<u32> {
        r.collect()
    }

    #[test]
    fn a_hub_client_leaving_keeps_what_a_control_call_asked_for() {
        let mut l = Ledger::new(false);
        l.set_config([&[], &[], &[]], MODES).unwrap();
        let want = BTreeMap::from([(7, Mode::Quote)]);
        assert!(l.hub_demand(&want, UP, MODES).is_empty());
        l.control_subscribe(0, &[7], Mode::Quote).unwrap();
        l.hub_demand(&BTreeMap::new(), UP, MODES);
        assert_eq!(l.derived(0).get(&7), Some(&Mode::Quote));
    }

    #[test]
    fn a_hub_client_leaving_keeps_what_a_reload_configured() {
        let mut l = Ledger::new(false);
        l.hub_demand(&BTreeMap::from([(7, Mode::Full)]), UP, MODES);
        l.set_config([&[7], &[], &[]], MODES).unwrap();
        assert_eq!(
            l.derived(0).get(&7),
            Some(&Mode::Full),
            "the hub's higher mode"
        );
        l.hub_demand(&BTreeMap::new(), UP, MODES);
        assert_eq!(
            l.derived(0).get(&7),
            Some(&Mode::Quote),
            "back to the config's mode"
        );
    }

    #[test]
    fn a_reload_configuring_a_hub_token_elsewhere_moves_it_instead_of_doubling_it() {
        let mut l = Ledger::new(false);
        l.hub_demand(&BTreeMap::from([(7, Mode::Quote)]), UP, MODES);
        assert!(l.derived(0).contains_key(&7));
        l.set_config([&[], &[7], &[]], MODES).unwrap();
        assert!(!l.derived(0).contains_key(&7));
        assert_eq!(l.derived(1).get(&7), Some(&Mode::Full));
    }

    #[test]
    fn configured_instruments_push_hub_ones_out_at_exactly_capacity() {
        let mut l = Ledger::with_capacity(false, 10);
        l.set_config([&toks(100..105), &toks(200..210), &[]], MODES)
            .unwrap();
        // Five hub tokens fill the primary (the secondary is full).
        let hub: BTreeMap<u32, Mode> = (1..=5).map(|t| (t, Mode::Quote)).collect();
        assert!(l.hub_demand(&hub, UP, MODES).is_empty());
        assert_eq!(l.derived(0).len(), 10);
        // A reload adds five configured ones: they win; the hub's are released.
        let out = l
            .set_config([&toks(100..110), &toks(200..210), &[]], MODES)
            .unwrap();
        assert_eq!(out.hub_released.len(), 5);
        let d = l.derived(0);
        assert_eq!(d.len(), 10);
        assert!((100..110).all(|t| d.contains_key(&t)));
        // One more configured token does not fit: refused, nothing changed.
        let err = l
            .set_config([&toks(100..111), &toks(200..210), &[]], MODES)
            .unwrap_err();
        assert!(
            matches!(err, LedgerError::Full { connection_id: 1, would_carry: 11, ref tokens } if tokens == &[110])
        );
        assert_eq!(l.derived(0).len(), 10);
    }

    #[test]
    fn a_control_call_on_a_taken_over_connection_is_carried_by_the_tertiary() {
        let mut l = Ledger::new(false);
        l.set_config([&[1, 2], &[3], &[]], MODES).unwrap();
        l.set_taken_over(0, true);
        l.control_subscribe(0, &[9], Mode::Full).unwrap();
        assert_eq!(l.derived(2).get(&9), Some(&Mode::Full));
        l.control_unsubscribe(&[1]).unwrap();
        assert!(!l.derived(2).contains_key(&1));
        l.set_taken_over(0, false);
        assert!(l.derived(2).is_empty());
        assert_eq!(l.derived(0).keys().copied().collect::<Vec<_>>(), [2, 9]);
    }

    #[test]
    fn the_mirror_follows_control_calls_on_the_primary() {
        let mut l = Ledger::new(true);
        l.set_config([&[1], &[], &[1]], MODES).unwrap();
        l.control_subscribe(0, &[5], Mode::Quote).unwrap();
        assert_eq!(l.derived(2), l.derived(0));
    }

    #[test]
    fn the_diff_sends_only_the_difference() {
        let cur = BTreeMap::from([(1, Mode::Quote), (2, Mode::Quote)]);
        let want = BTreeMap::from([(2, Mode::Full), (3, Mode::Ltp)]);
        let d = diff(&cur, &want);
        assert_eq!(d.unsubscribe, [1]);
        assert_eq!(d.remode, BTreeMap::from([(Mode::Full, vec![2])]));
        assert_eq!(d.subscribe, BTreeMap::from([(Mode::Ltp, vec![3])]));
        assert!(diff(&want, &want).is_empty());
    }

    /// One event that changes claims.
    #[derive(Debug, Clone)]
    enum Event {
        Config([Vec<u32>; 3]),
        Subscribe(usize, Vec<u32>, Mode),
        Unsubscribe(Vec<u32>),
        SetMode(Vec<u32>, Mode),
        Hub(BTreeMap<u32, Mode>),
        Down(usize, bool),
    }

    fn mode() -> impl Strategy<Value = Mode> {
        prop_oneof![Just(Mode::Ltp), Just(Mode::Quote), Just(Mode::Full)]
    }

    fn tokens() -> impl Strategy<Value = Vec<u32>> {
        proptest::collection::vec(1u32..40, 0..12)
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (tokens(), tokens(), tokens()).prop_map(|(a, b, c)| {
                // A valid config never lists one token twice.
                let mut seen = BTreeSet::new();
                let mut own = |v: Vec<u32>| -> Vec<u32> {
                    v.into_iter().filter(|t| seen.insert(*t)).collect()
                };
                Event::Config([own(a), own(b), own(c)])
            }),
            (0usize..3, tokens(), mode()).prop_map(|(i, t, m)| Event::Subscribe(i, t, m)),
            tokens().prop_map(Event::Unsubscribe),
            (tokens(), mode()).prop_map(|(t, m)| Event::SetMode(t, m)),
            proptest::collection::btree_map(1u32..40, mode(), 0..15).prop_map(Event::Hub),
            (0usize..2, any::<bool>()).prop_map(|(i, d)| Event::Down(i, d)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn random_sequences_keep_every_invariant(mirror in any::<bool>(), events in proptest::collection::vec(event(), 1..40)) {
            let cap = 10;
            let mut l = Ledger::with_capacity(mirror, cap);
            let mut config: [Vec<u32>; 3] = Default::default();
            let mut controlled: BTreeSet<u32> = BTreeSet::new();
            let mut hub: BTreeMap<u32, Mode> = BTreeMap::new();
            for ev in events {
                match ev {
                    Event::Config(lists) => {
                        if l.set_config([&lists[0], &lists[1], &lists[2]], MODES).is_ok() {
                            config = lists;
                        }
                    }
                    Event::Subscribe(i, t, m) => {
                        if l.control_subscribe(i, &t, m).is_ok() {
                            controlled.extend(t);
                        }
                    }
                    Event::Unsubscribe(t) => {
                        if l.control_unsubscribe(&t).is_ok() {
                            for x in &t {
                                controlled.remove(x);
                                for list in config.iter_mut() {
                                    list.retain(|c| c != x);
                                }
                            }
                        }
                    }
                    Event::SetMode(t, m) => {
                        if l.control_mode(&t, m).is_ok() {
                            for x in &t {
                                if hub.contains_key(x) && !controlled.contains(x) && !config.iter().any(|c| c.contains(x)) {
                                    controlled.insert(*x);
                                }
                            }
                        }
                    }
                    Event::Hub(w) => {
                        let rejected = l.hub_demand(&w, UP, MODES);
                        hub = w;
                        for t in rejected {
                            hub.remove(&t);
                        }
                    }
                    Event::Down(i, d) => l.set_taken_over(i, d),
                }
                // A hub token released for a user claim is no longer held.
                hub.retain(|t, _| l.contains(*t));
                let derived: Vec<BTreeMap<u32, Mode>> = (0..3).map(|i| l.derived(i)).collect();
                // No connection above capacity.
                for d in &derived {
                    prop_assert!(d.len() <= cap);
                }
                // No token carried twice, except the tertiary's deliberate copies.
                for t in derived[0].keys() {
                    prop_assert!(!derived[1].contains_key(t));
                }
                for t in derived[2].keys() {
                    let copy = (mirror && derived[0].contains_key(t))
                        || (0..2).any(|j| l.is_taken_over(j) && derived[j].contains_key(t));
                    prop_assert!(copy || !derived[0].contains_key(t) && !derived[1].contains_key(t), "token {} doubled", t);
                }
                // Every configured and controlled token is carried, on its home.
                for (i, list) in config.iter().enumerate() {
                    if i == 2 && mirror { continue; }
                    for t in list {
                        prop_assert!(derived[i].contains_key(t), "configured {} not carried on {}", t, i);
                    }
                }
                for t in &controlled {
                    prop_assert!(l.home(*t).is_some_and(|h| derived[h].contains_key(t)), "controlled {} not carried", t);
                }
                // Every held hub token is carried in at least the mode wanted.
                for (t, m) in &hub {
                    let h = l.home(*t).expect("held");
                    prop_assert!(derived[h][t] >= *m);
                }
            }
        }
    }
}
