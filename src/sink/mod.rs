//! The storage stage: ticks → JSONL lines → daily files.
//!
//! - [`line`]: one tick as one JSONL line, exactly as the official client's
//!   keys and numbers, plus `timestamp` and `connection_id`;
//! - `number` (re-exported from the base): Python-compatible number text;
//! - [`writer`]: the writer thread (ring merge, flush rule, fsync policy,
//!   rotation, retry);
//! - [`files`]: the daily files (names, torn-tail repair, retention);
//! - [`side`]: the journal thread (the events journal and the order
//!   updates, `crate::events`).
//!
//! Hot-standby dedup lives in the base (`crate::dedup`): the hub applies
//! the same rule to what it serves.
//!
//! The stage imports only the layers below it (`kite`, `ring`, `stats`,
//! `time`, `config`'s plain types), never the engine that runs it.

pub mod files;
pub mod line;
/// Python-compatible number text (in the base: candles share it).
pub use crate::number;
pub mod side;
pub mod writer;

pub use line::LineFormatter;
