//! The JSON views: `/health`, `/connections`, `/instruments`, `/storage`,
//! `/failovers`.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::config::MAX_INSTRUMENTS;
use crate::kite::Mode;
use crate::net::Connection;
use crate::stats::{StateName, Stats};

use super::{View, FRESH_MICROS};

fn configured(c: &Connection) -> bool {
    !c.desired().is_empty()
}

/// `GET /health`.
pub(super) fn health(v: &mut View<'_>) -> Value {
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
            let state = v.stats.conns[i].state();
            reasons.push(if state == StateName::AuthFailed {
                format!(
                    "connection {} ({}): access token rejected (expired?): run `tickcap login`",
                    i + 1,
                    c.role().as_str()
                )
            } else {
                format!(
                    "connection {} ({}) is {}",
                    i + 1,
                    c.role().as_str(),
                    state.as_str()
                )
            });
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
    let w = &v.stats.writer;
    let failing_since = w.failing_since_micros.load(Ordering::Relaxed);
    if failing_since > 0 {
        let err = last_error(&w.last_error).unwrap_or_default();
        reasons.push(format!(
            "writes fail since {:.0} s ago ({err}); {} bytes wait in memory",
            (now - failing_since) as f64 / 1e6,
            w.buffered_bytes.load(Ordering::Relaxed)
        ));
    }
    // The day's file was removed or replaced under the writer: lines may be
    // gone with it; degraded for the rest of that day.
    let today = crate::time::days_from_civil(v.zone.date_of_micros(now));
    let replaced = w.replaced_on_day.load(Ordering::Relaxed);
    let file_replaced = w.files_replaced.load(Ordering::Relaxed) > 0 && replaced == today;
    if file_replaced {
        reasons.push(format!(
            "today's file was removed or replaced while being written ({}); writing continues in a new file, lines written to the old one in the second before may be lost",
            last_error(&w.replaced_why).unwrap_or_default()
        ));
    }
    // A failed fsync is sticky: the kernel may have dropped those pages.
    let fsync_failed = w.fsync_failed_micros.load(Ordering::Relaxed);
    if fsync_failed > 0 {
        reasons.push(format!(
            "fsync failed at {}: up to {} lines written before it may not be on disk (the kernel may drop dirty pages after a failed fsync); restart after checking the disk",
            v.iso(fsync_failed),
            w.fsync_failed_lines.load(Ordering::Relaxed)
        ));
    }
    // Writer lag: a line waiting far longer than the flush rule allows means
    // the writer (or the disk) is not keeping up.
    let oldest = w.oldest_unwritten_micros.load(Ordering::Relaxed);
    let lag_limit = (v.config.storage.flush_interval_ms as i64 * 4000).max(1_000_000);
    let lagging = oldest > 0 && now - oldest > lag_limit;
    if lagging && failing_since == 0 {
        reasons.push(format!(
            "writer lag: a received tick has waited {:.1} s for the disk (limit {:.1} s)",
            (now - oldest) as f64 / 1e6,
            lag_limit as f64 / 1e6
        ));
    }
    // Kafka: a broker that does not acknowledge is a degraded service (the
    // backlog waits on disk; capture goes on).
    let kafka_state = v.stats.kafka.state();
    let orders_down = v
        .config
        .kafka
        .as_ref()
        .is_some_and(|k| k.orders_topic.is_some())
        && v.stats.kafka_orders.state().is_down();
    let candles_down: Vec<&'static str> = match &v.config.kafka {
        Some(k) if k.candles_topic.is_some() => v
            .config
            .candles
            .iter()
            .filter(|i| v.stats.kafka_candles_of(**i).state().is_down())
            .map(|i| i.kite_name())
            .collect(),
        _ => Vec::new(),
    };
    if !candles_down.is_empty() {
        reasons.push(format!(
            "kafka: candles not published ({})",
            candles_down.join(", ")
        ));
    }
    if orders_down {
        reasons.push(format!(
            "kafka: order updates not published ({} waiting on disk): {}",
            v.stats.kafka_orders.lag_ticks.load(Ordering::Relaxed),
            crate::util::log_text(
                &last_error(&v.stats.kafka_orders.last_error).unwrap_or_default(),
                200
            )
        ));
    }
    let kafka_down = v.config.kafka.is_some() && kafka_state.is_down();
    if kafka_down {
        let k = &v.stats.kafka;
        let oldest = k.oldest_unacked_micros.load(Ordering::Relaxed);
        let err = last_error(&k.last_error).unwrap_or_default();
        reasons.push(format!(
            "kafka: {} ({} ticks waiting on disk{}){}",
            if kafka_state == crate::stats::KafkaState::Refused {
                "publishing refused"
            } else {
                "broker unreachable"
            },
            k.lag_ticks.load(Ordering::Relaxed),
            if oldest > 0 {
                format!(", oldest {:.0} s", (now - oldest) as f64 / 1e6)
            } else {
                String::new()
            },
            if err.is_empty() {
                String::new()
            } else {
                format!(": {}", crate::util::log_text(&err, 200))
            }
        ));
    }
    // The events journal: a record lost or waiting on a failing disk means
    // the capture's account of itself is incomplete.
    let j = &v.stats.journal;
    let journal_lost = j.lost.load(Ordering::Relaxed);
    let journal_pending = j.pending_bytes.load(Ordering::Relaxed);
    let journal_bad =
        journal_lost > 0 || journal_pending > 0 && j.write_errors.load(Ordering::Relaxed) > 0;
    if journal_lost > 0 {
        reasons.push(format!(
            "events journal: {journal_lost} record(s) lost (coverage and orders files are incomplete)"
        ));
    }
    if journal_pending > 0 && j.write_errors.load(Ordering::Relaxed) > 0 {
        reasons.push(format!(
            "events journal: writes fail; {journal_pending} bytes wait in memory"
        ));
    }
    let status = if active == 0 {
        "down"
    } else if wanted.iter().zip(&open).all(|(w, o)| !*w || *o)
        && fresh
        && !v.failover.is_active()
        && failing_since == 0
        && !file_replaced
        && fsync_failed == 0
        && !lagging
        && !kafka_down
        && !orders_down
        && candles_down.is_empty()
        && !journal_bad
    {
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
        "credentials_loaded_at": v.iso(v.stats.credentials_loaded_micros.load(Ordering::Relaxed)),
        "serve_clients": v.config.serve.as_ref().map(|_| v.stats.serve.clients.load(Ordering::Relaxed)),
        "candles": candle_health(v.stats),
        "exports": export_health(v.stats),
        "journal": {
            "events_written": j.events_written.load(Ordering::Relaxed),
            "orders_written": j.orders_written.load(Ordering::Relaxed),
            "orders_duplicate": j.orders_duplicate.load(Ordering::Relaxed),
            "bad_text_frames": j.bad_text_frames.load(Ordering::Relaxed),
            "records_lost": journal_lost,
            "pending_bytes": journal_pending,
            "write_errors": j.write_errors.load(Ordering::Relaxed),
        },
    })
}

