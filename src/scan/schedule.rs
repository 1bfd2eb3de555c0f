//! The scanner's schedule, decided apart from doing: after each episode's
//! outcome, whether the host-wide pause starts, stays or lifts, and when the
//! episode is due again. Pure: `now` and `jitter` come from the caller.

use std::time::Duration;

use crate::layout::State;
use crate::outcome::{OutcomeKind, backoff_with};

/// The longest host-level pause, whatever the number of refusals in a row.
pub const MAX_HOST_PAUSE: Duration = Duration::from_secs(300);

/// What the scanner knows of one episode's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// The state the episode is in now.
    pub state: State,
    /// Whether the receiver answered at all (an HTTP status).
    pub answered: bool,
    /// For a retry: the due time written to its retry file.
    pub next_attempt_at: Option<u64>,
}

/// The scanner's host-wide pause, and its queue entry for the episode.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDecision {
    pub pause: PauseChange,
    pub entry: QueueEntry,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PauseChange {
    Keep,
    /// The receiver answered this host: lift a pause, reset the count.
    Resume,
    /// Hold every upload back for `delay` (refusal number `refusals`).
    Start {
        delay: Duration,
        refusals: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueueEntry {
    Remove,
    /// Keep it queued, not before `not_before` (unix seconds). With
    /// `read_retry_file`, the file is read again when that time comes.
    Requeue {
        not_before: u64,
        read_retry_file: bool,
        local_failures: u32,
    },
}

/// The scanner's view of one outcome. `refusals` counts host refusals in a
/// row before it; `local_failures` this entry's failures that left no
/// retry time on disk.
pub fn after_outcome(
    outcome: Outcome,
    refusals: u32,
    local_failures: u32,
    now_unix: u64,
    jitter: f64,
) -> QueueDecision {
    let pending = matches!(outcome.state, State::Episodes | State::Outbox);
    let requeue = |not_before, read_retry_file, local_failures| {
        if pending {
            QueueEntry::Requeue {
                not_before,
                read_retry_file,
                local_failures,
            }
        } else {
            QueueEntry::Remove
        }
    };
    match outcome.kind {
        OutcomeKind::HostError => {
            let refusals = refusals.saturating_add(1);
            let delay = backoff_with(refusals, None, jitter).min(MAX_HOST_PAUSE);
            QueueDecision {
                pause: PauseChange::Start { delay, refusals },
                // Its retry file says "now": the pause rules instead.
                entry: requeue(0, true, 0),
            }
        }
        OutcomeKind::Retry => {
            let pause = if outcome.answered {
                PauseChange::Resume
            } else {
                PauseChange::Keep
            };
            let entry = match outcome.next_attempt_at {
                Some(at) => requeue(at, false, 0),
                None => {
                    // Failed before an attempt was recorded (a lock or claim
                    // error): hold it back in memory.
                    let n = local_failures.saturating_add(1);
                    let delay = backoff_with(n, None, jitter).as_secs().max(1);
                    requeue(now_unix.saturating_add(delay), false, n)
                }
            };
            QueueDecision { pause, entry }
        }
        OutcomeKind::Shipped | OutcomeKind::Duplicate | OutcomeKind::Quarantined => QueueDecision {
            pause: PauseChange::Resume,
            entry: QueueEntry::Remove,
        },
        OutcomeKind::Skipped => QueueDecision {
            pause: PauseChange::Keep,
            entry: QueueEntry::Remove,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn outcome(kind: OutcomeKind, state: State, answered: bool, at: Option<u64>) -> Outcome {
        Outcome {
            kind,
            state,
            answered,
            next_attempt_at: at,
        }
    }

    fn requeue(not_before: u64, read_retry_file: bool, local_failures: u32) -> QueueEntry {
        QueueEntry::Requeue {
            not_before,
            read_retry_file,
            local_failures,
        }
    }

    #[test]
    fn every_outcome_from_every_prior_count() {
        use OutcomeKind as K;
        use State as S;
        for (refusals, local) in [(0u32, 0u32), (1, 2), (8, 8), (40, 40)] {
            let pause_after = |n: u32| {
                let delay = backoff_with(n, None, 0.5).min(MAX_HOST_PAUSE);
                PauseChange::Start { delay, refusals: n }
            };
            let local_due = NOW + backoff_with(local + 1, None, 0.5).as_secs().max(1);
            let rows = [
                (
                    outcome(K::HostError, S::Outbox, true, None),
                    pause_after(refusals + 1),
                    requeue(0, true, 0),
                ),
                (
                    outcome(K::Retry, S::Outbox, true, Some(NOW + 9)),
                    PauseChange::Resume,
                    requeue(NOW + 9, false, 0),
                ),
                (
                    outcome(K::Retry, S::Outbox, false, Some(NOW + 9)),
                    PauseChange::Keep,
                    requeue(NOW + 9, false, 0),
                ),
                (
                    outcome(K::Retry, S::Episodes, false, None),
                    PauseChange::Keep,
                    requeue(local_due, false, local + 1),
                ),
                (
                    outcome(K::Retry, S::Quarantine, false, None),
                    PauseChange::Keep,
                    QueueEntry::Remove,
                ),
                (
                    outcome(K::Shipped, S::Shipped, true, None),
                    PauseChange::Resume,
                    QueueEntry::Remove,
                ),
                (
                    outcome(K::Duplicate, S::Shipped, true, None),
                    PauseChange::Resume,
                    QueueEntry::Remove,
                ),
                (
                    outcome(K::Quarantined, S::Quarantine, true, None),
                    PauseChange::Resume,
                    QueueEntry::Remove,
                ),
                (
                    outcome(K::Skipped, S::Shipped, false, None),
                    PauseChange::Keep,
                    QueueEntry::Remove,
                ),
            ];
            for (o, pause, entry) in rows {
                let got = after_outcome(o, refusals, local, NOW, 0.5);
                assert_eq!(
                    got,
                    QueueDecision { pause, entry },
                    "{o:?} after {refusals}/{local}"
                );
            }
        }
    }

    #[test]
    fn host_pause_is_capped() {
        let QueueDecision { pause, .. } = after_outcome(
            outcome(OutcomeKind::HostError, State::Outbox, true, None),
            50,
            0,
            NOW,
            0.999,
        );
        assert_eq!(
            pause,
            PauseChange::Start {
                delay: MAX_HOST_PAUSE,
                refusals: 51
            }
        );
    }
}
