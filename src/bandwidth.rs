//! `[shipper] upload_rate_limit`, in rclone's `--bwlimit` syntax: `"off"`,
//! a rate (`"10M"`: 10 MiB/s; suffixes B, K, M, G in binary units, no
//! suffix = KiB as in rclone), or a timetable of `HH:MM,RATE` pairs
//! separated by spaces (`"08:00,10M 19:00,off"`). A timetable's slot runs
//! from its time until the next slot's, wrapping past midnight, in local
//! time. [`RateSchedule`] is pure (the minute of the day comes from the
//! caller); [`Throttle`] applies it to an upload with a token bucket.

use std::fmt;
use std::num::NonZeroU32;

use governor::clock::DefaultClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

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
        let last = self.slots.last()?;
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

/// Bytes per token: fine enough for slow links, coarse enough that a fast
/// one fits the bucket's `u32` counts.
const CELL: u64 = 256;

type Bucket = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

/// Paces one upload to the schedule. The bucket holds half a second's
/// worth: over any 1-second window at most 1.5× the rate goes out.
pub struct Throttle {
    schedule: RateSchedule,
    /// The rate the bucket was built for, and the bucket.
    bucket: Option<(u64, Bucket)>,
}

impl Throttle {
    pub fn new(schedule: RateSchedule) -> Throttle {
        Throttle {
            schedule,
            bucket: None,
        }
    }

    /// Rebuild the bucket if the rate in force changed (a timetable
    /// boundary may pass during a long upload); the rate now.
    fn refresh(&mut self) -> Rate {
        let Some(rate) = self.schedule.rate_at(local_minute_of_day()) else {
            self.bucket = None;
            return None;
        };
        if self.bucket.as_ref().is_none_or(|(r, _)| *r != rate) {
            let per_second = (rate / CELL).clamp(2, u64::from(u32::MAX)) as u32;
            let burst = (per_second / 2).max(1);
            let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
            self.bucket = Some((rate, RateLimiter::direct(quota)));
        }
        Some(rate)
    }

    /// How many bytes to send next, at most `max`: no more than the bucket
    /// holds (half a second's worth), so a chunk never waits long and a
    /// throttled upload keeps moving. Call [`Throttle::admit`] with it.
    pub fn chunk_len(&mut self, max: usize) -> usize {
        match self.refresh() {
            None => max,
            Some(rate) => {
                let half_second = (rate / CELL / 2).max(1) * CELL;
                max.min(half_second as usize).max(1)
            }
        }
    }

    /// Wait until `len` bytes (as [`Throttle::chunk_len`] gave) may go, in
    /// the bucket that length was sized for; at once while unlimited.
    pub async fn admit(&mut self, len: usize) {
        let Some((_, bucket)) = &self.bucket else {
            return;
        };
        let cells = (len as u64).div_ceil(CELL).clamp(1, u64::from(u32::MAX)) as u32;
        let cells = NonZeroU32::new(cells).unwrap_or(NonZeroU32::MIN);
        if bucket.until_n_ready(cells).await.is_err() {
            // Larger than the bucket (not from chunk_len): wait for a full one.
            bucket.until_ready().await;
        }
    }
}

/// Minutes since local midnight (the timetable is in local time, as
/// rclone's is).
pub fn local_minute_of_day() -> u16 {
    // SAFETY: time(2) and localtime_r(3) with valid pointers to our own
    // stack; localtime_r is the thread-safe variant.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        (tm.tm_hour * 60 + tm.tm_min).clamp(0, 1439) as u16
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
    if !(1024.0..=1e15).contains(&bytes) {
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
    fn chunks_fit_half_a_second() {
        let mut unlimited = Throttle::new(RateSchedule::unlimited());
        assert_eq!(unlimited.chunk_len(256 << 10), 256 << 10);
        let mut slow = Throttle::new(RateSchedule::parse("100K").expect("rate"));
        assert_eq!(slow.chunk_len(256 << 10), 50 << 10);
        let mut fast = Throttle::new(RateSchedule::parse("1G").expect("rate"));
        assert_eq!(fast.chunk_len(256 << 10), 256 << 10);
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
