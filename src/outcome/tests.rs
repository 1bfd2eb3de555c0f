//! The verdict tables: every answer of the PUT, and of the HEAD that
//! confirms a refusal, and what each tells the host-wide pause.

use super::*;
use crate::machine::host::HostSignal;

fn answer(status: u16, body: &str) -> Reply {
    Reply {
        status,
        retry_after: None,
        repr_sha256: None,
        body_excerpt: body.into(),
        unsent: 0,
    }
}

fn reply(status: u16, body: &str) -> Result<Reply, TransportError> {
    Ok(answer(status, body))
}

/// The PUT's verdict, with a confirming HEAD answered 404 (nothing
/// stored) whenever one is needed: the receiver's own refusal.
fn classify(r: &Result<Reply, TransportError>) -> Verdict {
    let check = needs_confirmation(r).then(|| head(reply(404, "not stored")));
    super::classify(r, &[1; 32], check.as_ref())
}

fn head(result: Result<Reply, TransportError>) -> Confirmation {
    Confirmation {
        request: "HEAD /episodes/h/e".into(),
        result,
    }
}

#[test]
fn every_row_of_the_table() {
    assert_eq!(classify(&reply(201, "")), Verdict::Shipped { status: 201 });
    assert_eq!(classify(&reply(204, "")).kind(), OutcomeKind::Shipped);
    assert_eq!(classify(&reply(409, "")), Verdict::Duplicate);
    for s in [400, 412, 413, 415, 422] {
        assert_eq!(
            classify(&reply(s, "no")).kind(),
            OutcomeKind::Quarantined,
            "{s}"
        );
    }
    assert_eq!(
        classify(&reply(412, "not in window")),
        Verdict::Quarantine {
            status: 412,
            reason: "HTTP 412: not in window".into(),
            refusal_check: Some("HEAD /episodes/h/e answered 404".into()),
        }
    );
    for s in [401, 403, 404, 405] {
        assert_eq!(
            classify(&reply(s, "")).kind(),
            OutcomeKind::HostError,
            "{s}"
        );
    }
    for s in [408, 429, 500, 502, 503, 504] {
        assert_eq!(classify(&reply(s, "")).kind(), OutcomeKind::Retry, "{s}");
    }
    for e in [
        TransportError::Connect("refused".into()),
        TransportError::Tls("bad cert".into()),
        TransportError::Stalled(Duration::from_secs(60)),
    ] {
        assert_eq!(classify(&Err(e)).kind(), OutcomeKind::Retry);
    }
    assert_eq!(classify(&reply(302, "")).kind(), OutcomeKind::Retry);
}

#[test]
fn only_episode_refusals_need_confirming() {
    for s in [400, 402, 410, 411, 412, 413, 415, 421, 422, 451, 495, 499] {
        assert!(needs_confirmation(&reply(s, "")), "{s}");
    }
    for s in [
        100, 200, 201, 204, 301, 304, 401, 403, 404, 405, 408, 409, 429, 500, 503,
    ] {
        assert!(!needs_confirmation(&reply(s, "")), "{s}");
    }
    assert!(!needs_confirmation(&Err(TransportError::Connect(
        "refused".into()
    ))));
}

/// (PUT answer, HEAD result) → verdict: a refusal settles the episode
/// only when the confirming request shows the receiver itself answered.
#[test]
fn a_refusal_counts_only_once_confirmed() {
    let nginx = "<html> 400 The SSL certificate error </html>";
    let put = reply(400, nginx);
    let quarantine = |check: &str| Verdict::Quarantine {
        status: 400,
        reason: format!("HTTP 400: {nginx}"),
        refusal_check: Some(check.into()),
    };
    type HeadResult = Option<Result<Reply, TransportError>>;
    let rows: Vec<(&str, HeadResult, Verdict)> = vec![
        (
            "not stored",
            Some(reply(404, "")),
            quarantine("HEAD /episodes/h/e answered 404"),
        ),
        (
            "stored",
            Some(reply(200, "")),
            quarantine("HEAD /episodes/h/e answered 200"),
        ),
        (
            "no HEAD here",
            Some(reply(405, "")),
            quarantine("HEAD /episodes/h/e answered 405"),
        ),
        (
            "refused the same way",
            Some(reply(400, nginx)),
            Verdict::HostError {
                status: 400,
                reason: format!(
                    "HTTP 400: {nginx} (confirmed: HEAD /episodes/h/e answered 400, so not \
                     about the episode)"
                ),
                fix: CONFIRMED_REFUSAL_FIX,
            },
        ),
        (
            "no answer to the HEAD",
            Some(Err(TransportError::Connect("refused".into()))),
            Verdict::Transient {
                status: None,
                reason: format!(
                    "HTTP 400: {nginx}; the confirming HEAD /episodes/h/e got no answer \
                     (cannot connect to the receiver: refused): kept until a refusal is \
                     confirmed"
                ),
                retry_after: None,
            },
        ),
        (
            "overloaded",
            Some(Ok(Reply {
                retry_after: Some(Duration::from_secs(30)),
                ..answer(503, "")
            })),
            Verdict::Transient {
                status: Some(503),
                reason: format!(
                    "HTTP 400: {nginx}; the confirming HEAD /episodes/h/e answered 503: \
                     kept until confirmed"
                ),
                retry_after: Some(Duration::from_secs(30)),
            },
        ),
        (
            "no check made",
            None,
            Verdict::Transient {
                status: Some(400),
                reason: format!(
                    "HTTP 400: {nginx} (not confirmed: kept until a refusal is confirmed)"
                ),
                retry_after: None,
            },
        ),
    ];
    for (name, result, expected) in rows {
        let check = result.map(head);
        let got = super::classify(&put, &[1; 32], check.as_ref());
        assert_eq!(got, expected, "{name}");
    }
    // By kind, every answer the HEAD can give.
    let kind =
        |s: u16| super::classify(&reply(412, "late"), &[1; 32], Some(&head(reply(s, "")))).kind();
    for s in [200, 204, 404, 405] {
        assert_eq!(kind(s), OutcomeKind::Quarantined, "HEAD {s}");
    }
    for s in [400, 401, 403, 409, 412, 421, 495] {
        assert_eq!(kind(s), OutcomeKind::HostError, "HEAD {s}");
    }
    for s in [101, 301, 302, 408, 429, 500, 502] {
        assert_eq!(kind(s), OutcomeKind::Retry, "HEAD {s}");
    }
    for e in [
        TransportError::Tls("bad".into()),
        TransportError::Stalled(Duration::from_secs(5)),
        TransportError::Cancelled,
    ] {
        let got = super::classify(&put, &[1; 32], Some(&head(Err(e))));
        assert_eq!(got.kind(), OutcomeKind::Retry);
    }
}

