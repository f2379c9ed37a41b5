//! `tickcap instruments search TEXT` and `tickcap instruments fetch`: the
//! daily instruments dump from the command line (to find what to put in
//! `instruments = [...]`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Failure;
use crate::config::{Config, Env};
use crate::engine::Clock;
use crate::kite::Directory;
use crate::net::dump::{self, Loader};

/// Arguments of `tickcap instruments`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List instruments whose symbol or name contains every word of TEXT.
    Search {
        /// Words to match, e.g. `infy` or `nifty dec ce`.
        #[arg(required = true)]
        text: Vec<String>,
        /// The configuration file (its data_dir holds the dump copies).
        #[arg(long, default_value = "tickcap.toml")]
        config: PathBuf,
        /// Search this dump CSV instead (no config, no download).
        #[arg(long)]
        file: Option<PathBuf>,
        /// At most this many rows.
        #[arg(long, default_value_t = 25)]
        limit: usize,
    },
    /// Download today's dump into the data directory now.
    Fetch {
        /// The configuration file.
        #[arg(long, default_value = "tickcap.toml")]
        config: PathBuf,
    },
}

/// Runs the subcommand.
pub(super) fn run(args: Args) -> Result<(), Failure> {
    match args.action {
        Action::Search {
            text,
            config,
            file,
            limit,
        } => {
            let dir = match file {
                Some(f) => dump::read_copy(&f)?,
                None => obtain(&config)?,
            };
            search(&dir, &text.join(" "), limit)
        }
        Action::Fetch { config } => {
            let (cfg, _) = super::run::load(&config)?;
            let mut zone =
                crate::time::ZoneFormatter::new(&cfg.storage.timezone).map_err(Failure::usage)?;
            let today = zone.date_of_micros(Clock::system().now_micros());
            let l =
                dump::Source::of(&cfg.dump, &cfg.storage, Duration::from_secs(60)).fetch(today)?;
            println!(
                "{} instruments written to {}",
                l.directory.len(),
                l.path.display()
            );
            Ok(())
        }
    }
}

/// The dump for `config`: today's copy, a download, or the latest copy.
fn obtain(config: &Path) -> Result<Directory, Failure> {
    let loader = Loader::new(Clock::system(), Duration::from_secs(60));
    let cfg = Config::load_with(config, &Env::from_process(), &loader).map_err(Failure::usage)?;
    let l = loader.load(&cfg.dump, &cfg.storage)?;
    if let Some(w) = &l.warning {
        eprintln!("tickcap: {w}");
    }
    Ok(std::sync::Arc::try_unwrap(l.directory).unwrap_or_else(|a| (*a).clone()))
}

fn search(dir: &Directory, text: &str, limit: usize) -> Result<(), Failure> {
    let hits = dir.search(text, limit.max(1));
    let mut out = std::io::stdout().lock();
    if hits.is_empty() {
        writeln!(out, "no instrument matches {text:?}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>12}  {:<32}  {:<28}  {:<10}  {:>8}  {:<8}  segment",
        "token", "symbol", "name", "expiry", "strike", "type"
    )?;
    for i in hits {
        writeln!(
            out,
            "{:>12}  {:<32}  {:<28}  {:<10}  {:>8}  {:<8}  {}",
            i.instrument_token,
            i.symbol,
            i.name,
            i.expiry,
            if i.strike == "0" { "" } else { &i.strike },
            i.instrument_type,
            i.segment
        )?;
    }
    out.flush()?;
    Ok(())
}
