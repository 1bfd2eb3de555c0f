//! prune_since_build() on a real data root, with entry times and clocks
//! that were wrong: retention never counts the time the clock had wrong.

use std::time::UNIX_EPOCH;

use super::*;
use crate::prune::clock::build_date;

/// 2020-01-01T00:00:00Z.
const JAN_2020: u64 = 1_577_836_800;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A settled episode whose sidecar says it entered `state` at `entered_at`.
fn settled_at(layout: &Layout, state: State, id: &str, entered_at: u64) -> PathBuf {
    let dir = settled(layout, state, id, None);
    Sidecar {
        episode_id: id.into(),
        state,
        entered_at,
        reason: "test".into(),
        http_status: Some(422),
        sha256: None,
        archive_bytes: None,
        attempts: 1,
        refusal_check: None,
    }
    .store(layout, &EpisodeId::parse(id).expect("id"))
    .expect("sidecar");
    dir
}

fn sidecar_json(layout: &Layout, state: State, id: &str) -> serde_json::Value {
    let path = layout.sidecar(state, &EpisodeId::parse(id).expect("id"));
    serde_json::from_slice(&fs::read(path).expect("sidecar")).expect("json")
}

/// The measured problem: quarantined while the clock said 2020, then the
/// clock was set right. A day later it is a day old, not seven years.
#[test]
fn quarantined_while_the_clock_said_2020() {
    let (_d, layout) = setup();
    let dir = settled_at(&layout, State::Quarantine, "q", JAN_2020 + 3600);
    let keep = settings(30, 7);
    let sidecar = layout.sidecar(State::Quarantine, &EpisodeId::parse("q").expect("id"));
    let as_written = fs::read(&sidecar).expect("read");

    // Still 2020: the clock is before the build, nothing is done by age.
    let r = prune_since_build(&layout, &keep, at(JAN_2020 + DAYS), build_date(), false);
    assert!(r.clock_wrong.is_some() && r.restarted.is_empty() && r.removed.is_empty());
    assert!(
        r.summary()
            .starts_with("clock before the build date, nothing deleted by age; "),
        "{}",
        r.summary()
    );
    assert_eq!(fs::read(&sidecar).expect("read"), as_written);
    assert_eq!(r.kept_in(State::Quarantine), 1);

    // NTP sets the clock right: the count starts now.
    let now = SystemTime::now();
    let r = prune_since_build(&layout, &keep, now, build_date(), false);
    assert!(r.removed.is_empty() && r.failures.is_empty(), "{r:?}");
    assert_eq!(r.restarted.len(), 1);
    assert_eq!(
        (r.restarted[0].recorded, r.restarted[0].from),
        (JAN_2020 + 3600, layout::unix_secs(now))
    );
    let s = sidecar_json(&layout, State::Quarantine, "q");
    assert_eq!(s["entered_at"].as_u64(), Some(layout::unix_secs(now)));
    assert_eq!(s["entered_at_untrusted"].as_u64(), Some(JAN_2020 + 3600));
    assert_eq!(r.kept_in(State::Quarantine), 1);

    // A day later: kept, nothing restarted again.
    let day_later = now + Duration::from_secs(DAYS);
    let r = prune_since_build(&layout, &keep, day_later, build_date(), false);
    assert!(r.removed.is_empty() && r.restarted.is_empty(), "{r:?}");
    assert!(dir.is_dir());

    // Its retention runs out 30 days after the clock was set right.
    let month_later = now + Duration::from_secs(31 * DAYS);
    let r = prune_since_build(&layout, &keep, month_later, build_date(), false);
    assert_eq!(r.removed.len(), 1, "{r:?}");
    assert!(
        r.removed[0].reason.starts_with("quarantined 31.0 days ago"),
        "{}",
        r.removed[0].reason
    );
    assert!(!dir.exists() && !sidecar.exists());
}

/// A clock before the build date deletes nothing by age, leftovers
/// included; what is not a matter of age is still done.
#[test]
fn a_clock_before_the_build_deletes_nothing_by_age() {
    let (_d, layout) = setup();
    let now = SystemTime::now();
    let old = settled(&layout, State::Quarantine, "old", Some(3650));
    let q = layout.state_dir(State::Quarantine);
    let ob = layout.state_dir(State::Outbox);
    fs::write(q.join("orphan.json"), b"{}").expect("write");
    fs::write(q.join("x.json.tmp42"), b"{").expect("write");
    fs::write(ob.join("gone.tar.gz"), b"x").expect("write");
    for f in [q.join("orphan.json"), q.join("x.json.tmp42")] {
        set_mtime(&f, now - Duration::from_secs(2 * DAYS));
    }
    let built = now + Duration::from_secs(DAYS);
    let r = prune_since_build(&layout, &settings(30, 7), now, built, false);
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert!(old.is_dir());
    assert_eq!(
        names(&q),
        ["old", "old.json", "orphan.json", "x.json.tmp42"]
    );
    assert!(
        names(&ob).is_empty(),
        "a stale archive is not a matter of age"
    );
    assert_eq!(r.removed.len(), 1);
    let why = r.clock_wrong.as_deref().expect("said why");
    assert!(why.contains("before this build"), "{why}");
}

