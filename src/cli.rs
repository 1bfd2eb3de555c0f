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

/// Report a fatal error: one line on stderr, and in the journal when there.
pub fn fail(message: &str) {
    if crate::logging::stderr_is_journal() {
        tracing::error!("{message}");
    } else {
        eprintln!("error: {message}");
    }
}
