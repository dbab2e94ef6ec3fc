//! The ThingsBoard-compatible REST API against the real server over HTTP: auth and JWTs, devices,
//! credentials, profiles, attributes, time series, health and metrics — on SQLite and PostgreSQL.

mod common;

#[path = "api/attributes.rs"]
mod attributes;
#[path = "api/auth.rs"]
mod auth;
#[path = "api/claiming.rs"]
mod claiming;
#[path = "api/console.rs"]
mod console;
#[path = "api/devices.rs"]
mod devices;
#[path = "api/hostile.rs"]
mod hostile;
#[path = "api/isolation.rs"]
mod isolation;
#[path = "api/logins.rs"]
mod logins;
#[path = "api/profiles.rs"]
mod profiles;
#[path = "api/provision.rs"]
mod provision;
#[path = "api/rule_chains.rs"]
mod rule_chains;
#[path = "api/support.rs"]
mod support;
#[path = "api/telemetry.rs"]
mod telemetry;
#[path = "api/tenancy.rs"]
mod tenancy;
#[path = "api/tokens.rs"]
mod tokens;
#[path = "api/users.rs"]
mod users;
#[path = "api/ws.rs"]
mod ws;