/// No sidecar, and a directory ctime the clock had wrong: a sidecar is
/// written to start the count, and the episode goes with it later.
#[test]
fn a_ctime_from_a_wrong_clock_gets_a_sidecar() {
    let (_d, layout) = setup();
    let dir = settled(&layout, State::Shipped, "plain", None);
    let ctime = fs::symlink_metadata(&dir).expect("stat").ctime() as u64;
    // As if it were 10 years on, with a build from the day before: the
    // ctime (the real now) is 10 years before the build.
    let now = SystemTime::now() + Duration::from_secs(3650 * DAYS);
    let built = now - Duration::from_secs(DAYS);
    let r = prune_since_build(&layout, &settings(30, 7), now, built, false);
    assert!(r.removed.is_empty() && r.failures.is_empty(), "{r:?}");
    assert!(
        r.restarted[0]
            .reason
            .contains("(no sidecar: the directory's ctime) is more than 365 days before"),
        "{}",
        r.restarted[0].reason
    );
    let s = sidecar_json(&layout, State::Shipped, "plain");
    assert_eq!(s["episode_id"], "plain");
    assert_eq!(s["state"], "shipped");
    assert_eq!(s["entered_at"].as_u64(), Some(layout::unix_secs(now)));
    assert_eq!(s["entered_at_untrusted"].as_u64(), Some(ctime));
    assert_eq!(
        names(&layout.state_dir(State::Shipped)),
        ["plain", "plain.json"]
    );

    let later = now + Duration::from_secs(8 * DAYS);
    let r = prune_since_build(&layout, &settings(30, 7), later, built, false);
    assert_eq!(r.removed.len(), 1, "{r:?}");
    assert!(names(&layout.state_dir(State::Shipped)).is_empty());
}

/// An unusable sidecar and a ctime the clock had wrong: no age can be
/// trusted, so the episode stays, the sidecar is not replaced, and the run
/// says what to fix.
#[test]
fn an_unusable_sidecar_in_the_way_is_reported_not_replaced() {
    let (_d, layout) = setup();
    let dir = settled(&layout, State::Quarantine, "bad", None);
    let sidecar = layout.sidecar(State::Quarantine, &EpisodeId::parse("bad").expect("id"));
    fs::write(&sidecar, b"{ not json").expect("write");
    let now = SystemTime::now() + Duration::from_secs(3650 * DAYS);
    let built = now - Duration::from_secs(DAYS);
    let r = prune_since_build(&layout, &settings(30, 7), now, built, false);
    assert!(dir.is_dir() && r.removed.is_empty() && r.restarted.is_empty());
    assert_eq!(r.failures.len(), 1, "{r:?}");
    assert!(
        r.failures[0].message.contains("corrupt sidecar")
            && r.failures[0]
                .message
                .contains("cannot be used and is in the way"),
        "{}",
        r.failures[0].message
    );
    assert_eq!(fs::read(&sidecar).expect("read"), b"{ not json");
    assert_eq!(r.exit_code(), 74);
    assert_eq!(
        names(&layout.state_dir(State::Quarantine)),
        ["bad", "bad.json"]
    );
}

/// Restarted twice (the clock was set back again, still after the build):
/// the entry time first recorded is the one kept.
#[test]
fn a_second_restart_keeps_the_first_recorded_time() {
    let (_d, layout) = setup();
    settled_at(&layout, State::Quarantine, "twice", JAN_2020);
    let now = SystemTime::now();
    let built = now - Duration::from_secs(DAYS);
    let later = now + Duration::from_secs(10 * DAYS);
    let r = prune_since_build(&layout, &settings(30, 7), later, built, false);
    assert_eq!(r.restarted.len(), 1);
    // Set back by 10 days: the restart is now in the future.
    let r = prune_since_build(&layout, &settings(30, 7), now, built, false);
    assert_eq!(r.restarted.len(), 1, "{r:?}");
    assert!(r.restarted[0].reason.contains("is in the future"));
    let s = sidecar_json(&layout, State::Quarantine, "twice");
    assert_eq!(s["entered_at"].as_u64(), Some(layout::unix_secs(now)));
    assert_eq!(s["entered_at_untrusted"].as_u64(), Some(JAN_2020));
    assert_eq!(
        (s["reason"].as_str(), s["http_status"].as_u64()),
        (Some("test"), Some(422))
    );
}
