//! `tickcap storage`, `tickcap analyze`, `tickcap verify`: the tools over
//! captured files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use super::Failure;
use crate::analysis::analyze::{self, Analysis};
use crate::analysis::{scan, storage, verify};
use crate::time::ZoneFormatter;

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn zone(name: &str) -> Result<ZoneFormatter, Failure> {
    ZoneFormatter::new(name).map_err(Failure::usage)
}

/// A spinner on stderr for long runs, only on a terminal.
pub(super) fn progress(msg: String) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(msg);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    })
}

fn report_bad(path: &Path, bad: &[(usize, String)]) {
    for (line, why) in bad.iter().take(20) {
        eprintln!("{}:{line}: {why}", path.display());
    }
    if bad.len() > 20 {
        eprintln!(
            "{}: ... and {} more bad lines",
            path.display(),
            bad.len() - 20
        );
    }
}

/// Arguments of `tickcap storage`.
#[derive(Debug, clap::Args)]
pub(super) struct StorageArgs {
    /// The data directory.
    #[arg(long, default_value = "./market_data")]
    data_dir: PathBuf,
    /// Zone that decides which file is today's.
    #[arg(long, default_value = "Asia/Kolkata")]
    timezone: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Delete daily files older than --keep-days (never today's; only daily file names).
    #[arg(long, requires = "keep_days")]
    cleanup: bool,
    /// With --cleanup: days to keep.
    #[arg(long, requires = "cleanup", value_parser = clap::value_parser!(u32).range(1..))]
    keep_days: Option<u32>,
    /// Count every file again instead of trusting its sidecar index
    /// (`NAME.idx`), and say where an index disagreed.
    #[arg(long)]
    recount: bool,
}

/// `tickcap storage`.
pub(super) fn storage(args: StorageArgs) -> Result<(), Failure> {
    let mut z = zone(&args.timezone)?;
    let today = z.date_of_micros(crate::time::Clock::system().now_micros());
    if !args.data_dir.is_dir() {
        return Err(Failure::usage(anyhow::anyhow!(
            "{} is not a directory",
            args.data_dir.display()
        )));
    }
    if args.cleanup {
        let removed = crate::sink::files::apply_retention(
            &args.data_dir,
            today,
            args.keep_days.unwrap_or(30),
        )
        .with_context(|| format!("cleaning {}", args.data_dir.display()))?;
        for r in &removed {
            println!("removed {}", r.display());
        }
        println!("{} file(s) removed", removed.len());
    }
    let bar = progress(format!("reading {}", args.data_dir.display()));
    let listed = storage::list_with(&args.data_dir, args.recount);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let (files, skipped, wrong) =
        listed.with_context(|| format!("reading {}", args.data_dir.display()))?;
    for s in &skipped {
        eprintln!("tickcap storage: skipped {s}");
    }
    for w in &wrong {
        eprintln!("tickcap storage: index corrected: {w}");
    }
    if args.json {
        println!("{}", storage::to_json(&args.data_dir, &files, today));
        return Ok(());
    }
    println!("{}  (today: {today})", args.data_dir.display());
    println!(
        "{:<32} {:>12} {:>10}  {:<32}  {:<32}",
        "file", "bytes", "ticks", "first", "last"
    );
    for f in &files {
        println!(
            "{:<32} {:>12} {:>10}  {:<32}  {:<32}{}{}",
            f.name,
            f.bytes,
            f.ticks,
            f.first.as_deref().unwrap_or("-"),
            f.last.as_deref().unwrap_or("-"),
            if f.date == today { "  ← today" } else { "" },
            if f.torn { "  (torn last line)" } else { "" }
        );
    }
    println!(
        "{} file(s), {} bytes, {} ticks",
        files.len(),
        files.iter().map(|f| f.bytes).sum::<u64>(),
        files.iter().map(|f| f.ticks).sum::<u64>()
    );
    Ok(())
}

/// Arguments of `tickcap analyze`.
#[derive(Debug, clap::Args)]
pub(super) struct AnalyzeArgs {
    /// Captured JSONL files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Only these instruments, as tokens or EXCHANGE:SYMBOL (repeat the flag for several).
    #[arg(long = "instrument")]
    instruments: Vec<String>,
    /// Kite's instruments dump CSV for symbols (default: the latest
    /// `instruments_YYYY-MM-DD.csv` beside the first file, up to its day).
    #[arg(long)]
    instruments_dump: Option<PathBuf>,
    /// Print the analysis report as JSON.
    #[arg(long)]
    json: bool,
    /// Write PNG charts here: ticks per second over the day, and the price of each --instrument.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Zone of the printed times and the charts' time of day.
    #[arg(long, default_value = "Asia/Kolkata")]
    timezone: String,
    /// Threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

/// `tickcap analyze`.
pub(super) fn analyze(mut args: AnalyzeArgs) -> Result<(), Failure> {
    // A day's segments in their order, whatever order the shell gave.
    crate::days::sort_paths(&mut args.files);
    let journals = crate::analysis::coverage::journals_for(&args.files);
    skip_non_tick_files("analyze", &mut args.files)?;
    let mut z = zone(&args.timezone)?;
    let n = args.threads.unwrap_or_else(threads).max(1);
    let dir = dump_beside(args.instruments_dump.as_deref(), &args.files)?;
    let filter = resolve_instruments(&args.instruments, dir.as_ref())?;
    let keep_series = args.plot.is_some() && !filter.is_empty();
    let mut all = Analysis::new(filter.clone(), keep_series);
    let mut per_file = Vec::new();
    let mut bad_total = 0;
    // A named input that cannot be read is reported, the rest analyzed,
    // and the exit is 1.
    let mut unreadable = 0usize;
    for path in &args.files {
        if let Err(e) = crate::util::regular_file(path) {
            eprintln!("tickcap analyze: skipped {e}");
            unreadable += 1;
            continue;
        }
        let bar = progress(format!("analyzing {}", path.display()));
        let scanned = scan::scan(path, n, false, || {
            Analysis::new(filter.clone(), keep_series)
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let (s, _) = match scanned {
            Ok(x) => x,
            Err(e) => {
                eprintln!("tickcap analyze: skipped {}: {e}", path.display());
                unreadable += 1;
                continue;
            }
        };
        report_bad(path, &s.bad);
        bad_total += s.bad.len();
        let mut r = analyze::report(&s, &mut z, dir.as_ref());
        r["file"] = json!(path.display().to_string());
        per_file.push(r);
        analyze::combine(&mut all, s);
    }
    let mut overall = analyze::report(&all, &mut z, dir.as_ref());
    // Coverage per instrument, from the days' events journals.
    if !journals.is_empty() {
        let (cov, _) =
            crate::analysis::coverage::read(&journals).context("reading the events journal")?;
        if let Some(m) = overall["instruments"].as_object_mut() {
            for (t, i) in &cov.instruments {
                if let Some(v) = m.get_mut(&t.to_string()) {
                    v["covered_share"] = json!(i.share());
                    v["coverage_gaps"] = json!(i.gaps.len());
                }
            }
        }
        overall["coverage"] = json!({
            "journals": journals.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "watched_instruments": cov.instruments.len(),
            "gaps": cov.gaps().len(),
            "runs": cov.runs.len(),
        });
    }
    if let Some(plot_dir) = &args.plot {
        let off = all
            .range
            .map_or(19_800, |(a, _)| i64::from(z.offset_seconds(a)));
        let title = args
            .files
            .iter()
            .map(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(", ");
        #[cfg(feature = "plot")]
        {
            let written =
                crate::analysis::plot::write_all(&all, plot_dir, off, &title, dir.as_ref())
                    .map_err(|e| anyhow::anyhow!(e))?;
            for w in &written {
                eprintln!("wrote {}", w.display());
            }
        }
        #[cfg(not(feature = "plot"))]
        {
            let _ = (plot_dir, off, title);
            return Err(Failure::usage(anyhow::anyhow!(
                "--plot: this tickcap was built without the `plot` feature (cargo build --features plot)"
            )));
        }
    }
    if args.json {
        println!("{}", json!({"files": per_file, "overall": overall}));
    } else {
        print_summary(&overall, &args.files, bad_total);
    }
    if unreadable > 0 {
        return Err(anyhow::anyhow!("{unreadable} input(s) could not be read (above)").into());
    }
    Ok(())
}

/// The instruments dump for symbols: `--instruments-dump`, else the latest
/// copy beside the first file dated up to that file's day (or any).
fn dump_beside(
    explicit: Option<&std::path::Path>,
    files: &[PathBuf],
) -> Result<Option<crate::kite::Directory>, Failure> {
    if let Some(p) = explicit {
        return Ok(Some(
            crate::net::dump::read_copy(p).map_err(Failure::usage)?,
        ));
    }
    let Some(first) = files.first() else {
        return Ok(None);
    };
    let dir = first
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = first
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let day = crate::sink::files::date_of_name(&name);
    let found =
        crate::net::dump::latest_in(dir, day).or_else(|| crate::net::dump::latest_in(dir, None));
    Ok(found.and_then(|(_, p)| crate::net::dump::read_copy(&p).ok()))
}

/// `--instrument` values: tokens, or symbols looked up in the dump.
fn resolve_instruments(
    given: &[String],
    dir: Option<&crate::kite::Directory>,
) -> Result<Vec<u32>, Failure> {
    given
        .iter()
        .map(|g| {
            if let Ok(t) = g.trim().parse::<u32>() {
                return Ok(t);
            }
            let Some(d) = dir else {
                return Err(Failure::usage(anyhow::anyhow!(
                    "--instrument {g:?}: a symbol needs an instruments dump (none beside the files; give --instruments-dump or a token)"
                )));
            };
            d.token(g).ok_or_else(|| {
                Failure::usage(anyhow::anyhow!(
                    "--instrument {g:?}: unknown symbol; did you mean {}?",
                    d.suggest(g, 3).join(", ")
                ))
            })
        })
        .collect()
}

fn print_summary(r: &Value, files: &[PathBuf], bad: usize) {
    println!(
        "{} file(s): {} ticks, {} instruments, {} bad line(s)",
        files.len(),
        r["total_ticks"],
        r["unique_instruments"],
        bad
    );
    if let Some(t) = r["time_range"].as_object() {
        println!(
            "time range: {} → {} ({:.1} s)",
            t["start"].as_str().unwrap_or("-"),
            t["end"].as_str().unwrap_or("-"),
            t["duration_seconds"].as_f64().unwrap_or(0.0)
        );
    }
    println!("modes: {}   connections: {}", r["modes"], r["connections"]);
    if let Some(c) = r["coverage"].as_object() {
        println!(
            "coverage (events journal): {} watched instrument(s), {} gap(s) over {} run(s) — `tickcap coverage` lists them",
            c["watched_instruments"], c["gaps"], c["runs"]
        );
    }
    let tps = &r["ticks_per_second"];
    println!(
        "ticks/s: mean {:.1}, peak {} at {}",
        tps["mean"].as_f64().unwrap_or(0.0),
        tps["peak"],
        tps["peak_second"].as_str().unwrap_or("-")
    );
    println!(
        "\n{:>10} {:<24} {:>9} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "instrument",
        "symbol",
        "ticks",
        "first",
        "last",
        "min",
        "max",
        "mean",
        "volume",
        "ticks/s",
        "covered"
    );
    if let Some(m) = r["instruments"].as_object() {
        let mut rows: Vec<(&String, &Value)> = m.iter().collect();
        rows.sort_by_key(|(_, v)| std::cmp::Reverse(v["count"].as_u64().unwrap_or(0)));
        for (t, v) in rows.iter().take(50) {
            let f = |k: &str| v[k].as_f64().map_or("-".into(), |x| format!("{x:.2}"));
            println!(
                "{:>10} {:<24} {:>9} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9.2} {:>9}",
                t,
                v["symbol"].as_str().unwrap_or("-"),
                v["count"],
                f("first_price"),
                f("last_price"),
                f("min_price"),
                f("max_price"),
                f("mean_price"),
                v["volume"].as_u64().map_or("-".into(), |x| x.to_string()),
                v["ticks_per_second"].as_f64().unwrap_or(0.0),
                v["covered_share"]
                    .as_f64()
                    .map_or("-".into(), |x| format!("{:.2}%", x * 100.0))
            );
        }
        if rows.len() > 50 {
            println!("... {} more instruments (--json for all)", rows.len() - 50);
        }
    }
}

/// Arguments of `tickcap verify`.
#[derive(Debug, clap::Args)]
pub(super) struct VerifyArgs {
    /// Captured JSONL files, in order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The replay feed's exit report: check that every tick it sent was captured exactly once.
    #[arg(long)]
    replay_report: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Report silences at least this long (seconds): an instrument's while
    /// its connection kept ticking, and a whole connection's.
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    gap: f64,
    /// With an events journal: a first connect after a start that took at
    /// most this long (seconds) does not make the capture incomplete.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    startup_grace: f64,
}

/// Leaves only tick files in `files`, saying what was skipped; an error
/// when nothing is left.
fn skip_non_tick_files(cmd: &str, files: &mut Vec<PathBuf>) -> Result<(), Failure> {
    let other = crate::days::take_non_tick_files(files);
    if !other.is_empty() {
        eprintln!(
            "tickcap {cmd}: {} events/orders file(s) are not ticks and are not read as ticks (the events journal gives coverage)",
            other.len()
        );
    }
    if files.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "no tick files (market_data_…) among the files given"
        )));
    }
    Ok(())
}

/// Arguments of `tickcap coverage`.
#[derive(Debug, clap::Args)]
pub(super) struct CoverageArgs {
    /// Daily files (`events_…`, or the `market_data_…` / `orders_…` files
    /// whose day's journal to read).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Only this instrument.
    #[arg(long, value_name = "TOKEN")]
    instrument: Option<u32>,
    /// Print JSON: `runs`, `instruments` (covered share and intervals) and
    /// `gaps` (each with `instrument_token`, `start`, `end`, `cause`).
    #[arg(long)]
    json: bool,
    /// The zone of the times printed.
    #[arg(long, default_value = "Asia/Kolkata")]
    timezone: String,
}

/// `tickcap coverage`.
pub(super) fn coverage(args: CoverageArgs) -> Result<(), Failure> {
    use crate::analysis::coverage as cov;
    let journals = cov::journals_for(&args.files);
    if journals.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "no events journal (events_YYYY-MM-DD.jsonl) beside {}: it is written by tickcap 0.1 captures from this version on",
            args.files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let (r, bad) = cov::read(&journals).context("reading the events journal")?;
    if bad > 0 {
        eprintln!(
            "tickcap coverage: {bad} journal line(s) skipped (torn, or written by a newer tickcap)"
        );
    }
    let mut z = zone(&args.timezone)?;
    if args.json {
        println!("{}", cov::report_json(&mut z, &r, args.instrument));
        return Ok(());
    }
    for run in &r.runs {
        println!(
            "run {} → {}{}",
            cov::iso(&mut z, run.start),
            cov::iso(&mut z, run.end),
            if run.clean {
                ""
            } else {
                " (no stop record: killed, crashed or still running)"
            }
        );
    }
    let pick = |t: &u32| args.instrument.is_none_or(|o| o == *t);
    let mut shown = 0;
    for (t, i) in r.instruments.iter().filter(|(t, _)| pick(t)) {
        shown += 1;
        println!(
            "instrument {t}: covered {:.3}% of {:.1} s watched, {} gap(s)",
            i.share() * 100.0,
            i.watched_micros as f64 / 1e6,
            i.gaps.len()
        );
    }
    if shown == 0 {
        println!("no instrument was watched in this journal");
    }
    let gaps = r.gaps();
    for (start, end, cause, tokens) in
        cov::group_gaps(gaps.into_iter().filter(|g| pick(&g.instrument_token)))
    {
        println!(
            "gap: {} → {} ({:.3} s), {}: {cause}",
            cov::iso(&mut z, start),
            cov::iso(&mut z, end),
            (end - start) as f64 / 1e6,
            cov::tokens_text(&tokens)
        );
    }
    Ok(())
}

/// `tickcap verify`: exit 0 only when every check passes.
pub(super) fn verify(mut args: VerifyArgs) -> Result<(), Failure> {
    crate::days::sort_paths(&mut args.files);
    let journals = crate::analysis::coverage::journals_for(&args.files);
    skip_non_tick_files("verify", &mut args.files)?;
    let report = match &args.replay_report {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))
                .map_err(Failure::usage)?;
            let r: crate::replay::Report = serde_json::from_str(text.trim()).map_err(|e| {
                Failure::usage(anyhow::anyhow!("{}: not a replay report: {e}", p.display()))
            })?;
            Some(r)
        }
        None => None,
    };
    if !(args.gap > 0.0 && args.gap.is_finite()) {
        return Err(Failure::usage(anyhow::anyhow!(
            "--gap must be a positive number of seconds"
        )));
    }
    let gap_micros = (args.gap * 1e6) as i64;
    let keep = report.is_some();
    let check = move || {
        let c = verify::Check::with_gap(gap_micros);
        if keep {
            c
        } else {
            c.without_volumes()
        }
    };
    let mut all = check();
    let mut files = Vec::new();
    let mut problems = 0usize;
    let (mut bad_total, mut back_total) = (0usize, 0usize);
    for path in &args.files {
        if let Err(e) = crate::util::regular_file(path) {
            eprintln!("tickcap verify: skipped {e}");
            problems += 1;
            continue;
        }
        let bar = progress(format!("verifying {}", path.display()));
        let (c, lines) = scan::scan(path, threads(), true, check)
            .with_context(|| format!("reading {}", path.display()))?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        report_bad(path, &c.bad);
        for (line, conn) in c.backwards.iter().take(20) {
            eprintln!(
                "{}:{line}: timestamp earlier than the previous line of connection {conn}",
                path.display()
            );
        }
        problems += c.bad.len() + c.backwards.len();
        files.push(json!({"file": path.display().to_string(), "lines": lines, "ticks": c.lines, "bad_lines": c.bad.len(),
                          "timestamps_backwards": c.backwards.len()}));
        bad_total += c.bad.len();
        back_total += c.backwards.len();
        verify::chain(&mut all, c);
    }
    let against = report
        .as_ref()
        .map(|r| verify::against_report(&all, &r.last_volume, r.sent));
    // Coverage from the events journal: every watched instrument covered
    // for the whole capture, or each gap with its cause.
    let coverage = if journals.is_empty() {
        None
    } else {
        Some(crate::analysis::coverage::read(&journals).context("reading the events journal")?)
    };
    let grace = (args.startup_grace.max(0.0) * 1e6) as i64;
    let failing: Vec<crate::events::coverage::Gap> = coverage
        .as_ref()
        .map(|(r, _)| {
            crate::analysis::coverage::failing_gaps(r, grace)
                .into_iter()
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let complete = problems + all.backwards.len() == 0
        && against.as_ref().is_none_or(|a| a.complete())
        && failing.is_empty();
    let inst_gaps = all.gaps.instrument_gaps();
    let conn_gaps = &all.gaps.connections;
    let mut zone2 = self::zone("Asia/Kolkata")?;
    let mut zone = self::zone("Asia/Kolkata")?;
    let mut iso = |micros: i64| {
        let mut b = Vec::new();
        zone.write_micros(&mut b, micros);
        String::from_utf8_lossy(&b).into_owned()
    };
    let coverage_json = coverage.as_ref().map(|(r, bad)| {
        json!({
            "journals": journals.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "complete": failing.is_empty(),
            "instruments": r.instruments.len(),
            "unreadable_lines": bad,
            "gaps": failing.iter().map(|g| crate::analysis::coverage::gap_json(&mut zone2, g)).collect::<Vec<_>>(),
        })
    });
    if args.json {
        // Listed up to 10,000 (a real day's illiquid instruments are
        // silent for minutes by the hundred thousand); all are counted.
        let ig: Vec<Value> = inst_gaps
            .iter()
            .take(10_000)
            .map(|(t, c, f, to)| json!({"instrument_token": t, "connection_id": c, "from": iso(*f), "to": iso(*to), "seconds": (to - f) as f64 / 1e6}))
            .collect();
        let cg: Vec<Value> = conn_gaps
            .iter()
            .map(|(c, f, to)| json!({"connection_id": c, "from": iso(*f), "to": iso(*to), "seconds": (to - f) as f64 / 1e6}))
            .collect();
        println!(
            "{}",
            json!({"files": files, "ticks": all.lines, "bad_lines": bad_total, "timestamps_backwards": back_total + all.backwards.len(),
            "replay": against.as_ref().map(verify::against_json), "ok": complete,
            "complete": against.as_ref().map(|a| a.complete()),
            "coverage": coverage_json,
            "gaps": {"threshold_seconds": args.gap, "instrument_gaps": inst_gaps.len(), "instruments": ig, "connections": cg}})
        );
    } else {
        println!(
            "{} file(s), {} ticks: {} bad line(s), {} timestamp(s) going backwards",
            args.files.len(),
            all.lines,
            bad_total,
            back_total + all.backwards.len()
        );
        if let Some(a) = &against {
            println!(
                "against the replay report: sent {}, captured {}, missing {}, duplicated {}, out of order {}",
                a.sent, a.captured, a.missing, a.duplicated, a.out_of_order
            );
            for (t, m, d, o) in &a.worst {
                println!("  instrument {t}: missing {m}, duplicated {d}, out of order {o}");
            }
        }
        match &coverage {
            None => println!("no events journal beside these files: coverage unknown (silences below are a guess)"),
            Some((r, _)) if failing.is_empty() => println!(
                "coverage: all {} watched instrument(s) covered for the whole capture ({} run(s), journal {})",
                r.instruments.len(),
                r.runs.len(),
                journals.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            Some((r, _)) => {
                println!(
                    "coverage: INCOMPLETE — {} gap(s) over {} watched instrument(s):",
                    failing.len(),
                    r.instruments.len()
                );
                let groups = crate::analysis::coverage::group_gaps(&failing);
                for (start, end, cause, tokens) in groups.iter().take(200) {
                    println!(
                        "  {} → {} ({:.3} s), {}: {cause}",
                        crate::analysis::coverage::iso(&mut zone2, *start),
                        crate::analysis::coverage::iso(&mut zone2, *end),
                        (end - start) as f64 / 1e6,
                        crate::analysis::coverage::tokens_text(tokens)
                    );
                }
                if groups.len() > 200 {
                    println!("  … and {} more (--json lists all)", groups.len() - 200);
                }
            }
        }
        for (c, f, to) in conn_gaps.iter().take(50) {
            println!(
                "gap: connection {c} silent for {:.0} s, {} → {}",
                (to - f) as f64 / 1e6,
                iso(*f),
                iso(*to)
            );
        }
        for (t, c, f, to) in inst_gaps.iter().take(50) {
            println!(
                "gap: instrument {t} silent for {:.0} s while connection {c} kept ticking, {} → {}",
                (to - f) as f64 / 1e6,
                iso(*f),
                iso(*to)
            );
        }
        let gaps = inst_gaps.len() + conn_gaps.len();
        println!(
            "{}",
            match (complete, &against) {
                (false, _) => "FAILED: see above".to_owned(),
                (true, Some(_)) => "OK: every tick the feed sent was captured exactly once".to_owned(),
                (true, None) if coverage.is_some() => "OK: every line is well formed and every watched instrument was covered for the whole capture (events journal)".to_owned(),
                (true, None) if gaps == 0 => format!(
                    "OK: every line is well formed; no silence of {} s or more. Completeness cannot be proven without the feed's report (--replay-report)",
                    args.gap
                ),
                (true, None) => format!(
                    "every line is well formed, but {gaps} gap(s) of {} s or more (above) may be lost ticks; completeness cannot be proven without the feed's report",
                    args.gap
                ),
            }
        );
    }
    if complete {
        Ok(())
    } else {
        Err(anyhow::anyhow!("verification failed").into())
    }
}
