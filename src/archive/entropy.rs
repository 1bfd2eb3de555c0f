//! Stored or deflated, chunk by chunk: the reader measures each chunk's
//! byte entropy as it reads it, and the gzip writer stores the chunks that
//! deflate cannot shrink (video, already-compressed files).

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::rc::Rc;

use super::CHUNK;
use super::gzip::GzWriter;

/// Chunks above this byte entropy (bits per byte, max 8) are stored as is:
/// deflate cannot win anything measurable on them.
const STORE_ENTROPY_BITS: f64 = 7.95;

pub(super) enum ReadFailure {
    Io(io::Error),
    Shrunk,
}

/// Reads exactly `remaining` bytes of a file in large chunks, and for each
/// chunk tells the gzip writer (through `store_hint`) whether it is worth
/// compressing. Errors are kept aside so the caller can report them with
/// their real cause.
pub(super) struct ChunkReader<'a> {
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

impl<'a> ChunkReader<'a> {
    /// A reader of the `size` bytes of `file`; `progress_base` is what
    /// earlier files contributed to the progress count.
    pub(super) fn new(
        file: File,
        size: u64,
        store_hint: &'a Cell<bool>,
        progress_base: u64,
        on_progress: &'a mut dyn FnMut(u64),
    ) -> Self {
        ChunkReader {
            file,
            buf: vec![0u8; CHUNK.min(size as usize + 1).max(1)],
            start: 0,
            end: 0,
            remaining: size,
            store_hint,
            error: None,
            progress_base,
            on_progress,
        }
    }

    /// Why reading failed, if it did.
    pub(super) fn take_error(&mut self) -> Option<ReadFailure> {
        self.error.take()
    }
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

/// The gzip writer, switched between deflating and storing by the hint
/// the reader sets for the chunk being written.
pub(super) struct HintedGz<W: Write> {
    gz: GzWriter<W>,
    store_hint: Rc<Cell<bool>>,
}

impl<W: Write> HintedGz<W> {
    pub(super) fn new(gz: GzWriter<W>, store_hint: Rc<Cell<bool>>) -> Self {
        HintedGz { gz, store_hint }
    }

    /// Complete the gzip stream and return the inner writer.
    pub(super) fn finish(self) -> io::Result<W> {
        self.gz.finish()
    }
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
    use crate::archive::tests::random_bytes;

    #[test]
    fn entropy_separates_text_from_random() {
        let text = "2026-11-27T10:00:00Z arm=3 joint=2 torque=0.113 temp=41.2\n".repeat(5000);
        assert!(byte_entropy(text.as_bytes()) < 6.0);
        assert!(byte_entropy(&random_bytes(CHUNK, 7)) > STORE_ENTROPY_BITS);
    }
}
