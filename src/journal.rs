//! Reading the journal for `doctor`: which lines, how, and typed records.
//!
//! The selection is one `journalctl` call with explicit field matches:
//!
//! ```text
//! SYSLOG_IDENTIFIER=ship-episode SYSLOG_IDENTIFIER=ship-scanner SYSLOG_IDENTIFIER=quarantine-prune
//!   + UNIT=<each unit> + _SYSTEMD_UNIT=<each service>
//! ```
//!
//! Matches on the same field are ORed, different fields ANDed, `+` ORs the
//! groups. `-t NAME -u UNIT` together would be ANDed (measured on systemd
//! 252, tests/fixtures/journal/selection-check.txt): it drops PID 1's own
//! lines about the unit (watchdog kills, start-limit hits, which have
//! `SYSLOG_IDENTIFIER=systemd`), so the flags are not used. `SYSLOG_IDENTIFIER`
//! is matched because short-lived processes sometimes lose `_SYSTEMD_UNIT`;
//! `UNIT=` is what PID 1 sets on its lines about a unit.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

/// `SYSLOG_IDENTIFIER`s of the binaries (logging::init).
pub const IDENTIFIERS: [&str; 3] = ["ship-episode", "ship-scanner", "quarantine-prune"];

/// The units, as installed by the units engineer (names are fixed).
pub const PATH_UNIT: &str = "cis490-ship-episode.path";
pub const EPISODE_SERVICE: &str = "cis490-ship-episode.service";
pub const SCANNER_SERVICE: &str = "cis490-ship-scanner.service";
pub const PRUNE_SERVICE: &str = "cis490-quarantine-prune.service";
pub const PRUNE_TIMER: &str = "cis490-quarantine-prune.timer";
pub const UNITS: [&str; 5] = [
    PATH_UNIT,
    EPISODE_SERVICE,
    SCANNER_SERVICE,
    PRUNE_SERVICE,
    PRUNE_TIMER,
];
const SERVICES: [&str; 3] = [EPISODE_SERVICE, SCANNER_SERVICE, PRUNE_SERVICE];

/// Catalog ids of PID 1's messages (systemd's sd-messages.h).
pub mod message_id {
    /// "Failed with result 'X'" (`UNIT_RESULT=X`).
    pub const UNIT_FAILURE_RESULT: &str = "d9b373ed55a64feb8242e02dbe79a49c";
    /// "Scheduled restart job, restart counter is at N" (`N_RESTARTS=N`).
    pub const UNIT_RESTART_SCHEDULED: &str = "5eb03494b6584870a536b337290809b3";
    /// "Main process exited, code=X, status=Y" (`EXIT_CODE`, `EXIT_STATUS`).
    pub const UNIT_PROCESS_EXIT: &str = "98e322203f7a4ed290d09fe03c09fe15";
}

/// Only these fields are asked for (`--output-fields`): less to transfer
/// and parse with tens of thousands of lines.
const OUTPUT_FIELDS: &str = "MESSAGE,PRIORITY,SYSLOG_IDENTIFIER,UNIT,_SYSTEMD_UNIT,MESSAGE_ID,\
UNIT_RESULT,N_RESTARTS,EXIT_CODE,EXIT_STATUS,EPISODE_ID,OUTCOME,HTTP_STATUS,_PID";

/// One journal record, the fields `doctor` uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// `__REALTIME_TIMESTAMP`, microseconds since the epoch.
    pub realtime_us: Option<u64>,
    pub message: String,
    pub priority: Option<u8>,
    pub identifier: Option<String>,
    /// `UNIT=`: the unit PID 1 is talking about.
    pub unit: Option<String>,
    /// `_SYSTEMD_UNIT=`: the unit of the sending process.
    pub systemd_unit: Option<String>,
    pub message_id: Option<String>,
    pub unit_result: Option<String>,
    pub n_restarts: Option<u32>,
    pub exit_code: Option<String>,
    pub exit_status: Option<String>,
    pub episode_id: Option<String>,
    pub outcome: Option<String>,
    pub http_status: Option<u16>,
    pub pid: Option<u32>,
}

