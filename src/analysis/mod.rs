//! Tools over captured JSONL: `storage` (what is on disk), `analyze`
//! (statistics and plots) and `verify` (is the capture whole?).

pub mod analyze;
#[cfg(feature = "parquet")]
pub mod export;
#[cfg(feature = "plot")]
pub mod plot;
pub mod scan;
pub mod storage;
pub mod verify;
