//! Epoch times → ISO 8601 text with the configured zone's offset.
//!
//! Every line carries at least one time (`timestamp`, and full packets two
//! exchange times), so formatting must be cheap. The zone offset is looked up
//! with jiff (bundled tz database: works without the host's zoneinfo) once
//! per UTC minute — every modern offset change falls on a whole minute — and
//! the `YYYY-MM-DDTHH:MM:SS` text is cached per second, so the common case is
//! a 19-byte copy plus six microsecond digits.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// A zone whose name did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("unknown time zone {name:?}: use an IANA name such as \"Asia/Kolkata\" ({error})")]
pub struct UnknownZone {
    name: String,
    error: jiff::Error,
}

/// A calendar date in the zone: the key of the daily file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalDate {
    /// Year.
    pub year: i32,
    /// Month, 1–12.
    pub month: u8,
    /// Day, 1–31.
    pub day: u8,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(d: LocalDate) -> i64 {
    let (m, day) = (i64::from(d.month), i64::from(d.day));
    let y = i64::from(d.year) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in `month` (1..=12) of `year` (proleptic Gregorian); 0 for a month
/// that does not exist.
pub(super) fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

impl LocalDate {
    /// Parses `YYYY-MM-DD` (the form in file names); `None` for anything
    /// else, a date that does not exist (month 13, February 30) included.
    pub fn parse(text: &str) -> Option<LocalDate> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| {
            let t = text.get(r)?;
            t.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| t.parse::<u16>().ok())?
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let real = (1..=12).contains(&month)
            && day >= 1
            && day <= u16::from(days_in_month(i32::from(year), month as u8));
        real.then_some(LocalDate {
            year: i32::from(year),
            month: month as u8,
            day: day as u8,
        })
    }
}

impl std::fmt::Display for LocalDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[derive(Clone)]
struct Cached {
    second: i64,
    text: [u8; 19],
    date: LocalDate,
}

/// Formats epoch times in one zone, with the caches described above.
/// Not `Sync`: each thread that formats owns one.
#[derive(Clone)]
pub struct ZoneFormatter {
    tz: TimeZone,
    minute: i64,
    offset_secs: i32,
    offset_text: [u8; 9],
    offset_len: usize,
    cached: [Option<Cached>; 2],
}

