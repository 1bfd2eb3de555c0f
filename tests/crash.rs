//! The crash campaign: for every failpoint (`cis490::failpoint::ALL`), kill
//! the process there as `kill -9` would, run the shipper again, run prune,
//! and check that nothing was lost or settled twice. Needs the binaries
//! built with `--features failpoints` (scripts/test.sh does).

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cis490::failpoint;
use common::*;

const SHIP_SCANNER: &str = env!("CARGO_BIN_EXE_ship-scanner");
const IDS: [&str; 3] = ["ep-a", "ep-b", "ep-c"];
const STATES: [&str; 4] = ["episodes", "outbox", "shipped", "quarantine"];

/// Three episodes with fixed mtimes, so that every site packs the same bytes.
fn record(site: &Site) {
    for (n, id) in IDS.iter().enumerate() {
        let text = "t,x,y\n".repeat(20_000 + n);
        let dir = site.add_episode(
            id,
            &[
                ("video.bin", &noise(600_000, n as u64 + 1)),
                ("log/sensors.csv", text.as_bytes()),
            ],
        );
        freeze_times(&dir);
    }
}

fn freeze_times(path: &Path) {
    let t = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    if path.is_dir() {
        for e in std::fs::read_dir(path).expect("read_dir") {
            freeze_times(&e.expect("entry").path());
        }
    }
    let f = std::fs::File::open(path).expect("open for times");
    f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
        .expect("set times");
}

fn run(bin: &str, site: &Site, args: &[&str], failpoint: Option<&str>) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(&site.config)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CIS490_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match failpoint {
        Some(fp) => cmd.env("FAILPOINTS", format!("{fp}=panic")),
        None => cmd.env_remove("FAILPOINTS"),
    };
    wait_with_limit(cmd.spawn().expect("spawn"), Duration::from_secs(60))
}

fn killed(out: &Output) -> bool {
    out.status.signal() == Some(libc::SIGKILL)
}

/// One row of the table: what the crash left, and how it ended.
struct Row {
    failpoint: &'static str,
    crashed: bool,
    after_crash: String,
    rerun_code: i32,
    end_states: String,
    received: String,
    outbox_after_prune: usize,
    problems: Vec<String>,
}

