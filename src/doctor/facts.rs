//! Gathering: journalctl, systemctl, statvfs and the data directories,
//! read once into [`Facts`] for [`super::assess`].

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::activity::is_success;
use crate::client_cert::{self, CertInfo, CertProblem, IdentityFiles};
use crate::config::{Config, ReceiverConfig};
use crate::journal::{self, JournalRead};
use crate::layout::{self, EpisodeId, Layout, RetryState, Sidecar, State};
use crate::machine::host::HostPause;
use crate::machine::retry_horizon;
use crate::time::due_within_horizon;
use crate::unit_state::{self, UnitsRead};

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
    /// `None` without mutual TLS (or without a config).
    pub client_cert: Option<ClientCertFacts>,
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

/// The client certificate and key, read and matched; the dates are judged
/// against [`Facts::now`] by `assess`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCertFacts {
    pub files: IdentityFiles,
    pub inspected: Result<CertInfo, CertProblem>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataFacts {
    pub data_root: PathBuf,
    /// Ready episodes: (id, done.marker mtime).
    pub ready: Vec<(String, Option<u64>)>,
    pub outbox: Vec<OutboxItem>,
    pub quarantine: Vec<QuarantineItem>,
    /// The receiver pause on disk, as the shippers read it.
    pub pause: Option<HostPause>,
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
    /// Waiting for disk space to stage: about the bytes it needs.
    pub stage_needs_bytes: Option<u64>,
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
    let client_cert = loaded.as_ref().and_then(|c| read_client_cert(&c.receiver));

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
        client_cert,
    }
}

/// The files the shipper would present, read as the shipper reads them.
pub fn read_client_cert(rcv: &ReceiverConfig) -> Option<ClientCertFacts> {
    let (cert, key) = (rcv.client_cert.as_ref()?, rcv.client_key.as_ref()?);
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read it: {e}"));
    let inspected = match (read(cert), read(key)) {
        (Err(e), _) => Err(CertProblem::CertUnreadable(e)),
        (Ok(_), Err(e)) => Err(CertProblem::KeyUnreadable(e)),
        (Ok(cert_pem), Ok(key_pem)) => client_cert::inspect(&cert_pem, &key_pem),
    };
    Some(ClientCertFacts {
        files: IdentityFiles::new(cert, key),
        inspected,
    })
}

/// Backlog and quarantine: the state directories are listed (no tree is
/// walked); one stat per ready episode, one small JSON per outbox and
/// quarantine entry.
pub fn read_data(data_root: &Path) -> Result<DataFacts, String> {
    let mut facts = read_pending(data_root)?;
    facts.quarantine = read_quarantine(&Layout::new(data_root))?;
    Ok(facts)
}

/// [`read_data`] without the quarantine: what waits to be shipped, and the
/// receiver pause.
pub fn read_pending(data_root: &Path) -> Result<DataFacts, String> {
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
    facts.pause = read_pause(data_root);
    Ok(facts)
}

/// The quarantined episodes, from their sidecars (the trees are not walked).
pub fn read_quarantine(layout: &Layout) -> Result<Vec<QuarantineItem>, String> {
    let mut items = Vec::new();
    for id in layout
        .list(State::Quarantine)
        .map_err(|e| e.to_string())?
        .ids
    {
        let sidecar = Sidecar::load(layout, State::Quarantine, &id).ok().flatten();
        items.push(QuarantineItem {
            id: id.to_string(),
            entered_at: sidecar.as_ref().map(|s| s.entered_at),
            archive_bytes: sidecar.as_ref().and_then(|s| s.archive_bytes),
            http_status: sidecar.as_ref().and_then(|s| s.http_status),
        });
    }
    Ok(items)
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
        // As the scanner reads it: within the horizon of the file's writing.
        next_attempt_at: retry.as_ref().map(|r| {
            let written_at = std::fs::metadata(layout.retry_file(id))
                .ok()
                .map(|m| m.mtime().max(0) as u64);
            due_within_horizon(
                r.next_attempt_at,
                written_at,
                layout::unix_now(),
                retry_horizon().as_secs(),
            )
        }),
        stage_needs_bytes: retry.as_ref().and_then(|r| r.stage_needs_bytes),
        last_error: retry.map(|r| r.last_error).filter(|e| !e.is_empty()),
    }
}

/// The receiver pause file, as the shippers read it (bounded by when it
/// was written).
fn read_pause(data_root: &Path) -> Option<HostPause> {
    let path = crate::ship::pause_file(data_root);
    let pause: HostPause = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let written_at = std::fs::metadata(&path)
        .ok()
        .map(|m| m.mtime().max(0) as u64);
    Some(pause.as_read(written_at, layout::unix_now()))
}

/// Free space for unprivileged writers (f_bavail) on `path`'s filesystem,
/// read as the disk reserve reads it.
pub fn statvfs(path: &Path) -> Result<Disk, String> {
    let space =
        crate::reserve::space_of(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    Ok(Disk {
        avail_bytes: space.available,
        total_bytes: space.total,
    })
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
    fn since_values() {
        assert_eq!(parse_since("10min"), Ok(600));
        assert_eq!(parse_since("90"), Ok(90));
        assert_eq!(parse_since("1h30min"), Ok(5400));
        assert_eq!(parse_since("2d"), Ok(172_800));
        assert!(parse_since("soon").is_err());
        assert!(parse_since("").is_err());
    }
}
