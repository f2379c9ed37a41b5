//! Kite's daily instruments dump on disk: fetched from `{api_root}/instruments`
//! at start and once a day before the market opens, kept beside the data as
//! `instruments_YYYY-MM-DD.csv`, and the latest one used when Kite cannot
//! be reached (a symbol table a day old is far better than none: equity
//! tokens do not change, and F&O contracts are listed before they trade).
//!
//! Fetching blocks (one HTTP request, up to a timeout), so the engine runs
//! it on a thread of its own; [`Refresh`] only decides when, from an
//! injected wall clock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{DumpConfig, Secret, StorageConfig, Symbols};
use crate::kite::instruments::{Directory, DumpError};
use crate::time::{Clock, LocalDate, ZoneFormatter};

use super::http;

/// Where the dump comes from and goes.
#[derive(Debug, Clone)]
pub struct Source {
    /// Kite's REST root (`https://api.kite.trade`, a stand-in in tests).
    pub api_root: String,
    /// Sent as `Authorization: token KEY:TOKEN` when both are known.
    pub api_key: String,
    /// The access token, if any.
    pub access_token: Option<Secret>,
    /// The data directory the daily copies are kept in.
    pub data_dir: PathBuf,
    /// How long one download may take.
    pub timeout: Duration,
}

/// Why no dump could be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed.
    #[error("{0}")]
    Http(#[from] http::HttpError),
    /// Kite answered with an error (its JSON message, as it is).
    #[error("{url}: HTTP {status}: {message}")]
    Refused {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Kite's message or the body's start.
        message: String,
    },
    /// The reply is not a dump.
    #[error("{url}: {error}")]
    Dump {
        /// The URL.
        url: String,
        /// What is wrong.
        error: DumpError,
    },
    /// The copy could not be read or written.
    #[error("{path}: {error}")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

/// A dump in use: where it came from and which day it is.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The symbol table.
    pub directory: Arc<Directory>,
    /// The file it is kept in.
    pub path: PathBuf,
    /// The day in its name.
    pub day: LocalDate,
    /// Why it is not today's fresh one, when it is not.
    pub warning: Option<String>,
}

/// `instruments_YYYY-MM-DD.csv`.
pub fn file_name(day: LocalDate) -> String {
    format!("instruments_{day}.csv")
}

/// The day in a dump copy's name, `None` for any other name.
pub fn day_of_name(name: &str) -> Option<LocalDate> {
    let d = name.strip_prefix("instruments_")?.strip_suffix(".csv")?;
    // The daily-file parser checks the same YYYY-MM-DD shape.
    crate::time::LocalDate::parse(d)
}

/// The newest dump copy in `dir` dated on or before `day` (any day if `None`).
pub fn latest_in(dir: &Path, day: Option<LocalDate>) -> Option<(LocalDate, PathBuf)> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let d = day_of_name(&e.file_name().to_string_lossy())?;
            day.is_none_or(|limit| d <= limit).then(|| (d, e.path()))
        })
        .max_by_key(|(d, _)| *d)
}

/// Reads and parses a kept copy.
pub fn read_copy(path: &Path) -> Result<Directory, FetchError> {
    // Kite's dump is ~10 MB; 512 MiB is far beyond any real one.
    let bytes = crate::util::read_regular(path, 512 << 20).map_err(|error| FetchError::File {
        path: path.to_owned(),
        error,
    })?;
    Directory::parse(&bytes).map_err(|error| FetchError::Dump {
        url: path.display().to_string(),
        error,
    })
}

impl Source {
    /// The source a config describes.
    pub fn of(dump: &DumpConfig, storage: &StorageConfig, timeout: Duration) -> Source {
        Source {
            api_root: dump.api_root.clone(),
            api_key: dump.api_key.clone(),
            access_token: Some(dump.access_token.clone()),
            data_dir: storage.data_dir.clone(),
            timeout,
        }
    }

