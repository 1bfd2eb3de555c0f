//! One simulated lab host: no disk, no socket. It is its queue of episodes
//! (each with the library's [`RetryState`]) and the host-wide
//! [`HostPause`], and it does what the shipper's two processes do, through
//! the library's own decisions:
//!
//! - the path unit runs `ship-episode` the moment an episode is recorded
//!   (`Shipper::ship_ready`): while the pause holds it only claims the
//!   episode into the outbox, else it uploads it;
//! - the scanner runs a pass (`Scanner::pass`) whenever something is due,
//!   as the daemon wakes (`Scanner::next_wake_in`): nothing while the pause holds, else the due entries in
//!   [`schedule::plan`] (all in [`schedule::order`], or while a [`Replay`]
//!   runs after a long outage those whose turn has come), one after
//!   another, stopping at the first pause. A scanner that starts waits
//!   [`host::hold_after_restart`].
//!
//! Every retry time, pause and pass order comes from `cis490`: `decide`,
//! `HostSignal::of`, `after_signal`, `HostPause::holds`, `hold_after_restart`,
//! `pause_in_force`, `schedule::plan`, `replay_after`, `pass_goes_on`, `next_due`
//! and `schedule::after_outcome`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cis490::layout::{EpisodeId, RetryState, State};
use cis490::machine::host::{self, HostPause, HostSignal, PauseChange};
use cis490::machine::{self, Attempt, Transition};
use cis490::scan::schedule::{self, Due, QueueEntry, Replay};

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
    /// When it was recorded (unix seconds): its age in the pass order.
    pub recorded_at: u64,
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
    /// The pass the event queue holds for this host, if any.
    pub wake_ms: Option<u64>,
    /// Powered off until then: no recording, no pass.
    pub down: Option<(u64, u64)>,
    /// The scanner runs as the daemon (`Scanner::pace_as_daemon`); false:
    /// as before pacing existed.
    pub paced: bool,
    /// The scanner's own state: the pause as it last read it, its replay,
    /// and the hold after its start.
    pub scanner_seen: Option<HostPause>,
    pub replay: Option<Replay>,
    pub start_hold: u64,
    recorded: u32,
}

impl Host {
    pub fn new(index: u32, paced: bool) -> Host {
        Host {
            index,
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
            recorded_at: unix_s(w.now_ms),
        });
        let paused = self
            .pause
            .as_ref()
            .is_some_and(|p| p.holds(unix_s(w.now_ms)));
        if !paused {
            // ship_ids of the one ready episode.
            let before = self.pause.clone();
            let (change, _) = self.attempt(self.pending.len() - 1, w);
            if change == PauseChange::Lift {
                // The scanner reads the pause file at every pass (every
                // `scan_interval_s`, 5 s): it sees the lift at once and
                // starts the replay (`Scanner::pass`).
                let seen = self.scanner_seen.take().or(before);
                if let (true, Some(before)) = (self.paced, &seen) {
                    let now = unix_s(w.now_ms);
                    self.replay = schedule::replay_after(before, now, self.replay.take());
                }
            }
        }
        // Else claimed into the outbox, no retry file: due at once.
    }

    /// The scanner starts (at boot): `Scanner::new` (the pause and the
    /// replay as on disk), `pace_as_daemon`.
    pub fn start_scanner(&mut self, w: &mut World) {
        self.scanner_seen = self.pause.clone();
        self.start_hold = if self.paced {
            host::hold_after_restart(
                self.pause.as_ref(),
                unix_s(w.now_ms),
                w.rng.unit(),
                host::DEFAULT_PROBE_INTERVAL,
            )
        } else {
            0
        };
    }

    /// One scanner pass (`Scanner::pass`), at a time it may have work.
    pub fn scan_pass(&mut self, w: &mut World) {
        let now = unix_s(w.now_ms);
        // Every pause reaches the simulated disk.
        let kept = host::pause_in_force(self.scanner_seen.as_ref(), true, self.pause.clone(), now);
        let seen = std::mem::replace(&mut self.scanner_seen, kept);
        if let (true, Some(before), None) = (self.paced, &seen, &self.pause) {
            self.replay = schedule::replay_after(before, now, self.replay.take());
        }
        if self.pause.as_ref().is_some_and(|p| p.holds(now)) || now < self.start_hold {
            return;
        }
        let suspects = self
            .pause
            .as_ref()
            .map(|p| p.suspects.clone())
            .unwrap_or_default();
        let due = schedule::plan(
            self.pending
                .iter()
                .filter(|p| p.not_before <= now)
                .map(|p| Due {
                    id: p.id.clone(),
                    in_outbox: true,
                    recorded_at: p.recorded_at,
                })
                .collect(),
            &mut self.replay,
            &suspects,
            now,
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
            match &change {
                PauseChange::Keep => {}
                PauseChange::Start(p) => self.scanner_seen = Some(p.clone()),
                PauseChange::Lift => {
                    if let (true, Some(before)) = (self.paced, self.scanner_seen.take()) {
                        let now = unix_s(w.now_ms);
                        self.replay = schedule::replay_after(&before, now, self.replay.take());
                    }
                }
            }
            if !schedule::pass_goes_on(&change, self.replay.as_ref()) {
                break;
            }
        }
    }

    /// Upload pending entry `i`: the receiver answers, the library decides
    /// the episode's transition and the host pause. The outcome is what
    /// the scanner learns of it (`None` once it left the queue).
    fn attempt(&mut self, i: usize, w: &mut World) -> (PauseChange, Option<schedule::Outcome>) {
        let (verdict, contact) = w.receiver.answer(self.index, w.now_ms);
        let now = system_time(w.now_ms);
        let p = &mut self.pending[i];
        let signal = HostSignal::of(&verdict, contact, &p.id);
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
        let change = host::after_signal(
            &signal,
            self.pause.as_ref(),
            now,
            w.rng.unit(),
            host::DEFAULT_PROBE_INTERVAL,
        );
        match &change {
            PauseChange::Keep => {}
            PauseChange::Lift => self.pause = None,
            PauseChange::Start(p) => self.pause = Some(p.clone()),
        }
        (change, outcome)
    }

    /// When the scanner next has something to do (`Scanner::next_wake_in`,
    /// [`schedule::next_due`]): it wakes then, not before `after_ms`.
    pub fn next_pass(&self, after_ms: u64) -> Option<u64> {
        let due = schedule::next_due(
            self.pending.iter().map(|p| (p.not_before, p.recorded_at)),
            self.replay.as_ref(),
            self.pause.as_ref(),
            self.start_hold,
            unix_s(after_ms),
        )?;
        Some(ms_of_unix(due).max(after_ms))
    }
}
