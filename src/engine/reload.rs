//! SIGHUP and `POST /reload`: reread the config file and the environment,
//! and apply what can change without a restart — each connection's URL and
//! credentials (used from its next connect: Kite tokens expire daily) and
//! its instrument list (as subscribe/unsubscribe/mode diffs on the live
//! connection). The file becomes authoritative for instruments: control-call
//! changes not in the file are undone. A config that does not validate is
//! rejected whole and the running one kept.

use std::path::Path;

use std::collections::BTreeMap;

use super::failover::Failover;
use crate::config::{Config, ConfigError, Env, Symbols};
use crate::engine::history::{Action, History};
use crate::kite::Mode;
use crate::net::Connection;

/// What a reload did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Reloaded {
    /// Instruments subscribed, per connection id.
    pub subscribed: [usize; 3],
    /// Instruments unsubscribed, per connection id.
    pub unsubscribed: [usize; 3],
    /// Instruments whose mode changed, per connection id.
    pub mode_changed: [usize; 3],
    /// Connections whose URL or credentials changed (used at next connect).
    pub credentials_changed: Vec<u8>,
    /// Settings that changed but only take effect after a restart.
    pub restart_needed: Vec<String>,
}

/// Rereads `path` and applies it. On error nothing changes.
///
/// Instruments the hub subscribed for its clients (`keep.served`) stay.
///
/// Instruments the tertiary carries for an active takeover belong to the
/// failover, not to the file: they stay subscribed, and the takeover is then
/// re-aligned with the failed connection's new list (`Failover::resync`), so
/// a reload never leaves an instrument captured by nobody.
/// What the file does not own but a reload must keep: the symbol table to
/// resolve with, and what the hub subscribed upstream for its clients, per
/// connection.
pub struct Keep<'a> {
    /// Resolves `EXCHANGE:SYMBOL` entries.
    pub symbols: &'a dyn Symbols,
    /// Per connection: instruments held for hub clients, with their modes.
    pub served: [BTreeMap<u32, Mode>; 3],
}

pub fn reload(
    path: &Path,
    keep: &Keep<'_>,
    running: &mut Config,
    conns: &mut [Connection],
    history: &mut History,
    failover: &mut Failover,
    now_micros: i64,
) -> Result<Reloaded, ConfigError> {
    let new = Config::load_with(path, &Env::from_process(), keep.symbols)?;
    let mut r = Reloaded::default();
    let carried = failover.carried();
    for (i, conn) in conns.iter_mut().enumerate() {
        let want = &new.connections[i];
        let old = conn.config().clone();
        if old.url != want.url
            || old.api_key != want.api_key
            || old.access_token != want.access_token
        {
            r.credentials_changed.push(conn.id());
            conn.set_endpoint(want);
            conn.retry_now();
        }
        conn.set_endpoint(want);
        let mut wanted: BTreeMap<u32, Mode> =
            want.instruments.iter().map(|&t| (t, want.mode)).collect();
        if i == 2 {
            for (&t, &m) in &carried {
                wanted.entry(t).or_insert(m);
            }
        }
        // Hub clients' instruments stay, in at least the mode they need.
        for (&t, &m) in &keep.served[i] {
            let w = wanted.entry(t).or_insert(m);
            *w = (*w).max(m);
        }
        let current = conn.desired().clone();
        let gone: Vec<u32> = current
            .keys()
            .copied()
            .filter(|t| !wanted.contains_key(t))
            .collect();
        if !gone.is_empty() {
            conn.unsubscribe(&gone);
            history.record(now_micros, Action::Unsubscribe, conn.id(), &gone, None);
        }
        let mut added = 0;
        let mut remoded = 0;
        for mode in [Mode::Ltp, Mode::Quote, Mode::Full] {
            let new_here: Vec<u32> = wanted
                .iter()
                .filter(|(t, m)| **m == mode && !current.contains_key(t))
                .map(|(t, _)| *t)
                .collect();
            if !new_here.is_empty() {
                conn.subscribe(&new_here, mode);
                history.record(now_micros, Action::Reload, conn.id(), &new_here, Some(mode));
                added += new_here.len();
            }
            let changed: Vec<u32> = wanted
                .iter()
                .filter(|(t, m)| **m == mode && current.get(t).is_some_and(|c| c != *m))
                .map(|(t, _)| *t)
                .collect();
            if !changed.is_empty() {
                conn.set_mode(&changed, mode);
                history.record(now_micros, Action::Mode, conn.id(), &changed, Some(mode));
                remoded += changed.len();
            }
        }
        (r.subscribed[i], r.unsubscribed[i], r.mode_changed[i]) = (added, gone.len(), remoded);
    }
    let own: std::collections::BTreeSet<u32> =
        new.connections[2].instruments.iter().copied().collect();
    failover.resync(conns, &own);
    let restart = [
        ("storage", running.storage != new.storage),
        ("status", running.status_listen != new.status_listen),
        (
            "status.request_deadline_ms",
            running.status_request_deadline_ms != new.status_request_deadline_ms,
        ),
        (
            "engine.ring_capacity",
            running.ring_capacity != new.ring_capacity,
        ),
        ("engine.writer_core", running.writer_core != new.writer_core),
    ];
    r.restart_needed = restart
        .iter()
        .filter(|(_, c)| *c)
        .map(|(k, _)| (*k).to_owned())
        .collect();
    let keep_storage = running.storage.clone();
    let keep_listen = running.status_listen;
    let keep_deadline = running.status_request_deadline_ms;
    *running = new;
    // What needs a restart keeps its running value until then.
    running.storage = keep_storage;
    running.status_listen = keep_listen;
    running.status_request_deadline_ms = keep_deadline;
    tracing::info!("config reloaded from {}: {r:?}", path.display());
    Ok(r)
}
