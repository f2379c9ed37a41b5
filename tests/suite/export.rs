//! `tickcap export --format parquet`: every row of the Parquet file equals
//! its JSONL line, read back by pyarrow (and pandas): currency (CDS) and
//! BCD prices with their own divisors, an index in full mode (no depth), a
//! zero close, LTP ticks, an empty day, and a real compressed capture.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tickcap::kite::{PacketKind, Tick};
use tickcap::sink::LineFormatter;
use tickcap::time::ZoneFormatter;

fn crafted_day(path: &Path) -> usize {
    let mut f = LineFormatter::new(ZoneFormatter::new("Asia/Kolkata").unwrap());
    let mut out = Vec::new();
    let mut n = 0;
    let mut push = |t: Tick, conn: u8, out: &mut Vec<u8>| {
        f.write_line(out, &t, 1_764_046_523_123_456 + n as i64 * 1000, conn);
        n += 1;
    };
    let depthful = |kind, token| {
        let mut t = Tick::new(kind, token);
        t.last_price = 8_312_345; // CDS: / 10^7; BCD: / 10^4; NSE: / 100
        t.last_traded_quantity = 3;
        t.average_traded_price = 8_312_000;
        t.volume_traded = 42;
        t.total_buy_quantity = 1000;
        t.total_sell_quantity = 2000;
        (t.open, t.high, t.low, t.close) = (8_300_000, 8_320_000, 8_290_000, 8_310_000);
        t.last_trade_time = 1_764_046_500;
        t.exchange_timestamp = 1_764_046_520;
        t.oi = 77;
        for (i, d) in t.depth.iter_mut().enumerate() {
            d.price = 8_312_000 + i as u32 * 25;
            d.quantity = 10 + i as u32;
            d.orders = 1 + i as u16;
        }
        t
    };
    push(depthful(PacketKind::Full, (1234 << 8) | 3), 2, &mut out); // CDS
    push(depthful(PacketKind::Full, (99 << 8) | 6), 2, &mut out); // BCD
    push(depthful(PacketKind::Full, 408_065), 2, &mut out); // NSE
    let mut index = Tick::new(PacketKind::IndexFull, 256_265);
    (index.last_price, index.close) = (2_431_055, 2_430_000);
    index.exchange_timestamp = 1_764_046_521;
    push(index, 1, &mut out);
    let mut zero_close = depthful(PacketKind::Quote, 738_561);
    zero_close.close = 0;
    push(zero_close, 1, &mut out);
    let mut ltp = Tick::new(PacketKind::Ltp, 512);
    ltp.last_price = 12_345;
    push(ltp, 3, &mut out);
    let mut index_quote = Tick::new(PacketKind::IndexQuote, 260_105);
    index_quote.last_price = 5_000_010;
    push(index_quote, 1, &mut out);
    std::fs::write(path, out).unwrap();
    n
}

fn export(files: &[&Path], out: &Path) -> String {
    export_with(files, out, &[])
}

fn export_with(files: &[&Path], out: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .arg("export")
        .args(files)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn parquet_rows(path: &Path) -> i64 {
    use parquet::file::reader::FileReader;
    let r = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(path).unwrap())
        .unwrap();
    r.metadata().file_metadata().num_rows()
}

/// pyarrow's rows against the JSONL lines (tools/parquet_check.py).
#[cfg(has_pydata)]
fn python_agrees(parquet: &Path, jsonl: &Path) {
    let o = Command::new(env!("TICKCAP_PYDATA_BIN"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tools/parquet_check.py"
        ))
        .arg(parquet)
        .arg(jsonl)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn every_kind_of_tick_and_an_empty_day_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let day = dir.path().join("market_data_2026-11-25.jsonl");
    let lines = crafted_day(&day);
    let empty = dir.path().join("market_data_2026-11-24.jsonl");
    std::fs::write(&empty, "").unwrap();
    let out = dir.path().join("pq");
    let printed = export(&[&day, &empty], &out);
    assert!(
        printed.contains("market_data_2026-11-25.parquet: 7 rows"),
        "{printed}"
    );
    let pq = out.join("market_data_2026-11-25.parquet");
    assert_eq!(parquet_rows(&pq), lines as i64);
    assert_eq!(parquet_rows(&out.join("market_data_2026-11-24.parquet")), 0);
}

