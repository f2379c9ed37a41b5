//! SIGHUP, `POST /reload` and a changed token file: reread the config file
//! and the environment, and apply what can change without a restart.
//!
//! Every setting is either applied to the running part, or listed in
//! `restart_needed` and kept at its running value in every view until the
//! restart (see [`RESTART_NEEDED`]):
//!
//! - applied live: each connection's URL, key and token (a connection
//!   that is not open abandons its attempt and reconnects at once with the
//!   new ones), its mode and instruments (the config's claims in the
//!   [`Ledger`]; control-call and hub claims stay), `tertiary.warm`,
//!   `tertiary.failover_after_ms`, `engine.stale_after_ms`,
//!   `engine.reconnect_max_ms`, `status.token`, the instruments dump settings;
//! - restart needed: everything in [`RESTART_NEEDED`].
//!
//! A config that does not validate, or whose instruments do not fit the
//! connections (3,000 each, with the control calls' claims), is rejected
//! whole and the running one kept.

use std::path::Path;
use std::time::Duration;

use super::failover::Failover;
use crate::config::{Config, ConfigError, Env, Symbols};
use crate::engine::history::{Action, History};
use crate::engine::ledger::{Ledger, LedgerError};
use crate::engine::upstream;
use crate::net::Connection;

/// Settings a reload reports but applies only at the next start.
pub const RESTART_NEEDED: [&str; 10] = [
    "storage",
    "status.listen",
    "status.request_deadline_ms",
    "engine.ring_capacity",
    "engine.writer_core",
    "tertiary.mirror",
    "tertiary.dedup_window_ms",
    "serve",
    "kafka",
    "candles",
];

/// What a reload did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Reloaded {
    /// Instruments subscribed, per connection id.
    pub subscribed: [usize; 3],
    /// Instruments unsubscribed, per connection id.
    pub unsubscribed: [usize; 3],
    /// Instruments whose mode changed, per connection id.
    pub mode_changed: [usize; 3],
    /// Connections whose URL or credentials changed (reconnected now
    /// unless open; an open one uses them from its next connect).
    pub credentials_changed: Vec<u8>,
    /// Other settings applied to the running parts.
    pub applied: Vec<String>,
    /// Settings that changed but only take effect after a restart (their
    /// running values are kept and shown).
    pub restart_needed: Vec<String>,
    /// Instruments held only for hub clients that gave way to configured ones.
    pub hub_released: Vec<u32>,
}

/// Why a reload was rejected (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The instruments do not fit.
    #[error("{0}")]
    Ledger(#[from] LedgerError),
}

/// What a reload changes.
pub struct Running<'a> {
    /// The running config (restart-needed parts keep their values).
    pub config: &'a mut Config,
    /// The connections.
    pub conns: &'a mut [Connection],
    /// The subscription ledger.
    pub ledger: &'a mut Ledger,
    /// The history of changes.
    pub history: &'a mut History,
    /// The failover state.
    pub failover: &'a mut Failover,
    /// The events journal.
    pub events: &'a crate::events::Emitter,
}

/// Rereads `path` (symbols resolved through `symbols`) and applies it. On
/// error nothing changes.
pub fn reload(
    path: &Path,
    symbols: &dyn Symbols,
    run: Running<'_>,
    now_micros: i64,
) -> Result<Reloaded, ReloadError> {
    let events = run.events;
    let out = Config::load_with(path, &Env::from_process(), symbols)
        .map_err(ReloadError::from)
        .and_then(|new| apply(new, run, now_micros, &path.display().to_string()));
    match &out {
        Ok(r) => events.emit(crate::events::Event::Reload {
            summary: r.summary(),
        }),
        Err(e) => events.emit(crate::events::Event::ReloadRefused {
            error: e.to_string(),
        }),
    }
    out
}

