//! `tickcap compress FILE...`: a closed day's plain capture as
//! `.jsonl.zst`, in the writer's own format (independent frames of whole
//! lines, ~1 MiB each, so readers decompress them in parallel). Atomic: the
//! `.zst` appears only complete and synced, and the `.jsonl` is removed
//! only after (unless `--keep`).

use std::path::PathBuf;

use super::Failure;

/// Arguments of `tickcap compress`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Plain captures (`market_data_YYYY-MM-DD.jsonl`; the events journal
    /// and order updates, `events_…` and `orders_…`, likewise).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// zstd level (1..=19).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    level: i32,
    /// Keep the plain file.
    #[arg(long)]
    keep: bool,
    /// The storage zone: today's open file (the last segment of today) is
    /// never compressed.
    #[arg(long, default_value = "Asia/Kolkata")]
    timezone: String,
}

/// Why `path` must not be compressed now, if so: today's last segment is
/// the one a running writer appends to.
fn still_open(path: &std::path::Path, today: crate::time::LocalDate) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let (family, id, _) = crate::days::parse_any_name(&name)?;
    if id.day != today {
        return None;
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let last = crate::days::segments_of_in(dir, family, today)
        .last()
        .map(|s| s.id);
    (last == Some(id)).then(|| {
        format!(
            "{}: today's open file (tickcap appends to it until midnight); compress it after the day is closed (`compress_closed_days = true` does it by itself)",
            path.display()
        )
    })
}

/// Runs it.
pub(super) fn run(args: Args) -> Result<(), Failure> {
    let mut zone = crate::time::ZoneFormatter::new(&args.timezone).map_err(Failure::usage)?;
    let today = zone.date_of_micros(crate::time::Clock::system().now_micros());
    let mut refused = 0;
    for path in &args.files {
        if let Some(why) = still_open(path, today) {
            eprintln!("tickcap: refused: {why}");
            refused += 1;
            continue;
        }
        if crate::zst::is_zst(path) {
            return Err(Failure::usage(anyhow::anyhow!(
                "{}: already compressed",
                path.display()
            )));
        }
        crate::util::regular_file(path)?;
        let t0 = std::time::Instant::now();
        let c = match crate::zst::compress_file(path, args.level, args.keep) {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::ResourceBusy
                ) =>
            {
                eprintln!("tickcap: refused: {e}");
                refused += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if !args.keep {
            // The plain file's sidecar index (`tickcap storage`) goes with it.
            let _ = std::fs::remove_file(crate::analysis::storage::index_path(path));
        }
        let (len, zlen, out) = (c.plain, c.compressed, c.path);
        println!(
            "{}: {} → {} bytes ({:.1}x, {:.1} s){}",
            out.display(),
            len,
            zlen,
            len as f64 / zlen.max(1) as f64,
            t0.elapsed().as_secs_f64(),
            if args.keep {
                ""
            } else {
                "; plain file removed"
            }
        );
    }
    if refused > 0 {
        return Err(Failure::usage(anyhow::anyhow!(
            "{refused} file(s) refused (see above); the others are compressed"
        )));
    }
    Ok(())
}
