//! Hostile peers on loopback: a feed that floods one connection with
//! pings, one that sends huge and forged text frames, one that accepts and
//! breaks. Capture on the other connections and the status port must carry
//! on, and the log must stay bounded and honest (see docs/reliability.md).

use crate::common;

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::wait_until;
use tickcap::config::{Config, Env};
use tickcap::engine::{Engine, Options};
use tickcap::replay::Server;
use tickcap::status::client;
use tungstenite::Message;

/// A WebSocket peer that upgrades each connection and then runs `behave`
/// on it until `stop`.
fn hostile(
    behave: impl Fn(&mut tungstenite::WebSocket<std::net::TcpStream>, &AtomicBool)
        + Send
        + Sync
        + 'static,
) -> (String, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", l.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let st = Arc::clone(&stop);
    let behave = Arc::new(behave);
    std::thread::spawn(move || {
        for s in l.incoming().take(16) {
            let Ok(s) = s else { return };
            let (st2, behave) = (Arc::clone(&st), Arc::clone(&behave));
            std::thread::spawn(move || {
                if let Ok(mut ws) = tungstenite::accept(s) {
                    behave(&mut ws, &st2);
                }
            });
            if st.load(Ordering::Relaxed) {
                return;
            }
        }
    });
    (url, stop)
}

/// Primary on `primary_url`, secondary (2 instruments) on the replay feed.
fn engine_with(primary_url: &str, feed: &Server, dir: &Path) -> Engine {
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\nurl = {primary_url:?}\ninstruments = [256]\n\
         [secondary]\ninstruments = [512, 768]\n",
        feed.url(),
        dir.display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    Engine::start(cfg, Options::default()).unwrap()
}

#[test]
fn a_ping_flood_on_one_connection_starves_neither_the_others_nor_the_status_port() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(2_000, |_| {});
    let (url, stop) = hostile(|ws, stop| {
        let ping = Message::Ping(vec![7u8; 16].into());
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..256 {
                if ws.write(ping.clone()).is_err() {
                    return;
                }
            }
            if ws.flush().is_err() {
                return;
            }
        }
    });
    let engine = engine_with(&url, &feed, dir.path());
    let stats = Arc::clone(engine.stats());
    let status = format!("http://{}", engine.status_addr().unwrap());
    assert!(wait_until(Duration::from_secs(10), || stats.conns[0]
        .state()
        == tickcap::stats::StateName::Open));
    // The flood runs; the secondary captures and /health answers promptly.
    let before = stats.conns[1].ticks.load(Ordering::Relaxed);
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = client::get(&status, "/health").expect("/health answers under a ping flood");
        assert_eq!(r.status, 200);
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(1),
        "/health took {slowest:?} under a ping flood"
    );
    assert!(
        wait_until(Duration::from_secs(10), || stats.conns[1]
            .ticks
            .load(Ordering::Relaxed)
            > before + 1000),
        "the secondary kept capturing"
    );
    stop.store(true, Ordering::Relaxed);
    feed.halt();
    drop(engine);
}

