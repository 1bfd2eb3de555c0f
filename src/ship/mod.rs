//! Ship episodes: claim, stage, upload, settle. Used by `ship-episode` and
//! by the scanner.
//!
//! Each episode is handled under its lock (see [`crate::lock`]). What
//! happens next is decided by [`crate::machine`]; this module does it:
//! [`claim`] (the rename out of `episodes/`), [`stage`] (the archive in the
//! outbox, reused on a retry), the upload, then [`apply`] (sidecar and
//! rename, or retry state) and [`report`] (one journal line per outcome).
//!
//! A `kill -9` anywhere leaves the directory in exactly one state; the next
//! run rebuilds a partial archive and finishes the job. A repeat upload after
//! a crash gets 409 from the receiver and counts as shipped.

mod apply;
mod claim;
mod pause;
mod receiver;
mod report;
mod stage;

pub use pause::{PAUSE_FILE, pause_file};
pub use report::{EpisodeReport, HostError, Observer, Quiet, RunReport};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::layout::{
    self, EpisodeId, Layout, LayoutError, RetryState, State, remove_if_present, rename_noreplace,
    unix_now,
};
use crate::lock::{EpisodeLock, LockError};
use crate::machine::host::{HostSignal, PauseChange};
use crate::machine::{self, Attempt, Start};
use crate::outcome::{OutcomeKind, Verdict, random_unit};
use crate::transport::{SetupError, Upload};

use apply::Attempted;
use receiver::Receiver;

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{0}")]
    Target(String),
}

impl ShipError {
    /// sysexits code: local I/O 74, a named episode missing 66, else the
    /// configuration (TLS files, URL) 78.
    pub fn exit_code(&self) -> u8 {
        match self {
            ShipError::Layout(_) => crate::exit::IO_ERROR,
            ShipError::Target(_) => crate::exit::NO_INPUT,
            ShipError::Setup(_) => crate::exit::CONFIG,
        }
    }
}

pub struct Shipper {
    host_id: String,
    layout: Layout,
    receiver: Receiver,
    gzip_level: u32,
    compress_threads: usize,
    disk_reserve_percent: f64,
    /// `shipper.receiver_probe_interval_s`.
    probe_every: Duration,
    cancel: Arc<AtomicBool>,
}

