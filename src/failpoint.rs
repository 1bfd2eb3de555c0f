//! Named crash points between two durable steps, for the crash campaign
//! (`tests/crash.rs`).
//!
//! Compiled in only with the `failpoints` cargo feature, which release
//! builds leave off: without it [`crate::failpoint!`] expands to nothing.
//! With it, `FAILPOINTS="stage::after-rename=panic"` (the `fail` crate's
//! syntax) makes the process die at that point the way `kill -9` would: the
//! panic hook sends SIGKILL to ourselves before any destructor runs, so no
//! lock is released, no partial file removed, nothing flushed.

/// Every crash window an episode passes, in order. The crash campaign
/// iterates this list and prints one row per name, so a window added later
/// without an entry here stands out.
pub const ALL: &[&str] = &[
    CLAIM_BEFORE_RENAME,
    CLAIM_AFTER_RENAME,
    STAGE_BEFORE_BUILD,
    STAGE_MID_WRITE,
    STAGE_AFTER_RENAME,
    UPLOAD_AFTER_SUCCESS,
    SETTLE_AFTER_SIDECAR,
    SETTLE_AFTER_RENAME,
    CLEANUP_BEFORE,
    PAUSE_AFTER_STORE,
    PRUNE_BEFORE_DELETE,
];

/// Leftovers of an earlier episode with this id are removed; not claimed yet.
pub const CLAIM_BEFORE_RENAME: &str = "claim::before-rename";
/// `episodes/<id>` was renamed to `outbox/<id>`.
pub const CLAIM_AFTER_RENAME: &str = "claim::after-rename";
/// The retry state names the directory the archive is built from; no
/// archive yet.
pub const STAGE_BEFORE_BUILD: &str = "stage::before-build";
/// Part of the archive is in `outbox/<id>.tar.gz.partial`.
pub const STAGE_MID_WRITE: &str = "stage::mid-write";
/// The archive was renamed into place as `outbox/<id>.tar.gz`.
pub const STAGE_AFTER_RENAME: &str = "stage::after-rename";
/// The receiver answered 2xx; nothing is settled yet.
pub const UPLOAD_AFTER_SUCCESS: &str = "upload::after-success";
/// The destination sidecar is written; the directory has not moved.
pub const SETTLE_AFTER_SIDECAR: &str = "settle::after-sidecar";
/// The directory is in `shipped/` or `quarantine/`; outbox files remain.
pub const SETTLE_AFTER_RENAME: &str = "settle::after-rename";
/// Just before the staged archive and retry state are removed.
pub const CLEANUP_BEFORE: &str = "cleanup::before";
/// The receiver pause is on disk; the rest of the run is not claimed yet.
pub const PAUSE_AFTER_STORE: &str = "pause::after-store";
/// Prune decided to delete an entry and renamed nothing yet.
pub const PRUNE_BEFORE_DELETE: &str = "prune::before-delete";

/// Evaluate a named failpoint (a no-op without the `failpoints` feature).
#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name);
    };
}

/// Read `FAILPOINTS` and make a failpoint panic die like `kill -9`. Every
/// binary calls this first; without the feature it does nothing.
pub fn setup() {
    #[cfg(feature = "failpoints")]
    {
        std::mem::forget(fail::FailScenario::setup());
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if message.contains("failpoint") {
                eprintln!("crash at {message}");
                // SAFETY: kill(2) on our own pid; nothing runs after it.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
            default_hook(info);
        }));
    }
}
