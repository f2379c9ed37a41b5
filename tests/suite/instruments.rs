//! Kite's daily instruments dump, end to end against a local stand-in for
//! `{api_root}/instruments` that answers as Kite does (its CSV columns,
//! quoted names, gzip or plain, chunked or not): symbols in the config and
//! in control calls, the unknown-symbol error with suggestions, the copy
//! kept beside the data and used when Kite is unreachable, expired tokens
//! reported, the daily refresh re-resolving a symbol whose token moved,
//! and `tickcap instruments search`.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tickcap::config::{Config, Env};
use tickcap::engine::{Clock, Engine, Options};
use tickcap::kite::Directory;
use tickcap::net::dump::{self, Loaded, Loader};
use tickcap::status::client;

const HEADER: &str = "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange";

/// A dump in Kite's exact shape; `fut` is the token of NFO:NIFTYFUT.
fn dump_csv(fut: u32) -> String {
    format!(
        "{HEADER}\n\
408065,1594,INFY,\"INFOSYS\",0,,,0.05,1,EQ,NSE,NSE\n\
738561,2885,RELIANCE,\"RELIANCE INDUSTRIES\",0,,,0.05,1,EQ,NSE,NSE\n\
256265,1001,NIFTY 50,\"NIFTY 50\",0,,,0,0,EQ,INDICES,NSE\n\
128053508,500209,INFY,\"INFOSYS\",0,,,0.05,1,EQ,BSE,BSE\n\
{fut},{},NIFTYFUT,\"NIFTY\",0,2026-12-31,,0.05,75,FUT,NFO-FUT,NFO\n",
        fut / 256
    )
}

/// The stand-in: serves `body()` at GET /instruments (gzip-encoded and
/// chunked on every other request), 404 elsewhere; counts requests.
struct Kite {
    root: String,
    served: Arc<AtomicUsize>,
}

fn kite_stand_in(body: String) -> Kite {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let root = format!("http://{}", l.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&served);
    std::thread::spawn(move || {
        for s in l.incoming().take(50) {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => raw.extend_from_slice(&buf[..k]),
                }
            }
            let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
            let k = n.fetch_add(1, Ordering::SeqCst);
            if !head.starts_with("get /instruments ") || !head.contains("x-kite-version: 3") {
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            let csv = body.clone();
            if k.is_multiple_of(2) {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n{csv}",
                    csv.len()
                );
            } else {
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                gz.write_all(csv.as_bytes()).unwrap();
                let gz = gz.finish().unwrap();
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for chunk in gz.chunks(100) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                let _ = s.write_all(&out);
            }
        }
    });
    Kite { root, served }
}

fn write_config(
    dir: &Path,
    feed: &str,
    api_root: &str,
    primary: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("tickcap.toml");
    std::fs::write(
        &path,
        format!(
            "[kite]\nurl = {feed:?}\napi_key = \"k\"\naccess_token = \"t\"\napi_root = {api_root:?}\n{extra}\
             [storage]\ndata_dir = {:?}\n[status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = {primary}\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    path
}

fn today() -> tickcap::time::LocalDate {
    tickcap::time::ZoneFormatter::new("Asia/Kolkata")
        .unwrap()
        .date_of_micros(Clock::system().now_micros())
}

#[test]
fn symbols_in_the_config_resolve_through_the_dump_which_is_kept_beside_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let kite = kite_stand_in(dump_csv(12_345_602));
    let path = write_config(
        dir.path(),
        "ws://127.0.0.1:9",
        &kite.root,
        r#"["NSE:INFY", 738561, "nse:nifty 50"]"#,
        "",
    );
    let loader = Loader::new(Clock::system(), Duration::from_secs(5));
    let cfg = Config::load_with(&path, &Env::default(), &loader).unwrap();
    assert_eq!(cfg.connections[0].instruments, [408_065, 738_561, 256_265]);
    assert!(cfg.dump.enabled && cfg.dump.symbols_used);
    let copy = dir.path().join("data").join(dump::file_name(today()));
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap(),
        dump_csv(12_345_602),
        "the copy is the dump as Kite sent it"
    );
    assert_eq!(kite.served.load(Ordering::SeqCst), 1);

    // Today's copy is used as it is: no second download.
    let again = Loader::new(Clock::system(), Duration::from_secs(5));
    Config::load_with(&path, &Env::default(), &again).unwrap();
    assert_eq!(kite.served.load(Ordering::SeqCst), 1);

    // Kite unreachable and only an older copy: it is used, with a warning.
    std::fs::rename(&copy, dir.path().join("data/instruments_2026-01-02.csv")).unwrap();
    let offline = write_config(
        dir.path(),
        "ws://127.0.0.1:9",
        "http://127.0.0.1:9",
        r#"["NSE:INFY"]"#,
        "",
    );
    let loader = Loader::new(Clock::system(), Duration::from_secs(2));
    let cfg = Config::load_with(&offline, &Env::default(), &loader).unwrap();
    assert_eq!(cfg.connections[0].instruments, [408_065]);
    let l = loader.take().unwrap();
    assert_eq!(l.day.to_string(), "2026-01-02");
    assert!(l.warning.unwrap().contains("using the copy of 2026-01-02"));
}

