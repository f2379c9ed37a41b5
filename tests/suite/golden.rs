//! Golden files: raw Kite binary messages and the JSONL the official Python
//! client decodes from them (`tools/golden.py` regenerates `golden/`;
//! `kite/` are Zerodha's published packets). `tickcap decode` must print
//! exactly those bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn messages(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no messages in {}", dir.display());
    v
}

fn decode(args: &[&str], file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .arg("decode")
        .args(args)
        .arg(file)
        .output()
        .unwrap()
}

fn assert_golden(dir: &str) {
    for bin in messages(dir) {
        let expected = std::fs::read_to_string(bin.with_extension("expected.jsonl")).unwrap();
        let out = decode(&[], &bin);
        assert!(
            out.status.success(),
            "{}: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).unwrap();
        for (i, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
            assert_eq!(g, e, "{} line {}", bin.display(), i + 1);
        }
        assert_eq!(
            got.lines().count(),
            expected.lines().count(),
            "{}",
            bin.display()
        );
    }
}

#[test]
fn zerodha_published_packets_decode_as_the_official_client() {
    assert_golden("kite");
}

#[test]
fn generated_packets_of_every_kind_and_segment_decode_as_the_official_client() {
    assert_golden("golden");
}

#[test]
fn with_meta_adds_timestamp_and_connection_id_last() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kite/ticker_quote.bin");
    let out = decode(&["--with-meta", "--connection-id", "2"], &bin);
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys[keys.len() - 2..],
        ["timestamp".to_owned(), "connection_id".to_owned()]
    );
    assert_eq!(v["connection_id"], 2);
    let ts = v["timestamp"].as_str().unwrap();
    assert!(
        ts.ends_with("+05:30") && ts.len() == "2026-11-24T09:15:23.123456+05:30".len(),
        "{ts}"
    );
}

#[test]
fn malformed_message_reports_the_packet_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.bin");
    // two packets announced: one of an unknown length (3 bytes), one LTP
    std::fs::write(
        &f,
        [0, 2, 0, 3, 1, 2, 3, 0, 8, 0, 6, 0x3a, 1, 0, 2, 0x66, 0x83],
    )
    .unwrap();
    let out = decode(&[], &f);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("packet 0 has length 3"));
    // the good packet after it is still printed
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"last_price\":1573.15"));
}

#[test]
fn unknown_zone_and_missing_file_are_errors() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kite/heartbeat.bin");
    let out = decode(&["--timezone", "Nowhere/City"], &bin);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nowhere/City"));
    let out = decode(&[], Path::new("/nonexistent/x.bin"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.bin"));
}