/// `/health`'s `candles`: bars written, incomplete, and the service's own
/// repair (what the last pass found wanting, in today's files).
fn candle_health(stats: &crate::stats::Stats) -> Value {
    let j = &stats.journal;
    let r = &stats.repair;
    let repair = r.enabled.load(Ordering::Relaxed).then(|| {
        json!({
            "passes": r.passes.load(Ordering::Relaxed),
            "wanted": r.wanted.load(Ordering::Relaxed),
            "fetched": r.fetched.load(Ordering::Relaxed),
            "appended": j.candles_repaired.load(Ordering::Relaxed),
            "not_in_kite": r.not_in_kite.load(Ordering::Relaxed),
            "errors": r.errors.load(Ordering::Relaxed),
            "last_error": r.last_error.lock().ok().and_then(|e| e.clone()),
            "too_late_for_their_day": j.candles_repair_late.load(Ordering::Relaxed),
        })
    });
    json!({
        "written": j.candles_written.load(Ordering::Relaxed),
        "incomplete": j.candles_incomplete.load(Ordering::Relaxed),
        "superseded_by_kite": j.candles_after_repair.load(Ordering::Relaxed),
        "repair": repair,
    })
}

/// `/health`'s `exports`: closed days written to Parquet by the service
/// (`[storage] export_closed_days`); null when off.
fn export_health(stats: &crate::stats::Stats) -> Value {
    let e = &stats.exports;
    if !e.enabled.load(Ordering::Relaxed) {
        return Value::Null;
    }
    let last = e.last.lock().ok().and_then(|l| l.clone());
    json!({
        "done": e.done.load(Ordering::Relaxed),
        "failed": e.failed.load(Ordering::Relaxed),
        "running": e.running.lock().ok().and_then(|r| r.clone()),
        "last_file": last.as_ref().map(|l| l.0.clone()),
        "last_rows": last.as_ref().map(|l| l.1),
        "last_error": e.last_error.lock().ok().and_then(|l| l.clone()),
    })
}

