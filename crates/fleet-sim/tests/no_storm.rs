//! The CI-sized fleet: 1,000 hosts through the shipper's real backoff code.
//! A change that would make a fleet storm the receiver after an outage
//! (no jitter, no host-wide pause, no paced backlog) fails here.
//!
//! The goals of issue 14 that the current logic meets are asserted as
//! stated. The peak goal (≤ 2× steady) is not met yet by the probes that
//! follow the pauses of ≤ 300 s (see docs/operations.md, "Fleet load after
//! an outage"): the peak is held to the ceiling measured now, with margin,
//! so that it cannot grow unnoticed.

use fleet_sim::measure::{Goals, Measure};
use fleet_sim::receiver::Failure;
use fleet_sim::scenario::Scenario;

const HOSTS: u32 = 1000;
const SEED: u64 = 14;
/// Measured: 4.8–5.5× over seeds 1–3 and 14 (busiest minute after
/// recovery over the steady mean). A fleet retrying in lockstep or
/// dumping its backlog goes far past it.
const LOAD_CEILING: f64 = 6.5;
/// Measured: about 8 failed requests per host in 10 minutes (one per pause
/// of 1, 2, 4 … 300 s).
const WASTE_PER_HOST_PER_10_MIN: u64 = 12;

fn check(outcome_of: &Scenario) -> (Measure, Goals) {
    let o = outcome_of.run();
    eprintln!(
        "{}\n{:?}",
        fleet_sim::scenario::table(std::slice::from_ref(&o)),
        o.measure
    );
    (o.measure, o.goals)
}

#[test]
fn a_ten_minute_outage_does_not_storm_the_receiver() {
    let outage_s = 600;
    let (m, goals) = check(&Scenario::outage(HOSTS, SEED, outage_s, Failure::Refused));
    assert_eq!(m.unshipped, 0, "every episode shipped");
    assert!(
        goals.drained_ok,
        "backlog drained within 2× the outage: {m:?}"
    );
    assert!(
        goals.wait_ok,
        "no episode waited more than outage + 10 min: {m:?}"
    );
    assert!(
        m.load_ratio() <= LOAD_CEILING,
        "busiest minute {:.1}× the steady rate: {m:?}",
        m.load_ratio()
    );
    assert!(
        m.wasted <= u64::from(HOSTS) * WASTE_PER_HOST_PER_10_MIN * outage_s / 600,
        "{} requests wasted on the outage: {m:?}",
        m.wasted
    );
}

#[test]
fn the_backlog_of_an_hour_is_replayed_not_dumped() {
    let outage_s = 3600;
    let (m, goals) = check(&Scenario::outage(HOSTS, SEED, outage_s, Failure::Refused));
    assert_eq!(m.unshipped, 0, "every episode shipped");
    assert!(
        goals.drained_ok,
        "backlog drained within 2× the outage: {m:?}"
    );
    // Paced over about the outage's length, not shipped within minutes.
    let drained = m.drained_s.unwrap_or(0.0);
    assert!(
        drained >= 0.75 * outage_s as f64,
        "drained in {drained} s: dumped"
    );
    assert!(
        m.load_ratio() <= LOAD_CEILING,
        "busiest minute {:.1}× the steady rate: {m:?}",
        m.load_ratio()
    );
    assert!(
        m.longest_wait_s <= outage_s as f64 + 900.0,
        "an episode waited {:.0} s: {m:?}",
        m.longest_wait_s
    );
}
