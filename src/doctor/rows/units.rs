//! Rows from the units: the path unit, the scanner, the prune timer.

use crate::doctor::activity::Activity;
use crate::doctor::{Facts, Row, Severity};
use crate::journal;
use crate::time::when;
use crate::unit_state::{NextElapse, UnitState, UnitsRead};

fn unit<'a>(states: &'a [UnitState], id: &str) -> Option<&'a UnitState> {
    states.iter().find(|u| u.id == id)
}

fn not_installed(check: &'static str, id: &str) -> Row {
    Row::new(check, Severity::Yellow, format!("{id} is not installed")).fix(format!(
        "install the cis490 units, then `systemctl enable --now {id}`"
    ))
}

pub(super) fn unit_rows(f: &Facts, a: Option<&Activity>, window: &str, rows: &mut Vec<Row>) {
    let path_fix = format!(
        "systemctl reset-failed {p} {s} && systemctl start {p}",
        p = journal::PATH_UNIT,
        s = journal::EPISODE_SERVICE
    );
    let path_limit_in_window = a.and_then(|a| a.start_limit.get(journal::PATH_UNIT));
    let watchdog = a.map_or(0, |a| a.watchdog_kills);
    let restarts = a.and_then(|a| a.max_restarts);
    let states = match &f.units {
        UnitsRead::States(s) => s,
        UnitsRead::Unavailable(why) => {
            rows.push(
                Row::new("units", Severity::Yellow, "unit state unknown")
                    .detail(why.clone())
                    .fix("run doctor on the lab host itself, where systemd runs the cis490 units"),
            );
            // The journal still tells what happened in the window.
            if let Some(r) = path_limit_in_window {
                rows.push(
                    Row::new(
                        "path_unit",
                        Severity::Red,
                        format!("{} failed ({r}) in the last {window}: it stops watching for new episodes", journal::PATH_UNIT),
                    )
                    .fix(path_fix.clone()),
                );
            }
            if watchdog > 0 {
                rows.push(
                    Row::new(
                        "scanner",
                        Severity::Yellow,
                        format!(
                            "{} was killed by its watchdog {watchdog} time(s) in the last {window}",
                            journal::SCANNER_SERVICE
                        ),
                    )
                    .detail(
                        restarts
                            .map(|n| format!("restart counter at {n}"))
                            .unwrap_or_default(),
                    )
                    .fix(format!(
                        "see why it hung: `journalctl -u {} --since -{}`",
                        journal::SCANNER_SERVICE,
                        window.replace(' ', "")
                    )),
                );
            }
            return;
        }
    };

    match unit(states, journal::PATH_UNIT) {
        Some(u) if u.load_state == "not-found" => rows.push(not_installed("path_unit", &u.id)),
        Some(u) if u.active_state == "failed" => rows.push(
            Row::new(
                "path_unit",
                Severity::Red,
                format!(
                    "{} has failed (Result={}): new episodes are not being noticed",
                    u.id, u.result
                ),
            )
            .detail(if u.result == "unit-start-limit-hit" {
                format!(
                    "{} was started too often in a row, so systemd stopped the path unit; it \
                     stays stopped until reset.",
                    journal::EPISODE_SERVICE
                )
            } else {
                String::new()
            })
            .fix(path_fix.clone()),
        ),
        Some(u) if u.active_state != "active" => rows.push(
            Row::new(
                "path_unit",
                Severity::Red,
                format!(
                    "{} is {}: new episodes are not being noticed",
                    u.id, u.active_state
                ),
            )
            .fix(format!("systemctl enable --now {}", u.id)),
        ),
        Some(u) => {
            let (sev, title) = match path_limit_in_window {
                Some(r) => (
                    Severity::Yellow,
                    format!(
                        "{} failed ({r}) in the last {window}, but is watching again",
                        u.id
                    ),
                ),
                None => (Severity::Green, format!("{} is watching", u.id)),
            };
            let mut row = Row::new("path_unit", sev, title);
            if sev == Severity::Yellow {
                row = row.fix(format!(
                    "if it happens again, see `journalctl -u {} --since -1h`: the service must take \
                     every episode out of episodes/",
                    journal::EPISODE_SERVICE
                ));
            }
            rows.push(row);
        }
        None => {}
    }

    match unit(states, journal::SCANNER_SERVICE) {
        Some(u) if u.load_state == "not-found" => rows.push(not_installed("scanner", &u.id)),
        Some(u)
            if u.active_state != "active"
                && u.active_state != "activating"
                && u.active_state != "reloading" =>
        {
            rows.push(
                Row::new(
                    "scanner",
                    Severity::Red,
                    format!(
                        "{} is not running ({}/{}, Result={})",
                        u.id, u.active_state, u.sub_state, u.result
                    ),
                )
                .detail("retries of the outbox and the sweep for missed episodes have stopped")
                .fix(format!(
                    "systemctl restart {id}; then `journalctl -u {id} -n 50` for why it stopped",
                    id = u.id
                )),
            )
        }
        Some(u) => {
            let n = u.n_restarts.unwrap_or(0);
            if watchdog > 0 {
                rows.push(
                    Row::new(
                        "scanner",
                        Severity::Yellow,
                        format!(
                            "{} was killed by its watchdog {watchdog} time(s) in the last {window} and restarted (NRestarts={n})",
                            u.id
                        ),
                    )
                    .detail("it stopped sending watchdog pings: it hung (stuck I/O, a full disk, a stalled upload)")
                    .fix(format!(
                        "see what it was doing: `journalctl -u {} --since -{}`; if it keeps happening, report it with that output",
                        u.id,
                        window.replace(' ', "")
                    )),
                );
            } else {
                let note = if n > 0 {
                    format!(" (restarted {n} time(s) since boot, none in the last {window})")
                } else {
                    String::new()
                };
                rows.push(Row::new(
                    "scanner",
                    Severity::Green,
                    format!("{} is running{note}", u.id),
                ));
            }
        }
        None => {}
    }

    match unit(states, journal::PRUNE_TIMER) {
        Some(u) if u.load_state == "not-found" => rows.push(not_installed("prune_timer", &u.id)),
        Some(u) if u.active_state != "active" => rows.push(
            Row::new(
                "prune_timer",
                Severity::Yellow,
                format!("{} is {}: quarantine is not pruned", u.id, u.active_state),
            )
            .fix(format!("systemctl enable --now {}", u.id)),
        ),
        Some(u) => match &u.next_elapse {
            NextElapse::None => rows.push(
                Row::new(
                    "prune_timer",
                    Severity::Yellow,
                    format!("{} has no next run: quarantine is not pruned", u.id),
                )
                .detail("a timer with only OnUnitActiveSec= never fires; it needs OnBootSec= as well")
                .fix(format!(
                    "check `systemctl cat {id}` has OnBootSec= and OnUnitActiveSec=, then `systemctl daemon-reload && systemctl restart {id}`",
                    id = u.id
                )),
            ),
            NextElapse::At(t) => rows.push(Row::new(
                "prune_timer",
                Severity::Green,
                format!("{} next runs {}", u.id, when(*t, f.now)),
            )),
            NextElapse::Scheduled(raw) => rows.push(Row::new(
                "prune_timer",
                Severity::Green,
                format!("{} next runs at {raw}", u.id),
            )),
        },
        None => {}
    }
}

pub(super) fn next_prune(f: &Facts) -> Option<u64> {
    match &f.units {
        UnitsRead::States(s) => match unit(s, journal::PRUNE_TIMER)?.next_elapse {
            NextElapse::At(t) => Some(t),
            _ => None,
        },
        UnitsRead::Unavailable(_) => None,
    }
}
