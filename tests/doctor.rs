//! doctor: parser + classifier on real `journalctl -o json` output captured
//! from systemd 252 (tests/fixtures/journal, see its README), the data
//! checks on a real data root, and the binary's contract.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use cis490::doctor::{
    self, ConfigFacts, DataFacts, Disk, Facts, LastSuccess, OutboxItem, Report, Row, Severity,
    Verdict,
};
use cis490::journal::{self, JournalRead};
use cis490::unit_state::{self, UnitState, UnitsRead};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/journal")
        .join(name)
}

fn read_fixture(name: &str) -> JournalRead {
    journal::read_file(&fixture(name))
}

fn entries(j: &JournalRead) -> &[journal::Entry] {
    match j {
        JournalRead::Lines { entries, .. } => entries,
        other => panic!("not lines: {other:?}"),
    }
}

fn healthy_units() -> Vec<UnitState> {
    let u = |id: &str, active: &str, sub: &str| UnitState {
        id: id.into(),
        load_state: "loaded".into(),
        active_state: active.into(),
        sub_state: sub.into(),
        result: "success".into(),
        n_restarts: Some(0),
        next_elapse: unit_state::NextElapse::None,
    };
    let mut timer = u(journal::PRUNE_TIMER, "active", "waiting");
    timer.next_elapse = unit_state::NextElapse::At(2_000_000_000);
    vec![
        u(journal::PATH_UNIT, "active", "waiting"),
        u(journal::EPISODE_SERVICE, "inactive", "dead"),
        u(journal::SCANNER_SERVICE, "active", "running"),
        u(journal::PRUNE_SERVICE, "inactive", "dead"),
        timer,
    ]
}

/// Facts with a healthy host around the given journal: only the journal
/// decides the verdict. `now` is just after the fixture's last line.
fn facts_with(journal: JournalRead) -> Facts {
    let last = match &journal {
        JournalRead::Lines { entries, .. } => entries.iter().filter_map(|e| e.unix_secs()).max(),
        _ => None,
    };
    Facts {
        now: last.map_or(1_800_000_000, |t| t + 5),
        window_secs: 600,
        journal,
        journal_source: "fixture".into(),
        last_success_before: None,
        units: UnitsRead::States(healthy_units()),
        config: ConfigFacts::Loaded {
            path: "/etc/cis490/lab-host.toml".into(),
            verify_tls: true,
            receiver_url: "https://collector.wg".into(),
            warnings: vec![],
            quarantine_keep_days: 30,
        },
        data: Some(Ok(DataFacts {
            data_root: "/var/lib/cis490/data".into(),
            ..DataFacts::default()
        })),
        disk: Some(Ok(Disk {
            avail_bytes: 50 << 30,
            total_bytes: 100 << 30,
        })),
    }
}

fn facts(name: &str) -> Facts {
    facts_with(read_fixture(name))
}

fn row<'a>(r: &'a Report, check: &str) -> &'a Row {
    r.rows
        .iter()
        .find(|x| x.check == check)
        .unwrap_or_else(|| panic!("no {check} row in {r:#?}"))
}

fn has(r: &Report, check: &str) -> bool {
    r.rows.iter().any(|x| x.check == check)
}

#[test]
fn fixtures_parse_with_structured_fields() {
    let j = read_fixture("412-only.jsonl");
    let e = entries(&j);
    let rejected: Vec<_> = e
        .iter()
        .filter(|e| e.outcome.as_deref() == Some("quarantined"))
        .collect();
    assert_eq!(rejected.len(), 3);
    assert!(rejected.iter().all(|e| e.http_status == Some(412)
        && e.identifier.as_deref() == Some("ship-episode")
        && e.realtime_us.is_some()));
    // PID 1's lines about the unit are selected too.
    assert!(
        e.iter()
            .any(|e| e.systemd_event_unit() == Some(journal::EPISODE_SERVICE))
    );
    assert!(
        matches!(read_fixture("empty.jsonl"), JournalRead::Lines { ref entries, unparsable: 0 } if entries.is_empty())
    );
}

