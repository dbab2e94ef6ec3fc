//! MQTT 3.1.1 and 5 device transport on ntex-mqtt: sessions, auth, topics, payload adaptors.
//! Runs on its own thread with ntex workers; crosses to the main runtime through `AppState::rt`.

mod chunks;
mod downlink;
mod gate;
mod gateway;
mod inflight;
mod provision;
mod session;
mod sink;
pub mod tls;
pub mod topics;
mod uplink;
mod v3;
mod v5;

use std::sync::Arc;

use ntex_mqtt::{MqttServer, MqttServiceConfig, QoS};
use ntex_service::cfg::SharedCfg;
use ntex_util::time::Seconds;

pub use inflight::InflightStats;

use crate::state::AppState;

/// What the MQTT sessions of one server share, on both runtimes.
#[derive(Debug, Default)]
pub struct MqttShared {
    /// Publishes in processing (the per-session in-flight bound).
    pub inflight: Arc<InflightStats>,
}

/// The running MQTT server: its handle and the runtime thread it lives on.
pub struct MqttServerHandle {
    pub server: ntex_server::net::Server,
    pub system: ntex_rt::System,
    pub thread: std::thread::JoinHandle<()>,
}

/// The MQTT-over-TLS listener and its TLS configuration.
pub struct TlsListener {
    pub listener: std::net::TcpListener,
    pub config: Arc<rustls::ServerConfig>,
}

/// Starts the MQTT server (plain TCP, and TLS when given) on its own thread; returns its handle
/// once it runs.
pub fn spawn(
    state: Arc<AppState>,
    listener: std::net::TcpListener,
    tls: Option<TlsListener>,
) -> anyhow::Result<MqttServerHandle> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("mqtt".into())
        .spawn(move || {
            let sys = ntex_rt::System::new("mqtt", ntex_net::DefaultRuntime);
            let result = sys.block_on(async move {
                match build(state, listener, tls) {
                    Ok(srv) => {
                        let _ = tx.send(Ok((srv.clone(), ntex_rt::System::current())));
                        if let Err(e) = srv.await {
                            tracing::error!(error = ?e, "MQTT server stopped with an error");
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
                Ok::<_, std::io::Error>(())
            });
            if let Err(e) = result {
                tracing::error!(error = %e, "MQTT runtime failed");
            }
        })?;
    match rx.recv() {
        Ok(Ok((server, system))) => Ok(MqttServerHandle {
            server,
            system,
            thread,
        }),
        Ok(Err(e)) => Err(anyhow::anyhow!("cannot start the MQTT server: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "the MQTT thread ended before the server started"
        )),
    }
}

/// TCP connections one MQTT worker holds at most, CONNECT or not: the session cap plus room to
/// answer the excess with a refusal; beyond it the worker stops accepting and new connections
/// wait in the listen backlog. (ntex keeps this setting process-wide: one server per process.)
fn tcp_limit(max_connections: usize) -> usize {
    max_connections.saturating_add((max_connections / 4).max(16))
}

/// The MQTT 3.1.1 + 5 service of one connection, the same on every listener. The CONNECT handlers
/// are boxed: ntex-mqtt awaits the handshake inline in the connection's future, which would
/// otherwise keep room for the whole admission state machine for the session's lifetime.
macro_rules! mqtt_service {
    ($state:expr, $inflight:expr, $gate:expr) => {{
        let (s3, s5) = ($state.clone(), $state.clone());
        let (g3, g5) = ($gate.clone(), $gate.clone());
        MqttServer::new()
            .v3(
                ntex_mqtt::v3::MqttServer::new(async |s: &v3::Session, p| v3::publish(s, p).await)
                    .protocol(async |s: &v3::Session, m| v3::protocol(s, m).await)
                    .control(async |s: &v3::Session, c| v3::control(s, c).await)
                    .replace_middlewares($inflight.clone())
                    .build(async move |hs| Box::pin(v3::connect(&s3, &g3, hs)).await),
            )
            .v5(
                ntex_mqtt::v5::MqttServer::new(async |s: &v5::Session, p| v5::publish(s, p).await)
                    .protocol(async |s: &v5::Session, m| v5::protocol(s, m).await)
                    .control(async |s: &v5::Session, c| v5::control(s, c).await)
                    .replace_middlewares($inflight.clone())
                    .build(async move |hs| Box::pin(v5::connect(&s5, &g5, hs)).await),
            )
    }};
}

fn build(
    state: Arc<AppState>,
    listener: std::net::TcpListener,
    tls: Option<TlsListener>,
) -> std::io::Result<ntex_server::net::Server> {
    let mqtt = &state.config.mqtt;
    let timeout = Seconds(u16::try_from(mqtt.connect_timeout_secs).unwrap_or(u16::MAX));
    let config = || {
        SharedCfg::new("MQTT").add(
            MqttServiceConfig::new()
                .set_max_qos(QoS::AtLeastOnce)
                .set_max_size(mqtt.max_packet_size)
                .set_max_receive(mqtt.max_inflight)
                // counted per PUBLISH by `inflight`, for every QoS; no byte budget on top
                .set_max_receive_size(0)
                // a PUBLISH read before the DISCONNECT (or the socket closing) is processed
                .set_handle_qos_after_disconnect(Some(QoS::AtLeastOnce))
                // a whole packet is read before its handler runs: no partial payloads to track
                .set_min_chunk_size(mqtt.max_packet_size)
                .set_connect_timeout(timeout)
                .set_handshake_timeout(timeout)
                .protocol_version_timeout(timeout),
        )
    };
    let workers = if mqtt.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        mqtt.workers
    };
    let inflight = inflight::InflightLimit {
        max: mqtt.max_inflight,
        stats: state.mqtt.inflight.clone(),
    };
    let gate = Arc::new(gate::Gate::new(mqtt.max_connections));
    let (plain_state, plain_inflight, plain_gate) = (state.clone(), inflight.clone(), gate.clone());
    let mut builder = ntex_server::net::build()
        .workers(workers)
        .maxconn(tcp_limit(mqtt.max_connections))
        .disable_signals()
        .shutdown_timeout(Seconds(3))
        .listen("mqtt", listener, config(), async move |_| {
            mqtt_service!(plain_state, plain_inflight, plain_gate)
        })?;
    if let Some(TlsListener {
        listener,
        config: tls_config,
    }) = tls
    {
        let tls_config = tls_config.clone();
        builder = builder.listen("mqtts", listener, config(), async move |_| {
            ntex_service::service(ntex_tls::rustls::TlsAcceptor::new(tls_config.clone()))
                // A failed TLS handshake ends the connection like a peer that went away.
                .map_err(|e| {
                    ntex_mqtt::MqttError::Connect(ntex_mqtt::MqttConnectError::Disconnected(Some(
                        e,
                    )))
                })
                .and_then(mqtt_service!(state, inflight, gate))
        })?;
    }
    Ok(builder.run())
}
