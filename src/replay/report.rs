//! The feed's summary: what `tickcap replay` prints as one JSON line on exit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::{lock, Shared, Source};
use crate::kite::Mode;

/// Live fault counters.
#[derive(Debug, Default)]
pub(super) struct FaultCounters {
    pub drops: AtomicU64,
    pub stalls: AtomicU64,
    pub malformed: AtomicU64,
    pub auth_rejected: AtomicU64,
    pub errors: AtomicU64,
}

/// Faults injected, by kind.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct FaultCounts {
    /// Connections dropped abruptly.
    pub drops: u64,
    /// Stalls (no data, no heartbeat).
    pub stalls: u64,
    /// Malformed packets sent.
    pub malformed: u64,
    /// Upgrades refused by `--reject-auth`.
    pub auth_rejected: u64,
    /// `error` text frames sent.
    pub errors: u64,
}

/// The summary. Keys are the contract's (`sent`, `per_connection`,
/// `per_mode`, `last_volume`, `faults`, `elapsed_s`, `rate`) and more.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Report {
    /// Ticks sent in all.
    pub sent: u64,
    /// Market feed: ticks the exchange generated (each goes to every
    /// connection subscribed at that instant, or to none while all are down).
    #[serde(default)]
    pub generated: u64,
    /// Ticks per connection, by connection number (1 = first accepted).
    pub per_connection: BTreeMap<String, u64>,
    /// Ticks per mode (`ltp`, `quote`, `full`).
    pub per_mode: BTreeMap<String, u64>,
    /// Last `volume_traded` sent per instrument token.
    pub last_volume: BTreeMap<String, u64>,
    /// Faults injected.
    pub faults: FaultCounts,
    /// Seconds since the feed started.
    pub elapsed_s: f64,
    /// `sent / elapsed_s`.
    pub rate: f64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Connections that completed the upgrade.
    pub connections: u64,
    /// Upgrades refused for wrong credentials.
    pub refused_auth: u64,
    /// Upgrades refused past the per-key connection limit.
    pub refused_limit: u64,
}

pub(super) fn build(sh: &Shared) -> Report {
    let c = &sh.counters;
    let elapsed = sh.started.elapsed().as_secs_f64();
    let sent = c.sent.load(Ordering::Relaxed);
    let per_mode = [Mode::Ltp, Mode::Quote, Mode::Full]
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str().to_owned(), c.per_mode[i].load(Ordering::Relaxed)))
        .collect();
    let per_connection = lock(&sh.per_connection)
        .iter()
        .map(|(id, n)| (id.to_string(), n.load(Ordering::Relaxed)))
        .collect();
    let last_volume = match sh.cfg.source {
        Source::Synthetic { .. } if sh.cfg.broadcast || sh.cfg.market => lock(&sh.broadcast)
            .iter()
            .filter(|(_, b)| b.volume() > 0)
            .map(|(t, b)| (t.to_string(), u64::from(b.volume())))
            .collect(),
        Source::Synthetic { .. } => lock(&sh.instruments)
            .values()
            .filter(|i| i.volume() > 0)
            .map(|i| (i.token().to_string(), u64::from(i.volume())))
            .collect(),
        Source::Recorded { .. } => lock(&sh.last_volume)
            .iter()
            .map(|(t, v)| (t.to_string(), u64::from(*v)))
            .collect(),
    };
    let f = &c.faults;
    Report {
        sent,
        generated: sh.generated.load(Ordering::Relaxed),
        per_connection,
        per_mode,
        last_volume,
        faults: FaultCounts {
            drops: f.drops.load(Ordering::Relaxed),
            stalls: f.stalls.load(Ordering::Relaxed),
            malformed: f.malformed.load(Ordering::Relaxed),
            auth_rejected: f.auth_rejected.load(Ordering::Relaxed),
            errors: f.errors.load(Ordering::Relaxed),
        },
        elapsed_s: elapsed,
        rate: if elapsed > 0.0 {
            sent as f64 / elapsed
        } else {
            0.0
        },
        heartbeats: c.heartbeats.load(Ordering::Relaxed),
        connections: c.accepted.load(Ordering::Relaxed),
        refused_auth: c.refused_auth.load(Ordering::Relaxed),
        refused_limit: c.refused_limit.load(Ordering::Relaxed),
    }
}
