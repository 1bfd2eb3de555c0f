//! The state of the cis490 units, from `systemctl show`.

use std::path::Path;
use std::process::{Command, Stdio};

/// Properties asked for; `--timestamp=unix` makes realtime ones `@SECONDS`.
const PROPERTIES: &str = "Id,LoadState,ActiveState,SubState,Result,NRestarts,\
NextElapseUSecRealtime,NextElapseUSecMonotonic,LastTriggerUSec";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitState {
    pub id: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub result: String,
    pub n_restarts: Option<u32>,
    /// Timers: the next run, if one is scheduled.
    pub next_elapse: NextElapse,
}

/// When a timer fires next.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum NextElapse {
    /// Not a timer, or nothing scheduled (`NEXT` shows `-`).
    #[default]
    None,
    /// At this unix time.
    At(u64),
    /// Scheduled, but the time could not be worked out (raw value kept).
    Scheduled(String),
}

/// Unit states, or why they could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitsRead {
    States(Vec<UnitState>),
    Unavailable(String),
}

/// Parse `systemctl show` output: blocks of `Key=Value` lines separated by
/// blank lines, one block per unit. `monotonic_now_us` converts timers'
/// monotonic next elapse to wall-clock time (with `now`).
pub fn parse_show(text: &str, now: u64, monotonic_now_us: Option<u64>) -> Vec<UnitState> {
    let mut units = Vec::new();
    for block in text.split("\n\n") {
        let mut u = UnitState::default();
        let (mut realtime, mut monotonic) = (String::new(), String::new());
        for line in block.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "Id" => u.id = v.to_string(),
                "LoadState" => u.load_state = v.to_string(),
                "ActiveState" => u.active_state = v.to_string(),
                "SubState" => u.sub_state = v.to_string(),
                "Result" => u.result = v.to_string(),
                "NRestarts" => u.n_restarts = v.parse().ok(),
                "NextElapseUSecRealtime" => realtime = v.to_string(),
                "NextElapseUSecMonotonic" => monotonic = v.to_string(),
                _ => {}
            }
        }
        if u.id.is_empty() {
            continue;
        }
        u.next_elapse = next_elapse(&realtime, &monotonic, now, monotonic_now_us);
        units.push(u);
    }
    units
}

fn next_elapse(realtime: &str, monotonic: &str, now: u64, mono_now_us: Option<u64>) -> NextElapse {
    let mut best: Option<u64> = None;
    let mut raw = None;
    if let Some(secs) = realtime.strip_prefix('@') {
        best = secs.split('.').next().and_then(|s| s.parse().ok());
    } else if !realtime.is_empty() && realtime != "0" && realtime != "n/a" {
        raw = Some(realtime.to_string());
    }
    if !monotonic.is_empty() && monotonic != "infinity" && monotonic != "0" {
        match (parse_timespan_us(monotonic), mono_now_us) {
            (Some(at), Some(mono_now)) => {
                let t = now + at.saturating_sub(mono_now) / 1_000_000;
                best = Some(best.map_or(t, |b| b.min(t)));
            }
            _ => raw = raw.or(Some(monotonic.to_string())),
        }
    }
    match (best, raw) {
        (Some(t), _) => NextElapse::At(t),
        (None, Some(r)) => NextElapse::Scheduled(r),
        (None, None) => NextElapse::None,
    }
}

/// systemd's timespan format (`27min 7.552530s`, `1h`, `2d 3h`, `500ms`)
/// in microseconds; plain digits are microseconds.
pub fn parse_timespan_us(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(us) = s.parse::<u64>() {
        return Some(us);
    }
    let mut total = 0f64;
    let mut any = false;
    for token in s.split_whitespace() {
        let split = token
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(token.len());
        let (num, unit) = token.split_at(split);
        let n: f64 = num.parse().ok()?;
        let mult = match unit {
            "us" | "usec" => 1.0,
            "ms" | "msec" => 1e3,
            "s" | "sec" | "" => 1e6,
            "min" | "m" => 60e6,
            "h" | "hr" => 3600e6,
            "d" => 86_400e6,
            "w" => 7.0 * 86_400e6,
            "M" | "month" => 2_629_800e6,
            "y" => 31_557_600e6,
            _ => return None,
        };
        total += n * mult;
        any = true;
    }
    any.then_some(total as u64)
}

fn monotonic_now_us() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000)
}

/// Ask systemd about `units`. Not booted with systemd, or no systemctl,
/// is reported, never a crash.
pub fn read(units: &[&str], now: u64) -> UnitsRead {
    if !Path::new("/run/systemd/system").is_dir() {
        return UnitsRead::Unavailable(
            "systemd is not running on this machine (no /run/systemd/system)".into(),
        );
    }
    let output = Command::new("systemctl")
        .arg("show")
        .arg("--timestamp=unix")
        .arg(format!("-p{PROPERTIES}"))
        .args(units)
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(o) if o.status.success() => UnitsRead::States(parse_show(
            &String::from_utf8_lossy(&o.stdout),
            now,
            monotonic_now_us(),
        )),
        Ok(o) => UnitsRead::Unavailable(format!(
            "systemctl show failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => UnitsRead::Unavailable(format!("cannot run systemctl: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan_us("27min 7.552530s"), Some(1_627_552_530));
        assert_eq!(parse_timespan_us("1h"), Some(3_600_000_000));
        assert_eq!(parse_timespan_us("1500"), Some(1500));
        assert_eq!(parse_timespan_us("500ms"), Some(500_000));
        assert_eq!(parse_timespan_us("soon"), None);
    }

    #[test]
    fn monotonic_next_becomes_wall_clock() {
        let text = "Id=t.timer\nNextElapseUSecRealtime=\nNextElapseUSecMonotonic=1h\n";
        let u = parse_show(text, 1000, Some(1_800_000_000));
        assert_eq!(u[0].next_elapse, NextElapse::At(1000 + 1800));
        let text = "Id=t.timer\nNextElapseUSecRealtime=@5000\nNextElapseUSecMonotonic=infinity\n";
        assert_eq!(
            parse_show(text, 0, None)[0].next_elapse,
            NextElapse::At(5000)
        );
    }
}
