//! The episode state machine, decided in one place.
//!
//! ```text
//! episodes/<id> ─claim─▶ outbox/<id> ─2xx, 409 same digest─▶ shipped/<id>
//!      │                  │  ▲   └─confirmed 4xx refusal, 409 other digest─▶ quarantine/<id>
//!      │                  └──┘ retry: transient answer, no answer, staging or
//!      │                       settle failure (attempts + 1, backoff);
//!      │                       host refusal: held, no attempt counted
//!      └─ outbox/<id> already exists ─▶ quarantine/<id> (the newcomer)
//! ```
//!
//! Every edge case lives here: already settled, a name clash on claim, a
//! `shipped/<id>` that already exists (the copy is set aside in quarantine),
//! a settle rename that fails (stays in the outbox with a retry time).
//!
//! Nothing here touches the disk, the clock or a random source: callers pass
//! `now` and a `jitter` in [0, 1). `ship::apply` carries the transitions out
//! (sidecar, rename, retry file, journal); the scanner's own schedule is
//! decided in `scan::schedule`.

pub mod host;

use std::time::{Duration, SystemTime};

use crate::layout::{EpisodeId, RetryState, State, unix_secs_ceil};
use crate::outcome::{OutcomeKind, Verdict, backoff_with};
use crate::transport::MAX_RETRY_AFTER;

/// The furthest ahead a retry is ever scheduled: the longest backoff (its
/// last step, with the most jitter) or the longest Retry-After honoured,
/// whichever is longer, plus the second that rounding up adds. A retry
/// file that says more was written by a clock that was wrong (see
/// [`crate::time::due_within_horizon`]).
pub fn retry_horizon() -> Duration {
    backoff_with(u32::MAX, None, 1.0).max(MAX_RETRY_AFTER) + Duration::from_secs(1)
}

/// What to do with an episode, given where it was found.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// Nothing to ship: report it as skipped, with this reason.
    Skip(String),
    /// Ready in `episodes/`: claim it first (under its lock).
    Claim,
    /// Already claimed: ship from the outbox.
    Resume,
}

pub fn start(located: Option<State>, id: &EpisodeId) -> Start {
    match located {
        None => Start::Skip("not found".into()),
        Some(State::Shipped) => Start::Skip("already shipped".into()),
        Some(State::Quarantine) => Start::Skip(format!(
            "in quarantine: use `ship-episode --requeue {id}` to try again"
        )),
        Some(State::Episodes) => Start::Claim,
        Some(State::Outbox) => Start::Resume,
    }
}

/// How the claim rename `episodes/<id>` → `outbox/<id>` went.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    Claimed,
    /// `outbox/<id>` exists already.
    NameTaken,
    Failed(String),
}

/// What happened on one attempt from the outbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The archive could not be staged (read error, disk full...).
    StageFailed(String),
    /// The receiver's verdict, or a transport failure as `Transient`.
    Answered(Verdict),
}

/// A state change to carry out, or the decision to stay.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Write the sidecar into `to`, then rename `from/<id>` → `to/<id>`.
    Settle {
        from: State,
        to: State,
        outcome: OutcomeKind,
        reason: String,
        http_status: Option<u16>,
        /// How a refusal was confirmed to be the receiver's (quarantine).
        refusal_check: Option<String>,
    },
    /// Stay in the outbox with one more failed attempt, not before `due`.
    Retry {
        attempts: u32,
        delay: Duration,
        /// Unix seconds, rounded up: a Retry-After of 2 s is at least 2 s.
        due: u64,
        reason: String,
        http_status: Option<u16>,
    },
    /// The receiver refused this host: stay in the outbox, count no
    /// attempt (it is not this episode's fault), stop the run.
    Hold {
        status: u16,
        reason: String,
        fix: &'static str,
    },
    /// A local failure before any attempt (lock, claim): stay where it is,
    /// record nothing on disk.
    Stay { state: State, reason: String },
}

impl Transition {
    /// The `OUTCOME` this transition reports.
    pub fn outcome(&self) -> OutcomeKind {
        match self {
            Transition::Settle { outcome, .. } => *outcome,
            Transition::Retry { .. } | Transition::Stay { .. } => OutcomeKind::Retry,
            Transition::Hold { .. } => OutcomeKind::HostError,
        }
    }
}

