//! The CI-sized fleet: 1,000 hosts through the shipper's real backoff code,
//! one hour of receiver outage, and ten minutes (where the drain and wait
//! goals have the least room). Every goal of issue 14 is asserted as
//! stated, plus a ceiling on the sustained load, so a change that would
//! make a fleet storm the receiver after an outage (shorter pauses, the
//! seed's doubling schedule, no replay, scanners waking in step) fails the
//! build. The run is seeded: the same code gives the same numbers.

use fleet_sim::measure::{Goals, Measure};
use fleet_sim::receiver::Failure;
use fleet_sim::scenario::Scenario;

const HOSTS: u32 = 1000;
const SEED: u64 = 14;
const OUTAGE_S: u64 = 3600;
/// The busiest minute after recovery over the steady mean. Measured 2.3 to
/// 2.5 over seeds 1 to 8 (the replay doubles the load for an hour, and the
/// probes' spread adds a little); the logic before this limit existed gave
/// 5 and more, the seed's schedule with the backlog sent at once 15.
const LOAD_CEILING: f64 = 2.75;
/// About one failed probe per host per pause of about 10 minutes, plus the
/// quick retry and the first failure: 8 per host in the hour, measured.
const WASTE_PER_HOST_PER_HOUR: u64 = 9;

fn run() -> (Measure, Goals) {
    run_for(OUTAGE_S)
}

fn run_for(outage_s: u64) -> (Measure, Goals) {
    let o = Scenario::outage(HOSTS, SEED, outage_s, Failure::Refused).run();
    eprintln!(
        "{}\n{:?}",
        fleet_sim::scenario::table(std::slice::from_ref(&o)),
        o.measure
    );
    (o.measure, o.goals)
}

#[test]
fn an_hour_long_outage_meets_every_goal() {
    let (m, goals) = run();
    assert_eq!(m.unshipped, 0, "every episode shipped: {m:?}");
    assert!(
        goals.peak_ok,
        "busiest second after recovery {} against {} before: over 2×: {m:?}",
        m.peak_1s, m.steady_peak_1s
    );
    assert!(
        goals.drained_ok,
        "backlog drained within 2× the outage: {m:?}"
    );
    assert!(
        goals.wait_ok,
        "no episode waited more than outage + 10 min: {m:?}"
    );
    // The backlog is replayed over about the outage's length, not dumped.
    let drained = m.drained_s.unwrap_or(0.0);
    assert!(
        drained >= 0.9 * OUTAGE_S as f64,
        "drained in {drained} s: dumped"
    );
}

#[test]
fn the_sustained_load_and_the_failed_probes_stay_bounded() {
    let (m, _) = run();
    assert!(
        m.load_ratio() <= LOAD_CEILING,
        "busiest minute {:.2}× the steady rate: {m:?}",
        m.load_ratio()
    );
    assert!(
        m.wasted <= u64::from(HOSTS) * WASTE_PER_HOST_PER_HOUR * OUTAGE_S / 3600,
        "{} requests wasted on the outage: {m:?}",
        m.wasted
    );
}

#[test]
fn a_ten_minute_outage_meets_every_goal() {
    let (m, goals) = run_for(600);
    assert_eq!(m.unshipped, 0, "every episode shipped: {m:?}");
    assert!(goals.peak_ok, "busiest second over 2× steady's: {m:?}");
    assert!(goals.drained_ok, "drained within 20 min: {m:?}");
    assert!(goals.wait_ok, "no episode waited over 20 min: {m:?}");
    assert!(
        m.load_ratio() <= LOAD_CEILING,
        "busiest minute {:.2}× the steady rate: {m:?}",
        m.load_ratio()
    );
}