#[test]
fn a_2xx_counts_only_after_the_whole_body_with_our_digest() {
    let early = Ok(Reply {
        unsent: 12_000_000,
        ..answer(201, "stored")
    });
    assert_eq!(
        classify(&early),
        Verdict::Transient {
            status: Some(201),
            reason: "answered HTTP 201 before the whole body was sent (12000000 bytes \
                     unsent): not counted as shipped"
                .into(),
            retry_after: None,
        }
    );
    let with_digest = |d: [u8; 32]| {
        Ok(Reply {
            repr_sha256: Some(d),
            ..answer(201, "")
        })
    };
    assert_eq!(
        classify(&with_digest([1; 32])),
        Verdict::Shipped { status: 201 }
    );
    let other = classify(&with_digest([2; 32]));
    assert_eq!(other.kind(), OutcomeKind::Retry);
    let Verdict::Transient { reason, .. } = &other else {
        panic!("{other:?}");
    };
    assert!(reason.contains("Repr-Digest") && reason.contains(&"02".repeat(32)));
}

/// What each verdict tells the host-wide pause.
#[test]
fn what_the_verdicts_say_about_the_receiver() {
    let confirmed = super::classify(&reply(400, "x"), &[1; 32], Some(&head(reply(400, ""))));
    assert!(matches!(
        signal_of(&confirmed),
        HostSignal::Refused { status: 400, ref fix, .. } if fix == CONFIRMED_REFUSAL_FIX
    ));
    let genuine = classify(&reply(412, "late"));
    assert_eq!(signal_of(&genuine), HostSignal::Answered);
    let early = classify(&Ok(Reply {
        unsent: 1,
        ..answer(201, "")
    }));
    assert!(matches!(
        signal_of(&early),
        HostSignal::Unavailable {
            status: Some(201),
            ..
        }
    ));
    let head_down = super::classify(
        &reply(400, "x"),
        &[1; 32],
        Some(&head(Err(TransportError::Connect("refused".into())))),
    );
    assert!(matches!(
        signal_of(&head_down),
        HostSignal::Unavailable { status: None, .. }
    ));
    assert_eq!(signal_of(&classify(&reply(408, ""))), HostSignal::Answered);
}

#[test]
fn the_fix_for_each_host_refusal() {
    assert!(host_error_fix(401).contains("bearer_token"));
    assert!(host_error_fix(404).contains("receiver.url"));
    for s in [400, 412, 495] {
        assert_eq!(host_error_fix(s), CONFIRMED_REFUSAL_FIX, "{s}");
    }
    assert!(CONFIRMED_REFUSAL_FIX.contains("client_cert"));
    assert!(CONFIRMED_REFUSAL_FIX.contains("https://"));
}

#[test]
fn conflict_with_other_content_is_not_a_duplicate() {
    let with_digest = |d: [u8; 32]| {
        Ok(Reply {
            repr_sha256: Some(d),
            ..answer(409, "")
        })
    };
    assert_eq!(classify(&with_digest([1; 32])), Verdict::Duplicate);
    assert_eq!(
        classify(&with_digest([2; 32])).kind(),
        OutcomeKind::Quarantined
    );
}

#[test]
fn backoff_follows_seed_with_jitter_and_cap() {
    for (attempt, base) in [(1u32, 1.0f64), (3, 4.0), (9, 300.0), (50, 300.0)] {
        for _ in 0..50 {
            let d = backoff(attempt, None).as_secs_f64();
            assert!(
                d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                "{attempt}: {d}"
            );
        }
    }
    assert_eq!(
        backoff(1, Some(Duration::from_secs(90))),
        Duration::from_secs(90)
    );
    let spread: std::collections::HashSet<u64> = (0..20)
        .map(|_| backoff(9, None).as_millis() as u64)
        .collect();
    assert!(spread.len() > 5, "jitter does not vary: {spread:?}");
}

/// What the host pause hears from a verdict on an upload that reached the
/// receiver.
fn signal_of(verdict: &Verdict) -> HostSignal {
    HostSignal::of(
        verdict,
        crate::machine::host::Contact::Reached,
        &crate::layout::EpisodeId::parse("ep").expect("id"),
    )
}
