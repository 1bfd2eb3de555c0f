//! `quarantine-prune`: apply the retention rules once (run by
//! cis490-quarantine-prune.timer).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::SystemTime;

use cis490::args::QuarantinePruneArgs;
use cis490::layout::Layout;
use cis490::prune::{PruneReport, clock, human_bytes, prune_since_build};
use clap::Parser;

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
    let args = QuarantinePruneArgs::parse();
    if args.common.check_config {
        return cis490::cli::check_config(args.common.config.as_deref());
    }
    cis490::logging::init("quarantine-prune");
    let config = match cis490::cli::load_config(args.common.config.as_deref()) {
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
