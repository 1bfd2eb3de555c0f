//! Doing what was decided: find out what `decide` asks for, then delete
//! (an episode via a hidden `.deleting-<id>` rename) or restart a
//! retention count, log each outcome and keep the report.

use std::fs;
use std::io;
use std::time::SystemTime;

use super::decide::{
    Candidate, Decision, Deletion, Fact, Facts, LockTarget, Restart, Rules, decide, episode_part,
};
use super::gather::{self, Found, Scan, read_small_file, tree_bytes};
use super::report::{Failure, PruneReport, Removal, Restarted, Skip};
use super::restart::{self, NotRestarted};
use super::{DELETING_PREFIX, human_bytes};
use crate::layout::{self, Layout, SIDECAR_SUFFIX, State, unix_secs};
use crate::lock::EpisodeLock;
use crate::time::rfc3339;

/// One prune run: where, and what happened so far.
pub struct Run<'a> {
    layout: &'a Layout,
    report: PruneReport,
}

/// What has been found out about one entry so far.
#[derive(Default)]
struct Known {
    facts: Facts,
    /// The latest time looked up, with the sidecar's bytes or file's size.
    found: Option<Found>,
    /// The lock the decision asked for, held until the deletion is done.
    held: Option<EpisodeLock>,
}

/// How a decided deletion is carried out.
enum Removing {
    /// Set aside as `.deleting-<id>`, remove the tree, then the sidecar if
    /// it still holds these bytes.
    Episode { sidecar: Option<Vec<u8>> },
    /// A `.deleting-<id>` tree.
    Unfinished,
    /// One file, of this allocated size.
    File { bytes: u64 },
}

impl<'a> Run<'a> {
    pub fn new(layout: &'a Layout, dry_run: bool) -> Run<'a> {
        Run {
            layout,
            report: PruneReport::new(dry_run),
        }
    }

    pub fn into_report(self) -> PruneReport {
        self.report
    }

    pub fn kept(&mut self, state: State, count: usize) {
        self.report.kept.push((state, count));
    }

    /// The clock is before the build date: say so once for the run.
    pub fn clock_wrong(&mut self, now: SystemTime, built: SystemTime) {
        let why = format!(
            "the clock reads {}, before this build ({}): it is wrong, so no age can be \
             measured and nothing is deleted by age until it is set right",
            rfc3339(unix_secs(now)),
            rfc3339(unix_secs(built))
        );
        tracing::warn!(CLOCK_WRONG = true, "{why}");
        self.report.clock_wrong = Some(why);
    }

    /// One listing of a state directory; a failure is reported, a missing
    /// directory is simply empty.
    pub fn list(&mut self, state: State) -> Option<Scan> {
        let dir = self.layout.state_dir(state);
        match gather::scan(&dir) {
            Ok(scan) => scan,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                self.fail(state, "", format!("cannot list {}: {e}", dir.display()));
                None
            }
        }
    }

    /// Decide about `name` (in `rules.state`), finding out what the
    /// decision needs, and carry it out. True when a settled episode is kept.
    pub fn handle(&mut self, name: &str, candidate: &Candidate, rules: &Rules) -> bool {
        let state = rules.state;
        // Lives (and holds its lock) until the deletion is done.
        let mut known = Known::default();
        let decision = loop {
            match decide(candidate, &known.facts, rules) {
                Decision::Need(fact) => self.find_out(fact, state, name, candidate, &mut known),
                decided => break decided,
            }
        };
        let Known { found, .. } = &mut known;
        match decision {
            // (Need never leaves the loop.)
            Decision::Need(_) | Decision::Leave(_) => {}
            Decision::Keep(_) => return true,
            Decision::RestartCount(r) => {
                let sidecar = found.take().and_then(|f| f.sidecar);
                self.restart(state, name, r, sidecar.as_deref());
                return true;
            }
            Decision::Skip(reason) => self.skip(state, name, reason.to_string()),
            Decision::Fail(message) => self.fail(state, name, message),
            Decision::DeleteEpisode(d) => {
                let sidecar = found.take().and_then(|f| f.sidecar);
                self.delete(state, name, candidate, d, Removing::Episode { sidecar });
            }
            Decision::FinishRemoval(d) => {
                self.delete(state, name, candidate, d, Removing::Unfinished)
            }
            Decision::DeleteFile(d) => {
                let bytes = found.as_ref().map_or(0, |f| f.bytes);
                self.delete(state, name, candidate, d, Removing::File { bytes });
            }
        }
        false
    }

