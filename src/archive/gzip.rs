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
/// (about ten block-sized buffers are live), large enough that per-block
/// costs (priming with 32 KiB, a fresh compressor) stay a few percent.
/// 256 KiB measured no lower peak RSS and twice the CPU on a sparse file.
pub(super) const BLOCK: usize = 512 * 1024;
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
    in_flight: usize,
    max_in_flight: usize,
    /// Encoded blocks waiting for the ones before them, with their CRCs
    /// and their length if they are zero blocks (0 if not).
    finished: BTreeMap<u64, (Vec<u8>, Crc, u64)>,
    /// Zero bytes of the zero blocks written so far and not yet encoded.
    zero_run: u64,
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
            max_in_flight: threads + 1,
            finished: BTreeMap::new(),
            zero_run: 0,
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
        let mut out = self.spare_out.pop().unwrap_or_default();
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
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("deflate workers stopped"))?
            .send(job)
            .map_err(|_| io::Error::other("deflate worker died"))
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let done = self
            .results
            .recv()
            .map_err(|_| io::Error::other("deflate worker died"))?;
        self.in_flight -= 1;
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
    level: Compression,
    deflate: Compress,
    zero_crc: Option<Crc>,
}

fn worker_loop(
    level: Compression,
    jobs: &std::sync::Mutex<mpsc::Receiver<Job>>,
    done: &mpsc::Sender<Done>,
) {
    let mut encoder = Encoder {
        level,
        deflate: Compress::new(level, false),
        zero_crc: None,
    };
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
            encoder.encode(&job, &mut out)
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
        // Room for the block stored whole, so the buffer is never regrown.
        out.reserve(data.len() + data.len() / 16 + 1024);
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
                    // A fresh compressor, not a reset one: zlib's match
                    // search may peek at stale window bytes past the input
                    // (the match is cut back, but which one wins may
                    // differ), so a reused one would make a block's bytes
                    // depend on which blocks that worker saw before.
                    self.deflate = Compress::new(self.level, false);
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
                out.reserve(out.capacity().max(64 * 1024));
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
mod tests {
    use super::*;
    use crate::archive::tests::random_bytes;
    use std::io::Read;

    fn text(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(
                format!("{i},arm{},torque={:.4}\n", i % 7, (i % 997) as f64 / 13.0).as_bytes(),
            );
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn put_content(gz: &mut GzWriter<Vec<u8>>, mut data: &[u8]) {
        while !data.is_empty() {
            let space = gz.content_space(data.len()).expect("space");
            let n = space.len().min(data.len()).min(7000); // odd read sizes
            space[..n].copy_from_slice(&data[..n]);
            gz.commit_content(n);
            data = &data[n..];
        }
    }

    fn decode(gz: &[u8]) -> Vec<u8> {
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut decoded)
            .expect("valid gzip");
        decoded
    }

    /// Headers and content interleaved as tar does, with content that is
    /// stored (noise), deflated (text) and zero, in pieces that straddle
    /// blocks: stored bytes sit between deflate runs that must still find
    /// matches across them.
    fn encode(parts: &[(Kind, Vec<u8>)], threads: usize) -> Vec<u8> {
        let mut gz = GzWriter::new(Vec::new(), Compression::new(6), threads).expect("new");
        for (kind, data) in parts {
            match kind {
                Kind::Meta => gz.write_all(data).expect("write"),
                Kind::Content => put_content(&mut gz, data),
            }
        }
        gz.finish().expect("finish")
    }

    /// (kind, bytes, stored?) for 100 files as tar lays them out.
    fn sample_parts() -> Vec<(Kind, Vec<u8>, bool)> {
        let mut parts = Vec::new();
        for i in 0..100u64 {
            let mut header = format!("header of file {i:05} mode 0644 uid 1000").into_bytes();
            header.resize(512, 0);
            parts.push((Kind::Meta, header, false));
            let (content, noise) = match i % 5 {
                0 => (random_bytes(4096, i + 1), true),
                1 => (text(3000 + (i as usize * 37) % 5000), false),
                2 => (random_bytes(70_000 + i as usize, i + 7), true),
                3 if i < 20 => (vec![0u8; 2 * BLOCK + 1000], false),
                _ => (text(50_000), false),
            };
            let pad = (512 - content.len() % 512) % 512;
            parts.push((Kind::Content, content, noise));
            parts.push((Kind::Meta, vec![0u8; pad], false));
        }
        parts
    }

    #[test]
    fn mixed_stream_round_trips_the_same_for_any_thread_count() {
        let parts = sample_parts();
        let kinds: Vec<_> = parts.iter().map(|p| (p.0, p.1.clone())).collect();
        let one = encode(&kinds, 1);
        assert_eq!(one, encode(&kinds, 3), "output depends on the threads");
        assert_eq!(one, encode(&kinds, 0), "output depends on timing");
        let expected: Vec<u8> = parts.iter().flat_map(|p| p.1.clone()).collect();
        assert_eq!(decode(&one), expected);
        // Noise is stored, the rest deflated about as well as gzip does.
        let noise: usize = parts.iter().filter(|p| p.2).map(|p| p.1.len()).sum();
        let rest = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
            for p in parts.iter().filter(|p| !p.2) {
                e.write_all(&p.1).expect("w");
            }
            e.finish().expect("f").len()
        };
        assert!(
            one.len() < noise + noise / 500 + rest * 11 / 10,
            "{} vs {noise} + {rest}",
            one.len()
        );
    }

    #[test]
    fn priming_keeps_the_ratio_of_one_sequential_stream() {
        let data = text(3 * BLOCK + 17);
        let seq = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
            e.write_all(&data).expect("w");
            e.finish().expect("f").len()
        };
        let par = encode(&[(Kind::Content, data.clone())], 0);
        assert_eq!(decode(&par), data);
        assert!(
            (par.len() as f64) < seq as f64 * 1.01,
            "parallel {} vs sequential {seq}",
            par.len()
        );
    }

    #[test]
    fn zero_blocks_become_one_run_as_small_as_gzip_makes_it() {
        // A header, then zeros over many blocks (a sparse file), then text.
        let header = b"header".to_vec();
        let zeros = vec![0u8; 40 * BLOCK + 3];
        let tail = text(3000);
        let parts = [
            (Kind::Meta, header.clone()),
            (Kind::Content, zeros.clone()),
            (Kind::Content, tail.clone()),
        ];
        let out = encode(&parts, 2);
        assert_eq!(decode(&out), [header, zeros.clone(), tail].concat());
        assert_eq!(out, encode(&parts, 1), "output depends on the threads");
        assert_eq!(out, encode(&parts, 0), "output depends on timing");
        // gzip -6 gets 1032:1 on zeros; per-block headers and flushes
        // would add 4%.
        let gzip = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
            e.write_all(&zeros).expect("w");
            e.finish().expect("f").len()
        };
        let only_zeros = encode(&[(Kind::Content, zeros)], 2);
        assert!(
            only_zeros.len() <= gzip + gzip / 100,
            "{} vs gzip {gzip}",
            only_zeros.len()
        );
    }

    #[test]
    fn empty_stream_is_valid() {
        let gz = GzWriter::new(Vec::new(), Compression::new(6), 0).expect("new");
        assert!(decode(&gz.finish().expect("finish")).is_empty());
    }
}
