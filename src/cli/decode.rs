//! `tickcap decode FILE...`: raw binary messages → JSONL on stdout.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::Failure;
use crate::kite::decode_message;
use crate::sink::LineFormatter;
use crate::time::ZoneFormatter;

/// Arguments of `tickcap decode`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Files each holding one Kite WebSocket binary message.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Time zone of the printed exchange times (and `timestamp`).
    #[arg(long, default_value = "Asia/Kolkata")]
    timezone: String,
    /// Append tickcap's `timestamp` (the file's modification time) and
    /// `connection_id` keys, as a capture would; by default only the official
    /// client's keys are printed.
    #[arg(long)]
    with_meta: bool,
    /// `connection_id` written with `--with-meta`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    connection_id: u8,
}

/// Prints every tick of every file; malformed packets are reported on stderr
/// with the file and packet position, and make the exit code 1.
pub(super) fn run(args: Args) -> Result<(), Failure> {
    let clock = ZoneFormatter::new(&args.timezone).map_err(Failure::usage)?;
    let mut fmt = LineFormatter::new(clock);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut bad = 0usize;
    for path in &args.files {
        let msg = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let recv = if args.with_meta {
            let modified = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .with_context(|| format!("reading the modification time of {}", path.display()))?;
            match modified.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_micros() as i64,
                Err(e) => -(e.duration().as_micros() as i64),
            }
        } else {
            0
        };
        for r in decode_message(&msg) {
            match r {
                Ok(t) if args.with_meta => fmt.write_line(&mut buf, &t, recv, args.connection_id),
                Ok(t) => fmt.write_kite_line(&mut buf, &t),
                Err(e) => {
                    bad += 1;
                    eprintln!("tickcap: {}: {e}", path.display());
                }
            }
        }
        out.write_all(&buf).context("writing to stdout")?;
        buf.clear();
    }
    out.flush().context("writing to stdout")?;
    if bad > 0 {
        return Err(anyhow::anyhow!("{bad} malformed packet(s); the rest was decoded").into());
    }
    Ok(())
}
