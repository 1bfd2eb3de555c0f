//! Calendar arithmetic and the time formats the tools print, in one place:
//! days since the epoch ⇄ proleptic Gregorian dates (Howard Hinnant's
//! algorithms), RFC 3339, minute-precision UTC, and human spans.
//! No time zone database: everything is UTC.

pub const HOUR: u64 = 3600;
pub const DAY: u64 = 86_400;

/// The date `days` after 1970-01-01: (year, month 1–12, day 1–31).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days from 1970-01-01 to the given date (the inverse of
/// [`civil_from_days`]); negative before the epoch. A day past the end of
/// its month rolls over into the next one.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (y, mp) = if month <= 2 {
        (year - 1, i64::from(month) + 9)
    } else {
        (year, i64::from(month) - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as (year, month, day, seconds into that day).
fn split(t: u64) -> (i64, u32, u32, u64) {
    let (y, m, d) = civil_from_days((t / DAY) as i64);
    (y, m, d, t % DAY)
}

/// `2026-11-18T11:06:40Z`
pub fn rfc3339(t: u64) -> String {
    let (y, m, d, s) = split(t);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / HOUR,
        s % HOUR / 60,
        s % 60
    )
}

/// `2026-11-18 11:06 UTC`
pub fn utc_minutes(t: u64) -> String {
    let (y, m, d, s) = split(t);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / HOUR,
        s % HOUR / 60
    )
}

/// A duration in the largest unit that keeps it readable: `90 s`,
/// `12 min`, `5 h`, `3 days`.
pub fn human_span(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * HOUR => format!("{} min", s / 60),
        s if s < 2 * DAY => format!("{} h", s / HOUR),
        s => format!("{} days", s / DAY),
    }
}

/// When a "not before" time read back from disk comes, as of `now`: `due`
/// as written at `written_at` (the file's mtime) by rules that never set
/// one more than `horizon` seconds ahead. All in unix seconds.
///
/// - Beyond the horizon (the clock was far ahead when it was written, or
///   the file was edited): due at the horizon, counted from when it was
///   written, so that reading it again does not push it further out.
/// - Written after `now`, by a clock that has been set back since: its
///   times say nothing, so it is due now.
/// - Not knowing when it was written: the horizon counts from `now`.
pub fn due_within_horizon(due: u64, written_at: Option<u64>, now: u64, horizon: u64) -> u64 {
    match written_at {
        Some(written) if written > now => due.min(now),
        Some(written) => due.min(written.saturating_add(horizon)),
        None => due.min(now.saturating_add(horizon)),
    }
}

/// "at 2026-11-27 03:15 UTC (12 min ago)" / "(in 3 h)".
pub fn when(t: u64, now: u64) -> String {
    let rel = if t <= now {
        format!("{} ago", human_span(now - t))
    } else {
        format!("in {}", human_span(t - now))
    };
    format!("at {} ({rel})", utc_minutes(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn days_round_trip() {
        // RFC 9110's example date, Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(days_from_civil(1994, 11, 6) * 86_400, 784_080_000);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 2, 29), 951_782_400 / 86_400);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        // Day 31 of a 30-day month is the 1st of the next.
        assert_eq!(days_from_civil(2026, 4, 31), days_from_civil(2026, 5, 1));
        for days in [-800_000, -1, 0, 59, 60, 10_956, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn due_times_from_disk_within_the_horizon() {
        const NOW: u64 = 1_800_000_000;
        const H: u64 = 86_401;
        const YEARS: u64 = 10 * 365 * DAY;
        // (row, due, written at, expected)
        #[rustfmt::skip]
        let table = [
            ("a backoff, written just now", NOW + 300, Some(NOW), NOW + 300),
            ("passed already", NOW - 5, Some(NOW - 100), NOW - 5),
            ("a full Retry-After", NOW + H - 10, Some(NOW - 10), NOW + H - 10),
            ("a second beyond it", NOW + H - 9, Some(NOW - 10), NOW + H - 10),
            ("years ahead, written a minute ago", NOW + YEARS, Some(NOW - 60), NOW - 60 + H),
            // Read again later: the same answer, not pushed further out.
            ("years ahead, written two horizons ago", NOW + YEARS, Some(NOW - 2 * H), NOW - H),
            ("written by a clock set back since", NOW + YEARS + 300, Some(NOW + YEARS), NOW),
            ("written a second ahead", NOW + 300, Some(NOW + 1), NOW),
            ("written ahead, already due", NOW - 5, Some(NOW + 1), NOW - 5),
            ("written when, unknown", NOW + 300, None, NOW + 300),
            ("written when, unknown, years ahead", NOW + YEARS, None, NOW + H),
            ("no overflow", u64::MAX, Some(u64::MAX - 1), u64::MAX),
        ];
        for (row, due, written, expected) in table {
            let now = if row == "no overflow" { u64::MAX } else { NOW };
            assert_eq!(due_within_horizon(due, written, now, H), expected, "{row}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(utc_minutes(1_795_000_000), "2026-11-18 11:06 UTC");
        assert_eq!(human_span(90), "90 s");
        assert_eq!(human_span(7200), "2 h");
        assert_eq!(human_span(3 * DAY), "3 days");
        assert_eq!(
            when(1_795_000_000, 1_795_000_720),
            "at 2026-11-18 11:06 UTC (12 min ago)"
        );
        assert_eq!(
            when(1_795_000_000 + 3 * HOUR, 1_795_000_000),
            "at 2026-11-18 14:06 UTC (in 3 h)"
        );
    }
}
