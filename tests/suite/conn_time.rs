//! The connection state machine on fake time: a real loopback WebSocket
//! peer, a real mio loop, and a manual monotonic clock, so stale detection
//! and the reconnect backoff are tested without sleeping for them.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use tickcap::config::{ConnectionConfig, Role, Secret};
use tickcap::kite::Mode;
use tickcap::net::conn::HEALTHY_AFTER;
use tickcap::net::{ConnError, Connection, Context};
use tickcap::ring::{ring, Wake};
use tickcap::stats::Stats;
use tickcap::time::{Clock, ManualTime, Mono};
use tungstenite::Message;

/// What the peer does with each accepted connection.
#[derive(Clone, Copy)]
enum Peer {
    /// Upgrade, then hold the socket and send what the test asks for.
    Hold,
    /// Upgrade, then close at once (a feed that accepts and then breaks).
    AcceptThenClose,
}

/// Frames the test asks a held connection to send.
type Send = mpsc::Sender<Vec<u8>>;

fn peer(kind: Peer) -> (String, mpsc::Receiver<Send>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().take(64) {
            let Ok(s) = s else { return };
            let Ok(mut ws) = tungstenite::accept(s) else {
                continue;
            };
            match kind {
                Peer::AcceptThenClose => {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                }
                Peer::Hold => {
                    let (ftx, frx) = mpsc::channel::<Vec<u8>>();
                    if tx.send(ftx).is_err() {
                        return;
                    }
                    std::thread::spawn(move || {
                        while let Ok(f) = frx.recv() {
                            if ws.send(Message::binary(f)).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        }
    });
    (url, rx)
}

struct Rig {
    poll: Poll,
    conn: Connection,
    stats: Arc<Stats>,
    mono: Mono,
    clock: Arc<ManualTime>,
    _consumer: rtrb::Consumer<tickcap::ring::Stamped>,
}

const STALE: Duration = Duration::from_secs(5);

fn rig(url: &str) -> Rig {
    let poll = Poll::new().unwrap();
    let (mono, clock) = Mono::manual();
    let stats = Arc::new(Stats::default());
    let ctx = Context {
        stats: Arc::clone(&stats),
        wake: Arc::new(Wake::default()),
        clock: Clock::system(),
        mono: mono.clone(),
        stale_after: STALE,
        reconnect_max: Duration::from_secs(30),
        tls: None,
        resolver: tickcap::net::conn::system_resolver(),
        events: tickcap::events::Emitter::none(Clock::system()),
    };
    let cfg = ConnectionConfig {
        role: Role::Primary,
        url: url.to_owned(),
        api_key: "key".into(),
        access_token: Secret::new("token"),
        access_token_file: None,
        mode: Mode::Quote,
        instruments: vec![256_265],
    };
    let (p, c) = ring(1024);
    let mut conn = Connection::new(cfg, Token(0), p, &ctx);
    conn.start(poll.registry());
    Rig {
        poll,
        conn,
        stats,
        mono,
        clock,
        _consumer: c,
    }
}

impl Rig {
    /// Runs the loop (events, then timers at the fake now) until `cond`, or
    /// fails after a real-time deadline.
    fn until(&mut self, what: &str, mut cond: impl FnMut(&Connection, &Stats) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut events = Events::with_capacity(16);
        while !cond(&self.conn, &self.stats) {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            self.poll
                .poll(&mut events, Some(Duration::from_millis(5)))
                .unwrap();
            for _ in events.iter() {
                self.conn.on_event(self.poll.registry());
            }
            self.conn.on_timer(self.poll.registry(), self.mono.now());
        }
    }

    fn backoff_delay(&self) -> Duration {
        self.conn
            .next_deadline()
            .expect("backing off has a deadline")
            .saturating_duration_since(self.mono.now())
    }
}

#[test]
fn an_open_connection_with_no_frame_for_stale_after_is_dropped_and_retried() {
    let (url, frames) = peer(Peer::Hold);
    let mut r = rig(&url);
    r.until("open", |c, _| c.is_open());
    let _keep = frames.recv_timeout(Duration::from_secs(5)).unwrap();
    r.clock.advance(STALE - Duration::from_millis(1));
    r.conn.on_timer(r.poll.registry(), r.mono.now());
    assert!(r.conn.is_open(), "not stale a millisecond early");
    r.clock.advance(Duration::from_millis(1));
    r.conn.on_timer(r.poll.registry(), r.mono.now());
    assert!(!r.conn.is_open());
    assert_eq!(r.stats.conns[0].stale.load(Ordering::Relaxed), 1);
    assert_eq!(r.conn.last_error(), Some(&ConnError::Stale(5000)));
}

#[test]
fn a_feed_that_accepts_then_breaks_gets_a_growing_backoff() {
    let (url, _) = peer(Peer::AcceptThenClose);
    let mut r = rig(&url);
    let mut delays = Vec::new();
    for attempt in 1..=6u32 {
        r.until("the next failure", |c, _| {
            c.backoff_attempts() == attempt && !c.is_open() && c.next_deadline().is_some()
        });
        delays.push(r.backoff_delay());
        r.clock.advance(r.backoff_delay());
    }
    // Equal jitter: each delay lies in [ceiling/2, ceiling], ceilings 200 ms · 2^k.
    for (k, d) in delays.iter().enumerate() {
        let ceiling = Duration::from_millis(200 << k);
        assert!(
            *d >= ceiling / 2 && *d <= ceiling,
            "attempt {}: {d:?} not in [{:?}, {ceiling:?}] (the upgrade must not reset the backoff)",
            k + 1,
            ceiling / 2
        );
    }
    assert!(
        r.stats.conns[0].opens.load(Ordering::Relaxed) >= 5,
        "each attempt did upgrade"
    );
}

#[test]
fn the_backoff_resets_only_after_the_connection_proved_healthy() {
    let (url, frames) = peer(Peer::Hold);
    let mut r = rig(&url);
    r.until("open", |c, _| c.is_open());
    let _first = frames.recv_timeout(Duration::from_secs(5)).unwrap();
    // Make it fail twice by silence, so the backoff has grown.
    for n in 1..=2u32 {
        r.clock.advance(STALE);
        r.conn.on_timer(r.poll.registry(), r.mono.now());
        assert_eq!(r.conn.backoff_attempts(), n);
        r.clock.advance(r.backoff_delay());
        r.until("reopened", |c, _| c.is_open());
    }
    // The peer's sender for the third (current) connection.
    let _second = frames.recv_timeout(Duration::from_secs(5)).unwrap();
    let send = frames.recv_timeout(Duration::from_secs(5)).unwrap();
    // Heartbeats, but not yet for HEALTHY_AFTER: the backoff stays.
    send.send(vec![0]).unwrap();
    r.until("a heartbeat", |_, s| {
        s.conns[0].heartbeats.load(Ordering::Relaxed) >= 1
    });
    assert_eq!(r.conn.backoff_attempts(), 2);
    // Frames keep coming (never STALE apart) until HEALTHY_AFTER has passed.
    let half = HEALTHY_AFTER / 2;
    for n in 2..=3 {
        r.clock.advance(half);
        send.send(vec![0]).unwrap();
        r.until("a heartbeat", |_, s| {
            s.conns[0].heartbeats.load(Ordering::Relaxed) >= n
        });
        if n == 2 {
            assert_eq!(r.conn.backoff_attempts(), 2, "not yet proven");
        }
    }
    r.conn.on_timer(r.poll.registry(), r.mono.now());
    assert_eq!(
        r.conn.backoff_attempts(),
        0,
        "healthy: back to the base delay"
    );
    assert_eq!(r.conn.last_error(), None);
}
