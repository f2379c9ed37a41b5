//! The status port's endpoints: live state as JSON (and Prometheus text),
//! and the control calls that change subscriptions on live connections.
//!
//! Runs on the event loop between socket events; reads counters (atomics)
//! and the loop's own state, never waits on a lock held by the hot path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::http::{Request, Response};
use super::rates::Rates;
use crate::config::{Config, MAX_INSTRUMENTS};
use crate::engine::history::History;
use crate::engine::stats::{StateName, Stats};
use crate::engine::Clock;
use crate::kite::Mode;
use crate::net::Connection;
use crate::sink::ZoneClock;

/// A tick within this long counts as fresh data.
pub const FRESH_MICROS: i64 = 5_000_000;

/// What the endpoints read and change.
pub struct View<'a> {
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
    pub zone: &'a mut ZoneClock,
    /// HTTP server counters: (open clients, served, rejected).
    pub http: (usize, u64, u64),
    /// The page.
    pub page: &'static str,
    /// Takeovers.
    pub failover: &'a crate::engine::failover::Failover,
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

/// Answers one request.
pub fn route(v: &mut View<'_>, req: &Request) -> Response {
    let get = req.method == "GET" || req.method == "HEAD";
    let post = req.method == "POST";
    let is_control = matches!(
        req.path.as_str(),
        "/subscribe" | "/unsubscribe" | "/mode" | "/reload"
    );
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
            | "/failovers" => Response::error(405, format!("{} needs GET", req.path)),
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
        "/health" => Response::json(200, &health(v)),
        "/failovers" => Response::json(200, &failovers(v)),
        "/connections" => Response::json(200, &json!({ "connections": connections(v) })),
        "/instruments" => Response::json(200, &instruments(v)),
        "/storage" => Response::json(200, &storage(v)),
        "/metrics" => match req.param("format") {
            Some("prometheus") => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: prometheus(v).into_bytes(),
            },
            Some("json") | None => Response::json(200, &metrics(v)),
            Some(other) => Response::error(
                400,
                format!("unknown format {other:?}: use json or prometheus"),
            ),
        },
        "/subscribe" => subscribe(v, &req.body),
        "/unsubscribe" => unsubscribe(v, &req.body),
        "/mode" => mode(v, &req.body),
        "/reload" => match v.config_path {
            None => Response::error(
                409,
                "no config file to reload (the service was started without --config)",
            ),
            Some(path) => {
                let now = v.clock.now_micros();
                match crate::engine::reload::reload(path, v.config, v.conns, v.history, now) {
                    Ok(r) => Response::json(200, &json!({"status": "ok", "reloaded": r})),
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
    let loopback = config
        .status_listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
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

fn configured(c: &Connection) -> bool {
    !c.desired().is_empty()
}

/// `GET /health`.
pub fn health(v: &mut View<'_>) -> Value {
    let now = v.clock.now_micros();
    let open: Vec<bool> = v.conns.iter().map(|c| c.is_open()).collect();
    let wanted: Vec<bool> = v.conns.iter().map(configured).collect();
    let last_tick = v
        .stats
        .conns
        .iter()
        .map(|c| c.last_tick_micros.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let fresh = last_tick > 0 && now - last_tick <= FRESH_MICROS;
    let active = open.iter().filter(|o| **o).count();
    let mut reasons = Vec::new();
    for (i, c) in v.conns.iter().enumerate() {
        if wanted[i] && !open[i] {
            reasons.push(format!(
                "connection {} ({}) is {}",
                i + 1,
                c.role().as_str(),
                v.stats.conns[i].state().as_str()
            ));
        }
    }
    if !fresh {
        reasons.push("no tick in the last 5 s".to_owned());
    }
    for (from, n) in v.failover.carrying() {
        reasons.push(format!(
            "failover: the tertiary carries {n} instruments of connection {from}"
        ));
    }
    let status = if active == 0 {
        "down"
    } else if wanted.iter().zip(&open).all(|(w, o)| !*w || *o) && fresh && !v.failover.is_active() {
        "healthy"
    } else {
        "degraded"
    };
    let started = v.stats.started_micros.load(Ordering::Relaxed);
    let subscribed: BTreeSet<u32> = v
        .conns
        .iter()
        .flat_map(|c| c.desired().keys().copied())
        .collect();
    json!({
        "status": status,
        "timestamp": v.iso(now),
        "uptime_seconds": ((now - started) as f64 / 1e6 * 10.0).round() / 10.0,
        "active_connections": active,
        "configured_connections": wanted.iter().filter(|w| **w).count(),
        "subscribed_instruments": subscribed.len(),
        "last_tick_time": v.iso(last_tick),
        "data_fresh": fresh,
        "ticks_per_second": (v.rates.total * 10.0).round() / 10.0,
        "ticks_received": v.stats.ticks_received(),
        "lines_written": v.stats.lines_written(),
        "reasons": reasons,
    })
}

fn connections(v: &mut View<'_>) -> Vec<Value> {
    let now = v.clock.now_micros();
    let mut out = Vec::new();
    for i in 0..v.conns.len() {
        let s = &v.stats.conns[i];
        let c = &v.conns[i];
        let last = s.last_tick_micros.load(Ordering::Relaxed);
        let (cap, used) = c.ring_occupancy();
        let entry = json!({
            "connection_id": c.id(),
            "role": c.role().as_str(),
            "mode": c.mode().as_str(),
            "state": s.state().as_str(),
            "url": c.config().url,
            "api_key": c.config().api_key,
            "subscribed_instruments": c.desired().len(),
            "tick_count": s.ticks.load(Ordering::Relaxed),
            "tick_rate": (v.rates.per_conn[i] * 10.0).round() / 10.0,
            "last_tick_time": Value::Null,
            "seconds_since_last_tick": if last > 0 { json!(((now - last) as f64 / 1e5).round() / 10.0) } else { Value::Null },
            "reconnects": s.reconnects.load(Ordering::Relaxed),
            "capacity_remaining": MAX_INSTRUMENTS.saturating_sub(c.desired().len()),
            "frames": s.frames.load(Ordering::Relaxed),
            "heartbeats": s.heartbeats.load(Ordering::Relaxed),
            "decode_errors": s.decode_errors.load(Ordering::Relaxed),
            "server_errors": s.server_errors.load(Ordering::Relaxed),
            "auth_failures": s.auth_failures.load(Ordering::Relaxed),
            "stale_disconnects": s.stale.load(Ordering::Relaxed),
            "ring_stalls": s.ring_stalls.load(Ordering::Relaxed),
            "ring_stall_seconds": s.ring_stall_micros.load(Ordering::Relaxed) as f64 / 1e6,
            "down_seconds": s.down_micros.load(Ordering::Relaxed) as f64 / 1e6,
            "ring_capacity": cap,
            "ring_occupancy": used,
        });
        out.push(entry);
    }
    for (i, e) in out.iter_mut().enumerate() {
        let last = v.stats.conns[i].last_tick_micros.load(Ordering::Relaxed);
        e["last_tick_time"] = v.iso(last);
    }
    if let Some(t) = out.get_mut(2) {
        t["carrying"] = json!(v
            .failover
            .carrying()
            .iter()
            .map(|(from, n)| json!({"for_connection": from, "instruments": n}))
            .collect::<Vec<_>>());
        t["mirror"] = json!(v.config.tertiary_mirror);
    }
    out
}

/// (connection id, role, instruments with modes).
type ConnInstruments = (u8, &'static str, Vec<(u32, Mode)>);

fn instruments(v: &mut View<'_>) -> Value {
    let now = v.clock.now_micros();
    let seen = v
        .stats
        .instruments
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let mut per_conn = Vec::new();
    let mut all = BTreeSet::new();
    let mut rows = Vec::new();
    let mut silent = Vec::new();
    let mut entries: Vec<ConnInstruments> = Vec::new();
    for c in v.conns.iter() {
        entries.push((
            c.id(),
            c.role().as_str(),
            c.desired().iter().map(|(t, m)| (*t, *m)).collect(),
        ));
    }
    for (id, role, list) in entries {
        per_conn.push(json!({
            "connection_id": id,
            "role": role,
            "count": list.len(),
            "instruments": list.iter().map(|(t, m)| json!({"instrument_token": t, "mode": m.as_str()})).collect::<Vec<_>>(),
        }));
        for (t, m) in list {
            all.insert(t);
            let s = seen.get(&t).copied().unwrap_or_default();
            let since = v.history.subscribed_at(t);
            let row = json!({
                "instrument_token": t,
                "connection_id": id,
                "mode": m.as_str(),
                "tick_count": s.ticks,
                "last_tick_time": v.iso(s.last_micros),
                "subscribed_at": since.map(|x| v.iso(x)),
            });
            if since.is_some_and(|at| s.last_micros < at) || (since.is_none() && s.ticks == 0) {
                silent.push(json!({
                    "instrument_token": t,
                    "connection_id": id,
                    "subscribed_at": since.map(|x| v.iso(x)),
                    "seconds_silent": since.map(|at| ((now - at) as f64 / 1e5).round() / 10.0),
                }));
            }
            rows.push(row);
        }
    }
    let history: Vec<Value> = v
        .history
        .changes()
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .map(|c| {
            json!({"time": v.iso(c.time_micros), "action": c.action, "connection_id": c.connection_id,
                   "count": c.count, "mode": c.mode.map(|m| m.as_str()), "tokens": c.tokens})
        })
        .collect();
    json!({
        "connections": per_conn,
        "total_unique_instruments": all.len(),
        "instruments": rows,
        "silent": silent,
        "history": history,
    })
}

fn storage(v: &mut View<'_>) -> Value {
    let w = &v.stats.writer;
    let dir = &v.config.storage.data_dir;
    let mut files = Vec::new();
    let mut total = 0u64;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if crate::sink::files::date_of_name(&name).is_some() {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                total += size;
                files.push((name, size));
            }
        }
    }
    files.sort();
    let current = w.current_file.lock().ok().and_then(|p| p.clone());
    let last_flush = w.last_flush_micros.load(Ordering::Relaxed);
    json!({
        "data_dir": dir.display().to_string(),
        "current_file": current.map(|p| p.display().to_string()),
        "files": files.iter().map(|(n, s)| json!({"name": n, "bytes": s})).collect::<Vec<_>>(),
        "file_count": files.len(),
        "total_bytes": total,
        "lines_written_today": w.lines_today.load(Ordering::Relaxed),
        "lines_written": w.lines.load(Ordering::Relaxed),
        "bytes_written": w.bytes.load(Ordering::Relaxed),
        "writes": w.writes.load(Ordering::Relaxed),
        "fsync_policy": v.config.storage.fsync.as_str(),
        "fsync_interval_ms": v.config.storage.fsync_interval_ms,
        "fsyncs": w.fsyncs.load(Ordering::Relaxed),
        "flush_interval_ms": v.config.storage.flush_interval_ms,
        "last_flush": v.iso(last_flush),
        "buffered_bytes": w.buffered_bytes.load(Ordering::Relaxed),
        "write_errors": w.write_errors.load(Ordering::Relaxed),
        "last_write_error": w.last_error.lock().ok().and_then(|e| e.clone()),
        "torn_lines_repaired": w.torn_repaired.load(Ordering::Relaxed),
        "retention_days": v.config.storage.retention_days,
        "timezone": v.config.storage.timezone,
    })
}

fn percentiles(h: &hdrhistogram::Histogram<u64>, scale: f64) -> Value {
    let q = |p: f64| (h.value_at_quantile(p) as f64 / scale * 10.0).round() / 10.0;
    json!({
        "count": h.len(), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99_9": q(0.999),
        "max": (h.max() as f64 / scale * 10.0).round() / 10.0, "mean": (h.mean() / scale * 10.0).round() / 10.0,
    })
}

fn metrics(v: &mut View<'_>) -> Value {
    let s = v.stats;
    let sum = |f: fn(&crate::engine::stats::ConnStats) -> u64| s.conns.iter().map(f).sum::<u64>();
    let rings: Vec<Value> = v
        .conns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (cap, used) = c.ring_occupancy();
            json!({"connection_id": i + 1, "capacity": cap, "occupancy": used,
                   "stalls": s.conns[i].ring_stalls.load(Ordering::Relaxed),
                   "stall_seconds": s.conns[i].ring_stall_micros.load(Ordering::Relaxed) as f64 / 1e6})
        })
        .collect();
    let ring_h = s.receive_to_ring_ns();
    let written_h = Stats::histogram(&s.latency.receive_to_written_us);
    json!({
        "ticks_received": s.ticks_received(),
        "lines_written": s.lines_written(),
        "bytes_written": s.writer.bytes.load(Ordering::Relaxed),
        "ticks_per_second": (v.rates.total * 10.0).round() / 10.0,
        "ticks_per_second_by_connection": v.rates.per_conn.iter().map(|r| (r * 10.0).round() / 10.0).collect::<Vec<_>>(),
        "ticks_per_second_history": v.rates.history.iter().map(|(t, r)| json!([t, (r * 10.0).round() / 10.0])).collect::<Vec<_>>(),
        "frames": sum(|c| c.frames.load(Ordering::Relaxed)),
        "heartbeats": sum(|c| c.heartbeats.load(Ordering::Relaxed)),
        "decode_errors": sum(|c| c.decode_errors.load(Ordering::Relaxed)),
        "server_errors": sum(|c| c.server_errors.load(Ordering::Relaxed)),
        "reconnects": sum(|c| c.reconnects.load(Ordering::Relaxed)),
        "stale_disconnects": sum(|c| c.stale.load(Ordering::Relaxed)),
        "auth_failures": sum(|c| c.auth_failures.load(Ordering::Relaxed)),
        "write_errors": s.writer.write_errors.load(Ordering::Relaxed),
        "writer_buffered_bytes": s.writer.buffered_bytes.load(Ordering::Relaxed),
        "rings": rings,
        "latency": {
            "receive_to_ring_us": percentiles(&ring_h, 1000.0),
            "receive_to_written_us": percentiles(&written_h, 1.0),
        },
        "http": {"clients": v.http.0, "requests": v.http.1, "rejected": v.http.2},
    })
}

fn prometheus(v: &mut View<'_>) -> String {
    let s = v.stats;
    let mut o = String::with_capacity(8192);
    let family = |o: &mut String, name: &str, kind: &str, help: &str, rows: &[(String, f64)]| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, val) in rows {
            let _ = writeln!(o, "{name}{labels} {val}");
        }
    };
    let per_conn = |f: &dyn Fn(usize) -> f64| -> Vec<(String, f64)> {
        (0..3)
            .map(|i| {
                (
                    format!(
                        "{{connection=\"{}\",role=\"{}\"}}",
                        i + 1,
                        v.conns[i].role().as_str()
                    ),
                    f(i),
                )
            })
            .collect()
    };
    let c = |i: usize| &s.conns[i];
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    family(
        &mut o,
        "tickcap_ticks_received_total",
        "counter",
        "Ticks decoded from Kite frames.",
        &per_conn(&|i| ld(&c(i).ticks)),
    );
    family(
        &mut o,
        "tickcap_frames_total",
        "counter",
        "Binary messages with ticks.",
        &per_conn(&|i| ld(&c(i).frames)),
    );
    family(
        &mut o,
        "tickcap_heartbeats_total",
        "counter",
        "Heartbeats received.",
        &per_conn(&|i| ld(&c(i).heartbeats)),
    );
    family(
        &mut o,
        "tickcap_decode_errors_total",
        "counter",
        "Packets that did not decode.",
        &per_conn(&|i| ld(&c(i).decode_errors)),
    );
    family(
        &mut o,
        "tickcap_reconnects_total",
        "counter",
        "Reconnections after the first open.",
        &per_conn(&|i| ld(&c(i).reconnects)),
    );
    family(
        &mut o,
        "tickcap_stale_disconnects_total",
        "counter",
        "Connections dropped for silence.",
        &per_conn(&|i| ld(&c(i).stale)),
    );
    family(
        &mut o,
        "tickcap_auth_failures_total",
        "counter",
        "Upgrades refused (HTTP 401/403).",
        &per_conn(&|i| ld(&c(i).auth_failures)),
    );
    family(
        &mut o,
        "tickcap_ring_stalls_total",
        "counter",
        "Times reading paused on a full ring.",
        &per_conn(&|i| ld(&c(i).ring_stalls)),
    );
    family(
        &mut o,
        "tickcap_connection_up",
        "gauge",
        "1 when the connection is open.",
        &per_conn(&|i| f64::from(u8::from(c(i).state() == StateName::Open))),
    );
    family(
        &mut o,
        "tickcap_subscribed_instruments",
        "gauge",
        "Instruments on the connection.",
        &per_conn(&|i| v.conns[i].desired().len() as f64),
    );
    family(
        &mut o,
        "tickcap_ring_occupancy",
        "gauge",
        "Ticks waiting for the writer.",
        &per_conn(&|i| v.conns[i].ring_occupancy().1 as f64),
    );
    family(
        &mut o,
        "tickcap_ticks_per_second",
        "gauge",
        "Ticks per second over the last second.",
        &per_conn(&|i| v.rates.per_conn[i]),
    );
    family(
        &mut o,
        "tickcap_last_tick_timestamp_seconds",
        "gauge",
        "Receive time of the last tick.",
        &per_conn(&|i| c(i).last_tick_micros.load(Ordering::Relaxed) as f64 / 1e6),
    );
    let one = |x: f64| [(String::new(), x)];
    family(
        &mut o,
        "tickcap_failover_takeovers_total",
        "counter",
        "Takeovers by the tertiary.",
        &one(v.failover.takeovers as f64),
    );
    family(
        &mut o,
        "tickcap_failover_active",
        "gauge",
        "1 while the tertiary carries a failed connection's instruments.",
        &one(f64::from(u8::from(v.failover.is_active()))),
    );
    family(
        &mut o,
        "tickcap_dedup_dropped_total",
        "counter",
        "Hot standby: second copies dropped.",
        &one(s.writer.dedup_dropped.load(Ordering::Relaxed) as f64),
    );
    let w = &s.writer;
    family(
        &mut o,
        "tickcap_lines_written_total",
        "counter",
        "JSONL lines accepted by write(2).",
        &[(String::new(), ld(&w.lines))],
    );
    family(
        &mut o,
        "tickcap_bytes_written_total",
        "counter",
        "Bytes written.",
        &[(String::new(), ld(&w.bytes))],
    );
    family(
        &mut o,
        "tickcap_write_errors_total",
        "counter",
        "Failed writes (retried).",
        &[(String::new(), ld(&w.write_errors))],
    );
    family(
        &mut o,
        "tickcap_fsyncs_total",
        "counter",
        "fdatasync calls.",
        &[(String::new(), ld(&w.fsyncs))],
    );
    family(
        &mut o,
        "tickcap_writer_buffered_bytes",
        "gauge",
        "Formatted, not yet written.",
        &[(String::new(), ld(&w.buffered_bytes))],
    );
    let summary = |o: &mut String,
                   name: &str,
                   help: &str,
                   h: &hdrhistogram::Histogram<u64>,
                   to_seconds: f64| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} summary");
        for q in [0.5, 0.9, 0.99, 0.999] {
            let _ = writeln!(
                o,
                "{name}{{quantile=\"{q}\"}} {}",
                h.value_at_quantile(q) as f64 * to_seconds
            );
        }
        let _ = writeln!(o, "{name}_sum {}", h.mean() * h.len() as f64 * to_seconds);
        let _ = writeln!(o, "{name}_count {}", h.len());
    };
    summary(
        &mut o,
        "tickcap_receive_to_ring_seconds",
        "Frame read to ticks in the ring.",
        &s.receive_to_ring_ns(),
        1e-9,
    );
    summary(
        &mut o,
        "tickcap_receive_to_written_seconds",
        "Frame read to line accepted by write(2).",
        &Stats::histogram(&s.latency.receive_to_written_us),
        1e-6,
    );
    o
}

