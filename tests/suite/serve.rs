//! The hub (`[serve]`): tickcap's live feed served to Kite clients, checked
//! with a plain WebSocket client speaking Kite's protocol against the real
//! engine and the replay feed upstream. (The official Python client is
//! driven in tests/suite/serve_python.rs.)

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{read_capture, wait_until, Client};
use tickcap::config::{Config, Env};
use tickcap::engine::{Engine, Options};
use tickcap::kite::{Mode, PacketKind};
use tickcap::replay::{ReplayConfig, Server};
use tickcap::status::client;

fn start(feed: &Server, dir: &Path, serve_extra: &str) -> Engine {
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256, 512]\n[secondary]\ninstruments = [2562]\n\
         [serve]\nlisten = \"127.0.0.1:0\"\n{serve_extra}",
        feed.url(),
        dir.join("data").display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    Engine::start(cfg, Options::default()).unwrap()
}

fn hub_url(e: &Engine) -> String {
    format!("ws://{}", e.serve_addr().unwrap())
}

fn get(e: &Engine, path: &str) -> serde_json::Value {
    client::get(&format!("http://{}", e.status_addr().unwrap()), path)
        .unwrap()
        .json()
        .unwrap()
}

/// Which connection carries `token` upstream, from `/instruments`.
fn upstream_has(e: &Engine, token: u32) -> Option<String> {
    let v = get(e, "/instruments");
    v["instruments"]
        .as_array()?
        .iter()
        .find(|r| r["instrument_token"] == token)
        .map(|r| r["mode"].as_str().unwrap_or("").to_owned())
}

#[test]
fn each_client_gets_its_instruments_in_its_mode_with_the_captured_values() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(3000, |_| {});
    let engine = start(&feed, dir.path(), "");
    let stats = Arc::clone(engine.stats());
    let url = hub_url(&engine);

    // A: a captured instrument in quote mode (as captured).
    let mut a = Client::connect(&url);
    a.subscribe(&[256]);
    // B: the secondary's full instrument, asked in LTP.
    let mut b = Client::connect(&url);
    b.subscribe(&[2562]);
    b.mode(Mode::Ltp, &[2562]);
    // C: an NSE instrument tickcap does not capture, in full: subscribed upstream.
    let mut c = Client::connect(&url);
    c.subscribe(&[1025]);
    c.mode(Mode::Full, &[1025]);

    let ra = a.receive_ticks(200, Duration::from_secs(20));
    let rb = b.receive_ticks(200, Duration::from_secs(20));
    let rc = c.receive_ticks(200, Duration::from_secs(20));
    assert!(ra
        .ticks
        .iter()
        .all(|t| t.instrument_token == 256 && t.kind == PacketKind::Quote));
    let b_ltp: Vec<_> = rb
        .ticks
        .iter()
        .skip_while(|t| t.kind != PacketKind::Ltp)
        .collect();
    assert!(b_ltp.len() > 100, "B got {} LTP ticks", b_ltp.len());
    assert!(b_ltp
        .iter()
        .all(|t| t.instrument_token == 2562 && t.kind == PacketKind::Ltp));
    let c_full: Vec<_> = rc
        .ticks
        .iter()
        .skip_while(|t| t.kind != PacketKind::Full)
        .collect();
    assert!(
        c_full.len() > 100,
        "C got {} full ticks of {}: {:?} texts {:?}",
        c_full.len(),
        rc.ticks.len(),
        rc.ticks
            .iter()
            .map(|t| t.kind)
            .map(|k| format!("{k:?}"))
            .collect::<std::collections::BTreeSet<_>>(),
        rc.texts
    );
    assert!(c_full.iter().all(|t| t.instrument_token == 1025));
    assert_eq!(
        upstream_has(&engine, 1025).as_deref(),
        Some("full"),
        "C's instrument is captured"
    );
    assert!(ra.heartbeats + rb.heartbeats + rc.heartbeats > 0 || ra.ticks.len() >= 200);

    // C leaves: the upstream subscription it caused goes; config ones stay.
    drop(c);
    assert!(
        wait_until(Duration::from_secs(10), || upstream_has(&engine, 1025)
            .is_none()),
        "1025 is still subscribed upstream after its last client left"
    );
    assert_eq!(upstream_has(&engine, 256).as_deref(), Some("quote"));

    // /clients is refreshed by the hub thread: wait for it to show C gone.
    assert!(
        wait_until(Duration::from_secs(10), || get(&engine, "/clients")
            ["count"]
            == 2),
        "{:#}",
        get(&engine, "/clients")
    );
    let clients = get(&engine, "/clients");
    assert!(clients["recent_disconnects"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("the client"));

    common::halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    // Every tick a client got equals a captured line (by instrument and
    // volume), and none was skipped between its first and last.
    let cap = read_capture(&dir.path().join("data"));
    for (name, got, token) in [("A", &ra.ticks, 256u32), ("C", &rc.ticks, 1025)] {
        let lines: BTreeMap<u32, u32> = cap.by_token[&token]
            .iter()
            .map(|r| (r.tick.volume_traded, r.tick.last_price))
            .collect();
        let seen: BTreeSet<u32> = got.iter().map(|t| t.volume_traded).collect();
        for t in got {
            assert_eq!(
                lines.get(&t.volume_traded),
                Some(&t.last_price),
                "{name}: a tick the file does not have"
            );
        }
        let (lo, hi) = (*seen.first().unwrap(), *seen.last().unwrap());
        let missing = lines
            .range(lo..=hi)
            .filter(|(v, _)| !seen.contains(v))
            .count();
        assert_eq!(missing, 0, "{name}: {missing} captured ticks not delivered");
    }
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_nobody_else_loses_anything() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(20_000, |_| {});
    let engine = start(&feed, dir.path(), "send_queue_kib = 64\n");
    let stats = Arc::clone(engine.stats());
    let url = hub_url(&engine);
    let mut stalled = Client::connect(&url);
    stalled.subscribe(&[256, 512, 2562]);
    stalled.mode(Mode::Full, &[256, 512, 2562]);
    let mut reader = Client::connect(&url);
    reader.subscribe(&[256]);
    // The stalled client never reads: its queue passes 64 KiB.
    assert!(
        wait_until(Duration::from_secs(20), || stats
            .serve
            .dropped_slow
            .load(Ordering::Relaxed)
            == 1),
        "{:#}",
        get(&engine, "/clients")
    );
    let r = reader.receive_ticks(500, Duration::from_secs(20));
    assert!(
        r.ticks.len() >= 500 && r.ended.is_none(),
        "the reader was disturbed: {:?}",
        r.ended
    );
    let why = get(&engine, "/clients")["recent_disconnects"][0]["reason"].clone();
    assert!(why.as_str().unwrap().contains("too slow"), "{why}");
    common::halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    assert_eq!(
        read_capture(&dir.path().join("data")).lines as u64,
        feed.stop().sent,
        "capture lost nothing"
    );
}

