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
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::Compression;

mod gzip;
use gzip::GzWriter;

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
    let sink = HashingSink::new(file, partial_path).map_err(write_err)?;
    let store_hint = Rc::new(Cell::new(false));
    let gz = HintedGz {
        gz: GzWriter::new(sink, Compression::new(gzip_level)).map_err(write_err)?,
        store_hint: store_hint.clone(),
    };
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
    walk.directory(episode_dir, episode_dir, top, &root_meta)?;
    let (input_bytes, entries, skipped) = (walk.input_bytes, walk.entries, walk.skipped);

    let gz = builder.into_inner().map_err(write_err)?;
    let (file, sha256, archive_bytes) = gz
        .gz
        .finish()
        .and_then(HashingSink::finish)
        .map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
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

/// SHA-256 and size of an existing archive (a staged one, reused on
/// retry). `on_progress` gets the bytes hashed so far.
pub fn digest_file(path: &Path, on_progress: &mut dyn FnMut(u64)) -> io::Result<([u8; 32], u64)> {
    let mut f = File::open(path)?;
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
        on_progress(total);
    }
    let digest = hash.finish();
    let digest: [u8; 32] = digest
        .as_ref()
        .try_into()
        .map_err(|_| io::Error::other("SHA-256 digest is not 32 bytes"))?;
    Ok((digest, total))
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

    /// Archive directory `dir` (shown in errors) as `name`. `via` is how it
    /// is reached: each directory is opened once, without following links,
    /// and everything inside it is reached through that descriptor
    /// (`/proc/self/fd/N/child`), so no path is resolved twice and a
    /// directory swapped for a symlink meanwhile is never followed.
    fn directory(
        &mut self,
        dir: &Path,
        via: &Path,
        name: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), ArchiveError> {
        let mut header = header_for(meta, tar::EntryType::Directory, 0);
        self.builder
            .append_data(&mut header, name, io::empty())
            .map_err(|e| self.write_err(e))?;
        self.entries += 1;

        let unreadable = |source| ArchiveError::Unreadable {
            path: dir.to_path_buf(),
            source,
        };
        let handle = crate::lock::open_dir_nofollow(via).map_err(unreadable)?;
        let opened = handle.metadata().map_err(unreadable)?;
        if opened.ino() != meta.ino() || opened.dev() != meta.dev() {
            return Err(ArchiveError::Changed {
                path: dir.to_path_buf(),
                detail: "replaced by another directory".into(),
            });
        }
        let base = fd_path(&handle).unwrap_or_else(|| via.to_path_buf());
        let mut children: Vec<_> = fs::read_dir(&base)
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
            let access = base.join(&child);
            let inner = name.join(&child);
            let meta =
                fs::symlink_metadata(&access).map_err(|source| ArchiveError::Unreadable {
                    path: path.clone(),
                    source,
                })?;
            let ft = meta.file_type();
            if ft.is_dir() {
                self.directory(&path, &access, &inner, &meta)?;
            } else if ft.is_file() {
                self.file(&path, &access, &inner, &meta)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&access).map_err(|source| ArchiveError::Unreadable {
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
        drop(handle);
        Ok(())
    }

    fn file(
        &mut self,
        path: &Path,
        via: &Path,
        name: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), ArchiveError> {
        let unreadable = |source| ArchiveError::Unreadable {
            path: path.to_path_buf(),
            source,
        };
        // O_NOFOLLOW | O_NONBLOCK: if the entry was swapped for a link or a
        // FIFO since we looked, refuse it instead of following or hanging.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(via)
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

/// `/proc/self/fd/N` for an open directory: a path that reaches exactly
/// that directory, however its ancestors are renamed or replaced. `None`
/// without /proc (then paths are used as they are).
fn fd_path(dir: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    fs::symlink_metadata(&p).is_ok().then_some(p)
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

/// Shannon entropy in bits per byte, estimated from every fourth 4 KiB
/// block (64 K samples per chunk are plenty, and a quarter of the cost).
/// Small samples are never "random": below 4 KiB the estimate is too noisy
/// to bother storing.
fn byte_entropy(data: &[u8]) -> f64 {
    if data.len() < 4096 {
        return 0.0;
    }
    let mut counts = [[0u32; 256]; 4];
    let mut sampled = 0usize;
    for block in data.chunks(4096).step_by(4) {
        let mut quads = block.chunks_exact(4);
        for q in &mut quads {
            counts[0][q[0] as usize] += 1;
            counts[1][q[1] as usize] += 1;
            counts[2][q[2] as usize] += 1;
            counts[3][q[3] as usize] += 1;
        }
        for &b in quads.remainder() {
            counts[0][b as usize] += 1;
        }
        sampled += block.len();
    }
    let n = sampled as f64;
    (0..256)
        .map(|i| counts[0][i] + counts[1][i] + counts[2][i] + counts[3][i])
        .filter(|&c| c > 0)
        .map(|c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The archive file, its SHA-256 and its size.
type SinkResult = (File, [u8; 32], u64);

/// Writes the archive, and hashes it on a thread of its own that reads the
/// file back behind the writer (from the page cache). SHA-256 is the
/// costliest step after deflate on CPUs without SHA extensions; this way it
/// overlaps with compression however far it lags, without holding the lag
/// in memory.
struct HashingSink {
    file: File,
    buf: Vec<u8>,
    progress: std::sync::Arc<WriteProgress>,
    hasher: Option<std::thread::JoinHandle<io::Result<[u8; 32]>>>,
}

/// How far the writer got, shared with the hashing thread.
#[derive(Default)]
struct WriteProgress {
    state: std::sync::Mutex<(u64, bool)>, // (bytes written, finished)
    changed: std::sync::Condvar,
}

impl WriteProgress {
    fn update(&self, written: u64, finished: bool) {
        if let Ok(mut st) = self.state.lock() {
            *st = (written, finished);
            self.changed.notify_one();
        }
    }

    /// Wait until more than `have` bytes are written, or the end.
    fn wait_beyond(&self, have: u64) -> io::Result<(u64, bool)> {
        let poisoned = |_| io::Error::other("archive writer panicked");
        let mut st = self.state.lock().map_err(poisoned)?;
        while st.0 <= have && !st.1 {
            st = self.changed.wait(st).map_err(poisoned)?;
        }
        Ok(*st)
    }
}

impl HashingSink {
    fn new(file: File, path: &Path) -> io::Result<HashingSink> {
        let mut reader = File::open(path)?;
        let progress = std::sync::Arc::new(WriteProgress::default());
        let shared = progress.clone();
        let hasher = std::thread::Builder::new()
            .name("archive-sha256".into())
            .spawn(move || {
                let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
                let mut buf = vec![0u8; CHUNK];
                let mut hashed = 0u64;
                loop {
                    let (written, finished) = shared.wait_beyond(hashed)?;
                    while hashed < written {
                        let want = buf.len().min((written - hashed) as usize);
                        let n = reader.read(&mut buf[..want])?;
                        if n == 0 {
                            return Err(io::Error::other("archive shorter than written"));
                        }
                        hash.update(&buf[..n]);
                        hashed += n as u64;
                    }
                    if finished && hashed == written {
                        break;
                    }
                }
                hash.finish()
                    .as_ref()
                    .try_into()
                    .map_err(|_| io::Error::other("SHA-256 digest is not 32 bytes"))
            })?;
        Ok(HashingSink {
            file,
            buf: Vec::with_capacity(CHUNK),
            progress,
            hasher: Some(hasher),
        })
    }

    fn write_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf)?;
        let written = self.progress.state.lock().map(|s| s.0).unwrap_or(0);
        self.progress.update(written + self.buf.len() as u64, false);
        self.buf.clear();
        Ok(())
    }

    /// Everything written: the file, its SHA-256 and its size.
    fn finish(mut self) -> io::Result<SinkResult> {
        self.write_buf()?;
        let written = self.progress.state.lock().map(|s| s.0).unwrap_or(0);
        self.progress.update(written, true);
        let digest = match self.hasher.take().map(|t| t.join()) {
            Some(Ok(result)) => result?,
            _ => return Err(io::Error::other("archive hashing thread panicked")),
        };
        let file = self.file.try_clone()?;
        Ok((file, digest, written))
    }
}

impl Drop for HashingSink {
    fn drop(&mut self) {
        // On an error path: let the hashing thread finish and go.
        if let Some(t) = self.hasher.take() {
            let written = self.progress.state.lock().map(|s| s.0).unwrap_or(0);
            self.progress.update(written, true);
            let _ = t.join();
        }
    }
}

impl Write for HashingSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.write_buf()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The gzip writer, switched between deflating and storing by the hint
/// the reader sets for the chunk being written.
struct HintedGz<W: Write> {
    gz: GzWriter<W>,
    store_hint: Rc<Cell<bool>>,
}

impl<W: Write> Write for HintedGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.gz.set_storing(self.store_hint.get())?;
        self.gz.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.gz.flush()
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
        let (digest, len) = digest_file(&fin, &mut |_| {}).expect("digest");
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
