//! The receiver as a whole: when one answer pauses every upload of this
//! host, and when the pause lifts. Pure, like the episode machine: the
//! shipper stores the pause in `data_root/.receiver-pause.json`, so that
//! `ship-episode` runs and the scanner share it.
//!
//! - A refusal of this host (401, 403, 404, 405, a confirmed 4xx) pauses.
//! - So does the receiver being unavailable: 429, any 5xx, no connection,
//!   TLS or DNS failure, a stall, a 2xx that cannot count (sent before the
//!   whole body, or with another Repr-Digest). Retry-After is a floor.
//! - Any other answer lifts the pause: the receiver is back.
//! - The pause grows with failures in a row (the seed's schedule, with its
//!   jitter), up to [`MAX_HOST_PAUSE`], or longer if Retry-After says so.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::layout::unix_secs_ceil;
use crate::outcome::{Verdict, backoff_with};
use crate::time::due_within_horizon;
use crate::transport::MAX_RETRY_AFTER;

/// The longest pause the schedule gives (a Retry-After may ask for more).
pub const MAX_HOST_PAUSE: Duration = Duration::from_secs(300);

/// What one attempt says about the receiver as a whole.
#[derive(Debug, Clone, PartialEq)]
pub enum HostSignal {
    /// The receiver answered about the episode: it is there and accepts us.
    Answered,
    /// The receiver (or what stands in front of it) refused this host.
    Refused {
        status: u16,
        reason: String,
        fix: String,
    },
    /// Overloaded, failing or unreachable.
    Unavailable {
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Nothing about the receiver (a local failure, a cancelled upload).
    Silent,
}

impl HostSignal {
    /// The signal in the receiver's verdict on one upload.
    /// `local`: the attempt failed on our side (cancelled, the staged
    /// archive unreadable), whatever the verdict says.
    pub fn of(verdict: &Verdict, local: bool) -> HostSignal {
        match verdict {
            Verdict::Shipped { .. } | Verdict::Duplicate | Verdict::Quarantine { .. } => {
                HostSignal::Answered
            }
            Verdict::HostError {
                status,
                reason,
                fix,
            } => HostSignal::Refused {
                status: *status,
                reason: reason.clone(),
                fix: fix.to_string(),
            },
            Verdict::Transient { .. } if local => HostSignal::Silent,
            Verdict::Transient {
                status,
                reason,
                retry_after,
            } => match status {
                // A 2xx that cannot count (answered before the whole body
                // was sent, or a Repr-Digest of other content): a receiver
                // that misbehaves is as good as unavailable.
                None | Some(200..=299) | Some(429) | Some(500..=599) => HostSignal::Unavailable {
                    status: *status,
                    reason: reason.clone(),
                    retry_after: *retry_after,
                },
                // A redirect is not followed: the URL is wrong for every
                // episode (http:// to a server that moved to https://).
                Some(300..=399) => HostSignal::Refused {
                    status: status.unwrap_or(300),
                    reason: reason.clone(),
                    fix: "the receiver redirects uploads, which are not followed: set \
                          receiver.url to the address it redirects to (the scheme, host and \
                          port of the receiver itself)"
                        .into(),
                },
                // 408, or a 1xx final answer: the receiver is there.
                Some(_) => HostSignal::Answered,
            },
        }
    }
}

/// Every upload of this host is held back until `until` (unix seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostPause {
    pub until: u64,
    /// Failures in a row that led to it.
    pub failures: u32,
    /// Unix seconds of the first failure of the row: how long the receiver
    /// has been away, which paces the backlog once it is back (0 in a
    /// file written before this field existed).
    #[serde(default)]
    pub since: u64,
    /// A refusal (fix the config) rather than an unavailable receiver.
    pub refused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl HostPause {
    /// The pause as read back from a file written at `written_at` (its
    /// mtime): one that reaches further than any rule sets (the clock was
    /// ahead when it was written, a hand-edited file) ends at that horizon
    /// from when it was written; one written after `now`, by a clock set
    /// back since, is over. So a wrong clock never pauses uploads for years.
    pub fn as_read(mut self, written_at: Option<u64>, now: u64) -> HostPause {
        self.until = due_within_horizon(self.until, written_at, now, horizon().as_secs());
        self
    }

    /// Still holding uploads back at `now`? A pause that reaches further
    /// than any rule could set from `now` was written with a wrong clock (or
    /// edited by hand): it does not hold, and the next answer rewrites it.
    pub fn holds(&self, now: u64) -> bool {
        now < self.until && self.until <= now.saturating_add(horizon().as_secs())
    }

    /// Seconds left at `now` (0 once over or not holding).
    pub fn left(&self, now: u64) -> u64 {
        if self.holds(now) { self.until - now } else { 0 }
    }
}

fn horizon() -> Duration {
    MAX_RETRY_AFTER.max(MAX_HOST_PAUSE)
}

/// How the pause changes after one signal.
#[derive(Debug, Clone, PartialEq)]
pub enum PauseChange {
    Keep,
    /// The receiver answered: remove the pause, reset the count.
    Lift,
    Start(HostPause),
}

/// The pause after `signal`, given the one before it (expired or not).
pub fn after_signal(
    signal: &HostSignal,
    before: Option<&HostPause>,
    now: SystemTime,
    jitter: f64,
) -> PauseChange {
    let failures = before.map_or(0, |p| p.failures).saturating_add(1);
    let since = before
        .map(|p| p.since)
        .filter(|&s| s > 0)
        .unwrap_or_else(|| crate::layout::unix_secs(now));
    let schedule = backoff_with(failures, None, jitter).min(MAX_HOST_PAUSE);
    let pause = |delay: Duration, refused, status, reason: &str, fix: Option<String>| {
        PauseChange::Start(HostPause {
            // Rounded up: a Retry-After of 2 s holds for at least 2 s.
            until: unix_secs_ceil(now.checked_add(delay).unwrap_or(now)),
            failures,
            since,
            refused,
            status,
            reason: reason.to_string(),
            fix,
        })
    };
    match signal {
        HostSignal::Silent => PauseChange::Keep,
        HostSignal::Answered if before.is_some() => PauseChange::Lift,
        HostSignal::Answered => PauseChange::Keep,
        HostSignal::Refused {
            status,
            reason,
            fix,
        } => pause(schedule, true, Some(*status), reason, Some(fix.clone())),
        HostSignal::Unavailable {
            status,
            reason,
            retry_after,
        } => {
            let floor = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
            pause(schedule.max(floor), false, *status, reason, None)
        }
    }
}

/// When a scanner that just started may send its first upload, given the
/// pause it found on disk. A pause still holding is waited out; one that
/// ran out while the host was down is not a licence to probe at once: a
/// lab that boots together would probe together. The first probe comes at
/// a random point of the longest pause instead.
pub fn hold_after_restart(pause: Option<&HostPause>, now: u64, jitter: f64) -> u64 {
    match pause {
        None => now,
        Some(p) if p.holds(now) => p.until,
        Some(_) => {
            let spread = MAX_HOST_PAUSE.as_secs_f64() * jitter.clamp(0.0, 1.0);
            now.saturating_add(spread.round() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::outcome::host_error_fix;

    const NOW: u64 = 1_800_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn transient(status: Option<u16>, retry_after: Option<u64>) -> Verdict {
        Verdict::Transient {
            status,
            reason: "r".into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn what_each_verdict_says_about_the_receiver() {
        let unavailable = |status| HostSignal::Unavailable {
            status,
            reason: "r".into(),
            retry_after: None,
        };
        let rows = [
            (
                Verdict::Shipped { status: 201 },
                false,
                HostSignal::Answered,
            ),
            (Verdict::Duplicate, false, HostSignal::Answered),
            (
                Verdict::Quarantine {
                    status: 412,
                    reason: "r".into(),
                    refusal_check: None,
                },
                false,
                HostSignal::Answered,
            ),
            (transient(Some(408), None), false, HostSignal::Answered),
            (transient(Some(100), None), false, HostSignal::Answered),
            (transient(Some(500), None), true, HostSignal::Silent),
            (transient(Some(429), None), false, unavailable(Some(429))),
            (transient(Some(500), None), false, unavailable(Some(500))),
            (transient(Some(503), None), false, unavailable(Some(503))),
            (transient(None, None), false, unavailable(None)),
            (transient(None, None), true, HostSignal::Silent),
            (
                Verdict::HostError {
                    status: 401,
                    reason: "r".into(),
                    fix: host_error_fix(401),
                },
                false,
                HostSignal::Refused {
                    status: 401,
                    reason: "r".into(),
                    fix: host_error_fix(401).into(),
                },
            ),
        ];
        for (verdict, cancelled, expected) in rows {
            assert_eq!(HostSignal::of(&verdict, cancelled), expected, "{verdict:?}");
        }
    }

    #[test]
    fn a_redirect_is_a_refusal_naming_the_url() {
        let HostSignal::Refused { status, fix, .. } =
            HostSignal::of(&transient(Some(301), None), false)
        else {
            panic!("a redirect must pause as refused");
        };
        assert_eq!(status, 301);
        assert!(fix.contains("receiver.url"), "{fix}");
    }

    #[test]
    fn every_signal_from_every_prior_pause() {
        let prior = |failures, until| HostPause {
            until,
            failures,
            since: NOW - 3600,
            refused: false,
            status: Some(503),
            reason: "r".into(),
            fix: None,
        };
        let unavailable = |retry_after: Option<u64>| HostSignal::Unavailable {
            status: Some(503),
            reason: "busy".into(),
            retry_after: retry_after.map(Duration::from_secs),
        };
        let refused = HostSignal::Refused {
            status: 401,
            reason: "no".into(),
            fix: "fix it".into(),
        };
        for before in [None, Some(prior(1, NOW - 5)), Some(prior(8, NOW + 60))] {
            let n = before.as_ref().map_or(0, |p| p.failures) + 1;
            // Jitter 0.5: the schedule's own value.
            let schedule = backoff_with(n, None, 0.5).min(MAX_HOST_PAUSE).as_secs();
            let b = before.as_ref();
            assert_eq!(
                after_signal(&HostSignal::Silent, b, now(), 0.5),
                PauseChange::Keep
            );
            let answered = after_signal(&HostSignal::Answered, b, now(), 0.5);
            let lifted = if b.is_some() {
                PauseChange::Lift
            } else {
                PauseChange::Keep
            };
            assert_eq!(answered, lifted);
            for (signal, floor, is_refusal) in [
                (unavailable(None), 0, false),
                (unavailable(Some(600)), 600, false),
                (
                    unavailable(Some(10_000_000)),
                    MAX_RETRY_AFTER.as_secs(),
                    false,
                ),
                (refused.clone(), 0, true),
            ] {
                let PauseChange::Start(p) = after_signal(&signal, b, now(), 0.5) else {
                    panic!("{signal:?} must pause");
                };
                assert_eq!(p.failures, n);
                assert_eq!(p.until, NOW + schedule.max(floor), "{signal:?} after {b:?}");
                assert_eq!(p.refused, is_refusal);
                assert_eq!(p.fix.is_some(), is_refusal);
            }
        }
    }

    #[test]
    fn a_pause_from_a_wrong_clock_does_not_hold() {
        let pause = HostPause {
            until: NOW + 10 * 365 * 86_400,
            failures: 1,
            since: NOW,
            refused: false,
            status: None,
            reason: "r".into(),
            fix: None,
        };
        assert!(!pause.holds(NOW));
        assert_eq!(pause.left(NOW), 0);
        let at_horizon = HostPause {
            until: NOW + horizon().as_secs(),
            ..pause.clone()
        };
        assert!(at_horizon.holds(NOW));
        assert!(
            !HostPause {
                until: NOW,
                ..pause
            }
            .holds(NOW)
        );
    }

    fn pause(until: u64) -> HostPause {
        HostPause {
            until,
            failures: 3,
            refused: false,
            status: Some(503),
            reason: "HTTP 503".into(),
            fix: None,
            since: 0,
        }
    }

    /// A pause file that says "until 10 years from now" (written while the
    /// clock was ahead, or by hand) holds for at most the horizon after it
    /// was written, however often it is read again.
    #[test]
    fn a_pause_read_back_ends_within_the_horizon_of_its_writing() {
        let h = horizon().as_secs();
        let years = NOW + 10 * 365 * 86_400;
        // Beyond the horizon from `now`, a pause never holds.
        assert!(!pause(years).holds(NOW + 5 * h));
        // (row, until, written at, read at, holds)
        #[rustfmt::skip]
        let table = [
            ("an ordinary pause", NOW + 300, Some(NOW), NOW + 299, true),
            ("an ordinary pause, over", NOW + 300, Some(NOW), NOW + 300, false),
            ("years ahead, just written", years, Some(NOW), NOW + 60, true),
            ("years ahead, a horizon after writing", years, Some(NOW), NOW + h, false),
            ("years ahead, read again much later", years, Some(NOW), NOW + 5 * h, false),
            ("written by a clock 10 years ahead", years, Some(years - 300), NOW, false),
            ("written when, unknown", years, None, NOW, true),
        ];
        for (row, until, written, now, holds) in table {
            let p = pause(until).as_read(written, now);
            assert_eq!(p.holds(now), holds, "{row}: {p:?}");
            assert!(p.until <= now.max(written.unwrap_or(now)) + h, "{row}");
        }
    }

    #[test]
    fn a_row_of_failures_keeps_its_start_until_the_receiver_answers() {
        let unavailable = HostSignal::Unavailable {
            status: None,
            reason: "refused".into(),
            retry_after: None,
        };
        let PauseChange::Start(first) = after_signal(&unavailable, None, now(), 0.5) else {
            panic!("must pause");
        };
        assert_eq!(first.since, NOW);
        let later = now() + Duration::from_secs(700);
        let PauseChange::Start(next) = after_signal(&unavailable, Some(&first), later, 0.5) else {
            panic!("must pause");
        };
        assert_eq!((next.since, next.failures), (NOW, 2));
        // A file from before the field: the row starts now.
        let old = HostPause { since: 0, ..first };
        let PauseChange::Start(next) = after_signal(&unavailable, Some(&old), later, 0.5) else {
            panic!("must pause");
        };
        assert_eq!(next.since, NOW + 700);
    }

    #[test]
    fn a_restarted_scanner_waits_out_a_pause_and_spreads_a_stale_one() {
        let pause = HostPause {
            until: NOW + 40,
            failures: 9,
            refused: false,
            status: None,
            reason: "r".into(),
            fix: None,
            since: NOW - 3600,
        };
        assert_eq!(hold_after_restart(None, NOW, 0.9), NOW);
        assert_eq!(hold_after_restart(Some(&pause), NOW, 0.9), NOW + 40);
        let stale = HostPause {
            until: NOW - 600,
            ..pause
        };
        let holds: Vec<u64> = [0.0, 0.5, 0.999]
            .iter()
            .map(|&j| hold_after_restart(Some(&stale), NOW, j))
            .collect();
        assert_eq!(holds, [NOW, NOW + 150, NOW + 300]);
    }
}
