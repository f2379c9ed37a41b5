//! Compressed captures: `market_data_YYYY-MM-DD.jsonl.zst` is a sequence of
//! independent zstd frames, one per write of the writer (so one per flush:
//! whole lines, at most `flush_interval_ms` of ticks). Why a frame per
//! write: a crash can then only tear the frame being written, every
//! complete frame decodes on its own (`zstd -d`, Python's `zstandard`,
//! pandas), and readers decompress frames in parallel. Frames carry their
//! content size and a checksum, so a torn or corrupt last frame is found at
//! open and moved aside, as a torn line is for plain files.
//!
//! Pure functions over bytes, plus the frame writer the sink uses.

use std::ops::Range;

/// The name ends in `.zst`.
pub fn is_zst(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "zst")
}

/// A file's frames: the byte range of each complete frame, in order, and
/// the offset where an incomplete or corrupt tail starts (if any).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frames {
    /// Complete frames.
    pub frames: Vec<Range<usize>>,
    /// Where the bytes that are not a complete frame start.
    pub torn_at: Option<usize>,
    /// Corrupt stretches inside the file, skipped: reading went on at the
    /// next whole frame ([`frames_of_map`] only).
    pub corrupt: Vec<Range<usize>>,
}

/// Whether a frame (or a skippable frame) starts at `bytes[0]`.
fn frame_starts(bytes: &[u8]) -> bool {
    match bytes {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => true,
        [m, 0x2a, 0x4d, 0x18, ..] => m & 0xf0 == 0x50,
        _ => false,
    }
}

/// The whole frame at `bytes[at..]`, if one is there and is followed by the
/// end or by another frame (a frame cut short in the middle of a file
/// would otherwise swallow the start of the next).
fn whole_frame_at(bytes: &[u8], at: usize) -> Option<usize> {
    match zstd::zstd_safe::find_frame_compressed_size(&bytes[at..]) {
        Ok(n) if n > 0 && at + n <= bytes.len() => {
            let end = at + n;
            (end == bytes.len() || frame_starts(&bytes[end..])).then_some(n)
        }
        _ => None,
    }
}

/// Walks the frames of `bytes` by their headers (no decompression).
pub fn frames(bytes: &[u8]) -> Frames {
    let mut out = Frames::default();
    let mut at = 0;
    while at < bytes.len() {
        match zstd::zstd_safe::find_frame_compressed_size(&bytes[at..]) {
            Ok(n) if n > 0 && at + n <= bytes.len() => {
                out.frames.push(at..at + n);
                at += n;
            }
            _ => {
                out.torn_at = Some(at);
                break;
            }
        }
    }
    out
}

/// [`frames`] over a read-only file mapping, giving the pages it walked
/// back every 64 MiB (the walk reads every block header: with readahead it
/// would otherwise bring the whole file into memory before any frame is
/// decompressed). Only for a mapping of a file (see `util::release_mapped`).
pub fn frames_of_map(map: &[u8]) -> Frames {
    let mut out = Frames::default();
    let mut at = 0;
    let mut released = 0;
    while at < map.len() {
        if at - released >= 64 << 20 {
            crate::util::release_mapped(map, released..at);
            released = at;
        }
        if let Some(n) = whole_frame_at(map, at) {
            out.frames.push(at..at + n);
            at += n;
            continue;
        }
        // Not a whole frame here: a torn tail, or a corrupt stretch in the
        // middle (a frame cut short, then more frames). Go on at the next
        // whole frame, if any; what lies between is reported.
        let mut next = None;
        let mut from = at + 1;
        while let Some(k) = map[from..].windows(4).position(frame_starts) {
            let pos = from + k;
            if whole_frame_at(map, pos).is_some() {
                next = Some(pos);
                break;
            }
            from = pos + 1;
        }
        match next {
            Some(pos) => {
                out.corrupt.push(at..pos);
                at = pos;
            }
            None => {
                out.torn_at = Some(at);
                break;
            }
        }
    }
    crate::util::release_mapped(map, released..map.len());
    out
}

