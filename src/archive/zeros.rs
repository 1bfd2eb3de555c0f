//! A run of zero bytes as one hand-made deflate block: 2 bits per 258
//! bytes, deflate's best (gzip's 1032:1), whatever the run's length.
//!
//! Sparse files and disk images are mostly zeros. Deflating each 512 KiB
//! block of them separately costs a block header and a sync flush per
//! block (about 20 bytes on 508, 3.8% more than one `gzip -6` stream), and
//! deflating them at all costs gzip's time. Instead, consecutive zero
//! blocks are merged into one run and written here in one dynamic-Huffman
//! block whose codes make every 258-byte match (length 258, distance 1)
//! two zero bits: the run's body is zero bytes, written without computing
//! anything and without memory that grows with the run.
//!
//! The run must follow a zero byte in the stream (distance 1 copies it),
//! start byte-aligned, and it ends byte-aligned with an empty stored block,
//! not final, like a sync flush: it concatenates with the blocks around it.

use std::io::{self, Write};

/// Deflate's longest match.
const MAX_MATCH: u64 = 258;

/// Bits, least significant first, as deflate packs them.
struct Bits {
    bytes: Vec<u8>,
    acc: u64,
    pending: u32,
}

impl Bits {
    fn put(&mut self, value: u64, count: u32) {
        self.acc |= value << self.pending;
        self.pending += count;
        while self.pending >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.pending -= 8;
        }
    }

    /// `count` zero bits: whole zero bytes go straight to `out` (after
    /// what is already packed), the rest stay pending.
    fn put_zeros<W: Write>(&mut self, mut count: u64, out: &mut W) -> io::Result<()> {
        let to_boundary = u64::from((8 - self.pending % 8) % 8).min(count);
        self.put(0, to_boundary as u32);
        count -= to_boundary;
        if count >= 8 {
            out.write_all(&self.bytes)?;
            self.bytes.clear();
            write_zero_bytes(out, count / 8)?;
        }
        self.put(0, (count % 8) as u32);
        Ok(())
    }

    /// Pad to a byte boundary with zero bits.
    fn align(&mut self) {
        if self.pending > 0 {
            self.put(0, 8 - self.pending);
        }
    }
}

/// Lengths of the code-length codes, in the order deflate sends them:
/// only 18 (a run of zero lengths), 1 and 2 are used.
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Write `len` (> 0) zero bytes as a deflate block followed by an empty
/// stored block. The byte before them in the stream must be zero.
pub(super) fn write_zero_run<W: Write>(out: &mut W, len: u64) -> io::Result<()> {
    let mut bits = Bits {
        bytes: Vec::with_capacity(64),
        acc: 0,
        pending: 0,
    };
    // Not final, dynamic Huffman; 286 literal/length codes, 1 distance
    // code, code-length codes up to the one for length 1 (18 of them).
    bits.put(0, 1);
    bits.put(2, 2);
    bits.put(286 - 257, 5);
    bits.put(0, 5);
    bits.put(18 - 4, 4);
    // The code-length code: 18 -> "0", 1 -> "10", 2 -> "11" (canonical).
    for &symbol in &CODE_LENGTH_ORDER[..18] {
        let length = match symbol {
            18 => 1,
            1 | 2 => 2,
            _ => 0,
        };
        bits.put(length, 3);
    }
    // Huffman codes go most significant bit first: these are reversed.
    let (cl_18, cl_1, cl_2) = ((0, 1), (0b01, 2), (0b11, 2));
    let zeros = |bits: &mut Bits, n: u64| {
        bits.put(cl_18.0, cl_18.1);
        bits.put(n - 11, 7);
    };
    // The literal/length code: literal 0 -> "10" (2 bits), end of block
    // -> "11" (2 bits), length 258 (symbol 285) -> "0" (1 bit); the one
    // distance code (distance 1) -> "0" (1 bit).
    bits.put(cl_2.0, cl_2.1); // literal 0
    zeros(&mut bits, 138); // literals 1..=138
    zeros(&mut bits, 117); // literals 139..=255
    bits.put(cl_2.0, cl_2.1); // end of block (256)
    zeros(&mut bits, 28); // lengths 257..=284
    bits.put(cl_1.0, cl_1.1); // length 258 (285)
    bits.put(cl_1.0, cl_1.1); // distance code 0
    // The body: each match "0" + "0"; what is left, literal zeros.
    bits.put_zeros(2 * (len / MAX_MATCH), out)?;
    for _ in 0..len % MAX_MATCH {
        bits.put(0b01, 2);
    }
    bits.put(0b11, 2); // end of block
    // An empty stored block, not final: back to a byte boundary.
    bits.put(0, 3);
    bits.align();
    bits.bytes.extend_from_slice(&[0, 0, 0xff, 0xff]);
    out.write_all(&bits.bytes)
}

fn write_zero_bytes<W: Write>(out: &mut W, mut n: u64) -> io::Result<()> {
    const ZEROS: [u8; 4096] = [0; 4096];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A raw deflate stream: a stored `before`, the run, a stored `after`,
    /// an empty final block; and what it decodes to.
    fn round_trip(before: &[u8], len: u64, after: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let stored = |out: &mut Vec<u8>, data: &[u8], last: u8| {
            let [l0, l1] = (data.len() as u16).to_le_bytes();
            out.extend_from_slice(&[last, l0, l1, !l0, !l1]);
            out.extend_from_slice(data);
        };
        let mut stream = Vec::new();
        stored(&mut stream, before, 0);
        write_zero_run(&mut stream, len).expect("write");
        stored(&mut stream, after, 0);
        stored(&mut stream, &[], 1);
        let mut decoded = Vec::new();
        flate2::read::DeflateDecoder::new(&stream[..])
            .read_to_end(&mut decoded)
            .expect("valid deflate");
        (stream, decoded)
    }

    #[test]
    fn runs_of_every_remainder_decode_to_zeros() {
        for len in (1..=600).chain([4095, 4096, 524_288, 5 * 524_288 + 3]) {
            let (_, decoded) = round_trip(b"ab\0", len, b"cd");
            let mut expected = b"ab\0".to_vec();
            expected.resize(3 + len as usize, 0);
            expected.extend_from_slice(b"cd");
            assert!(decoded == expected, "a run of {len} zeros");
        }
    }

    #[test]
    fn a_run_costs_two_bits_per_258_bytes() {
        let len = 64u64 << 20;
        let (stream, decoded) = round_trip(b"\0", len, b"");
        assert_eq!(decoded.len() as u64, len + 1);
        assert!(decoded.iter().all(|&b| b == 0));
        // gzip's own best is 1032:1; on top: the headers and stored
        // blocks (a few dozen bytes) and under 258 literal zeros at 2 bits.
        assert!(stream.len() as u64 <= len / 1032 + 128, "{}", stream.len());
    }
}
