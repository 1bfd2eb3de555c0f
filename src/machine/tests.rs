//! The state machine as tables: every attempt × every prior retry state →
//! the expected transition. No filesystem, no clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::config::BACKOFF_SECONDS;
use crate::outcome::host_error_fix;

const NOW: u64 = 1_800_000_000;
/// With jitter 0.5 the ±20 % spread is centred: the delay is the schedule's.
const MID: f64 = 0.5;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn id() -> EpisodeId {
    EpisodeId::parse("ep-1").expect("valid id")
}

fn prior(attempts: u32) -> RetryState {
    RetryState {
        attempts,
        ..RetryState::default()
    }
}

/// The seed's schedule entry for failed attempt number `n`.
fn schedule(n: u32) -> Duration {
    let idx = (n.max(1) as usize - 1).min(BACKOFF_SECONDS.len() - 1);
    Duration::from_secs_f64(BACKOFF_SECONDS[idx])
}

fn retry(attempts: u32, delay: Duration, reason: &str, status: Option<u16>) -> Transition {
    Transition::Retry {
        attempts,
        delay,
        due: NOW + delay.as_secs(),
        reason: reason.into(),
        http_status: status,
    }
}

fn settle(to: State, outcome: OutcomeKind, reason: &str, status: Option<u16>) -> Transition {
    Transition::Settle {
        from: State::Outbox,
        to,
        outcome,
        reason: reason.into(),
        http_status: status,
        refusal_check: None,
    }
}

/// A quarantine settle with the check that confirmed the refusal.
fn quarantine(reason: &str, status: u16, check: &str) -> Transition {
    Transition::Settle {
        from: State::Outbox,
        to: State::Quarantine,
        outcome: OutcomeKind::Quarantined,
        reason: reason.into(),
        http_status: Some(status),
        refusal_check: Some(check.into()),
    }
}

#[test]
fn every_attempt_from_every_prior_state() {
    let answered = |v| Attempt::Answered(v);
    for before in [0u32, 1, 3, 8, 9, 50, u32::MAX - 1] {
        let n = before + 1;
        let rows: Vec<(&str, Attempt, Transition)> = vec![
            (
                "201",
                answered(Verdict::Shipped { status: 201 }),
                settle(State::Shipped, OutcomeKind::Shipped, "shipped", Some(201)),
            ),
            (
                "409 same digest",
                answered(Verdict::Duplicate),
                settle(
                    State::Shipped,
                    OutcomeKind::Duplicate,
                    "already on the receiver (duplicate)",
                    Some(409),
                ),
            ),
            (
                "412 refusal",
                answered(Verdict::Quarantine {
                    status: 412,
                    reason: "HTTP 412: late".into(),
                    refusal_check: Some("HEAD /episodes/h/ep-1 answered 404".into()),
                }),
                quarantine("HTTP 412: late", 412, "HEAD /episodes/h/ep-1 answered 404"),
            ),
            (
                "409 other digest",
                answered(Verdict::Quarantine {
                    status: 409,
                    reason: "HTTP 409: id reused".into(),
                    refusal_check: None,
                }),
                settle(
                    State::Quarantine,
                    OutcomeKind::Quarantined,
                    "HTTP 409: id reused",
                    Some(409),
                ),
            ),
            (
                "400 refusal confirmed by a proxy: a host error",
                answered(Verdict::HostError {
                    status: 400,
                    reason: "HTTP 400: The SSL certificate error (confirmed)".into(),
                    fix: host_error_fix(400),
                }),
                Transition::Hold {
                    status: 400,
                    reason: "HTTP 400: The SSL certificate error (confirmed)".into(),
                    fix: host_error_fix(400),
                },
            ),
            (
                "201 before the whole body",
                answered(Verdict::Transient {
                    status: Some(201),
                    reason: "answered HTTP 201 before the whole body was sent".into(),
                    retry_after: None,
                }),
                retry(
                    n,
                    schedule(n),
                    "answered HTTP 201 before the whole body was sent",
                    Some(201),
                ),
            ),
            (
                "401 host refusal",
                answered(Verdict::HostError {
                    status: 401,
                    reason: "HTTP 401".into(),
                    fix: host_error_fix(401),
                }),
                Transition::Hold {
                    status: 401,
                    reason: "HTTP 401".into(),
                    fix: host_error_fix(401),
                },
            ),
            (
                "503 Retry-After 600",
                answered(Verdict::Transient {
                    status: Some(503),
                    reason: "HTTP 503".into(),
                    retry_after: Some(Duration::from_secs(600)),
                }),
                retry(n, Duration::from_secs(600), "HTTP 503", Some(503)),
            ),
            (
                "503 Retry-After 1",
                answered(Verdict::Transient {
                    status: Some(503),
                    reason: "HTTP 503".into(),
                    retry_after: Some(Duration::from_secs(1)),
                }),
                retry(
                    n,
                    schedule(n).max(Duration::from_secs(1)),
                    "HTTP 503",
                    Some(503),
                ),
            ),
            (
                "no answer",
                answered(Verdict::Transient {
                    status: None,
                    reason: "connection refused".into(),
                    retry_after: None,
                }),
                retry(n, schedule(n), "connection refused", None),
            ),
            (
                "staging failed",
                Attempt::StageFailed("disk full".into()),
                retry(n, schedule(n), "disk full", None),
            ),
        ];
        for (name, attempt, expected) in rows {
            let got = decide(attempt, &prior(before), now(), MID);
            assert_eq!(got, expected, "{name} after {before} failed attempts");
            assert_eq!(got.outcome(), expected.outcome());
        }
    }
}

