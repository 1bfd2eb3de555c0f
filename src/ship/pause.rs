//! The host-wide pause on disk (`data_root/.receiver-pause.json`), shared by
//! `ship-episode` runs and the scanner, and the scanner's replay of an
//! outage's backlog (`data_root/.receiver-replay.json`). What they should be
//! is decided in [`crate::machine::host`] and [`crate::scan::schedule`];
//! this reads, writes and logs them.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::layout::{read_json, remove_if_present, unix_now, write_json};
use crate::machine::host::{self, HostPause, HostSignal, PauseChange};
use crate::outcome::random_unit;
use crate::scan::schedule::Replay;

use super::Shipper;

/// Hidden, so that no listing of the data root takes it for anything else.
pub const PAUSE_FILE: &str = ".receiver-pause.json";
/// The replay on disk, so that a scanner restarted during one (an upgrade,
/// a watchdog kill) goes on pacing the backlog instead of sending the rest
/// at once.
pub const REPLAY_FILE: &str = ".receiver-replay.json";

impl Shipper {
    /// `shipper.receiver_probe_interval_s`.
    pub fn probe_every(&self) -> Duration {
        self.probe_every
    }

    fn pause_path(&self) -> PathBuf {
        self.layout.root().join(PAUSE_FILE)
    }

    /// The pause on disk, expired or not (an expired one still counts the
    /// failures in a row until the receiver answers), within the horizon
    /// from when it was written ([`HostPause::as_read`]).
    pub fn host_pause(&self) -> Option<HostPause> {
        let path = self.pause_path();
        match read_json::<HostPause>(&path) {
            Ok(p) => {
                let written_at = std::fs::metadata(&path)
                    .ok()
                    .map(|m| m.mtime().max(0) as u64);
                p.map(|p| p.as_read(written_at, unix_now()))
            }
            Err(e) => {
                // Rewritten or removed by the next answer.
                tracing::warn!("{e}: ignoring the receiver pause");
                None
            }
        }
    }

    /// The pause holding uploads back now, if any.
    pub fn active_pause(&self) -> Option<HostPause> {
        self.host_pause().filter(|p| p.holds(unix_now()))
    }

    /// Record what one attempt said about the receiver: start, extend or
    /// lift the pause, and say so in the journal.
    pub fn note_host(&self, signal: &HostSignal) -> PauseChange {
        let before = self.host_pause();
        let now = unix_now();
        let change = host::after_signal(
            signal,
            before.as_ref(),
            std::time::SystemTime::now(),
            random_unit(),
            self.probe_every,
        );
        match &change {
            PauseChange::Keep => {}
            PauseChange::Lift => {
                let _writing = crate::signals::StateWrite::begin();
                match remove_if_present(&self.pause_path()) {
                    Ok(()) => {
                        tracing::info!("the receiver accepts this host again: uploads resumed")
                    }
                    Err(e) => tracing::warn!("cannot lift the receiver pause: {e}"),
                }
            }
            PauseChange::Start(p) => {
                let _writing = crate::signals::StateWrite::begin();
                if let Err(e) = write_json(&self.pause_path(), p) {
                    tracing::warn!("{e}: the pause holds for this run only");
                }
                crate::failpoint!(crate::failpoint::PAUSE_AFTER_STORE);
                let secs = p.left(now);
                match (&p.fix, p.status) {
                    (Some(fix), status) => tracing::error!(
                        HTTP_STATUS = status,
                        OUTCOME = "host_error",
                        "the receiver refused this host ({}): all uploads paused for {secs}s \
                         (refusal {} in a row). Fix: {fix}",
                        p.reason,
                        p.failures
                    ),
                    (None, status) => tracing::warn!(
                        HTTP_STATUS = status,
                        "the receiver is unavailable ({}): all uploads paused for {secs}s \
                         (failure {} in a row)",
                        p.reason,
                        p.failures
                    ),
                }
            }
        }
        change
    }
}

impl Shipper {
    /// The replay on disk, if one is running and plausible
    /// ([`Replay::as_read`]).
    pub fn replay(&self) -> Option<Replay> {
        match read_json::<Replay>(&self.layout.root().join(REPLAY_FILE)) {
            Ok(r) => r.and_then(|r| r.as_read(unix_now())),
            Err(e) => {
                tracing::warn!("{e}: ignoring the replay of the last outage");
                None
            }
        }
    }

    /// Keep the replay on disk (`None`: it is over).
    pub fn store_replay(&self, replay: Option<&Replay>) {
        let path = self.layout.root().join(REPLAY_FILE);
        let _writing = crate::signals::StateWrite::begin();
        let stored = match replay {
            Some(r) => write_json(&path, r),
            None => remove_if_present(&path),
        };
        if let Err(e) = stored {
            // The scanner still paces from memory; only a restart forgets.
            tracing::warn!("cannot record the replay of the last outage: {e}");
        }
    }
}

/// Where the pause file of a data root is (for doctor and tests).
pub fn pause_file(root: &std::path::Path) -> PathBuf {
    root.join(PAUSE_FILE)
}
