//! Liveness and status messages to systemd (`sd_notify`).

use std::time::{Duration, Instant};

/// Liveness and status messages to systemd (`sd_notify`). Without
/// `NOTIFY_SOCKET` every message is a no-op, so this works from a terminal.
#[derive(Debug)]
pub struct Heartbeat {
    /// The watchdog period, when systemd set one for this process.
    watchdog: Option<Duration>,
    last_beat: Option<Instant>,
    warned: bool,
}

impl Heartbeat {
    /// From `WATCHDOG_USEC` / `WATCHDOG_PID`, like `sd_watchdog_enabled(3)`:
    /// a `WATCHDOG_PID` naming another process means the watchdog is not ours.
    pub fn from_env() -> Heartbeat {
        let usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|u| *u > 0);
        let ours = match std::env::var("WATCHDOG_PID") {
            Ok(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
            Err(_) => true,
        };
        Heartbeat {
            watchdog: usec.filter(|_| ours).map(Duration::from_micros),
            last_beat: None,
            warned: false,
        }
    }

    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// WATCHDOG=1 now: the loop is alive.
    pub fn beat(&mut self) {
        self.last_beat = Some(Instant::now());
        self.send(&[sd_notify::NotifyState::Watchdog]);
    }

    /// WATCHDOG=1 for work that is moving, at most every quarter period.
    pub fn progress(&mut self) {
        let Some(period) = self.watchdog else { return };
        let gap = (period / 4).max(Duration::from_millis(100));
        if self.last_beat.is_none_or(|t| t.elapsed() >= gap) {
            self.beat();
        }
    }

    /// Beat if half a watchdog period passed since the last one (idle waits
    /// longer than the period must not look like a hang).
    pub fn keep_alive(&mut self) {
        let Some(period) = self.watchdog else { return };
        if self.last_beat.is_none_or(|t| t.elapsed() >= period / 2) {
            self.beat();
        }
    }

    pub fn ready(&mut self, status: &str) {
        self.send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ]);
    }

    pub fn status(&mut self, status: &str) {
        self.send(&[sd_notify::NotifyState::Status(status)]);
    }

    pub fn stopping(&mut self) {
        self.send(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("stopping"),
        ]);
    }

    fn send(&mut self, states: &[sd_notify::NotifyState]) {
        if let Err(e) = sd_notify::notify(false, states)
            && !self.warned
        {
            self.warned = true;
            tracing::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
        }
    }
}