fn states_of(site: &Site) -> String {
    IDS.iter()
        .map(|id| {
            let here: Vec<&str> = STATES
                .into_iter()
                .filter(|s| site.state_dir(s).join(id).is_dir())
                .collect();
            if here.is_empty() {
                "-".to_string()
            } else {
                here.join("+")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn campaign_row(fp: &'static str, reference: &[Vec<u8>]) -> Row {
    // The pause needs a receiver that fails once.
    let rcv = if fp == failpoint::PAUSE_AFTER_STORE {
        Receiver::http(&["--behave", "ep-a=once:status:503"])
    } else {
        Receiver::http(&[])
    };
    let site = Site::new(&rcv.url);
    record(&site);
    let mut problems = Vec::new();

    // The crash. Prune needs something to decide about: leftovers of a
    // crash after a settle.
    let crash = if fp == failpoint::PRUNE_BEFORE_DELETE {
        let first = run(
            SHIP_EPISODE,
            &site,
            &[],
            Some(failpoint::SETTLE_AFTER_RENAME),
        );
        if !killed(&first) {
            problems.push("the settle crash that leaves leftovers did not happen".into());
        }
        run(QUARANTINE_PRUNE, &site, &[], Some(fp))
    } else {
        run(SHIP_EPISODE, &site, &[], Some(fp))
    };
    let crashed = killed(&crash);
    if !crashed {
        problems.push(format!("never reached ({})", crash.status));
    }
    let after_crash = states_of(&site);

    // The next runs finish the job: the scanner retries the outbox and
    // ships what is ready; prune clears what is left.
    // A pause or retry time left by the crash is waited out, as the
    // daemon would.
    let mut rerun = run(SHIP_SCANNER, &site, &["--once"], None);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while IDS.iter().any(|id| site.where_is(id) != Some("shipped"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(300));
        rerun = run(SHIP_SCANNER, &site, &["--once"], None);
    }
    let prune = run(QUARANTINE_PRUNE, &site, &[], None);
    if code(&prune) != 0 {
        problems.push(format!("prune exit {}: {}", code(&prune), stderr(&prune)));
    }

    let mut received = Vec::new();
    for (id, expected) in IDS.iter().zip(reference) {
        let created = rcv
            .requests_for(&site.host, id)
            .iter()
            .filter(|r| r.status == Some(201))
            .count();
        received.push(created.to_string());
        if created != 1 {
            problems.push(format!("{id}: stored {created} times"));
        }
        match std::fs::read(rcv.stored_path(&site.host, id)) {
            Ok(bytes) if &bytes == expected => {}
            Ok(_) => problems.push(format!("{id}: stored bytes differ from a clean run")),
            Err(e) => problems.push(format!("{id}: not on the receiver: {e}")),
        }
        let here: Vec<&str> = STATES
            .into_iter()
            .filter(|s| site.state_dir(s).join(id).is_dir())
            .collect();
        if here != ["shipped"] {
            problems.push(format!("{id}: in {here:?}, not exactly in shipped/"));
        }
    }
    let outbox = site.names("outbox");
    if !outbox.is_empty() {
        problems.push(format!("outbox/ after prune: {outbox:?}"));
    }
    Row {
        failpoint: fp,
        crashed,
        after_crash,
        rerun_code: code(&rerun),
        end_states: states_of(&site),
        received: received.join(","),
        outbox_after_prune: outbox.len(),
        problems,
    }
}

#[test]
fn every_crash_window_recovers_exactly_once() {
    // A clean run gives the bytes every crash run must end up with.
    let rcv = Receiver::http(&[]);
    let clean = Site::new(&rcv.url);
    record(&clean);
    let out = run(SHIP_EPISODE, &clean, &[], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let reference: Vec<Vec<u8>> = IDS
        .iter()
        .map(|id| std::fs::read(rcv.stored_path(&clean.host, id)).expect("clean copy"))
        .collect();

    let started = SystemTime::now();
    let rows: Vec<Row> = failpoint::ALL
        .iter()
        .map(|fp| campaign_row(fp, &reference))
        .collect();

    // Printed past the test harness's capture, so that it shows in every run.
    let mut table = format!(
        "\ncrash campaign ({} failpoints, {:.1} s; states of {}):\n{:<24} {:<8} {:<34} {:<6} {:<24} {:<9} {:<7} {}\n",
        rows.len(),
        started.elapsed().unwrap_or_default().as_secs_f64(),
        IDS.join(","),
        "failpoint",
        "killed",
        "after the crash",
        "rerun",
        "in the end",
        "received",
        "outbox",
        "result"
    );
    for r in &rows {
        table += &format!(
            "{:<24} {:<8} {:<34} {:<6} {:<24} {:<9} {:<7} {}\n",
            r.failpoint,
            if r.crashed { "yes" } else { "NO" },
            r.after_crash,
            r.rerun_code,
            r.end_states,
            r.received,
            r.outbox_after_prune,
            if r.problems.is_empty() {
                "ok".to_string()
            } else {
                r.problems.join("; ")
            }
        );
    }
    let _ = std::io::stderr().write_all(table.as_bytes());
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.problems.is_empty()).collect();
    assert!(failed.is_empty(), "{table}");
}

/// SIGTERM while a settle is in flight: the stop waits for it (the settle
/// here takes 4.2 s, past the scanner's 3.5 s grace), and still ends
/// within 5 s.
#[test]
fn sigterm_lets_a_settle_in_flight_finish() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    site.add_episode("ep-1", &[("a.txt", b"hello")]);
    let mut child = Command::new(SHIP_SCANNER)
        .arg("--config")
        .arg(&site.config)
        .env(
            "FAILPOINTS",
            format!("{}=sleep(4200)", failpoint::SETTLE_AFTER_SIDECAR),
        )
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CIS490_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ship-scanner");
    let sidecar = site.state_dir("shipped").join("ep-1.json");
    assert!(
        wait_until(Duration::from_secs(20), || sidecar.exists()),
        "the settle never started"
    );
    let asked = std::time::Instant::now();
    // SAFETY: kill(2) on the child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("the scanner stops");
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(
        site.where_is("ep-1"),
        Some("shipped"),
        "the settle was cut short"
    );
}

/// The recorder fills the disk while an archive is being staged: staging
/// stops at its next look at the free space, removes its partial file, and
/// the episode waits in the outbox with the space it needs.
#[test]
fn staging_stops_when_the_recorder_fills_the_disk_meanwhile() {
    let fs = SmallFs::mount(64);
    let rcv = Receiver::http(&[]);
    let (site, data) = site_on(&fs, &rcv.url, "disk_reserve_percent = 10");
    // Fits when staging starts: 16 MiB of video, ~48 MiB free.
    common::record(&data, "grow", 16 << 20);
    let mut child = Command::new(SHIP_EPISODE)
        .arg("--config")
        .arg(&site.config)
        // Held after the first chunk reached the partial file.
        .env(
            "FAILPOINTS",
            format!("{}=1*sleep(2000)", failpoint::STAGE_MID_WRITE),
        )
        .env_remove("CIS490_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ship-episode");
    let partial = data.join("outbox/grow.tar.gz.partial");
    assert!(
        wait_until(Duration::from_secs(20), || partial.exists()),
        "staging never started"
    );
    // The recorder writes 40 MiB meanwhile: ~8 MiB stay free, near the
    // 6.4 MiB reserve, too little for the rest of the archive.
    std::fs::write(fs.path().join("recording.bin"), noise(40 << 20, 9)).expect("recorder");
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("ship-episode ends");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert_eq!(status.code(), Some(75), "{err}");
    assert!(!partial.exists(), "the partial archive is cleaned up");
    assert!(!data.join("outbox/grow.tar.gz").exists());
    assert!(
        data.join("outbox/grow").is_dir(),
        "the episode waits in the outbox"
    );
    let retry: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("outbox/grow.retry.json")).expect("retry state"),
    )
    .expect("json");
    assert!(retry["stage_needs_bytes"].as_u64().is_some(), "{retry}");
    assert!(err.contains("disk_reserve_percent"), "{err}");
    assert!(rcv.requests().is_empty(), "nothing was uploaded");
}
