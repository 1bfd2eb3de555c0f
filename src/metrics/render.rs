//! The Prometheus text exposition format (version 0.0.4), as node_exporter's
//! textfile collector reads it: `# HELP`, `# TYPE`, then the samples of
//! each family, all in base units. Pure: the same state gives the same text.

use std::fmt::Write;

use super::counters::Counters;
use super::gauges::Gauges;

/// The file's text for these counters and gauges. A gauge that could not
/// be read is left out rather than shown as 0: an absent series alerts as
/// absent, a false 0 would look healthy.
pub fn render(version: &str, counters: &Counters, gauges: &Gauges) -> String {
    let mut out = Out(String::new());
    out.family(
        "cis490_build_info",
        "gauge",
        "Version of the cis490 shipper that wrote this file.",
    );
    out.sample(
        "cis490_build_info",
        &format!("{{version=\"{}\"}}", escape(version)),
        1,
    );

    out.family(
        "cis490_episodes_total",
        "counter",
        "Episodes handled, by outcome (the journal's OUTCOME field).",
    );
    for (outcome, n) in &counters.episodes {
        let labels = format!("{{outcome=\"{}\"}}", escape(outcome));
        out.sample("cis490_episodes_total", &labels, n);
    }

    out.family(
        "cis490_uploaded_bytes_total",
        "counter",
        "Archive bytes of the episodes the receiver stored.",
    );
    out.sample("cis490_uploaded_bytes_total", "", counters.uploaded_bytes);

    let h = &counters.upload_seconds;
    out.family(
        "cis490_upload_duration_seconds",
        "histogram",
        "Time to upload the archive of a shipped episode.",
    );
    for (bound, n) in h.cumulative() {
        let le = bound.map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        out.sample(
            "cis490_upload_duration_seconds_bucket",
            &format!("{{le=\"{le}\"}}"),
            n,
        );
    }
    out.sample("cis490_upload_duration_seconds_sum", "", h.sum);
    out.sample("cis490_upload_duration_seconds_count", "", h.count);

    out.family(
        "cis490_last_success_timestamp_seconds",
        "gauge",
        "When an episode was last shipped (or found shipped already), in unix seconds; 0 if never.",
    );
    out.sample(
        "cis490_last_success_timestamp_seconds",
        "",
        counters.last_success.unwrap_or(0),
    );

    if let Some(b) = &gauges.backlog {
        out.family(
            "cis490_backlog_episodes",
            "gauge",
            "Episodes waiting to be shipped: ready in episodes/, or claimed into outbox/.",
        );
        out.sample("cis490_backlog_episodes", "{state=\"outbox\"}", b.outbox);
        out.sample("cis490_backlog_episodes", "{state=\"ready\"}", b.ready);
        out.family(
            "cis490_oldest_ready_age_seconds",
            "gauge",
            "Age of the oldest ready episode (since its done.marker was written); 0 if none.",
        );
        out.sample(
            "cis490_oldest_ready_age_seconds",
            "",
            b.oldest_ready_age_seconds,
        );
    }

    if let Some(q) = &gauges.quarantine {
        out.family(
            "cis490_quarantine_episodes",
            "gauge",
            "Episodes in quarantine/ (refused by the receiver, kept until retention).",
        );
        out.sample("cis490_quarantine_episodes", "", q.episodes);
        out.family(
            "cis490_quarantine_bytes",
            "gauge",
            "Archive bytes of the quarantined episodes, as their sidecars record them.",
        );
        out.sample("cis490_quarantine_bytes", "", q.archive_bytes);
    }

    if let Some(d) = &gauges.disk {
        out.family(
            "cis490_data_free_bytes",
            "gauge",
            "Free bytes on the data filesystem for unprivileged writers (statvfs f_bavail).",
        );
        out.sample("cis490_data_free_bytes", "", d.free_bytes);
        out.family(
            "cis490_data_size_bytes",
            "gauge",
            "Size of the data filesystem in bytes.",
        );
        out.sample("cis490_data_size_bytes", "", d.size_bytes);
        out.family(
            "cis490_disk_reserve_bytes",
            "gauge",
            "Free bytes staging never takes (shipper.disk_reserve_percent); 0 if off.",
        );
        out.sample("cis490_disk_reserve_bytes", "", d.reserve_bytes);
    }

    if let Some(t) = gauges.client_cert_not_after {
        out.family(
            "cis490_client_cert_expiry_timestamp_seconds",
            "gauge",
            "When receiver.client_cert expires (notAfter), in unix seconds.",
        );
        out.sample("cis490_client_cert_expiry_timestamp_seconds", "", t);
    }
    out.0
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }
}

/// A label value: backslash, double quote and line feed escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
