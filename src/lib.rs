//! ferroboard: a ThingsBoard-compatible IoT device platform in one binary.
//!
//! Data flows one way: `transport` → `engine` → `services` → `storage` / `bus`; `api` serves REST.
//! `state` holds what every part shares; `app` composes the parts from a `config::Config`.

pub mod api;
pub mod app;
pub mod bus;
pub mod config;
pub mod domain;
pub mod engine;
pub mod observability;
pub mod services;
pub mod state;
pub mod storage;
pub mod transport;
