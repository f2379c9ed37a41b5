//! `tickcap candles FILE... --interval I [--interval I ...] [--out DIR]`:
//! re-cuts captured days into Kite's candles, the same bars the service
//! writes live (`[candles]`), one `candles_<interval>_YYYY-MM-DD.jsonl` per
//! interval and day.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use super::Failure;
use crate::candles::Interval;

/// Arguments of `tickcap candles`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(super) struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    cut: CutArgs,
}

/// `tickcap candles check`.
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Compare a captured day's candles with Kite's historical candles.
    Check(CheckArgs),
    /// Replace a closed day's incomplete bars (and the bars of its gaps)
    /// with Kite's historical ones, marked `"source": "kite"`; complete bars
    /// are never touched.
    Repair(CheckArgs),
}

/// Arguments of `tickcap candles check`.
#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The day (`YYYY-MM-DD`; default: today in the zone).
    #[arg(long)]
    day: Option<String>,
    /// The interval (Kite's name or a short form).
    #[arg(long, default_value = "minute", value_parser = parse_interval)]
    interval: Interval,
    /// Only these instruments (default: every one in the day's candle file).
    #[arg(long = "instrument", value_name = "TOKEN")]
    instruments: Vec<u32>,
    /// The service's config: data_dir, api_root, api_key and the access token.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The data directory (default: the config's, else ./market_data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Kite's REST root (default: the config's, else https://api.kite.trade).
    #[arg(long)]
    api_root: Option<String>,
    /// The API key (default: the config's).
    #[arg(long)]
    api_key: Option<String>,
    /// The access token (default: the config's, else $KITE_ACCESS_TOKEN).
    #[arg(long)]
    access_token: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The storage zone.
    #[arg(long, default_value = "Asia/Kolkata")]
    timezone: String,
}

/// Re-cutting captured tick files.
#[derive(Debug, clap::Args)]
struct CutArgs {
    /// Captured tick files (`market_data_…`, plain or `.jsonl.zst`), in order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Kite's interval names or short forms (`minute`/`1m`, `5m`, `15minute`, `60m`, `day`); repeatable.
    #[arg(long = "interval", required = true, value_parser = parse_interval)]
    intervals: Vec<Interval>,
    /// Where the candle files go (never over an existing file).
    #[arg(long, default_value = "candles")]
    out: PathBuf,
    /// The storage zone of the capture (bars align to its days).
    #[arg(long, default_value = "Asia/Kolkata")]
    timezone: String,
}

fn parse_interval(s: &str) -> Result<Interval, String> {
    Interval::parse(s).ok_or_else(|| {
        format!("{s:?}: one of minute (1m), 3minute, 5minute, 10minute, 15minute, 30minute, 60minute, day")
    })
}

/// Runs it.
pub(super) fn run(args: Args) -> Result<(), Failure> {
    match args.action {
        Some(Action::Check(c)) => check(c),
        Some(Action::Repair(c)) => repair(c),
        None => cut(args.cut),
    }
}

/// Where and as whom `check` and `repair` work, and on which day's files.
struct Day {
    src: crate::net::history::Source,
    zone: crate::time::ZoneFormatter,
    day: crate::time::LocalDate,
    data_dir: PathBuf,
    segs: Vec<crate::days::Segment>,
}

