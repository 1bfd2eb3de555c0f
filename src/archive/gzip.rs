//! A single-member gzip writer that deflates compressible input on all
//! cores and writes incompressible input as raw stored blocks.
//!
//! Compressible input is cut into blocks that worker threads deflate
//! independently (as pigz does): each block's compressor is primed with the
//! 32 KiB of input before it, so matches still reach back across the cut, and
//! each block ends with a sync flush (byte-aligned, not final), so the blocks
//! concatenate into one valid deflate stream. Results are written in order,
//! so the output does not depend on thread timing: same input, same bytes.
//!
//! Stored blocks are written by hand rather than by switching the
//! compressor's level, which not every backend supports mid-stream. The
//! stream ends with an empty final stored block.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress};

/// Input per compression job. Small enough to keep memory flat (a few
/// blocks in flight), large enough that the per-block flush costs nothing.
const BLOCK: usize = 512 * 1024;
/// Deflate's window: how much earlier input primes the next block.
const WINDOW: usize = 32 * 1024;
/// Largest payload of one stored deflate block.
const MAX_STORED: usize = 65_535;

struct Job {
    seq: u64,
    dictionary: Vec<u8>,
    data: Vec<u8>,
}

struct Done {
    seq: u64,
    output: io::Result<Vec<u8>>,
    /// The input buffer, returned for reuse.
    data: Vec<u8>,
}

pub struct GzWriter<W: Write> {
    /// `None` only after `finish` took it.
    inner: Option<W>,
    crc: Crc,
    storing: bool,
    /// Input staged for the next block (compress mode) or stored blocks.
    pending: Vec<u8>,
    /// The last WINDOW bytes of input, to prime the next block.
    window: Vec<u8>,
    jobs: Option<mpsc::SyncSender<Job>>,
    results: mpsc::Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    next_seq: u64,
    next_to_write: u64,
    in_flight: usize,
    max_in_flight: usize,
    finished: BTreeMap<u64, Vec<u8>>,
    spare: Vec<Vec<u8>>,
}

impl<W: Write> GzWriter<W> {
    /// `threads` deflate workers; 0 = one per core (at most 8). The output
    /// is the same whatever the count.
    pub fn new(mut inner: W, level: Compression, threads: usize) -> io::Result<Self> {
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
                .spawn(move || deflate_worker(level, &jobs, &done))?;
            workers.push(worker);
        }
        Ok(GzWriter {
            inner: Some(inner),
            crc: Crc::new(),
            storing: false,
            pending: Vec::with_capacity(BLOCK),
            window: Vec::with_capacity(WINDOW),
            jobs: Some(job_tx),
            results: done_rx,
            workers,
            next_seq: 0,
            next_to_write: 0,
            in_flight: 0,
            max_in_flight: threads + 1,
            finished: BTreeMap::new(),
            spare: Vec::new(),
        })
    }

    /// Switch between deflating and storing for the bytes written next.
    pub fn set_storing(&mut self, store: bool) -> io::Result<()> {
        if store == self.storing {
            return Ok(());
        }
        self.flush_pending()?;
        // Stored bytes must follow every compressed block before them.
        self.wait_all()?;
        self.storing = store;
        Ok(())
    }

    /// Complete the stream and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_pending()?;
        self.wait_all()?;
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

    fn remember(&mut self, data: &[u8]) {
        if data.len() >= WINDOW {
            self.window.clear();
            self.window.extend_from_slice(&data[data.len() - WINDOW..]);
        } else {
            let keep = (WINDOW - data.len()).min(self.window.len());
            self.window.drain(..self.window.len() - keep);
            self.window.extend_from_slice(data);
        }
    }

    /// Hand the staged input on: as stored blocks, or as a deflate job.
    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(
            &mut self.pending,
            self.spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(BLOCK)),
        );
        if self.storing {
            for block in data.chunks(MAX_STORED) {
                let [l0, l1] = (block.len() as u16).to_le_bytes();
                // BFINAL=0, BTYPE=00 (stored), then LEN and NLEN.
                let out = self.out()?;
                out.write_all(&[0, l0, l1, !l0, !l1])?;
                out.write_all(block)?;
            }
            self.remember(&data);
            let mut data = data;
            data.clear();
            self.spare.push(data);
            return Ok(());
        }
        while self.in_flight >= self.max_in_flight {
            self.receive_one()?;
        }
        let job = Job {
            seq: self.next_seq,
            dictionary: self.window.clone(),
            data,
        };
        self.remember(&job.data);
        self.next_seq += 1;
        self.in_flight += 1;
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("deflate workers stopped"))?
            .send(job)
            .map_err(|_| io::Error::other("deflate worker died"))?;
        self.write_ready()
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let done = self
            .results
            .recv()
            .map_err(|_| io::Error::other("deflate worker died"))?;
        self.in_flight -= 1;
        let mut data = done.data;
        data.clear();
        self.spare.push(data);
        self.finished.insert(done.seq, done.output?);
        self.write_ready()
    }

    /// Write finished blocks that are next in order.
    fn write_ready(&mut self) -> io::Result<()> {
        while let Some(out) = self.finished.remove(&self.next_to_write) {
            self.out()?.write_all(&out)?;
            self.next_to_write += 1;
        }
        Ok(())
    }

    fn wait_all(&mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            self.receive_one()?;
        }
        self.write_ready()
    }
}

