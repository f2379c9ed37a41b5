//! `tickcap.toml` plus environment: parsed once at the edge, validated, and
//! handed to the engine as plain values.
//!
//! Unknown keys are errors (typos must not be silent). Kite's limits are
//! enforced at load: at most 3000 instruments per connection, no instrument
//! on both primary and secondary. `KITE_API_KEY` and `KITE_ACCESS_TOKEN`
//! override the file. The access token is a [`Secret`]: its `Debug` and
//! `Display` show only a redacted form.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::kite::instruments::{normalize_symbol, Directory};
use crate::kite::Mode;
use crate::time::ZoneFormatter;

mod parse;
mod raw;
mod secret;

use parse::{read_text, Parser};
use raw::parse_raw;
pub use secret::Secret;

/// Kite's limit of instruments per connection.
pub const MAX_INSTRUMENTS: usize = 3000;

/// A configuration that cannot be used; the message names the file, key and value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// TOML syntax, a wrong type or an unknown key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message (names the key and line).
        message: String,
    },
    /// A value out of range or inconsistent with another.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The dotted key at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// When the writer calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Never (the OS decides); still on rotation and shutdown.
    Never,
    /// At most once per `fsync_interval_ms` while data is written.
    Interval,
    /// After every write.
    Batch,
}

impl FsyncPolicy {
    /// The name used in the config and on the status port.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Never => "never",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Batch => "batch",
        }
    }
}

/// The role of each of the three connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Connection 1: the trading universe.
    Primary,
    /// Connection 2: full mode on demand.
    Secondary,
    /// Connection 3: failover.
    Tertiary,
}

impl Role {
    /// All roles, by connection id order.
    pub const ALL: [Role; 3] = [Role::Primary, Role::Secondary, Role::Tertiary];

    /// The connection id (1, 2, 3) written in every line.
    pub fn connection_id(self) -> u8 {
        match self {
            Role::Primary => 1,
            Role::Secondary => 2,
            Role::Tertiary => 3,
        }
    }

    /// The config section name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
            Role::Tertiary => "tertiary",
        }
    }
}

/// Where and as whom one connection connects, and what it subscribes.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    /// Its role.
    pub role: Role,
    /// `wss://ws.kite.trade` or a replay feed's `ws://127.0.0.1:PORT`.
    pub url: String,
    /// The API key.
    pub api_key: String,
    /// The access token.
    pub access_token: Secret,
    /// The file it was read from (watched: a new token is picked up without
    /// a restart), when it came from one.
    pub access_token_file: Option<PathBuf>,
    /// The mode its instruments are set to.
    pub mode: Mode,
    /// Its instruments, in config order, without duplicates.
    pub instruments: Vec<u32>,
}

/// The storage section.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Where the daily files go.
    pub data_dir: PathBuf,
    /// IANA zone for the day boundary and offsets.
    pub timezone: String,
    /// fsync policy.
    pub fsync: FsyncPolicy,
    /// Longest time a received tick waits before it is written.
    pub flush_interval_ms: u64,
    /// With `fsync = "interval"`: the longest time between syncs.
    pub fsync_interval_ms: u64,
    /// Daily files older than this many days are deleted (0 keeps all).
    pub retention_days: u32,
    /// At shutdown, how long the writer keeps trying a failing disk before
    /// it saves the unwritten lines to a recovery file and exits non-zero.
    pub shutdown_write_limit_ms: u64,
    /// zstd level of `market_data_DAY.jsonl.zst`, or `None` for plain JSONL.
    pub zstd_level: Option<i32>,
    /// Plain capture: compress each closed day to `.jsonl.zst` in the
    /// background at rotation (and closed days left plain, at start), at
    /// this level.
    pub compress_closed_days: Option<i32>,
    /// `export_closed_days = "parquet"`: where each closed day's Parquet
    /// export goes (`export_dir`, default `DATA_DIR/parquet`); `None`: off.
    pub export_closed_days: Option<PathBuf>,
}