/// Where a frame ends and how much text it holds, read from its headers
/// alone: the frame header (for the content size) and each block's 3-byte
/// header (to step over the block). No decompression, no allocation: what
/// lets a reader skip to a position, or read exactly one frame, cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// The frame's compressed length, bytes.
    pub compressed: u64,
    /// Its decompressed length when the header states it (the writer's do).
    pub content: Option<u64>,
    /// A skippable frame (no text).
    pub skippable: bool,
}

/// Reads the extent of the frame starting at the reader's position (which
/// it leaves anywhere). `Ok(None)`: the frame is not complete yet (or the
/// bytes are not a frame): a writer may still be appending it.
pub fn frame_extent<R: std::io::Read + std::io::Seek>(
    r: &mut R,
) -> std::io::Result<Option<Extent>> {
    use std::io::{ErrorKind, SeekFrom};
    fn read<R: std::io::Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<bool> {
        match r.read_exact(buf) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }
    let mut magic = [0u8; 4];
    if !read(r, &mut magic)? {
        return Ok(None);
    }
    let magic = u32::from_le_bytes(magic);
    if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
        let mut size = [0u8; 4];
        if !read(r, &mut size)? {
            return Ok(None);
        }
        let size = u64::from(u32::from_le_bytes(size));
        let end = r.stream_position()? + size;
        if r.seek(SeekFrom::End(0))? < end {
            return Ok(None);
        }
        return Ok(Some(Extent {
            compressed: 8 + size,
            content: Some(0),
            skippable: true,
        }));
    }
    if magic != 0xFD2F_B528 {
        return Ok(None);
    }
    let mut fhd = [0u8; 1];
    if !read(r, &mut fhd)? {
        return Ok(None);
    }
    let fhd = fhd[0];
    let single = fhd & 0x20 != 0;
    let checksum = fhd & 0x04 != 0;
    let did = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs = match fhd >> 6 {
        0 => usize::from(single),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut head = [0u8; 14];
    let n = usize::from(!single) + did + fcs;
    if !read(r, &mut head[..n])? {
        return Ok(None);
    }
    let f = &head[n - fcs..n];
    let content = match fcs {
        0 => None,
        1 => Some(u64::from(f[0])),
        2 => Some(u64::from(u16::from_le_bytes([f[0], f[1]])) + 256),
        4 => Some(u64::from(u32::from_le_bytes([f[0], f[1], f[2], f[3]]))),
        _ => Some(u64::from_le_bytes([
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7],
        ])),
    };
    let mut len = 5 + n as u64;
    loop {
        let mut bh = [0u8; 3];
        if !read(r, &mut bh)? {
            return Ok(None);
        }
        let h = u32::from(bh[0]) | u32::from(bh[1]) << 8 | u32::from(bh[2]) << 16;
        let last = h & 1 != 0;
        let size = u64::from(h >> 3);
        let body = match (h >> 1) & 3 {
            0 | 2 => size,
            1 => 1,
            _ => return Ok(None), // reserved block type: not a frame
        };
        len += 3 + body;
        r.seek(SeekFrom::Current(body as i64))?;
        if last {
            break;
        }
    }
    if checksum {
        len += 4;
        r.seek(SeekFrom::Current(4))?;
    }
    // Complete only if every byte of it is there.
    let here = r.stream_position()?;
    if r.seek(SeekFrom::End(0))? < here {
        return Ok(None);
    }
    Ok(Some(Extent {
        compressed: len,
        content,
        skippable: false,
    }))
}

/// The whole text of a small daily file (the events journal, orders,
/// candles), plain or `.zst` (its frames one after another; a torn tail
/// is left out, a frame that does not decompress is an error).
pub fn read_all(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    crate::util::regular_file(path)?;
    let bytes = std::fs::read(path)?;
    if !is_zst(path) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    let mut frame = Vec::new();
    for f in frames(&bytes).frames {
        decompress_frame(&bytes[f], &mut frame)?;
        out.extend_from_slice(&frame);
    }
    Ok(out)
}

