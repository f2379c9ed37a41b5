//! The daily files as a journal: complete lines in order, each with its
//! position (`day`, byte offset in the day's uncompressed stream), across
//! days, plain or `.jsonl.zst` alike. Reads what the writer has written so
//! far and picks up more as it grows; never holds more than one chunk (or
//! one zstd frame) in memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::time::LocalDate;

/// A line's place in the journal: its day and the byte offset of its first
/// byte in that day's (uncompressed) stream. Ordered by day, then offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// The day.
    pub day: LocalDate,
    /// Byte offset.
    pub offset: u64,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.day, self.offset)
    }
}

impl Pos {
    /// Parses `YYYY-MM-DD:offset` (the record header and the checkpoint).
    pub fn parse(text: &str) -> Option<Pos> {
        let (d, o) = text.trim().split_once(':')?;
        Some(Pos {
            day: LocalDate::parse(d)?,
            offset: o.parse().ok()?,
        })
    }
}

fn day_of(name: &str) -> Option<(LocalDate, bool)> {
    let rest = name.strip_prefix("market_data_")?;
    if let Some(d) = rest.strip_suffix(".jsonl") {
        return Some((LocalDate::parse(d)?, false));
    }
    Some((LocalDate::parse(rest.strip_suffix(".jsonl.zst")?)?, true))
}