fn context(args: &CheckArgs) -> Result<Day, Failure> {
    let config = match &args.config {
        Some(p) => Some(
            crate::config::Config::load(p, &crate::config::Env::from_process())
                .map_err(Failure::usage)?,
        ),
        None => None,
    };
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| config.as_ref().map(|c| c.storage.data_dir.clone()))
        .unwrap_or_else(|| PathBuf::from("market_data"));
    let src = crate::net::history::Source {
        api_root: args
            .api_root
            .clone()
            .or_else(|| config.as_ref().map(|c| c.dump.api_root.clone()))
            .unwrap_or_else(|| "https://api.kite.trade".to_owned()),
        api_key: args
            .api_key
            .clone()
            .or_else(|| config.as_ref().map(|c| c.dump.api_key.clone()))
            .ok_or_else(|| Failure::usage(anyhow::anyhow!("--api-key (or --config) is needed")))?,
        access_token: args
            .access_token
            .clone()
            .or_else(|| {
                config
                    .as_ref()
                    .map(|c| c.dump.access_token.expose().to_owned())
            })
            .or_else(|| std::env::var("KITE_ACCESS_TOKEN").ok())
            .ok_or_else(|| {
                Failure::usage(anyhow::anyhow!("--access-token (or --config) is needed"))
            })?,
    };
    let mut zone = crate::time::ZoneFormatter::new(&args.timezone).map_err(Failure::usage)?;
    let day = match &args.day {
        Some(d) => crate::time::LocalDate::parse(d)
            .ok_or_else(|| Failure::usage(anyhow::anyhow!("--day {d:?}: not YYYY-MM-DD")))?,
        None => zone.date_of_micros(crate::time::Clock::system().now_micros()),
    };
    let family = crate::days::Family::Candles(args.interval);
    let segs = crate::days::segments_of_in(&data_dir, family, day);
    if segs.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "no {}{day}.jsonl in {} ([candles] intervals must include {}, or make one with `tickcap candles`)",
            family.prefix(),
            data_dir.display(),
            args.interval
        )));
    }
    Ok(Day {
        src,
        zone,
        day,
        data_dir,
        segs,
    })
}

/// Longest candle line read (tickcap writes ~200 bytes).
const MAX_LINE: usize = 64 << 10;

/// The day's bars as they stand: for each instrument and `date`, the last
/// line (a later line replaces an earlier one: the service's own repair).
fn read_bars(
    segs: &[crate::days::Segment],
) -> Result<Vec<crate::analysis::candles::Captured>, Failure> {
    use crate::analysis::candles::read_candles;
    // Keyed by (instrument, start): no second copy of each date string.
    let mut at: std::collections::HashMap<(u32, i64), usize> = Default::default();
    let mut ours: Vec<crate::analysis::candles::Captured> = Vec::new();
    let mut bad = 0u64;
    for s in segs {
        let long = crate::zst::for_each_line(&s.path, MAX_LINE, |line| {
            let (mut bars, b) = read_candles(line);
            match bars.pop() {
                Some(bar) if b == 0 => match at.entry((
                    bar.instrument_token,
                    crate::candles::parse_kite_date(&bar.date).unwrap_or(i64::MIN),
                )) {
                    std::collections::hash_map::Entry::Occupied(e) => ours[*e.get()] = bar,
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(ours.len());
                        ours.push(bar);
                    }
                },
                _ => bad += 1,
            }
        })
        .with_context(|| format!("reading {}", s.path.display()))?;
        if bad + long > 0 {
            eprintln!(
                "tickcap candles: {}: {} unreadable line(s) skipped",
                s.path.display(),
                bad + long
            );
            bad = 0;
        }
    }
    Ok(ours)
}

