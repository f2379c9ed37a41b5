//! `tickcap run` as a process: SIGTERM in mid-stream drains every received
//! tick to disk and exits 0 within 2 s; configuration errors exit 2 naming
//! the key.

use crate::common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::read_capture;

fn write_config(dir: &std::path::Path, url: &str, extra: &str) -> std::path::PathBuf {
    let data = dir.join("data");
    let text = format!(
        "[kite]\nurl = {url:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {data:?}\n[status]\nlisten = \"127.0.0.1:0\"\n\
         [primary]\ninstruments = [256, 512, 768, 1024, 256265]\n[secondary]\ninstruments = [1281]\n{extra}",
        data = data.display().to_string()
    );
    let path = dir.join("tickcap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn sigterm_mid_stream_drains_everything_and_exits_0_within_2s() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(20_000, |_| {});
    let cfg = write_config(dir.path(), &feed.url(), "");
    #[allow(clippy::zombie_processes)] // waited for below, killed and reaped on timeout
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data = dir.path().join("data");
    assert!(
        common::wait_until(Duration::from_secs(10), || feed.report().sent > 20_000),
        "no data flowing"
    );
    let t0 = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let mut status = None;
    while t0.elapsed() < Duration::from_secs(5) {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = t0.elapsed();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("still running 5 s after SIGTERM");
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status:?}\n{err}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // "stopped in X ms: N ticks received, all written"
    let line = err
        .lines()
        .find(|l| l.contains("ticks received, all written"))
        .unwrap_or_else(|| panic!("{err}"));
    let n: usize = line
        .split(": ")
        .last()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 20_000 / 2);
    let cap = read_capture(&data);
    assert_eq!(cap.lines, n);
    assert_eq!(cap.assert_matches_synthetic(1), n);
    assert!(
        !err.contains("\"t\""),
        "the access token leaked into the log"
    );
}

#[test]
fn configuration_errors_exit_2_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, needle) in [
        ("[storage.extra]\n", "extra"),
        ("[engine]\nringcapacity = 5\n", "ringcapacity"),
        ("[tertiary]\nmode = \"fastest\"\n", "tertiary.mode"),
    ] {
        let cfg = write_config(dir.path(), "ws://127.0.0.1:9", extra);
        let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle) && err.contains("tickcap.toml"),
            "{needle}: {err}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["run", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

#[test]
fn demo_runs_captures_and_reports_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("md");
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args([
            "demo",
            "--duration",
            "2",
            "--rate",
            "3000",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(lossless)"), "{stdout}");
    let cap = read_capture(&data);
    assert!(cap.lines > 3000, "{}", cap.lines);
    cap.assert_matches_synthetic(1);
    // the storage and analysis tools on a real capture
    let file = std::fs::read_dir(&data)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bin = env!("CARGO_BIN_EXE_tickcap");
    let verify = Command::new(bin)
        .args(["verify", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let analyze = Command::new(bin)
        .args(["analyze", "--json", file.to_str().unwrap()])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&analyze.stdout).unwrap();
    assert_eq!(v["overall"]["total_ticks"].as_u64(), Some(cap.lines as u64));
    assert_eq!(v["overall"]["unique_instruments"], 15);
    let storage = Command::new(bin)
        .args(["storage", "--json", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&storage.stdout).unwrap();
    assert_eq!(v["total_ticks"].as_u64(), Some(cap.lines as u64));
}

#[test]
fn an_unusable_data_dir_is_a_configuration_error_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let cfg = dir.path().join("tickcap.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\ndata_dir = {:?}\n[status]\nlisten = \"127.0.0.1:0\"\n",
            not_a_dir.join("sub").display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("storage.data_dir"), "{err}");
    assert_eq!(
        err.matches("Not a directory").count(),
        1,
        "the OS error once: {err}"
    );
}

#[test]
fn a_closed_output_pipe_ends_a_command_quietly() {
    use std::io::Read;
    // decode writes far more than a pipe holds; the reader takes one byte and leaves.
    let dir = tempfile::tempdir().unwrap();
    let mut msg = Vec::new();
    let ticks: Vec<tickcap::kite::Tick> = (0..2000)
        .map(|i| tickcap::kite::Tick::new(tickcap::kite::PacketKind::Quote, (i << 8) | 1))
        .collect();
    tickcap::kite::encode_message(&ticks, &mut msg);
    let mut files = Vec::new();
    for i in 0..20 {
        let p = dir.path().join(format!("m{i}.bin"));
        std::fs::write(&p, &msg).unwrap();
        files.push(p);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .arg("decode")
        .args(&files)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut one = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut one).unwrap();
    // stdout is dropped here: the pipe's reader is gone.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn one_error_is_not_repeated_inside_itself() {
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["run", "--config", "/nonexistent/tickcap.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// What used to fail only at run time is refused at load, naming the key.
#[test]
fn a_malformed_url_and_an_unknown_kafka_property_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_tickcap");
    let cases: Vec<(String, &str)> = vec![
        (
            "[kite]\nurl = \"ws://[::1\"\napi_key = \"k\"\naccess_token = \"t\"\n[primary]\ninstruments = [256]\n".to_owned(),
            "kite.url",
        ),
        #[cfg(feature = "kafka")]
        (
            "[kite]\nurl = \"ws://127.0.0.1:1\"\napi_key = \"k\"\naccess_token = \"t\"\n[primary]\ninstruments = [256]\n\
             [kafka]\nbrokers = \"127.0.0.1:1\"\ntopic = \"t\"\n[kafka.properties]\n\"linger.mss\" = 5\n"
                .to_owned(),
            "linger.mss",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        let data = dir.path().join(format!("d{i}"));
        std::fs::write(
            &path,
            format!(
                "{text}[storage]\ndata_dir = {:?}\n[status]\nlisten = \"127.0.0.1:0\"\n",
                data.display().to_string()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(bin)
            .args(["run", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{want}: {err}");
        assert!(err.contains(want), "{want}: {err}");
    }
}
