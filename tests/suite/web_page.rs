//! The status web page in a real headless browser (Debian's chromium): it
//! loads against a running engine, shows live numbers, and they change.
//! `.ci/run` installs chromium; where none was on the PATH at build time
//! (see `build.rs`) the test is reported as ignored, with the reason.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tickcap::config::{Config, Env};
use tickcap::engine::{Engine, Options};

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_owned)
}

fn browse(bin: &str, profile: &Path, extra: &[&str], url: &str) -> std::process::Output {
    Command::new("timeout")
        .arg("60")
        .arg(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

/// The number shown in the element with `id` in a DOM dump.
fn shown(dom: &str, id: &str) -> Option<u64> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let text = &dom[at..];
    let start = text.find('>')? + 1;
    let end = text[start..].find('<')? + start;
    text[start..end].replace(',', "").trim().parse().ok()
}

#[test]
#[cfg_attr(
    not(has_chromium),
    ignore = "no chromium on PATH at build time (apt-get install chromium, then rebuild)"
)]
fn the_page_shows_live_numbers_that_change() {
    let bin = chromium().expect("chromium on PATH (it was at build time)");
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(2_000, |_| {});
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\n[status]\nlisten = \"127.0.0.1:0\"\n\
         [primary]\ninstruments = [256, 512, 256265]\n[secondary]\ninstruments = [2562]\n",
        feed.url(),
        dir.path().join("data").display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    let csv = "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\n\
               256265,1001,NIFTY 50,\"NIFTY 50\",0,,,0,0,EQ,INDICES,NSE\n";
    let opts = Options {
        dump: Some(tickcap::net::dump::Loaded {
            directory: Arc::new(tickcap::kite::Directory::parse(csv.as_bytes()).unwrap()),
            path: dir.path().join("instruments_2026-11-25.csv"),
            day: tickcap::time::LocalDate::parse("2026-11-25").unwrap(),
            warning: None,
        }),
        ..Options::default()
    };
    let engine = Engine::start(cfg, opts).unwrap();
    let stats = Arc::clone(engine.stats());
    assert!(common::wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 100));
    let url = format!("http://{}/", engine.status_addr().unwrap());
    // Today's coverage is known for every instrument (the journal thread
    // publishes it within a second).
    assert!(common::wait_until(Duration::from_secs(10), || {
        let v = common::get_json(&url, "/instruments");
        v["instruments"]
            .as_array()
            .is_some_and(|a| a.len() == 4 && a.iter().all(|r| r["covered_share_today"].is_number()))
    }));

    let first = browse(&bin, &dir.path().join("p1"), &["--dump-dom"], &url);
    let dom1 = String::from_utf8_lossy(&first.stdout).into_owned();
    let n1 = shown(&dom1, "total-ticks")
        .unwrap_or_else(|| panic!("no live number in the page:\n{dom1}"));
    assert!(n1 > 0);
    assert!(
        dom1.contains("primary") && dom1.contains("open"),
        "connections table not filled"
    );
    assert!(dom1.contains("market_data_"), "storage table not filled");
    // The instruments panel: symbols from the dump, every subscribed token.
    assert!(
        dom1.contains("NSE:NIFTY 50") && dom1.contains("<td>2562</td>"),
        "instruments panel not filled:\n{dom1}"
    );
    // Paged in its own box, with the day's numbers and today's coverage.
    assert!(dom1.contains("page 1 of 1 (4 rows)"), "no pager:\n{dom1}");
    assert!(
        dom1.contains("%</td></tr>"),
        "no covered share in the instruments rows:\n{dom1}"
    );
    let insts = common::get_json(&url, "/instruments");
    let row = insts["instruments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["instrument_token"] == 2562)
        .unwrap()
        .clone();
    assert!(
        row["ohlc"]["high"].as_f64() >= row["ohlc"]["low"].as_f64(),
        "{row}"
    );
    assert!(row["volume"].as_u64() > Some(0), "{row}");
    assert!(row["change_percent"].is_number(), "{row}");
    assert_eq!(row["price_decimals"], 2, "{row}");
    // The fact the second page must show: more ticks than the first did.
    assert!(common::wait_until(Duration::from_secs(10), || stats
        .ticks_received()
        > n1 + 500));
    let second = browse(&bin, &dir.path().join("p2"), &["--dump-dom"], &url);
    let n2 = shown(&String::from_utf8_lossy(&second.stdout), "total-ticks").unwrap();
    assert!(n2 > n1, "the numbers do not change: {n1} then {n2}");

    let shot = dir.path().join("status.png");
    let out = browse(
        &bin,
        &dir.path().join("p3"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,1000",
        ],
        &url,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000, "screenshot too small to show anything");
    if let Ok(keep) = std::env::var("TICKCAP_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
    engine.stop().expect("a clean shutdown");
}
