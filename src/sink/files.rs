//! Daily JSONL files: `DATA_DIR/market_data_YYYY-MM-DD.jsonl`, opened for
//! append (a restart never truncates), one open at a time. A day is an
//! ordered sequence of segments ([`crate::days`]); [`DailyFiles`] owns
//! their lifecycle: open the current day's last segment (or start the
//! next), repair, lock, seal on rotation, compress sealed days, retire.
//!
//! When a file is opened, a torn last line (a crash mid-write) is moved to
//! `market_data_YYYY-MM-DD.jsonl.torn-<epoch s>` and the file cut back to its
//! last `\n`, so appending resumes on a line boundary and every line in the
//! file parses. The repair is logged and counted.
//!
//! The writer reaches files through [`DaySink`] so tests can inject failures
//! (a full disk) without a special filesystem.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::days::{Family, SegmentId};
use crate::time::{days_from_civil, LocalDate};

/// Where the writer's bytes go, by day.
pub trait DaySink: Send {
    /// Appends `data` to the file of `date`; returns the bytes accepted.
    fn write(&mut self, date: LocalDate, data: &[u8]) -> io::Result<usize>;
    /// Flushes the current file to stable storage.
    fn sync(&mut self) -> io::Result<()>;
    /// The file written last.
    fn current_path(&self) -> Option<PathBuf>;
    /// Opens (and repairs) the file of `date` now, before any write: the
    /// engine does this at start so that no reader sees a torn tail.
    fn prepare(&mut self, _date: LocalDate) -> io::Result<()> {
        Ok(())
    }
    /// Whether the open file is still the file at its path (not removed or
    /// replaced). If not, it is closed (the next write opens a new
    /// segment) and the reason returned.
    fn verify(&mut self) -> Option<String> {
        None
    }
    /// Cuts the last `bytes` off the open file (a line cut short by a
    /// full disk, at shutdown), so that it ends on a line boundary.
    fn cut_tail(&mut self, _bytes: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this sink cannot cut its tail",
        ))
    }
}

/// The file name of a day's first segment (plain JSONL).
pub fn daily_name(date: LocalDate) -> String {
    daily_name_as(date, false)
}

/// The file name of a day's first segment, compressed or not.
pub fn daily_name_as(date: LocalDate, zstd: bool) -> String {
    SegmentId {
        day: date,
        index: 0,
    }
    .file_name(zstd)
}

/// The date in a daily file's name (`market_data_YYYY-MM-DD[.N].jsonl[.zst]`),
/// or `None` for any other name.
pub fn date_of_name(name: &str) -> Option<LocalDate> {
    crate::days::parse_name(name).map(|(id, _)| id.day)
}

/// Deletes daily files more than `keep_days` days before `today` (only
/// names matching the daily pattern; never `today`'s). `keep_days = 0`
/// keeps everything. Returns the files removed.
pub fn apply_retention(dir: &Path, today: LocalDate, keep_days: u32) -> io::Result<Vec<PathBuf>> {
    apply_retention_in(dir, Family::Ticks, today, keep_days)
}

/// [`apply_retention`] for the daily files of `family`.
pub fn apply_retention_in(
    dir: &Path,
    family: Family,
    today: LocalDate,
    keep_days: u32,
) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    if keep_days == 0 {
        return Ok(removed);
    }
    let cutoff = days_from_civil(today) - i64::from(keep_days);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(date) = name
            .to_str()
            .and_then(crate::days::parse_any_name)
            .filter(|(f, _, _)| *f == family)
            .map(|(_, id, _)| id.day)
        else {
            continue;
        };
        // Only regular files: a directory or FIFO named like a day is not ours.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if date != today && days_from_civil(date) < cutoff {
            std::fs::remove_file(entry.path())?;
            // Its sidecar index (`tickcap storage`), if any, goes with it.
            let mut idx = entry.path().into_os_string();
            idx.push(".idx");
            let _ = std::fs::remove_file(idx);
            tracing::info!(
                "retention: removed {} (older than {keep_days} days)",
                entry.path().display()
            );
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// The segment being appended to.
#[derive(Debug)]
struct Current {
    day: LocalDate,
    seg: SegmentId,
    file: File,
    path: PathBuf,
    /// (device, inode) at open: the file must still be the one at `path`.
    identity: (u64, u64),
}

fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// The real daily files.
#[derive(Debug)]
pub struct DailyFiles {
    dir: PathBuf,
    /// Which daily files (ticks unless [`DailyFiles::for_family`]).
    family: Family,
    current: Option<Current>,
    opened: Arc<AtomicU64>,
    repaired: Arc<AtomicU64>,
    retention_days: u32,
    /// With compression: one zstd frame per write (see `crate::zst`).
    zstd: Option<crate::zst::FrameWriter>,
    /// Plain days are compressed in the background once closed, at this level.
    compress_closed: Option<i32>,
    /// A background compression is running (one at a time).
    compressing: Arc<std::sync::atomic::AtomicBool>,
    /// A segment found replaced: never appended to again.
    abandoned: Option<SegmentId>,
    /// zstd: a frame the disk took only part of, with how much of it is in
    /// the file; the retry of the same write finishes it.
    pending: Option<(usize, Vec<u8>, usize)>,
}

impl DailyFiles {
    /// Files under `dir` (created if missing). `opened` and `repaired` count
    /// opens and torn-tail repairs.
    pub fn new(dir: &Path, opened: Arc<AtomicU64>, repaired: Arc<AtomicU64>) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(DailyFiles {
            dir: dir.to_owned(),
            family: Family::Ticks,
            current: None,
            opened,
            repaired,
            retention_days: 0,
            zstd: None,
            compress_closed: None,
            compressing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            abandoned: None,
            pending: None,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the daily files of `family` (the events journal, the order
    /// updates) under the same lifecycle as the ticks'.
    pub fn for_family(mut self, family: Family) -> Self {
        self.family = family;
        self
    }

    /// Compresses each plain day once it is closed (at rotation, and closed
    /// days found plain at start) on a background thread, atomically.
    pub fn with_closed_day_compression(mut self, level: i32) -> Self {
        self.compress_closed = Some(level);
        self
    }

    /// Plain segments of days before `today` (sealed: the writer never
    /// appends to them again), compressed one after another on a thread of
    /// their own; never two such threads at once.
    fn compress_closed_days(&self, today: LocalDate) {
        let Some(level) = self.compress_closed else {
            return;
        };
        let closed: Vec<PathBuf> = crate::days::segments_in(&self.dir, self.family)
            .into_iter()
            .filter(|s| !s.zstd && !s.also_zstd && s.id.day < today)
            .map(|s| s.path)
            .collect();
        if closed.is_empty() {
            return;
        }
        if self.compressing.swap(true, Ordering::SeqCst) {
            tracing::info!("a compression of closed days is already running; the rest waits for the next rotation");
            return;
        }
        let running = Arc::clone(&self.compressing);
        let spawned = std::thread::Builder::new()
            .name("tickcap-compress".into())
            .spawn(move || {
                let _done = ClearOnDrop(running);
                for p in closed {
                    match crate::zst::compress_file(&p, level, false) {
                        Ok(c) => tracing::info!(
                            "compressed the closed day {} ({} -> {} bytes)",
                            c.path.display(),
                            c.plain,
                            c.compressed
                        ),
                        Err(e) => tracing::warn!(
                            "compressing {} failed (the plain file stays): {e}",
                            p.display()
                        ),
                    }
                }
            });
        if let Err(e) = spawned {
            self.compressing.store(false, Ordering::SeqCst);
            tracing::warn!("cannot start the compression thread: {e}");
        }
    }

    /// Writes `market_data_DAY.jsonl.zst` at `level`, a frame per write.
    pub fn with_zstd(mut self, level: i32) -> io::Result<Self> {
        self.zstd = Some(crate::zst::FrameWriter::new(level)?);
        Ok(self)
    }

    /// Deletes daily files older than `days` whenever a day's file is opened
    /// (at start and after each rotation). 0 keeps everything.
    pub fn with_retention(mut self, days: u32) -> Self {
        self.retention_days = days;
        self
    }

    /// The segment to append to on `date`: the day's last one when its
    /// encoding is the capture's (and no compressed copy of it exists),
    /// else the next one.
    fn segment_for(&self, date: LocalDate) -> SegmentId {
        let want_zstd = self.zstd.is_some();
        match crate::days::segments_of_in(&self.dir, self.family, date).last() {
            Some(last)
                if last.zstd == want_zstd && !last.also_zstd && Some(last.id) != self.abandoned =>
            {
                last.id
            }
            Some(last) => SegmentId {
                day: date,
                index: last.id.index + 1,
            },
            None => SegmentId {
                day: date,
                index: 0,
            },
        }
    }

    fn open(&mut self, date: LocalDate) -> io::Result<&mut File> {
        if self.current.as_ref().is_none_or(|c| c.day != date) {
            if let Some(mut c) = self.current.take() {
                // Sealed: never written again.
                c.file.flush()?;
                if let Err(e) = c.file.sync_data() {
                    tracing::warn!("fsync of {} on rotation failed: {e}", c.path.display());
                }
            }
            let seg = self.segment_for(date);
            let path = self
                .dir
                .join(seg.file_name_in(self.family, self.zstd.is_some()));
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)?;
            if !crate::days::try_lock(&file)? {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "{} is locked by another process (a second tickcap on this data_dir, or a compression of it)",
                        path.display()
                    ),
                ));
            }
            let repaired = if self.zstd.is_some() {
                repair_torn_frame(&mut file, &path)?
            } else {
                repair_torn_tail(&mut file, &path)?
            };
            if repaired {
                self.repaired.fetch_add(1, Ordering::Relaxed);
            }
            self.opened.fetch_add(1, Ordering::Relaxed);
            tracing::info!("writing {}", path.display());
            if let Err(e) = apply_retention_in(&self.dir, self.family, date, self.retention_days) {
                tracing::warn!("retention in {} failed: {e}", self.dir.display());
            }
            self.compress_closed_days(date);
            let identity = identity(&file.metadata()?);
            self.current = Some(Current {
                day: date,
                seg,
                file,
                path,
                identity,
            });
        }
        match &mut self.current {
            Some(c) => Ok(&mut c.file),
            None => Err(io::Error::other("no current file")),
        }
    }
}

