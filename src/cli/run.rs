//! `tickcap run --config FILE`: the capture service until SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Failure;
use crate::config::{Config, Env};
use crate::engine::{Clock, Engine, Options};
use crate::net::dump::{Loaded, Loader};

/// Arguments of `tickcap run`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The configuration file (TOML). KITE_API_KEY and KITE_ACCESS_TOKEN override it.
    #[arg(long, default_value = "tickcap.toml")]
    config: PathBuf,
}

/// Logs what will be captured (never the token).
pub(super) fn describe(cfg: &Config) {
    if std::env::var_os("KITE_ACCESS_TOKEN").is_some()
        && cfg
            .connections
            .iter()
            .any(|c| c.access_token_file.is_some())
    {
        tracing::warn!(
            "KITE_ACCESS_TOKEN is set but ignored: access_token_file wins (it is what `tickcap login` \
             refreshes and what a reload re-reads). Unset KITE_ACCESS_TOKEN to silence this."
        );
    }
    for c in &cfg.connections {
        tracing::info!(
            "connection {} ({}): {} instruments in {} mode via {} (api_key {:?}, access_token {})",
            c.role.connection_id(),
            c.role.as_str(),
            c.instruments.len(),
            c.mode,
            c.url,
            c.api_key,
            c.access_token.redacted()
        );
    }
    tracing::info!(
        "storage: {} ({}; fsync {}; flush within {} ms)",
        cfg.storage.data_dir.display(),
        cfg.storage.timezone,
        cfg.storage.fsync.as_str(),
        cfg.storage.flush_interval_ms
    );
}

/// Loads the config, resolving symbols through the instruments dump
/// (fetched, or today's copy, or the latest copy kept); with the dump
/// enabled and no symbols, fetches it too, for display. A config error is
/// exit 2; a dump that cannot be had is one only when a symbol needs it.
pub(super) fn load(path: &Path) -> Result<(Config, Option<Loaded>), Failure> {
    let loader = Loader::new(Clock::system(), Duration::from_secs(30));
    let cfg = Config::load_with(path, &Env::from_process(), &loader).map_err(Failure::usage)?;
    if cfg.dump.enabled {
        if let Err(e) = loader.load(&cfg.dump, &cfg.storage) {
            tracing::warn!(
                "no instruments dump ({e}): tokens are shown without symbols until the daily refresh"
            );
        }
    }
    let dump = loader.take();
    if let Some(l) = &dump {
        match &l.warning {
            Some(w) => tracing::warn!("{w}"),
            None => tracing::info!(
                "instruments dump of {}: {} instruments ({})",
                l.day,
                l.directory.len(),
                l.path.display()
            ),
        }
    }
    Ok((cfg, dump))
}

/// Loads the config (exit 2 on error), runs until a signal; exits 0 only
/// when every received tick was written (1 when some were not, or a thread
/// panicked).
pub(super) fn run(args: Args) -> Result<(), Failure> {
    let (cfg, dump) = load(&args.config)?;
    describe(&cfg);
    let opts = Options {
        handle_signals: true,
        config_path: Some(args.config.clone()),
        dump,
        ..Options::default()
    };
    let engine = Engine::start(cfg, opts).map_err(super::demo::engine_failure)?;
    engine.wait()?;
    Ok(())
}
