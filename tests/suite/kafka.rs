//! Publishing to a real Apache Kafka broker (KRaft, single node, the jars
//! `.ci/run` fetches from Maven Central into target/kafka-libs): every
//! captured line is in the topic exactly once — key the token, value the
//! line, headers its position and connection — including across a kill -9
//! of the capturing process and a restart. Without the jars (or java) the
//! tests are reported as ignored.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, wait_until};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

#[cfg(has_kafka)]
const LIBS: &str = env!("TICKCAP_KAFKA_LIBS");
#[cfg(not(has_kafka))]
const LIBS: &str = "target/kafka-libs";

const PARTITIONS: i32 = 4;

/// A single-node KRaft broker in a temp dir, started by tools/kafka/start;
/// killed on drop.
pub(crate) struct Broker {
    pid: Option<u32>,
    pub(crate) addr: String,
    port: u16,
    cport: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    pub(crate) fn start_on(port: u16) -> Broker {
        let mut b = Broker {
            pid: None,
            addr: format!("127.0.0.1:{port}"),
            port,
            // Not the broker's port: that one is free until the broker
            // binds it, so the OS may offer it again (then formatting
            // fails: two listeners on one port).
            cport: std::iter::repeat_with(free_port)
                .find(|&p| p != port)
                .unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        b.restart();
        b
    }

    /// Starts it (again, on the same data: a crash and a restart).
    pub(crate) fn restart(&mut self) {
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/kafka/start"))
            // A test broker carries a few thousand records a second: the C1
            // compiler and the serial GC start it on half the CPU.
            .env(
                "TICKCAP_KAFKA_JVM_OPTS",
                "-Xmx512m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
            )
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .arg(self.cport.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tools/kafka/start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.pid = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
    }

    /// SIGKILL, as a crash.
    pub(crate) fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let _ = wait_until(Duration::from_secs(10), || {
                !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z "))
            });
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn start_broker() -> Broker {
    let b = Broker::start_on(free_port());
    let _ = LIBS;
    b
}

/// Creates `topic` by asking for its metadata (auto-creation on the
/// broker), and waits until it has all its partitions.
pub(crate) fn create_topic(addr: &str, topic: &str) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "tickcap-test")
        .set("allow.auto.create.topics", "true")
        .create()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || {
            c.fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    m.topics()
                        .first()
                        .map(|t| t.error().is_none() && t.partitions().len() == PARTITIONS as usize)
                })
                .unwrap_or(false)
        }),
        "topic {topic} was not created"
    );
}

/// One consumed record: partition, key, value, connection header.
type Record = (i32, String, String, String);

