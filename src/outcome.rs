//! What an upload attempt means for the episode, and when to try again.

use std::time::Duration;

use crate::config::BACKOFF_SECONDS;
use crate::transport::{Confirmation, Reply, TransportError};

/// The `OUTCOME` journal field values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutcomeKind {
    Shipped,
    Duplicate,
    Quarantined,
    Retry,
    HostError,
    Skipped,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Shipped => "shipped",
            OutcomeKind::Duplicate => "duplicate",
            OutcomeKind::Quarantined => "quarantined",
            OutcomeKind::Retry => "retry",
            OutcomeKind::HostError => "host_error",
            OutcomeKind::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<OutcomeKind> {
        [
            OutcomeKind::Shipped,
            OutcomeKind::Duplicate,
            OutcomeKind::Quarantined,
            OutcomeKind::Retry,
            OutcomeKind::HostError,
            OutcomeKind::Skipped,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// The verdict on one upload attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// 2xx: the receiver has it now.
    Shipped { status: u16 },
    /// 409: the receiver already had it (an earlier attempt got through).
    Duplicate,
    /// The receiver refused this episode for good.
    Quarantine {
        status: u16,
        reason: String,
        /// How the refusal was confirmed to be the receiver's, e.g.
        /// `HEAD /episodes/lab-7/ep-1 answered 404` (kept in the sidecar).
        refusal_check: Option<String>,
    },
    /// A problem of this host (token, certificate, URL): stop the run, keep
    /// the episode pending, tell the operator what to fix.
    HostError {
        status: u16,
        reason: String,
        fix: &'static str,
    },
    /// Try again later.
    Transient {
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Verdict {
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Verdict::Shipped { .. } => OutcomeKind::Shipped,
            Verdict::Duplicate => OutcomeKind::Duplicate,
            Verdict::Quarantine { .. } => OutcomeKind::Quarantined,
            Verdict::HostError { .. } => OutcomeKind::HostError,
            Verdict::Transient { .. } => OutcomeKind::Retry,
        }
    }
}

fn with_body(status: u16, excerpt: &str) -> String {
    if excerpt.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {excerpt}")
    }
}

/// What to fix after a refusal of this host. Any 4xx other than 401, 403,
/// 404 and 405 gets here only once confirmed (see [`classify`]): refused
/// again on a request without a body, it was not about the episode.
pub fn host_error_fix(status: u16) -> &'static str {
    match status {
        401 => {
            "the receiver refused the credentials: check receiver.bearer_token / \
               bearer_token_file (or the bearer-token credential) in the config"
        }
        403 => {
            "the receiver forbids this host: check host_id, the client certificate \
               (receiver.client_cert) and the host's enrolment on the receiver"
        }
        404 => {
            "the upload URL does not exist: check receiver.url (it must be the \
               receiver's base URL, without /episodes)"
        }
        405 => {
            "the receiver does not accept PUT at this URL: check receiver.url points \
               at the episode receiver, not a proxy or another service"
        }
        400..=499 => CONFIRMED_REFUSAL_FIX,
        _ => "check the receiver settings in the config",
    }
}

/// The fix for a refusal that a confirming request met again.
pub const CONFIRMED_REFUSAL_FIX: &str = "something in front of the receiver (a proxy or TLS terminator) refused this host, \
     whatever the episode: check receiver.client_cert and client_key (not expired, issued \
     by a CA the server trusts, the key matching the certificate), that receiver.url's \
     scheme (https://) and port are the ones the server serves, and any proxy between \
     this host and the receiver";

/// Whether this result of a PUT is a refusal that counts only once
/// confirmed: a 4xx about the episode (400, 412, 413, 422...), which a
/// proxy or TLS terminator in front of the receiver also answers when it
/// refuses the host (a client certificate it does not accept, plain HTTP
/// to its HTTPS port). The caller asks again with [`Transport::confirm`]
/// and passes the answer to [`classify`].
///
/// [`Transport::confirm`]: crate::transport::Transport::confirm
pub fn needs_confirmation(put: &Result<Reply, TransportError>) -> bool {
    matches!(put, Ok(reply) if is_refusal(reply.status))
}

fn is_refusal(status: u16) -> bool {
    (400..=499).contains(&status) && !matches!(status, 401 | 403 | 404 | 405 | 408 | 409 | 429)
}

/// Classify the result of one PUT of an archive whose SHA-256 is `sent`.
/// `check` is the confirming request made when [`needs_confirmation`]
/// said so; a refusal without one is never settled.
pub fn classify(
    result: &Result<Reply, TransportError>,
    sent: &[u8; 32],
    check: Option<&Confirmation>,
) -> Verdict {
    let reply = match result {
        Ok(reply) => reply,
        Err(e) => {
            return Verdict::Transient {
                status: None,
                reason: e.to_string(),
                retry_after: None,
            };
        }
    };
    let status = reply.status;
    let reason = with_body(status, &reply.body_excerpt);
    match status {
        200..=299 => stored(reply, sent),
        // A repeat of our own upload, unless the receiver says it holds
        // something else under this id: then the id was reused, and
        // calling it shipped would lose this episode.
        409 => match reply.repr_sha256 {
            Some(held) if held != *sent => Verdict::Quarantine {
                status,
                reason: "HTTP 409: the receiver already holds different content under this id \
                         (Repr-Digest differs): the id was reused for another recording"
                    .into(),
                refusal_check: None,
            },
            _ => Verdict::Duplicate,
        },
        401 | 403 | 404 | 405 => Verdict::HostError {
            status,
            reason,
            fix: host_error_fix(status),
        },
        408 | 429 | 500..=599 => Verdict::Transient {
            status: Some(status),
            reason,
            retry_after: reply.retry_after,
        },
        400..=499 => confirmed(status, reason, check),
        // 1xx/3xx as a final answer: redirects are not followed on purpose,
        // and nothing else makes sense here. Keep the episode and retry.
        _ => Verdict::Transient {
            status: Some(status),
            reason: format!("{reason} (unexpected status; redirects are not followed)"),
            retry_after: reply.retry_after,
        },
    }
}