#[test]
fn an_unknown_symbol_is_a_config_error_that_suggests_the_closest() {
    let dir = tempfile::tempdir().unwrap();
    let kite = kite_stand_in(dump_csv(12_345_602));
    let path = write_config(
        dir.path(),
        "ws://127.0.0.1:9",
        &kite.root,
        r#"[408065, "NSE:INFI"]"#,
        "",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("primary.instruments")
            && err.contains("unknown symbol NSE:INFI (item 2)")
            && err.contains("did you mean NSE:INFY"),
        "{err}"
    );
    // Not a token, not a symbol.
    let path = write_config(
        dir.path(),
        "ws://127.0.0.1:9",
        &kite.root,
        r#"["INFY"]"#,
        "",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("neither a token nor EXCHANGE:TRADINGSYMBOL"),
        "{err}"
    );
}

#[test]
fn instruments_search_lists_token_symbol_name_expiry_segment() {
    let dir = tempfile::tempdir().unwrap();
    let kite = kite_stand_in(dump_csv(12_345_602));
    let path = write_config(dir.path(), "ws://127.0.0.1:9", &kite.root, "[408065]", "");
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["instruments", "search", "infy", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = text.lines().collect();
    assert!(
        rows[0].contains("token") && rows[0].contains("segment"),
        "{text}"
    );
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[1].contains("128053508")
            && rows[1].contains("BSE:INFY")
            && rows[1].contains("INFOSYS")
    );
    assert!(rows[2].contains("408065") && rows[2].contains("NSE:INFY"));
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["instruments", "search", "nifty", "fut", "--file"])
        .arg(dir.path().join("data").join(dump::file_name(today())))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("12345602")
            && text.contains("NFO:NIFTYFUT")
            && text.contains("2026-12-31")
            && text.contains("NFO-FUT"),
        "{text}"
    );
}

fn instruments_view(engine: &Engine) -> serde_json::Value {
    client::get(
        &format!("http://{}", engine.status_addr().unwrap()),
        "/instruments",
    )
    .unwrap()
    .json()
    .unwrap()
}

