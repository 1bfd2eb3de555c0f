//! The S3 receiver against a real S3 implementation (moto_server, with
//! signature checking): ship, duplicate, id reuse, host-level refusals,
//! doctor's rows, and a 300 MiB multipart upload killed at about 60 % and
//! resumed, with the bytes on the wire counted by a proxy.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;

/// A site shipping into moto; `secret` is what the secret file holds.
fn s3_site(moto: &Moto, endpoint: &str, secret: &str, extra: &str) -> Site {
    let site = Site::bare();
    let secret_file = site.dir.path().join("s3-secret");
    fs::write(&secret_file, format!("{secret}\n")).expect("secret file");
    site.write_config(
        &moto.receiver_toml(endpoint, &secret_file, extra),
        "request_timeout_s = 30\ndisk_reserve_percent = 0",
        "",
    );
    site.make_state_dirs();
    site
}

fn key_of(site: &Site, id: &str) -> String {
    format!("raw/{}/{id}.tar.gz", site.host)
}

fn outcome_lines(out: &std::process::Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    )
}

#[test]
fn ships_three_episodes_then_a_repeat_is_a_duplicate() {
    let moto = Moto::start();
    let site = s3_site(&moto, &moto.endpoint, &moto.secret, "");
    for (i, id) in ["ep-1", "ep-2", "ep 3"].iter().enumerate() {
        site.add_episode(id, &[("data.bin", &noise(200_000 + i * 1000, i as u64))]);
    }
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0, "{}", outcome_lines(&out));
    for id in ["ep-1", "ep-2", "ep 3"] {
        assert_eq!(site.where_is(id), Some("shipped"), "{id}");
        let sidecar = site.sidecar("shipped", id);
        let sha = sidecar["sha256"].as_str().expect("sha256");
        let head = moto.ask("head", &[BUCKET, &key_of(&site, id)]);
        assert_eq!(head["sha256"].as_str(), Some(sha), "{id}: {head}");
        assert_eq!(head["size"], sidecar["archive_bytes"], "{id}");
        let held = moto.ask("sha256", &[BUCKET, &key_of(&site, id)]);
        assert_eq!(held["sha256"].as_str(), Some(sha), "{id}: content");
        // Nothing left in the outbox.
        assert!(!exists(
            &site.state_dir("outbox").join(format!("{id}.retry.json"))
        ));
    }

    // A crash after the upload, before the settle: the episode is back in
    // episodes/ with the same content. The store has it: a duplicate.
    let shipped = site.state_dir("shipped").join("ep-1");
    fs::remove_file(site.state_dir("shipped").join("ep-1.json")).expect("sidecar");
    fs::rename(&shipped, site.state_dir("episodes").join("ep-1")).expect("back");
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0, "{}", outcome_lines(&out));
    assert_eq!(site.where_is("ep-1"), Some("shipped"));
    let sidecar = site.sidecar("shipped", "ep-1");
    assert!(
        sidecar["reason"]
            .as_str()
            .is_some_and(|r| r.contains("duplicate")),
        "{sidecar}"
    );
    assert!(site.names("quarantine").is_empty());
}

#[test]
fn an_id_reused_for_other_content_is_quarantined() {
    let moto = Moto::start();
    let site = s3_site(&moto, &moto.endpoint, &moto.secret, "");
    let other = "0".repeat(64);
    moto.ask("put", &[BUCKET, &key_of(&site, "reused"), &other]);
    site.add_episode("reused", &[("data.bin", &noise(50_000, 9))]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 65, "{}", outcome_lines(&out));
    assert_eq!(site.where_is("reused"), Some("quarantine"));
    let sidecar = site.sidecar("quarantine", "reused");
    let reason = sidecar["reason"].as_str().expect("reason");
    assert!(
        reason.contains("reused") && reason.contains(&other),
        "{reason}"
    );
    assert!(
        sidecar["refusal_check"]
            .as_str()
            .is_some_and(|c| c.starts_with("HEAD /lab-episodes/raw/")),
        "{sidecar}"
    );
    // The store's object is untouched.
    let head = moto.ask("head", &[BUCKET, &key_of(&site, "reused")]);
    assert_eq!(head["sha256"].as_str(), Some(other.as_str()));
}

/// `doctor --json` for the site: its rows.
fn doctor_rows(site: &Site, journal: Option<&Path>) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_doctor"));
    cmd.env_remove("CIS490_CONFIG")
        .arg("--config")
        .arg(&site.config)
        .arg("--json");
    let empty = site.dir.path().join("empty.jsonl");
    fs::write(&empty, "").expect("empty journal");
    cmd.arg("--journal-file").arg(journal.unwrap_or(&empty));
    let out = cmd.stderr(Stdio::piped()).output().expect("doctor");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    report["rows"].as_array().expect("rows").clone()
}

fn red_row<'a>(rows: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["check"] == name && r["severity"] == "red")
        .unwrap_or_else(|| panic!("no red {name} row in {rows:#?}"))
}

