//! A single-member gzip writer that deflates on all cores and stores what
//! deflate cannot shrink.
//!
//! Input is cut into fixed blocks that worker threads encode independently
//! (as pigz does), so threads meet once per block, however many files the
//! block holds. Each block is encoded as runs: tar headers and padding
//! ([`Kind::Meta`]) are always deflated; file content ([`Kind::Content`]) is
//! split into pieces that are stored when their byte entropy says deflate
//! cannot win ([`super::entropy`]), deflated otherwise. The decision depends
//! on the bytes and on where content starts and ends, never on timing, and
//! blocks are written in order: same input, same bytes, whatever the thread
//! count.
//!
//! Every deflate run is primed with the 32 KiB of input before it (stored
//! bytes included, so match distances stay right) and ends with a sync flush,
//! byte-aligned and not final, so runs and blocks concatenate into one valid
//! deflate stream. Stored runs are raw stored blocks written by hand. A
//! block of nothing but zeros after a zero byte (sparse files, disk images)
//! is not encoded by its worker: consecutive ones are merged, in order, into
//! one run written as a single hand-made deflate block ([`super::zeros`]).
//! The stream ends with an empty final stored block. The CRC is computed by
//! the workers per block and combined in order.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress};

use super::entropy::{Run, plan_runs};
use super::zeros::write_zero_run;

/// Input per block (one job for a worker). Small enough to keep memory flat
/// (2 buffers per block not yet written, and the one being filled), large
/// enough that per-block costs (priming with 32 KiB, a fresh compressor)
/// stay a few percent.
pub(super) const BLOCK: usize = 512 * 1024;
/// Room for a block's encoding: stored whole, or deflated without gain
/// (plus headers and flushes); rarely exceeded, then grown 64 KiB at a time.
const OUT_CAPACITY: usize = BLOCK + BLOCK / 64 + 4096;
/// Deflate's window: how much earlier input primes a deflate run.
const WINDOW: usize = 32 * 1024;
/// Largest payload of one stored deflate block.
const MAX_STORED: usize = 65_535;

/// What a byte of the tar stream is: decides how it may be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Tar headers, padding, the end of the archive: always deflated.
    Meta,
    /// File content: stored or deflated by its entropy.
    Content,
}

struct Job {
    seq: u64,
    /// Where the encoded block goes (an empty, reused buffer).
    out: Vec<u8>,
    dictionary: Vec<u8>,
    data: Vec<u8>,
    /// Where each kind of bytes starts in `data`, in order.
    cuts: Vec<(usize, Kind)>,
}

struct Done {
    seq: u64,
    /// The CRC of the block's input.
    output: io::Result<Crc>,
    /// The block is all zeros after a zero byte: `out` is empty, the block
    /// joins the run of zeros being written.
    zeros: bool,
    out: Vec<u8>,
    /// The input buffer, returned for reuse.
    data: Vec<u8>,
}

pub(super) struct GzWriter<W: Write> {
    /// `None` only after `finish` took it.
    inner: Option<W>,
    crc: Crc,
    /// The block being filled: `block[..fill]` is input (its length stays
    /// [`BLOCK`] so content can be read straight into it).
    block: Vec<u8>,
    fill: usize,
    cuts: Vec<(usize, Kind)>,
    /// The last WINDOW bytes before the current block.
    window: Vec<u8>,
    jobs: Option<mpsc::SyncSender<Job>>,
    results: mpsc::Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    next_seq: u64,
    next_to_write: u64,
    /// Blocks sent and not yet written (with workers, or in `finished`).
    in_flight: usize,
    max_in_flight: usize,
    /// Encoded blocks waiting for the ones before them, with their CRCs
    /// and their length if they are zero blocks (0 if not).
    finished: BTreeMap<u64, (Vec<u8>, Crc, u64)>,
    /// Zero bytes of the zero blocks written so far and not yet encoded.
    zero_run: u64,
    /// A block failed (to encode, or to be written): it will never be
    /// written, so the blocks after it never will be either, and waiting
    /// for them would wait forever. Every later call fails at once.
    failed: bool,
    /// Input and output buffers, reused: memory stays flat.
    spare: Vec<Vec<u8>>,
    spare_out: Vec<Vec<u8>>,
}

