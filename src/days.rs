//! A day's capture is an ordered sequence of **segments**, and every part
//! that touches the daily files — the writer, compression, retention, the
//! Kafka journal, the offline tools — lists and names them here.
//!
//! ```text
//!  market_data_2026-11-27.jsonl        segment 0 (plain)
//!  market_data_2026-11-27.1.jsonl.zst  segment 1 (zstd: capture switched to zstd and restarted)
//!  market_data_2026-11-27.2.jsonl.zst  segment 2 (the writer's file was removed and reopened)
//! ```
//!
//! The lifecycle (owned by `sink::files::DailyFiles`):
//!
//! - **open**: the writer appends only to the *last* segment of the
//!   *current* day, and only when its encoding matches the capture's;
//!   otherwise it starts the next segment. A torn tail is repaired at open,
//!   before any reader starts (the engine opens today's segment in
//!   `Engine::start`). The open segment is held with an exclusive `flock`.
//! - **seal**: every segment but the current day's last is sealed and never
//!   written again; a closed day is never reopened (a late tick goes to the
//!   current day, counted).
//! - **compress**: only sealed plain segments, never over an existing file,
//!   through a unique temporary name, under an exclusive `flock` of the
//!   source so one compression runs per segment ([`crate::zst::compress_file`]).
//!   A plain segment and its `.zst` hold the same lines: positions are
//!   offsets in the segment's *uncompressed* bytes, so a reader's position
//!   survives the compression.
//! - **retire**: retention removes whole days before the cutoff.
//!
//! Three **families** of daily files share this lifecycle, each with its
//! own name prefix ([`Family`]): the ticks (`market_data_`), the events
//! journal (`events_`: what the capture did, see [`crate::events`]) and
//! Kite's order updates (`orders_`), and the candles of each interval
//! (`candles_minute_`, …). The functions without a family argument
//! are about the ticks.

use std::path::{Path, PathBuf};

use crate::time::LocalDate;

/// Which daily files: they differ only in their name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `market_data_…`: one line per tick.
    Ticks,
    /// `events_…`: one line per thing the capture did (the events journal).
    Events,
    /// `orders_…`: one line per order update Kite sent.
    Orders,
    /// `candles_<interval>_…`: one line per final bar (`crate::candles`).
    Candles(crate::candles::Interval),
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 11] = [
        Family::Ticks,
        Family::Events,
        Family::Orders,
        Family::Candles(crate::candles::Interval::Minute),
        Family::Candles(crate::candles::Interval::Minute3),
        Family::Candles(crate::candles::Interval::Minute5),
        Family::Candles(crate::candles::Interval::Minute10),
        Family::Candles(crate::candles::Interval::Minute15),
        Family::Candles(crate::candles::Interval::Minute30),
        Family::Candles(crate::candles::Interval::Minute60),
        Family::Candles(crate::candles::Interval::Day),
    ];

    /// The file names' prefix.
    pub fn prefix(self) -> &'static str {
        use crate::candles::Interval as I;
        match self {
            Family::Ticks => "market_data_",
            Family::Events => "events_",
            Family::Orders => "orders_",
            Family::Candles(I::Minute) => "candles_minute_",
            Family::Candles(I::Minute3) => "candles_3minute_",
            Family::Candles(I::Minute5) => "candles_5minute_",
            Family::Candles(I::Minute10) => "candles_10minute_",
            Family::Candles(I::Minute15) => "candles_15minute_",
            Family::Candles(I::Minute30) => "candles_30minute_",
            Family::Candles(I::Minute60) => "candles_60minute_",
            Family::Candles(I::Day) => "candles_day_",
        }
    }
}

/// Where a segment sits: its day and its index within the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    /// The day (storage zone).
    pub day: LocalDate,
    /// 0 for `market_data_D.jsonl[.zst]`, N for `market_data_D.N.jsonl[.zst]`.
    pub index: u32,
}

impl std::fmt::Display for SegmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.index == 0 {
            write!(f, "{}", self.day)
        } else {
            write!(f, "{}.{}", self.day, self.index)
        }
    }
}

