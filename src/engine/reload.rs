//! SIGHUP and `POST /reload`: reread the config file and the environment,
//! and apply what can change without a restart — each connection's URL and
//! credentials (used from its next connect: Kite tokens expire daily) and
//! its instrument list (as subscribe/unsubscribe/mode diffs on the live
//! connection). The file becomes authoritative for instruments: control-call
//! changes not in the file are undone. A config that does not validate is
//! rejected whole and the running one kept.

use std::path::Path;

use crate::config::{Config, Env};
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
pub fn reload(
    path: &Path,
    running: &mut Config,
    conns: &mut [Connection],
    history: &mut History,
    now_micros: i64,
) -> Result<Reloaded, String> {
    let new = Config::load(path, &Env::from_process()).map_err(|e| e.to_string())?;
    let mut r = Reloaded::default();
    for (i, conn) in conns.iter_mut().enumerate() {
        let want = &new.connections[i];
        let old = conn.config().clone();
        if old.url != want.url
            || old.api_key != want.api_key
            || old.access_token != want.access_token
        {
            r.credentials_changed.push(conn.id());
        }
        conn.set_endpoint(want);
        let current = conn.desired().clone();
        let gone: Vec<u32> = current
            .keys()
            .copied()
            .filter(|t| !want.instruments.contains(t))
            .collect();
        if !gone.is_empty() {
            conn.unsubscribe(&gone);
            history.record(now_micros, Action::Unsubscribe, conn.id(), &gone, None);
        }
        let added: Vec<u32> = want
            .instruments
            .iter()
            .copied()
            .filter(|t| !current.contains_key(t))
            .collect();
        if !added.is_empty() {
            conn.subscribe(&added, want.mode);
            history.record(
                now_micros,
                Action::Reload,
                conn.id(),
                &added,
                Some(want.mode),
            );
        }
        let remoded: Vec<u32> = want
            .instruments
            .iter()
            .copied()
            .filter(|t| current.get(t).is_some_and(|m: &Mode| *m != want.mode))
            .collect();
        if !remoded.is_empty() {
            conn.set_mode(&remoded, want.mode);
            history.record(
                now_micros,
                Action::Mode,
                conn.id(),
                &remoded,
                Some(want.mode),
            );
        }
        (r.subscribed[i], r.unsubscribed[i], r.mode_changed[i]) =
            (added.len(), gone.len(), remoded.len());
    }
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
