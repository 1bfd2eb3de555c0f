//! Retry times and the receiver pause, written while the clock was years
//! ahead and read back once it was set right: they hold an episode back for
//! at most the longest delay any rule sets, never for years. Runs the real
//! `ship-scanner --once` against a port where nothing listens.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cis490::layout::{self, EpisodeId, Layout, RetryState, State};

const SCANNER: &str = env!("CARGO_BIN_EXE_ship-scanner");
const TEN_YEARS: u64 = 10 * 365 * 86_400;

struct Host {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("lab-host.toml");
        fs::write(
            &config,
            format!(
                "host_id = \"lab-clock\"\n[metrics]\ntextfile = \"\"\n[paths]\ndata_root = \"{}\"\n\
                 [receiver]\nurl = \"http://127.0.0.1:9\"\n\
                 [shipper]\nrequest_timeout_s = 5\n",
                dir.path().join("data").display()
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

    /// One pass of the scanner; its log, for messages.
    fn scan_once(&self) -> String {
        let out = Command::new(SCANNER)
            .arg("--once")
            .arg("--config")
            .arg(&self.config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("CIS490_CONFIG")
            .output()
            .expect("run ship-scanner");
        format!(
            "exit {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Give `path` the mtime a clock `ahead` seconds fast would have given it.
fn written_ahead(path: &Path, ahead: u64) {
    fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(SystemTime::now() + Duration::from_secs(ahead))
        .expect("set mtime");
}

/// A claimed episode waiting in the outbox.
fn in_outbox(layout: &Layout, id: &str) -> EpisodeId {
    let eid = EpisodeId::parse(id).expect("id");
    let dir = layout.episode_dir(State::Outbox, &eid);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("frame.bin"), [1u8; 1024]).expect("write");
    fs::write(dir.join(layout::DONE_MARKER), b"").expect("marker");
    eid
}

fn retry_state(layout: &Layout, id: &EpisodeId) -> RetryState {
    RetryState::load(layout, id)
        .expect("readable")
        .expect("present")
}

#[test]
fn a_retry_time_from_a_clock_years_ahead_is_due_now() {
    let host = Host::new();
    let layout = host.layout();
    let id = in_outbox(&layout, "ahead");
    let t0 = unix_now();
    RetryState {
        attempts: 3,
        next_attempt_at: t0 + TEN_YEARS + 60,
        last_error: "HTTP 503".into(),
        claimed_at: t0 + TEN_YEARS - 600,
        ..RetryState::default()
    }
    .store(&layout, &id)
    .expect("retry state");
    written_ahead(&layout.retry_file(&id), TEN_YEARS);

    let log = host.scan_once();
    // Tried now (nothing listens, so it fails again), and due again soon.
    let r = retry_state(&layout, &id);
    assert_eq!(r.attempts, 4, "{r:?}\n{log}");
    assert!(r.next_attempt_at <= unix_now() + 600, "{r:?}\n{log}");
    assert!(layout.episode_dir(State::Outbox, &id).is_dir());
}

#[test]
fn a_receiver_pause_from_a_clock_years_ahead_is_over() {
    let host = Host::new();
    let layout = host.layout();
    let id = in_outbox(&layout, "waiting");
    let pause = cis490::ship::pause_file(layout.root());
    fs::write(
        &pause,
        format!(
            "{{\"until\": {}, \"failures\": 2, \"refused\": false, \"status\": 503, \
             \"reason\": \"HTTP 503\"}}",
            unix_now() + TEN_YEARS
        ),
    )
    .expect("pause file");
    written_ahead(&pause, TEN_YEARS - 60);

    let log = host.scan_once();
    // The probe went out (and failed: nothing listens), so the episode has
    // its first failed attempt and the pause is one set by a right clock.
    let r = retry_state(&layout, &id);
    assert_eq!(r.attempts, 1, "{r:?}\n{log}");
    let p: serde_json::Value =
        serde_json::from_slice(&fs::read(&pause).expect("pause")).expect("json");
    let until = p["until"].as_u64().expect("until");
    assert!(until <= unix_now() + 600, "{p}\n{log}");
    assert_eq!(p["failures"].as_u64(), Some(3), "{p}");
}
