//! The status port's endpoints: routing and authorization here; the JSON
//! views in [`views`], counters as JSON and Prometheus text in [`metrics`],
//! the control calls that change live subscriptions in [`control`].
//!
//! This lives in the engine, not in `status/`, because it reads and changes
//! the loop's own state (`&mut [Connection]`, the config, the history);
//! `status/` is only the HTTP server and client. It runs on the event loop
//! between socket events and reads counters (atomics) and the loop's own
//! state.

mod control;
mod metrics;
mod views;

use serde_json::{json, Value};

use super::failover::Failover;
use super::history::History;
use crate::config::Config;
use crate::net::Connection;
use crate::stats::Stats;
use crate::status::{Rates, Request, Response};
use crate::time::{Clock, ZoneFormatter};

/// A tick within this long counts as fresh data.
pub(super) const FRESH_MICROS: i64 = 5_000_000;

/// What the endpoints read and change.
pub(super) struct View<'a> {
    /// The three connections.
    pub conns: &'a mut [Connection],
    /// Counters.
    pub stats: &'a Stats,
    /// The running configuration.
    pub config: &'a mut Config,
    /// Its file, for `/reload`.
    pub config_path: Option<&'a std::path::Path>,
    /// Subscription history.
    pub history: &'a mut History,
    /// Tick rates.
    pub rates: &'a Rates,
    /// The receive clock.
    pub clock: Clock,
    /// For ISO times in the configured zone.
    pub zone: &'a mut ZoneFormatter,
    /// HTTP server counters: (open clients, served, rejected).
    pub http: (usize, u64, u64),
    /// The page.
    pub page: &'static str,
    /// Takeovers.
    pub failover: &'a mut Failover,
    /// The instruments dump in use.
    pub dump: &'a crate::engine::symbols::DumpState,
    /// Who wants which instrument (control calls and reloads change it).
    pub ledger: &'a mut crate::engine::ledger::Ledger,
    /// Hub-only instruments that gave way to the user's claims (the loop
    /// tells the hub after the request).
    pub released: &'a mut Vec<u32>,
    /// Set when `/reload` applied a config (the loop then re-reads the
    /// token files' times, so the file a login wrote is not reloaded twice).
    pub reloaded: &'a mut bool,
    /// The events journal.
    pub events: &'a crate::events::Emitter,
}

impl View<'_> {
    fn iso(&mut self, micros: i64) -> Value {
        if micros <= 0 {
            return Value::Null;
        }
        let mut b = Vec::with_capacity(40);
        self.zone.write_micros(&mut b, micros);
        Value::String(String::from_utf8_lossy(&b).into_owned())
    }
}

/// The host part of a `Host` or `Origin` authority (`[::1]:8080` → `[::1]`).
fn host_of(authority: &str) -> &str {
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().map_or(a, |h| &a[..h.len() + 2]);
    }
    a.rsplit_once(':').map_or(a, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            a
        }
    })
}

/// A name that can only mean this machine.
fn is_loopback_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h == "[::1]"
        || h.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Only the user may talk to a loopback status port: a web page open in
/// the user's browser can send a `text/plain` POST without a preflight
/// (`mode: 'no-cors'`) and, with DNS rebinding, read any endpoint under its
/// own host name. So on a loopback listen address every request must name
/// a loopback host, and a control call must be `application/json` (which a
/// page cannot send cross-site without a CORS preflight, which we never
/// grant) and carry no foreign `Origin`.
fn same_site(v: &View<'_>, req: &Request, is_control: bool) -> Option<Response> {
    let loopback = v.config.status_listen.ip().is_loopback();
    if loopback {
        if let Some(h) = req.host.as_deref() {
            if !is_loopback_name(host_of(h)) {
                return Some(Response::error(
                    403,
                    format!("Host {:?} is not this machine: the status port answers only to localhost, 127.0.0.1 or [::1] (DNS rebinding)", crate::util::log_text(h, 100)),
                ));
            }
        }
    }
    if !is_control {
        return None;
    }
    if let Some(o) = req.origin.as_deref() {
        let authority = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .unwrap_or("");
        let same = req
            .host
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(authority));
        if !same {
            return Some(Response::error(
                403,
                format!(
                    "control calls from another site are refused (Origin {:?})",
                    crate::util::log_text(o, 100)
                ),
            ));
        }
    }
    let json = req.content_type.as_deref().is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    (!json).then(|| Response::error(415, "control calls need Content-Type: application/json"))
}

