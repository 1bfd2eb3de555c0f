//! Stage an episode's archive as `outbox/<id>.tar.gz`, or reuse the one a
//! failed attempt left there.

use crate::archive::{self, ArchiveError, BuildOptions};
use crate::layout::{DirIdentity, EpisodeId, RetryState, State, remove_if_present, unix_now};
use crate::reserve;

use super::{Observer, Shipper, hex};

/// Why an archive could not be staged.
#[derive(Debug)]
pub(super) struct StageError {
    pub reason: String,
    /// Set when it did not fit above the disk reserve: about the bytes it
    /// needs. It stays in the outbox and is tried again later.
    pub needs_bytes: Option<u64>,
}

impl From<String> for StageError {
    fn from(reason: String) -> StageError {
        StageError {
            reason,
            needs_bytes: None,
        }
    }
}

impl Shipper {
    /// The staged archive's digest and size, building it if needed. The
    /// digest is kept in the retry state, so a retry of a multi-GB archive
    /// does not hash it again (nor go quiet for the watchdog meanwhile).
    pub(super) fn stage_archive(
        &self,
        id: &EpisodeId,
        retry: &mut RetryState,
        observer: &mut dyn Observer,
    ) -> Result<([u8; 32], u64), StageError> {
        let final_path = self.layout.archive(id);
        let episode_dir = self.layout.episode_dir(State::Outbox, id);
        let source = DirIdentity::of(&episode_dir)
            .map_err(|e| format!("cannot stat {}: {e}", episode_dir.display()))?;
        if std::fs::symlink_metadata(&final_path).is_ok() {
            match self.staged_for(id, source, retry, observer) {
                Some(staged) => return Ok(staged),
                None => remove_if_present(&final_path).map_err(|e| e.to_string())?,
            }
        }
        let keep_free = self.check_reserve(id, &episode_dir)?;
        // Claim the archive for this directory before building it, so a
        // crash after the rename below still knows whose it is.
        retry.archive_source = Some(source);
        retry.archive_sha256 = None;
        retry.archive_bytes = None;
        if retry.claimed_at == 0 {
            retry.claimed_at = unix_now();
        }
        retry.store(&self.layout, id).map_err(|e| e.to_string())?;
        crate::failpoint!(crate::failpoint::STAGE_BEFORE_BUILD);
        let options = BuildOptions {
            gzip_level: self.gzip_level,
            threads: self.compress_threads,
            keep_free,
        };
        let summary = archive::build(
            &self.layout.episode_dir(State::Outbox, id),
            id.as_str(),
            &self.layout.partial_archive(id),
            &final_path,
            options,
            &mut |n| observer.archiving(id, n),
        )
        .map_err(|e| {
            let _ = remove_if_present(&self.layout.partial_archive(id));
            match e {
                ArchiveError::Unreadable { .. } => StageError::from(format!(
                    "{e}: fix the permissions so the shipper (user cis490) can read it"
                )),
                // The reserve was reached while staging (the recorder
                // writes too), or the disk is full: wait, keep the episode.
                ArchiveError::Write { ref source, .. }
                    if source.kind() == std::io::ErrorKind::StorageFull =>
                {
                    StageError {
                        reason: format!("{e}; the episode waits in the outbox"),
                        needs_bytes: reserve::estimate_archive_bytes(&episode_dir).ok(),
                    }
                }
                other => StageError::from(other.to_string()),
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
        retry.stage_needs_bytes = None;
        // Best effort: without it a retry only hashes the archive again.
        if let Err(e) = retry.store(&self.layout, id) {
            tracing::warn!(EPISODE_ID = %id, "{e}");
        }
        Ok((summary.sha256, summary.archive_bytes))
    }
}

impl Shipper {
    /// Before staging: does the archive fit above the disk reserve? Gives
    /// the free space staging must leave (0 with the reserve off).
    fn check_reserve(&self, id: &EpisodeId, dir: &std::path::Path) -> Result<u64, StageError> {
        if self.disk_reserve_percent <= 0.0 {
            return Ok(0);
        }
        let root = self.layout.root();
        let space = reserve::space_of(root)
            .map_err(|e| format!("cannot read the free space of {}: {e}", root.display()))?;
        let need = reserve::estimate_archive_bytes(dir)
            .map_err(|e| format!("cannot size {}: {e}", dir.display()))?;
        // With the headroom staging keeps between its checks, so that what
        // passes here is not stopped at the first write.
        let with_headroom = need.saturating_add(archive::SPACE_CHECK_EVERY);
        match reserve::check(space, self.disk_reserve_percent, with_headroom) {
            Ok(()) => Ok(reserve::reserve_bytes(
                space.total,
                self.disk_reserve_percent,
            )),
            Err(short) => {
                tracing::debug!(EPISODE_ID = %id, "not staged: {short}");
                Err(StageError {
                    reason: format!("not staged: {short}; it waits in the outbox"),
                    needs_bytes: Some(need),
                })
            }
        }
    }

    /// The staged archive's digest and size if it may be reused: built from
    /// this very directory, a regular file, readable. `None`: rebuild it.
    fn staged_for(
        &self,
        id: &EpisodeId,
        source: DirIdentity,
        retry: &RetryState,
        observer: &mut dyn Observer,
    ) -> Option<([u8; 32], u64)> {
        let path = self.layout.archive(id);
        if retry.archive_source != Some(source) {
            tracing::warn!(
                EPISODE_ID = %id,
                "{} was not built from this episode directory: rebuilding it",
                path.display()
            );
            return None;
        }
        // Complete: it was renamed into place after fsync.
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() {
            return None;
        }
        if let Some(known) = retry.archive_digest(meta.len()) {
            return Some((known, meta.len()));
        }
        match archive::digest_file(&path, &mut |n| observer.archiving(id, n)) {
            Ok(digest) => Some(digest),
            Err(e) => {
                tracing::warn!(
                    EPISODE_ID = %id,
                    "cannot read the staged {}: {e}; rebuilding it",
                    path.display()
                );
                None
            }
        }
    }
}
