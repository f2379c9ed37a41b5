//! The engine's side of the hub (`[serve]`, `auto_subscribe`): what hub
//! clients want that tickcap does not capture is subscribed upstream on a
//! connection with room (or its mode raised where it is captured), counted
//! per token by the hub, and released when the last client that needed it
//! leaves. Instruments from the config or control calls are never removed
//! by it: a token it did not add is only ever raised, and lowered back to
//! its own mode afterwards.

use std::collections::BTreeMap;

use crate::config::MAX_INSTRUMENTS;
use crate::engine::history::{Action, History};
use crate::kite::Mode;
use crate::net::Connection;

/// One token the hub added or raised upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Added {
    /// The connection (index) that carries it.
    conn: usize,
    /// The mode it is captured in now.
    mode: Mode,
    /// Its mode before the hub raised it; `None` = the hub subscribed it.
    base: Option<Mode>,
}

/// What the hub has changed upstream.
#[derive(Debug, Default)]
pub struct Upstream {
    added: BTreeMap<u32, Added>,
}

/// Which connection carries each token, and in what mode (the user
/// connections first; the tertiary only for what it alone carries).
fn carriers(conns: &[Connection]) -> BTreeMap<u32, (usize, Mode)> {
    let mut m = BTreeMap::new();
    for (i, c) in conns.iter().enumerate().rev() {
        for (t, mode) in c.desired() {
            m.insert(*t, (i, *mode));
        }
    }
    m
}

impl Upstream {
    /// Instruments the hub holds on connection `i`, with their modes (a
    /// reload keeps them).
    pub fn held_on(&self, i: usize) -> BTreeMap<u32, Mode> {
        self.added
            .iter()
            .filter(|(_, a)| a.conn == i)
            .map(|(t, a)| (*t, a.mode))
            .collect()
    }

    /// How many instruments the hub holds upstream.
    pub fn len(&self) -> usize {
        self.added.len()
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
    }

    /// Makes upstream capture `wanted` (token → highest mode a client
    /// wants): subscribes what nobody carries, raises modes, releases what
    /// no client wants any more. Returns the tokens no connection had room
    /// for.
    pub fn reconcile(
        &mut self,
        wanted: &BTreeMap<u32, Mode>,
        conns: &mut [Connection],
        history: &mut History,
        now_micros: i64,
    ) -> Vec<u32> {
        let carried = carriers(conns);
        // (connection, mode) → tokens, applied in batches.
        let mut subscribe: BTreeMap<(usize, Mode), Vec<u32>> = BTreeMap::new();
        let mut remode: BTreeMap<(usize, Mode), Vec<u32>> = BTreeMap::new();
        let mut unsubscribe: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        let mut rejected = Vec::new();
        // Room per user connection (the tertiary stays free for failover).
        let mut room: Vec<usize> = conns
            .iter()
            .take(2)
            .map(|c| MAX_INSTRUMENTS.saturating_sub(c.desired().len()))
            .collect();
        let usable: Vec<bool> = conns
            .iter()
            .take(2)
            .map(|c| !c.config().api_key.is_empty() && !c.config().access_token.is_empty())
            .collect();

        // Released: no client wants it any more.
        let gone: Vec<u32> = self
            .added
            .keys()
            .copied()
            .filter(|t| !wanted.contains_key(t))
            .collect();
        for t in gone {
            if let Some(a) = self.added.remove(&t) {
                match a.base {
                    None => unsubscribe.entry(a.conn).or_default().push(t),
                    Some(b) if b != a.mode => remode.entry((a.conn, b)).or_default().push(t),
                    Some(_) => {}
                }
            }
        }
        for (&t, &want) in wanted {
            if let Some(a) = self.added.get_mut(&t) {
                let target = a.base.map_or(want, |b| b.max(want));
                if target != a.mode {
                    remode.entry((a.conn, target)).or_default().push(t);
                    a.mode = target;
                }
                continue;
            }
            match carried.get(&t) {
                Some(&(_, m)) if m >= want => {}
                Some(&(i, m)) => {
                    remode.entry((i, want)).or_default().push(t);
                    self.added.insert(
                        t,
                        Added {
                            conn: i,
                            mode: want,
                            base: Some(m),
                        },
                    );
                }
                None => {
                    // The user connection with room: the one already in
                    // this mode first, then the emptier one.
                    let pick = (0..room.len())
                        .filter(|&i| usable[i] && room[i] > 0)
                        .min_by_key(|&i| (conns[i].mode() != want, usize::MAX - room[i]));
                    match pick {
                        Some(i) => {
                            room[i] -= 1;
                            subscribe.entry((i, want)).or_default().push(t);
                            self.added.insert(
                                t,
                                Added {
                                    conn: i,
                                    mode: want,
                                    base: None,
                                },
                            );
                        }
                        None => rejected.push(t),
                    }
                }
            }
        }
        for (i, tokens) in unsubscribe {
            conns[i].unsubscribe(&tokens);
            history.record(
                now_micros,
                Action::Unsubscribe,
                conns[i].id(),
                &tokens,
                None,
            );
        }
        for ((i, mode), tokens) in remode {
            conns[i].set_mode(&tokens, mode);
            history.record(now_micros, Action::Mode, conns[i].id(), &tokens, Some(mode));
        }
        for ((i, mode), tokens) in subscribe {
            conns[i].subscribe(&tokens, mode);
            history.record(
                now_micros,
                Action::Serve,
                conns[i].id(),
                &tokens,
                Some(mode),
            );
        }
        if !rejected.is_empty() {
            tracing::warn!(
                "hub: {} instrument(s) asked by clients do not fit upstream (3000 per connection): {:?}",
                rejected.len(),
                &rejected[..rejected.len().min(20)]
            );
        }
        rejected
    }
}
