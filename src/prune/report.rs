//! What a prune run did: removals, skips, failures, and what was kept.

use std::fmt::Write as _;
use std::time::Duration;

use super::DAY;
use crate::cli::human_bytes;
use crate::layout::State;

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

/// A settled episode kept because the clock had its entry time wrong: its
/// retention now counts from `from` (or would, in a dry run).
#[derive(Debug, Clone)]
pub struct Restarted {
    pub state: State,
    pub episode_id: String,
    /// The entry time as recorded, unix seconds.
    pub recorded: u64,
    /// Where the count starts now, unix seconds.
    pub from: u64,
    pub reason: String,
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
    /// Kept episodes whose retention count was restarted.
    pub restarted: Vec<Restarted>,
    /// Why nothing was deleted by age: the clock was before the build date.
    pub clock_wrong: Option<String>,
}

impl PruneReport {
    pub(super) fn new(dry_run: bool) -> PruneReport {
        PruneReport {
            dry_run,
            removed: Vec::new(),
            skipped: Vec::new(),
            failures: Vec::new(),
            kept: Vec::new(),
            restarted: Vec::new(),
            clock_wrong: None,
        }
    }

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
        if self.clock_wrong.is_some() {
            s.push_str("clock before the build date, nothing deleted by age; ");
        }
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
        if !self.restarted.is_empty() {
            let verb = if self.dry_run {
                "would restart"
            } else {
                "restarted"
            };
            let _ = write!(
                s,
                "; {verb} the retention count of {} episode(s) whose entry time the clock had wrong",
                self.restarted.len()
            );
        }
        s
    }

    /// The run's journal line (not for a dry run: nothing happened).
    pub(super) fn log_summary(&self) {
        let (qn, qb) = self.totals(State::Quarantine, true);
        let (sn, sb) = self.totals(State::Shipped, true);
        let leftovers = State::ALL.iter().map(|s| self.totals(*s, false));
        let (ln, lb) = leftovers.fold((0, 0), |(n, b), (n2, b2)| (n + n2, b + b2));
        tracing::info!(
            PRUNED_QUARANTINE = qn,
            BYTES_QUARANTINE = qb,
            PRUNED_SHIPPED = sn,
            BYTES_SHIPPED = sb,
            PRUNED_LEFTOVERS = ln,
            BYTES_LEFTOVERS = lb,
            SKIPPED = self.skipped.len(),
            FAILED = self.failures.len(),
            RESTARTED = self.restarted.len(),
            CLOCK_WRONG = self.clock_wrong.is_some(),
            "prune summary: {}",
            self.summary()
        );
    }
}
