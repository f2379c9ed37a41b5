//! The instruments dump while the service runs: the one in use (symbols on
//! `/instruments` and the page, resolution on reload), the daily refresh
//! before the market opens (fetched on a thread of its own: the loop never
//! waits on Kite's REST API), and the configured tokens the dump no longer
//! lists (expired contracts).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, NoSymbols, Symbols};
use crate::kite::instruments::Directory;
use crate::net::dump::{Loaded, Refresh, Source};
use crate::time::ZoneFormatter;

/// How long one daily download may take (it runs off the loop).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The dump in use and its refresh.
#[derive(Debug)]
pub struct DumpState {
    loaded: Option<Loaded>,
    refresh: Option<Refresh>,
    pending: Option<mpsc::Receiver<Result<Loaded, String>>>,
    checked: Option<Instant>,
    /// The last refresh failure, shown on `/instruments`.
    pub last_error: Option<String>,
    /// Refreshes that failed.
    pub failures: u64,
}

impl DumpState {
    /// The state for `config`, starting from what `tickcap run` obtained.
    pub fn new(config: &Config, loaded: Option<Loaded>) -> Self {
        let refresh = config.dump.enabled.then(|| {
            ZoneFormatter::new(&config.storage.timezone).ok().map(|z| {
                Refresh::new(
                    z,
                    config.dump.refresh_minute,
                    loaded.as_ref().map(|l| l.day),
                )
            })
        });
        let state = DumpState {
            loaded,
            refresh: refresh.flatten(),
            pending: None,
            checked: None,
            last_error: None,
            failures: 0,
        };
        state.report_absent(config);
        state
    }

    /// The dump in use.
    pub fn loaded(&self) -> Option<&Loaded> {
        self.loaded.as_ref()
    }

    /// Its symbol table.
    pub fn directory(&self) -> Option<&Arc<Directory>> {
        self.loaded.as_ref().map(|l| &l.directory)
    }

    /// What resolves symbols on a reload: the dump in use, or nothing.
    pub fn symbols(&self) -> Box<dyn Symbols> {
        match self.directory() {
            Some(d) => Box::new(Arc::clone(d)),
            None => Box::new(NoSymbols),
        }
    }

    /// Configured tokens that the dump in use does not list.
    pub fn absent(&self, config: &Config) -> Vec<u32> {
        let Some(d) = self.directory() else {
            return Vec::new();
        };
        let mut out: Vec<u32> = config
            .connections
            .iter()
            .flat_map(|c| c.instruments.iter().copied())
            .filter(|t| d.get(*t).is_none())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The journal's record of the dump in use (None without one).
    pub fn event(&self, config: &Config) -> Option<crate::events::Event> {
        let l = self.loaded.as_ref()?;
        Some(crate::events::Event::InstrumentsDump {
            date: l.day.to_string(),
            count: l.directory.len(),
            expired: self.absent(config),
        })
    }

    /// Logs the configured tokens the dump does not list (at start and
    /// after every refresh).
    pub fn report_absent(&self, config: &Config) {
        let gone = self.absent(config);
        if let (false, Some(l)) = (gone.is_empty(), &self.loaded) {
            tracing::warn!(
                "{} configured instrument(s) are not in the instruments dump of {} (expired contracts? they will not tick): {:?}",
                gone.len(),
                l.day,
                gone
            );
        }
    }

    /// Once a second from the loop: starts the daily fetch when it is due
    /// (`wall_micros` from the injected receive clock) and takes a finished
    /// one. True when a new dump came into use.
    pub fn poll(&mut self, config: &Config, wall_micros: i64, now: Instant) -> bool {
        if self
            .checked
            .is_some_and(|c| now.saturating_duration_since(c) < Duration::from_secs(1))
        {
            return false;
        }
        self.checked = Some(now);
        if let Some(rx) = &self.pending {
            match rx.try_recv() {
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.pending = None;
                    self.failed(
                        wall_micros,
                        "the fetch thread ended without an answer".into(),
                    );
                }
                Ok(Ok(l)) => {
                    self.pending = None;
                    if let Some(r) = &mut self.refresh {
                        r.succeeded(l.day);
                    }
                    tracing::info!(
                        "instruments dump of {} in use: {} instruments ({})",
                        l.day,
                        l.directory.len(),
                        l.path.display()
                    );
                    self.loaded = Some(l);
                    self.last_error = None;
                    self.report_absent(config);
                    return true;
                }
                Ok(Err(e)) => {
                    self.pending = None;
                    self.failed(wall_micros, e);
                }
            }
            return false;
        }
        let Some(day) = self.refresh.as_mut().and_then(|r| r.due(wall_micros)) else {
            return false;
        };
        let source = Source::of(&config.dump, &config.storage, FETCH_TIMEOUT);
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("tickcap-dump".into())
            .spawn(move || {
                let _ = tx.send(source.fetch(day).map_err(|e| e.to_string()));
            });
        match spawned {
            Ok(_) => self.pending = Some(rx),
            Err(e) => self.failed(wall_micros, format!("cannot start the fetch thread: {e}")),
        }
        false
    }

    fn failed(&mut self, wall_micros: i64, error: String) {
        self.failures += 1;
        if let Some(r) = &mut self.refresh {
            r.failed(wall_micros);
        }
        tracing::warn!(
            "daily instruments dump refresh failed (the copy in use stays; retrying in 10 minutes): {}",
            crate::util::log_text(&error, 300)
        );
        self.last_error = Some(error);
    }
}
