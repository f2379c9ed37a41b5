//! Time, injected: the receive clock (wall time stamped on every tick), the
//! monotonic clock that drives every timer (backoff, stale detection,
//! failover), and the zone-aware formatting of epoch times.
//!
//! Both clocks are values handed to whoever needs them, never read from the
//! environment inside a stage, so tests can cross midnight (a shifted
//! receive clock) and step timers without sleeping (a manual monotonic
//! clock).

mod zone;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use zone::{days_from_civil, LocalDate, UnknownZone, ZoneFormatter};

/// The receive clock: the wall clock plus an offset (tests move it to just
/// before midnight to exercise rotation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset_micros: i64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { offset_micros: 0 }
    }

    /// The system clock shifted by `offset_micros`.
    pub fn shifted(offset_micros: i64) -> Self {
        Clock { offset_micros }
    }

    /// Now, epoch microseconds.
    #[inline]
    pub fn now_micros(&self) -> i64 {
        let now = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_micros() as i64,
            Err(e) => -(e.duration().as_micros() as i64),
        };
        now + self.offset_micros
    }
}

/// The monotonic clock of the timers: the system's, or a manual one that a
/// test advances explicitly (so "stale after 5 s" is tested in microseconds
/// of real time, and cannot be flaky).
#[derive(Debug, Clone, Default)]
pub struct Mono {
    manual: Option<Arc<ManualTime>>,
}

/// A manual monotonic clock: a fixed base plus an offset only [`ManualTime::advance`] moves.
#[derive(Debug)]
pub struct ManualTime {
    base: Instant,
    offset_nanos: AtomicU64,
}

impl ManualTime {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let n = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(n, Ordering::SeqCst);
    }

    /// Now on this clock.
    pub fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }
}

impl Mono {
    /// `Instant::now()`.
    pub fn system() -> Self {
        Mono { manual: None }
    }

    /// A manual clock starting now, and the handle that advances it.
    pub fn manual() -> (Self, Arc<ManualTime>) {
        let m = Arc::new(ManualTime {
            base: Instant::now(),
            offset_nanos: AtomicU64::new(0),
        });
        (
            Mono {
                manual: Some(Arc::clone(&m)),
            },
            m,
        )
    }

    /// Now.
    #[inline]
    pub fn now(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(m) => m.now(),
        }
    }
}

/// Parses `timestamp` text as tickcap writes it (`YYYY-MM-DDTHH:MM:SS[.ffffff]±HH:MM`
/// or `Z`) into epoch µs; other ISO forms go through jiff.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let fast = || -> Option<i64> {
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        // A date and time that exist, or nothing: month 13 or 25:00 is not
        // some other instant.
        let date = crate::time::LocalDate::parse(s.get(0..10)?)?;
        let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if h > 23 || m > 59 || sec > 59 {
            return None;
        }
        let secs = days_from_civil(date) * 86_400 + h * 3600 + m * 60 + sec;
        let (mut micros, mut i) = (0i64, 19);
        if b[19] == b'.' {
            i = 20;
            let mut digits = 0;
            while i < b.len() && b[i].is_ascii_digit() {
                if digits < 6 {
                    micros = micros * 10 + i64::from(b[i] - b'0');
                    digits += 1;
                }
                i += 1;
            }
            for _ in digits..6 {
                micros *= 10;
            }
        }
        let offset = match b.get(i)? {
            b'Z' if i + 1 == b.len() => 0,
            c @ (b'+' | b'-') if b.len() == i + 6 && b[i + 3] == b':' => {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let o = oh * 3600 + om * 60;
                if *c == b'-' {
                    -o
                } else {
                    o
                }
            }
            _ => return None,
        };
        Some((secs - offset) * 1_000_000 + micros)
    };
    fast().or_else(|| {
        s.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_microsecond())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_that_do_not_exist_are_refused() {
        let ok = "2026-11-27T09:15:00.000123+05:30";
        assert!(parse_timestamp(ok).is_some());
        for bad in [
            "2026-13-27T09:15:00+05:30",
            "2026-02-30T09:15:00+05:30",
            "2026-11-27T24:15:00+05:30",
            "2026-11-27T09:60:00+05:30",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        assert!(
            parse_timestamp("2024-02-29T00:00:00Z").is_some(),
            "a leap day"
        );
    }

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let (mono, handle) = Mono::manual();
        let t0 = mono.now();
        assert_eq!(mono.now(), t0);
        handle.advance(Duration::from_secs(5));
        assert_eq!(mono.now() - t0, Duration::from_secs(5));
    }
}
