//! Counters as `/metrics` JSON and as Prometheus text, both derived from one
//! table per owner ([`CONN_COUNTERS`], [`WRITER_COUNTERS`]), so a counter
//! added once appears in both with the same meaning.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use super::View;
use crate::stats::{ConnStats, KafkaStats, ServeStats, StateName, Stats, WriterStats};

/// One counter: its `/metrics` JSON key, its Prometheus family, the help
/// text, whether it is a counter (else a gauge), and where it lives.
struct Counter<T> {
    json: &'static str,
    prom: &'static str,
    help: &'static str,
    counter: bool,
    get: fn(&T) -> &AtomicU64,
}

/// Per connection: JSON sums them over the connections, Prometheus labels
/// each with `connection` and `role`.
const CONN_COUNTERS: &[Counter<ConnStats>] = &[
    Counter {
        json: "ticks_received",
        prom: "tickcap_ticks_received_total",
        help: "Ticks decoded from Kite frames.",
        counter: true,
        get: |c| &c.ticks,
    },
    Counter {
        json: "frames",
        prom: "tickcap_frames_total",
        help: "Binary messages with ticks.",
        counter: true,
        get: |c| &c.frames,
    },
    Counter {
        json: "heartbeats",
        prom: "tickcap_heartbeats_total",
        help: "Heartbeats received.",
        counter: true,
        get: |c| &c.heartbeats,
    },
    Counter {
        json: "decode_errors",
        prom: "tickcap_decode_errors_total",
        help: "Packets that did not decode.",
        counter: true,
        get: |c| &c.decode_errors,
    },
    Counter {
        json: "server_errors",
        prom: "tickcap_server_errors_total",
        help: "Error text frames from the server.",
        counter: true,
        get: |c| &c.server_errors,
    },
    Counter {
        json: "reconnects",
        prom: "tickcap_reconnects_total",
        help: "Reconnections after the first open.",
        counter: true,
        get: |c| &c.reconnects,
    },
    Counter {
        json: "stale_disconnects",
        prom: "tickcap_stale_disconnects_total",
        help: "Connections dropped for silence.",
        counter: true,
        get: |c| &c.stale,
    },
    Counter {
        json: "auth_failures",
        prom: "tickcap_auth_failures_total",
        help: "Upgrades refused (HTTP 401/403).",
        counter: true,
        get: |c| &c.auth_failures,
    },
    Counter {
        json: "ring_stalls",
        prom: "tickcap_ring_stalls_total",
        help: "Times reading paused on a full ring.",
        counter: true,
        get: |c| &c.ring_stalls,
    },
];

/// The writer's, unlabelled.
const WRITER_COUNTERS: &[Counter<WriterStats>] = &[
    Counter {
        json: "lines_written",
        prom: "tickcap_lines_written_total",
        help: "JSONL lines accepted by write(2).",
        counter: true,
        get: |w| &w.lines,
    },
    Counter {
        json: "bytes_written",
        prom: "tickcap_bytes_written_total",
        help: "Bytes written.",
        counter: true,
        get: |w| &w.bytes,
    },
    Counter {
        json: "write_errors",
        prom: "tickcap_write_errors_total",
        help: "Failed writes (retried).",
        counter: true,
        get: |w| &w.write_errors,
    },
    Counter {
        json: "fsyncs",
        prom: "tickcap_fsyncs_total",
        help: "fdatasync calls.",
        counter: true,
        get: |w| &w.fsyncs,
    },
    Counter {
        json: "dedup_dropped",
        prom: "tickcap_dedup_dropped_total",
        help: "Hot standby: second copies dropped.",
        counter: true,
        get: |w| &w.dedup_dropped,
    },
    Counter {
        json: "writer_buffered_bytes",
        prom: "tickcap_writer_buffered_bytes",
        help: "Formatted, not yet written.",
        counter: false,
        get: |w| &w.buffered_bytes,
    },
];