#[test]
fn jitter_spreads_within_twenty_percent_and_retry_after_is_a_floor() {
    let transient = || {
        Attempt::Answered(Verdict::Transient {
            status: Some(500),
            reason: "HTTP 500".into(),
            retry_after: None,
        })
    };
    for (jitter, expected) in [(0.0, 240.0), (0.999_999, 360.0)] {
        let Transition::Retry { delay, .. } = decide(transient(), &prior(8), now(), jitter) else {
            panic!("not a retry");
        };
        assert!((delay.as_secs_f64() - expected).abs() < 0.01, "{delay:?}");
    }
    // A sub-second clock: the due time is rounded up, never early.
    let t = now() + Duration::from_millis(500);
    let Transition::Retry { due, .. } = decide(Attempt::StageFailed("x".into()), &prior(0), t, 0.0)
    else {
        panic!("not a retry");
    };
    assert_eq!(due, NOW + 2, "0.5 s + max(0.8 s, 1 s) rounds up to 2 s");
}

/// No rule schedules a retry beyond [`retry_horizon`], counted from the
/// whole second the retry file is written in: a file that says more was
/// written by a wrong clock. The longest Retry-After reaches it exactly.
#[test]
fn no_retry_is_scheduled_beyond_the_horizon() {
    let horizon = retry_horizon().as_secs();
    assert_eq!(horizon, MAX_RETRY_AFTER.as_secs() + 1);
    let mut furthest = 0;
    for before in [0u32, 1, 8, 9, 50, u32::MAX - 1] {
        for retry_after in [None, Some(0), Some(3600), Some(MAX_RETRY_AFTER.as_secs())] {
            for jitter in [0.0, 0.5, 0.999_999, 1.0] {
                let transient = Attempt::Answered(Verdict::Transient {
                    status: Some(503),
                    reason: "HTTP 503".into(),
                    retry_after: retry_after.map(Duration::from_secs),
                });
                let t = now() + Duration::from_millis(999);
                let Transition::Retry { due, .. } = decide(transient, &prior(before), t, jitter)
                else {
                    panic!("not a retry");
                };
                assert!(
                    due - NOW <= horizon,
                    "{before} {retry_after:?} {jitter}: {due}"
                );
                furthest = furthest.max(due - NOW);
            }
        }
    }
    assert_eq!(furthest, horizon);
}

#[test]
fn where_it_is_decides_the_start() {
    let rows = [
        (None, Start::Skip("not found".into())),
        (Some(State::Shipped), Start::Skip("already shipped".into())),
        (
            Some(State::Quarantine),
            Start::Skip("in quarantine: use `ship-episode --requeue ep-1` to try again".into()),
        ),
        (Some(State::Episodes), Start::Claim),
        (Some(State::Outbox), Start::Resume),
    ];
    for (located, expected) in rows {
        assert_eq!(start(located, &id()), expected, "{located:?}");
    }
}

#[test]
fn claim_results() {
    assert_eq!(after_claim(Claim::Claimed, &id()), None);
    assert_eq!(
        after_claim(Claim::NameTaken, &id()),
        Some(Transition::Settle {
            from: State::Episodes,
            to: State::Quarantine,
            outcome: OutcomeKind::Quarantined,
            reason: "an episode named ep-1 is already in outbox/: this copy was set aside".into(),
            http_status: None,
            refusal_check: None,
        })
    );
    assert_eq!(
        after_claim(Claim::Failed("EACCES".into()), &id()),
        Some(Transition::Stay {
            state: State::Episodes,
            reason: "EACCES".into()
        })
    );
}

#[test]
fn every_settle_failure() {
    let failure = |exists| SettleFailure {
        destination_exists: exists,
        message: "boom".into(),
    };
    let shipped = settle(State::Shipped, OutcomeKind::Duplicate, "dup", Some(409));
    let quarantined = quarantine("bad", 400, "HEAD /episodes/h/ep-1 answered 404");
    let clash = after_claim(Claim::NameTaken, &id()).expect("a settle");
    let rows = [
        (
            &shipped,
            true,
            settle(
                State::Quarantine,
                OutcomeKind::Quarantined,
                "dup, but shipped/ep-1 already exists: set aside",
                Some(409),
            ),
        ),
        (
            &shipped,
            false,
            retry(
                4,
                schedule(4),
                "dup, but could not move it to shipped/: boom",
                Some(409),
            ),
        ),
        (
            &quarantined,
            true,
            retry(
                4,
                schedule(4),
                "bad, but could not move it to quarantine/: boom",
                Some(400),
            ),
        ),
        (
            &clash,
            true,
            Transition::Stay {
                state: State::Episodes,
                reason: "an episode named ep-1 is already in outbox/: this copy was set aside, \
                         but: boom"
                    .into(),
            },
        ),
    ];
    for (failed, exists, expected) in rows {
        let got = after_settle_failure(failed, failure(exists), &id(), &prior(3), now(), MID);
        assert_eq!(got, expected, "{failed:?} exists={exists}");
    }
}