/// Every record of `topic`: position → (partition, key, value, connection
/// header). Called once the publisher has stopped, so each partition's high
/// watermark is final: reading up to it reads everything, with no idle wait.
fn consume_all(addr: &str, topic: &str) -> (Vec<String>, HashMap<String, Record>) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "tickcap-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for p in 0..PARTITIONS {
        let (lo, hi) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        if hi > lo {
            remaining.insert(p, hi);
        }
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut positions = Vec::new();
    let mut by_pos = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() {
        assert!(
            Instant::now() < deadline,
            "partitions {remaining:?} not read to their end in 60 s"
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                if remaining.get(&m.partition()) == Some(&(m.offset() + 1)) {
                    remaining.remove(&m.partition());
                }
                let h = m.headers().expect("headers");
                let get = |k: &str| {
                    h.iter()
                        .find(|x| x.key == k)
                        .and_then(|x| x.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                };
                let pos = get("tickcap-position");
                positions.push(pos.clone());
                by_pos.insert(
                    pos,
                    (
                        m.partition(),
                        String::from_utf8_lossy(m.key().unwrap_or(b"")).into_owned(),
                        String::from_utf8_lossy(m.payload().unwrap_or(b"")).into_owned(),
                        get("tickcap-connection-id"),
                    ),
                );
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    (positions, by_pos)
}

/// The lines of every daily segment in `dir` (plain or `.zst`), by
/// position `DAY[.N]:offset` in the segment's uncompressed bytes.
fn file_lines_in(dir: &Path, family: tickcap::days::Family) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for seg in tickcap::days::segments_in(dir, family) {
        let bytes = std::fs::read(&seg.path).unwrap();
        let text = if seg.zstd {
            String::from_utf8(zstd::decode_all(bytes.as_slice()).unwrap()).unwrap()
        } else {
            String::from_utf8(bytes).unwrap()
        };
        let day = seg.id.to_string();
        let mut off = 0;
        for l in text.split_inclusive('\n') {
            if l.ends_with('\n') {
                out.push((format!("{day}:{off}"), l.trim_end_matches('\n').to_owned()));
            }
            off += l.len();
        }
    }
    out
}

pub(crate) fn check_exactly_once(addr: &str, topic: &str, data: &Path) -> usize {
    check_exactly_once_in(addr, topic, data, tickcap::days::Family::Ticks)
}

/// Every line of `data`'s `family` files is in `topic` exactly once, in
/// order per partition, keyed and partitioned by its instrument.
fn check_exactly_once_in(
    addr: &str,
    topic: &str,
    data: &Path,
    family: tickcap::days::Family,
) -> usize {
    let lines = file_lines_in(data, family);
    let (positions, records) = consume_all(addr, topic);
    // Per partition (so per instrument), in the order the topic holds them.
    let key = |p: &String| tickcap::publish::journal::Pos::parse(p).expect("a position");
    let mut last: HashMap<i32, tickcap::publish::journal::Pos> = HashMap::new();
    for p in &positions {
        let part = records[p].0;
        let k = key(p);
        if let Some(prev) = last.get(&part) {
            assert!(
                k > *prev,
                "partition {part}: {p} after {prev:?}: out of order"
            );
        }
        last.insert(part, k);
    }
    let mut seen = std::collections::HashSet::new();
    let dups: Vec<&String> = positions.iter().filter(|p| !seen.insert(*p)).collect();
    assert!(
        dups.is_empty(),
        "{} records published twice, e.g. {:?}",
        dups.len(),
        &dups[..dups.len().min(5)]
    );
    let missing: Vec<&String> = lines
        .iter()
        .map(|(p, _)| p)
        .filter(|p| !records.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} lines never published, e.g. {:?}",
        missing.len(),
        lines.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(
        positions.len(),
        lines.len(),
        "records that are not lines of the files"
    );
    for (pos, line) in &lines {
        let (partition, key, value, conn) = &records[pos];
        assert_eq!(value, line, "{pos}: the value is the line");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let token = v["instrument_token"]
            .as_u64()
            .or(v["data"]["instrument_token"].as_u64())
            .unwrap();
        assert_eq!(key, &token.to_string());
        assert_eq!(
            *partition as u64,
            token % PARTITIONS as u64,
            "{pos}: partition by token"
        );
        assert_eq!(conn, &v["connection_id"].to_string());
    }
    lines.len()
}

fn config_text(feed: &str, data: &Path, broker: &str, topic: &str, status: u16) -> String {
    format!(
        "[kite]\nurl = {feed:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:{status}\"\n[primary]\ninstruments = [256, 512, 768, 1024, 256265]\n[secondary]\ninstruments = [1281, 2562]\n\
         [kafka]\nbrokers = {broker:?}\ntopic = {topic:?}\n[kafka.properties]\n\"linger.ms\" = 2\n",
        data.display().to_string()
    )
}

#[test]
#[cfg_attr(
    not(has_kafka),
    ignore = "no Kafka broker jars in target/kafka-libs at build time (tools/kafka/start - - - fetch-only, then touch build.rs)"
)]
fn a_broker_killed_mid_stream_is_reported_down_and_loses_and_doubles_nothing() {
    let mut broker = start_broker();
    create_topic(&broker.addr, "ticks");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(3000, |_| {});
    let engine = start_engine(
        &feed,
        &data,
        &broker.addr,
        0, // the status port: any free one, read back below
        tickcap::engine::Options::default(),
    );
    let status = status_port(&engine);
    let stats = std::sync::Arc::clone(engine.stats());
    let acked = || stats.kafka.acked.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(60), || acked() > 3000),
        "{}",
        kafka_view(status)
    );
    broker.kill();
    // The broker is down: capture goes on, and /kafka says so — no longer
    // publishing, the ticks waiting counted — rather than "fine".
    let written = stats.lines_written();
    assert!(
        wait_until(Duration::from_secs(40), || {
            let v = kafka_view(status);
            v["state"] == "broker unreachable"
                && v["lag_ticks"].as_u64() > Some(0)
                && stats.lines_written() > written + 3000
        }),
        "{}",
        kafka_view(status)
    );
    let during = acked();
    broker.restart();
    assert!(
        wait_until(Duration::from_secs(90), || acked() > during + 3000),
        "no progress after the broker came back: {}",
        kafka_view(status)
    );
    common::halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    wait_caught_up(status, |_| true);
    engine.stop().expect("a clean shutdown");
    assert_eq!(
        common::read_capture(&data).lines as u64,
        feed.stop().sent,
        "capture lossless throughout"
    );
    let n = check_exactly_once(&broker.addr, "ticks", &data);
    eprintln!("broker SIGKILLed until reported unreachable: {n} lines, each exactly once, in order per partition");
}