/// Clears a flag when dropped (also when the thread holding it panics).
struct ClearOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl DaySink for DailyFiles {
    fn write(&mut self, date: LocalDate, data: &[u8]) -> io::Result<usize> {
        if self.zstd.is_none() {
            return self.open(date)?.write(data);
        }
        // All or nothing: the whole write becomes one frame, accepted only
        // when all of it is in the file. A frame the disk took part of (a
        // full disk) stays, and the writer's retry of the same bytes
        // finishes that very frame: the file only ever grows, so a reader
        // that mapped it never loses pages under it (no SIGBUS).
        let current = self.current.as_ref().map(|c| c.day);
        self.open(date)?;
        if current != Some(date) {
            // A new file: a frame left unfinished in the old one stays torn
            // there (its lines are retried here, or saved at shutdown).
            self.pending = None;
        }
        let (Some(z), Some(Current { file, .. })) = (&mut self.zstd, &mut self.current) else {
            return Err(io::Error::other("no current file"));
        };
        let (frame, mut done): (std::borrow::Cow<'_, [u8]>, usize) = match self.pending.take() {
            Some((len, frame, done)) if len == data.len() => (frame.into(), done),
            _ => (z.frame(data)?.into(), 0),
        };
        while done < frame.len() {
            match file.write(&frame[done..]) {
                Ok(0) => {
                    self.pending = Some((data.len(), frame.into_owned(), done));
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if done > 0 {
                        self.pending = Some((data.len(), frame.into_owned(), done));
                    }
                    return Err(e);
                }
            }
        }
        Ok(data.len())
    }

    fn sync(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some(c) => c.file.sync_data(),
            None => Ok(()),
        }
    }

    fn current_path(&self) -> Option<PathBuf> {
        self.current.as_ref().map(|c| c.path.clone())
    }

    fn prepare(&mut self, date: LocalDate) -> io::Result<()> {
        self.open(date).map(|_| ())
    }

    fn cut_tail(&mut self, bytes: u64) -> io::Result<()> {
        if self.zstd.is_some() {
            // Frames are all or nothing: a zstd segment never ends mid-line.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a zstd segment has no partial line",
            ));
        }
        let Some(c) = &mut self.current else {
            return Err(io::Error::other("no open file"));
        };
        let len = c.file.metadata()?.len();
        c.file.set_len(len.saturating_sub(bytes))?;
        c.file.sync_data()
    }

    fn verify(&mut self) -> Option<String> {
        let c = self.current.as_ref()?;
        let why = match std::fs::metadata(&c.path) {
            Ok(m) if identity(&m) == c.identity => return None,
            Ok(_) => format!("{} was replaced by another file", c.path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                format!("{} was removed", c.path.display())
            }
            // Cannot tell (e.g. permissions): keep writing.
            Err(_) => return None,
        };
        // Lines written to the old inode since the last check are in that
        // file (or gone with it); the next write opens a new segment.
        self.abandoned = Some(c.seg);
        self.current = None;
        Some(why)
    }
}