#[test]
fn only_412_is_red_with_clock_fix() {
    let r = doctor::assess(&facts("412-only.jsonl"));
    assert_eq!(r.verdict, Verdict::Critical);
    assert_eq!(r.exit_code, 2);
    let first = &r.rows[0];
    assert_eq!(first.check, "rejected_412");
    assert_eq!(first.severity, Severity::Red);
    assert!(
        first
            .title
            .starts_with("3 ship(s) rejected as out-of-window"),
        "{}",
        first.title
    );
    assert_eq!(first.count, Some(3));
    assert_eq!(first.episodes, ["s412-ep-a", "s412-ep-b", "s412-ep-c"]);
    assert!(
        first.detail.contains("not in collector window"),
        "{}",
        first.detail
    );
    let fix = first.fix.as_deref().unwrap_or_default();
    assert!(
        fix.contains("timedatectl") && fix.contains("ship-episode --requeue"),
        "{fix}"
    );
    assert!(!has(&r, "rejected_400"));
    assert!(
        r.summary
            .starts_with("CRITICAL: 3 ship(s) rejected as out-of-window")
    );
}

#[test]
fn only_400_is_red_with_the_receivers_reason() {
    let r = doctor::assess(&facts("400-only.jsonl"));
    assert_eq!(r.verdict, Verdict::Critical);
    let first = &r.rows[0];
    assert_eq!(first.check, "rejected_400");
    assert_eq!(first.count, Some(2));
    assert_eq!(first.episodes, ["s400-ep-a", "s400-ep-b"]);
    assert!(first.title.contains("HTTP 400 ×2"), "{}", first.title);
    assert!(first.detail.contains("missing commit"), "{}", first.detail);
    assert!(!has(&r, "rejected_412"));
}

#[test]
fn id_reuse_is_not_reported_as_a_receiver_rejection() {
    // The real 400 lines, with the status a local set-aside logs: none
    // (name clash at claim) or 409 (the receiver holds other content).
    let mut lines = entries(&read_fixture("400-only.jsonl")).to_vec();
    let mut changed = 0;
    for e in lines
        .iter_mut()
        .filter(|e| e.outcome.as_deref() == Some("quarantined"))
    {
        e.http_status = if changed == 0 { None } else { Some(409) };
        changed += 1;
    }
    assert_eq!(changed, 2);
    let r = doctor::assess(&facts_with(JournalRead::Lines {
        entries: lines,
        unparsable: 0,
    }));
    assert_eq!(r.rows[0].check, "id_reused");
    assert_eq!(r.rows[0].count, Some(2));
    let fix = r.rows[0].fix.as_deref().unwrap_or_default();
    assert!(fix.contains("unique"), "{fix}");
    assert!(!has(&r, "rejected_400"));
}

#[test]
fn both_412_and_400_put_412_first() {
    let r = doctor::assess(&facts("412-and-400.jsonl"));
    assert_eq!(r.rows[0].check, "rejected_412");
    assert_eq!(r.rows[0].count, Some(2));
    assert_eq!(r.rows[1].check, "rejected_400");
    assert_eq!(r.rows[1].count, Some(1));
    assert!(r.summary.contains("out-of-window") && r.summary.contains("+1 more problem"));
    // The one that shipped counts as activity.
    assert!(row(&r, "activity").title.starts_with("1 shipped"));
}

