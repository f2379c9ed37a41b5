//! `tickcap doctor`: finds why capture is not working, and says how to fix it.
//!
//! Without a running service: the config, the credentials, the Kite endpoint
//! (DNS, TCP, TLS, WebSocket upgrade — a 403 means a bad or expired token)
//! and market hours in Asia/Kolkata. With a running service (its status
//! port): connections that are down and why, instruments that have sent
//! nothing since they were subscribed, and how far the writer is behind.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::Failure;
use crate::config::{Config, ConnectionConfig, Env};
use crate::status::client;

/// Arguments of `tickcap doctor`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The configuration file.
    #[arg(long, default_value = "tickcap.toml")]
    config: PathBuf,
    /// The running service's status port (default: from the config's [status] listen).
    #[arg(long)]
    url: Option<String>,
    /// Network timeout per check, seconds.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Finding {
    level: Level,
    what: String,
    cause: Option<String>,
    fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Finding>);

impl Report {
    fn ok(&mut self, what: impl Into<String>) {
        self.0.push(Finding {
            level: Level::Ok,
            what: what.into(),
            cause: None,
            fix: None,
        });
    }
    fn warn(&mut self, what: impl Into<String>, cause: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Finding {
            level: Level::Warn,
            what: what.into(),
            cause: Some(cause.into()),
            fix: Some(fix.into()),
        });
    }
    fn fail(&mut self, what: impl Into<String>, cause: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Finding {
            level: Level::Fail,
            what: what.into(),
            cause: Some(cause.into()),
            fix: Some(fix.into()),
        });
    }
}

/// Runs every check and prints the findings; exit 1 if any failed.
pub(super) fn run(args: Args) -> Result<(), Failure> {
    let timeout = Duration::from_secs_f64(args.timeout.max(0.1));
    let mut r = Report::default();
    let loader = crate::net::dump::Loader::new(
        crate::engine::Clock::system(),
        timeout.max(Duration::from_secs(10)),
    );
    let cfg = match Config::load_with(&args.config, &Env::from_process(), &loader) {
        Ok(c) => {
            r.ok(format!("config {} is valid", args.config.display()));
            Some(c)
        }
        Err(e) => {
            r.fail(
                format!("config: {e}"),
                "the file is missing or a key/value is wrong",
                format!("fix the named key in {} (see README, Configuration; `tickcap instruments search` finds symbols)", args.config.display()),
            );
            None
        }
    };
    let url = args
        .url
        .clone()
        .or_else(|| cfg.as_ref().map(|c| format!("http://{}", c.status_listen)));
    // A running service holds the key's connections (Kite allows 3): ask
    // it how they are instead of opening a fourth, which Kite refuses (429).
    let running = url.as_deref().is_some_and(|u| {
        client::get(u, "/health")
            .ok()
            .is_some_and(|x| x.status == 200)
    });
    if let Some(cfg) = &cfg {
        check_credentials(cfg, &mut r);
        check_dump(cfg, &loader, &mut r);
        check_kafka(cfg, timeout, &mut r);
        if running {
            r.ok("Kite endpoint: in use by the running service (its connections are checked below; no fourth socket is opened, which Kite would refuse with 429)");
        } else {
            let mut seen = Vec::new();
            for c in cfg.connections.iter().filter(|c| !c.instruments.is_empty()) {
                let key = (c.url.clone(), c.api_key.clone());
                if !seen.contains(&key) {
                    seen.push(key);
                    check_endpoint(c, timeout, &mut r);
                }
            }
        }
    }
    market_hours(&mut r);
    if let Some(url) = url {
        check_service(&url, &mut r);
    }
    let mut failed = false;
    for f in &r.0 {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        failed |= f.level == Level::Fail;
        println!("[{tag}] {}", f.what);
        if let Some(c) = &f.cause {
            println!("       likely cause: {c}");
        }
        if let Some(x) = &f.fix {
            println!("       fix: {x}");
        }
    }
    if failed {
        return Err(anyhow::anyhow!("doctor found problems (FAIL above)").into());
    }
    Ok(())
}

