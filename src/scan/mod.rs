//! The scanner: a long-running sweep that ships what the path unit missed
//! and retries the outbox when each entry's time has come.
//!
//! One *pass* lists `episodes/` and `outbox/` (directory entries only, by
//! d_type) and nothing else: it never lists `shipped/` or `quarantine/`, so
//! its cost follows pending work, not history. Due times come from
//! `outbox/<id>.retry.json` and are cached; a file is read again only when
//! its cached time has come (or the entry is new). A due time further
//! ahead than any rule sets was written by a wrong clock: it counts as due
//! within [`retry_horizon`] of when the file was written
//! ([`due_within_horizon`]), so it cannot park an episode for years.
//!
//! Liveness is reported to systemd with a [`Heartbeat`]: WATCHDOG=1 once per
//! pass and, rate-limited, whenever bytes move while packing or uploading.
//! A pass that hangs sends nothing, and systemd's watchdog restarts us.

mod heartbeat;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::Config;
use crate::layout::{EpisodeId, Layout, RetryState, State, unix_now};
use crate::machine::host::{self, HostPause, PauseChange};
use crate::machine::retry_horizon;
use crate::outcome::random_unit;
use crate::ship::{EpisodeReport, Observer, RunReport, ShipError, Shipper};
use crate::time::due_within_horizon;
use crate::transport::Progress;

pub use heartbeat::Heartbeat;
use schedule::{QueueEntry, Replay};

/// One pending episode, as the scanner knows it.
#[derive(Debug, Clone)]
struct Entry {
    state: State,
    /// Unix seconds before which it is not tried (0: now).
    not_before: u64,
    /// `not_before` came from the retry file or our own attempt; when false
    /// (or once it has passed) the retry file is read again.
    known: bool,
    /// Failures that left no retry time behind (lock or claim errors).
    local_failures: u32,
    /// Unix seconds it was recorded ([`recorded_at`]): the age a pass
    /// orders by, and its turn in a replay.
    recorded_at: u64,
}

/// What a pass did, plus the queue after it.
#[derive(Debug, Default)]
pub struct PassReport {
    pub run: RunReport,
    pub ready: usize,
    pub in_outbox: usize,
}

pub struct Scanner {
    shipper: Shipper,
    queue: BTreeMap<EpisodeId, Entry>,
    /// The receiver pause as last read or set (shared on disk with
    /// `ship-episode`), and whether the one we set reached the disk.
    pause: Option<HostPause>,
    pause_stored: bool,
    /// The backlog of outages, being replayed at its own pace (kept on
    /// disk too).
    replay: Option<Replay>,
    /// Unix seconds before which this scanner, just started, sends nothing.
    start_hold: u64,
    /// Pace a backlog and spread the start (the daemon; not `--once`).
    paced: bool,
    /// Directory names already warned about (not valid ids).
    warned_names: BTreeSet<String>,
    stop: &'static AtomicBool,
}

impl Scanner {
    /// Set up the shipper and create missing state directories. `stop` is
    /// set by the signal handler: the scanner then finishes nothing new and
    /// aborts an upload in flight.
    pub fn new(config: &Config, stop: &'static AtomicBool) -> Result<Scanner, ShipError> {
        let shipper = Shipper::new(config)?;
        let pause = shipper.host_pause();
        let replay = shipper.replay();
        Ok(Scanner {
            shipper,
            queue: BTreeMap::new(),
            pause,
            pause_stored: true,
            replay,
            start_hold: 0,
            paced: false,
            warned_names: BTreeSet::new(),
            stop,
        })
    }

    /// Run as the daemon of a fleet: after a long outage the backlog is
    /// replayed at its own pace ([`Replay`]), and a start that finds a pause
    /// run out while the host was down spreads its first upload
    /// ([`host::hold_after_restart`]). A single `--once` pass does neither.
    pub fn pace_as_daemon(&mut self) {
        self.paced = true;
        self.start_hold = host::hold_after_restart(
            self.pause.as_ref(),
            unix_now(),
            random_unit(),
            self.shipper.probe_every(),
        );
    }