#[test]
fn transient_only_is_yellow_and_says_whether_draining() {
    let r = doctor::assess(&facts("transient-503.jsonl"));
    assert_eq!(r.verdict, Verdict::Warning);
    assert_eq!(r.exit_code, 1);
    let t = row(&r, "transient");
    assert_eq!(t.severity, Severity::Yellow);
    assert!(t.title.contains("HTTP 503 ×2"), "{}", t.title);
    assert!(t.detail.contains("not draining"), "{}", t.detail);
    assert!(!r.rows.iter().any(|x| x.severity == Severity::Red));

    let r = doctor::assess(&facts("transient-refused.jsonl"));
    assert!(row(&r, "transient").title.contains("network/timeout ×1"));

    // Transient failures followed by a success: still draining.
    let mut j = read_fixture("transient-503.jsonl");
    let JournalRead::Lines { entries, .. } = &mut j else {
        unreachable!()
    };
    entries.extend(entries_of("clean.jsonl"));
    let r = doctor::assess(&facts_with(j));
    assert!(
        row(&r, "transient")
            .detail
            .contains("still draining: 2 shipped")
    );
}

fn entries_of(name: &str) -> Vec<journal::Entry> {
    entries(&read_fixture(name)).to_vec()
}

#[test]
fn clean_window_is_ok() {
    let r = doctor::assess(&facts("clean.jsonl"));
    assert_eq!(r.verdict, Verdict::Ok, "{r:#?}");
    assert_eq!(r.exit_code, 0);
    let a = row(&r, "activity");
    assert!(a.title.starts_with("2 shipped") && a.title.contains("last successful ship at"));
    assert!(r.summary.starts_with("OK"));
}

#[test]
fn empty_window_says_when_the_last_ship_was() {
    let mut f = facts("empty.jsonl");
    f.last_success_before = Some(LastSuccess::Journal(f.now - 7200));
    let r = doctor::assess(&f);
    assert_eq!(r.verdict, Verdict::Ok);
    let a = row(&r, "activity");
    assert!(a.title.contains("no shipping activity"), "{}", a.title);
    assert!(a.title.contains("(2 h ago)"), "{}", a.title);

    f.last_success_before = None;
    let r = doctor::assess(&f);
    assert!(
        row(&r, "activity")
            .title
            .contains("no successful ship on record")
    );
}

#[test]
fn journal_denied_is_yellow_never_all_clear() {
    let rc: i32 = fs::read_to_string(fixture("denied.rc"))
        .expect("rc")
        .trim()
        .parse()
        .expect("number");
    let stderr = fs::read_to_string(fixture("denied.stderr")).expect("stderr");
    let stdout = fs::File::open(fixture("denied.stdout")).expect("stdout");
    let j = journal::interpret(rc == 0, Some(rc), BufReader::new(stdout), &stderr);
    assert!(matches!(j, JournalRead::Denied { .. }), "{j:?}");
    let r = doctor::assess(&facts_with(j));
    assert_eq!(r.verdict, Verdict::Warning);
    let j = row(&r, "journal");
    assert_eq!(j.severity, Severity::Yellow);
    assert!(j.detail.contains("insufficient permissions"));
    assert!(
        j.fix
            .as_deref()
            .unwrap_or_default()
            .contains("usermod -aG systemd-journal")
    );
    // Everything else is still reported.
    for c in ["config", "backlog", "disk", "scanner", "path_unit"] {
        assert!(has(&r, c), "{c} missing");
    }
    assert!(!has(&r, "activity"));

    // The partial case: only the user's own journal, rc 0.
    let j = journal::interpret(
        true,
        Some(0),
        &b""[..],
        "Hint: You are currently not seeing messages from other users and the system.\n",
    );
    assert!(matches!(j, JournalRead::Denied { .. }));
}