/// The hub: tickcap's live feed served to Kite ticker clients.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Where clients connect (`ws://ADDR/?api_key=..&access_token=..`).
    pub listen: std::net::SocketAddr,
    /// The `access_token` a client must present (required off loopback).
    pub token: Option<Secret>,
    /// Subscribe upstream what a client asks and tickcap does not capture.
    pub auto_subscribe: bool,
    /// The most clients at once; the next gets HTTP 429.
    pub max_clients: usize,
    /// A client whose unsent bytes pass this is disconnected (too slow).
    pub send_queue_bytes: usize,
}

/// Publishing every captured tick to Apache Kafka (`[kafka]`).
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port,host:port`.
    pub brokers: String,
    /// The topic (it must exist; its partition count is read at start).
    pub topic: String,
    /// The topic for Kite's order updates (`orders_…` files), if any.
    pub orders_topic: Option<String>,
    /// The prefix of the candle topics: `{prefix}_{interval}` (e.g.
    /// `candles_minute`) for each `[candles]` interval, if any.
    pub candles_topic: Option<String>,
    /// `client.id`.
    pub client_id: String,
    /// librdkafka properties passed through (TLS, SASL, tuning), as given.
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    /// The topic of `interval`'s candles: `{candles_topic}_{interval}`.
    pub fn candles_topic_for(&self, interval: crate::candles::Interval) -> Option<String> {
        self.candles_topic
            .as_ref()
            .map(|p| format!("{p}_{}", interval.kite_name()))
    }
}

/// Kite's daily instruments dump: whether tickcap fetches it, from where,
/// as whom, and when (see `net::dump`).
#[derive(Debug, Clone, PartialEq)]
pub struct DumpConfig {
    /// Fetch it at start and daily. Default: on when a connection goes to
    /// Kite itself or a symbol is configured; off for local feeds (demo,
    /// replay), which have no REST API.
    pub enabled: bool,
    /// Kite's REST root (`[kite] api_root`, default `https://api.kite.trade`).
    pub api_root: String,
    /// The API key sent with the request (the primary's).
    pub api_key: String,
    /// The access token sent with the request (the primary's).
    pub access_token: Secret,
    /// Local time (storage zone) of the daily refresh, minutes after
    /// midnight: `[kite] instruments_refresh = "08:30"`, before the 09:15 open.
    pub refresh_minute: u32,
    /// Whether any instrument list names a symbol (a new dump may then
    /// move it to another token: the engine reloads after a refresh).
    pub symbols_used: bool,
}

/// Resolves `EXCHANGE:SYMBOL` entries. Asked only when the file names a
/// symbol; the service passes a loader that fetches or reads the dump, a
/// reload passes the dump already in use.
pub trait Symbols {
    /// The directory to resolve against.
    fn directory(
        &self,
        dump: &DumpConfig,
        storage: &StorageConfig,
    ) -> Result<Arc<Directory>, String>;
}

/// No dump at hand: a symbol in the file is an error saying so.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSymbols;

impl Symbols for NoSymbols {
    fn directory(&self, _: &DumpConfig, _: &StorageConfig) -> Result<Arc<Directory>, String> {
        Err("no instruments dump is at hand to resolve it (numeric tokens always work)".to_owned())
    }
}

/// A dump already loaded.
impl Symbols for Arc<Directory> {
    fn directory(&self, _: &DumpConfig, _: &StorageConfig) -> Result<Arc<Directory>, String> {
        Ok(self.clone())
    }
}

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The three connections (primary, secondary, tertiary).
    pub connections: [ConnectionConfig; 3],
    /// Storage.
    pub storage: StorageConfig,
    /// Status port address.
    pub status_listen: std::net::SocketAddr,
    /// Bearer token for control calls.
    pub status_token: Option<Secret>,
    /// A status request must arrive whole within this long (slowloris).
    pub status_request_deadline_ms: u64,
    /// Tertiary takes over after a connection is down this long.
    pub failover_after_ms: u64,
    /// Keep the tertiary connected while idle.
    pub tertiary_warm: bool,
    /// Hot standby: the tertiary mirrors the primary (with its own key) and
    /// the writer drops the second copy of each tick.
    pub tertiary_mirror: bool,
    /// Two copies of a tick further apart than this are both kept.
    pub dedup_window_ms: u64,
    /// Capacity of each SPSC ring, in ticks.
    pub ring_capacity: usize,
    /// Core the writer thread is pinned to.
    pub writer_core: Option<usize>,
    /// An open connection with no frame for this long is stale.
    pub stale_after_ms: u64,
    /// Cap of the reconnect backoff.
    pub reconnect_max_ms: u64,
    /// The instruments dump.
    pub dump: DumpConfig,
    /// The hub (`[serve]`), off unless configured.
    pub serve: Option<ServeConfig>,
    /// Kafka publishing (`[kafka]`), off unless configured.
    pub kafka: Option<KafkaConfig>,
    /// Candle intervals built live (`[candles] intervals`), none unless configured.
    pub candles: Vec<crate::candles::Interval>,
    /// The service's own repair of today's incomplete and missing bars from
    /// Kite's historical API (`[candles] repair = true`), off unless set.
    pub candle_repair: Option<CandleRepair>,
}

