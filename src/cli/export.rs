//! `tickcap export FILE... --format parquet --out DIR`: captured days
//! (plain or `.jsonl.zst`) as one Parquet file a day.

use std::path::PathBuf;

use super::Failure;

/// Arguments of `tickcap export`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Captured files (`market_data_YYYY-MM-DD.jsonl` or `.jsonl.zst`);
    /// files of the same day go into one Parquet file, in the order given.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The output format (only `parquet`).
    #[arg(long, default_value = "parquet")]
    format: String,
    /// Where the Parquet files go (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Zone of the timestamp columns (an IANA name).
    #[arg(long, default_value = "Asia/Kolkata")]
    timezone: String,
    /// Row order: `instrument` (by instrument, then receive order: one
    /// instrument's day is one or two row groups a filter reads alone) or
    /// `receive` (the file's order).
    #[arg(long, default_value = "instrument", value_parser = ["instrument", "receive"])]
    order: String,
    /// Leave the depth column out (a smaller, faster file).
    #[arg(long)]
    no_depth: bool,
    /// Rows per row group.
    #[arg(long, default_value_t = 262_144, value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    row_group_rows: u64,
    /// With `--order instrument`: the most text sorted in memory at a time
    /// (MiB); a day is split into instrument ranges of about this size in
    /// temporary files beside the output.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    sort_mb: u64,
}

/// Runs the export.
#[cfg(feature = "parquet")]
pub(super) fn run(args: Args) -> Result<(), Failure> {
    use crate::analysis::export::{export_day, parquet_name};
    use std::collections::BTreeMap;
    if args.format != "parquet" {
        return Err(Failure::usage(anyhow::anyhow!(
            "--format {:?}: only parquet is supported",
            args.format
        )));
    }
    crate::time::ZoneFormatter::new(&args.timezone).map_err(Failure::usage)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.out.display()))?;
    let mut days: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut files = args.files.clone();
    crate::days::sort_paths(&mut files);
    // Candle files export to their own Parquet, a day and interval each.
    let mut candle_days: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in crate::days::take_non_tick_files(&mut files) {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match crate::days::parse_any_name(&name) {
            Some((family @ crate::days::Family::Candles(_), id, _)) => {
                candle_days
                    .entry(format!("{}{}.parquet", family.prefix(), id.day))
                    .or_default()
                    .push(f);
            }
            _ => eprintln!(
                "tickcap export: {}: events/orders files are not exported: skipped",
                f.display()
            ),
        }
    }
    for (name, inputs) in candle_days {
        let e = crate::analysis::export::export_candles(
            &inputs,
            &args.out.join(&name),
            &args.timezone,
        )?;
        println!("{}: {} rows", e.path.display(), e.rows);
    }
    for f in &files {
        days.entry(parquet_name(f)).or_default().push(f.clone());
    }
    let mut bad_lines = 0u64;
    for (name, inputs) in days {
        let t0 = std::time::Instant::now();
        let bar = super::tools::progress(format!("exporting {name}"));
        let opts = crate::analysis::export::ExportOptions {
            order: if args.order == "receive" {
                crate::analysis::export::Order::Receive
            } else {
                crate::analysis::export::Order::Instrument
            },
            depth: !args.no_depth,
            row_group_rows: args.row_group_rows as usize,
            sort_bytes: (args.sort_mb as usize) << 20,
            cancel: None,
        };
        let e = export_day(&inputs, &args.out.join(&name), &args.timezone, &opts);
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let e = e?;
        let bytes = std::fs::metadata(&e.path).map_or(0, |m| m.len());
        println!(
            "{}: {} rows, {} bytes ({:.1} s){}",
            e.path.display(),
            e.rows,
            bytes,
            t0.elapsed().as_secs_f64(),
            if e.bad_lines > 0 {
                format!("; {} line(s) that are not ticks skipped", e.bad_lines)
            } else {
                String::new()
            }
        );
        for p in &e.problems {
            eprintln!("tickcap export: {p}");
        }
        bad_lines += e.bad_lines;
    }
    if bad_lines > 0 {
        return Err(anyhow::anyhow!(
            "{bad_lines} line(s) that are not ticks were skipped (the rest is exported)"
        )
        .into());
    }
    Ok(())
}

/// Without the `parquet` feature.
#[cfg(not(feature = "parquet"))]
pub(super) fn run(_: Args) -> Result<(), Failure> {
    Err(Failure::usage(anyhow::anyhow!(
        "this tickcap was built without the `parquet` feature (cargo build --features parquet)"
    )))
}
