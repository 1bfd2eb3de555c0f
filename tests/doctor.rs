//! doctor: the config, disk and data checks (on a real data root), the
//! JSON schema, and the binary's contract. The journal classifier is in
//! tests/doctor_journal.rs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use cis490::doctor::{self, ConfigFacts, DataFacts, Disk, OutboxItem, Severity, Verdict};

mod doctor_support;
use doctor_support::*;

#[test]
fn insecure_tls_and_bad_config() {
    let mut f = facts("clean.jsonl");
    if let ConfigFacts::Loaded { verify_tls, .. } = &mut f.config {
        *verify_tls = false;
    }
    let r = doctor::assess(&f);
    assert_eq!(r.verdict, Verdict::Warning);
    assert_eq!(row(&r, "config").severity, Severity::Yellow);

    f.config = ConfigFacts::Invalid {
        path: "/etc/cis490/lab-host.toml".into(),
        message: "retention.keep_days: unknown key".into(),
    };
    f.data = None;
    f.disk = None;
    let r = doctor::assess(&f);
    assert_eq!(r.rows[0].check, "config");
    assert_eq!(r.rows[0].severity, Severity::Red);
    assert!(r.rows[0].detail.contains("unknown key"));
}

#[test]
fn disk_thresholds() {
    let sev = |avail: u64| {
        let mut f = facts("clean.jsonl");
        f.disk = Some(Ok(Disk {
            avail_bytes: avail,
            total_bytes: 1000,
        }));
        row(&doctor::assess(&f), "disk").severity
    };
    assert_eq!(sev(40), Severity::Red);
    assert_eq!(sev(80), Severity::Yellow);
    assert_eq!(sev(200), Severity::Green);
}

#[test]
fn backlog_ages() {
    let sev = |age: u64| {
        let mut f = facts("clean.jsonl");
        let now = f.now;
        f.data = Some(Ok(DataFacts {
            data_root: "/d".into(),
            ready: vec![("young".into(), Some(now - 10))],
            outbox: vec![OutboxItem {
                id: "old".into(),
                since: Some(now - age),
                attempts: 4,
                next_attempt_at: Some(now + 60),
                last_error: Some("HTTP 503".into()),
                stage_needs_bytes: None,
            }],
            quarantine: vec![],
            pause: None,
        }));
        let r = doctor::assess(&f);
        let b = row(&r, "backlog").clone();
        assert_eq!(b.count, Some(2));
        b
    };
    assert_eq!(sev(600).severity, Severity::Green);
    let y = sev(2 * 3600);
    assert_eq!(y.severity, Severity::Yellow);
    assert!(y.detail.contains("last error: HTTP 503"), "{}", y.detail);
    assert!(
        y.fix
            .as_deref()
            .unwrap_or_default()
            .contains("ship-episode old")
    );
    assert_eq!(sev(2 * 86_400).severity, Severity::Red);
}

fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::open(path)
        .and_then(|f| f.set_modified(t))
        .expect("set mtime");
}