/// `[candles] repair = true`: when the service fetches Kite's bars for the
/// bars its gaps made incomplete or missing (see `engine::repair`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandleRepair {
    /// How long after a bar ends Kite is asked for it
    /// (`repair_delay_ms`, default 60,000: Kite publishes a minute's candle
    /// shortly after the minute; at least 3,000, past the bars' grace).
    pub delay_ms: u64,
}

/// Environment values that override the file (`KITE_API_KEY`, `KITE_ACCESS_TOKEN`).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `KITE_API_KEY`.
    pub api_key: Option<String>,
    /// `KITE_ACCESS_TOKEN`.
    pub access_token: Option<Secret>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Env {
            api_key: std::env::var("KITE_API_KEY").ok().filter(|s| !s.is_empty()),
            access_token: std::env::var("KITE_ACCESS_TOKEN")
                .ok()
                .filter(|s| !s.is_empty())
                .map(Secret),
        }
    }
}

impl Config {
    /// Loads and validates `path` with `env` applied.
    pub fn load(path: &Path, env: &Env) -> Result<Config, ConfigError> {
        Config::parse(&read_text(path)?, path, env)
    }

    /// Loads `path`, resolving symbols through `symbols`.
    pub fn load_with(path: &Path, env: &Env, symbols: &dyn Symbols) -> Result<Config, ConfigError> {
        Config::parse_with(&read_text(path)?, path, env, symbols)
    }

    /// Parses and validates TOML text; `path` names it in errors and
    /// anchors relative `instruments_file` paths. A symbol is an error here
    /// (no dump): see [`Config::parse_with`].
    pub fn parse(text: &str, path: &Path, env: &Env) -> Result<Config, ConfigError> {
        Config::parse_with(text, path, env, &NoSymbols)
    }

