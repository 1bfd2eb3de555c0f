//! Pack an episode directory into a staged `.tar.gz`.
//!
//! - Entries under a top-level `<id>/`, in sorted order, so the same input
//!   gives the same bytes. Modes, mtimes and numeric owners are kept; nothing
//!   that changes by merely reading (atime) is stored.
//! - Symlinks are stored as symlinks and never followed; FIFOs, sockets and
//!   devices are skipped with a warning and never opened.
//! - Streamed through fixed-size buffers: memory does not grow with size.
//! - Incompressible data (video, already-compressed files) is detected per
//!   chunk by its byte entropy and written as stored deflate blocks instead of
//!   being run through the compressor. That is most of the speed available.
//! - Written to `<id>.tar.gz.partial`, fsynced, then renamed, with SHA-256
//!   computed on the way out.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use sha2::{Digest, Sha256};

/// Read and compression chunk size.
const CHUNK: usize = 256 * 1024;
/// Chunks above this byte entropy (bits per byte, max 8) are stored as is:
/// deflate cannot win anything measurable on them.
const STORE_ENTROPY_BITS: f64 = 7.95;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file in the episode cannot be read: an operator must fix permissions.
    #[error("cannot read {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{path} changed while it was being archived ({detail})")]
    Changed { path: PathBuf, detail: String },
    #[error("cannot write archive {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Something left out of the archive on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Path inside the episode.
    pub path: PathBuf,
    pub kind: &'static str,
}

#[derive(Debug, Clone)]
pub struct ArchiveSummary {
    pub archive_bytes: u64,
    /// File content bytes read from the episode.
    pub input_bytes: u64,
    pub entries: u64,
    pub sha256: [u8; 32],
    pub skipped: Vec<Skipped>,
}

/// Build `final_path` from `episode_dir`, staging at `partial_path`.
/// `on_progress` gets the number of content bytes read so far.
pub fn build(
    episode_dir: &Path,
    top_name: &str,
    partial_path: &Path,
    final_path: &Path,
    gzip_level: u32,
    on_progress: &mut dyn FnMut(u64),
) -> Result<ArchiveSummary, ArchiveError> {
    let write_err = |source| ArchiveError::Write {
        path: partial_path.to_path_buf(),
        source,
    };
    // Truncates whatever a crashed run left behind.
    let file = File::create(partial_path).map_err(write_err)?;
    let hasher = HashingWriter {
        inner: file,
        hash: Sha256::new(),
        bytes: 0,
    };
    let store_hint = Rc::new(Cell::new(false));
    let gz = GzStream::new(
        BufWriter::with_capacity(CHUNK, hasher),
        Compression::new(gzip_level),
        store_hint.clone(),
    )
    .map_err(write_err)?;
    let mut builder = tar::Builder::new(gz);
    builder.follow_symlinks(false);

    let mut walk = Walk {
        builder: &mut builder,
        store_hint,
        input_bytes: 0,
        entries: 0,
        skipped: Vec::new(),
        on_progress,
        partial_path,
    };
    let top = Path::new(top_name);
    let root_meta =
        fs::symlink_metadata(episode_dir).map_err(|source| ArchiveError::Unreadable {
            path: episode_dir.to_path_buf(),
            source,
        })?;
    walk.directory(episode_dir, top, &root_meta)?;
    let (input_bytes, entries, skipped) = (walk.input_bytes, walk.entries, walk.skipped);

    let gz = builder.into_inner().map_err(write_err)?;
    let hasher = gz
        .finish()
        .map_err(write_err)?
        .into_inner()
        .map_err(|e| write_err(e.into_error()))?;
    hasher.inner.sync_all().map_err(write_err)?;
    let archive_bytes = hasher.bytes;
    let sha256: [u8; 32] = hasher.hash.finalize().into();
    fs::rename(partial_path, final_path).map_err(write_err)?;
    if let Some(dir) = final_path.parent() {
        crate::layout::sync_dir(dir).map_err(|e| write_err(io::Error::other(e.to_string())))?;
    }
    Ok(ArchiveSummary {
        archive_bytes,
        input_bytes,
        entries,
        sha256,
        skipped,
    })
}

/// SHA-256 and size of an existing archive (a staged one, reused on retry).
pub fn digest_file(path: &Path) -> io::Result<([u8; 32], u64)> {
    let mut f = File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hash.finalize().into(), total))
}