/// The hub's (`[serve]`), unlabelled; `/metrics` JSON nests them under `serve`.
const SERVE_COUNTERS: &[Counter<ServeStats>] = &[
    Counter {
        json: "clients",
        prom: "tickcap_serve_clients",
        help: "Hub clients connected.",
        counter: false,
        get: |s| &s.clients,
    },
    Counter {
        json: "clients_accepted",
        prom: "tickcap_serve_clients_accepted_total",
        help: "Hub clients accepted.",
        counter: true,
        get: |s| &s.accepted,
    },
    Counter {
        json: "refused_auth",
        prom: "tickcap_serve_refused_auth_total",
        help: "Hub upgrades refused for a wrong token (403).",
        counter: true,
        get: |s| &s.refused_auth,
    },
    Counter {
        json: "refused_full",
        prom: "tickcap_serve_refused_full_total",
        help: "Hub upgrades refused at max_clients (429).",
        counter: true,
        get: |s| &s.refused_full,
    },
    Counter {
        json: "upgrades_evicted",
        prom: "tickcap_serve_upgrades_evicted_total",
        help: "Incomplete hub upgrades closed to make room for a newcomer.",
        counter: true,
        get: |s| &s.upgrades_evicted,
    },
    Counter {
        json: "dropped_slow",
        prom: "tickcap_serve_dropped_slow_total",
        help: "Hub clients disconnected for a full send queue.",
        counter: true,
        get: |s| &s.dropped_slow,
    },
    Counter {
        json: "ticks_sent",
        prom: "tickcap_serve_ticks_sent_total",
        help: "Ticks sent to hub clients (one per client per tick).",
        counter: true,
        get: |s| &s.ticks_sent,
    },
    Counter {
        json: "bytes_sent",
        prom: "tickcap_serve_bytes_sent_total",
        help: "Bytes sent to hub clients.",
        counter: true,
        get: |s| &s.bytes_sent,
    },
    Counter {
        json: "messages_sent",
        prom: "tickcap_serve_messages_sent_total",
        help: "Binary tick messages sent to hub clients.",
        counter: true,
        get: |s| &s.messages_sent,
    },
    Counter {
        json: "texts_forwarded",
        prom: "tickcap_serve_texts_forwarded_total",
        help: "Upstream order/message frames forwarded to hub clients.",
        counter: true,
        get: |s| &s.texts_forwarded,
    },
    Counter {
        json: "bad_requests",
        prom: "tickcap_serve_bad_requests_total",
        help: "Client messages that were not valid requests.",
        counter: true,
        get: |s| &s.bad_requests,
    },
    Counter {
        json: "ring_overflows",
        prom: "tickcap_serve_ring_overflows_total",
        help: "Ticks not copied to the hub (its ring full; capture unaffected).",
        counter: true,
        get: |s| &s.ring_overflows,
    },
    Counter {
        json: "auto_subscribed",
        prom: "tickcap_serve_auto_subscribed",
        help: "Instruments subscribed upstream for hub clients.",
        counter: false,
        get: |s| &s.auto_subscribed,
    },
    Counter {
        json: "auto_rejected",
        prom: "tickcap_serve_auto_rejected_total",
        help: "Instruments clients asked for that did not fit upstream.",
        counter: true,
        get: |s| &s.auto_rejected,
    },
];

/// The Kafka publisher's (`[kafka]`), unlabelled; JSON under `kafka`.
const KAFKA_COUNTERS: &[Counter<KafkaStats>] = &[
    Counter {
        json: "sent",
        prom: "tickcap_kafka_sent_total",
        help: "Records handed to librdkafka.",
        counter: true,
        get: |k| &k.sent,
    },
    Counter {
        json: "acknowledged",
        prom: "tickcap_kafka_acknowledged_total",
        help: "Records acknowledged by the brokers (acks=all).",
        counter: true,
        get: |k| &k.acked,
    },
    Counter {
        json: "skipped_at_recovery",
        prom: "tickcap_kafka_skipped_total",
        help: "Lines found already in the topic at recovery (not sent again).",
        counter: true,
        get: |k| &k.skipped,
    },
    Counter {
        json: "errors",
        prom: "tickcap_kafka_errors_total",
        help: "Producer and recovery errors.",
        counter: true,
        get: |k| &k.errors,
    },
    Counter {
        json: "producers_recreated",
        prom: "tickcap_kafka_producers_recreated_total",
        help: "Producers recreated after a fatal error.",
        counter: true,
        get: |k| &k.recreated,
    },
    Counter {
        json: "in_flight",
        prom: "tickcap_kafka_in_flight",
        help: "Records sent and not yet acknowledged.",
        counter: false,
        get: |k| &k.in_flight,
    },
    Counter {
        json: "lag_ticks",
        prom: "tickcap_kafka_lag_ticks",
        help: "Ticks written to the daily files and not yet acknowledged.",
        counter: false,
        get: |k| &k.lag_ticks,
    },
];

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// count, p50…p99.9, max and mean of a histogram divided by `scale`.
pub(super) fn percentiles(h: &hdrhistogram::Histogram<u64>, scale: f64) -> Value {
    let q = |p: f64| round1(h.value_at_quantile(p) as f64 / scale);
    json!({
        "count": h.len(), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99_9": q(0.999),
        "max": round1(h.max() as f64 / scale), "mean": round1(h.mean() / scale),
    })
}