#[test]
fn bad_secret_and_missing_bucket_pause_the_host_and_quarantine_nothing() {
    let moto = Moto::start();
    let cases = [
        (
            "bad secret",
            s3_site(&moto, &moto.endpoint, "not-the-secret", ""),
            "SignatureDoesNotMatch",
            "receiver.secret_access_key_file",
        ),
        (
            "missing bucket",
            {
                let site = s3_site(&moto, &moto.endpoint, &moto.secret, "");
                let text = fs::read_to_string(&site.config).expect("config");
                fs::write(
                    &site.config,
                    text.replace("s3://lab-episodes/raw", "s3://no-such-bucket/raw"),
                )
                .expect("config");
                site
            },
            "NoSuchBucket",
            "the bucket does not exist",
        ),
    ];
    for (what, site, code_name, fix) in cases {
        site.add_episode("a", &[("data.bin", &noise(30_000, 1))]);
        site.add_episode("b", &[("data.bin", &noise(30_000, 2))]);
        let out = site.ship(&[]);
        assert_eq!(code(&out), 78, "{what}: {}", outcome_lines(&out));
        // Kept, never quarantined.
        assert!(site.names("quarantine").is_empty(), "{what}");
        assert_eq!(site.where_is("a"), Some("outbox"), "{what}");
        assert_eq!(site.where_is("b"), Some("outbox"), "{what}");
        let retry = site.retry_state("a");
        let last = retry["last_error"].as_str().unwrap_or_default();
        assert!(last.contains(code_name), "{what}: {retry}");
        assert!(last.contains(fix), "{what}: {retry}");
        assert!(
            !stderr(&out).contains(&moto.secret),
            "{what}: the secret was logged"
        );

        // doctor: a red pause row with the fix, from the data root...
        let rows = doctor_rows(&site, None);
        let pause = red_row(&rows, "receiver_pause");
        assert!(
            pause["fix"].as_str().is_some_and(|f| f.contains(fix)),
            "{what}: {pause}"
        );
        // ...and a red host_error row with the same fix, from the journal
        // line ship-episode wrote for it.
        let journal = site.dir.path().join("journal.jsonl");
        let line = serde_json::json!({
            "__REALTIME_TIMESTAMP": format!("{}", now() * 1_000_000),
            "SYSLOG_IDENTIFIER": "ship-episode",
            "_SYSTEMD_UNIT": "cis490-ship-episode.service",
            "OUTCOME": "host_error",
            "HTTP_STATUS": retry["last_status"].to_string(),
            "EPISODE_ID": "a",
            "HOST_ID": site.host,
            "PRIORITY": "3",
            "MESSAGE": format!("a: host_error → outbox/ ({last})"),
        });
        fs::write(&journal, format!("{line}\n")).expect("journal");
        let rows = doctor_rows(&site, Some(&journal));
        let host = red_row(&rows, "host_error");
        assert!(
            host["fix"].as_str().is_some_and(|f| f.contains(fix)),
            "{what}: {host}"
        );
        assert!(
            host["title"]
                .as_str()
                .is_some_and(|t| t.contains("object store")),
            "{what}: {host}"
        );
    }
}

/// `n` bytes of incompressible data in files of 16 MiB.
fn big_episode(site: &Site, id: &str, n: u64) -> PathBuf {
    let staging = site.dir.path().join(format!("recording-{id}"));
    fs::create_dir_all(&staging).expect("mkdir");
    let mut left = n;
    let mut i = 0u64;
    while left > 0 {
        let len = left.min(16 * MIB);
        fs::write(
            staging.join(format!("chunk-{i:03}.bin")),
            noise(len as usize, i + 11),
        )
        .expect("write chunk");
        left -= len;
        i += 1;
    }
    fs::write(staging.join("done.marker"), b"").expect("marker");
    let dest = site.state_dir("episodes").join(id);
    fs::rename(&staging, &dest).expect("rename");
    dest
}

