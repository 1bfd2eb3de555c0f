//! Deciding, apart from doing: what becomes of one entry of a state
//! directory, from what is known about it. No disk, no clock (the time is
//! [`Rules::now`], the build date [`Rules::built`]; see [`super::clock`]
//! for why the clock is not always believed).
//!
//! [`decide`] asks for each fact it lacks ([`Decision::Need`]) in the order
//! the checks need it, and the caller finds out exactly that and asks
//! again. So nothing is read that the answer does not depend on: a
//! retention of 0 reads no sidecar, a young leftover is never locked, and a
//! lock is taken only once everything else says "delete".

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::clock::{FUTURE_SLACK, TRUSTED_BEFORE_BUILD};
use super::gather::Scan;
use super::report::Kind;
use super::{DAY, DELETING_PREFIX, LEFTOVER_GRACE};
use crate::layout::{
    ARCHIVE_SUFFIX, EpisodeId, PARTIAL_SUFFIX, RETRY_SUFFIX, SIDECAR_SUFFIX, State,
};

/// How an entry appeared in its state directory's listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// A directory named like an episode id.
    EpisodeDir,
    /// A directory whose name starts with `.`.
    HiddenDir,
    /// A regular file.
    File,
}

/// What a listed entry is to prune. Anything else is never touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// `quarantine/<id>/` or `shipped/<id>/`; `sidecar_listed`: `<id>.json`
    /// was listed beside it (else its age comes from the directory's ctime).
    Settled { id: String, sidecar_listed: bool },
    /// `.deleting-<id>/`: a removal that was interrupted.
    Deleting { id: String },
    /// `<id>.json` in `quarantine/` or `shipped/`, no `<id>/` listed.
    OrphanSidecar { id: String },
    /// `outbox/<id>.tar.gz.partial`; `episode_listed`: `outbox/<id>/` was
    /// listed, so a shipper may be writing it right now.
    Partial { id: String, episode_listed: bool },
    /// `outbox/<id>.tar.gz`, no `outbox/<id>/` listed.
    StaleArchive { id: String },
    /// `outbox/<id>.retry.json`, no `outbox/<id>/` listed.
    StaleRetry { id: String },
    /// `*.json.tmp<pid>` of an interrupted atomic write.
    TempFile,
}

/// Sort one listed entry. `None`: not prune's to touch (an outbox episode
/// is unshipped data; a sidecar, archive or retry state beside a listed
/// episode belongs to it; `episodes/` is the recorder's).
pub fn classify(state: State, name: &str, listed: Listed, scan: &Scan) -> Option<Candidate> {
    let id_before = |suffix: &str| {
        name.strip_suffix(suffix)
            .filter(|id| EpisodeId::parse(id).is_ok())
            .map(str::to_string)
    };
    let settled = matches!(state, State::Quarantine | State::Shipped);
    match listed {
        Listed::EpisodeDir if settled => Some(Candidate::Settled {
            id: name.to_string(),
            sidecar_listed: scan.non_dirs.contains(&format!("{name}{SIDECAR_SUFFIX}")),
        }),
        Listed::HiddenDir if settled => name
            .strip_prefix(DELETING_PREFIX)
            .map(|id| Candidate::Deleting { id: id.to_string() }),
        Listed::File if settled => match id_before(SIDECAR_SUFFIX) {
            Some(id) => (!scan.dirs.contains(&id)).then_some(Candidate::OrphanSidecar { id }),
            None => is_temp_file(name).then_some(Candidate::TempFile),
        },
        Listed::File if state == State::Outbox => {
            if let Some(id) = id_before(PARTIAL_SUFFIX) {
                let episode_listed = scan.dirs.contains(&id);
                Some(Candidate::Partial { id, episode_listed })
            } else if let Some(id) = id_before(ARCHIVE_SUFFIX) {
                (!scan.dirs.contains(&id)).then_some(Candidate::StaleArchive { id })
            } else if let Some(id) = id_before(RETRY_SUFFIX) {
                (!scan.dirs.contains(&id)).then_some(Candidate::StaleRetry { id })
            } else {
                is_temp_file(name).then_some(Candidate::TempFile)
            }
        }
        _ => None,
    }
}

/// The rules for one state directory, as of `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub state: State,
    /// Retention of settled episodes in days; 0 keeps them forever.
    pub keep_days: u32,
    pub now: SystemTime,
    /// When this binary was built: a clock reading before it is wrong.
    /// `UNIX_EPOCH` believes every time.
    pub built: SystemTime,
    /// Decide as usual (locks included), but only report deletions.
    pub dry_run: bool,
}

