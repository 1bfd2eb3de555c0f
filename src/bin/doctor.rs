//! `doctor`: one command that says what is wrong with shipping on this host
//! and the exact fix. See docs/doctor.md.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use cis490::args::DoctorArgs;
use cis490::doctor::{self, Options};
use clap::Parser;

const UNKNOWN: u8 = 3;

fn main() -> ExitCode {
    cis490::failpoint::setup();
    let args = match DoctorArgs::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // --help/--version are not errors; anything else is UNKNOWN,
            // not clap's 2 (which a monitor would read as CRITICAL).
            return ExitCode::from(if e.use_stderr() { UNKNOWN } else { 0 });
        }
    };
    if args.common.check_config {
        return cis490::cli::check_config(args.common.config.as_deref());
    }
    let window_secs = match doctor::parse_since(&args.since) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --since: {e}");
            return ExitCode::from(UNKNOWN);
        }
    };
    let facts = doctor::gather(&Options {
        config: args.common.config,
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