struct Walk<'a, W: Write> {
    builder: &'a mut tar::Builder<W>,
    store_hint: Rc<Cell<bool>>,
    input_bytes: u64,
    entries: u64,
    skipped: Vec<Skipped>,
    on_progress: &'a mut dyn FnMut(u64),
    partial_path: &'a Path,
}

impl<W: Write> Walk<'_, W> {
    fn write_err(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Write {
            path: self.partial_path.to_path_buf(),
            source,
        }
    }

    fn directory(
        &mut self,
        dir: &Path,
        name: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), ArchiveError> {
        let mut header = header_for(meta, tar::EntryType::Directory, 0);
        self.builder
            .append_data(&mut header, name, io::empty())
            .map_err(|e| self.write_err(e))?;
        self.entries += 1;

        // Refuse to descend if the directory was swapped for a symlink.
        crate::lock::open_dir_nofollow(dir).map_err(|source| ArchiveError::Unreadable {
            path: dir.to_path_buf(),
            source,
        })?;
        let unreadable = |source| ArchiveError::Unreadable {
            path: dir.to_path_buf(),
            source,
        };
        let mut children: Vec<_> = fs::read_dir(dir)
            .map_err(unreadable)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(unreadable)?;
        // Byte order, not locale order: deterministic everywhere.
        children.sort_by(|a, b| {
            use std::os::unix::ffi::OsStrExt;
            a.as_bytes().cmp(b.as_bytes())
        });
        for child in children {
            let path = dir.join(&child);
            let inner = name.join(&child);
            let meta = fs::symlink_metadata(&path).map_err(|source| ArchiveError::Unreadable {
                path: path.clone(),
                source,
            })?;
            let ft = meta.file_type();
            if ft.is_dir() {
                self.directory(&path, &inner, &meta)?;
            } else if ft.is_file() {
                self.file(&path, &inner, &meta)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(|source| ArchiveError::Unreadable {
                    path: path.clone(),
                    source,
                })?;
                let mut header = header_for(&meta, tar::EntryType::Symlink, 0);
                self.builder
                    .append_link(&mut header, &inner, &target)
                    .map_err(|e| self.write_err(e))?;
                self.entries += 1;
            } else {
                let kind = if ft.is_fifo() {
                    "fifo"
                } else if ft.is_socket() {
                    "socket"
                } else if ft.is_block_device() {
                    "block device"
                } else if ft.is_char_device() {
                    "character device"
                } else {
                    "unknown file type"
                };
                self.skipped.push(Skipped { path: inner, kind });
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, name: &Path, meta: &fs::Metadata) -> Result<(), ArchiveError> {
        let unreadable = |source| ArchiveError::Unreadable {
            path: path.to_path_buf(),
            source,
        };
        // O_NOFOLLOW | O_NONBLOCK: if the entry was swapped for a link or a
        // FIFO since we looked, refuse it instead of following or hanging.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(unreadable)?;
        let opened = file.metadata().map_err(unreadable)?;
        if !opened.is_file() || opened.ino() != meta.ino() || opened.dev() != meta.dev() {
            return Err(ArchiveError::Changed {
                path: path.to_path_buf(),
                detail: "replaced by another file".into(),
            });
        }
        let size = meta.len();
        let mut header = header_for(meta, tar::EntryType::Regular, size);
        let mut reader = ChunkReader {
            file,
            buf: vec![0u8; CHUNK.min(size as usize + 1).max(1)],
            start: 0,
            end: 0,
            remaining: size,
            store_hint: &self.store_hint,
            error: None,
            progress_base: self.input_bytes,
            on_progress: &mut *self.on_progress,
        };
        let result = self.builder.append_data(&mut header, name, &mut reader);
        // The reader's own failure explains a write failure better.
        if let Some(err) = reader.error.take() {
            return Err(match err {
                ReadFailure::Io(source) => ArchiveError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                },
                ReadFailure::Shrunk => ArchiveError::Changed {
                    path: path.to_path_buf(),
                    detail: format!("shorter than its size of {size} bytes"),
                },
            });
        }
        result.map_err(|e| self.write_err(e))?;
        self.store_hint.set(false);
        self.entries += 1;
        self.input_bytes += size;
        Ok(())
    }
}

