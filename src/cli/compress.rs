//! `tickcap compress FILE...`: a closed day's plain capture as
//! `.jsonl.zst`, in the writer's own format (independent frames of whole
//! lines, ~1 MiB each, so readers decompress them in parallel). Atomic: the
//! `.zst` appears only complete and synced, and the `.jsonl` is removed
//! only after (unless `--keep`).

use std::io::Write;
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

/// Frames of about this much plain text.
const FRAME: usize = 1 << 20;

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
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let out = PathBuf::from(format!("{}.zst", path.display()));
        let tmp = PathBuf::from(format!("{}.zst.part", path.display()));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut fw = crate::zst::FrameWriter::new(args.level)?;
        if len > 0 {
            // SAFETY: read-only map of a closed day's file; see `analysis::scan`.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            let mut rest: &[u8] = &map;
            while !rest.is_empty() {
                let mut end = rest.len().min(FRAME);
                if end < rest.len() {
                    end = rest[end..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(rest.len(), |i| end + i + 1);
                }
                w.write_all(fw.frame(&rest[..end])?)?;
                rest = &rest[end..];
            }
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &out)?;
        let zlen = std::fs::metadata(&out)?.len();
        if !args.keep {
            std::fs::remove_file(path)?;
        }
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