impl<W: Write> Drop for GzWriter<W> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

impl<W: Write> Write for GzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.pending.len();
        let n = buf.len().min(room);
        self.pending.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        if self.pending.len() == BLOCK {
            self.flush_pending()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Deliberately not a deflate flush: the stream is completed by
        // `finish`.
        Ok(())
    }
}

fn deflate_worker(
    level: Compression,
    jobs: &std::sync::Mutex<mpsc::Receiver<Job>>,
    done: &mpsc::Sender<Done>,
) {
    let mut deflate = Compress::new(level, false);
    loop {
        // Hold the lock only to take a job, not while compressing.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let output = deflate_block(&mut deflate, &job.dictionary, &job.data);
        if done
            .send(Done {
                seq: job.seq,
                output,
                data: job.data,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Deflate one block on a fresh state primed with `dictionary`, ending
/// byte-aligned with a sync flush.
fn deflate_block(deflate: &mut Compress, dictionary: &[u8], data: &[u8]) -> io::Result<Vec<u8>> {
    deflate.reset();
    if !dictionary.is_empty() {
        deflate
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut consumed = 0usize;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let before_in = deflate.total_in();
        let before_out = out.len();
        deflate
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        consumed += (deflate.total_in() - before_in) as usize;
        // Done once all input is in and the flush left room to spare.
        if consumed == data.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        if out.len() == before_out && consumed < data.len() && out.len() < out.capacity() {
            return Err(io::Error::other("deflate made no progress"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn noise(n: usize) -> Vec<u8> {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn mixed_modes_round_trip_deterministically() {
        let parts: Vec<(bool, Vec<u8>)> = vec![
            (false, text(3 * BLOCK + 17)),
            (true, noise(BLOCK + 5)),
            (false, text(1000)),
            (true, noise(70_000)),
            (false, text(2 * BLOCK)),
        ];
        let encode = || {
            let mut gz = GzWriter::new(Vec::new(), Compression::new(6), 0).expect("new");
            for (store, data) in &parts {
                gz.set_storing(*store).expect("mode");
                // Odd write sizes, as tar produces.
                for piece in data.chunks(8191) {
                    gz.write_all(piece).expect("write");
                }
            }
            gz.finish().expect("finish")
        };
        let a = encode();
        assert_eq!(a, encode(), "output depends on thread timing");
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut decoded)
            .expect("valid gzip");
        let expected: Vec<u8> = parts.iter().flat_map(|p| p.1.clone()).collect();
        assert_eq!(decoded, expected);
        // Priming keeps the ratio close to one sequential stream.
        let seq = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
            e.write_all(&text(3 * BLOCK + 17)).expect("w");
            e.finish().expect("f").len()
        };
        let par = {
            let mut gz = GzWriter::new(Vec::new(), Compression::new(6), 0).expect("new");
            gz.write_all(&text(3 * BLOCK + 17)).expect("w");
            gz.finish().expect("f").len()
        };
        assert!(
            (par as f64) < seq as f64 * 1.01,
            "parallel {par} vs sequential {seq}"
        );
    }

    #[test]
    fn empty_stream_is_valid() {
        let gz = GzWriter::new(Vec::new(), Compression::new(6), 0).expect("new");
        let out = gz.finish().expect("finish");
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut decoded)
            .expect("valid gzip");
        assert!(decoded.is_empty());
    }
}