#[test]
fn data_root_is_read_without_walking_trees() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path();
    let layout = cis490::layout::Layout::new(root);
    layout.ensure_dirs().expect("dirs");
    let now = cis490::layout::unix_now();
    // Ready, 3 h old; one still being recorded (no marker).
    fs::create_dir_all(root.join("episodes/r1")).expect("mkdir");
    fs::write(root.join("episodes/r1/done.marker"), b"").expect("marker");
    set_mtime(
        &root.join("episodes/r1/done.marker"),
        SystemTime::now() - Duration::from_secs(3 * 3600),
    );
    fs::create_dir_all(root.join("episodes/recording")).expect("mkdir");
    // Outbox with retry state.
    fs::create_dir_all(root.join("outbox/o1")).expect("mkdir");
    cis490::layout::RetryState {
        attempts: 2,
        next_attempt_at: now + 30,
        last_error: "HTTP 503: busy".into(),
        last_status: Some(503),
        claimed_at: now - 600,
        ..Default::default()
    }
    .store(
        &layout,
        &cis490::layout::EpisodeId::parse("o1").expect("id"),
    )
    .expect("retry");
    // Quarantine: one 31 days old (due), one fresh, one without sidecar.
    for (id, age_days, bytes) in [("q1", 31u64, Some(1000u64)), ("q2", 1, Some(24))] {
        fs::create_dir_all(root.join("quarantine").join(id)).expect("mkdir");
        cis490::layout::Sidecar {
            episode_id: id.into(),
            state: cis490::layout::State::Quarantine,
            entered_at: now - age_days * 86_400,
            reason: "HTTP 412: not in window".into(),
            http_status: Some(412),
            sha256: None,
            archive_bytes: bytes,
            attempts: 1,
            refusal_check: None,
        }
        .store(&layout, &cis490::layout::EpisodeId::parse(id).expect("id"))
        .expect("sidecar");
    }
    fs::create_dir_all(root.join("quarantine/q3")).expect("mkdir");

    let data = doctor::read_data(root).expect("data");
    assert_eq!(data.ready.len(), 1);
    assert_eq!(data.outbox.len(), 1);
    assert_eq!(data.outbox[0].since, Some(now - 600));
    assert_eq!(data.outbox[0].attempts, 2);
    assert_eq!(data.quarantine.len(), 3);

    let mut f = facts("empty.jsonl");
    f.now = now;
    f.data = Some(Ok(data));
    let r = doctor::assess(&f);
    let b = row(&r, "backlog");
    assert_eq!(b.severity, Severity::Yellow, "{b:?}");
    assert!(
        b.title.contains("1 ready, 1 in the outbox") && b.title.contains("3 h"),
        "{}",
        b.title
    );
    let q = row(&r, "quarantine");
    assert_eq!(q.count, Some(3));
    assert!(
        q.title.contains("1.0 KiB compressed (+1 of unknown size)"),
        "{}",
        q.title
    );
    assert!(
        q.detail.contains("1 past the 30-day retention"),
        "{}",
        q.detail
    );
    assert!(q.detail.contains("1 without a sidecar"), "{}", q.detail);
    // 1 day overdue is not yet a warning: the hourly timer gets it.
    assert_eq!(q.severity, Severity::Green);

    let disk = doctor::statvfs(root).expect("statvfs");
    assert!(disk.total_bytes > 0 && disk.avail_bytes <= disk.total_bytes);
    assert!(doctor::read_data(&root.join("missing")).is_err());
}

#[test]
fn json_schema_is_stable() {
    let r = doctor::assess(&facts("412-and-400.jsonl"));
    let v: serde_json::Value = serde_json::to_value(&r).expect("json");
    assert_eq!(v["version"], 1);
    assert_eq!(v["verdict"], "critical");
    assert_eq!(v["exit_code"], 2);
    assert!(v["generated_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert_eq!(v["window"]["seconds"], 600);
    let first = &v["rows"][0];
    assert_eq!(first["check"], "rejected_412");
    assert_eq!(first["severity"], "red");
    assert_eq!(first["count"], 2);
    assert_eq!(first["episodes"][0], "s412-ep-d");
    for row in v["rows"].as_array().expect("rows") {
        for key in ["check", "severity", "title", "detail", "fix"] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
    }
}

// ---------------------------------------------------------------- binary

fn doctor_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_doctor"));
    c.env_remove("NO_COLOR").env_remove("CIS490_CONFIG");
    c
}

fn write_config(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    fs::create_dir_all(&data).expect("data");
    let cfg = dir.join("lab-host.toml");
    fs::write(
        &cfg,
        format!(
            "host_id = \"t\"\n[paths]\ndata_root = \"{}\"\n[receiver]\nurl = \"https://collector.wg\"\n",
            data.display()
        ),
    )
    .expect("config");
    cfg
}

#[test]
fn binary_reports_412_and_exits_2() {
    let d = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(d.path());
    let out = doctor_bin()
        .arg("--config")
        .arg(&cfg)
        .arg("--journal-file")
        .arg(fixture("412-and-400.jsonl"))
        .output()
        .expect("run doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("CRITICAL: 2 ship(s) rejected as out-of-window"),
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "colour in a pipe: {stdout}");

    let out = doctor_bin()
        .arg("--config")
        .arg(&cfg)
        .arg("--journal-file")
        .arg(fixture("412-and-400.jsonl"))
        .arg("--json")
        .output()
        .expect("run doctor");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["exit_code"], 2);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn binary_usage_errors_are_unknown() {
    let out = doctor_bin()
        .args(["--since", "soon"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let out = doctor_bin().arg("--bogus").output().expect("run");
    assert_eq!(out.status.code(), Some(3));
    let out = doctor_bin().arg("--help").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn binary_with_a_broken_config_is_critical() {
    let d = tempfile::tempdir().expect("tempdir");
    let cfg = d.path().join("bad.toml");
    fs::write(
        &cfg,
        "host_id = \"t\"\n[receiver]\nurl = \"https://x\"\nverfy_tls = false\n",
    )
    .expect("write");
    let out = doctor_bin()
        .arg("--config")
        .arg(&cfg)
        .arg("--journal-file")
        .arg(fixture("empty.jsonl"))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("verfy_tls"), "{stdout}");
    // The fix's check really fails on this config (`--help` never read it).
    let check = format!("ship-episode --config {} --check-config", cfg.display());
    assert!(stdout.contains(&check), "{stdout}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ship-episode"))
        .arg("--config")
        .arg(&cfg)
        .arg("--check-config")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stdout).contains("receiver.verfy_tls: unknown key"));
}