#[test]
#[cfg_attr(
    not(has_kafka),
    ignore = "no Kafka broker jars in target/kafka-libs at build time (tools/kafka/start - - - fetch-only, then touch build.rs)"
)]
fn a_fatal_producer_error_recreates_the_producer_and_loses_and_doubles_nothing() {
    let broker = start_broker();
    create_topic(&broker.addr, "ticks");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(3000, |_| {});
    // librdkafka raises a fatal error (as a broker fencing the idempotent
    // producer would) once 3000 records are acknowledged: everything in
    // flight fails, the producer is unusable.
    let opts = tickcap::engine::Options {
        kafka_fatal_after: Some(3000),
        ..tickcap::engine::Options::default()
    };
    // Status port 0: any free one, read back below.
    let engine = start_engine(&feed, &data, &broker.addr, 0, opts);
    let status = status_port(&engine);
    let stats = std::sync::Arc::clone(engine.stats());
    let acked = || stats.kafka.acked.load(std::sync::atomic::Ordering::Relaxed);
    let recreated = || {
        stats
            .kafka
            .recreated
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(
        wait_until(Duration::from_secs(60), || recreated() == 1),
        "{}",
        kafka_view(status)
    );
    let at_error = acked();
    // A new producer, after reading back what the topic holds, goes on.
    assert!(
        wait_until(Duration::from_secs(60), || acked() > at_error + 3000),
        "no progress after the fatal error: {}",
        kafka_view(status)
    );
    common::halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    wait_caught_up(status, |_| true);
    let view = kafka_view(status);
    assert_eq!(view["producers_recreated"], 1);
    assert!(
        view["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("fatal producer error")),
        "{view}"
    );
    engine.stop().expect("a clean shutdown");
    assert_eq!(
        common::read_capture(&data).lines as u64,
        feed.stop().sent,
        "capture lossless throughout"
    );
    let n = check_exactly_once(&broker.addr, "ticks", &data);
    eprintln!(
        "fatal producer error after 3000 acknowledged: {n} lines, each exactly once, in order per partition; {} found in the topic at recovery and not sent again",
        view["skipped_at_recovery"]
    );
}

/// tickcap's engine in this process: captures `feed` into `data` and
/// publishes to `broker` (topic "ticks"), status port `status`.
fn start_engine(
    feed: &tickcap::replay::Server,
    data: &Path,
    broker: &str,
    status: u16,
    opts: tickcap::engine::Options,
) -> tickcap::engine::Engine {
    let text = config_text(&feed.url(), data, broker, "ticks", status);
    let cfg = tickcap::config::Config::parse(
        &text,
        Path::new("t.toml"),
        &tickcap::config::Env::default(),
    )
    .unwrap();
    tickcap::engine::Engine::start(cfg, opts).unwrap()
}

/// Waits until the publisher has nothing in flight and nothing unread
/// (and `also` holds for `/kafka`).
pub(crate) fn wait_caught_up(status: u16, also: impl Fn(&serde_json::Value) -> bool) {
    assert!(
        wait_until(Duration::from_secs(60), || {
            let v = kafka_view(status);
            v["lag_ticks"] == 0 && v["in_flight"] == 0 && also(&v)
        }),
        "{}",
        kafka_view(status)
    );
}

/// The port an engine's status server bound (tests ask for port 0: a
/// port picked before the start could be taken by another test first).
pub(crate) fn status_port(engine: &tickcap::engine::Engine) -> u16 {
    engine.status_addr().expect("a status port").port()
}

pub(crate) fn kafka_view(status: u16) -> serde_json::Value {
    tickcap::status::client::get(&format!("http://127.0.0.1:{status}"), "/kafka")
        .ok()
        .and_then(|r| r.json())
        .unwrap_or_default()
}

#[test]
#[cfg_attr(
    not(has_kafka),
    ignore = "no Kafka broker jars in target/kafka-libs at build time (tools/kafka/start - - - fetch-only, then touch build.rs)"
)]
fn every_line_is_published_exactly_once_across_a_kill_9_and_a_restart() {
    let broker = start_broker();
    create_topic(&broker.addr, "ticks");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(5000, |_| {});
    let status = free_port();
    let cfg = dir.path().join("tickcap.toml");
    std::fs::write(
        &cfg,
        config_text(&feed.url(), &data, &broker.addr, "ticks", status),
    )
    .unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tickcap"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let acked = |s: u16| kafka_view(s)["acknowledged"].as_u64().unwrap_or(0);
    let mut child = run();
    assert!(
        wait_until(Duration::from_secs(60), || acked(status) > 5000),
        "nothing acknowledged: {}",
        kafka_view(status)
    );
    child.kill().unwrap(); // kill -9 while publishing
    child.wait().unwrap();
    // A crash mid-write leaves a torn last line: the restarted writer cuts
    // it before the publisher reads (no record of torn bytes, no line skipped).
    let today = tickcap::days::segments(&data).last().unwrap().path.clone();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&today)
        .and_then(|mut f| {
            std::io::Write::write_all(
                &mut f,
                b"{\"tradable\":true,\"mode\":\"quote\",\"instrument_tok",
            )
        })
        .unwrap();
    let mut child = run();
    assert!(
        wait_until(Duration::from_secs(60), || acked(status) > 3000),
        "{}",
        kafka_view(status)
    );
    feed.halt();
    // Caught up: nothing in flight and nothing unread, twice in a row.
    wait_caught_up(status, |v| v["state"] == "publishing");
    let view = kafka_view(status);
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
    let n = check_exactly_once(&broker.addr, "ticks", &data);
    eprintln!("{n} lines, each in the topic exactly once; after the restart: {view}");
    assert!(n > 8000);
}

