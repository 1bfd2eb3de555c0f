//! The receiver, as the hosts see it: an answer per request, from the
//! scenario's outage windows and capacity. Uploads are instantaneous: a
//! request is answered at the instant it is made, and the capacity is a
//! number of uploads per wall-clock second.

use std::time::Duration;

use cis490::machine::host::Contact;
use cis490::outcome::Verdict;

/// How every request fails during an outage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Failure {
    /// No connection (the receiver is down).
    Refused,
    /// `503 Service Unavailable`, no `Retry-After`.
    Unavailable,
    /// `503` with `Retry-After: <seconds>`.
    UnavailableRetryAfter(u64),
}

impl Failure {
    pub fn label(self) -> String {
        match self {
            Failure::Refused => "connection refused".into(),
            Failure::Unavailable => "503".into(),
            Failure::UnavailableRetryAfter(s) => format!("503, Retry-After: {s}"),
        }
    }

    fn contact(self) -> Contact {
        match self {
            Failure::Refused => Contact::NotReached,
            Failure::Unavailable | Failure::UnavailableRetryAfter(_) => Contact::Reached,
        }
    }

    fn verdict(self) -> Verdict {
        let transient = |status, reason: &str, retry_after| Verdict::Transient {
            status,
            reason: reason.into(),
            retry_after,
        };
        match self {
            Failure::Refused => transient(None, "connection refused", None),
            Failure::Unavailable => transient(Some(503), "HTTP 503", None),
            Failure::UnavailableRetryAfter(s) => {
                transient(Some(503), "HTTP 503", Some(Duration::from_secs(s)))
            }
        }
    }
}

/// Every request in `[from_s, until_s)` fails, from hosts `0..hosts` (all
/// when `None`: a lab uplink down is an outage for part of the fleet).
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    pub from_s: u64,
    pub until_s: u64,
    pub failure: Failure,
    pub hosts: Option<u32>,
}

/// In `[from_s, until_s)` the receiver serves `capacity` uploads per second
/// and answers the rest `503` with `Retry-After: retry_after_s`.
#[derive(Debug, Clone, Copy)]
pub struct Overload {
    pub from_s: u64,
    pub until_s: u64,
    pub capacity: u32,
    pub retry_after_s: u64,
}

/// What the receiver answered, per wall-clock second.
#[derive(Debug, Default)]
pub struct Traffic {
    pub requests: Vec<u32>,
    pub failed: Vec<u32>,
}

impl Traffic {
    fn count(&mut self, second: usize, failed: bool) {
        if self.requests.len() <= second {
            self.requests.resize(second + 1, 0);
            self.failed.resize(second + 1, 0);
        }
        self.requests[second] += 1;
        if failed {
            self.failed[second] += 1;
        }
    }
}

pub struct Receiver {
    pub outages: Vec<Outage>,
    pub overload: Option<Overload>,
    pub traffic: Traffic,
}

impl Receiver {
    pub fn new(outages: Vec<Outage>, overload: Option<Overload>) -> Receiver {
        Receiver {
            outages,
            overload,
            traffic: Traffic::default(),
        }
    }

    /// The answer to one upload from `host` at `now_ms`, and how far the
    /// upload got.
    pub fn answer(&mut self, host: u32, now_ms: u64) -> (Verdict, Contact) {
        let s = now_ms / 1000;
        let second = s as usize;
        let outage = self
            .outages
            .iter()
            .find(|o| (o.from_s..o.until_s).contains(&s) && o.hosts.is_none_or(|n| host < n));
        if let Some(o) = outage {
            self.traffic.count(second, true);
            return (o.failure.verdict(), o.failure.contact());
        }
        if let Some(o) = self.overload
            && (o.from_s..o.until_s).contains(&s)
        {
            let served = self.traffic.requests.get(second).copied().unwrap_or(0)
                - self.traffic.failed.get(second).copied().unwrap_or(0);
            if served >= o.capacity {
                self.traffic.count(second, true);
                let failure = Failure::UnavailableRetryAfter(o.retry_after_s);
                return (failure.verdict(), failure.contact());
            }
        }
        self.traffic.count(second, false);
        (Verdict::Shipped { status: 201 }, Contact::Reached)
    }
}
