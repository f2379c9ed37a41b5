//! The hub: tickcap's live feed served to any number of Kite ticker
//! clients on `[serve] listen`, in Kite's own protocol, so that a program
//! using an official client points it at tickcap instead of Kite and
//! changes nothing else.
//!
//! ```text
//!  event loop ── conn 1..3 ──► writer rings (capture, lossless)
//!                         └──► tee rings ──► hub thread (mio) ──► client sockets
//!                                              │ demand (token → highest mode wanted)
//!                                              └──► event loop: upstream subscribe/mode (auto_subscribe)
//! ```
//!
//! **Capture first.** The hub runs on its own thread. The event loop copies
//! ticks into the tee rings only while the hub has clients, never waits on
//! them (a full tee ring drops the copy, counted; the hub then disconnects
//! its clients saying so rather than serve a feed with a hole), and never
//! reads a client socket. Each client has a bounded send queue; a client
//! that falls behind past it is disconnected with a close frame giving the
//! reason.
//!
//! **Protocol.** The upgrade carries `api_key` and `access_token` in the
//! query (the token is checked against `[serve] token` when set; 403
//! otherwise, 429 past `max_clients`), then binary messages of packets in
//! each client's mode (a full tick asked in quote mode is sent as a quote
//! packet), Kite's 1-byte heartbeat every second, `error` text frames for
//! bad requests, and upstream `order`/`message` text frames forwarded once.

pub mod client;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use tungstenite::protocol::frame::coding::CloseCode;

use crate::dedup::{Dedup, Recent};
use crate::kite::{encode_packet, Mode, PacketKind, Tick};
use crate::ring::{Stamped, TeeSignal};
use crate::stats::{new_histogram, publish, ClientView, Disconnect, Stats};
use crate::time::Clock;
use client::{Client, Gate, Sent};

mod fanout;
mod hub_loop;
mod link;

pub use fanout::encode_for;
pub use link::{Demand, Link};

use link::rank;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const CLIENT_BASE: usize = 16;
/// Messages read from one client per turn (fairness between clients).
const READ_BUDGET: usize = 32;
/// Ticks taken from the tee rings per turn before clients are served.
const DRAIN_BUDGET: usize = 16_384;
/// A client must finish its upgrade within this long.
const UPGRADE_DEADLINE: Duration = Duration::from_secs(10);
/// Sockets beyond `max_clients` whose upgrade may be in flight at once.
const UPGRADE_MARGIN: usize = 64;
/// Under load, rounds of fan-out at most this often: each round costs a
/// write per client (and a wake-up of each client), so at 100k ticks/s
/// fewer, fuller messages halve the hub's and the clients' CPU. Applies
/// only while the last round carried ≥ [`BUSY_PACKETS`] packets per client:
/// at ordinary rates every tick goes out at once.
const COALESCE: Duration = Duration::from_millis(1);
/// Packets per client per round above which rounds are coalesced.
const BUSY_PACKETS: usize = 16;
/// An upstream text frame seen again within this long is not forwarded again
/// (each of the three connections receives the same order update).
const TEXT_DEDUP: Duration = Duration::from_secs(10);

/// How the hub runs.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The `access_token` clients must present, if any.
    pub token: Option<String>,
    /// Most clients at once.
    pub max_clients: usize,
    /// A client's send queue limit, bytes.
    pub send_queue_bytes: usize,
    /// Heartbeat period (Kite: 1 s).
    pub heartbeat: Duration,
    /// Publish what clients want, for the engine to subscribe upstream.
    pub auto_subscribe: bool,
    /// Hot standby: drop the second copy of each tick, as the writer does.
    pub dedup_window_micros: Option<i64>,
    /// The receive clock (latency).
    pub clock: Clock,
}

/// Puts the hub thread behind capture in the scheduler (SCHED_BATCH, nice
/// 10): clients are served with what capture leaves; measured in
/// docs/performance.md.
fn yield_to_capture() {
    crate::thread::yield_to_capture(10);
}

/// The running hub.
#[derive(Debug)]
pub struct Hub {
    thread: crate::thread::StoppableThread<()>,
    addr: SocketAddr,
}