// ---------------------------------------------------------- client_cert

/// A client certificate (PEM, signed by a throwaway CA) valid from
/// `not_before` to `not_after` (unix seconds), and its key.
fn client_identity(not_before: u64, not_after: u64) -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["lab-7".to_string()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "lab-7");
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
    let cert = params.signed_by(&key, &issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

/// Write the identity into `dir` and read it as doctor does.
fn client_cert_facts(dir: &Path, cert_pem: &str, key_pem: &str) -> doctor::ClientCertFacts {
    let cert = dir.join("client.pem");
    let key = dir.join("client.key");
    fs::write(&cert, cert_pem).expect("cert");
    fs::write(&key, key_pem).expect("key");
    let receiver = cis490::config::ReceiverConfig {
        url: "https://collector.wg".into(),
        ca_bundle: None,
        client_cert: Some(cert),
        client_key: Some(key),
        bearer_token: None,
        bearer_token_source: None,
        verify_tls: true,
        s3: None,
    };
    doctor::read_client_cert(&receiver).expect("mutual TLS is configured")
}

#[test]
fn client_certificate_rows() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut f = facts("clean.jsonl");
    let now = f.now;
    let day = 86_400;
    assert!(
        !has(&doctor::assess(&f), "client_cert"),
        "no mutual TLS, no row"
    );

    let (cert, key) = client_identity(now - 300 * day, now + 200 * day);
    f.client_cert = Some(client_cert_facts(d.path(), &cert, &key));
    let r = doctor::assess(&f);
    assert_eq!(r.verdict, Verdict::Ok);
    let green = row(&r, "client_cert");
    assert_eq!(green.severity, Severity::Green);
    assert!(green.title.contains("valid until"), "{}", green.title);
    assert!(green.detail.contains("CN=lab-7"), "{}", green.detail);

    // Expires in 5 days: yellow, with the date and the fix.
    let not_after = now + 5 * day + 3600;
    let (cert, key) = client_identity(now - 300 * day, not_after);
    f.client_cert = Some(client_cert_facts(d.path(), &cert, &key));
    let r = doctor::assess(&f);
    assert_eq!(r.verdict, Verdict::Warning);
    let yellow = row(&r, "client_cert");
    assert_eq!(yellow.severity, Severity::Yellow);
    let date = cis490::time::utc_minutes(not_after);
    assert_eq!(
        yellow.title,
        format!("the client certificate expires in 5 days ({date})")
    );
    let fix = yellow.fix.as_deref().unwrap_or_default();
    let cert_path = d.path().join("client.pem");
    assert!(
        fix.starts_with(&format!("before {date}, renew it"))
            && fix.contains(&cert_path.display().to_string())
            && fix.contains("systemctl restart cis490-ship-scanner")
            && fix.contains("doctor"),
        "{fix}"
    );
    // Just over 15 days before the date: still green.
    f.now = now - 10 * day;
    assert_eq!(
        row(&doctor::assess(&f), "client_cert").severity,
        Severity::Green
    );

    // Once that date has passed: red, first, with the file and the date.
    f.now = not_after + 1;
    let r = doctor::assess(&f);
    assert_eq!(r.verdict, Verdict::Critical);
    assert_eq!(r.rows[0].check, "client_cert");
    assert_eq!(r.rows[0].severity, Severity::Red);
    assert_eq!(
        r.rows[0].title,
        format!("the client certificate expired on {date}: nothing ships")
    );
    assert!(
        r.rows[0].detail.starts_with(&format!(
            "receiver.client_cert {} expired on {date}",
            cert_path.display()
        )),
        "{}",
        r.rows[0].detail
    );
    assert!(
        r.summary
            .starts_with("CRITICAL: the client certificate expired")
    );

    // A key of another certificate: red, whatever the dates.
    f.now = now;
    let (_, other_key) = client_identity(now - day, now + 200 * day);
    f.client_cert = Some(client_cert_facts(d.path(), &cert, &other_key));
    let red = row(&doctor::assess(&f), "client_cert").clone();
    assert_eq!(red.severity, Severity::Red);
    assert!(red.title.contains("does not match"), "{}", red.title);

    // Unreadable: red, naming the file.
    fs::remove_file(&cert_path).expect("rm");
    let key_path = d.path().join("client.key");
    let receiver = cis490::config::ReceiverConfig {
        url: "https://collector.wg".into(),
        ca_bundle: None,
        client_cert: Some(cert_path.clone()),
        client_key: Some(key_path),
        bearer_token: None,
        bearer_token_source: None,
        verify_tls: true,
        s3: None,
    };
    f.client_cert = doctor::read_client_cert(&receiver);
    let red = row(&doctor::assess(&f), "client_cert").clone();
    assert_eq!(red.severity, Severity::Red);
    assert!(
        red.detail
            .contains(&format!("{}: cannot read it", cert_path.display())),
        "{}",
        red.detail
    );
}

