//! Tools over captured JSONL: `storage` (what is on disk), `analyze`
//! (statistics and plots), `verify` (is the capture whole?) and `coverage`
//! (when was each instrument captured, from the events journal).

pub mod analyze;
pub mod candles;
pub mod coverage;
#[cfg(feature = "parquet")]
pub mod export;
pub mod fastline;
#[cfg(feature = "plot")]
pub mod plot;
pub mod scan;
pub mod storage;
pub mod verify;