#[test]
#[cfg_attr(
    not(has_kafka),
    ignore = "no Kafka broker jars in target/kafka-libs at build time (tools/kafka/start - - - fetch-only, then touch build.rs)"
)]
fn a_broker_down_at_start_costs_only_lag_and_its_backlog_arrives_in_order_later() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(3000, |_| {});
    // Nothing listens on this port yet: the broker is "down".
    let broker_port = free_port();
    let engine = start_engine(
        &feed,
        &data,
        &format!("127.0.0.1:{broker_port}"),
        0, // the status port: any free one, read back below
        tickcap::engine::Options::default(),
    );
    let status = status_port(&engine);
    let stats = std::sync::Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(30), || stats
        .lines_written()
        > 3000));
    let health = || {
        tickcap::status::client::get(&format!("http://127.0.0.1:{status}"), "/health")
            .unwrap()
            .json()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(30), || health()["reasons"]
            .to_string()
            .contains("kafka")),
        "{}",
        health()
    );
    assert_eq!(health()["status"], "degraded");
    // The backlog is what is on disk, not 0: counted from the files.
    let lag = kafka_view(status)["lag_ticks"].as_u64().unwrap_or(0);
    let written = stats.lines_written();
    assert!(
        lag > 3000 && lag <= written,
        "lag_ticks {lag} with {written} lines written and no broker ever seen"
    );
    assert!(
        !health()["reasons"].to_string().contains("(0 ticks waiting"),
        "{}",
        health()
    );
    // The broker comes up later: the backlog waiting on disk arrives, in order.
    let broker = Broker::start_on(broker_port);
    create_topic(&broker.addr, "ticks");
    common::halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(90), || {
            let v = kafka_view(status);
            v["lag_ticks"] == 0 && v["in_flight"] == 0 && v["acknowledged"].as_u64() > Some(3000)
        }),
        "{}",
        kafka_view(status)
    );
    assert!(wait_until(Duration::from_secs(15), || !health()["reasons"]
        .to_string()
        .contains("kafka")));
    engine
        .stop()
        .expect("a clean shutdown: capture never waited for Kafka");
    assert_eq!(
        common::read_capture(&data).lines as u64,
        feed.stop().sent,
        "capture lossless"
    );
    let n = check_exactly_once(&broker.addr, "ticks", &data);
    eprintln!(
        "broker down at start, up later: {n} lines, each exactly once, in order per partition"
    );
}