#[test]
fn binary_warns_of_a_certificate_about_to_expire() {
    let d = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(d.path());
    let now = cis490::layout::unix_now();
    let (cert, key) = client_identity(now - 86_400, now + 5 * 86_400 + 3600);
    fs::write(d.path().join("client.pem"), cert).expect("cert");
    fs::write(d.path().join("client.key"), key).expect("key");
    let mut text = fs::read_to_string(&cfg).expect("config");
    text.push_str(&format!(
        "client_cert = \"{}\"\nclient_key = \"{}\"\n",
        d.path().join("client.pem").display(),
        d.path().join("client.key").display()
    ));
    fs::write(&cfg, text).expect("config");
    let out = doctor_bin()
        .env_remove("CREDENTIALS_DIRECTORY")
        .arg("--config")
        .arg(&cfg)
        .arg("--journal-file")
        .arg(fixture("clean.jsonl"))
        .arg("--json")
        .output()
        .expect("run doctor");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = v["rows"].as_array().expect("rows");
    let cert_row = rows
        .iter()
        .find(|r| r["check"] == "client_cert")
        .unwrap_or_else(|| panic!("no client_cert row in {v:#}"));
    assert_eq!(cert_row["severity"], "yellow", "{cert_row:#}");
    assert!(
        cert_row["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("the client certificate expires in 5 days")),
        "{cert_row:#}"
    );
}

#[test]
fn episodes_waiting_for_disk_space_and_a_receiver_pause_get_rows() {
    use cis490::machine::host::HostPause;
    let mut f = facts("clean.jsonl");
    let now = f.now;
    let waiting = |id: &str, needs| OutboxItem {
        id: id.into(),
        since: Some(now - 60),
        attempts: 1,
        next_attempt_at: Some(now + 30),
        last_error: Some("not staged".into()),
        stage_needs_bytes: needs,
    };
    let pause = |fix: Option<&str>| HostPause {
        until: now + 90,
        failures: 2,
        refused: fix.is_some(),
        status: Some(if fix.is_some() { 400 } else { 503 }),
        reason: "HTTP 503".into(),
        fix: fix.map(str::to_string),
        since: now - 100,
        suspects: Vec::new(),
    };
    f.disk = Some(Ok(Disk {
        avail_bytes: 3 << 20,
        total_bytes: 64 << 20,
    }));
    f.data = Some(Ok(DataFacts {
        data_root: "/d".into(),
        ready: vec![],
        outbox: vec![waiting("a-big", Some(30 << 20)), waiting("other", None)],
        quarantine: vec![],
        pause: Some(pause(None)),
    }));
    let r = doctor::assess(&f);
    let reserve = row(&r, "disk_reserve");
    assert_eq!(reserve.severity, Severity::Red);
    assert!(
        reserve.detail.contains("a-big needs about 30.0 MiB"),
        "{reserve:?}"
    );
    assert!(!reserve.detail.contains("other"), "{reserve:?}");
    assert!(
        reserve
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("disk_reserve_percent"))
    );
    assert_eq!(reserve.episodes, ["a-big"]);
    let paused = row(&r, "receiver_pause");
    assert_eq!(paused.severity, Severity::Yellow);
    assert!(paused.title.contains("unavailable"), "{paused:?}");

    if let Some(Ok(d)) = &mut f.data {
        d.pause = Some(pause(Some("check receiver.client_cert")));
    }
    let r = doctor::assess(&f);
    let paused = row(&r, "receiver_pause");
    assert_eq!(paused.severity, Severity::Red);
    assert_eq!(paused.fix.as_deref(), Some("check receiver.client_cert"));

    // Over: no row.
    if let Some(Ok(d)) = &mut f.data {
        d.pause = Some(HostPause {
            until: now - 1,
            ..pause(None)
        });
    }
    let r = doctor::assess(&f);
    assert!(r.rows.iter().all(|x| x.check != "receiver_pause"));
}
