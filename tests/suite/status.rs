//! The status and control port against a running engine fed by the replay
//! feed: every endpoint, a table of bad requests, control calls that change
//! what is captured, reload, bearer auth, `tickcap status` and `doctor`.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{halt_and_receive_all, read_capture, wait_until};
use serde_json::{json, Value};
use tickcap::config::{Config, Env};
use tickcap::engine::{Engine, Options, Stats};
use tickcap::replay::Server;
use tickcap::status::client;

fn feed(rate: u64, key: Option<&str>) -> Server {
    common::synthetic_feed(rate, |c| {
        if let Some(k) = key {
            c.api_key = Some("k".into());
            c.access_token = Some(k.into());
        }
    })
}

fn config_text(url: &str, dir: &Path, token: &str, primary: &[u32], extra: &str) -> String {
    let p: Vec<String> = primary.iter().map(u32::to_string).collect();
    format!(
        "[kite]\nurl = {url:?}\napi_key = \"k\"\naccess_token = {token:?}\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [{}]\n[secondary]\ninstruments = [2562]\n\
         [engine]\nreconnect_max_ms = 400\n{extra}",
        dir.join("data").display().to_string(),
        p.join(", ")
    )
}

fn start(text: &str, path: Option<&Path>) -> (Engine, String) {
    let cfg = Config::parse(text, Path::new("t.toml"), &Env::default()).unwrap();
    let opts = Options {
        config_path: path.map(Path::to_path_buf),
        ..Options::default()
    };
    let engine = Engine::start(cfg, opts).unwrap();
    let url = format!("http://{}", engine.status_addr().unwrap());
    (engine, url)
}

fn get(url: &str, path: &str) -> Value {
    let r = client::get(url, path).unwrap();
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap()
}

fn post(url: &str, path: &str, body: Value) -> (u16, Value) {
    let r = client::request(
        url,
        "POST",
        path,
        Some(body.to_string().as_bytes()),
        None,
        Duration::from_secs(3),
    )
    .unwrap();
    (r.status, r.json().unwrap_or(Value::Null))
}

