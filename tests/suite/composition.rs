//! Everything on at once, across a day change on the injected clock: a
//! day captured plain and then (restart) as zstd, `compress_closed_days`,
//! Kafka with a broker outage over midnight, the hub with the official
//! Python client, a failover and a reload. Every tick received is in the
//! files once, in Kafka once, and in the hub client's stream without a gap.

use crate::common;
use crate::kafka::{
    check_exactly_once, create_topic, kafka_view, start_broker, wait_caught_up, Broker,
};
use crate::serve_python::python_client;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, wait_until};
use tickcap::config::{Config, Env};
use tickcap::engine::{Clock, Engine, Options};
use tickcap::replay::recorded::{parse_line, Record};

/// Every line of every segment in `dir`, in segment order.
fn all_lines(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for seg in tickcap::days::segments(dir) {
        let bytes = std::fs::read(&seg.path).unwrap();
        let text = if seg.zstd {
            zstd::decode_all(bytes.as_slice()).unwrap()
        } else {
            bytes
        };
        assert!(
            text.is_empty() || text.ends_with(b"\n"),
            "{}",
            seg.path.display()
        );
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            out.push(parse_line(line, &mut scratch).unwrap());
        }
    }
    out
}

/// (volume, last price) of each tick of `token` the client recorded, in order.
fn client_ticks(out: &Path, token: u32) -> Vec<(u64, f64)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["instrument_token"] == token)
        .filter_map(|v| Some((v["volume_traded"].as_u64()?, v["last_price"].as_f64()?)))
        .collect()
}

fn text(
    feed: &str,
    tertiary: &str,
    data: &Path,
    broker: &str,
    status: u16,
    storage: &str,
    secondary: &str,
) -> String {
    format!(
        "[kite]\nurl = {feed:?}\napi_key = \"k\"\naccess_token = \"t\"\n\
         [storage]\ndata_dir = {:?}\nflush_interval_ms = 20\ncompress_closed_days = true\n{storage}\
         [status]\nlisten = \"127.0.0.1:{status}\"\n[primary]\ninstruments = [256, 512]\n[secondary]\ninstruments = {secondary}\n\
         [tertiary]\nurl = {tertiary:?}\nfailover_after_ms = 300\n[engine]\nreconnect_max_ms = 300\n\
         [serve]\nlisten = \"127.0.0.1:0\"\n[kafka]\nbrokers = {broker:?}\ntopic = \"ticks\"\n[kafka.properties]\n\"linger.ms\" = 2\n",
        data.display().to_string()
    )
}