/// Answers one request.
pub(super) fn route(v: &mut View<'_>, req: &Request) -> Response {
    let get = req.method == "GET" || req.method == "HEAD";
    let post = req.method == "POST";
    let is_control = matches!(
        req.path.as_str(),
        "/subscribe" | "/unsubscribe" | "/mode" | "/reload"
    );
    if let Some(refused) = same_site(v, req, is_control && post) {
        return refused;
    }
    if is_control {
        if !post {
            return Response::error(405, format!("{} needs POST", req.path));
        }
        if let Some(resp) = authorize(v.config, req) {
            return resp;
        }
    } else if !get {
        return match req.path.as_str() {
            "/" | "/health" | "/connections" | "/instruments" | "/storage" | "/metrics"
            | "/failovers" | "/clients" | "/kafka" | "/orders" | "/candles" => {
                Response::error(405, format!("{} needs GET", req.path))
            }
            _ => Response::error(
                404,
                format!("no such endpoint: {} {}", req.method, req.path),
            ),
        };
    }
    match req.path.as_str() {
        "/" | "/index.html" => Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: v.page.as_bytes().to_vec(),
        },
        "/health" => Response::json(200, &views::health(v)),
        "/failovers" => Response::json(200, &views::failovers(v)),
        "/connections" => Response::json(200, &json!({ "connections": views::connections(v) })),
        "/instruments" => Response::json(200, &views::instruments(v)),
        "/storage" => Response::json(200, &views::storage(v)),
        "/clients" => Response::json(200, &views::clients(v)),
        "/kafka" => Response::json(200, &views::kafka(v)),
        "/candles" => {
            let (i, n, f) = (
                req.param("instrument"),
                req.param("interval"),
                req.param("from"),
            );
            match views::candles(v, i.as_deref(), n.as_deref(), f.as_deref()) {
                Ok(body) => Response::json(200, &body),
                Err((code, msg)) => Response::error(code, msg),
            }
        }
        "/orders" => match req.param("limit").as_deref().map(str::parse::<usize>) {
            None => Response::json(200, &views::orders(v, None)),
            Some(Ok(n)) => Response::json(200, &views::orders(v, Some(n))),
            Some(Err(_)) => Response::error(400, "limit must be a whole number"),
        },
        "/metrics" => match req.param("format").as_deref() {
            Some("prometheus") => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics::prometheus(v).into_bytes(),
            },
            Some("json") | None => Response::json(200, &metrics::json(v)),
            Some(other) => Response::error(
                400,
                format!("unknown format {other:?}: use json or prometheus"),
            ),
        },
        "/subscribe" => control::subscribe(v, &req.body),
        "/unsubscribe" => control::unsubscribe(v, &req.body),
        "/mode" => control::mode(v, &req.body),
        "/reload" => match v.config_path {
            None => Response::error(
                409,
                "no config file to reload (the service was started without --config)",
            ),
            Some(path) => {
                let now = v.clock.now_micros();
                let symbols = v.dump.symbols();
                let run = crate::engine::reload::Running {
                    config: &mut *v.config,
                    conns: &mut *v.conns,
                    ledger: &mut *v.ledger,
                    history: &mut *v.history,
                    failover: &mut *v.failover,
                    events: v.events,
                };
                match crate::engine::reload::reload(path, &*symbols, run, now) {
                    Ok(r) => {
                        if !r.credentials_changed.is_empty() {
                            v.stats
                                .credentials_loaded_micros
                                .store(now, std::sync::atomic::Ordering::Relaxed);
                        }
                        v.released.extend(&r.hub_released);
                        *v.reloaded = true;
                        Response::json(200, &json!({"status": "ok", "reloaded": r}))
                    }
                    Err(e) => Response::json(
                        422,
                        &json!({"error": format!("config rejected; the running one is kept: {e}")}),
                    ),
                }
            }
        },
        _ => Response::error(
            404,
            format!("no such endpoint: {} {}", req.method, req.path),
        ),
    }
}

/// Control calls on a non-loopback status port need `Authorization: Bearer <status.token>`.
fn authorize(config: &Config, req: &Request) -> Option<Response> {
    let loopback = config.status_listen.ip().is_loopback();
    if loopback {
        return None;
    }
    let Some(token) = &config.status_token else {
        return Some(Response::error(
            403,
            "control calls are disabled: the status port is not on loopback and [status] token is not set",
        ));
    };
    let given = req
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    // Constant-time compare: the token is a secret.
    let ok = given.is_some_and(|g| {
        let (a, b) = (g.as_bytes(), token.expose().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    });
    (!ok).then(|| {
        Response::error(
            401,
            "control calls need Authorization: Bearer <status token>",
        )
    })
}
