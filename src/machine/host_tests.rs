use std::time::UNIX_EPOCH;

use super::*;
use crate::outcome::host_error_fix;

const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

const PROBE: Duration = DEFAULT_PROBE_INTERVAL;

fn id() -> EpisodeId {
    EpisodeId::parse("ep-1").expect("id")
}

/// What a 500 on `episode` tells the pause.
fn failed_500(episode: &str, contact: Contact) -> HostSignal {
    let verdict = transient(Some(500), None);
    HostSignal::of(&verdict, contact, &EpisodeId::parse(episode).expect("id"))
}

/// The pause `signal` starts after `before` (it must start one).
fn started(signal: &HostSignal, before: Option<&HostPause>) -> HostPause {
    match after_signal(signal, before, now(), 0.5, PROBE) {
        PauseChange::Start(p) => p,
        other => panic!("{other:?}"),
    }
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
    use Contact::{Local, NotReached, Reached};
    let unavailable = |status, suspect: bool| HostSignal::Unavailable {
        status,
        reason: "r".into(),
        retry_after: None,
        suspect: suspect.then(|| "ep-1".to_string()),
    };
    let rows = [
        (
            Verdict::Shipped { status: 201 },
            Reached,
            HostSignal::Answered,
        ),
        (Verdict::Duplicate, Reached, HostSignal::Answered),
        (
            Verdict::Quarantine {
                status: 412,
                reason: "r".into(),
                refusal_check: None,
            },
            Reached,
            HostSignal::Answered,
        ),
        (transient(Some(408), None), Reached, HostSignal::Answered),
        (transient(Some(100), None), Reached, HostSignal::Answered),
        (transient(Some(500), None), Local, HostSignal::Silent),
        // A stall or a dropped connection mid-upload may be the episode's.
        (transient(None, None), Reached, unavailable(None, true)),
        (transient(None, None), NotReached, unavailable(None, false)),
        (transient(None, None), Local, HostSignal::Silent),
        (
            Verdict::HostError {
                status: 401,
                reason: "r".into(),
                fix: host_error_fix(401),
            },
            Reached,
            HostSignal::Refused {
                status: 401,
                reason: "r".into(),
                fix: host_error_fix(401).into(),
                suspect: Some("ep-1".into()),
            },
        ),
    ];
    // Overloaded or down for everyone, or possibly about this episode.
    let statuses = [
        (429, false),
        (500, true),
        (502, false),
        (503, false),
        (504, false),
        (200, true),
    ];
    let by_status = statuses.map(|(status, suspect)| {
        (
            transient(Some(status), None),
            Reached,
            unavailable(Some(status), suspect),
        )
    });
    for (verdict, contact, expected) in rows.into_iter().chain(by_status) {
        assert_eq!(
            HostSignal::of(&verdict, contact, &id()),
            expected,
            "{verdict:?} {contact:?}"
        );
    }
    // A Retry-After speaks for the whole receiver, whatever the status.
    let HostSignal::Unavailable { suspect, .. } =
        HostSignal::of(&transient(Some(500), Some(30)), Reached, &id())
    else {
        panic!("a 500 must pause");
    };
    assert_eq!(suspect, None);
}

#[test]
fn a_redirect_is_a_refusal_naming_the_url() {
    let HostSignal::Refused { status, fix, .. } =
        HostSignal::of(&transient(Some(301), None), Contact::Reached, &id())
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
        suspects: Vec::new(),
    };
    let unavailable = |retry_after: Option<u64>| HostSignal::Unavailable {
        status: Some(503),
        reason: "busy".into(),
        retry_after: retry_after.map(Duration::from_secs),
        suspect: None,
    };
    let refused = HostSignal::Refused {
        status: 401,
        reason: "no".into(),
        fix: "fix it".into(),
        suspect: None,
    };
    for before in [None, Some(prior(1, NOW - 5)), Some(prior(8, NOW + 60))] {
        let n = before.as_ref().map_or(0, |p| p.failures) + 1;
        let away = away_pause(n, 0.5, PROBE);
        let refused_pause = backoff_with(n, None, 0.5).min(MAX_REFUSED_PAUSE);
        let b = before.as_ref();
        assert_eq!(
            after_signal(&HostSignal::Silent, b, now(), 0.5, PROBE),
            PauseChange::Keep
        );
        let answered = after_signal(&HostSignal::Answered, b, now(), 0.5, PROBE);
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
            let PauseChange::Start(p) = after_signal(&signal, b, now(), 0.5, PROBE) else {
                panic!("{signal:?} must pause");
            };
            assert_eq!(p.failures, n);
            let schedule = if is_refusal { refused_pause } else { away };
            let until = unix_secs_ceil(now() + schedule.max(Duration::from_secs(floor)));
            assert_eq!(p.until, until, "{signal:?} after {b:?}");
            assert_eq!(p.refused, is_refusal);
            assert_eq!(p.fix.is_some(), is_refusal);
        }
    }
}

