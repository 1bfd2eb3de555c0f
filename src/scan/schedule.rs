//! The scanner's queue, decided apart from doing: after each episode's
//! outcome, whether it stays queued and when it is due again. (The
//! host-wide pause is [`crate::machine::host`].) Pure: `now` and `jitter`
//! come from the caller.

use serde::{Deserialize, Serialize};

use crate::layout::{EpisodeId, State};
use crate::machine::host::{HostPause, PauseChange};
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
    /// Unix seconds it was recorded (or claimed, or first seen): its age.
    pub recorded_at: u64,
}

/// The order of a pass: oldest first, so that after a pause the probe is
/// the episode that has waited longest, except the row's suspects (an
/// episode the receiver may fail on for its own sake must not hold the
/// queue: it goes last while others are due).
pub fn order(mut due: Vec<Due>, suspects: &[String]) -> Vec<EpisodeId> {
    let suspect = |d: &Due| suspects.iter().any(|s| s == d.id.as_str());
    due.sort_by(|a, b| {
        (suspect(a), a.recorded_at, !a.in_outbox, &a.id).cmp(&(
            suspect(b),
            b.recorded_at,
            !b.in_outbox,
            &b.id,
        ))
    });
    due.into_iter().map(|d| d.id).collect()
}

/// An outage shorter than this leaves a backlog of a few episodes at most:
/// it is shipped at once.
pub const MIN_PACED_OUTAGE_S: u64 = 120;
/// The longest outage replayed at its own pace; a longer one is replayed
/// faster, over this long.
pub const MAX_PACED_OUTAGE_S: u64 = 6 * 3600;
/// Outages remembered by one replay (a flaky receiver adds one per row of
/// failures); past that the oldest is forgotten and its backlog paced by
/// the later ones only.
const MAX_OUTAGES: usize = 16;

/// One outage whose backlog is replayed: the receiver failed from `since`
/// until it answered again at `lift` (unix seconds); `pace` is seconds of
/// replay per second of outage (< 1 only after one over 6 hours).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    pub since: u64,
    pub lift: u64,
    pub pace: f64,
}

/// The backlog of outages, replayed at the pace it was recorded: an
/// episode recorded `d` seconds into an outage is due `d` seconds after the
/// receiver answered again. A host then adds its own recording rate to the
/// receiver's load, so a whole fleet coming back at most doubles it, and
/// every episode waits about as long as the outage it fell into. The probe
/// that found the receiver back was the oldest episode: the next follows
/// at the pace it was recorded. An episode still waiting when another
/// outage begins is held back as long as that one lasts; one recorded
/// after an outage is not paced by it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Replay {
    /// Oldest first.
    pub outages: Vec<Outage>,
}

impl Replay {
    /// After the receiver answered at `now` again, following a row of
    /// failures that began at `since` (`None`: unknown). A replay still
    /// running takes the new outage in, however short.
    pub fn after_outage(since: Option<u64>, now: u64, running: Option<Replay>) -> Option<Replay> {
        let running = running.filter(|r| now < r.until());
        let outage = since.map_or(0, |s| now.saturating_sub(s));
        if outage == 0 || (outage < MIN_PACED_OUTAGE_S && running.is_none()) {
            return running;
        }
        // A clock that jumped, or a week-long outage, must not spread the
        // backlog over weeks.
        let pace = (MAX_PACED_OUTAGE_S as f64 / outage as f64).min(1.0);
        let mut replay = running.unwrap_or_default();
        replay.outages.push(Outage {
            since: now - outage,
            lift: now,
            pace,
        });
        if replay.outages.len() > MAX_OUTAGES {
            replay.outages.remove(0);
        }
        Some(replay)
    }

    /// When an episode recorded at `recorded_at` is due again.
    pub fn slot(&self, recorded_at: u64) -> u64 {
        let mut due = recorded_at;
        for o in self.outages.iter().filter(|o| recorded_at < o.lift) {
            due = match due.checked_sub(o.since) {
                // Due before the outage began, and still waiting: at once
                // after it.
                None => o.lift,
                Some(into) => o.lift.saturating_add((into as f64 * o.pace).round() as u64),
            };
        }
        due
    }

    /// The replay as read back from disk at `now`: `None` once over, or
    /// if it reaches further than any outages could (a clock set back, a
    /// file edited by hand).
    pub fn as_read(self, now: u64) -> Option<Replay> {
        let furthest = now.saturating_add(MAX_OUTAGES as u64 * MAX_PACED_OUTAGE_S);
        let until = self.until();
        (now < until && until <= furthest && self.outages.len() <= MAX_OUTAGES).then_some(self)
    }

    /// Everything recorded before the last lift is due by then.
    pub fn until(&self) -> u64 {
        self.outages
            .iter()
            .map(|o| self.slot(o.lift.saturating_sub(1)))
            .max()
            .unwrap_or(0)
    }
}