fn config_with(
    feed: &str,
    data: &Path,
    broker: &str,
    status: u16,
    storage: &str,
) -> tickcap::config::Config {
    let text = config_text(feed, data, broker, "ticks", status).replace(
        "flush_interval_ms = 20\n",
        &format!("flush_interval_ms = 20\n{storage}"),
    );
    tickcap::config::Config::parse(&text, Path::new("t.toml"), &tickcap::config::Env::default())
        .unwrap()
}

/// A mixed day: captured plain, then (compression switched on, restart)
/// as `.zst` in the day's next segment; the plain morning is compressed
/// after the restart, under a publisher that may still be reading it.
/// Every line of the day is in the topic exactly once.
#[test]
#[cfg_attr(
    not(has_kafka),
    ignore = "no Kafka broker jars in target/kafka-libs at build time (tools/kafka/start - - - fetch-only, then touch build.rs)"
)]
fn a_mixed_day_plain_then_zstd_with_a_restart_and_a_compression_is_published_once() {
    let broker = start_broker();
    create_topic(&broker.addr, "ticks");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let morning = common::synthetic_feed(3000, |_| {});
    let status = free_port();
    let acked = || kafka_view(status)["acknowledged"].as_u64().unwrap_or(0);
    let engine = tickcap::engine::Engine::start(
        config_with(&morning.url(), &data, &broker.addr, status, ""),
        tickcap::engine::Options::default(),
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || acked() > 2000),
        "{}",
        kafka_view(status)
    );
    common::halt_and_receive_all(&morning, engine.stats(), Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    morning.stop();
    let feed = common::synthetic_feed(3000, |_| {});
    let engine = tickcap::engine::Engine::start(
        config_with(
            &feed.url(),
            &data,
            &broker.addr,
            status,
            "compression = \"zstd\"\n",
        ),
        tickcap::engine::Options::default(),
    )
    .unwrap();
    let stats = std::sync::Arc::clone(engine.stats());
    let segs = tickcap::days::segments(&data);
    assert_eq!(segs.len(), 2, "{segs:?}");
    assert!(
        !segs[0].zstd && segs[1].zstd && segs[1].id.index == 1,
        "{segs:?}"
    );
    // The morning is sealed: compressing it is allowed (not the open file).
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["compress", segs[0].path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = acked();
    assert!(
        wait_until(Duration::from_secs(60), || acked() > before + 2000),
        "{}",
        kafka_view(status)
    );
    common::halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    wait_caught_up(status, |_| true);
    engine.stop().expect("a clean shutdown");
    feed.stop();
    let segs = tickcap::days::segments(&data);
    assert!(segs.iter().all(|s| s.zstd), "{segs:?}");
    let n = check_exactly_once(&broker.addr, "ticks", &data);
    eprintln!(
        "mixed day: {n} lines over {} segments, each exactly once",
        segs.len()
    );
}

/// Records are placed by token % partitions: when the topic's partition
/// count changes under a checkpoint, publishing stops with the reason
/// instead of silently breaking exactly-once.
#[test]
#[cfg_attr(
    not(has_kafka),
    ignore = "no Kafka broker jars in target/kafka-libs at build time (tools/kafka/start - - - fetch-only, then touch build.rs)"
)]
fn a_changed_partition_count_is_refused_not_published_across() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    let broker = start_broker();
    create_topic(&broker.addr, "ticks");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(2000, |_| {});
    let engine = start_engine(
        &feed,
        &data,
        &broker.addr,
        0, // the status port: any free one, read back below
        tickcap::engine::Options::default(),
    );
    let status = status_port(&engine);
    assert!(wait_until(Duration::from_secs(60), || kafka_view(status)
        ["acknowledged"]
        .as_u64()
        .unwrap_or(0)
        > 500));
    engine.stop().expect("a clean shutdown");
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    let rt = futures_lite_block(admin.create_partitions(
        &[NewPartitions::new("ticks", 6)],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ));
    let results = rt.expect("the admin request");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let md: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || md
        .fetch_metadata(Some("ticks"), Duration::from_secs(5))
        .ok()
        .and_then(|m| m.topics().first().map(|t| t.partitions().len() == 6))
        .unwrap_or(false)));
    let engine = start_engine(
        &feed,
        &data,
        &broker.addr,
        status,
        tickcap::engine::Options::default(),
    );
    assert!(
        wait_until(Duration::from_secs(60), || kafka_view(status)["state"]
            == "refused"),
        "{}",
        kafka_view(status)
    );
    let h = tickcap::status::client::get(&format!("http://127.0.0.1:{status}"), "/health")
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["reasons"].to_string().contains("partitions"), "{h}");
    engine.stop().expect("a clean shutdown");
    feed.stop();
}

