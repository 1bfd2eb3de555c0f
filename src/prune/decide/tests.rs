//! The decision rules as tables: entry kind × condition → decision. No
//! filesystem anywhere: facts are written down, `now` is a constant.

use super::*;
use crate::cli::human_bytes;
use std::time::UNIX_EPOCH;

mod clock;

const DAY_SECS: u64 = 86_400;
const GRACE_SECS: u64 = LEFTOVER_GRACE.as_secs();

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(2_000_000_000)
}

fn secs_ago(secs: u64) -> SystemTime {
    now() - Duration::from_secs(secs)
}

fn rules(state: State, keep_days: u32) -> Rules {
    Rules {
        state,
        keep_days,
        now: now(),
        // Believes every time: the clock's rules are in `clock`.
        built: UNIX_EPOCH,
        dry_run: false,
    }
}

fn at(secs: u64) -> Option<Seen> {
    Some(Seen::At {
        at: secs_ago(secs),
        ctime_because: None,
    })
}

fn days(n: u64) -> Option<Seen> {
    at(n * DAY_SECS)
}

fn unreadable(why: &str) -> Option<Seen> {
    Some(Seen::Unreadable(why.into()))
}

const GONE: Option<Seen> = Some(Seen::Gone);

fn deletion(kind: Kind, age_secs: u64, reason: &str) -> Deletion {
    Deletion {
        kind,
        age: Duration::from_secs(age_secs),
        reason: reason.into(),
        dry_run: false,
    }
}

fn need(fact: Fact) -> Decision {
    Decision::Need(fact)
}

/// Facts, written compactly: (since, episode exists, lock).
fn facts(since: Option<Seen>, episode_exists: Option<bool>, lock: Option<Lock>) -> Facts {
    Facts {
        since,
        since_locked: None,
        episode_exists,
        lock,
    }
}

fn check(candidate: &Candidate, rules: &Rules, table: &[(&str, Facts, Decision)]) {
    for (row, facts, expected) in table {
        assert_eq!(
            &decide(candidate, facts, rules),
            expected,
            "{candidate:?}, {row}: {facts:?}"
        );
    }
}

fn settled() -> Candidate {
    Candidate::Settled {
        id: "ep".into(),
        sidecar_listed: true,
    }
}

#[test]
fn settled_episode() {
    use Decision::{DeleteEpisode, Fail, Keep, Leave, Skip};
    let held = Some(Lock::Held);
    let quarantined_31 = "quarantined 31.0 days ago, keep 30";
    let by_ctime = Some(Seen::At {
        at: secs_ago(31 * DAY_SECS),
        ctime_because: Some("no sidecar".into()),
    });
    #[rustfmt::skip]
    let table = [
        ("nothing known yet", facts(None, None, None), need(Fact::Since)),
        ("gone since the listing", facts(GONE, None, None), Leave(LeaveReason::Gone)),
        ("cannot stat", facts(unreadable("cannot stat q/ep: EIO"), None, None), Fail("cannot stat q/ep: EIO".into())),
        ("29 days", facts(days(29), None, None), Keep(KeepReason::WithinRetention)),
        ("exactly 30 days", facts(days(30), None, None), Keep(KeepReason::WithinRetention)),
        ("entered in the future", facts(Some(Seen::At { at: now() + Duration::from_secs(60), ctime_because: None }), None, None), Keep(KeepReason::WithinRetention)),
        ("30 days and a second: lock first", facts(at(30 * DAY_SECS + 1), None, None), need(Fact::Lock(LockTarget::Entry))),
        ("31 days, locked by a requeue", facts(days(31), None, Some(Lock::Busy)), Skip("locked: being requeued or shipped")),
        ("31 days, moved away meanwhile", facts(days(31), None, Some(Lock::Gone)), Skip("moved away meanwhile")),
        ("31 days, lock error", facts(days(31), None, Some(Lock::Failed("EACCES".into()))), Fail("EACCES".into())),
        ("31 days, locked", facts(days(31), None, held.clone()), DeleteEpisode(deletion(Kind::Episode, 31 * DAY_SECS, quarantined_31))),
        ("31 days by ctime", facts(by_ctime, None, held.clone()), DeleteEpisode(deletion(Kind::Episode, 31 * DAY_SECS, "quarantined 31.0 days ago, keep 30; no sidecar: age from the directory's ctime"))),
        ("episode existence is not asked", facts(days(31), Some(true), held), DeleteEpisode(deletion(Kind::Episode, 31 * DAY_SECS, quarantined_31))),
    ];
    check(&settled(), &rules(State::Quarantine, 30), &table);

    #[rustfmt::skip]
    let shipped = [
        ("7 days", facts(days(7), None, None), Keep(KeepReason::WithinRetention)),
        ("8 days", facts(days(8), None, Some(Lock::Held)), DeleteEpisode(deletion(Kind::Episode, 8 * DAY_SECS, "shipped 8.0 days ago, keep 7"))),
    ];
    check(&settled(), &rules(State::Shipped, 7), &shipped);

    // Retention 0: kept whatever is known, and nothing is looked up.
    #[rustfmt::skip]
    let off = [
        ("nothing known", facts(None, None, None), Keep(KeepReason::RetentionOff)),
        ("ten years, locked", facts(days(3650), None, Some(Lock::Held)), Keep(KeepReason::RetentionOff)),
    ];
    check(&settled(), &rules(State::Quarantine, 0), &off);
    check(&settled(), &rules(State::Shipped, 0), &off);
}