fn raw(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(bytes).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn every_endpoint_reports_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let f = feed(2_000, None);
    let (engine, url) = start(
        &config_text(&f.url(), dir.path(), "t", &[256, 512, 256265], ""),
        None,
    );
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 500));
    assert!(
        wait_until(Duration::from_secs(5), || get(&url, "/health")
            ["ticks_per_second"]
            .as_f64()
            .is_some_and(|r| r > 0.0)),
        "one rate sample"
    );

    let h = get(&url, "/health");
    assert_eq!(h["status"], "healthy", "{h}");
    for k in [
        "timestamp",
        "uptime_seconds",
        "active_connections",
        "subscribed_instruments",
        "last_tick_time",
        "data_fresh",
        "ticks_per_second",
    ] {
        assert!(!h[k].is_null(), "health.{k}: {h}");
    }
    assert_eq!(h["active_connections"], 2);
    assert_eq!(h["subscribed_instruments"], 4);
    assert!(h["timestamp"].as_str().unwrap().ends_with("+05:30"));

    let c = get(&url, "/connections");
    let c1 = &c["connections"][0];
    for k in [
        "connection_id",
        "role",
        "mode",
        "state",
        "subscribed_instruments",
        "tick_count",
        "tick_rate",
        "last_tick_time",
        "seconds_since_last_tick",
        "reconnects",
        "capacity_remaining",
    ] {
        assert!(!c1[k].is_null(), "connections.{k}: {c1}");
    }
    assert_eq!(
        (
            c1["role"].as_str(),
            c1["state"].as_str(),
            c1["capacity_remaining"].as_u64()
        ),
        (Some("primary"), Some("open"), Some(2997))
    );
    assert_eq!(c["connections"][2]["state"], "idle");
    assert!(!c.to_string().contains("\"t\""), "no token in the output");

    // Per-instrument counts are published by the writer once a second.
    assert!(
        wait_until(Duration::from_secs(15), || get(&url, "/instruments")
            ["instruments"]
            .as_array()
            .is_some_and(|a| a
                .iter()
                .all(|x| x["tick_count"].as_u64() > Some(0)))),
        "{}",
        get(&url, "/instruments")
    );
    let i = get(&url, "/instruments");
    assert_eq!(i["total_unique_instruments"], 4);
    assert_eq!(i["history"][0]["action"], "config");
    assert!(i["instruments"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["tick_count"].as_u64().unwrap() > 0));
    assert_eq!(i["silent"].as_array().unwrap().len(), 0);

    let s = get(&url, "/storage");
    assert!(s["current_file"].as_str().unwrap().contains("market_data_"));
    assert!(s["lines_written_today"].as_u64().unwrap() > 500);
    assert_eq!(s["fsync_policy"], "interval");
    assert_eq!(s["write_errors"], 0);

    let m = get(&url, "/metrics");
    for k in ["p50", "p90", "p99", "p99_9", "max"] {
        assert!(m["latency"]["receive_to_ring_us"][k].is_number(), "{k}");
        assert!(m["latency"]["receive_to_written_us"][k].is_number(), "{k}");
    }
    assert!(
        m["ticks_per_second"].as_f64().unwrap() > 1000.0,
        "{}",
        m["ticks_per_second"]
    );
    assert_eq!(m["rings"].as_array().unwrap().len(), 3);

    let r = client::get(&url, "/metrics?format=prometheus").unwrap();
    let text = String::from_utf8(r.body).unwrap();
    for needle in [
        "# TYPE tickcap_ticks_received_total counter",
        "tickcap_ticks_received_total{connection=\"1\",role=\"primary\"}",
        "# TYPE tickcap_receive_to_written_seconds summary",
        "tickcap_receive_to_written_seconds{quantile=\"0.99\"}",
        "tickcap_receive_to_ring_seconds_count",
        "tickcap_connection_up{connection=\"1\",role=\"primary\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    // every sample line is `name{labels} number`
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let v = line.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "{line}");
    }
    let page = client::get(&url, "/").unwrap();
    assert!(String::from_utf8_lossy(&page.body).contains("<canvas id=\"chart\""));
    engine.stop().expect("a clean shutdown");
}