fn header_for(meta: &fs::Metadata, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(meta.mode() & 0o7777);
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h
}

enum ReadFailure {
    Io(io::Error),
    Shrunk,
}

/// Reads exactly `remaining` bytes of a file in large chunks, and for each
/// chunk tells the gzip writer (through `store_hint`) whether it is worth
/// compressing. Errors are kept aside so the caller can report them with
/// their real cause.
struct ChunkReader<'a> {
    file: File,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    remaining: u64,
    store_hint: &'a Cell<bool>,
    error: Option<ReadFailure>,
    /// Content bytes of earlier files, for progress reports.
    progress_base: u64,
    on_progress: &'a mut dyn FnMut(u64),
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            if self.remaining == 0 {
                return Ok(0);
            }
            let want = self.buf.len().min(self.remaining as usize);
            let mut filled = 0;
            while filled < want {
                match self.file.read(&mut self.buf[filled..want]) {
                    Ok(0) => {
                        self.error = Some(ReadFailure::Shrunk);
                        return Err(io::Error::other("file shrank"));
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let msg = e.to_string();
                        self.error = Some(ReadFailure::Io(e));
                        return Err(io::Error::other(msg));
                    }
                }
            }
            self.remaining -= filled as u64;
            self.progress_base += filled as u64;
            (self.on_progress)(self.progress_base);
            self.start = 0;
            self.end = filled;
            self.store_hint
                .set(byte_entropy(&self.buf[..filled]) > STORE_ENTROPY_BITS);
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