/// The same day read back by pyarrow, row for row (reported ignored, not
/// passed, without a Python that has pyarrow).
#[test]
#[cfg_attr(
    not(has_pydata),
    ignore = "no Python with pyarrow, pandas and zstandard at build time (python3 -m venv .venv && .venv/bin/pip install pyarrow pandas zstandard, then touch build.rs)"
)]
fn pyarrow_reads_every_kind_of_tick_and_an_empty_day_row_for_row() {
    let dir = tempfile::tempdir().unwrap();
    let day = dir.path().join("market_data_2026-11-25.jsonl");
    crafted_day(&day);
    let empty = dir.path().join("market_data_2026-11-24.jsonl");
    std::fs::write(&empty, "").unwrap();
    let out = dir.path().join("pq");
    export(&[&day, &empty], &out);
    #[cfg(has_pydata)]
    {
        python_agrees(&out.join("market_data_2026-11-25.parquet"), &day);
        python_agrees(&out.join("market_data_2026-11-24.parquet"), &empty);
    }
}

#[test]
#[cfg_attr(
    not(has_pydata),
    ignore = "no Python with pyarrow, pandas and zstandard at build time (python3 -m venv .venv && .venv/bin/pip install pyarrow pandas zstandard, then touch build.rs)"
)]
fn a_real_compressed_capture_exports_row_for_row() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(5000, |_| {});
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\ncompression = \"zstd\"\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256, 512, 256265, 1027, 1030]\n[secondary]\ninstruments = [2561, 260105]\n",
        feed.url(),
        dir.path().join("data").display().to_string()
    );
    let cfg = tickcap::config::Config::parse(
        &text,
        Path::new("t.toml"),
        &tickcap::config::Env::default(),
    )
    .unwrap();
    let engine = tickcap::engine::Engine::start(cfg, tickcap::engine::Options::default()).unwrap();
    let stats = std::sync::Arc::clone(engine.stats());
    assert!(common::wait_until(Duration::from_secs(20), || stats
        .lines_written()
        > 5000));
    common::halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    let zst: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".jsonl.zst"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("market_data_"))
        })
        .collect();
    assert_eq!(zst.len(), 1);
    let out = dir.path().join("pq");
    export(&[&zst[0]], &out);
    let name = tickcap::analysis::export::parquet_name(&zst[0]);
    let pq = out.join(name);
    assert_eq!(parquet_rows(&pq) as u64, stats.lines_written());
    #[cfg(has_pydata)]
    python_agrees(&pq, &zst[0]);
    // The same day split into several instrument ranges sorted one at a
    // time, in small row groups; in file order; without depth: each equal
    // to the lines (the checker also holds the row groups to ascending,
    // non-overlapping instrument ranges, each instrument in as few groups
    // as its rows need).
    for (sub, args) in [
        (
            "ranges",
            &["--sort-mb", "1", "--row-group-rows", "1024"][..],
        ),
        ("receive", &["--order", "receive"][..]),
        ("nodepth", &["--no-depth"][..]),
    ] {
        let out = dir.path().join(sub);
        export_with(&[&zst[0]], &out, args);
        let pq = out.join(tickcap::analysis::export::parquet_name(&zst[0]));
        assert_eq!(parquet_rows(&pq) as u64, stats.lines_written(), "{sub}");
        assert!(
            !out.join(format!("{}.sort", pq.display())).exists(),
            "temporary files left"
        );
        #[cfg(has_pydata)]
        python_agrees(&pq, &zst[0]);
    }
}

/// `[storage] export_closed_days = "parquet"`: the day that closes while
/// the service runs is exported by itself (instrument order) into
/// `DATA_DIR/parquet`, with every line of the day's file; today's is not.
#[test]
fn a_day_closing_while_the_service_runs_is_exported_by_itself() {
    closing_day_exported(false);
}

/// The same with `compress_closed_days`: the closed day is compressed at
/// rotation while its export is due; the export waits for the sealing and
/// reads the day once (every line, no line twice).
#[test]
fn a_closing_day_being_compressed_is_exported_once_whole() {
    closing_day_exported(true);
}

