//! `doctor`: what is wrong with shipping on this host, and the exact fix.
//!
//! Two halves: [`gather`] runs journalctl/systemctl/statvfs and reads the
//! data directories into [`Facts`]; [`assess`] is a pure function from
//! facts to coloured [`Row`]s, tested on captured journal fixtures.
//! Journal lines are classified by their structured fields (`OUTCOME`,
//! `HTTP_STATUS`, `EPISODE_ID`; PID 1's `MESSAGE_ID`, `UNIT`,
//! `UNIT_RESULT`, `N_RESTARTS`), never by message text; message text is
//! only quoted (the receiver's reason).

use serde::Serialize;

use crate::journal::JournalRead;
use crate::time::{human_span, rfc3339};

mod activity;
mod facts;
mod render;
mod rows;

pub use facts::{
    ClientCertFacts, ConfigFacts, DataFacts, Disk, Facts, LastSuccess, Options, OutboxItem,
    QuarantineItem, gather, parse_since, read_client_cert, read_data, read_pending,
    read_quarantine, statvfs,
};
pub use render::render_text;

pub use crate::cli::human_bytes;

/// Version of the `--json` schema (docs/doctor.md). Bump on any
/// incompatible change.
pub const SCHEMA_VERSION: u32 = 1;
/// Episode ids listed per row in `--json` (the count is always complete).
pub const MAX_EPISODES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Green,
    Yellow,
    Red,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Green => "green",
            Severity::Yellow => "yellow",
            Severity::Red => "red",
        }
    }
}

/// The overall result, with monitoring-plugin exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Critical => 2,
            Verdict::Unknown => 3,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warning => "WARNING",
            Verdict::Critical => "CRITICAL",
            Verdict::Unknown => "UNKNOWN",
        }
    }
}

/// One finding: what, the evidence, and the command that fixes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Stable machine name of the check (docs/doctor.md).
    pub check: &'static str,
    pub severity: Severity,
    pub title: String,
    pub detail: String,
    pub fix: Option<String>,
    /// Episode ids concerned (at most [`MAX_EPISODES`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub episodes: Vec<String>,
    /// How many things the row counts, when it counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Row {
    fn new(check: &'static str, severity: Severity, title: impl Into<String>) -> Row {
        Row {
            check,
            severity,
            title: title.into(),
            detail: String::new(),
            fix: None,
            episodes: Vec::new(),
            count: None,
        }
    }
    fn detail(mut self, d: impl Into<String>) -> Row {
        self.detail = d.into();
        self
    }
    fn fix(mut self, f: impl Into<String>) -> Row {
        self.fix = Some(f.into());
        self
    }
    fn count(mut self, n: usize) -> Row {
        self.count = Some(n as u64);
        self
    }
    fn episodes(mut self, ids: &[String]) -> Row {
        self.episodes = ids.iter().take(MAX_EPISODES).cloned().collect();
        self
    }
}

/// The order rows of equal severity are shown in: 412 before 400 (more
/// actionable), problems that stop shipping before those that slow it.
const CHECK_ORDER: [&str; 18] = [
    "config",
    "client_cert",
    "receiver_pause",
    "rejected_412",
    "rejected_400",
    "id_reused",
    "host_error",
    "path_unit",
    "scanner",
    "units",
    "journal",
    "transient",
    "backlog",
    "prune_timer",
    "quarantine",
    "disk",
    "disk_reserve",
    "activity",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub version: u32,
    pub verdict: Verdict,
    pub exit_code: u8,
    /// The one-line verdict.
    pub summary: String,
    pub generated_at: String,
    pub generated_at_unix: u64,
    pub window: Window,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub since_unix: u64,
    pub seconds: u64,
    /// `journalctl` or the `--journal-file` path.
    pub source: String,
}

/// The rows for these facts, worst first.
pub fn assess(f: &Facts) -> Report {
    let window = human_span(f.window_secs);
    let since = f.now.saturating_sub(f.window_secs);
    let activity = match &f.journal {
        JournalRead::Lines { entries, .. } => Some(activity::analyse(entries)),
        _ => None,
    };
    let mut rows = rows::build(f, activity.as_ref(), &window);

    rows.sort_by_key(|r| {
        let pos = CHECK_ORDER.iter().position(|c| *c == r.check).unwrap_or(99);
        (std::cmp::Reverse(r.severity), pos)
    });
    let worst = rows.iter().map(|r| r.severity).max();
    let verdict = match worst {
        Some(Severity::Red) => Verdict::Critical,
        Some(Severity::Yellow) => Verdict::Warning,
        Some(Severity::Green) => Verdict::Ok,
        None => Verdict::Unknown,
    };
    let problems: Vec<&Row> = rows
        .iter()
        .filter(|r| r.severity != Severity::Green)
        .collect();
    let summary = match problems.first() {
        None => format!("{}: shipping looks healthy", verdict.label()),
        Some(first) => {
            let more = match problems.len() - 1 {
                0 => String::new(),
                1 => " (+1 more problem)".to_string(),
                n => format!(" (+{n} more problems)"),
            };
            format!("{}: {}{more}", verdict.label(), first.title)
        }
    };
    Report {
        version: SCHEMA_VERSION,
        verdict,
        exit_code: verdict.exit_code(),
        summary,
        generated_at: rfc3339(f.now),
        generated_at_unix: f.now,
        window: Window {
            since_unix: since,
            seconds: f.window_secs,
            source: f.journal_source.clone(),
        },
        rows,
    }
}
