//! Shared by the doctor test binaries: the captured journal fixtures
//! (tests/fixtures/journal, see its README) and facts for a healthy host
//! around them.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use cis490::doctor::{ConfigFacts, DataFacts, Disk, Facts, Report, Row};
use cis490::journal::{self, JournalRead};
use cis490::unit_state::{self, UnitState, UnitsRead};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/journal")
        .join(name)
}

pub fn read_fixture(name: &str) -> JournalRead {
    journal::read_file(&fixture(name))
}

pub fn entries(j: &JournalRead) -> &[journal::Entry] {
    match j {
        JournalRead::Lines { entries, .. } => entries,
        other => panic!("not lines: {other:?}"),
    }
}

pub fn healthy_units() -> Vec<UnitState> {
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
pub fn facts_with(journal: JournalRead) -> Facts {
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
        client_cert: None,
    }
}

pub fn facts(name: &str) -> Facts {
    facts_with(read_fixture(name))
}

pub fn row<'a>(r: &'a Report, check: &str) -> &'a Row {
    r.rows
        .iter()
        .find(|x| x.check == check)
        .unwrap_or_else(|| panic!("no {check} row in {r:#?}"))
}

pub fn has(r: &Report, check: &str) -> bool {
    r.rows.iter().any(|x| x.check == check)
}

pub fn entries_of(name: &str) -> Vec<journal::Entry> {
    entries(&read_fixture(name)).to_vec()
}