fn check_credentials(cfg: &Config, r: &mut Report) {
    for c in &cfg.connections {
        if c.instruments.is_empty() {
            continue;
        }
        let role = c.role.as_str();
        if c.api_key.is_empty() || c.access_token.is_empty() {
            r.fail(
                format!("{role}: no api_key/access_token"),
                "neither the config nor the environment sets them",
                "set [kite] api_key and access_token_file, then run `tickcap login`",
            );
        } else {
            let from = match &c.access_token_file {
                Some(p) => format!("from {}", p.display()),
                None if std::env::var_os("KITE_ACCESS_TOKEN").is_some() => {
                    "from KITE_ACCESS_TOKEN (a running service cannot see a new value: prefer access_token_file and `tickcap login`)".to_owned()
                }
                None => "from the config".to_owned(),
            };
            if c.access_token_file.is_some() && std::env::var_os("KITE_ACCESS_TOKEN").is_some() {
                r.warn(
                    format!("{role}: KITE_ACCESS_TOKEN is set but the token file wins"),
                    "access_token_file is read first (it is what `tickcap login` refreshes)",
                    "unset KITE_ACCESS_TOKEN so that what you see is what runs",
                );
            }
            r.ok(format!(
                "{role}: credentials present (api_key {:?}, access_token {} {from})",
                c.api_key,
                c.access_token.redacted()
            ));
        }
    }
}

/// DNS, TCP, TLS and the WebSocket upgrade against one Kite endpoint.
fn check_endpoint(c: &ConnectionConfig, timeout: Duration, r: &mut Report) {
    let uri: tungstenite::http::Uri = match c.url.parse() {
        Ok(u) => u,
        Err(e) => {
            return r.fail(
                format!("{}: bad url: {e}", c.url),
                "typo in [kite] url",
                "use wss://ws.kite.trade",
            )
        }
    };
    let tls = uri.scheme_str() == Some("wss");
    let host = uri.host().unwrap_or("").to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = match (host.as_str(), port)
        .to_socket_addrs()
        .map(|mut a| a.next())
    {
        Ok(Some(a)) => a,
        Ok(None) | Err(_) => {
            return r.fail(
                format!("{}: DNS lookup of {host} failed", c.url),
                "no network or DNS",
                "check /etc/resolv.conf and the network",
            );
        }
    };
    let tcp = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) if addr.ip().is_loopback() => {
            return r.fail(
                format!("{}: TCP connect to {addr} failed: {e}", c.url),
                "nothing listens there: a local feed (e.g. `tickcap replay`) is not running",
                format!(
                    "start the feed on {addr}, or point [{}] url at wss://ws.kite.trade",
                    c.role.as_str()
                ),
            )
        }
        Err(e) => {
            return r.fail(
                format!("{}: TCP connect to {addr} failed: {e}", c.url),
                "firewall, proxy or the endpoint is down",
                format!("check outbound access to {host} port {port}"),
            )
        }
    };
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let url = crate::kite::ticker_url(&c.url, &c.api_key, c.access_token.expose());
    let result = if tls {
        let name = match rustls::pki_types::ServerName::try_from(host.clone()) {
            Ok(n) => n,
            Err(e) => {
                return r.fail(
                    format!("{}: bad TLS name: {e}", c.url),
                    "the URL's host",
                    "use wss://ws.kite.trade",
                )
            }
        };
        let conn = match rustls::ClientConnection::new(crate::net::stream::tls_config(), name) {
            Ok(c) => c,
            Err(e) => {
                return r.fail(
                    format!("{}: TLS setup: {e}", c.url),
                    "TLS library",
                    "report a bug",
                )
            }
        };
        let stream = rustls::StreamOwned::new(conn, tcp);
        tungstenite::client(url.as_str(), stream)
            .map(|_| ())
            .map_err(describe)
    } else {
        tungstenite::client(url.as_str(), tcp)
            .map(|_| ())
            .map_err(describe)
    };
    match result {
        Ok(()) => r.ok(format!("{}: reachable; WebSocket upgrade accepted (credentials valid)", c.url)),
        Err((Some(403), _)) | Err((Some(401), _)) => r.fail(
            format!("{}: access token rejected (expired?): run `tickcap login` (the upgrade was refused with HTTP 403)", c.url),
            "the access token is invalid or expired (Kite tokens expire every day around 06:00 IST)",
            "run `tickcap login` (it writes [kite] access_token_file; a running service picks the new token up by itself)",
        ),
        Err((Some(429), _)) => r.warn(
            format!("{}: this API key already has 3 connections (probably the running service): Kite refused a fourth with HTTP 429", c.url),
            "a tickcap (or another Kite client) using this api_key is running, and its status port is not where this config says",
            "pass --url with the running service's status address to check it instead",
        ),
        Err((Some(code), msg)) => r.fail(format!("{}: upgrade refused with HTTP {code}: {msg}", c.url), "endpoint or API key problem", "check api_key and the URL"),
        Err((None, msg)) => r.fail(format!("{}: TLS/WebSocket failed: {msg}", c.url), "a proxy or TLS interception, or not a Kite endpoint", "check the URL and any proxy"),
    }
}

