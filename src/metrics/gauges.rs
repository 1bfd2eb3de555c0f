//! The gauges, read from the disk when the file is written, through the
//! same helpers as doctor: the state directories are listed (no tree is
//! walked), the disk is read as the reserve reads it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::doctor::{QuarantineItem, read_pending, read_quarantine, statvfs};
use crate::layout::{Layout, State};
use crate::reserve::reserve_bytes;

/// What the disk says now. `None`: could not be read (left out of the file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    pub backlog: Option<Backlog>,
    pub quarantine: Option<QuarantineTotals>,
    pub disk: Option<DiskGauges>,
    /// `receiver.client_cert`'s notAfter, when one is configured and readable.
    pub client_cert_not_after: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    pub ready: usize,
    pub outbox: usize,
    pub oldest_ready_age_seconds: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QuarantineTotals {
    pub episodes: usize,
    pub archive_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskGauges {
    pub free_bytes: u64,
    pub size_bytes: u64,
    pub reserve_bytes: u64,
}

/// Where to read, from the config.
#[derive(Debug, Clone)]
pub struct Sources {
    pub data_root: PathBuf,
    pub disk_reserve_percent: f64,
    pub client_cert: Option<PathBuf>,
}

/// How long quarantine totals are reused while `quarantine/` is unchanged:
/// the scanner writes the file every pass, and quarantine is history, not
/// pending work (one sidecar read per entry). The bound covers a change
/// within the directory's timestamp granularity.
const QUARANTINE_REUSE: Duration = Duration::from_secs(60);

/// Quarantine totals remembered by a long-running writer.
#[derive(Debug, Clone)]
pub struct QuarantineCache {
    dir_mtime: (i64, i64),
    read_at: Instant,
    totals: QuarantineTotals,
}

/// Read every gauge at `now` (unix seconds). `cache` lets the scanner skip
/// re-reading an unchanged quarantine; `None` reads it.
pub fn read(src: &Sources, now: u64, cache: Option<&mut Option<QuarantineCache>>) -> Gauges {
    let layout = Layout::new(&src.data_root);
    Gauges {
        backlog: backlog(&src.data_root, now),
        quarantine: match cache {
            Some(c) => quarantine_cached(&layout, c),
            None => quarantine(&layout),
        },
        disk: statvfs(&src.data_root).ok().map(|d| DiskGauges {
            free_bytes: d.avail_bytes,
            size_bytes: d.total_bytes,
            reserve_bytes: if src.disk_reserve_percent > 0.0 {
                reserve_bytes(d.total_bytes, src.disk_reserve_percent)
            } else {
                0
            },
        }),
        client_cert_not_after: src.client_cert.as_deref().and_then(cert_not_after),
    }
}

fn backlog(data_root: &Path, now: u64) -> Option<Backlog> {
    let facts = read_pending(data_root).ok()?;
    let oldest = facts.ready.iter().filter_map(|(_, t)| *t).min();
    Some(Backlog {
        ready: facts.ready.len(),
        outbox: facts.outbox.len(),
        oldest_ready_age_seconds: oldest.map_or(0, |t| now.saturating_sub(t)),
    })
}

fn quarantine(layout: &Layout) -> Option<QuarantineTotals> {
    let items = read_quarantine(layout).ok()?;
    Some(totals(&items))
}

pub fn totals(items: &[QuarantineItem]) -> QuarantineTotals {
    QuarantineTotals {
        episodes: items.len(),
        archive_bytes: items.iter().filter_map(|q| q.archive_bytes).sum(),
    }
}

fn quarantine_cached(
    layout: &Layout,
    cache: &mut Option<QuarantineCache>,
) -> Option<QuarantineTotals> {
    let mtime = std::fs::metadata(layout.state_dir(State::Quarantine))
        .ok()
        .map(|m| (m.mtime(), m.mtime_nsec()));
    if let (Some(c), Some(m)) = (cache.as_ref(), mtime)
        && c.dir_mtime == m
        && c.read_at.elapsed() < QUARANTINE_REUSE
    {
        return Some(c.totals);
    }
    let read_at = Instant::now();
    let totals = quarantine(layout);
    *cache = match (totals, mtime) {
        (Some(totals), Some(dir_mtime)) => Some(QuarantineCache {
            dir_mtime,
            read_at,
            totals,
        }),
        _ => None,
    };
    totals
}

/// The certificate's notAfter. The key is not needed for the date (and may
/// be a credential only the shipper's units can read).
fn cert_not_after(path: &Path) -> Option<u64> {
    let pem = std::fs::read(path).ok()?;
    crate::client_cert::cert_info(&pem)
        .ok()
        .map(|info| info.not_after)
}
