//! Stored or deflated: how a block of the tar stream is cut into runs.
//!
//! Tar headers and padding are always deflated (they are mostly zeros and
//! repeat from file to file). File content is looked at in pieces of up to
//! [`PIECE`] bytes: a piece whose byte entropy is as high as random data's
//! (video, JPEG frames, already-compressed files) is stored, since deflate
//! cannot shrink it measurably; anything else is deflated. Adjacent pieces
//! with the same decision form one run.

use super::gzip::Kind;

/// Content is judged in pieces of this size.
const PIECE: usize = 64 * 1024;
/// Content shorter than this is always deflated: too few bytes to judge,
/// and too few to matter.
const MIN_STORE: usize = 1024;
/// A piece is stored when its entropy estimate (bits per byte, max 8) is
/// within this much of what uniformly random bytes of its size give.
const STORE_MARGIN_BITS: f64 = 0.05;

/// A range of a block and how it is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) store: bool,
}

/// The runs of `data`, given where each kind of bytes starts (`cuts`, in
/// order; bytes before the first cut count as [`Kind::Meta`]).
pub(super) fn plan_runs(data: &[u8], cuts: &[(usize, Kind)]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut push = |start: usize, end: usize, store: bool| {
        if start == end {
            return;
        }
        match runs.last_mut() {
            Some(last) if last.store == store && last.end == start => last.end = end,
            _ => runs.push(Run { start, end, store }),
        }
    };
    let first = cuts.first().map_or(data.len(), |c| c.0);
    push(0, first, false);
    for (i, &(start, kind)) in cuts.iter().enumerate() {
        let end = cuts.get(i + 1).map_or(data.len(), |c| c.0);
        match kind {
            Kind::Meta => push(start, end, false),
            Kind::Content => {
                let mut at = start;
                while at < end {
                    let piece_end = end.min(at + PIECE);
                    push(at, piece_end, looks_random(&data[at..piece_end]));
                    at = piece_end;
                }
            }
        }
    }
    runs
}

/// Whether deflate would not shrink `piece` measurably: its byte entropy is
/// as high as that of random bytes of the same size (a sample of n bytes
/// of uniform noise shows about 8 - 255 / (2 n ln 2) bits per byte).
pub(super) fn looks_random(piece: &[u8]) -> bool {
    if piece.len() < MIN_STORE {
        return false;
    }
    let (entropy, sampled) = byte_entropy(piece);
    let expected = 8.0 - 255.0 / (2.0 * sampled as f64 * std::f64::consts::LN_2);
    entropy > expected - STORE_MARGIN_BITS
}

/// Shannon entropy in bits per byte, estimated from every fourth 4 KiB
/// block (a quarter of the cost, and plenty of samples), and how many
/// bytes it looked at.
fn byte_entropy(data: &[u8]) -> (f64, usize) {
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
    let entropy = (0..256)
        .map(|i| counts[0][i] + counts[1][i] + counts[2][i] + counts[3][i])
        .filter(|&c| c > 0)
        .map(|c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    (entropy, sampled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tests::random_bytes;

    #[test]
    fn random_is_stored_and_text_deflated_at_every_size() {
        let text = "2026-11-27T10:00:00Z arm=3 joint=2 torque=0.113 temp=41.2\n".repeat(5000);
        for n in [1024, 4096, 10_000, PIECE] {
            assert!(!looks_random(&text.as_bytes()[..n]), "text of {n} bytes");
            for seed in 1..20 {
                assert!(looks_random(&random_bytes(n, seed)), "noise of {n} bytes");
            }
        }
        assert!(!looks_random(&random_bytes(MIN_STORE - 1, 3)));
        assert!(!looks_random(&vec![0u8; PIECE]));
    }

    #[test]
    fn runs_merge_and_headers_are_deflated() {
        let mut data = vec![0u8; 512];
        data.extend(random_bytes(4096, 5));
        data.extend([0u8; 512]);
        data.extend(random_bytes(4096, 6));
        let cuts = [
            (0, Kind::Meta),
            (512, Kind::Content),
            (4608, Kind::Meta),
            (5120, Kind::Content),
        ];
        let runs = plan_runs(&data, &cuts);
        let r = |start, end, store| Run { start, end, store };
        assert_eq!(
            runs,
            [
                r(0, 512, false),
                r(512, 4608, true),
                r(4608, 5120, false),
                r(5120, 9216, true)
            ]
        );
        // Content split in pieces, and pieces with the same verdict merged.
        let big = random_bytes(3 * PIECE + 10, 9);
        assert_eq!(
            plan_runs(&big, &[(0, Kind::Content)]),
            [r(0, 3 * PIECE, true), r(3 * PIECE, 3 * PIECE + 10, false)]
        );
    }
}
