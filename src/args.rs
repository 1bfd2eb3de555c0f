//! The command lines of the four binaries.
//!
//! They live in the library, not in `src/bin/`, so that the thin binaries
//! and `crates/gen-assets` (man pages and shell completions for the Debian
//! package) are built from the same definitions: a flag added here shows up
//! in `--help`, in `man ship-episode` and in tab completion alike.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser};

/// What every binary takes: which config, and whether only to check it.
#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Config file [default: $CIS490_CONFIG, else /etc/cis490/lab-host.toml]
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub config: Option<PathBuf>,

    /// Load and fully validate the config and the files it names (CA bundle,
    /// client certificate and key, token file, systemd credentials), print
    /// one line per problem or `OK`, and exit 0 or 78. Does nothing else.
    #[arg(long)]
    pub check_config: bool,
}

/// Ship lab-host episodes to the receiver.
///
/// With no argument, every ready episode in `episodes/` is claimed and
/// shipped: this is what cis490-ship-episode.path runs. Named episodes (an id,
/// or a path into a state directory) are shipped now, whether ready or
/// waiting for a retry in the outbox.
///
/// Exit status: 0 all shipped or nothing to do; 65 something was
/// quarantined; 66 a named episode does not exist; 75 something is left for
/// a retry; 78 the config is unusable or the receiver refused this host
/// (token, certificate, URL).
#[derive(Parser, Debug)]
#[command(name = "ship-episode", version, about, long_about)]
pub struct ShipEpisodeArgs {
    #[command(flatten)]
    pub common: ConfigArgs,

    /// Move this quarantined episode back into the queue and ship it.
    #[arg(long, value_name = "ID", conflicts_with = "episodes")]
    pub requeue: Option<String>,

    /// Episode ids or paths to ship now.
    #[arg(value_name = "ID|PATH")]
    pub episodes: Vec<String>,
}

/// Ship what the path unit missed and retry the outbox, until stopped.
///
/// Every shipper.scan_interval_s, one pass picks up ready episodes left in
/// `episodes/` and ships every outbox entry whose retry time has come. Under
/// systemd (Type=notify) it reports READY=1 once the queue is built, a
/// STATUS= line after each pass, and WATCHDOG=1 per pass and while bytes
/// move. SIGTERM aborts an upload in flight (the episode stays in the
/// outbox) and exits 0.
///
/// With --once: a single pass, then the exit status of ship-episode: 0 all
/// shipped or nothing to do; 65 something was quarantined; 75 something is
/// left for a retry; 78 the config is unusable or the receiver refused this
/// host; 74 the data directories cannot be read or created.
#[derive(Parser, Debug)]
#[command(name = "ship-scanner", version, about, long_about)]
pub struct ShipScannerArgs {
    #[command(flatten)]
    pub common: ConfigArgs,

    /// Run one pass and exit.
    #[arg(long)]
    pub once: bool,

    /// Benchmark: build the queue, run N passes back to back, print timings.
    #[arg(long, value_name = "N", hide = true, conflicts_with = "once")]
    pub bench_passes: Option<u32>,
}

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
#[command(name = "quarantine-prune", version, about, long_about)]
pub struct QuarantinePruneArgs {
    #[command(flatten)]
    pub common: ConfigArgs,

    /// List what would be removed, and why, without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// Say what is wrong with shipping here, and the command that fixes it.
///
/// Reads the journal of the cis490 binaries and units (the last 10 minutes
/// by default), the state of the units, the data directories and the disk.
/// One verdict line, then one row per check, worst first, each with its fix.
///
/// Exit status (monitoring-plugin convention): 0 OK, 1 WARNING, 2 CRITICAL,
/// 3 UNKNOWN (bad command line, or the report could not be written).
/// With --check-config: 0 or 78, as the other binaries.
#[derive(Parser, Debug)]
#[command(name = "doctor", version, about, long_about)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub common: ConfigArgs,

    /// How far back to read the journal (10min, 90s, 2h, 1d).
    #[arg(long, value_name = "DURATION", default_value = "10min")]
    pub since: String,

    /// Read `journalctl -o json` lines from this file instead of the journal.
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub journal_file: Option<PathBuf>,

    /// Print the report as JSON (schema: docs/doctor.md).
    #[arg(long)]
    pub json: bool,
}

/// Every installed binary's command, for man pages and completions.
pub fn commands() -> Vec<clap::Command> {
    vec![
        ShipEpisodeArgs::command(),
        ShipScannerArgs::command(),
        QuarantinePruneArgs::command(),
        DoctorArgs::command(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_consistent() {
        for cmd in commands() {
            cmd.debug_assert();
        }
    }

    #[test]
    fn every_binary_takes_check_config() {
        for cmd in commands() {
            assert!(
                cmd.get_arguments()
                    .any(|a| a.get_long() == Some("check-config")),
                "{} has no --check-config",
                cmd.get_name()
            );
        }
    }
}
