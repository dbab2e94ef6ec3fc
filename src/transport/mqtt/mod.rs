//! MQTT 3.1.1 and 5 device transport on ntex-mqtt: sessions, auth, topics, payload adaptors.

use std::sync::Arc;

use crate::app::AppState;

/// Why the server closes a session.
#[derive(Clone, Copy, Debug)]
pub enum CloseReason {
    ServerShutdown,
    TakenOver,
}

/// Live sessions by device.
#[derive(Default)]
pub struct Registry {}

impl Registry {
    pub fn close_all(&self, _reason: CloseReason) {}
}

pub fn spawn(
    _state: Arc<AppState>,
    _listener: std::net::TcpListener,
) -> anyhow::Result<(ntex_server::net::Server, std::thread::JoinHandle<()>)> {
    anyhow::bail!("mqtt not built yet")
}