impl<W: Write> GzWriter<W> {
    /// `threads` deflate workers; 0 = one per core (at most 8). The output
    /// is the same whatever the count.
    pub(super) fn new(mut inner: W, level: Compression, threads: usize) -> io::Result<Self> {
        // RFC 1952 header: no name, mtime 0 (deterministic), OS = Unix.
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])?;
        let threads = match threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .clamp(1, 8),
            n => n.clamp(1, 64),
        };
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let jobs = job_rx.clone();
            let done = done_tx.clone();
            let worker = std::thread::Builder::new()
                .name(format!("deflate-{i}"))
                .spawn(move || worker_loop(level, &jobs, &done))?;
            workers.push(worker);
        }
        Ok(GzWriter {
            inner: Some(inner),
            crc: Crc::new(),
            block: vec![0; BLOCK],
            fill: 0,
            cuts: Vec::new(),
            window: Vec::with_capacity(WINDOW),
            jobs: Some(job_tx),
            results: done_rx,
            workers,
            next_seq: 0,
            next_to_write: 0,
            in_flight: 0,
            // One per worker and one queued (a worker done early takes it
            // instead of waiting for a slow block before it: measured
            // faster on text under load, for 1 MiB). Counted until
            // written, so however the workers are scheduled, no more are
            // held (memory stays flat).
            max_in_flight: threads + 1,
            finished: BTreeMap::new(),
            zero_run: 0,
            failed: false,
            spare: Vec::new(),
            spare_out: Vec::new(),
        })
    }

    /// Room for up to `max` (> 0) bytes of file content in the current
    /// block: read into it, then [`Self::commit_content`] what was read.
    pub(super) fn content_space(&mut self, max: usize) -> io::Result<&mut [u8]> {
        if self.fill == BLOCK {
            self.send_block()?;
        }
        self.mark(Kind::Content);
        let end = BLOCK.min(self.fill.saturating_add(max));
        Ok(&mut self.block[self.fill..end])
    }

    /// `n` bytes of the space [`Self::content_space`] gave now hold content.
    pub(super) fn commit_content(&mut self, n: usize) {
        self.fill = (self.fill + n).min(BLOCK);
    }

    /// Complete the stream and return the inner writer.
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.send_block()?;
        while self.in_flight > 0 {
            self.receive_one()?;
        }
        self.write_zero_run()?;
        let (sum, amount) = (self.crc.sum(), self.crc.amount());
        let out = self.out()?;
        // An empty final stored block ends the deflate stream.
        out.write_all(&[1, 0, 0, 0xff, 0xff])?;
        out.write_all(&sum.to_le_bytes())?;
        out.write_all(&amount.to_le_bytes())?;
        out.flush()?;
        self.stop_workers();
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    fn mark(&mut self, kind: Kind) {
        if self.cuts.last().map(|c| c.1) != Some(kind) {
            self.cuts.push((self.fill, kind));
        }
    }

    fn out(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    fn stop_workers(&mut self) {
        self.jobs = None; // closes the channel: workers return
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Hand the current block to a worker (waiting while enough are in
    /// flight) and start the next one.
    fn send_block(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("the gzip stream failed earlier"));
        }
        if self.fill == 0 {
            return Ok(());
        }
        while self.in_flight >= self.max_in_flight {
            self.receive_one()?;
        }
        let mut next = self.spare.pop().unwrap_or_default();
        next.resize(BLOCK, 0);
        let mut data = std::mem::replace(&mut self.block, next);
        data.truncate(self.fill);
        self.fill = 0;
        let dictionary = self.window.clone();
        // The next block's window: the tail of this one (and of the one
        // before, when this one is short).
        if data.len() >= WINDOW {
            self.window.clear();
            self.window.extend_from_slice(&data[data.len() - WINDOW..]);
        } else {
            let keep = (WINDOW - data.len()).min(self.window.len());
            self.window.drain(..self.window.len() - keep);
            self.window.extend_from_slice(&data);
        }
        // Allocated here, at full size: workers allocate nothing big (in
        // glibc a worker's allocations would stay in its own arena).
        let mut out = self
            .spare_out
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(OUT_CAPACITY));
        out.clear();
        let job = Job {
            seq: self.next_seq,
            out,
            dictionary,
            data,
            cuts: std::mem::take(&mut self.cuts),
        };
        self.next_seq += 1;
        self.in_flight += 1;
        let sent = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("deflate workers stopped"))
            .and_then(|jobs| {
                jobs.send(job)
                    .map_err(|_| io::Error::other("deflate worker died"))
            });
        // Counted in flight but never to come back: fail from now on.
        self.failed |= sent.is_err();
        sent
    }

    fn receive_one(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("the gzip stream failed earlier"));
        }
        let result = self.receive_and_write();
        self.failed = result.is_err();
        result
    }

    fn receive_and_write(&mut self) -> io::Result<()> {
        let done = self
            .results
            .recv()
            .map_err(|_| io::Error::other("deflate worker died"))?;
        let zeros = if done.zeros {
            done.data.len() as u64
        } else {
            0
        };
        self.spare.push(done.data);
        // Blocks arrive in any order; they are written (and their CRCs
        // combined) in order.
        let crc = done.output?;
        self.finished.insert(done.seq, (done.out, crc, zeros));
        self.write_ready()
    }

    /// Write finished blocks that are next in order; zero blocks extend the
    /// run of zeros, written before the next block that is not one.
    fn write_ready(&mut self) -> io::Result<()> {
        while let Some((out, crc, zeros)) = self.finished.remove(&self.next_to_write) {
            self.crc.combine(&crc);
            if zeros > 0 {
                self.zero_run += zeros;
            } else {
                self.write_zero_run()?;
                self.out()?.write_all(&out)?;
            }
            self.spare_out.push(out);
            self.next_to_write += 1;
            self.in_flight -= 1;
        }
        Ok(())
    }

    fn write_zero_run(&mut self) -> io::Result<()> {
        let run = std::mem::take(&mut self.zero_run);
        if run > 0 {
            write_zero_run(self.out()?, run)?;
        }
        Ok(())
    }
}

