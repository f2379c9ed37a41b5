//! What changed in the subscriptions, and when: kept for the status port
//! (`/instruments`) and for finding "silent" instruments (subscribed, no
//! tick since).

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use crate::kite::Mode;

/// Entries kept (the oldest are dropped first).
const KEEP: usize = 1000;

/// What a change did.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Subscribed from the config at start.
    Config,
    /// Subscribed by a control call.
    Subscribe,
    /// Unsubscribed (control call or reload).
    Unsubscribe,
    /// Mode changed.
    Mode,
    /// Subscribed by a reload.
    Reload,
    /// Subscribed (or its mode raised) because a hub client asked for it.
    Serve,
    /// Subscribed on the tertiary for a takeover of a down connection.
    Failover,
}

/// One accepted change.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    /// When, epoch µs.
    pub time_micros: i64,
    /// What it did.
    pub action: Action,
    /// Which connection.
    pub connection_id: u8,
    /// How many instruments.
    pub count: usize,
    /// The mode set, where one was.
    pub mode: Option<Mode>,
    /// The first 50 tokens.
    pub tokens: Vec<u32>,
}

/// The subscription history and each instrument's subscribe time.
#[derive(Debug, Default)]
pub struct History {
    changes: VecDeque<Change>,
    subscribed_at: HashMap<u32, i64>,
}

impl History {
    /// Records an accepted change.
    pub fn record(
        &mut self,
        time_micros: i64,
        action: Action,
        connection_id: u8,
        tokens: &[u32],
        mode: Option<Mode>,
    ) {
        match action {
            Action::Unsubscribe => {
                for t in tokens {
                    self.subscribed_at.remove(t);
                }
            }
            Action::Mode => {}
            Action::Config
            | Action::Subscribe
            | Action::Reload
            | Action::Serve
            | Action::Failover => {
                for t in tokens {
                    self.subscribed_at.entry(*t).or_insert(time_micros);
                }
            }
        }
        if self.changes.len() == KEEP {
            self.changes.pop_front();
        }
        self.changes.push_back(Change {
            time_micros,
            action,
            connection_id,
            count: tokens.len(),
            mode,
            tokens: tokens.iter().take(50).copied().collect(),
        });
    }

    /// The changes, oldest first.
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter()
    }

    /// When `token` was (first) subscribed, epoch µs.
    pub fn subscribed_at(&self, token: u32) -> Option<i64> {
        self.subscribed_at.get(&token).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_times_survive_mode_changes_and_end_on_unsubscribe() {
        let mut h = History::default();
        h.record(10, Action::Subscribe, 1, &[1, 2], Some(Mode::Quote));
        h.record(20, Action::Mode, 1, &[1], Some(Mode::Full));
        h.record(30, Action::Subscribe, 2, &[1], Some(Mode::Quote));
        assert_eq!(h.subscribed_at(1), Some(10));
        h.record(40, Action::Unsubscribe, 1, &[1], None);
        assert_eq!(h.subscribed_at(1), None);
        assert_eq!(h.changes().count(), 4);
    }
}
