//! A CPU-bound stand-in for the recorder: keeps `threads` cores busy for
//! `seconds` and prints how much work it got done (the e2e fairness check
//! and `scripts/bench.sh` compare it alone and beside a shipping run).
//!
//! `busy SECONDS [THREADS]` → `work=N` (THREADS defaults to every core).

use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let threads: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                let mut rounds = 0u64;
                while Instant::now() < end {
                    // A block of xorshift steps between clock reads.
                    for _ in 0..10_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                    }
                    rounds += 1;
                }
                std::hint::black_box(x);
                rounds
            })
        })
        .collect();
    let work: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    println!("work={work}");
}
