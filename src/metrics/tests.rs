//! Rendering of a known state, the tally of a run, and the counters file.
use std::time::Duration;

use super::counters::{COUNTERS_FILE, Counters, Histogram, LockedCounters, Tally, UPLOAD_BUCKETS};
use super::gauges::{Backlog, DiskGauges, Gauges, QuarantineTotals};
use super::render::render;
use crate::layout::{EpisodeId, State};
use crate::machine::host::HostSignal;
use crate::outcome::OutcomeKind;
use crate::ship::{EpisodeReport, RunReport};

fn report(id: &str, outcome: OutcomeKind, bytes: u64, upload_ms: Option<u64>) -> EpisodeReport {
    EpisodeReport {
        id: EpisodeId::parse(id).expect("id"),
        outcome,
        state: State::Shipped,
        detail: String::new(),
        http_status: None,
        archive_bytes: Some(bytes),
        duration: Duration::from_secs(9),
        upload_time: upload_ms.map(Duration::from_millis),
        attempt: 1,
        next_attempt_at: None,
        host: HostSignal::Silent,
    }
}

fn known_run() -> RunReport {
    let mut run = RunReport::default();
    for r in [
        report("a", OutcomeKind::Shipped, 3_000_000, Some(750)),
        report("b", OutcomeKind::Shipped, 2_000_000_000, Some(95_000)),
        report("c", OutcomeKind::Duplicate, 10, Some(20)),
        report("d", OutcomeKind::Quarantined, 10, Some(20)),
        report("e", OutcomeKind::Retry, 10, Some(20)),
        report("f", OutcomeKind::Retry, 10, None),
        report("g", OutcomeKind::Skipped, 10, None),
    ] {
        run.episodes.push(r);
    }
    run
}

#[test]
fn a_run_tallies_its_counted_outcomes() {
    let t = Tally::of(&known_run());
    let counts: Vec<_> = t.episodes.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(
        counts,
        [
            ("shipped", 2),
            ("duplicate", 1),
            ("quarantined", 1),
            ("retry", 2)
        ]
    );
    // Only what the receiver stored counts as uploaded, and timed.
    assert_eq!(t.uploaded_bytes, 2_003_000_000);
    assert_eq!(t.upload_seconds, [0.75, 95.0]);
    assert!(t.succeeded);

    let mut refused = RunReport::default();
    refused.push(report("h", OutcomeKind::HostError, 10, Some(5)));
    let t = Tally::of(&refused);
    assert!(!t.succeeded);
    assert_eq!(t.uploaded_bytes, 0);
    assert!(Tally::of(&RunReport::default()).is_empty());
}

#[test]
fn histogram_buckets_are_cumulative_and_inclusive() {
    let mut h = Histogram::new(&[1.0, 10.0]);
    for v in [0.2, 1.0, 1.5, 10.0, 11.0, 5000.0] {
        h.observe(v);
    }
    assert_eq!(h.cumulative(), [(Some(1.0), 2), (Some(10.0), 4), (None, 6)]);
    assert_eq!(h.count, 6);
    assert!((h.sum - 5023.7).abs() < 1e-9);
}

