//! `ship-scanner` end to end: a real binary, a real HTTP receiver on a real
//! socket, and a real unix datagram socket as `NOTIFY_SOCKET`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{NotifySocket, Proc, Receiver, Site, wait_until};

const SCANNER: &str = env!("CARGO_BIN_EXE_ship-scanner");
const WATCHDOG: Duration = Duration::from_secs(2);
/// Archives this big outgrow the socket buffers between us and the
/// receiver, so that a receiver that stops reading stalls the upload.
const BIG: usize = 8 << 20;

/// The dev receiver with a small socket receive buffer, so that when it stops
/// reading (`stall`) the upload stalls within a few MiB, and the tail of a
/// `slow` upload (bytes already handed to the kernel) stays short.
fn receiver() -> Receiver {
    Receiver::http(&["--recv-buffer", "65536"])
}

/// Write the site's config for `url` with these `[shipper]` lines.
fn config(root: &Site, url: &str, shipper: &str) -> PathBuf {
    root.write_config(&format!("url = \"{url}\""), shipper, "");
    root.config.clone()
}

fn scanner(root: &Site, config: &Path, notify: Option<&NotifySocket>) -> Proc {
    scanner_with_watchdog(root, config, notify, WATCHDOG)
}

fn scanner_with_watchdog(
    root: &Site,
    config: &Path,
    notify: Option<&NotifySocket>,
    watchdog: Duration,
) -> Proc {
    common::spawn(
        SCANNER,
        &["--config", config.to_str().expect("utf-8 path")],
        root.dir.path().join(format!("scanner-{}.log", unique())),
        notify.map(|n| n.path.as_path()),
        notify.map(|_| watchdog),
    )
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn once(config: &Path, root: &Site) -> (i32, Proc) {
    let mut p = common::spawn(
        SCANNER,
        &["--once", "--config", config.to_str().expect("utf-8 path")],
        root.dir.path().join(format!("once-{}.log", unique())),
        None,
        None,
    );
    let status = p
        .wait_timeout(Duration::from_secs(20))
        .expect("--once exits");
    (status.code().expect("exit code"), p)
}

/// The longest silence between consecutive times in `[from, to]`, counting
/// the edges.
fn longest_gap(times: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for t in times.iter().filter(|t| **t >= from && **t <= to) {
        gap = gap.max(t.duration_since(last));
        last = *t;
    }
    gap.max(to.duration_since(last))
}

fn stop(mut p: Proc) -> Proc {
    p.signal(libc::SIGTERM);
    let status = p
        .wait_timeout(Duration::from_secs(8))
        .expect("scanner stops after SIGTERM");
    assert_eq!(status.code(), Some(0), "log:\n{}", p.log_text());
    p
}

#[test]
fn ready_comes_after_the_queue_and_reports_it() {
    let root = Site::bare();
    let rcv = receiver();
    // Two outbox entries waiting for a retry an hour from now, and one ready.
    for id in ["ob-1", "ob-2"] {
        root.episode("outbox", id, 100, false);
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 3600;
        std::fs::write(
            root.state_dir("outbox").join(format!("{id}.retry.json")),
            format!(r#"{{"attempts":3,"next_attempt_at":{at},"last_error":"HTTP 503"}}"#),
        )
        .expect("retry file");
    }
    root.episode("episodes", "new-1", 100, true);
    root.episode("episodes", "recording", 100, false);
    let config = config(&root, &rcv.url, "scan_interval_s = 0.2");
    let notify = NotifySocket::bind(root.dir.path());
    let p = scanner(&root, &config, Some(&notify));

    let (ready_at, ready) = notify
        .wait_for("READY=1", Duration::from_secs(10))
        .expect("READY=1");
    // READY=1 carries the status of the queue that was built before it.
    assert!(
        ready.contains("STATUS=3 pending (1 ready, 2 in outbox)"),
        "{ready:?}"
    );
    for state in ["episodes", "outbox", "shipped", "quarantine"] {
        assert!(root.state_dir(state).is_dir(), "{state}/ created");
    }
    // Nothing was shipped before READY=1: the first pass comes after it.
    let first_hit = wait_until(Duration::from_secs(5), || !rcv.requests().is_empty());
    assert!(first_hit);
    assert!(
        rcv.requests()[0].at > ready_at,
        "an upload started before READY=1"
    );
    let beats = notify.times_of("WATCHDOG=1");
    assert!(beats.iter().all(|t| *t > ready_at));
    // The ready one ships; the outbox waits for its retry time.
    assert!(wait_until(Duration::from_secs(5), || {
        root.names("shipped").contains(&"new-1".to_string())
    }));
    assert!(wait_until(Duration::from_secs(3), || {
        notify
            .last_status()
            .is_some_and(|s| s.starts_with("2 pending (0 ready, 2 in outbox), next retry in 3"))
    }));
    assert_eq!(rcv.requests().len(), 1, "outbox entries were not due");
    stop(p);
    let stopping = notify.wait_for("STOPPING=1", Duration::from_secs(2));
    assert!(stopping.is_some());
}

#[test]
fn unusable_data_root_fails_clearly_without_ready() {
    let root = Site::bare();
    // data_root is a regular file: no state directory can be created.
    std::fs::write(root.data(), b"not a directory").expect("write");
    let config = config(&root, "http://127.0.0.1:9", "scan_interval_s = 0.2");
    let notify = NotifySocket::bind(root.dir.path());
    let mut p = scanner(&root, &config, Some(&notify));
    let status = p.wait_timeout(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(74), "log:\n{}", p.log_text());
    assert!(p.log_text().contains("cannot create"), "{}", p.log_text());
    assert!(notify.times_of("READY=1").is_empty());
}

#[test]
fn watchdog_every_pass_and_through_a_failing_pass() {
    let root = Site::bare();
    let rcv = receiver();
    let config = config(&root, &rcv.url, "scan_interval_s = 0.2");
    let notify = NotifySocket::bind(root.dir.path());
    let p = scanner(&root, &config, Some(&notify));
    let (ready_at, _) = notify
        .wait_for("READY=1", Duration::from_secs(10))
        .expect("READY=1");
    std::thread::sleep(Duration::from_millis(1200));
    let beats = notify.times_of("WATCHDOG=1").len();
    // 1.2 s at 0.2 s per pass: about 6 passes, one beat each.
    assert!((4..=8).contains(&beats), "{beats} beats in 1.2 s");
    assert_eq!(
        notify.last_status().as_deref(),
        Some("idle: nothing pending")
    );

    // A real failure: outbox/ replaced by a file, so listing it fails.
    let outbox = root.state_dir("outbox");
    std::fs::remove_dir(&outbox).expect("rmdir outbox");
    std::fs::write(&outbox, b"oops").expect("file in its place");
    assert!(wait_until(Duration::from_secs(3), || {
        p.log_text().contains("scan pass failed")
    }));
    let failing_since = Instant::now();
    std::thread::sleep(Duration::from_millis(1200));
    let now = Instant::now();
    let beats = notify.times_of("WATCHDOG=1");
    let during = beats.iter().filter(|t| **t >= failing_since).count();
    assert!(during >= 4, "only {during} beats while passes failed");
    assert!(longest_gap(&beats, ready_at, now) < WATCHDOG / 2);

    // Repaired: the next pass works and ships.
    std::fs::remove_file(&outbox).expect("rm");
    root.episode("episodes", "after-repair", 100, true);
    assert!(wait_until(Duration::from_secs(5), || {
        root.names("shipped").contains(&"after-repair".to_string())
    }));
    stop(p);
}

#[test]
fn straggler_is_shipped_within_one_interval() {
    let root = Site::bare();
    let rcv = receiver();
    let config = config(&root, &rcv.url, "scan_interval_s = 1.0");
    // Outside systemd: no NOTIFY_SOCKET, no watchdog.
    let p = scanner(&root, &config, None);
    assert!(wait_until(Duration::from_secs(10), || root
        .state_dir("outbox")
        .is_dir()));
    std::thread::sleep(Duration::from_millis(300));
    // mkdir first, done.marker later: the path unit would never see it.
    let dir = root.state_dir("episodes").join("straggler");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("data.bin"), b"payload").expect("data");
    std::fs::write(dir.join("done.marker"), b"").expect("marker");
    let marked = Instant::now();
    assert!(wait_until(Duration::from_secs(5), || {
        root.names("shipped").contains(&"straggler".to_string())
    }));
    let took = marked.elapsed();
    assert!(
        took < Duration::from_millis(1800),
        "took {took:?} with a 1 s interval"
    );
    assert!(rcv.stored(&root.host, "straggler"));
    stop(p);
}

#[test]
fn a_503_is_retried_after_its_retry_after_then_shipped() {
    let root = Site::bare();
    let rcv = receiver();
    rcv.behave("flaky", "times:1:status:503,retry-after:2");
    root.episode("episodes", "flaky", 1000, true);
    let config = config(&root, &rcv.url, "scan_interval_s = 0.2");
    let notify = NotifySocket::bind(root.dir.path());
    let p = scanner(&root, &config, Some(&notify));
    assert!(wait_until(Duration::from_secs(5), || rcv.requests().len() == 1));
    // A 503 pauses the receiver for this host (issue 10): the status says
    // so, with what is pending.
    assert!(wait_until(Duration::from_secs(3), || {
        notify.last_status().is_some_and(|s| {
            s.starts_with("paused: receiver unavailable (HTTP 503")
                && s.contains("retrying in")
                && s.contains("1 pending (0 ready, 1 in outbox)")
        })
    }));
    assert!(wait_until(Duration::from_secs(10), || {
        root.names("shipped").contains(&"flaky".to_string())
    }));
    let hits = rcv.requests_for(&root.host, "flaky");
    let statuses: Vec<_> = hits.iter().map(|h| h.status).collect();
    assert_eq!(statuses, [Some(503), Some(201)], "no extra attempts");
    let gap = hits[1].at.duration_since(hits[0].end.expect("answered"));
    // Retry-After: 2 is honoured (a floor over the first pause of a row,
    // 1 s), and the scanner wakes for the pause's end.
    assert!(
        gap >= Duration::from_millis(1950) && gap < Duration::from_millis(3500),
        "{gap:?}"
    );
    // The outbox files go right after the rename into shipped/.
    assert!(
        wait_until(Duration::from_secs(2), || root.names("outbox").is_empty()),
        "{:?}",
        root.names("outbox")
    );
    stop(p);
}

/// After a quick retry, a receiver that stays away is probed once per
/// `receiver_probe_interval_s` (the first time 50 to 100 % of it), with one
/// request each time, however many episodes wait; the scanner wakes for
/// each probe rather than on its interval.
#[test]
fn a_receiver_away_is_probed_once_per_interval() {
    let root = Site::bare();
    let rcv = receiver();
    rcv.behave("*", "times:2:status:503");
    for id in ["a", "b", "c", "d"] {
        root.episode("episodes", id, 1000, true);
    }
    let config = config(
        &root,
        &rcv.url,
        "scan_interval_s = 10\nreceiver_probe_interval_s = 5",
    );
    let p = scanner(&root, &config, None);
    assert!(wait_until(Duration::from_secs(20), || {
        root.names("shipped")
            .iter()
            .filter(|n| !n.ends_with(".json"))
            .count()
            == 4
    }));
    let hits = rcv.requests();
    let statuses: Vec<_> = hits.iter().map(|h| h.status).collect();
    assert_eq!(
        statuses,
        [
            Some(503),
            Some(503),
            Some(201),
            Some(201),
            Some(201),
            Some(201)
        ],
        "one probe per pause, then the rest"
    );
    let gaps: Vec<Duration> = hits[..3]
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].end.expect("answered")))
        .collect();
    // Pauses end on a whole second, so each gap is its pause plus up to a
    // second, and well under the 10 s scan interval: the scanner woke for
    // it. The first pause after the quick retry is 50 to 100 % of 5 s.
    assert!(
        gaps[0] >= Duration::from_millis(750) && gaps[0] < Duration::from_millis(2300),
        "the quick retry: {gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(2400) && gaps[1] < Duration::from_millis(6300),
        "a probe after 2.5 to 5 s: {gaps:?}"
    );
    // The oldest episode was the first try and the probe that got through
    // (the quick retry may go to another when a's own retry time is a
    // second later than the pause's end).
    assert!(
        hits[0].key.ends_with("/a") && hits[2].key.ends_with("/a"),
        "{hits:?}"
    );
    stop(p);
}

