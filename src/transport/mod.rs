//! Device transports. Each turns device traffic into domain messages; none touches storage.

pub mod mqtt;
