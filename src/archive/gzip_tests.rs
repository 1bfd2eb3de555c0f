//! Tests of the parallel gzip writer (src/archive/gzip.rs).

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

/// Text of words from a small vocabulary: many equal candidates for each
/// match, so which one wins depends on every byte the search looks at.
fn wordy(n: usize, mut seed: u64) -> Vec<u8> {
    const WORDS: [&str; 8] = ["arm", "joint", "torque", "0.1", "0.11", "temp", ",", "\n"];
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(WORDS[(seed % 8) as usize].as_bytes());
    }
    v.truncate(n);
    v
}

#[test]
fn a_reused_compressor_encodes_every_block_as_a_new_one_does() {
    // Long blocks leave their bytes in the window; the short ones after
    // them end where the match search peeks past the input.
    let jobs: Vec<Job> = (0..120u64)
        .map(|i| {
            let len = if i % 2 == 0 {
                60_000 + (i as usize * 997) % 9000
            } else {
                200 + (i as usize * 7919) % 6000
            };
            let data = wordy(len, i + 1);
            let cuts = if i % 3 == 0 {
                vec![(0, Kind::Meta), (100, Kind::Content)]
            } else {
                vec![(0, Kind::Content)]
            };
            Job {
                seq: i,
                out: Vec::new(),
                // Short blocks after a whole window of dictionary end in
                // the window's second half, the others in its first.
                dictionary: wordy(
                    if i % 4 == 1 {
                        WINDOW
                    } else {
                        (i as usize * 131) % WINDOW
                    },
                    i + 1000,
                ),
                data,
                cuts,
            }
        })
        .collect();
    let encode_with = |encoder: &mut Encoder, job: &Job| {
        let mut out = Vec::new();
        encoder.encode(job, &mut out).expect("encode");
        out
    };
    // Each level range has its own match finder (zlib's fast, medium and
    // slow strategies): `gzip_level` may pick any.
    // `gzip_level` 6 is level 7, tested on every block; the others on a
    // third of them (debug builds deflate slowly).
    for (level, count) in [(7, jobs.len()), (1, 40), (4, 40), (9, 40)] {
        let level = Compression::new(level);
        let jobs = &jobs[..count];
        let new: Vec<Vec<u8>> = jobs
            .iter()
            .map(|j| encode_with(&mut Encoder::new(level), j))
            .collect();
        let mut reused = Encoder::new(level);
        for (job, expected) in jobs.iter().zip(&new).chain(jobs.iter().zip(&new).rev()) {
            assert!(
                encode_with(&mut reused, job) == *expected,
                "block {} differs at {level:?}",
                job.seq
            );
        }
    }
}

#[test]
fn blocks_are_counted_until_written_and_bounded() {
    let mut gz = GzWriter::new(Vec::new(), Compression::new(6), 2).expect("new");
    put_content(&mut gz, &text(30 * BLOCK));
    // Every input buffer, and every encoded one, ever allocated is either
    // in use or spare: however the workers were scheduled, no more than
    // the bound were waiting to be written.
    assert!(gz.max_in_flight <= 3, "each block in flight is 1 MiB more");
    assert!(gz.in_flight <= gz.max_in_flight);
    assert!(gz.spare_out.len() + gz.in_flight <= gz.max_in_flight);
    assert!(gz.spare.len() + gz.in_flight <= gz.max_in_flight + 1);
    assert!(gz.finished.len() < gz.max_in_flight);
    let out = gz.finish().expect("finish");
    assert_eq!(decode(&out), text(30 * BLOCK));
}

/// A sink that takes `left` bytes, then reports a full disk.
struct FillsUp {
    left: usize,
}

impl Write for FillsUp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.left {
            return Err(io::ErrorKind::StorageFull.into());
        }
        self.left -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_write_fails_every_later_call_instead_of_waiting_forever() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let noise = random_bytes(40 * BLOCK, 3);
        let mut gz =
            GzWriter::new(FillsUp { left: 3 * BLOCK }, Compression::new(6), 2).expect("new");
        let mut first_error = None;
        for piece in noise.chunks(BLOCK / 3) {
            let written = gz.content_space(piece.len()).map(|space| {
                let n = space.len().min(piece.len());
                space[..n].copy_from_slice(&piece[..n]);
                n
            });
            match written {
                Ok(n) => gz.commit_content(n),
                Err(e) => {
                    first_error = Some(e.kind());
                    break;
                }
            }
        }
        // What tar's Drop does after an error: write its end blocks.
        let later = gz
            .write_all(&[0u8; 1024])
            .and_then(|()| gz.finish().map(drop));
        let _ = tx.send((first_error, later.is_err()));
    });
    let (first_error, later_failed) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the writer hung after a failed write");
    assert_eq!(first_error, Some(io::ErrorKind::StorageFull));
    assert!(later_failed, "calls after a failure must fail too");
}
