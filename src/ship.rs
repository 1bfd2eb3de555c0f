//! Ship episodes: claim, pack, PUT, settle. Used by `ship-episode` and by
//! the scanner.
//!
//! Each episode is handled under its lock (see [`crate::lock`]):
//!
//! 1. claim: `episodes/<id>` → `outbox/<id>` (one rename; the path unit's
//!    glob stops matching whatever happens next);
//! 2. pack: `outbox/<id>.tar.gz`, reused as is on a retry;
//! 3. PUT, and classify the answer ([`crate::outcome`]);
//! 4. settle: `outbox/<id>` → `shipped/<id>` or `quarantine/<id>` (one
//!    rename, sidecar written first), or stay in the outbox with retry state.
//!
//! A `kill -9` anywhere leaves the directory in exactly one state; the next
//! run rebuilds a partial archive and finishes the job. A repeat upload after
//! a crash gets 409 from the receiver and counts as shipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::archive::{self, ArchiveError};
use crate::config::Config;
use crate::layout::{
    self, EpisodeId, Layout, LayoutError, RetryState, Sidecar, State, remove_if_present,
    rename_noreplace, unix_now,
};
use crate::lock::{EpisodeLock, LockError};
use crate::outcome::{OutcomeKind, Verdict, backoff, classify};
use crate::transport::{Progress, SetupError, Transport, Upload};

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

/// Callbacks during a run: terminal progress for `ship-episode`, watchdog
/// heartbeats for the scanner.
pub trait Observer {
    /// Content bytes packed so far.
    fn archiving(&mut self, _id: &EpisodeId, _input_bytes: u64) {}
    /// Upload progress, reported a few times per second.
    fn uploading(&mut self, _id: &EpisodeId, _progress: Progress) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// Where one episode ended, and why.
#[derive(Debug, Clone)]
pub struct EpisodeReport {
    pub id: EpisodeId,
    pub outcome: OutcomeKind,
    /// The state it is in now.
    pub state: State,
    pub detail: String,
    pub http_status: Option<u16>,
    pub archive_bytes: Option<u64>,
    pub duration: Duration,
    pub attempt: u32,
    /// For retries: when the next attempt is due (unix seconds).
    pub next_attempt_at: Option<u64>,
}

/// A receiver answer that concerns the whole host, not one episode.
#[derive(Debug, Clone)]
pub struct HostError {
    pub status: u16,
    pub reason: String,
    pub fix: &'static str,
}

#[derive(Debug, Default)]
pub struct RunReport {
    pub episodes: Vec<EpisodeReport>,
    /// Set when the run stopped early because of a host-level error.
    pub host_error: Option<HostError>,
    /// Targets that named no episode.
    pub not_found: Vec<String>,
}

impl RunReport {
    /// Add an episode's result; a host-level refusal stops the run.
    pub fn push(&mut self, r: EpisodeReport) {
        if r.outcome == OutcomeKind::HostError {
            let status = r.http_status.unwrap_or(0);
            self.host_error = Some(HostError {
                status,
                reason: r.detail.clone(),
                fix: crate::outcome::host_error_fix(status),
            });
        }
        self.episodes.push(r);
    }

    pub fn count(&self, kind: OutcomeKind) -> usize {
        self.episodes.iter().filter(|e| e.outcome == kind).count()
    }

