//! The small JSON files beside the episodes: retry state in the outbox,
//! sidecars of settled episodes. Read without following symlinks, written
//! atomically.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    EpisodeId, Layout, LayoutError, State, locked_temp, open_nofollow, write_atomic,
    write_atomic_via,
};

/// Retry state of an outbox episode, persisted in `outbox/<id>.retry.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetryState {
    /// Failed attempts so far.
    pub attempts: u32,
    /// Unix seconds before which the scanner does not try again.
    pub next_attempt_at: u64,
    pub last_error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Unix seconds it was first staged (claimed and archived), for the
    /// backlog's age in doctor.
    #[serde(default)]
    pub claimed_at: u64,
    /// SHA-256 (hex) and size of the staged `outbox/<id>.tar.gz`, so that a
    /// retry need not hash it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_bytes: Option<u64>,
    /// The episode directory the staged archive was built from: it is
    /// reused only for that same directory (not a later recording that
    /// got the same id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_source: Option<DirIdentity>,
    /// Set while staging waits for disk space: about how many bytes the
    /// archive needs (doctor names the episode and the space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_needs_bytes: Option<u64>,
    /// The multipart upload in progress (S3 receiver), written after each
    /// part, so that a retry after a drop or a `kill -9` sends only the
    /// missing parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<MultipartProgress>,
}

/// A multipart upload of the staged archive to the object store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartProgress {
    /// The object key it completes into.
    pub key: String,
    pub upload_id: String,
    pub part_size: u64,
    /// SHA-256 (hex) of the archive being uploaded: parts of another
    /// archive (rebuilt meanwhile) are never completed into this one.
    pub archive_sha256: String,
    /// Parts the store acknowledged, in the order they were sent.
    pub parts: Vec<UploadedPart>,
}

/// One part the store acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedPart {
    pub number: u32,
    pub etag: String,
    /// The part's SHA-256, base64, as sent in `x-amz-checksum-sha256`.
    pub sha256: String,
    pub size: u64,
}

/// A directory's device and inode: what survives its renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirIdentity {
    pub dev: u64,
    pub ino: u64,
}

impl DirIdentity {
    /// The identity of the directory at `path` itself (never a symlink's
    /// target).
    pub fn of(path: &Path) -> io::Result<DirIdentity> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::symlink_metadata(path)?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory",
            ));
        }
        Ok(DirIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl RetryState {
    /// The recorded digest of the staged archive, if it is for an archive
    /// of this size.
    pub fn archive_digest(&self, size: u64) -> Option<[u8; 32]> {
        if self.archive_bytes != Some(size) {
            return None;
        }
        let hex = self.archive_sha256.as_deref()?;
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }

    pub fn load(layout: &Layout, id: &EpisodeId) -> Result<Option<RetryState>, LayoutError> {
        read_json(&layout.retry_file(id))
    }

    pub fn store(&self, layout: &Layout, id: &EpisodeId) -> Result<(), LayoutError> {
        // Written under the episode's lock only: a fixed temp name, which
        // the next write (or the settle's cleanup) replaces after a kill.
        let path = layout.retry_file(id);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| LayoutError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic_via(&path, &bytes, &locked_temp(&path))
    }
}

/// What a settled episode's sidecar records: when it entered its state and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub episode_id: String,
    pub state: State,
    /// Unix seconds when the episode entered this state (retention counts
    /// from here). When the clock had it wrong, `quarantine-prune` sets it
    /// to when it first saw the episode with a right clock and keeps the
    /// time first recorded beside it as `entered_at_untrusted` (see
    /// [`crate::prune::clock`]).
    pub entered_at: u64,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_bytes: Option<u64>,
    #[serde(default)]
    pub attempts: u32,
    /// How a refusal was confirmed to be the receiver's own before it
    /// quarantined the episode, e.g. `HEAD /episodes/lab-7/ep-1 answered 404`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_check: Option<String>,
}

impl Sidecar {
    pub fn load(
        layout: &Layout,
        state: State,
        id: &EpisodeId,
    ) -> Result<Option<Sidecar>, LayoutError> {
        read_json(&layout.sidecar(state, id))
    }

    pub fn store(&self, layout: &Layout, id: &EpisodeId) -> Result<(), LayoutError> {
        write_json(&layout.sidecar(self.state, id), self)
    }
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> Result<Option<T>, LayoutError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let read = open_nofollow(path).and_then(|f| {
        // State files are a few hundred bytes: a huge one is not ours.
        f.take(1 << 20).read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LayoutError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LayoutError::io("cannot read", path, e)),
    }
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), LayoutError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| LayoutError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}
