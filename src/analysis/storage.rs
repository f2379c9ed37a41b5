//! `tickcap storage`: what the data directory holds — daily files, sizes,
//! tick counts, first and last timestamp — and retention.

use std::path::Path;

use serde_json::{json, Value};

use crate::sink::files::date_of_name;
use crate::time::LocalDate;

/// Counts good and bad lines (the same parser as `analyze`).
#[derive(Default)]
struct Count {
    good: u64,
    torn: bool,
}

impl super::scan::Fold for Count {
    fn line(&mut self, _: usize, line: Result<super::scan::Line, super::scan::LineError>) {
        self.good += u64::from(line.is_ok());
        self.torn |= matches!(line, Err(super::scan::LineError::Torn));
    }
    fn merge(&mut self, next: Self, _: usize) {
        self.good += next.good;
        self.torn |= next.torn;
    }
}

/// A `.jsonl.zst` day: lines and ticks from a parallel scan of its frames,
/// the first and last timestamps from its first and last frames.
fn zst_info(path: &Path, name: String, date: LocalDate) -> std::io::Result<FileInfo> {
    let file = std::fs::File::open(path)?;
    let bytes = file.metadata()?.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (count, lines) = super::scan::scan(path, threads, false, Count::default)?;
    let (mut first, mut last) = (None, None);
    if bytes > 0 {
        // SAFETY: read-only map; see `analysis::scan`.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let fr = crate::zst::frames_of_map(&map);
        let mut buf = Vec::new();
        if let Some(r) = fr.frames.first() {
            if crate::zst::decompress_frame(&map[r.clone()], &mut buf).is_ok() {
                first = buf.split(|&c| c == b'\n').next().and_then(timestamp_of);
            }
        }
        if let Some(r) = fr.frames.last() {
            if crate::zst::decompress_frame(&map[r.clone()], &mut buf).is_ok() {
                last = buf
                    .split(|&c| c == b'\n')
                    .rfind(|l| !l.is_empty())
                    .and_then(timestamp_of);
            }
        }
    }
    Ok(FileInfo {
        name,
        date,
        bytes,
        lines: lines as u64,
        ticks: count.good,
        first,
        last,
        torn: count.torn,
    })
}

/// One daily file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    /// File name.
    pub name: String,
    /// Its day.
    pub date: LocalDate,
    /// Bytes.
    pub bytes: u64,
    /// Lines, counting a torn last line.
    pub lines: u64,
    /// Of those, lines that are ticks (parse as one).
    pub ticks: u64,
    /// `timestamp` of the first and last line (as written).
    pub first: Option<String>,
    /// Last.
    pub last: Option<String>,
    /// The last line lacks its newline (a crash; repaired at the next start).
    pub torn: bool,
}

fn timestamp_of(line: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(line).ok()?;
    let at = s.rfind("\"timestamp\":\"")? + "\"timestamp\":\"".len();
    let end = s[at..].find('"')? + at;
    Some(s[at..end].to_owned())
}

/// A daily file's name and day, or an error saying it is not one.
fn name_and_date(path: &Path) -> std::io::Result<(String, LocalDate)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let date = date_of_name(&name).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name} is not a daily file"),
        )
    })?;
    Ok((name, date))
}

/// The sidecar index of a daily file: `NAME.idx`, its summary as last
/// counted, valid while the file's size and modification time are those
/// it records (an appended or replaced file is counted again). A day of
/// 200M ticks takes minutes to count; its index, a millisecond to read.
pub fn index_path(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".idx");
    std::path::PathBuf::from(p)
}

fn stamp(path: &Path) -> Option<(u64, i128)> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos() as i128;
    Some((m.len(), mtime))
}

fn cached(path: &Path, name: &str, date: LocalDate) -> Option<FileInfo> {
    let (bytes, mtime) = stamp(path)?;
    let text = crate::util::read_regular(&index_path(path), 64 << 10).ok()?;
    let v: Value = serde_json::from_slice(&text).ok()?;
    if v["bytes"].as_u64() != Some(bytes) || v["mtime_ns"].as_str() != Some(&mtime.to_string()) {
        return None;
    }
    Some(FileInfo {
        name: name.to_owned(),
        date,
        bytes,
        lines: v["lines"].as_u64()?,
        ticks: v["ticks"].as_u64()?,
        first: v["first"].as_str().map(str::to_owned),
        last: v["last"].as_str().map(str::to_owned),
        torn: v["torn"].as_bool()?,
    })
}

