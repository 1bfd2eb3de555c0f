//! Per-episode counters and the request log behind `GET /_control/stats`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

/// How many episode requests `GET /_control/stats` lists (the latest ones).
const REQUEST_LOG_MAX: usize = 10_000;

#[derive(Default)]
pub struct Stats {
    pub puts: BTreeMap<String, u64>,
    /// `HEAD` requests per `host/episode` (not in the request log).
    pub heads: BTreeMap<String, u64>,
    pub responses: BTreeMap<String, Vec<u16>>,
    /// Episode requests, oldest first, numbered consecutively from `first_seq`.
    requests: VecDeque<Logged>,
    first_seq: u64,
}

/// One episode request, for tests that check timing (retry schedules, stalls).
struct Logged {
    key: String,
    /// Unix microseconds when the request head had been read.
    at_us: u64,
    /// When the request was over (answered, or given up); `None` while in progress.
    end_us: Option<u64>,
    status: Option<u16>,
    bytes: u64,
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Stats {
    /// Log the start of a request; returns its number for `finish`.
    pub fn begin(&mut self, key: &str) -> u64 {
        self.requests.push_back(Logged {
            key: key.to_owned(),
            at_us: unix_us(),
            end_us: None,
            status: None,
            bytes: 0,
        });
        if self.requests.len() > REQUEST_LOG_MAX {
            self.requests.pop_front();
            self.first_seq += 1;
        }
        self.first_seq + self.requests.len() as u64 - 1
    }

    /// Complete a logged request (a no-op if it has been rotated out or reset).
    pub fn finish(&mut self, seq: u64, status: Option<u16>, bytes: u64) {
        let Some(i) = seq.checked_sub(self.first_seq) else {
            return;
        };
        if let Some(r) = usize::try_from(i)
            .ok()
            .and_then(|i| self.requests.get_mut(i))
        {
            r.end_us = Some(unix_us());
            r.status = status;
            r.bytes = bytes;
        }
    }

    /// Forget everything, but keep numbering where it was so that requests still
    /// in progress do not complete someone else's entry.
    pub fn reset(&mut self) {
        let next = self.first_seq + self.requests.len() as u64;
        *self = Stats {
            first_seq: next,
            ..Stats::default()
        };
    }

    pub fn requests_json(&self) -> Vec<serde_json::Value> {
        self.requests
            .iter()
            .map(|r| {
                json!({
                    "key": r.key,
                    "at_us": r.at_us,
                    "end_us": r.end_us,
                    "status": r.status,
                    "bytes": r.bytes,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_log_is_bounded_and_numbered() {
        let mut stats = Stats::default();
        let first = stats.begin("h/a");
        stats.finish(first, Some(503), 10);
        let log = stats.requests_json();
        assert_eq!(log[0]["key"], "h/a");
        assert_eq!(log[0]["status"], 503);
        assert_eq!(log[0]["bytes"], 10);
        assert!(log[0]["end_us"].as_u64() >= log[0]["at_us"].as_u64());
        let mut last = first;
        for _ in 0..REQUEST_LOG_MAX {
            last = stats.begin("h/b");
        }
        assert_eq!(stats.requests.len(), REQUEST_LOG_MAX);
        assert_eq!(stats.requests[0].key, "h/b");
        // The first one was rotated out: finishing it changes nothing.
        stats.finish(first, Some(201), 1);
        assert!(stats.requests.iter().all(|r| r.status.is_none()));
        stats.finish(last, Some(201), 5);
        let back = stats.requests.back().expect("last");
        assert_eq!((back.status, back.bytes), (Some(201), 5));
        assert!(back.end_us.is_some());
        assert_eq!(stats.requests_json()[0]["end_us"], serde_json::Value::Null);

        // A reset while `in_flight` is still going: it must not complete a newer entry.
        let in_flight = stats.begin("h/c");
        stats.reset();
        assert!(stats.requests.is_empty());
        let newer = stats.begin("h/d");
        stats.finish(in_flight, Some(201), 1);
        assert_eq!(stats.requests[0].status, None);
        stats.finish(newer, Some(409), 0);
        assert_eq!(stats.requests[0].status, Some(409));
    }
}
