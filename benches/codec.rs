//! Codec stage costs, one core: decoding one packet of each kind from a
//! binary message, and serializing one tick of each kind to a JSONL line —
//! the hand-written formatter against a `serde_json` baseline.
//!
//! Targets (issue 2): decode ≤ 15 ns per quote packet; serialize ≤ 150 ns
//! per quote line and ≤ 600 ns per full line. Results: docs/performance.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickcap::kite::{decode_message, encode_message, DepthEntry, PacketKind, Tick};
use tickcap::sink::line::serde_line;
use tickcap::sink::LineFormatter;
use tickcap::time::ZoneFormatter;

/// Packets per message in the decode bench: Kite batches many per frame.
const BATCH: usize = 64;

fn sample(kind: PacketKind) -> Tick {
    let token = if matches!(kind, PacketKind::IndexQuote | PacketKind::IndexFull) {
        256_265
    } else {
        408_065
    };
    let mut t = Tick::new(kind, token);
    t.last_price = 157_370;
    t.last_traded_quantity = 7;
    t.average_traded_price = 157_037;
    t.volume_traded = 1_192_471;
    t.total_buy_quantity = 256_443;
    t.total_sell_quantity = 363_009;
    (t.open, t.high, t.low, t.close) = (156_915, 157_500, 156_105, 156_780);
    t.last_trade_time = 1_625_461_887;
    t.exchange_timestamp = 1_625_461_887;
    for (i, d) in t.depth.iter_mut().enumerate() {
        *d = DepthEntry {
            quantity: 100 + i as u32,
            price: 157_340 + 5 * i as u32,
            orders: 1 + i as u16,
        };
    }
    // drop what the kind does not carry
    let mut msg = Vec::new();
    encode_message(&[t], &mut msg);
    match decode_message(&msg).next() {
        Some(Ok(t)) => t,
        _ => unreachable!("a tick encodes"),
    }
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for kind in PacketKind::ALL {
        let mut msg = Vec::new();
        encode_message(&vec![sample(kind); BATCH], &mut msg);
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(format!("{kind:?}"), |b| {
            b.iter(|| {
                let mut sum = 0u64;
                for t in decode_message(black_box(&msg)).flatten() {
                    sum = sum.wrapping_add(u64::from(t.volume_traded) + u64::from(t.last_price));
                }
                sum
            })
        });
    }
    g.finish();
}

fn serialize(c: &mut Criterion) {
    let mut g = c.benchmark_group("serialize");
    g.throughput(Throughput::Elements(1));
    let clock = ZoneFormatter::new("Asia/Kolkata").unwrap_or_else(|e| panic!("{e}"));
    for kind in PacketKind::ALL {
        let t = sample(kind);
        let mut fmt = LineFormatter::new(clock.clone());
        let mut out = Vec::with_capacity(1 << 20);
        let mut now = 1_764_046_523_000_000i64;
        g.bench_function(format!("hand/{kind:?}"), |b| {
            b.iter(|| {
                if out.len() > (1 << 20) - 2048 {
                    out.clear();
                }
                now += 7; // a new receive time per line, as in a capture
                fmt.write_line(&mut out, black_box(&t), now, 1);
            })
        });
        let mut clock = clock.clone();
        g.bench_function(format!("serde_json/{kind:?}"), |b| {
            b.iter(|| {
                if out.len() > (1 << 20) - 2048 {
                    out.clear();
                }
                now += 7;
                serde_line(&mut clock, &mut out, black_box(&t), now, 1).ok();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode, serialize);
criterion_main!(benches);
