//! The subscription ledger end to end: config, control calls, hub clients
//! and reloads change claims on the same instruments, in every order, and
//! never undo or double each other (tickcap against the replay feed, a
//! plain Kite client on the hub, the status port's control calls).

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{halt_and_receive_all, read_capture, wait_until, Client};
use serde_json::{json, Value};
use tickcap::engine::{Engine, Options};
use tickcap::replay::Server;
use tickcap::status::client;

const T: u32 = 1025;

struct Setup {
    engine: Engine,
    feed: Server,
    dir: tempfile::TempDir,
    path: PathBuf,
    status: String,
    hub: String,
}

fn config_text(feed: &Server, data: &Path, primary: &[u32], secondary: &[u32]) -> String {
    format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = {primary:?}\n[secondary]\ninstruments = {secondary:?}\n\
         [serve]\nlisten = \"127.0.0.1:0\"\n",
        feed.url(),
        data.display().to_string()
    )
}

fn setup(rate: u64, primary: &[u32], secondary: &[u32]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(rate, |_| {});
    let path = dir.path().join("tickcap.toml");
    let text = config_text(&feed, &dir.path().join("data"), primary, secondary);
    let engine = common::start_with_file(&path, &text, Options::default());
    let status = format!("http://{}", engine.status_addr().unwrap());
    let hub = format!("ws://{}", engine.serve_addr().unwrap());
    Setup {
        engine,
        feed,
        dir,
        path,
        status,
        hub,
    }
}

impl Setup {
    fn rewrite(&self, primary: &[u32], secondary: &[u32]) {
        let text = config_text(
            &self.feed,
            &self.dir.path().join("data"),
            primary,
            secondary,
        );
        std::fs::write(&self.path, text).unwrap();
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        common::post_json(&self.status, path, &body)
    }