#[test]
fn a_401_pauses_the_queue_without_quarantining() {
    let root = Site::bare();
    let rcv = receiver();
    rcv.behave("*", "status:401");
    for id in ["a", "b", "c"] {
        root.episode("episodes", id, 1000, true);
    }
    let config = config(&root, &rcv.url, "scan_interval_s = 0.2");
    let notify = NotifySocket::bind(root.dir.path());
    let p = scanner(&root, &config, Some(&notify));
    assert!(wait_until(Duration::from_secs(5), || !rcv
        .requests()
        .is_empty()));
    assert!(wait_until(Duration::from_secs(3), || {
        notify.last_status().is_some_and(|s| {
            s.starts_with("paused: receiver refused this host (HTTP 401); retrying in")
                && s.contains("3 pending")
                && s.contains("bearer_token")
        })
    }));
    std::thread::sleep(Duration::from_secs(2));
    // About 13 passes went by; one request per pause, not one per episode
    // per pass (pauses of ~1 s then ~2 s).
    let hits = rcv.requests().len();
    assert!((1..=3).contains(&hits), "{hits} requests in ~2.5 s");
    assert!(root.names("quarantine").is_empty());
    let log = p.log_text();
    assert!(log.contains("all uploads paused"), "{log}");
    assert!(log.contains("bearer_token"), "the fix is logged: {log}");
    // Heartbeats go on while paused.
    let beats = notify.times_of("WATCHDOG=1");
    let now = Instant::now();
    assert!(longest_gap(&beats, now - Duration::from_secs(2), now) < WATCHDOG / 2);

    // Token fixed on the receiver side: everything ships after the pause.
    rcv.behave("*", "normal");
    assert!(wait_until(Duration::from_secs(8), || {
        root.names("shipped")
            .iter()
            .filter(|n| !n.ends_with(".json"))
            .count()
            == 3
    }));
    assert!(p.log_text().contains("uploads resumed"));
    stop(p);
}

