//! `tickcap storage`, `analyze` and `verify` on golden capture files
//! (`tests/data/captures/`: one clean day with the replay report that
//! produced it, one day with every defect: a gap, a duplicate, a non-UTF-8
//! line, a timestamp going backwards, a missing key and a torn last line).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/captures")
        .join(name)
}

fn tickcap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn verify_accepts_a_complete_capture_and_the_report_that_made_it() {
    let out = tickcap(&[
        "verify",
        s(&data("market_data_2026-11-24.jsonl")),
        "--replay-report",
        s(&data("market_data_2026-11-24.report.json")),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["replay"]["captured"], 6);
    assert_eq!(v["replay"]["complete"], true);
}

#[test]
fn verify_reports_every_defect_with_its_position_and_exits_1() {
    let out = tickcap(&["verify", s(&data("market_data_2026-11-25.jsonl"))]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "market_data_2026-11-25.jsonl:5: not UTF-8",
        "market_data_2026-11-25.jsonl:6: timestamp earlier than the previous line of connection 1",
        "market_data_2026-11-25.jsonl:7: missing or mistyped key \"last_price\"",
        "market_data_2026-11-25.jsonl:8: torn last line",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn verify_counts_missing_duplicated_and_reordered_ticks_against_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    std::fs::write(&report, r#"{"sent":7,"per_connection":{},"per_mode":{},"last_volume":{"408065":6},"faults":{"drops":0,"stalls":0,"malformed":0,"auth_rejected":0,"errors":0},"elapsed_s":1.0,"rate":1.0,"heartbeats":0,"connections":1,"refused_auth":0,"refused_limit":0}"#).unwrap();
    let out = tickcap(&[
        "verify",
        s(&data("market_data_2026-11-25.jsonl")),
        "--replay-report",
        s(&report),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // good lines carry volumes 1, 2, 4, 4, 5: 3 and 6 missing, one 4 duplicated
    assert_eq!(v["replay"]["missing"], 2, "{v}");
    assert_eq!(v["replay"]["duplicated"], 1, "{v}");
    assert_eq!(v["bad_lines"], 3);
    assert_eq!(v["timestamps_backwards"], 1);
}

#[test]
fn analyze_reports_per_instrument_figures_and_bad_lines() {
    let out = tickcap(&[
        "analyze",
        s(&data("market_data_2026-11-24.jsonl")),
        s(&data("market_data_2026-11-25.jsonl")),
        "--json",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("market_data_2026-11-25.jsonl:8: torn"),
        "{err}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let day1 = &v["files"][0];
    assert_eq!(day1["total_ticks"], 6);
    assert_eq!(day1["unique_instruments"], 3);
    assert_eq!(day1["modes"]["full"], 2);
    assert_eq!(day1["connections"]["2"], 2);
    let infy = &day1["instruments"]["408065"];
    assert_eq!(
        (
            infy["count"].as_u64(),
            infy["first_price"].as_f64(),
            infy["last_price"].as_f64()
        ),
        (Some(3), Some(101.0), Some(99.5))
    );
    assert_eq!(
        (infy["min_price"].as_f64(), infy["max_price"].as_f64()),
        (Some(99.5), Some(102.5))
    );
    assert!((infy["mean_price"].as_f64().unwrap() - 101.0).abs() < 1e-9);
    assert_eq!(infy["volume"], 2);
    assert_eq!(
        day1["time_range"]["start"],
        "2026-11-24T09:15:00.000100+05:30"
    );
    assert_eq!(day1["ticks_per_second"]["peak"], 2);
    let all = &v["overall"];
    assert_eq!(all["total_ticks"], 11);
    assert_eq!(all["bad_lines"], 0, "bad lines are per file");
    assert_eq!(v["files"][1]["bad_lines"], 3);
    // --instrument filters
    let out = tickcap(&[
        "analyze",
        s(&data("market_data_2026-11-24.jsonl")),
        "--instrument",
        "884737",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["overall"]["total_ticks"], 2);
}

#[cfg(feature = "plot")]
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
#[cfg(feature = "plot")]
fn plots_are_pngs_of_the_chart_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = tickcap(&[
        "analyze",
        s(&data("market_data_2026-11-24.jsonl")),
        "--instrument",
        "408065",
        "--plot",
        s(dir.path()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["ticks_per_second.png", "price_408065.png"] {
        assert_eq!(
            png_size(&dir.path().join(name)),
            tickcap::analysis::plot::SIZE,
            "{name}"
        );
    }
}

#[test]
fn storage_lists_files_and_cleanup_keeps_today() {
    let dir = tempfile::tempdir().unwrap();
    let mut zone = tickcap::time::ZoneFormatter::new("Asia/Kolkata").unwrap();
    let now = tickcap::engine::Clock::system().now_micros();
    let mut day = |back: i64| zone.date_of_micros(now - back * 86_400_000_000);
    let today = day(0);
    let old = day(40);
    std::fs::copy(
        data("market_data_2026-11-24.jsonl"),
        dir.path().join(format!("market_data_{today}.jsonl")),
    )
    .unwrap();
    std::fs::copy(
        data("market_data_2026-11-25.jsonl"),
        dir.path().join(format!("market_data_{old}.jsonl")),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a capture").unwrap();
    let out = tickcap(&["storage", "--data-dir", s(dir.path()), "--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total_files"], 2);
    let files = v["files"].as_array().unwrap();
    let t = files.iter().find(|f| f["today"] == true).unwrap();
    assert_eq!(t["ticks"], 6);
    assert_eq!(t["first_timestamp"], "2026-11-24T09:15:00.000100+05:30");
    assert_eq!(t["last_timestamp"], "2026-11-24T09:15:02.000010+05:30");
    let o = files.iter().find(|f| f["today"] == false).unwrap();
    assert_eq!(o["torn_last_line"], true);
    assert_eq!(o["lines"], 8, "the torn line and the bad ones are lines...");
    assert_eq!(o["ticks"], 5, "... but not ticks (as analyze counts them)");
    let out = tickcap(&[
        "storage",
        "--data-dir",
        s(dir.path()),
        "--cleanup",
        "--keep-days",
        "30",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 file(s) removed"));
    assert!(dir
        .path()
        .join(format!("market_data_{today}.jsonl"))
        .exists());
    assert!(!dir.path().join(format!("market_data_{old}.jsonl")).exists());
    assert!(dir.path().join("notes.txt").exists());
    let out = tickcap(&["storage", "--data-dir", "/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn non_regular_files_are_skipped_with_a_message_never_read() {
    let dir = tempfile::tempdir().unwrap();
    // A FIFO: opening it for reading would block for ever.
    let fifo = dir.path().join("market_data_2026-01-02.jsonl");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // A directory named like a daily file, old enough for retention.
    std::fs::create_dir(dir.path().join("market_data_2020-01-01.jsonl")).unwrap();
    let old = dir.path().join("market_data_2020-01-02.jsonl");
    std::fs::write(&old, "").unwrap();
    // A FIFO and a missing file among good ones: each named, the rest
    // read, and a non-zero exit.
    let good = dir.path().join("market_data_2026-01-03.jsonl");
    std::fs::copy(data("market_data_2026-11-25.jsonl"), &good).unwrap();
    let missing = dir.path().join("market_data_2026-01-04.jsonl");
    for cmd in [&["analyze"][..], &["verify"][..]] {
        let mut args = cmd.to_vec();
        args.extend([s(&fifo), s(&missing), s(&good)]);
        let out = tickcap(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not a regular file"), "{cmd:?}: {err}");
        assert!(
            err.contains("market_data_2026-01-04.jsonl: No such file"),
            "{cmd:?}: {err}"
        );
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("ticks"),
            "{cmd:?}: the good file is still read"
        );
    }
    std::fs::remove_file(&good).unwrap();
    let out = tickcap(&[
        "storage",
        "--data-dir",
        s(dir.path()),
        "--cleanup",
        "--keep-days",
        "30",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("is a directory") && err.contains("not a regular file"),
        "{err}"
    );
    assert!(!old.exists(), "the old regular file is cleaned up");
    assert!(
        dir.path().join("market_data_2020-01-01.jsonl").is_dir(),
        "the directory is not ours to delete"
    );
}

#[test]
fn a_recording_with_a_huge_line_reports_it_without_copying_it() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    std::fs::write(&rec, vec![b'x'; 1 << 20]).unwrap();
    let r = tickcap::replay::read_recordings(&[rec]).unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.bad.len(), 1);
    assert!(
        r.bad[0].reason.contains("1048576 bytes"),
        "{}",
        r.bad[0].reason
    );
}

#[test]
fn verify_without_a_report_shows_a_70_second_hole_and_claims_no_completeness() {
    use tickcap::kite::{Mode, Tick};
    let dir = tempfile::tempdir().unwrap();
    let mut fmt = tickcap::sink::LineFormatter::new(
        tickcap::time::ZoneFormatter::new("Asia/Kolkata").unwrap(),
    );
    let mut a = tickcap::replay::synthetic::Instrument::new(256_265 << 8 | 1, 1);
    let mut b = tickcap::replay::synthetic::Instrument::new(408_065, 1);
    let t0 = 1_764_046_523_000_000i64;
    let mut out = Vec::new();
    for sec in 0..200i64 {
        let at = t0 + sec * 1_000_000;
        let ta: Tick = a.next_tick(Mode::Quote, (at / 1_000_000) as u32);
        fmt.write_line(&mut out, &ta, at, 1);
        if !(50..120).contains(&sec) {
            let tb: Tick = b.next_tick(Mode::Quote, (at / 1_000_000) as u32);
            fmt.write_line(&mut out, &tb, at, 1);
        }
    }
    let file = dir.path().join("market_data_2025-11-25.jsonl");
    std::fs::write(&file, &out).unwrap();
    let run = tickcap(&["verify", s(&file)]);
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        !text.contains("complete\n") && !text.contains("capture is complete"),
        "{text}"
    );
    assert!(
        text.contains("gap: instrument 408065 silent for 71 s while connection 1 kept ticking"),
        "{text}"
    );
    assert!(text.contains("completeness cannot be proven"), "{text}");
    let run = tickcap(&["verify", "--json", s(&file)]);
    let v: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["complete"], Value::Null);
    assert_eq!(v["gaps"]["instruments"][0]["instrument_token"], 408_065);
}

/// `tickcap storage` counts a day once: its sidecar index (`NAME.idx`)
/// answers later runs while the file is unchanged; a grown file is counted
/// again, and `--recount` finds an index that lies.
#[test]
fn storage_keeps_a_sidecar_index_per_day_and_recounts_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let day = dir.path().join("market_data_2026-11-25.jsonl");
    std::fs::copy(data("market_data_2026-11-25.jsonl"), &day).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["storage", "--json", "--data-dir", s(dir.path())];
        args.extend_from_slice(extra);
        let out = tickcap(&args);
        assert!(out.status.success());
        (
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (first, _) = run(&[]);
    let idx = dir.path().join("market_data_2026-11-25.jsonl.idx");
    assert!(idx.exists(), "the index is written");
    let ticks = first["files"][0]["ticks"].as_u64().unwrap();
    let (second, _) = run(&[]);
    assert_eq!(first, second);
    // An index that lies (same size and time): trusted until --recount.
    let text = std::fs::read_to_string(&idx).unwrap();
    let lie = text.replace(&format!("\"ticks\":{ticks}"), "\"ticks\":1");
    assert_ne!(lie, text);
    std::fs::write(&idx, lie).unwrap();
    let (third, _) = run(&[]);
    assert_eq!(third["files"][0]["ticks"], 1);
    let (fourth, err) = run(&["--recount"]);
    assert_eq!(fourth["files"][0]["ticks"].as_u64(), Some(ticks));
    assert!(err.contains("index corrected"), "{err}");
    // A grown file is counted again.
    let bytes = std::fs::read(&day).unwrap();
    let line = bytes.split(|b| *b == b'\n').next().unwrap().to_vec();
    let mut f = std::fs::OpenOptions::new().append(true).open(&day).unwrap();
    std::io::Write::write_all(&mut f, &[&line[..], b"\n"].concat()).unwrap();
    drop(f);
    let (fifth, _) = run(&[]);
    let size = std::fs::metadata(&day).unwrap().len();
    assert_eq!(fifth["files"][0]["bytes"].as_u64(), Some(size), "{fifth}");
    assert_ne!(
        fifth["files"][0]["bytes"], fourth["files"][0]["bytes"],
        "counted again"
    );
}

/// A `.zst` day with a frame cut short in the middle (a torn write, then
/// more frames): the tools report the corrupt bytes and read every whole
/// frame after them, instead of stopping there.
#[test]
fn a_torn_frame_in_the_middle_of_a_zst_day_is_skipped_and_the_rest_read() {
    use tickcap::kite::{PacketKind, Tick};
    let dir = tempfile::tempdir().unwrap();
    let mut fmt = tickcap::sink::LineFormatter::new(
        tickcap::time::ZoneFormatter::new("Asia/Kolkata").unwrap(),
    );
    let mut z = tickcap::zst::FrameWriter::new(3).unwrap();
    let mut frames = Vec::new();
    for f in 0..3u32 {
        let mut text = Vec::new();
        for i in 0..100u32 {
            let mut t = Tick::new(PacketKind::Quote, 256 * (i % 7 + 1) + 1);
            t.last_price = 100_000 + i;
            t.volume_traded = f * 100 + i + 1;
            fmt.write_line(
                &mut text,
                &t,
                1_764_046_523_000_000 + i64::from(f * 100 + i),
                1,
            );
        }
        frames.push(z.frame(&text).unwrap().to_vec());
    }
    let mut bytes = frames[0].clone();
    bytes.extend_from_slice(&frames[1][..frames[1].len() / 2]);
    bytes.extend_from_slice(&frames[2]);
    let day = dir.path().join("market_data_2025-11-25.jsonl.zst");
    std::fs::write(&day, &bytes).unwrap();
    let out = tickcap(&["verify", "--json", s(&day)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["ticks"], 200,
        "the frames before and after the torn one: {v}"
    );
    assert_eq!(v["bad_lines"], 1, "{v}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no whole zstd frame"), "{err}");
    let a = tickcap(&["analyze", "--json", s(&day)]);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(v["overall"]["total_ticks"], 200, "{v}");
}