#[test]
fn interrupted_removal() {
    use Decision::{Fail, FinishRemoval, Leave, Skip};
    let finish = |secs| {
        FinishRemoval(deletion(
            Kind::Unfinished,
            secs,
            "finishing an interrupted removal",
        ))
    };
    let held = Some(Lock::Held);
    #[rustfmt::skip]
    let table = [
        ("lock first", facts(None, None, None), need(Fact::Lock(LockTarget::Entry))),
        ("another prune has it", facts(None, None, Some(Lock::Busy)), Skip("another prune is removing it")),
        ("finished by another prune", facts(None, None, Some(Lock::Gone)), Leave(LeaveReason::Gone)),
        ("lock error", facts(None, None, Some(Lock::Failed("EIO".into()))), Fail("EIO".into())),
        ("locked: its age, for the report", facts(None, None, held.clone()), need(Fact::Since)),
        ("2 days", facts(days(2), None, held.clone()), finish(2 * DAY_SECS)),
        ("a minute: no grace", facts(at(60), None, held.clone()), finish(60)),
        ("ctime unreadable: age 0", facts(unreadable("EIO"), None, held.clone()), finish(0)),
        ("ctime gone: age 0", facts(GONE, None, held), finish(0)),
    ];
    let deleting = Candidate::Deleting { id: "ep".into() };
    // Retention does not matter: it is no longer an episode.
    for keep_days in [0, 1, 30] {
        check(&deleting, &rules(State::Quarantine, keep_days), &table);
        check(&deleting, &rules(State::Shipped, keep_days), &table);
    }
}

