//! Stage an episode's archive as `outbox/<id>.tar.gz`, or reuse the one a
//! failed attempt left there.

use crate::archive::{self, ArchiveError};
use crate::layout::{EpisodeId, RetryState, State, remove_if_present, unix_now};

use super::{Observer, Shipper, hex};

impl Shipper {
    /// The staged archive's digest and size, building it if needed. The
    /// digest is kept in the retry state, so a retry of a multi-GB archive
    /// does not hash it again (nor go quiet for the watchdog meanwhile).
    pub(super) fn stage_archive(
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
}