impl Rules {
    fn age(&self, since: SystemTime) -> Duration {
        self.now.duration_since(since).unwrap_or(Duration::ZERO)
    }

    /// Whether ages can be measured at all: a clock before the build date
    /// is wrong, by an unknown amount.
    pub fn clock_right(&self) -> bool {
        self.now >= self.built
    }

    /// Why a recorded entry time was taken by a wrong clock, if it was:
    /// long before the build date, or in the future.
    fn distrust(&self, at: SystemTime) -> Option<String> {
        let earliest = self.built.checked_sub(TRUSTED_BEFORE_BUILD);
        if earliest.is_some_and(|earliest| at < earliest) {
            return Some(format!(
                "more than {} days before this build ({})",
                TRUSTED_BEFORE_BUILD.as_secs() / 86_400,
                rfc3339(self.built)
            ));
        }
        if at > self.now + FUTURE_SLACK {
            return Some("in the future".into());
        }
        None
    }
}

fn rfc3339(t: SystemTime) -> String {
    crate::time::rfc3339(crate::layout::unix_secs(t))
}

/// When an entry entered its state (an episode: its sidecar's
/// `entered_at`, else its directory's ctime) or was last written (a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    At {
        at: SystemTime,
        /// Why an episode's age comes from its directory's ctime.
        ctime_because: Option<String>,
    },
    /// Gone since the listing, or no longer what it was listed as.
    Gone,
    /// Could not be examined: the message to report.
    Unreadable(String),
}

/// The outcome of trying the lock that [`decide`] asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    Held,
    /// Someone else holds it (a shipper, a requeue, another prune).
    Busy,
    /// The locked directory is gone.
    Gone,
    Failed(String),
}

/// Which directory to lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockTarget {
    /// The entry itself (an episode, a `.deleting-` directory).
    Entry,
    /// `outbox/<id>/`, whose shipper writes the partial archive.
    Episode,
}

/// Something [`decide`] needs to know before it can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// [`Facts::since`].
    Since,
    /// [`Facts::since_locked`].
    SinceLocked,
    /// [`Facts::episode_exists`].
    EpisodeExists,
    /// [`Facts::lock`].
    Lock(LockTarget),
}

/// What is known about one entry so far; `None`: not found out yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub since: Option<Seen>,
    /// A partial archive's time read again under its episode's lock: the
    /// shipper that held it may have rewritten the file.
    pub since_locked: Option<Seen>,
    /// Whether the episode directory a leftover belongs to exists now
    /// (looked up just before deleting).
    pub episode_exists: Option<bool>,
    pub lock: Option<Lock>,
}

/// Why a settled episode stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepReason {
    /// Retention 0 for its state: the operator's responsibility.
    RetentionOff,
    WithinRetention,
    /// The clock is before the build date: no age can be measured.
    ClockWrong,
}

/// Why an entry is left alone without a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// Gone since the listing (or the lock found it gone).
    Gone,
    /// A leftover within [`LEFTOVER_GRACE`]: it may belong to an operation
    /// in progress.
    Young,
    /// Its episode directory exists (appeared since the listing).
    EpisodePresent,
    /// A partial archive whose time could not be read before locking.
    AgeUnknown,
    /// A leftover that waits for its grace, while the clock is before the
    /// build date: its age cannot be measured.
    ClockWrong,
}

/// A settled episode whose recorded entry time the clock had wrong: it is
/// kept, and its retention counts from `from` (recorded in its sidecar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The entry time as recorded.
    pub recorded: SystemTime,
    /// Where the count starts instead: now.
    pub from: SystemTime,
    /// Why, for humans.
    pub reason: String,
    /// Only report it.
    pub dry_run: bool,
}

/// A deletion as decided: what, how old, why (for humans).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub kind: Kind,
    pub age: Duration,
    pub reason: String,
    /// Only report it.
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Find this out, then decide again.
    Need(Fact),
    /// A settled episode stays (counted as kept).
    Keep(KeepReason),
    /// Nothing to do, nothing to report.
    Leave(LeaveReason),
    /// Left alone this time, reported as skipped.
    Skip(&'static str),
    /// Could not be examined or locked, reported as a failure.
    Fail(String),
    /// Keep a settled episode and record in its sidecar that its retention
    /// counts from now (the sidecar written when there is none).
    RestartCount(Restart),
    /// Set the episode aside as `.deleting-<id>`, remove the tree, then its
    /// sidecar if unchanged.
    DeleteEpisode(Deletion),
    /// Remove a leftover file.
    DeleteFile(Deletion),
    /// Remove what an interrupted removal left.
    FinishRemoval(Deletion),
}