#[test]
fn once_has_the_exit_codes_of_ship_episode() {
    let root = Site::bare();
    let rcv = receiver();
    let config = config(&root, &rcv.url, "");
    assert_eq!(once(&config, &root).0, 0, "nothing to do");

    root.episode("episodes", "e1", 100, true);
    rcv.behave("e1", "once:status:503");
    let (code, p) = once(&config, &root);
    assert_eq!(code, 75, "{}", p.log_text());
    assert_eq!(root.names("outbox"), ["e1", "e1.retry.json", "e1.tar.gz"]);

    // The 503 paused the receiver for this host: a pass sends nothing
    // until the pause is over.
    wait_out_receiver_pause(&root);
    root.episode("episodes", "e2", 100, true);
    rcv.behave("*", "status:401");
    let (code, p) = once(&config, &root);
    assert_eq!(code, 78, "{}", p.log_text());
    assert!(p.stdout_text().contains("fix:"), "{}", p.stdout_text());
    assert!(root.names("quarantine").is_empty());

    // Both due now (e1 after its retry time, e2 after the host error).
    let retry = std::fs::read_to_string(root.state_dir("outbox").join("e1.retry.json")).expect("r");
    let retry: serde_json::Value = serde_json::from_str(&retry).expect("json");
    let due = retry["next_attempt_at"].as_u64().expect("due");
    assert!(wait_until(Duration::from_secs(5), || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .is_ok_and(|d| d.as_secs() >= due)
    }));
    wait_out_receiver_pause(&root);
    rcv.behave("*", "status:400");
    let (code, p) = once(&config, &root);
    assert_eq!(code, 65, "{}", p.log_text());
    assert_eq!(root.names("quarantine"), ["e1", "e1.json", "e2", "e2.json"]);
}

