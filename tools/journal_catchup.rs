//! The Kafka journal catching up on a compressed day: how long it takes to
//! read every line of a `.jsonl.zst` from its start, and from its middle
//! (a restart whose checkpoint is half way through the day), and the peak
//! memory of doing so. The publisher's reading side, without a broker.
//!
//!     cargo run --release --example journal_catchup -- make DIR [--mb 1024]
//!     cargo run --release --example journal_catchup -- read DIR (start|middle)
//!
//! `make` writes `DIR/market_data_2026-11-27.jsonl.zst` (synthetic quote
//! ticks of 3,000 instruments in the writer's line format, one zstd frame
//! per ~1 MiB of lines, as the writer writes them) until the compressed
//! file holds `--mb` MiB, and `DIR/middle` (the position of the line that
//! starts half way through). `read` prints lines, seconds, lines/s and the
//! process's peak resident memory (VmHWM). Run `read` in a fresh process
//! for each measurement.

use std::io::Write;
use std::time::Instant;

use tickcap::publish::journal::{Journal, Pos};

const DAY: &str = "2026-11-27";

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn make(dir: &std::path::Path, mb: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("market_data_{DAY}.jsonl.zst"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let zone = tickcap::time::ZoneFormatter::new("Asia/Kolkata").unwrap();
    let mut fmt = tickcap::sink::line::LineFormatter::new(zone);
    let mut fw = tickcap::zst::FrameWriter::new(3).unwrap();
    let mut insts: Vec<tickcap::replay::synthetic::Instrument> = (0..3000u32)
        .map(|i| tickcap::replay::synthetic::Instrument::new((100_000 + i) << 8 | 1, 7))
        .collect();
    let start_micros = 1_764_215_100_000_000i64; // 09:15 IST
    let (mut written, mut plain, mut lines) = (0u64, 0u64, 0u64);
    let mut buf = Vec::with_capacity(2 << 20);
    let mut offsets = Vec::new();
    let t0 = Instant::now();
    while written < mb << 20 {
        buf.clear();
        while buf.len() < 1 << 20 {
            let i = (lines % 3000) as usize;
            let at = start_micros + (lines as i64) * 100;
            let t = insts[i].next_tick(tickcap::kite::Mode::Quote, (at / 1_000_000) as u32);
            if lines % 100_000 == 0 {
                offsets.push(plain + buf.len() as u64);
            }
            fmt.write_line(&mut buf, &t, at, 1);
            lines += 1;
        }
        plain += buf.len() as u64;
        let f = fw.frame(&buf).unwrap();
        written += f.len() as u64;
        out.write_all(f).unwrap();
    }
    out.flush().unwrap();
    let middle = offsets
        .iter()
        .copied()
        .find(|o| *o >= plain / 2)
        .unwrap_or(0);
    std::fs::write(dir.join("middle"), format!("{DAY}:{middle}\n")).unwrap();
    println!(
        "{}: {lines} lines, {:.0} MiB plain, {:.0} MiB zstd, in {:.1} s; middle at {DAY}:{middle}",
        path.display(),
        plain as f64 / 1048576.0,
        written as f64 / 1048576.0,
        t0.elapsed().as_secs_f64()
    );
}

fn read(dir: &std::path::Path, from: &str) {
    let pos = match from {
        "start" => Pos::parse(&format!("{DAY}:0")).unwrap(),
        "middle" => Pos::parse(&std::fs::read_to_string(dir.join("middle")).unwrap()).unwrap(),
        other => panic!("read DIR (start|middle), not {other}"),
    };
    let t0 = Instant::now();
    let mut j = Journal::new(dir, pos);
    let first = t0.elapsed();
    let mut n = 0u64;
    let mut bytes = 0u64;
    while let Some((_, l)) = j.next_line() {
        n += 1;
        bytes += l.len() as u64 + 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "from {from}: {n} lines ({:.0} MiB) in {secs:.2} s ({:.0} lines/s; positioned in {:.2} s), peak RSS {:.0} MiB",
        bytes as f64 / 1048576.0,
        n as f64 / secs,
        first.as_secs_f64(),
        peak_rss_mb()
    );
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    match a.first().map(String::as_str) {
        Some("make") => {
            let mb = a
                .iter()
                .position(|x| x == "--mb")
                .and_then(|i| a.get(i + 1)?.parse().ok())
                .unwrap_or(1024);
            make(std::path::Path::new(&a[1]), mb)
        }
        Some("read") => read(
            std::path::Path::new(&a[1]),
            a.get(2).map_or("start", String::as_str),
        ),
        _ => eprintln!("usage: journal_catchup make DIR [--mb N] | read DIR (start|middle)"),
    }
}
