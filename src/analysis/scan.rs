//! Reading captured JSONL fast: files are mapped (memmap2), split at line
//! boundaries into one range per core, and each line is parsed in one typed
//! pass ([`parse_line_strict`] for `verify`, [`parse_line_fast`] for
//! `analyze`: serde_json over the borrowed line, no copy, no value tree).
//! [`parse_line`] — simd-json's value tree — is the reference both are
//! tested against. What a line says is reduced to a small [`Line`]; what
//! is wrong with it to a [`LineError`] with its line number.

use std::path::Path;

use simd_json::prelude::*;

use crate::kite::Mode;

/// The fields the tools use from one line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// `instrument_token`.
    pub token: u32,
    /// `mode`.
    pub mode: Mode,
    /// `connection_id`.
    pub connection_id: u8,
    /// `timestamp`, epoch µs.
    pub ts_micros: i64,
    /// `last_price`.
    pub last_price: f64,
    /// `volume_traded` (quote and full ticks of tradable instruments).
    pub volume: Option<u32>,
    /// `tradable`.
    pub tradable: bool,
}

/// Why a line was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Not valid UTF-8 (the byte offset of the first bad byte in the line).
    NotUtf8(usize),
    /// The last line of the file has no `\n`: a write cut short.
    Torn,
    /// Not a JSON object.
    Json(String),
    /// A key the contract requires is missing or has the wrong type.
    Key(String),
    /// A `.jsonl.zst` frame that does not decode (its lines are lost).
    Frame(String),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::NotUtf8(at) => write!(f, "not UTF-8 (bad byte at column {})", at + 1),
            LineError::Torn => f.write_str("torn last line (no newline: a write cut short)"),
            LineError::Json(e) => write!(f, "not JSON: {e}"),
            LineError::Key(e) => f.write_str(e),
            LineError::Frame(e) => write!(f, "zstd frame does not decode: {e}"),
        }
    }
}

/// The keys of each kind of line, in order: one table, owned by the line
/// format ([`crate::sink::line::keys`]).
pub use crate::sink::line::keys as contract_keys;

pub use crate::time::parse_timestamp;

/// Parses one line (without its `\n`) into simd-json's value tree. With
/// `strict`, every key of the contract for the tick's kind must be present.
/// The reference the one-pass parsers are tested against (it copies the
/// line and builds every value, depth levels included: 1.5× slower).
pub fn parse_line(line: &[u8], scratch: &mut Vec<u8>, strict: bool) -> Result<Line, LineError> {
    if let Err(e) = std::str::from_utf8(line) {
        return Err(LineError::NotUtf8(e.valid_up_to()));
    }
    scratch.clear();
    scratch.extend_from_slice(line);
    let v = simd_json::to_borrowed_value(scratch).map_err(|e| LineError::Json(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| LineError::Json("not an object".into()))?;
    fn scalar<'v>(x: &'v simd_json::BorrowedValue<'_>) -> Scalar<'v> {
        if let Some(b) = x.as_bool() {
            Scalar::B(b)
        } else if let Some(t) = x.as_str() {
            Scalar::S(t)
        } else if let Some(u) = x.as_u64() {
            Scalar::U(u)
        } else if let Some(i) = x.as_i64() {
            Scalar::I(i)
        } else if let Some(f) = x.as_f64() {
            Scalar::F(f)
        } else {
            Scalar::Other
        }
    }
    check_line(|k| obj.get(k).map(scalar), strict.then_some(obj.len()))
}

/// The checks both parsers make, over how each reads a key (`get`: the
/// key's value, `None` when absent); `strict`: the line's number of keys,
/// when every key of the contract must be there and no other.
fn check_line<'a>(
    get: impl Fn(&str) -> Option<Scalar<'a>>,
    strict: Option<usize>,
) -> Result<Line, LineError> {
    let key = |name: &str| LineError::Key(format!("missing or mistyped key {name:?}"));
    let token = get("instrument_token")
        .and_then(Scalar::u64)
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| key("instrument_token"))?;
    let mode: Mode = get("mode")
        .and_then(Scalar::str)
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| key("mode"))?;
    let connection_id = get("connection_id")
        .and_then(Scalar::u64)
        .filter(|c| (1..=3).contains(c))
        .ok_or_else(|| key("connection_id"))? as u8;
    let ts = get("timestamp")
        .and_then(Scalar::str)
        .and_then(parse_timestamp)
        .ok_or_else(|| key("timestamp"))?;
    let last_price = get("last_price")
        .and_then(Scalar::f64)
        .ok_or_else(|| key("last_price"))?;
    let tradable = match get("tradable") {
        Some(Scalar::B(b)) => b,
        _ => return Err(key("tradable")),
    };
    let volume = get("volume_traded")
        .and_then(Scalar::u64)
        .and_then(|x| u32::try_from(x).ok());
    if let Some(entries) = strict {
        let want = contract_keys(mode, !tradable);
        if let Some(missing) = want.iter().find(|w| get(w).is_none()) {
            return Err(key(missing));
        }
        if entries != want.len() {
            return Err(LineError::Key(format!(
                "{entries} keys, the contract has {} for a {mode} tick",
                want.len()
            )));
        }
    }
    Ok(Line {
        token,
        mode,
        connection_id,
        ts_micros: ts,
        last_price,
        volume,
        tradable,
    })
}

