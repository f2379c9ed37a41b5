//! The whole capture pipeline in process, no network: binary messages are
//! decoded and pushed into an SPSC ring (the event loop's `push_frame`),
//! the real writer thread drains the ring, formats JSONL and writes a daily
//! file in a temp dir. Time = first push → last line accepted by write(2).
//! Target (issue 4): ≥ 1M ticks/s lossless on this 2-core machine.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickcap::config::FsyncPolicy;
use tickcap::engine::{Clock, Stats};
use tickcap::kite::{encode_message, Mode};
use tickcap::replay::synthetic::Instrument;
use tickcap::ring::{push_frame, ring, Wake};
use tickcap::sink::files::DailyFiles;
use tickcap::sink::writer::{Writer, WriterConfig};
use tickcap::time::ZoneFormatter;

const TICKS: u64 = 200_000;
const PER_MESSAGE: usize = 100;

fn messages(mode: Mode) -> Vec<Vec<u8>> {
    let mut insts: Vec<Instrument> = (1..=100u32)
        .map(|i| Instrument::new((i << 8) | 1, 1))
        .collect();
    let mut out = Vec::new();
    let mut made = 0;
    while made < TICKS as usize {
        let n = insts.len();
        let ticks: Vec<_> = (0..PER_MESSAGE)
            .map(|i| insts[(made + i) % n].next_tick(mode, 1_764_046_523))
            .collect();
        let mut m = Vec::new();
        encode_message(&ticks, &mut m);
        out.push(m);
        made += PER_MESSAGE;
    }
    out
}

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(TICKS));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    for (name, mode) in [("quote", Mode::Quote), ("full", Mode::Full)] {
        let msgs = messages(mode);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
                    let stats = Arc::new(Stats::default());
                    let wake = Arc::new(Wake::default());
                    let (mut producer, consumer) = ring(65_536);
                    let w = &stats.writer;
                    let files = DailyFiles::new(
                        dir.path(),
                        Arc::clone(&w.files_opened),
                        Arc::clone(&w.torn_repaired),
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                    let zone = ZoneFormatter::new("Asia/Kolkata").unwrap_or_else(|e| panic!("{e}"));
                    let cfg =
                        WriterConfig::new(zone, FsyncPolicy::Never, Duration::from_millis(50));
                    let writer = Writer::spawn(
                        cfg,
                        vec![consumer],
                        Box::new(files),
                        Arc::clone(&stats),
                        Arc::clone(&wake),
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                    let clock = Clock::system();
                    let mut overflow = VecDeque::new();
                    let start = Instant::now();
                    for m in &msgs {
                        // backpressure as the event loop does it: wait for room
                        while !overflow.is_empty() {
                            while let Some(s) = overflow.pop_front() {
                                if let Err(rtrb::PushError::Full(s)) = producer.push(s) {
                                    overflow.push_front(s);
                                    break;
                                }
                            }
                            wake.notify();
                            std::hint::spin_loop();
                        }
                        push_frame(
                            m,
                            clock.now_micros(),
                            1,
                            &mut producer,
                            &mut overflow,
                            None,
                            |_| {},
                        );
                        wake.notify();
                    }
                    while !overflow.is_empty() {
                        if let Some(s) = overflow.pop_front() {
                            if let Err(rtrb::PushError::Full(s)) = producer.push(s) {
                                overflow.push_front(s);
                            }
                        }
                        wake.notify();
                    }
                    // the time stops when write(2) has accepted the last line;
                    // the shutdown fsync is not part of the steady state
                    while stats.lines_written() < TICKS {
                        std::thread::yield_now();
                    }
                    total += start.elapsed();
                    writer.finish();
                    assert_eq!(stats.lines_written(), TICKS);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