/// Kill `ship-episode` with SIGKILL once the store has received `fraction`
/// of `bytes` through the proxy.
fn ship_and_kill_at(site: &Site, proxy: &CountingProxy, bytes: u64, fraction: f64) -> u64 {
    proxy.reset();
    let mut child = Command::new(SHIP_EPISODE)
        .arg("--config")
        .arg(&site.config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ship-episode");
    let target = (bytes as f64 * fraction) as u64;
    let started = Instant::now();
    while proxy.sent() < target {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "ship-episode ended ({status}) before the kill, at {} bytes",
                proxy.sent()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "upload too slow"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    proxy.sent()
}

#[test]
fn a_300_mib_episode_killed_at_60_percent_resumes_with_the_missing_parts_only() {
    let moto = Moto::start();
    let proxy = CountingProxy::to(&moto.endpoint);
    let site = s3_site(
        &moto,
        &proxy.endpoint,
        &moto.secret,
        "part_size = \"16M\"\nmultipart_threshold = \"16M\"\n",
    );
    big_episode(&site, "big", 300 * MIB);

    // The archive is what goes up; its size is known once staged. Random
    // data is stored, so it is about the episode's size.
    let first = ship_and_kill_at(&site, &proxy, 300 * MIB, 0.6);
    let archive = fs::metadata(site.state_dir("outbox").join("big.tar.gz"))
        .expect("staged archive")
        .len();
    let retry = site.retry_state("big");
    let mp = &retry["multipart"];
    let recorded = mp["parts"].as_array().expect("recorded parts").len();
    assert!(recorded >= 8, "parts recorded before the kill: {retry}");
    assert_eq!(site.where_is("big"), Some("outbox"));

    proxy.reset();
    let out = site.ship_with_timeout(&["big"], Duration::from_secs(600));
    let second = proxy.sent();
    assert_eq!(code(&out), 0, "{}", outcome_lines(&out));
    assert_eq!(site.where_is("big"), Some("shipped"));
    eprintln!(
        "resume: archive {archive} bytes; first attempt sent {first} bytes before the kill; \
         second attempt sent {second} bytes ({} parts were already on the store)",
        recorded
    );
    assert!(
        second < archive / 2,
        "the resumed attempt sent {second} of {archive} bytes"
    );
    // Complete and intact on the store, no upload left behind.
    let sha = site.sidecar("shipped", "big")["sha256"]
        .as_str()
        .expect("sha")
        .to_string();
    let held = moto.ask("sha256", &[BUCKET, &key_of(&site, "big")]);
    assert_eq!(held["sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(moto.ask("uploads", &[BUCKET]), serde_json::json!([]));
}

#[test]
fn a_forgotten_upload_starts_over_and_an_abandoned_one_is_aborted_on_settle() {
    let moto = Moto::start();
    let proxy = CountingProxy::to(&moto.endpoint);
    let site = s3_site(
        &moto,
        &proxy.endpoint,
        &moto.secret,
        "part_size = \"5M\"\nmultipart_threshold = \"5M\"\n",
    );
    // Slowed down so that the kill lands mid-upload.
    let text = fs::read_to_string(&site.config).expect("config");
    fs::write(
        &site.config,
        text.replace("[shipper]\n", "[shipper]\nupload_rate_limit = \"8M\"\n"),
    )
    .expect("config");
    big_episode(&site, "mid", 40 * MIB);
    ship_and_kill_at(&site, &proxy, 40 * MIB, 0.4);
    let upload_id = site.retry_state("mid")["multipart"]["upload_id"]
        .as_str()
        .expect("upload id")
        .to_string();

    // The store forgets it (expiry, an operator's cleanup): start over.
    moto.ask("abort", &[BUCKET, &key_of(&site, "mid"), &upload_id]);
    let out = site.ship_with_timeout(&["mid"], Duration::from_secs(300));
    assert_eq!(code(&out), 0, "{}", outcome_lines(&out));
    assert!(
        stderr(&out).contains("no longer knows multipart upload"),
        "{}",
        outcome_lines(&out)
    );
    assert_eq!(site.where_is("mid"), Some("shipped"));
    let sha = site.sidecar("shipped", "mid")["sha256"]
        .as_str()
        .expect("sha")
        .to_string();
    let held = moto.ask("sha256", &[BUCKET, &key_of(&site, "mid")]);
    assert_eq!(held["sha256"].as_str(), Some(sha.as_str()));

    // Killed mid-upload again (another episode), then its key is taken by
    // another recording: quarantined, and our upload aborted.
    big_episode(&site, "taken", 40 * MIB);
    ship_and_kill_at(&site, &proxy, 40 * MIB, 0.4);
    let uploads = moto.ask("uploads", &[BUCKET]);
    assert_eq!(uploads.as_array().map(Vec::len), Some(1), "{uploads}");
    moto.ask("put", &[BUCKET, &key_of(&site, "taken"), &"1".repeat(64)]);
    let out = site.ship_with_timeout(&["taken"], Duration::from_secs(300));
    assert_eq!(code(&out), 65, "{}", outcome_lines(&out));
    assert_eq!(site.where_is("taken"), Some("quarantine"));
    assert_eq!(moto.ask("uploads", &[BUCKET]), serde_json::json!([]));
}

#[test]
fn prune_removes_resume_state_without_its_episode() {
    let site = Site::new("https://collector.wg");
    let outbox = site.state_dir("outbox");
    let stale = outbox.join("gone.retry.json");
    fs::write(
        &stale,
        r#"{"attempts":1,"next_attempt_at":0,"last_error":"x","multipart":{"key":"raw/lab-test/gone.tar.gz","upload_id":"u","part_size":5242880,"archive_sha256":"aa","parts":[{"number":1,"etag":"e","sha256":"s","size":5242880}]}}"#,
    )
    .expect("retry state");
    // One that still belongs to an outbox episode stays.
    site.episode("outbox", "live", 1000, true);
    let live = outbox.join("live.retry.json");
    fs::copy(&stale, &live).expect("copy");
    let out = Command::new(QUARANTINE_PRUNE)
        .arg("--config")
        .arg(&site.config)
        .output()
        .expect("prune");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!exists(&stale), "orphan resume state kept");
    assert!(exists(&live), "live resume state removed");
}