/// Files left beside episodes: kind × age × whether the episode exists.
#[test]
fn leftover_files() {
    use Decision::{DeleteFile, Fail, Leave};
    let orphan = Candidate::OrphanSidecar { id: "ep".into() };
    let temp = Candidate::TempFile;
    let partial = Candidate::Partial {
        id: "ep".into(),
        episode_listed: false,
    };
    let archive = Candidate::StaleArchive { id: "ep".into() };
    let retry = Candidate::StaleRetry { id: "ep".into() };
    // (candidate, its states, kind, waits for the grace, needs its episode gone, what)
    #[rustfmt::skip]
    let kinds = [
        (&orphan, &[State::Quarantine, State::Shipped][..], Kind::OrphanSidecar, true, true, "sidecar without an episode directory"),
        (&temp, &[State::Quarantine, State::Shipped, State::Outbox][..], Kind::TempFile, true, false, "temp file of an interrupted write"),
        (&partial, &[State::Outbox][..], Kind::PartialArchive, true, false, "partial archive of an interrupted run"),
        (&archive, &[State::Outbox][..], Kind::StaleArchive, false, true, "staged archive of an episode no longer in outbox/"),
        (&retry, &[State::Outbox][..], Kind::StaleRetry, false, true, "retry state of an episode no longer in outbox/"),
    ];
    for (candidate, states, kind, grace, episode_must_be_gone, what) in kinds {
        let delete = |secs: u64| {
            let reason = format!("{what}, last written {:.1} days ago", secs as f64 / DAY);
            DeleteFile(deletion(kind, secs, &reason))
        };
        // Old enough to go, once the episode is known to be absent.
        let old_enough = |secs: u64, exists: Option<bool>| match (episode_must_be_gone, exists) {
            (false, _) => delete(secs),
            (true, None) => need(Fact::EpisodeExists),
            (true, Some(true)) => Leave(LeaveReason::EpisodePresent),
            (true, Some(false)) => delete(secs),
        };
        let young = |secs: u64, exists| {
            if grace {
                Leave(LeaveReason::Young)
            } else {
                old_enough(secs, exists)
            }
        };
        let mut table = vec![
            (
                "nothing known yet",
                facts(None, None, None),
                need(Fact::Since),
            ),
            (
                "gone or not a file",
                facts(GONE, None, None),
                Leave(LeaveReason::Gone),
            ),
            (
                "cannot stat",
                facts(unreadable("cannot stat: EIO"), None, None),
                Fail("cannot stat: EIO".into()),
            ),
        ];
        for exists in [None, Some(true), Some(false)] {
            table.extend([
                ("just written", facts(at(0), exists, None), young(0, exists)),
                (
                    "an hour",
                    facts(at(3600), exists, None),
                    young(3600, exists),
                ),
                (
                    "exactly the grace",
                    facts(at(GRACE_SECS), exists, None),
                    young(GRACE_SECS, exists),
                ),
                (
                    "the grace and a second",
                    facts(at(GRACE_SECS + 1), exists, None),
                    old_enough(GRACE_SECS + 1, exists),
                ),
                (
                    "400 days",
                    facts(days(400), exists, None),
                    old_enough(400 * DAY_SECS, exists),
                ),
                // Never locked: a busy lock elsewhere changes nothing.
                (
                    "400 days, a lock busy",
                    facts(days(400), exists, Some(Lock::Busy)),
                    old_enough(400 * DAY_SECS, exists),
                ),
            ]);
        }
        for state in states {
            for keep_days in [0, 30] {
                check(candidate, &rules(*state, keep_days), &table);
            }
        }
    }
}

/// `outbox/<id>.tar.gz.partial` while `outbox/<id>/` is there: checked,
/// locked, checked again.
#[test]
fn partial_archive_of_a_listed_episode() {
    use Decision::{DeleteFile, Fail, Leave, Skip};
    let old = days(2);
    let locked = |lock: Lock, since_locked| Facts {
        since: days(2),
        since_locked,
        episode_exists: None,
        lock: Some(lock),
    };
    let delete = DeleteFile(deletion(
        Kind::PartialArchive,
        2 * DAY_SECS,
        "partial archive of an interrupted run, last written 2.0 days ago",
    ));
    #[rustfmt::skip]
    let table = [
        ("nothing known yet", facts(None, None, None), need(Fact::Since)),
        ("being written", facts(at(10), None, None), Leave(LeaveReason::Young)),
        ("exactly the grace", facts(at(GRACE_SECS), None, None), Leave(LeaveReason::Young)),
        ("gone", facts(GONE, None, None), Leave(LeaveReason::Gone)),
        ("cannot stat before locking", facts(unreadable("EIO"), None, None), Leave(LeaveReason::AgeUnknown)),
        ("old: lock its episode", facts(old.clone(), None, None), need(Fact::Lock(LockTarget::Episode))),
        ("its shipper holds the lock", facts(old.clone(), None, Some(Lock::Busy)), Skip("its episode is being shipped")),
        ("lock error", facts(old, None, Some(Lock::Failed("EIO".into()))), Fail("EIO".into())),
        ("locked: look again", locked(Lock::Held, None), need(Fact::SinceLocked)),
        ("episode left outbox/: look again", locked(Lock::Gone, None), need(Fact::SinceLocked)),
        ("rewritten meanwhile", locked(Lock::Held, at(5)), Leave(LeaveReason::Young)),
        ("renamed meanwhile", locked(Lock::Held, GONE), Leave(LeaveReason::Gone)),
        ("cannot stat under the lock", locked(Lock::Held, unreadable("cannot stat: EIO")), Fail("cannot stat: EIO".into())),
        ("still old, locked", locked(Lock::Held, days(2)), delete.clone()),
        ("still old, episode gone", locked(Lock::Gone, days(2)), delete),
    ];
    let partial = Candidate::Partial {
        id: "ep".into(),
        episode_listed: true,
    };
    check(&partial, &rules(State::Outbox, 0), &table);
}

