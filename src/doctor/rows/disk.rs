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
