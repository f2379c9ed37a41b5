//! Reading captured JSONL back (issue 7 target: `tickcap analyze` ≥ 500 MB/s
//! on this machine): one line parsed by simd-json (our `parse_line`) against
//! a `serde_json` baseline, and the whole analyze scan of a ~60 MB capture
//! with one thread and with every core. Throughput in bytes.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tickcap::analysis::analyze::Analysis;
use tickcap::analysis::scan::{parse_line, parse_line_fast, scan, Fields};
use tickcap::kite::Mode;
use tickcap::replay::synthetic::Instrument;
use tickcap::sink::LineFormatter;
use tickcap::time::ZoneFormatter;

/// A realistic capture: 100 instruments, 80% quote, 20% full, 5 ticks per ms.
fn capture(lines: usize) -> Vec<u8> {
    let mut fmt =
        LineFormatter::new(ZoneFormatter::new("Asia/Kolkata").unwrap_or_else(|e| panic!("{e}")));
    let mut insts: Vec<Instrument> = (1..=100u32)
        .map(|i| Instrument::new((i << 8) | 1, 7))
        .collect();
    let mut out = Vec::with_capacity(lines * 400);
    for i in 0..lines {
        let mode = if i % 5 == 0 { Mode::Full } else { Mode::Quote };
        let n = insts.len();
        let t = insts[i % n].next_tick(mode, 1_764_046_523);
        fmt.write_line(
            &mut out,
            &t,
            1_764_046_523_000_000 + i as i64 * 200,
            1 + (i % 2) as u8,
        );
    }
    out
}

fn lines(c: &mut Criterion) {
    let text = capture(10_000);
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut g = c.benchmark_group("read_line");
    g.throughput(Throughput::Bytes(text.len() as u64));
    let mut scratch = Vec::with_capacity(4096);
    g.bench_function("simd_json_value", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for l in &lines {
                if let Ok(x) = parse_line(black_box(l), &mut scratch, false) {
                    n += u64::from(x.token);
                }
            }
            n
        })
    });
    g.bench_function("parse_line_fast_serde_json_typed", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for l in &lines {
                if let Ok(x) = parse_line_fast(black_box(l)) {
                    n += u64::from(x.token);
                }
            }
            n
        })
    });
    g.bench_function("serde_json", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for l in &lines {
                if let Ok(x) = serde_json::from_slice::<Fields<'_>>(black_box(l)) {
                    n += u64::from(x.instrument_token);
                }
            }
            n
        })
    });
    g.finish();
}

fn whole_file(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("market_data_2025-11-25.jsonl");
    let text = capture(150_000);
    std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("analyze_file");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [1, cores] {
        g.bench_function(format!("{threads}_threads"), |b| {
            b.iter_batched(
                || (),
                |()| {
                    scan(&path, threads, false, || Analysis::new(Vec::new(), false))
                        .map(|(s, _)| s.ticks)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, lines, whole_file);
criterion_main!(benches);