/// `GET /metrics` (JSON).
pub(super) fn json(v: &mut View<'_>) -> Value {
    let s = v.stats;
    let mut m = Map::new();
    for c in CONN_COUNTERS {
        let total: u64 = s.conns.iter().map(|x| load((c.get)(x))).sum();
        m.insert(c.json.into(), total.into());
    }
    for c in WRITER_COUNTERS {
        m.insert(c.json.into(), load((c.get)(&s.writer)).into());
    }
    let rings: Vec<Value> = v
        .conns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (cap, used) = c.ring_occupancy();
            json!({"connection_id": i + 1, "capacity": cap, "occupancy": used,
                   "stalls": load(&s.conns[i].ring_stalls),
                   "stall_seconds": load(&s.conns[i].ring_stall_micros) as f64 / 1e6})
        })
        .collect();
    m.insert("rings".into(), rings.into());
    let failing_since = s.writer.failing_since_micros.load(Ordering::Relaxed);
    m.insert("writer_failing".into(), (failing_since > 0).into());
    m.insert("ticks_per_second".into(), round1(v.rates.total).into());
    m.insert(
        "ticks_per_second_by_connection".into(),
        v.rates
            .per_conn
            .iter()
            .map(|r| round1(*r))
            .collect::<Vec<_>>()
            .into(),
    );
    m.insert(
        "ticks_per_second_history".into(),
        v.rates
            .history
            .iter()
            .map(|(t, r)| json!([t, round1(*r)]))
            .collect::<Vec<_>>()
            .into(),
    );
    m.insert(
        "latency".into(),
        json!({
            "receive_to_ring_us": percentiles(&s.receive_to_ring_ns(), 1000.0),
            "receive_to_written_us": percentiles(&Stats::histogram(&s.latency.receive_to_written_us), 1.0),
        }),
    );
    m.insert(
        "http".into(),
        json!({"clients": v.http.0, "requests": v.http.1, "rejected": v.http.2}),
    );
    if v.config.kafka.is_some() {
        let mut kv = Map::new();
        for c in KAFKA_COUNTERS {
            kv.insert(c.json.into(), load((c.get)(&s.kafka)).into());
        }
        m.insert("kafka".into(), Value::Object(kv));
    }
    if v.config.serve.is_some() {
        let mut sv = Map::new();
        for c in SERVE_COUNTERS {
            sv.insert(c.json.into(), load((c.get)(&s.serve)).into());
        }
        sv.insert(
            "receive_to_client_us".into(),
            percentiles(&Stats::histogram(&s.latency.receive_to_client_us), 1.0),
        );
        m.insert("serve".into(), Value::Object(sv));
    }
    Value::Object(m)
}