#[test]
fn bad_requests_get_4xx_and_capture_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let f = feed(2_000, None);
    let (engine, url) = start(
        &config_text(&f.url(), dir.path(), "t", &[256, 512], ""),
        None,
    );
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 100));
    // a half-open client that sends half a request and waits
    let mut slow = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let table: Vec<(&[u8], &str)> = vec![
        (b"\x16\x03\x01garbage\r\n\r\n", "400"),
        (b"GET /nope HTTP/1.1\r\n\r\n", "404"),
        (b"DELETE /health HTTP/1.1\r\n\r\n", "405"),
        (b"GET /subscribe HTTP/1.1\r\n\r\n", "405"),
        (
            b"POST /subscribe HTTP/1.1\r\nContent-Length: 9999999\r\n\r\n",
            "413",
        ),
        (
            b"POST /subscribe HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{nope",
            "400",
        ),
        (
            b"POST /subscribe HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]",
            "400",
        ),
        (b"GET /metrics?format=xml HTTP/1.1\r\n\r\n", "400"),
        (
            b"POST /subscribe HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400",
        ),
    ];
    for (req, code) in &table {
        let resp = raw(&url, req);
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {code}")),
            "{}: {resp}",
            String::from_utf8_lossy(req)
        );
        assert!(resp.contains("\"error\""), "{resp}");
    }
    let huge = format!(
        "GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert!(raw(&url, huge.as_bytes()).starts_with("HTTP/1.1 431"));
    // control-call validation: each rejected request changes nothing
    for (body, code) in [
        (json!({"tokens": [1, "x"]}), 400),
        (json!({"tokens": []}), 400),
        (json!({"tokens": [7681], "mode": "fast"}), 400),
        (json!({"tokens": [7681], "connection_id": 4}), 400),
        (json!({"tokens": [256], "connection_id": 2}), 409),
        (json!({"tokens": [7681], "bogus": 1}), 400),
    ] {
        let (status, v) = post(&url, "/subscribe", body.clone());
        assert_eq!(status, code, "{body}: {v}");
    }
    let (status, v) = post(&url, "/unsubscribe", json!({"tokens": [999_999]}));
    assert_eq!((status, &v["tokens"]), (404, &json!([999_999])));
    let (status, _) = post(&url, "/mode", json!({"tokens": [256]}));
    assert_eq!(status, 400);
    let many: Vec<u32> = (1..=2999).map(|i| (i + 10_000) << 8 | 1).collect();
    let (status, v) = post(
        &url,
        "/subscribe",
        json!({"tokens": many, "connection_id": 1}),
    );
    assert_eq!(status, 409, "over capacity names the connection: {v}");
    assert_eq!(v["connection_id"], 1);
    assert_eq!(get(&url, "/health")["subscribed_instruments"], 3);
    // keep-alive: two requests on one connection
    let two = raw(
        &url,
        b"GET /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(two.matches("HTTP/1.1 200").count(), 2);
    // the slow client did not stall anything
    assert_eq!(get(&url, "/health")["status"], "healthy");
    drop(slow);
    halt_and_receive_all(&f, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    assert_eq!(
        read_capture(&dir.path().join("data")).lines as u64,
        f.stop().sent
    );
}

#[test]
fn control_calls_change_what_is_captured() {
    let dir = tempfile::tempdir().unwrap();
    let f = feed(3_000, None);
    let (engine, url) = start(
        &config_text(&f.url(), dir.path(), "t", &[256, 512], ""),
        None,
    );
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 100));
    let (status, v) = post(
        &url,
        "/subscribe",
        json!({"tokens": [7937, 256265], "mode": "full", "connection_id": 2}),
    );
    assert_eq!(status, 200, "{v}");
    let (status, _) = post(&url, "/unsubscribe", json!({"tokens": [512]}));
    assert_eq!(status, 200);
    let (status, _) = post(&url, "/mode", json!({"tokens": [256], "mode": "ltp"}));
    assert_eq!(status, 200);
    // Capture goes on for a while after the changes (1500 ticks at 3000/s).
    let after = stats.ticks_received();
    assert!(wait_until(Duration::from_secs(10), || stats
        .ticks_received()
        > after + 1500));
    let hist = get(&url, "/instruments")["history"].clone();
    let actions: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["config", "config", "subscribe", "unsubscribe", "mode"]
    );
    halt_and_receive_all(&f, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    let sent = f.stop().sent;
    let cap = read_capture(&dir.path().join("data"));
    assert_eq!(cap.lines as u64, sent);
    cap.assert_matches_synthetic(1);
    let last = |t: u32| cap.by_token[&t].last().unwrap().tick;
    assert_eq!(
        last(7937).kind,
        tickcap::kite::PacketKind::Full,
        "new instrument in full mode"
    );
    assert_eq!(last(256265).kind, tickcap::kite::PacketKind::IndexFull);
    assert_eq!(cap.conn_ids[&7937].last(), Some(&2));
    assert_eq!(last(256).kind, tickcap::kite::PacketKind::Ltp);
    // 512 stopped: its last tick is well before the end
    let end = cap
        .by_token
        .values()
        .map(|r| r.last().unwrap().at_micros)
        .max()
        .unwrap();
    assert!(end - cap.by_token[&512].last().unwrap().at_micros > 300_000);
}

