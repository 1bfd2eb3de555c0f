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
    /// No answer at all (no connection, a stall, a cancelled upload): try
    /// again later.
    pub fn unanswered(reason: String) -> Verdict {
        Verdict::Transient {
            status: None,
            reason,
            retry_after: None,
        }
    }

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
        Err(e) => return Verdict::unanswered(e.to_string()),
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
            return Verdict::unanswered(format!(
                "{reason}; the confirming {} got no answer ({e}): kept until a refusal is \
                     confirmed",
                check.request
            ));
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
mod tests;