impl Hub {
    /// Binds the serve port and starts the hub thread, fed by `consumers`
    /// (one tee ring per connection).
    pub fn start(
        cfg: HubConfig,
        consumers: Vec<rtrb::Consumer<Stamped>>,
        link: Arc<Link>,
        stats: Arc<Stats>,
    ) -> std::io::Result<Hub> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(cfg.listen)?;
        let addr = listener.local_addr()?;
        let _ = stats.serve.listen.set(addr);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        link.signal.set_waker(Arc::clone(&waker));
        let wake = Arc::clone(&waker);
        let thread = crate::thread::StoppableThread::spawn("tickcap-hub", None, move |st| {
            yield_to_capture();
            let mut h = HubLoop {
                dedup: cfg.dedup_window_micros.map(Dedup::new),
                cfg,
                poll,
                listener,
                clients: slab::Slab::new(),
                consumers,
                link,
                stats,
                stop: st,
                demand: Demand::default(),
                subscribers: Default::default(),
                scratch: [Vec::new(), Vec::new(), Vec::new()],
                hist: new_histogram(),
                recent_texts: Recent::new(TEXT_DEDUP.as_micros() as i64, 256),
                texts_epoch: Instant::now(),
                touched: Vec::new(),
                overflow_seen: 0,
                views_dirty: false,
                client_log: crate::util::LogLimit::new(20, Duration::from_secs(10)),
                last_round_packets: 0,
            };
            h.run();
        })?
        // Blocked in `poll`: the stop wakes it through its mio waker.
        .with_wake(move || {
            let _ = wake.wake();
        });
        Ok(Hub { thread, addr })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every client ("going away") and stops the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.thread.stop().is_err() {
            tracing::error!("the hub thread panicked");
        }
    }
}

struct HubLoop {
    cfg: HubConfig,
    poll: Poll,
    listener: TcpListener,
    /// Slot i is mio token CLIENT_BASE + i.
    /// Client slots: a client's slot is its mio token (`CLIENT_BASE` on).
    clients: slab::Slab<Client>,
    consumers: Vec<rtrb::Consumer<Stamped>>,
    link: Arc<Link>,
    stats: Arc<Stats>,
    stop: crate::thread::StopFlag,
    demand: Demand,
    /// Token → (client slot, mode) of every client subscribed to it.
    subscribers: crate::stats::TokenMap<Vec<(usize, Mode)>>,
    /// One encoding per mode of the tick being fanned out.
    scratch: [Vec<u8>; 3],
    dedup: Option<Dedup>,
    hist: Histogram<u64>,
    /// Text frames forwarded lately (Kite sends one per socket).
    recent_texts: Recent,
    /// The origin of `recent_texts`' times.
    texts_epoch: Instant,
    /// Clients with a batch started this turn.
    touched: Vec<usize>,
    overflow_seen: u64,
    /// A client came or went: publish the views at the end of the turn.
    views_dirty: bool,
    /// Client connects and disconnects are driven from outside: a few
    /// log lines per window, the rest counted (like the feed's texts).
    client_log: crate::util::LogLimit,
    /// Packets added to client batches in the last round.
    last_round_packets: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_is_the_highest_mode_any_client_wants() {
        let mut d = Demand::default();
        d.change(256, None, Some(Mode::Quote));
        d.change(256, None, Some(Mode::Full));
        assert_eq!(d.take_changed().unwrap()[&256], Mode::Full);
        assert!(d.take_changed().is_none(), "no change, nothing to publish");
        d.change(256, Some(Mode::Full), None);
        assert_eq!(d.take_changed().unwrap()[&256], Mode::Quote);
        d.change(256, Some(Mode::Quote), Some(Mode::Quote));
        assert!(d.take_changed().is_none());
        d.change(256, Some(Mode::Quote), None);
        assert!(d.take_changed().unwrap().is_empty(), "the last one left");
    }

    #[test]
    fn a_client_gets_the_packet_of_its_mode() {
        let mut full = Tick::new(PacketKind::Full, 408_065);
        full.last_price = 150_000;
        full.volume_traded = 77;
        let mut out = Vec::new();
        encode_for(&full, Mode::Full, &mut out);
        assert_eq!(out.len(), 184);
        encode_for(&full, Mode::Quote, &mut out);
        assert_eq!(out.len(), 44);
        let back = crate::kite::decode_packet(&out, 0).unwrap();
        assert_eq!((back.last_price, back.volume_traded), (150_000, 77));
        encode_for(&full, Mode::Ltp, &mut out);
        assert_eq!(out.len(), 8);
        // A quote tick for a full subscriber (upgrade in flight): as captured.
        let quote = Tick::new(PacketKind::Quote, 408_065);
        encode_for(&quote, Mode::Full, &mut out);
        assert_eq!(out.len(), 44);
    }
}
