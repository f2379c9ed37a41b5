//! The control calls: `/subscribe`, `/unsubscribe`, `/mode` on live
//! connections, validated, applied, and recorded in the history.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::config::MAX_INSTRUMENTS;
use crate::kite::Mode;
use crate::net::Connection;
use crate::status::Response;

use super::View;
use crate::engine::history::Action;

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

/// Which connection carries each token now.
/// (The tertiary's instruments count only where no user connection has
/// them: a takeover or a mirror carries them on the others' behalf.)
fn owners(conns: &[Connection]) -> BTreeMap<u32, u8> {
    let mut m = BTreeMap::new();
    for c in conns.iter().rev() {
        for t in c.desired().keys() {
            m.insert(*t, c.id());
        }
    }
    m
}

pub(super) fn subscribe(v: &mut View<'_>, body: &[u8]) -> Response {
    let b = match parse_body(body, false, v.dump.directory().map(|d| &**d)) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let id = b.connection_id.unwrap_or(1);
    let idx = usize::from(id - 1);
    let mode = b.mode.unwrap_or(v.conns[idx].mode());
    let owners = owners(v.conns);
    let elsewhere: Vec<u32> = b
        .tokens
        .iter()
        .copied()
        .filter(|t| owners.get(t).is_some_and(|o| *o != id))
        .collect();
    if !elsewhere.is_empty() {
        return Response::json(
            409,
            &json!({"error": "instruments already subscribed on another connection; unsubscribe them first", "tokens": elsewhere}),
        );
    }
    let new: Vec<u32> = b
        .tokens
        .iter()
        .copied()
        .filter(|t| !v.conns[idx].desired().contains_key(t))
        .collect();
    let after = v.conns[idx].desired().len() + new.len();
    if after > MAX_INSTRUMENTS {
        return Response::json(
            422,
            &json!({"error": format!("connection {id} would carry {after} instruments; Kite allows {MAX_INSTRUMENTS}"),
                    "capacity_remaining": MAX_INSTRUMENTS - v.conns[idx].desired().len(), "tokens": new}),
        );
    }
    apply(v, id, |c| c.subscribe(&b.tokens, mode));
    v.history.record(
        v.clock.now_micros(),
        Action::Subscribe,
        id,
        &b.tokens,
        Some(mode),
    );
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

/// The tokens grouped by the connection that carries them; 404 naming the
/// tokens no connection carries.
fn by_owner(conns: &[Connection], tokens: &[u32]) -> Result<BTreeMap<u8, Vec<u32>>, Response> {
    let owners = owners(conns);
    let unknown: Vec<u32> = tokens
        .iter()
        .copied()
        .filter(|t| !owners.contains_key(t))
        .collect();
    if !unknown.is_empty() {
        return Err(Response::json(
            404,
            &json!({"error": "not subscribed on any connection", "tokens": unknown}),
        ));
    }
    let mut by_conn: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
    for t in tokens {
        by_conn.entry(owners[t]).or_default().push(*t);
    }
    Ok(by_conn)
}

/// Applies a change to connection `id` and, when the tertiary mirrors the
/// primary, to the tertiary as well.
fn apply(v: &mut View<'_>, id: u8, f: impl Fn(&mut Connection)) {
    f(&mut v.conns[usize::from(id - 1)]);
    if id == 1 && v.config.tertiary_mirror {
        f(&mut v.conns[2]);
    }
}

pub(super) fn unsubscribe(v: &mut View<'_>, body: &[u8]) -> Response {
    let b = match parse_body(body, false, v.dump.directory().map(|d| &**d)) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let groups = match by_owner(v.conns, &b.tokens) {
        Ok(g) => g,
        Err(r) => return r,
    };
    for (id, tokens) in &groups {
        apply(v, *id, |c| c.unsubscribe(tokens));
        v.history
            .record(v.clock.now_micros(), Action::Unsubscribe, *id, tokens, None);
    }
    tracing::info!("status: unsubscribed {} instruments", b.tokens.len());
    Response::json(200, &json!({"status": "ok", "tokens": b.tokens}))
}

pub(super) fn mode(v: &mut View<'_>, body: &[u8]) -> Response {
    let b = match parse_body(body, true, v.dump.directory().map(|d| &**d)) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(mode) = b.mode else {
        return Response::error(400, "\"mode\" is required");
    };
    let groups = match by_owner(v.conns, &b.tokens) {
        Ok(g) => g,
        Err(r) => return r,
    };
    for (id, tokens) in &groups {
        apply(v, *id, |c| c.set_mode(tokens, mode));
        v.history
            .record(v.clock.now_micros(), Action::Mode, *id, tokens, Some(mode));
    }
    Response::json(
        200,
        &json!({"status": "ok", "mode": mode.as_str(), "tokens": b.tokens}),
    )
}