/// `GET /orders`: today's order updates as written to `orders_…`
/// (the last 10,000; `?limit=N` for the last N), newest last.
pub(super) fn orders(v: &mut View<'_>, limit: Option<usize>) -> Value {
    let o = v
        .stats
        .journal
        .orders_today
        .lock()
        .map(|g| g.clone())
        .unwrap_or_default();
    let n = limit.unwrap_or(usize::MAX).min(o.lines.len());
    let orders: Vec<Value> = o
        .lines
        .iter()
        .skip(o.lines.len() - n)
        .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
        .collect();
    json!({"day": o.day, "total": o.total, "returned": orders.len(), "orders": orders})
}

pub(super) fn connections(v: &mut View<'_>) -> Vec<Value> {
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
            "claimed_here": v.ledger.home_count(i),
            "room_for_claims": v.ledger.room(i),
            "failover_blocked": v.failover.blocked(i),
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
            "last_error": c.last_error().map(|e| e.to_string()),
            "reconnect_attempts": c.backoff_attempts(),
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

pub(super) fn instruments(v: &mut View<'_>) -> Value {
    let now = v.clock.now_micros();
    let seen = v
        .stats
        .instruments
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    // Today's covered share, as the journal thread last computed it (~1 s).
    let coverage = v
        .stats
        .journal
        .coverage
        .lock()
        .map(|c| c.clone())
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
    let dir = v.dump.directory().cloned();
    let symbol = |t: u32| dir.as_ref().and_then(|d| d.symbol(t).map(str::to_owned));
    // Who wants each token, from the ledger: the claims and their home.
    let claims: std::collections::HashMap<u32, (usize, Value)> = v
        .ledger
        .claims()
        .map(|(t, home, list)| {
            let list: Vec<Value> = list
                .iter()
                .map(|(who, m)| json!({"by": who.as_str(), "mode": m.as_str()}))
                .collect();
            (t, (home, Value::Array(list)))
        })
        .collect();
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
            let covered_share = coverage
                .totals
                .get(&t)
                .filter(|(_, w)| *w > 0)
                .map(|(c, w)| ((*c as f64 / *w as f64) * 1e6).round() / 1e6);
            let mut row = json!({
                "instrument_token": t,
                "symbol": symbol(t),
                "connection_id": id,
                "mode": m.as_str(),
                "tick_count": s.ticks,
                "last_price": (s.ticks > 0).then(|| f64::from(s.last_price_raw) / f64::from(crate::kite::price_divisor(t))),
                "last_tick_time": v.iso(s.last_micros),
                "seconds_since_last_tick": (s.ticks > 0).then(|| ((now - s.last_micros).max(0) as f64 / 1e5).round() / 10.0),
                "subscribed_at": since.map(|x| v.iso(x)),
                "covered_share_today": covered_share,
            });
            // The day's numbers as Kite's last quote/full tick gave them,
            // and the decimals the instrument's tick size needs.
            let div = f64::from(crate::kite::price_divisor(t));
            let decimals = dir
                .as_ref()
                .and_then(|d| d.get(t))
                .and_then(crate::kite::Instrument::price_decimals)
                .unwrap_or(match crate::kite::price_divisor(t) {
                    100 => 2,
                    _ => 4,
                });
            row["price_decimals"] = json!(decimals);
            if s.ohlc_raw != [0; 4] {
                let [o, h, l, c] = s.ohlc_raw.map(|x| f64::from(x) / div);
                row["ohlc"] = json!({"open": o, "high": h, "low": l, "close": c});
                row["volume"] = json!(s.volume);
                if c > 0.0 && s.ticks > 0 {
                    let last = f64::from(s.last_price_raw) / div;
                    row["change_percent"] = json!(((last - c) * 100.0 / c * 100.0).round() / 100.0);
                }
            }
            if let Some(d) = &dir {
                row["listed"] = json!(d.get(t).is_some());
            }
            if let Some((home, list)) = claims.get(&t) {
                row["claims"] = list.clone();
                row["home_connection_id"] = json!(home + 1);
                // The tertiary's copy for a takeover or the hot standby.
                row["carried_for"] = if *home + 1 != usize::from(id) {
                    json!(home + 1)
                } else {
                    Value::Null
                };
            }
            if since.is_some_and(|at| s.last_micros < at) || (since.is_none() && s.ticks == 0) {
                silent.push(json!({
                    "instrument_token": t,
                    "symbol": symbol(t),
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
    let dump = match v.dump.loaded() {
        Some(l) => json!({
            "day": l.day.to_string(),
            "file": l.path.display().to_string(),
            "instruments": l.directory.len(),
            "warning": l.warning,
            "refresh_error": v.dump.last_error,
            "not_in_dump": v.dump.absent(v.config),
        }),
        None => json!({
            "day": null,
            "enabled": v.config.dump.enabled,
            "refresh_error": v.dump.last_error,
        }),
    };
    json!({
        "dump": dump,
        "connections": per_conn,
        "total_unique_instruments": all.len(),
        "instruments": rows,
        "silent": silent,
        "history": history,
    })
}

pub(super) fn storage(v: &mut View<'_>) -> Value {
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
        "last_write_error": last_error(&w.last_error),
        "torn_lines_repaired": w.torn_repaired.load(Ordering::Relaxed),
        "files_replaced": w.files_replaced.load(Ordering::Relaxed),
        "late_ticks": w.late_ticks.load(Ordering::Relaxed),
        "fsync_failed_at": v.iso(w.fsync_failed_micros.load(Ordering::Relaxed)),
        "fsync_failed_lines": w.fsync_failed_lines.load(Ordering::Relaxed),
        "retention_days": v.config.storage.retention_days,
        "timezone": v.config.storage.timezone,
    })
}

pub(super) fn failovers(v: &mut View<'_>) -> Value {
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
        "failover_after_ms": v.failover.after().as_millis() as u64,
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
            "lead_us": super::metrics::percentiles(&lead, 1.0),
        },
    })
}