/// Runs a future to completion on this thread (rdkafka's admin calls are
/// futures; the tests have no async runtime).
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// The broker is down over midnight with `compress_closed_days`: the day
/// the publisher has not finished is compressed under it at the rotation.
/// When the broker is back, every line of both days is in the topic once.
#[test]
#[cfg_attr(
    not(has_kafka),
    ignore = "no Kafka broker jars in target/kafka-libs at build time (tools/kafka/start - - - fetch-only, then touch build.rs)"
)]
fn compress_closed_days_while_the_publisher_is_behind_across_midnight_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(3000, |_| {});
    let broker_port = free_port();
    // The receive clock: 1.5 s before the next Kolkata midnight.
    let now = tickcap::engine::Clock::system().now_micros();
    let (day, ist) = (86_400_000_000i64, 19_800_000_000i64);
    let next_midnight = (now + ist).div_euclid(day) * day + day - ist;
    let clock = tickcap::engine::Clock::shifted(next_midnight - 1_500_000 - now);
    let engine = tickcap::engine::Engine::start(
        config_with(
            &feed.url(),
            &data,
            &format!("127.0.0.1:{broker_port}"),
            0,
            "compress_closed_days = true\n",
        ),
        tickcap::engine::Options {
            clock,
            ..tickcap::engine::Options::default()
        },
    )
    .unwrap();
    let status = status_port(&engine);
    let stats = std::sync::Arc::clone(engine.stats());
    // Past midnight, and yesterday compressed while nothing was published.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let s = tickcap::days::segments(&data);
            s.len() == 2 && s[0].zstd && !s[0].also_zstd
        }),
        "{:?}",
        tickcap::days::segments(&data)
    );
    assert_eq!(kafka_view(status)["acknowledged"].as_u64().unwrap_or(0), 0);
    let broker = Broker::start_on(broker_port);
    create_topic(&broker.addr, "ticks");
    common::halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    wait_caught_up(status, |v| v["acknowledged"].as_u64() > Some(3000));
    engine.stop().expect("a clean shutdown");
    feed.stop();
    let n = check_exactly_once(&broker.addr, "ticks", &data);
    eprintln!("across midnight with the broker down and yesterday compressed under the publisher: {n} lines once");
}