#[test]
fn heartbeats_stop_when_an_upload_stalls() {
    let root = Site::bare();
    let rcv = receiver();
    rcv.behave("big", "once:stall");
    root.episode("episodes", "big", BIG, true);
    // The transport's own stall timeout is longer than the watchdog here, so
    // the watchdog is what must notice.
    let config = config(
        &root,
        &rcv.url,
        "scan_interval_s = 0.2\nrequest_timeout_s = 30\ngzip_level = 0",
    );
    let notify = NotifySocket::bind(root.dir.path());
    let p = scanner(&root, &config, Some(&notify));
    assert!(wait_until(Duration::from_secs(10), || !rcv
        .requests()
        .is_empty()));
    std::thread::sleep(WATCHDOG + Duration::from_secs(1));
    let beats = notify.times_of("WATCHDOG=1");
    let silent = beats.last().map(|t| t.elapsed()).unwrap_or_default();
    assert!(
        silent > WATCHDOG,
        "last WATCHDOG=1 only {silent:?} ago: a stalled upload must not feed the watchdog"
    );
    // Still stuck in the upload, not shipped.
    assert!(root.names("shipped").is_empty());
    stop(p);
}

#[test]
fn heartbeats_go_on_during_a_slow_but_moving_upload() {
    let root = Site::bare();
    let rcv = receiver();
    // 16 MiB read at 3 MiB/s: over 5 s, longer than the 3 s watchdog.
    rcv.behave("slow", "once:slow:3M");
    root.episode("episodes", "slow", 2 * BIG, true);
    let config = config(
        &root,
        &rcv.url,
        "scan_interval_s = 0.2\nrequest_timeout_s = 30\ngzip_level = 0",
    );
    let watchdog = Duration::from_secs(3);
    let notify = NotifySocket::bind(root.dir.path());
    let p = scanner_with_watchdog(&root, &config, Some(&notify), watchdog);
    assert!(wait_until(Duration::from_secs(20), || {
        root.names("shipped").contains(&"slow".to_string())
    }));
    let hit = rcv.requests_for(&root.host, "slow").pop().expect("hit");
    let (start, end) = (hit.at, hit.end.expect("answered"));
    assert!(end - start > watchdog, "upload took only {:?}", end - start);
    let beats = notify.times_of("WATCHDOG=1");
    let during = beats.iter().filter(|t| **t > start && **t < end).count();
    assert!(during >= 4, "only {during} WATCHDOG=1 in {:?}", end - start);
    // The longest silence is the tail: once the last byte is handed to the
    // kernel nothing moves in our process while the receiver drains the
    // socket buffers (up to ~4 MiB on loopback, ~1.4 s at this rate).
    let gap = longest_gap(&beats, start, end);
    assert!(
        gap < watchdog,
        "{gap:?} without WATCHDOG=1 during the upload"
    );
    stop(p);
}

