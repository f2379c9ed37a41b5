//! The control calls: `/subscribe`, `/unsubscribe`, `/mode`, validated,
//! turned into claims in the [`Ledger`](crate::engine::ledger::Ledger),
//! and synced upstream (recorded in the history). A control call's claim
//! outlives the hub clients that want the same instrument and survives a
//! reload; `/unsubscribe` drops the user's claims (config and control),
//! never the hub clients'.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::kite::Mode;
use crate::status::Response;

use super::View;
use crate::config::MAX_INSTRUMENTS;
use crate::engine::history::Action;
use crate::engine::ledger::LedgerError;
use crate::engine::upstream;

/// A control call's body, validated.
struct Body {
    tokens: Vec<u32>,
    mode: Option<Mode>,
    connection_id: Option<u8>,
}

/// Parses a control body. `tokens` may mix numeric tokens and
/// `"EXCHANGE:SYMBOL"` strings, resolved through the dump in use; an
/// unknown symbol is a 400 naming it with the closest ones.
fn parse_body(
    body: &[u8],
    need_mode: bool,
    dir: Option<&crate::kite::Directory>,
) -> Result<Body, Response> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Response::error(400, format!("body is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Response::error(400, "body must be a JSON object"))?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "tokens" | "mode" | "connection_id") {
            return Err(Response::error(
                400,
                format!("unknown key {k:?}: expected tokens, mode, connection_id"),
            ));
        }
    }
    let list = obj.get("tokens").and_then(Value::as_array).ok_or_else(|| {
        Response::error(
            400,
            "\"tokens\" must be a list of instrument tokens or \"EXCHANGE:SYMBOL\" strings",
        )
    })?;
    if list.is_empty() {
        return Err(Response::error(400, "\"tokens\" is empty"));
    }
    let mut tokens = Vec::new();
    let mut bad = Vec::new();
    let mut unknown = Vec::new();
    for t in list {
        if let Some(sym) = t.as_str() {
            match dir {
                Some(d) => match d.token(sym) {
                    Some(x) => tokens.push(x),
                    None => unknown.push(json!({"symbol": sym, "did_you_mean": d.suggest(sym, 3)})),
                },
                None => {
                    return Err(Response::error(
                        400,
                        format!("{sym:?}: symbols need the instruments dump, and none is loaded (give numeric tokens, or enable [kite] instruments_dump)"),
                    ))
                }
            }
            continue;
        }
        match t
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .filter(|x| *x > 0)
        {
            Some(x) => tokens.push(x),
            None => bad.push(t.clone()),
        }
    }
    if !bad.is_empty() {
        return Err(Response::json(
            400,
            &json!({"error": "tokens must be positive 32-bit integers or \"EXCHANGE:SYMBOL\" strings", "tokens": bad}),
        ));
    }
    if !unknown.is_empty() {
        return Err(Response::json(
            400,
            &json!({"error": "unknown symbols in today's instruments dump", "unknown": unknown}),
        ));
    }
    let mut seen = BTreeSet::new();
    tokens.retain(|t| seen.insert(*t));
    let mode = match obj.get("mode") {
        None | Some(Value::Null) if !need_mode => None,
        Some(Value::String(m)) => Some(
            m.parse::<Mode>()
                .map_err(|e| Response::error(400, e.to_string()))?,
        ),
        _ => {
            return Err(Response::error(
                400,
                "\"mode\" must be \"ltp\", \"quote\" or \"full\"",
            ))
        }
    };
    let connection_id = match obj.get("connection_id") {
        None | Some(Value::Null) => None,
        Some(c) => Some(
            c.as_u64()
                .filter(|c| (1..=3).contains(c))
                .map(|c| c as u8)
                .ok_or_else(|| Response::error(400, "\"connection_id\" must be 1, 2 or 3"))?,
        ),
    };
    Ok(Body {
        tokens,
        mode,
        connection_id,
    })
}

/// The answer to a claim the ledger refused.
fn refused(e: &LedgerError) -> Response {
    match e {
        LedgerError::Full {
            connection_id,
            would_carry,
            tokens,
        } => Response::json(
            409,
            &json!({"error": e.to_string(), "connection_id": connection_id, "would_carry": would_carry,
                    "capacity": MAX_INSTRUMENTS, "tokens": tokens}),
        ),
        LedgerError::Elsewhere {
            connection_id,
            tokens,
        } => Response::json(
            409,
            &json!({"error": "instruments already subscribed on another connection; unsubscribe them first",
                    "connection_id": connection_id, "tokens": tokens}),
        ),
        LedgerError::Mirror => Response::error(409, e.to_string()),
        LedgerError::Unknown { tokens } => Response::json(
            404,
            &json!({"error": "not subscribed on any connection", "tokens": tokens}),
        ),
    }
}

/// Sends the ledger's difference upstream.
fn sync(v: &mut View<'_>, why: Action) {
    upstream::sync(
        v.ledger,
        v.conns,
        v.history,
        v.events,
        v.clock.now_micros(),
        why,
    );
    v.failover.refresh(v.ledger);
}

pub(super) fn subscribe(v: &mut View<'_>, body: &[u8]) -> Response {
    let b = match parse_body(body, false, v.dump.directory().map(|d| &**d)) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let id = b.connection_id.unwrap_or(1);
    let idx = usize::from(id - 1);
    let mode = b.mode.unwrap_or(v.conns[idx].mode());
    match v.ledger.control_subscribe(idx, &b.tokens, mode) {
        Ok(out) => v.released.extend(out.hub_released),
        Err(e) => return refused(&e),
    }
    sync(v, Action::Subscribe);
    tracing::info!(
        "status: subscribed {} instruments on connection {id} in {mode} mode",
        b.tokens.len()
    );
    Response::json(
        200,
        &json!({"status": "ok", "connection_id": id, "mode": mode.as_str(), "tokens": b.tokens,
        "subscribed_instruments": v.conns[idx].desired().len()}),
    )
}

pub(super) fn unsubscribe(v: &mut View<'_>, body: &[u8]) -> Response {
    let b = match parse_body(body, false, v.dump.directory().map(|d| &**d)) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let kept = match v.ledger.control_unsubscribe(&b.tokens) {
        Ok(k) => k,
        Err(e) => return refused(&e),
    };
    sync(v, Action::Unsubscribe);
    tracing::info!(
        "status: unsubscribed {} instruments ({} still wanted by hub clients)",
        b.tokens.len(),
        kept.len()
    );
    Response::json(
        200,
        &json!({"status": "ok", "tokens": b.tokens, "kept_for_hub_clients": kept}),
    )
}

pub(super) fn mode(v: &mut View<'_>, body: &[u8]) -> Response {
    let b = match parse_body(body, true, v.dump.directory().map(|d| &**d)) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(mode) = b.mode else {
        return Response::error(400, "\"mode\" is required");
    };
    if let Err(e) = v.ledger.control_mode(&b.tokens, mode) {
        return refused(&e);
    }
    sync(v, Action::Mode);
    Response::json(
        200,
        &json!({"status": "ok", "mode": mode.as_str(), "tokens": b.tokens}),
    )
}