/// What the answer to every question would be, for walking a decision
/// through the way `apply` does.
struct World {
    since: Option<Seen>,
    since_locked: Option<Seen>,
    episode_exists: bool,
    lock: Lock,
}

/// Decide, answering each question from `world`: the questions in the
/// order asked, and the final decision.
fn walk(candidate: &Candidate, rules: &Rules, world: &World) -> (Vec<Fact>, Decision) {
    let mut facts = Facts::default();
    let mut asked = Vec::new();
    loop {
        let fact = match decide(candidate, &facts, rules) {
            Decision::Need(fact) => fact,
            decided => return (asked, decided),
        };
        assert!(
            !asked.contains(&fact),
            "{candidate:?}: {fact:?} asked twice"
        );
        assert!(
            asked.len() < 4,
            "{candidate:?}: too many questions {asked:?}"
        );
        asked.push(fact);
        match fact {
            Fact::Since => facts.since = world.since.clone(),
            Fact::SinceLocked => facts.since_locked = world.since_locked.clone(),
            Fact::EpisodeExists => facts.episode_exists = Some(world.episode_exists),
            Fact::Lock(_) => facts.lock = Some(world.lock.clone()),
        }
    }
}

/// Which facts each kind needs, in order: this is the I/O a run does per
/// entry. A dry run asks the same (locks included) and only marks the
/// deletion.
#[test]
fn questions_asked_in_order_and_dry_run() {
    let world = |since: Option<Seen>, episode_exists, lock| World {
        since: since.clone(),
        since_locked: since,
        episode_exists,
        lock,
    };
    let id = || "ep".to_string();
    let lock = Fact::Lock;
    use Fact::{EpisodeExists, Since, SinceLocked};
    use LockTarget::{Entry, Episode};
    let settled = settled();
    let deleting = Candidate::Deleting { id: id() };
    let orphan = Candidate::OrphanSidecar { id: id() };
    let archive = Candidate::StaleArchive { id: id() };
    let partial = |episode_listed| Candidate::Partial {
        id: id(),
        episode_listed,
    };
    let q30 = rules(State::Quarantine, 30);
    let q0 = rules(State::Quarantine, 0);
    let ob = rules(State::Outbox, 0);
    #[rustfmt::skip]
    let table: Vec<(Candidate, Rules, World, Vec<Fact>)> = vec![
        (settled.clone(), q0, world(days(99), false, Lock::Held), vec![]),
        (settled.clone(), q30, world(days(29), false, Lock::Held), vec![Since]),
        (settled.clone(), q30, world(days(31), false, Lock::Busy), vec![Since, lock(Entry)]),
        (settled.clone(), q30, world(days(31), false, Lock::Held), vec![Since, lock(Entry)]),
        (deleting.clone(), q0, world(days(1), false, Lock::Held), vec![lock(Entry), Since]),
        (deleting.clone(), q30, world(days(1), false, Lock::Busy), vec![lock(Entry)]),
        (orphan.clone(), q30, world(at(60), false, Lock::Held), vec![Since]),
        (orphan.clone(), q30, world(days(2), true, Lock::Held), vec![Since, EpisodeExists]),
        (orphan.clone(), q30, world(days(2), false, Lock::Held), vec![Since, EpisodeExists]),
        (archive, ob, world(at(0), false, Lock::Held), vec![Since, EpisodeExists]),
        (Candidate::TempFile, ob, world(days(2), false, Lock::Busy), vec![Since]),
        (partial(false), ob, world(days(2), true, Lock::Busy), vec![Since]),
        (partial(true), ob, world(at(60), true, Lock::Held), vec![Since]),
        (partial(true), ob, world(days(2), true, Lock::Busy), vec![Since, lock(Episode)]),
        (partial(true), ob, world(days(2), true, Lock::Held), vec![Since, lock(Episode), SinceLocked]),
    ];
    for (candidate, rules, world, questions) in &table {
        let (asked, decided) = walk(candidate, rules, world);
        assert_eq!(&asked, questions, "{candidate:?} in {:?}", world.since);
        let dry = Rules {
            dry_run: true,
            ..*rules
        };
        let (dry_asked, dry_decided) = walk(candidate, &dry, world);
        assert_eq!(asked, dry_asked, "{candidate:?}: a dry run asks the same");
        let marked = |d: Decision| match d {
            Decision::DeleteEpisode(x) => Decision::DeleteEpisode(Deletion { dry_run: true, ..x }),
            Decision::DeleteFile(x) => Decision::DeleteFile(Deletion { dry_run: true, ..x }),
            Decision::FinishRemoval(x) => Decision::FinishRemoval(Deletion { dry_run: true, ..x }),
            other => other,
        };
        assert_eq!(dry_decided, marked(decided), "{candidate:?}: dry run");
    }
}