fn describe<S>(e: tungstenite::HandshakeError<S>) -> (Option<u16>, String)
where
    S: tungstenite::handshake::HandshakeRole,
{
    match e {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp)) => {
            (Some(resp.status().as_u16()), format!("{}", resp.status()))
        }
        tungstenite::HandshakeError::Failure(e) => (None, e.to_string()),
        tungstenite::HandshakeError::Interrupted(_) => (None, "interrupted".into()),
    }
}

/// The instruments dump: which one is at hand, and configured tokens it no
/// longer lists (expired contracts never tick again).
fn check_dump(cfg: &Config, loader: &crate::net::dump::Loader, r: &mut Report) {
    if !cfg.dump.enabled {
        return;
    }
    let l = match loader.load(&cfg.dump, &cfg.storage) {
        Ok(l) => l,
        Err(e) => {
            return r.warn(
                format!("instruments dump: none at hand ({e})"),
                "Kite's REST API is unreachable or refused the request, and no copy is kept in data_dir",
                "check [kite] api_root and the token (`tickcap login`), then `tickcap instruments fetch`",
            )
        }
    };
    match &l.warning {
        Some(w) => r.warn(
            format!("instruments dump: {w}"),
            "Kite's REST API is unreachable or refused the request",
            "symbols resolve against the older copy; `tickcap instruments fetch` when Kite is back",
        ),
        None => r.ok(format!(
            "instruments dump of {}: {} instruments ({})",
            l.day,
            l.directory.len(),
            l.path.display()
        )),
    }
    let mut gone: Vec<u32> = cfg
        .connections
        .iter()
        .flat_map(|c| c.instruments.iter().copied())
        .filter(|t| l.directory.get(*t).is_none())
        .collect();
    gone.sort_unstable();
    gone.dedup();
    if !gone.is_empty() {
        r.warn(
            format!(
                "{} configured instrument(s) are not in the dump of {}: {:?}",
                gone.len(),
                l.day,
                gone
            ),
            "expired F&O contracts (their tokens are retired) or mistyped tokens; they will not tick",
            "replace them (symbols such as \"NFO:NIFTY25DECFUT\" are accepted; `tickcap instruments search`)",
        );
    }
}

/// `[kafka]`: brokers reachable, the topic there with its partitions, and
/// how far publishing has got (the checkpoint).
#[cfg(feature = "kafka")]
fn check_kafka(cfg: &Config, timeout: Duration, r: &mut Report) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let Some(k) = &cfg.kafka else {
        return;
    };
    let mut c = rdkafka::config::ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", "tickcap-doctor");
    for (name, v) in &k.properties {
        c.set(name, v);
    }
    let consumer: BaseConsumer = match c.create() {
        Ok(c) => c,
        Err(e) => {
            return r.fail(
                format!("kafka: cannot create a client: {e}"),
                "a [kafka.properties] value librdkafka refuses",
                "fix the property named in the message",
            )
        }
    };
    match consumer.fetch_metadata(Some(&k.topic), timeout.max(Duration::from_secs(3))) {
        Err(e) => r.fail(
            format!("kafka: brokers {} unreachable: {e}", k.brokers),
            "the brokers are down, or a firewall/TLS/SASL setting is wrong",
            "start the brokers or fix [kafka] brokers/properties; capture goes on meanwhile and the backlog waits on disk",
        ),
        Ok(md) => {
            let parts = md
                .topics()
                .first()
                .filter(|t| t.error().is_none())
                .map_or(0, |t| t.partitions().len());
            if parts == 0 {
                r.fail(
                    format!("kafka: topic {:?} does not exist on {}", k.topic, k.brokers),
                    "tickcap does not create topics",
                    format!("create it, e.g. kafka-topics.sh --create --topic {} --partitions 12", k.topic),
                );
            } else {
                let at = std::fs::read_to_string(crate::publish::checkpoint_path(&cfg.storage.data_dir))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|_| "nothing yet".to_owned());
                r.ok(format!(
                    "kafka: brokers {} reachable; topic {} has {parts} partitions; published up to {at}",
                    k.brokers, k.topic
                ));
            }
        }
    }
}

#[cfg(not(feature = "kafka"))]
fn check_kafka(cfg: &Config, _: Duration, r: &mut Report) {
    if cfg.kafka.is_some() {
        r.fail(
            "kafka: [kafka] is configured but this tickcap was built without the `kafka` feature",
            "a lean build",
            "build with the default features",
        );
    }
}