impl<W: Write> Drop for GzWriter<W> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

/// Writes are tar's own bytes (headers, padding, the end blocks).
impl<W: Write> Write for GzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.fill == BLOCK {
            self.send_block()?;
        }
        self.mark(Kind::Meta);
        let n = buf.len().min(BLOCK - self.fill);
        self.block[self.fill..self.fill + n].copy_from_slice(&buf[..n]);
        self.fill += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Deliberately not a deflate flush: the stream is completed by
        // `finish`.
        Ok(())
    }
}

/// A worker's compressor, and the CRC of a full block of zeros (sparse
/// files have thousands).
struct Encoder {
    deflate: Compress,
    zero_crc: Option<Crc>,
}

fn worker_loop(
    level: Compression,
    jobs: &std::sync::Mutex<mpsc::Receiver<Job>>,
    done: &mpsc::Sender<Done>,
) {
    let mut encoder = Encoder::new(level);
    loop {
        // Hold the lock only to take a job, not while compressing.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        let mut out = std::mem::take(&mut job.out);
        let zeros = job.dictionary.last() == Some(&0) && all_zero(&job.data);
        let output = if zeros {
            Ok(encoder.zero_crc(job.data.len()))
        } else {
            // A panic must come back as this block's error: the writer
            // waits for every block in order, and would wait for this one
            // forever while the other workers live on.
            let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                encoder.encode(&job, &mut out)
            }));
            encoded.unwrap_or_else(|_| {
                encoder = Encoder::new(level);
                Err(io::Error::other("a deflate worker panicked"))
            })
        };
        if done
            .send(Done {
                seq: job.seq,
                output,
                zeros,
                out,
                data: job.data,
            })
            .is_err()
        {
            return;
        }
    }
}

impl Encoder {
    fn new(level: Compression) -> Self {
        Encoder {
            deflate: Compress::new(level, false),
            zero_crc: None,
        }
    }

    /// The CRC of `len` zero bytes.
    fn zero_crc(&mut self, len: usize) -> Crc {
        let zeros_of = |mut len: usize| {
            const ZEROS: [u8; 4096] = [0; 4096];
            let mut crc = Crc::new();
            while len > 0 {
                let k = len.min(ZEROS.len());
                crc.update(&ZEROS[..k]);
                len -= k;
            }
            crc
        };
        let mut copy = Crc::new();
        if len == BLOCK {
            copy.combine(self.zero_crc.get_or_insert_with(|| zeros_of(BLOCK)));
        } else {
            copy.combine(&zeros_of(len));
        }
        copy
    }

