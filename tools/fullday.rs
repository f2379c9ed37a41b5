//! A realistic trading day, written straight to
//! `OUT/market_data_DAY.jsonl.zst` in the writer's own format (independent
//! zstd frames of ~1 MiB of whole lines, the tick lines the writer writes),
//! for running the offline tools at full-day scale.
//!
//! ```text
//! cargo run --release --example fullday -- --out /data/day --ticks 200000000
//! cargo run --release --example fullday -- --out /tmp/day --ticks 2000000   # scaled down (CI-sized)
//! ```
//!
//! The day: `--instruments` (9,000) NSE/NFO instruments, a third in full
//! mode with depth (connection 2), the rest quote (connection 1), 09:15–15:30
//! IST; snapshot rates busier at the open and the close (a U-shaped
//! profile), liquid instruments ticking more than illiquid ones (Zipf);
//! per instrument a continuous price path and a cumulative volume that
//! never decreases; receive times increasing through the file. Every tick
//! is a pure function of (instrument, time), so the day is generated in
//! parallel, a contiguous range of seconds per thread, each writing its
//! own frames; the parts are concatenated in order.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use tickcap::kite::{DepthEntry, PacketKind, Tick, DEPTH_LEVELS};
use tickcap::sink::LineFormatter;
use tickcap::time::{LocalDate, ZoneFormatter};
use tickcap::util::SplitMix;

const SESSION_SECS: u64 = 22_500; // 09:15 to 15:30
const FRAME_BYTES: usize = 1 << 20;

struct Args {
    out: PathBuf,
    day: LocalDate,
    instruments: u32,
    ticks: u64,
    level: i32,
    threads: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        out: PathBuf::from("fullday"),
        day: LocalDate::parse("2026-11-27").ok_or("day")?,
        instruments: 9_000,
        ticks: 200_000_000,
        level: 1,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--out" => a.out = PathBuf::from(v),
            "--day" => a.day = LocalDate::parse(&v).ok_or("--day: YYYY-MM-DD")?,
            "--instruments" => a.instruments = v.parse().map_err(|e| format!("{k}: {e}"))?,
            "--ticks" => a.ticks = v.parse().map_err(|e| format!("{k}: {e}"))?,
            "--level" => a.level = v.parse().map_err(|e| format!("{k}: {e}"))?,
            "--threads" => a.threads = v.parse().map_err(|e| format!("{k}: {e}"))?,
            _ => {
                return Err(format!(
                    "unknown {k}: --out --day --instruments --ticks --level --threads"
                ))
            }
        }
    }
    Ok(a)
}

/// The share of the day's ticks in second `s` of the session: a U shape.
fn weight(s: u64) -> f64 {
    let t = s as f64;
    1.0 + 2.5 * (-t / 1200.0).exp() + 1.5 * (-(SESSION_SECS as f64 - t) / 1200.0).exp()
}

/// One instrument's fixed traits.
#[derive(Clone, Copy)]
struct Inst {
    token: u32,
    full: bool,
    base: f64,
    step: u32,
    liquidity: f64,
    phase: f64,
}

fn instruments(n: u32) -> Vec<Inst> {
    let mut rng = SplitMix::new(27);
    (0..n)
        .map(|i| {
            // A third NSE equities (segment 1), the rest NFO (segment 2).
            let seg = if i % 3 == 0 { 1 } else { 2 };
            let base = 50.0 + rng.below(5_000) as f64;
            Inst {
                token: ((100_000 + i) << 8) | seg,
                full: i % 3 == 1,
                base,
                step: 5,
                // Zipf-like: the first instruments trade far more.
                liquidity: 1.0 / f64::from(i + 1).powf(0.8),
                phase: rng.below(10_000) as f64 / 1000.0,
            }
        })
        .collect()
}

