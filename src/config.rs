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

/// A secret string (access tokens): never printed whole.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `abcd…(32 chars)`-style redaction: the first 4 characters at most.
    pub fn redacted(&self) -> String {
        if self.0.is_empty() {
            return "(none)".to_owned();
        }
        let head: String = self
            .0
            .chars()
            .take(if self.0.len() >= 12 { 4 } else { 0 })
            .collect();
        format!("{head}…({} chars)", self.0.chars().count())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    kite: RawKite,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    status: RawStatus,
    #[serde(default)]
    primary: RawConn,
    #[serde(default)]
    secondary: RawConn,
    #[serde(default)]
    tertiary: RawConn,
    #[serde(default)]
    engine: RawEngine,
    serve: Option<RawServe>,
    kafka: Option<RawKafka>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    brokers: Option<String>,
    topic: Option<String>,
    client_id: Option<String>,
    properties: Option<std::collections::BTreeMap<String, toml::Value>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServe {
    listen: Option<String>,
    token: Option<Secret>,
    auto_subscribe: Option<bool>,
    max_clients: Option<usize>,
    send_queue_kib: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKite {
    url: Option<String>,
    api_key: Option<String>,
    access_token: Option<Secret>,
    access_token_file: Option<PathBuf>,
    /// Used by `tickcap login` only (see [`Account`]).
    api_secret: Option<Secret>,
    api_root: Option<String>,
    redirect_url: Option<String>,
    instruments_dump: Option<bool>,
    instruments_refresh: Option<String>,
}

/// One entry of an `instruments` list: a token or `"EXCHANGE:SYMBOL"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawInstrument {
    Token(i64),
    Symbol(String),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    data_dir: Option<PathBuf>,
    timezone: Option<String>,
    fsync: Option<FsyncPolicy>,
    flush_interval_ms: Option<u64>,
    fsync_interval_ms: Option<u64>,
    retention_days: Option<u32>,
    shutdown_write_limit_ms: Option<u64>,
    compression: Option<String>,
    zstd_level: Option<i32>,
    compress_closed_days: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    listen: Option<String>,
    token: Option<Secret>,
    request_deadline_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConn {
    mode: Option<String>,
    instruments: Option<Vec<RawInstrument>>,
    instruments_file: Option<PathBuf>,
    url: Option<String>,
    api_key: Option<String>,
    access_token: Option<Secret>,
    access_token_file: Option<PathBuf>,
    failover_after_ms: Option<u64>,
    warm: Option<bool>,
    mirror: Option<bool>,
    dedup_window_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    ring_capacity: Option<usize>,
    writer_core: Option<usize>,
    stale_after_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
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
    /// `client.id`.
    pub client_id: String,
    /// librdkafka properties passed through (TLS, SASL, tuning), as given.
    pub properties: Vec<(String, String)>,
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

/// The largest config, token or instruments file read (they are small;
/// anything bigger is not what the key names).
const TEXT_LIMIT: u64 = 16 << 20;

/// The config file's text.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    crate::util::read_regular_text(path, TEXT_LIMIT).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })
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

/// TOML syntax, types and unknown keys; no validation yet.
fn parse_raw(text: &str, path: &Path) -> Result<RawFile, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// A token file: one line, the access token (surrounding whitespace ignored).
fn read_token_file(path: &Path) -> Result<Secret, String> {
    let text = crate::util::read_regular_text(path, TEXT_LIMIT)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(format!(
            "{} does not hold one access token (run `tickcap login`)",
            path.display()
        ));
    }
    Ok(Secret::new(token))
}

/// One parse of one file: the pieces of [`Config::parse`], each naming the
/// key it validates.
struct Parser<'a> {
    path: &'a Path,
    env: &'a Env,
    raw: &'a RawFile,
    symbols: &'a dyn Symbols,
    /// The dump, once a symbol asked for it.
    directory: RefCell<Option<Arc<Directory>>>,
    storage: Option<StorageConfig>,
    dump: Option<DumpConfig>,
}

/// Keys only `[tertiary]` may carry.
const TERTIARY_ONLY: [&str; 4] = ["failover_after_ms", "warm", "mirror", "dedup_window_ms"];

impl Parser<'_> {
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn in_range<T>(
        &self,
        key: &str,
        v: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(self.invalid(
                key,
                format!("{v}: must be {} to {}", range.start(), range.end()),
            ))
        }
    }

    fn listen_addr(&self, key: &str, text: &str) -> Result<std::net::SocketAddr, ConfigError> {
        text.parse().map_err(|e| {
            self.invalid(
                key,
                format!("{text:?}: {e} (expected IP:PORT, e.g. 127.0.0.1:8080)"),
            )
        })
    }

    fn writer_core(&self, core: Option<usize>) -> Result<Option<usize>, ConfigError> {
        if let Some(core) = core {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            if core >= n {
                return Err(self.invalid(
                    "engine.writer_core",
                    format!(
                        "core {core} does not exist: this machine has {n} (0..{})",
                        n - 1
                    ),
                ));
            }
        }
        Ok(core)
    }

    /// One connection section, with `[kite]` and the environment as defaults.
    fn connection(
        &self,
        role: Role,
        c: &RawConn,
        default_mode: Mode,
    ) -> Result<ConnectionConfig, ConfigError> {
        let section = role.as_str();
        if role != Role::Tertiary {
            let set = [
                c.failover_after_ms.is_some(),
                c.warm.is_some(),
                c.mirror.is_some(),
                c.dedup_window_ms.is_some(),
            ];
            if let Some(i) = set.iter().position(|s| *s) {
                return Err(self.invalid(
                    &format!("{section}.{}", TERTIARY_ONLY[i]),
                    "only [tertiary] takes failover settings",
                ));
            }
        }
        let mode = match &c.mode {
            Some(m) => m
                .parse::<Mode>()
                .map_err(|e| self.invalid(&format!("{section}.mode"), e.to_string()))?,
            None => default_mode,
        };
        let url = c
            .url
            .clone()
            .or_else(|| self.raw.kite.url.clone())
            .unwrap_or_else(|| "wss://ws.kite.trade".to_owned());
        // The key the URL came from, for errors.
        let url_key = if c.url.is_some() {
            format!("{section}.url")
        } else {
            "kite.url".to_owned()
        };
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(self.invalid(&url_key, format!("{url:?} is not a ws:// or wss:// URL")));
        }
        // The whole URL must parse and name a host now, not at the first
        // connect (`ws://[::1` would otherwise fail every attempt forever).
        match url.parse::<tungstenite::http::Uri>() {
            Ok(u) if u.host().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => return Err(self.invalid(&url_key, format!("{url:?} names no host"))),
            Err(e) => {
                return Err(self.invalid(&url_key, format!("{url:?} is not a valid URL: {e}")))
            }
        }
        let (api_key, access_token, access_token_file) = self.credentials(section, c)?;
        let instruments = self.instruments(section, c)?;
        if !instruments.is_empty() && (api_key.is_empty() || access_token.is_empty()) {
            return Err(self.invalid(
                "kite.api_key",
                format!("[{section}] has instruments but no api_key/access_token (set them in [kite] or KITE_API_KEY / KITE_ACCESS_TOKEN)"),
            ));
        }
        Ok(ConnectionConfig {
            role,
            url,
            api_key,
            access_token,
            access_token_file,
            mode,
            instruments,
        })
    }

    /// A section's API key, access token and the token file it came from.
    fn credentials(
        &self,
        section: &str,
        c: &RawConn,
    ) -> Result<(String, Secret, Option<PathBuf>), ConfigError> {
        let kite = &self.raw.kite;
        // A connection with its own key may bring its own token; otherwise
        // the environment beats [kite].
        let api_key = c
            .api_key
            .clone()
            .or_else(|| self.env.api_key.clone())
            .or_else(|| kite.api_key.clone())
            .unwrap_or_default();
        // Precedence (README "Credentials"): the section's access_token, then
        // a token file (the section's, then [kite]'s: what `tickcap login`
        // writes, re-read on reload and when it changes), then
        // KITE_ACCESS_TOKEN, then [kite] access_token.
        let file = c
            .access_token_file
            .as_ref()
            .map(|f| (format!("{section}.access_token_file"), f))
            .or_else(|| {
                kite.access_token_file
                    .as_ref()
                    .map(|f| ("kite.access_token_file".to_owned(), f))
            });
        let (access_token, access_token_file) = match (&c.access_token, file) {
            (Some(t), _) => (t.clone(), None),
            (None, Some((key, f))) => {
                let p = self.path.parent().unwrap_or(Path::new(".")).join(f);
                (
                    read_token_file(&p).map_err(|m| self.invalid(&key, m))?,
                    Some(p),
                )
            }
            (None, None) => (
                self.env
                    .access_token
                    .clone()
                    .or_else(|| kite.access_token.clone())
                    .unwrap_or_default(),
                None,
            ),
        };
        Ok((api_key, access_token, access_token_file))
    }

    /// `[kite] instruments_dump`, `api_root`, `instruments_refresh`, and the
    /// primary's credentials to fetch with.
    fn dump_config(&self) -> Result<DumpConfig, ConfigError> {
        let kite = &self.raw.kite;
        let (api_key, access_token, _) = self.credentials("primary", &self.raw.primary)?;
        let refresh = kite.instruments_refresh.as_deref().unwrap_or("08:30");
        let refresh_minute = refresh
            .split_once(':')
            .and_then(|(h, m)| Some((h.trim().parse::<u32>().ok()?, m.trim().parse::<u32>().ok()?)))
            .filter(|(h, m)| *h < 24 && *m < 60)
            .map(|(h, m)| h * 60 + m)
            .ok_or_else(|| {
                self.invalid(
                    "kite.instruments_refresh",
                    format!("{refresh:?}: expected HH:MM local time, e.g. \"08:30\""),
                )
            })?;
        let urls = [&self.raw.primary, &self.raw.secondary, &self.raw.tertiary]
            .map(|c| c.url.clone().or_else(|| kite.url.clone()));
        let to_kite = urls
            .iter()
            .any(|u| u.as_deref().is_none_or(|u| u.contains("kite.trade")));
        let names_symbols = [&self.raw.primary, &self.raw.secondary, &self.raw.tertiary]
            .iter()
            .any(|c| {
                c.instruments
                    .iter()
                    .flatten()
                    .any(|i| matches!(i, RawInstrument::Symbol(_)))
            });
        Ok(DumpConfig {
            enabled: kite
                .instruments_dump
                .unwrap_or(to_kite || names_symbols || kite.api_root.is_some()),
            api_root: kite
                .api_root
                .clone()
                .unwrap_or_else(|| "https://api.kite.trade".to_owned())
                .trim_end_matches('/')
                .to_owned(),
            api_key,
            access_token,
            refresh_minute,
            symbols_used: false,
        })
    }

    /// The token of `symbol`, from the dump (fetched on first use).
    fn resolve(&self, key: &str, symbol: &str, at: &str) -> Result<i64, ConfigError> {
        let Some(norm) = normalize_symbol(symbol) else {
            return Err(self.invalid(
                key,
                format!("{symbol:?} ({at}) is neither a token nor EXCHANGE:TRADINGSYMBOL (e.g. \"NSE:INFY\")"),
            ));
        };
        if self.directory.borrow().is_none() {
            let (Some(dump), Some(storage)) = (&self.dump, &self.storage) else {
                return Err(self.invalid(key, "symbols are resolved after [storage] and [kite]"));
            };
            let d = self
                .symbols
                .directory(dump, storage)
                .map_err(|m| self.invalid(key, format!("{norm} ({at}) names a symbol, but {m}")))?;
            *self.directory.borrow_mut() = Some(d);
        }
        let dir = self.directory.borrow();
        let dir = dir.as_ref().expect("set above");
        match dir.token(&norm) {
            Some(t) => Ok(i64::from(t)),
            None => {
                let near = dir.suggest(&norm, 3);
                Err(self.invalid(
                    key,
                    format!(
                        "unknown symbol {norm} ({at}) in today's instruments dump{}",
                        if near.is_empty() {
                            String::new()
                        } else {
                            format!("; did you mean {}?", near.join(", "))
                        }
                    ),
                ))
            }
        }
    }

    /// `instruments` or `instruments_file`: positive tokens, each once, at most 3000.
    fn instruments(&self, section: &str, c: &RawConn) -> Result<Vec<u32>, ConfigError> {
        let key = format!("{section}.instruments");
        let mut list: Vec<(i64, String)> = Vec::new();
        for (i, entry) in c.instruments.iter().flatten().enumerate() {
            let at = format!("item {}", i + 1);
            let t = match entry {
                RawInstrument::Token(t) => *t,
                RawInstrument::Symbol(s) => self.resolve(&key, s, &at)?,
            };
            list.push((t, at));
        }
        if let Some(file) = &c.instruments_file {
            let fkey = format!("{section}.instruments_file");
            if c.instruments.is_some() {
                return Err(self.invalid(&fkey, "give instruments or instruments_file, not both"));
            }
            let p = self.path.parent().unwrap_or(Path::new(".")).join(file);
            let text = crate::util::read_regular_text(&p, TEXT_LIMIT)
                .map_err(|e| self.invalid(&fkey, format!("cannot read {}: {e}", p.display())))?;
            for (i, line) in text.lines().enumerate() {
                let l = line.split('#').next().unwrap_or("").trim();
                if l.is_empty() {
                    continue;
                }
                let at = format!("{}:{}", p.display(), i + 1);
                let t = match l.parse::<i64>() {
                    Ok(t) => t,
                    Err(_) => self.resolve(&fkey, l, &at)?,
                };
                list.push((t, at));
            }
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(list.len());
        for (t, at) in list {
            let t = u32::try_from(t).ok().filter(|&t| t > 0).ok_or_else(|| {
                self.invalid(&key, format!("{t} ({at}) is not an instrument token"))
            })?;
            if !seen.insert(t) {
                return Err(self.invalid(&key, format!("{t} ({at}) is listed twice")));
            }
            out.push(t);
        }
        if out.len() > MAX_INSTRUMENTS {
            return Err(self.invalid(
                &key,
                format!(
                    "{} instruments; Kite allows at most {MAX_INSTRUMENTS} per connection",
                    out.len()
                ),
            ));
        }
        Ok(out)
    }

    /// Hot standby: the tertiary carries the primary's instruments with its own key.
    fn mirror_primary(
        &self,
        primary: &ConnectionConfig,
        tertiary: &mut ConnectionConfig,
    ) -> Result<(), ConfigError> {
        let t = &self.raw.tertiary;
        if t.api_key.is_none() || t.access_token.is_none() {
            return Err(self.invalid(
                "tertiary.mirror",
                "a hot standby needs its own api_key and access_token in [tertiary] (Kite may deliver a token \
                 only once per key when two connections of one key subscribe it)",
            ));
        }
        if !tertiary.instruments.is_empty() {
            return Err(self.invalid(
                "tertiary.instruments",
                "with mirror = true the tertiary carries primary's instruments; leave this empty",
            ));
        }
        tertiary.instruments = primary.instruments.clone();
        tertiary.mode = primary.mode;
        Ok(())
    }

    /// Kite's duplicate rule: one instrument on one connection of a key.
    fn no_overlap(
        &self,
        key: &str,
        a: &ConnectionConfig,
        b: &ConnectionConfig,
    ) -> Result<(), ConfigError> {
        let other: HashSet<u32> = b.instruments.iter().copied().collect();
        let both: Vec<u32> = a
            .instruments
            .iter()
            .copied()
            .filter(|t| other.contains(t))
            .collect();
        if both.is_empty() {
            return Ok(());
        }
        Err(self.invalid(
            key,
            format!(
                "{both:?} are also on {}; an instrument may be on one connection only",
                b.role.as_str()
            ),
        ))
    }

    /// `[kafka]`: brokers and topic are required; properties pass through
    /// to librdkafka as strings (the ones tickcap's guarantees rest on are
    /// refused).
    fn kafka(&self, k: &RawKafka) -> Result<KafkaConfig, ConfigError> {
        let need = |v: &Option<String>, key: &str, eg: &str| {
            v.clone()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| self.invalid(key, format!("required in [kafka], e.g. {eg}")))
        };
        let brokers = need(&k.brokers, "kafka.brokers", "\"127.0.0.1:9092\"")?;
        let topic = need(&k.topic, "kafka.topic", "\"ticks\"")?;
        let mut properties = Vec::new();
        for (name, v) in k.properties.iter().flatten() {
            if matches!(
                name.as_str(),
                "enable.idempotence" | "acks" | "bootstrap.servers" | "message.timeout.ms"
            ) {
                return Err(self.invalid(
                    &format!("kafka.properties.{name}"),
                    "tickcap sets this itself (exactly-once publishing depends on it)",
                ));
            }
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                _ => {
                    return Err(self.invalid(
                        &format!("kafka.properties.{name}"),
                        "must be a string, number or boolean",
                    ))
                }
            };
            properties.push((name.clone(), text));
        }
        Ok(KafkaConfig {
            brokers,
            topic,
            client_id: k.client_id.clone().unwrap_or_else(|| "tickcap".to_owned()),
            properties,
        })
    }

    /// `[serve]`: a listen address is required; a token too when it is not loopback.
    fn serve(&self, s: &RawServe) -> Result<ServeConfig, ConfigError> {
        let text = s.listen.as_deref().ok_or_else(|| {
            self.invalid(
                "serve.listen",
                "required in [serve], e.g. \"127.0.0.1:9001\"",
            )
        })?;
        let listen = self.listen_addr("serve.listen", text)?;
        let token = s.token.clone().filter(|t| !t.is_empty());
        if !listen.ip().is_loopback() && token.is_none() {
            return Err(self.invalid(
                "serve.token",
                format!("{listen} is reachable from other machines: set a token clients must present as access_token"),
            ));
        }
        Ok(ServeConfig {
            listen,
            token,
            auto_subscribe: s.auto_subscribe.unwrap_or(true),
            max_clients: self.in_range(
                "serve.max_clients",
                s.max_clients.unwrap_or(256),
                1..=4096,
            )?,
            send_queue_bytes: self.in_range(
                "serve.send_queue_kib",
                s.send_queue_kib.unwrap_or(4096),
                64..=1_048_576,
            )? * 1024,
        })
    }

    fn storage(&self, st: &RawStorage) -> Result<StorageConfig, ConfigError> {
        let timezone = st
            .timezone
            .clone()
            .unwrap_or_else(|| "Asia/Kolkata".to_owned());
        ZoneFormatter::new(&timezone)
            .map_err(|e| self.invalid("storage.timezone", e.to_string()))?;
        Ok(StorageConfig {
            data_dir: st
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("./market_data")),
            timezone,
            fsync: st.fsync.unwrap_or(FsyncPolicy::Interval),
            flush_interval_ms: self.in_range(
                "storage.flush_interval_ms",
                st.flush_interval_ms.unwrap_or(50),
                1..=60_000,
            )?,
            fsync_interval_ms: self.in_range(
                "storage.fsync_interval_ms",
                st.fsync_interval_ms.unwrap_or(1000),
                1..=3_600_000,
            )?,
            retention_days: st.retention_days.unwrap_or(30),
            shutdown_write_limit_ms: self.in_range(
                "storage.shutdown_write_limit_ms",
                st.shutdown_write_limit_ms.unwrap_or(5000),
                100..=600_000,
            )?,
            // With compression = "zstd" too: the plain segments a day may
            // still have (captured plain before a switch to zstd) are
            // compressed once sealed.
            compress_closed_days: if st.compress_closed_days.unwrap_or(false) {
                Some(self.in_range("storage.zstd_level", st.zstd_level.unwrap_or(3), 1..=19)?)
            } else {
                None
            },
            zstd_level: match st.compression.as_deref().unwrap_or("none") {
                "none" => {
                    if st.zstd_level.is_some() && st.compress_closed_days != Some(true) {
                        return Err(self.invalid(
                            "storage.zstd_level",
                            "set compression = \"zstd\" to use it",
                        ));
                    }
                    None
                }
                "zstd" => {
                    Some(self.in_range("storage.zstd_level", st.zstd_level.unwrap_or(3), 1..=19)?)
                }
                other => {
                    return Err(self.invalid(
                        "storage.compression",
                        format!("{other:?}: use \"none\" or \"zstd\""),
                    ))
                }
            },
        })
    }
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