/// Applies a validated config to the running parts.
pub fn apply(
    mut new: Config,
    run: Running<'_>,
    now_micros: i64,
    origin: &str,
) -> Result<Reloaded, ReloadError> {
    let Running {
        config: running,
        conns,
        ledger,
        history,
        failover,
        events,
    } = run;
    let mut r = Reloaded::default();
    // The instruments first: all or nothing.
    let lists: [&[u32]; 3] = std::array::from_fn(|i| new.connections[i].instruments.as_slice());
    let modes = std::array::from_fn(|i| new.connections[i].mode);
    let outcome = ledger.set_config(lists, modes)?;
    r.hub_released = outcome.hub_released;

    let changed = [
        ("storage", running.storage != new.storage),
        ("status.listen", running.status_listen != new.status_listen),
        (
            "status.request_deadline_ms",
            running.status_request_deadline_ms != new.status_request_deadline_ms,
        ),
        (
            "engine.ring_capacity",
            running.ring_capacity != new.ring_capacity,
        ),
        ("engine.writer_core", running.writer_core != new.writer_core),
        (
            "tertiary.mirror",
            running.tertiary_mirror != new.tertiary_mirror,
        ),
        (
            "tertiary.dedup_window_ms",
            running.dedup_window_ms != new.dedup_window_ms,
        ),
        ("serve", running.serve != new.serve),
        ("kafka", running.kafka != new.kafka),
        (
            "candles",
            running.candles != new.candles || running.candle_repair != new.candle_repair,
        ),
    ];
    debug_assert!(changed.iter().map(|c| c.0).eq(RESTART_NEEDED));
    r.restart_needed = changed
        .iter()
        .filter(|(_, c)| *c)
        .map(|(k, _)| (*k).to_owned())
        .collect();
    // What needs a restart keeps its running value until then.
    new.storage = running.storage.clone();
    new.status_listen = running.status_listen;
    new.status_request_deadline_ms = running.status_request_deadline_ms;
    new.ring_capacity = running.ring_capacity;
    new.writer_core = running.writer_core;
    new.tertiary_mirror = running.tertiary_mirror;
    new.dedup_window_ms = running.dedup_window_ms;
    new.serve = running.serve.clone();
    new.kafka = running.kafka.clone();
    new.candles = running.candles.clone();
    new.candle_repair = running.candle_repair.clone();
    if new.tertiary_mirror {
        // The mirror's list follows the primary (as at start).
        new.connections[2].instruments = new.connections[0].instruments.clone();
        new.connections[2].mode = new.connections[0].mode;
    }

    for (i, conn) in conns.iter_mut().enumerate() {
        let want = &new.connections[i];
        let old = conn.config();
        if old.url != want.url
            || old.api_key != want.api_key
            || old.access_token != want.access_token
        {
            r.credentials_changed.push(conn.id());
            conn.set_endpoint(want);
            conn.retry_now();
        }
        conn.set_endpoint(want);
    }
    let mut applied = Vec::new();
    if running.tertiary_warm != new.tertiary_warm {
        conns[2].set_warm(new.tertiary_warm);
        applied.push("tertiary.warm");
    }
    if running.failover_after_ms != new.failover_after_ms {
        failover.set_after(Duration::from_millis(new.failover_after_ms));
        applied.push("tertiary.failover_after_ms");
    }
    if running.stale_after_ms != new.stale_after_ms {
        for c in conns.iter_mut() {
            c.set_stale_after(Duration::from_millis(new.stale_after_ms));
        }
        applied.push("engine.stale_after_ms");
    }
    if running.reconnect_max_ms != new.reconnect_max_ms {
        for c in conns.iter_mut() {
            c.set_reconnect_max(Duration::from_millis(new.reconnect_max_ms));
        }
        applied.push("engine.reconnect_max_ms");
    }
    if running.status_token != new.status_token {
        applied.push("status.token");
    }
    if running.dump != new.dump {
        applied.push("kite.instruments_dump");
    }
    r.applied = applied.into_iter().map(str::to_owned).collect();

    let diffs = upstream::sync(ledger, conns, history, events, now_micros, Action::Reload);
    for (i, d) in diffs.iter().enumerate() {
        (r.subscribed[i], r.unsubscribed[i], r.mode_changed[i]) =
            (d.subscribed(), d.unsubscribe.len(), d.remoded());
    }
    failover.refresh(ledger);
    *running = new;
    tracing::info!("config reloaded from {origin}: {}", r.summary());
    Ok(r)
}

impl Reloaded {
    /// One line for people: what changed, per connection, and what waits
    /// for a restart.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for i in 0..3 {
            let (s, u, m) = (
                self.subscribed[i],
                self.unsubscribed[i],
                self.mode_changed[i],
            );
            if s + u + m > 0 {
                parts.push(format!(
                    "connection {}: +{s} -{u} instruments, {m} re-moded",
                    i + 1
                ));
            }
        }
        if !self.credentials_changed.is_empty() {
            let ids: Vec<String> = self.credentials_changed.iter().map(u8::to_string).collect();
            parts.push(format!("new credentials for connection {}", ids.join(", ")));
        }
        if !self.applied.is_empty() {
            parts.push(format!("applied {}", self.applied.join(", ")));
        }
        if !self.restart_needed.is_empty() {
            parts.push(format!(
                "needs a restart to take effect: {}",
                self.restart_needed.join(", ")
            ));
        }
        if !self.hub_released.is_empty() {
            parts.push(format!(
                "{} hub-only instruments gave way to configured ones",
                self.hub_released.len()
            ));
        }
        if parts.is_empty() {
            "nothing changed".to_owned()
        } else {
            parts.join("; ")
        }
    }
}