#[test]
fn bad_clients_get_kites_answers_and_disturb_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(2000, |_| {});
    let engine = start(
        &feed,
        dir.path(),
        "token = \"hub-secret\"\nmax_clients = 2\nauto_subscribe = false\n",
    );
    let stats = Arc::clone(engine.stats());
    let url = hub_url(&engine);
    // A wrong token: 403 at the upgrade.
    match Client::connect_with(&url, "k", "wrong") {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let mut good = Client::connect_with(&url, "k", "hub-secret").unwrap();
    good.subscribe(&[256]);
    let mut bad = Client::connect_with(&url, "k", "hub-secret").unwrap();
    // Past max_clients: 429, as Kite answers a fourth connection.
    match Client::connect_with(&url, "k", "hub-secret") {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    use tungstenite::Message;
    bad.ws.send(Message::text("{not json")).unwrap();
    bad.ws
        .send(Message::text(r#"{"a":"mode","v":["fast",[256]]}"#))
        .unwrap();
    bad.ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    let many: Vec<u32> = (1..=10_000).collect();
    bad.subscribe(&many);
    let r = bad.receive(Duration::from_secs(2));
    let texts = r.texts.join("\n");
    assert!(texts.contains("not a Kite request"), "{texts}");
    assert!(texts.contains("fast"), "{texts}");
    assert!(texts.contains("binary messages"), "{texts}");
    assert!(
        texts.contains("Can't subscribe to more than 3000 instruments."),
        "{texts}"
    );
    assert!(r.ended.is_none(), "the bad client is answered, not dropped");
    // Only captured instruments flow without auto_subscribe (256, 512 of the 3000).
    let later = bad.receive_ticks(100, Duration::from_secs(10));
    assert!(later
        .ticks
        .iter()
        .all(|t| [256, 512, 2562].contains(&t.instrument_token)));
    let g = good.receive_ticks(300, Duration::from_secs(10));
    assert!(g.ticks.len() >= 300 && g.ticks.iter().all(|t| t.instrument_token == 256));
    assert_eq!(stats.serve.refused_auth.load(Ordering::Relaxed), 1);
    assert_eq!(stats.serve.refused_full.load(Ordering::Relaxed), 1);
    assert!(stats.serve.bad_requests.load(Ordering::Relaxed) >= 3);
    engine.stop().expect("a clean shutdown");
}

#[test]
fn an_order_update_sent_on_every_upstream_connection_reaches_each_client_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut fc = ReplayConfig::synthetic("127.0.0.1:0".parse().unwrap(), 500);
    fc.faults.order_every = Some(Duration::from_millis(300));
    let feed = Server::start(fc).unwrap();
    let engine = start(&feed, dir.path(), "");
    let url = hub_url(&engine);
    let mut a = Client::connect(&url);
    a.subscribe(&[256]);
    let mut b = Client::connect(&url);
    b.subscribe(&[2562]);
    // Read both until each has 4 updates: a second copy of an update would
    // arrive right behind the first (the same feed sends it on every
    // connection at once), long before the next update 300 ms later.
    let orders = |texts: &[String]| {
        texts
            .iter()
            .filter(|t| t.contains("\"order\""))
            .cloned()
            .collect::<Vec<String>>()
    };
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while (orders(&ta).len() < 4 || orders(&tb).len() < 4) && std::time::Instant::now() < deadline {
        ta.extend(a.receive(Duration::from_millis(50)).texts);
        tb.extend(b.receive(Duration::from_millis(50)).texts);
    }
    for (name, texts) in [("A", &ta), ("B", &tb)] {
        let orders = orders(texts);
        assert!(
            orders.len() >= 3,
            "{name} got {} order updates",
            orders.len()
        );
        let mut seen = std::collections::HashSet::new();
        for o in &orders {
            assert!(
                seen.insert(o.as_str()),
                "{name}: {o} forwarded twice (two upstream connections carry it)"
            );
        }
    }
    assert!(engine.stats().serve.texts_forwarded.load(Ordering::Relaxed) >= 3);
    engine.stop().expect("a clean shutdown");
}

/// Keeps `n` half-open sockets (TCP connected, no upgrade request) to
/// `addr`, opening a new one whenever the hub closes one, until `stop`.
fn half_open_flood(
    addr: std::net::SocketAddr,
    n: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    opened: Arc<std::sync::atomic::AtomicU64>,
) -> std::thread::JoinHandle<()> {
    use std::io::Read;
    std::thread::spawn(move || {
        let mut socks: Vec<std::net::TcpStream> = Vec::new();
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            socks.retain_mut(|s| match s.read(&mut buf) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            });
            while socks.len() < n {
                match std::net::TcpStream::connect(addr) {
                    Ok(s) => {
                        s.set_nonblocking(true).unwrap();
                        socks.push(s);
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

#[test]
fn three_hundred_half_open_upgrades_reopened_as_closed_never_keep_a_real_client_out() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(500, |_| {});
    let engine = start(&feed, dir.path(), "max_clients = 10\n");
    let addr = engine.serve_addr().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opened = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flood = half_open_flood(addr, 330, Arc::clone(&stop), Arc::clone(&opened));
    // The flood fills every slot (10 + 64) and re-opens what is closed.
    assert!(
        wait_until(Duration::from_secs(10), || opened.load(Ordering::Relaxed)
            > 330 + 200),
        "the flood re-opened {} sockets",
        opened.load(Ordering::Relaxed)
    );
    for i in 0..10 {
        let mut c = Client::connect_with(&hub_url(&engine), "k", "t")
            .unwrap_or_else(|e| panic!("real client {i} kept out: {e}"));
        c.subscribe(&[256]);
        let r = c.receive_ticks(1, Duration::from_secs(5));
        assert!(!r.ticks.is_empty(), "real client {i} got no tick");
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    assert!(
        engine
            .stats()
            .serve
            .upgrades_evicted
            .load(Ordering::Relaxed)
            > 200
    );
    feed.halt();
    engine.stop().expect("a clean shutdown");
}

#[test]
fn a_protocol_violation_is_told_why_then_closed_with_1002() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(200, |_| {});
    let engine = start(&feed, dir.path(), "");
    let mut c = Client::connect(&hub_url(&engine));
    // A binary message (an error text), then a frame with a reserved opcode.
    c.ws.send(tungstenite::Message::binary(vec![1u8, 2, 3]))
        .unwrap();
    c.ws.get_mut().write_all(&[0x83, 0x80, 1, 2, 3, 4]).unwrap();
    let mut texts = Vec::new();
    let close = loop {
        match c.ws.read() {
            Ok(tungstenite::Message::Text(t)) => texts.push(t.to_string()),
            Ok(tungstenite::Message::Close(f)) => break f,
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e} (texts {texts:?})"),
        }
    };
    assert!(
        texts.iter().any(|t| t.contains("binary messages")),
        "{texts:?}"
    );
    assert_eq!(
        close.map(|f| f.code),
        Some(tungstenite::protocol::frame::coding::CloseCode::Protocol)
    );
    feed.halt();
    engine.stop().expect("a clean shutdown");
}
