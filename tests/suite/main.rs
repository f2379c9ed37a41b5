//! tickcap's integration tests, one binary.
//!
//! Each module below was its own test binary; one binary links tickcap and
//! its dependencies once instead of 21 times, and lets the harness run
//! every test in one pool (`--test-threads`) instead of one file after the
//! other. Run one file's tests with its module path as the filter, e.g.
//! `cargo test --test suite failover::`.

mod common;

mod candles;
mod codec_props;
#[cfg(feature = "kafka")]
mod composition;
mod conn_time;
mod coverage;
mod dead_disk;
mod engine;
#[cfg(feature = "parquet")]
mod export;
mod failover;
mod golden;
mod hostile;
mod instruments;
#[cfg(feature = "kafka")]
mod kafka;
mod ledger;
mod lifecycle;
mod login;
mod replay;
mod replay_cli;
mod run_cli;
mod serve;
mod serve_python;
mod status;
mod tls;
mod tools;
mod web_page;
mod zstd;
