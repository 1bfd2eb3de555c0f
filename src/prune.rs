//! Retention: delete settled episodes past their keep time, and the debris
//! that crashed runs leave behind. Used by `quarantine-prune` (a oneshot run
//! by a timer; the interval lives in the timer unit, not here).
//!
//! - `quarantine/<id>` older than `quarantine_keep_days`, `shipped/<id>`
//!   older than `keep_local_for_days` (0 disables either). Age counts from
//!   when the episode ENTERED the state: the sidecar's `entered_at`, else the
//!   directory's ctime (rename(2) sets it), never the recording's mtimes.
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

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::RetentionSettings;
use crate::layout::{
    self, ARCHIVE_SUFFIX, EpisodeId, Layout, PARTIAL_SUFFIX, RETRY_SUFFIX, SIDECAR_SUFFIX, Sidecar,
    State,
};
use crate::lock::{self, EpisodeLock, LockError};

/// How old crash leftovers (orphan sidecars, partial archives, temp files)
/// must be before they are removed: anything younger may belong to an
/// operation in progress.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(86_400);
/// Prefix of an entry being deleted. Hidden, so never an episode id.
pub const DELETING_PREFIX: &str = ".deleting-";
const DAY: f64 = 86_400.0;
/// Sidecars are a few hundred bytes; refuse to read anything big.
const SIDECAR_MAX_BYTES: u64 = 64 * 1024;
/// Deeper than this, the byte count of a tree being deleted stops descending
/// (the removal itself is not limited).
const MAX_COUNT_DEPTH: usize = 128;

/// What was (or would be) removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A settled episode past its retention.
    Episode,
    /// A `.deleting-<id>` left by an interrupted removal.
    Unfinished,
    /// `<id>.json` whose episode directory is gone.
    OrphanSidecar,
    /// `outbox/<id>.tar.gz.partial`.
    PartialArchive,
    /// `outbox/<id>.tar.gz` whose episode directory is gone.
    StaleArchive,
    /// `outbox/<id>.retry.json` whose episode directory is gone.
    StaleRetry,
    /// `*.json.tmp<pid>` left by an interrupted atomic write.
    TempFile,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Episode => "episode",
            Kind::Unfinished => "unfinished_removal",
            Kind::OrphanSidecar => "orphan_sidecar",
            Kind::PartialArchive => "partial_archive",
            Kind::StaleArchive => "stale_archive",
            Kind::StaleRetry => "stale_retry_state",
            Kind::TempFile => "temp_file",
        }
    }

    /// Whole episodes, as opposed to files left beside them.
    pub fn is_episode(self) -> bool {
        matches!(self, Kind::Episode | Kind::Unfinished)
    }
}

#[derive(Debug, Clone)]
pub struct Removal {
    pub state: State,
    /// Name inside the state directory (as it was when found).
    pub name: String,
    pub episode_id: String,
    pub kind: Kind,
    pub age: Duration,
    /// Disk space freed (allocated blocks, as du counts them).
    pub bytes: u64,
    /// Why, for humans: "quarantined 31.2 days ago, keep 30".
    pub reason: String,
}

impl Removal {
    pub fn age_days(&self) -> f64 {
        self.age.as_secs_f64() / DAY
    }
}

/// Left alone this time, not an error (locked, moved away meanwhile).
#[derive(Debug, Clone)]
pub struct Skip {
    pub state: State,
    pub name: String,
    pub reason: String,
}

/// Something that should have been removed (or examined) but could not be.
#[derive(Debug, Clone)]
pub struct Failure {
    pub state: State,
    pub name: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Removed, or in a dry run what would be removed.
    pub removed: Vec<Removal>,
    pub skipped: Vec<Skip>,
    pub failures: Vec<Failure>,
    /// Episodes kept (younger than their retention, or retention disabled).
    pub kept: Vec<(State, usize)>,
}

impl PruneReport {
    /// 0 when all went well, EX_IOERR (74) when something could not be removed.
    pub fn exit_code(&self) -> u8 {
        if self.failures.is_empty() {
            crate::exit::OK
        } else {
            crate::exit::IO_ERROR
        }
    }

    /// (count, bytes) removed in `state`, episodes or leftover files.
    pub fn totals(&self, state: State, episodes: bool) -> (usize, u64) {
        self.removed
            .iter()
            .filter(|r| r.state == state && r.kind.is_episode() == episodes)
            .fold((0, 0), |(n, b), r| (n + 1, b + r.bytes))
    }

    pub fn kept_in(&self, state: State) -> usize {
        self.kept
            .iter()
            .filter(|(s, _)| *s == state)
            .map(|(_, n)| n)
            .sum()
    }

