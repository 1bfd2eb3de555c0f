//! Rows from the journal: receiver rejections, id reuse, host errors,
//! transient failures, and whether the journal could be read at all.

use std::fmt::Write as _;

use super::{list_ids, quoted_reasons, requeue_cmd, shell_quote};
use crate::doctor::activity::Activity;
use crate::doctor::{ConfigFacts, Facts, LastSuccess, Row, Severity};
use crate::journal::JournalRead;
use crate::time::when;

pub(super) fn journal_rows(f: &Facts, a: &Activity, window: &str, rows: &mut Vec<Row>) {
    if a.rejected_412.lines > 0 {
        let ids = &a.rejected_412.ids;
        let n = a.rejected_412.len();
        rows.push(
            Row::new(
                "rejected_412",
                Severity::Red,
                format!("{n} ship(s) rejected as out-of-window (HTTP 412) in the last {window}"),
            )
            .detail(format!(
                "{}; receiver said: {}. They are in quarantine/.",
                list_ids(ids, 5),
                quoted_reasons(&a.reasons_412)
            ))
            .fix(format!(
                "check the clock first: `timedatectl` must show \"System clock synchronized: yes\" \
                 and the right time; once it is right, `{}`. If the clock was right all along, the \
                 collector's acceptance window must be widened for these episodes.",
                requeue_cmd(ids)
            ))
            .episodes(ids)
            .count(n),
        );
    }
    if a.rejected_400.lines > 0 {
        let ids = &a.rejected_400.ids;
        let n = a.rejected_400.len();
        let statuses: Vec<String> = a
            .statuses_400
            .iter()
            .map(|(s, c)| format!("HTTP {s} ×{c}"))
            .collect();
        rows.push(
            Row::new(
                "rejected_400",
                Severity::Red,
                format!(
                    "{n} ship(s) rejected by the receiver ({}) in the last {window}",
                    if statuses.is_empty() {
                        "4xx".to_string()
                    } else {
                        statuses.join(", ")
                    }
                ),
            )
            .detail(format!(
                "{}; receiver said: {}. They are in quarantine/.",
                list_ids(ids, 5),
                quoted_reasons(&a.reasons_400)
            ))
            .fix(format!(
                "fix what the receiver names in each episode (e.g. the missing commit), then `{}`",
                requeue_cmd(ids)
            ))
            .episodes(ids)
            .count(n),
        );
    }
    if a.id_reused.lines > 0 {
        let ids = &a.id_reused.ids;
        let n = a.id_reused.len();
        rows.push(
            Row::new(
                "id_reused",
                Severity::Red,
                format!(
                    "{n} episode(s) set aside because their id was already used, in the last {window}"
                ),
            )
            .detail(format!(
                "{}: an episode with the same id was already shipped (or is in quarantine), \
                 with different content. The new copy is in quarantine/; requeueing it would \
                 only set it aside again.",
                list_ids(ids, 5)
            ))
            .fix(
                "make the recorder use unique episode ids; compare the copies (quarantine/ID, \
                 shipped/ID and the receiver's), then rename the new directory to a fresh id and \
                 move it into episodes/ to ship it"
                    .to_string(),
            )
            .episodes(ids)
            .count(n),
        );
    }
    for (status, eps) in &a.host_errors {
        // An object store's refusal names its own fix (`S3 403 Code: ...`).
        let s3_fix = a
            .host_reasons
            .get(status)
            .and_then(|r| crate::transport::s3::classify::fix_in_reason(r));
        let what = match (s3_fix, status) {
            (Some(_), _) => "the object store settings",
            (None, 401) => "the bearer token",
            (None, 403) => "this host's certificate or enrolment",
            (None, 404 | 405) => "the receiver URL",
            _ => "the receiver settings",
        };
        let fix = s3_fix.unwrap_or_else(|| crate::outcome::host_error_fix(*status));
        let config_hint = match &f.config {
            ConfigFacts::Loaded { path, .. } => format!(" (in {})", path.display()),
            ConfigFacts::Invalid { .. } => String::new(),
        };
        rows.push(
            Row::new(
                "host_error",
                Severity::Red,
                format!(
                    "the receiver refused this host: HTTP {status}, {what} ({} time(s) in the last {window})",
                    eps.lines
                ),
            )
            .detail(format!(
                "{}. Shipping stops at the first such answer; episodes wait in the outbox ({}).",
                a.host_reasons
                    .get(status)
                    .map(|r| format!("\"{r}\""))
                    .unwrap_or_default(),
                list_ids(&eps.ids, 5)
            ))
            .fix(format!(
                "{fix}{config_hint}; then `ship-episode {}` to try again now",
                eps.ids.first().map(|i| shell_quote(i)).unwrap_or_default()
            ))
            .episodes(&eps.ids)
            .count(eps.lines),
        );
    }
    if a.transient.lines > 0 {
        let kinds: Vec<String> = a
            .transient_kinds
            .iter()
            .map(|(k, c)| format!("{k} ×{c}"))
            .collect();
        let outbox = match &f.data {
            Some(Ok(d)) => format!("{} episode(s) wait in the outbox", d.outbox.len()),
            _ => "outbox not checked".to_string(),
        };
        let draining = if a.successes_after_first_transient > 0 {
            format!(
                "still draining: {} shipped since the first failure",
                a.successes_after_first_transient
            )
        } else {
            "not draining: nothing shipped since the first failure".to_string()
        };
        let url = match &f.config {
            ConfigFacts::Loaded { receiver_url, .. } => receiver_url.clone(),
            ConfigFacts::Invalid { .. } => "RECEIVER_URL".into(),
        };
        rows.push(
            Row::new(
                "transient",
                Severity::Yellow,
                format!(
                    "{} transient upload failure(s) in the last {window} ({})",
                    a.transient.lines,
                    kinds.join(", ")
                ),
            )
            .detail(format!(
                "{draining}; {outbox}; they are retried on their own: the receiver is probed once per \
                 shipper.receiver_probe_interval_s (about 10 min) while away, then the backlog is \
                 replayed at the pace it was recorded."
            ))
            .fix(format!(
                "usually nothing: retries continue on their own. If it persists, check the \
                 receiver and the network: `curl -sS -o /dev/null -w '%{{http_code}}\\n' {url}/`"
            ))
            .episodes(&a.transient.ids)
            .count(a.transient.lines),
        );
    }
}