impl SegmentId {
    /// Parses what [`Display`](std::fmt::Display) writes: `YYYY-MM-DD` or `YYYY-MM-DD.N`.
    pub fn parse(text: &str) -> Option<SegmentId> {
        let (d, i) = match text.split_once('.') {
            Some((d, i)) => (d, i.parse().ok().filter(|i| *i > 0)?),
            None => (text, 0),
        };
        Some(SegmentId {
            day: LocalDate::parse(d)?,
            index: i,
        })
    }

    /// The file name of this tick segment in one encoding.
    pub fn file_name(&self, zstd: bool) -> String {
        self.file_name_in(Family::Ticks, zstd)
    }

    /// The file name of this segment of `family` in one encoding.
    pub fn file_name_in(&self, family: Family, zstd: bool) -> String {
        let ext = if zstd { ".jsonl.zst" } else { ".jsonl" };
        format!("{}{self}{ext}", family.prefix())
    }
}

/// A tick file's segment and encoding, from its name (`None` for any
/// other name: `.part`, `.torn-…`, `.unwritten-…`, the dump, …).
pub fn parse_name(name: &str) -> Option<(SegmentId, bool)> {
    match parse_any_name(name)? {
        (Family::Ticks, id, z) => Some((id, z)),
        _ => None,
    }
}

/// Any daily file's family, segment and encoding, from its name.
pub fn parse_any_name(name: &str) -> Option<(Family, SegmentId, bool)> {
    let (family, rest) = Family::ALL
        .iter()
        .find_map(|f| Some((*f, name.strip_prefix(f.prefix())?)))?;
    let (stem, zstd) = match rest.strip_suffix(".jsonl.zst") {
        Some(s) => (s, true),
        None => (rest.strip_suffix(".jsonl")?, false),
    };
    Some((family, SegmentId::parse(stem)?, zstd))
}

/// The file of `family` that belongs with a daily file of another family
/// (same day and segment, same directory and encoding): e.g. the events
/// journal beside `market_data_2026-11-27.jsonl`.
pub fn sibling(path: &Path, family: Family) -> Option<PathBuf> {
    let (_, id, zstd) = parse_any_name(&path.file_name()?.to_string_lossy())?;
    let dir = path.parent().unwrap_or(Path::new(""));
    Some(dir.join(id.file_name_in(family, zstd)))
}

/// One segment on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its day and index.
    pub id: SegmentId,
    /// The file to read it from: the plain file while it exists (a
    /// compression in progress writes the `.zst` beside it; both hold the
    /// same lines), else the `.zst`.
    pub path: PathBuf,
    /// Whether `path` is zstd.
    pub zstd: bool,
    /// The `.zst` also exists beside a plain file (compressed, not yet removed).
    pub also_zstd: bool,
}

/// Every tick segment in `dir`, in order (day, then index). Only regular files.
pub fn segments(dir: &Path) -> Vec<Segment> {
    segments_in(dir, Family::Ticks)
}

