//! One simulated lab host: no disk, no socket. It is its queue of episodes
//! (each with the library's [`RetryState`]) and the host-wide
//! [`HostPause`], and it does what the shipper's two processes do, through
//! the library's own decisions:
//!
//! - the path unit runs `ship-episode` the moment an episode is recorded
//!   (`Shipper::ship_ready`): while the pause holds it only claims the
//!   episode into the outbox, else it uploads it;
//! - the scanner runs a pass every `scan_interval_s` (`Scanner::pass`):
//!   nothing while the pause holds, else the due entries in
//!   [`schedule::plan`] (all in [`schedule::order`], or one at a time while
//!   a [`Drain`] paces the backlog of a long outage), one after another,
//!   stopping at the first pause. A scanner that starts waits
//!   [`host::hold_after_restart`].
//!
//! Every retry time, pause and pass order comes from `cis490`: `decide`,
//! `HostSignal::of`, `after_signal`, `HostPause::holds`, `hold_after_restart`,
//! `schedule::plan`, `Drain::after_outcome` and `schedule::after_outcome`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cis490::layout::{EpisodeId, RetryState, State};
use cis490::machine::host::{self, HostPause, HostSignal, PauseChange};
use cis490::machine::{self, Attempt, Transition};
use cis490::scan::schedule::{self, Drain, Due, QueueEntry};

use crate::receiver::Receiver;
use crate::rng::Rng;

/// Virtual time 0 is this unix second (any value works; a realistic one
/// keeps the library's clock checks honest).
pub const EPOCH_S: u64 = 1_800_000_000;

pub fn system_time(now_ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(EPOCH_S) + Duration::from_millis(now_ms)
}

pub fn unix_s(now_ms: u64) -> u64 {
    EPOCH_S + now_ms / 1000
}

/// Virtual milliseconds of a unix second.
pub fn ms_of_unix(unix: u64) -> u64 {
    unix.saturating_sub(EPOCH_S) * 1000
}

/// An episode waiting in the outbox.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Index into [`Episodes`].
    pub episode: usize,
    pub id: EpisodeId,
    pub retry: RetryState,
    /// The scanner's due time for it (unix seconds).
    pub not_before: u64,
}

/// Every episode recorded in the run: when it was recorded and shipped.
#[derive(Debug, Default)]
pub struct Episodes {
    pub recorded_ms: Vec<u64>,
    pub shipped_ms: Vec<Option<u64>>,
}

impl Episodes {
    fn record(&mut self, now_ms: u64) -> usize {
        self.recorded_ms.push(now_ms);
        self.shipped_ms.push(None);
        self.recorded_ms.len() - 1
    }
}

/// What a host's actions touch besides the host itself.
pub struct World<'a> {
    pub now_ms: u64,
    pub rng: &'a mut Rng,
    pub receiver: &'a mut Receiver,
    pub episodes: &'a mut Episodes,
}

#[derive(Debug, Clone, Default)]
pub struct Host {
    pub index: u32,
    pub pending: Vec<Pending>,
    pub pause: Option<HostPause>,
    /// The scanner passes at `scan_phase_ms + k * scan_interval_ms`.
    pub scan_phase_ms: u64,
    /// The pass the event queue holds for this host, if any.
    pub wake_ms: Option<u64>,
    /// Powered off until then: no recording, no pass.
    pub down: Option<(u64, u64)>,
    /// The scanner runs as the daemon (`Scanner::pace_as_daemon`); false:
    /// as before pacing existed.
    pub paced: bool,
    /// The scanner's own state: the pause as it last read it, its drain,
    /// and the hold after its start.
    pub scanner_seen: Option<HostPause>,
    pub drain: Option<Drain>,
    pub start_hold: u64,
    recorded: u32,
}

impl Host {
    pub fn new(index: u32, scan_phase_ms: u64, paced: bool) -> Host {
        Host {
            index,
            scan_phase_ms,
            paced,
            ..Host::default()
        }
    }

    pub fn is_down(&self, now_ms: u64) -> bool {
        self.down
            .is_some_and(|(from, until)| (from..until).contains(&now_ms))
    }

    /// The recorder renamed a new episode into `episodes/`; the path unit
    /// runs `ship-episode` at once (`Shipper::ship_ready`).
    pub fn record(&mut self, w: &mut World) {
        let episode = w.episodes.record(w.now_ms);
        self.recorded += 1;
        let id = EpisodeId::parse(&format!("{:08}", self.recorded)).expect("a valid id");
        self.pending.push(Pending {
            episode,
            id,
            retry: RetryState::default(),
            not_before: 0,
        });
        let paused = self
            .pause
            .as_ref()
            .is_some_and(|p| p.holds(unix_s(w.now_ms)));
        if !paused {
            // ship_ids of the one ready episode.
            let before = self.pause.clone();
            let (change, _) = self.attempt(self.pending.len() - 1, w);
            if change == PauseChange::Lift && self.scanner_seen.is_none() {
                // The scanner reads the pause file every pass: it saw it.
                self.scanner_seen = before;
            }
        }
        // Else claimed into the outbox, no retry file: due at once.
    }

