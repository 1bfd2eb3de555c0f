//! Back off the receiver, not each episode (issue 10): one answer that
//! says the receiver is overloaded, failing, silent or unreachable pauses
//! every upload of this host, and the pause is shared by `ship-episode` and
//! the scanner. Real binaries against the real dev receiver.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;

const SCANNER: &str = env!("CARGO_BIN_EXE_ship-scanner");

fn pause_of(site: &Site) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(cis490::ship::pause_file(&site.data())).ok()?;
    Some(serde_json::from_str(&text).expect("pause json"))
}

fn total_puts(rcv: &Receiver, site: &Site, ids: &[&str]) -> u64 {
    ids.iter().map(|id| rcv.puts(&site.host, id)).sum()
}

#[test]
fn a_503_with_retry_after_pauses_the_whole_backlog() {
    let rcv = Receiver::http(&["--behave", "*=status:503,retry-after:600"]);
    let site = Site::new(&rcv.url);
    let ids = ["b1", "b2", "b3", "b4", "b5"];
    for id in ids {
        site.add_episode(id, &[("data.bin", &noise(50_000, 1))]);
    }
    let before = now();
    let out = site.ship(&[]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert_eq!(total_puts(&rcv, &site, &ids), 1, "one upload, not a burst");
    for id in ids {
        assert_eq!(site.where_is(id), Some("outbox"), "{id}");
    }
    let pause = pause_of(&site).expect("the pause is on disk");
    let until = pause["until"].as_u64().expect("until");
    assert!(until >= before + 600, "Retry-After is a floor: {pause}");
    assert_eq!(pause["status"], 503);

    // The path unit's next run, for a new episode: claimed, not uploaded.
    site.add_episode("b6", &[("x", b"x")]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert_eq!(site.where_is("b6"), Some("outbox"));
    assert_eq!(
        total_puts(&rcv, &site, &ids) + rcv.puts(&site.host, "b6"),
        1
    );
    assert!(stderr(&out).contains("paused"), "{}", stderr(&out));
    assert!(site.names("quarantine").is_empty());
}

#[test]
fn a_silent_receiver_costs_one_stall_per_run() {
    let rcv = Receiver::http(&["--behave", "*=stall", "--recv-buffer", "65536"]);
    let site = site_with(&rcv.url, "request_timeout_s = 2");
    let ids = ["s1", "s2", "s3", "s4"];
    for id in ids {
        site.add_episode(id, &[("data.bin", &noise(4 << 20, 2))]);
    }
    let out = site.ship(&[]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert_eq!(rcv.requests().len(), 1, "{:?}", rcv.requests());
    for id in ids {
        assert_eq!(site.where_is(id), Some("outbox"), "{id}");
    }
    assert!(pause_of(&site).is_some());
}

#[test]
fn no_connection_pauses_and_keeps_everything() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let site = Site::new(&format!("http://127.0.0.1:{port}"));
    for id in ["c1", "c2", "c3"] {
        site.add_episode(id, &[("x", id.as_bytes())]);
    }
    let out = site.ship(&[]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    for id in ["c1", "c2", "c3"] {
        assert_eq!(site.where_is(id), Some("outbox"), "{id}");
    }
    // Only the first was tried: it alone has a failed attempt.
    assert_eq!(site.retry_state("c1")["attempts"], 1);
    for id in ["c2", "c3"] {
        let retry = site.state_dir("outbox").join(format!("{id}.retry.json"));
        assert!(!retry.exists(), "{id} was tried");
    }
    let pause = pause_of(&site).expect("paused");
    assert!(pause.get("status").is_none(), "no HTTP answer: {pause}");
    assert_eq!(pause["refused"], false);
}

/// A site for `url` with these `[shipper]` lines, state directories made.
fn site_with(url: &str, shipper: &str) -> Site {
    let site = Site::bare();
    site.write_config(&format!("url = \"{url}\""), shipper, "");
    site.make_state_dirs();
    site
}

fn scanner(site: &Site) -> Proc {
    spawn(
        SCANNER,
        &["--config", site.config.to_str().expect("utf-8")],
        site.dir.path().join("scanner.log"),
        None,
        None,
    )
}

fn stop(mut p: Proc) {
    p.signal(libc::SIGTERM);
    p.wait_timeout(Duration::from_secs(10)).expect("stops");
}

#[test]
fn the_scanner_sends_nothing_during_a_pause_then_one_probe() {
    let rcv = Receiver::http(&["--behave", "*=once:status:503,retry-after:3"]);
    let site = site_with(&rcv.url, "scan_interval_s = 0.2");
    let ids = ["p1", "p2", "p3", "p4"];
    for id in ids {
        site.add_episode(id, &[("x", id.as_bytes())]);
    }
    let p = scanner(&site);
    assert!(
        wait_until(Duration::from_secs(20), || ids
            .iter()
            .all(|id| site.where_is(id) == Some("shipped"))),
        "{}",
        p.log_text()
    );
    let log = rcv.requests();
    assert_eq!(log.len(), ids.len() + 1, "{log:?}");
    let (first, probe) = (&log[0], &log[1]);
    assert_eq!(first.status, Some(503));
    let quiet = probe.at.duration_since(first.at);
    assert!(
        quiet >= Duration::from_millis(2900),
        "nothing sent during the pause: {quiet:?}"
    );
    // The probe went alone: the next request started after it was answered.
    let probe_end = probe.end.expect("answered");
    assert!(log[2].at >= probe_end, "{log:?}");
    assert!(p.log_text().contains("uploads resumed"), "{}", p.log_text());
    assert!(pause_of(&site).is_none(), "lifted");
    stop(p);
}

#[test]
fn a_poisoned_episode_does_not_hold_the_queue() {
    let rcv = Receiver::http(&["--behave", "a-poison=status:500"]);
    let site = site_with(&rcv.url, "scan_interval_s = 0.2");
    site.add_episode("a-poison", &[("x", b"poison")]);
    let p = scanner(&site);
    // The poison fails first; episodes recorded meanwhile keep shipping.
    assert!(wait_until(Duration::from_secs(5), || rcv
        .puts(&site.host, "a-poison")
        >= 1));
    let started = Instant::now();
    let mut shipped = Vec::new();
    for n in 0..6 {
        let id = format!("b-{n}");
        site.add_episode(&id, &[("x", id.as_bytes())]);
        assert!(
            wait_until(Duration::from_secs(8), || site.where_is(&id)
                == Some("shipped")),
            "{id} held back by the poisoned episode: {}",
            p.log_text()
        );
        shipped.push(id);
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(started.elapsed() < Duration::from_secs(40));
    assert_eq!(site.where_is("a-poison"), Some("outbox"));
    // Its own backoff grows: each failure schedules the next attempt
    // further out (the seed's 1, 2, 4... s, jittered).
    let log_text = p.log_text();
    let delays: Vec<f64> = log_text
        .lines()
        .filter(|l| l.contains("a-poison: retry"))
        .filter_map(|l| l.split("next attempt in ").nth(1))
        .filter_map(|rest| rest.split('s').next()?.parse().ok())
        .collect();
    assert!(delays.len() >= 3, "{delays:?}\n{log_text}");
    assert!(delays.last() > delays.first(), "{delays:?}");
    let attempts = site.retry_state("a-poison")["attempts"]
        .as_u64()
        .expect("attempts");
    assert!(attempts >= 3, "{attempts}");
    // A probe after a pause was another episode at least once.
    let log = rcv.requests();
    let probes_by_others = log
        .windows(2)
        .filter(|w| w[0].key.ends_with("/a-poison") && !w[1].key.ends_with("/a-poison"))
        .count();
    assert!(probes_by_others >= 1, "{log:?}");
    assert!(site.names("quarantine").is_empty());
    stop(p);
}
