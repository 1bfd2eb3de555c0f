//! The counters, kept in `data_root/.metrics.json` so that they survive
//! restarts and add up over the oneshot runs of `ship-episode`.
//!
//! Every update is read, add, write under an exclusive `flock` on
//! `data_root/.metrics.lock`: the path unit's `ship-episode` and the scanner
//! run at the same time, and neither may lose the other's increments. The
//! file is replaced atomically (temp file, fsync, rename), so a `kill -9`
//! at any instant leaves either the old counts or the new ones, never a
//! torn file; what a killed run had not yet written is not counted (its
//! episodes are where they belong, only this tally misses them).

use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::layout::{self, read_json};
use crate::outcome::OutcomeKind;
use crate::ship::RunReport;

/// Hidden, like the pause file: no listing of the data root takes it for
/// an episode.
pub const COUNTERS_FILE: &str = ".metrics.json";
pub const LOCK_FILE: &str = ".metrics.lock";

/// The outcomes counted, as the journal's `OUTCOME` field names them
/// (`skipped` is not an outcome of an attempt: nothing was tried).
pub const COUNTED: [OutcomeKind; 5] = [
    OutcomeKind::Shipped,
    OutcomeKind::Duplicate,
    OutcomeKind::Quarantined,
    OutcomeKind::Retry,
    OutcomeKind::HostError,
];

/// Upper bounds (seconds) of the upload-duration buckets: from a few MB on
/// a fast link (under a second) to GB-sized episodes behind a rate limit
/// (hours).
pub const UPLOAD_BUCKETS: [f64; 13] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Episodes per outcome (`OutcomeKind::as_str`).
    pub episodes: BTreeMap<String, u64>,
    /// Archive bytes of the episodes the receiver stored.
    pub uploaded_bytes: u64,
    /// How long those uploads took.
    pub upload_seconds: Histogram,
    /// Unix seconds of the last run that shipped something (or found it
    /// shipped already: a duplicate is a success too).
    pub last_success: Option<u64>,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            episodes: COUNTED
                .iter()
                .map(|k| (k.as_str().to_string(), 0))
                .collect(),
            uploaded_bytes: 0,
            upload_seconds: Histogram::new(&UPLOAD_BUCKETS),
            last_success: None,
        }
    }
}

/// A Prometheus histogram's state: per-bucket counts (not cumulative; the
/// last one is `+Inf`), their sum and count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// (upper bound, cumulative count) per bucket, `+Inf` last as `None`.
    pub fn cumulative(&self) -> Vec<(Option<f64>, u64)> {
        let mut total = 0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                total += n;
                (self.bounds.get(i).copied(), total)
            })
            .collect()
    }

    fn is_consistent(&self) -> bool {
        self.counts.len() == self.bounds.len() + 1
            && self.counts.iter().sum::<u64>() == self.count
            && self.sum.is_finite()
    }
}

/// What one run adds to the counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub episodes: BTreeMap<OutcomeKind, u64>,
    pub uploaded_bytes: u64,
    /// Upload times (seconds) of the shipped episodes.
    pub upload_seconds: Vec<f64>,
    pub succeeded: bool,
}

impl Tally {
    /// Add `other` to this tally (a run's counts kept until they are written).
    pub fn merge(&mut self, other: &Tally) {
        for (kind, n) in &other.episodes {
            *self.episodes.entry(*kind).or_default() += n;
        }
        self.uploaded_bytes += other.uploaded_bytes;
        self.upload_seconds.extend_from_slice(&other.upload_seconds);
        self.succeeded |= other.succeeded;
    }

