//! `tickcap compress FILE...`: a closed day's plain capture as
//! `.jsonl.zst`, in the writer's own format (independent frames of whole
//! lines, ~1 MiB each, so readers decompress them in parallel). Atomic: the
//! `.zst` appears only complete and synced, and the `.jsonl` is removed
//! only after (unless `--keep`).

use std::path::PathBuf;

use super::Failure;

/// Arguments of `tickcap compress`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Plain captures (`market_data_YYYY-MM-DD.jsonl`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// zstd level (1..=19).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    level: i32,
    /// Keep the plain file.
    #[arg(long)]
    keep: bool,
}

/// Runs it.
pub fn run(args: Args) -> Result<(), Failure> {
    for path in &args.files {
        if crate::zst::is_zst(path) {
            return Err(Failure::usage(anyhow::anyhow!(
                "{}: already compressed",
                path.display()
            )));
        }
        crate::util::regular_file(path)?;
        let t0 = std::time::Instant::now();
        let c = crate::zst::compress_file(path, args.level, args.keep)?;
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
    Ok(())
}
