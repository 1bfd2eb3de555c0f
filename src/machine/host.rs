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
//! - An unavailable receiver: the first failure of a row is retried after
//!   the seed's first step (a blip costs a second). From the second on the
//!   receiver is away, and the host probes it once per
//!   `shipper.receiver_probe_interval_s` (95 to 100 % of it, the first time
//!   50 to 100 %; by default 590 s, [`DEFAULT_PROBE_INTERVAL`]), or later if
//!   Retry-After says so. Not the seed's doubling 2, 4 … 300 s: in a fleet, every probe
//!   a host makes in its first minutes of trouble lands on the receiver in
//!   the seconds it comes back (the fleet simulator, `crates/fleet-sim`,
//!   measured 5× the steady rate in the busiest second); one probe per
//!   interval adds about one steady rate, and is noticed within 10 minutes.
//! - A refusal is this host's own problem, fixed by its operator: it keeps
//!   the seed's schedule (1, 2, 4 … 300 s), so shipping resumes within
//!   minutes of the fix.
//! - An episode the receiver may have failed on for its own sake (a 500, a
//!   stall mid-upload; not a 429/502/503/504, a Retry-After or no
//!   connection at all) is a suspect of the row: it is not the probe while
//!   others are due, so one bad episode cannot hold the queue, and while it
//!   is the only suspect its failures are retried after a second (another
//!   episode goes first) rather than counted as the receiver being away.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::layout::{EpisodeId, unix_secs_ceil};
use crate::outcome::{Verdict, backoff_with};
use crate::time::due_within_horizon;
use crate::transport::MAX_RETRY_AFTER;

/// How often a host probes a receiver that is away, by default: under 10
/// minutes with the scanner's wake on top, so an episode waits at most the
/// outage plus 10 minutes, and a fleet recording every 10 minutes adds
/// about its steady rate in probes.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(590);
/// The longest a configured probe interval may be.
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(3600);
/// The seed's cap for a refused host's pause.
const MAX_REFUSED_PAUSE: Duration = Duration::from_secs(300);
/// Pauses from the second failure on are drawn from this share of the
/// probe interval up to all of it: enough spread that hosts do not fall
/// into step, little enough that the fleet's probes stay near one per host
/// per interval.
const AWAY_PAUSE_FROM: f64 = 0.95;
/// The first of them is drawn from half the interval up: hosts that failed
/// in the same second (a receiver crash cutting every upload in flight)
/// fall out of step at once (and the fleet simulator measured a slightly
/// lower peak than with 95 % for every pause).
const FIRST_AWAY_PAUSE_FROM: f64 = 0.5;
/// Suspects remembered per row of failures (the newest).
const MAX_SUSPECTS: usize = 8;

/// How far one attempt got: whether its failure can say anything about
/// the receiver, or about the episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// Our own side failed (cancelled, the staged archive unreadable).
    Local,
    /// No connection to the receiver (refused, DNS, TLS): it never saw
    /// the episode.
    NotReached,
    /// The receiver (or what stands in front of it) took part.
    Reached,
}

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
        /// The episode tried: a refusal may also be its own (a rule on
        /// its path), so it goes behind others as the next probe.
        suspect: Option<String>,
    },
    /// Overloaded, failing or unreachable.
    Unavailable {
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
        /// The episode tried, when the failure may be its own.
        suspect: Option<String>,
    },
    /// Nothing about the receiver (a local failure, a cancelled upload).
    Silent,
}

impl HostSignal {
    /// The signal in the receiver's verdict on the upload of `episode`.
    pub fn of(verdict: &Verdict, contact: Contact, episode: &EpisodeId) -> HostSignal {
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
                suspect: Some(episode.to_string()),
            },
            Verdict::Transient { .. } if contact == Contact::Local => HostSignal::Silent,
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
                    suspect: may_be_the_episodes(*status, *retry_after, contact)
                        .then(|| episode.to_string()),
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
                    suspect: Some(episode.to_string()),
                },
                // 408, or a 1xx final answer: the receiver is there.
                Some(_) => HostSignal::Answered,
            },
        }
    }
}

/// Whether a failure may be the episode's own doing rather than the
/// receiver's state: only when the receiver took part and did not say it
/// is overloaded or down for everyone.
fn may_be_the_episodes(
    status: Option<u16>,
    retry_after: Option<Duration>,
    contact: Contact,
) -> bool {
    contact == Contact::Reached
        && retry_after.is_none()
        && !matches!(status, Some(429 | 502 | 503 | 504))
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
    /// Episodes whose failure in this row may be their own: not the probe
    /// while others are due.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspects: Vec<String>,
}

impl HostPause {
    /// An unavailable receiver's pause, for tests.
    #[cfg(test)]
    pub(crate) fn example(until: u64, since: u64) -> HostPause {
        HostPause {
            until,
            failures: 1,
            since,
            refused: false,
            status: None,
            reason: "r".into(),
            fix: None,
            suspects: Vec::new(),
        }
    }

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
    MAX_RETRY_AFTER.max(MAX_PROBE_INTERVAL)
}