    /// Look up what `decide` asked for.
    fn find_out(
        &self,
        fact: Fact,
        state: State,
        name: &str,
        candidate: &Candidate,
        known: &mut Known,
    ) {
        let dir = self.layout.state_dir(state);
        let facts = &mut known.facts;
        match fact {
            Fact::Since | Fact::SinceLocked => {
                let found = gather::since(&dir, state, name, candidate);
                let slot = match fact {
                    Fact::Since => &mut facts.since,
                    _ => &mut facts.since_locked,
                };
                debug_assert!(slot.is_none(), "{fact:?} asked twice");
                *slot = Some(found.seen.clone());
                known.found = Some(found);
            }
            Fact::EpisodeExists => {
                let exists = episode_id(candidate).is_some_and(|id| gather::exists(&dir.join(id)));
                facts.episode_exists = Some(exists);
            }
            Fact::Lock(target) => {
                let path = match (target, episode_id(candidate)) {
                    (LockTarget::Episode, Some(id)) => dir.join(id),
                    _ => dir.join(name),
                };
                let (lock, guard) = gather::lock(&path);
                facts.lock = Some(lock);
                known.held = guard;
            }
        }
    }

    /// Carry out a deletion (under the lock the decision asked for).
    fn delete(
        &mut self,
        state: State,
        name: &str,
        candidate: &Candidate,
        d: Deletion,
        how: Removing,
    ) {
        let dir = self.layout.state_dir(state);
        let path = dir.join(name);
        let removal = |bytes| Removal {
            state,
            name: name.to_string(),
            episode_id: match candidate {
                Candidate::Settled { id, .. } | Candidate::Deleting { id } => id.clone(),
                _ => episode_part(name).to_string(),
            },
            kind: d.kind,
            age: d.age,
            bytes,
            reason: d.reason.clone(),
        };
        if d.dry_run {
            let bytes = match how {
                Removing::File { bytes } => bytes,
                Removing::Episode { .. } | Removing::Unfinished => tree_bytes(&path),
            };
            self.removed(removal(bytes));
            return;
        }
        crate::failpoint!(crate::failpoint::PRUNE_BEFORE_DELETE);
        match how {
            Removing::Episode { sidecar } => {
                let hidden = dir.join(format!("{DELETING_PREFIX}{name}"));
                if let Err(e) = layout::rename_noreplace(&path, &hidden) {
                    self.fail(state, name, format!("cannot set it aside for removal: {e}"));
                    return;
                }
                // From here on it is no longer an episode: a crash leaves
                // only the hidden name, which the next run finishes.
                let _ = layout::sync_dir(&dir);
                let bytes = tree_bytes(&hidden);
                let tree = fs::remove_dir_all(&hidden);
                self.remove_sidecar_if_unchanged(state, name, sidecar.as_deref());
                match tree {
                    Ok(()) => self.removed(removal(bytes)),
                    Err(e) => self.fail(
                        state,
                        name,
                        format!(
                            "removal interrupted: {e}; what is left is in {} and the next run retries",
                            hidden.display()
                        ),
                    ),
                }
            }
            Removing::Unfinished => {
                let bytes = tree_bytes(&path);
                match fs::remove_dir_all(&path) {
                    Ok(()) => self.removed(removal(bytes)),
                    Err(e) => self.fail(state, name, format!("cannot finish removal: {e}")),
                }
            }
            Removing::File { bytes } => match fs::remove_file(&path) {
                Ok(()) => self.removed(removal(bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => self.fail(state, name, format!("cannot remove: {e}")),
            },
        }
    }

    /// Record that episode `id`'s retention counts from `r.from` (under its
    /// lock): rewrite its sidecar, which held `sidecar`, or write one.
    fn restart(&mut self, state: State, id: &str, r: Restart, sidecar: Option<&[u8]>) {
        let (recorded, from) = (unix_secs(r.recorded), unix_secs(r.from));
        if !r.dry_run {
            let path = self
                .layout
                .state_dir(state)
                .join(format!("{id}{SIDECAR_SUFFIX}"));
            let done = match sidecar {
                Some(seen) => restart::rewrite(&path, seen, from, recorded),
                None => restart::create(&path, id, state, from, recorded),
            };
            match done {
                Ok(()) => {}
                Err(NotRestarted::Changed) => {
                    return self.skip(state, id, "its sidecar changed meanwhile".into());
                }
                Err(NotRestarted::Failed(m)) => {
                    let why = format!("cannot restart its retention count ({}): {m}", r.reason);
                    return self.fail(state, id, why);
                }
            }
            tracing::warn!(
                EPISODE_ID = id,
                STATE = state.dir_name(),
                OUTCOME = "retention_restarted",
                "kept {state}/{id}: {}",
                r.reason
            );
        }
        self.report.restarted.push(Restarted {
            state,
            episode_id: id.to_string(),
            recorded,
            from,
            reason: r.reason,
        });
    }

    fn remove_sidecar_if_unchanged(&mut self, state: State, id: &str, seen: Option<&[u8]>) {
        let path = self
            .layout
            .state_dir(state)
            .join(format!("{id}{SIDECAR_SUFFIX}"));
        let unchanged = match read_small_file(&path) {
            Ok(now) => seen == Some(now.as_slice()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            // Unreadable or not a regular file: leave it to the orphan rule.
            Err(_) => false,
        };
        if unchanged && let Err(e) = layout::remove_if_present(&path) {
            self.fail(state, &format!("{id}{SIDECAR_SUFFIX}"), e.to_string());
        }
    }

    fn skip(&mut self, state: State, name: &str, reason: String) {
        tracing::info!(
            EPISODE_ID = episode_part(name),
            STATE = state.dir_name(),
            OUTCOME = "skipped",
            "not pruning {state}/{name}: {reason}"
        );
        self.report.skipped.push(Skip {
            state,
            name: name.to_string(),
            reason,
        });
    }

    fn fail(&mut self, state: State, name: &str, message: String) {
        tracing::error!(
            EPISODE_ID = episode_part(name),
            STATE = state.dir_name(),
            "cannot prune {state}/{name}: {message}"
        );
        self.report.failures.push(Failure {
            state,
            name: name.to_string(),
            message,
        });
    }

    fn removed(&mut self, r: Removal) {
        if !self.report.dry_run {
            tracing::info!(
                EPISODE_ID = r.episode_id.as_str(),
                STATE = r.state.dir_name(),
                KIND = r.kind.as_str(),
                AGE_DAYS = format!("{:.1}", r.age_days()).as_str(),
                BYTES = r.bytes,
                OUTCOME = "pruned",
                "pruned {}/{} ({}), {} freed",
                r.state,
                r.name,
                r.reason,
                human_bytes(r.bytes)
            );
        }
        self.report.removed.push(r);
    }
}

/// The episode a candidate belongs to (its directory's name).
fn episode_id(candidate: &Candidate) -> Option<&str> {
    match candidate {
        Candidate::Settled { id, .. }
        | Candidate::Deleting { id }
        | Candidate::OrphanSidecar { id }
        | Candidate::Partial { id, .. }
        | Candidate::StaleArchive { id }
        | Candidate::StaleRetry { id } => Some(id),
        Candidate::TempFile => None,
    }
}
