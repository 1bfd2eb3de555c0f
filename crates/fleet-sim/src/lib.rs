//! A fleet of lab hosts against one receiver, simulated through the
//! shipper's real decision code (`cis490`): the episode state machine, the
//! backoff with its jitter and Retry-After, the host-wide pause and the
//! scanner's pass order. Only the clock and the random source are the
//! simulator's; no retry rule is copied here.
//!
//! Model: a host records one episode every `record_every_s` at its own
//! random phase; `ship-episode` runs at once for it; the scanner passes
//! when something is due (a retry, the end of a pause, a turn of a replay),
//! as the daemon wakes for it. Uploads are
//! instantaneous (a pass ships its due entries in the same instant: the
//! worst case for bursts); the receiver has a capacity per second only in
//! the overload scenario, and otherwise answers everyone, so the tables
//! show the load the fleet offers.

pub mod engine;
pub mod host;
pub mod measure;
pub mod receiver;
pub mod rng;
pub mod scenario;
