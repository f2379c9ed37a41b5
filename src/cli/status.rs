//! `tickcap status`: a terminal view of a running service's status port.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::Failure;
use crate::status::client;

/// Arguments of `tickcap status`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The service's status port (default: the config's [status] listen,
    /// else http://127.0.0.1:8080).
    #[arg(long)]
    url: Option<String>,
    /// The service's config file: its [status] listen is the address.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Print one snapshot and exit.
    #[arg(long)]
    once: bool,
    /// Print the raw `/health` JSON and exit.
    #[arg(long)]
    json: bool,
}

fn fetch(url: &str, path: &str) -> Result<Value, String> {
    let r = client::get(url, path).map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("{url}{path}: HTTP {}", r.status));
    }
    r.json().ok_or_else(|| format!("{url}{path}: not JSON"))
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders the dashboard text from the four endpoints.
pub(super) fn render(url: &str) -> Result<String, String> {
    let h = fetch(url, "/health")?;
    let c = fetch(url, "/connections")?;
    let m = fetch(url, "/metrics")?;
    let st = fetch(url, "/storage")?;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "tickcap at {url}   status: {}   {}",
        s(&h["status"]).to_uppercase(),
        s(&h["timestamp"])
    );
    let _ = writeln!(
        o,
        "uptime {} s   ticks/s {}   received {}   written {}   instruments {}   data fresh: {}",
        s(&h["uptime_seconds"]),
        s(&h["ticks_per_second"]),
        s(&m["ticks_received"]),
        s(&m["lines_written"]),
        s(&h["subscribed_instruments"]),
        s(&h["data_fresh"])
    );
    if let Some(n) = h["serve_clients"].as_u64() {
        let c = fetch(url, "/clients").unwrap_or_default();
        let _ = writeln!(
            o,
            "hub          {} client(s) on {}   ticks sent {}   receive→client p99 {} µs   dropped slow {}",
            n,
            s(&c["listen"]),
            s(&m["serve"]["ticks_sent"]),
            s(&m["serve"]["receive_to_client_us"]["p99"]),
            s(&c["dropped_slow"])
        );
    }
    if let Ok(k) = fetch(url, "/kafka") {
        if k["enabled"] == true {
            let _ = writeln!(
                o,
                "kafka        {}   topic {}   acknowledged {}   lag {} ticks / {} s   position {}",
                s(&k["state"]),
                s(&k["topic"]),
                s(&k["acknowledged"]),
                s(&k["lag_ticks"]),
                s(&k["lag_seconds"]),
                s(&k["position"])
            );
        }
    }
    if let Some(r) = h["reasons"].as_array().filter(|r| !r.is_empty()) {
        let _ = writeln!(o, "why: {}", r.iter().map(s).collect::<Vec<_>>().join("; "));
    }
    let _ = writeln!(o, "\n  #  role        state        mode   instr    ticks/s        ticks  last tick (s)  reconnects");
    for x in c["connections"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  {}  {:<10}  {:<11}  {:<5}  {:>5}  {:>9}  {:>11}  {:>13}  {:>10}",
            s(&x["connection_id"]),
            s(&x["role"]),
            s(&x["state"]),
            s(&x["mode"]),
            s(&x["subscribed_instruments"]),
            s(&x["tick_rate"]),
            s(&x["tick_count"]),
            s(&x["seconds_since_last_tick"]),
            s(&x["reconnects"])
        );
    }
    // Instruments that have not ticked since they were subscribed, with
    // symbols when the service has the instruments dump; then any
    // configured token the dump no longer lists.
    if let Ok(i) = fetch(url, "/instruments") {
        let name = |x: &Value| match x["symbol"].as_str() {
            Some(sym) => format!("{sym} ({})", s(&x["instrument_token"])),
            None => s(&x["instrument_token"]),
        };
        if let Some(silent) = i["silent"].as_array().filter(|v| !v.is_empty()) {
            let shown: Vec<String> = silent
                .iter()
                .take(8)
                .map(|x| format!("{} {} s", name(x), s(&x["seconds_silent"])))
                .collect();
            let more = silent.len().saturating_sub(8);
            let _ = writeln!(
                o,
                "\nsilent       {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" … and {more} more")
                } else {
                    String::new()
                }
            );
        }
        if let Some(gone) = i["dump"]["not_in_dump"]
            .as_array()
            .filter(|v| !v.is_empty())
        {
            let _ = writeln!(
                o,
                "not in today's instruments dump (expired?): {}",
                gone.iter().map(s).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let l = &m["latency"];
    let _ = writeln!(
        o,
        "\nlatency µs   receive→ring p50 {} p99 {} max {}   receive→written p50 {} p99 {} max {}",
        s(&l["receive_to_ring_us"]["p50"]),
        s(&l["receive_to_ring_us"]["p99"]),
        s(&l["receive_to_ring_us"]["max"]),
        s(&l["receive_to_written_us"]["p50"]),
        s(&l["receive_to_written_us"]["p99"]),
        s(&l["receive_to_written_us"]["max"])
    );
    let _ = writeln!(
        o,
        "storage      {}   {} bytes in {} file(s)   lines today {}   fsync {}   last flush {}   write errors {}",
        s(&st["current_file"]),
        s(&st["total_bytes"]),
        s(&st["file_count"]),
        s(&st["lines_written_today"]),
        s(&st["fsync_policy"]),
        s(&st["last_flush"]),
        s(&st["write_errors"])
    );
    Ok(o)
}

/// Where the service's status port is: `--url`, else the config's
/// `[status] listen` (a wildcard address is asked on loopback), else the
/// default.
fn status_url(args: &Args) -> Result<String, Failure> {
    if let Some(u) = &args.url {
        return Ok(u.clone());
    }
    let Some(path) = &args.config else {
        return Ok("http://127.0.0.1:8080".to_owned());
    };
    let raw = crate::config::status_listen_of(path).map_err(Failure::usage)?;
    let mut addr = raw;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(format!("http://{addr}"))
}

/// Runs the view.
pub(super) fn run(mut args: Args) -> Result<(), Failure> {
    args.url = Some(status_url(&args)?);
    let url = args.url.clone().unwrap_or_default();
    let args = Resolved {
        url,
        once: args.once,
        json: args.json,
    };
    if args.json {
        let h = fetch(&args.url, "/health").map_err(|e| anyhow::anyhow!(e))?;
        println!("{h}");
        return Ok(());
    }
    if args.once {
        print!("{}", render(&args.url).map_err(|e| anyhow::anyhow!(e))?);
        return Ok(());
    }
    loop {
        let text = render(&args.url).unwrap_or_else(|e| {
            format!("cannot reach the service: {e}\n(retrying every second; Ctrl-C to quit)\n")
        });
        // Home, clear, draw: refresh in place.
        print!("\x1b[H\x1b[2J{text}");
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The arguments with the address resolved.
struct Resolved {
    url: String,
    once: bool,
    json: bool,
}