/// Calls `f` with each whole line of a daily file, plain or `.zst`: a plain
/// file read as a stream, a `.zst` a frame at a time (its compressed bytes
/// and one frame in memory). A torn tail — a last line without its newline,
/// a last frame cut short by a kill — is left out, as the writer's next
/// start would repair it; a damaged frame inside a `.zst` is an error.
/// Lines longer than `max_line` bytes are skipped and counted (the return
/// value). Read, not mapped: the service reads its own open files with it,
/// and a mapped file that is truncated meanwhile would be a SIGBUS.
pub fn for_each_line(
    path: &std::path::Path,
    max_line: usize,
    mut f: impl FnMut(&[u8]),
) -> std::io::Result<u64> {
    use std::io::{BufRead as _, Read as _};
    crate::util::regular_file(path)?;
    if is_zst(path) {
        // Frame by frame (each one write of whole lines): a torn last frame
        // is left out, but a damaged frame *inside* the file is an error —
        // a caller that rewrites the file must not take its first part for
        // all of it.
        let bytes = std::fs::read(path)?;
        let fr = frames_of_map(&bytes);
        if let Some(c) = fr.corrupt.first() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: bytes {}..{} are no whole zstd frame",
                    path.display(),
                    c.start,
                    c.end
                ),
            ));
        }
        let mut buf = Vec::new();
        let mut long = 0u64;
        for r in fr.frames {
            decompress_frame(&bytes[r], &mut buf)?;
            for line in buf.split_inclusive(|b| *b == b'\n') {
                match line.strip_suffix(b"\n") {
                    Some(_) if line.len() > max_line + 1 => long += 1,
                    Some(l) => f(l),
                    None => {} // no newline: a torn tail
                }
            }
        }
        return Ok(long);
    }
    let file = std::fs::File::open(path)?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let mut long = 0u64;
    let mut skipping = false;
    loop {
        line.clear();
        let read = (&mut r)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut line)?;
        match read {
            0 => break,
            _ if line.last() == Some(&b'\n') => {
                if skipping {
                    skipping = false;
                } else {
                    line.pop();
                    f(&line);
                }
            }
            // Past the bound without a newline: skip to the next one.
            _ if line.len() > max_line => {
                if !skipping {
                    long += 1;
                }
                skipping = true;
            }
            // The last line has no newline: a torn tail.
            _ => break,
        }
    }
    Ok(long)
}

/// Decompresses one frame into `out` (cleared first).
pub fn decompress_frame(frame: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    out.clear();
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .unwrap_or(frame.len() as u64 * 8);
    // A frame is one write of the writer: a few MB at most. Refuse absurd
    // sizes from a corrupt header instead of allocating them.
    if size > 1 << 31 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame claims {size} bytes"),
        ));
    }
    out.reserve(size as usize);
    let mut d = zstd::stream::read::Decoder::with_buffer(frame)?.single_frame();
    std::io::Read::read_to_end(&mut d, out)?;
    Ok(())
}

/// Compresses whole writes into frames, reusing its buffers.
pub struct FrameWriter {
    c: zstd::bulk::Compressor<'static>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter").finish_non_exhaustive()
    }
}

impl FrameWriter {
    /// A writer at `level` (1..=19), frames with checksums.
    pub fn new(level: i32) -> std::io::Result<Self> {
        let mut c = zstd::bulk::Compressor::new(level)?;
        c.include_checksum(true)?;
        c.include_contentsize(true)?;
        Ok(FrameWriter { c, buf: Vec::new() })
    }

    /// `data` as one complete frame.
    pub fn frame(&mut self, data: &[u8]) -> std::io::Result<&[u8]> {
        self.buf.clear();
        self.buf
            .reserve(zstd::zstd_safe::compress_bound(data.len()));
        self.c.compress_to_buffer(data, &mut self.buf)?;
        Ok(&self.buf)
    }
}

/// Plain text per frame when compressing a whole file.
const FILE_FRAME: usize = 1 << 20;

/// What [`compress_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// The `.zst` written.
    pub path: std::path::PathBuf,
    /// Plain bytes read.
    pub plain: u64,
    /// Compressed bytes written.
    pub compressed: u64,
}