/// Shannon entropy in bits per byte. Small samples are never "random":
/// below 4 KiB the estimate is too noisy to bother storing.
fn byte_entropy(data: &[u8]) -> f64 {
    if data.len() < 4096 {
        return 0.0;
    }
    let mut counts = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        counts[0][b as usize] += 1;
    }
    let n = data.len() as f64;
    (0..256)
        .map(|i| counts[0][i] + counts[1][i] + counts[2][i] + counts[3][i])
        .filter(|&c| c > 0)
        .map(|c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Counts and hashes everything written to the archive file.
struct HashingWriter {
    inner: File,
    hash: Sha256,
    bytes: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A single-member gzip stream that deflates compressible input and writes
/// incompressible input (as `store_hint` says) as raw stored blocks.
///
/// Stored blocks are written by hand because switching the compressor's level
/// mid-stream is not supported by every backend. The framing stays valid:
/// before a stored run the compressor is sync-flushed (byte-aligned, not
/// final), and after it the compressor is reset, so its back-references
/// never reach across bytes it did not see.
struct GzStream<W: Write> {
    inner: W,
    deflate: Compress,
    crc: Crc,
    storing: bool,
    store_hint: Rc<Cell<bool>>,
    /// Input staged so that the compressor and stored blocks see large runs.
    pending: Vec<u8>,
    out: Vec<u8>,
}

/// Largest payload of one stored deflate block.
const MAX_STORED: usize = 65_535;

impl<W: Write> GzStream<W> {
    fn new(mut inner: W, level: Compression, store_hint: Rc<Cell<bool>>) -> io::Result<Self> {
        // RFC 1952 header: no name, mtime 0 (deterministic), OS = Unix.
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])?;
        Ok(GzStream {
            inner,
            deflate: Compress::new(level, false),
            crc: Crc::new(),
            storing: false,
            store_hint,
            pending: Vec::with_capacity(CHUNK),
            out: Vec::with_capacity(CHUNK + 1024),
        })
    }

    /// Write out everything staged, in the current mode.
    fn drain(&mut self, flush: FlushCompress) -> io::Result<()> {
        if self.storing {
            for block in self.pending.chunks(MAX_STORED) {
                let len = block.len() as u16;
                let [l0, l1] = len.to_le_bytes();
                // BFINAL=0, BTYPE=00 (stored), then LEN and NLEN.
                self.inner.write_all(&[0, l0, l1, !l0, !l1])?;
                self.inner.write_all(block)?;
            }
            self.pending.clear();
            return Ok(());
        }
        let mut consumed = 0;
        loop {
            self.out.clear();
            let before = self.deflate.total_in();
            let status = self
                .deflate
                .compress_vec(&self.pending[consumed..], &mut self.out, flush)
                .map_err(io::Error::other)?;
            consumed += (self.deflate.total_in() - before) as usize;
            self.inner.write_all(&self.out)?;
            let done_input = consumed == self.pending.len();
            match status {
                Status::StreamEnd => break,
                // Output buffer not full: the compressor has said all it can.
                _ if done_input && self.out.len() < self.out.capacity() => break,
                _ => {}
            }
        }
        self.pending.clear();
        Ok(())
    }

    fn switch_if_needed(&mut self) -> io::Result<()> {
        let want_store = self.store_hint.get();
        if want_store == self.storing {
            return Ok(());
        }
        if want_store {
            // Byte-align and empty the compressor before raw blocks follow.
            self.drain(FlushCompress::Sync)?;
        } else {
            self.drain(FlushCompress::None)?;
            self.deflate.reset();
        }
        self.storing = want_store;
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        if self.storing {
            self.drain(FlushCompress::None)?;
            // An empty final stored block ends the deflate stream.
            self.inner.write_all(&[1, 0, 0, 0xff, 0xff])?;
        } else {
            self.drain(FlushCompress::Finish)?;
        }
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for GzStream<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.switch_if_needed()?;
        let room = CHUNK - self.pending.len();
        let n = buf.len().min(room);
        self.pending.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        if self.pending.len() == CHUNK {
            self.drain(FlushCompress::None)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Deliberately not a deflate flush: that would cost size. The
        // stream is completed by `finish`.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn entropy_separates_text_from_random() {
        let text = "2026-11-27T10:00:00Z arm=3 joint=2 torque=0.113 temp=41.2\n".repeat(5000);
        assert!(byte_entropy(text.as_bytes()) < 6.0);
        assert!(byte_entropy(&random_bytes(CHUNK, 7)) > STORE_ENTROPY_BITS);
    }

    #[test]
    fn mixed_stream_round_trips_and_stores_random_data() {
        let d = tempfile::tempdir().expect("tempdir");
        let ep = d.path().join("ep1");
        fs::create_dir_all(ep.join("sub")).expect("mkdir");
        let random = random_bytes(3 * CHUNK + 123, 42);
        let text = "sensor,value\n1,2\n".repeat(40_000);
        fs::write(ep.join("video.bin"), &random).expect("write");
        fs::write(ep.join("sub/log.csv"), &text).expect("write");
        fs::write(ep.join("done.marker"), b"").expect("write");
        let (partial, fin) = (d.path().join("a.partial"), d.path().join("a.tar.gz"));
        let s = build(&ep, "ep1", &partial, &fin, 6, &mut |_| {}).expect("build");
        assert!(!partial.exists());
        let bytes = fs::read(&fin).expect("read");
        assert_eq!(bytes.len() as u64, s.archive_bytes);
        let (digest, len) = digest_file(&fin).expect("digest");
        assert_eq!((digest, len), (s.sha256, s.archive_bytes));
        // Random data stored (barely any overhead), text still compressed.
        assert!(s.archive_bytes < random.len() as u64 + text.len() as u64 / 20);

        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut names = Vec::new();
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").display().to_string();
            let mut content = Vec::new();
            e.read_to_end(&mut content).expect("content");
            if name == "ep1/video.bin" {
                assert_eq!(content, random);
            }
            if name == "ep1/sub/log.csv" {
                assert_eq!(content, text.as_bytes());
            }
            names.push(name);
        }
        assert_eq!(
            names,
            [
                "ep1",
                "ep1/done.marker",
                "ep1/sub",
                "ep1/sub/log.csv",
                "ep1/video.bin"
            ]
        );
    }

    #[test]
    fn same_input_same_bytes() {
        let d = tempfile::tempdir().expect("tempdir");
        let ep = d.path().join("ep");
        fs::create_dir(&ep).expect("mkdir");
        fs::write(ep.join("b"), b"bbbb").expect("write");
        fs::write(ep.join("a"), random_bytes(10_000, 1)).expect("write");
        let out = |n: &str| {
            let f = d.path().join(n);
            build(&ep, "ep", &d.path().join("p"), &f, 6, &mut |_| {}).expect("build");
            fs::read(f).expect("read")
        };
        assert_eq!(out("1.tgz"), out("2.tgz"));
    }
}