    /// (connection id, mode, claims) of every upstream row for `token`.
    fn carriers(&self, token: u32) -> Vec<(u64, String, Vec<String>)> {
        let v = common::get_json(&self.status, "/instruments");
        v["instruments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["instrument_token"] == token)
            .map(|r| {
                let claims = r["claims"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|c| c["by"].as_str().unwrap_or("").to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    r["connection_id"].as_u64().unwrap(),
                    r["mode"].as_str().unwrap().to_owned(),
                    claims,
                )
            })
            .collect()
    }

    fn wait_carried(&self, token: u32, want: &[(u64, &[&str])]) {
        let ok = wait_until(Duration::from_secs(10), || {
            let got = self.carriers(token);
            got.len() == want.len()
                && got
                    .iter()
                    .zip(want)
                    .all(|((c, _, cl), (wc, wcl))| c == wc && cl == wcl)
        });
        assert!(
            ok,
            "token {token}: want {want:?}, carried {:?}",
            self.carriers(token)
        );
    }

    /// Stops the feed and the engine; the capture holds every tick sent,
    /// each instrument's sequence exactly once (no token carried twice).
    fn finish(self) -> common::Capture {
        let stats = Arc::clone(self.engine.stats());
        halt_and_receive_all(&self.feed, &stats, Duration::from_secs(10));
        self.engine.stop().expect("a clean shutdown");
        let sent = self.feed.stop().sent;
        let cap = read_capture(&self.dir.path().join("data"));
        assert_eq!(cap.lines as u64, sent, "every tick sent is in the file");
        cap.assert_matches_synthetic(1);
        cap
    }
}

/// The hub client's instrument is captured; waits for ticks of it.
fn client_holding(s: &Setup, token: u32) -> Client {
    let mut c = Client::connect(&s.hub);
    c.subscribe(&[token]);
    let r = c.receive_ticks(20, Duration::from_secs(10));
    assert!(
        r.ticks.iter().any(|t| t.instrument_token == token),
        "the hub client never got {token}"
    );
    c
}

fn ticks_of(s: &Setup, token: u32) -> u64 {
    let v = common::get_json(&s.status, "/instruments");
    v["instruments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["instrument_token"] == token)
        .map(|r| r["tick_count"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0)
}

/// Still captured: its tick count keeps growing.
fn still_captured(s: &Setup, token: u32) {
    let before = ticks_of(s, token);
    assert!(
        wait_until(Duration::from_secs(10), || ticks_of(s, token) > before + 5),
        "{token} is no longer captured"
    );
}

#[test]
fn a_hub_client_leaving_keeps_an_instrument_a_control_call_asked_for() {
    let s = setup(2000, &[256], &[]);
    let client = client_holding(&s, T);
    s.wait_carried(T, &[(1, &["hub"])]);
    let (status, v) = s.post("/subscribe", json!({"tokens": [T], "connection_id": 1}));
    assert_eq!(status, 200, "{v}");
    s.wait_carried(T, &[(1, &["control", "hub"])]);
    drop(client);
    s.wait_carried(T, &[(1, &["control"])]);
    still_captured(&s, T);
    s.finish();
}

#[test]
fn a_control_call_then_a_hub_client_then_unsubscribe_keeps_it_for_the_client() {
    // 512 keeps the secondary open after T leaves it (a connection left with
    // nothing closes, and ticks in flight then are not the capture's).
    let s = setup(2000, &[256], &[512]);
    let (status, _) = s.post("/subscribe", json!({"tokens": [T], "connection_id": 2}));
    assert_eq!(status, 200);
    let client = client_holding(&s, T);
    s.wait_carried(T, &[(2, &["control", "hub"])]);
    let (status, v) = s.post("/unsubscribe", json!({"tokens": [T]}));
    assert_eq!((status, &v["kept_for_hub_clients"]), (200, &json!([T])));
    s.wait_carried(T, &[(2, &["hub"])]);
    still_captured(&s, T);
    drop(client);
    s.wait_carried(T, &[]);
    s.finish();
}

#[test]
fn a_hub_client_leaving_keeps_an_instrument_a_reload_configured() {
    let s = setup(2000, &[256], &[]);
    let client = client_holding(&s, T);
    s.rewrite(&[256, T], &[]);
    let (status, v) = s.post("/reload", json!({}));
    assert_eq!(status, 200, "{v}");
    s.wait_carried(T, &[(1, &["config", "hub"])]);
    drop(client);
    s.wait_carried(T, &[(1, &["config"])]);
    still_captured(&s, T);
    s.finish();
}

#[test]
fn a_reload_configuring_a_hub_instrument_on_another_connection_moves_it_without_doubling() {
    let s = setup(2000, &[256], &[512]);
    let client = client_holding(&s, T);
    let on = s.carriers(T)[0].0;
    let other = 3 - on;
    let (p, q): (Vec<u32>, Vec<u32>) = if other == 1 {
        (vec![256, T], vec![512])
    } else {
        (vec![256], vec![512, T])
    };
    s.rewrite(&p, &q);
    let (status, v) = s.post("/reload", json!({}));
    assert_eq!(status, 200, "{v}");
    s.wait_carried(T, &[(other, &["config", "hub"])]);
    still_captured(&s, T);
    drop(client);
    // finish() checks T's sequence in the file: one copy of each tick.
    s.finish();
}

#[test]
fn configured_instruments_win_capacity_over_hub_clients_at_exactly_3000() {
    // 2,995 configured on the primary, the secondary full with 3,000.
    let primary: Vec<u32> = (0..2995).map(|i| (20_000 + i) << 8 | 1).collect();
    let secondary: Vec<u32> = (0..3000).map(|i| (40_000 + i) << 8 | 1).collect();
    let s = setup(500, &primary, &secondary);
    // Hub clients take the primary's last 5 places.
    let hub: Vec<u32> = (0..5).map(|i| (60_000 + i) << 8 | 1).collect();
    let mut client = Client::connect(&s.hub);
    client.subscribe(&hub);
    assert!(wait_until(Duration::from_secs(10), || {
        common::get_json_big(&s.status, "/connections")["connections"][0]["subscribed_instruments"]
            == 3000
    }));
    // A sixth hub instrument fits nowhere: the client hears Kite's error.
    client.subscribe(&[(60_100 << 8) | 1]);
    // A reload adds 5 configured instruments: they are carried; the hub's give way.
    let mut more = primary.clone();
    let added: Vec<u32> = (0..5).map(|i| (30_000 + i) << 8 | 1).collect();
    more.extend(&added);
    s.rewrite(&more, &secondary);
    let (status, v) = s.post("/reload", json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["reloaded"]["hub_released"].as_array().unwrap().len(), 5);
    let conns = common::get_json_big(&s.status, "/connections")["connections"].clone();
    assert_eq!(conns[0]["subscribed_instruments"], 3000);
    assert_eq!(conns[1]["subscribed_instruments"], 3000);
    // One read of /instruments (6,000 rows) for all five.
    let rows = common::get_json_big(&s.status, "/instruments")["instruments"].clone();
    for t in &added {
        let n = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["instrument_token"] == *t)
            .count();
        assert_eq!(n, 1, "configured {t} is carried once");
    }
    // One more configured instrument: the file itself is refused.
    let mut over = more.clone();
    over.push((30_100 << 8) | 1);
    s.rewrite(&over, &secondary);
    let (status, v) = s.post("/reload", json!({}));
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("primary.instruments"),
        "{v}"
    );
    // A control call over capacity: 409 naming the connection.
    let extra = (30_200 << 8) | 1;
    let (status, v) = s.post("/subscribe", json!({"tokens": [extra], "connection_id": 1}));
    assert_eq!((status, &v["connection_id"]), (409, &json!(1)), "{v}");
    // Make room by unsubscribing a configured one, and take it by a control call:
    // now a reload of the 3,000 configured ones does not fit with the control
    // claim, and is refused naming the connection and the instrument.
    let (status, _) = s.post("/unsubscribe", json!({"tokens": [added[4]]}));
    assert_eq!(status, 200);
    let (status, v) = s.post("/subscribe", json!({"tokens": [extra], "connection_id": 1}));
    assert_eq!(status, 200, "{v}");
    s.rewrite(&more, &secondary);
    let (status, v) = s.post("/reload", json!({}));
    assert_eq!(status, 422, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("connection 1") && err.contains("3001"),
        "{err}"
    );
    assert_eq!(
        s.carriers(extra).len(),
        1,
        "the control call's instrument stays"
    );
    assert_eq!(
        common::get_json_big(&s.status, "/connections")["connections"][0]["subscribed_instruments"],
        3000
    );
    let texts = client.receive(Duration::from_millis(500)).texts;
    assert!(
        texts.iter().any(|t| t.contains("error")),
        "the client was told: {texts:?}"
    );
    drop(client);
    let stats = Arc::clone(s.engine.stats());
    halt_and_receive_all(&s.feed, &stats, Duration::from_secs(20));
    s.engine.stop().expect("a clean shutdown");
}

/// Every setting a reload changes is applied to the running part or
/// reported in `restart_needed` with its running value kept in the views.
#[test]
fn a_reload_applies_each_setting_or_reports_it_as_needing_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(500, |_| {});
    let other = common::synthetic_feed(500, |_| {});
    let text = |tertiary: &str, engine: &str, serve: &str, fsync: &str| {
        format!(
            "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nfsync = {fsync:?}\n\
             [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256]\n\
             [tertiary]\nurl = {:?}\n{tertiary}\n[engine]\n{engine}\n[serve]\nlisten = \"127.0.0.1:0\"\n{serve}\n",
            feed.url(),
            dir.path().join("data").display().to_string(),
            other.url(),
        )
    };
    let path = dir.path().join("tickcap.toml");
    let first = text(
        "failover_after_ms = 3000\nwarm = false\ndedup_window_ms = 1000",
        "stale_after_ms = 5000\nreconnect_max_ms = 30000",
        "max_clients = 10",
        "interval",
    );
    let engine = common::start_with_file(&path, &first, Options::default());
    let url = format!("http://{}", engine.status_addr().unwrap());
    assert_eq!(
        common::get_json(&url, "/connections")["connections"][2]["state"],
        "idle"
    );
    std::fs::write(
        &path,
        text(
            "failover_after_ms = 1500\nwarm = true\ndedup_window_ms = 2000",
            "stale_after_ms = 7000\nreconnect_max_ms = 10000",
            "max_clients = 20",
            "batch",
        ),
    )
    .unwrap();
    let r = client::request(
        &url,
        "POST",
        "/reload",
        Some(b"{}"),
        None,
        Duration::from_secs(3),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let v: Value = r.json().unwrap();
    let list =
        |k: &str| -> Vec<String> { serde_json::from_value(v["reloaded"][k].clone()).unwrap() };
    assert_eq!(
        list("applied"),
        [
            "tertiary.warm",
            "tertiary.failover_after_ms",
            "engine.stale_after_ms",
            "engine.reconnect_max_ms"
        ]
    );
    assert_eq!(
        list("restart_needed"),
        ["storage", "tertiary.dedup_window_ms", "serve"]
    );
    // Applied: the failover uses the new delay, the tertiary connects (warm).
    assert_eq!(
        common::get_json(&url, "/failovers")["failover_after_ms"],
        1500
    );
    assert!(
        wait_until(Duration::from_secs(5), || common::get_json(
            &url,
            "/connections"
        )["connections"][2]["state"]
            == "open"),
        "warm = true connects the idle tertiary"
    );
    // Kept: the running values until a restart.
    assert_eq!(
        common::get_json(&url, "/storage")["fsync_policy"],
        "interval"
    );
    engine.stop().expect("a clean shutdown");
    feed.stop();
    other.stop();
}

/// A loopback proxy whose first connection hangs in the upgrade (accepted,
/// never answered) and whose later ones are forwarded to `to`.
fn hang_first_then_forward(to: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::io::copy;
    use std::net::{TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (n, s) in l.incoming().enumerate() {
            let Ok(s) = s else { return };
            if n == 0 {
                held.push(s);
                continue;
            }
            let Ok(up) = TcpStream::connect(to) else {
                return;
            };
            let (mut a, mut b) = (s.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = copy(&mut a, &mut b);
            });
            let (mut c, mut d) = (up, s);
            std::thread::spawn(move || {
                let _ = copy(&mut c, &mut d);
            });
            if n > 5 {
                return;
            }
        }
    });
    addr
}