    /// `GET {api_root}/instruments`: the CSV bytes, checked to be a dump.
    pub fn download(&self) -> Result<(Vec<u8>, Directory), FetchError> {
        let url = format!("{}/instruments", self.api_root.trim_end_matches('/'));
        let auth = self
            .access_token
            .as_ref()
            .filter(|t| !t.is_empty() && !self.api_key.is_empty())
            .map(|t| format!("token {}:{}", self.api_key, t.expose()));
        let mut headers = vec![("X-Kite-Version", "3"), ("Accept-Encoding", "gzip")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let reply = http::request("GET", &url, &headers, b"", self.timeout)?;
        if reply.status != 200 {
            return Err(FetchError::Refused {
                url,
                status: reply.status,
                message: kite_message(&reply.body),
            });
        }
        let dir = Directory::parse(&reply.body).map_err(|error| FetchError::Dump {
            url: url.clone(),
            error,
        })?;
        Ok((reply.body, dir))
    }

    /// Downloads the dump and keeps it as `day`'s copy (atomically: a
    /// temporary file renamed into place, so a copy is never half written).
    pub fn fetch(&self, day: LocalDate) -> Result<Loaded, FetchError> {
        let (bytes, directory) = self.download()?;
        let path = self.data_dir.join(file_name(day));
        let tmp = self.data_dir.join(format!(".{}.part", file_name(day)));
        let file_err = |error| FetchError::File {
            path: path.clone(),
            error,
        };
        std::fs::create_dir_all(&self.data_dir).map_err(file_err)?;
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(file_err)?;
        Ok(Loaded {
            directory: Arc::new(directory),
            path,
            day,
            warning: None,
        })
    }

    /// Today's copy if it is already here, else a fresh download, else the
    /// latest copy kept (with a warning saying why), else the error.
    pub fn obtain(&self, today: LocalDate) -> Result<Loaded, FetchError> {
        let here = self.data_dir.join(file_name(today));
        if here.is_file() {
            if let Ok(directory) = read_copy(&here) {
                return Ok(Loaded {
                    directory: Arc::new(directory),
                    path: here,
                    day: today,
                    warning: None,
                });
            }
        }
        match self.fetch(today) {
            Ok(l) => Ok(l),
            Err(e) => match latest_in(&self.data_dir, None) {
                Some((day, path)) => Ok(Loaded {
                    directory: Arc::new(read_copy(&path)?),
                    path,
                    day,
                    warning: Some(format!(
                        "cannot fetch today's instruments dump ({e}); using the copy of {day}"
                    )),
                }),
                None => Err(e),
            },
        }
    }
}

/// Obtains the dump once for a start-up ([`Source::obtain`] on first use)
/// and keeps it: config parsing asks it for symbols, the engine then takes
/// it for display, `/instruments` and the daily refresh.
#[derive(Debug)]
pub struct Loader {
    clock: Clock,
    timeout: Duration,
    loaded: Mutex<Option<Loaded>>,
}

impl Loader {
    /// A loader reading the date from `clock`.
    pub fn new(clock: Clock, timeout: Duration) -> Self {
        Loader {
            clock,
            timeout,
            loaded: Mutex::new(None),
        }
    }

    /// The dump for `dump`/`storage`: the one already obtained, or today's.
    pub fn load(&self, dump: &DumpConfig, storage: &StorageConfig) -> Result<Loaded, FetchError> {
        let mut held = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = held.as_ref() {
            return Ok(l.clone());
        }
        let today = ZoneFormatter::new(&storage.timezone)
            .map(|mut z| z.date_of_micros(self.clock.now_micros()))
            .map_err(|e| FetchError::File {
                path: storage.data_dir.clone(),
                error: std::io::Error::other(e.to_string()),
            })?;
        let l = Source::of(dump, storage, self.timeout).obtain(today)?;
        *held = Some(l.clone());
        Ok(l)
    }