/// The pause in force, from the one this process last set (`mine`,
/// `stored` if it reached the disk) and the one on disk. The disk is the
/// truth (another process lifted or renewed it), except for a pause of ours
/// that could not be written (a full disk): that one still holds here.
pub fn pause_in_force(
    mine: Option<&HostPause>,
    stored: bool,
    on_disk: Option<HostPause>,
    now: u64,
) -> Option<HostPause> {
    match (mine, on_disk) {
        (Some(mine), None) if !stored && mine.holds(now) => Some(mine.clone()),
        (Some(mine), Some(disk)) if !stored && mine.until > disk.until && mine.holds(now) => {
            Some(mine.clone())
        }
        (_, on_disk) => on_disk,
    }
}

/// How the pause changes after one signal.
#[derive(Debug, Clone, PartialEq)]
pub enum PauseChange {
    Keep,
    /// The receiver answered: remove the pause, reset the count.
    Lift,
    Start(HostPause),
}

/// The pause after `signal`, given the one before it (expired or not);
/// `probe_every` is `shipper.receiver_probe_interval_s`.
pub fn after_signal(
    signal: &HostSignal,
    before: Option<&HostPause>,
    now: SystemTime,
    jitter: f64,
    probe_every: Duration,
) -> PauseChange {
    let failures = before.map_or(0, |p| p.failures).saturating_add(1);
    let since = before
        .map(|p| p.since)
        .filter(|&s| s > 0)
        .unwrap_or_else(|| crate::layout::unix_secs(now));
    let mut suspects = before.map(|p| p.suspects.clone()).unwrap_or_default();
    let pause = |delay: Duration,
                 refused,
                 status,
                 reason: &str,
                 fix: Option<String>,
                 suspects: Vec<String>| {
        PauseChange::Start(HostPause {
            // Rounded up: a Retry-After of 2 s holds for at least 2 s.
            until: unix_secs_ceil(now.checked_add(delay).unwrap_or(now)),
            failures,
            since,
            refused,
            status,
            reason: reason.to_string(),
            fix,
            suspects,
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
            suspect,
        } => {
            add_suspect(&mut suspects, suspect.as_ref());
            pause(
                backoff_with(failures, None, jitter).min(MAX_REFUSED_PAUSE),
                true,
                Some(*status),
                reason,
                Some(fix.clone()),
                suspects,
            )
        }
        HostSignal::Unavailable {
            status,
            reason,
            retry_after,
            suspect,
        } => {
            add_suspect(&mut suspects, suspect.as_ref());
            let floor = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
            // One episode failing for its own sake says nothing about the
            // receiver as a whole: retry at once, with another episode.
            let lone_suspect = suspect.is_some() && suspects.len() == 1;
            let schedule = if lone_suspect {
                backoff_with(1, None, jitter)
            } else {
                away_pause(failures, jitter, probe_every)
            };
            pause(schedule.max(floor), false, *status, reason, None, suspects)
        }
    }
}

/// Remember `suspect` for the row (once, the newest [`MAX_SUSPECTS`]).
fn add_suspect(suspects: &mut Vec<String>, suspect: Option<&String>) {
    if let Some(id) = suspect.filter(|id| !suspects.contains(id)) {
        if suspects.len() == MAX_SUSPECTS {
            suspects.remove(0);
        }
        suspects.push(id.clone());
    }
}

/// The pause of an unavailable receiver after `failures` in a row, before
/// any Retry-After.
fn away_pause(failures: u32, jitter: f64, probe_every: Duration) -> Duration {
    if failures <= 1 {
        return backoff_with(1, None, jitter);
    }
    let from = if failures == 2 {
        FIRST_AWAY_PAUSE_FROM
    } else {
        AWAY_PAUSE_FROM
    };
    let share = from + (1.0 - from) * jitter.clamp(0.0, 1.0);
    probe_every.min(MAX_PROBE_INTERVAL).mul_f64(share)
}

/// When a scanner that just started may send its first upload, given the
/// pause it found on disk. A pause still holding is waited out; one that
/// ran out while the host was down is not a licence to probe at once: a
/// lab that boots together would probe together. The first probe comes at
/// a random point of one probe interval instead (of 300 s after a refusal).
pub fn hold_after_restart(
    pause: Option<&HostPause>,
    now: u64,
    jitter: f64,
    probe_every: Duration,
) -> u64 {
    match pause {
        None => now,
        Some(p) if p.holds(now) => p.until,
        Some(p) => {
            // A refusal's operator is waiting for the fix to take: the
            // refused schedule's cap, not a whole probe interval.
            let over = if p.refused {
                MAX_REFUSED_PAUSE
            } else {
                probe_every.min(MAX_PROBE_INTERVAL)
            };
            let spread = over.as_secs_f64() * jitter.clamp(0.0, 1.0);
            now.saturating_add(spread.round() as u64)
        }
    }
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