/// Every key a tick line can have: the line format's one table.
use crate::sink::line::ALL_KEYS;

/// A key of a line: its place in [`ALL_KEYS`], or unknown.
struct KeyId(Option<usize>);

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = KeyId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<KeyId, E> {
                Ok(KeyId(ALL_KEYS.iter().position(|x| *x == k)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value as the checks see it: a scalar, or something else (skipped
/// without being built).
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    U(u64),
    I(i64),
    F(f64),
    B(bool),
    S(&'a str),
    /// null, an object, an array, or a string with escapes.
    Other,
}

impl<'a> Scalar<'a> {
    fn u64(self) -> Option<u64> {
        match self {
            Scalar::U(u) => Some(u),
            Scalar::I(i) => u64::try_from(i).ok(),
            _ => None,
        }
    }
    /// A float as written (`100.0`; an integer is not a price here, as
    /// in the value tree's `as_f64`).
    fn f64(self) -> Option<f64> {
        match self {
            Scalar::F(f) => Some(f),
            _ => None,
        }
    }
    fn str(self) -> Option<&'a str> {
        match self {
            Scalar::S(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a value")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::U(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::I(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::F(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::B(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::S(v))
            }
            fn visit_str<E>(self, _: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Scalar<'de>, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Scalar<'de>, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A line's keys and the values the checks read, in one pass.
struct Keys<'a> {
    values: [Option<Scalar<'a>>; 19],
    /// Entries, unknown keys included.
    entries: usize,
}

impl<'de> serde::Deserialize<'de> for Keys<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Keys<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Keys<'de>, A::Error> {
                let mut k = Keys {
                    values: [None; 19],
                    entries: 0,
                };
                while let Some(KeyId(id)) = a.next_key::<KeyId>()? {
                    match id {
                        Some(i) => {
                            if k.values[i].is_none() {
                                k.entries += 1;
                            }
                            k.values[i] = Some(a.next_value::<Scalar<'de>>()?);
                        }
                        None => {
                            k.entries += 1;
                            a.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(k)
            }
        }
        d.deserialize_map(V)
    }
}

/// [`parse_line`] with `strict`, in one typed pass over the line: no copy,
/// no value tree (depth levels are skipped, not built), the same answers.
/// What `verify` uses.
pub fn parse_line_strict(line: &[u8]) -> Result<Line, LineError> {
    if let Err(e) = std::str::from_utf8(line) {
        return Err(LineError::NotUtf8(e.valid_up_to()));
    }
    let k: Keys<'_> = serde_json::from_slice(line).map_err(|e| LineError::Json(e.to_string()))?;
    check_line(
        |name| {
            ALL_KEYS
                .iter()
                .position(|x| *x == name)
                .and_then(|i| k.values[i])
        },
        Some(k.entries),
    )
}

/// The fields the tools read from a line, deserialized straight from it
/// (unknown keys skipped without building values). Public so that the
/// benchmark's `serde_json` baseline reads exactly the same fields.
#[derive(Debug, serde::Deserialize)]
pub struct Fields<'a> {
    /// `instrument_token`.
    pub instrument_token: u32,
    /// `mode`.
    pub mode: &'a str,
    /// `connection_id`.
    pub connection_id: u8,
    /// `timestamp`, as written.
    pub timestamp: &'a str,
    /// `last_price`.
    pub last_price: f64,
    /// `tradable`.
    pub tradable: bool,
    /// `volume_traded`, where the tick has one.
    #[serde(default)]
    pub volume_traded: Option<u32>,
}

/// [`parse_line`] without the contract-keys check: what `analyze` uses.
/// `serde_json` into a borrowed, typed struct, in place: on our lines it is
/// 1.66× simd-json's typed path (which must copy each line and build a tape
/// of every value; see docs/performance.md), so this is the one path where
/// tickcap reads lines with serde_json.
pub fn parse_line_fast(line: &[u8]) -> Result<Line, LineError> {
    if let Err(e) = std::str::from_utf8(line) {
        return Err(LineError::NotUtf8(e.valid_up_to()));
    }
    let f: Fields<'_> = serde_json::from_slice(line).map_err(|e| LineError::Json(e.to_string()))?;
    let mode: Mode = f
        .mode
        .parse()
        .map_err(|_| LineError::Key("missing or mistyped key \"mode\"".into()))?;
    if !(1..=3).contains(&f.connection_id) {
        return Err(LineError::Key(
            "missing or mistyped key \"connection_id\"".into(),
        ));
    }
    let ts = parse_timestamp(f.timestamp)
        .ok_or_else(|| LineError::Key("missing or mistyped key \"timestamp\"".into()))?;
    Ok(Line {
        token: f.instrument_token,
        mode,
        connection_id: f.connection_id,
        ts_micros: ts,
        last_price: f.last_price,
        volume: f.volume_traded,
        tradable: f.tradable,
    })
}

/// Records a bad line in `bad` (line number, reason) and returns `None`, or
/// passes a good line through: the common first step of every [`Fold`].
pub fn good_or_record(
    bad: &mut Vec<(usize, String)>,
    no: usize,
    line: Result<Line, LineError>,
) -> Option<Line> {
    match line {
        Ok(l) => Some(l),
        Err(e) => {
            bad.push((no, e.to_string()));
            None
        }
    }
}

/// What a thread folds lines into; merged in file order afterwards.
pub trait Fold: Send + Sized {
    /// One line: its 1-based number within this part, and what it says.
    fn line(&mut self, no: usize, line: Result<Line, LineError>);
    /// Appends the results of the part that follows this one, whose line
    /// numbers start after `lines_before` lines.
    fn merge(&mut self, next: Self, lines_before: usize);
}

/// Splits `bytes` into at most `parts` ranges ending at line boundaries.
pub fn split(bytes: &[u8], parts: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for p in 1..parts.max(1) {
        let guess = (bytes.len() * p / parts).max(start);
        let end = match memchr::memchr(b'\n', &bytes[guess..]) {
            Some(i) => guess + i + 1,
            None => bytes.len(),
        };
        if end > start {
            out.push(start..end);
            start = end;
        }
    }
    if start < bytes.len() || out.is_empty() {
        out.push(start..bytes.len());
    }
    out
}

/// Folds the lines of `chunk` into `f`, numbering from `*no`; a last line
/// without `\n` is torn when `torn_tail` (the end of the file).
fn fold_lines<F: Fold>(
    f: &mut F,
    chunk: &[u8],
    torn_tail: bool,
    strict: bool,
    no: &mut usize,
    scratch: &mut Vec<u8>,
) {
    let mut rest = chunk;
    while !rest.is_empty() {
        *no += 1;
        let (line, torn) = match memchr::memchr(b'\n', rest) {
            Some(i) => {
                let l = &rest[..i];
                rest = &rest[i + 1..];
                (l, false)
            }
            None => {
                let l = rest;
                rest = &[];
                (l, torn_tail)
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if torn {
            f.line(*no, Err(LineError::Torn));
        } else if strict {
            let _ = &scratch;
            f.line(*no, parse_line_strict(line));
        } else {
            f.line(*no, parse_line_fast(line));
        }
    }
}

/// Reads one file with `threads` threads into a fold made by `make`.
/// Returns the fold and the number of lines (blank lines are skipped but counted).
/// A `.jsonl.zst` capture is read frame by frame (see [`crate::zst`]): its
/// frames are shared out between the threads, each decompressing one
/// frame at a time into a reused buffer, never the whole file.
pub fn scan<F: Fold>(
    path: &Path,
    threads: usize,
    strict: bool,
    make: impl Fn() -> F + Sync,
) -> std::io::Result<(F, usize)> {
    crate::util::regular_file(path)?;
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok((make(), 0));
    }
    // SAFETY: read-only map of a file we only read. A capture tickcap is
    // writing only grows past the mapped length: the writer appends (a zstd
    // frame the disk took part of is finished by the retry, never cut off)
    // and cuts a torn tail only when the service starts, before its first
    // write, or a line cut short by a full disk at shutdown. Truncation while
    // we read — those two moments, or another process — is the unsafe case
    // (a SIGBUS; documented in the README).
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let bytes: &[u8] = &map;
    let results: Vec<(F, usize)> = if crate::zst::is_zst(path) {
        scan_frames(bytes, threads, strict, &make)
    } else {
        let parts = split(bytes, threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .iter()
                .map(|r| {
                    let chunk = &bytes[r.clone()];
                    let last = r.end == bytes.len();
                    let make = &make;
                    s.spawn(move || {
                        let mut f = make();
                        let mut scratch = Vec::with_capacity(4096);
                        let mut no = 0;
                        fold_lines(&mut f, chunk, last, strict, &mut no, &mut scratch);
                        (f, no)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| (make(), 0)))
                .collect()
        })
    };
    let mut it = results.into_iter();
    let (mut acc, mut lines) = it.next().unwrap_or_else(|| (make(), 0));
    for (f, n) in it {
        acc.merge(f, lines);
        lines += n;
    }
    Ok((acc, lines))
}

/// The frames of a `.jsonl.zst`, in contiguous groups of about equal
/// compressed size, one group a thread; a torn tail is one torn line.
fn scan_frames<F: Fold>(
    bytes: &[u8],
    threads: usize,
    strict: bool,
    make: &(impl Fn() -> F + Sync),
) -> Vec<(F, usize)> {
    // `bytes` is the file's mapping (see `scan`).
    let fr = crate::zst::frames_of_map(bytes);
    let n = threads.max(1);
    let total = fr.frames.last().map_or(0, |r| r.end).max(1);
    let mut groups: Vec<Vec<std::ops::Range<usize>>> = vec![Vec::new(); n];
    for r in &fr.frames {
        let g = (r.start * n / total).min(n - 1);
        groups[g].push(r.clone());
    }
    groups.retain(|g| !g.is_empty());
    let last = groups.len().saturating_sub(1);
    let torn = fr.torn_at.is_some();
    let corrupt = &fr.corrupt;
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                s.spawn(move || {
                    let mut f = make();
                    let mut scratch = Vec::with_capacity(4096);
                    let mut buf = Vec::new();
                    let mut no = 0;
                    let mut released = g.first().map_or(0, |r| r.start);
                    for r in g {
                        // Done with a stretch of the file: out of memory.
                        if r.start - released >= 64 << 20 {
                            crate::util::release_mapped(bytes, released..r.start);
                            released = r.start;
                        }
                        match crate::zst::decompress_frame(&bytes[r.clone()], &mut buf) {
                            Ok(()) => {
                                fold_lines(&mut f, &buf, false, strict, &mut no, &mut scratch)
                            }
                            Err(e) => {
                                no += 1;
                                f.line(
                                    no,
                                    Err(LineError::Frame(format!("at byte {}: {e}", r.start))),
                                );
                            }
                        }
                    }
                    if gi == last {
                        // Corrupt stretches in the middle were skipped (the
                        // frames after them are read); each is one error.
                        for c in corrupt {
                            no += 1;
                            f.line(
                                no,
                                Err(LineError::Frame(format!(
                                    "bytes {}..{} are no whole zstd frame (skipped; reading went on at the next frame)",
                                    c.start, c.end
                                ))),
                            );
                        }
                        if torn {
                            no += 1;
                            f.line(no, Err(LineError::Torn));
                        }
                    }
                    (f, no)
                })
            })
            .collect();
        let mut out: Vec<(F, usize)> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| (make(), 0)))
            .collect();
        if out.is_empty() && torn {
            let mut f = make();
            f.line(1, Err(LineError::Torn));
            out.push((f, 1));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_our_format_and_others() {
        assert_eq!(parse_timestamp("1970-01-01T05:30:00.000001+05:30"), Some(1));
        assert_eq!(
            parse_timestamp("2025-11-25T10:25:23.123456+05:30"),
            Some(1_764_046_523_123_456)
        );
        assert_eq!(
            parse_timestamp("2025-11-25T04:55:23Z"),
            Some(1_764_046_523_000_000)
        );
        assert_eq!(
            parse_timestamp("2025-06-30T20:00:00-04:00"),
            Some(1_751_328_000_000_000)
        );
        assert_eq!(
            parse_timestamp("2025-11-25T10:25:23.5+05:30"),
            Some(1_764_046_523_500_000)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn fast_and_strict_parsers_agree() {
        let mut f = crate::sink::LineFormatter::new(
            crate::time::ZoneFormatter::new("Asia/Kolkata").unwrap(),
        );
        let mut inst = crate::replay::synthetic::Instrument::new(256_265, 1);
        let mut other = crate::replay::synthetic::Instrument::new(408_065, 1);
        let mut scratch = Vec::new();
        for t in [
            inst.next_tick(Mode::Full, 1),
            other.next_tick(Mode::Full, 1),
            other.next_tick(Mode::Ltp, 1),
        ] {
            let mut line = Vec::new();
            f.write_line(&mut line, &t, 1_764_046_523_000_001, 2);
            let line = &line[..line.len() - 1];
            assert_eq!(parse_line(line, &mut scratch, true), parse_line_fast(line));
        }
        assert!(parse_line_fast(b"{\"instrument_token\":1}").is_err());
    }

    /// The one-pass strict parser answers as the value-tree one does, on
    /// every kind of line and on lines broken every way a key can be.
    #[test]
    fn the_one_pass_strict_parser_agrees_with_the_tree() {
        let mut scratch = Vec::new();
        let lines: Vec<Vec<u8>> = crate::sink::line::sample_lines(1)
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        let mut broken = Vec::new();
        for l in &lines {
            let text = String::from_utf8(l.clone()).unwrap();
            let v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&text).unwrap();
            for k in v.keys() {
                // Each key missing, mistyped as a string, as null, as -1.
                for replace in [
                    None,
                    Some(serde_json::json!("x")),
                    Some(serde_json::Value::Null),
                    Some(serde_json::json!(-1)),
                ] {
                    let mut w = v.clone();
                    match replace {
                        None => {
                            w.remove(k);
                        }
                        Some(r) => {
                            w.insert(k.clone(), r);
                        }
                    }
                    broken.push(serde_json::to_vec(&w).unwrap());
                }
            }
            let mut extra = v.clone();
            extra.insert("surprise".into(), serde_json::json!([1, {"a": 2}]));
            broken.push(serde_json::to_vec(&extra).unwrap());
            broken.push(l[..l.len() / 2].to_vec());
        }
        broken.push(b"[1,2]".to_vec());
        broken.push(b"not json".to_vec());
        broken.push(b"\xff\xfe".to_vec());
        for l in lines.iter().chain(&broken) {
            let tree = parse_line(l, &mut scratch, true);
            let pass = parse_line_strict(l);
            match (&tree, &pass) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(LineError::Json(_)), Err(LineError::Json(_))) => {}
                (a, b) => assert_eq!(a, b, "{}", String::from_utf8_lossy(l)),
            }
        }
        assert!(lines.iter().all(|l| parse_line_strict(l).is_ok()));
    }

    #[test]
    fn split_ends_every_part_at_a_newline() {
        let text = b"aaaa\nbb\ncccccc\nd\neeeeeeeee\n";
        for parts in 1..6 {
            let r = split(text, parts);
            assert_eq!(r.first().unwrap().start, 0);
            assert_eq!(r.last().unwrap().end, text.len());
            for w in r.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert_eq!(text[w[0].end - 1], b'\n');
            }
        }
    }
}
