//! The clock's rules as tables: whether the clock now is right (not before
//! the build date) × when the entry time was recorded → decision.

use super::*;

/// Built 100 days before `now()`, 2033-02-07T03:33:20Z: entry times from
/// more than a year before that (2032-02-08T03:33:20Z) are not believed.
fn built() -> SystemTime {
    now() - Duration::from_secs(100 * DAY_SECS)
}

fn rules_built(state: State, keep_days: u32, built: SystemTime) -> Rules {
    Rules {
        built,
        ..rules(state, keep_days)
    }
}

fn unix(secs: u64) -> Option<Seen> {
    Some(Seen::At {
        at: UNIX_EPOCH + Duration::from_secs(secs),
        ctime_because: None,
    })
}

fn ahead(secs: u64) -> Option<Seen> {
    Some(Seen::At {
        at: now() + Duration::from_secs(secs),
        ctime_because: None,
    })
}

fn restart(recorded: SystemTime, reason: &str) -> Decision {
    Decision::RestartCount(Restart {
        recorded,
        from: now(),
        reason: reason.into(),
        dry_run: false,
    })
}

const BEFORE_BUILD: &str = "is more than 365 days before this build (2033-02-07T03:33:20Z): the clock was wrong; \
     retention counts from now";

#[test]
fn entry_time_the_clock_had_wrong_restarts_the_count() {
    use Decision::{DeleteEpisode, Keep, Skip};
    let held = Some(Lock::Held);
    let jan_2020 = UNIX_EPOCH + Duration::from_secs(1_577_836_800);
    let year_before_build = built() - TRUSTED_BEFORE_BUILD;
    let just_before = |secs| {
        Some(Seen::At {
            at: year_before_build - Duration::from_secs(secs),
            ctime_because: None,
        })
    };
    let ctime_2020 = Some(Seen::At {
        at: jan_2020,
        ctime_because: Some("no sidecar".into()),
    });
    let sidecar_2020 =
        format!("entry time 2020-01-01T00:00:00Z (its sidecar's entered_at) {BEFORE_BUILD}");
    #[rustfmt::skip]
    let table = [
        ("nothing known yet", facts(None, None, None), need(Fact::Since)),
        ("31 days, after the build: as ever", facts(days(31), None, held.clone()), DeleteEpisode(deletion(Kind::Episode, 31 * DAY_SECS, "quarantined 31.0 days ago, keep 30"))),
        ("29 days: kept as ever", facts(days(29), None, None), Keep(KeepReason::WithinRetention)),
        // Settled under an older build: an upgrade restarts nothing.
        ("200 days, before the build", facts(days(200), None, held.clone()), DeleteEpisode(deletion(Kind::Episode, 200 * DAY_SECS, "quarantined 200.0 days ago, keep 30"))),
        ("exactly a year before the build", facts(just_before(0), None, held.clone()), DeleteEpisode(deletion(Kind::Episode, 465 * DAY_SECS, "quarantined 465.0 days ago, keep 30"))),
        ("a year and a second before: lock first", facts(just_before(1), None, None), need(Fact::Lock(LockTarget::Entry))),
        ("a year and a day before", facts(just_before(DAY_SECS), None, held.clone()), restart(year_before_build - Duration::from_secs(DAY_SECS), &format!("entry time 2032-02-07T03:33:20Z (its sidecar's entered_at) {BEFORE_BUILD}"))),
        ("2020: lock first", facts(unix(1_577_836_800), None, None), need(Fact::Lock(LockTarget::Entry))),
        ("2020, locked by a requeue", facts(unix(1_577_836_800), None, Some(Lock::Busy)), Skip("locked: being requeued or shipped")),
        ("2020, moved away meanwhile", facts(unix(1_577_836_800), None, Some(Lock::Gone)), Skip("moved away meanwhile")),
        ("2020, locked", facts(unix(1_577_836_800), None, held.clone()), restart(jan_2020, &sidecar_2020)),
        ("2020 by ctime", facts(ctime_2020, None, held.clone()), restart(jan_2020, &format!("entry time 2020-01-01T00:00:00Z (no sidecar: the directory's ctime) {BEFORE_BUILD}"))),
        ("1970", facts(unix(0), None, held.clone()), restart(UNIX_EPOCH, &format!("entry time 1970-01-01T00:00:00Z (its sidecar's entered_at) {BEFORE_BUILD}"))),
        // NTP steps a clock back by seconds: not worth a rewrite.
        ("an hour in the future", facts(ahead(3600), None, None), Keep(KeepReason::WithinRetention)),
        ("an hour and a second ahead: lock first", facts(ahead(3601), None, None), need(Fact::Lock(LockTarget::Entry))),
        ("two hours ahead", facts(ahead(7200), None, held.clone()), restart(now() + Duration::from_secs(7200), "entry time 2033-05-18T05:33:20Z (its sidecar's entered_at) is in the future: the clock was wrong; retention counts from now")),
        ("ten years ahead", facts(ahead(3650 * DAY_SECS), None, held), restart(now() + Duration::from_secs(3650 * DAY_SECS), "entry time 2043-05-16T03:33:20Z (its sidecar's entered_at) is in the future: the clock was wrong; retention counts from now")),
    ];
    check(
        &settled(),
        &rules_built(State::Quarantine, 30, built()),
        &table,
    );

    // Retention off: nothing looked up, nothing restarted.
    #[rustfmt::skip]
    let off = [
        ("nothing known", facts(None, None, None), Keep(KeepReason::RetentionOff)),
        ("2020, locked", facts(unix(1_577_836_800), None, Some(Lock::Held)), Keep(KeepReason::RetentionOff)),
    ];
    check(&settled(), &rules_built(State::Shipped, 0, built()), &off);
}

