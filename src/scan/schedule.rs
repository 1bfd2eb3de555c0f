//! The scanner's queue, decided apart from doing: after each episode's
//! outcome, whether it stays queued and when it is due again. (The
//! host-wide pause is [`crate::machine::host`].) Pure: `now` and `jitter`
//! come from the caller.

use crate::layout::{EpisodeId, State};
use crate::outcome::{OutcomeKind, backoff_with};

/// What the scanner knows of one episode's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// The state the episode is in now.
    pub state: State,
    /// For a retry: the due time written to its retry file.
    pub next_attempt_at: Option<u64>,
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

/// The queue entry after one outcome. `local_failures` counts this
/// entry's failures that left no retry time on disk.
pub fn after_outcome(
    outcome: Outcome,
    local_failures: u32,
    now_unix: u64,
    jitter: f64,
) -> QueueEntry {
    let pending = matches!(outcome.state, State::Episodes | State::Outbox);
    if !pending {
        return QueueEntry::Remove;
    }
    let requeue = |not_before, read_retry_file, local_failures| QueueEntry::Requeue {
        not_before,
        read_retry_file,
        local_failures,
    };
    match outcome.kind {
        // Its retry file says "now": the receiver pause rules instead.
        OutcomeKind::HostError => requeue(0, true, 0),
        OutcomeKind::Retry => match outcome.next_attempt_at {
            Some(at) => requeue(at, false, 0),
            None => {
                // Failed before an attempt was recorded (a lock or claim
                // error): hold it back in memory.
                let n = local_failures.saturating_add(1);
                let delay = backoff_with(n, None, jitter).as_secs().max(1);
                requeue(now_unix.saturating_add(delay), false, n)
            }
        },
        OutcomeKind::Shipped
        | OutcomeKind::Duplicate
        | OutcomeKind::Quarantined
        | OutcomeKind::Skipped => QueueEntry::Remove,
    }
}

/// One entry that is due, as the order of a pass sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub id: EpisodeId,
    pub in_outbox: bool,
    pub not_before: u64,
    pub failed_attempts: u32,
}

/// The order of a pass. Fewest failed attempts first: after a pause the
/// first upload is the probe, and it must not be the one episode the
/// receiver keeps failing on (that one would hold the whole queue). Then
/// the outbox before new arrivals, oldest due first.
pub fn order(mut due: Vec<Due>) -> Vec<EpisodeId> {
    due.sort_by(|a, b| {
        (a.failed_attempts, !a.in_outbox, a.not_before, &a.id).cmp(&(
            b.failed_attempts,
            !b.in_outbox,
            b.not_before,
            &b.id,
        ))
    });
    due.into_iter().map(|d| d.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn outcome(kind: OutcomeKind, state: State, at: Option<u64>) -> Outcome {
        Outcome {
            kind,
            state,
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
        for local in [0u32, 2, 8, 40] {
            let local_due = NOW + backoff_with(local + 1, None, 0.5).as_secs().max(1);
            let rows = [
                (outcome(K::HostError, S::Outbox, None), requeue(0, true, 0)),
                (
                    outcome(K::Retry, S::Outbox, Some(NOW + 9)),
                    requeue(NOW + 9, false, 0),
                ),
                (
                    outcome(K::Retry, S::Episodes, None),
                    requeue(local_due, false, local + 1),
                ),
                (outcome(K::Retry, S::Quarantine, None), QueueEntry::Remove),
                (outcome(K::Shipped, S::Shipped, None), QueueEntry::Remove),
                (outcome(K::Duplicate, S::Shipped, None), QueueEntry::Remove),
                (
                    outcome(K::Quarantined, S::Quarantine, None),
                    QueueEntry::Remove,
                ),
                (outcome(K::Skipped, S::Shipped, None), QueueEntry::Remove),
                (outcome(K::Skipped, S::Episodes, None), QueueEntry::Remove),
            ];
            for (o, expected) in rows {
                assert_eq!(
                    after_outcome(o, local, NOW, 0.5),
                    expected,
                    "{o:?} after {local}"
                );
            }
        }
    }

    #[test]
    fn a_failing_episode_is_never_the_probe_while_others_are_due() {
        let due = |id: &str, in_outbox, not_before, failed_attempts| Due {
            id: EpisodeId::parse(id).expect("id"),
            in_outbox,
            not_before,
            failed_attempts,
        };
        let order = order(vec![
            due("poison", true, 10, 3),
            due("new", false, 0, 0),
            due("claimed-late", true, 50, 0),
            due("claimed", true, 40, 0),
            due("once", true, 5, 1),
        ]);
        let names: Vec<&str> = order.iter().map(EpisodeId::as_str).collect();
        assert_eq!(names, ["claimed", "claimed-late", "new", "once", "poison"]);
    }
}