/// `tickcap candles repair`: the plan ([`crate::candles::stored`]) over the
/// day's gaps and lines, Kite's bars for it, and the day rewritten — one
/// line per bar, in place of its segments, atomically — in two streaming
/// passes (memory holds the repaired bars, not the day).
fn repair(args: CheckArgs) -> Result<(), Failure> {
    use crate::candles::stored::{key_of_line, DateCache, LastLines, Planner};
    use std::collections::BTreeMap;
    let Day {
        src,
        mut zone,
        day,
        data_dir,
        segs,
    } = context(&args)?;
    // A running tickcap holds today's open file: it is not ours to rewrite
    // (the service repairs today itself: `[candles] repair = true`).
    for s in &segs {
        let f = std::fs::File::open(&s.path).with_context(|| s.path.display().to_string())?;
        if !crate::days::try_lock(&f).context("locking")? {
            return Err(Failure::usage(anyhow::anyhow!(
                "{}: a running tickcap is writing it; repair a closed day",
                s.path.display()
            )));
        }
    }
    let journals: Vec<PathBuf> =
        crate::days::segments_of_in(&data_dir, crate::days::Family::Events, day)
            .into_iter()
            .map(|s| s.path)
            .collect();
    let gaps: Vec<(u32, i64, i64)> = if journals.is_empty() {
        eprintln!("tickcap candles repair: no events journal for {day}: only bars marked incomplete are repaired");
        Vec::new()
    } else {
        crate::analysis::coverage::gap_spans(&journals).context("reading the events journal")?
    };
    // Pass 1: the plan, and how many lines each bar that was ever
    // incomplete or repaired has (only the last is kept).
    let mut plan = Planner::new(args.interval, gaps);
    let mut dates = DateCache::default();
    let mut last = LastLines::default();
    for s in &segs {
        crate::zst::for_each_line(&s.path, MAX_LINE, |line| {
            plan.line(line, &mut dates);
            last.count(line);
        })
        .with_context(|| format!("reading {}", s.path.display()))?;
    }
    let mut wanted = plan.wanted(&mut zone, i64::MAX);
    if !args.instruments.is_empty() {
        wanted.retain(|t, _| args.instruments.contains(t));
    }
    let mut pacer = crate::net::history::Pacer::default();
    // (start, token) → Kite's bar as a line.
    let mut kite: BTreeMap<(i64, u32), Vec<u8>> = BTreeMap::new();
    let (mut replaced, mut added, mut unavailable) = (0u64, 0u64, 0u64);
    // Kite's 3 requests a second: a big gap takes minutes.
    let bar = super::tools::progress(format!(
        "fetching Kite's {} candles of {} instrument(s) (3 a second)",
        args.interval,
        wanted.len()
    ));
    for (n, (token, starts)) in wanted.iter().enumerate() {
        if let Some(b) = &bar {
            b.set_message(format!(
                "fetching Kite's {} candles: instrument {} of {}",
                args.interval,
                n + 1,
                wanted.len()
            ));
        }
        let (bars, missing) =
            crate::net::history::fetch_bars(&src, &mut pacer, *token, args.interval, day, starts)
                .with_context(|| format!("instrument {token}"))?;
        unavailable += missing;
        for b in bars {
            let mut line = Vec::new();
            crate::candles::write_bar_line(&mut line, &mut zone, &b, "kite");
            if last.had(b.instrument_token, b.start) {
                replaced += 1;
            } else {
                added += 1;
            }
            kite.insert((b.start, b.instrument_token), line);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // Pass 2: one plain file in place of the day's segments, atomically;
    // Kite's bars where their time comes.
    let target = data_dir.join(
        crate::days::SegmentId { day, index: 0 }
            .file_name_in(crate::days::Family::Candles(args.interval), false),
    );
    let tmp = target.with_extension("jsonl.repair-tmp");
    let mut bars = 0u64;
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut failed: Option<std::io::Error> = None;
        let mut queue = kite.iter().peekable();
        for s in &segs {
            crate::zst::for_each_line(&s.path, MAX_LINE, |line| {
                let Some(k) = key_of_line(line, &mut dates) else {
                    return;
                };
                while let Some(((at, _), kline)) = queue.peek() {
                    if *at > k.start {
                        break;
                    }
                    if let Err(e) = w.write_all(kline) {
                        failed.get_or_insert(e);
                    }
                    bars += 1;
                    queue.next();
                }
                if kite.contains_key(&(k.start, k.instrument_token)) {
                    return;
                }
                if !last.keep(line) {
                    return;
                }
                if let Err(e) = w.write_all(line).and_then(|()| w.write_all(b"\n")) {
                    failed.get_or_insert(e);
                }
                bars += 1;
            })
            .with_context(|| format!("reading {}", s.path.display()))?;
        }
        for (_, kline) in queue {
            w.write_all(kline)?;
            bars += 1;
        }
        if let Some(e) = failed {
            return Err(anyhow::Error::new(e)
                .context(format!("writing {}", tmp.display()))
                .into());
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &target).with_context(|| format!("replacing {}", target.display()))?;
    for s in &segs {
        if s.path != target {
            std::fs::remove_file(&s.path)
                .with_context(|| format!("removing {}", s.path.display()))?;
        }
    }
    let summary = serde_json::json!({
        "file": target.display().to_string(),
        "bars": bars,
        "replaced": replaced,
        "added": added,
        "not_in_kite": unavailable,
        "instruments": wanted.len(),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "{}: {replaced} incomplete bar(s) replaced and {added} missing bar(s) added from Kite (source \"kite\") over {} instrument(s); {unavailable} Kite has not; complete bars untouched",
            target.display(),
            wanted.len()
        );
    }
    Ok(())
}

/// `tickcap candles check`.
fn check(args: CheckArgs) -> Result<(), Failure> {
    use crate::analysis::candles::{compare, Agreement, FIELDS};
    let Day { src, day, segs, .. } = context(&args)?;
    let ours = read_bars(&segs)?;
    let mut tokens: Vec<u32> = if args.instruments.is_empty() {
        ours.iter().map(|b| b.instrument_token).collect()
    } else {
        args.instruments.clone()
    };
    tokens.sort_unstable();
    tokens.dedup();
    let mut pacer = crate::net::history::Pacer::default();
    let (from, to) = (format!("{day} 00:00:00"), format!("{day} 23:59:59"));
    let mut overall = Agreement::default();
    let mut per = serde_json::Map::new();
    let mut disagreements = Vec::new();
    let bar = super::tools::progress(format!(
        "fetching Kite's {} candles of {} instruments",
        args.interval,
        tokens.len()
    ));
    for t in &tokens {
        let kite =
            crate::net::history::fetch(&src, &mut pacer, *t, args.interval.kite_name(), &from, &to)
                .with_context(|| format!("instrument {t}"))?;
        let mine: Vec<_> = ours
            .iter()
            .filter(|b| b.instrument_token == *t)
            .cloned()
            .collect();
        let a = compare(*t, &mine, &kite);
        overall.add(&a);
        let sh = a.shares(false);
        per.insert(
            t.to_string(),
            serde_json::json!({
                "bars": a.bars,
                "agree": FIELDS.iter().zip(sh).map(|(f, x)| (f.to_string(), serde_json::json!(x))).collect::<serde_json::Map<_, _>>(),
                "complete_bars": a.complete_bars,
                "missing_in_capture": a.missing_in_capture,
                "not_in_kite": a.not_in_kite,
            }),
        );
        disagreements.extend(a.disagreements);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let agree = |c: bool| {
        FIELDS
            .iter()
            .zip(overall.shares(c))
            .map(|(f, x)| (f.to_string(), serde_json::json!(x)))
            .collect::<serde_json::Map<_, _>>()
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "day": day.to_string(),
                "interval": args.interval.kite_name(),
                "bars": overall.bars,
                "agree": agree(false),
                "complete_bars": overall.complete_bars,
                "agree_complete": agree(true),
                "missing_in_capture": overall.missing_in_capture,
                "not_in_kite": overall.not_in_kite,
                "instruments": per,
                "disagreements": disagreements.iter().map(|(t, d, f, o, k, c)| serde_json::json!({
                    "instrument_token": t, "date": d, "field": f, "tickcap": o, "kite": k, "complete": c
                })).collect::<Vec<_>>(),
            })
        );
        return Ok(());
    }
    let pct = |x: f64| format!("{:.2}%", x * 100.0);
    println!(
        "{day} {}: {} bars in both over {} instruments ({} marked complete); {} Kite bars missing in the capture, {} not in Kite",
        args.interval,
        overall.bars,
        tokens.len(),
        overall.complete_bars,
        overall.missing_in_capture,
        overall.not_in_kite
    );
    let (all, complete) = (overall.shares(false), overall.shares(true));
    for (i, f) in FIELDS.iter().enumerate() {
        println!(
            "  {f:<6} agree: {} of all bars, {} of complete bars",
            pct(all[i]),
            pct(complete[i])
        );
    }
    for (t, d, f, o, k, c) in disagreements.iter().take(50) {
        println!(
            "  {t} {d} {f}: tickcap {o}, Kite {k}{}",
            if *c { "" } else { " (bar marked incomplete)" }
        );
    }
    if disagreements.len() > 50 {
        println!("  … {} more (--json lists them)", disagreements.len() - 50);
    }
    Ok(())
}