/// What becomes of `candidate`, given what is known so far.
pub fn decide(candidate: &Candidate, facts: &Facts, rules: &Rules) -> Decision {
    let file = |kind, grace, episode_must_be_gone| {
        let leftover = Leftover {
            kind,
            grace,
            episode_must_be_gone,
        };
        leftover.decide(&facts.since, Fact::Since, facts, rules)
    };
    let decided = match candidate {
        Candidate::Settled { .. } => settled(facts, rules),
        Candidate::Deleting { .. } => deleting(facts, rules),
        Candidate::OrphanSidecar { .. } => file(Kind::OrphanSidecar, true, true),
        Candidate::Partial {
            episode_listed: true,
            ..
        } => partial_being_shipped(facts, rules),
        Candidate::Partial {
            episode_listed: false,
            ..
        } => file(Kind::PartialArchive, true, false),
        Candidate::StaleArchive { .. } => file(Kind::StaleArchive, false, true),
        Candidate::StaleRetry { .. } => file(Kind::StaleRetry, false, true),
        Candidate::TempFile => file(Kind::TempFile, true, false),
    };
    // An early decision travels as Err, so that `?` reads "unless decided".
    match decided {
        Ok(d) | Err(d) => d,
    }
}

type Deciding = Result<Decision, Decision>;

/// The time in `seen`, or the decision when there is none: ask for it,
/// leave a gone entry, report an unreadable one.
fn known(seen: &Option<Seen>, ask: Fact) -> Result<(SystemTime, Option<&str>), Decision> {
    match seen {
        None => Err(Decision::Need(ask)),
        Some(Seen::At { at, ctime_because }) => Ok((*at, ctime_because.as_deref())),
        Some(Seen::Gone) => Err(Decision::Leave(LeaveReason::Gone)),
        Some(Seen::Unreadable(why)) => Err(Decision::Fail(why.clone())),
    }
}

/// Go on once `target` is locked. `busy`: the skip reason when someone
/// else holds it; `if_gone`: the decision when it is gone (`None`: go on).
fn lock(
    facts: &Facts,
    target: LockTarget,
    busy: &'static str,
    if_gone: Option<Decision>,
) -> Result<(), Decision> {
    match &facts.lock {
        None => Err(Decision::Need(Fact::Lock(target))),
        Some(Lock::Held) => Ok(()),
        Some(Lock::Busy) => Err(Decision::Skip(busy)),
        Some(Lock::Gone) => if_gone.map_or(Ok(()), Err),
        Some(Lock::Failed(why)) => Err(Decision::Fail(why.clone())),
    }
}

fn days(age: Duration) -> f64 {
    age.as_secs_f64() / DAY
}

/// `quarantine/<id>` or `shipped/<id>`: deleted once older than the
/// state's retention, counted from a time the clock had right.
fn settled(facts: &Facts, rules: &Rules) -> Deciding {
    if rules.keep_days == 0 {
        return Ok(Decision::Keep(KeepReason::RetentionOff));
    }
    if !rules.clock_right() {
        return Ok(Decision::Keep(KeepReason::ClockWrong));
    }
    let (since, ctime_because) = known(&facts.since, Fact::Since)?;
    let distrusted = rules.distrust(since);
    let age = rules.age(since);
    if distrusted.is_none() && age <= Duration::from_secs(u64::from(rules.keep_days) * 86_400) {
        return Ok(Decision::Keep(KeepReason::WithinRetention));
    }
    // Deleting, and recording where the count starts, are both done under
    // the lock: a requeue may be taking the episode away.
    lock(
        facts,
        LockTarget::Entry,
        "locked: being requeued or shipped",
        Some(Decision::Skip("moved away meanwhile")),
    )?;
    if let Some(why) = distrusted {
        let source = match ctime_because {
            Some(because) => format!("{because}: the directory's ctime"),
            None => "its sidecar's entered_at".into(),
        };
        return Ok(Decision::RestartCount(Restart {
            recorded: since,
            from: rules.now,
            reason: format!(
                "entry time {} ({source}) is {why}: the clock was wrong; retention counts from now",
                rfc3339(since)
            ),
            dry_run: rules.dry_run,
        }));
    }
    let verb = match rules.state {
        State::Quarantine => "quarantined",
        _ => "shipped",
    };
    let mut reason = format!("{verb} {:.1} days ago, keep {}", days(age), rules.keep_days);
    if let Some(why) = ctime_because {
        let _ = write!(reason, "; {why}: age from the directory's ctime");
    }
    Ok(Decision::DeleteEpisode(Deletion {
        kind: Kind::Episode,
        age,
        reason,
        dry_run: rules.dry_run,
    }))
}

