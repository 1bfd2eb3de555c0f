//! Generates one benchmark episode of a given shape (scripts/bench.sh
//! matrix). Deterministic: the same shape always gives the same bytes.
//!
//! usage: gen_shape DIR SHAPE
//!   frames   100,000 files of 4 KiB, incompressible (camera frames)
//!   json     20,000 files of 64 KiB, compressible (JSON and CSV alternately)
//!   text     one 512 MiB CSV file (sensor log)
//!   random   one 512 MiB incompressible file (video)
//!   sparse   one 9 GiB sparse file (nothing but a hole)
//! The mixed episode is examples/gen_episode.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn random_fill(buf: &mut [u8], rng: &mut u64) {
    for c in buf.chunks_mut(8) {
        let v = xorshift(rng).to_le_bytes();
        c.copy_from_slice(&v[..c.len()]);
    }
}

/// Sensor-log text: a random walk of a few values per line.
struct Csv {
    rng: u64,
    t: u64,
    vals: [f64; 5],
}

impl Csv {
    fn new(seed: u64) -> Self {
        Csv {
            rng: seed,
            t: 1_795_000_000_000_000,
            vals: [0.113, 41.27, -12.44, 0.5, 1013.2],
        }
    }
    fn step(&mut self) {
        self.t += 1000 + xorshift(&mut self.rng) % 50;
        for v in self.vals.iter_mut() {
            *v += ((xorshift(&mut self.rng) % 2001) as f64 - 1000.0) / 100_000.0;
        }
    }
    fn csv_line(&mut self, arm: u64) -> String {
        self.step();
        let v = self.vals;
        format!(
            "{}.{:06},arm{arm},joint{},torque={:.4},temp={:.2},pos={:.4},vel={:.4},p={:.1},ok\n",
            self.t / 1_000_000,
            self.t % 1_000_000,
            xorshift(&mut self.rng) % 7,
            v[0],
            v[1],
            v[2],
            v[3],
            v[4]
        )
    }
    fn json_line(&mut self, arm: u64) -> String {
        self.step();
        let v = self.vals;
        format!(
            "{{\"ts\":{},\"arm\":{arm},\"joint\":{},\"torque\":{:.4},\"temp\":{:.2},\"pos\":{:.4},\"vel\":{:.4},\"pressure\":{:.1},\"status\":\"ok\"}}\n",
            self.t,
            xorshift(&mut self.rng) % 7,
            v[0],
            v[1],
            v[2],
            v[3],
            v[4]
        )
    }
}

/// Exactly `size` bytes of lines from `line` (the last one cut short).
fn text_file(path: &Path, size: u64, mut line: impl FnMut() -> String) -> std::io::Result<()> {
    let mut f = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut n = 0u64;
    while n < size {
        let l = line();
        let take = l.len().min((size - n) as usize);
        f.write_all(&l.as_bytes()[..take])?;
        n += take as u64;
    }
    f.flush()
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(shape)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: gen_shape DIR frames|json|text|random|sparse");
        std::process::exit(64);
    };
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir)?;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    match shape.as_str() {
        "frames" => {
            let sub = dir.join("camera0");
            std::fs::create_dir_all(&sub)?;
            let mut buf = vec![0u8; 4096];
            for i in 0..100_000 {
                random_fill(&mut buf, &mut rng);
                std::fs::write(sub.join(format!("frame_{i:06}.jpg")), &buf)?;
            }
        }
        "json" => {
            let sub = dir.join("imu");
            std::fs::create_dir_all(&sub)?;
            let mut csv = Csv::new(rng);
            for i in 0..20_000u64 {
                let arm = i % 4;
                if i % 2 == 0 {
                    text_file(&sub.join(format!("imu_{i:05}.jsonl")), 64 << 10, || {
                        csv.json_line(arm)
                    })?;
                } else {
                    text_file(&sub.join(format!("imu_{i:05}.csv")), 64 << 10, || {
                        csv.csv_line(arm)
                    })?;
                }
            }
        }
        "text" => {
            let mut csv = Csv::new(rng);
            let mut arm = 0;
            text_file(&dir.join("sensors.csv"), 512 << 20, || {
                arm = (arm + 1) % 4;
                csv.csv_line(arm)
            })?;
        }
        "random" => {
            let mut f = BufWriter::with_capacity(1 << 20, File::create(dir.join("video.mp4"))?);
            let mut buf = vec![0u8; 1 << 16];
            for _ in 0..(512 << 20) / buf.len() {
                random_fill(&mut buf, &mut rng);
                f.write_all(&buf)?;
            }
            f.flush()?;
        }
        "sparse" => File::create(dir.join("disk.img"))?.set_len(9 << 30)?,
        other => {
            eprintln!("unknown shape {other} (frames|json|text|random|sparse)");
            std::process::exit(64);
        }
    }
    std::fs::write(dir.join("done.marker"), b"")
}