impl Entry {
    /// Seconds since the epoch, when known.
    pub fn unix_secs(&self) -> Option<u64> {
        self.realtime_us.map(|us| us / 1_000_000)
    }

    /// Whether this line is one `doctor` selects (the same rule as the
    /// journalctl matches; applied again to lines read from a file).
    pub fn is_ours(&self) -> bool {
        self.identifier
            .as_deref()
            .is_some_and(|i| IDENTIFIERS.contains(&i))
            || self.unit.as_deref().is_some_and(|u| UNITS.contains(&u))
            || self
                .systemd_unit
                .as_deref()
                .is_some_and(|u| SERVICES.contains(&u))
    }

    /// The unit a PID 1 line is about (`UNIT=`, only from PID 1's lines).
    pub fn systemd_event_unit(&self) -> Option<&str> {
        if self.identifier.as_deref() == Some("systemd") || self.pid == Some(1) {
            self.unit.as_deref()
        } else {
            None
        }
    }
}

/// The raw shape of a `journalctl -o json` line: every value is a string,
/// except binary data (an array of byte numbers), a field present several
/// times (an array of values) and a value too large to show (`null`).
#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: Option<Value>,
    #[serde(rename = "MESSAGE")]
    message: Option<Value>,
    #[serde(rename = "PRIORITY")]
    priority: Option<Value>,
    #[serde(rename = "SYSLOG_IDENTIFIER")]
    identifier: Option<Value>,
    #[serde(rename = "UNIT")]
    unit: Option<Value>,
    #[serde(rename = "_SYSTEMD_UNIT")]
    systemd_unit: Option<Value>,
    #[serde(rename = "MESSAGE_ID")]
    message_id: Option<Value>,
    #[serde(rename = "UNIT_RESULT")]
    unit_result: Option<Value>,
    #[serde(rename = "N_RESTARTS")]
    n_restarts: Option<Value>,
    #[serde(rename = "EXIT_CODE")]
    exit_code: Option<Value>,
    #[serde(rename = "EXIT_STATUS")]
    exit_status: Option<Value>,
    #[serde(rename = "EPISODE_ID")]
    episode_id: Option<Value>,
    #[serde(rename = "OUTCOME")]
    outcome: Option<Value>,
    #[serde(rename = "HTTP_STATUS")]
    http_status: Option<Value>,
    #[serde(rename = "_PID")]
    pid: Option<Value>,
}

/// A field value as text: strings as they are, byte arrays decoded
/// (lossily), repeated fields by their first value, `null` as absent.
fn text(v: Option<Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s),
        Value::Array(items) => {
            if !items.is_empty() && items.iter().all(|i| i.is_u64()) {
                let bytes: Vec<u8> = items
                    .iter()
                    .filter_map(|i| i.as_u64())
                    .map(|b| b.min(255) as u8)
                    .collect();
                Some(String::from_utf8_lossy(&bytes).into_owned())
            } else {
                items.into_iter().find_map(|i| text(Some(i)))
            }
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Object(_) => None,
    }
}

fn number<T: std::str::FromStr>(v: Option<Value>) -> Option<T> {
    text(v).and_then(|s| s.trim().parse().ok())
}

/// Parse one line of `journalctl -o json`; `None` if it is not a JSON object.
pub fn parse_line(line: &str) -> Option<Entry> {
    let raw: RawEntry = serde_json::from_str(line).ok()?;
    Some(Entry {
        realtime_us: number(raw.realtime),
        message: text(raw.message).unwrap_or_default(),
        priority: number(raw.priority),
        identifier: text(raw.identifier),
        unit: text(raw.unit),
        systemd_unit: text(raw.systemd_unit),
        message_id: text(raw.message_id),
        unit_result: text(raw.unit_result),
        n_restarts: number(raw.n_restarts),
        exit_code: text(raw.exit_code),
        exit_status: text(raw.exit_status),
        episode_id: text(raw.episode_id),
        outcome: text(raw.outcome),
        http_status: number(raw.http_status),
        pid: number(raw.pid),
    })
}