/// The exact file for a known state: counters after the run above at
/// 1_767_225_600 (2026-01-01), a backlog, quarantine, disk and certificate.
#[test]
fn renders_the_exact_text_for_a_known_state() {
    let mut counters = Counters::default();
    counters.add(&Tally::of(&known_run()), 1_767_225_600);
    let gauges = Gauges {
        backlog: Some(Backlog {
            ready: 2,
            outbox: 1,
            oldest_ready_age_seconds: 42,
        }),
        quarantine: Some(QuarantineTotals {
            episodes: 1,
            archive_bytes: 1234,
        }),
        disk: Some(DiskGauges {
            free_bytes: 50_000_000_000,
            size_bytes: 100_000_000_000,
            reserve_bytes: 10_000_000_000,
        }),
        client_cert_not_after: Some(1_798_761_600),
    };
    let text = render("1.2.3", &counters, &gauges);
    let expected = r#"# HELP cis490_build_info Version of the cis490 shipper that wrote this file.
# TYPE cis490_build_info gauge
cis490_build_info{version="1.2.3"} 1
# HELP cis490_episodes_total Episodes handled, by outcome (the journal's OUTCOME field).
# TYPE cis490_episodes_total counter
cis490_episodes_total{outcome="duplicate"} 1
cis490_episodes_total{outcome="host_error"} 0
cis490_episodes_total{outcome="quarantined"} 1
cis490_episodes_total{outcome="retry"} 2
cis490_episodes_total{outcome="shipped"} 2
# HELP cis490_uploaded_bytes_total Archive bytes of the episodes the receiver stored.
# TYPE cis490_uploaded_bytes_total counter
cis490_uploaded_bytes_total 2003000000
# HELP cis490_upload_duration_seconds Time to upload the archive of a shipped episode.
# TYPE cis490_upload_duration_seconds histogram
cis490_upload_duration_seconds_bucket{le="0.5"} 0
cis490_upload_duration_seconds_bucket{le="1"} 1
cis490_upload_duration_seconds_bucket{le="2.5"} 1
cis490_upload_duration_seconds_bucket{le="5"} 1
cis490_upload_duration_seconds_bucket{le="10"} 1
cis490_upload_duration_seconds_bucket{le="30"} 1
cis490_upload_duration_seconds_bucket{le="60"} 1
cis490_upload_duration_seconds_bucket{le="120"} 2
cis490_upload_duration_seconds_bucket{le="300"} 2
cis490_upload_duration_seconds_bucket{le="600"} 2
cis490_upload_duration_seconds_bucket{le="1800"} 2
cis490_upload_duration_seconds_bucket{le="3600"} 2
cis490_upload_duration_seconds_bucket{le="7200"} 2
cis490_upload_duration_seconds_bucket{le="+Inf"} 2
cis490_upload_duration_seconds_sum 95.75
cis490_upload_duration_seconds_count 2
# HELP cis490_last_success_timestamp_seconds When an episode was last shipped (or found shipped already), in unix seconds; 0 if never.
# TYPE cis490_last_success_timestamp_seconds gauge
cis490_last_success_timestamp_seconds 1767225600
# HELP cis490_backlog_episodes Episodes waiting to be shipped: ready in episodes/, or claimed into outbox/.
# TYPE cis490_backlog_episodes gauge
cis490_backlog_episodes{state="outbox"} 1
cis490_backlog_episodes{state="ready"} 2
# HELP cis490_oldest_ready_age_seconds Age of the oldest ready episode (since its done.marker was written); 0 if none.
# TYPE cis490_oldest_ready_age_seconds gauge
cis490_oldest_ready_age_seconds 42
# HELP cis490_quarantine_episodes Episodes in quarantine/ (refused by the receiver, kept until retention).
# TYPE cis490_quarantine_episodes gauge
cis490_quarantine_episodes 1
# HELP cis490_quarantine_bytes Archive bytes of the quarantined episodes, as their sidecars record them.
# TYPE cis490_quarantine_bytes gauge
cis490_quarantine_bytes 1234
# HELP cis490_data_free_bytes Free bytes on the data filesystem for unprivileged writers (statvfs f_bavail).
# TYPE cis490_data_free_bytes gauge
cis490_data_free_bytes 50000000000
# HELP cis490_data_size_bytes Size of the data filesystem in bytes.
# TYPE cis490_data_size_bytes gauge
cis490_data_size_bytes 100000000000
# HELP cis490_disk_reserve_bytes Free bytes staging never takes (shipper.disk_reserve_percent); 0 if off.
# TYPE cis490_disk_reserve_bytes gauge
cis490_disk_reserve_bytes 10000000000
# HELP cis490_client_cert_expiry_timestamp_seconds When receiver.client_cert expires (notAfter), in unix seconds.
# TYPE cis490_client_cert_expiry_timestamp_seconds gauge
cis490_client_cert_expiry_timestamp_seconds 1798761600
"#;
    assert_eq!(text, expected);
}

#[test]
fn unread_gauges_are_left_out_not_zero() {
    let text = render("0.1.0", &Counters::default(), &Gauges::default());
    for absent in [
        "cis490_backlog_episodes",
        "cis490_quarantine_episodes",
        "cis490_data_free_bytes",
        "cis490_client_cert_expiry_timestamp_seconds",
    ] {
        assert!(!text.contains(absent), "{absent} rendered:\n{text}");
    }
    // Counters are always there, every outcome from 0, so that rate() and
    // increase() see the first one.
    assert!(text.contains("cis490_episodes_total{outcome=\"host_error\"} 0\n"));
    assert!(text.contains("cis490_last_success_timestamp_seconds 0\n"));
}

