//! One row builder per subject, and the phrasing they share (episode
//! lists, requeue commands, shell quoting).

use std::fmt::Write as _;

use super::activity::Activity;
use super::{Facts, Row};

mod client_cert;
mod config;
mod data;
mod disk;
mod journal;
mod units;

/// Every row for these facts, unsorted. `activity` is `None` when the
/// journal could not be read.
pub(super) fn build(f: &Facts, activity: Option<&Activity>, window: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    config::config_row(f, &mut rows);
    client_cert::client_cert_row(f, &mut rows);
    if let Some(a) = activity {
        journal::journal_rows(f, a, window, &mut rows);
    }
    journal::journal_access_row(f, activity, window, &mut rows);
    units::unit_rows(f, activity, window, &mut rows);
    data::data_rows(f, &mut rows);
    disk::disk_row(f, &mut rows);
    disk::reserve_row(f, &mut rows);
    disk::pause_row(f, &mut rows);
    rows
}

fn list_ids(ids: &[String], max: usize) -> String {
    let mut s = ids.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if ids.len() > max {
        let _ = write!(s, " and {} more", ids.len() - max);
    }
    s
}

fn requeue_cmd(ids: &[String]) -> String {
    match ids {
        [] => "ship-episode --requeue ID".to_string(),
        [one] => format!("ship-episode --requeue {}", shell_quote(one)),
        many => {
            let list: Vec<String> = many.iter().take(5).map(|i| shell_quote(i)).collect();
            let more = if many.len() > 5 {
                format!(
                    " (and the {} others listed by `doctor --json`)",
                    many.len() - 5
                )
            } else {
                String::new()
            };
            format!(
                "for id in {}; do ship-episode --requeue \"$id\"; done{more}",
                list.join(" ")
            )
        }
    }
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn quoted_reasons(r: &[String]) -> String {
    r.iter()
        .map(|x| format!("\"{x}\""))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("ep-1_a"), "ep-1_a");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(requeue_cmd(&["a b".into()]), "ship-episode --requeue 'a b'");
    }
}
