//! The live candle update, per tick: what the writer adds to each tick it
//! writes with `[candles]` on. 9,000 instruments, three intervals (1m, 5m,
//! 15m), ticks round-robin at 9,000 ticks/s of receive time, each a trade.
//!
//! Target (issue 24): ≤ 50 ns per tick. Results: docs/performance.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickcap::candles::{Book, Interval};
use tickcap::kite::{PacketKind, Tick};
use tickcap::time::ZoneFormatter;

const INSTRUMENTS: u32 = 9_000;
const TICKS: u64 = 90_000;

fn stream() -> Vec<(Tick, i64)> {
    // 2026-11-27 09:15 IST, 111 µs apart (9,000 ticks/s).
    let start = 1_795_737_600_000_000i64 - 19_800_000_000 + (9 * 3600 + 15 * 60) * 1_000_000;
    (0..TICKS)
        .map(|i| {
            let token = ((i as u32 % INSTRUMENTS) << 8) | 1;
            let mut t = Tick::new(PacketKind::Quote, token);
            t.last_price = 100_000 + (i % 97) as u32;
            t.volume_traded = 1 + (i / u64::from(INSTRUMENTS)) as u32;
            (t.open, t.high, t.low, t.close) = (100_000, 100_100, 99_900, 99_950);
            (t, start + i as i64 * 111)
        })
        .collect()
}

fn update(c: &mut Criterion) {
    let ticks = stream();
    let mut g = c.benchmark_group("candles");
    g.throughput(Throughput::Elements(TICKS));
    g.bench_function("update_3_intervals_9000_instruments", |b| {
        b.iter_batched_ref(
            || {
                let mut book = Book::new(
                    &[Interval::Minute, Interval::Minute5, Interval::Minute15],
                    ZoneFormatter::new("Asia/Kolkata").unwrap(),
                );
                // Warm: every instrument has a bar open.
                let mut out = Vec::new();
                for (t, at) in &ticks {
                    book.update(t, *at - 10_000_000, &mut out);
                }
                (book, Vec::with_capacity(100_000))
            },
            |(book, out)| {
                for (t, at) in &ticks {
                    book.update(black_box(t), *at, out);
                }
                black_box(out.len())
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, update);
criterion_main!(benches);
