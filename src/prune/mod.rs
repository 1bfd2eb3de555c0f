//! Retention: delete settled episodes past their keep time, and the debris
//! that crashed runs leave behind. Used by `quarantine-prune` (a oneshot run
//! by a timer; the interval lives in the timer unit, not here).
//!
//! - `quarantine/<id>` older than `quarantine_keep_days`, `shipped/<id>`
//!   older than `keep_local_for_days` (0 disables either). Age counts from
//!   when the episode ENTERED the state: the sidecar's `entered_at`, else the
//!   directory's ctime (rename(2) sets it), never the recording's mtimes.
//!   Never time the clock had wrong ([`clock`]): a run whose clock reads
//!   before the build date deletes nothing by age, and an entry time long
//!   before it or in the future restarts the count, recorded in the sidecar.
//! - Orphan sidecars (no directory) and `write_atomic` temp files in those
//!   states, once older than [`LEFTOVER_GRACE`].
//! - In `outbox/`: stale `<id>.tar.gz.partial` and temp files (older than
//!   the grace), `<id>.tar.gz` / `<id>.retry.json` whose `outbox/<id>/` is
//!   gone. Never an `outbox/<id>/` directory: that is unshipped data.
//!
//! An entry is deleted under its [`EpisodeLock`] (busy: skipped), first
//! renamed to a hidden `.deleting-<id>` in the same directory, so that a
//! concurrent requeue finds it gone and a crash mid-delete never leaves a
//! half-deleted tree that looks like an episode; the next run finishes such
//! leftovers. The tree is removed without following symlinks.
//!
//! Cost: one listing per state directory plus one small read (sidecar) or
//! lstat per entry; only trees being deleted are walked.
//!
//! Deciding is apart from doing: [`decide`] says what becomes of one entry
//! from facts alone (no disk, no clock), [`gather`] finds those facts out,
//! [`apply`] carries the decision out and logs it into the [`PruneReport`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::RetentionSettings;
use crate::layout::{Layout, State};

mod apply;
pub mod clock;
mod decide;
mod gather;
mod report;
mod restart;
#[cfg(test)]
mod tests;

use apply::Run;
use decide::{Listed, Rules, classify};

pub use crate::cli::human_bytes;
pub use gather::tree_bytes;
pub use report::{Failure, Kind, PruneReport, Removal, Restarted, Skip};

/// How old crash leftovers (orphan sidecars, partial archives, temp files)
/// must be before they are removed: anything younger may belong to an
/// operation in progress.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(86_400);
/// Prefix of an entry being deleted. Hidden, so never an episode id.
pub const DELETING_PREFIX: &str = ".deleting-";
const DAY: f64 = 86_400.0;

/// Apply the retention rules to `layout` as of `now`, believing every
/// recorded time (for callers that know their clock; `quarantine-prune`
/// uses [`prune_since_build`]). With `dry_run`, only report what would be
/// removed (locks are tried, nothing is changed).
pub fn prune(
    layout: &Layout,
    retention: &RetentionSettings,
    now: SystemTime,
    dry_run: bool,
) -> PruneReport {
    prune_since_build(layout, retention, now, UNIX_EPOCH, dry_run)
}

/// [`prune`], for a binary built at `built` ([`clock::build_date`]): a
/// clock before it deletes nothing by age, and an entry time that the
/// clock had wrong restarts the count (see [`clock`]).
pub fn prune_since_build(
    layout: &Layout,
    retention: &RetentionSettings,
    now: SystemTime,
    built: SystemTime,
    dry_run: bool,
) -> PruneReport {
    let rules = |state, keep_days| Rules {
        state,
        keep_days,
        now,
        built,
        dry_run,
    };
    let leftovers = rules(State::Outbox, 0);
    let mut run = Run::new(layout, dry_run);
    if !leftovers.clock_right() {
        run.clock_wrong(now, built);
    }
    settled(
        &mut run,
        &rules(State::Quarantine, retention.quarantine_keep_days),
    );
    settled(
        &mut run,
        &rules(State::Shipped, retention.keep_local_for_days),
    );
    outbox(&mut run, &leftovers);
    let report = run.into_report();
    if !dry_run {
        report.log_summary();
    }
    report
}

/// `quarantine/` or `shipped/`: finish interrupted removals, prune
/// expired entries, then orphan sidecars and temp files.
fn settled(run: &mut Run, rules: &Rules) {
    let state = rules.state;
    let Some(scan) = run.list(state) else {
        return;
    };
    for name in &scan.hidden_dirs {
        if let Some(candidate) = classify(state, name, Listed::HiddenDir, &scan) {
            run.handle(name, &candidate, rules);
        }
    }
    for (name, why) in &scan.rejected {
        tracing::warn!("leaving {state}/{name:?} alone: not a valid episode id ({why})");
    }
    let mut kept = 0;
    for id in &scan.dirs {
        if let Some(candidate) = classify(state, id, Listed::EpisodeDir, &scan)
            && run.handle(id, &candidate, rules)
        {
            kept += 1;
        }
    }
    run.kept(state, kept);
    for name in &scan.files {
        if let Some(candidate) = classify(state, name, Listed::File, &scan) {
            run.handle(name, &candidate, rules);
        }
    }
}

/// `outbox/`: only files left beside episodes; the episodes themselves
/// are unshipped data and never touched.
fn outbox(run: &mut Run, rules: &Rules) {
    let Some(scan) = run.list(rules.state) else {
        return;
    };
    for name in &scan.files {
        if let Some(candidate) = classify(rules.state, name, Listed::File, &scan) {
            run.handle(name, &candidate, rules);
        }
    }
}
