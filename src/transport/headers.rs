//! The answer's headers we act on: `Repr-Digest` and `Retry-After`.

use std::time::{Duration, SystemTime};

use base64::Engine;

/// The `sha-256` member of a `Content-Digest`/`Repr-Digest` field
/// (RFC 9530: `sha-256=:<base64>:`, possibly among other algorithms).
pub fn parse_sha256_digest(field: &str) -> Option<[u8; 32]> {
    field.split(',').find_map(|member| {
        let (alg, value) = member.trim().split_once('=')?;
        if !alg.trim().eq_ignore_ascii_case("sha-256") {
            return None;
        }
        let b64 = value.trim().strip_prefix(':')?.strip_suffix(':')?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        bytes.try_into().ok()
    })
}

/// The longest `Retry-After` honoured: a receiver asking for more (or a
/// garbled header) must not park an episode for months.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// `Retry-After` as delay-seconds or an IMF-fixdate HTTP-date (RFC 9110),
/// capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = parse_imf_fixdate(value)?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn parse_imf_fixdate(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u32 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u32
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || !(1970..=9999).contains(&year) || *h > 23 || *m > 59 || *sec > 60
    {
        return None;
    }
    // Not negative: the year is 1970 or later.
    let days = u64::try_from(crate::time::days_from_civil(year, month, day)).ok()?;
    let secs = days * crate::time::DAY + h * crate::time::HOUR + m * 60 + sec;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}
