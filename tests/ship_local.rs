//! `ship-episode`'s local side: what it reads from an episode (links, odd
//! files, unreadable ones), which entries it takes or sets aside, and how
//! each episode stays in exactly one state under concurrency and `kill -9`.

mod common;

use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn symlink_out_of_episode_is_stored_as_link_not_content() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    let secret = site.dir.path().join("secret.txt");
    std::fs::write(&secret, b"TOP-SECRET-CONTENT").expect("secret");
    let outside_dir = site.dir.path().join("outside");
    std::fs::create_dir(&outside_dir).expect("mkdir");
    std::fs::write(outside_dir.join("inner.txt"), b"TOP-SECRET-CONTENT").expect("w");
    let ep = site.add_episode("links", &[("real.txt", b"real")]);
    symlink(&secret, ep.join("leak")).expect("symlink");
    symlink(&outside_dir, ep.join("leakdir")).expect("symlink");
    symlink("/etc/shadow", ep.join("shadow")).expect("symlink");
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let entries = rcv.entries(&site.host, "links");
    for (path, kind, content) in &entries {
        assert!(
            !String::from_utf8_lossy(content).contains("TOP-SECRET"),
            "{path} leaked content"
        );
        if path.ends_with("leak") || path.ends_with("leakdir") || path.ends_with("shadow") {
            assert_eq!(*kind, tar::EntryType::Symlink, "{path}");
        }
    }
    assert!(!entries.iter().any(|e| e.0.contains("inner.txt")));
}

#[test]
fn fifo_socket_and_odd_names_do_not_hang() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    let ep = site.add_episode(
        "odd",
        &[("ok.txt", b"ok"), ("naïve name with spaces\t.txt", b"x")],
    );
    let fifo = ep.join("pipe");
    let c = std::ffi::CString::new(fifo.display().to_string()).expect("cstr");
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let _sock = std::os::unix::net::UnixListener::bind(ep.join("sock")).expect("socket");
    let out = site.ship_with_timeout(&[], Duration::from_secs(20));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("fifo"), "{}", stderr(&out));
    let names: Vec<String> = rcv
        .entries(&site.host, "odd")
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(
        names.contains(&"odd/naïve name with spaces\t.txt".to_string()),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("pipe") || n.ends_with("sock"))
    );
}