fn closing_day_exported(compress: bool) {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The receive clock 3 s before the next Kolkata midnight.
    let now = tickcap::engine::Clock::system().now_micros();
    let (day, ist) = (86_400_000_000i64, 19_800_000_000i64);
    let next_midnight = (now + ist).div_euclid(day) * day + day - ist;
    let clock = tickcap::engine::Clock::shifted(next_midnight - 3_000_000 - now);
    let feed = common::synthetic_feed(2_000, |_| {});
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         export_closed_days = \"parquet\"\ncompress_closed_days = {compress}\n[status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256, 512, 768, 1024]\n",
        feed.url(),
        data.display().to_string()
    );
    let cfg = tickcap::config::Config::parse(
        &text,
        Path::new("t.toml"),
        &tickcap::config::Env::default(),
    )
    .unwrap();
    assert_eq!(cfg.storage.export_closed_days, Some(data.join("parquet")));
    let engine = tickcap::engine::Engine::start(
        cfg,
        tickcap::engine::Options {
            clock,
            ..Default::default()
        },
    )
    .unwrap();
    let stats = std::sync::Arc::clone(engine.stats());
    assert!(
        common::wait_until(Duration::from_secs(40), || stats
            .exports
            .done
            .load(Ordering::Relaxed)
            >= 1),
        "failed {}: {:?}",
        stats.exports.failed.load(Ordering::Relaxed),
        stats.exports.last_error.lock().unwrap()
    );
    let url = format!("http://{}", engine.status_addr().unwrap());
    let health = common::get_json(&url, "/health");
    assert_eq!(health["exports"]["done"], 1, "{}", health["exports"]);
    common::halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    let ticks = tickcap::days::segments_in(&data, tickcap::days::Family::Ticks);
    assert_eq!(ticks.len(), 2, "two days");
    let yesterday = &ticks[0];
    assert_eq!(yesterday.zstd, compress, "{yesterday:?}");
    let text = tickcap::zst::read_all(&yesterday.path).unwrap();
    let lines = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(lines > 0);
    let pq = data
        .join("parquet")
        .join(format!("market_data_{}.parquet", yesterday.id.day));
    assert_eq!(parquet_rows(&pq), lines as i64);
    assert_eq!(
        std::fs::read_dir(data.join("parquet")).unwrap().count(),
        1,
        "only the closed day, nothing left over"
    );
    #[cfg(has_pydata)]
    python_agrees(&pq, &yesterday.path);
}

/// A 100 MB line and a line that is not JSON in the middle of a day: each
/// reported with its file and line number, every other line exported, in
/// both orders, and the exit is non-zero (the file is not the whole day).
#[test]
fn a_100_mb_line_is_reported_by_place_and_the_rest_exported() {
    let dir = tempfile::tempdir().unwrap();
    let day = dir.path().join("market_data_2026-11-25.jsonl");
    let good = |s: u32| {
        format!(
            "{{\"tradable\":true,\"mode\":\"ltp\",\"instrument_token\":{},\"last_price\":100.5,\"timestamp\":\"2026-11-25T09:15:{s:02}.000000+05:30\",\"connection_id\":1}}\n",
            256 + (s % 2) * 256
        )
    };
    let mut text = good(0) + &good(1);
    text.push_str("{\"tradable\":true,\"mode\":\"ltp\",\"instrument_token\":256,\"x\":\"");
    text.push_str(&"A".repeat(100 << 20));
    text.push_str("\"}\n");
    text += &good(2);
    text.push_str("not json at all\n");
    text += &good(3);
    std::fs::write(&day, text).unwrap();
    for order in ["instrument", "receive"] {
        let out = dir.path().join(order);
        let o = Command::new(env!("CARGO_BIN_EXE_tickcap"))
            .arg("export")
            .arg(&day)
            .arg("--out")
            .arg(&out)
            .args(["--order", order])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{order}: {err}");
        assert!(
            err.contains("market_data_2026-11-25.jsonl:3:"),
            "{order}: {err}"
        );
        assert!(
            err.contains("market_data_2026-11-25.jsonl:5:"),
            "{order}: {err}"
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("2 line(s) that are not ticks skipped"),
            "{order}"
        );
        assert_eq!(
            parquet_rows(&out.join("market_data_2026-11-25.parquet")),
            4,
            "{order}"
        );
    }
}