/// The replay once the receiver answers at `now` after `pause`: only after
/// a receiver that was unavailable (a refusal is this host's problem, its
/// backlog burdens no one else), and only if the pause recorded when the
/// row began.
pub fn replay_after(pause: &HostPause, now: u64, running: Option<Replay>) -> Option<Replay> {
    let since = (pause.since > 0 && !pause.refused).then_some(pause.since);
    Replay::after_outage(since, now, running)
}

/// Whether a pass goes on with its next entry after an upload changed the
/// pause so: not once a pause began (the probe failed), nor once the probe
/// got through and a replay paces the rest.
pub fn pass_goes_on(change: &PauseChange, replay: Option<&Replay>) -> bool {
    match change {
        PauseChange::Keep => true,
        PauseChange::Start(_) => false,
        PauseChange::Lift => replay.is_none(),
    }
}

/// When the scanner has something to do next (unix seconds), given each
/// entry's due time and age: the first entry due, not before the pause or
/// the start hold is over, at its turn while a replay runs. The scanner
/// wakes then rather than on its interval, so a fleet of scanners started
/// together does not probe in step.
pub fn next_due(
    entries: impl Iterator<Item = (u64, u64)>,
    replay: Option<&Replay>,
    pause: Option<&HostPause>,
    start_hold: u64,
    now: u64,
) -> Option<u64> {
    let pause_until = pause.filter(|p| p.holds(now)).map(|p| p.until);
    let replay = replay.filter(|r| now < r.until());
    let due = entries
        .map(|(not_before, recorded_at)| not_before.max(replay.map_or(0, |r| r.slot(recorded_at))))
        .min()?;
    Some(due.max(pause_until.unwrap_or(0)).max(start_hold))
}

