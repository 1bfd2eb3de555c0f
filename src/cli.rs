//! Shared start-up of the binaries: config loading with the right exit code.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config};

/// Load the config named by `--config`, `$CIS490_CONFIG` or the default,
/// log its warnings, or fail with one clear line and EX_CONFIG (78).
pub fn load_config(cli_path: Option<&Path>) -> Result<Config, ExitCode> {
    let path = config::resolve_path(cli_path);
    match Config::load(&path) {
        Ok(c) => {
            for w in &c.warnings {
                tracing::warn!("{w}");
            }
            Ok(c)
        }
        Err(e) => {
            fail(&e.to_string());
            Err(ExitCode::from(crate::exit::CONFIG))
        }
    }
}

/// `--check-config`: check the config named by `--config`,
/// `$CIS490_CONFIG` or the default and everything it names; print one line
/// per problem (stdout) or `OK`, warnings on stderr; 0 or EX_CONFIG (78).
pub fn check_config(cli_path: Option<&Path>) -> ExitCode {
    let path = config::resolve_path(cli_path);
    let report = config::check::check_config(&path, &config::check::CheckEnv::from_process());
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if report.is_ok() {
        println!("OK");
        return ExitCode::SUCCESS;
    }
    for p in &report.problems {
        println!("{p}");
    }
    ExitCode::from(crate::exit::CONFIG)
}

/// Report a fatal error: one line on stderr, and in the journal when there.
pub fn fail(message: &str) {
    if crate::logging::stderr_is_journal() {
        tracing::error!("{message}");
    } else {
        eprintln!("error: {message}");
    }
}

/// "1.4 GiB": sizes for people.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
