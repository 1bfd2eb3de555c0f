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

    out.single(
        "cis490_uploaded_bytes_total",
        "counter",
        "Archive bytes of the episodes the receiver stored.",
        counters.uploaded_bytes,
    );

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

    out.single(
        "cis490_last_success_timestamp_seconds",
        "gauge",
        "When an episode was last shipped (or found shipped already), in unix seconds; 0 if never.",
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
        out.single(
            "cis490_oldest_ready_age_seconds",
            "gauge",
            "Age of the oldest ready episode (since its done.marker was written); 0 if none.",
            b.oldest_ready_age_seconds,
        );
    }

    if let Some(q) = &gauges.quarantine {
        out.single(
            "cis490_quarantine_episodes",
            "gauge",
            "Episodes in quarantine/ (refused by the receiver, kept until retention).",
            q.episodes,
        );
        out.single(
            "cis490_quarantine_bytes",
            "gauge",
            "Archive bytes of the quarantined episodes, as their sidecars record them.",
            q.archive_bytes,
        );
    }

    if let Some(d) = &gauges.disk {
        out.single(
            "cis490_data_free_bytes",
            "gauge",
            "Free bytes on the data filesystem for unprivileged writers (statvfs f_bavail).",
            d.free_bytes,
        );
        out.single(
            "cis490_data_size_bytes",
            "gauge",
            "Size of the data filesystem in bytes.",
            d.size_bytes,
        );
        out.single(
            "cis490_disk_reserve_bytes",
            "gauge",
            "Free bytes staging never takes (shipper.disk_reserve_percent); 0 if off.",
            d.reserve_bytes,
        );
    }

    if let Some(t) = gauges.client_cert_not_after {
        out.single(
            "cis490_client_cert_expiry_timestamp_seconds",
            "gauge",
            "When receiver.client_cert expires (notAfter), in unix seconds.",
            t,
        );
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

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, "", value);
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
