//! The daily files as a journal: complete lines in order, each with its
//! position (day, segment, byte offset in the segment's uncompressed
//! bytes), across days and segments, plain or `.jsonl.zst` alike
//! ([`crate::days`] names and orders them). Reads what the writer has
//! written so far and picks up more as it grows; holds one chunk (or one
//! zstd frame) in memory.
//!
//! Because a position counts uncompressed bytes, it survives the
//! compression of its segment: a journal whose plain file was compressed
//! under it goes on reading the open (unlinked) plain file, and a journal
//! started at a position in a segment that is now `.zst` skips to it by
//! frame headers, without decompressing what comes before.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::days::{Segment, SegmentId};
use crate::time::LocalDate;

/// A line's place in the journal: its day, its segment within the day and
/// the byte offset of its first byte in that segment's uncompressed bytes.
/// Ordered by day, segment, offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// The day.
    pub day: LocalDate,
    /// The segment (0 for `market_data_D.jsonl[.zst]`).
    pub segment: u32,
    /// Byte offset.
    pub offset: u64,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.segment_id(), self.offset)
    }
}

impl Pos {
    /// The start of a day's first segment.
    pub fn day_start(day: LocalDate) -> Pos {
        Pos {
            day,
            segment: 0,
            offset: 0,
        }
    }

    /// The segment it points into.
    pub fn segment_id(&self) -> SegmentId {
        SegmentId {
            day: self.day,
            index: self.segment,
        }
    }

    /// Parses `YYYY-MM-DD[.N]:offset` (the record header and the
    /// checkpoint; positions written before segments have no `.N`).
    pub fn parse(text: &str) -> Option<Pos> {
        let (d, o) = text.trim().split_once(':')?;
        let id = SegmentId::parse(d)?;
        Some(Pos {
            day: id.day,
            segment: id.index,
            offset: o.parse().ok()?,
        })
    }
}

/// The daily segments of `dir`, oldest first (see [`crate::days::segments`]).
pub fn days(dir: &Path) -> Vec<Segment> {
    crate::days::segments(dir)
}

/// The daily segments of one family of `dir`, oldest first.
pub fn days_in(dir: &Path, family: crate::days::Family) -> Vec<Segment> {
    crate::days::segments_in(dir, family)
}

/// The segment being read.
struct Cur {
    id: SegmentId,
    zst: bool,
    file: File,
}

/// Reads lines from a position on.
pub struct Journal {
    dir: PathBuf,
    /// Which daily files (the ticks, or the order updates).
    family: crate::days::Family,
    cur: Option<Cur>,
    /// Uncompressed offset of the next byte to hand out.
    offset: u64,
    /// Plain: file offset of the end of `buf`; zst: compressed offset of the next frame.
    file_pos: u64,
    /// Bytes read but not yet handed out (whole lines only are handed out).
    buf: Vec<u8>,
    start: usize,
    /// Reused read buffer.
    chunk: Vec<u8>,
    /// Segments found shorter than the position (a torn tail cut back).
    pub reseeks: u64,
}

impl Journal {
    /// A journal over `dir`'s tick files, positioned at `from` (the first
    /// line at or after it).
    pub fn new(dir: &Path, from: Pos) -> Journal {
        Journal::of(dir, crate::days::Family::Ticks, from)
    }

