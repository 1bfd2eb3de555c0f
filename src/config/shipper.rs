//! The `[shipper]` section: how the shipper runs on this host.

use std::path::Path;
use std::time::Duration;

use super::{ConfigError, Parser, Section};
use crate::bandwidth::RateSchedule;
use crate::machine::host::{DEFAULT_PROBE_INTERVAL, MAX_PROBE_INTERVAL};

#[derive(Debug, Clone)]
pub struct ShipperSettings {
    pub scan_interval: Duration,
    /// Stall timeout: how long an upload may make no progress.
    pub request_timeout: Duration,
    pub gzip_level: u32,
    /// Share of the data filesystem that staging never takes (0 = off).
    pub disk_reserve_percent: f64,
    /// Upload bandwidth, rclone `--bwlimit` style.
    pub upload_rate_limit: RateSchedule,
    /// Threads for compression (0 = every core).
    pub compress_threads: usize,
    /// How often a receiver that is away is probed.
    pub receiver_probe_interval: Duration,
}

/// Below this a fleet probes an unavailable receiver often, and an
/// episode's own retry time (up to 300 s) may outlast the pause.
const SHORT_PROBE_INTERVAL_S: f64 = 300.0;

impl Parser<'_> {
    pub(super) fn shipper(
        &mut self,
        root: &mut Section,
        file: &Path,
    ) -> Result<ShipperSettings, ConfigError> {
        let mut s = self.section(root, "shipper")?;
        let scan_interval = self.seconds(&mut s, "scan_interval_s", 5.0, 0.1, 86_400.0)?;
        let request_timeout = self.seconds(&mut s, "request_timeout_s", 60.0, 1.0, 86_400.0)?;
        let gzip_level = self.integer(&mut s, "gzip_level", 6, 0, 9)? as u32;
        let disk_reserve_percent = self.float(&mut s, "disk_reserve_percent", 10.0, 0.0, 95.0)?;
        let upload_rate_limit = match self.optional_str(&mut s, "upload_rate_limit")? {
            None => RateSchedule::unlimited(),
            Some(text) => RateSchedule::parse(&text)
                .map_err(|m| self.key_error("shipper.upload_rate_limit", m))?,
        };
        let compress_threads = self.integer(&mut s, "compress_threads", 0, 0, 1024)? as usize;
        let receiver_probe_interval = self.seconds(
            &mut s,
            "receiver_probe_interval_s",
            DEFAULT_PROBE_INTERVAL.as_secs_f64(),
            5.0,
            MAX_PROBE_INTERVAL.as_secs_f64(),
        )?;
        if receiver_probe_interval.as_secs_f64() < SHORT_PROBE_INTERVAL_S {
            self.warnings.push(format!(
                "{}: shipper.receiver_probe_interval_s = {}: below {SHORT_PROBE_INTERVAL_S} s \
                 every host probes an unavailable receiver that often (a fleet of N hosts: \
                 N per interval), and an episode's own retry may outlast the pause",
                file.display(),
                receiver_probe_interval.as_secs_f64()
            ));
        }
        self.finish(s)?;
        Ok(ShipperSettings {
            scan_interval,
            request_timeout,
            gzip_level,
            disk_reserve_percent,
            upload_rate_limit,
            compress_threads,
            receiver_probe_interval,
        })
    }
}