#[test]
fn a_token_reload_abandons_an_upgrade_in_flight_and_connects_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(1000, |c| {
        c.api_key = Some("k".into());
        c.access_token = Some("new-token".into());
    });
    let proxy = hang_first_then_forward(feed.local_addr());
    let text = |token: &str| {
        format!(
            "[kite]\nurl = \"ws://{proxy}\"\napi_key = \"k\"\naccess_token = {token:?}\n[storage]\ndata_dir = {:?}\n\
             [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256]\n",
            dir.path().join("data").display().to_string(),
        )
    };
    let path = dir.path().join("tickcap.toml");
    let engine = common::start_with_file(&path, &text("old-token"), Options::default());
    let url = format!("http://{}", engine.status_addr().unwrap());
    let state = || common::get_json(&url, "/connections")["connections"][0]["state"].clone();
    assert!(
        wait_until(Duration::from_secs(5), || state() == "handshaking"),
        "the first upgrade hangs: {}",
        state()
    );
    std::fs::write(&path, text("new-token")).unwrap();
    let r = client::request(
        &url,
        "POST",
        "/reload",
        Some(b"{}"),
        None,
        Duration::from_secs(3),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let reloaded = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || state() == "open"),
        "not open with the new token: {}",
        state()
    );
    let took = reloaded.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "open {took:?} after the reload"
    );
    engine.stop().expect("a clean shutdown");
    feed.stop();
}