    /// A journal over `dir`'s daily files of `family`, positioned at `from`.
    pub fn of(dir: &Path, family: crate::days::Family, from: Pos) -> Journal {
        let mut j = Journal {
            dir: dir.to_owned(),
            family,
            cur: None,
            offset: 0,
            file_pos: 0,
            buf: Vec::new(),
            start: 0,
            chunk: Vec::new(),
            reseeks: 0,
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
        let want = from.segment_id();
        let Some(seg) = days_in(&self.dir, self.family)
            .into_iter()
            .find(|s| s.id >= want)
        else {
            return;
        };
        let Ok(file) = File::open(&seg.path) else {
            return;
        };
        self.cur = Some(Cur {
            id: seg.id,
            zst: seg.zstd,
            file,
        });
        if seg.id == want {
            if seg.zstd {
                self.skip_zst_to(from.offset);
            } else {
                self.offset = from.offset;
                self.file_pos = from.offset;
            }
        }
    }

    /// zst: steps over whole frames by their headers (content sizes) to the
    /// one holding `target`, and drops its lines before `target`.
    fn skip_zst_to(&mut self, target: u64) {
        while self.offset < target {
            let Some(cur) = self.cur.as_mut() else {
                return;
            };
            let mut r = BufReader::with_capacity(64 << 10, &cur.file);
            if r.seek(SeekFrom::Start(self.file_pos)).is_err() {
                return;
            }
            match crate::zst::frame_extent(&mut r) {
                Ok(Some(e)) => match e.content {
                    Some(n) if self.offset + n <= target => {
                        self.offset += n;
                        self.file_pos += e.compressed;
                        continue;
                    }
                    _ => {}
                },
                _ => return,
            }
            let Some(frame) = self.next_frame() else {
                return;
            };
            let len = frame.len() as u64;
            if self.offset + len <= target {
                self.offset += len;
                continue;
            }
            self.buf = frame;
            self.start = (target - self.offset) as usize;
            self.offset = target;
            return;
        }
    }

    /// The next complete zstd frame of the current file, decompressed:
    /// exactly its compressed bytes are read (its extent comes from its
    /// headers).
    fn next_frame(&mut self) -> Option<Vec<u8>> {
        let cur = self.cur.as_mut()?;
        let extent = {
            let mut r = BufReader::with_capacity(16 << 10, &cur.file);
            r.seek(SeekFrom::Start(self.file_pos)).ok()?;
            crate::zst::frame_extent(&mut r).ok()??
        };
        let n = usize::try_from(extent.compressed).ok()?;
        self.chunk.resize(n, 0);
        cur.file.seek(SeekFrom::Start(self.file_pos)).ok()?;
        cur.file.read_exact(&mut self.chunk).ok()?;
        let mut out = Vec::new();
        if !extent.skippable {
            crate::zst::decompress_frame(&self.chunk, &mut out).ok()?;
        }
        self.file_pos += extent.compressed;
        Some(out)
    }

    /// Reads more of the current segment; false when nothing new is there.
    fn fill(&mut self) -> bool {
        let Some(cur) = &self.cur else {
            return false;
        };
        if cur.zst {
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
            let Some(cur) = self.cur.as_mut() else {
                return false;
            };
            // Cut back below what was read (a torn tail repaired at the
            // writer's open): the partial line held is not a line; read
            // again from the start of it.
            if cur.file.metadata().is_ok_and(|m| m.len() < self.file_pos) {
                self.reseeks += 1;
                tracing::warn!(
                    "journal: segment {} was cut back below the position read; rereading from {}",
                    cur.id,
                    self.offset
                );
                self.buf.clear();
                self.start = 0;
                self.file_pos = self.offset;
            }
            self.buf.drain(..self.start);
            self.start = 0;
            self.chunk.resize(1 << 20, 0);
            if cur.file.seek(SeekFrom::Start(self.file_pos)).is_err() {
                return false;
            }
            match cur.file.read(&mut self.chunk) {
                Ok(0) | Err(_) => false,
                Ok(n) => {
                    self.buf.extend_from_slice(&self.chunk[..n]);
                    self.file_pos += n as u64;
                    true
                }
            }
        }
    }

    /// The segment after the current one, if there is one (the current one
    /// is then sealed: the writer appends only to the last).
    fn next_segment(&self) -> Option<Segment> {
        let all = days_in(&self.dir, self.family);
        match &self.cur {
            None => all.into_iter().next(),
            Some(c) => all.into_iter().find(|s| s.id > c.id),
        }
    }

    /// The next complete line (without its `\n`) and its position, or
    /// `None` when the journal has nothing more yet.
    pub fn next_line(&mut self) -> Option<(Pos, &[u8])> {
        loop {
            let rest = &self.buf[self.start..];
            if let Some(i) = rest.iter().position(|&b| b == b'\n') {
                let id = self.cur.as_ref()?.id;
                let pos = Pos {
                    day: id.day,
                    segment: id.index,
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
            let next = self.next_segment()?;
            // The next segment exists, so the writer finished this one
            // before creating it: whatever it wrote last is there now.
            if self.fill() {
                continue;
            }
            let pos = Pos {
                day: next.id.day,
                segment: next.id.index,
                offset: 0,
            };
            self.seek(pos);
            self.cur.as_ref()?;
        }
    }

    /// Where the next line will come from.
    pub fn position(&self) -> Option<Pos> {
        self.cur.as_ref().map(|c| Pos {
            day: c.id.day,
            segment: c.id.index,
            offset: self.offset,
        })
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
        let mut j = Journal::new(dir.path(), Pos::day_start(d("2026-11-24")));
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

    /// A mixed day: the morning plain, then (capture switched to zstd and
    /// restarted) the afternoon as segment 1; the morning is compressed
    /// while the journal reads it; a restart at a morning position skips
    /// into the `.zst` by headers. Every line once, in order.
    #[test]
    fn a_mixed_day_is_read_across_segments_and_a_compression_under_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let morning: String = (0..3000).map(|i| format!("m{i}\n")).collect();
        let plain = dir.path().join("market_data_2026-11-25.jsonl");
        std::fs::write(&plain, &morning).unwrap();
        let mut j = Journal::new(dir.path(), Pos::day_start(d("2026-11-25")));
        let mut got = Vec::new();
        for _ in 0..1000 {
            let (_, l) = j.next_line().unwrap();
            got.push(String::from_utf8_lossy(l).into_owned());
        }
        let resume = j.position().unwrap();
        // The writer restarts with zstd: segment 1; the morning is compressed.
        let mut w = crate::zst::FrameWriter::new(1).unwrap();
        let afternoon: String = (0..500).map(|i| format!("a{i}\n")).collect();
        std::fs::write(
            dir.path().join("market_data_2026-11-25.1.jsonl.zst"),
            w.frame(afternoon.as_bytes()).unwrap(),
        )
        .unwrap();
        crate::zst::compress_file(&plain, 3, false).unwrap();
        while let Some((_, l)) = j.next_line() {
            got.push(String::from_utf8_lossy(l).into_owned());
        }
        let want: Vec<String> = morning
            .lines()
            .chain(afternoon.lines())
            .map(str::to_owned)
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            j.position().unwrap().to_string(),
            format!("2026-11-25.1:{}", afternoon.len())
        );
        // A restart at the morning position reads the compressed morning.
        let mut k = Journal::new(dir.path(), resume);
        let (p, l) = k.next_line().unwrap();
        assert_eq!((p, l), (resume, b"m1000".as_slice()));
        assert_eq!(Pos::parse(&p.to_string()), Some(p));
        let rest = std::iter::from_fn(|| k.next_line().map(|(_, l)| l.to_vec())).count();
        assert_eq!(rest, 1999 + 500);
    }

    #[test]
    fn a_torn_tail_cut_back_under_the_reader_is_never_handed_out_glued() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("market_data_2026-11-25.jsonl");
        std::fs::write(&p, "a\nbb\ntorn-by-a-cra").unwrap();
        let mut j = Journal::new(dir.path(), Pos::day_start(d("2026-11-25")));
        assert_eq!(j.next_line().map(|(_, l)| l.to_vec()), Some(b"a".to_vec()));
        assert_eq!(j.next_line().map(|(_, l)| l.to_vec()), Some(b"bb".to_vec()));
        assert!(j.next_line().is_none());
        // The writer repairs (cuts the torn bytes) and appends new lines.
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(5).unwrap();
        drop(f);
        assert!(j.next_line().is_none());
        std::fs::write(&p, "a\nbb\nnew\n").unwrap();
        assert_eq!(
            j.next_line().map(|(_, l)| l.to_vec()),
            Some(b"new".to_vec())
        );
        assert_eq!(j.reseeks, 1);
    }
}