#[test]
fn sigterm_during_an_upload_leaves_it_in_the_outbox_and_a_restart_ships_it() {
    let root = Site::bare();
    let rcv = receiver();
    rcv.behave("cut", "once:stall");
    root.episode("episodes", "cut", BIG, true);
    let config = config(
        &root,
        &rcv.url,
        "scan_interval_s = 0.2\nrequest_timeout_s = 30\ngzip_level = 0",
    );
    let notify = NotifySocket::bind(root.dir.path());
    let mut p = scanner(&root, &config, Some(&notify));
    assert!(wait_until(Duration::from_secs(10), || !rcv
        .requests()
        .is_empty()));
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    p.signal(libc::SIGTERM);
    let status = p.wait_timeout(Duration::from_secs(5)).expect("stops");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(0), "{}", p.log_text());
    assert!(
        notify
            .wait_for("STOPPING=1", Duration::from_secs(1))
            .is_some()
    );

    // Exactly one state: the outbox, with its complete staged archive.
    assert!(root.names("episodes").is_empty());
    assert!(root.names("shipped").is_empty());
    assert!(root.names("quarantine").is_empty());
    let outbox = root.names("outbox");
    assert!(outbox.contains(&"cut".to_string()), "{outbox:?}");
    assert!(
        outbox
            .iter()
            .all(|n| ["cut", "cut.tar.gz", "cut.retry.json"].contains(&n.as_str())),
        "leftovers: {outbox:?}"
    );
    assert!(
        root.state_dir("episodes")
            .join("..")
            .join("outbox/cut/done.marker")
            .is_file()
    );

    // A restart finishes the job with the same archive.
    let archive_len = std::fs::metadata(root.state_dir("outbox").join("cut.tar.gz"))
        .expect("staged archive")
        .len();
    let p = scanner(&root, &config, None);
    assert!(wait_until(Duration::from_secs(10), || {
        root.names("shipped").contains(&"cut".to_string())
    }));
    assert_eq!(rcv.stored_len(&root.host, "cut"), Some(archive_len));
    // The outbox files go right after the rename into shipped/.
    assert!(
        wait_until(Duration::from_secs(2), || root.names("outbox").is_empty()),
        "{:?}",
        root.names("outbox")
    );
    stop(p);
}

/// Wait until the receiver pause on disk (if any) is over.
fn wait_out_receiver_pause(root: &Site) {
    let file = cis490::ship::pause_file(&root.data());
    let Ok(text) = std::fs::read_to_string(&file) else {
        return;
    };
    let pause: serde_json::Value = serde_json::from_str(&text).expect("pause json");
    let until = pause["until"].as_u64().expect("until");
    assert!(wait_until(Duration::from_secs(10), || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .is_ok_and(|d| d.as_secs() >= until)
    }));
}