#[test]
fn a_pause_from_a_wrong_clock_does_not_hold() {
    let pause = HostPause::example(NOW + 10 * 365 * 86_400, NOW);
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
        suspects: Vec::new(),
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
        suspect: None,
    };
    let PauseChange::Start(first) = after_signal(&unavailable, None, now(), 0.5, PROBE) else {
        panic!("must pause");
    };
    assert_eq!(first.since, NOW);
    let later = now() + Duration::from_secs(700);
    let PauseChange::Start(next) = after_signal(&unavailable, Some(&first), later, 0.5, PROBE)
    else {
        panic!("must pause");
    };
    assert_eq!((next.since, next.failures), (NOW, 2));
    // A file from before the field: the row starts now.
    let old = HostPause { since: 0, ..first };
    let PauseChange::Start(next) = after_signal(&unavailable, Some(&old), later, 0.5, PROBE) else {
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
        suspects: Vec::new(),
    };
    assert_eq!(hold_after_restart(None, NOW, 0.9, PROBE), NOW);
    assert_eq!(hold_after_restart(Some(&pause), NOW, 0.9, PROBE), NOW + 40);
    let stale = HostPause {
        until: NOW - 600,
        ..pause
    };
    let holds: Vec<u64> = [0.0, 0.5, 0.999]
        .iter()
        .map(|&j| hold_after_restart(Some(&stale), NOW, j, PROBE))
        .collect();
    assert_eq!(holds, [NOW, NOW + 295, NOW + 589]);
    // After a refusal, its operator is waiting: within the refused cap.
    let refused = HostPause {
        refused: true,
        ..stale
    };
    assert_eq!(
        hold_after_restart(Some(&refused), NOW, 0.999, PROBE),
        NOW + 300
    );
}

/// A blip is retried after a second; a receiver away is probed once per
/// 95 to 100 % of the probe interval, the first time 50 to 100 % (by
/// default under 10 minutes with the scanner's wake on top, so an episode
/// waits at most the outage plus 10 minutes), whatever the jitter, however
/// long the row; a configured interval is held to its bounds.
#[test]
fn one_quick_retry_then_one_probe_per_interval() {
    let secs = Duration::from_secs;
    for j in [0.0, 0.5, 0.999] {
        let first = away_pause(1, j, PROBE).as_secs_f64();
        assert!((0.8..=1.2).contains(&first), "{first}");
        let p = away_pause(2, j, PROBE);
        assert!(p >= secs(295) && p <= PROBE, "{p:?}");
        for n in [3, 9, 1000] {
            let p = away_pause(n, j, PROBE);
            assert!(p >= secs(560) && p <= PROBE, "{p:?}");
            let short = away_pause(n, j, secs(20));
            assert!(short >= secs(19) && short <= secs(20), "{short:?}");
            let long = away_pause(n, j, secs(86_400));
            assert!(long <= MAX_PROBE_INTERVAL, "{long:?}");
        }
    }
    assert_eq!(away_pause(2, 0.0, PROBE), secs(295));
    assert!(DEFAULT_PROBE_INTERVAL <= secs(590));
}