    /// The scanner starts (at boot): `Scanner::new`, `pace_as_daemon`.
    pub fn start_scanner(&mut self, w: &mut World) {
        self.scanner_seen = self.pause.clone();
        self.drain = None;
        self.start_hold = if self.paced {
            host::hold_after_restart(self.pause.as_ref(), unix_s(w.now_ms), w.rng.unit())
        } else {
            0
        };
    }

    /// One scanner pass (`Scanner::pass`), at a time it may have work.
    pub fn scan_pass(&mut self, w: &mut World) {
        let now = unix_s(w.now_ms);
        let seen = std::mem::replace(&mut self.scanner_seen, self.pause.clone());
        if let (true, Some(before), None) = (self.paced, &seen, &self.pause) {
            self.drain = Drain::after_outage(known(before.since), now, self.drain);
        }
        if self.pause.as_ref().is_some_and(|p| p.holds(now)) || now < self.start_hold {
            return;
        }
        let due = schedule::plan(
            self.pending
                .iter()
                .filter(|p| p.not_before <= now)
                .map(|p| Due {
                    id: p.id.clone(),
                    in_outbox: true,
                    not_before: p.not_before,
                    failed_attempts: p.retry.attempts,
                })
                .collect(),
            &mut self.drain,
            now,
            w.rng.unit(),
        );
        for id in due {
            let Some(i) = self.pending.iter().position(|p| p.id == id) else {
                continue;
            };
            let (change, outcome) = self.attempt(i, w);
            if let Some(outcome) = outcome {
                // The scanner's in-memory queue, as `Scanner::settle` keeps it.
                let queued = schedule::after_outcome(outcome, 0, now, w.rng.unit());
                if let (QueueEntry::Requeue { not_before, .. }, Some(p)) =
                    (queued, self.pending.iter_mut().find(|p| p.id == id))
                {
                    p.not_before = not_before;
                }
            }
            match change {
                PauseChange::Keep => {}
                PauseChange::Start(p) => {
                    self.scanner_seen = Some(p);
                    break;
                }
                PauseChange::Lift => {
                    let since = self.scanner_seen.take().and_then(|p| known(p.since));
                    if self.paced {
                        self.drain = Drain::after_outage(since, unix_s(w.now_ms), self.drain);
                    }
                    if self.drain.is_some() {
                        break;
                    }
                }
            }
        }
    }

    /// Upload pending entry `i`: the receiver answers, the library decides
    /// the episode's transition and the host pause. The outcome is what
    /// the scanner learns of it (`None` once it left the queue).
    fn attempt(&mut self, i: usize, w: &mut World) -> (PauseChange, Option<schedule::Outcome>) {
        let verdict = w.receiver.answer(self.index, w.now_ms);
        let signal = HostSignal::of(&verdict, false);
        let now = system_time(w.now_ms);
        let p = &mut self.pending[i];
        let transition = machine::decide(Attempt::Answered(verdict), &p.retry, now, w.rng.unit());
        let kind = transition.outcome();
        let outcome = match transition {
            Transition::Settle { to, .. } => {
                if to == State::Shipped {
                    w.episodes.shipped_ms[p.episode] = Some(w.now_ms);
                }
                self.pending.remove(i);
                None
            }
            Transition::Retry { attempts, due, .. } => {
                p.retry.attempts = attempts;
                p.retry.next_attempt_at = due;
                p.not_before = due;
                Some(schedule::Outcome {
                    kind,
                    state: State::Outbox,
                    next_attempt_at: Some(due),
                })
            }
            // This receiver never refuses a host nor fails locally.
            Transition::Hold { .. } | Transition::Stay { .. } => None,
        };
        let change = host::after_signal(&signal, self.pause.as_ref(), now, w.rng.unit());
        match &change {
            PauseChange::Keep => {}
            PauseChange::Lift => self.pause = None,
            PauseChange::Start(p) => self.pause = Some(p.clone()),
        }
        (change, outcome)
    }

    /// When the scanner next has something to do, on its pass grid: the
    /// earliest due entry, not before the pause is over. `after_ms` is the
    /// earliest allowed time.
    pub fn next_pass(&self, after_ms: u64, interval_ms: u64) -> Option<u64> {
        let due = self.pending.iter().map(|p| p.not_before).min()?;
        let mut at = ms_of_unix(due).max(after_ms);
        if let Some(p) = &self.pause
            && p.holds(unix_s(after_ms))
        {
            at = at.max(ms_of_unix(p.until));
        }
        at = at.max(ms_of_unix(self.start_hold));
        if let Some(d) = self.drain {
            at = at.max(ms_of_unix(d.next_at.min(d.until)));
        }
        let phase = self.scan_phase_ms % interval_ms;
        Some(at + (phase + interval_ms - at % interval_ms) % interval_ms)
    }
}

fn known(since: u64) -> Option<u64> {
    (since > 0).then_some(since)
}
