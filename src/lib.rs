//! tickcap: lossless market-data capture for Zerodha Kite's streaming
//! WebSocket into daily JSONL files.
//!
//! Layers, each importing only those below it (see `docs/architecture.md`):
//!
//! - **base**: [`kite`] (the wire format: decode, encode, text frames,
//!   client requests, the ticker URL), [`time`] (receive clock, monotonic
//!   timer clock, zone-aware formatting), [`stats`] (live counters and
//!   histograms), [`ring`] (stamped ticks, the SPSC rings, the writer's
//!   wake-up), [`dedup`] (hot-standby copies), [`util`] (seeded RNG),
//!   [`config`] (the validated configuration);
//! - **stages**: [`net`] (the Kite connection state machine), [`sink`]
//!   (JSONL lines, the writer thread, daily files), [`status`] (the HTTP
//!   server the status port runs on, and its client), [`serve`] (the hub:
//!   the live feed served to Kite clients), [`replay`] (the
//!   Kite-compatible feed), [`analysis`] (offline reading of captures);
//! - **engine**: [`engine`] runs the stages: the event loop, failover,
//!   reload and the status endpoints;
//! - **cli**: [`cli`], the `tickcap` subcommands; `main.rs` only calls
//!   [`cli::main`].

pub mod analysis;
pub mod candles;
pub mod cli;
pub mod config;
pub mod days;
pub mod dedup;
pub mod engine;
pub mod events;
/// The Kite wire format, from the `tickcap-kite` crate (no I/O; usable by
/// any Rust Kite program).
pub use tickcap_kite as kite;
pub mod net;
pub mod number;
#[cfg(feature = "kafka")]
pub mod publish;
pub mod replay;
pub mod ring;
pub mod serve;
pub mod sink;
pub mod stats;
pub mod status;
pub mod thread;
pub mod time;
pub mod util;
pub mod zst;
