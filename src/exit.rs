//! sysexits(3) exit codes shared by the binaries, and the monitoring-plugin
//! codes used by `doctor`.

/// Everything shipped, or nothing to do.
pub const OK: u8 = 0;
/// EX_USAGE: bad command line.
pub const USAGE: u8 = 64;
/// EX_DATAERR: something was quarantined (the receiver refused it for good).
pub const QUARANTINED: u8 = 65;
/// EX_NOINPUT: a named episode does not exist.
pub const NO_INPUT: u8 = 66;
/// EX_SOFTWARE: internal error (a bug).
pub const SOFTWARE: u8 = 70;
/// EX_IOERR: a local filesystem operation failed.
pub const IO_ERROR: u8 = 74;
/// EX_TEMPFAIL: something is left for a retry.
pub const TEMPFAIL: u8 = 75;
/// EX_CONFIG: the config is unusable, or a host-level receiver error.
pub const CONFIG: u8 = 78;