fn feed_on(addr: std::net::SocketAddr) -> tickcap::replay::Server {
    let cfg = tickcap::replay::ReplayConfig::synthetic(addr, 2000);
    for _ in 0..100 {
        if let Ok(s) = tickcap::replay::Server::start(cfg.clone()) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("cannot listen on {addr}");
}

#[test]
#[cfg_attr(
    any(not(has_kafka), not(has_kiteconnect)),
    ignore = "needs the Kafka broker jars and a Python with kiteconnect at build time (.ci/run sets both up; then touch build.rs)"
)]
fn everything_on_across_midnight_every_tick_once_in_files_kafka_and_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("tickcap.toml");
    let status = free_port();
    let mut broker: Broker = start_broker();
    create_topic(&broker.addr, "ticks");
    // The receive clock: 14 s before the next Kolkata midnight.
    let now = Clock::system().now_micros();
    let (day, ist) = (86_400_000_000i64, 19_800_000_000i64);
    let midnight = (now + ist).div_euclid(day) * day + day - ist;
    let shift = midnight - 14_000_000 - now;
    let start = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let cfg = Config::parse(text, &path, &Env::default()).unwrap();
        Engine::start(
            cfg,
            Options {
                clock: Clock::shifted(shift),
                config_path: Some(path.clone()),
                ..Options::default()
            },
        )
        .unwrap()
    };
    let acked = || kafka_view(status)["acknowledged"].as_u64().unwrap_or(0);

    // The morning, plain.
    let morning = common::synthetic_feed(2000, |_| {});
    let tmorning = common::synthetic_feed(2000, |_| {});
    let e1 = start(&text(
        &morning.url(),
        &tmorning.url(),
        &data,
        &broker.addr,
        status,
        "",
        "[2562]",
    ));
    assert!(
        wait_until(Duration::from_secs(30), || acked() > 1000),
        "{}",
        kafka_view(status)
    );
    common::halt_and_receive_all(&morning, e1.stats(), Duration::from_secs(10));
    let received1 = e1.stats().ticks_received();
    e1.stop().expect("a clean shutdown");

    // The afternoon: compression switched on, restarted.
    let feed = common::synthetic_feed(2000, |_| {});
    let addr = feed.local_addr();
    let tertiary = common::synthetic_feed(2000, |_| {});
    let zstd = "compression = \"zstd\"\n";
    let e2 = start(&text(
        &feed.url(),
        &tertiary.url(),
        &data,
        &broker.addr,
        status,
        zstd,
        "[2562]",
    ));
    let stats = Arc::clone(e2.stats());
    let hub = format!("ws://{}", e2.serve_addr().unwrap());
    let out = dir.path().join("client.jsonl");
    let stop = dir.path().join("stop");
    // The official client: a captured instrument and one only it wants.
    let mut client = python_client(&hub, &out, "quote", &[256, 1025], &stop);
    assert!(
        wait_until(Duration::from_secs(30), || client_ticks(&out, 256).len()
            > 50
            && client_ticks(&out, 1025).len() > 50),
        "the official client gets no ticks"
    );
    // The broker goes down before midnight and comes back after it.
    broker.kill();
    assert!(
        wait_until(Duration::from_secs(30), || tickcap::days::segments(&data)
            .iter()
            .any(|s| s.id.day > tickcap::days::segments(&data)[0].id.day)),
        "no day change: {:?}",
        tickcap::days::segments(&data)
    );
    // Yesterday's plain morning is compressed by itself.
    assert!(wait_until(Duration::from_secs(20), || {
        tickcap::days::segments(&data).iter().all(|s| s.zstd)
    }));
    // A failover: the users' feed dies; the tertiary carries 256, 512 and
    // the client's 1025; the feed returns on its port.
    feed.stop();
    let failovers = || common::get_json(&format!("http://127.0.0.1:{status}"), "/failovers");
    assert!(wait_until(Duration::from_secs(10), || failovers()
        ["active"]
        == true));
    let before = client_ticks(&out, 1025).len();
    assert!(
        wait_until(Duration::from_secs(10), || client_ticks(&out, 1025).len()
            > before + 20),
        "the client's instrument is carried by the tertiary"
    );
    let feed = feed_on(addr);
    assert!(wait_until(Duration::from_secs(15), || failovers()
        ["active"]
        == false));
    // A reload adds an instrument to the secondary.
    std::fs::write(
        &path,
        text(
            &feed.url(),
            &tertiary.url(),
            &data,
            &broker.addr,
            status,
            zstd,
            "[2562, 768]",
        ),
    )
    .unwrap();
    let r = tickcap::status::client::request(
        &format!("http://127.0.0.1:{status}"),
        "POST",
        "/reload",
        Some(b"{}"),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    broker.restart();
    let ticks_of_768 = || {
        common::get_json(&format!("http://127.0.0.1:{status}"), "/instruments")["instruments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["instrument_token"] == 768 && r["tick_count"].as_u64() > Some(10))
    };
    assert!(wait_until(Duration::from_secs(10), ticks_of_768));
    // The end: every feed halted, every tick received, Kafka caught up,
    // the hub has sent everything to the client.
    feed.halt();
    tertiary.halt();
    common::halt_and_read_past(&feed, &stats, Duration::from_secs(10));
    wait_caught_up(status, |_| true);
    let sent = || {
        stats
            .serve
            .ticks_sent
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(wait_until(Duration::from_secs(20), || {
        let got = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("instrument_token"))
            .count() as u64;
        got == sent()
    }));
    std::fs::write(&stop, "").unwrap();
    let _ = client.wait();
    let received2 = stats.ticks_received();
    e2.stop().expect("a clean shutdown");

    // Files: every tick received, once (the file holds exactly the received count).
    let lines = all_lines(&data);
    assert_eq!(
        lines.len() as u64,
        received1 + received2,
        "files hold every tick received"
    );
    let segs = tickcap::days::segments(&data);
    assert!(segs.len() >= 3 && segs.iter().all(|s| s.zstd), "{segs:?}");
    // Kafka: every line once, in order per partition.
    let n = check_exactly_once(&broker.addr, "ticks", &data);
    assert_eq!(n, lines.len());
    // The hub: from the client's first tick on, it got every captured tick
    // of its instruments (the afternoon's lines), none missing, none extra.
    let afternoon = &lines[lines.len() - received2 as usize..];
    for token in [256u32, 1025] {
        let got = client_ticks(&out, token);
        let div = f64::from(tickcap::kite::price_divisor(token));
        let file: Vec<(u64, f64)> = afternoon
            .iter()
            .filter(|r| r.tick.instrument_token == token)
            .map(|r| {
                (
                    u64::from(r.tick.volume_traded),
                    f64::from(r.tick.last_price) / div,
                )
            })
            .collect();
        let first = file
            .iter()
            .position(|t| *t == got[0])
            .unwrap_or_else(|| panic!("{token}: the client's first tick is not in the file"));
        let mut want: Vec<(u64, f64)> = file[first..].to_vec();
        let mut have = got.clone();
        let key = |t: &(u64, f64)| (t.0, t.1.to_bits());
        want.sort_by_key(key);
        have.sort_by_key(key);
        assert_eq!(
            have.len(),
            want.len(),
            "{token}: the client got {} ticks, the file has {} from its first one",
            have.len(),
            want.len()
        );
        assert!(
            have == want,
            "{token}: the client's ticks differ from the file's"
        );
        eprintln!(
            "hub client: {token}: {} ticks, exactly the captured ones",
            have.len()
        );
    }
    eprintln!(
        "composition: {} lines over {} segments; Kafka {n} once",
        lines.len(),
        segs.len()
    );
}
