//! Makes the connections' upstream subscriptions equal what the
//! [`Ledger`] derives: the only place that calls `subscribe`,
//! `unsubscribe` and `set_mode` on a [`Connection`]. Only the difference is
//! sent to Kite, and each change is recorded in the history with why.

use crate::engine::history::{Action, History};
use crate::engine::ledger::{diff, Diff, Ledger, CONNS};
use crate::events::{Emitter, Event, Why};
use crate::net::Connection;

/// Why a change was made, as the events journal says it.
fn why_of(action: Action) -> Why {
    match action {
        Action::Config => Why::Config,
        Action::Subscribe | Action::Unsubscribe | Action::Mode => Why::Control,
        Action::Reload => Why::Reload,
        Action::Serve => Why::Hub,
        Action::Failover => Why::Failover,
    }
}

/// Applies the ledger to every connection; returns what changed on each.
/// `why` names new subscriptions in the history (unsubscribes and mode
/// changes are recorded as such). Takeovers and handbacks are recorded by
/// the failover (`/failovers`), not in the history: the tokens stay
/// subscribed on their own connection throughout. Every change, takeovers
/// included, goes to the events journal with why.
pub fn sync(
    ledger: &Ledger,
    conns: &mut [Connection],
    history: &mut History,
    events: &Emitter,
    now_micros: i64,
    why: Action,
) -> [Diff; CONNS] {
    let because = why_of(why);
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
            events.emit_at(
                now_micros,
                Event::Unsubscribe {
                    connection_id: conn.id(),
                    why: because,
                    tokens: d.unsubscribe.clone(),
                },
            );
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
            events.emit_at(
                now_micros,
                Event::Mode {
                    connection_id: conn.id(),
                    why: because,
                    mode: mode.as_str().to_owned(),
                    tokens: tokens.clone(),
                },
            );
            history.record(now_micros, Action::Mode, conn.id(), tokens, Some(mode));
        }
        for (&mode, tokens) in &d.subscribe {
            conn.subscribe(tokens, mode);
            events.emit_at(
                now_micros,
                Event::Subscribe {
                    connection_id: conn.id(),
                    why: because,
                    mode: mode.as_str().to_owned(),
                    tokens: tokens.clone(),
                },
            );
            history.record(now_micros, why, conn.id(), tokens, Some(mode));
        }
        out[i] = d;
    }
    out
}