    /// Encode the job's block into `out`; the CRC of its input.
    fn encode(&mut self, job: &Job, out: &mut Vec<u8>) -> io::Result<Crc> {
        let mut crc = Crc::new();
        crc.update(&job.data);
        let runs = plan_runs(&job.data, &job.cuts);
        self.encode_runs(&job.dictionary, &job.data, &runs, out)?;
        Ok(crc)
    }

    /// Encode `data` run by run. The compressor's history must always end
    /// with exactly the bytes before the run it compresses: primed from the
    /// block's dictionary on the first deflate run, then fed the stored
    /// bytes in between (deflate only looks 32 KiB back).
    fn encode_runs(
        &mut self,
        dictionary: &[u8],
        data: &[u8],
        runs: &[Run],
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        // How far into `data` the compressor's history reaches; None until
        // this block's first deflate run.
        let mut history_end: Option<usize> = None;
        for run in runs {
            let bytes = &data[run.start..run.end];
            if run.store {
                write_stored(out, bytes);
                continue;
            }
            let gap_from = match history_end {
                None => {
                    self.start_afresh()?;
                    // Dictionary bytes still within WINDOW of the run.
                    let from_dict = WINDOW.saturating_sub(run.start).min(dictionary.len());
                    self.set_dictionary(&dictionary[dictionary.len() - from_dict..])?;
                    run.start.saturating_sub(WINDOW)
                }
                Some(end) => end.max(run.start.saturating_sub(WINDOW)),
            };
            self.set_dictionary(&data[gap_from..run.start])?;
            self.deflate_sync(bytes, out)?;
            history_end = Some(run.end);
        }
        Ok(())
    }

    /// Put the compressor in the state of a new one, without allocating
    /// one per block (in glibc, a worker's freed compressors stay in its
    /// own arena, and their churn raised peak RSS by megabytes).
    ///
    /// A reset alone is not enough: zlib's match search may peek at window
    /// bytes past the input (the match is cut back, but which one wins may
    /// differ), and a reset keeps the last block's bytes there, so a
    /// block's bytes would depend on which blocks its worker saw before. A
    /// new compressor's window is zeros: so is this one's after zeros are
    /// loaded through the whole of it (a dictionary as long as the window
    /// replaces the first half, the next one fills the second).
    fn start_afresh(&mut self) -> io::Result<()> {
        // Chunks shorter than the window are appended by every zlib (one
        // as long as it may replace the history instead, zlib-rs at twice
        // the window, C zlib at once): four fill the window's two halves.
        static ZEROS: [u8; WINDOW / 2] = [0; WINDOW / 2];
        self.deflate.reset();
        for _ in 0..4 {
            self.set_dictionary(&ZEROS)?;
        }
        self.deflate.reset();
        Ok(())
    }

    fn set_dictionary(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !bytes.is_empty() {
            self.deflate
                .set_dictionary(bytes)
                .map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// Deflate `data` and end byte-aligned with a sync flush.
    fn deflate_sync(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve_exact(64 * 1024);
            }
            let before_in = self.deflate.total_in();
            let before_out = out.len();
            self.deflate
                .compress_vec(&data[consumed..], out, FlushCompress::Sync)
                .map_err(io::Error::other)?;
            consumed += (self.deflate.total_in() - before_in) as usize;
            // Done once all input is in and the flush left room to spare.
            if consumed == data.len() && out.len() < out.capacity() {
                return Ok(());
            }
            if out.len() == before_out && consumed < data.len() && out.len() < out.capacity() {
                return Err(io::Error::other("deflate made no progress"));
            }
        }
    }
}

/// Raw stored deflate blocks (not final) holding `data`.
fn write_stored(out: &mut Vec<u8>, data: &[u8]) {
    for block in data.chunks(MAX_STORED) {
        let [l0, l1] = (block.len() as u16).to_le_bytes();
        // BFINAL=0, BTYPE=00 (stored), then LEN and NLEN.
        out.extend_from_slice(&[0, l0, l1, !l0, !l1]);
        out.extend_from_slice(block);
    }
}

fn all_zero(data: &[u8]) -> bool {
    // Word-wise: this runs over every block of a sparse file.
    let mut words = data.chunks_exact(64);
    words.all(|w| w.iter().fold(0u8, |acc, &b| acc | b) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
#[path = "gzip_tests.rs"]
mod tests;
