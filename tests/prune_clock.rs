//! `quarantine-prune` as a process on a data root whose entry times were
//! taken by a wrong clock: a host without a real-time clock that booted in
//! 2020 (or years ahead) and quarantined episodes before NTP set it right.
//! Their retention restarts from the first run with a right clock; it
//! never counts the years the clock had wrong.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use cis490::layout::{self, EpisodeId, Layout, Sidecar, State};

const PRUNE: &str = env!("CARGO_BIN_EXE_quarantine-prune");
const DAY: u64 = 86_400;
/// 2020-01-01T00:00:00Z.
const JAN_2020: u64 = 1_577_836_800;

/// A data root and a config that keeps quarantine 30 days, shipped 7.
struct Host {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("lab-host.toml");
        let data = dir.path().join("data");
        fs::write(
            &config,
            format!(
                "host_id = \"lab-clock\"\n[metrics]\ntextfile = \"\"\n[paths]\ndata_root = \"{}\"\n\
                 [receiver]\nurl = \"http://127.0.0.1:9\"\n\
                 [retention]\nquarantine_keep_days = 30\nkeep_local_for_days = 7\n",
                data.display()
            ),
        )
        .expect("config");
        let host = Host { dir, config };
        host.layout().ensure_dirs().expect("state dirs");
        host
    }

    fn layout(&self) -> Layout {
        Layout::new(self.dir.path().join("data"))
    }

    fn prune(&self, args: &[&str]) -> (String, String) {
        let out: Output = Command::new(PRUNE)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("JOURNAL_STREAM")
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .expect("run quarantine-prune");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        (stdout, stderr)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A settled episode whose sidecar says it entered `state` at `entered_at`.
fn settled(layout: &Layout, state: State, id: &str, entered_at: u64) -> PathBuf {
    let eid = EpisodeId::parse(id).expect("id");
    let dir = layout.episode_dir(state, &eid);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("frame.bin"), [7u8; 4096]).expect("write");
    fs::write(dir.join(layout::DONE_MARKER), b"").expect("marker");
    Sidecar {
        episode_id: id.into(),
        state,
        entered_at,
        reason: "HTTP 422: schema".into(),
        http_status: Some(422),
        sha256: None,
        archive_bytes: Some(4096),
        attempts: 2,
        refusal_check: None,
    }
    .store(layout, &eid)
    .expect("sidecar");
    dir
}

fn sidecar_json(layout: &Layout, state: State, id: &str) -> serde_json::Value {
    let path = layout.sidecar(state, &EpisodeId::parse(id).expect("id"));
    serde_json::from_slice(&fs::read(&path).expect("sidecar")).expect("json")
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).expect("read")
}

#[test]
fn entry_times_from_a_wrong_clock_restart_the_count_once() {
    let host = Host::new();
    let layout = host.layout();
    let t0 = unix_now();
    let from_2020 = settled(&layout, State::Quarantine, "booted-in-2020", JAN_2020);
    let ten_years = t0 + 3650 * DAY;
    let from_ahead = settled(&layout, State::Shipped, "booted-ahead", ten_years);
    // Settled with a right clock 31 days ago: before this build's commit
    // perhaps, but within the year before it that is believed.
    let month_old = settled(&layout, State::Quarantine, "month-old", t0 - 31 * DAY);
    let sidecar = |state, id: &str| layout.sidecar(state, &EpisodeId::parse(id).expect("id"));
    let before = (
        read(&sidecar(State::Quarantine, "booted-in-2020")),
        read(&sidecar(State::Shipped, "booted-ahead")),
    );

    // A dry run says so, and changes nothing.
    let (stdout, _) = host.prune(&["--dry-run"]);
    assert!(
        stdout.contains(
            "would restart the retention count of quarantine/booted-in-2020  \
             (entry time 2020-01-01T00:00:00Z (its sidecar's entered_at) is more than 365 days \
             before this build"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("would restart the retention count of shipped/booted-ahead  (entry time")
            && stdout.contains("is in the future: the clock was wrong; retention counts from now"),
        "{stdout}"
    );
    assert!(
        stdout.contains("would remove quarantine/month-old  (quarantined 31.0 days ago"),
        "{stdout}"
    );
    assert_eq!(
        before,
        (
            read(&sidecar(State::Quarantine, "booted-in-2020")),
            read(&sidecar(State::Shipped, "booted-ahead")),
        ),
        "a dry run writes nothing"
    );
    assert!(month_old.is_dir());

    // The first real run keeps both and records where their count starts.
    let (stdout, stderr) = host.prune(&[]);
    let t1 = unix_now();
    assert!(
        from_2020.is_dir() && from_ahead.is_dir(),
        "{stdout}{stderr}"
    );
    assert!(!month_old.exists(), "a right entry time counts: {stdout}");
    for (state, id, recorded) in [
        (State::Quarantine, "booted-in-2020", JAN_2020),
        (State::Shipped, "booted-ahead", ten_years),
    ] {
        let s = sidecar_json(&layout, state, id);
        let entered = s["entered_at"].as_u64().expect("entered_at");
        assert!((t0..=t1).contains(&entered), "{id}: {s}");
        assert_eq!(
            s["entered_at_untrusted"].as_u64(),
            Some(recorded),
            "{id}: {s}"
        );
        // Everything else is as it was, and the shipper's type still reads it.
        assert_eq!(s["reason"], "HTTP 422: schema", "{id}: {s}");
        assert_eq!(
            (s["http_status"].as_u64(), s["attempts"].as_u64()),
            (Some(422), Some(2))
        );
        let typed = Sidecar::load(&layout, state, &EpisodeId::parse(id).expect("id"))
            .expect("load")
            .expect("present");
        assert_eq!(typed.entered_at, entered);
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("kept {state}/{id}"))
                    && l.contains("OUTCOME=\"retention_restarted\"")),
            "{stderr}"
        );
    }
    assert!(
        stdout.contains(
            "restarted the retention count of 2 episode(s) whose entry time the clock had wrong"
        ),
        "{stdout}"
    );
    assert!(stderr.contains("RESTARTED=2"), "{stderr}");

    // The second run: not 7 years old, nothing restarted again.
    let after_first = (
        read(&sidecar(State::Quarantine, "booted-in-2020")),
        read(&sidecar(State::Shipped, "booted-ahead")),
    );
    let (stdout, stderr) = host.prune(&[]);
    assert!(
        from_2020.is_dir() && from_ahead.is_dir(),
        "{stdout}{stderr}"
    );
    assert_eq!(stdout.lines().next(), Some("nothing to prune"), "{stdout}");
    assert!(!stdout.contains("restart"), "{stdout}");
    assert_eq!(
        after_first,
        (
            read(&sidecar(State::Quarantine, "booted-in-2020")),
            read(&sidecar(State::Shipped, "booted-ahead")),
        )
    );
}