/// `GET /clients`: the hub's clients (address, since, subscriptions,
/// ticks and bytes sent, queue), its counters and the last disconnects.
pub(super) fn clients(v: &mut View<'_>) -> Value {
    let Some(sc) = v.config.serve.clone() else {
        return json!({"enabled": false, "clients": [], "hint": "add [serve] listen = \"127.0.0.1:9001\" to serve Kite clients"});
    };
    let sv = &v.stats.serve;
    let list = sv
        .clients_view
        .lock()
        .map(|g| g.clone())
        .unwrap_or_default();
    let dir = v.dump.directory().cloned();
    let clients: Vec<Value> = list
        .into_iter()
        .map(|c| {
            let subs: Vec<Value> = c
                .subscriptions
                .iter()
                .map(|(t, m)| {
                    json!({"instrument_token": t, "mode": m,
                    "symbol": dir.as_ref().and_then(|d| d.symbol(*t))})
                })
                .collect();
            json!({
                "address": c.address,
                "api_key": c.api_key,
                "connected_at": v.iso(c.connected_micros),
                "subscriptions": subs.len(),
                "instruments": subs,
                "ticks_sent": c.ticks_sent,
                "bytes_sent": c.bytes_sent,
                "queued_bytes": c.queued_bytes,
                "bad_requests": c.bad_requests,
            })
        })
        .collect();
    let gone: Vec<crate::stats::Disconnect> = sv
        .disconnects
        .lock()
        .map(|d| d.iter().cloned().collect())
        .unwrap_or_default();
    let disconnects: Vec<Value> = gone
        .into_iter()
        .rev()
        .map(|d| json!({"address": d.address, "at": v.iso(d.at_micros), "reason": d.reason, "ticks_sent": d.ticks_sent}))
        .collect();
    let h = crate::stats::Stats::histogram(&v.stats.latency.receive_to_client_us);
    use std::sync::atomic::Ordering::Relaxed;
    json!({
        "enabled": true,
        "listen": format!("ws://{}/", sv.listen.get().copied().unwrap_or(sc.listen)),
        "max_clients": sc.max_clients,
        "send_queue_bytes": sc.send_queue_bytes,
        "auto_subscribe": sc.auto_subscribe,
        "count": clients.len(),
        "clients": clients,
        "auto_subscribed": sv.auto_subscribed.load(Relaxed),
        "dropped_slow": sv.dropped_slow.load(Relaxed),
        "refused": {"auth": sv.refused_auth.load(Relaxed), "full": sv.refused_full.load(Relaxed)},
        "upgrades_evicted": sv.upgrades_evicted.load(Relaxed),
        "receive_to_client_us": super::metrics::percentiles(&h, 1.0),
        "recent_disconnects": disconnects,
    })
}