    /// One line: counts and bytes per state.
    pub fn summary(&self) -> String {
        let verb = if self.dry_run { "would free" } else { "freed" };
        let mut s = String::new();
        for state in [State::Quarantine, State::Shipped] {
            let (n, b) = self.totals(state, true);
            let (fn_, fb) = self.totals(state, false);
            let _ = write!(
                s,
                "{state}: {n} episode(s) {verb} {}, kept {}; ",
                human_bytes(b),
                self.kept_in(state)
            );
            if fn_ > 0 {
                let _ = write!(s, "{state}: {fn_} leftover file(s) {}; ", human_bytes(fb));
            }
        }
        let (n, b) = self.totals(State::Outbox, false);
        let _ = write!(
            s,
            "outbox: {n} leftover file(s) {verb} {}; {} skipped, {} failed",
            human_bytes(b),
            self.skipped.len(),
            self.failures.len()
        );
        s
    }
}

pub use crate::cli::human_bytes;

/// Apply the retention rules to `layout` as of `now`. With `dry_run`, only
/// report what would be removed (locks are tried, nothing is changed).
pub fn prune(
    layout: &Layout,
    retention: &RetentionSettings,
    now: SystemTime,
    dry_run: bool,
) -> PruneReport {
    let mut run = Run {
        layout,
        now,
        dry_run,
        report: PruneReport {
            dry_run,
            removed: Vec::new(),
            skipped: Vec::new(),
            failures: Vec::new(),
            kept: Vec::new(),
        },
    };
    run.settled(State::Quarantine, retention.quarantine_keep_days);
    run.settled(State::Shipped, retention.keep_local_for_days);
    run.outbox();
    let r = run.report;
    if !dry_run {
        let (qn, qb) = r.totals(State::Quarantine, true);
        let (sn, sb) = r.totals(State::Shipped, true);
        let leftovers = State::ALL.iter().map(|s| r.totals(*s, false));
        let (ln, lb) = leftovers.fold((0, 0), |(n, b), (n2, b2)| (n + n2, b + b2));
        tracing::info!(
            PRUNED_QUARANTINE = qn,
            BYTES_QUARANTINE = qb,
            PRUNED_SHIPPED = sn,
            BYTES_SHIPPED = sb,
            PRUNED_LEFTOVERS = ln,
            BYTES_LEFTOVERS = lb,
            SKIPPED = r.skipped.len(),
            FAILED = r.failures.len(),
            "prune summary: {}",
            r.summary()
        );
    }
    r
}

/// One state directory's entries, from a single listing (d_type, no stat).
#[derive(Default)]
struct Scan {
    /// Directories whose name is a valid episode id.
    dirs: BTreeSet<String>,
    /// Hidden directories (`.deleting-*` among them).
    hidden_dirs: Vec<String>,
    /// Regular files.
    files: Vec<String>,
    /// Everything that is not a directory (regular files, links, ...).
    non_dirs: BTreeSet<String>,
    /// Directories whose name is not an episode id: left alone, reported.
    rejected: Vec<(String, String)>,
}

fn scan(dir: &Path) -> io::Result<Scan> {
    let mut scan = Scan::default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // Not UTF-8: not ours (ids are UTF-8), leave it alone.
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        // DirEntry::file_type never follows a symlink: a link is neither.
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            if name.starts_with('.') {
                scan.hidden_dirs.push(name);
            } else {
                match EpisodeId::parse(&name) {
                    Ok(_) => {
                        scan.dirs.insert(name);
                    }
                    Err(why) => scan.rejected.push((name, why)),
                }
            }
        } else {
            if ft.is_file() {
                scan.files.push(name.clone());
            }
            scan.non_dirs.insert(name);
        }
    }
    scan.hidden_dirs.sort();
    scan.files.sort();
    Ok(scan)
}

struct Run<'a> {
    layout: &'a Layout,
    now: SystemTime,
    dry_run: bool,
    report: PruneReport,
}

/// When an entry entered its state, and what that came from.
struct Entered {
    at: SystemTime,
    /// The sidecar's bytes when it was the source: it is removed with the
    /// entry only if unchanged (a newcomer with the same id keeps its own).
    sidecar: Option<Vec<u8>>,
    /// Set when the directory's ctime was used, with why.
    fallback: Option<String>,
}

