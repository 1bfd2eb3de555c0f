//! `doctor`: one command that says what is wrong with shipping on this host
//! and the exact fix. See docs/doctor.md.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use cis490::doctor::{self, Options};
use clap::Parser;

/// Say what is wrong with shipping here, and the command that fixes it.
///
/// Reads the journal of the cis490 binaries and units (the last 10 minutes
/// by default), the state of the units, the data directories and the disk.
/// One verdict line, then one row per check, worst first, each with its fix.
///
/// Exit status (monitoring-plugin convention): 0 OK, 1 WARNING, 2 CRITICAL,
/// 3 UNKNOWN (bad command line, or the report could not be written).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Config file [default: $CIS490_CONFIG, else /etc/cis490/lab-host.toml]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,

    /// How far back to read the journal (10min, 90s, 2h, 1d).
    #[arg(long, value_name = "DURATION", default_value = "10min")]
    since: String,

    /// Read `journalctl -o json` lines from this file instead of the journal.
    #[arg(long, value_name = "PATH")]
    journal_file: Option<PathBuf>,

    /// Print the report as JSON (schema: docs/doctor.md).
    #[arg(long)]
    json: bool,
}

const UNKNOWN: u8 = 3;

fn main() -> ExitCode {
    cis490::failpoint::setup();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // --help/--version are not errors; anything else is UNKNOWN,
            // not clap's 2 (which a monitor would read as CRITICAL).
            return ExitCode::from(if e.use_stderr() { UNKNOWN } else { 0 });
        }
    };
    let window_secs = match doctor::parse_since(&args.since) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --since: {e}");
            return ExitCode::from(UNKNOWN);
        }
    };
    let facts = doctor::gather(&Options {
        config: args.config,
        window_secs,
        journal_file: args.journal_file,
        now: cis490::layout::unix_now(),
    });
    let report = doctor::assess(&facts);
    let out = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("error: cannot encode the report: {e}");
                return ExitCode::from(UNKNOWN);
            }
        }
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        doctor::render_text(&report, color)
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush())
        .is_err()
    {
        return ExitCode::from(UNKNOWN);
    }
    ExitCode::from(report.exit_code)
}
