//! The scenarios and the table they make.

use std::fmt::Write;

use crate::engine::{Fleet, Reboot, simulate};
use crate::measure::{Goals, Measure};
use crate::receiver::{Failure, Outage, Overload};

/// Normal operation from here (every host has recorded once)...
pub const STEADY_FROM_S: u64 = 600;
/// ...until the trouble starts.
pub const TROUBLE_AT_S: u64 = 3600;
pub const RECORD_EVERY_S: u64 = 600;

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub fleet: Fleet,
    /// How long the receiver failed (or could not keep up): the goals'
    /// "outage length".
    pub outage_s: u64,
    /// When the receiver can serve everyone again.
    pub recovery_s: u64,
}

impl Scenario {
    fn new(name: String, hosts: u32, seed: u64, outage_s: u64) -> Scenario {
        let recovery_s = TROUBLE_AT_S + outage_s;
        Scenario {
            name,
            fleet: Fleet {
                hosts,
                record_every_s: RECORD_EVERY_S,
                // Long enough to see a drain that takes 3× the outage.
                duration_s: recovery_s + 3 * outage_s + 1800,
                seed,
                outages: Vec::new(),
                overload: None,
                reboot: None,
                paced: true,
            },
            outage_s,
            recovery_s,
        }
    }

    /// The receiver fails every request for `outage_s`.
    pub fn outage(hosts: u32, seed: u64, outage_s: u64, failure: Failure) -> Scenario {
        let name = format!("{} min outage, {}", outage_s / 60, failure.label());
        let mut s = Scenario::new(name, hosts, seed, outage_s);
        s.fleet.outages.push(Outage {
            from_s: TROUBLE_AT_S,
            until_s: s.recovery_s,
            failure,
            hosts: None,
        });
        s
    }

    /// For `outage_s` the receiver can serve only half the fleet's steady
    /// load and answers the rest 503 with Retry-After.
    pub fn overload(hosts: u32, seed: u64, outage_s: u64, retry_after_s: u64) -> Scenario {
        let capacity = (f64::from(hosts) / RECORD_EVERY_S as f64 / 2.0).round() as u32;
        let name = format!(
            "{} min overload at 2x capacity ({capacity}/s), 503 + Retry-After: {retry_after_s}",
            outage_s / 60
        );
        let mut s = Scenario::new(name, hosts, seed, outage_s);
        s.fleet.overload = Some(Overload {
            from_s: TROUBLE_AT_S,
            until_s: s.recovery_s,
            capacity: capacity.max(1),
            retry_after_s,
        });
        s
    }

    /// Half the fleet loses its uplink (connection refused) and keeps
    /// recording; 10 minutes before the uplink is back those hosts are
    /// powered off, and all of them boot at the same second as it returns:
    /// every scanner starts at once with a backlog and an expired pause.
    pub fn reboot(hosts: u32, seed: u64, outage_s: u64) -> Scenario {
        let half = hosts / 2;
        let name = format!(
            "half the fleet ({half}) reboots at once after a {} min uplink outage",
            outage_s / 60
        );
        let mut s = Scenario::new(name, hosts, seed, outage_s);
        s.fleet.outages.push(Outage {
            from_s: TROUBLE_AT_S,
            until_s: s.recovery_s,
            failure: Failure::Refused,
            hosts: Some(half),
        });
        s.fleet.reboot = Some(Reboot {
            hosts: half,
            down_from_s: s.recovery_s - 600.min(outage_s),
            boot_s: s.recovery_s,
        });
        s
    }

    pub fn run(&self) -> Outcome {
        let run = simulate(&self.fleet);
        let measure = Measure::of(&run, (STEADY_FROM_S, TROUBLE_AT_S), self.recovery_s);
        let goals = Goals::check(&measure, self.outage_s);
        let per_minute = run
            .traffic
            .requests
            .chunks(60)
            .map(|m| m.iter().map(|&c| u64::from(c)).sum::<u64>() as f64 / 60.0)
            .collect();
        Outcome {
            name: self.name.clone(),
            outage_s: self.outage_s,
            recovery_s: self.recovery_s,
            measure,
            goals,
            per_minute,
        }
    }
}

/// The list: 10- and 60-minute outages of each kind, an overload,
/// and a reboot of half the fleet.
pub fn standard(hosts: u32, seed: u64) -> Vec<Scenario> {
    let mut all = Vec::new();
    for outage_s in [600, 3600] {
        for failure in [
            Failure::Refused,
            Failure::Unavailable,
            Failure::UnavailableRetryAfter(60),
        ] {
            all.push(Scenario::outage(hosts, seed, outage_s, failure));
        }
    }
    all.push(Scenario::overload(hosts, seed, 3600, 30));
    all.push(Scenario::reboot(hosts, seed, 3600));
    all
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub outage_s: u64,
    pub recovery_s: u64,
    pub measure: Measure,
    pub goals: Goals,
    /// Requests per second, averaged over each minute of the run.
    pub per_minute: Vec<f64>,
}

impl Outcome {
    /// The load minute by minute from the start of the trouble, as
    /// multiples of the steady mean: where a herd or a drain shows.
    pub fn series(&self) -> String {
        let from = (TROUBLE_AT_S / 60) as usize;
        let recovery = (self.recovery_s / 60) as usize;
        let steady = self.measure.steady_rate.max(f64::MIN_POSITIVE);
        let mut s = format!("{}: minute from recovery, × steady mean\n", self.name);
        for (m, rate) in self.per_minute.iter().enumerate().skip(from) {
            let _ = writeln!(
                s,
                "{:+5} {:5.2} {}",
                m as i64 - recovery as i64,
                rate / steady,
                "#".repeat((rate / steady * 10.0).round() as usize)
            );
        }
        s
    }
}

fn minutes(s: f64) -> String {
    format!("{:.1} min", s / 60.0)
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// A Markdown table, one row per scenario.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut t = String::new();
    t.push_str(
        "| scenario | steady req/s (busiest s) | after recovery: busiest s (× steady's) \
         | busiest minute, req/s (× steady mean) | backlog drained after | wasted requests \
         | longest wait | goals: peak / drain / wait |\n|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let m = &o.measure;
        let drained = m
            .drained_s
            .map_or_else(|| format!("not by the end ({} left)", m.unshipped), minutes);
        let _ = writeln!(
            t,
            "| {} | {:.1} ({}) | {} ({:.2}×) | {:.1} ({:.2}×) | {} | {} | {} | {} / {} / {} |",
            o.name,
            m.steady_rate,
            m.steady_peak_1s,
            m.peak_1s,
            m.burst_ratio(),
            m.peak_window,
            m.load_ratio(),
            drained,
            m.wasted,
            minutes(m.longest_wait_s),
            mark(o.goals.peak_ok),
            mark(o.goals.drained_ok),
            mark(o.goals.wait_ok),
        );
    }
    t
}
