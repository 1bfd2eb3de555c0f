//! What a run reports: one [`EpisodeReport`] per episode, the run's exit
//! code, and one structured journal line per outcome.

use std::time::Duration;

use crate::layout::{EpisodeId, State};
use crate::machine::host::{HostPause, HostSignal};
use crate::outcome::OutcomeKind;
use crate::transport::Progress;

/// Callbacks during a run: terminal progress for `ship-episode`, watchdog
/// heartbeats for the scanner.
pub trait Observer {
    /// Content bytes packed so far.
    fn archiving(&mut self, _id: &EpisodeId, _input_bytes: u64) {}
    /// Upload progress, reported a few times per second.
    fn uploading(&mut self, _id: &EpisodeId, _progress: Progress) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// Where one episode ended, and why.
#[derive(Debug, Clone)]
pub struct EpisodeReport {
    pub id: EpisodeId,
    pub outcome: OutcomeKind,
    /// The state it is in now.
    pub state: State,
    pub detail: String,
    pub http_status: Option<u16>,
    pub archive_bytes: Option<u64>,
    pub duration: Duration,
    /// The upload alone (the PUT, bytes and answer), when one was made.
    pub upload_time: Option<Duration>,
    pub attempt: u32,
    /// For retries: when the next attempt is due (unix seconds).
    pub next_attempt_at: Option<u64>,
    /// What the attempt said about the receiver as a whole.
    pub host: HostSignal,
}

/// A receiver answer that concerns the whole host, not one episode.
#[derive(Debug, Clone)]
pub struct HostError {
    pub status: u16,
    pub reason: String,
    pub fix: &'static str,
}

/// The fix for a refusal of this host: an object store's reason
/// (`S3 403 Code: ...`) names its own, else the HTTP status says.
pub fn refusal_fix(status: u16, reason: &str) -> &'static str {
    crate::transport::s3::classify::fix_in_reason(reason)
        .unwrap_or_else(|| crate::outcome::host_error_fix(status))
}

#[derive(Debug, Default)]
pub struct RunReport {
    pub episodes: Vec<EpisodeReport>,
    /// Set when the run stopped early because of a host-level error.
    pub host_error: Option<HostError>,
    /// Targets that named no episode.
    pub not_found: Vec<String>,
    /// Set when uploads stopped for a host-wide pause (the rest of the run
    /// was claimed into the outbox and not uploaded).
    pub paused: Option<HostPause>,
}

impl RunReport {
    /// Add an episode's result; a host-level refusal stops the run.
    pub fn push(&mut self, r: EpisodeReport) {
        if r.outcome == OutcomeKind::HostError {
            let status = r.http_status.unwrap_or(0);
            self.host_error = Some(HostError {
                status,
                reason: r.detail.clone(),
                fix: refusal_fix(status, &r.detail),
            });
        }
        self.episodes.push(r);
    }

    pub fn count(&self, kind: OutcomeKind) -> usize {
        self.episodes.iter().filter(|e| e.outcome == kind).count()
    }

    /// sysexits-style code: host error 78 > missing input 66 > retry or
    /// paused 75 > quarantined 65 > 0.
    pub fn exit_code(&self) -> u8 {
        use crate::exit;
        let refused = self.paused.as_ref().is_some_and(|p| p.refused);
        if self.host_error.is_some() || self.count(OutcomeKind::HostError) > 0 || refused {
            exit::CONFIG
        } else if !self.not_found.is_empty() {
            exit::NO_INPUT
        } else if self.count(OutcomeKind::Retry) > 0 || self.paused.is_some() {
            exit::TEMPFAIL
        } else if self.count(OutcomeKind::Quarantined) > 0 {
            exit::QUARANTINED
        } else {
            exit::OK
        }
    }
}

/// One structured journal line per episode outcome.
pub(super) fn log(host_id: &str, r: EpisodeReport) -> EpisodeReport {
    let id = r.id.as_str();
    let outcome = r.outcome.as_str();
    let ms = r.duration.as_millis() as u64;
    let bytes = r.archive_bytes.unwrap_or(0);
    let msg = format!("{id}: {} → {}/ ({})", outcome, r.state, r.detail);
    // An Option field is left out when None: no HTTP_STATUS without an
    // HTTP answer (doctor tells local set-asides apart by that).
    macro_rules! emit {
        ($lvl:ident) => {
            tracing::$lvl!(
                EPISODE_ID = id,
                HOST_ID = host_id,
                OUTCOME = outcome,
                HTTP_STATUS = r.http_status,
                BYTES = bytes,
                DURATION_MS = ms,
                ATTEMPT = r.attempt,
                "{msg}"
            )
        };
    }
    match r.outcome {
        OutcomeKind::Shipped | OutcomeKind::Duplicate | OutcomeKind::Skipped => emit!(info),
        OutcomeKind::Retry => emit!(warn),
        OutcomeKind::Quarantined | OutcomeKind::HostError => emit!(error),
    }
    r
}
