//! `doctor`: what is wrong with shipping on this host, and the exact fix.
//!
//! Two halves: [`gather`] runs journalctl/systemctl/statvfs and reads the
//! data directories into [`Facts`]; [`assess`] is a pure function from
//! facts to coloured [`Row`]s, tested on captured journal fixtures.
//! Journal lines are classified by their structured fields (`OUTCOME`,
//! `HTTP_STATUS`, `EPISODE_ID`; PID 1's `MESSAGE_ID`, `UNIT`,
//! `UNIT_RESULT`, `N_RESTARTS`), never by message text; message text is
//! only quoted (the receiver's reason).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::journal::{self, Entry, JournalRead, message_id};
use crate::layout::{self, EpisodeId, Layout, RetryState, Sidecar, State};
use crate::unit_state::{self, NextElapse, UnitState, UnitsRead};

/// Version of the `--json` schema (docs/doctor.md). Bump on any
/// incompatible change.
pub const SCHEMA_VERSION: u32 = 1;
/// Episode ids listed per row in `--json` (the count is always complete).
pub const MAX_EPISODES: usize = 100;

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

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
const CHECK_ORDER: [&str; 15] = [
    "config",
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

// ---------------------------------------------------------------- facts

/// Everything `assess` looks at, gathered once.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now: u64,
    pub window_secs: u64,
    pub journal: JournalRead,
    pub journal_source: String,
    /// The newest successful ship before the window, if the window has none.
    pub last_success_before: Option<LastSuccess>,
    pub units: UnitsRead,
    pub config: ConfigFacts,
    /// `None` when the config could not be loaded (no data_root to look at).
    pub data: Option<Result<DataFacts, String>>,
    pub disk: Option<Result<Disk, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LastSuccess {
    /// From the journal (newest `OUTCOME=shipped|duplicate`).
    Journal(u64),
    /// The mtime of `shipped/`: last ship or prune there.
    ShippedDirChanged(u64),
}

#[derive(Debug, Clone)]
pub enum ConfigFacts {
    Loaded {
        path: PathBuf,
        verify_tls: bool,
        receiver_url: String,
        warnings: Vec<String>,
        quarantine_keep_days: u32,
    },
    Invalid {
        path: PathBuf,
        message: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataFacts {
    pub data_root: PathBuf,
    /// Ready episodes: (id, done.marker mtime).
    pub ready: Vec<(String, Option<u64>)>,
    pub outbox: Vec<OutboxItem>,
    pub quarantine: Vec<QuarantineItem>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxItem {
    pub id: String,
    /// `claimed_at` of the retry state, else the directory's ctime (the
    /// rename into the outbox sets it).
    pub since: Option<u64>,
    pub attempts: u32,
    pub next_attempt_at: Option<u64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuarantineItem {
    pub id: String,
    pub entered_at: Option<u64>,
    /// Compressed archive size from the sidecar; the trees are not walked.
    pub archive_bytes: Option<u64>,
    pub http_status: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disk {
    pub avail_bytes: u64,
    pub total_bytes: u64,
}

/// What to gather.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub window_secs: u64,
    pub journal_file: Option<PathBuf>,
    pub now: u64,
}

/// Run journalctl/systemctl/statvfs and read the data directories.
pub fn gather(opts: &Options) -> Facts {
    let since = opts.now.saturating_sub(opts.window_secs);
    let (journal, journal_source) = match &opts.journal_file {
        Some(p) => (journal::read_file(p), p.display().to_string()),
        None => (journal::read_since(since), "journalctl".to_string()),
    };
    let units = unit_state::read(&journal::UNITS, opts.now);

    let path = crate::config::resolve_path(opts.config.as_deref());
    let (config, loaded) = match Config::load(&path) {
        Ok(c) => (
            ConfigFacts::Loaded {
                path: path.clone(),
                verify_tls: c.receiver.verify_tls,
                receiver_url: c.receiver.url.clone(),
                warnings: c.warnings.clone(),
                quarantine_keep_days: c.retention.quarantine_keep_days,
            },
            Some(c),
        ),
        Err(e) => (
            ConfigFacts::Invalid {
                path,
                message: e.to_string(),
            },
            None,
        ),
    };
    let data = loaded.as_ref().map(|c| read_data(&c.data_root));
    let disk = loaded.as_ref().map(|c| statvfs(&c.data_root));

    let window_has_success = matches!(&journal, JournalRead::Lines { entries, .. }
        if entries.iter().any(is_success));
    let last_success_before = if window_has_success {
        None
    } else {
        let from_journal = if opts.journal_file.is_none() {
            journal::last_success().map(LastSuccess::Journal)
        } else {
            None
        };
        from_journal.or_else(|| {
            let root = loaded.as_ref()?.data_root.join(State::Shipped.dir_name());
            let m = std::fs::metadata(root).ok()?;
            Some(LastSuccess::ShippedDirChanged(m.mtime().max(0) as u64))
        })
    };
    Facts {
        now: opts.now,
        window_secs: opts.window_secs,
        journal,
        journal_source,
        last_success_before,
        units,
        config,
        data,
        disk,
    }
}

/// Backlog and quarantine: the state directories are listed (no tree is
/// walked); one stat per ready episode, one small JSON per outbox and
/// quarantine entry.
pub fn read_data(data_root: &Path) -> Result<DataFacts, String> {
    if !data_root.is_dir() {
        return Err(format!("{} does not exist", data_root.display()));
    }
    let layout = Layout::new(data_root);
    let mut facts = DataFacts {
        data_root: data_root.to_path_buf(),
        ..DataFacts::default()
    };
    let listing = layout.list(State::Episodes).map_err(|e| e.to_string())?;
    for id in listing.ids {
        let marker = layout
            .episode_dir(State::Episodes, &id)
            .join(layout::DONE_MARKER);
        if let Ok(m) = std::fs::symlink_metadata(&marker)
            && m.file_type().is_file()
        {
            facts
                .ready
                .push((id.to_string(), Some(m.mtime().max(0) as u64)));
        }
    }
    for id in layout.list(State::Outbox).map_err(|e| e.to_string())?.ids {
        facts.outbox.push(outbox_item(&layout, &id));
    }
    for id in layout
        .list(State::Quarantine)
        .map_err(|e| e.to_string())?
        .ids
    {
        let sidecar = Sidecar::load(&layout, State::Quarantine, &id)
            .ok()
            .flatten();
        facts.quarantine.push(QuarantineItem {
            id: id.to_string(),
            entered_at: sidecar.as_ref().map(|s| s.entered_at),
            archive_bytes: sidecar.as_ref().and_then(|s| s.archive_bytes),
            http_status: sidecar.as_ref().and_then(|s| s.http_status),
        });
    }
    Ok(facts)
}

fn outbox_item(layout: &Layout, id: &EpisodeId) -> OutboxItem {
    let retry = RetryState::load(layout, id).ok().flatten();
    let ctime = std::fs::symlink_metadata(layout.episode_dir(State::Outbox, id))
        .ok()
        .map(|m| m.ctime().max(0) as u64);
    let claimed = retry.as_ref().map(|r| r.claimed_at).filter(|t| *t > 0);
    OutboxItem {
        id: id.to_string(),
        since: claimed.or(ctime),
        attempts: retry.as_ref().map_or(0, |r| r.attempts),
        next_attempt_at: retry.as_ref().map(|r| r.next_attempt_at),
        last_error: retry.map(|r| r.last_error).filter(|e| !e.is_empty()),
    }
}

/// Free space for unprivileged writers (f_bavail) on `path`'s filesystem.
pub fn statvfs(path: &Path) -> Result<Disk, String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{}: path contains NUL", path.display()))?;
    // SAFETY: zeroed statvfs is a valid value; c is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    if rc != 0 {
        return Err(format!(
            "statvfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    let frsize = s.f_frsize as u64;
    Ok(Disk {
        avail_bytes: s.f_bavail as u64 * frsize,
        total_bytes: s.f_blocks as u64 * frsize,
    })
}

// ---------------------------------------------------------------- assess

fn is_ship_line(e: &Entry) -> bool {
    e.identifier
        .as_deref()
        .is_some_and(|i| journal::IDENTIFIERS.contains(&i))
}

fn is_success(e: &Entry) -> bool {
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
struct Episodes {
    ids: Vec<String>,
    seen: std::collections::HashSet<String>,
    lines: usize,
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
    fn len(&self) -> usize {
        self.ids.len().max(usize::from(self.lines > 0))
    }
}

/// What the window's journal lines say.
#[derive(Default)]
struct Activity {
    rejected_412: Episodes,
    reasons_412: Vec<String>,
    rejected_400: Episodes,
    reasons_400: Vec<String>,
    /// Quarantined by this host, not refused by the receiver: the id was
    /// already taken (locally, or on the receiver with other content).
    id_reused: Episodes,
    statuses_400: BTreeMap<u16, usize>,
    host_errors: BTreeMap<u16, Episodes>,
    host_reasons: BTreeMap<u16, String>,
    transient: Episodes,
    transient_kinds: BTreeMap<String, usize>,
    first_transient: Option<u64>,
    shipped: usize,
    last_success: Option<u64>,
    successes_after_first_transient: usize,
    watchdog_kills: usize,
    max_restarts: Option<u32>,
    start_limit: BTreeMap<String, String>,
}

fn push_reason(list: &mut Vec<String>, e: &Entry) {
    if let Some(r) = reason_of(e)
        && list.len() < 3
        && !list.contains(&r)
    {
        list.push(r);
    }
}

fn analyse(entries: &[Entry]) -> Activity {
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

/// The rows for these facts, worst first.
pub fn assess(f: &Facts) -> Report {
    let mut rows = Vec::new();
    let window = human_span(f.window_secs);
    let since = f.now.saturating_sub(f.window_secs);

    config_row(f, &mut rows);

    let activity = match &f.journal {
        JournalRead::Lines { entries, .. } => Some(analyse(entries)),
        _ => None,
    };
    if let Some(a) = &activity {
        journal_rows(f, a, &window, &mut rows);
    }
    journal_access_row(f, activity.as_ref(), &window, &mut rows);
    unit_rows(f, activity.as_ref(), &window, &mut rows);
    data_rows(f, &mut rows);
    disk_row(f, &mut rows);

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

fn config_row(f: &Facts, rows: &mut Vec<Row>) {
    match &f.config {
        ConfigFacts::Invalid { path, message } => rows.push(
            Row::new("config", Severity::Red, "the config cannot be used")
                .detail(format!(
                    "{message}. Nothing ships until this is fixed; backlog, quarantine and \
                     disk were not checked."
                ))
                .fix(format!(
                    "edit {} and fix the key named above, then check it with \
                     `ship-episode --config {} --help >/dev/null && doctor`",
                    path.display(),
                    path.display()
                )),
        ),
        ConfigFacts::Loaded {
            path,
            verify_tls,
            warnings,
            ..
        } => {
            let detail = warnings.join("; ");
            if !verify_tls {
                rows.push(
                    Row::new(
                        "config",
                        Severity::Yellow,
                        "TLS certificate checks are off (receiver.verify_tls = false)",
                    )
                    .detail(detail)
                    .fix(format!(
                        "set receiver.verify_tls = true in {} (and receiver.ca_bundle if the \
                         receiver uses a private CA)",
                        path.display()
                    )),
                );
            } else {
                rows.push(
                    Row::new(
                        "config",
                        Severity::Green,
                        format!("config {} loads", path.display()),
                    )
                    .detail(detail),
                );
            }
        }
    }
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

fn journal_rows(f: &Facts, a: &Activity, window: &str, rows: &mut Vec<Row>) {
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
        let what = match status {
            401 => "the bearer token",
            403 => "this host's certificate or enrolment",
            404 | 405 => "the receiver URL",
            _ => "the receiver settings",
        };
        let fix = crate::outcome::host_error_fix(*status);
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
                "{draining}; {outbox}; they are retried with backoff (up to 5 min)."
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

fn journal_access_row(f: &Facts, a: Option<&Activity>, window: &str, rows: &mut Vec<Row>) {
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

fn unit<'a>(states: &'a [UnitState], id: &str) -> Option<&'a UnitState> {
    states.iter().find(|u| u.id == id)
}

fn not_installed(check: &'static str, id: &str) -> Row {
    Row::new(check, Severity::Yellow, format!("{id} is not installed")).fix(format!(
        "install the cis490 units, then `systemctl enable --now {id}`"
    ))
}

fn unit_rows(f: &Facts, a: Option<&Activity>, window: &str, rows: &mut Vec<Row>) {
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

fn next_prune(f: &Facts) -> Option<u64> {
    match &f.units {
        UnitsRead::States(s) => match unit(s, journal::PRUNE_TIMER)?.next_elapse {
            NextElapse::At(t) => Some(t),
            _ => None,
        },
        UnitsRead::Unavailable(_) => None,
    }
}

fn data_rows(f: &Facts, rows: &mut Vec<Row>) {
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

fn disk_row(f: &Facts, rows: &mut Vec<Row>) {
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

// ---------------------------------------------------------------- output

pub fn human_span(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * HOUR => format!("{} min", s / 60),
        s if s < 2 * DAY => format!("{} h", s / HOUR),
        s => format!("{} days", s / DAY),
    }
}

pub use crate::cli::human_bytes;

/// "at 2026-11-27 03:15 UTC (12 min ago)" / "(in 3 h)".
fn when(t: u64, now: u64) -> String {
    let rel = if t <= now {
        format!("{} ago", human_span(now - t))
    } else {
        format!("in {}", human_span(t - now))
    };
    format!("at {} ({rel})", utc_minutes(t))
}

fn civil(t: u64) -> (i64, u32, u32, u64) {
    // Howard Hinnant's days-to-civil.
    let days = (t / DAY) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, t % DAY)
}

fn utc_minutes(t: u64) -> String {
    let (y, m, d, s) = civil(t);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / HOUR,
        s % HOUR / 60
    )
}

pub fn rfc3339(t: u64) -> String {
    let (y, m, d, s) = civil(t);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / HOUR,
        s % HOUR / 60,
        s % 60
    )
}

/// The human report; `color` adds ANSI colours to the severity labels.
pub fn render_text(r: &Report, color: bool) -> String {
    let paint = |sev: Severity, s: &str| -> String {
        if !color {
            return s.to_string();
        }
        let code = match sev {
            Severity::Red => "1;31",
            Severity::Yellow => "1;33",
            Severity::Green => "32",
        };
        format!("\x1b[{code}m{s}\x1b[0m")
    };
    let worst = r
        .rows
        .iter()
        .map(|x| x.severity)
        .max()
        .unwrap_or(Severity::Yellow);
    let mut out = String::new();
    let _ = writeln!(out, "{}", paint(worst, &r.summary));
    for row in &r.rows {
        let label = format!("{:<6}", row.severity.as_str().to_uppercase());
        let _ = writeln!(out, "{} {}", paint(row.severity, &label), row.title);
        if !row.detail.is_empty() {
            let _ = writeln!(out, "       {}", row.detail);
        }
        if let Some(fix) = &row.fix {
            let _ = writeln!(out, "       fix: {fix}");
        }
    }
    out
}

/// `--since` values: `10min`, `90s`, `2h`, `1d`, `1h30min`, plain seconds.
pub fn parse_since(s: &str) -> Result<u64, String> {
    let compact = s.trim().trim_start_matches('-');
    let spaced = {
        // "1h30min" → "1h 30min" for the timespan parser.
        let mut out = String::new();
        let mut prev_alpha = false;
        for c in compact.chars() {
            if c.is_ascii_digit() && prev_alpha {
                out.push(' ');
            }
            prev_alpha = c.is_ascii_alphabetic();
            out.push(c);
        }
        out
    };
    let us = if spaced.chars().all(|c| c.is_ascii_digit()) && !spaced.is_empty() {
        spaced.parse::<u64>().ok().map(|s| s * 1_000_000)
    } else {
        unit_state::parse_timespan_us(&spaced)
    };
    match us {
        Some(us) if us >= 1_000_000 => Ok(us / 1_000_000),
        _ => Err(format!(
            "{s:?} is not a duration (examples: 10min, 90s, 2h, 1d)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn since_values() {
        assert_eq!(parse_since("10min"), Ok(600));
        assert_eq!(parse_since("90"), Ok(90));
        assert_eq!(parse_since("1h30min"), Ok(5400));
        assert_eq!(parse_since("2d"), Ok(172_800));
        assert!(parse_since("soon").is_err());
        assert!(parse_since("").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("ep-1_a"), "ep-1_a");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(requeue_cmd(&["a b".into()]), "ship-episode --requeue 'a b'");
    }
}
