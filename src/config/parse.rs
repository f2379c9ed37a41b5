//! Validation: one [`Parser`] per file turns the raw schema into the
//! validated types, each error naming the key at fault; the files the
//! config names (token files, `instruments_file`) are read here.

use super::raw::*;
use super::*;

/// The largest config, token or instruments file read (they are small;
/// anything bigger is not what the key names).
pub(super) const TEXT_LIMIT: u64 = 16 << 20;

/// The config file's text.
pub(super) fn read_text(path: &Path) -> Result<String, ConfigError> {
    crate::util::read_regular_text(path, TEXT_LIMIT).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })
}

/// A token file: one line, the access token (surrounding whitespace ignored).
pub(super) fn read_token_file(path: &Path) -> Result<Secret, String> {
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
pub(super) struct Parser<'a> {
    pub(super) path: &'a Path,
    pub(super) env: &'a Env,
    pub(super) raw: &'a RawFile,
    pub(super) symbols: &'a dyn Symbols,
    /// The dump, once a symbol asked for it.
    pub(super) directory: RefCell<Option<Arc<Directory>>>,
    pub(super) storage: Option<StorageConfig>,
    pub(super) dump: Option<DumpConfig>,
}

/// Keys only `[tertiary]` may carry.
const TERTIARY_ONLY: [&str; 4] = ["failover_after_ms", "warm", "mirror", "dedup_window_ms"];

impl Parser<'_> {
    pub(super) fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    pub(super) fn in_range<T>(
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

    pub(super) fn listen_addr(
        &self,
        key: &str,
        text: &str,
    ) -> Result<std::net::SocketAddr, ConfigError> {
        text.parse().map_err(|e| {
            self.invalid(
                key,
                format!("{text:?}: {e} (expected IP:PORT, e.g. 127.0.0.1:8080)"),
            )
        })
    }

    pub(super) fn writer_core(&self, core: Option<usize>) -> Result<Option<usize>, ConfigError> {
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
    pub(super) fn connection(
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
    pub(super) fn credentials(
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
    pub(super) fn dump_config(&self) -> Result<DumpConfig, ConfigError> {
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
    pub(super) fn resolve(&self, key: &str, symbol: &str, at: &str) -> Result<i64, ConfigError> {
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
    pub(super) fn instruments(&self, section: &str, c: &RawConn) -> Result<Vec<u32>, ConfigError> {
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
    pub(super) fn mirror_primary(
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
    pub(super) fn no_overlap(
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
    pub(super) fn kafka(&self, k: &RawKafka) -> Result<KafkaConfig, ConfigError> {
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
        let orders_topic = k.orders_topic.clone().filter(|t| !t.trim().is_empty());
        if orders_topic.as_deref() == Some(topic.as_str()) {
            return Err(self.invalid(
                "kafka.orders_topic",
                "must differ from kafka.topic (ticks and order updates are separate streams)",
            ));
        }
        let candles_topic = k.candles_topic.clone().filter(|t| !t.trim().is_empty());
        Ok(KafkaConfig {
            brokers,
            topic,
            orders_topic,
            candles_topic,
            client_id: k.client_id.clone().unwrap_or_else(|| "tickcap".to_owned()),
            properties,
        })
    }

    /// `[candles] intervals`: Kite's interval names or short forms.
    pub(super) fn candles(
        &self,
        c: &RawCandles,
    ) -> Result<Vec<crate::candles::Interval>, ConfigError> {
        let mut out = Vec::new();
        for text in c.intervals.iter().flatten() {
            let i = crate::candles::Interval::parse(text).ok_or_else(|| {
                self.invalid(
                    "candles.intervals",
                    format!("{text:?} is not one of Kite's intervals: minute (1m), 3minute, 5minute, 10minute, 15minute, 30minute, 60minute, day"),
                )
            })?;
            if !out.contains(&i) {
                out.push(i);
            }
        }
        out.sort();
        Ok(out)
    }

    /// `[candles] repair`: needs intervals other than `day` and Kite's
    /// credentials (the historical API takes the primary's).
    pub(super) fn candle_repair(
        &self,
        c: &RawCandles,
        dump: &super::DumpConfig,
    ) -> Result<Option<super::CandleRepair>, ConfigError> {
        let delay_ms = self.in_range(
            "candles.repair_delay_ms",
            c.repair_delay_ms.unwrap_or(60_000),
            3_000..=3_600_000,
        )?;
        if c.repair != Some(true) {
            return Ok(None);
        }
        let intraday = c
            .intervals
            .iter()
            .flatten()
            .filter_map(|t| crate::candles::Interval::parse(t))
            .any(|i| i != crate::candles::Interval::Day);
        if !intraday {
            return Err(self.invalid(
                "candles.repair",
                "needs an interval other than day in candles.intervals (the service repairs today's bars; a day bar exists at Kite after the day: tickcap candles repair --interval day)",
            ));
        }
        if dump.api_key.is_empty() || dump.access_token.expose().is_empty() {
            return Err(self.invalid(
                "candles.repair",
                "needs [kite] api_key and access_token (or the primary's): Kite's historical API is asked with them",
            ));
        }
        Ok(Some(super::CandleRepair { delay_ms }))
    }

    /// `[serve]`: a listen address is required; a token too when it is not loopback.
    pub(super) fn serve(&self, s: &RawServe) -> Result<ServeConfig, ConfigError> {
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

    pub(super) fn storage(&self, st: &RawStorage) -> Result<StorageConfig, ConfigError> {
        let timezone = st
            .timezone
            .clone()
            .unwrap_or_else(|| "Asia/Kolkata".to_owned());
        ZoneFormatter::new(&timezone)
            .map_err(|e| self.invalid("storage.timezone", e.to_string()))?;
        let data_dir = st
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./market_data"));
        let export_closed_days = match st.export_closed_days.as_deref() {
            None | Some("none") => {
                if st.export_dir.is_some() {
                    return Err(self.invalid(
                        "storage.export_dir",
                        "set export_closed_days = \"parquet\" to use it",
                    ));
                }
                None
            }
            Some("parquet") if cfg!(feature = "parquet") => Some(
                st.export_dir
                    .as_ref()
                    .map_or_else(|| data_dir.join("parquet"), PathBuf::from),
            ),
            Some("parquet") => {
                return Err(self.invalid(
                    "storage.export_closed_days",
                    "this tickcap was built without the `parquet` feature",
                ))
            }
            Some(other) => {
                return Err(self.invalid(
                    "storage.export_closed_days",
                    format!("{other:?}: \"parquet\" or \"none\""),
                ))
            }
        };
        Ok(StorageConfig {
            export_closed_days,
            data_dir,
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
