//! What the window's journal lines say, classified by their structured
//! fields into an [`Activity`] the row builders read.

use std::collections::BTreeMap;

use crate::journal::{self, Entry, message_id};

fn is_ship_line(e: &Entry) -> bool {
    e.identifier
        .as_deref()
        .is_some_and(|i| journal::IDENTIFIERS.contains(&i))
}

pub(super) fn is_success(e: &Entry) -> bool {
    is_ship_line(e) && matches!(e.outcome.as_deref(), Some("shipped" | "duplicate"))
}

/// The receiver's reason quoted from an outcome line
/// (`"{id}: {outcome} → {state}/ ({detail})"`, ship.rs).
fn reason_of(e: &Entry) -> Option<String> {
    let (_, rest) = e.message.split_once("/ (")?;
    let rest = rest.strip_suffix(')').unwrap_or(rest);
    Some(rest.to_string())
}

/// Unique ids in order of first appearance.
#[derive(Default)]
pub(super) struct Episodes {
    pub(super) ids: Vec<String>,
    seen: std::collections::HashSet<String>,
    pub(super) lines: usize,
}

impl Episodes {
    fn add(&mut self, e: &Entry) {
        self.lines += 1;
        if let Some(id) = &e.episode_id
            && self.seen.insert(id.clone())
        {
            self.ids.push(id.clone());
        }
    }
    pub(super) fn len(&self) -> usize {
        self.ids.len().max(usize::from(self.lines > 0))
    }
}

/// What the window's journal lines say.
#[derive(Default)]
pub(super) struct Activity {
    pub(super) rejected_412: Episodes,
    pub(super) reasons_412: Vec<String>,
    pub(super) rejected_400: Episodes,
    pub(super) reasons_400: Vec<String>,
    /// Quarantined by this host, not refused by the receiver: the id was
    /// already taken (locally, or on the receiver with other content).
    pub(super) id_reused: Episodes,
    pub(super) statuses_400: BTreeMap<u16, usize>,
    pub(super) host_errors: BTreeMap<u16, Episodes>,
    pub(super) host_reasons: BTreeMap<u16, String>,
    pub(super) transient: Episodes,
    pub(super) transient_kinds: BTreeMap<String, usize>,
    first_transient: Option<u64>,
    pub(super) shipped: usize,
    pub(super) last_success: Option<u64>,
    pub(super) successes_after_first_transient: usize,
    pub(super) watchdog_kills: usize,
    pub(super) max_restarts: Option<u32>,
    pub(super) start_limit: BTreeMap<String, String>,
}

fn push_reason(list: &mut Vec<String>, e: &Entry) {
    if let Some(r) = reason_of(e)
        && list.len() < 3
        && !list.contains(&r)
    {
        list.push(r);
    }
}

pub(super) fn analyse(entries: &[Entry]) -> Activity {
    let mut a = Activity::default();
    for e in entries {
        if let Some(unit) = e.systemd_event_unit() {
            match e.message_id.as_deref() {
                Some(message_id::UNIT_FAILURE_RESULT) => match e.unit_result.as_deref() {
                    Some("watchdog") if unit == journal::SCANNER_SERVICE => a.watchdog_kills += 1,
                    Some(r @ ("unit-start-limit-hit" | "start-limit-hit")) => {
                        a.start_limit.insert(unit.to_string(), r.to_string());
                    }
                    _ => {}
                },
                Some(message_id::UNIT_RESTART_SCHEDULED) if unit == journal::SCANNER_SERVICE => {
                    a.max_restarts = a.max_restarts.max(e.n_restarts);
                }
                _ => {}
            }
            continue;
        }
        if !is_ship_line(e) {
            continue;
        }
        match e.outcome.as_deref() {
            // No status, a success, or a 409: the receiver refused
            // nothing; the recorder reused an id (ship.rs sets it aside).
            Some("quarantined") if matches!(e.http_status, None | Some(200..=299 | 409)) => {
                a.id_reused.add(e);
            }
            Some("quarantined") if e.http_status == Some(412) => {
                a.rejected_412.add(e);
                push_reason(&mut a.reasons_412, e);
            }
            Some("quarantined") => {
                a.rejected_400.add(e);
                push_reason(&mut a.reasons_400, e);
                if let Some(s) = e.http_status {
                    *a.statuses_400.entry(s).or_default() += 1;
                }
            }
            Some("host_error") => {
                let status = e.http_status.unwrap_or(0);
                a.host_errors.entry(status).or_default().add(e);
                if let Some(r) = reason_of(e) {
                    // ship.rs appends its own fix; doctor gives the fix row.
                    let r = r.split(". Fix:").next().unwrap_or(&r).to_string();
                    a.host_reasons.insert(status, r);
                }
            }
            Some("retry") => {
                a.transient.add(e);
                let kind = match e.http_status {
                    Some(s) => format!("HTTP {s}"),
                    None => "network/timeout".to_string(),
                };
                *a.transient_kinds.entry(kind).or_default() += 1;
                if a.first_transient.is_none() {
                    a.first_transient = e.unix_secs().or(Some(0));
                }
            }
            Some("shipped" | "duplicate") => {
                a.shipped += 1;
                if let Some(t) = e.unix_secs() {
                    a.last_success = a.last_success.max(Some(t));
                }
                if a.first_transient.is_some() {
                    a.successes_after_first_transient += 1;
                }
            }
            _ => {}
        }
    }
    a
}