#[test]
fn counters_add_up_across_opens_and_survive_a_bad_file() {
    let d = tempfile::tempdir().expect("tempdir");
    let t = Tally::of(&known_run());
    {
        let mut c = LockedCounters::open(d.path()).expect("open");
        c.add(&t, 100).expect("add");
    }
    {
        let mut c = LockedCounters::open(d.path()).expect("reopen");
        c.add(&t, 50).expect("add again");
        assert_eq!(c.counters.episodes["shipped"], 4);
        assert_eq!(c.counters.uploaded_bytes, 2 * 2_003_000_000);
        assert_eq!(c.counters.upload_seconds.count, 4);
        // The clock went back: the last success does not.
        assert_eq!(c.counters.last_success, Some(100));
    }
    let stored = std::fs::read_to_string(d.path().join(COUNTERS_FILE)).expect("stored");
    assert!(stored.contains("\"shipped\": 4"), "{stored}");

    // Buckets of another version: the histogram restarts, the rest stays.
    let mut old: Counters = serde_json::from_str(&stored).expect("parse");
    old.upload_seconds = Histogram::new(&[1.0]);
    old.episodes.remove("host_error");
    std::fs::write(
        d.path().join(COUNTERS_FILE),
        serde_json::to_vec(&old).expect("json"),
    )
    .expect("write");
    let c = LockedCounters::open(d.path()).expect("open old");
    assert_eq!(c.counters.upload_seconds, Histogram::new(&UPLOAD_BUCKETS));
    assert_eq!(c.counters.episodes["shipped"], 4);
    assert_eq!(c.counters.episodes["host_error"], 0);
    drop(c);

    // Garbage: a counter reset, not a stuck exporter.
    std::fs::write(d.path().join(COUNTERS_FILE), b"{\"episodes\": 3").expect("write");
    let c = LockedCounters::open(d.path()).expect("open garbage");
    assert_eq!(c.counters, Counters::default());
}

#[test]
fn the_textfile_is_replaced_world_readable_and_no_temp_is_left() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("tempdir");
    let path = d.path().join("cis490.prom");
    // What a killed writer (or root) left behind.
    std::fs::write(super::textfile::temp_path(&path), b"half").expect("leftover");
    super::textfile::write(&path, "a 1\n").expect("write");
    super::textfile::write(&path, "a 2\n").expect("rewrite");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "a 2\n");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let names: Vec<_> = std::fs::read_dir(d.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["cis490.prom"]);
}

#[test]
fn a_symlinked_textfile_is_written_where_it_points() {
    let d = tempfile::tempdir().expect("tempdir");
    let own = d.path().join("own");
    let exporter = d.path().join("exporter");
    std::fs::create_dir(&own).expect("mkdir");
    std::fs::create_dir(&exporter).expect("mkdir");
    let link = exporter.join("cis490.prom");
    std::os::unix::fs::symlink(own.join("cis490.prom"), &link).expect("symlink");
    let target = super::textfile::resolve(&link).expect("resolve");
    assert_eq!(target, own.join("cis490.prom"));
    super::textfile::write(&target, "a 1\n").expect("write");
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&link).expect("through"), "a 1\n");
    // A relative link resolves from its own directory.
    std::fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink("../own/cis490.prom", &link).expect("symlink");
    assert_eq!(
        super::textfile::resolve(&link).expect("resolve"),
        exporter.join("../own/cis490.prom")
    );
    // Only to a .prom file: never another file the shipper could replace.
    std::fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink(d.path().join(".receiver-pause.json"), &link).expect("symlink");
    let err = super::textfile::resolve(&link).expect_err("not .prom");
    assert!(err.to_string().contains("not a .prom file"), "{err}");
    // Not a link: the path itself.
    let plain = own.join("x.prom");
    assert_eq!(super::textfile::resolve(&plain).expect("plain"), plain);
}

#[test]
fn counts_that_could_not_be_added_go_with_the_next_run() {
    let d = tempfile::tempdir().expect("tempdir");
    let data_root = d.path().join("data");
    let prom = d.path().join("cis490.prom");
    let text = format!(
        "host_id = \"h\"\n[paths]\ndata_root = {:?}\n[receiver]\nurl = \"https://r.example\"\n\
         [metrics]\ntextfile = {:?}\n",
        data_root.display().to_string(),
        prom.display().to_string()
    );
    let config =
        crate::config::Config::parse(&text, &d.path().join("c.toml"), None).expect("config");
    let mut m = super::Metrics::new(&config).long_running();
    // No data root yet: the counters cannot be locked, nothing is written.
    m.after_run(&known_run());
    assert!(!prom.exists());
    std::fs::create_dir(&data_root).expect("data root");
    m.after_run(&known_run());
    let written = std::fs::read_to_string(&prom).expect("written");
    assert!(
        written.contains("cis490_episodes_total{outcome=\"shipped\"} 4\n"),
        "{written}"
    );
}
