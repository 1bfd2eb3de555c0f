//! SHA-256 of the archive as it is written, without a second pass and
//! without holding the output in memory.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use super::CHUNK;

/// How often (in bytes written) staging looks at the free space again.
pub const SPACE_CHECK_EVERY: u64 = 4 << 20;

/// The archive file, its SHA-256 and its size.
pub(super) type SinkResult = (File, [u8; 32], u64);

/// Writes the archive, and hashes it on a thread of its own that reads the
/// file back behind the writer (from the page cache). SHA-256 is the
/// costliest step after deflate on CPUs without SHA extensions; this way it
/// overlaps with compression however far it lags, without holding the lag
/// in memory.
pub(super) struct HashingSink {
    file: File,
    buf: Vec<u8>,
    progress: std::sync::Arc<WriteProgress>,
    hasher: Option<std::thread::JoinHandle<io::Result<[u8; 32]>>>,
    /// Free space to leave on the filesystem (0: no check).
    keep_free: u64,
    /// Bytes written since the free space was last checked.
    unchecked: u64,
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
    /// `file` must be open for reading too: the hashing thread reads it
    /// back through its own handle (positioned reads, no path to resolve).
    pub(super) fn new(file: File, keep_free: u64) -> io::Result<HashingSink> {
        let reader = file.try_clone()?;
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
                        let n = reader.read_at(&mut buf[..want], hashed)?;
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
            keep_free,
            // The first write checks.
            unchecked: SPACE_CHECK_EVERY,
        })
    }

    fn write_buf(&mut self) -> io::Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let result = self.write_out(&buf);
        self.buf = buf;
        self.buf.clear();
        result
    }

    /// Write `data` to the file, and let the hashing thread know.
    fn write_out(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.check_free_space(data.len() as u64)?;
        self.file.write_all(data)?;
        let written = self.progress.state.lock().map(|s| s.0).unwrap_or(0);
        self.progress.update(written + data.len() as u64, false);
        // The only place archive bytes reach the `.partial` file: upstream
        // (tar, gzip) only buffers. Reached at least once per archive (the
        // last time from `finish`, before the fsync and rename).
        crate::failpoint!(crate::failpoint::STAGE_MID_WRITE);
        Ok(())
    }

    /// Stop before the next write would take the filesystem below
    /// `keep_free`: checked every [`SPACE_CHECK_EVERY`] bytes, with that
    /// much headroom, so a check between two writes is never late.
    fn check_free_space(&mut self, about_to_write: u64) -> io::Result<()> {
        if self.keep_free == 0 {
            return Ok(());
        }
        self.unchecked += about_to_write;
        if self.unchecked < SPACE_CHECK_EVERY {
            return Ok(());
        }
        // This write counts towards the next check: at most
        // SPACE_CHECK_EVERY bytes go out on the strength of this one.
        self.unchecked = about_to_write;
        let space = crate::reserve::space_of_file(&self.file)?;
        if space.available < self.keep_free.saturating_add(SPACE_CHECK_EVERY) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "stopped staging: the data filesystem is down to {} free, and {} is kept \
                     free for the recorder (shipper.disk_reserve_percent)",
                    crate::cli::human_bytes(space.available),
                    crate::cli::human_bytes(self.keep_free)
                ),
            ));
        }
        Ok(())
    }

    /// Everything written: the file, its SHA-256 and its size.
    pub(super) fn finish(mut self) -> io::Result<SinkResult> {
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
        // Whole encoded blocks go straight to the file, without a copy.
        if self.buf.is_empty() && data.len() >= CHUNK {
            let n = data.len().min(SPACE_CHECK_EVERY as usize);
            self.write_out(&data[..n])?;
            return Ok(n);
        }
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
