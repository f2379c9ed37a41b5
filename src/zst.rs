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

/// Compresses a closed plain capture into `PATH.zst` in the writer's format
/// (independent frames of whole lines, ~1 MiB each), atomically: written to
/// `PATH.zst.part`, synced, renamed; the plain file is removed only after,
/// unless `keep`.
pub fn compress_file(
    path: &std::path::Path,
    level: i32,
    keep: bool,
) -> std::io::Result<Compressed> {
    use std::io::Write;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let out = std::path::PathBuf::from(format!("{}.zst", path.display()));
    let tmp = std::path::PathBuf::from(format!("{}.zst.part", path.display()));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let mut fw = FrameWriter::new(level)?;
    if len > 0 {
        // SAFETY: read-only map of a closed day's file that nothing appends to.
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
    std::fs::rename(&tmp, &out)?;
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
        assert!(!dir
            .path()
            .join("market_data_2026-11-24.jsonl.zst.part")
            .exists());
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