/// A control call's body, validated.
struct Body {
    tokens: Vec<u32>,
    mode: Option<Mode>,
    connection_id: Option<u8>,
}

fn parse_body(body: &[u8], need_mode: bool) -> Result<Body, Response> {
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
    let list = obj
        .get("tokens")
        .and_then(Value::as_array)
        .ok_or_else(|| Response::error(400, "\"tokens\" must be a list of instrument tokens"))?;
    if list.is_empty() {
        return Err(Response::error(400, "\"tokens\" is empty"));
    }
    let mut tokens = Vec::new();
    let mut bad = Vec::new();
    for t in list {
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
            &json!({"error": "tokens must be positive 32-bit integers", "tokens": bad}),
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

fn subscribe(v: &mut View<'_>, body: &[u8]) -> Response {
    let b = match parse_body(body, false) {
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
    v.history
        .record(v.clock.now_micros(), "subscribe", id, &b.tokens, Some(mode));
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

fn unsubscribe(v: &mut View<'_>, body: &[u8]) -> Response {
    let b = match parse_body(body, false) {
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
            .record(v.clock.now_micros(), "unsubscribe", *id, tokens, None);
    }
    tracing::info!("status: unsubscribed {} instruments", b.tokens.len());
    Response::json(200, &json!({"status": "ok", "tokens": b.tokens}))
}

fn mode(v: &mut View<'_>, body: &[u8]) -> Response {
    let b = match parse_body(body, true) {
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
            .record(v.clock.now_micros(), "mode", *id, tokens, Some(mode));
    }
    Response::json(
        200,
        &json!({"status": "ok", "mode": mode.as_str(), "tokens": b.tokens}),
    )
}

fn failovers(v: &mut View<'_>) -> Value {
    let records: Vec<crate::engine::failover::Record> = v.failover.records().to_vec();
    let list: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "connection_id": r.connection_id,
                "start": v.iso(r.start_micros),
                "end": r.end_micros.map(|e| v.iso(e)),
                "active": r.end_micros.is_none(),
                "instruments": r.instruments,
                "not_carried": r.not_carried,
                "duration_seconds": r.end_micros.map(|e| (e - r.start_micros) as f64 / 1e6),
                "last_tick_before": v.iso(r.last_tick_before_micros),
                "gap_ms": r.gap_ms(),
                "gap_without_tertiary_ms": r.outage_ms(),
            })
        })
        .collect();
    let w = &v.stats.writer;
    let lead = Stats::histogram(&v.stats.latency.dedup_lead_us);
    json!({
        "failover_after_ms": v.config.failover_after_ms,
        "takeovers": v.failover.takeovers,
        "active": v.failover.is_active(),
        "failovers": list,
        "hot_standby": {
            "enabled": v.config.tertiary_mirror,
            "dedup_window_ms": v.config.dedup_window_ms,
            "duplicates_dropped": w.dedup_dropped.load(Ordering::Relaxed),
            "first_by_connection": {
                "1": w.dedup_first_by[1].load(Ordering::Relaxed),
                "2": w.dedup_first_by[2].load(Ordering::Relaxed),
                "3": w.dedup_first_by[3].load(Ordering::Relaxed),
            },
            "lead_us": percentiles(&lead, 1.0),
        },
    })
}
