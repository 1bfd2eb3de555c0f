//! Recording where a retention count starts when the clock had the entry
//! time wrong: the sidecar's `entered_at` becomes now, and the time first
//! recorded is kept beside it as `entered_at_untrusted` (readers that do
//! not know the field ignore it). An episode without a sidecar gets one.
//! The caller holds the episode's lock.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::gather::read_small_file;
use crate::layout::{self, LayoutError, Sidecar, State};

/// A sidecar as prune writes it.
#[derive(Serialize, Deserialize)]
struct Restarted {
    #[serde(flatten)]
    sidecar: Sidecar,
    /// The entry time first recorded, which the clock had wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entered_at_untrusted: Option<u64>,
}

/// Why the count was not restarted.
#[derive(Debug)]
pub enum NotRestarted {
    /// The sidecar changed since it was read: the next run decides again.
    Changed,
    /// Reported as a failure.
    Failed(String),
}

/// Rewrite the sidecar at `path`, which held `seen`, so that the count
/// starts at `from`; `recorded` is kept unless an earlier restart kept one.
pub fn rewrite(path: &Path, seen: &[u8], from: u64, recorded: u64) -> Result<(), NotRestarted> {
    match read_small_file(path) {
        Ok(bytes) if bytes == seen => {}
        Ok(_) => return Err(NotRestarted::Changed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(NotRestarted::Changed),
        Err(e) => return Err(failed(path, e)),
    }
    let mut r: Restarted = serde_json::from_slice(seen).map_err(|e| failed(path, e))?;
    r.entered_at_untrusted.get_or_insert(recorded);
    r.sidecar.entered_at = from;
    let bytes = serde_json::to_vec_pretty(&r).map_err(|e| failed(path, e))?;
    layout::write_atomic(path, &bytes).map_err(|e| NotRestarted::Failed(e.to_string()))
}

/// Write a sidecar at `path` for episode `id` in `state`, which has none
/// (its age came from the directory's ctime, `recorded`). Never replaces
/// one: a sidecar that cannot be used stays, for the operator to look at.
pub fn create(
    path: &Path,
    id: &str,
    state: State,
    from: u64,
    recorded: u64,
) -> Result<(), NotRestarted> {
    let r = Restarted {
        sidecar: Sidecar {
            episode_id: id.to_string(),
            state,
            entered_at: from,
            reason: "not recorded (no sidecar was written); quarantine-prune wrote this one \
                     because the directory's ctime was taken by a wrong clock"
                .into(),
            http_status: None,
            sha256: None,
            archive_bytes: None,
            attempts: 0,
            refusal_check: None,
        },
        entered_at_untrusted: Some(recorded),
    };
    let bytes = serde_json::to_vec_pretty(&r).map_err(|e| failed(path, e))?;
    // The name of layout::write_atomic's temp files: a leftover is pruned.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .map_err(|e| failed(&tmp, e))
        .and_then(|()| match layout::rename_noreplace(&tmp, path) {
            Ok(()) => Ok(()),
            Err(LayoutError::Exists { .. }) => Err(in_the_way(path, id, state)),
            Err(e) => Err(NotRestarted::Failed(e.to_string())),
        });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// A sidecar appeared where there was none: a usable one (a settle raced
/// us) is read next run; an unusable one is the operator's to fix.
fn in_the_way(path: &Path, id: &str, state: State) -> NotRestarted {
    let usable = read_small_file(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Sidecar>(&b).ok())
        .is_some_and(|s| s.episode_id == id && s.state == state);
    if usable {
        NotRestarted::Changed
    } else {
        NotRestarted::Failed(format!(
            "{} cannot be used and is in the way of a new one: fix or remove it",
            path.display()
        ))
    }
}

fn failed(path: &Path, e: impl std::fmt::Display) -> NotRestarted {
    NotRestarted::Failed(format!("{}: {e}", path.display()))
}
