//! `[shipper] upload_rate_limit`, in rclone's `--bwlimit` syntax: `"off"`,
//! a rate (`"10M"`: 10 MiB/s; suffixes B, K, M, G in binary units, no
//! suffix = KiB as in rclone), or a timetable of `HH:MM,RATE` pairs
//! separated by spaces (`"08:00,10M 19:00,off"`). A timetable's slot runs
//! from its time until the next slot's, wrapping past midnight, in local
//! time. Pure: the current minute of the day comes from the caller.

use std::fmt;

/// Bytes per second, or unlimited.
pub type Rate = Option<u64>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateSchedule {
    /// (minute of the day, rate), sorted by minute; empty = unlimited.
    slots: Vec<(u16, Rate)>,
}

impl RateSchedule {
    pub fn unlimited() -> RateSchedule {
        RateSchedule { slots: Vec::new() }
    }

    pub fn parse(text: &str) -> Result<RateSchedule, String> {
        let text = text.trim();
        if !text.contains(',') {
            let rate = parse_rate(text)?;
            return Ok(match rate {
                None => RateSchedule::unlimited(),
                Some(r) => RateSchedule {
                    slots: vec![(0, Some(r))],
                },
            });
        }
        let mut slots = Vec::new();
        for pair in text.split_whitespace() {
            let (time, rate) = pair
                .split_once(',')
                .ok_or_else(|| format!("{pair:?} is not HH:MM,RATE"))?;
            let minute = parse_time(time).ok_or_else(|| {
                format!("{time:?} in {pair:?} is not a time of day (HH:MM, 00:00 to 23:59)")
            })?;
            if slots.iter().any(|(m, _)| *m == minute) {
                return Err(format!("{time} appears twice in the timetable"));
            }
            slots.push((minute, parse_rate(rate)?));
        }
        slots.sort_by_key(|(m, _)| *m);
        Ok(RateSchedule { slots })
    }

    pub fn is_unlimited(&self) -> bool {
        self.slots.iter().all(|(_, r)| r.is_none())
    }

    /// The rate in force at `minute` of the day (0..1440).
    pub fn rate_at(&self, minute: u16) -> Rate {
        let Some(last) = self.slots.last() else {
            return None;
        };
        // Before the first slot of the day, yesterday's last slot holds.
        self.slots
            .iter()
            .rev()
            .find(|(m, _)| *m <= minute)
            .unwrap_or(last)
            .1
    }

    /// Minutes from `minute` until the rate may change (a slot boundary).
    pub fn minutes_to_next_change(&self, minute: u16) -> Option<u16> {
        if self.slots.len() < 2 {
            return None;
        }
        let next = self
            .slots
            .iter()
            .map(|(m, _)| *m)
            .find(|m| *m > minute)
            .unwrap_or(self.slots[0].0 + 1440);
        Some(next - minute)
    }
}

impl fmt::Display for RateSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |r: Rate| match r {
            None => "off".to_string(),
            Some(b) => crate::cli::human_bytes(b) + "/s",
        };
        match self.slots.as_slice() {
            [] => write!(f, "off"),
            [(0, r)] => write!(f, "{}", show(*r)),
            slots => {
                let parts: Vec<String> = slots
                    .iter()
                    .map(|(m, r)| format!("{:02}:{:02},{}", m / 60, m % 60, show(*r)))
                    .collect();
                write!(f, "{}", parts.join(" "))
            }
        }
    }
}

fn parse_time(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// `off`, or a number (decimals allowed) with an optional B/K/M/G suffix.
fn parse_rate(s: &str) -> Result<Rate, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, 'K'),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a rate such as \"10M\", \"512K\" or \"off\""))?;
    let scale: f64 = match unit {
        'B' => 1.0,
        'K' => 1024.0,
        'M' => 1024.0 * 1024.0,
        'G' => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit (use B, K, M or G, or \"off\")"
            ));
        }
    };
    let bytes = n * scale;
    if !bytes.is_finite() || bytes < 1024.0 || bytes > 1e15 {
        return Err(format!(
            "{s:?} is out of range (1K to 900T per second, or \"off\")"
        ));
    }
    Ok(Some(bytes as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_timetables() {
        let rows: &[(&str, &[(u16, Rate)])] = &[
            ("off", &[(0, None), (720, None)]),
            ("OFF", &[(0, None)]),
            ("10M", &[(0, Some(10 << 20)), (1439, Some(10 << 20))]),
            ("512K", &[(600, Some(512 << 10))]),
            ("512", &[(600, Some(512 << 10))]),
            ("1.5M", &[(0, Some(3 << 19))]),
            ("2G", &[(0, Some(2 << 30))]),
            ("4096B", &[(0, Some(4096))]),
            (
                "08:00,10M 19:00,off",
                &[
                    (0, None),
                    (479, None),
                    (480, Some(10 << 20)),
                    (1139, Some(10 << 20)),
                    (1140, None),
                ],
            ),
            (
                "19:00,off 08:00,1M",
                &[(480, Some(1 << 20)), (1200, None), (100, None)],
            ),
            (
                "00:00,off 12:00,256K",
                &[(0, None), (719, None), (720, Some(256 << 10))],
            ),
        ];
        for (text, expected) in rows {
            let s = RateSchedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            for (minute, rate) in *expected {
                assert_eq!(s.rate_at(*minute), *rate, "{text} at {minute}");
            }
        }
    }

    #[test]
    fn errors_name_the_bad_part() {
        for (text, says) in [
            ("10X", "unknown unit"),
            ("fast", "not a rate"),
            ("0", "out of range"),
            ("-5M", "out of range"),
            ("25:00,1M", "not a time of day"),
            ("8:00,1M", "not a time of day"),
            ("08:00;1M", "not a rate"),
            ("08:00,1M 08:00,off", "twice"),
            ("08:00,1M 19:00", "not HH:MM,RATE"),
        ] {
            let e = RateSchedule::parse(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn next_change_wraps_past_midnight() {
        let s = RateSchedule::parse("08:00,10M 19:00,off").expect("parse");
        assert_eq!(s.minutes_to_next_change(0), Some(480));
        assert_eq!(s.minutes_to_next_change(480), Some(660));
        assert_eq!(s.minutes_to_next_change(1200), Some(720));
        assert_eq!(
            RateSchedule::parse("10M")
                .expect("rate")
                .minutes_to_next_change(5),
            None
        );
        assert_eq!(s.to_string(), "08:00,10.0 MiB/s 19:00,off");
    }
}