    pub fn shipper(&self) -> &Shipper {
        &self.shipper
    }

    pub fn pause(&self) -> Option<&HostPause> {
        self.pause.as_ref()
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Rebuild the queue from `episodes/` (ready ones) and `outbox/`,
    /// reading retry times that are new or have come.
    pub fn refresh(&mut self) -> Result<(), ShipError> {
        let layout = self.shipper.layout().clone();
        // Recreate a state directory removed under our feet (mkdir only).
        layout.ensure_dirs()?;
        let episodes = layout.list(State::Episodes)?;
        let outbox = layout.list(State::Outbox)?;
        self.warn_rejected(&episodes.rejected, &outbox.rejected);

        let now = unix_now();
        let horizon = retry_horizon().as_secs();
        let mut queue = BTreeMap::new();
        for id in episodes.ids {
            if !layout.is_ready(&id) {
                continue; // still being recorded
            }
            let entry = match self.queue.remove(&id) {
                Some(e) if e.state == State::Episodes => e,
                _ => Entry {
                    state: State::Episodes,
                    not_before: 0,
                    known: true,
                    local_failures: 0,
                    recorded_at: recorded_at(&layout, State::Episodes, &id, now),
                },
            };
            queue.insert(id, entry);
        }
        for id in outbox.ids {
            let mut entry = match self.queue.remove(&id) {
                Some(e) if e.state == State::Outbox => e,
                _ => Entry {
                    state: State::Outbox,
                    not_before: 0,
                    known: false,
                    local_failures: 0,
                    recorded_at: recorded_at(&layout, State::Outbox, &id, now),
                },
            };
            // Beyond the horizon from now: the clock was set back since it
            // was scheduled; the file (and its mtime) says what to make of it.
            let beyond = entry.not_before > now.saturating_add(horizon);
            if !entry.known || entry.not_before <= now || beyond {
                entry.not_before = match RetryState::load(&layout, &id) {
                    Ok(Some(r)) => {
                        let path = layout.retry_file(&id);
                        let written_at = fs::metadata(&path).ok().map(|m| m.mtime().max(0) as u64);
                        due_within_horizon(r.next_attempt_at, written_at, now, horizon)
                    }
                    Ok(None) => 0,
                    Err(e) => {
                        // Rewritten by the next attempt.
                        tracing::warn!(EPISODE_ID = %id, "{e}: retrying now");
                        0
                    }
                };
                entry.known = true;
            }
            queue.insert(id, entry);
        }
        self.queue = queue;
        Ok(())
    }

    fn warn_rejected(&mut self, a: &[(String, String)], b: &[(String, String)]) {
        let mut seen = BTreeSet::new();
        for (name, why) in a.iter().chain(b) {
            if !self.warned_names.contains(name) {
                tracing::warn!(
                    OUTCOME = "skipped",
                    "skipping {name:?}: not a valid episode id ({why})"
                );
            }
            seen.insert(name.clone());
        }
        // Forget names that went away, so a new one by that name is reported.
        self.warned_names = seen;
    }

    /// One pass: refresh the queue, then ship what is due (outbox retries by
    /// due time, then ready episodes), unless the receiver is paused. After
    /// a pause, the first upload is a probe: if it fails, the pause grows
    /// and nothing else is sent.
    ///
    /// A client certificate that expired since the start is an error like
    /// at the start (exit 78), before anything is touched: the renewed
    /// files are read by the next start.
    pub fn pass(&mut self, heartbeat: &mut Heartbeat) -> Result<PassReport, ShipError> {
        self.shipper.check_client_cert(unix_now())?;
        self.refresh()?;
        let mut run = RunReport::default();
        let now = unix_now();
        let on_disk = self.shipper.host_pause();
        let kept =
            host::pause_in_force(self.pause.as_ref(), self.pause_stored, on_disk.clone(), now);
        self.pause_stored = kept == on_disk;
        let seen = std::mem::replace(&mut self.pause, kept);
        if let (true, Some(before), None) = (self.paced, &seen, &self.pause) {
            // `ship-episode` got an answer meanwhile: the receiver is back.
            self.replay_after(before, now);
        }
        if let Some(p) = &self.pause
            && p.holds(now)
        {
            run.paused = Some(p.clone());
            return Ok(self.report(run));
        }
        if now < self.start_hold {
            return Ok(self.report(run));
        }
        let suspects = self
            .pause
            .as_ref()
            .map(|p| p.suspects.clone())
            .unwrap_or_default();
        let replaying = self.replay.is_some();
        let due = schedule::plan(
            self.queue
                .iter()
                .filter(|(_, e)| e.not_before <= now)
                .map(|(id, e)| schedule::Due {
                    id: id.clone(),
                    in_outbox: e.state == State::Outbox,
                    recorded_at: e.recorded_at,
                })
                .collect(),
            &mut self.replay,
            &suspects,
            now,
        );
        if replaying && self.replay.is_none() {
            self.shipper.store_replay(None); // over
        }
        if self.pause.is_some() && !due.is_empty() {
            tracing::info!("receiver pause over: trying one episode first");
        }

        let cancel = self.shipper.cancel_flag();
        for id in due {
            if self.stopping() {
                break;
            }
            let mut observer = PassObserver {
                heartbeat,
                cancel: &cancel,
                stop: self.stop,
            };
            let result = self.shipper.ship_one(&id, &mut observer);
            heartbeat.progress();
            let Some(r) = result else {
                continue; // another shipper has it
            };
            let change = self.shipper.note_host(&r.host);
            self.settle(&r);
            run.push(r);
            match &change {
                PauseChange::Lift => {
                    if let (true, Some(before)) = (self.paced, self.pause.take()) {
                        self.replay_after(&before, unix_now());
                    }
                }
                PauseChange::Start(p) => {
                    self.pause_stored = self.shipper.host_pause().as_ref() == Some(p);
                    self.pause = Some(p.clone());
                    run.paused = Some(p.clone());
                }
                PauseChange::Keep => {}
            }
            if !schedule::pass_goes_on(&change, self.replay.as_ref()) {
                break;
            }
        }
        Ok(self.report(run))
    }

    /// The receiver answered at `now` after `before`: replay the backlog
    /// ([`schedule::replay_after`]), on disk too.
    fn replay_after(&mut self, before: &HostPause, now: u64) {
        let replay = schedule::replay_after(before, now, self.replay.take());
        if replay.is_some() {
            tracing::info!(
                "the receiver is back after an outage: its backlog is replayed at the pace it \
                 was recorded"
            );
            self.shipper.store_replay(replay.as_ref());
        }
        self.replay = replay;
    }

    /// Update the queue from one episode's outcome, as
    /// [`schedule::after_outcome`] decides.
    fn settle(&mut self, r: &EpisodeReport) {
        let local_failures = self.queue.get(&r.id).map_or(0, |e| e.local_failures);
        let recorded_at = self.queue.get(&r.id).map_or(0, |e| e.recorded_at);
        let outcome = schedule::Outcome {
            kind: r.outcome,
            state: r.state,
            next_attempt_at: r.next_attempt_at,
        };
        match schedule::after_outcome(outcome, local_failures, unix_now(), random_unit()) {
            QueueEntry::Remove => {
                self.queue.remove(&r.id);
            }
            QueueEntry::Requeue {
                not_before,
                read_retry_file,
                local_failures,
            } => {
                let entry = Entry {
                    state: r.state,
                    not_before,
                    known: !read_retry_file,
                    local_failures,
                    recorded_at,
                };
                self.queue.insert(r.id.clone(), entry);
            }
        }
    }

    fn report(&self, run: RunReport) -> PassReport {
        let ready = self
            .queue
            .values()
            .filter(|e| e.state == State::Episodes)
            .count();
        PassReport {
            run,
            ready,
            in_outbox: self.queue.len() - ready,
        }
    }

    /// How long the daemon sleeps after a pass: until something is due
    /// ([`schedule::next_due`]), at least a second, at most `interval`
    /// (new episodes are looked for at least that often).
    pub fn next_wake_in(&self, interval: Duration) -> Duration {
        // One reading: whole seconds for the due times, and how far into
        // the current second we are, to wake as the due second starts.
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let now = clock.as_secs();
        let into_second = Duration::from_nanos(u64::from(clock.subsec_nanos()));
        let due = schedule::next_due(
            self.queue.values().map(|e| (e.not_before, e.recorded_at)),
            self.replay.as_ref(),
            self.pause.as_ref(),
            self.start_hold,
            now,
        );
        due.map_or(interval, |at| {
            Duration::from_secs(at.saturating_sub(now)).saturating_sub(into_second)
        })
        .clamp(Duration::from_secs(1).min(interval), interval)
    }

    /// Seconds until the next outbox retry is due, if any is waiting.
    fn next_retry_in(&self) -> Option<u64> {
        let now = unix_now();
        self.queue
            .values()
            .map(|e| e.not_before.saturating_sub(now))
            .min()
    }

    /// The `STATUS=` line: what is pending and when something happens next.
    pub fn status(&self) -> String {
        let ready = self
            .queue
            .values()
            .filter(|e| e.state == State::Episodes)
            .count();
        let total = self.queue.len();
        let pending = format!(
            "{total} pending ({ready} ready, {} in outbox)",
            total - ready
        );
        let now = unix_now();
        if let Some(p) = self.pause.as_ref().filter(|p| p.holds(now)) {
            let left = p.left(now);
            return match &p.fix {
                Some(fix) => format!(
                    "paused: receiver refused this host (HTTP {}); retrying in {left}s; \
                     {pending}; fix: {fix}",
                    p.status.unwrap_or(0)
                ),
                None => format!(
                    "paused: receiver unavailable ({}); retrying in {left}s; {pending}",
                    p.reason
                ),
            };
        }
        if total == 0 {
            return "idle: nothing pending".into();
        }
        if let Some(r) = self.replay.as_ref().filter(|r| now < r.until()) {
            return format!(
                "{pending}, backlog of an outage replayed at its own pace for {}s more",
                r.until() - now
            );
        }
        match self.next_retry_in() {
            Some(0) | None => format!("{pending}, shipping now"),
            Some(s) => format!("{pending}, next retry in {s}s"),
        }
    }
}

/// When `id` was recorded, as an age: its `done.marker`'s mtime (written
/// by the recorder, kept through every rename), else when its directory
/// was renamed into `state`, else `now`.
fn recorded_at(layout: &Layout, state: State, id: &EpisodeId, now: u64) -> u64 {
    let dir = layout.episode_dir(state, id);
    fs::symlink_metadata(dir.join(crate::layout::DONE_MARKER))
        .map(|m| m.mtime())
        .or_else(|_| fs::symlink_metadata(&dir).map(|m| m.ctime()))
        .map_or(now, |t| t.max(0) as u64)
}

/// Packing and uploading progress keeps the watchdog fed; a stop request
/// aborts the upload in flight.
struct PassObserver<'a> {
    heartbeat: &'a mut Heartbeat,
    cancel: &'a AtomicBool,
    stop: &'a AtomicBool,
}

impl Observer for PassObserver<'_> {
    fn archiving(&mut self, _id: &EpisodeId, _input_bytes: u64) {
        self.heartbeat.progress();
    }

    fn uploading(&mut self, _id: &EpisodeId, progress: Progress) {
        if self.stop.load(Ordering::Relaxed) {
            self.cancel.store(true, Ordering::Relaxed);
        }
        if progress.moved {
            self.heartbeat.progress();
        }
    }
}
