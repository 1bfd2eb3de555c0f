//! Find ready episodes and claim them: `episodes/<id>` → `outbox/<id>`, one
//! rename, after which the path unit's glob no longer matches.

use std::path::Path;

use crate::layout::{self, EpisodeId, LayoutError, State, remove_if_present, rename_noreplace};
use crate::machine::Claim;

use super::{ShipError, Shipper};

impl Shipper {
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

    /// The claim rename itself; the caller holds the episode's lock.
    pub(super) fn claim(&self, id: &EpisodeId) -> Claim {
        let from = self.layout.episode_dir(State::Episodes, id);
        let to = self.layout.episode_dir(State::Outbox, id);
        if std::fs::symlink_metadata(&to).is_ok() {
            return Claim::NameTaken;
        }
        // With no outbox/<id>, whatever lies beside it under this id is left
        // from an earlier episode (a crash between settle and cleanup): it
        // must never be taken for this recording's archive or retry state.
        for leftover in super::outbox_artifacts(&self.layout, id) {
            if std::fs::symlink_metadata(&leftover).is_err() {
                continue;
            }
            match remove_if_present(&leftover) {
                Ok(()) => tracing::warn!(
                    EPISODE_ID = %id,
                    "removed {}: left from an earlier episode with the same id",
                    leftover.display()
                ),
                Err(e) => return Claim::Failed(e.to_string()),
            }
        }
        crate::failpoint!(crate::failpoint::CLAIM_BEFORE_RENAME);
        match rename_noreplace(&from, &to) {
            Ok(()) => match layout::sync_dir(&self.layout.state_dir(State::Outbox)) {
                Ok(()) => {
                    crate::failpoint!(crate::failpoint::CLAIM_AFTER_RENAME);
                    Claim::Claimed
                }
                Err(e) => Claim::Failed(e.to_string()),
            },
            Err(LayoutError::Exists { .. }) => Claim::NameTaken,
            Err(e) => Claim::Failed(e.to_string()),
        }
    }
}