fn market_hours(r: &mut Report) {
    let Ok(tz) = jiff::tz::TimeZone::get("Asia/Kolkata") else {
        return;
    };
    let now = jiff::Timestamp::now().to_zoned_datetime(tz);
    let wd = now.weekday().to_monday_one_offset();
    let minutes = i32::from(now.hour()) * 60 + i32::from(now.minute());
    let open = (1..=5).contains(&wd) && (9 * 60 + 15..15 * 60 + 30).contains(&minutes);
    let when = format!(
        "{:04}-{:02}-{:02} {:02}:{:02} IST",
        now.year(),
        now.month(),
        now.day(),
        now.hour(),
        now.minute()
    );
    if open {
        r.ok(format!(
            "market hours: NSE/BSE are open ({when}); ticks should flow"
        ));
    } else {
        r.warn(
            format!("market hours: NSE/BSE are closed ({when}; open 09:15–15:30 Mon–Fri)"),
            "no ticks outside market hours is normal (exchange holidays are not known to tickcap)",
            "nothing to fix; check again during market hours",
        );
    }
}

fn check_service(url: &str, r: &mut Report) {
    let get = |path: &str| {
        client::get(url, path)
            .ok()
            .filter(|x| x.status == 200)
            .and_then(|x| x.json())
    };
    let Some(health) = get("/health") else {
        r.warn(
            format!("no service answers at {url}"),
            "tickcap run is not running, or [status] listen differs",
            "start `tickcap run --config tickcap.toml` or pass --url",
        );
        return;
    };
    r.ok(format!(
        "service at {url}: {}",
        health["status"].as_str().unwrap_or("?")
    ));
    if let Some(conns) = get("/connections") {
        for c in conns["connections"].as_array().into_iter().flatten() {
            let id = &c["connection_id"];
            let state = c["state"].as_str().unwrap_or("?");
            let wanted = c["subscribed_instruments"].as_u64().unwrap_or(0) > 0;
            if !wanted {
                continue;
            }
            if state == "open" {
                r.ok(format!(
                    "connection {id} ({}) open with {} instruments: the endpoint is reachable and the credentials valid (in use by the running service)",
                    c["role"].as_str().unwrap_or("?"),
                    c["subscribed_instruments"]
                ));
                continue;
            }
            let auth = c["auth_failures"].as_u64().unwrap_or(0);
            if state == "auth_failed" || auth > 0 {
                r.fail(
                    format!("connection {id} is {state} after {auth} refused upgrade(s)"),
                    "the access token is invalid or expired",
                    "run `tickcap login`: it writes access_token_file, which the service re-reads by itself (a running process cannot see a new KITE_ACCESS_TOKEN)",
                );
            } else {
                r.fail(
                    format!(
                        "connection {id} is {state} ({} reconnects, {} stale drops)",
                        c["reconnects"], c["stale_disconnects"]
                    ),
                    "network trouble or the endpoint is down",
                    "check connectivity to the Kite endpoint (this command's endpoint check above)",
                );
            }
        }
    }
    if let Some(ins) = get("/instruments") {
        let silent = ins["silent"].as_array().cloned().unwrap_or_default();
        let long: Vec<&Value> = silent
            .iter()
            .filter(|s| s["seconds_silent"].as_f64().unwrap_or(0.0) > 60.0)
            .collect();
        if long.is_empty() {
            r.ok(format!(
                "instruments: none silent for over a minute ({} subscribed)",
                ins["total_unique_instruments"]
            ));
        } else {
            let list: Vec<String> = long
                .iter()
                .take(20)
                .map(|s| {
                    format!(
                        "{} (since {})",
                        s["instrument_token"],
                        s["subscribed_at"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            r.warn(
                format!("{} instrument(s) subscribed but silent for over a minute: {}", long.len(), list.join(", ")),
                "a wrong or expired token (contract), an illiquid instrument, or the market is closed",
                "check the tokens against Kite's instrument list; expired F&O contracts never tick",
            );
        }
    }
    if let Some(st) = get("/storage") {
        let lag = st["buffered_bytes"].as_u64().unwrap_or(0);
        let errors = st["write_errors"].as_u64().unwrap_or(0);
        if errors > 0 {
            r.fail(
                format!(
                    "writer: {errors} write error(s); last: {}",
                    st["last_write_error"]
                ),
                "the disk is full or failing",
                "free space in the data directory; buffered ticks are retried, not lost",
            );
        } else if lag > 64 << 20 {
            r.warn(
                format!("writer is {lag} bytes behind"),
                "the disk is slower than the feed",
                "use faster storage or fsync = \"interval\"",
            );
        } else {
            r.ok(format!(
                "writer: {lag} bytes waiting, last flush {}",
                st["last_flush"].as_str().unwrap_or("-")
            ));
        }
    }
}