    /// What was obtained, if anything.
    pub fn take(self) -> Option<Loaded> {
        self.loaded.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl Symbols for Loader {
    fn directory(
        &self,
        dump: &DumpConfig,
        storage: &StorageConfig,
    ) -> Result<Arc<Directory>, String> {
        self.load(dump, storage)
            .map(|l| l.directory)
            .map_err(|e| format!("the instruments dump could not be had: {e}"))
    }
}

/// Kite's `{"status":"error","message":...}` message, or the body's start.
fn kite_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let m = v.get("message")?.as_str()?.to_owned();
            Some(match v.get("error_type").and_then(|t| t.as_str()) {
                Some(t) => format!("{m} ({t})"),
                None => m,
            })
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

/// When the daily refresh is due: once a day, at or after `at` (minutes
/// after local midnight in the storage zone), and again `retry` after a
/// failed attempt. Pure: it is given the wall time, so tests step days.
#[derive(Debug, Clone)]
pub struct Refresh {
    zone: ZoneFormatter,
    at_minute: u32,
    retry_micros: i64,
    done: Option<LocalDate>,
    next_try_micros: i64,
}

impl Refresh {
    /// A schedule at `at_minute` of each local day; `have` is the day of
    /// the copy already loaded (no refresh that day).
    pub fn new(zone: ZoneFormatter, at_minute: u32, have: Option<LocalDate>) -> Self {
        Refresh {
            zone,
            at_minute,
            retry_micros: 10 * 60 * 1_000_000,
            done: have,
            next_try_micros: i64::MIN,
        }
    }

    /// The local day of `now_micros`.
    pub fn day(&mut self, now_micros: i64) -> LocalDate {
        self.zone.date_of_micros(now_micros)
    }

    /// Whether to fetch now; if so, the day the copy is for.
    pub fn due(&mut self, now_micros: i64) -> Option<LocalDate> {
        let day = self.zone.date_of_micros(now_micros);
        if self.done == Some(day) || now_micros < self.next_try_micros {
            return None;
        }
        let local = now_micros / 1_000_000 + i64::from(self.zone.offset_seconds(now_micros));
        let minute = local.rem_euclid(86_400) / 60;
        (minute >= i64::from(self.at_minute)).then_some(day)
    }

    /// The attempt for `day` succeeded.
    pub fn succeeded(&mut self, day: LocalDate) {
        self.done = Some(day);
    }

    /// The attempt at `now_micros` failed: try again after the retry delay.
    pub fn failed(&mut self, now_micros: i64) {
        self.next_try_micros = now_micros + self.retry_micros;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(rfc3339: &str) -> i64 {
        rfc3339.parse::<jiff::Timestamp>().unwrap().as_microsecond()
    }

    #[test]
    fn the_refresh_runs_once_a_day_after_its_minute_and_retries_after_a_failure() {
        let zone = ZoneFormatter::new("Asia/Kolkata").unwrap();
        let d = |s: &str| crate::time::LocalDate::parse(s).unwrap();
        // 08:30 IST; a copy of the 24th is already loaded.
        let mut r = Refresh::new(zone, 8 * 60 + 30, Some(d("2026-11-24")));
        assert_eq!(
            r.due(micros("2026-11-24T20:00:00+05:30")),
            None,
            "already have it"
        );
        assert_eq!(
            r.due(micros("2026-11-25T08:29:59+05:30")),
            None,
            "before 08:30"
        );
        assert_eq!(
            r.due(micros("2026-11-25T08:30:00+05:30")),
            Some(d("2026-11-25"))
        );
        r.failed(micros("2026-11-25T08:30:00+05:30"));
        assert_eq!(
            r.due(micros("2026-11-25T08:35:00+05:30")),
            None,
            "waits to retry"
        );
        assert_eq!(
            r.due(micros("2026-11-25T08:40:00+05:30")),
            Some(d("2026-11-25"))
        );
        r.succeeded(d("2026-11-25"));
        assert_eq!(
            r.due(micros("2026-11-25T15:30:00+05:30")),
            None,
            "once a day"
        );
        // Past midnight but before 08:30 keeps yesterday's; then the new day's.
        assert_eq!(r.due(micros("2026-11-26T00:10:00+05:30")), None);
        assert_eq!(
            r.due(micros("2026-11-26T09:00:00+05:30")),
            Some(d("2026-11-26"))
        );
    }

    #[test]
    fn copies_are_found_by_day() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "instruments_2026-11-20.csv",
            "instruments_2026-11-24.csv",
            "instruments_x.csv",
            "market_data_2026-11-25.jsonl",
        ] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let d = |s: &str| crate::time::LocalDate::parse(s).unwrap();
        assert_eq!(latest_in(dir.path(), None).unwrap().0, d("2026-11-24"));
        assert_eq!(
            latest_in(dir.path(), Some(d("2026-11-23"))).unwrap().0,
            d("2026-11-20")
        );
        assert!(latest_in(dir.path(), Some(d("2026-11-01"))).is_none());
    }

    #[test]
    fn kite_errors_are_shown_as_they_are() {
        assert_eq!(
            kite_message(br#"{"status":"error","message":"Incorrect `api_key` or `access_token`.","error_type":"TokenException"}"#),
            "Incorrect `api_key` or `access_token`. (TokenException)"
        );
        assert_eq!(kite_message(b"<html>bad gateway"), "<html>bad gateway");
    }
}
