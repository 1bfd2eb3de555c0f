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

/// An outage shorter than this leaves a backlog of a few episodes at most:
/// it is shipped at once, as before (and the tests of short pauses keep
/// their pace).
pub const MIN_PACED_OUTAGE_S: u64 = 120;
/// The longest outage the backlog is paced over.
pub const MAX_PACED_OUTAGE_S: u64 = 6 * 3600;

/// The backlog an outage left behind, replayed at about the pace it built
/// up: spread over as long as the outage lasted, oldest first. A host then
/// adds at most its own recording rate to the receiver's load, so a whole
/// fleet coming back at most doubles it, and every episode waits about the
/// outage's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// Unix seconds: what is due is spread until then, and shipped at once
    /// after it.
    pub until: u64,
    /// Unix seconds: the next paced upload is not before then.
    pub next_at: u64,
}

impl Drain {
    /// After the receiver answered at `now` again, following a pause whose
    /// row of failures began at `since` (`None`: unknown). A drain still
    /// running is kept and, after a longer outage, lengthened.
    pub fn after_outage(since: Option<u64>, now: u64, running: Option<Drain>) -> Option<Drain> {
        let running = running.filter(|d| d.until > now);
        // Capped: a clock that jumped, or a week-long outage, must not
        // spread the backlog over weeks.
        let outage = since
            .map_or(0, |s| now.saturating_sub(s))
            .min(MAX_PACED_OUTAGE_S);
        if outage < MIN_PACED_OUTAGE_S {
            return running;
        }
        Some(Drain {
            until: running
                .map_or(0, |d| d.until)
                .max(now.saturating_add(outage)),
            next_at: running.map_or(now, |d| d.next_at),
        })
    }
}

/// The entries one pass ships, in this order. With no drain running: all
/// that are due, in [`order`]. During a drain: at most one, the oldest
/// (most failed attempts, then earliest due, then id), once its turn has
/// come; the next turn is the rest of the drain shared among what is due,
/// with ±20 % jitter. `jitter` in [0, 1).
pub fn plan(due: Vec<Due>, drain: &mut Option<Drain>, now: u64, jitter: f64) -> Vec<EpisodeId> {
    let Some(d) = drain.as_mut().filter(|d| now < d.until) else {
        *drain = None;
        return order(due);
    };
    if now < d.next_at {
        return Vec::new();
    }
    let left = due.len() as f64;
    let Some(oldest) = due.into_iter().min_by(|a, b| {
        (std::cmp::Reverse(a.failed_attempts), a.not_before, &a.id).cmp(&(
            std::cmp::Reverse(b.failed_attempts),
            b.not_before,
            &b.id,
        ))
    }) else {
        return Vec::new();
    };
    let turn = (d.until - now) as f64 / left * (0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    d.next_at = now.saturating_add((turn.round() as u64).max(1));
    vec![oldest.id]
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

    fn due(id: &str, not_before: u64, failed_attempts: u32) -> Due {
        Due {
            id: EpisodeId::parse(id).expect("id"),
            in_outbox: true,
            not_before,
            failed_attempts,
        }
    }

    #[test]
    fn a_drain_lasts_as_long_as_the_outage_and_only_after_a_long_one() {
        assert_eq!(Drain::after_outage(Some(NOW - 60), NOW, None), None);
        assert_eq!(Drain::after_outage(None, NOW, None), None);
        let d = Drain::after_outage(Some(NOW - 3600), NOW, None).expect("paced");
        assert_eq!(
            d,
            Drain {
                until: NOW + 3600,
                next_at: NOW
            }
        );
        // A short pause during the drain neither ends nor shortens it.
        let later = NOW + 100;
        assert_eq!(
            Drain::after_outage(Some(later - 5), later, Some(d)),
            Some(d)
        );
        // A longer outage lengthens it; one that is over is forgotten.
        let longer = Drain::after_outage(Some(NOW - 7200), later, Some(d)).expect("paced");
        assert_eq!(longer.until, later + 7300);
        assert_eq!(
            Drain::after_outage(Some(NOW + 3990), NOW + 4000, Some(d)),
            None
        );
    }

    #[test]
    fn a_drain_ships_the_oldest_one_at_a_time_then_everything() {
        let backlog = || {
            vec![
                due("new", 0, 0),
                due("older", NOW - 400, 2),
                due("oldest", NOW - 900, 2),
                due("mid", NOW - 100, 1),
            ]
        };
        let mut drain = Some(Drain {
            until: NOW + 400,
            next_at: NOW,
        });
        let first = plan(backlog(), &mut drain, NOW, 0.5);
        assert_eq!(first, [EpisodeId::parse("oldest").expect("id")]);
        // 400 s left for 4 due: the next turn in 100 s (±20 %).
        assert_eq!(drain.map(|d| d.next_at), Some(NOW + 100));
        assert!(plan(backlog(), &mut drain, NOW + 99, 0.5).is_empty());
        let second = plan(backlog()[..3].to_vec(), &mut drain, NOW + 100, 0.0);
        assert_eq!(second, [EpisodeId::parse("oldest").expect("id")]);
        assert_eq!(drain.map(|d| d.next_at), Some(NOW + 100 + 80));
        // Once the drain is over, all that is due goes, in the usual order.
        let all = plan(backlog(), &mut drain, NOW + 400, 0.5);
        let names: Vec<&str> = all.iter().map(EpisodeId::as_str).collect();
        assert_eq!(names, ["new", "mid", "oldest", "older"]);
        assert_eq!(drain, None);
        let mut none = None;
        assert_eq!(plan(backlog(), &mut none, NOW, 0.5).len(), 4);
    }
}
