//! Compressed capture (`[storage] compression = "zstd"`): a frame per write,
//! readable by any zstd reader; kill -9 leaves at most a torn last frame,
//! moved aside at the next start; and every tool gives the same answers on
//! `.jsonl.zst` as on the same lines in plain `.jsonl`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::wait_until;

fn write_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let data = dir.join("data");
    let text = format!(
        "[kite]\nurl = {url:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {data:?}\nfsync = \"batch\"\n\
         flush_interval_ms = 10\ncompression = \"zstd\"\n{extra}[status]\nlisten = \"127.0.0.1:0\"\n\
         [primary]\ninstruments = [256, 512, 768, 1024, 256265]\n[secondary]\ninstruments = [1281, 2562]\n",
        data = data.display().to_string()
    );
    let path = dir.join("tickcap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn zst_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    // The tick files (the events journal beside them is zstd too).
    v.retain(|p| {
        p.to_string_lossy().ends_with(".jsonl.zst")
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("market_data_"))
    });
    v.sort();
    v
}

/// Every complete frame decodes and every line in it is a tick line.
fn frames_decode(path: &Path) -> (usize, usize, Option<usize>) {
    let bytes = std::fs::read(path).unwrap();
    let f = tickcap::zst::frames(&bytes);
    let mut lines = 0;
    let mut buf = Vec::new();
    for r in &f.frames {
        tickcap::zst::decompress_frame(&bytes[r.clone()], &mut buf)
            .expect("a complete frame decodes");
        assert_eq!(buf.last(), Some(&b'\n'), "a frame holds whole lines");
        for l in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(l).expect("a line parses");
            assert!(v["instrument_token"].is_u64() && v["timestamp"].is_string());
            lines += 1;
        }
    }
    (f.frames.len(), lines, f.torn_at)
}

fn tickcap(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn kill_9_with_zstd_leaves_only_complete_frames_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Order updates too: all three of the day's files are under load.
    let feed = common::synthetic_feed(50_000, |c| {
        c.faults.order_every = Some(Duration::from_millis(5));
    });
    let cfg = write_config(dir.path(), &feed.url(), "");
    let data = dir.path().join("data");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tickcap"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = run();
    let size = || {
        zst_files(&data)
            .first()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    };
    // Killed once at least two whole frames are on disk (under load the
    // writer writes less often, in bigger frames).
    let whole_frames = || {
        zst_files(&data).first().map_or(0, |p| {
            tickcap::zst::frames(&std::fs::read(p).unwrap_or_default())
                .frames
                .len()
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), || size() > 200_000
            && whole_frames() >= 2),
        "no compressed data"
    );
    child.kill().unwrap(); // SIGKILL, mid-stream
    child.wait().unwrap();
    let file = zst_files(&data).remove(0);
    let (frames, lines, _torn) = frames_decode(&file);
    assert!(
        frames >= 2 && lines > 1000,
        "{frames} frames, {lines} lines"
    );
    // Restart: a torn last frame (if the kill cut one) is moved aside, and
    // appending continues with new frames.
    let mut child = run();
    let before = std::fs::metadata(&file).unwrap().len();
    assert!(wait_until(Duration::from_secs(20), || size() > before + 100_000));
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
    let (_, after_lines, torn) = frames_decode(&file);
    assert_eq!(torn, None, "no torn frame after a clean stop");
    assert!(after_lines > lines);
    // The whole file is what `zstd -d` and Python's zstandard read.
    let all = zstd::decode_all(std::fs::File::open(&file).unwrap()).unwrap();
    assert_eq!(all.iter().filter(|&&b| b == b'\n').count(), after_lines);
    // verify agrees: every line well formed; the kill is a gap in
    // coverage, with its cause.
    let (ok, out, err) = tickcap(&["verify", file.to_str().unwrap()]);
    assert!(!ok, "{out}{err}");
    assert!(out.contains(" 0 bad line(s)"), "{out}{err}");
    assert!(out.contains("coverage: INCOMPLETE"), "{out}");
    assert!(out.contains("tickcap was not running"), "{out}");
    // The journal and the orders file: whole frames, every line JSON, two
    // runs (the first without a stop record), each order once.
    for family in [tickcap::days::Family::Events, tickcap::days::Family::Orders] {
        let segs = tickcap::days::segments_in(&data, family);
        assert!(!segs.is_empty(), "{family:?}");
        let mut ids = Vec::new();
        let mut starts = 0;
        for seg in segs {
            let bytes = std::fs::read(&seg.path).unwrap();
            assert_eq!(
                tickcap::zst::frames(&bytes).torn_at,
                None,
                "{}",
                seg.path.display()
            );
            let text = zstd::decode_all(&bytes[..]).unwrap();
            for line in String::from_utf8(text).unwrap().lines() {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                starts += usize::from(v["kind"] == "service_start");
                if let Some(id) = v["data"]["order_id"].as_str() {
                    ids.push(id.to_owned());
                }
            }
        }
        if family == tickcap::days::Family::Events {
            assert_eq!(starts, 2);
        } else {
            let n = ids.len();
            assert!(n > 10, "{n} orders");
            ids.sort();
            ids.dedup();
            // A restart meets the feed's numbering again from 1 (a new
            // session of the feed per connection): the same text within
            // a minute is one update, so none is kept twice.
            assert_eq!(ids.len(), n, "an order kept twice");
        }
    }
}

