//! `ship-episode` against a real dev receiver over real sockets: transport,
//! TLS, authentication, and what each answer of the receiver leads to.
//! What it reads from an episode and how its states survive crashes is in
//! `ship_local.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn ships_over_plain_http_with_digest_and_layout() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    site.add_episode(
        "ep-1",
        &[("a.txt", b"hello"), ("sub/b.bin", &noise(100_000, 3))],
    );
    let before = Instant::now();
    let out = site.ship(&[]);
    let after = Instant::now();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(site.where_is("ep-1"), Some("shipped"));
    assert!(rcv.stored(&site.host, "ep-1"));
    // The receiver's request log, on our clock (the scanner tests time
    // retries with it).
    let log = rcv.requests();
    assert_eq!(log.len(), 1, "{log:?}");
    let r = &log[0];
    assert_eq!(r.key, format!("{}/ep-1", site.host));
    assert_eq!(r.status, Some(201));
    assert_eq!(Some(r.bytes), rcv.stored_len(&site.host, "ep-1"));
    let end = r.end.expect("answered");
    assert!(before < r.at && r.at <= end && end < after, "{r:?}");
    let names: Vec<String> = rcv
        .entries(&site.host, "ep-1")
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        names,
        [
            "ep-1",
            "ep-1/a.txt",
            "ep-1/done.marker",
            "ep-1/sub",
            "ep-1/sub/b.bin"
        ]
    );
    let sidecar = site.sidecar("shipped", "ep-1");
    assert_eq!(sidecar["http_status"], 201);
    // Nothing left behind in the outbox.
    let leftovers: Vec<_> = std::fs::read_dir(site.state_dir("outbox"))
        .expect("outbox")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A second run has nothing to do.
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0);
    assert_eq!(rcv.puts(&site.host, "ep-1"), 1);
}