#[test]
fn watchdog_kills_from_journal_and_unit_state() {
    let mut f = facts("watchdog.jsonl");
    let show = fs::read_to_string(fixture("show-scanner-watchdog.txt")).expect("show");
    let scanner = unit_state::parse_show(&show, f.now, None);
    assert_eq!(scanner[0].id, journal::SCANNER_SERVICE);
    assert_eq!(scanner[0].n_restarts, Some(2));
    let mut units = healthy_units();
    units.retain(|u| u.id != journal::SCANNER_SERVICE);
    units.extend(scanner);
    f.units = UnitsRead::States(units);
    let r = doctor::assess(&f);
    let s = row(&r, "scanner");
    assert_eq!(s.severity, Severity::Yellow);
    assert!(
        s.title.contains("killed by its watchdog 2 time(s)") && s.title.contains("NRestarts=2"),
        "{}",
        s.title
    );

    // Without systemctl, the journal alone still shows it.
    f.units = UnitsRead::Unavailable("no systemd".into());
    let r = doctor::assess(&f);
    assert!(row(&r, "scanner").title.contains("watchdog 2 time(s)"));
    assert_eq!(row(&r, "units").severity, Severity::Yellow);

    // A scanner that is not running is red.
    let mut f = facts("clean.jsonl");
    let mut units = healthy_units();
    units[2].active_state = "failed".into();
    units[2].result = "watchdog".into();
    f.units = UnitsRead::States(units);
    let r = doctor::assess(&f);
    assert_eq!(r.rows[0].check, "scanner");
    assert_eq!(r.rows[0].severity, Severity::Red);
    assert!(
        r.rows[0]
            .fix
            .as_deref()
            .unwrap_or_default()
            .contains("systemctl restart")
    );
}

#[test]
fn failed_path_unit_is_red_with_reset_failed() {
    let mut f = facts("path-start-limit.jsonl");
    let show = fs::read_to_string(fixture("show-units.txt")).expect("show");
    f.units = UnitsRead::States(unit_state::parse_show(&show, f.now, None));
    let r = doctor::assess(&f);
    assert_eq!(r.verdict, Verdict::Critical);
    let p = &r.rows[0];
    assert_eq!(p.check, "path_unit");
    assert!(p.title.contains("unit-start-limit-hit"), "{}", p.title);
    assert_eq!(
        p.fix.as_deref(),
        Some(
            "systemctl reset-failed cis490-ship-episode.path cis490-ship-episode.service \
             && systemctl start cis490-ship-episode.path"
        )
    );
    // The scanner unit was not installed in that capture.
    assert!(row(&r, "scanner").title.contains("not installed"));

    // From the journal alone (no systemctl): still red.
    f.units = UnitsRead::Unavailable("no systemd".into());
    let r = doctor::assess(&f);
    assert_eq!(row(&r, "path_unit").severity, Severity::Red);
}

#[test]
fn prune_timer_without_next_run_is_yellow() {
    let mut f = facts("clean.jsonl");
    let show = fs::read_to_string(fixture("show-timer-no-next.txt")).expect("show");
    let timer = unit_state::parse_show(&show, f.now, Some(1));
    assert_eq!(timer[0].next_elapse, unit_state::NextElapse::None);
    let mut units = healthy_units();
    units.retain(|u| u.id != journal::PRUNE_TIMER);
    units.extend(timer);
    f.units = UnitsRead::States(units);
    let r = doctor::assess(&f);
    let t = row(&r, "prune_timer");
    assert_eq!(t.severity, Severity::Yellow);
    assert!(t.title.contains("no next run"));

    // The periodic one captured alongside has a next run.
    let show = fs::read_to_string(fixture("show-units.txt")).expect("show");
    let units = unit_state::parse_show(&show, 1000, Some(0));
    let timer = units
        .iter()
        .find(|u| u.id == journal::PRUNE_TIMER)
        .expect("timer");
    assert!(matches!(timer.next_elapse, unit_state::NextElapse::At(t) if t > 1000));
}

#[test]
fn host_error_401_names_the_token() {
    let r = doctor::assess(&facts("host-401.jsonl"));
    let h = &r.rows[0];
    assert_eq!(h.check, "host_error");
    assert_eq!(h.severity, Severity::Red);
    assert!(
        h.title.contains("HTTP 401") && h.title.contains("bearer token"),
        "{}",
        h.title
    );
    assert!(
        h.detail.contains("bad bearer token") && !h.detail.contains("Fix:"),
        "{}",
        h.detail
    );
    assert!(
        h.fix
            .as_deref()
            .unwrap_or_default()
            .contains("bearer_token")
    );
}

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
            }],
            quarantine: vec![],
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
}