#[test]
fn the_tools_answer_the_same_on_zst_and_plain() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(20_000, |_| {});
    let cfg = write_config(dir.path(), &feed.url(), "zstd_level = 1\n");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let c = tickcap::config::Config::parse(&text, &cfg, &tickcap::config::Env::default()).unwrap();
    assert_eq!(c.storage.zstd_level, Some(1));
    // Noon in Kolkata on the receive clock: the capture is one day's file
    // whenever the test runs (a run across midnight would make two).
    let now = tickcap::engine::Clock::system().now_micros();
    let (day, ist) = (86_400_000_000i64, 19_800_000_000i64);
    let noon = (now + ist).div_euclid(day) * day + day / 2 - ist;
    let engine = tickcap::engine::Engine::start(
        c,
        tickcap::engine::Options {
            clock: tickcap::engine::Clock::shifted(noon - now),
            ..tickcap::engine::Options::default()
        },
    )
    .unwrap();
    let stats = std::sync::Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(20), || stats
        .lines_written()
        > 10_000));
    common::halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    let data = dir.path().join("data");
    let zst = zst_files(&data).remove(0);
    assert!(
        tickcap::zst::frames(&std::fs::read(&zst).unwrap())
            .frames
            .len()
            >= 2,
        "the file is several frames (one per write), as a real day's is"
    );
    // The same lines, plain, in a directory of their own.
    let plain_dir = dir.path().join("plain");
    std::fs::create_dir_all(&plain_dir).unwrap();
    let name = zst
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".zst")
        .to_owned();
    let plain = plain_dir.join(&name);
    std::fs::write(
        &plain,
        zstd::decode_all(std::fs::File::open(&zst).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&plain).unwrap().lines().count() as u64,
        feed.stop().sent,
        "lossless"
    );
    // The day's events journal goes along, plain too.
    for j in tickcap::days::segments_in(&data, tickcap::days::Family::Events) {
        let name = j
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".zst")
            .to_owned();
        std::fs::write(
            plain_dir.join(name),
            zstd::decode_all(std::fs::File::open(&j.path).unwrap()).unwrap(),
        )
        .unwrap();
    }
    // Where the journal was read from differs; nothing else may.
    fn unplace(v: &mut serde_json::Value) {
        if let Some(o) = v["overall"]["coverage"].as_object_mut() {
            o.remove("journals");
        }
        if let Some(o) = v["coverage"].as_object_mut() {
            o.remove("journals");
        }
    }
    let json = |args: &[&str]| -> serde_json::Value {
        let (ok, out, err) = tickcap(args);
        assert!(ok, "{args:?}: {err}");
        let mut v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        unplace(&mut v);
        v
    };
    // One thread each: a parallel mean sums in another order (last digits).
    let a = json(&["analyze", "--json", "--threads", "1", zst.to_str().unwrap()]);
    let b = json(&[
        "analyze",
        "--json",
        "--threads",
        "1",
        plain.to_str().unwrap(),
    ]);
    assert_eq!(a["overall"], b["overall"], "analyze");
    let v1 = tickcap(&["verify", "--json", zst.to_str().unwrap()]);
    let v2 = tickcap(&["verify", "--json", plain.to_str().unwrap()]);
    let strip = |s: &str| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
        if let Some(files) = v["files"].as_array_mut() {
            for f in files {
                f.as_object_mut().unwrap().remove("file");
            }
        }
        unplace(&mut v);
        v
    };
    assert_eq!(strip(&v1.1), strip(&v2.1), "verify");
    let s1 = json(&["storage", "--json", "--data-dir", data.to_str().unwrap()]);
    let s2 = json(&[
        "storage",
        "--json",
        "--data-dir",
        plain_dir.to_str().unwrap(),
    ]);
    for k in [
        "ticks",
        "lines",
        "first_timestamp",
        "last_timestamp",
        "date",
        "torn_last_line",
    ] {
        assert_eq!(s1["files"][0][k], s2["files"][0][k], "storage {k}");
    }
    assert!(s1["files"][0]["bytes"].as_u64() < s2["files"][0]["bytes"].as_u64().map(|b| b / 3));
    // Mixed days: a plain day and a compressed day read together.
    let mixed = json(&[
        "analyze",
        "--json",
        "--threads",
        "1",
        plain.to_str().unwrap(),
        zst.to_str().unwrap(),
    ]);
    assert_eq!(
        mixed["overall"]["total_ticks"].as_u64(),
        b["overall"]["total_ticks"].as_u64().map(|n| n * 2)
    );
    // The replay feed reads it back.
    let rec = tickcap::replay::read_recordings(std::slice::from_ref(&zst)).unwrap();
    assert!(rec.bad.is_empty());
    assert_eq!(
        rec.records.len() as u64,
        b["overall"]["total_ticks"].as_u64().unwrap()
    );
}
