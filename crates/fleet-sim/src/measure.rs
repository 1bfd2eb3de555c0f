//! The numbers the issue asks for, from one run.

use crate::engine::Run;

/// A sliding window for the sustained rate: long enough to smooth the
/// second-to-second noise of independent hosts, short enough to show a herd.
pub const WINDOW_S: usize = 60;

#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    /// Mean requests per second before the outage.
    pub steady_rate: f64,
    /// The busiest second before the outage (independent hosts are noisy).
    pub steady_peak_1s: u32,
    /// After recovery: the busiest second, and the busiest 60 s (as req/s).
    pub peak_1s: u32,
    pub peak_window: f64,
    /// From recovery until the last episode that had to wait was shipped;
    /// `None` if some episode was still waiting when the run ended.
    pub drained_s: Option<f64>,
    /// Requests that failed (outage, overload).
    pub wasted: u64,
    pub requests: u64,
    pub episodes: usize,
    /// The longest any episode waited from its recording to its upload
    /// (until the end of the run if it never shipped).
    pub longest_wait_s: f64,
    pub unshipped: usize,
}

impl Measure {
    /// `steady` is the window `[from, until)` of normal operation, in
    /// seconds; `recovery_s` when the receiver came back.
    pub fn of(run: &Run, steady: (u64, u64), recovery_s: u64) -> Measure {
        let per_s = &run.traffic.requests;
        let at = |s: u64| per_s.get(s as usize).copied().unwrap_or(0);
        let steady_total: u64 = (steady.0..steady.1).map(|s| u64::from(at(s))).sum();
        let steady_peak_1s = (steady.0..steady.1).map(at).max().unwrap_or(0);
        let after = (recovery_s..run.duration_s).map(at);
        let peak_1s = after.clone().max().unwrap_or(0);
        let counts: Vec<u32> = after.collect();
        let peak_window = counts
            .windows(WINDOW_S)
            .map(|w| w.iter().map(|&c| u64::from(c)).sum::<u64>())
            .max()
            .unwrap_or(0) as f64
            / WINDOW_S as f64;

        let end_ms = run.duration_s * 1000;
        let mut longest_ms = 0;
        let mut last_backlog_ms = None::<u64>;
        let mut unshipped = 0;
        let e = &run.episodes;
        for (recorded, shipped) in e.recorded_ms.iter().zip(&e.shipped_ms) {
            let done = shipped.unwrap_or(end_ms);
            longest_ms = longest_ms.max(done - recorded);
            match shipped {
                None => unshipped += 1,
                Some(s) if s > recorded => {
                    last_backlog_ms = Some(last_backlog_ms.unwrap_or(0).max(*s));
                }
                Some(_) => {}
            }
        }
        let recovery_ms = recovery_s * 1000;
        let drained_s = (unshipped == 0).then(|| {
            last_backlog_ms.map_or(0, |ms| ms.saturating_sub(recovery_ms)) as f64 / 1000.0
        });
        Measure {
            steady_rate: steady_total as f64 / (steady.1 - steady.0) as f64,
            steady_peak_1s,
            peak_1s,
            peak_window,
            drained_s,
            wasted: run.traffic.failed.iter().map(|&c| u64::from(c)).sum(),
            requests: per_s.iter().map(|&c| u64::from(c)).sum(),
            episodes: e.recorded_ms.len(),
            longest_wait_s: longest_ms as f64 / 1000.0,
            unshipped,
        }
    }

    /// Busiest second after recovery over the busiest second of normal
    /// operation: a herd shows here.
    pub fn burst_ratio(&self) -> f64 {
        f64::from(self.peak_1s) / f64::from(self.steady_peak_1s.max(1))
    }

    /// Busiest minute after recovery over the normal mean: the sustained
    /// extra load of draining the backlog.
    pub fn load_ratio(&self) -> f64 {
        self.peak_window / self.steady_rate.max(f64::MIN_POSITIVE)
    }
}

/// The goals for an outage (or overload) of `outage_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goals {
    pub peak_ok: bool,
    pub drained_ok: bool,
    pub wait_ok: bool,
}

impl Goals {
    /// "peak ≤ 2× steady": the busiest second after recovery against the
    /// busiest second of normal operation. Against the steady *mean* the
    /// goal could not be met even without an outage (independent hosts
    /// give 1.9× the mean in their busiest second); and the busiest minute
    /// is reported but not held to 2×: the wait goal makes every host
    /// replay its backlog at its recording pace on top of what it records,
    /// exactly twice the steady rate for as long as the outage lasted, so
    /// any unevenness lifts some minute above it.
    pub const MAX_RATIO: f64 = 2.0;
    /// "no episode waits more than outage + 10 minutes".
    pub const WAIT_SLACK_S: f64 = 600.0;

    pub fn check(m: &Measure, outage_s: u64) -> Goals {
        let outage = outage_s as f64;
        Goals {
            peak_ok: m.burst_ratio() <= Self::MAX_RATIO,
            drained_ok: m.drained_s.is_some_and(|d| d <= 2.0 * outage),
            wait_ok: m.unshipped == 0 && m.longest_wait_s <= outage + Self::WAIT_SLACK_S,
        }
    }

    pub fn all(&self) -> bool {
        self.peak_ok && self.drained_ok && self.wait_ok
    }
}