/// What reading the journal gave.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalRead {
    /// Our lines, oldest first, and how many lines could not be parsed.
    Lines {
        entries: Vec<Entry>,
        unparsable: usize,
    },
    /// journalctl ran but may not read the system journal.
    Denied { stderr: String },
    /// journalctl could not be run, or failed for another reason.
    Failed { message: String },
}

/// Parse a stream of JSON lines, keeping our entries (blank lines skipped).
pub fn parse_stream(reader: impl BufRead) -> io::Result<(Vec<Entry>, usize)> {
    let mut entries = Vec::new();
    let mut unparsable = 0;
    for line in reader.split(b'\n') {
        let line = line?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Some(e) if e.is_ours() => entries.push(e),
            Some(_) => {}
            None => unparsable += 1,
        }
    }
    Ok((entries, unparsable))
}

/// What journalctl's exit status, stdout and stderr mean together.
/// Denied: rc 1 and "insufficient permissions" when no file could be opened;
/// rc 0 with a hint "not seeing messages from other users and the system"
/// when only the user's own journal could be: either way, not the whole story.
pub fn interpret(
    success: bool,
    code: Option<i32>,
    stdout: impl BufRead,
    stderr: &str,
) -> JournalRead {
    let stderr_line = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    let denied = stderr.contains("insufficient permissions")
        || stderr.contains("not seeing messages from other users and the system");
    if denied {
        return JournalRead::Denied {
            stderr: stderr_line,
        };
    }
    if !success {
        return JournalRead::Failed {
            message: format!(
                "journalctl failed ({}): {stderr_line}",
                code.map_or("killed by a signal".to_string(), |c| format!("exit {c}"))
            ),
        };
    }
    match parse_stream(stdout) {
        Ok((entries, unparsable)) => JournalRead::Lines {
            entries,
            unparsable,
        },
        Err(e) => JournalRead::Failed {
            message: format!("cannot read journalctl's output: {e}"),
        },
    }
}

/// The journalctl arguments for lines since `since_unix` (seconds).
pub fn journalctl_args(since_unix: u64) -> Vec<String> {
    let mut args = vec![
        "-o".to_string(),
        "json".to_string(),
        "--no-pager".to_string(),
        format!("--since=@{since_unix}"),
        format!("--output-fields={OUTPUT_FIELDS}"),
    ];
    args.extend(IDENTIFIERS.iter().map(|i| format!("SYSLOG_IDENTIFIER={i}")));
    for u in UNITS {
        args.push("+".into());
        args.push(format!("UNIT={u}"));
    }
    for s in SERVICES {
        args.push("+".into());
        args.push(format!("_SYSTEMD_UNIT={s}"));
    }
    args
}

/// Run `journalctl` with `args`, parsing its output as it streams.
pub fn run_journalctl(args: &[String]) -> JournalRead {
    let mut child = match Command::new("journalctl")
        .args(args)
        .env("SYSTEMD_COLORS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return JournalRead::Failed {
                message: format!("cannot run journalctl: {e}"),
            };
        }
    };
    // stderr is drained on its own thread so a chatty journalctl cannot
    // block on a full pipe while we read stdout.
    let stderr_thread = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        })
    });
    let parsed = child
        .stdout
        .take()
        .map(|out| parse_stream(BufReader::with_capacity(1 << 16, out)));
    let status = child.wait();
    let stderr = stderr_thread
        .and_then(|t| t.join().ok())
        .unwrap_or_default();
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            return JournalRead::Failed {
                message: format!("journalctl: {e}"),
            };
        }
    };
    // Reuse `interpret` for the verdict on status and stderr; the stdout
    // was parsed already.
    match interpret(status.success(), status.code(), io::empty(), &stderr) {
        JournalRead::Lines { .. } => match parsed {
            Some(Ok((entries, unparsable))) => JournalRead::Lines {
                entries,
                unparsable,
            },
            Some(Err(e)) => JournalRead::Failed {
                message: format!("cannot read journalctl's output: {e}"),
            },
            None => JournalRead::Failed {
                message: "journalctl's output was not captured".into(),
            },
        },
        other => other,
    }
}