/// Every segment of `family` in `dir`, in order (day, then index). Only
/// regular files.
pub fn segments_in(dir: &Path, family: Family) -> Vec<Segment> {
    let mut found: Vec<(SegmentId, bool, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| {
                    let (f, id, z) = parse_any_name(&e.file_name().to_string_lossy())?;
                    (f == family).then(|| (id, z, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    // Plain before zstd within a segment.
    found.sort();
    let mut out: Vec<Segment> = Vec::new();
    for (id, zstd, path) in found {
        match out.last_mut() {
            Some(last) if last.id == id => last.also_zstd |= zstd,
            _ => out.push(Segment {
                id,
                path,
                zstd,
                also_zstd: false,
            }),
        }
    }
    out
}

/// The tick segments of one day, in order.
pub fn segments_of(dir: &Path, day: LocalDate) -> Vec<Segment> {
    segments_of_in(dir, Family::Ticks, day)
}

/// The segments of `family` of one day, in order.
pub fn segments_of_in(dir: &Path, family: Family, day: LocalDate) -> Vec<Segment> {
    segments_in(dir, family)
        .into_iter()
        .filter(|s| s.id.day == day)
        .collect()
}

/// Orders files given on a command line as a day's segments are ordered
/// (day, index, plain before zstd); names that are not daily files keep
/// their place after them, in the order given.
pub fn sort_paths(paths: &mut [PathBuf]) {
    paths.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| parse_any_name(&n.to_string_lossy()))
            .map_or((1, None), |(f, id, z)| (0, Some((id, f, z))))
    });
}

/// Takes the events journals and order files out of `files` (a shell's
/// `data/*.jsonl` names them too) and returns them: the tools that read
/// ticks skip them (coverage reads the journals on its own).
pub fn take_non_tick_files(files: &mut Vec<PathBuf>) -> Vec<PathBuf> {
    let (other, ticks): (Vec<PathBuf>, Vec<PathBuf>) = files.drain(..).partition(|p| {
        p.file_name()
            .and_then(|n| parse_any_name(&n.to_string_lossy()))
            .is_some_and(|(f, _, _)| f != Family::Ticks)
    });
    *files = ticks;
    other
}

/// An exclusive advisory lock on an open file (`flock`), released when the
/// file is closed. The writer holds one on the segment it appends to; a
/// compression holds one on the segment it compresses. `Ok(false)`: another
/// process (or descriptor) holds it.
pub fn try_lock(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_the_segments_of_a_day() {
        let d = LocalDate::parse("2026-11-27").unwrap();
        let s0 = SegmentId { day: d, index: 0 };
        let s2 = SegmentId { day: d, index: 2 };
        assert_eq!(s0.file_name(false), "market_data_2026-11-27.jsonl");
        assert_eq!(s2.file_name(true), "market_data_2026-11-27.2.jsonl.zst");
        for (name, want) in [
            ("market_data_2026-11-27.jsonl", Some((s0, false))),
            ("market_data_2026-11-27.2.jsonl.zst", Some((s2, true))),
            ("market_data_2026-11-27.0.jsonl", None),
            ("market_data_2026-11-27.jsonl.zst.part", None),
            ("market_data_2026-11-27.jsonl.torn-5", None),
            ("instruments_2026-11-27.csv", None),
            ("events_2026-11-27.jsonl", None),
        ] {
            assert_eq!(parse_name(name), want, "{name}");
        }
        assert_eq!(
            parse_any_name("events_2026-11-27.2.jsonl.zst"),
            Some((Family::Events, s2, true))
        );
        assert_eq!(
            parse_any_name(&s0.file_name_in(Family::Orders, false)),
            Some((Family::Orders, s0, false))
        );
        assert_eq!(
            sibling(
                Path::new("/d/market_data_2026-11-27.2.jsonl.zst"),
                Family::Events
            ),
            Some(PathBuf::from("/d/events_2026-11-27.2.jsonl.zst"))
        );
        assert_eq!(SegmentId::parse(&s2.to_string()), Some(s2));
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "market_data_2026-11-27.1.jsonl.zst",
            "market_data_2026-11-27.jsonl",
            "market_data_2026-11-27.jsonl.zst",
            "market_data_2026-11-26.jsonl.zst",
            "market_data_2026-11-27.10.jsonl",
            "market_data_2026-11-27.2.jsonl",
        ] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let got: Vec<(String, bool)> = segments(dir.path())
            .iter()
            .map(|s| (s.id.to_string(), s.also_zstd))
            .collect();
        assert_eq!(
            got,
            [
                ("2026-11-26".to_owned(), false),
                ("2026-11-27".to_owned(), true),
                ("2026-11-27.1".to_owned(), false),
                ("2026-11-27.2".to_owned(), false),
                ("2026-11-27.10".to_owned(), false),
            ]
        );
        assert!(
            !segments(dir.path())[1].zstd,
            "the plain copy is read first"
        );
    }

    #[test]
    fn paths_from_a_shell_glob_are_read_in_segment_order() {
        let mut v: Vec<PathBuf> = [
            "d/market_data_2026-11-27.10.jsonl",
            "notes.txt",
            "d/market_data_2026-11-27.2.jsonl.zst",
            "d/market_data_2026-11-26.jsonl.zst",
            "d/market_data_2026-11-27.jsonl",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        sort_paths(&mut v);
        let names: Vec<&str> = v.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "d/market_data_2026-11-26.jsonl.zst",
                "d/market_data_2026-11-27.jsonl",
                "d/market_data_2026-11-27.2.jsonl.zst",
                "d/market_data_2026-11-27.10.jsonl",
                "notes.txt",
            ]
        );
    }
}