impl Shipper {
    pub fn new(config: &Config) -> Result<Shipper, ShipError> {
        let receiver = Receiver::new(config)?;
        let layout = Layout::new(&config.data_root);
        layout.ensure_dirs()?;
        Ok(Shipper {
            host_id: config.host_id.clone(),
            layout,
            receiver,
            gzip_level: config.shipper.gzip_level,
            compress_threads: config.shipper.compress_threads,
            disk_reserve_percent: config.shipper.disk_reserve_percent,
            probe_every: config.shipper.receiver_probe_interval,
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The client certificate still valid at `now` (dates read at setup).
    pub fn check_client_cert(&self, now: u64) -> Result<(), ShipError> {
        Ok(self.receiver.check_client_cert(now)?)
    }

    /// Set this to abort an upload in flight (the episode stays in the outbox).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Ship every ready episode in `episodes/` (what the path unit runs).
    /// While the receiver is paused, claim them and upload nothing: the
    /// scanner ships them when the pause is over.
    pub fn ship_ready(&self, observer: &mut dyn Observer) -> Result<RunReport, ShipError> {
        let ids = self.ready_episodes()?;
        let Some(pause) = self.active_pause() else {
            return Ok(self.ship_ids(ids, observer));
        };
        for id in &ids {
            self.claim_only(id);
        }
        if !ids.is_empty() {
            tracing::warn!(
                "the receiver is paused for {}s more ({}): {} ready episode(s) claimed into \
                 outbox/ and left for the scanner",
                pause.left(unix_now()),
                pause.reason,
                ids.len()
            );
        }
        let mut report = RunReport::default();
        if pause.refused {
            let status = pause.status.unwrap_or(0);
            report.host_error = Some(HostError {
                status,
                reason: pause.reason.clone(),
                fix: report::refusal_fix(status, &pause.reason),
            });
        }
        report.paused = Some(pause);
        Ok(report)
    }

    /// Ship these episodes, in order, wherever they are (ready or outbox).
    /// Once the receiver refuses this host or is unavailable, nothing more
    /// is uploaded, but the remaining ready episodes are still claimed into
    /// the outbox, so that the path unit's glob stops matching and it does
    /// not loop into failure.
    pub fn ship_ids(&self, ids: Vec<EpisodeId>, observer: &mut dyn Observer) -> RunReport {
        let mut report = RunReport::default();
        for id in ids {
            if report.paused.is_some() {
                self.claim_only(&id);
                continue;
            }
            if let Some(r) = self.ship_one(&id, observer) {
                let change = self.note_host(&r.host);
                report.push(r);
                if let PauseChange::Start(p) = change {
                    report.paused = Some(p);
                }
            }
        }
        report
    }

    /// Ship one episode from wherever it is. `None` when another process
    /// holds it or it moved away meanwhile (skipped quietly).
    pub fn ship_one(&self, id: &EpisodeId, observer: &mut dyn Observer) -> Option<EpisodeReport> {
        let attempted = Attempted::new(id, Instant::now());
        let located = self.layout.locate(id);
        let state = located.unwrap_or(State::Episodes);
        let claim = match machine::start(located, id) {
            Start::Skip(reason) => {
                return Some(attempted.report(OutcomeKind::Skipped, state, reason));
            }
            Start::Claim => true,
            Start::Resume => false,
        };
        let lock = match self.lock(state, id) {
            Ok(l) => l,
            Err(LockError::Busy(_)) | Err(LockError::Gone(_)) => {
                tracing::debug!(EPISODE_ID = %id, "skipping: another shipper has it");
                return None;
            }
            Err(e) => {
                let r = attempted.report(OutcomeKind::Retry, state, e.to_string());
                return Some(self.log(r));
            }
        };
        if claim {
            if !self.layout.is_ready(id) {
                let why = format!("not ready: no {}", layout::DONE_MARKER);
                return Some(attempted.report(OutcomeKind::Skipped, state, why));
            }
            if let Some(t) = machine::after_claim(self.claim(id), id) {
                return Some(self.log(self.apply(&attempted, t, RetryState::default())));
            }
        }
        let r = self.ship_claimed(id, observer, attempted.started);
        drop(lock);
        Some(self.log(r))
    }

    /// Move a quarantined episode back into the outbox, then ship it.
    pub fn requeue(
        &self,
        id: &EpisodeId,
        observer: &mut dyn Observer,
    ) -> Result<EpisodeReport, ShipError> {
        let from = self.layout.episode_dir(State::Quarantine, id);
        let lock = match EpisodeLock::acquire(&from) {
            Ok(l) => l,
            Err(LockError::Gone(_)) => {
                return Err(ShipError::Target(format!(
                    "{id}: not in {} (it may have been requeued or pruned already)",
                    self.layout.state_dir(State::Quarantine).display()
                )));
            }
            Err(e) => return Err(ShipError::Target(e.to_string())),
        };
        let to = self.layout.episode_dir(State::Outbox, id);
        rename_noreplace(&from, &to)?;
        layout::sync_dir(&self.layout.state_dir(State::Outbox))?;
        // The quarantine verdict no longer applies; start afresh.
        remove_if_present(&self.layout.sidecar(State::Quarantine, id))?;
        remove_if_present(&self.layout.retry_file(id))?;
        tracing::info!(EPISODE_ID = %id, HOST_ID = %self.host_id, "requeued {id} from quarantine");
        let r = self.ship_claimed(id, observer, Instant::now());
        drop(lock);
        self.note_host(&r.host);
        Ok(self.log(r))
    }

    fn lock(&self, state: State, id: &EpisodeId) -> Result<EpisodeLock, LockError> {
        EpisodeLock::acquire(&self.layout.episode_dir(state, id))
    }

    /// Claim a ready episode without shipping it (after a host error).
    fn claim_only(&self, id: &EpisodeId) {
        let Ok(_lock) = self.lock(State::Episodes, id) else {
            return;
        };
        if self.layout.is_ready(id)
            && let Some(t) = machine::after_claim(self.claim(id), id)
        {
            let attempted = Attempted::new(id, Instant::now());
            self.log(self.apply(&attempted, t, RetryState::default()));
        }
    }

    /// Stage (or reuse the staged archive), upload, decide, apply. The
    /// caller holds the lock and the episode is in the outbox.
    fn ship_claimed(
        &self,
        id: &EpisodeId,
        observer: &mut dyn Observer,
        started: Instant,
    ) -> EpisodeReport {
        let retry = RetryState::load(&self.layout, id)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut attempted = Attempted::new(id, started);
        attempted.attempt = retry.attempts.saturating_add(1);
        let mut retry = retry;
        let (sha256, bytes) = match self.stage_archive(id, &mut retry, observer) {
            Ok(staged) => staged,
            Err(e) => {
                retry.stage_needs_bytes = e.needs_bytes;
                let t = machine::decide(
                    Attempt::StageFailed(e.reason),
                    &retry,
                    SystemTime::now(),
                    random_unit(),
                );
                return self.apply(&attempted, t, retry);
            }
        };
        attempted.archive_bytes = Some(bytes);
        attempted.sha256 = Some(hex(&sha256));
        let archive_path = self.layout.archive(id);
        let upload = Upload {
            host_id: &self.host_id,
            episode_id: id,
            archive: &archive_path,
            bytes,
            sha256,
        };
        let put_started = Instant::now();
        let (verdict, contact) = self.upload(&upload, &mut retry, observer);
        attempted.upload_time = Some(put_started.elapsed());
        if matches!(verdict, Verdict::Shipped { .. }) {
            crate::failpoint!(crate::failpoint::UPLOAD_AFTER_SUCCESS);
        }
        let host = HostSignal::of(&verdict, contact, id);
        let t = machine::decide(
            Attempt::Answered(verdict),
            &retry,
            SystemTime::now(),
            random_unit(),
        );
        EpisodeReport {
            host,
            ..self.apply(&attempted, t, retry)
        }
    }

    fn log(&self, r: EpisodeReport) -> EpisodeReport {
        report::log(&self.host_id, r)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Paths of a data root's outbox leftovers, for tests and prune.
pub fn outbox_artifacts(layout: &Layout, id: &EpisodeId) -> [PathBuf; 4] {
    [
        layout.archive(id),
        layout.partial_archive(id),
        layout.retry_file(id),
        layout::locked_temp(&layout.retry_file(id)),
    ]
}
