//! `quarantine-prune` as a process: dry run, exit codes, permission
//! failures, and a real race against `ship-episode --requeue` (with a real
//! HTTP receiver on a local socket).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cis490::layout::{self, EpisodeId, Layout, Sidecar, State};
use common::{Receiver, Site};

const PRUNE: &str = env!("CARGO_BIN_EXE_quarantine-prune");
const SHIP: &str = env!("CARGO_BIN_EXE_ship-episode");
const DAY: u64 = 86_400;

/// A site whose config points at `url`, with these `[retention]` lines.
fn host(url: &str, retention: &str) -> Site {
    Site::with_receiver_toml(
        &format!("url = \"{url}\""),
        &format!("[retention]\n{retention}\n"),
    )
}

/// A quarantined episode with `files` files, quarantined `days_ago` days ago.
fn quarantined(layout: &Layout, id: &str, days_ago: u64, files: usize) -> PathBuf {
    let eid = EpisodeId::parse(id).expect("id");
    let dir = layout.episode_dir(State::Quarantine, &eid);
    fs::create_dir_all(dir.join("frames")).expect("mkdir");
    for i in 0..files {
        fs::write(
            dir.join("frames").join(format!("{i:04}.bin")),
            [i as u8; 512],
        )
        .expect("write");
    }
    fs::write(dir.join(layout::DONE_MARKER), b"").expect("marker");
    Sidecar {
        episode_id: id.into(),
        state: State::Quarantine,
        entered_at: layout::unix_now() - days_ago * DAY,
        reason: "HTTP 422".into(),
        http_status: Some(422),
        sha256: None,
        archive_bytes: None,
        attempts: 1,
        refusal_check: None,
    }
    .store(layout, &eid)
    .expect("sidecar");
    dir
}

fn prune_cmd(h: &Site) -> Command {
    let mut c = Command::new(PRUNE);
    c.arg("--config")
        .arg(&h.config)
        .env_remove("JOURNAL_STREAM");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every name under `dir`, recursively, relative, sorted (links not followed).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("list") {
            let e = e.expect("entry");
            let p = e.path();
            out.push(p.strip_prefix(dir).expect("prefix").display().to_string());
            if e.file_type().expect("type").is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn dry_run_then_real_run() {
    let h = host(
        "http://127.0.0.1:9",
        "quarantine_keep_days = 30\nkeep_local_for_days = 7",
    );
    let layout = h.layout();
    let old = quarantined(&layout, "old", 31, 3);
    let young = quarantined(&layout, "young", 29, 3);
    let ob = layout.state_dir(State::Outbox);
    fs::create_dir(ob.join("unshipped")).expect("mkdir");
    fs::write(ob.join("unshipped/data"), b"x").expect("write");
    fs::write(ob.join("settled.tar.gz"), b"x").expect("write");
    let before = tree(&h.data());

    let out = prune_cmd(&h).arg("--dry-run").output().expect("run");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("would remove quarantine/old  (quarantined 31.0 days ago, keep 30)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("would remove outbox/settled.tar.gz"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("young") && !stdout.contains("unshipped"),
        "{stdout}"
    );
    assert_eq!(tree(&h.data()), before, "a dry run changes nothing");

    let out = prune_cmd(&h).output().expect("run");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!old.exists() && young.is_dir());
    assert!(ob.join("unshipped/data").is_file());
    assert!(!ob.join("settled.tar.gz").exists());
    // One structured line per removal, and a summary.
    let line = stderr
        .lines()
        .find(|l| l.contains("pruned quarantine/old"))
        .unwrap_or_else(|| panic!("no log line for old in {stderr}"));
    for field in [
        "EPISODE_ID=\"old\"",
        "STATE=\"quarantine\"",
        "AGE_DAYS=\"31.0\"",
        "BYTES=",
        "OUTCOME=\"pruned\"",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(stderr.contains("PRUNED_QUARANTINE=1"), "{stderr}");
    assert!(
        stdout.contains("quarantine: 1 episode(s) freed"),
        "{stdout}"
    );
}

#[test]
fn bad_config_is_78() {
    let h = host("http://127.0.0.1:9", "quarantine_keep_days = -1");
    let out = prune_cmd(&h).output().expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("retention.quarantine_keep_days"));
}

/// Run without the capabilities that let root ignore file permissions, so
/// that modes matter even when the suite runs as root.
fn without_dac_override(c: &mut Command) -> &mut Command {
    // SAFETY: only async-signal-safe prctl calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            // CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER. Failure
            // (not root) is fine: permissions apply anyway.
            for cap in [1, 2, 3] {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
            Ok(())
        })
    }
}

