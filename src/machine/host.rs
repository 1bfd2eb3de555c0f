//! The receiver as a whole: when one answer pauses every upload of this
//! host, and when the pause lifts. Pure, like the episode machine: the
//! shipper stores the pause in `data_root/.receiver-pause.json`, so that
//! `ship-episode` runs and the scanner share it.
//!
//! - A refusal of this host (401, 403, 404, 405, a confirmed 4xx) pauses.
//! - So does the receiver being unavailable: 429, any 5xx, no connection,
//!   TLS or DNS failure, a stall. Retry-After is a floor for the pause.
//! - Any other answer lifts the pause: the receiver is back.
//! - The pause grows with failures in a row (the seed's schedule, with its
//!   jitter), up to [`MAX_HOST_PAUSE`], or longer if Retry-After says so.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
                None | Some(429) | Some(500..=599) => HostSignal::Unavailable {
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
    /// The pause as read back from a file written at `written_at` (its
    /// mtime): one that reaches further than any rule sets (the clock was
    /// ahead when it was written, a hand-edited file) ends at that horizon
    /// from when it was written; one written after `now`, by a clock set
    /// back since, is over. So a wrong clock never pauses uploads for years.
    pub fn as_read(mut self, written_at: Option<u64>, now: u64) -> HostPause {
        self.until = due_within_horizon(self.until, written_at, now, horizon().as_secs());
        self
    }

    /// Still holding uploads back at `now`? (Within the horizon from `now`
    /// as well; [`HostPause::as_read`] anchors it to when it was written.)
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn pause(until: u64) -> HostPause {
        HostPause {
            until,
            failures: 3,
            refused: false,
            status: Some(503),
            reason: "HTTP 503".into(),
            fix: None,
        }
    }

    /// A pause file that says "until 10 years from now" (written while the
    /// clock was ahead, or by hand) holds for at most the horizon after it
    /// was written, however often it is read again.
    #[test]
    fn a_pause_read_back_ends_within_the_horizon_of_its_writing() {
        let h = horizon().as_secs();
        let years = NOW + 10 * 365 * 86_400;
        // Unanchored, the horizon moves with `now`: it would hold for years.
        assert!(pause(years).holds(NOW + 5 * h));
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
}
