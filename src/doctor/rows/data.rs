//! Rows from the data directories: the backlog and quarantine.

use std::fmt::Write as _;

use super::shell_quote;
use super::units::next_prune;
use crate::cli::human_bytes;
use crate::doctor::{ConfigFacts, Facts, Row, Severity};
use crate::journal;
use crate::time::{DAY, HOUR, human_span, when};

pub(super) fn data_rows(f: &Facts, rows: &mut Vec<Row>) {
    let data = match &f.data {
        None => return,
        Some(Err(e)) => {
            rows.push(
                Row::new("backlog", Severity::Yellow, "cannot look at the data directories")
                    .detail(e.clone())
                    .fix("check paths.data_root in the config; the shipper creates its state directories there"),
            );
            return;
        }
        Some(Ok(d)) => d,
    };

    // Backlog: ready + outbox, and the age of the oldest.
    let oldest_ready = data
        .ready
        .iter()
        .filter_map(|(id, t)| t.map(|t| (t, id)))
        .min();
    let oldest_out = data
        .outbox
        .iter()
        .filter_map(|o| o.since.map(|t| (t, o)))
        .min_by_key(|(t, _)| *t);
    let oldest = [oldest_ready.map(|x| x.0), oldest_out.map(|x| x.0)]
        .into_iter()
        .flatten()
        .min();
    let age = oldest.map(|t| f.now.saturating_sub(t)).unwrap_or(0);
    let total = data.ready.len() + data.outbox.len();
    let sev = if age > DAY {
        Severity::Red
    } else if age > HOUR {
        Severity::Yellow
    } else {
        Severity::Green
    };
    let mut title = format!(
        "backlog: {} ready, {} in the outbox",
        data.ready.len(),
        data.outbox.len()
    );
    if total > 0 {
        let _ = write!(title, "; oldest waiting {}", human_span(age));
    }
    let mut detail = Vec::new();
    if let Some((t, id)) = oldest_ready {
        detail.push(format!("oldest ready: {id} (done {})", when(t, f.now)));
    }
    if let Some((t, o)) = oldest_out {
        let mut s = format!(
            "oldest in the outbox: {} (claimed {}, {} failed attempt(s)",
            o.id,
            when(t, f.now),
            o.attempts
        );
        if let Some(e) = &o.last_error {
            let _ = write!(s, ", last error: {e}");
        }
        if let Some(n) = o.next_attempt_at.filter(|n| *n > 0) {
            let _ = write!(s, ", next attempt {}", when(n, f.now));
        }
        s.push(')');
        detail.push(s);
    }
    let mut row = Row::new("backlog", sev, title)
        .detail(detail.join("; "))
        .count(total);
    if sev != Severity::Green {
        let target = oldest_out
            .map(|(_, o)| o.id.clone())
            .or(oldest_ready.map(|(_, id)| id.clone()))
            .unwrap_or_default();
        row = row.fix(format!(
            "ship the oldest now and see why it waits: `ship-episode {}`; `ship-episode` ships all ready ones",
            shell_quote(&target)
        ));
    }
    rows.push(row);

    // Quarantine: count, size from the sidecars, and what prune removes when.
    let keep_days = match &f.config {
        ConfigFacts::Loaded {
            quarantine_keep_days,
            ..
        } => *quarantine_keep_days,
        ConfigFacts::Invalid { .. } => return,
    };
    let q = &data.quarantine;
    let bytes: u64 = q.iter().filter_map(|i| i.archive_bytes).sum();
    let unknown = q.iter().filter(|i| i.archive_bytes.is_none()).count();
    let mut title = format!("quarantine: {} episode(s)", q.len());
    if !q.is_empty() {
        let _ = write!(title, ", {} compressed", human_bytes(bytes));
        if unknown > 0 {
            let _ = write!(title, " (+{unknown} of unknown size)");
        }
    }
    let mut sev = Severity::Green;
    let mut detail = String::new();
    let mut fix = None;
    if !q.is_empty() {
        if keep_days == 0 {
            sev = Severity::Yellow;
            detail = "retention.quarantine_keep_days = 0: never pruned, it only grows".into();
            fix = Some(
                "requeue what can still ship (`ship-episode --requeue ID`), delete the rest by hand, \
                 or set retention.quarantine_keep_days"
                    .to_string(),
            );
        } else {
            let keep = u64::from(keep_days) * DAY;
            let expiries: Vec<u64> = q
                .iter()
                .filter_map(|i| i.entered_at)
                .map(|t| t + keep)
                .collect();
            let due: Vec<u64> = expiries.iter().copied().filter(|t| *t <= f.now).collect();
            let next_run = next_prune(f);
            if !due.is_empty() {
                let overdue = f.now - due.iter().min().copied().unwrap_or(f.now);
                let _ = write!(
                    detail,
                    "{} past the {keep_days}-day retention, removed at the next prune run{}",
                    due.len(),
                    next_run
                        .map(|t| format!(" ({})", when(t, f.now)))
                        .unwrap_or_default()
                );
                if overdue > 2 * DAY {
                    sev = Severity::Yellow;
                    fix = Some(format!(
                        "prune is not running: `systemctl status {}`; `systemctl start {}` prunes now",
                        journal::PRUNE_TIMER,
                        journal::PRUNE_SERVICE
                    ));
                }
            }
            if let Some(next) = expiries.iter().copied().filter(|t| *t > f.now).min() {
                let n = expiries
                    .iter()
                    .filter(|t| **t <= next + DAY && **t > f.now)
                    .count();
                if !detail.is_empty() {
                    detail.push_str("; ");
                }
                let _ = write!(
                    detail,
                    "next: {n} episode(s) reach {keep_days} days {}",
                    when(next, f.now)
                );
            }
            let missing = q.iter().filter(|i| i.entered_at.is_none()).count();
            if missing > 0 {
                let _ = write!(
                    detail,
                    "; {missing} without a sidecar (kept until requeued or removed by hand)"
                );
            }
        }
    }
    let mut row = Row::new("quarantine", sev, title)
        .detail(detail)
        .count(q.len());
    if let Some(fx) = fix {
        row = row.fix(fx);
    }
    let ids: Vec<String> = q.iter().map(|i| i.id.clone()).collect();
    rows.push(row.episodes(&ids));
}