/// `GET /kafka`: the publisher's state, position, lag and counters.
pub(super) fn kafka(v: &mut View<'_>) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(kc) = v.config.kafka.clone() else {
        return json!({"enabled": false, "hint": "add a [kafka] section (brokers, topic) to publish every tick"});
    };
    let k = &v.stats.kafka;
    let now = v.clock.now_micros();
    let oldest = k.oldest_unacked_micros.load(Relaxed);

    json!({
        "enabled": true,
        "brokers": kc.brokers,
        "topic": kc.topic,
        "partitions": k.partitions.load(Relaxed),
        "state": k.state().as_str(),
        "position": k.position.lock().map(|p| p.clone()).unwrap_or_default(),
        "sent": k.sent.load(Relaxed),
        "acknowledged": k.acked.load(Relaxed),
        "skipped_at_recovery": k.skipped.load(Relaxed),
        "in_flight": k.in_flight.load(Relaxed),
        "lag_ticks": k.lag_ticks.load(Relaxed),
        "lag_seconds": if oldest > 0 { ((now - oldest).max(0) as f64 / 1e5).round() / 10.0 } else { 0.0 },
        "last_ack": v.iso(k.last_ack_micros.load(Relaxed)),
        "errors": k.errors.load(Relaxed),
        "producers_recreated": k.recreated.load(Relaxed),
        "receive_to_acked_us": super::metrics::percentiles(&crate::stats::Stats::histogram(&v.stats.latency.receive_to_acked_us), 1.0),
        "last_error": last_error(&k.last_error),
        "candles": kc.candles_topic.as_ref().map(|_| {
            v.config.candles.iter().map(|i| {
                let o = v.stats.kafka_candles_of(*i);
                json!({
                    "interval": i.kite_name(),
                    "topic": kc.candles_topic_for(*i),
                    "state": o.state().as_str(),
                    "sent": o.sent.load(Relaxed),
                    "acknowledged": o.acked.load(Relaxed),
                    "in_flight": o.in_flight.load(Relaxed),
                    "lag_records": o.lag_ticks.load(Relaxed),
                    "errors": o.errors.load(Relaxed),
                    "last_error": last_error(&o.last_error),
                })
            }).collect::<Vec<_>>()
        }),
        "orders": kc.orders_topic.as_ref().map(|t| {
            let o = &v.stats.kafka_orders;
            json!({
                "topic": t,
                "partitions": o.partitions.load(Relaxed),
                "state": o.state().as_str(),
                "position": o.position.lock().map(|p| p.clone()).unwrap_or_default(),
                "sent": o.sent.load(Relaxed),
                "acknowledged": o.acked.load(Relaxed),
                "skipped_at_recovery": o.skipped.load(Relaxed),
                "in_flight": o.in_flight.load(Relaxed),
                "lag_records": o.lag_ticks.load(Relaxed),
                "errors": o.errors.load(Relaxed),
                "last_error": last_error(&o.last_error),
            })
        }),
    })
}