/// Our lines since `since_unix`, through journalctl.
pub fn read_since(since_unix: u64) -> JournalRead {
    run_journalctl(&journalctl_args(since_unix))
}

/// Lines from a file of `journalctl -o json` output (tests, support).
pub fn read_file(path: &Path) -> JournalRead {
    match std::fs::File::open(path) {
        Ok(f) => match parse_stream(BufReader::with_capacity(1 << 16, f)) {
            Ok((entries, unparsable)) => JournalRead::Lines {
                entries,
                unparsable,
            },
            Err(e) => JournalRead::Failed {
                message: format!("cannot read {}: {e}", path.display()),
            },
        },
        Err(e) => JournalRead::Failed {
            message: format!("cannot open {}: {e}", path.display()),
        },
    }
}

/// The newest successful ship in the whole journal (before the window),
/// in unix seconds: one indexed lookup, newest first, one line.
pub fn last_success() -> Option<u64> {
    let args: Vec<String> = [
        "-o",
        "json",
        "--no-pager",
        "-r",
        "-n",
        "1",
        "--output-fields=OUTCOME",
        "OUTCOME=shipped",
        "OUTCOME=duplicate",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match run_journalctl(&args) {
        JournalRead::Lines { entries, .. } => entries.iter().filter_map(Entry::unix_secs).max(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_values_do_not_crash() {
        let line = r#"{"__REALTIME_TIMESTAMP":"1795000000123456","MESSAGE":[104,105,0,255],"SYSLOG_IDENTIFIER":["ship-episode","x"],"HTTP_STATUS":"412","EPISODE_ID":null,"OUTCOME":"quarantined","_PID":"12"}"#;
        let e = parse_line(line).expect("parses");
        assert_eq!(e.message, "hi\u{0}\u{fffd}");
        assert_eq!(e.identifier.as_deref(), Some("ship-episode"));
        assert_eq!(e.http_status, Some(412));
        assert_eq!(e.episode_id, None);
        assert_eq!(e.unix_secs(), Some(1_795_000_000));
        assert!(e.is_ours());
        assert!(parse_line("not json").is_none());
        assert!(parse_line("[1,2]").is_none());
        assert!(parse_line(r#"{"HTTP_STATUS":"abc"}"#).is_some_and(|e| e.http_status.is_none()));
    }

    #[test]
    fn stream_keeps_ours_and_counts_garbage() {
        let input = "\n{\"SYSLOG_IDENTIFIER\":\"sshd\",\"MESSAGE\":\"x\"}\n{oops\n\
                     {\"UNIT\":\"cis490-ship-scanner.service\",\"SYSLOG_IDENTIFIER\":\"systemd\",\"_PID\":\"1\"}\n";
        let (entries, bad) = parse_stream(input.as_bytes()).expect("reads");
        assert_eq!(entries.len(), 1);
        assert_eq!(bad, 1);
        assert_eq!(entries[0].systemd_event_unit(), Some(SCANNER_SERVICE));
    }

    #[test]
    fn args_or_the_groups() {
        let a = journalctl_args(100);
        assert!(a.contains(&"--since=@100".to_string()));
        assert_eq!(a.iter().filter(|x| *x == "+").count(), UNITS.len() + 3);
        // No -t/-u: combined they are ANDed.
        assert!(!a.iter().any(|x| x == "-t" || x == "-u"));
    }
}