    /// [`Config::parse`] with `EXCHANGE:SYMBOL` entries resolved by `symbols`.
    pub fn parse_with(
        text: &str,
        path: &Path,
        env: &Env,
        symbols: &dyn Symbols,
    ) -> Result<Config, ConfigError> {
        let raw = parse_raw(text, path)?;
        let mut p = Parser {
            path,
            env,
            raw: &raw,
            symbols,
            directory: RefCell::new(None),
            storage: None,
            dump: None,
        };
        let storage = p.storage(&raw.storage)?;
        let dump = p.dump_config()?;
        p.storage = Some(storage.clone());
        p.dump = Some(dump.clone());
        let [primary, secondary, mut tertiary] = [
            p.connection(Role::Primary, &raw.primary, Mode::Quote)?,
            p.connection(Role::Secondary, &raw.secondary, Mode::Full)?,
            p.connection(Role::Tertiary, &raw.tertiary, Mode::Quote)?,
        ];
        let mirror = raw.tertiary.mirror.unwrap_or(false);
        if mirror {
            p.mirror_primary(&primary, &mut tertiary)?;
        }
        p.no_overlap("secondary.instruments", &secondary, &primary)?;
        if !mirror {
            p.no_overlap("tertiary.instruments", &tertiary, &primary)?;
            p.no_overlap("tertiary.instruments", &tertiary, &secondary)?;
        }
        let engine = &raw.engine;
        let symbols_used = p.directory.borrow().is_some();
        let candle_repair = raw
            .candles
            .as_ref()
            .map(|c| p.candle_repair(c, &dump))
            .transpose()?
            .flatten();
        Ok(Config {
            connections: [primary, secondary, tertiary],
            storage,
            status_listen: p.listen_addr(
                "status.listen",
                raw.status.listen.as_deref().unwrap_or("127.0.0.1:8080"),
            )?,
            status_token: raw.status.token.clone(),
            status_request_deadline_ms: p.in_range(
                "status.request_deadline_ms",
                raw.status.request_deadline_ms.unwrap_or(10_000),
                100..=600_000,
            )?,
            failover_after_ms: raw.tertiary.failover_after_ms.unwrap_or(3000),
            tertiary_warm: raw.tertiary.warm.unwrap_or(false),
            tertiary_mirror: mirror,
            dedup_window_ms: p.in_range(
                "tertiary.dedup_window_ms",
                raw.tertiary.dedup_window_ms.unwrap_or(1000),
                1..=60_000,
            )?,
            ring_capacity: p.in_range(
                "engine.ring_capacity",
                engine.ring_capacity.unwrap_or(65_536),
                1024..=(1 << 24),
            )?,
            writer_core: p.writer_core(engine.writer_core)?,
            stale_after_ms: p.in_range(
                "engine.stale_after_ms",
                engine.stale_after_ms.unwrap_or(5000),
                100..=3_600_000,
            )?,
            reconnect_max_ms: p.in_range(
                "engine.reconnect_max_ms",
                engine.reconnect_max_ms.unwrap_or(30_000),
                100..=3_600_000,
            )?,
            dump: DumpConfig {
                symbols_used,
                ..dump
            },
            serve: raw.serve.as_ref().map(|s| p.serve(s)).transpose()?,
            kafka: raw.kafka.as_ref().map(|k| p.kafka(k)).transpose()?,
            candles: raw
                .candles
                .as_ref()
                .map(|c| p.candles(c))
                .transpose()?
                .unwrap_or_default(),
            candle_repair,
        })
    }

    /// The connection of `role`.
    pub fn connection(&self, role: Role) -> &ConnectionConfig {
        &self.connections[usize::from(role.connection_id() - 1)]
    }
}

/// What `tickcap login` needs of the config: only `[kite]` and `[status]`,
/// read without the rest of the validation (there is no token yet).
#[derive(Debug, Clone)]
pub struct Account {
    /// The API key (`KITE_API_KEY` wins, as for the service).
    pub api_key: String,
    /// The API secret (`KITE_API_SECRET` wins); never logged or shown.
    pub api_secret: Secret,
    /// Kite's REST root, default `https://api.kite.trade`.
    pub api_root: String,
    /// Where the access token is written (relative to the config file).
    pub access_token_file: Option<PathBuf>,
    /// The app's redirect URL, e.g. `http://127.0.0.1:5000/`: login listens
    /// there once for the `request_token`.
    pub redirect_url: Option<String>,
    /// The service's status port and token, to ask it to reload.
    pub status_listen: String,
    /// Bearer token for control calls.
    pub status_token: Option<Secret>,
}

impl Account {
    /// Reads `[kite]` and `[status]` of `path`, with the environment.
    pub fn load(
        path: &Path,
        env_key: Option<String>,
        env_secret: Option<String>,
    ) -> Result<Account, ConfigError> {
        let raw = parse_raw(&read_text(path)?, path)?;
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
        };
        let k = raw.kite;
        let api_key = env_key
            .or(k.api_key)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("kite.api_key", "needed to log in (or KITE_API_KEY)"))?;
        let api_secret = env_secret
            .map(Secret::new)
            .or(k.api_secret)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("kite.api_secret", "needed to log in (or KITE_API_SECRET)"))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(Account {
            api_key,
            api_secret,
            api_root: k
                .api_root
                .unwrap_or_else(|| "https://api.kite.trade".to_owned())
                .trim_end_matches('/')
                .to_owned(),
            access_token_file: k.access_token_file.map(|f| base.join(f)),
            redirect_url: k.redirect_url,
            status_listen: raw
                .status
                .listen
                .unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
            status_token: raw.status.token,
        })
    }
}