/// Kite's order updates go to `[kafka] orders_topic` under the ticks'
/// rules: each line of the orders files exactly once, across a kill -9 and
/// a restart, while the ticks go to their own topic.
#[test]
#[cfg_attr(
    not(has_kafka),
    ignore = "no Kafka broker jars in target/kafka-libs at build time (tools/kafka/start - - - fetch-only, then touch build.rs)"
)]
fn order_updates_are_published_exactly_once_across_a_kill_9() {
    let broker = start_broker();
    create_topic(&broker.addr, "ticks");
    create_topic(&broker.addr, "orders");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(2000, |c| {
        c.faults.order_every = Some(Duration::from_millis(10));
    });
    let status = free_port();
    let cfg = dir.path().join("tickcap.toml");
    let text = config_text(&feed.url(), &data, &broker.addr, "ticks", status).replace(
        "topic = \"ticks\"\n",
        "topic = \"ticks\"\norders_topic = \"orders\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tickcap"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let orders_acked = |s: u16| {
        kafka_view(s)["orders"]["acknowledged"]
            .as_u64()
            .unwrap_or(0)
    };
    let mut child = run();
    assert!(
        wait_until(Duration::from_secs(60), || orders_acked(status) > 100),
        "{}",
        kafka_view(status)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = run();
    assert!(
        wait_until(Duration::from_secs(60), || orders_acked(status) > 100),
        "{}",
        kafka_view(status)
    );
    // No more ticks or order updates (a halted feed still sends orders);
    // what the journal writes after the publisher stops waits on disk for
    // the next start, as the ticks do.
    drop(feed.stop());
    assert!(
        wait_until(Duration::from_secs(60), || {
            let v = kafka_view(status);
            v["orders"]["lag_records"] == 0
                && v["orders"]["in_flight"] == 0
                && v["lag_ticks"] == 0
                && v["in_flight"] == 0
                && v["state"] == "publishing"
        }),
        "{}",
        kafka_view(status)
    );
    eprintln!("caught up: {}", kafka_view(status));
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
    let n = check_exactly_once_in(&broker.addr, "orders", &data, tickcap::days::Family::Orders);
    let t = check_exactly_once(&broker.addr, "ticks", &data);
    eprintln!("{n} order updates and {t} ticks, each in its topic exactly once");
    assert!(n > 150, "{n} order updates");
}

/// Final candles go to `{candles_topic}_{interval}` exactly once, like the
/// ticks (the receive clock starts 1 s before a minute, so the first bars
/// are final a few seconds in).
#[test]
#[cfg_attr(
    not(has_kafka),
    ignore = "no Kafka broker jars in target/kafka-libs at build time (tools/kafka/start - - - fetch-only, then touch build.rs)"
)]
fn candles_are_published_exactly_once_to_their_interval_topic() {
    let broker = start_broker();
    create_topic(&broker.addr, "ticks");
    create_topic(&broker.addr, "bars_minute");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(2000, |_| {});
    let text = config_text(&feed.url(), &data, &broker.addr, "ticks", 0).replace(
        "topic = \"ticks\"\n",
        "topic = \"ticks\"\ncandles_topic = \"bars\"\n",
    ) + "[candles]\nintervals = [\"minute\"]\n";
    let cfg = tickcap::config::Config::parse(
        &text,
        Path::new("t.toml"),
        &tickcap::config::Env::default(),
    )
    .unwrap();
    let now = tickcap::engine::Clock::system().now_micros();
    let clock =
        tickcap::engine::Clock::shifted((now / 60_000_000 + 1) * 60_000_000 - 1_000_000 - now);
    let engine = tickcap::engine::Engine::start(
        cfg,
        tickcap::engine::Options {
            clock,
            ..Default::default()
        },
    )
    .unwrap();
    let status = status_port(&engine);
    let stats = std::sync::Arc::clone(engine.stats());
    assert!(
        wait_until(Duration::from_secs(30), || stats
            .journal
            .candles_written
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 7),
        "{}",
        kafka_view(status)
    );
    assert!(
        wait_until(Duration::from_secs(60), || {
            let v = kafka_view(status);
            v["candles"][0]["acknowledged"].as_u64() >= Some(7)
                && v["candles"][0]["lag_records"] == 0
                && v["candles"][0]["in_flight"] == 0
        }),
        "{}",
        kafka_view(status)
    );
    assert_eq!(kafka_view(status)["candles"][0]["topic"], "bars_minute");
    common::halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    // What the shutdown wrote after the publisher stopped waits for the
    // next start: compare what was acknowledged, all of it once.
    let (positions, _) = consume_all(&broker.addr, "bars_minute");
    let mut seen = std::collections::HashSet::new();
    assert!(
        positions.iter().all(|p| seen.insert(p.clone())),
        "a bar published twice"
    );
    let lines = file_lines_in(
        &data,
        tickcap::days::Family::Candles(tickcap::candles::Interval::Minute),
    );
    let file_positions: std::collections::HashSet<&String> = lines.iter().map(|(p, _)| p).collect();
    assert!(positions.len() >= 7);
    assert!(
        positions.iter().all(|p| file_positions.contains(p)),
        "a record that is no line of the file"
    );
}