fn store(path: &Path, stamp_before: (u64, i128), info: &FileInfo) {
    // Only if the file did not change while it was counted.
    if self::stamp(path) != Some(stamp_before) {
        return;
    }
    let text = json!({
        "version": 1,
        "bytes": stamp_before.0,
        "mtime_ns": stamp_before.1.to_string(),
        "lines": info.lines,
        "ticks": info.ticks,
        "first": info.first,
        "last": info.last,
        "torn": info.torn,
    })
    .to_string();
    let idx = index_path(path);
    let tmp = idx.with_extension("idx.tmp");
    if std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &idx))
        .is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// One daily file's summary: from its sidecar index when that is current,
/// else counted (and the index written). `recount`: always count, and
/// say whether a current index disagreed (`Err` names the difference).
pub fn file_info_indexed(
    path: &Path,
    recount: bool,
) -> std::io::Result<(FileInfo, Option<String>)> {
    let (name, date) = name_and_date(path)?;
    let index = cached(path, &name, date);
    if let (Some(i), false) = (&index, recount) {
        return Ok((i.clone(), None));
    }
    let before = stamp(path);
    let info = file_info(path)?;
    let disagreement = index.filter(|i| *i != info).map(|i| {
        format!(
            "{}: the index said {} lines / {} ticks, the file has {} / {}",
            name, i.lines, i.ticks, info.lines, info.ticks
        )
    });
    if let Some(b) = before {
        store(path, b, &info);
    }
    Ok((info, disagreement))
}

/// Reads one daily file's summary (mapped; counts newlines).
pub fn file_info(path: &Path) -> std::io::Result<FileInfo> {
    let (name, date) = name_and_date(path)?;
    if crate::zst::is_zst(path) {
        return zst_info(path, name, date);
    }
    let file = std::fs::File::open(path)?;
    let bytes = file.metadata()?.len();
    if bytes == 0 {
        return Ok(FileInfo {
            name,
            date,
            bytes,
            lines: 0,
            ticks: 0,
            first: None,
            last: None,
            torn: false,
        });
    }
    // SAFETY: read-only map; see `analysis::scan`.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let b: &[u8] = &map;
    let newlines = b.iter().filter(|&&c| c == b'\n').count() as u64;
    let torn = b.last() != Some(&b'\n');
    let first_line = b.split(|&c| c == b'\n').next().unwrap_or(&[]);
    let body = if torn { b } else { &b[..b.len() - 1] };
    let start = match (torn, body.iter().rposition(|&c| c == b'\n')) {
        // the last complete line of a torn file
        (true, Some(i)) => body[..i]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |j| j + 1),
        (true, None) => 0,
        (false, Some(i)) => i + 1,
        (false, None) => 0,
    };
    let last_line = body[start..].split(|&c| c == b'\n').next().unwrap_or(&[]);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (count, _) = super::scan::scan(path, threads, false, Count::default)?;
    Ok(FileInfo {
        name,
        date,
        bytes,
        lines: newlines + u64::from(torn),
        ticks: count.good,
        first: timestamp_of(first_line),
        last: timestamp_of(last_line),
        torn,
    })
}

/// Every daily file in `dir`, oldest first, and the entries named like one
/// that are not regular files (skipped: a directory, a FIFO), with why.
/// Summaries come from the sidecar indexes where current.
pub fn list(dir: &Path) -> std::io::Result<(Vec<FileInfo>, Vec<String>)> {
    list_with(dir, false).map(|(f, s, _)| (f, s))
}

/// [`list`]; with `recount`, every file counted again and each index that
/// disagreed named.
pub fn list_with(
    dir: &Path,
    recount: bool,
) -> std::io::Result<(Vec<FileInfo>, Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut wrong = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if date_of_name(&name).is_none() {
            continue;
        }
        match crate::util::regular_file(&e.path())
            .and_then(|()| file_info_indexed(&e.path(), recount))
        {
            Ok((f, w)) => {
                out.push(f);
                wrong.extend(w);
            }
            Err(err) => skipped.push(err.to_string()),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, skipped, wrong))
}

/// The JSON summary.
pub fn to_json(dir: &Path, files: &[FileInfo], today: LocalDate) -> Value {
    json!({
        "data_dir": dir.display().to_string(),
        "today": today.to_string(),
        "files": files.iter().map(|f| json!({
            "name": f.name, "date": f.date.to_string(), "bytes": f.bytes, "ticks": f.ticks, "lines": f.lines,
            "first_timestamp": f.first, "last_timestamp": f.last, "torn_last_line": f.torn, "today": f.date == today,
        })).collect::<Vec<_>>(),
        "total_files": files.len(),
        "total_bytes": files.iter().map(|f| f.bytes).sum::<u64>(),
        "total_ticks": files.iter().map(|f| f.ticks).sum::<u64>(),
    })
}
