//! cis490 lab-host shipper: moves recorded episodes to the central receiver.
//!
//! Modules follow the data's path: [`config`] → [`layout`] (episode states)
//! → [`lock`] → [`reserve`] (disk) → [`archive`] → [`transport`] (with
//! [`bandwidth`] and [`client_cert`]) → [`outcome`] → [`ship`], then
//! [`scan`] (the daemon's queue), [`prune`] (retention), [`journal`] +
//! [`doctor`] (diagnosis) and [`metrics`] (Prometheus, for the fleet). What
//! happens to an episode and to the host-wide pause is decided in one pure
//! place, [`machine`]; [`ship`], [`scan`] and [`prune`] carry it out.
//! [`failpoint`] marks the crash windows between durable steps; [`time`]
//! holds the calendar arithmetic they share.

pub mod archive;
pub mod args;
pub mod bandwidth;
pub mod cli;
pub mod client_cert;
pub mod config;
pub mod doctor;
pub mod exit;
pub mod failpoint;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod logging;
pub mod machine;
pub mod metrics;
pub mod outcome;
pub mod prune;
pub mod reserve;
pub mod scan;
pub mod ship;
pub mod signals;
pub mod time;
pub mod transport;
pub mod unit_state;
