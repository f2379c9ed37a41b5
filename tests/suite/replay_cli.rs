//! `tickcap replay` as a process: it prints where it listens, serves, and
//! on SIGTERM or `--duration` prints the contract's report line.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Client;

fn spawn(extra: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["replay", "--listen", "127.0.0.1:0", "--synthetic"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on ") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "replay exited before listening"
        );
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    (child, url)
}

fn report(child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn sigterm_ends_the_feed_with_the_report_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.json");
    let (child, url) = spawn(&["--rate", "2000", "--report", file.to_str().unwrap()]);
    let mut c = Client::connect(&url);
    c.subscribe(&[408_065, 256_265]);
    let got = c.receive_ticks(500, Duration::from_secs(5));
    assert!(got.ticks.len() >= 500);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let r = report(child);
    for key in [
        "sent",
        "per_connection",
        "per_mode",
        "last_volume",
        "faults",
        "elapsed_s",
        "rate",
    ] {
        assert!(r.get(key).is_some(), "missing {key} in {r}");
    }
    assert!(r["sent"].as_u64().unwrap() >= got.ticks.len() as u64);
    assert_eq!(r["per_connection"]["1"], r["sent"]);
    assert_eq!(r["per_mode"]["quote"], r["sent"]);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved, r);
}

#[test]
fn count_stops_emission_and_duration_ends_the_process() {
    // --duration counts from the start of the process: leave a loaded
    // machine time to connect before it ends (1.5 s once was not enough).
    let (child, url) = spawn(&["--rate", "0", "--count", "1000", "--duration", "3"]);
    let mut c = Client::connect(&url);
    c.subscribe(&[408_065]);
    let got = c.receive(Duration::from_millis(1200));
    assert_eq!(got.ticks.len(), 1000);
    assert!(got.heartbeats >= 1, "heartbeats go on after --count");
    let r = report(child);
    assert_eq!(r["sent"], 1000);
    assert_eq!(r["last_volume"]["408065"], 1000);
}

#[test]
fn bad_arguments_exit_2_naming_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args([
            "replay",
            "--listen",
            "127.0.0.1:0",
            "--synthetic",
            "--drop-every",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--drop-every"));
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["replay", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a source is required");
}