/// The daily files of `dir`, oldest first (a day's `.zst` after its plain file).
pub fn days(dir: &Path) -> Vec<(LocalDate, bool, PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let (d, z) = day_of(&e.file_name().to_string_lossy())?;
                    Some((d, z, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Reads lines from a position on.
pub struct Journal {
    dir: PathBuf,
    /// The day being read and its file.
    cur: Option<(LocalDate, bool, PathBuf, File)>,
    /// Uncompressed offset of the next byte to hand out.
    offset: u64,
    /// Plain: file offset of `buf[0]`; zst: compressed offset of the next frame.
    file_pos: u64,
    /// Bytes read but not yet handed out (whole lines only are handed out).
    buf: Vec<u8>,
    start: usize,
}

impl Journal {
    /// A journal over `dir`, positioned at `from` (the first line at or after it).
    pub fn new(dir: &Path, from: Pos) -> Journal {
        let mut j = Journal {
            dir: dir.to_owned(),
            cur: None,
            offset: 0,
            file_pos: 0,
            buf: Vec::new(),
            start: 0,
        };
        j.seek(from);
        j
    }

    /// Repositions at `from`.
    pub fn seek(&mut self, from: Pos) {
        self.cur = None;
        self.buf.clear();
        self.start = 0;
        self.offset = 0;
        self.file_pos = 0;
        let Some((day, zst, path)) = days(&self.dir).into_iter().find(|(d, _, _)| *d >= from.day)
        else {
            return;
        };
        let Ok(file) = File::open(&path) else {
            return;
        };
        self.cur = Some((day, zst, path, file));
        if day == from.day {
            if zst {
                self.skip_zst_to(from.offset);
            } else {
                self.offset = from.offset;
                self.file_pos = from.offset;
            }
        }
    }

    /// zst: walks frames by header to the one holding `target`, and drops
    /// its lines before `target`.
    fn skip_zst_to(&mut self, target: u64) {
        while self.offset < target {
            let Some(frame) = self.next_frame() else {
                return;
            };
            let len = frame.len() as u64;
            if self.offset + len <= target {
                self.offset += len;
                continue;
            }
            let cut = (target - self.offset) as usize;
            self.buf = frame;
            self.start = cut;
            self.offset = target;
            return;
        }
    }

    /// The next complete zstd frame of the current file, decompressed.
    fn next_frame(&mut self) -> Option<Vec<u8>> {
        let (_, _, _, file) = self.cur.as_mut()?;
        let len = file.metadata().ok()?.len();
        if self.file_pos >= len {
            return None;
        }
        // A frame is one write of the writer: a few MB at most.
        let want = (len - self.file_pos).min(64 << 20) as usize;
        let mut raw = vec![0u8; want];
        file.seek(SeekFrom::Start(self.file_pos)).ok()?;
        file.read_exact(&mut raw).ok()?;
        let n = zstd::zstd_safe::find_frame_compressed_size(&raw).ok()?;
        if n == 0 || n > raw.len() {
            return None; // still being written
        }
        let mut out = Vec::new();
        crate::zst::decompress_frame(&raw[..n], &mut out).ok()?;
        self.file_pos += n as u64;
        Some(out)
    }

    /// Reads more of the current day; false when nothing new is there.
    fn fill(&mut self) -> bool {
        let Some((_, zst, _, _)) = &self.cur else {
            return false;
        };
        if *zst {
            if self.start < self.buf.len() {
                return false;
            }
            match self.next_frame() {
                Some(f) => {
                    self.buf = f;
                    self.start = 0;
                    true
                }
                None => false,
            }
        } else {
            let Some((_, _, _, file)) = self.cur.as_mut() else {
                return false;
            };
            self.buf.drain(..self.start);
            self.start = 0;
            let mut chunk = vec![0u8; 1 << 20];
            if file.seek(SeekFrom::Start(self.file_pos)).is_err() {
                return false;
            }
            match file.read(&mut chunk) {
                Ok(0) | Err(_) => false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.file_pos += n as u64;
                    true
                }
            }
        }
    }

    /// Moves to the next day's file if there is one (the current day is
    /// then closed: the writer has rotated).
    fn next_day(&mut self) -> bool {
        let Some((day, zst, _, _)) = &self.cur else {
            let all = days(&self.dir);
            if let Some((d, _, _)) = all.first() {
                self.seek(Pos { day: *d, offset: 0 });
                return self.cur.is_some();
            }
            return false;
        };
        let (day, zst) = (*day, *zst);
        let next = days(&self.dir)
            .into_iter()
            .find(|(d, z, _)| *d > day || (*d == day && *z && !zst));
        match next {
            Some((d, _, _)) if d > day => {
                self.seek(Pos { day: d, offset: 0 });
                true
            }
            _ => false,
        }
    }

    /// The next complete line (without its `\n`) and its position, or
    /// `None` when the journal has nothing more yet.
    pub fn next_line(&mut self) -> Option<(Pos, &[u8])> {
        loop {
            let rest = &self.buf[self.start..];
            if let Some(i) = rest.iter().position(|&b| b == b'\n') {
                let day = self.cur.as_ref()?.0;
                let pos = Pos {
                    day,
                    offset: self.offset,
                };
                let s = self.start;
                self.start += i + 1;
                self.offset += i as u64 + 1;
                return Some((pos, &self.buf[s..s + i]));
            }
            if self.fill() {
                continue;
            }
            if !self.next_day() {
                return None;
            }
        }
    }

    /// Where the next line will come from.
    pub fn position(&self) -> Option<Pos> {
        self.cur.as_ref().map(|(day, ..)| Pos {
            day: *day,
            offset: self.offset,
        })
    }

    /// Bytes written to the current day's file and not read yet (lag).
    pub fn unread_bytes(&self) -> u64 {
        match &self.cur {
            Some((_, false, _, f)) => {
                f.metadata()
                    .map_or(0, |m| m.len().saturating_sub(self.file_pos))
                    + (self.buf.len() - self.start) as u64
            }
            Some((_, true, _, f)) => {
                // Compressed bytes, scaled by a typical ratio.
                f.metadata()
                    .map_or(0, |m| m.len().saturating_sub(self.file_pos) * 8)
                    + (self.buf.len() - self.start) as u64
            }
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> LocalDate {
        LocalDate::parse(s).unwrap()
    }

    #[test]
    fn lines_come_in_order_across_days_and_formats_and_resume_at_a_position() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("market_data_2026-11-24.jsonl"), "a\nbb\n").unwrap();
        let mut w = crate::zst::FrameWriter::new(1).unwrap();
        let mut z = w.frame(b"c\nd\n").unwrap().to_vec();
        z.extend_from_slice(w.frame(b"eee\n").unwrap());
        std::fs::write(dir.path().join("market_data_2026-11-25.jsonl.zst"), &z).unwrap();
        // A line still being written (no newline) is not handed out.
        std::fs::write(dir.path().join("market_data_2026-11-26.jsonl"), "f\ng").unwrap();
        let mut j = Journal::new(
            dir.path(),
            Pos {
                day: d("2026-11-24"),
                offset: 0,
            },
        );
        let mut got = Vec::new();
        while let Some((p, l)) = j.next_line() {
            got.push((p.to_string(), String::from_utf8_lossy(l).into_owned()));
        }
        let want = [
            ("2026-11-24:0", "a"),
            ("2026-11-24:2", "bb"),
            ("2026-11-25:0", "c"),
            ("2026-11-25:2", "d"),
            ("2026-11-25:4", "eee"),
            ("2026-11-26:0", "f"),
        ];
        assert_eq!(got, want.map(|(a, b)| (a.to_owned(), b.to_owned())));
        // The writer finishes the line: it comes next.
        std::fs::write(dir.path().join("market_data_2026-11-26.jsonl"), "f\ng\n").unwrap();
        assert_eq!(
            j.next_line().map(|(p, l)| (p.to_string(), l.to_vec())),
            Some(("2026-11-26:2".into(), b"g".to_vec()))
        );
        // Resume inside a compressed day.
        let mut j = Journal::new(dir.path(), Pos::parse("2026-11-25:4").unwrap());
        assert_eq!(
            j.next_line().map(|(_, l)| l.to_vec()),
            Some(b"eee".to_vec())
        );
        let mut j = Journal::new(dir.path(), Pos::parse("2026-11-25:2").unwrap());
        assert_eq!(j.next_line().map(|(_, l)| l.to_vec()), Some(b"d".to_vec()));
    }
}