/// A 2xx counts as stored only if the receiver can have read the whole
/// body, and, when it says what it holds (`Repr-Digest`), holds what was
/// sent. Otherwise the receiver misbehaves: keep the episode and retry
/// (the host-wide logic pauses as for an unavailable receiver).
fn stored(reply: &Reply, sent: &[u8; 32]) -> Verdict {
    let status = reply.status;
    if reply.unsent > 0 {
        return Verdict::Transient {
            status: Some(status),
            reason: format!(
                "answered HTTP {status} before the whole body was sent ({} bytes unsent): \
                 not counted as shipped",
                reply.unsent
            ),
            retry_after: reply.retry_after,
        };
    }
    match reply.repr_sha256 {
        Some(held) if held != *sent => Verdict::Transient {
            status: Some(status),
            reason: format!(
                "answered HTTP {status}, but its Repr-Digest (sha-256 {}) is not the digest of \
                 what was sent: not counted as shipped",
                crate::ship::hex(&held)
            ),
            retry_after: reply.retry_after,
        },
        _ => Verdict::Shipped { status },
    }
}

/// The verdict on a refusal of the PUT (`status`, `reason`), given the
/// confirming request:
/// - answered 404 or 405 (nothing stored, or no HEAD here) or 2xx: the
///   receiver itself is there and answers for this host, so the refusal
///   was its word on the episode: quarantine, recording the check;
/// - answered 401, 403 or any other 4xx (409 too): refused again without
///   a body, so not about the episode: a refusal of this host;
/// - 408, 429, 5xx, 1xx, 3xx or no answer at all: nothing confirmed; keep
///   the episode and retry.
pub fn confirmed(status: u16, reason: String, check: Option<&Confirmation>) -> Verdict {
    let Some(check) = check else {
        return Verdict::Transient {
            status: Some(status),
            reason: format!("{reason} (not confirmed: kept until a refusal is confirmed)"),
            retry_after: None,
        };
    };
    let head = match &check.result {
        Ok(head) => head,
        Err(e) => {
            return Verdict::Transient {
                status: None,
                reason: format!(
                    "{reason}; the confirming {} got no answer ({e}): kept until a refusal is \
                     confirmed",
                    check.request
                ),
                retry_after: None,
            };
        }
    };
    let answered = format!("{} answered {}", check.request, head.status);
    match head.status {
        200..=299 | 404 | 405 => Verdict::Quarantine {
            status,
            reason,
            refusal_check: Some(answered),
        },
        408 | 429 | 500..=599 => Verdict::Transient {
            status: Some(head.status),
            reason: format!("{reason}; the confirming {answered}: kept until confirmed"),
            retry_after: head.retry_after,
        },
        400..=499 => Verdict::HostError {
            status,
            reason: format!("{reason} (confirmed: {answered}, so not about the episode)"),
            fix: host_error_fix(status),
        },
        _ => Verdict::Transient {
            status: Some(head.status),
            reason: format!("{reason}; the confirming {answered}: kept until confirmed"),
            retry_after: None,
        },
    }
}

/// Delay before attempt number `failed_attempts + 1`: the seed's schedule,
/// capped at its last entry, with ±20 % jitter so that hundreds of hosts
/// coming back after an outage do not retry in lockstep. A `Retry-After`
/// from the receiver is a floor.
pub fn backoff(failed_attempts: u32, retry_after: Option<Duration>) -> Duration {
    backoff_with(failed_attempts, retry_after, random_unit())
}

/// [`backoff`] with the random draw passed in (`jitter` in [0, 1)), so that
/// the decision is pure and the fleet simulator can drive it.
pub fn backoff_with(failed_attempts: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let idx = (failed_attempts.max(1) as usize - 1).min(BACKOFF_SECONDS.len() - 1);
    let base = BACKOFF_SECONDS[idx];
    let jittered = base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    let delay = Duration::from_secs_f64(jittered);
    match retry_after {
        Some(floor) if floor > delay => floor,
        _ => delay,
    }
}

/// A number in [0, 1) from the OS-seeded hasher: good enough for jitter,
/// and no extra dependency.
pub fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
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
        let rows: Vec<(&str, Option<Result<Reply, TransportError>>, Verdict)> = vec![
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
        let kind = |s: u16| {
            super::classify(&reply(412, "late"), &[1; 32], Some(&head(reply(s, "")))).kind()
        };
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
            HostSignal::of(&confirmed, false),
            HostSignal::Refused { status: 400, ref fix, .. } if fix == CONFIRMED_REFUSAL_FIX
        ));
        let genuine = classify(&reply(412, "late"));
        assert_eq!(HostSignal::of(&genuine, false), HostSignal::Answered);
        let early = classify(&Ok(Reply {
            unsent: 1,
            ..answer(201, "")
        }));
        assert!(matches!(
            HostSignal::of(&early, false),
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
            HostSignal::of(&head_down, false),
            HostSignal::Unavailable { status: None, .. }
        ));
        assert_eq!(
            HostSignal::of(&classify(&reply(408, "")), false),
            HostSignal::Answered
        );
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
}