pub(super) fn journal_access_row(
    f: &Facts,
    a: Option<&Activity>,
    window: &str,
    rows: &mut Vec<Row>,
) {
    match (&f.journal, a) {
        (JournalRead::Denied { stderr }, _) => rows.push(
            Row::new(
                "journal",
                Severity::Yellow,
                "cannot read the journal: shipping errors are not checked",
            )
            .detail(format!("journalctl: {stderr}"))
            .fix(
                "run doctor as root (`sudo doctor`), or let this user read the journal: \
                 `usermod -aG systemd-journal $(id -un)` (log in again afterwards)",
            ),
        ),
        (JournalRead::Failed { message }, _) => rows.push(
            Row::new(
                "journal",
                Severity::Yellow,
                "could not read the journal: shipping errors are not checked",
            )
            .detail(message.clone())
            .fix("check that `journalctl -o json -n 1` works here"),
        ),
        (
            JournalRead::Lines {
                entries,
                unparsable,
            },
            Some(a),
        ) => {
            let last = match (a.last_success, f.last_success_before) {
                (Some(t), _) => format!("last successful ship {}", when(t, f.now)),
                (None, Some(LastSuccess::Journal(t))) => {
                    format!("last successful ship {}", when(t, f.now))
                }
                (None, Some(LastSuccess::ShippedDirChanged(t))) => format!(
                    "no successful ship in the journal; shipped/ last changed {}",
                    when(t, f.now)
                ),
                (None, None) => "no successful ship on record".to_string(),
            };
            let mut detail = format!(
                "{} journal line(s) read from {}",
                entries.len(),
                f.journal_source
            );
            if *unparsable > 0 {
                let _ = write!(
                    detail,
                    "; {unparsable} line(s) were not JSON and were skipped"
                );
            }
            let title = if entries.is_empty() {
                format!("no shipping activity in the last {window}; {last}")
            } else {
                format!("{} shipped in the last {window}; {last}", a.shipped)
            };
            rows.push(Row::new("activity", Severity::Green, title).detail(detail));
        }
        (JournalRead::Lines { .. }, None) => {}
    }
}