#[test]
fn mutual_tls_accepted_and_rogue_client_refused() {
    let pki = Pki::new();
    let ca = pki.path("ca.pem").display().to_string();
    let rcv = Receiver::https(&pki, &["--client-ca", &ca]);
    // A site trusting `ca`, presenting the client certificate `name`.
    let site_with_cert = |name: &str| {
        Site::with_receiver_toml(
            &format!(
                "url = \"{}\"\nca_bundle = \"{ca}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
                rcv.url,
                pki.path(&format!("{name}.pem")).display(),
                pki.path(&format!("{name}.key")).display()
            ),
            "",
        )
    };
    let good = site_with_cert("client");
    good.add_episode("tls-ok", &[("x", b"x")]);
    let out = good.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(good.where_is("tls-ok"), Some("shipped"));

    // A certificate from another CA: the handshake fails, the episode is
    // kept for retry (never quarantined), and the error says TLS.
    let rogue = site_with_cert("rogue-client");
    rogue.add_episode("tls-rogue", &[("x", b"x")]);
    let out = rogue.ship(&[]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert_eq!(rogue.where_is("tls-rogue"), Some("outbox"));
    assert!(!rcv.stored(&rogue.host, "tls-rogue"));
    let err = rogue.retry_state("tls-rogue")["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("TLS"), "{err}");

    // No client certificate at all: refused too.
    let anon = Site::with_receiver_toml(
        &format!("url = \"{}\"\nca_bundle = \"{ca}\"\n", rcv.url),
        "",
    );
    anon.add_episode("tls-anon", &[("x", b"x")]);
    assert_eq!(code(&anon.ship(&[])), 75);
    assert_eq!(anon.where_is("tls-anon"), Some("outbox"));

    // And a server whose CA we do not trust (built-in roots replaced).
    let other = pki.path("other-ca.pem").display().to_string();
    let wrong_ca = Site::with_receiver_toml(
        &format!("url = \"{}\"\nca_bundle = \"{other}\"\n", rcv.url),
        "",
    );
    wrong_ca.add_episode("tls-untrusted", &[("x", b"x")]);
    assert_eq!(code(&wrong_ca.ship(&[])), 75);
}

#[test]
fn verify_tls_false_connects_with_loud_warning() {
    let pki = Pki::new();
    let rcv = Receiver::https(&pki, &[]);
    let site =
        Site::with_receiver_toml(&format!("url = \"{}\"\nverify_tls = false\n", rcv.url), "");
    site.add_episode("insecure", &[("x", b"x")]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("verify_tls = false"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_status_is_classified() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    // Answers about the episode, shipped in one run.
    let cases: &[(&str, &str, &str)] = &[
        ("q400", "status:400", "quarantine"),
        ("q412", "status:412", "quarantine"),
        ("q413", "status:413", "quarantine"),
        ("q415", "status:415", "quarantine"),
        ("q422", "status:422", "quarantine"),
        ("t408", "status:408", "outbox"),
        ("d409", "status:409", "shipped"),
    ];
    // Answers about the receiver as a whole pause the rest of a run: one
    // run each.
    let host_wide: &[(&str, &str, &str)] = &[
        ("t429", "status:429", "outbox"),
        ("t500", "status:500", "outbox"),
        ("t503", "status:503", "outbox"),
    ];
    for (id, spec, _) in cases.iter().chain(host_wide) {
        rcv.behave(id, spec);
        site.add_episode(id, &[("data.txt", id.as_bytes())]);
    }
    let ids: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let out = site.ship(&ids);
    assert_eq!(
        code(&out),
        75,
        "retry wins over quarantine: {}",
        stderr(&out)
    );
    for (id, _, _) in host_wide {
        assert_eq!(code(&site.ship(&[id])), 75, "{id}");
    }
    for (id, spec, state) in cases.iter().chain(host_wide) {
        assert_eq!(site.where_is(id), Some(*state), "{id} ({spec})");
    }
    let q = site.sidecar("quarantine", "q412");
    assert_eq!(q["http_status"], 412);
    assert!(
        q["reason"].as_str().unwrap_or_default().contains("412"),
        "{q}"
    );
    let r = site.retry_state("t503");
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["last_status"], 503);
    assert!(
        site.state_dir("outbox").join("t503.tar.gz").is_file(),
        "archive kept for retry"
    );
    assert_eq!(site.sidecar("shipped", "d409")["http_status"], 409);
    assert!(
        stderr(&out).contains("OUTCOME=\"duplicate\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn quarantine_only_exits_65_and_records_reason() {
    let rcv = Receiver::http(&["--behave", "late=status:412"]);
    let site = Site::new(&rcv.url);
    site.add_episode("late", &[("x", b"x")]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    let reason = site.sidecar("quarantine", "late")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.starts_with("HTTP 412"), "{reason}");
}

#[test]
fn host_errors_stop_the_run_and_keep_everything_pending() {
    for status in [401, 403, 404, 405] {
        let rcv = Receiver::http(&["--behave", &format!("*=status:{status}")]);
        let site = Site::new(&rcv.url);
        for id in ["a1", "a2", "a3"] {
            site.add_episode(id, &[("x", id.as_bytes())]);
        }
        let out = site.ship(&[]);
        assert_eq!(code(&out), 78, "{status}: {}", stderr(&out));
        // Only the first was tried; all were claimed out of the glob.
        let tried: u64 = ["a1", "a2", "a3"]
            .iter()
            .map(|i| rcv.puts(&site.host, i))
            .sum();
        assert_eq!(tried, 1, "{status}");
        for id in ["a1", "a2", "a3"] {
            assert_eq!(site.where_is(id), Some("outbox"), "{status} {id}");
        }
        let q: Vec<_> = std::fs::read_dir(site.state_dir("quarantine"))
            .expect("q")
            .collect();
        assert!(q.is_empty(), "{status}: nothing may be quarantined");
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
        assert!(text.contains("fix"), "{status}: {text}");
    }
}

#[test]
fn bearer_token_from_file_and_wrong_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    std::fs::write(&good, "s3cr3t-token-value\n").expect("write");
    std::fs::write(&bad, "wrong-token-value\n").expect("write");
    let rcv = Receiver::http(&["--bearer-token-file", &good.display().to_string()]);
    let ok = Site::with_receiver_toml(
        &format!(
            "url = \"{}\"\nbearer_token_file = \"{}\"\n",
            rcv.url,
            good.display()
        ),
        "",
    );
    ok.add_episode("tok", &[("x", b"x")]);
    let out = ok.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let wrong = Site::with_receiver_toml(
        &format!(
            "url = \"{}\"\nbearer_token_file = \"{}\"\n",
            rcv.url,
            bad.display()
        ),
        "",
    );
    wrong.add_episode("tok2", &[("x", b"x")]);
    let out = wrong.ship(&[]);
    assert_eq!(code(&out), 78);
    assert_eq!(wrong.where_is("tok2"), Some("outbox"));
    let all = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
    assert!(all.contains("bearer_token"), "{all}");
    assert!(!all.contains("wrong-token-value"), "secret leaked: {all}");
}

#[test]
fn retry_after_is_honoured() {
    let rcv = Receiver::http(&["--behave", "busy=status:503,retry-after:600"]);
    let site = Site::new(&rcv.url);
    site.add_episode("busy", &[("x", b"x")]);
    let before = now();
    assert_eq!(code(&site.ship(&[])), 75);
    let next = site.retry_state("busy")["next_attempt_at"]
        .as_u64()
        .expect("next_attempt_at");
    assert!(
        next >= before + 600,
        "next {next} before+600 {}",
        before + 600
    );
}

#[test]
fn transient_then_recovery_reuses_archive() {
    let rcv = Receiver::http(&["--behave", "flaky=once:status:503"]);
    let site = Site::new(&rcv.url);
    site.add_episode("flaky", &[("x", &noise(50_000, 9))]);
    assert_eq!(code(&site.ship(&[])), 75);
    assert!(site.state_dir("outbox").join("flaky.tar.gz").is_file());
    // Change the episode behind the shipper's back: a retry that reused
    // the staged archive still sends the original content.
    std::fs::write(site.state_dir("outbox").join("flaky/x"), b"changed").expect("write");
    // Explicitly named: shipped now, whatever its retry time.
    let out = site.ship(&["flaky"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(site.where_is("flaky"), Some("shipped"));
    assert_eq!(rcv.puts(&site.host, "flaky"), 2);
    assert!(!site.state_dir("outbox").join("flaky.tar.gz").exists());
    let entries = rcv.entries(&site.host, "flaky");
    let x = entries
        .iter()
        .find(|e| e.0 == "flaky/x")
        .expect("x in archive");
    assert_eq!(
        x.2,
        noise(50_000, 9),
        "retry recompressed instead of reusing"
    );
}

#[test]
fn early_answer_is_classified_by_status() {
    let rcv = Receiver::http(&["--behave", "early=close-early:400"]);
    let site = Site::new(&rcv.url);
    // Big enough that the body is still being sent when the answer comes.
    site.add_episode("early", &[("video.bin", &noise(24 << 20, 5))]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert_eq!(site.where_is("early"), Some("quarantine"));
    assert_eq!(site.sidecar("quarantine", "early")["http_status"], 400);
}

#[test]
fn stalled_receiver_times_out_as_transient() {
    let rcv = Receiver::http(&["--behave", "stuck=stall"]);
    let site = Site::with_receiver_toml(&format!("url = \"{}\"\n", rcv.url), "");
    std::fs::write(
        &site.config,
        std::fs::read_to_string(&site.config)
            .expect("config")
            .replace("request_timeout_s = 10", "request_timeout_s = 2"),
    )
    .expect("config");
    site.add_episode("stuck", &[("video.bin", &noise(16 << 20, 6))]);
    let out = site.ship_with_timeout(&[], Duration::from_secs(30));
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    let err = site.retry_state("stuck")["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("stalled"), "{err}");
}

#[test]
fn unreachable_receiver_is_transient() {
    // Bind and drop to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let site = Site::new(&format!("http://127.0.0.1:{port}"));
    site.add_episode("nobody", &[("x", b"x")]);
    assert_eq!(code(&site.ship(&[])), 75);
    assert_eq!(site.where_is("nobody"), Some("outbox"));
}

#[test]
fn conflict_is_duplicate_only_for_the_same_content() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    let forget = |id: &str| {
        // As if prune had removed the shipped copy after keep_local_for_days.
        std::fs::remove_dir_all(site.state_dir("shipped").join(id)).expect("rm");
        std::fs::remove_file(site.state_dir("shipped").join(format!("{id}.json"))).expect("rm");
    };
    // Deterministic archives: identical files and mtimes give identical bytes.
    let ep = site.add_episode("same", &[("x", b"one")]);
    let mtime = std::fs::metadata(ep.join("x"))
        .expect("meta")
        .modified()
        .expect("mtime");
    assert_eq!(code(&site.ship(&[])), 0);
    forget("same");
    let ep = site.add_episode("same", &[("x", b"one")]);
    for f in ["x", "done.marker"] {
        let file = std::fs::File::options()
            .write(true)
            .open(ep.join(f))
            .expect("open");
        file.set_modified(mtime).expect("set mtime");
    }
    std::fs::File::open(&ep)
        .expect("open dir")
        .set_modified(mtime)
        .expect("set dir mtime");
    let out = site.ship(&[]);
    // Same bytes again (a crash after the upload looks like this): duplicate.
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(site.where_is("same"), Some("shipped"));
    assert!(stderr(&out).contains("duplicate"), "{}", stderr(&out));

    site.add_episode("reused", &[("x", b"first recording")]);
    assert_eq!(code(&site.ship(&[])), 0);
    forget("reused");
    site.add_episode("reused", &[("x", b"a different recording")]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert_eq!(site.where_is("reused"), Some("quarantine"));
    let reason = site.sidecar("quarantine", "reused")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("reused"), "{reason}");
}
