//! Fleet metrics through node_exporter's textfile collector.
//!
//! After every `ship-episode` run, every scanner pass and every
//! `quarantine-prune` run, [`Metrics`] writes `[metrics] textfile`
//! (default [`DEFAULT_TEXTFILE`](crate::config::DEFAULT_TEXTFILE)): the
//! [`counters`] (kept on disk, so that they add up over processes and
//! restarts) plus the [`gauges`] read from the disk at that moment, in the
//! Prometheus text format ([`render`]), replaced atomically ([`textfile`]).
//!
//! It works from the run's [`RunReport`], whatever the receiver is behind
//! the transport. Writing metrics never fails a run: a problem is logged
//! (once per change by the scanner) and the run's exit status is untouched.

pub mod counters;
pub mod gauges;
pub mod render;
pub mod textfile;

use std::io;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::layout::unix_now;
use crate::ship::RunReport;

use counters::{CountersError, LockedCounters, Tally};
use gauges::{QuarantineCache, Sources};

/// The version in `cis490_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Counters(#[from] CountersError),
    #[error("{0} does not exist (is prometheus-node-exporter installed?)")]
    NoDirectory(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

pub struct Metrics {
    textfile: Option<PathBuf>,
    /// The path was set in the config: a missing directory is a mistake.
    explicit: bool,
    sources: Sources,
    /// `Some` for a long-running writer (the scanner): quarantine totals
    /// are reused between passes, and a problem is logged once per change.
    quarantine_cache: Option<Option<QuarantineCache>>,
    last_problem: Option<String>,
    /// This process's counts that could not be added yet.
    pending: Tally,
}

impl Metrics {
    pub fn new(config: &Config) -> Metrics {
        Metrics {
            textfile: config.metrics.textfile.clone(),
            explicit: config.metrics.explicit,
            sources: Sources {
                data_root: config.data_root.clone(),
                disk_reserve_percent: config.shipper.disk_reserve_percent,
                client_cert: config.receiver.client_cert.clone(),
            },
            quarantine_cache: None,
            last_problem: None,
            pending: Tally::default(),
        }
    }

    /// For the scanner, which writes every pass.
    pub fn long_running(mut self) -> Metrics {
        self.quarantine_cache = Some(None);
        self
    }

    /// The textfile written, if metrics are on.
    pub fn textfile(&self) -> Option<&Path> {
        self.textfile.as_deref()
    }

    /// Count a run's outcomes (`ship-episode`, a scanner pass) and write
    /// the file.
    pub fn after_run(&mut self, run: &RunReport) {
        self.publish(&Tally::of(run));
    }

    /// Write the file with fresh gauges, counting nothing (prune, start).
    pub fn refresh(&mut self) {
        self.publish(&Tally::default());
    }

    fn publish(&mut self, tally: &Tally) {
        let Some(path) = self.textfile.clone() else {
            return;
        };
        // Counts not yet added (the counters were locked or unreadable
        // last time) go with this run's: the scanner loses none.
        self.pending.merge(tally);
        let pending = std::mem::take(&mut self.pending);
        match self.try_publish(&path, &pending) {
            Ok(()) => {
                if self.last_problem.take().is_some() {
                    tracing::info!("metrics: {} is written again", path.display());
                }
            }
            Err(MetricsError::NoDirectory(dir)) if !self.explicit => {
                // No node_exporter on this host: nothing to tell the
                // operator at every run.
                tracing::debug!(
                    "metrics: {} does not exist: not writing {}",
                    dir.display(),
                    path.display()
                );
            }
            Err(e) => {
                let message = format!("metrics not written: {e}{}", hint(&e));
                if self.quarantine_cache.is_none() || self.last_problem.as_ref() != Some(&message) {
                    tracing::warn!("{message}");
                }
                self.last_problem = Some(message);
            }
        }
    }

    /// Count `tally`, read the gauges and write the file. The counters
    /// stay locked until the file is in place, so that the last file
    /// written carries the newest counts.
    pub fn try_publish(&mut self, path: &Path, tally: &Tally) -> Result<(), MetricsError> {
        let now = unix_now();
        let gauges = gauges::read(&self.sources, now, self.quarantine_cache.as_mut());
        let locked = match LockedCounters::open(&self.sources.data_root)
            .and_then(|mut l| l.add(tally, now).map(|()| l))
        {
            Ok(l) => l,
            Err(e) => {
                self.pending.merge(tally);
                return Err(e.into());
            }
        };
        let dir = path.parent().unwrap_or(Path::new("/"));
        if !dir.is_dir() {
            return Err(MetricsError::NoDirectory(dir.to_path_buf()));
        }
        let text = render::render(VERSION, &locked.counters, &gauges);
        textfile::resolve(path)
            .and_then(|target| textfile::write(&target, &text))
            .map_err(|source| MetricsError::Write {
                path: path.to_path_buf(),
                source,
            })
    }
}

/// What to do about a write that failed for want of permission.
fn hint(e: &MetricsError) -> &'static str {
    let MetricsError::Write { source, .. } = e else {
        return "";
    };
    match source.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
            " (node_exporter's directory is not cis490's to write: link the file there to \
             cis490's own, `ln -s /var/lib/cis490/metrics/cis490.prom \
             /var/lib/prometheus/node-exporter/cis490.prom`, as install.sh does when \
             node_exporter is installed first; [metrics] textfile = \"\" turns metrics off)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests;
