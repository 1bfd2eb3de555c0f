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

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::outcome::{Verdict, backoff_with};
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
    pub fn of(verdict: &Verdict, cancelled: bool) -> HostSignal {
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
            Verdict::Transient { .. } if cancelled => HostSignal::Silent,
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
                // 408, or a 1xx/3xx final answer: the receiver is there.
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
    /// A refusal (fix the config) rather than an unavailable receiver.
    pub refused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl HostPause {
    /// Still holding uploads back at `now`? A pause that reaches further
    /// than any rule could set (the clock jumped back, a hand-edited file)
    /// counts as ending at that horizon.
    pub fn holds(&self, now: u64) -> bool {
        now < self.until.min(now.saturating_add(horizon().as_secs()))
    }

    /// Seconds left at `now` (0 once over), within the horizon.
    pub fn left(&self, now: u64) -> u64 {
        self.until.saturating_sub(now).min(horizon().as_secs())
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
    now: u64,
    jitter: f64,
) -> PauseChange {
    let failures = before.map_or(0, |p| p.failures).saturating_add(1);
    let schedule = backoff_with(failures, None, jitter).min(MAX_HOST_PAUSE);
    let pause = |delay: Duration, refused, status, reason: &str, fix: Option<String>| {
        PauseChange::Start(HostPause {
            until: now
                .saturating_add(delay.as_secs_f64().ceil() as u64)
                .max(now + 1),
            failures,
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
