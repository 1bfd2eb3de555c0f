//! cis490 lab-host shipper: moves recorded episodes to the central receiver.
//!
//! Modules follow the data's path: [`config`] → [`layout`] (episode states)
//! → [`lock`] → [`archive`] → [`transport`] → [`outcome`] → [`ship`], then
//! [`scan`] (the daemon's queue), [`prune`] (retention), and [`journal`] +
//! [`doctor`] (diagnosis); [`time`] holds the calendar arithmetic and time
//! formats they share.

pub mod archive;
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
pub mod outcome;
pub mod prune;
pub mod reserve;
pub mod scan;
pub mod ship;
pub mod signals;
pub mod time;
pub mod transport;
pub mod unit_state;