/// After the claim: `None` means it is in the outbox now, go on.
pub fn after_claim(claim: Claim, id: &EpisodeId) -> Option<Transition> {
    match claim {
        Claim::Claimed => None,
        // Move the newcomer out of the path unit's glob, with the reason.
        Claim::NameTaken => Some(Transition::Settle {
            from: State::Episodes,
            to: State::Quarantine,
            outcome: OutcomeKind::Quarantined,
            reason: format!("an episode named {id} is already in outbox/: this copy was set aside"),
            http_status: None,
            refusal_check: None,
        }),
        Claim::Failed(reason) => Some(Transition::Stay {
            state: State::Episodes,
            reason,
        }),
    }
}

/// The transition after one attempt, given the retry state before it.
pub fn decide(attempt: Attempt, retry: &RetryState, now: SystemTime, jitter: f64) -> Transition {
    let settle = |to, outcome, reason, http_status, refusal_check| Transition::Settle {
        from: State::Outbox,
        to,
        outcome,
        reason,
        http_status,
        refusal_check,
    };
    match attempt {
        Attempt::StageFailed(reason) => retry_later(retry, reason, None, None, now, jitter),
        Attempt::Answered(verdict) => match verdict {
            Verdict::Shipped { status } => settle(
                State::Shipped,
                OutcomeKind::Shipped,
                "shipped".into(),
                Some(status),
                None,
            ),
            Verdict::Duplicate => settle(
                State::Shipped,
                OutcomeKind::Duplicate,
                "already on the receiver (duplicate)".into(),
                Some(409),
                None,
            ),
            Verdict::Quarantine {
                status,
                reason,
                refusal_check,
            } => settle(
                State::Quarantine,
                OutcomeKind::Quarantined,
                reason,
                Some(status),
                refusal_check,
            ),
            Verdict::HostError {
                status,
                reason,
                fix,
            } => Transition::Hold {
                status,
                reason,
                fix,
            },
            Verdict::Transient {
                status,
                reason,
                retry_after,
            } => retry_later(retry, reason, status, retry_after, now, jitter),
        },
    }
}

/// Why carrying out a `Settle` failed.
#[derive(Debug, Clone, PartialEq)]
pub struct SettleFailure {
    /// `to/<id>` exists already.
    pub destination_exists: bool,
    pub message: String,
}

/// The fallback when carrying out a `Settle` failed. `retry` is the retry
/// state on disk now.
pub fn after_settle_failure(
    failed: &Transition,
    failure: SettleFailure,
    id: &EpisodeId,
    retry: &RetryState,
    now: SystemTime,
    jitter: f64,
) -> Transition {
    let Transition::Settle {
        from,
        to,
        reason,
        http_status,
        refusal_check,
        ..
    } = failed
    else {
        return failed.clone();
    };
    match (from, to) {
        // Same id shipped before: keep this copy as evidence.
        (State::Outbox, State::Shipped) if failure.destination_exists => Transition::Settle {
            from: State::Outbox,
            to: State::Quarantine,
            outcome: OutcomeKind::Quarantined,
            reason: format!("{reason}, but shipped/{id} already exists: set aside"),
            http_status: *http_status,
            refusal_check: refusal_check.clone(),
        },
        // Still in the outbox, with a retry time, so that it is not
        // uploaded again on every pass.
        (State::Outbox, _) => {
            let why = format!(
                "{reason}, but could not move it to {to}/: {}",
                failure.message
            );
            retry_later(retry, why, *http_status, None, now, jitter)
        }
        (from, _) => Transition::Stay {
            state: *from,
            reason: format!("{reason}, but: {}", failure.message),
        },
    }
}

fn retry_later(
    retry: &RetryState,
    reason: String,
    http_status: Option<u16>,
    retry_after: Option<Duration>,
    now: SystemTime,
    jitter: f64,
) -> Transition {
    let attempts = retry.attempts.saturating_add(1);
    let delay = backoff_with(attempts, retry_after, jitter).max(Duration::from_secs(1));
    let due = unix_secs_ceil(now.checked_add(delay).unwrap_or(now));
    Transition::Retry {
        attempts,
        delay,
        due,
        reason,
        http_status,
    }
}

#[cfg(test)]
mod tests;
