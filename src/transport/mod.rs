//! Device transports. Each turns device traffic into domain messages; none touches storage.
//! What the device API means is written once (`uplink`, `limits`); each transport maps it to its
//! protocol.

pub mod http;
pub mod limits;
pub mod mqtt;
pub mod ota;
pub mod uplink;