/// `tickcap candles FILE...`.
fn cut(mut args: CutArgs) -> Result<(), Failure> {
    crate::days::sort_paths(&mut args.files);
    let journals = crate::analysis::coverage::journals_for(&args.files);
    if !crate::days::take_non_tick_files(&mut args.files).is_empty() {
        eprintln!("tickcap candles: events/orders/candle files are not ticks: skipped");
    }
    if args.files.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "no tick files among the files given"
        )));
    }
    let zone = crate::time::ZoneFormatter::new(&args.timezone).map_err(Failure::usage)?;
    let coverage = if journals.is_empty() {
        eprintln!("tickcap candles: no events journal beside the files: bars are marked incomplete only where the capture began inside them");
        None
    } else {
        Some(
            crate::analysis::coverage::read(&journals)
                .context("reading the events journal")?
                .0,
        )
    };
    let t0 = std::time::Instant::now();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    // One file per interval and day, written as the bars become final
    // (never over an existing one: that file is refused, its bars skipped).
    let mut files: std::collections::BTreeMap<
        (Interval, String),
        Option<std::io::BufWriter<std::fs::File>>,
    > = Default::default();
    let mut counts: std::collections::BTreeMap<(Interval, String), u64> = Default::default();
    let mut refused = 0;
    let mut incomplete = 0u64;
    let mut line = Vec::with_capacity(256);
    let mut wzone = zone.clone();
    let bar = super::tools::progress(format!("cutting {} file(s) into candles", args.files.len()));
    let cut = crate::analysis::candles::cut_with(
        &args.files,
        &args.intervals,
        &zone,
        coverage.as_ref(),
        |b| {
            let day = wzone.date_of_micros(b.start).to_string();
            let key = (b.interval, day.clone());
            if !files.contains_key(&key) {
                let path = args.out.join(format!(
                    "{}{day}.jsonl",
                    crate::days::Family::Candles(b.interval).prefix()
                ));
                let w = match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(f) => Some(std::io::BufWriter::with_capacity(1 << 20, f)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        eprintln!(
                            "tickcap candles: refused: {} exists (not overwritten)",
                            path.display()
                        );
                        refused += 1;
                        None
                    }
                    Err(e) => {
                        return Err(std::io::Error::new(
                            e.kind(),
                            format!("{}: {e}", path.display()),
                        ))
                    }
                };
                files.insert(key.clone(), w);
            }
            if let Some(Some(w)) = files.get_mut(&key) {
                line.clear();
                crate::candles::write_bar_line(&mut line, &mut wzone, b, "tickcap");
                w.write_all(&line)?;
                *counts.entry(key).or_default() += 1;
                if !b.complete {
                    incomplete += 1;
                }
            }
            Ok(())
        },
    )
    .context("reading the captures")?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for ((interval, day), w) in files {
        if let Some(w) = w {
            let f = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
            f.sync_all()?;
            println!(
                "{}: {} bars",
                args.out
                    .join(format!(
                        "{}{day}.jsonl",
                        crate::days::Family::Candles(interval).prefix()
                    ))
                    .display(),
                counts.get(&(interval, day.clone())).copied().unwrap_or(0)
            );
        }
    }
    for (p, line, why) in cut.bad.iter().take(20) {
        eprintln!("{}:{line}: {why}", p.display());
    }
    println!(
        "{} ticks → {} bars ({incomplete} incomplete) in {:.1} s; {} ticks without a trade, {} late, {} with volume going backwards (ignored)",
        cut.lines,
        cut.bars_written,
        t0.elapsed().as_secs_f64(),
        cut.stats.no_trade,
        cut.stats.late,
        cut.stats.volume_backwards
    );
    if refused > 0 || !cut.bad.is_empty() {
        return Err(Failure {
            code: if refused > 0 {
                super::EXIT_USAGE
            } else {
                super::EXIT_FAILURE
            },
            error: anyhow::anyhow!("{refused} file(s) refused, {} bad line(s)", cut.bad.len()),
        });
    }
    Ok(())
}
