//! doctor: parser + classifier on real `journalctl -o json` and
//! `systemctl show` output captured from systemd 252
//! (tests/fixtures/journal, see its README).

use std::fs;
use std::io::BufReader;

use cis490::doctor::{self, LastSuccess, Severity, Verdict};
use cis490::journal::{self, JournalRead};
use cis490::unit_state::{self, UnitsRead};

mod doctor_support;
use doctor_support::*;

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