/// `.deleting-<id>`: always finished (retention does not matter, it is no
/// longer an episode), under its lock; its age is only reported.
fn deleting(facts: &Facts, rules: &Rules) -> Deciding {
    lock(
        facts,
        LockTarget::Entry,
        "another prune is removing it",
        Some(Decision::Leave(LeaveReason::Gone)),
    )?;
    let age = match &facts.since {
        None => return Ok(Decision::Need(Fact::Since)),
        Some(Seen::At { at, .. }) => rules.age(*at),
        Some(_) => Duration::ZERO,
    };
    Ok(Decision::FinishRemoval(Deletion {
        kind: Kind::Unfinished,
        age,
        reason: "finishing an interrupted removal".into(),
        dry_run: rules.dry_run,
    }))
}

/// `outbox/<id>.tar.gz.partial` beside a listed `outbox/<id>/`: a shipper
/// at work holds the episode's lock and keeps writing (fresh mtime); a
/// stale one is rebuilt from scratch anyway. Checked once without the lock
/// (a young one is not worth locking for) and again under it.
fn partial_being_shipped(facts: &Facts, rules: &Rules) -> Deciding {
    if !rules.clock_right() {
        return Ok(Decision::Leave(LeaveReason::ClockWrong));
    }
    match &facts.since {
        None => return Ok(Decision::Need(Fact::Since)),
        Some(Seen::At { at, .. }) if rules.age(*at) > LEFTOVER_GRACE => {}
        Some(Seen::At { .. }) => return Ok(Decision::Leave(LeaveReason::Young)),
        Some(Seen::Gone) => return Ok(Decision::Leave(LeaveReason::Gone)),
        Some(Seen::Unreadable(_)) => return Ok(Decision::Leave(LeaveReason::AgeUnknown)),
    }
    // Gone: the episode left outbox/, nobody is shipping it any more.
    lock(
        facts,
        LockTarget::Episode,
        "its episode is being shipped",
        None,
    )?;
    let partial = Leftover {
        kind: Kind::PartialArchive,
        grace: true,
        episode_must_be_gone: false,
    };
    partial.decide(&facts.since_locked, Fact::SinceLocked, facts, rules)
}

/// A file left beside episodes by a crashed or finished run.
struct Leftover {
    kind: Kind,
    /// Only once older than [`LEFTOVER_GRACE`].
    grace: bool,
    /// Only while its episode directory is absent.
    episode_must_be_gone: bool,
}

impl Leftover {
    fn decide(&self, seen: &Option<Seen>, ask: Fact, facts: &Facts, rules: &Rules) -> Deciding {
        if self.grace && !rules.clock_right() {
            return Ok(Decision::Leave(LeaveReason::ClockWrong));
        }
        let (written, _) = known(seen, ask)?;
        let age = rules.age(written);
        if self.grace && age <= LEFTOVER_GRACE {
            return Ok(Decision::Leave(LeaveReason::Young));
        }
        if self.episode_must_be_gone {
            match facts.episode_exists {
                None => return Ok(Decision::Need(Fact::EpisodeExists)),
                Some(true) => return Ok(Decision::Leave(LeaveReason::EpisodePresent)),
                Some(false) => {}
            }
        }
        let what = match self.kind {
            Kind::OrphanSidecar => "sidecar without an episode directory",
            Kind::PartialArchive => "partial archive of an interrupted run",
            Kind::StaleArchive => "staged archive of an episode no longer in outbox/",
            Kind::StaleRetry => "retry state of an episode no longer in outbox/",
            Kind::TempFile => "temp file of an interrupted write",
            Kind::Episode | Kind::Unfinished => "",
        };
        Ok(Decision::DeleteFile(Deletion {
            kind: self.kind,
            age,
            reason: format!("{what}, last written {:.1} days ago", days(age)),
            dry_run: rules.dry_run,
        }))
    }
}

/// `X.json.tmp1234`: what `layout::write_atomic` leaves when interrupted.
pub fn is_temp_file(name: &str) -> bool {
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
pub fn episode_part(name: &str) -> &str {
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

#[cfg(test)]
mod tests;