    /// sysexits-style code: host error 78 > missing input 66 > retry 75 >
    /// quarantined 65 > 0.
    pub fn exit_code(&self) -> u8 {
        use crate::exit;
        if self.host_error.is_some() || self.count(OutcomeKind::HostError) > 0 {
            exit::CONFIG
        } else if !self.not_found.is_empty() {
            exit::NO_INPUT
        } else if self.count(OutcomeKind::Retry) > 0 {
            exit::TEMPFAIL
        } else if self.count(OutcomeKind::Quarantined) > 0 {
            exit::QUARANTINED
        } else {
            exit::OK
        }
    }
}

pub struct Shipper {
    host_id: String,
    layout: Layout,
    transport: Transport,
    gzip_level: u32,
    cancel: Arc<AtomicBool>,
}

impl Shipper {
    pub fn new(config: &Config) -> Result<Shipper, ShipError> {
        let transport = Transport::new(&config.receiver, config.shipper.request_timeout)?;
        let layout = Layout::new(&config.data_root);
        layout.ensure_dirs()?;
        Ok(Shipper {
            host_id: config.host_id.clone(),
            layout,
            transport,
            gzip_level: config.shipper.gzip_level,
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Set this to abort an upload in flight (the episode stays in the outbox).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Ready episodes in `episodes/`, after warning about names that are not ids.
    pub fn ready_episodes(&self) -> Result<Vec<EpisodeId>, ShipError> {
        // Entries the path unit sees as ready but that can never ship
        // would re-trigger it forever: move them out of its glob.
        for (name, why) in self.layout.unshippable_ready()? {
            let shown = name.to_string_lossy();
            match self.layout.set_aside(&name) {
                Ok(to) => tracing::warn!(
                    OUTCOME = "skipped",
                    "set aside episodes/{shown:?} as {}: {why}; it is not shipped",
                    to.display()
                ),
                Err(e) => tracing::warn!(
                    OUTCOME = "skipped",
                    "cannot set aside episodes/{shown:?} ({why}): {e}"
                ),
            }
        }
        let listing = self.layout.list(State::Episodes)?;
        for (name, why) in &listing.rejected {
            tracing::warn!(
                OUTCOME = "skipped",
                "skipping episodes/{name:?}: not a valid episode id ({why})"
            );
        }
        Ok(listing
            .ids
            .into_iter()
            .filter(|id| self.layout.is_ready(id))
            .collect())
    }

    /// Ship every ready episode in `episodes/` (what the path unit runs).
    pub fn ship_ready(&self, observer: &mut dyn Observer) -> Result<RunReport, ShipError> {
        let ids = self.ready_episodes()?;
        Ok(self.ship_ids(ids, observer))
    }

    /// Ship these episodes, in order, wherever they are (ready or outbox).
    /// After a host-level error nothing more is uploaded, but the remaining
    /// ready episodes are still claimed into the outbox, so that the path
    /// unit's glob stops matching and it does not loop into failure.
    pub fn ship_ids(&self, ids: Vec<EpisodeId>, observer: &mut dyn Observer) -> RunReport {
        let mut report = RunReport::default();
        for id in ids {
            if report.host_error.is_some() {
                self.claim_only(&id);
                continue;
            }
            if let Some(r) = self.ship_one(&id, observer) {
                report.push(r);
            }
        }
        report
    }

    /// Resolve command-line targets (ids or paths into a state directory).
    pub fn resolve_target(&self, target: &str) -> Result<EpisodeId, ShipError> {
        let path = Path::new(target);
        let name = if target.contains('/') {
            let parent = path
                .parent()
                .and_then(|p| std::path::absolute(p).ok())
                .unwrap_or_default();
            let in_state_dir = State::ALL
                .iter()
                .any(|s| parent == self.layout.state_dir(*s));
            if !in_state_dir {
                return Err(ShipError::Target(format!(
                    "{target}: not an episode directory under {}",
                    self.layout.root().display()
                )));
            }
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            target.to_string()
        };
        EpisodeId::parse(&name)
            .map_err(|why| ShipError::Target(format!("{target}: not a valid episode id ({why})")))
    }

    /// Ship one episode from wherever it is. `None` when another process
    /// holds it or it moved away meanwhile (skipped quietly).
    pub fn ship_one(&self, id: &EpisodeId, observer: &mut dyn Observer) -> Option<EpisodeReport> {
        let started = Instant::now();
        let report = |outcome, state, detail: String| EpisodeReport {
            id: id.clone(),
            outcome,
            state,
            detail,
            http_status: None,
            archive_bytes: None,
            duration: started.elapsed(),
            attempt: 0,
            next_attempt_at: None,
        };
        let state = match self.layout.locate(id) {
            Some(s) => s,
            None => {
                return Some(report(
                    OutcomeKind::Skipped,
                    State::Episodes,
                    "not found".into(),
                ));
            }
        };
        match state {
            State::Shipped => {
                return Some(report(
                    OutcomeKind::Skipped,
                    state,
                    "already shipped".into(),
                ));
            }
            State::Quarantine => {
                return Some(report(
                    OutcomeKind::Skipped,
                    state,
                    format!("in quarantine: use `ship-episode --requeue {id}` to try again"),
                ));
            }
            State::Episodes | State::Outbox => {}
        }
        let lock = match self.lock(state, id) {
            Ok(l) => l,
            Err(LockError::Busy(_)) | Err(LockError::Gone(_)) => {
                tracing::debug!(EPISODE_ID = %id, "skipping: another shipper has it");
                return None;
            }
            Err(e) => {
                return Some(self.log(report(OutcomeKind::Retry, state, e.to_string())));
            }
        };
        if state == State::Episodes {
            if !self.layout.is_ready(id) {
                return Some(report(
                    OutcomeKind::Skipped,
                    state,
                    format!("not ready: no {}", layout::DONE_MARKER),
                ));
            }
            if let Err(r) = self.claim(id) {
                return Some(self.log(r));
            }
        }
        let r = self.ship_claimed(id, observer, started);
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
            && let Err(r) = self.claim(id)
        {
            self.log(r);
        }
    }

    /// `episodes/<id>` → `outbox/<id>`. On a name clash the newcomer goes to
    /// quarantine (with the reason), so that it leaves the path unit's glob.
    fn claim(&self, id: &EpisodeId) -> Result<(), EpisodeReport> {
        let from = self.layout.episode_dir(State::Episodes, id);
        let to = self.layout.episode_dir(State::Outbox, id);
        let failed = |detail: String| EpisodeReport {
            id: id.clone(),
            outcome: OutcomeKind::Retry,
            state: State::Episodes,
            detail,
            http_status: None,
            archive_bytes: None,
            duration: Duration::ZERO,
            attempt: 0,
            next_attempt_at: None,
        };
        match rename_noreplace(&from, &to) {
            Ok(()) => {
                layout::sync_dir(&self.layout.state_dir(State::Outbox))
                    .map_err(|e| failed(e.to_string()))?;
                Ok(())
            }
            Err(LayoutError::Exists { .. }) => {
                let reason =
                    format!("an episode named {id} is already in outbox/: this copy was set aside");
                match self.settle(
                    id,
                    State::Episodes,
                    State::Quarantine,
                    &reason,
                    &SettleInfo::default(),
                ) {
                    Ok(()) => Err(EpisodeReport {
                        outcome: OutcomeKind::Quarantined,
                        state: State::Quarantine,
                        ..failed(reason)
                    }),
                    Err(e) => Err(failed(format!("{reason}, but: {e}"))),
                }
            }
            Err(e) => Err(failed(e.to_string())),
        }
    }

    /// Pack (or reuse the staged archive), upload, settle. The caller holds
    /// the lock and the episode is in the outbox.
    fn ship_claimed(
        &self,
        id: &EpisodeId,
        observer: &mut dyn Observer,
        started: Instant,
    ) -> EpisodeReport {
        let mut retry = RetryState::load(&self.layout, id)
            .ok()
            .flatten()
            .unwrap_or_default();
        let attempt = retry.attempts + 1;
        let mut report = EpisodeReport {
            id: id.clone(),
            outcome: OutcomeKind::Retry,
            state: State::Outbox,
            detail: String::new(),
            http_status: None,
            archive_bytes: None,
            duration: Duration::ZERO,
            attempt,
            next_attempt_at: None,
        };

        let staged = match self.stage_archive(id, &mut retry, observer) {
            Ok(s) => s,
            Err(detail) => {
                return self.keep_for_retry(report, &mut retry, detail, None, None, started);
            }
        };
        report.archive_bytes = Some(staged.1);
        let archive_path = self.layout.archive(id);
        let upload = Upload {
            host_id: &self.host_id,
            episode_id: id,
            archive: &archive_path,
            bytes: staged.1,
            sha256: staged.0,
        };
        let result = self
            .transport
            .put(&upload, &self.cancel, &mut |p| observer.uploading(id, p));
        let verdict = classify(&result, &staged.0);
        let digest = hex(&staged.0);
        match verdict {
            Verdict::Shipped { status } => {
                report.http_status = Some(status);
                self.finish(
                    report,
                    State::Shipped,
                    "shipped".into(),
                    Some(digest),
                    started,
                )
            }
            Verdict::Duplicate => {
                report.http_status = Some(409);
                let mut r = self.finish(
                    report,
                    State::Shipped,
                    "already on the receiver (duplicate)".into(),
                    Some(digest),
                    started,
                );
                if r.outcome == OutcomeKind::Shipped {
                    r.outcome = OutcomeKind::Duplicate;
                }
                r
            }
            Verdict::Quarantine { status, reason } => {
                report.http_status = Some(status);
                self.finish(report, State::Quarantine, reason, Some(digest), started)
            }
            Verdict::HostError {
                status,
                reason,
                fix,
            } => {
                report.http_status = Some(status);
                report.outcome = OutcomeKind::HostError;
                // Not this episode's fault: do not count an attempt.
                retry.last_error = format!("{reason}; fix: {fix}");
                retry.last_status = Some(status);
                if retry.claimed_at == 0 {
                    retry.claimed_at = unix_now();
                }
                let _ = retry.store(&self.layout, id);
                report.detail = format!("{reason}. Fix: {fix}");
                report.duration = started.elapsed();
                report
            }
            Verdict::Transient {
                status,
                reason,
                retry_after,
            } => {
                report.http_status = status;
                self.keep_for_retry(report, &mut retry, reason, status, retry_after, started)
            }
        }
    }

    /// The staged archive's digest and size, building it if needed. The
    /// digest is kept in the retry state, so a retry of a multi-GB archive
    /// does not hash it again (nor go quiet for the watchdog meanwhile).
    fn stage_archive(
        &self,
        id: &EpisodeId,
        retry: &mut RetryState,
        observer: &mut dyn Observer,
    ) -> Result<([u8; 32], u64), String> {
        let final_path = self.layout.archive(id);
        if let Ok(meta) = std::fs::metadata(&final_path)
            && meta.is_file()
        {
            // Complete: it was renamed into place after fsync.
            if let Some(known) = retry.archive_digest(meta.len()) {
                return Ok((known, meta.len()));
            }
            return archive::digest_file(&final_path, &mut |n| observer.archiving(id, n))
                .map_err(|e| format!("cannot read staged {}: {e}", final_path.display()));
        }
        let summary = archive::build(
            &self.layout.episode_dir(State::Outbox, id),
            id.as_str(),
            &self.layout.partial_archive(id),
            &final_path,
            self.gzip_level,
            &mut |n| observer.archiving(id, n),
        )
        .map_err(|e| {
            let _ = remove_if_present(&self.layout.partial_archive(id));
            match e {
                ArchiveError::Unreadable { .. } => {
                    format!("{e}: fix the permissions so the shipper (user cis490) can read it")
                }
                other => other.to_string(),
            }
        })?;
        for s in &summary.skipped {
            tracing::warn!(
                EPISODE_ID = %id,
                "left out of the archive: {} is a {} (never opened)",
                s.path.display(),
                s.kind
            );
        }
        retry.archive_sha256 = Some(hex(&summary.sha256));
        retry.archive_bytes = Some(summary.archive_bytes);
        if retry.claimed_at == 0 {
            retry.claimed_at = unix_now();
        }
        // Best effort: without it a retry only hashes the archive again.
        if let Err(e) = retry.store(&self.layout, id) {
            tracing::warn!(EPISODE_ID = %id, "{e}");
        }
        Ok((summary.sha256, summary.archive_bytes))
    }

    /// Settle into `to` (shipped or quarantine), then clean the outbox
    /// files. A crash between the rename and the cleanup leaves files with
    /// no episode beside them, which the next prune removes.
    fn finish(
        &self,
        mut report: EpisodeReport,
        to: State,
        reason: String,
        sha256: Option<String>,
        started: Instant,
    ) -> EpisodeReport {
        let id = report.id.clone();
        let meta = SettleInfo {
            http_status: report.http_status,
            sha256,
            archive_bytes: report.archive_bytes,
            attempts: report.attempt,
        };
        let mut to = to;
        let mut reason = reason;
        let mut settled = self.settle(&id, State::Outbox, to, &reason, &meta);
        if let Err(LayoutError::Exists { .. }) = settled
            && to == State::Shipped
        {
            // Same id shipped before: keep this copy as evidence.
            reason = format!("{reason}, but shipped/{id} already exists: set aside");
            to = State::Quarantine;
            settled = self.settle(&id, State::Outbox, to, &reason, &meta);
        }
        match settled {
            Ok(()) => {
                for leftover in [self.layout.archive(&id), self.layout.retry_file(&id)] {
                    if let Err(e) = remove_if_present(&leftover) {
                        tracing::warn!(EPISODE_ID = %id, "{e}");
                    }
                }
                report.outcome = if to == State::Shipped {
                    OutcomeKind::Shipped
                } else {
                    OutcomeKind::Quarantined
                };
                report.state = to;
                report.detail = reason;
                report.duration = started.elapsed();
                report
            }
            Err(e) => {
                // Still in the outbox, with its archive and a retry time, so
                // it is not uploaded again on every pass.
                let mut retry = RetryState::load(&self.layout, &id)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let status = report.http_status;
                let why = format!("{reason}, but could not move it to {to}/: {e}");
                self.keep_for_retry(report, &mut retry, why, status, None, started)
            }
        }
    }

    /// Write the sidecar, then rename the directory: the rename is the
    /// state change.
    fn settle(
        &self,
        id: &EpisodeId,
        from: State,
        to: State,
        reason: &str,
        info: &SettleInfo,
    ) -> Result<(), LayoutError> {
        let dest = self.layout.episode_dir(to, id);
        if dest.exists() {
            return Err(LayoutError::Exists {
                from: self.layout.episode_dir(from, id),
                to: dest,
            });
        }
        Sidecar {
            episode_id: id.to_string(),
            state: to,
            entered_at: unix_now(),
            reason: reason.to_string(),
            http_status: info.http_status,
            sha256: info.sha256.clone(),
            archive_bytes: info.archive_bytes,
            attempts: info.attempts,
        }
        .store(&self.layout, id)?;
        rename_noreplace(&self.layout.episode_dir(from, id), &dest)?;
        layout::sync_dir(&self.layout.state_dir(to))
    }

    fn keep_for_retry(
        &self,
        mut report: EpisodeReport,
        retry: &mut RetryState,
        reason: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
        started: Instant,
    ) -> EpisodeReport {
        retry.attempts += 1;
        let delay = backoff(retry.attempts, retry_after).max(Duration::from_secs(1));
        // Rounded up: a due time in whole seconds must not come early (a
        // Retry-After of 2 s is at least 2 s).
        let due = std::time::SystemTime::now()
            .checked_add(delay)
            .unwrap_or_else(std::time::SystemTime::now);
        retry.next_attempt_at = layout::unix_secs_ceil(due);
        retry.last_error = reason.clone();
        retry.last_status = status;
        if retry.claimed_at == 0 {
            retry.claimed_at = unix_now();
        }
        report.detail = match retry.store(&self.layout, &report.id) {
            Ok(()) => format!("{reason}; next attempt in {}s", delay.as_secs_f64().ceil()),
            Err(e) => format!("{reason}; and the retry state could not be saved: {e}"),
        };
        report.outcome = OutcomeKind::Retry;
        report.state = State::Outbox;
        report.attempt = retry.attempts;
        report.next_attempt_at = Some(retry.next_attempt_at);
        report.duration = started.elapsed();
        report
    }

    /// One structured journal line per episode outcome.
    fn log(&self, r: EpisodeReport) -> EpisodeReport {
        let (id, host) = (r.id.as_str(), self.host_id.as_str());
        let outcome = r.outcome.as_str();
        let ms = r.duration.as_millis() as u64;
        let bytes = r.archive_bytes.unwrap_or(0);
        let msg = format!("{id}: {} → {}/ ({})", outcome, r.state, r.detail);
        // An Option field is left out when None: no HTTP_STATUS without an
        // HTTP answer (doctor tells local set-asides apart by that).
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(
                    EPISODE_ID = id,
                    HOST_ID = host,
                    OUTCOME = outcome,
                    HTTP_STATUS = r.http_status,
                    BYTES = bytes,
                    DURATION_MS = ms,
                    ATTEMPT = r.attempt,
                    "{msg}"
                )
            };
        }
        match r.outcome {
            OutcomeKind::Shipped | OutcomeKind::Duplicate | OutcomeKind::Skipped => emit!(info),
            OutcomeKind::Retry => emit!(warn),
            OutcomeKind::Quarantined | OutcomeKind::HostError => emit!(error),
        }
        r
    }
}

/// What a sidecar records besides the reason.
#[derive(Debug, Default)]
struct SettleInfo {
    http_status: Option<u16>,
    sha256: Option<String>,
    archive_bytes: Option<u64>,
    attempts: u32,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Paths of a data root's outbox leftovers, for tests and prune.
pub fn outbox_artifacts(layout: &Layout, id: &EpisodeId) -> [PathBuf; 3] {
    [
        layout.archive(id),
        layout.partial_archive(id),
        layout.retry_file(id),
    ]
}