fn family(o: &mut String, name: &str, counter: bool, help: &str) {
    let kind = if counter { "counter" } else { "gauge" };
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `GET /metrics?format=prometheus`.
pub(super) fn prometheus(v: &mut View<'_>) -> String {
    let s = v.stats;
    let mut o = String::with_capacity(8192);
    let label = |i: usize| {
        format!(
            "{{connection=\"{}\",role=\"{}\"}}",
            i + 1,
            v.conns[i].role().as_str()
        )
    };
    let per_conn =
        |o: &mut String, name: &str, counter: bool, help: &str, f: &dyn Fn(usize) -> f64| {
            family(o, name, counter, help);
            for i in 0..s.conns.len().min(v.conns.len()) {
                let _ = writeln!(o, "{name}{} {}", label(i), f(i));
            }
        };
    for c in CONN_COUNTERS {
        per_conn(&mut o, c.prom, c.counter, c.help, &|i| {
            load((c.get)(&s.conns[i])) as f64
        });
    }
    per_conn(
        &mut o,
        "tickcap_connection_up",
        false,
        "1 when the connection is open.",
        &|i| f64::from(u8::from(s.conns[i].state() == StateName::Open)),
    );
    per_conn(
        &mut o,
        "tickcap_subscribed_instruments",
        false,
        "Instruments on the connection.",
        &|i| v.conns[i].desired().len() as f64,
    );
    per_conn(
        &mut o,
        "tickcap_ring_occupancy",
        false,
        "Ticks waiting for the writer.",
        &|i| v.conns[i].ring_occupancy().1 as f64,
    );
    per_conn(
        &mut o,
        "tickcap_ticks_per_second",
        false,
        "Ticks per second over the last second.",
        &|i| v.rates.per_conn[i],
    );
    per_conn(
        &mut o,
        "tickcap_last_tick_timestamp_seconds",
        false,
        "Receive time of the last tick.",
        &|i| s.conns[i].last_tick_micros.load(Ordering::Relaxed) as f64 / 1e6,
    );
    for c in WRITER_COUNTERS {
        family(&mut o, c.prom, c.counter, c.help);
        let _ = writeln!(o, "{} {}", c.prom, load((c.get)(&s.writer)));
    }
    family(
        &mut o,
        "tickcap_failover_takeovers_total",
        true,
        "Takeovers by the tertiary.",
    );
    let _ = writeln!(
        o,
        "tickcap_failover_takeovers_total {}",
        v.failover.takeovers
    );
    family(
        &mut o,
        "tickcap_failover_active",
        false,
        "1 while the tertiary carries a failed connection's instruments.",
    );
    let _ = writeln!(
        o,
        "tickcap_failover_active {}",
        u8::from(v.failover.is_active())
    );
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
    if v.config.kafka.is_some() {
        for c in KAFKA_COUNTERS {
            family(&mut o, c.prom, c.counter, c.help);
            let _ = writeln!(o, "{} {}", c.prom, load((c.get)(&s.kafka)));
        }
        summary(
            &mut o,
            "tickcap_kafka_receive_to_acked_seconds",
            "Frame read to the tick's record acknowledged by Kafka (acks=all).",
            &Stats::histogram(&s.latency.receive_to_acked_us),
            1e-6,
        );
        family(
            &mut o,
            "tickcap_kafka_up",
            false,
            "1 while the brokers acknowledge.",
        );
        let _ = writeln!(
            o,
            "tickcap_kafka_up {}",
            u8::from(s.kafka.state() == crate::stats::KafkaState::Publishing)
        );
        let oldest = s.kafka.oldest_unacked_micros.load(Ordering::Relaxed);
        family(
            &mut o,
            "tickcap_kafka_lag_seconds",
            false,
            "Age of the oldest unacknowledged tick.",
        );
        let _ = writeln!(
            o,
            "tickcap_kafka_lag_seconds {}",
            if oldest > 0 {
                (v.clock.now_micros() - oldest).max(0) as f64 / 1e6
            } else {
                0.0
            }
        );
    }
    if v.config.serve.is_some() {
        for c in SERVE_COUNTERS {
            family(&mut o, c.prom, c.counter, c.help);
            let _ = writeln!(o, "{} {}", c.prom, load((c.get)(&s.serve)));
        }
        summary(
            &mut o,
            "tickcap_serve_receive_to_client_seconds",
            "Frame read to the tick's message handed to a hub client's socket.",
            &Stats::histogram(&s.latency.receive_to_client_us),
            1e-6,
        );
    }
    o
}

fn summary(
    o: &mut String,
    name: &str,
    help: &str,
    h: &hdrhistogram::Histogram<u64>,
    to_seconds: f64,
) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_distinct_names_and_prometheus_suffixes() {
        let mut seen = std::collections::BTreeSet::new();
        for (json, prom, counter) in CONN_COUNTERS
            .iter()
            .map(|c| (c.json, c.prom, c.counter))
            .chain(WRITER_COUNTERS.iter().map(|c| (c.json, c.prom, c.counter)))
            .chain(SERVE_COUNTERS.iter().map(|c| (c.json, c.prom, c.counter)))
            .chain(KAFKA_COUNTERS.iter().map(|c| (c.json, c.prom, c.counter)))
        {
            assert!(seen.insert(json), "{json} twice");
            assert!(seen.insert(prom), "{prom} twice");
            assert!(prom.starts_with("tickcap_"));
            assert_eq!(
                prom.ends_with("_total"),
                counter,
                "{prom}: counters end in _total"
            );
        }
    }
}