#[test]
fn reload_swaps_the_token_and_the_instruments_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let f = feed(2_000, Some("new-token"));
    let path = dir.path().join("tickcap.toml");
    std::fs::write(
        &path,
        config_text(&f.url(), dir.path(), "old-token", &[256, 512], ""),
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let (engine, url) = start(&text, Some(&path));
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(5), || stats.conns[0]
        .auth_failures
        .load(std::sync::atomic::Ordering::Relaxed)
        >= 1));
    assert_eq!(get(&url, "/health")["status"], "down");
    // a bad config is rejected and the running one kept
    std::fs::write(&path, "[primary]\ninstruments = [\"x\"]\n").unwrap();
    let (status, v) = post(&url, "/reload", json!({}));
    assert_eq!(status, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("instruments"));
    // the new token and a changed list
    std::fs::write(
        &path,
        config_text(&f.url(), dir.path(), "new-token", &[256, 768], ""),
    )
    .unwrap();
    let (status, v) = post(&url, "/reload", json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["reloaded"]["subscribed"][0], 1);
    assert_eq!(v["reloaded"]["unsubscribed"][0], 1);
    assert!(
        wait_until(Duration::from_secs(10), || stats.lines_written() > 500),
        "never connected with the new token"
    );
    // and again while ticks flow: 1024 in, 256 out
    std::fs::write(
        &path,
        config_text(&f.url(), dir.path(), "new-token", &[768, 1024], ""),
    )
    .unwrap();
    let (status, _) = post(&url, "/reload", json!({}));
    assert_eq!(status, 200);
    let after = stats.ticks_received();
    assert!(wait_until(Duration::from_secs(10), || stats
        .ticks_received()
        > after + 1000));
    halt_and_receive_all(&f, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    let sent = f.stop().sent;
    let cap = read_capture(&dir.path().join("data"));
    assert_eq!(cap.lines as u64, sent, "nothing lost across reloads");
    cap.assert_matches_synthetic(1);
    assert!(
        !cap.by_token.contains_key(&512),
        "512 was removed before the token worked"
    );
    assert!(cap.by_token.contains_key(&1024));
}

#[test]
fn control_calls_need_the_bearer_token_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let f = feed(500, None);
    let text = config_text(&f.url(), dir.path(), "t", &[256], "").replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"0.0.0.0:0\"\ntoken = \"status-secret\"",
    );
    let (engine, url) = start(&text, None);
    let url = url.replace("0.0.0.0", "127.0.0.1");
    let body = json!({"tokens": [7681]}).to_string();
    let subscribe_as = |bearer: Option<&str>| {
        client::request(
            &url,
            "POST",
            "/subscribe",
            Some(body.as_bytes()),
            bearer,
            Duration::from_secs(3),
        )
        .unwrap()
        .status
    };
    assert_eq!(subscribe_as(None), 401);
    assert_eq!(subscribe_as(Some("wrong")), 401);
    assert_eq!(subscribe_as(Some("status-secret")), 200);
    assert_eq!(
        client::get(&url, "/health").unwrap().status,
        200,
        "reads stay open"
    );
    engine.stop().expect("a clean shutdown");
}

#[test]
fn polling_metrics_a_thousand_times_a_second_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = feed(20_000, None);
    let (engine, url) = start(
        &config_text(&f.url(), dir.path(), "t", &[256, 512, 768], ""),
        None,
    );
    let stats = Arc::clone(engine.stats());
    let poller = {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut n = 0u32;
            let start = std::time::Instant::now();
            while n < 2000 {
                assert_eq!(client::get(&url, "/metrics").unwrap().status, 200);
                n += 1;
                let due = start + Duration::from_millis(u64::from(n));
                std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
            }
            n
        })
    };
    let polls = poller.join().unwrap();
    assert_eq!(polls, 2000);
    halt_and_receive_all(&f, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    let sent = f.stop().sent;
    assert_eq!(stats.lines_written(), sent);
    assert_eq!(
        Stats::histogram(&stats.latency.receive_to_written_us).len(),
        sent
    );
}