/// A stage's last error as a view shows it (a poisoned lock reads as none:
/// views never fail).
fn last_error(m: &std::sync::Mutex<Option<String>>) -> Option<String> {
    m.lock().ok().and_then(|e| e.clone())
}

/// `GET /candles?instrument=T|EXCHANGE:SYMBOL&interval=5m[&from=ISO]`:
/// today's final bars of one instrument, then the one in progress
/// (`partial: true`).
pub(super) fn candles(
    v: &mut View<'_>,
    instrument: Option<&str>,
    interval: Option<&str>,
    from: Option<&str>,
) -> Result<Value, (u16, String)> {
    let intervals = &v.config.candles;
    if intervals.is_empty() {
        return Err((
            409,
            "no candles are built: add [candles] intervals to the config".into(),
        ));
    }
    let inst = instrument.ok_or((
        400,
        "instrument= is required (a token or EXCHANGE:SYMBOL)".to_owned(),
    ))?;
    let token = match inst.parse::<u32>() {
        Ok(t) => t,
        Err(_) => v.dump.directory().and_then(|d| d.token(inst)).ok_or((
            404,
            format!("{inst:?}: not a token, nor a symbol of the instruments dump in use"),
        ))?,
    };
    let interval = match interval {
        None => intervals[0],
        Some(text) => crate::candles::Interval::parse(text)
            .filter(|i| intervals.contains(i))
            .ok_or((
                400,
                format!(
                    "interval {text:?} is not built; built: {}",
                    intervals
                        .iter()
                        .map(|i| i.kite_name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))?,
    };
    let from = match from {
        None => i64::MIN,
        Some(t) => crate::time::parse_timestamp(t)
            .or_else(|| crate::candles::parse_kite_date(t))
            .ok_or((400, format!("from={t:?}: not an ISO 8601 time with offset")))?,
    };
    let div = f64::from(crate::kite::price_divisor(token));
    let mut zone = v.zone.clone();
    let row = |zone: &mut crate::time::ZoneFormatter,
               start: i64,
               ohlc: [u32; 4],
               volume: Option<u64>,
               complete: bool,
               partial: bool,
               kite: bool| {
        let mut date = Vec::new();
        crate::candles::write_kite_date(&mut date, zone, start);
        json!({
            "date": String::from_utf8_lossy(&date),
            "open": f64::from(ohlc[0]) / div,
            "high": f64::from(ohlc[1]) / div,
            "low": f64::from(ohlc[2]) / div,
            "close": f64::from(ohlc[3]) / div,
            "volume": volume,
            "complete": complete,
            "partial": partial,
            "source": if kite { "kite" } else { "tickcap" },
        })
    };
    let mut out = Vec::new();
    if let Ok(today) = v.stats.journal.candles_today.lock() {
        for c in today.bars.get(&(token, interval)).into_iter().flatten() {
            if c.start() >= from {
                out.push(row(
                    &mut zone,
                    c.start(),
                    c.ohlc,
                    c.volume(),
                    c.complete,
                    false,
                    c.kite,
                ));
            }
        }
    }
    if let Ok(open) = v.stats.journal.candles_open.lock() {
        for b in open
            .iter()
            .filter(|b| b.instrument_token == token && b.interval == interval)
        {
            if b.start >= from {
                out.push(row(
                    &mut zone,
                    b.start,
                    [b.open, b.high, b.low, b.close],
                    b.volume,
                    b.complete,
                    true,
                    false,
                ));
            }
        }
    }
    Ok(json!({
        "instrument_token": token,
        "interval": interval.kite_name(),
        "candles": out,
    }))
}