#[test]
fn undeletable_and_unreadable_entries_are_reported_and_the_rest_continues() {
    let h = host("http://127.0.0.1:9", "quarantine_keep_days = 30");
    let layout = h.layout();
    let q = layout.state_dir(State::Quarantine);
    let stuck = quarantined(&layout, "stuck", 40, 2);
    fs::create_dir(stuck.join("ro")).expect("mkdir");
    fs::write(stuck.join("ro/pinned"), b"x").expect("write");
    fs::set_permissions(stuck.join("ro"), fs::Permissions::from_mode(0o555)).expect("chmod");
    let sealed = quarantined(&layout, "sealed", 40, 1);
    fs::set_permissions(&sealed, fs::Permissions::from_mode(0o000)).expect("chmod");
    let fine = quarantined(&layout, "fine", 40, 2);
    // A kept entry with an unreadable subdirectory: pruning must not look inside.
    let kept = quarantined(&layout, "kept", 1, 1);
    fs::create_dir(kept.join("private")).expect("mkdir");
    fs::set_permissions(kept.join("private"), fs::Permissions::from_mode(0o000)).expect("chmod");

    let out = without_dac_override(&mut prune_cmd(&h))
        .output()
        .expect("run");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(74), "{stdout}{stderr}");
    assert!(!fine.exists(), "the rest continues: {stdout}{stderr}");
    assert!(kept.is_dir());
    assert!(
        !stderr.contains("quarantine/kept"),
        "nothing read inside a kept entry: {stderr}"
    );
    assert!(
        stderr.contains("error: quarantine/sealed: cannot lock"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: quarantine/stuck: removal interrupted"),
        "{stderr}"
    );
    assert!(stderr.contains("2 item(s) could not be pruned"), "{stderr}");
    // The half-removed entry no longer looks like an episode.
    assert!(!stuck.exists());
    let hidden = q.join(".deleting-stuck");
    assert!(hidden.join("ro/pinned").is_file());
    assert!(
        layout
            .list(State::Quarantine)
            .expect("list")
            .ids
            .iter()
            .all(|i| i.as_str() != "stuck")
    );

    // Fixed by the operator: the next run finishes the job.
    fs::set_permissions(hidden.join("ro"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&sealed, fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = without_dac_override(&mut prune_cmd(&h))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!hidden.exists() && !sealed.exists());
    fs::set_permissions(kept.join("private"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut left = tree(&q);
    left.retain(|n| !n.starts_with("kept"));
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn requeue_racing_prune_one_wins_cleanly() {
    let rcv = Receiver::http(&[]);
    const FILES: usize = 100;
    const ROUNDS: usize = 16;
    // Milliseconds by which prune starts after (negative: before) the
    // requeue. Process start-up times vary with load, so the offset homes in
    // on the point where the two meet: it moves towards the loser, doubling
    // its step while one side keeps winning and halving it on every flip.
    let (mut offset, mut step) = (60i64, 16i64);
    let mut last_winner_was_prune = None;
    let (mut prune_won, mut requeue_won) = (0, 0);
    let mut shipped = Vec::new();
    for round in 0..ROUNDS {
        let h = host(&rcv.url, "quarantine_keep_days = 30");
        let layout = h.layout();
        // One id per round: the receiver keeps what it stored.
        let id = EpisodeId::parse(&format!("race-{round}")).expect("id");
        quarantined(&layout, id.as_str(), 31, FILES);
        let mut requeue = Command::new(SHIP);
        requeue
            .arg("--config")
            .arg(&h.config)
            .arg("--requeue")
            .arg(id.as_str())
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut prune = prune_cmd(&h);
        prune.stdout(Stdio::piped()).stderr(Stdio::piped());
        let pause = || std::thread::sleep(Duration::from_millis(offset.unsigned_abs()));
        let (rq, pr): (Output, Output) = if offset < 0 {
            let p = prune.spawn().expect("spawn prune");
            pause();
            let r = requeue.spawn().expect("spawn requeue");
            (
                r.wait_with_output().expect("requeue"),
                p.wait_with_output().expect("prune"),
            )
        } else {
            let r = requeue.spawn().expect("spawn requeue");
            pause();
            let p = prune.spawn().expect("spawn prune");
            (
                r.wait_with_output().expect("requeue"),
                p.wait_with_output().expect("prune"),
            )
        };
        let ctx = format!(
            "round {round} offset {offset}\nrequeue: {:?} {}{}\nprune: {:?} {}{}",
            rq.status.code(),
            text(&rq.stdout),
            text(&rq.stderr),
            pr.status.code(),
            text(&pr.stdout),
            text(&pr.stderr)
        );
        assert_eq!(pr.status.code(), Some(0), "{ctx}");
        // Never a hidden half-deleted tree left, in any state.
        for s in State::ALL {
            let hidden: Vec<_> = tree(&layout.state_dir(s))
                .into_iter()
                .filter(|n| n.starts_with(".deleting"))
                .collect();
            assert!(hidden.is_empty(), "{hidden:?}\n{ctx}");
        }
        let prune_won_now = layout.locate(&id).is_none();
        match layout.locate(&id) {
            Some(state @ (State::Shipped | State::Outbox)) => {
                requeue_won += 1;
                shipped.push(format!("{}/{id}", h.host));
                assert_eq!(rq.status.code(), Some(0), "{ctx}");
                assert_eq!(state, State::Shipped, "{ctx}");
                let dir = layout.episode_dir(state, &id);
                let frames = fs::read_dir(dir.join("frames")).expect("frames").count();
                assert_eq!(frames, FILES, "a partial tree: {ctx}");
                assert!(dir.join(layout::DONE_MARKER).is_file(), "{ctx}");
                assert!(layout.sidecar(State::Shipped, &id).is_file(), "{ctx}");
            }
            None => {
                prune_won += 1;
                assert_ne!(rq.status.code(), Some(0), "{ctx}");
                let err = text(&rq.stderr);
                assert!(
                    err.contains("pruned already") || err.contains("locked by another"),
                    "{ctx}"
                );
                assert!(!layout.sidecar(State::Quarantine, &id).exists(), "{ctx}");
                for p in cis490::ship::outbox_artifacts(&layout, &id) {
                    assert!(!p.exists(), "{} left: {ctx}", p.display());
                }
            }
            Some(other) => panic!("neither won: still in {other}/\n{ctx}"),
        }
        step = if last_winner_was_prune == Some(prune_won_now) {
            (step * 2).min(256)
        } else {
            (step / 2).max(2)
        };
        last_winner_was_prune = Some(prune_won_now);
        // Prune won: give the requeue more of a head start, and vice versa.
        offset = if prune_won_now {
            offset + step
        } else {
            offset - step
        };
    }
    assert!(
        prune_won > 0 && requeue_won > 0,
        "prune {prune_won}, requeue {requeue_won}"
    );
    // Exactly one upload, stored, per episode the requeue won; none for the
    // ones prune won.
    let requests = rcv.requests();
    let mut stored: Vec<String> = requests
        .iter()
        .filter(|r| r.status == Some(201))
        .map(|r| r.key.clone())
        .collect();
    stored.sort();
    shipped.sort();
    assert_eq!(stored, shipped, "{requests:?}");
    assert_eq!(requests.len(), requeue_won, "{requests:?}");
    eprintln!("prune won {prune_won}, requeue won {requeue_won}");
}
