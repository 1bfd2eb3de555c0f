//! The `disk` row: free space on the data root's filesystem.

use crate::cli::human_bytes;
use crate::doctor::{Facts, Row, Severity};
use crate::journal;

pub(super) fn disk_row(f: &Facts, rows: &mut Vec<Row>) {
    let root = match &f.data {
        Some(Ok(d)) => d.data_root.display().to_string(),
        _ => "data_root".into(),
    };
    match &f.disk {
        None => {}
        Some(Err(e)) => {
            rows.push(Row::new("disk", Severity::Yellow, "free space unknown").detail(e.clone()))
        }
        Some(Ok(d)) => {
            let pct = if d.total_bytes == 0 {
                100.0
            } else {
                d.avail_bytes as f64 * 100.0 / d.total_bytes as f64
            };
            let sev = if pct < 5.0 {
                Severity::Red
            } else if pct < 10.0 {
                Severity::Yellow
            } else {
                Severity::Green
            };
            let mut row = Row::new(
                "disk",
                sev,
                format!(
                    "disk: {} free of {} ({pct:.1}%) on {root}",
                    human_bytes(d.avail_bytes),
                    human_bytes(d.total_bytes)
                ),
            );
            if sev != Severity::Green {
                row = row.fix(format!(
                    "see what uses it: `du -xsh {root}/*`; ship the backlog, prune quarantine \
                     (`systemctl start {}`), or lower retention.keep_local_for_days",
                    journal::PRUNE_SERVICE
                ));
            }
            rows.push(row);
        }
    }
}

/// Episodes that wait in the outbox because staging them would cross the
/// disk reserve: red, naming each and the space it needs.
pub(super) fn reserve_row(f: &Facts, rows: &mut Vec<Row>) {
    let Some(Ok(d)) = &f.data else { return };
    let waiting: Vec<(&str, u64)> = d
        .outbox
        .iter()
        .filter_map(|o| o.stage_needs_bytes.map(|n| (o.id.as_str(), n)))
        .collect();
    if waiting.is_empty() {
        return;
    }
    let root = d.data_root.display();
    let named: Vec<String> = waiting
        .iter()
        .take(5)
        .map(|(id, n)| format!("{id} needs about {}", human_bytes(*n)))
        .collect();
    let more = if waiting.len() > 5 {
        format!(" and {} more", waiting.len() - 5)
    } else {
        String::new()
    };
    let free = match &f.disk {
        Some(Ok(disk)) => format!(
            "; {} free of {}",
            human_bytes(disk.avail_bytes),
            human_bytes(disk.total_bytes)
        ),
        _ => String::new(),
    };
    rows.push(
        Row::new(
            "disk_reserve",
            Severity::Red,
            format!(
                "{} episode(s) cannot be staged without crossing the disk reserve",
                waiting.len()
            ),
        )
        .detail(format!("{}{more}{free} on {root}", named.join(", ")))
        .fix(format!(
            "free space on {root} (`du -xsh {root}/*`; ship or prune what is settled: \
             `systemctl start {}`), or lower shipper.disk_reserve_percent if the recorder \
             needs less headroom; they are tried again with backoff",
            journal::PRUNE_SERVICE
        ))
        .episodes(
            &waiting
                .iter()
                .map(|(id, _)| id.to_string())
                .collect::<Vec<_>>(),
        )
        .count(waiting.len()),
    );
}

/// The receiver pause the shippers share: red when the receiver refused
/// this host (a fix is needed), yellow while it is unavailable.
pub(super) fn pause_row(f: &Facts, rows: &mut Vec<Row>) {
    let Some(Ok(d)) = &f.data else { return };
    let Some(p) = &d.pause else { return };
    if !p.holds(f.now) {
        return;
    }
    let left = crate::time::human_span(p.left(f.now));
    let row = match &p.fix {
        Some(fix) => Row::new(
            "receiver_pause",
            Severity::Red,
            format!("the receiver refused this host: uploads paused for {left}"),
        )
        .detail(format!("{} ({} in a row)", p.reason, p.failures))
        .fix(fix.clone()),
        None => Row::new(
            "receiver_pause",
            Severity::Yellow,
            format!("the receiver is unavailable: uploads paused for {left}"),
        )
        .detail(format!("{} ({} failure(s) in a row)", p.reason, p.failures))
        .fix(
            "usually nothing: the first upload after the pause probes the receiver. If it \
             persists, check the receiver and the network path to it",
        ),
    };
    rows.push(row);
}