/// One episode the receiver fails on for its own sake costs a second, not
/// a probe interval: the next probe is another episode. Two such episodes
/// in a row of failures mean the receiver itself is failing.
#[test]
fn a_lone_suspect_is_retried_at_once() {
    let failed = |episode: &str| failed_500(episode, Contact::Reached);
    let next = started;
    let mut p = next(&failed("poison"), None);
    for _ in 0..5 {
        assert_eq!((p.until - NOW, p.suspects.len()), (1, 1), "{p:?}");
        p = next(&failed("poison"), Some(&p));
    }
    let other = next(&failed("other"), Some(&p));
    assert!(other.until - NOW >= 560, "two suspects: {other:?}");
    // After an outage (no connection: no suspects), a poison probe still
    // costs only a second.
    let away = HostSignal::Unavailable {
        status: None,
        reason: "refused".into(),
        retry_after: None,
        suspect: None,
    };
    let outage = next(&away, Some(&next(&away, None)));
    assert!(outage.until - NOW >= 295, "{outage:?}");
    assert_eq!(next(&failed("poison"), Some(&outage)).until - NOW, 1);
}

/// The scanner trusts the pause file (another process may have lifted or
/// renewed it), except for a pause of its own that never reached it.
#[test]
fn the_pause_in_force_is_the_one_on_disk_unless_ours_was_not_stored() {
    let mine = pause(NOW + 500);
    let shorter = pause(NOW + 100);
    let cases = [
        (true, None, None),
        (false, None, Some(mine.clone())),
        (true, Some(shorter.clone()), Some(shorter.clone())),
        (false, Some(shorter.clone()), Some(mine.clone())),
    ];
    for (stored, on_disk, expected) in cases {
        assert_eq!(
            pause_in_force(Some(&mine), stored, on_disk.clone(), NOW),
            expected,
            "stored {stored}, on disk {on_disk:?}"
        );
    }
    // Ours ran out: the disk again.
    assert_eq!(pause_in_force(Some(&mine), false, None, NOW + 600), None);
}

/// A pause file written before suspects existed still reads.
#[test]
fn an_older_pause_file_reads() {
    let old = r#"{"until":1800000100,"failures":3,"since":1799999000,"refused":false,"status":503,"reason":"HTTP 503"}"#;
    let p: HostPause = serde_json::from_str(old).expect("old pause file");
    assert_eq!((p.failures, p.suspects.len()), (3, 0));
}

/// A refused host keeps the seed's schedule: its operator fixes it, and
/// shipping resumes within minutes of the fix.
#[test]
fn a_refusal_keeps_the_seeds_schedule() {
    let refused = HostSignal::Refused {
        status: 401,
        reason: "no".into(),
        fix: "fix".into(),
        suspect: None,
    };
    let mut before = None;
    let mut pauses = Vec::new();
    for _ in 0..12 {
        let PauseChange::Start(p) = after_signal(&refused, before.as_ref(), now(), 0.5, PROBE)
        else {
            panic!("a refusal pauses");
        };
        pauses.push(p.until - NOW);
        before = Some(p);
    }
    assert_eq!(pauses[..4], [1, 2, 4, 8]);
    assert_eq!(pauses.last(), Some(&300));
}

#[test]
fn suspects_gather_over_a_row_and_go_with_it() {
    let failed = failed_500;
    let start = started;
    let mut p = start(&failed("a", Contact::Reached), None);
    assert_eq!(p.suspects, ["a"]);
    p = start(&failed("a", Contact::Reached), Some(&p));
    p = start(&failed("b", Contact::NotReached), Some(&p));
    assert_eq!(p.suspects, ["a"], "no duplicates; unreached says nothing");
    for i in 0..10 {
        p = start(&failed(&format!("e{i}"), Contact::Reached), Some(&p));
    }
    assert_eq!(p.suspects.len(), MAX_SUSPECTS);
    assert_eq!(p.suspects.last().map(String::as_str), Some("e9"));
    // A refused episode goes behind others as the next probe too (a rule
    // on its path would otherwise refuse the host for good).
    let refused = HostSignal::Refused {
        status: 401,
        reason: "no".into(),
        fix: "fix".into(),
        suspect: Some("e9".into()),
    };
    let kept = start(&refused, Some(&p));
    assert_eq!(kept.suspects, p.suspects);
    let newly = HostSignal::Refused {
        status: 401,
        reason: "no".into(),
        fix: "fix".into(),
        suspect: Some("held".into()),
    };
    let held = start(&newly, Some(&p));
    assert_eq!(held.suspects.last().map(String::as_str), Some("held"));
    assert_eq!(
        after_signal(&HostSignal::Answered, Some(&kept), now(), 0.5, PROBE),
        PauseChange::Lift
    );
}
