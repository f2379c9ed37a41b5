//! The config file as TOML reads it: every section and key, typed but not
//! yet validated (unknown keys are refused here).

use super::*;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) kite: RawKite,
    #[serde(default)]
    pub(super) storage: RawStorage,
    #[serde(default)]
    pub(super) status: RawStatus,
    #[serde(default)]
    pub(super) primary: RawConn,
    #[serde(default)]
    pub(super) secondary: RawConn,
    #[serde(default)]
    pub(super) tertiary: RawConn,
    #[serde(default)]
    pub(super) engine: RawEngine,
    pub(super) serve: Option<RawServe>,
    pub(super) kafka: Option<RawKafka>,
    pub(super) candles: Option<RawCandles>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCandles {
    pub(super) intervals: Option<Vec<String>>,
    pub(super) repair: Option<bool>,
    pub(super) repair_delay_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKafka {
    pub(super) brokers: Option<String>,
    pub(super) topic: Option<String>,
    pub(super) orders_topic: Option<String>,
    pub(super) candles_topic: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) properties: Option<std::collections::BTreeMap<String, toml::Value>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServe {
    pub(super) listen: Option<String>,
    pub(super) token: Option<Secret>,
    pub(super) auto_subscribe: Option<bool>,
    pub(super) max_clients: Option<usize>,
    pub(super) send_queue_kib: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKite {
    pub(super) url: Option<String>,
    pub(super) api_key: Option<String>,
    pub(super) access_token: Option<Secret>,
    pub(super) access_token_file: Option<PathBuf>,
    /// Used by `tickcap login` only (see [`Account`]).
    pub(super) api_secret: Option<Secret>,
    pub(super) api_root: Option<String>,
    pub(super) redirect_url: Option<String>,
    pub(super) instruments_dump: Option<bool>,
    pub(super) instruments_refresh: Option<String>,
}

/// One entry of an `instruments` list: a token or `"EXCHANGE:SYMBOL"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawInstrument {
    Token(i64),
    Symbol(String),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) timezone: Option<String>,
    pub(super) fsync: Option<FsyncPolicy>,
    pub(super) flush_interval_ms: Option<u64>,
    pub(super) fsync_interval_ms: Option<u64>,
    pub(super) retention_days: Option<u32>,
    pub(super) shutdown_write_limit_ms: Option<u64>,
    pub(super) compression: Option<String>,
    pub(super) zstd_level: Option<i32>,
    pub(super) compress_closed_days: Option<bool>,
    pub(super) export_closed_days: Option<String>,
    pub(super) export_dir: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatus {
    pub(super) listen: Option<String>,
    pub(super) token: Option<Secret>,
    pub(super) request_deadline_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConn {
    pub(super) mode: Option<String>,
    pub(super) instruments: Option<Vec<RawInstrument>>,
    pub(super) instruments_file: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) api_key: Option<String>,
    pub(super) access_token: Option<Secret>,
    pub(super) access_token_file: Option<PathBuf>,
    pub(super) failover_after_ms: Option<u64>,
    pub(super) warm: Option<bool>,
    pub(super) mirror: Option<bool>,
    pub(super) dedup_window_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEngine {
    pub(super) ring_capacity: Option<usize>,
    pub(super) writer_core: Option<usize>,
    pub(super) stale_after_ms: Option<u64>,
    pub(super) reconnect_max_ms: Option<u64>,
}

/// TOML syntax, types and unknown keys; no validation yet.
pub(super) fn parse_raw(text: &str, path: &Path) -> Result<RawFile, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}