/// The entries one pass ships, in [`order`]: all that are due, or while a
/// replay runs, those whose turn in it has come.
pub fn plan(
    due: Vec<Due>,
    replay: &mut Option<Replay>,
    suspects: &[String],
    now: u64,
) -> Vec<EpisodeId> {
    let Some(r) = replay.as_ref().filter(|r| now < r.until()) else {
        *replay = None;
        return order(due, suspects);
    };
    order(
        due.into_iter()
            .filter(|d| r.slot(d.recorded_at) <= now)
            .collect(),
        suspects,
    )
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

    fn due(id: &str, recorded_at: u64) -> Due {
        Due {
            id: EpisodeId::parse(id).expect("id"),
            in_outbox: true,
            recorded_at,
        }
    }

    fn names(ids: &[EpisodeId]) -> Vec<&str> {
        ids.iter().map(EpisodeId::as_str).collect()
    }

    #[test]
    fn the_oldest_is_the_probe_unless_it_is_a_suspect() {
        let backlog = || {
            vec![
                Due {
                    in_outbox: false,
                    ..due("new", NOW)
                },
                due("claimed-late", NOW - 50),
                due("claimed", NOW - 400),
                due("poison", NOW - 900),
                due("same-age-ready", NOW - 400),
            ]
        };
        let mut same = backlog();
        same[4].in_outbox = false;
        assert_eq!(
            names(&order(same.clone(), &[])),
            ["poison", "claimed", "same-age-ready", "claimed-late", "new"]
        );
        let suspects = ["poison".to_string(), "gone".to_string()];
        assert_eq!(
            names(&order(same, &suspects)),
            ["claimed", "same-age-ready", "claimed-late", "new", "poison"]
        );
        // A suspect alone is still tried: nothing else is waiting.
        assert_eq!(
            names(&order(backlog()[3..4].to_vec(), &suspects)),
            ["poison"]
        );
    }

    #[test]
    fn a_replay_lasts_as_long_as_the_outage_and_only_after_a_long_one() {
        assert_eq!(Replay::after_outage(Some(NOW - 60), NOW, None), None);
        assert_eq!(Replay::after_outage(None, NOW, None), None);
        let r = Replay::after_outage(Some(NOW - 3600), NOW, None).expect("paced");
        let first = Outage {
            since: NOW - 3600,
            lift: NOW,
            pace: 1.0,
        };
        assert_eq!(r.outages, [first]);
        assert_eq!(r.until(), NOW + 3599);
        // Recorded 10 minutes into the outage: due 10 minutes after it.
        assert_eq!(r.slot(NOW - 3000), NOW + 600);
        assert_eq!(r.slot(NOW - 9000), NOW, "older than the outage: at once");
        assert_eq!(r.slot(NOW + 10), NOW + 10, "recorded after it: not paced");
        // Another outage during the replay, from NOW + 70 to NOW + 100: what
        // was still waiting is held back 30 s more; what it left behind is
        // paced by it alone; what came between waits for its end.
        let again =
            Replay::after_outage(Some(NOW + 70), NOW + 100, Some(r.clone())).expect("running");
        assert_eq!(again.outages.len(), 2);
        assert_eq!(again.slot(NOW - 3000), NOW + 630);
        assert_eq!(again.slot(NOW + 80), NOW + 110);
        assert_eq!(again.slot(NOW + 50), NOW + 100);
        assert_eq!(again.until(), NOW + 3629);
        // Even a short one is taken in while a replay runs; none after.
        let blip = Replay::after_outage(Some(NOW + 95), NOW + 100, Some(r.clone()));
        assert_eq!(blip.map(|b| b.slot(NOW - 3000)), Some(NOW + 605));
        assert_eq!(
            Replay::after_outage(Some(NOW + 3990), NOW + 4000, Some(r.clone())),
            None
        );
        // A week away is replayed over six hours, not a week.
        let week = Replay::after_outage(Some(NOW - 7 * 86_400), NOW, None).expect("paced");
        assert!((NOW + MAX_PACED_OUTAGE_S - 1..=NOW + MAX_PACED_OUTAGE_S).contains(&week.until()));
        // Read back from disk: over, or reaching too far, is nothing.
        assert_eq!(r.clone().as_read(NOW), Some(r.clone()));
        assert_eq!(r.as_read(NOW + 3600), None);
        let far = Replay {
            outages: vec![Outage {
                since: NOW,
                lift: NOW + 10 * 365 * 86_400,
                pace: 1.0,
            }],
        };
        assert_eq!(far.as_read(NOW), None);
    }

    #[test]
    fn a_replay_ships_each_episode_when_its_turn_comes_then_everything() {
        let backlog = || {
            vec![
                due("new", NOW + 10),
                due("older", NOW - 3000),
                due("oldest", NOW - 3500),
                due("mid", NOW - 1200),
            ]
        };
        let mut replay = Replay::after_outage(Some(NOW - 3600), NOW, None);
        // At the lift only what was recorded in the first moments.
        assert!(plan(backlog(), &mut replay, &[], NOW).is_empty());
        assert_eq!(
            names(&plan(backlog(), &mut replay, &[], NOW + 100)),
            ["oldest", "new"]
        );
        assert_eq!(
            names(&plan(backlog(), &mut replay, &[], NOW + 600)),
            ["oldest", "older", "new"]
        );
        assert!(replay.is_some());
        // Once the replay is over, all that is due goes, oldest first.
        let all = plan(backlog(), &mut replay, &[], NOW + 3600);
        assert_eq!(names(&all), ["oldest", "older", "mid", "new"]);
        assert_eq!(replay, None);
        let mut none = None;
        assert_eq!(plan(backlog(), &mut none, &[], NOW).len(), 4);
    }

    #[test]
    fn a_pass_stops_at_a_pause_and_after_a_lift_into_a_replay() {
        let replay = Replay::after_outage(Some(NOW - 3600), NOW, None);
        assert!(pass_goes_on(&PauseChange::Keep, None));
        assert!(pass_goes_on(&PauseChange::Lift, None));
        assert!(!pass_goes_on(&PauseChange::Lift, replay.as_ref()));
        let p = HostPause::example(NOW + 1, NOW);
        assert!(!pass_goes_on(&PauseChange::Start(p.clone()), None));
        // A refusal's backlog is not replayed.
        let refused = HostPause {
            refused: true,
            since: NOW - 3600,
            ..p.clone()
        };
        assert_eq!(replay_after(&refused, NOW, None), None);
        let away = HostPause {
            since: NOW - 3600,
            ..p
        };
        assert_eq!(replay_after(&away, NOW, None), replay);
    }

    #[test]
    fn the_scanner_wakes_for_the_first_thing_due() {
        let replay = Replay::after_outage(Some(NOW - 3600), NOW, None);
        let entries = || [(NOW + 50, NOW - 3500), (NOW + 900, NOW + 10)].into_iter();
        let held = HostPause::example(NOW + 70, NOW - 600);
        assert_eq!(next_due(entries(), None, None, 0, NOW), Some(NOW + 50));
        // Its turn in the replay, the pause's end, the start hold: the latest.
        assert_eq!(
            next_due(entries(), replay.as_ref(), None, 0, NOW),
            Some(NOW + 100)
        );
        assert_eq!(
            next_due(entries(), None, Some(&held), 0, NOW),
            Some(NOW + 70)
        );
        assert_eq!(
            next_due(entries(), None, None, NOW + 80, NOW),
            Some(NOW + 80)
        );
        assert_eq!(next_due([].into_iter(), None, Some(&held), 0, NOW), None);
        // A pause that ran out holds nothing back.
        let over = HostPause::example(NOW - 5, NOW - 600);
        assert_eq!(
            next_due(entries(), None, Some(&over), 0, NOW),
            Some(NOW + 50)
        );
    }
}
