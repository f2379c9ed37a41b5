//! tickcap: lossless market-data capture for Zerodha Kite's streaming
//! WebSocket into daily JSONL files.
//!
//! One module per pipeline stage (see `docs/architecture.md`):
//! - [`kite`]: the wire format (decode, encode, text frames, client requests);
//! - [`sink`]: JSONL lines, zone-aware times, (later) the writer and rotation;
//! - [`cli`]: the `tickcap` subcommands; `main.rs` only calls [`cli::main`].

pub mod analysis;
pub mod cli;
pub mod config;
pub mod engine;
pub mod kite;
pub mod net;
pub mod replay;
pub mod ring;
pub mod sink;
pub mod stats;
pub mod status;
pub mod time;
pub mod util;
