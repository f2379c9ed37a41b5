//! Makes the connections' upstream subscriptions equal what the
//! [`Ledger`] derives: the only place that calls `subscribe`,
//! `unsubscribe` and `set_mode` on a [`Connection`]. Only the difference is
//! sent to Kite, and each change is recorded in the history with why.

use crate::engine::history::{Action, History};
use crate::engine::ledger::{diff, Diff, Ledger, CONNS};
use crate::net::Connection;

/// Applies the ledger to every connection; returns what changed on each.
/// `why` names new subscriptions in the history (unsubscribes and mode
/// changes are recorded as such). Takeovers and handbacks are recorded by
/// the failover (`/failovers`), not in the history: the tokens stay
/// subscribed on their own connection throughout.
pub fn sync(
    ledger: &Ledger,
    conns: &mut [Connection],
    history: &mut History,
    now_micros: i64,
    why: Action,
) -> [Diff; CONNS] {
    let mut out: [Diff; CONNS] = Default::default();
    let mut scratch = History::default();
    let history = if why == Action::Failover {
        &mut scratch
    } else {
        history
    };
    for (i, conn) in conns.iter_mut().enumerate().take(CONNS) {
        let d = diff(conn.desired(), &ledger.derived(i));
        if d.is_empty() {
            continue;
        }
        if !d.unsubscribe.is_empty() {
            conn.unsubscribe(&d.unsubscribe);
            history.record(
                now_micros,
                Action::Unsubscribe,
                conn.id(),
                &d.unsubscribe,
                None,
            );
        }
        for (&mode, tokens) in &d.remode {
            conn.set_mode(tokens, mode);
            history.record(now_micros, Action::Mode, conn.id(), tokens, Some(mode));
        }
        for (&mode, tokens) in &d.subscribe {
            conn.subscribe(tokens, mode);
            history.record(now_micros, why, conn.id(), tokens, Some(mode));
        }
        out[i] = d;
    }
    out
}