#[test]
fn status_and_doctor_commands_against_a_running_and_a_stopped_service() {
    let dir = tempfile::tempdir().unwrap();
    let f = feed(1_000, None);
    let (engine, url) = start(&config_text(&f.url(), dir.path(), "t", &[256], ""), None);
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 10));
    let bin = env!("CARGO_BIN_EXE_tickcap");
    let out = Command::new(bin)
        .args(["status", "--once", "--url", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("HEALTHY") || text.contains("DEGRADED"),
        "{text}"
    );
    assert!(text.contains("primary"), "{text}");
    let out = Command::new(bin)
        .args(["status", "--json", "--url", &url])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["status"].is_string());
    // doctor with the config the service runs
    let cfg = dir.path().join("t.toml");
    let port = url.rsplit(':').next().unwrap();
    std::fs::write(
        &cfg,
        config_text(&f.url(), dir.path(), "t", &[256], "")
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let out = Command::new(bin)
        .args(["doctor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("in use by the running service"), "{text}");
    assert!(text.contains(&format!("service at {url}")), "{text}");
    // `status --config` finds the service from the config's [status] listen.
    let out = Command::new(bin)
        .args(["status", "--once", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    engine.stop().expect("a clean shutdown");
    let out = Command::new(bin)
        .args(["doctor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no service answers"), "{text}");
    assert!(
        text.contains("reachable; WebSocket upgrade accepted"),
        "without a service doctor checks the endpoint itself: {text}"
    );
    let out = Command::new(bin)
        .args(["status", "--once", "--url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "unreachable service");
}

#[test]
fn doctor_names_a_refused_token_as_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let f = feed(100, Some("good"));
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        config_text(&f.url(), dir.path(), "expired", &[256], ""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["doctor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("refused with HTTP 403") && text.contains("expired"),
        "{text}"
    );
}

#[test]
fn a_login_in_the_morning_reaches_the_running_service_without_a_restart_or_a_reload_call() {
    let dir = tempfile::tempdir().unwrap();
    // Kite's REST API (the token exchange) and its ticker, which accepts
    // only the new day's token, as Kite does after 06:00.
    let rest = common::kite_stand_in("s3cret", 1);
    let f = feed(2_000, Some("access-for-RT-MORNING"));
    let token_file = dir.path().join("access_token");
    std::fs::write(&token_file, "yesterdays-token\n").unwrap();
    let path = dir.path().join("tickcap.toml");
    let text = config_text(&f.url(), dir.path(), "unused", &[256, 512], "").replace(
        "access_token = \"unused\"",
        &format!(
            "access_token_file = \"access_token\"\napi_secret = \"s3cret\"\napi_root = {rest:?}\ninstruments_dump = false"
        ),
    );
    std::fs::write(&path, &text).unwrap();
    let cfg = Config::parse(&text, &path, &Env::default()).unwrap();
    assert_eq!(cfg.connections[0].access_token.expose(), "yesterdays-token");
    let engine = Engine::start(
        cfg,
        Options {
            config_path: Some(path.clone()),
            ..Options::default()
        },
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats.conns[0]
        .auth_failures
        .load(std::sync::atomic::Ordering::Relaxed)
        >= 1));
    let url = format!("http://{}", engine.status_addr().unwrap());
    assert!(
        wait_until(Duration::from_secs(10), || get(&url, "/health")["reasons"]
            .to_string()
            .contains("access token rejected (expired?): run `tickcap login`")),
        "{}",
        get(&url, "/health")
    );
    let loaded_before = get(&url, "/health")["credentials_loaded_at"].clone();
    assert!(loaded_before.is_string(), "{loaded_before}");
    // The user logs in: the real `tickcap login` exchanges the request
    // token and writes the token file (atomically).
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args([
            "login",
            "--no-browser",
            "--request-token",
            "RT-MORNING",
            "--config",
        ])
        .arg(&path)
        .env_remove("KITE_API_KEY")
        .env_remove("KITE_API_SECRET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(10), || stats.lines_written() > 500),
        "never captured with the new token: {} {} token file {:?}",
        get(&url, "/health"),
        get(&url, "/connections"),
        std::fs::read_to_string(dir.path().join("access_token"))
    );
    assert_ne!(
        get(&url, "/health")["credentials_loaded_at"],
        loaded_before,
        "/health shows when the new token was loaded"
    );
    halt_and_receive_all(&f, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    let cap = read_capture(&dir.path().join("data"));
    assert_eq!(
        cap.lines as u64,
        f.stop().sent,
        "nothing lost across the token change"
    );
}

/// A web page in the trader's browser must not change or read what is
/// captured: a `text/plain` POST (no preflight), a cross-site `Origin`, and
/// a DNS-rebinding `Host` are all refused; the real clients keep working.
#[test]
fn a_web_page_cannot_change_or_read_the_capture_through_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let f = feed(500, None);
    let (engine, url) = start(
        &config_text(&f.url(), dir.path(), "t", &[256, 512], ""),
        None,
    );
    let addr = url.trim_start_matches("http://").to_owned();
    let subscribed = get(&url, "/health")["subscribed_instruments"].clone();
    let body = r#"{"tokens":[512]}"#;
    let post = |headers: &str| {
        raw(
            &url,
            format!(
                "POST /unsubscribe HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    let attempts = [
        // fetch(..., {mode: 'no-cors', body}) from any page: text/plain, its Origin.
        (
            format!("Host: {addr}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\n"),
            "403",
        ),
        // The same without an Origin: the content type alone refuses it.
        (
            format!("Host: {addr}\r\nContent-Type: text/plain;charset=UTF-8\r\n"),
            "415",
        ),
        // JSON with a cross-site Origin (a preflight we never grant; refused anyway).
        (
            format!(
                "Host: {addr}\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\n"
            ),
            "403",
        ),
        // DNS rebinding: the page's own name resolving to 127.0.0.1.
        (
            "Host: evil.example:8080\r\nContent-Type: application/json\r\n".to_owned(),
            "403",
        ),
    ];
    for (headers, code) in &attempts {
        let reply = post(headers);
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {code}")),
            "{headers:?}: {reply}"
        );
    }
    // Reads under a rebinding host name are refused too.
    let reply = raw(
        &url,
        b"GET /instruments HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    // 512 is still captured; the page (same origin), tickcap status and curl work.
    assert_eq!(get(&url, "/health")["subscribed_instruments"], subscribed);
    let same = raw(
        &url,
        format!(
            "GET / HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            addr.rsplit(':').next().unwrap()
        )
        .as_bytes(),
    );
    assert!(same.starts_with("HTTP/1.1 200"), "{same}");
    let reply = post(&format!(
        "Host: {addr}\r\nOrigin: http://{addr}\r\nContent-Type: application/json\r\n"
    ));
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "same-origin JSON is the user's: {reply}"
    );
    let (status, _) = post_json(&url, "/subscribe", json!({"tokens": [512]}));
    assert_eq!(status, 200);
    f.halt();
    engine.stop().expect("a clean shutdown");
}

fn post_json(url: &str, path: &str, body: Value) -> (u16, Value) {
    post(url, path, body)
}

/// Beside a service holding all three of the key's connections, `doctor`
/// asks the service instead of opening a fourth socket (Kite: 429).
#[test]
fn doctor_beside_a_three_connection_service_passes() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::synthetic_feed(500, |c| c.max_connections_per_key = 3);
    let port = common::free_port();
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\n\
         [status]\nlisten = \"127.0.0.1:{port}\"\n[primary]\ninstruments = [256]\n[secondary]\ninstruments = [512]\n\
         [tertiary]\ninstruments = [768]\n",
        f.url(),
        dir.path().join("data").display().to_string()
    );
    let cfg = dir.path().join("t.toml");
    std::fs::write(&cfg, &text).unwrap();
    let (engine, url) = start(&text, None);
    assert!(wait_until(Duration::from_secs(10), || {
        get(&url, "/health")["active_connections"] == 3
    }));
    let bin = env!("CARGO_BIN_EXE_tickcap");
    let out = Command::new(bin)
        .args(["doctor", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("in use by the running service"), "{stdout}");
    assert!(
        !stdout.contains("HTTP 429") && !stdout.contains("FAIL"),
        "{stdout}"
    );
    f.halt();
    engine.stop().expect("a clean shutdown");
}