/// If `file` does not end in `\n`, moves the bytes after its last `\n` into
/// a `.torn-<epoch>` file beside it and truncates. Returns whether it did.
pub fn repair_torn_tail(file: &mut File, path: &Path) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(false);
    }
    // Find the last newline, scanning back in blocks.
    let mut end = len;
    let mut cut = 0u64;
    let mut block = vec![0u8; 64 * 1024];
    'scan: while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
            cut = start + i as u64 + 1;
            break 'scan;
        }
        end = start;
    }
    let mut tail = Vec::with_capacity((len - cut) as usize);
    file.seek(SeekFrom::Start(cut))?;
    file.read_to_end(&mut tail)?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = PathBuf::from(format!("{}.torn-{secs}", path.display()));
    std::fs::write(&aside, &tail)?;
    file.set_len(cut)?;
    file.sync_data()?;
    tracing::warn!(
        "{}: torn last line ({} bytes) from an earlier crash moved to {}; appending resumes at byte {cut}",
        path.display(),
        tail.len(),
        aside.display()
    );
    Ok(true)
}

/// A `.jsonl.zst` file: if its last frame is incomplete or fails to decode
/// (a crash mid-write), moves the bytes from that frame on into a
/// `.torn-<epoch>` file beside it and truncates. Complete frames are found
/// by their headers; only the last one is decompressed to check it.
pub fn repair_torn_frame(file: &mut File, path: &Path) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    // SAFETY: read-only map of the file this writer alone appends to; it
    // is dropped before the file is changed.
    let map = unsafe { memmap2::Mmap::map(&*file)? };
    let f = crate::zst::frames(&map);
    let mut cut = f.torn_at;
    if cut.is_none() {
        if let Some(last) = f.frames.last() {
            let mut out = Vec::new();
            if crate::zst::decompress_frame(&map[last.clone()], &mut out).is_err() {
                cut = Some(last.start);
            }
        }
    }
    let Some(cut) = cut else {
        return Ok(false);
    };
    let tail = map[cut..].to_vec();
    drop(map);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = PathBuf::from(format!("{}.torn-{secs}", path.display()));
    std::fs::write(&aside, &tail)?;
    file.set_len(cut as u64)?;
    file.sync_data()?;
    tracing::warn!(
        "{}: torn last zstd frame ({} bytes) from an earlier crash moved to {}; appending resumes at byte {cut}",
        path.display(),
        tail.len(),
        aside.display()
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(d: u8) -> LocalDate {
        LocalDate {
            year: 2026,
            month: 11,
            day: d,
        }
    }

    #[test]
    fn appends_never_truncate_and_days_get_their_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let counters = || Arc::new(AtomicU64::new(0));
        let mut f = DailyFiles::new(dir.path(), counters(), counters()).unwrap();
        f.write(date(24), b"a\n").unwrap();
        f.write(date(25), b"b\n").unwrap();
        drop(f);
        let mut f = DailyFiles::new(dir.path(), counters(), counters()).unwrap();
        f.write(date(25), b"c\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("market_data_2026-11-24.jsonl")).unwrap(),
            "a\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("market_data_2026-11-25.jsonl")).unwrap(),
            "b\nc\n"
        );
        assert!(f
            .current_path()
            .unwrap()
            .ends_with("market_data_2026-11-25.jsonl"));
    }

    #[test]
    fn a_torn_last_line_is_moved_aside_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("market_data_2026-11-25.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let repaired = Arc::new(AtomicU64::new(0));
        let mut f = DailyFiles::new(
            dir.path(),
            Arc::new(AtomicU64::new(0)),
            Arc::clone(&repaired),
        )
        .unwrap();
        f.write(date(25), b"{\"a\":3}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
        assert_eq!(repaired.load(Ordering::Relaxed), 1);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".torn-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&aside[0])).unwrap(),
            "{\"a\":"
        );
    }

    #[test]
    fn zstd_days_are_frames_and_a_torn_frame_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let counters = || Arc::new(AtomicU64::new(0));
        let mut f = DailyFiles::new(dir.path(), counters(), counters())
            .unwrap()
            .with_zstd(3)
            .unwrap();
        f.write(date(25), b"{\"a\":1}\n").unwrap();
        f.write(date(25), b"{\"a\":2}\n").unwrap();
        drop(f);
        let path = dir.path().join("market_data_2026-11-25.jsonl.zst");
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(crate::zst::frames(&bytes).frames.len(), 2);
        // A crash mid-frame: half a third frame.
        let mut w = crate::zst::FrameWriter::new(3).unwrap();
        let third = w.frame(b"{\"a\":3}\n").unwrap().to_vec();
        bytes.extend_from_slice(&third[..third.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();
        let repaired = counters();
        let mut f = DailyFiles::new(dir.path(), counters(), Arc::clone(&repaired))
            .unwrap()
            .with_zstd(3)
            .unwrap();
        f.write(date(25), b"{\"a\":4}\n").unwrap();
        drop(f);
        assert_eq!(repaired.load(Ordering::Relaxed), 1);
        let all = zstd::decode_all(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(all, b"{\"a\":1}\n{\"a\":2}\n{\"a\":4}\n");
        assert_eq!(
            date_of_name("market_data_2026-11-25.jsonl.zst"),
            Some(date(25))
        );
    }

    #[test]
    fn zstd_rotates_by_day_and_a_full_disk_is_an_error_not_a_partial_frame() {
        let dir = tempfile::tempdir().unwrap();
        let counters = || Arc::new(AtomicU64::new(0));
        let mut f = DailyFiles::new(dir.path(), counters(), counters())
            .unwrap()
            .with_zstd(1)
            .unwrap();
        f.write(date(24), b"x\n").unwrap();
        f.write(date(25), b"y\n").unwrap();
        for (d, text) in [(24, "x\n"), (25, "y\n")] {
            let p = dir
                .path()
                .join(format!("market_data_2026-11-{d}.jsonl.zst"));
            assert_eq!(
                zstd::decode_all(File::open(p).unwrap()).unwrap(),
                text.as_bytes()
            );
        }
        // A day whose file is /dev/full: every write fails with ENOSPC.
        #[cfg(target_os = "linux")]
        {
            std::os::unix::fs::symlink(
                "/dev/full",
                dir.path().join("market_data_2026-11-26.jsonl.zst"),
            )
            .unwrap();
            let e = f.write(date(26), b"z\n").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(28), "{e}");
        }
    }

    #[test]
    fn closed_plain_days_are_compressed_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let counters = || Arc::new(AtomicU64::new(0));
        let mut f = DailyFiles::new(dir.path(), counters(), counters())
            .unwrap()
            .with_closed_day_compression(1);
        f.write(date(24), b"a\n").unwrap();
        f.write(date(25), b"b\n").unwrap(); // rotation closes the 24th
        let zst = dir.path().join("market_data_2026-11-24.jsonl.zst");
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let plain = dir.path().join("market_data_2026-11-24.jsonl");
        while (!zst.exists() || plain.exists()) && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(zstd::decode_all(File::open(&zst).unwrap()).unwrap(), b"a\n");
        assert!(!dir.path().join("market_data_2026-11-24.jsonl").exists());
        assert!(
            dir.path().join("market_data_2026-11-25.jsonl").exists(),
            "today stays plain"
        );
    }

    #[test]
    fn retention_removes_only_old_daily_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "market_data_2026-10-01.jsonl",
            "market_data_2026-11-20.jsonl",
            "market_data_2026-11-25.jsonl",
            "market_data_2026-01-01.jsonl.torn-5",
            "notes.jsonl",
            "market_data_2026-13-01.jsonl",
        ] {
            std::fs::write(dir.path().join(name), "x\n").unwrap();
        }
        let removed = apply_retention(dir.path(), date(25), 30).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(removed[0].ends_with("market_data_2026-10-01.jsonl"));
        assert!(dir.path().join("market_data_2026-11-20.jsonl").exists());
        assert!(dir.path().join("notes.jsonl").exists());
        assert!(apply_retention(dir.path(), date(25), 0).unwrap().is_empty());
        // keep 1 day: yesterday's stays, older goes; today's is never removed
        let removed = apply_retention(dir.path(), date(25), 1).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(dir.path().join("market_data_2026-11-25.jsonl").exists());
    }

    #[test]
    fn civil_days_round_trip() {
        assert_eq!(
            days_from_civil(LocalDate {
                year: 1970,
                month: 1,
                day: 1
            }),
            0
        );
        assert_eq!(
            days_from_civil(LocalDate {
                year: 2024,
                month: 2,
                day: 29
            }),
            19_782
        );
        assert_eq!(date_of_name("market_data_2026-11-25.jsonl"), Some(date(25)));
        assert_eq!(date_of_name("market_data_2026-11-25.jsonl.torn-1"), None);
    }

    #[test]
    fn a_file_that_is_one_torn_line_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, "no newline at all").unwrap();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        assert!(repair_torn_tail(&mut file, &path).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
