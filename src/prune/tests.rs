//! prune() on a real data root: retention, leftovers, locks, dry runs.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;
use crate::layout::{self, EpisodeId, Sidecar};
use crate::lock::EpisodeLock;

mod clock;

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
            refusal_check: None,
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
