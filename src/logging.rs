//! Logging: human-readable on a terminal, native journald under systemd.
//!
//! Under systemd the journal gets structured fields without the `F_`
//! prefix (`EPISODE_ID`, `OUTCOME`, `HTTP_STATUS`, ...), so that
//! `journalctl OUTCOME=quarantined` works and `doctor` can rely on them.
//! `SYSLOG_IDENTIFIER` is the binary's name: `journalctl -t ship-episode`.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// True when stderr is connected to the journal (systemd sets
/// `JOURNAL_STREAM=dev:ino` for the stream it gives a service).
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse::<u64>() == Ok(meta.dev()) && ino.parse::<u64>() == Ok(meta.ino())
}

/// Set up the global subscriber. `RUST_LOG` overrides the default `info`.
pub fn init(binary: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal()
        && let Ok(journald) = tracing_journald::layer()
    {
        let journald = journald
            .with_field_prefix(None)
            .with_syslog_identifier(binary.to_string());
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(journald)
            .try_init();
        return;
    }
    let terminal = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal)
        .with_target(false)
        .try_init();
}