/// The `[status] listen` address a config file names (default
/// 127.0.0.1:8080), without validating the rest: what `tickcap status
/// --config` needs to find a running service.
pub fn status_listen_of(path: &Path) -> Result<std::net::SocketAddr, ConfigError> {
    let raw = parse_raw(&read_text(path)?, path)?;
    let text = raw.status.listen.as_deref().unwrap_or("127.0.0.1:8080");
    text.parse().map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: format!("status.listen = {text:?}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("tickcap.toml"), &Env::default())
    }

    const GOOD: &str = r#"
[kite]
url = "ws://127.0.0.1:9001"
api_key = "key"
access_token = "abcdefghijklmnopqrstuvwxyz"
[storage]
data_dir = "/tmp/md"
fsync = "batch"
[primary]
mode = "quote"
instruments = [408065, 738561]
[secondary]
instruments = [256265]
[tertiary]
failover_after_ms = 1500
"#;

    #[test]
    fn candle_repair_and_closed_day_exports_are_checked() {
        let with = |extra: &str| parse(&format!("{GOOD}{extra}"));
        let r = with("[candles]\nintervals = [\"1m\", \"day\"]\nrepair = true\n").unwrap();
        assert_eq!(r.candle_repair, Some(CandleRepair { delay_ms: 60_000 }));
        assert!(with("[candles]\nintervals = [\"1m\"]\n")
            .unwrap()
            .candle_repair
            .is_none());
        for bad in [
            "[candles]\nintervals = [\"day\"]\nrepair = true\n",
            "[candles]\nrepair = true\n",
            "[candles]\nintervals = [\"1m\"]\nrepair = true\nrepair_delay_ms = 1000\n",
        ] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains("candles.repair"), "{bad}: {e}");
        }
        let text = GOOD.replace(
            "fsync = \"batch\"",
            "fsync = \"batch\"\nexport_closed_days = \"parquet\"",
        );
        #[cfg(feature = "parquet")]
        assert_eq!(
            parse(&text).unwrap().storage.export_closed_days,
            Some(std::path::PathBuf::from("/tmp/md/parquet"))
        );
        // Without the feature the setting is refused, naming it.
        #[cfg(not(feature = "parquet"))]
        assert!(parse(&text)
            .unwrap_err()
            .to_string()
            .contains("export_closed_days"));
        let bad = GOOD.replace(
            "fsync = \"batch\"",
            "fsync = \"batch\"\nexport_closed_days = \"csv\"",
        );
        assert!(parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("export_closed_days"));
        let dir_alone = GOOD.replace(
            "fsync = \"batch\"",
            "fsync = \"batch\"\nexport_dir = \"/x\"",
        );
        assert!(parse(&dir_alone)
            .unwrap_err()
            .to_string()
            .contains("export_dir"));
    }

    #[test]
    fn a_good_file_loads_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.connections[0].instruments, [408_065, 738_561]);
        assert_eq!(
            c.connections[1].mode,
            Mode::Full,
            "secondary defaults to full"
        );
        assert_eq!(c.connections[2].url, "ws://127.0.0.1:9001");
        assert_eq!(c.storage.fsync, FsyncPolicy::Batch);
        assert_eq!(c.storage.timezone, "Asia/Kolkata");
        assert_eq!(c.failover_after_ms, 1500);
        assert_eq!(c.storage.flush_interval_ms, 50);
    }

    #[test]
    fn env_overrides_the_file_and_the_token_is_never_printed() {
        let env = Env {
            api_key: Some("envkey".into()),
            access_token: Some(Secret::new("zzzzzzzzzzzzzzzzSECRET")),
        };
        let c = Config::parse(GOOD, Path::new("t.toml"), &env).unwrap();
        assert_eq!(c.connections[0].api_key, "envkey");
        assert_eq!(
            c.connections[0].access_token.expose(),
            "zzzzzzzzzzzzzzzzSECRET"
        );
        let shown = format!("{c:?} {}", c.connections[0].access_token);
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!format!("{c:?}").contains("abcdefghijklmnopqrstuvwxyz"));
    }

    #[test]
    fn errors_name_the_key_at_fault() {
        let cases = [
            ("[storage]\nfsync_policy = \"never\"\n", "fsync_policy"),
            ("[primary]\nmode = \"fast\"\n", "primary.mode"),
            ("[kite]\napi_key=\"k\"\naccess_token=\"t\"\n[primary]\ninstruments = [1, 2]\n[secondary]\ninstruments = [2]\n", "secondary.instruments"),
            ("[primary]\ninstruments = [-5]\n", "primary.instruments"),
            ("[storage]\ntimezone = \"Mars/Base\"\n", "storage.timezone"),
            ("[kite]\nurl = \"http://x\"\n", "kite.url"),
            ("[primary]\ninstruments = [1]\n", "kite.api_key"),
            ("[engine]\nring_capacity = 3\n", "engine.ring_capacity"),
            ("[primary]\nfailover_after_ms = 1\n", "primary.failover_after_ms"),
            ("[status]\nlisten = \"nowhere\"\n", "status.listen"),
            ("[tertiary]\nwarm = true\n[primary]\nwarm = true\n", "primary.warm"),
            ("[secondary]\nmirror = true\n", "secondary.mirror"),
            ("[primary]\ndedup_window_ms = 5\n", "primary.dedup_window_ms"),
            ("[kite]\napi_key=\"k\"\naccess_token=\"t\"\n[primary]\ninstruments = [1, 2, 1]\n", "primary.instruments"),
            ("[kite]\napi_key=\"k\"\naccess_token=\"t\"\n[primary]\ninstruments = [1]\n[tertiary]\ninstruments = [1]\n", "tertiary.instruments"),
            ("[engine]\nstale_after_ms = 0\n", "engine.stale_after_ms"),
        ];
        for (text, key) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn more_than_3000_instruments_is_an_error() {
        let list: Vec<String> = (1..=3001).map(|i| i.to_string()).collect();
        let text = format!(
            "[kite]\napi_key=\"k\"\naccess_token=\"t\"\n[primary]\ninstruments = [{}]\n",
            list.join(",")
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("3001 instruments"), "{e}");
    }

    #[test]
    fn instruments_file_with_comments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("u.txt"),
            "# universe\n408065\n\n738561 # RELIANCE\n",
        )
        .unwrap();
        let cfg = dir.path().join("tickcap.toml");
        let text =
            "[kite]\napi_key=\"k\"\naccess_token=\"t\"\n[primary]\ninstruments_file = \"u.txt\"\n";
        let c = Config::parse(text, &cfg, &Env::default()).unwrap();
        assert_eq!(c.connections[0].instruments, [408_065, 738_561]);
        std::fs::write(dir.path().join("u.txt"), "408065\nabc\n").unwrap();
        let e = Config::parse(text, &cfg, &Env::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("u.txt:2"), "{e}");
    }

    #[test]
    fn a_token_file_beats_the_environment_and_a_bad_one_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "  from-file\n").unwrap();
        let cfg = dir.path().join("tickcap.toml");
        let text =
            "[kite]\napi_key=\"k\"\naccess_token_file = \"tok\"\n[primary]\ninstruments = [1]\n";
        let env = Env {
            api_key: None,
            access_token: Some(Secret::new("from-env")),
        };
        let c = Config::parse(text, &cfg, &env).unwrap();
        assert_eq!(c.connections[0].access_token.expose(), "from-file");
        assert_eq!(
            c.connections[0].access_token_file.as_deref(),
            Some(dir.path().join("tok").as_path())
        );
        std::fs::write(dir.path().join("tok"), "\n").unwrap();
        let e = Config::parse(text, &cfg, &env).unwrap_err().to_string();
        assert!(
            e.contains("kite.access_token_file") && e.contains("tickcap login"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("tok")).unwrap();
        let e = Config::parse(text, &cfg, &env).unwrap_err().to_string();
        assert!(
            e.contains("kite.access_token_file") && e.contains("cannot read"),
            "{e}"
        );
    }
}
