//! The event loop: a priority queue of wake-ups (a recording, a scanner
//! pass that has work, a boot), not a clock ticking through every instant.
//! A scanner pass with nothing due, or with the pause holding, does nothing,
//! so a host is only woken for the pass at which it has work.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::host::{Episodes, Host, World};
use crate::receiver::{Outage, Overload, Receiver, Traffic};
use crate::rng::Rng;

/// Hosts `0..hosts` are powered off at `down_from_s` and all boot at the
/// same second, `boot_s`: their scanners start together.
#[derive(Debug, Clone, Copy)]
pub struct Reboot {
    pub hosts: u32,
    pub down_from_s: u64,
    pub boot_s: u64,
}

#[derive(Debug, Clone)]
pub struct Fleet {
    pub hosts: u32,
    /// Each host records one episode this often, at its own phase.
    pub record_every_s: u64,
    pub duration_s: u64,
    pub seed: u64,
    pub outages: Vec<Outage>,
    pub overload: Option<Overload>,
    pub reboot: Option<Reboot>,
    /// Scanners pace a backlog and spread their start, as the daemon does
    /// now; false: as it did before (`--unpaced`).
    pub paced: bool,
}

/// What happened: the receiver's traffic and every episode's fate.
pub struct Run {
    pub traffic: Traffic,
    pub episodes: Episodes,
    pub duration_s: u64,
}

const RECORD: u8 = 0;
const PASS: u8 = 1;
const BOOT: u8 = 2;

pub fn simulate(fleet: &Fleet) -> Run {
    let mut rng = Rng::new(fleet.seed);
    let mut receiver = Receiver::new(fleet.outages.clone(), fleet.overload);
    let mut episodes = Episodes::default();
    let every_ms = fleet.record_every_s * 1000;
    let end_ms = fleet.duration_s * 1000;

    let mut heap = BinaryHeap::new();
    let mut hosts: Vec<Host> = (0..fleet.hosts)
        .map(|i| {
            heap.push(Reverse((rng.below(every_ms), RECORD, i)));
            Host::new(i, fleet.paced)
        })
        .collect();
    if let Some(r) = fleet.reboot {
        for (i, h) in hosts.iter_mut().enumerate().take(r.hosts as usize) {
            h.down = Some((r.down_from_s * 1000, r.boot_s * 1000));
            heap.push(Reverse((r.boot_s * 1000, BOOT, i as u32)));
        }
    }

    while let Some(Reverse((t, kind, i))) = heap.pop() {
        if t >= end_ms {
            break;
        }
        let host = &mut hosts[i as usize];
        let mut world = World {
            now_ms: t,
            rng: &mut rng,
            receiver: &mut receiver,
            episodes: &mut episodes,
        };
        let after = match kind {
            RECORD => {
                heap.push(Reverse((t + every_ms, RECORD, i)));
                if host.is_down(t) {
                    continue; // powered off: nothing is recorded
                }
                host.record(&mut world);
                t
            }
            PASS => {
                if host.wake_ms != Some(t) {
                    continue; // superseded by a later reschedule
                }
                host.wake_ms = None;
                if host.is_down(t) {
                    continue; // rescheduled at boot
                }
                host.scan_pass(&mut world);
                // The daemon sleeps at least a second after a pass.
                t + 1000
            }
            _ => {
                debug_assert_eq!(kind, BOOT);
                // The scanner's first pass comes at once after its start.
                host.wake_ms = None;
                host.start_scanner(&mut world);
                t
            }
        };
        let next = host.next_pass(after);
        if next != host.wake_ms {
            host.wake_ms = next;
            if let Some(n) = next {
                heap.push(Reverse((n, PASS, i)));
            }
        }
    }
    Run {
        traffic: receiver.traffic,
        episodes,
        duration_s: fleet.duration_s,
    }
}
