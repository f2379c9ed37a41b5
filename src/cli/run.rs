//! `tickcap run --config FILE`: the capture service until SIGINT/SIGTERM.

use std::path::PathBuf;

use super::Failure;
use crate::config::{Config, Env};
use crate::engine::{Engine, Options};

/// Arguments of `tickcap run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file (TOML). KITE_API_KEY and KITE_ACCESS_TOKEN override it.
    #[arg(long, default_value = "tickcap.toml")]
    config: PathBuf,
}

/// Logs what will be captured (never the token).
pub fn describe(cfg: &Config) {
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

/// Loads the config (exit 2 on error), runs until a signal; exits 0 only
/// when every received tick was written (1 when some were not, or a thread
/// panicked).
pub fn run(args: Args) -> Result<(), Failure> {
    let cfg = Config::load(&args.config, &Env::from_process()).map_err(Failure::usage)?;
    describe(&cfg);
    let opts = Options {
        handle_signals: true,
        config_path: Some(args.config.clone()),
        ..Options::default()
    };
    let engine = Engine::start(cfg, opts).map_err(super::demo::engine_failure)?;
    engine.wait()?;
    Ok(())
}