/// Removes a temporary file unless disarmed.
struct RemoveOnDrop(Option<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Compresses a sealed plain capture into `PATH.zst` in the writer's
/// format (independent frames of whole lines, ~1 MiB each), atomically and
/// without overwriting anything:
///
/// - the source is locked (`flock`, exclusive, non-blocking): a file the
///   writer holds, or that another compression is compressing, is refused
///   (`ResourceBusy`);
/// - an existing `PATH.zst` is refused (`AlreadyExists`), never replaced;
/// - the frames go to a temporary name unique to this call, created with
///   `create_new`, synced, then hard-linked to `PATH.zst` (which fails if
///   the name appeared meanwhile) and unlinked;
/// - the plain file is removed only after, unless `keep`.
pub fn compress_file(
    path: &std::path::Path,
    level: i32,
    keep: bool,
) -> std::io::Result<Compressed> {
    use std::io::Write;
    let file = std::fs::File::open(path)?;
    if !crate::days::try_lock(&file)? {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ResourceBusy,
            format!(
                "{} is being written by a running tickcap or compressed by another process",
                path.display()
            ),
        ));
    }
    let len = file.metadata()?.len();
    let out = std::path::PathBuf::from(format!("{}.zst", path.display()));
    if out.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists; it is not overwritten", out.display()),
        ));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = std::path::PathBuf::from(format!(
        "{}.zst.part-{}-{nanos}",
        path.display(),
        std::process::id()
    ));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let mut cleanup = RemoveOnDrop(Some(tmp.clone()));
    let mut w = std::io::BufWriter::new(created);
    let mut fw = FrameWriter::new(level)?;
    if len > 0 {
        // SAFETY: read-only map of a sealed segment we hold the exclusive
        // flock of: the writer never appends to or truncates a sealed
        // segment, and no other compression can start on it. Another
        // process truncating it meanwhile is the unsafe case.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let mut rest: &[u8] = &map;
        while !rest.is_empty() {
            let mut end = rest.len().min(FILE_FRAME);
            if end < rest.len() {
                end = rest[end..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| end + i + 1);
            }
            w.write_all(fw.frame(&rest[..end])?)?;
            rest = &rest[end..];
        }
    }
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    // link(2) never replaces: a .zst that appeared meanwhile wins.
    std::fs::hard_link(&tmp, &out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            std::io::Error::new(
                e.kind(),
                format!(
                    "{} appeared during the compression; not overwritten",
                    out.display()
                ),
            )
        } else {
            e
        }
    })?;
    drop(cleanup.0.take());
    std::fs::remove_file(&tmp)?;
    if let Some(dir) = out.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let compressed = std::fs::metadata(&out)?.len();
    if !keep {
        std::fs::remove_file(path)?;
    }
    Ok(Compressed {
        path: out,
        plain: len,
        compressed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(path: &std::path::Path, max: usize) -> std::io::Result<(Vec<String>, u64)> {
        let mut out = Vec::new();
        let long = for_each_line(path, max, |l| {
            out.push(String::from_utf8_lossy(l).into_owned())
        })?;
        Ok((out, long))
    }

    #[test]
    fn every_whole_line_is_read_a_torn_tail_left_out_and_damage_inside_refused() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.jsonl");
        std::fs::write(&plain, "one\ntoo-long-line\ntwo\ntorn").unwrap();
        let (l, long) = lines_of(&plain, 8).unwrap();
        assert_eq!((l, long), (vec!["one".to_owned(), "two".to_owned()], 1));
        let mut w = FrameWriter::new(3).unwrap();
        let mut file = Vec::new();
        for text in ["a\nb\n", "c\n", "d\ne\n"] {
            file.extend_from_slice(w.frame(text.as_bytes()).unwrap());
        }
        let f = frames(&file);
        let zst = dir.path().join("a.jsonl.zst");
        // The last frame cut short: the first two frames' lines.
        std::fs::write(&zst, &file[..f.frames[2].start + 5]).unwrap();
        assert_eq!(lines_of(&zst, 8).unwrap().0, ["a", "b", "c"]);
        // The middle frame damaged: an error, not "a, b" taken for the file.
        let mut bad = file.clone();
        bad[f.frames[1].start..f.frames[1].end].fill(0x55);
        std::fs::write(&zst, &bad).unwrap();
        let e = lines_of(&zst, 8).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    }

    #[test]
    fn frames_are_found_and_a_torn_tail_is_located() {
        let mut w = FrameWriter::new(3).unwrap();
        let mut file = Vec::new();
        for text in ["a\nb\n", "c\n", "d\ne\nf\n"] {
            file.extend_from_slice(w.frame(text.as_bytes()).unwrap());
        }
        let f = frames(&file);
        assert_eq!(f.frames.len(), 3);
        assert_eq!(f.torn_at, None);
        let mut out = Vec::new();
        decompress_frame(&file[f.frames[2].clone()], &mut out).unwrap();
        assert_eq!(out, b"d\ne\nf\n");
        // The whole file is what `zstd -d` reads: the concatenation.
        let all = zstd::decode_all(file.as_slice()).unwrap();
        assert_eq!(all, b"a\nb\nc\nd\ne\nf\n");
        // Cut inside the last frame: two complete, the rest torn.
        let cut = f.frames[2].start + 5;
        let g = frames(&file[..cut]);
        assert_eq!(g.frames.len(), 2);
        assert_eq!(g.torn_at, Some(f.frames[2].start));
        // Zeros after the frames (a crash with the size updated): torn.
        let mut z = file.clone();
        z.extend_from_slice(&[0; 64]);
        assert_eq!(frames(&z).torn_at, Some(file.len()));
    }

    #[test]
    fn a_closed_file_compresses_atomically_into_frames_of_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("market_data_2026-11-24.jsonl");
        let text: String = (0..50_000).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        std::fs::write(&p, &text).unwrap();
        let c = compress_file(&p, 3, false).unwrap();
        assert!(
            !p.exists(),
            "the plain file goes after the .zst is complete"
        );
        assert_eq!(c.plain, text.len() as u64);
        let bytes = std::fs::read(&c.path).unwrap();
        let f = frames(&bytes);
        assert!(!f.frames.is_empty() && f.torn_at.is_none());
        assert_eq!(zstd::decode_all(bytes.as_slice()).unwrap(), text.as_bytes());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            ["market_data_2026-11-24.jsonl.zst"],
            "no temporary left"
        );
    }

    #[test]
    fn an_existing_zst_is_never_overwritten_and_a_locked_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("market_data_2026-11-24.jsonl");
        std::fs::write(&p, "{\"a\":1}\n").unwrap();
        let z = dir.path().join("market_data_2026-11-24.jsonl.zst");
        std::fs::write(&z, "the afternoon").unwrap();
        let e = compress_file(&p, 3, false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&z).unwrap(), b"the afternoon");
        assert!(p.exists());
        std::fs::remove_file(&z).unwrap();
        // A writer (or another compression) holds it.
        let held = std::fs::File::open(&p).unwrap();
        assert!(crate::days::try_lock(&held).unwrap());
        let e = compress_file(&p, 3, false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ResourceBusy);
        drop(held);
        compress_file(&p, 3, false).unwrap();
    }

    #[test]
    fn a_frames_extent_comes_from_its_headers_and_an_incomplete_one_is_none() {
        let mut w = FrameWriter::new(3).unwrap();
        let text: String = (0..20_000).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        let mut file = w.frame(text.as_bytes()).unwrap().to_vec();
        let first = file.len() as u64;
        file.extend_from_slice(w.frame(b"x\n").unwrap());
        let mut c = std::io::Cursor::new(&file);
        let e = frame_extent(&mut c).unwrap().unwrap();
        assert_eq!((e.compressed, e.content), (first, Some(text.len() as u64)));
        c.set_position(first);
        let e = frame_extent(&mut c).unwrap().unwrap();
        assert_eq!(
            (e.compressed, e.content),
            ((file.len() as u64) - first, Some(2))
        );
        for cut in [1, 5, first as usize - 1] {
            let mut c = std::io::Cursor::new(&file[..cut]);
            assert_eq!(frame_extent(&mut c).unwrap(), None, "cut at {cut}");
        }
        // It agrees with zstd's own walk on every frame.
        for r in frames(&file).frames {
            let mut c = std::io::Cursor::new(&file[r.start..]);
            assert_eq!(
                frame_extent(&mut c).unwrap().unwrap().compressed,
                r.len() as u64
            );
        }
    }

    #[test]
    fn a_corrupt_frame_fails_its_checksum() {
        let mut w = FrameWriter::new(1).unwrap();
        let mut f = w.frame(b"{\"x\":1}\n{\"x\":2}\n").unwrap().to_vec();
        let mid = f.len() / 2;
        f[mid] ^= 0x55;
        let mut out = Vec::new();
        assert!(decompress_frame(&f, &mut out).is_err());
    }
}
