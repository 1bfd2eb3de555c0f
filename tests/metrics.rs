//! The metrics textfile as the binaries write it: counters that add up over
//! separate processes (one after the other and at the same time), gauges
//! read from the disk, and Debian's `promtool` on both the file and the
//! example alert rules (docs/operations.md).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// `name{labels}` → value, from the exposition text (comments skipped).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            (series.to_string(), value.parse().expect("value"))
        })
        .collect()
}

fn read_samples(site: &Site) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(site.metrics_file()).expect("metrics textfile");
    samples(&text)
}

fn value(s: &BTreeMap<String, f64>, series: &str) -> f64 {
    *s.get(series)
        .unwrap_or_else(|| panic!("{series} missing from {s:#?}"))
}

/// Debian's promtool (package `prometheus`; scripts/test.sh installs it).
fn promtool(args: &[&str], stdin: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new("promtool");
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(p) = stdin {
        cmd.stdin(std::fs::File::open(p).expect("stdin file"));
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run promtool ({e}): install Debian's prometheus package (scripts/test.sh does)"
        )
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn archive_bytes(site: &Site, id: &str) -> f64 {
    site.sidecar("shipped", id)["archive_bytes"]
        .as_u64()
        .expect("archive_bytes") as f64
}

#[test]
fn counters_add_up_over_runs_and_promtool_finds_nothing_to_say() {
    let rcv = Receiver::http(&["--behave", "bad=status:400"]);
    let site = Site::new(&rcv.url);
    let t0 = now();
    site.add_episode("ep-1", &[("a.bin", &noise(200_000, 1))]);
    assert_eq!(code(&site.ship(&[])), 0);
    let s = read_samples(&site);
    assert_eq!(value(&s, "cis490_episodes_total{outcome=\"shipped\"}"), 1.0);
    assert_eq!(
        value(&s, "cis490_uploaded_bytes_total"),
        archive_bytes(&site, "ep-1")
    );

    // A second process: the counts go on from the first one's.
    site.add_episode("ep-2", &[("a.bin", &noise(300_000, 2))]);
    site.add_episode("bad", &[("a.bin", b"refused")]);
    assert_eq!(code(&site.ship(&[])), 65);
    let s = read_samples(&site);
    assert_eq!(value(&s, "cis490_episodes_total{outcome=\"shipped\"}"), 2.0);
    assert_eq!(
        value(&s, "cis490_episodes_total{outcome=\"quarantined\"}"),
        1.0
    );
    assert_eq!(value(&s, "cis490_episodes_total{outcome=\"retry\"}"), 0.0);
    assert_eq!(
        value(&s, "cis490_uploaded_bytes_total"),
        archive_bytes(&site, "ep-1") + archive_bytes(&site, "ep-2")
    );
    assert_eq!(value(&s, "cis490_upload_duration_seconds_count"), 2.0);
    assert_eq!(
        value(&s, "cis490_upload_duration_seconds_bucket{le=\"+Inf\"}"),
        2.0
    );
    let last = value(&s, "cis490_last_success_timestamp_seconds") as u64;
    assert!(t0 <= last && last <= now(), "{last}");
    assert_eq!(value(&s, "cis490_backlog_episodes{state=\"ready\"}"), 0.0);
    assert_eq!(value(&s, "cis490_backlog_episodes{state=\"outbox\"}"), 0.0);
    assert_eq!(value(&s, "cis490_quarantine_episodes"), 1.0);
    assert!(value(&s, "cis490_quarantine_bytes") > 0.0);
    assert!(value(&s, "cis490_data_free_bytes") > 0.0);
    let version = format!(
        "cis490_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&s, &version), 1.0);
    // No client certificate configured: no expiry series.
    assert!(!s.keys().any(|k| k.contains("client_cert")), "{s:#?}");

    // Waiting episodes show up as backlog, with the age of the oldest.
    site.episode("episodes", "waiting", 1000, true);
    let marker = site.state_dir("episodes").join("waiting/done.marker");
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&marker)
        .and_then(|f| f.set_modified(hour_ago))
        .expect("backdate done.marker");
    let out = Command::new(QUARANTINE_PRUNE)
        .arg("--config")
        .arg(&site.config)
        .output()
        .expect("prune");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let s = read_samples(&site);
    assert_eq!(value(&s, "cis490_backlog_episodes{state=\"ready\"}"), 1.0);
    let age = value(&s, "cis490_oldest_ready_age_seconds");
    assert!((3600.0..3700.0).contains(&age), "{age}");
    // Prune counts nothing.
    assert_eq!(value(&s, "cis490_episodes_total{outcome=\"shipped\"}"), 2.0);

    let (ok, said) = promtool(&["check", "metrics"], Some(&site.metrics_file()));
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}

/// Runs at the same time (the path unit's `ship-episode` beside the
/// scanner) each add their own: none is lost to the others.
#[test]
fn concurrent_runs_lose_no_increment() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    let n = 8;
    for i in 0..n {
        site.add_episode(&format!("c-{i}"), &[("a.bin", &noise(50_000, i))]);
    }
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(SHIP_EPISODE)
                .arg("--config")
                .arg(&site.config)
                .arg(format!("c-{i}"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = wait_with_limit(child, std::time::Duration::from_secs(60));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let s = read_samples(&site);
    assert_eq!(
        value(&s, "cis490_episodes_total{outcome=\"shipped\"}"),
        n as f64
    );
    assert_eq!(value(&s, "cis490_upload_duration_seconds_count"), n as f64);
    let bytes: f64 = (0..n)
        .map(|i| archive_bytes(&site, &format!("c-{i}")))
        .sum();
    assert_eq!(value(&s, "cis490_uploaded_bytes_total"), bytes);
}

/// Metrics never fail a ship: a textfile directory that is not there is a
/// warning (it was configured), and `""` writes nothing at all.
#[test]
fn a_metrics_problem_never_fails_a_ship() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    let missing = site.dir.path().join("no-such-dir/cis490.prom");
    let text = std::fs::read_to_string(&site.config).expect("config");
    let configured = site.metrics_file().display().to_string();
    std::fs::write(
        &site.config,
        text.replace(&configured, &missing.display().to_string()),
    )
    .expect("config");
    site.add_episode("m-1", &[("a.bin", b"x")]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(site.where_is("m-1"), Some("shipped"));
    let err = stderr(&out);
    assert!(
        err.contains("metrics not written") && err.contains("no-such-dir"),
        "{err}"
    );
    // Counted all the same: the file shows it once the directory exists.
    std::fs::create_dir(missing.parent().expect("dir")).expect("mkdir");
    assert_eq!(code(&site.ship(&[])), 0);
    let s = samples(&std::fs::read_to_string(&missing).expect("written now"));
    assert_eq!(value(&s, "cis490_episodes_total{outcome=\"shipped\"}"), 1.0);

    std::fs::write(
        &site.config,
        text.replace(&format!("\"{configured}\""), "\"\""),
    )
    .expect("config");
    std::fs::remove_file(site.data().join(".metrics.json")).expect("counters");
    site.add_episode("m-2", &[("a.bin", b"y")]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!site.data().join(".metrics.json").exists());
    assert!(!site.metrics_file().exists());
}

/// The example alert rules load, fire on the situations they are for and
/// stay quiet otherwise (promtool's rule unit tests), and operations.md
/// shows them as they are.
#[test]
fn alert_rules_pass_promtool_and_are_the_documented_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = root.join("contrib/prometheus/cis490.rules.yml");
    let (ok, said) = promtool(&["check", "rules", &rules.display().to_string()], None);
    assert!(ok && said.contains("SUCCESS: 5 rules found"), "{said}");
    let tests = root.join("contrib/prometheus/cis490.rules.test.yml");
    let (ok, said) = promtool(&["test", "rules", &tests.display().to_string()], None);
    assert!(ok && said.contains("SUCCESS"), "{said}");

    let doc = std::fs::read_to_string(root.join("docs/operations.md")).expect("operations.md");
    let text = std::fs::read_to_string(&rules).expect("rules");
    assert!(
        doc.contains(&text),
        "docs/operations.md must quote contrib/prometheus/cis490.rules.yml verbatim"
    );
}