#[test]
fn the_service_shows_symbols_reports_expired_tokens_and_takes_symbols_in_control_calls() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(500, |_| {});
    let kite = kite_stand_in(dump_csv(12_345_602));
    // 999 is in no dump: an expired contract.
    let path = write_config(
        dir.path(),
        &feed.url(),
        &kite.root,
        r#"["NSE:INFY", 999]"#,
        "",
    );
    let loader = Loader::new(Clock::system(), Duration::from_secs(5));
    let cfg = Config::load_with(&path, &Env::default(), &loader).unwrap();
    let opts = Options {
        dump: loader.take(),
        config_path: Some(path.clone()),
        ..Options::default()
    };
    let engine = Engine::start(cfg, opts).unwrap();
    let ticked = common::wait_until(Duration::from_secs(20), || {
        instruments_view(&engine)["instruments"]
            .as_array()
            .is_some_and(|r| {
                r.iter()
                    .any(|x| x["instrument_token"] == 408_065 && x["tick_count"].as_u64() > Some(0))
            })
    });
    let v = instruments_view(&engine);
    assert!(ticked, "{v:#}");
    let row = |t: u32| {
        v["instruments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["instrument_token"] == t)
            .cloned()
            .unwrap()
    };
    assert_eq!(row(408_065)["symbol"], "NSE:INFY");
    assert_eq!(row(408_065)["listed"], true);
    assert!(row(408_065)["last_price"].as_f64().is_some());
    assert_eq!(row(999)["listed"], false);
    assert_eq!(v["dump"]["not_in_dump"], serde_json::json!([999]));
    assert_eq!(v["dump"]["day"], today().to_string());

    // A control call by symbol; an unknown one gets the closest.
    let base = format!("http://{}", engine.status_addr().unwrap());
    let r = client::request(
        &base,
        "POST",
        "/subscribe",
        Some(br#"{"tokens": ["NSE:RELIANCE"]}"#),
        None,
        Duration::from_secs(3),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(common::wait_until(Duration::from_secs(10), || {
        instruments_view(&engine)["instruments"]
            .as_array()
            .is_some_and(|r| {
                r.iter()
                    .any(|x| x["instrument_token"] == 738_561 && x["symbol"] == "NSE:RELIANCE")
            })
    }));
    let r = client::request(
        &base,
        "POST",
        "/subscribe",
        Some(br#"{"tokens": ["NSE:RELIANC"]}"#),
        None,
        Duration::from_secs(3),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body["unknown"][0]["did_you_mean"][0], "NSE:RELIANCE",
        "{body}"
    );

    // doctor reports the expired token.
    let out = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["doctor", "--timeout", "2", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 configured instrument(s) are not in the dump of")
            && text.contains("[999]"),
        "{text}"
    );
    assert!(
        text.contains(&format!("instruments dump of {}", today())),
        "{text}"
    );
    engine.stop().expect("a clean shutdown");
}

#[test]
fn the_daily_refresh_fetches_a_new_dump_and_moves_a_symbol_to_its_new_token() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(200, |_| {});
    // Today Kite lists NIFTYFUT under a new token (last month's expired).
    let kite = kite_stand_in(dump_csv(22_222_338));
    // Refresh at 00:00: due at once for a copy that is not today's.
    let path = write_config(
        dir.path(),
        &feed.url(),
        &kite.root,
        r#"["NFO:NIFTYFUT"]"#,
        "instruments_refresh = \"00:00\"\n",
    );
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let old_copy = data.join("instruments_2026-01-02.csv");
    std::fs::write(&old_copy, dump_csv(11_111_170)).unwrap();
    let old = Arc::new(Directory::parse(dump_csv(11_111_170).as_bytes()).unwrap());
    let cfg = Config::load_with(&path, &Env::default(), &old).unwrap();
    assert_eq!(cfg.connections[0].instruments, [11_111_170]);
    let opts = Options {
        dump: Some(Loaded {
            directory: old,
            path: old_copy,
            day: tickcap::time::LocalDate::parse("2026-01-02").unwrap(),
            warning: None,
        }),
        config_path: Some(path.clone()),
        ..Options::default()
    };
    let engine = Engine::start(cfg, opts).unwrap();
    let moved = common::wait_until(Duration::from_secs(20), || {
        let v = instruments_view(&engine);
        v["dump"]["day"] == today().to_string()
            && v["connections"][0]["instruments"]
                .as_array()
                .is_some_and(|l| l.len() == 1 && l[0]["instrument_token"] == 22_222_338)
    });
    assert!(moved, "{:#}", instruments_view(&engine));
    assert_eq!(
        std::fs::read_to_string(data.join(dump::file_name(today()))).unwrap(),
        dump_csv(22_222_338),
        "today's copy is kept beside the data"
    );
    engine.stop().expect("a clean shutdown");
}