    /// The counted outcomes of a run (`ship-episode` or a scanner pass).
    pub fn of(run: &RunReport) -> Tally {
        let mut t = Tally::default();
        for e in &run.episodes {
            if !COUNTED.contains(&e.outcome) {
                continue;
            }
            *t.episodes.entry(e.outcome).or_default() += 1;
            match e.outcome {
                OutcomeKind::Shipped => {
                    t.succeeded = true;
                    t.uploaded_bytes += e.archive_bytes.unwrap_or(0);
                    if let Some(d) = e.upload_time {
                        t.upload_seconds.push(d.as_secs_f64());
                    }
                }
                OutcomeKind::Duplicate => t.succeeded = true,
                _ => {}
            }
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        self.episodes.is_empty()
    }
}

impl Counters {
    /// Add a run's tally; `now` is when it succeeded, if it did.
    pub fn add(&mut self, t: &Tally, now: u64) {
        for (kind, n) in &t.episodes {
            *self.episodes.entry(kind.as_str().to_string()).or_default() += n;
        }
        self.uploaded_bytes += t.uploaded_bytes;
        for s in &t.upload_seconds {
            self.upload_seconds.observe(*s);
        }
        if t.succeeded {
            self.last_success = Some(self.last_success.map_or(now, |l| l.max(now)));
        }
    }

    /// Counters as read from an older or hand-edited file, made whole: a
    /// missing outcome starts at 0; a histogram with other buckets (or
    /// inconsistent) starts afresh, which Prometheus reads as a reset.
    fn normalized(mut self) -> Counters {
        for k in COUNTED {
            self.episodes.entry(k.as_str().to_string()).or_insert(0);
        }
        if self.upload_seconds.bounds != UPLOAD_BUCKETS || !self.upload_seconds.is_consistent() {
            self.upload_seconds = Histogram::new(&UPLOAD_BUCKETS);
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CountersError {
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("cannot read the metrics counters: {0}")]
    Read(layout::LayoutError),
    #[error("cannot store the metrics counters: {0}")]
    Store(layout::LayoutError),
}

/// The counters file under its lock. While this is held no other process
/// reads or writes the counters (nor, see [`super::Metrics`], the textfile).
pub struct LockedCounters {
    _lock: File,
    path: PathBuf,
    pub counters: Counters,
}

impl LockedCounters {
    /// Wait for the lock, then read the counters. A file that does not
    /// parse is replaced by zeros (logged): a counter reset is something
    /// Prometheus understands, a stuck exporter is not.
    pub fn open(data_root: &Path) -> Result<LockedCounters, CountersError> {
        let lock_path = data_root.join(LOCK_FILE);
        let lock = open_lock_file(&lock_path)
            .and_then(wait_for_lock)
            .map_err(|source| CountersError::Lock {
                path: lock_path,
                source,
            })?;
        let path = data_root.join(COUNTERS_FILE);
        let counters = match read_json::<Counters>(&path) {
            Ok(Some(c)) => c.normalized(),
            Ok(None) => Counters::default(),
            Err(layout::LayoutError::Corrupt { .. }) => {
                tracing::warn!(
                    "{}: not valid metrics counters: starting them again from 0",
                    path.display()
                );
                Counters::default()
            }
            Err(e) => return Err(CountersError::Read(e)),
        };
        Ok(LockedCounters {
            _lock: lock,
            path,
            counters,
        })
    }

    /// Add `t` and store the result (nothing is written for an empty tally).
    pub fn add(&mut self, t: &Tally, now: u64) -> Result<(), CountersError> {
        if t.is_empty() {
            return Ok(());
        }
        let mut next = self.counters.clone();
        next.add(t, now);
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| {
            CountersError::Store(layout::LayoutError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            })
        })?;
        // Only the lock holder writes it: a fixed temp name, replaced if a
        // killed holder left it behind.
        layout::write_atomic_via(&self.path, &bytes, &layout::locked_temp(&self.path))
            .map_err(CountersError::Store)?;
        self.counters = next;
        Ok(())
    }
}

/// How long to wait for another writer (it holds the lock for a few
/// milliseconds): a writer stuck on a dead disk must not hang a ship.
const LOCK_WAIT: Duration = Duration::from_secs(10);

fn wait_for_lock(f: File) -> io::Result<File> {
    let until = Instant::now() + LOCK_WAIT;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(TryLockError::WouldBlock) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "still held by another process after {}s",
                        LOCK_WAIT.as_secs()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Open (or create) the lock file. A file created by root (a manual
/// `sudo ship-episode`) is still readable through group cis490, and a
/// read-only descriptor takes a `flock` as well.
fn open_lock_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    match rw {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => layout::open_nofollow(path),
        other => other,
    }
}