impl std::fmt::Debug for ZoneFormatter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneFormatter")
            .field("tz", &self.tz.iana_name())
            .finish()
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn two(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

impl ZoneFormatter {
    /// A clock for the IANA zone `name` (e.g. `Asia/Kolkata`, `UTC`).
    pub fn new(name: &str) -> Result<Self, UnknownZone> {
        let tz = TimeZone::get(name).map_err(|error| UnknownZone {
            name: name.to_owned(),
            error,
        })?;
        Ok(Self::with_zone(tz))
    }

    /// A clock for an already resolved zone.
    pub fn with_zone(tz: TimeZone) -> Self {
        ZoneFormatter {
            tz,
            minute: i64::MIN,
            offset_secs: 0,
            offset_text: *b"+00:00:00",
            offset_len: 6,
            cached: [None, None],
        }
    }

    /// The zone's IANA name, when it has one.
    pub fn zone_name(&self) -> Option<&str> {
        self.tz.iana_name()
    }

    fn refresh_offset(&mut self, second: i64) {
        let minute = second.div_euclid(60);
        if minute == self.minute {
            return;
        }
        self.minute = minute;
        let ts = Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH);
        let secs = self.tz.to_offset(ts).seconds();
        self.offset_secs = secs;
        let abs = secs.unsigned_abs();
        let mut t = *b"+00:00:00";
        t[0] = if secs < 0 { b'-' } else { b'+' };
        two(&mut t[1..3], abs / 3600);
        two(&mut t[4..6], abs / 60 % 60);
        two(&mut t[7..9], abs % 60);
        self.offset_text = t;
        // Python's isoformat shows seconds only when the offset has them.
        self.offset_len = if abs.is_multiple_of(60) { 6 } else { 9 };
    }

    /// Fills slot `slot`'s cache for `second` and returns it.
    fn local(&mut self, second: i64, slot: usize) -> &Cached {
        self.refresh_offset(second);
        let hit = matches!(&self.cached[slot], Some(c) if c.second == second);
        if !hit {
            let local = second + i64::from(self.offset_secs);
            let days = local.div_euclid(86_400);
            let sod = local.rem_euclid(86_400) as u32;
            let (y, m, d) = civil_from_days(days);
            let mut text = *b"0000-00-00T00:00:00";
            let yy = y.clamp(0, 9999) as u32;
            two(&mut text[0..2], yy / 100);
            two(&mut text[2..4], yy % 100);
            two(&mut text[5..7], u32::from(m));
            two(&mut text[8..10], u32::from(d));
            two(&mut text[11..13], sod / 3600);
            two(&mut text[14..16], sod / 60 % 60);
            two(&mut text[17..19], sod % 60);
            self.cached[slot] = Some(Cached {
                second,
                text,
                date: LocalDate {
                    year: y as i32,
                    month: m,
                    day: d,
                },
            });
        }
        match &self.cached[slot] {
            Some(c) => c,
            None => unreachable!("filled above"),
        }
    }

    /// The zone's UTC offset at an epoch time in microseconds, in seconds.
    pub fn offset_seconds(&mut self, micros: i64) -> i32 {
        self.refresh_offset(micros.div_euclid(1_000_000));
        self.offset_secs
    }

    /// The local date of an epoch time in microseconds: picks the daily file.
    pub fn date_of_micros(&mut self, micros: i64) -> LocalDate {
        self.local(micros.div_euclid(1_000_000), 0).date
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS.ffffff+HH:MM` for epoch microseconds.
    pub fn write_micros(&mut self, out: &mut Vec<u8>, micros: i64) {
        let sub = micros.rem_euclid(1_000_000) as u32;
        let text = self.local(micros.div_euclid(1_000_000), 0).text;
        out.extend_from_slice(&text);
        let mut frac = *b".000000";
        let mut v = sub;
        for i in (1..7).rev() {
            frac[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&frac);
        out.extend_from_slice(&self.offset_text[..self.offset_len]);
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS+HH:MM` for epoch seconds (exchange times,
    /// which Kite sends in whole seconds; Python's isoformat omits a zero
    /// fraction).
    pub fn write_seconds(&mut self, out: &mut Vec<u8>, seconds: i64) {
        let text = self.local(seconds, 1).text;
        out.extend_from_slice(&text);
        out.extend_from_slice(&self.offset_text[..self.offset_len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn kolkata_is_five_thirty_ahead() {
        let mut c = ZoneFormatter::new("Asia/Kolkata").unwrap();
        // 2021-07-05T05:11:27Z, the exchange time in Zerodha's full mock packet
        assert_eq!(
            s(|o| c.write_seconds(o, 1_625_461_887)),
            "2021-07-05T10:41:27+05:30"
        );
        assert_eq!(
            s(|o| c.write_micros(o, 1_764_046_523_123_456)),
            "2025-11-25T10:25:23.123456+05:30"
        );
        assert_eq!(
            s(|o| c.write_micros(o, 0)),
            "1970-01-01T05:30:00.000000+05:30"
        );
    }

    #[test]
    fn date_changes_at_local_midnight() {
        let mut c = ZoneFormatter::new("Asia/Kolkata").unwrap();
        // 18:29:59.999999Z is 23:59:59.999999 in Kolkata; a microsecond later is the next day.
        let before = 1_764_095_399_999_999i64;
        assert_eq!(c.date_of_micros(before).to_string(), "2025-11-25");
        assert_eq!(c.date_of_micros(before + 1).to_string(), "2025-11-26");
    }

    #[test]
    fn zones_with_daylight_saving_change_offset() {
        let mut c = ZoneFormatter::new("America/New_York").unwrap();
        assert_eq!(
            s(|o| c.write_seconds(o, 1_751_328_000)),
            "2025-06-30T20:00:00-04:00"
        );
        assert_eq!(
            s(|o| c.write_seconds(o, 1_764_547_200)),
            "2025-11-30T19:00:00-05:00"
        );
        let mut u = ZoneFormatter::new("UTC").unwrap();
        assert_eq!(
            s(|o| u.write_seconds(o, 4_294_967_295)),
            "2106-02-07T06:28:15+00:00"
        );
    }

    #[test]
    fn unknown_zone_is_an_error_naming_it() {
        let e = ZoneFormatter::new("Mars/Olympus").unwrap_err();
        assert!(e.to_string().contains("Mars/Olympus"));
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