/// The tick of `inst` at `micros` after the open (the n-th of the day).
fn tick(inst: &Inst, micros: i64, open_epoch: i64, rng: &mut SplitMix) -> Tick {
    let t = micros as f64 / 1e6;
    let wave = (t / (600.0 + inst.phase * 60.0) + inst.phase).sin() * 0.01
        + (t / 97.0 + inst.phase).sin() * 0.002;
    let price = inst.base * (1.0 + wave);
    let raw = ((price * 100.0 / f64::from(inst.step)).round() as u32) * inst.step;
    let kind = if inst.full {
        PacketKind::Full
    } else {
        PacketKind::Quote
    };
    let mut k = Tick::new(kind, inst.token);
    k.last_price = raw;
    k.last_traded_quantity = 1 + rng.below(500) as u32;
    k.average_traded_price = (inst.base * 100.0) as u32;
    // Cumulative volume: a function of time, so it never decreases.
    k.volume_traded = (t * 40.0 * inst.liquidity * 1000.0) as u32 + 1;
    k.total_buy_quantity = 100_000 + rng.below(50_000) as u32;
    k.total_sell_quantity = 100_000 + rng.below(50_000) as u32;
    k.open = (inst.base * 100.0) as u32;
    k.high = (inst.base * 101.2 + 100.0) as u32;
    k.low = (inst.base * 98.8 - 100.0).max(1.0) as u32;
    k.close = (inst.base * 99.7) as u32;
    if inst.full {
        let secs = ((open_epoch + micros) / 1_000_000) as u32;
        k.last_trade_time = secs;
        k.exchange_timestamp = secs;
        k.oi = 1_000_000 + rng.below(10_000) as u32;
        k.oi_day_high = k.oi + 5_000;
        k.oi_day_low = k.oi - 5_000;
        for i in 0..DEPTH_LEVELS / 2 {
            let away = inst.step * (i as u32 + 1);
            let q = 1 + rng.below(5_000) as u32;
            k.depth[i] = DepthEntry {
                quantity: q,
                price: raw.saturating_sub(away),
                orders: 1 + rng.below(20) as u16,
            };
            k.depth[DEPTH_LEVELS / 2 + i] = DepthEntry {
                quantity: q + 3,
                price: raw + away,
                orders: 1 + rng.below(20) as u16,
            };
        }
    }
    k
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fullday: {e}");
            std::process::exit(2);
        }
    };
    let t0 = Instant::now();
    std::fs::create_dir_all(&a.out).expect("the output directory");
    let insts = instruments(a.instruments);
    // Cumulative liquidity, to pick an instrument for each tick (Zipf).
    let mut cum = Vec::with_capacity(insts.len());
    let mut acc = 0.0;
    for i in &insts {
        acc += i.liquidity;
        cum.push(acc);
    }
    let total_w: f64 = (0..SESSION_SECS).map(weight).sum();
    let per_sec: Vec<u64> = {
        let mut v: Vec<u64> = (0..SESSION_SECS)
            .map(|s| (a.ticks as f64 * weight(s) / total_w) as u64)
            .collect();
        let short = a.ticks - v.iter().sum::<u64>();
        for s in v.iter_mut().take(short as usize) {
            *s += 1;
        }
        v
    };
    let open_epoch = {
        let midnight_ist = tickcap::time::days_from_civil(a.day) * 86_400_000_000 - 19_800_000_000;
        midnight_ist + (9 * 3600 + 15 * 60) * 1_000_000
    };
    let threads = a.threads.max(1);
    let chunk = SESSION_SECS.div_ceil(threads as u64);
    let name = format!("market_data_{}.jsonl.zst", a.day);
    let parts: Vec<PathBuf> = (0..threads)
        .map(|k| a.out.join(format!("{name}.part{k}")))
        .collect();
    std::thread::scope(|sc| {
        for (k, part) in parts.iter().enumerate() {
            let (insts, cum, per_sec) = (&insts, &cum, &per_sec);
            sc.spawn(move || {
                let mut fmt = LineFormatter::new(ZoneFormatter::new("Asia/Kolkata").expect("zone"));
                let mut z = tickcap::zst::FrameWriter::new(a.level).expect("zstd");
                let mut f = std::io::BufWriter::with_capacity(
                    4 << 20,
                    std::fs::File::create(part).expect("a part file"),
                );
                let mut buf = Vec::with_capacity(FRAME_BYTES + 8192);
                let total = *cum.last().unwrap_or(&1.0);
                for s in (k as u64 * chunk)..((k as u64 + 1) * chunk).min(SESSION_SECS) {
                    let n = per_sec[s as usize];
                    let mut rng = SplitMix::new(s * 7919 + 1);
                    for j in 0..n {
                        let micros = s as i64 * 1_000_000 + (j as i64 * 1_000_000) / n as i64;
                        let x = rng.below(1 << 30) as f64 / f64::from(1u32 << 30) * total;
                        let i = cum.partition_point(|c| *c < x).min(insts.len() - 1);
                        let inst = &insts[i];
                        let t = tick(inst, micros, open_epoch, &mut rng);
                        fmt.write_line(
                            &mut buf,
                            &t,
                            open_epoch + micros,
                            if inst.full { 2 } else { 1 },
                        );
                        if buf.len() >= FRAME_BYTES {
                            f.write_all(z.frame(&buf).expect("compress"))
                                .expect("write");
                            buf.clear();
                        }
                    }
                }
                if !buf.is_empty() {
                    f.write_all(z.frame(&buf).expect("compress"))
                        .expect("write");
                }
                f.flush().expect("flush");
            });
        }
    });
    let out = a.out.join(&name);
    let mut dst = std::fs::File::create(&out).expect("the day's file");
    for p in &parts {
        let mut src = std::fs::File::open(p).expect("a part");
        std::io::copy(&mut src, &mut dst).expect("concatenate");
        std::fs::remove_file(p).expect("remove a part");
    }
    dst.sync_all().expect("sync");
    let bytes = std::fs::metadata(&out).map_or(0, |m| m.len());
    println!(
        "{}: {} ticks of {} instruments, {:.1} MB, in {:.1} s ({:.0} ticks/s)",
        out.display(),
        a.ticks,
        a.instruments,
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64(),
        a.ticks as f64 / t0.elapsed().as_secs_f64()
    );
}
