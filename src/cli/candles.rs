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
pub(super) struct Args {
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
pub(super) fn run(mut args: Args) -> Result<(), Failure> {
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
    let mut zone = crate::time::ZoneFormatter::new(&args.timezone).map_err(Failure::usage)?;
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
    let cut = crate::analysis::candles::cut(&args.files, &args.intervals, &zone, coverage.as_ref())
        .context("reading the captures")?;
    for (p, line, why) in cut.bad.iter().take(20) {
        eprintln!("{}:{line}: {why}", p.display());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    // One file per interval and day, lines in the order the bars became final.
    let mut files: std::collections::BTreeMap<(Interval, String), Vec<u8>> = Default::default();
    for b in &cut.bars {
        let day = zone.date_of_micros(b.start).to_string();
        let buf = files.entry((b.interval, day)).or_default();
        crate::candles::write_bar_line(buf, &mut zone, b, "tickcap");
    }
    let mut refused = 0;
    for ((interval, day), text) in &files {
        let path = args.out.join(format!(
            "{}{day}.jsonl",
            crate::days::Family::Candles(*interval).prefix()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(text)
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("writing {}", path.display()))?;
                println!(
                    "{}: {} bars",
                    path.display(),
                    text.iter().filter(|b| **b == b'\n').count()
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                eprintln!(
                    "tickcap candles: refused: {} exists (not overwritten)",
                    path.display()
                );
                refused += 1;
            }
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display()).into()),
        }
    }
    let incomplete = cut.bars.iter().filter(|b| !b.complete).count();
    println!(
        "{} ticks → {} bars ({incomplete} incomplete) in {:.1} s; {} ticks without a trade, {} late, {} with volume going backwards (ignored)",
        cut.lines,
        cut.bars.len(),
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