#[test]
fn unreadable_file_keeps_episode_for_retry() {
    if unsafe { libc::geteuid() } == 0 {
        // Root reads everything; simulate with a directory we cannot list
        // instead: chmod does not bind root either, so use a dangling
        // entry type that open() refuses: a file replaced by a directory
        // is covered elsewhere. Exercise the non-root path via runuser.
        run_unreadable_as_nobody();
        return;
    }
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    let ep = site.add_episode("locked", &[("secret.bin", b"x")]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        ep.join("secret.bin"),
        std::fs::Permissions::from_mode(0o000),
    )
    .expect("chmod");
    let out = site.ship(&[]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert_eq!(site.where_is("locked"), Some("outbox"));
    let err = site.retry_state("locked")["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("secret.bin") && err.contains("permission"),
        "{err}"
    );
}

/// As root, run ship-episode as `nobody` over a world-writable data root
/// with one file only root can read.
fn run_unreadable_as_nobody() {
    use std::os::unix::fs::PermissionsExt;
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    let ep = site.add_episode("locked", &[("secret.bin", b"x")]);
    std::fs::set_permissions(
        ep.join("secret.bin"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let open = std::fs::Permissions::from_mode(0o777);
    for p in [site.dir.path().to_path_buf(), site.data()] {
        std::fs::set_permissions(&p, open.clone()).expect("chmod");
    }
    for s in ["episodes", "outbox", "shipped", "quarantine"] {
        std::fs::set_permissions(site.state_dir(s), open.clone()).expect("chmod");
    }
    std::fs::set_permissions(&ep, open.clone()).expect("chmod");
    std::fs::set_permissions(&site.config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", SHIP_EPISODE, "--config"])
        .arg(&site.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("runuser");
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert_eq!(site.where_is("locked"), Some("outbox"));
    let err = site.retry_state("locked")["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("secret.bin") && err.contains("ermission"),
        "{err}"
    );
}

#[test]
fn requeue_moves_quarantined_back_and_ships() {
    let rcv = Receiver::http(&["--behave", "rq=once:status:412"]);
    let site = Site::new(&rcv.url);
    site.add_episode("rq", &[("x", b"x")]);
    assert_eq!(code(&site.ship(&[])), 65);
    assert_eq!(site.where_is("rq"), Some("quarantine"));
    // Named without --requeue: refused with a hint, nothing moves.
    let out = site.ship(&["rq"]);
    assert_eq!(site.where_is("rq"), Some("quarantine"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--requeue"));
    let out = site.ship(&["--requeue", "rq"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(site.where_is("rq"), Some("shipped"));
    assert!(!site.state_dir("quarantine").join("rq.json").exists());
    // Requeue of something not in quarantine is a clear error.
    let out = site.ship(&["--requeue", "nope"]);
    assert_eq!(code(&out), 66);
    assert!(stderr(&out).contains("nope"));
}

#[test]
fn named_targets_ids_and_paths() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    site.add_episode("n1", &[("x", b"1")]);
    let p2 = site.add_episode("n2", &[("x", b"2")]);
    site.add_episode("n3", &[("x", b"3")]);
    let out = site.ship(&["n1", &p2.display().to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(site.where_is("n1"), Some("shipped"));
    assert_eq!(site.where_is("n2"), Some("shipped"));
    assert_eq!(
        site.where_is("n3"),
        Some("episodes"),
        "not named, not touched"
    );
    assert_eq!(code(&site.ship(&["does-not-exist"])), 66);
    assert_eq!(code(&site.ship(&["/etc/passwd"])), 64);
    assert_eq!(code(&site.ship(&["../x"])), 64);
}

#[test]
fn not_ready_is_left_and_unshippable_ready_entries_are_set_aside() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    let eps = site.state_dir("episodes");
    std::fs::create_dir(eps.join("recording")).expect("mkdir");
    // Each of these matches the path unit's glob episodes/*/done.marker but
    // can never be shipped: left in place, it would re-trigger forever.
    let bad = eps.join("bad.tar.gz");
    std::fs::create_dir(&bad).expect("mkdir");
    std::fs::write(bad.join("done.marker"), b"").expect("marker");
    let elsewhere = site.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    std::fs::write(elsewhere.join("done.marker"), b"").expect("marker");
    std::fs::write(elsewhere.join("private.txt"), b"not ours").expect("write");
    symlink(&elsewhere, eps.join("linked")).expect("symlink");
    std::fs::create_dir_all(eps.join("dm/done.marker")).expect("mkdir");
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        site.where_is("recording"),
        Some("episodes"),
        "not ready: untouched"
    );
    let names: Vec<String> = std::fs::read_dir(&eps)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for gone in ["bad.tar.gz", "linked", "dm"] {
        assert!(
            !names.contains(&gone.to_string()),
            "{gone} still matches the glob: {names:?}"
        );
        assert!(
            names.contains(&format!(".rejected-{gone}")),
            "{gone} lost: {names:?}"
        );
    }
    // The symlink was moved, not followed: its target is intact and unshipped.
    assert!(elsewhere.join("private.txt").is_file());
    assert_eq!(rcv.stats()["stored"].as_array().map(Vec::len), Some(0));
    assert!(stderr(&out).contains("set aside"), "{}", stderr(&out));
    // Nothing is left for the glob: a second run has nothing to do.
    let again = site.ship(&[]);
    assert!(!stderr(&again).contains("set aside"), "{}", stderr(&again));
}

#[test]
fn config_errors_exit_78_with_one_line() {
    let site = Site::new("http://127.0.0.1:9");
    std::fs::write(
        &site.config,
        std::fs::read_to_string(&site.config).expect("config")
            + "[retention]\nquarantine_keep_dayz = 5\n",
    )
    .expect("write");
    let out = site.ship(&[]);
    assert_eq!(code(&out), 78);
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("retention.quarantine_keep_dayz"), "{err}");
    assert!(err.contains(&site.config.display().to_string()), "{err}");

    let out = Command::new(SHIP_EPISODE)
        .args(["--config", "/nonexistent/lab-host.toml"])
        .output()
        .expect("run");
    assert_eq!(code(&out), 78);
    assert!(stderr(&out).contains("/nonexistent/lab-host.toml"));

    // CIS490_CONFIG is honoured.
    let out = Command::new(SHIP_EPISODE)
        .env("CIS490_CONFIG", "/nonexistent/env.toml")
        .output()
        .expect("run");
    assert!(
        stderr(&out).contains("/nonexistent/env.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn two_concurrent_shippers_ship_each_episode_once() {
    let rcv = Receiver::http(&["--behave", "*=slow:8M"]);
    let site = Site::new(&rcv.url);
    let ids: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        site.add_episode(id, &[("data.bin", &noise(300_000, i as u64 + 1))]);
    }
    let spawn = || {
        Command::new(SHIP_EPISODE)
            .arg("--config")
            .arg(&site.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let (oa, ob) = (
        wait_with_limit(a, Duration::from_secs(60)),
        wait_with_limit(b, Duration::from_secs(60)),
    );
    assert_eq!(code(&oa), 0, "{}", stderr(&oa));
    assert_eq!(code(&ob), 0, "{}", stderr(&ob));
    for id in &ids {
        assert_eq!(site.where_is(id), Some("shipped"), "{id}");
        assert_eq!(rcv.puts(&site.host, id), 1, "{id} uploaded more than once");
    }
}

#[test]
fn kill_9_at_any_point_then_rerun_delivers_exactly_once() {
    let rcv = Receiver::http(&["--behave", "*=slow:16M"]);
    let site = Site::new(&rcv.url);
    let ids: Vec<String> = (0..4).map(|i| format!("k{i}")).collect();
    let mut sources = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let data = noise(2 << 20, 100 + i as u64);
        let text = format!("line {i}\n").repeat(50_000);
        site.add_episode(id, &[("video.bin", &data), ("log.txt", text.as_bytes())]);
        sources.push((data, text));
    }
    // Kill at staggered instants: during claim/pack, upload, and settle.
    for delay_ms in [5u64, 40, 120, 250, 400, 700] {
        let mut child = Command::new(SHIP_EPISODE)
            .arg("--config")
            .arg(&site.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Every episode is in exactly one state.
        for id in &ids {
            let states: Vec<&str> = ["episodes", "outbox", "shipped", "quarantine"]
                .into_iter()
                .filter(|s| site.state_dir(s).join(id).is_dir())
                .collect();
            assert_eq!(
                states.len(),
                1,
                "{id} after kill at {delay_ms} ms: {states:?}"
            );
        }
    }
    // Whatever is in the outbox now is finished by naming it; ready ones by
    // the plain run.
    let out = site.ship(&[]);
    assert!(matches!(code(&out), 0), "{}", stderr(&out));
    let pending: Vec<String> = ids
        .iter()
        .filter(|id| site.where_is(id) == Some("outbox"))
        .cloned()
        .collect();
    if !pending.is_empty() {
        let args: Vec<&str> = pending.iter().map(String::as_str).collect();
        let out = site.ship(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(site.where_is(id), Some("shipped"), "{id}");
        assert!(rcv.stored(&site.host, id), "{id}");
        let stats = rcv.stats();
        let created = stats["responses"][format!("{}/{id}", site.host)]
            .as_array()
            .map(|a| a.iter().filter(|s| s.as_u64() == Some(201)).count())
            .unwrap_or(0);
        assert_eq!(created, 1, "{id} stored {created} times");
        for (path, _, content) in rcv.entries(&site.host, id) {
            if path.ends_with("video.bin") {
                assert_eq!(content, sources[i].0, "{id}");
            }
            if path.ends_with("log.txt") {
                assert_eq!(content, sources[i].1.as_bytes(), "{id}");
            }
        }
    }
    // A crash between settling and cleaning up can leave an archive or a
    // retry file with no episode beside it: the next prune removes those.
    let out = Command::new(QUARANTINE_PRUNE)
        .arg("--config")
        .arg(&site.config)
        .output()
        .expect("prune");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for id in &ids {
        assert_eq!(site.where_is(id), Some("shipped"), "prune kept {id}");
    }
    // No partial archives or stray files remain.
    let leftovers: Vec<_> = std::fs::read_dir(site.state_dir("outbox"))
        .expect("outbox")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn id_reused_twice_stays_in_outbox_with_backoff() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    // Earlier copies of the same id already settled both ways.
    for state in ["shipped", "quarantine"] {
        std::fs::create_dir_all(site.state_dir(state).join("again")).expect("mkdir");
    }
    site.add_episode("again", &[("x", b"third copy")]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(site.state_dir("outbox").join("again").is_dir());
    let retry = site.retry_state("again");
    assert!(
        retry["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("could not move"),
        "{retry}"
    );
    assert!(
        retry["next_attempt_at"].as_u64().unwrap_or(0) > now(),
        "{retry}"
    );
    // The archive is kept with its digest, so the retry does not rebuild.
    assert!(site.state_dir("outbox").join("again.tar.gz").is_file());
    assert_eq!(
        retry["archive_sha256"].as_str().map(str::len),
        Some(64),
        "{retry}"
    );
}
