//! What prune believes about the clock. A host without a real-time clock
//! may boot years in the past (or ahead) and keep that time until NTP
//! corrects it; whatever it recorded meanwhile is wrong by as much. So
//! retention never counts time the clock had wrong:
//!
//! - The clock *now* is wrong for certain when it reads before this
//!   binary's build date (nothing runs before it is built). Such a run
//!   deletes nothing by age.
//! - A recorded entry time (a sidecar's `entered_at`, else the directory's
//!   ctime) more than [`TRUSTED_BEFORE_BUILD`] before the build date, or
//!   more than [`FUTURE_SLACK`] in the future, was taken by a wrong clock.
//!   The first run with a right clock records itself as the start of the
//!   count (in the sidecar) and keeps the episode.
//!
//! The rules themselves are pure, in `prune::decide`; this holds
//! the build date and the margins.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds of this build, baked in by build.rs: `SOURCE_DATE_EPOCH`,
/// else the git commit time, else a constant (deterministic, never the
/// build machine's clock).
pub const BUILD_EPOCH: u64 = match u64::from_str_radix(env!("CIS490_BUILD_EPOCH"), 10) {
    Ok(secs) => secs,
    Err(_) => panic!("CIS490_BUILD_EPOCH is not unix seconds"),
};

// build.rs raises anything older to 2026-11-30, the oldest a build of
// this code can be.
const _: () = assert!(BUILD_EPOCH >= 1_795_996_800);

/// How long before the build date a recorded entry time is still believed.
/// Without a margin every upgrade would restart the count of everything
/// settled before the new build; a year covers any deploy lag plus the
/// default retentions (30 and 7 days), while the clocks seen wrong on
/// hosts without an RTC are years off (1970, 2000, the board's image date).
pub const TRUSTED_BEFORE_BUILD: Duration = Duration::from_secs(365 * 86_400);

/// How far in the future a recorded entry time is still taken as "just
/// now": NTP steps a clock back by seconds routinely, and an episode kept
/// an hour longer costs nothing. Beyond it, the count restarts.
pub const FUTURE_SLACK: Duration = Duration::from_secs(3600);

/// The build date as a time.
pub fn build_date() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(BUILD_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_date_is_not_in_the_future() {
        assert!(build_date() <= SystemTime::now(), "{BUILD_EPOCH}");
    }
}
