//! What an upload attempt means for the episode, and when to try again.

use std::time::Duration;

use crate::config::BACKOFF_SECONDS;
use crate::transport::{Reply, TransportError};

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
    Quarantine { status: u16, reason: String },
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
        _ => "check the receiver settings in the config",
    }
}

/// Classify the result of one PUT of an archive whose SHA-256 is `sent`.
pub fn classify(result: &Result<Reply, TransportError>, sent: &[u8; 32]) -> Verdict {
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
        200..=299 => Verdict::Shipped { status },
        // A repeat of our own upload, unless the receiver says it holds
        // something else under this id: then the id was reused, and
        // calling it shipped would lose this episode.
        409 => match reply.repr_sha256 {
            Some(held) if held != *sent => Verdict::Quarantine {
                status,
                reason: "HTTP 409: the receiver already holds different content under this id \
                         (Repr-Digest differs): the id was reused for another recording"
                    .into(),
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
        400..=499 => Verdict::Quarantine { status, reason },
        // 1xx/3xx as a final answer: redirects are not followed on purpose,
        // and nothing else makes sense here. Keep the episode and retry.
        _ => Verdict::Transient {
            status: Some(status),
            reason: format!("{reason} (unexpected status; redirects are not followed)"),
            retry_after: reply.retry_after,
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

    fn reply(status: u16, body: &str) -> Result<Reply, TransportError> {
        Ok(Reply {
            status,
            retry_after: None,
            repr_sha256: None,
            body_excerpt: body.into(),
        })
    }

    fn classify(r: &Result<Reply, TransportError>) -> Verdict {
        super::classify(r, &[1; 32])
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
                reason: "HTTP 412: not in window".into()
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
    fn conflict_with_other_content_is_not_a_duplicate() {
        let with_digest = |d: [u8; 32]| {
            Ok(Reply {
                status: 409,
                retry_after: None,
                repr_sha256: Some(d),
                body_excerpt: String::new(),
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
