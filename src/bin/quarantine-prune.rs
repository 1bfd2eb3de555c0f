//! `quarantine-prune`: apply the retention rules once (run by
//! cis490-quarantine-prune.timer).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use cis490::layout::Layout;
use cis490::prune::{PruneReport, clock, human_bytes, prune_since_build};
use clap::Parser;

/// Delete settled episodes past their retention, and what crashed runs left.
///
/// Removes `quarantine/<id>` older than `retention.quarantine_keep_days`
/// (default 30) and `shipped/<id>` older than `retention.keep_local_for_days`
/// (default 7); 0 disables either. Age counts from when the episode entered
/// that state (its sidecar, else the directory's ctime), never from the
/// recording's file times, and never time the clock had wrong: a clock
/// before this binary's build date deletes nothing by age, and an entry time
/// long before it or in the future restarts the count (recorded in the
/// sidecar). Also removes orphan sidecars, stale partial archives and temp
/// files; never an episode in `outbox/` (unshipped data). Locked entries
/// (being requeued) are skipped. Needs no network.
///
/// Exit status: 0 all went well (skips included); 74 something could not be
/// removed; 78 the config is unusable.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Config file [default: $CIS490_CONFIG, else /etc/cis490/lab-host.toml]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,

    /// List what would be removed, and why, without changing anything.
    #[arg(long)]
    dry_run: bool,
}

fn print_report(r: &PruneReport) {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    if r.removed.is_empty() {
        println!("nothing to prune");
    }
    for x in &r.removed {
        println!(
            "{verb} {}/{}  ({}), {}",
            x.state,
            x.name,
            x.reason,
            human_bytes(x.bytes)
        );
    }
    let restart = if r.dry_run {
        "would restart"
    } else {
        "restarted"
    };
    for x in &r.restarted {
        println!(
            "{restart} the retention count of {}/{}  ({})",
            x.state, x.episode_id, x.reason
        );
    }
    for s in &r.skipped {
        println!("skipped {}/{}  ({})", s.state, s.name, s.reason);
    }
    println!("{}", r.summary());
}

fn main() -> ExitCode {
    cis490::failpoint::setup();
    let args = Args::parse();
    cis490::logging::init("quarantine-prune");
    let config = match cis490::cli::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let layout = Layout::new(&config.data_root);
    let report = prune_since_build(
        &layout,
        &config.retention,
        SystemTime::now(),
        clock::build_date(),
        args.dry_run,
    );
    if !args.dry_run {
        cis490::metrics::Metrics::new(&config).refresh();
    }
    // The journal has one line per removal and a summary; elsewhere, print
    // them (always for a dry run: that is what it is for).
    if args.dry_run || std::io::stdout().is_terminal() || !cis490::logging::stderr_is_journal() {
        print_report(&report);
    }
    for f in &report.failures {
        cis490::cli::fail(&format!("{}/{}: {}", f.state, f.name, f.message));
    }
    if !report.failures.is_empty() {
        cis490::cli::fail(&format!(
            "{} item(s) could not be pruned (see above); the rest was done",
            report.failures.len()
        ));
    }
    ExitCode::from(report.exit_code())
}