/// A clock before the build date is wrong by an unknown amount: nothing is
/// deleted by age, and nothing is looked up to find an age out.
#[test]
fn clock_before_the_build_deletes_nothing_by_age() {
    use Decision::{DeleteFile, FinishRemoval, Keep, Leave};
    // Built a day after `now()`.
    let future_build = now() + Duration::from_secs(DAY_SECS);
    let wrong = |state, keep_days| rules_built(state, keep_days, future_build);
    let q30 = wrong(State::Quarantine, 30);
    let ob = wrong(State::Outbox, 0);
    let gone_episode = |kind, what| {
        DeleteFile(deletion(
            kind,
            2 * DAY_SECS,
            &format!("{what}, last written 2.0 days ago"),
        ))
    };
    let orphan = Candidate::OrphanSidecar { id: "ep".into() };
    let archive = Candidate::StaleArchive { id: "ep".into() };
    let retry = Candidate::StaleRetry { id: "ep".into() };
    let partial = |episode_listed| Candidate::Partial {
        id: "ep".into(),
        episode_listed,
    };
    let deleting = Candidate::Deleting { id: "ep".into() };
    let everything = facts(days(3650), Some(false), Some(Lock::Held));
    #[rustfmt::skip]
    let table: Vec<(&str, Candidate, Rules, Facts, Decision)> = vec![
        ("settled, nothing known", settled(), q30, facts(None, None, None), Keep(KeepReason::ClockWrong)),
        ("settled, ten years, locked", settled(), q30, everything.clone(), Keep(KeepReason::ClockWrong)),
        ("settled, entered in 2020", settled(), q30, facts(unix(1_577_836_800), None, Some(Lock::Held)), Keep(KeepReason::ClockWrong)),
        ("retention off comes first", settled(), wrong(State::Shipped, 0), facts(None, None, None), Keep(KeepReason::RetentionOff)),
        ("orphan sidecar: waits for its grace", orphan, q30, facts(None, None, None), Leave(LeaveReason::ClockWrong)),
        ("temp file", Candidate::TempFile, ob, everything.clone(), Leave(LeaveReason::ClockWrong)),
        ("partial archive", partial(false), ob, everything.clone(), Leave(LeaveReason::ClockWrong)),
        ("partial archive being shipped", partial(true), ob, everything.clone(), Leave(LeaveReason::ClockWrong)),
        // Not by age: their episode is gone, or their removal began.
        ("stale archive", archive, ob, facts(days(2), Some(false), None), gone_episode(Kind::StaleArchive, "staged archive of an episode no longer in outbox/")),
        ("stale retry state", retry, ob, facts(days(2), Some(false), None), gone_episode(Kind::StaleRetry, "retry state of an episode no longer in outbox/")),
        ("interrupted removal", deleting, q30, facts(days(2), None, Some(Lock::Held)), FinishRemoval(deletion(Kind::Unfinished, 2 * DAY_SECS, "finishing an interrupted removal"))),
    ];
    for (row, candidate, rules, facts, expected) in &table {
        assert_eq!(&decide(candidate, facts, rules), expected, "{row}");
    }

    // The build date itself is a right clock.
    let at_build = Rules {
        now: future_build,
        ..q30
    };
    assert!(at_build.clock_right() && !q30.clock_right());
    assert_eq!(
        decide(&settled(), &facts(None, None, None), &at_build),
        need(Fact::Since)
    );
}

/// A dry run asks the same, and restarts nothing: it only says so.
#[test]
fn dry_run_restart_is_marked() {
    let rules = Rules {
        dry_run: true,
        ..rules_built(State::Quarantine, 30, built())
    };
    let decided = decide(
        &settled(),
        &facts(unix(1_577_836_800), None, Some(Lock::Held)),
        &rules,
    );
    let Decision::RestartCount(r) = decided else {
        panic!("{decided:?}");
    };
    assert!(r.dry_run);
    assert_eq!(r.from, now());
}
