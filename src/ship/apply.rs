//! Carry out what [`crate::machine`] decided: sidecar then rename for a
//! settle, the retry file for a retry or a hold, and the report.

use std::time::{Duration, Instant, SystemTime};

use crate::layout::{
    self, EpisodeId, LayoutError, RetryState, Sidecar, State, remove_if_present, rename_noreplace,
    unix_now,
};
use crate::machine::host::HostSignal;
use crate::machine::{self, SettleFailure, Transition};
use crate::outcome::{OutcomeKind, random_unit};
use crate::signals::StateWrite;

use super::{EpisodeReport, Shipper};

/// What the report of one episode carries whatever the transition.
pub(super) struct Attempted {
    pub id: EpisodeId,
    pub started: Instant,
    /// This attempt's number (0 before any attempt, e.g. a claim failure).
    pub attempt: u32,
    pub archive_bytes: Option<u64>,
    pub sha256: Option<String>,
    /// How long the upload took, once one was made.
    pub upload_time: Option<Duration>,
}

impl Attempted {
    pub fn new(id: &EpisodeId, started: Instant) -> Attempted {
        Attempted {
            id: id.clone(),
            started,
            attempt: 0,
            archive_bytes: None,
            sha256: None,
            upload_time: None,
        }
    }

    pub fn report(&self, outcome: OutcomeKind, state: State, detail: String) -> EpisodeReport {
        EpisodeReport {
            id: self.id.clone(),
            outcome,
            state,
            detail,
            http_status: None,
            archive_bytes: self.archive_bytes,
            duration: self.started.elapsed(),
            upload_time: self.upload_time,
            attempt: self.attempt,
            next_attempt_at: None,
            host: HostSignal::Silent,
        }
    }
}

impl Shipper {
    /// Carry out `t` for the episode; `retry` is its retry state before.
    pub(super) fn apply(
        &self,
        a: &Attempted,
        t: Transition,
        mut retry: RetryState,
    ) -> EpisodeReport {
        let id = &a.id;
        // A forced exit after SIGTERM waits for this to finish.
        let _writing = StateWrite::begin();
        match t {
            Transition::Settle {
                from,
                to,
                outcome,
                ref reason,
                http_status,
                ref refusal_check,
            } => match self.settle(a, from, to, reason, http_status, refusal_check.clone()) {
                Ok(()) => {
                    if from == State::Outbox {
                        self.clean_outbox(id);
                    }
                    EpisodeReport {
                        http_status,
                        ..a.report(outcome, to, reason.clone())
                    }
                }
                Err(e) => {
                    let failure = SettleFailure {
                        destination_exists: matches!(e, LayoutError::Exists { .. }),
                        message: e.to_string(),
                    };
                    // The retry state as it is on disk now (staging may have
                    // added the archive's digest).
                    let on_disk = RetryState::load(&self.layout, id)
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                    let next = machine::after_settle_failure(
                        &t,
                        failure,
                        id,
                        &on_disk,
                        SystemTime::now(),
                        random_unit(),
                    );
                    self.apply(a, next, on_disk)
                }
            },
            Transition::Retry {
                attempts,
                delay,
                due,
                reason,
                http_status,
            } => {
                retry.attempts = attempts;
                retry.next_attempt_at = due;
                retry.last_error = reason.clone();
                retry.last_status = http_status;
                if retry.claimed_at == 0 {
                    retry.claimed_at = unix_now();
                }
                let detail = match retry.store(&self.layout, id) {
                    Ok(()) => format!("{reason}; next attempt in {}s", delay.as_secs_f64().ceil()),
                    Err(e) => format!("{reason}; and the retry state could not be saved: {e}"),
                };
                EpisodeReport {
                    http_status,
                    attempt: attempts,
                    next_attempt_at: Some(due),
                    ..a.report(OutcomeKind::Retry, State::Outbox, detail)
                }
            }
            Transition::Hold {
                status,
                reason,
                fix,
            } => {
                retry.last_error = format!("{reason}; fix: {fix}");
                retry.last_status = Some(status);
                if retry.claimed_at == 0 {
                    retry.claimed_at = unix_now();
                }
                let _ = retry.store(&self.layout, id);
                EpisodeReport {
                    http_status: Some(status),
                    ..a.report(
                        OutcomeKind::HostError,
                        State::Outbox,
                        format!("{reason}. Fix: {fix}"),
                    )
                }
            }
            Transition::Stay { state, reason } => a.report(OutcomeKind::Retry, state, reason),
        }
    }

    /// Write the sidecar, then rename the directory: the rename is the
    /// state change.
    fn settle(
        &self,
        a: &Attempted,
        from: State,
        to: State,
        reason: &str,
        http_status: Option<u16>,
        refusal_check: Option<String>,
    ) -> Result<(), LayoutError> {
        let id = &a.id;
        let dest = self.layout.episode_dir(to, id);
        if dest.exists() {
            return Err(LayoutError::Exists {
                from: self.layout.episode_dir(from, id),
                to: dest,
            });
        }
        Sidecar {
            episode_id: id.to_string(),
            state: to,
            entered_at: unix_now(),
            reason: reason.to_string(),
            http_status,
            sha256: a.sha256.clone(),
            archive_bytes: a.archive_bytes,
            attempts: a.attempt,
            refusal_check,
        }
        .store(&self.layout, id)?;
        crate::failpoint!(crate::failpoint::SETTLE_AFTER_SIDECAR);
        rename_noreplace(&self.layout.episode_dir(from, id), &dest)?;
        layout::sync_dir(&self.layout.state_dir(to))?;
        crate::failpoint!(crate::failpoint::SETTLE_AFTER_RENAME);
        Ok(())
    }

    /// Remove the staged archive and retry state of a settled episode. A
    /// crash before this leaves files with no episode beside them, which
    /// the next prune removes.
    fn clean_outbox(&self, id: &EpisodeId) {
        crate::failpoint!(crate::failpoint::CLEANUP_BEFORE);
        // A new recording with this id claimed meanwhile owns these names
        // now (its claim already removed ours).
        if std::fs::symlink_metadata(self.layout.episode_dir(State::Outbox, id)).is_ok() {
            return;
        }
        let retry = self.layout.retry_file(id);
        for leftover in [self.layout.archive(id), layout::locked_temp(&retry), retry] {
            if let Err(e) = remove_if_present(&leftover) {
                tracing::warn!(EPISODE_ID = %id, "{e}");
            }
        }
    }
}