#[test]
fn a_text_frame_that_is_not_utf8_is_counted_and_skipped_not_fatal() {
    use tickcap::kite::{encode_message, PacketKind, Tick};
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame;
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(500, |_| {});
    let (url, stop) = hostile(|ws, stop| {
        let ticks: Vec<Tick> = (0..10).map(|_| Tick::new(PacketKind::Ltp, 256)).collect();
        let mut msg = Vec::new();
        encode_message(&ticks, &mut msg);
        for _ in 0..100 {
            let bad = Frame::message(vec![0xff, 0xfe, b'x'], OpCode::Data(Data::Text), true);
            for m in [Message::binary(msg.clone()), Message::Frame(bad)] {
                if ws.send(m).is_err() {
                    return;
                }
            }
        }
        while !stop.load(Ordering::Relaxed) {
            if ws.send(Message::binary(vec![0u8])).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let engine = engine_with(&url, &feed, dir.path());
    let stats = Arc::clone(engine.stats());
    let c = &stats.conns[0];
    assert!(
        wait_until(Duration::from_secs(10), || c.ticks.load(Ordering::Relaxed)
            == 1000
            && c.bad_text_frames.load(Ordering::Relaxed) == 100),
        "ticks {}, bad text frames {}",
        c.ticks.load(Ordering::Relaxed),
        c.bad_text_frames.load(Ordering::Relaxed)
    );
    assert_eq!(c.opens.load(Ordering::Relaxed), 1, "never dropped");
    stop.store(true, Ordering::Relaxed);
    feed.halt();
    drop(engine);
}

#[test]
fn huge_forged_error_frames_leave_a_short_honest_log() {
    let dir = tempfile::tempdir().unwrap();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let (url, stop) = hostile(move |ws, stop| {
        let body = format!("boom\nFORGED tickcap line\0{}", "x".repeat(100_000));
        let text = serde_json::json!({"type": "error", "data": body}).to_string();
        while !stop.load(Ordering::Relaxed) {
            if ws.send(Message::text(text.clone())).is_err() {
                return;
            }
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let config = dir.path().join("tickcap.toml");
    std::fs::write(
        &config,
        format!(
            "[kite]\nurl = {url:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\n\
             [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256]\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(stderr)
        .spawn()
        .unwrap();
    // 2,000 frames of 100 KB: 200 MB of remote text.
    let flooded = wait_until(Duration::from_secs(30), || {
        sent.load(Ordering::Relaxed) >= 2_000
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(
        flooded,
        "the hostile feed sent {} frames",
        sent.load(Ordering::Relaxed)
    );
    assert!(status.success(), "{status:?}");
    let log = std::fs::read(dir.path().join("stderr")).unwrap();
    assert!(log.len() < 64 * 1024, "{} bytes of log", log.len());
    assert!(!log.contains(&0u8), "a raw NUL reached the log");
    let text = String::from_utf8_lossy(&log);
    assert!(
        !text.lines().any(|l| l.starts_with("FORGED")),
        "the feed forged a log line:\n{text}"
    );
    let shown = text.matches("Kite says error").count();
    assert!((1..=10).contains(&shown), "{shown} error lines:\n{text}");
    // The events journal: a few rate-limited records, each one line of
    // escaped, cut text; nothing in the orders file.
    let data = dir.path().join("data");
    let journal = tickcap::days::segments_in(&data, tickcap::days::Family::Events);
    let text = std::fs::read_to_string(&journal[0].path).unwrap();
    let errors: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v: &serde_json::Value| v["kind"] == "kite_error")
        .collect();
    assert!(
        (1..=60).contains(&errors.len()),
        "{} kite_error records",
        errors.len()
    );
    for e in &errors {
        let t = e["text"].as_str().unwrap();
        assert!(t.starts_with("boom\nFORGED"), "{t:.40}");
        assert!(t.chars().count() <= tickcap::events::TEXT_MAX + 1);
    }
    let orders = tickcap::days::segments_in(&data, tickcap::days::Family::Orders);
    assert!(orders
        .iter()
        .all(|s| std::fs::metadata(&s.path).unwrap().len() == 0));
}

/// An engine whose status port gives a request `deadline_ms` to arrive.
fn engine_with_deadline(
    feed: &Server,
    dir: &Path,
    deadline_ms: u64,
) -> (Engine, std::net::SocketAddr) {
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\n\
         [status]\nlisten = \"127.0.0.1:0\"\nrequest_deadline_ms = {deadline_ms}\n[primary]\ninstruments = [256]\n",
        feed.url(),
        dir.display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    let e = Engine::start(cfg, Options::default()).unwrap();
    let a = e.status_addr().unwrap();
    (e, a)
}

fn read_all(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slowloris_clients_cannot_hold_the_status_port() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(200, |_| {});
    // The default 10 s request deadline: eviction, not the deadline, is what
    // keeps /health reachable here.
    let (engine, addr) = engine_with_deadline(&feed, dir.path(), 10_000);
    let status = format!("http://{addr}");
    // 80 clients (more than the 64 slots), each trickling a request a byte
    // at a time, each byte well within any idle timer.
    let stop = Arc::new(AtomicBool::new(false));
    let trickled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let trickle: Vec<_> = (0..80)
        .map(|_| {
            let (stop, trickled) = (Arc::clone(&stop), Arc::clone(&trickled));
            std::thread::spawn(move || {
                let Ok(mut s) = std::net::TcpStream::connect(addr) else {
                    return 0;
                };
                let mut sent = 0;
                for b in b"GET /health HTTP/1.1\r\nX-Slow: "
                    .iter()
                    .chain(std::iter::repeat(&b'a'))
                {
                    if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                        break;
                    }
                    sent += 1;
                    trickled.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
                sent
            })
        })
        .collect();
    // Once their requests are older than the eviction age (1 s: 12 bytes
    // each at 100 ms), /health answers every time, promptly.
    assert!(wait_until(Duration::from_secs(20), || trickled
        .load(Ordering::Relaxed)
        >= 64 * 12));
    for _ in 0..20 {
        let t = Instant::now();
        let r = client::get(&status, "/health").expect("/health under slowloris");
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in trickle {
        let _ = t.join();
    }
    feed.halt();
    drop(engine);
    // A request whose body never arrives gets 408 in time.
    let (engine, addr) = engine_with_deadline(&feed, dir.path(), 500);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"POST /subscribe HTTP/1.1\r\nContent-Length: 100\r\n\r\n{}")
        .unwrap();
    let t = Instant::now();
    let reply = read_all(&mut s);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    feed.halt();
    drop(engine);
}

#[test]
fn a_large_body_sent_before_reading_gets_its_413_not_a_reset() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(200, |_| {});
    let (engine, addr) = engine_with_deadline(&feed, dir.path(), 500);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = vec![b'x'; 4 << 20];
    s.write_all(
        format!(
            "POST /subscribe HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    // Like Python's urllib: the whole body first, then read the answer.
    s.write_all(&body)
        .expect("the server reads (and discards) the body");
    let reply = read_all(&mut s);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply:?}");
    feed.halt();
    drop(engine);
}

#[test]
fn a_hanging_resolver_freezes_neither_the_other_connections_nor_the_status_port() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(2_000, |_| {});
    let hung = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let calls = Arc::clone(&hung);
    // A resolver that takes 3 s for every name (a dead DNS server).
    let resolver: tickcap::net::conn::Resolver = Arc::new(move |_host, _port| {
        calls.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(3));
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "resolver timed out",
        ))
    });
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\nurl = \"ws://feed.invalid:9\"\ninstruments = [256]\n\
         [secondary]\ninstruments = [512, 768]\n",
        feed.url(),
        dir.path().display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    let engine = Engine::start(
        cfg,
        Options {
            resolver: Some(resolver),
            ..Options::default()
        },
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    let status = format!("http://{}", engine.status_addr().unwrap());
    assert!(wait_until(Duration::from_secs(5), || hung
        .load(Ordering::Relaxed)
        >= 1));
    // The lookup hangs; the secondary captures and /health answers promptly.
    let before = stats.conns[1].ticks.load(Ordering::Relaxed);
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(client::get(&status, "/health").unwrap().status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(wait_until(Duration::from_secs(5), || stats.conns[1]
        .ticks
        .load(Ordering::Relaxed)
        > before + 500));
    let conns: serde_json::Value = client::get(&status, "/connections")
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(conns["connections"][0]["state"], "connecting", "{conns}");
    feed.halt();
    drop(engine);
}

fn mkfifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    let ok = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", p.display());
}

/// Runs `f` on a thread; its result, or None if it did not return within `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn a_fifo_for_the_token_or_instruments_file_is_an_error_naming_the_key_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(1000, |_| {});
    let token = dir.path().join("access_token");
    let list = dir.path().join("instruments.txt");
    std::fs::write(&token, "t\n").unwrap();
    std::fs::write(&list, "256\n").unwrap();
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token_file = \"access_token\"\n[storage]\ndata_dir = {:?}\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments_file = \"instruments.txt\"\n",
        feed.url(),
        dir.path().join("data").display().to_string()
    );
    let path = dir.path().join("tickcap.toml");
    std::fs::write(&path, &text).unwrap();

    // At start: each FIFO is a configuration error naming its key, at once.
    for (fifo, key) in [
        (&list, "primary.instruments_file"),
        (&token, "kite.access_token_file"),
    ] {
        mkfifo(fifo);
        let p = path.clone();
        let err = within(Duration::from_secs(2), move || {
            Config::load(&p, &Env::default())
                .map(|_| ())
                .unwrap_err()
                .to_string()
        })
        .expect("loading the config hangs on a FIFO");
        assert!(err.contains(key) && err.contains("FIFO"), "{err}");
        std::fs::remove_file(fifo).unwrap();
    }
    std::fs::write(&token, "t\n").unwrap();
    std::fs::write(&list, "256\n").unwrap();

    // At run time: the token file becomes a FIFO (the watcher reloads by
    // itself), then the instruments file; the status port answers within 1 s
    // throughout and capture goes on.
    let engine = common::start_with_file(&path, &text, Options::default());
    let url = format!("http://{}", engine.status_addr().unwrap());
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 100));
    mkfifo(&token);
    let slowest = |for_: Duration| {
        let end = Instant::now() + for_;
        let mut worst = Duration::ZERO;
        while Instant::now() < end {
            let t = Instant::now();
            let r = client::request(&url, "GET", "/health", None, None, Duration::from_secs(5))
                .expect("/health answers");
            assert_eq!(r.status, 200);
            worst = worst.max(t.elapsed());
        }
        worst
    };
    let worst = slowest(Duration::from_millis(2500));
    assert!(worst < Duration::from_secs(1), "/health took {worst:?}");
    std::fs::remove_file(&token).unwrap();
    std::fs::write(&token, "t\n").unwrap();
    mkfifo(&list);
    let t = Instant::now();
    let r = client::request(
        &url,
        "POST",
        "/reload",
        Some(b"{}"),
        None,
        Duration::from_secs(5),
    )
    .expect("/reload answers");
    assert_eq!(r.status, 422);
    assert!(
        String::from_utf8_lossy(&r.body).contains("primary.instruments_file"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(t.elapsed() < Duration::from_secs(1));
    let before = stats.lines_written();
    assert!(wait_until(Duration::from_secs(5), || stats.lines_written()
        > before + 100));
    let stopped = within(Duration::from_secs(5), move || engine.stop().is_ok());
    assert_eq!(stopped, Some(true), "stops cleanly and in time");
    feed.stop();
}