/// A listing with `a/` and `a.json` in it.
fn listing() -> Scan {
    let mut scan = Scan::default();
    scan.dirs.insert("a".into());
    scan.non_dirs.insert("a.json".into());
    scan
}

#[test]
fn classify_by_state_name_and_listing() {
    use Candidate::*;
    use Listed::{EpisodeDir, File, HiddenDir};
    use State::{Episodes, Outbox, Quarantine, Shipped};
    let id = |s: &str| s.to_string();
    #[rustfmt::skip]
    let table: Vec<(State, &str, Listed, Option<Candidate>)> = vec![
        (Quarantine, "a", EpisodeDir, Some(Settled { id: id("a"), sidecar_listed: true })),
        (Shipped, "b", EpisodeDir, Some(Settled { id: id("b"), sidecar_listed: false })),
        (Outbox, "a", EpisodeDir, None),
        (Episodes, "a", EpisodeDir, None),
        (Quarantine, ".deleting-x", HiddenDir, Some(Deleting { id: id("x") })),
        (Shipped, ".deleting-x", HiddenDir, Some(Deleting { id: id("x") })),
        (Quarantine, ".rejected-x", HiddenDir, None),
        (Outbox, ".deleting-x", HiddenDir, None),
        (Quarantine, "a.json", File, None),
        (Quarantine, "b.json", File, Some(OrphanSidecar { id: id("b") })),
        (Shipped, "x.retry.json", File, Some(OrphanSidecar { id: id("x.retry") })),
        (Quarantine, ".hidden.json", File, None),
        (Quarantine, "b.json.tmp12", File, Some(TempFile)),
        (Shipped, ".b.json.tmp12", File, Some(TempFile)),
        (Quarantine, "b.json.tmp", File, None),
        (Quarantine, "b.tar.gz", File, None),
        (Quarantine, "notes.txt", File, None),
        (Outbox, "a.tar.gz.partial", File, Some(Partial { id: id("a"), episode_listed: true })),
        (Outbox, "b.tar.gz.partial", File, Some(Partial { id: id("b"), episode_listed: false })),
        (Outbox, "a.tar.gz", File, None),
        (Outbox, "b.tar.gz", File, Some(StaleArchive { id: id("b") })),
        (Outbox, "a.retry.json", File, None),
        (Outbox, "b.retry.json", File, Some(StaleRetry { id: id("b") })),
        (Outbox, "b.retry.json.tmp99", File, Some(TempFile)),
        (Outbox, "b.json", File, None),
        (Outbox, "notours.txt", File, None),
        (Episodes, "b.json", File, None),
        (Episodes, "b.json.tmp1", File, None),
    ];
    let scan = listing();
    for (state, name, listed, expected) in table {
        assert_eq!(
            classify(state, name, listed, &scan),
            expected,
            "{state}/{name} ({listed:?})"
        );
    }
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
