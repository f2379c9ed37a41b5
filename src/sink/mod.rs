//! The storage stage: ticks → JSONL lines → daily files.
//!
//! - [`line`]: one tick as one JSONL line, exactly as the official client's
//!   keys and numbers, plus `timestamp` and `connection_id`;
//! - [`number`]: Python-compatible number text;
//! - [`clock`]: epoch times as ISO 8601 in the configured zone.

pub mod clock;
pub mod dedup;
pub mod files;
pub mod line;
pub mod number;
pub mod writer;

pub use clock::{LocalDate, ZoneClock};
pub use line::LineFormatter;