impl Run<'_> {
    fn age_of(&self, t: SystemTime) -> Duration {
        self.now.duration_since(t).unwrap_or(Duration::ZERO)
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
        if !self.dry_run {
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

    /// One listing of a state directory; a failure is reported, a missing
    /// directory is simply empty.
    fn list(&mut self, state: State, dir: &Path) -> Option<Scan> {
        match scan(dir) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                self.fail(state, "", format!("cannot list {}: {e}", dir.display()));
                None
            }
        }
    }

    /// `quarantine/` or `shipped/`: finish interrupted removals, prune
    /// expired entries, then orphan sidecars and temp files.
    fn settled(&mut self, state: State, keep_days: u32) {
        let dir = self.layout.state_dir(state);
        let Some(scan) = self.list(state, &dir) else {
            return;
        };
        for name in &scan.hidden_dirs {
            if let Some(id) = name.strip_prefix(DELETING_PREFIX) {
                self.finish_unfinished(state, name, id);
            }
        }
        for (name, why) in &scan.rejected {
            tracing::warn!("leaving {state}/{name:?} alone: not a valid episode id ({why})");
        }
        let mut kept = 0;
        for id in &scan.dirs {
            if keep_days == 0 {
                kept += 1; // retention disabled: the operator's responsibility
                continue;
            }
            let has_sidecar = scan.non_dirs.contains(&format!("{id}{SIDECAR_SUFFIX}"));
            if !self.episode(state, id, keep_days, has_sidecar) {
                kept += 1;
            }
        }
        self.report.kept.push((state, kept));
        for name in &scan.files {
            if let Some(id) = name.strip_suffix(SIDECAR_SUFFIX)
                && EpisodeId::parse(id).is_ok()
            {
                if !scan.dirs.contains(id) {
                    self.orphan_sidecar(state, name, id);
                }
            } else if is_temp_file(name) {
                self.stale_file(state, name, Kind::TempFile, None);
            }
        }
    }

    /// Prune one settled entry if expired. False when it is kept.
    fn episode(&mut self, state: State, id: &str, keep_days: u32, has_sidecar: bool) -> bool {
        let path = self.layout.state_dir(state).join(id);
        let entered = match self.entered(state, id, &path, has_sidecar) {
            Ok(Some(e)) => e,
            Ok(None) => return true, // moved away since the listing: not ours to count
            Err(message) => {
                self.fail(state, id, message);
                return true;
            }
        };
        let age = self.age_of(entered.at);
        let keep = Duration::from_secs(u64::from(keep_days) * 86_400);
        if age <= keep {
            return false;
        }
        let verb = match state {
            State::Quarantine => "quarantined",
            _ => "shipped",
        };
        let mut reason = format!(
            "{verb} {:.1} days ago, keep {keep_days}",
            age.as_secs_f64() / DAY
        );
        if let Some(why) = &entered.fallback {
            let _ = write!(reason, "; {why}: age from the directory's ctime");
        }
        self.delete_entry(state, id, &path, age, reason, entered.sidecar);
        true
    }

    /// The sidecar's `entered_at`, else the directory's ctime (which
    /// rename(2) updates, so it is never earlier than the state change).
    /// `Ok(None)` when the entry is gone.
    fn entered(
        &self,
        state: State,
        id: &str,
        path: &Path,
        has_sidecar: bool,
    ) -> Result<Option<Entered>, String> {
        let sidecar_path = self
            .layout
            .state_dir(state)
            .join(format!("{id}{SIDECAR_SUFFIX}"));
        let fallback = if has_sidecar {
            match read_small_file(&sidecar_path) {
                Ok(bytes) => match serde_json::from_slice::<Sidecar>(&bytes) {
                    Ok(s) if s.episode_id == id && s.state == state => {
                        return Ok(Some(Entered {
                            at: UNIX_EPOCH + Duration::from_secs(s.entered_at),
                            sidecar: Some(bytes),
                            fallback: None,
                        }));
                    }
                    Ok(_) => "the sidecar describes another episode or state".to_string(),
                    Err(e) => format!("corrupt sidecar ({e})"),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => "no sidecar".to_string(),
                Err(e) => format!("unreadable sidecar ({e})"),
            }
        } else {
            "no sidecar".to_string()
        };
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Ok(Some(Entered {
                at: unix_time(m.ctime(), m.ctime_nsec()),
                sidecar: None,
                fallback: Some(fallback),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot stat {}: {e}", path.display())),
        }
    }

    /// Lock, hide (rename to `.deleting-<id>`), remove the tree, then the
    /// sidecar.
    fn delete_entry(
        &mut self,
        state: State,
        id: &str,
        path: &Path,
        age: Duration,
        reason: String,
        sidecar: Option<Vec<u8>>,
    ) {
        let _lock = match EpisodeLock::acquire(path) {
            Ok(l) => l,
            Err(LockError::Busy(_)) => {
                self.skip(state, id, "locked: being requeued or shipped".into());
                return;
            }
            Err(LockError::Gone(_)) => {
                self.skip(state, id, "moved away meanwhile".into());
                return;
            }
            Err(e) => {
                self.fail(state, id, e.to_string());
                return;
            }
        };
        let removal = |bytes| Removal {
            state,
            name: id.to_string(),
            episode_id: id.to_string(),
            kind: Kind::Episode,
            age,
            bytes,
            reason: reason.clone(),
        };
        if self.dry_run {
            let bytes = tree_bytes(path);
            self.removed(removal(bytes));
            return;
        }
        let dir = self.layout.state_dir(state);
        let hidden = dir.join(format!("{DELETING_PREFIX}{id}"));
        if let Err(e) = layout::rename_noreplace(path, &hidden) {
            self.fail(state, id, format!("cannot set it aside for removal: {e}"));
            return;
        }
        // From here on it is no longer an episode: a crash leaves only the
        // hidden name, which the next run finishes.
        let _ = layout::sync_dir(&dir);
        let bytes = tree_bytes(&hidden);
        let tree = fs::remove_dir_all(&hidden);
        self.remove_sidecar_if_unchanged(state, id, sidecar.as_deref());
        match tree {
            Ok(()) => self.removed(removal(bytes)),
            Err(e) => self.fail(
                state,
                id,
                format!(
                    "removal interrupted: {e}; what is left is in {} and the next run retries",
                    hidden.display()
                ),
            ),
        }
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

    /// A `.deleting-<id>` left by an interrupted run: finish it.
    fn finish_unfinished(&mut self, state: State, name: &str, id: &str) {
        let path = self.layout.state_dir(state).join(name);
        let _lock = match EpisodeLock::acquire(&path) {
            Ok(l) => l,
            Err(LockError::Busy(_)) => {
                self.skip(state, name, "another prune is removing it".into());
                return;
            }
            Err(LockError::Gone(_)) => return,
            Err(e) => {
                self.fail(state, name, e.to_string());
                return;
            }
        };
        let age = fs::symlink_metadata(&path)
            .map(|m| self.age_of(unix_time(m.ctime(), m.ctime_nsec())))
            .unwrap_or_default();
        let bytes = tree_bytes(&path);
        let removal = Removal {
            state,
            name: name.to_string(),
            episode_id: id.to_string(),
            kind: Kind::Unfinished,
            age,
            bytes,
            reason: "finishing an interrupted removal".into(),
        };
        if self.dry_run {
            self.removed(removal);
            return;
        }
        match fs::remove_dir_all(&path) {
            Ok(()) => self.removed(removal),
            Err(e) => self.fail(state, name, format!("cannot finish removal: {e}")),
        }
    }

    /// `<id>.json` with no `<id>/` beside it (crash between sidecar write
    /// and rename, or after a requeue). Removed once older than the grace:
    /// `settle` writes the sidecar just before its rename, so a young one
    /// may be about to get its directory. Should that race still be lost,
    /// the episode only falls back to its directory's ctime, which keeps
    /// it longer, never shorter.
    fn orphan_sidecar(&mut self, state: State, name: &str, id: &str) {
        let dir = self.layout.state_dir(state);
        self.stale_file(
            state,
            name,
            Kind::OrphanSidecar,
            Some(dir.join(id).as_path()),
        );
    }

    /// Remove a regular file older than the grace. With `unless_exists`,
    /// only while that path is still absent (checked just before).
    fn stale_file(&mut self, state: State, name: &str, kind: Kind, unless_exists: Option<&Path>) {
        self.leftover(state, name, kind, Some(LEFTOVER_GRACE), unless_exists)
    }

    fn leftover(
        &mut self,
        state: State,
        name: &str,
        kind: Kind,
        min_age: Option<Duration>,
        unless_exists: Option<&Path>,
    ) {
        let path = self.layout.state_dir(state).join(name);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                self.fail(state, name, format!("cannot stat: {e}"));
                return;
            }
        };
        let age = self.age_of(unix_time(meta.mtime(), meta.mtime_nsec()));
        if min_age.is_some_and(|min| age <= min) {
            return;
        }
        if unless_exists.is_some_and(|p| fs::symlink_metadata(p).is_ok()) {
            return;
        }
        let reason = match kind {
            Kind::OrphanSidecar => "sidecar without an episode directory",
            Kind::PartialArchive => "partial archive of an interrupted run",
            Kind::StaleArchive => "staged archive of an episode no longer in outbox/",
            Kind::StaleRetry => "retry state of an episode no longer in outbox/",
            Kind::TempFile => "temp file of an interrupted write",
            Kind::Episode | Kind::Unfinished => "",
        };
        let removal = Removal {
            state,
            name: name.to_string(),
            episode_id: episode_part(name).to_string(),
            kind,
            age,
            bytes: meta.blocks() * 512,
            reason: format!(
                "{reason}, last written {:.1} days ago",
                age.as_secs_f64() / DAY
            ),
        };
        if self.dry_run {
            self.removed(removal);
            return;
        }
        match fs::remove_file(&path) {
            Ok(()) => self.removed(removal),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => self.fail(state, name, format!("cannot remove: {e}")),
        }
    }

    /// `outbox/`: only files left beside episodes; the episodes themselves
    /// are unshipped data and never touched.
    fn outbox(&mut self) {
        let state = State::Outbox;
        let dir = self.layout.state_dir(state);
        let Some(scan) = self.list(state, &dir) else {
            return;
        };
        for name in &scan.files {
            let episode = |suffix: &str| {
                name.strip_suffix(suffix)
                    .filter(|id| EpisodeId::parse(id).is_ok())
            };
            if let Some(id) = episode(PARTIAL_SUFFIX) {
                // A shipper at work on it holds the lock and keeps writing
                // (fresh mtime); a stale one is rebuilt from scratch anyway.
                let _lock = if scan.dirs.contains(id) {
                    match self.lock_if_old(state, name, id) {
                        Some(l) => l,
                        None => continue,
                    }
                } else {
                    None
                };
                self.stale_file(state, name, Kind::PartialArchive, None);
            } else if let Some(id) = episode(ARCHIVE_SUFFIX) {
                if !scan.dirs.contains(id) {
                    self.leftover(state, name, Kind::StaleArchive, None, Some(&dir.join(id)));
                }
            } else if let Some(id) = episode(RETRY_SUFFIX) {
                if !scan.dirs.contains(id) {
                    self.leftover(state, name, Kind::StaleRetry, None, Some(&dir.join(id)));
                }
            } else if is_temp_file(name) {
                self.stale_file(state, name, Kind::TempFile, None);
            }
        }
    }

    /// Lock `outbox/<id>` before touching its partial archive, unless the
    /// partial is young anyway. `None`: leave it (young, locked, or error).
    fn lock_if_old(&mut self, state: State, name: &str, id: &str) -> Option<Option<EpisodeLock>> {
        let dir = self.layout.state_dir(state);
        let young = fs::symlink_metadata(dir.join(name))
            .map(|m| self.age_of(unix_time(m.mtime(), m.mtime_nsec())) <= LEFTOVER_GRACE)
            .unwrap_or(true);
        if young {
            return None;
        }
        match EpisodeLock::acquire(&dir.join(id)) {
            Ok(l) => Some(Some(l)),
            Err(LockError::Gone(_)) => Some(None),
            Err(LockError::Busy(_)) => {
                self.skip(state, name, "its episode is being shipped".into());
                None
            }
            Err(e) => {
                self.fail(state, name, e.to_string());
                None
            }
        }
    }
}

/// `X.json.tmp1234`: what `layout::write_atomic` leaves when interrupted.
fn is_temp_file(name: &str) -> bool {
    match name.rsplit_once(".tmp") {
        Some((base, pid)) => {
            base.ends_with(SIDECAR_SUFFIX)
                && !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// The episode id part of a name found in a state directory.
fn episode_part(name: &str) -> &str {
    let name = name.strip_prefix(DELETING_PREFIX).unwrap_or(name);
    let name = match name.rsplit_once(".tmp") {
        Some((base, pid)) if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    };
    for suffix in [PARTIAL_SUFFIX, ARCHIVE_SUFFIX, RETRY_SUFFIX, SIDECAR_SUFFIX] {
        if let Some(id) = name.strip_suffix(suffix) {
            return id;
        }
    }
    name
}

fn unix_time(secs: i64, nsec: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsec.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH
    }
}

/// Read a small regular file without following a symlink or opening a
/// FIFO (O_NOFOLLOW | O_NONBLOCK, then fstat).
fn read_small_file(path: &Path) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(io::ErrorKind::InvalidData, "is a symlink")
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if meta.len() > SIDECAR_MAX_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too big"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(SIDECAR_MAX_BYTES).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Disk space of a tree, as du counts it, never following a symlink: each
/// directory is opened with O_NOFOLLOW and listed through its descriptor
/// (/proc/self/fd), so a directory swapped for a link meanwhile is not
/// entered. Best effort: what cannot be read is not counted.
pub fn tree_bytes(root: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(root) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    meta.blocks() * 512 + dir_bytes(root, 0)
}

fn dir_bytes(dir: &Path, depth: usize) -> u64 {
    if depth >= MAX_COUNT_DEPTH {
        return 0;
    }
    let Ok(handle) = lock::open_dir_nofollow(dir) else {
        return 0;
    };
    let via_fd = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    let Ok(entries) = fs::read_dir(&via_fd) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        // DirEntry::metadata is fstatat(AT_SYMLINK_NOFOLLOW).
        let Ok(m) = entry.metadata() else { continue };
        total += m.blocks() * 512;
        if m.is_dir() {
            total += dir_bytes(&via_fd.join(entry.file_name()), depth + 1);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const DAYS: u64 = 86_400;

    fn settings(quarantine: u32, shipped: u32) -> RetentionSettings {
        RetentionSettings {
            keep_local_for_days: shipped,
            quarantine_keep_days: quarantine,
        }
    }

    fn setup() -> (tempfile::TempDir, Layout) {
        let d = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(d.path().join("data"));
        layout.ensure_dirs().expect("dirs");
        (d, layout)
    }

    /// A settled episode with a few files and a sidecar saying it entered
    /// `state` `days_ago` days before the real now.
    fn settled(layout: &Layout, state: State, id: &str, days_ago: Option<u64>) -> PathBuf {
        let eid = EpisodeId::parse(id).expect("id");
        let dir = layout.episode_dir(state, &eid);
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
        fs::write(dir.join("data.bin"), vec![7u8; 10_000]).expect("write");
        fs::write(dir.join("sub/more.bin"), b"more").expect("write");
        fs::write(dir.join(layout::DONE_MARKER), b"").expect("write");
        if let Some(days) = days_ago {
            Sidecar {
                episode_id: id.into(),
                state,
                entered_at: layout::unix_now() - days * DAYS,
                reason: "test".into(),
                http_status: Some(422),
                sha256: None,
                archive_bytes: None,
                attempts: 1,
            }
            .store(layout, &eid)
            .expect("sidecar");
        }
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        fs::File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(t)
            .expect("set mtime");
    }

    #[test]
    fn keep_days_boundaries() {
        let (_d, layout) = setup();
        let q29 = settled(&layout, State::Quarantine, "q29", Some(29));
        let q31 = settled(&layout, State::Quarantine, "q31", Some(31));
        let s6 = settled(&layout, State::Shipped, "s6", Some(6));
        let s8 = settled(&layout, State::Shipped, "s8", Some(8));
        let r = prune(&layout, &settings(30, 7), SystemTime::now(), false);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert!(q29.is_dir() && s6.is_dir());
        assert!(!q31.exists() && !s8.exists());
        assert_eq!(
            names(&layout.state_dir(State::Quarantine)),
            ["q29", "q29.json"],
            "the removed entry's sidecar goes too, and no .deleting- is left"
        );
        assert_eq!(names(&layout.state_dir(State::Shipped)), ["s6", "s6.json"]);
        assert_eq!(r.removed.len(), 2);
        let q = r.removed.iter().find(|x| x.name == "q31").expect("q31");
        assert_eq!(q.kind, Kind::Episode);
        assert!((q.age_days() - 31.0).abs() < 0.01, "{}", q.age_days());
        assert!(q.bytes >= 10_004, "bytes {}", q.bytes);
        assert!(
            q.reason.starts_with("quarantined 31.0 days ago, keep 30"),
            "{}",
            q.reason
        );
        assert_eq!(r.kept_in(State::Quarantine), 1);
        assert_eq!(r.kept_in(State::Shipped), 1);
        assert_eq!(r.totals(State::Quarantine, true), (1, q.bytes));
        assert_eq!(r.exit_code(), 0);
    }

    #[test]
    fn zero_disables_pruning_of_that_state_only() {
        let (_d, layout) = setup();
        let q = settled(&layout, State::Quarantine, "old-q", Some(3650));
        let s = settled(&layout, State::Shipped, "old-s", Some(3650));
        let r = prune(&layout, &settings(0, 7), SystemTime::now(), false);
        assert!(q.is_dir(), "quarantine_keep_days = 0 keeps everything");
        assert!(!s.exists());
        let r2 = prune(&layout, &settings(30, 0), SystemTime::now(), false);
        assert!(!q.exists());
        assert_eq!((r.removed.len(), r2.removed.len()), (1, 1));
        let s2 = settled(&layout, State::Shipped, "old-s2", Some(3650));
        prune(&layout, &settings(0, 0), SystemTime::now(), false);
        assert!(s2.is_dir());
    }

    #[test]
    fn age_counts_from_state_entry_not_recording_mtimes() {
        let (_d, layout) = setup();
        // Recorded 40 days ago, quarantined today (sidecar says so).
        let dir = settled(&layout, State::Quarantine, "rec40", Some(0));
        let forty = SystemTime::now() - Duration::from_secs(40 * DAYS);
        for f in ["data.bin", "sub/more.bin", layout::DONE_MARKER] {
            set_mtime(&dir.join(f), forty);
        }
        // And one with no sidecar at all: only the directory's ctime
        // (set by the rename into quarantine) can tell.
        let plain = layout.state_dir(State::Quarantine).join("nosidecar");
        let staging = layout.root().join("staging");
        fs::create_dir(&staging).expect("mkdir");
        fs::write(staging.join("f"), b"x").expect("write");
        set_mtime(&staging.join("f"), forty);
        fs::File::open(&staging)
            .expect("open dir")
            .set_modified(forty)
            .expect("dir mtime");
        fs::rename(&staging, &plain).expect("rename into quarantine");

        let now = SystemTime::now();
        let r = prune(&layout, &settings(30, 7), now, false);
        assert!(r.removed.is_empty(), "{:?}", r.removed);
        assert!(dir.is_dir() && plain.is_dir());
        // Kept 30 more days: 29 days on, still there; 31 days on, gone.
        let r = prune(
            &layout,
            &settings(30, 7),
            now + Duration::from_secs(29 * DAYS),
            false,
        );
        assert!(r.removed.is_empty(), "{:?}", r.removed);
        let r = prune(
            &layout,
            &settings(30, 7),
            now + Duration::from_secs(31 * DAYS),
            false,
        );
        assert_eq!(r.removed.len(), 2, "{:?}", r.removed);
        let fallback = r
            .removed
            .iter()
            .find(|x| x.name == "nosidecar")
            .expect("plain");
        assert!(
            fallback
                .reason
                .contains("no sidecar: age from the directory's ctime")
        );
        assert!(!dir.exists() && !plain.exists());
    }

    #[test]
    fn rename_updates_directory_ctime() {
        // The fallback relies on this; check it on the filesystem at hand.
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::create_dir(&a).expect("mkdir");
        let before = fs::symlink_metadata(&a).expect("stat");
        std::thread::sleep(Duration::from_millis(20));
        fs::rename(&a, &b).expect("rename");
        let after = fs::symlink_metadata(&b).expect("stat");
        assert!(
            (after.ctime(), after.ctime_nsec()) > (before.ctime(), before.ctime_nsec()),
            "rename did not update ctime"
        );
    }

    #[test]
    fn symlinks_inside_an_entry_are_removed_not_followed() {
        let (d, layout) = setup();
        let outside = d.path().join("outside");
        fs::create_dir_all(outside.join("deep")).expect("mkdir");
        fs::write(outside.join("precious"), b"keep me").expect("write");
        fs::write(outside.join("deep/precious"), b"keep me").expect("write");
        let other = settled(&layout, State::Quarantine, "young", Some(1));
        let old = settled(&layout, State::Quarantine, "old", Some(100));
        symlink(&outside, old.join("to-outside")).expect("symlink");
        symlink(outside.join("precious"), old.join("sub/to-file")).expect("symlink");
        symlink("../young", old.join("to-other-relative")).expect("symlink");
        symlink(&other, old.join("sub/to-other-absolute")).expect("symlink");
        symlink("/", old.join("to-root")).expect("symlink");

        let r = prune(&layout, &settings(30, 7), SystemTime::now(), false);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert!(!old.exists());
        assert_eq!(names(&outside), ["deep", "precious"]);
        assert_eq!(
            fs::read(outside.join("deep/precious")).expect("read"),
            b"keep me"
        );
        assert_eq!(names(&other), ["data.bin", "done.marker", "sub"]);
        assert_eq!(names(&other.join("sub")), ["more.bin"]);
        // Bytes counted without following the links: nowhere near /.
        assert!(r.removed[0].bytes < 1 << 20, "{}", r.removed[0].bytes);
    }

    #[test]
    fn a_symlink_in_place_of_an_entry_or_sidecar_is_left_alone() {
        let (d, layout) = setup();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        fs::write(outside.join("precious"), b"keep me").expect("write");
        let q = layout.state_dir(State::Quarantine);
        symlink(&outside, q.join("linked")).expect("symlink");
        // An old real entry whose sidecar is a link: not trusted, ctime used.
        let e = settled(&layout, State::Quarantine, "e", None);
        symlink(outside.join("precious"), q.join("e.json")).expect("symlink");
        let now = SystemTime::now() + Duration::from_secs(31 * DAYS);
        let r = prune(&layout, &settings(30, 7), now, false);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert!(!e.exists());
        assert!(
            r.removed[0].reason.contains("is a symlink"),
            "{}",
            r.removed[0].reason
        );
        assert_eq!(names(&outside), ["precious"]);
        assert!(
            fs::symlink_metadata(q.join("linked")).is_ok(),
            "link entry kept"
        );
    }

    #[test]
    fn dry_run_changes_nothing() {
        let (_d, layout) = setup();
        let old = settled(&layout, State::Quarantine, "old", Some(31));
        let outbox = layout.state_dir(State::Outbox);
        fs::write(outbox.join("gone.tar.gz"), b"x").expect("write");
        let before: Vec<_> = State::ALL
            .iter()
            .map(|s| names(&layout.state_dir(*s)))
            .collect();
        let r = prune(&layout, &settings(30, 7), SystemTime::now(), true);
        assert!(r.dry_run);
        assert_eq!(r.removed.len(), 2, "{:?}", r.removed);
        assert!(
            r.removed
                .iter()
                .any(|x| x.name == "old" && x.bytes >= 10_004)
        );
        let after: Vec<_> = State::ALL
            .iter()
            .map(|s| names(&layout.state_dir(*s)))
            .collect();
        assert_eq!(before, after);
        assert_eq!(names(&old), ["data.bin", "done.marker", "sub"]);
        assert!(r.summary().contains("would free"), "{}", r.summary());
    }

    #[test]
    fn locked_entry_is_skipped() {
        let (_d, layout) = setup();
        let old = settled(&layout, State::Quarantine, "old", Some(31));
        let held = EpisodeLock::acquire(&old).expect("lock");
        let r = prune(&layout, &settings(30, 7), SystemTime::now(), false);
        assert!(old.is_dir());
        assert_eq!(r.skipped.len(), 1);
        assert!(r.skipped[0].reason.contains("locked"));
        assert_eq!(r.exit_code(), 0);
        drop(held);
        prune(&layout, &settings(30, 7), SystemTime::now(), false);
        assert!(!old.exists());
    }

    #[test]
    fn outbox_leftovers_go_outbox_episodes_stay() {
        let (_d, layout) = setup();
        let ob = layout.state_dir(State::Outbox);
        // A real outbox episode, old, with its live files: all kept.
        fs::create_dir(ob.join("live")).expect("mkdir");
        fs::write(ob.join("live/data"), b"unshipped").expect("write");
        for f in ["live.tar.gz", "live.retry.json"] {
            fs::write(ob.join(f), b"x").expect("write");
        }
        fs::write(ob.join("live.tar.gz.partial"), b"p").expect("write");
        fs::write(ob.join("fresh.tar.gz.partial"), b"p").expect("write");
        // Settled but crashed before cleanup: no directory.
        fs::write(ob.join("settled.tar.gz"), b"x").expect("write");
        fs::write(ob.join("settled.retry.json"), b"{}").expect("write");
        fs::write(ob.join("live.retry.json.tmp4242"), b"{").expect("write");
        fs::write(ob.join("notours.txt"), b"?").expect("write");
        let yesterday = SystemTime::now() - Duration::from_secs(2 * DAYS);
        for f in [
            "live.tar.gz.partial",
            "live.retry.json.tmp4242",
            "notours.txt",
        ] {
            set_mtime(&ob.join(f), yesterday);
        }
        let old = SystemTime::now() - Duration::from_secs(400 * DAYS);
        set_mtime(&ob.join("live/data"), old);

        let r = prune(&layout, &settings(30, 7), SystemTime::now(), false);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!(
            names(&ob),
            [
                "fresh.tar.gz.partial",
                "live",
                "live.retry.json",
                "live.tar.gz",
                "notours.txt"
            ]
        );
        assert_eq!(names(&ob.join("live")), ["data"]);
        let mut kinds: Vec<_> = r.removed.iter().map(|x| x.kind.as_str()).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "partial_archive",
                "stale_archive",
                "stale_retry_state",
                "temp_file"
            ]
        );
    }

    #[test]
    fn orphan_sidecars_wait_a_day() {
        let (_d, layout) = setup();
        let q = layout.state_dir(State::Quarantine);
        let s = layout.state_dir(State::Shipped);
        // Written just now for a rename that may be about to happen: kept.
        fs::write(q.join("fresh.json"), b"{}").expect("write");
        fs::write(q.join("stale.json"), b"{}").expect("write");
        fs::write(s.join("stale.json.tmp99"), b"{").expect("write");
        let two_days = SystemTime::now() - Duration::from_secs(2 * DAYS);
        set_mtime(&q.join("stale.json"), two_days);
        set_mtime(&s.join("stale.json.tmp99"), two_days);
        let r = prune(&layout, &settings(30, 7), SystemTime::now(), false);
        assert_eq!(names(&q), ["fresh.json"]);
        assert!(names(&s).is_empty());
        assert_eq!(r.removed.len(), 2);
        assert_eq!(r.totals(State::Quarantine, false).0, 1);
    }

    #[test]
    fn interrupted_removal_is_finished_and_never_listed_as_episode() {
        let (_d, layout) = setup();
        let q = layout.state_dir(State::Quarantine);
        let hidden = q.join(format!("{DELETING_PREFIX}half"));
        fs::create_dir_all(hidden.join("a/b")).expect("mkdir");
        fs::write(hidden.join("a/b/f"), b"rest").expect("write");
        assert!(layout.list(State::Quarantine).expect("list").ids.is_empty());
        let r = prune(&layout, &settings(30, 7), SystemTime::now(), true);
        assert_eq!(r.removed[0].kind, Kind::Unfinished);
        assert!(hidden.exists(), "dry run");
        let r = prune(&layout, &settings(0, 0), SystemTime::now(), false);
        assert!(!hidden.exists(), "finished even with retention disabled");
        assert_eq!(r.removed[0].episode_id, "half");
    }

    #[test]
    fn name_helpers() {
        assert!(is_temp_file("x.retry.json.tmp123"));
        assert!(is_temp_file("x.json.tmp1"));
        assert!(!is_temp_file("x.json.tmp"));
        assert!(!is_temp_file("x.tmp123"));
        assert_eq!(episode_part(".deleting-ab"), "ab");
        assert_eq!(episode_part("ab.retry.json.tmp7"), "ab");
        assert_eq!(episode_part("ab.tar.gz.partial"), "ab");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
