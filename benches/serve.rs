//! The hub's per-tick path, one core: a captured tick fanned out to the
//! batches of 50 clients (a third each in ltp, quote and full), each mode
//! encoded once per tick — what the hub thread does for every tick, per
//! client. Results: docs/performance.md ("Fan-out").

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickcap::kite::{Mode, PacketKind, Tick};
use tickcap::serve::client::Batch;
use tickcap::serve::encode_for;

fn full_tick() -> Tick {
    let mut t = Tick::new(PacketKind::Full, 408_065);
    t.last_price = 157_370;
    t.volume_traded = 1_192_471;
    for (i, d) in t.depth.iter_mut().enumerate() {
        d.price = 157_340 + 5 * i as u32;
        d.quantity = 100 + i as u32;
        d.orders = 1 + i as u16;
    }
    t
}

fn fan_out(c: &mut Criterion) {
    let tick = full_tick();
    let modes: Vec<Mode> = (0..50)
        .map(|i| [Mode::Ltp, Mode::Quote, Mode::Full][i % 3])
        .collect();
    let mut batches: Vec<Batch> = (0..50).map(|_| Batch::default()).collect();
    let mut scratch = [Vec::new(), Vec::new(), Vec::new()];
    let mut g = c.benchmark_group("hub");
    g.throughput(Throughput::Elements(50));
    g.bench_function("one full tick to 50 clients (ltp/quote/full)", |b| {
        let mut n = 0u32;
        b.iter(|| {
            let mut encoded = [false; 3];
            for (batch, &mode) in batches.iter_mut().zip(&modes) {
                let r = mode as usize;
                if !encoded[r] {
                    encode_for(black_box(&tick), mode, &mut scratch[r]);
                    encoded[r] = true;
                }
                batch.push(&scratch[r], 1);
            }
            n += 1;
            // A message per client every 100 ticks, as the hub finishes
            // batches each turn.
            if n.is_multiple_of(100) {
                for b in &mut batches {
                    black_box(b.finish());
                }
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode a full tick for a quote client", |b| {
        let mut out = Vec::new();
        b.iter(|| encode_for(black_box(&tick), Mode::Quote, &mut out))
    });
    g.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
