//! Generates a benchmark episode: half incompressible "video" files, half
//! text sensor logs, plus ~2,000 small JSON files. Deterministic.
//!
//! usage: gen_episode DIR MIB

use std::io::{BufWriter, Write};
use std::path::Path;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(mib)) = (args.get(1), args.get(2).and_then(|m| m.parse::<u64>().ok()))
    else {
        eprintln!("usage: gen_episode DIR MIB");
        std::process::exit(64);
    };
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir.join("camera"))?;
    std::fs::create_dir_all(dir.join("sensors"))?;
    std::fs::create_dir_all(dir.join("meta"))?;
    let total = mib << 20;
    let half = total / 2;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;

    // Video: 32 MiB files of random bytes (stand-in for H.264).
    let file_size = 32u64 << 20;
    let mut written = 0;
    let mut i = 0;
    while written < half {
        let n = file_size.min(half - written);
        let mut f = BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(dir.join(format!("camera/cam{}_{i:03}.mp4", i % 3)))?,
        );
        let mut left = n;
        let mut buf = vec![0u8; 1 << 16];
        while left > 0 {
            for c in buf.chunks_exact_mut(8) {
                c.copy_from_slice(&xorshift(&mut rng).to_le_bytes());
            }
            let k = left.min(buf.len() as u64) as usize;
            f.write_all(&buf[..k])?;
            left -= k as u64;
        }
        written += n;
        i += 1;
    }

    // Sensor logs: CSV lines with random-walk values, 32 MiB per file.
    let mut written = 0;
    let mut i = 0;
    let mut t = 1_795_000_000_000_000u64;
    let mut vals = [0.113f64, 41.27, -12.44, 0.5, 1013.2, 7.0];
    while written < half {
        let path = dir.join(format!("sensors/arm{}_{i:03}.csv", i % 4));
        let mut f = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        let mut n = 0u64;
        while n < file_size && written + n < half {
            t += 1000 + xorshift(&mut rng) % 50;
            for v in vals.iter_mut() {
                *v += ((xorshift(&mut rng) % 2001) as f64 - 1000.0) / 100_000.0;
            }
            let line = format!(
                "{}.{:06},arm{},joint{},torque={:.4},temp={:.2},pos={:.4},vel={:.4},p={:.1},ok\n",
                t / 1_000_000,
                t % 1_000_000,
                i % 4,
                xorshift(&mut rng) % 7,
                vals[0],
                vals[1],
                vals[2],
                vals[3],
                vals[4]
            );
            let line = &line.as_bytes()[..line.len().min((half - written - n) as usize)];
            f.write_all(line)?;
            n += line.len() as u64;
        }
        written += n;
        i += 1;
    }

    // ~2,000 small JSON files.
    for j in 0..2000 {
        let v = xorshift(&mut rng);
        std::fs::write(
            dir.join(format!("meta/frame_{j:05}.json")),
            format!(
                "{{\"frame\":{j},\"ts\":{},\"exposure_us\":{},\"gain\":{:.3},\"tags\":[\"arm\",\"demo\"]}}\n",
                t + j * 33_000,
                v % 20_000,
                (v % 1000) as f64 / 100.0
            ),
        )?;
    }
    std::fs::write(dir.join("done.marker"), b"")?;
    Ok(())
}
