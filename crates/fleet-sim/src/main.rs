//! `cargo run --release -p fleet-sim`: the scenarios for a fleet,
//! as a Markdown table.

use std::time::Instant;

use clap::Parser;
use fleet_sim::scenario::{self, Scenario};

/// Simulate a lab fleet against one receiver through the shipper's real
/// backoff code, and print what the receiver sees.
#[derive(Parser, Debug)]
#[command(about, long_about)]
struct Args {
    /// Number of lab hosts.
    #[arg(long, default_value_t = 10_000)]
    hosts: u32,

    /// Seed of the random source (jitter, phases).
    #[arg(long, default_value_t = 14)]
    seed: u64,

    /// Run the scanners as they were before the backlog was paced (no
    /// drain after an outage, no spread start), for comparison.
    #[arg(long)]
    unpaced: bool,

    /// Run only the scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,

    /// Also print each scenario's load minute by minute.
    #[arg(long)]
    series: bool,
}

fn main() {
    let args = Args::parse();
    let scenarios: Vec<Scenario> = scenario::standard(args.hosts, args.seed)
        .into_iter()
        .filter(|s| {
            args.only
                .as_ref()
                .is_none_or(|o| s.name.contains(o.as_str()))
        })
        .map(|mut s| {
            s.fleet.paced = !args.unpaced;
            s
        })
        .collect();
    let started = Instant::now();
    let outcomes: Vec<_> = scenarios.iter().map(Scenario::run).collect();
    println!(
        "{} hosts, one episode per host every {} min, seed {}{}\n",
        args.hosts,
        scenario::RECORD_EVERY_S / 60,
        args.seed,
        if args.unpaced {
            ", unpaced (as before)"
        } else {
            ""
        }
    );
    print!("{}", scenario::table(&outcomes));
    if args.series {
        for o in &outcomes {
            println!("\n{}", o.series());
        }
    }
    eprintln!(
        "\n{} scenarios simulated in {:.1} s",
        outcomes.len(),
        started.elapsed().as_secs_f64()
    );
    if outcomes.iter().any(|o| !o.goals.all()) {
        std::process::exit(1);
    }
}
