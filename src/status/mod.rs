//! The status port's transport: an HTTP/1.1 server that runs as a guest of
//! the engine's mio loop (no second thread), the tick-rate sampler, the
//! live web page, and the small client `tickcap status`/`doctor` use.
//!
//! What the endpoints answer is the engine's business (`engine::api`): this
//! module knows requests and responses, not connections or configs.

pub mod client;
pub mod http;
pub mod rates;

use std::net::SocketAddr;
use std::time::Instant;

use mio::{Registry, Token};

pub use http::{Request, Response};
pub use rates::Rates;

/// The self-contained web page served at `/`.
pub const PAGE: &str = include_str!("page.html");

/// The status port's state in the event loop.
pub struct StatusPort {
    server: http::Server,
    /// Tick rates.
    pub rates: Rates,
}

impl StatusPort {
    /// Binds the listener; clients use tokens from `first_token`.
    pub fn bind(
        addr: SocketAddr,
        registry: &Registry,
        listener: Token,
        first_token: usize,
        request_deadline: std::time::Duration,
    ) -> std::io::Result<Self> {
        let server = http::Server::bind(addr, registry, listener, first_token, request_deadline)?;
        Ok(StatusPort {
            server,
            rates: Rates::default(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.local_addr()
    }

    /// Whether an event token is the status port's.
    pub fn owns(&self, token: Token) -> bool {
        self.server.owns(token)
    }

    /// (open clients, requests served, requests rejected).
    pub fn http_counts(&self) -> (usize, u64, u64) {
        (
            self.server.clients(),
            self.server.served,
            self.server.rejected,
        )
    }

    /// Handles a socket event; `handle` answers each request.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        token: Token,
        handle: &mut dyn FnMut(&Request, &Rates) -> Response,
    ) {
        let rates = &self.rates;
        self.server
            .on_event(registry, token, &mut |req| handle(req, rates));
    }

    /// Idle clients, rate samples.
    pub fn on_timer(
        &mut self,
        registry: &Registry,
        now: Instant,
        now_secs: i64,
        stats: &crate::stats::Stats,
    ) {
        self.server.on_timer(registry, now);
        self.rates.sample(now, now_secs, stats);
    }
}
