//! The composition root: builds every part from `Config`, runs it, owns shutdown.
//! `main` and the integration tests use the same `start`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::Msg;
use crate::engine::Engine;
use crate::observability::redact_secrets;
use crate::services::Services;
use crate::state::AppState;
use crate::storage::{self, Writer};

/// A started server. Drop does not stop it; call `shutdown`.
pub struct RunningApp {
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    /// The MQTT-over-TLS listener's address, when one is configured.
    pub mqtts_addr: Option<SocketAddr>,
    /// The separate metrics listener's address, when `[metrics] addr` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The TLS certificate in use; `reload` reads its files again (SIGHUP does the same).
    pub tls_cert: Option<Arc<crate::transport::mqtt::tls::ReloadableCert>>,
    pub state: Arc<AppState>,
    mqtt: Option<crate::transport::mqtt::MqttServerHandle>,
    http_task: tokio::task::JoinHandle<()>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    device_state_task: tokio::task::JoinHandle<()>,
    writer_stop: CancellationToken,
    writer_task: tokio::task::JoinHandle<()>,
}

/// Builds and starts everything. Must run inside a multi-thread tokio runtime.
pub async fn start(config: Config) -> anyhow::Result<RunningApp> {
    config.validate()?;
    let store = storage::open_retrying(&config.database_url, &config.storage)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open database {}: {}",
                redact_secrets(&config.database_url),
                redact_secrets(&e.to_string())
            )
        })?;
    store.migrate().await.context("database migration failed")?;
    let writer_stop = CancellationToken::new();
    let (writer, writer_task) = Writer::spawn(store.clone(), config.batch(), writer_stop.clone());
    let sessions = Arc::new(crate::bus::Registry::default());
    let waiters = Arc::new(crate::bus::RpcWaiters::default());
    let sent = Arc::new(crate::bus::SentRpcs::default());
    let live = crate::bus::live::LiveHub::new(config.node_id.clone());
    let dispatcher = Arc::new(crate::bus::Dispatcher::new(
        config.node_id.clone(),
        sessions.clone(),
        waiters.clone(),
        sent.clone(),
        live.clone(),
    ));
    let shutdown = CancellationToken::new();
    let bus = crate::bus::build(config.redis_url.as_deref(), dispatcher, shutdown.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the bus: {}", redact_secrets(&e.to_string())))?;
    let (device_state, state_events) = crate::services::device_state::DeviceStateService::new(
        store.clone(),
        config.rpc.inactivity_timeout_ms,
    );
    let services = Arc::new(Services {
        store: store.clone(),
        writer,
        typing: config.typing(),
        rpc: crate::services::rpc::RpcService {
            bus: bus.clone(),
            waiters,
            sent,
            node: config.node_id.clone(),
            store: store.clone(),
            max_retries: config.rpc.max_retries,
        },
        device_state,
        bus,
        auth_cache: crate::services::auth_cache::AuthCache::new(
            Duration::from_millis(config.mqtt.auth_cache_ttl_ms),
            config.mqtt.auth_cache_size,
        ),
        key_quota: crate::services::key_quota::KeyQuota::new(
            config.limits.max_timeseries_keys_per_tenant,
        ),
        logins: crate::services::logins::Logins::new(store.clone(), config.auth.clone()),
        profile_settings: Default::default(),
        default_ttl_s: config.retention.default_ttl_s,
        live,
    });
    crate::services::accounts::bootstrap(store.as_ref(), &config)
        .await
        .context("first-start bootstrap failed")?;
    let jwt_secret = crate::services::accounts::jwt_secret(store.as_ref(), &config)
        .await
        .context("cannot load the JWT signing key")?;
    let limits = crate::engine::EngineOptions::from_config(&config.engine);
    let metrics = crate::observability::metrics_handle();
    let engine = Engine::load(&config.rules_dir, limits).map_err(|e| {
        anyhow::anyhow!(
            "rules directory {} is invalid:\n{e}",
            config.rules_dir.display()
        )
    })?;

    let http_listener = tokio::net::TcpListener::bind(&config.http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_addr))?;
    let http_addr = http_listener.local_addr()?;
    let metrics_listener = match &config.metrics.addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?,
        ),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let mqtt_listener = std::net::TcpListener::bind(&config.mqtt_addr)
        .with_context(|| format!("cannot listen for MQTT on {}", config.mqtt_addr))?;
    let mqtt_addr = mqtt_listener.local_addr()?;
    let tls = tls_listener(&config)?;
    let mqtts_addr = match &tls {
        Some((listener, _)) => Some(listener.listener.local_addr()?),
        None => None,
    };

    let mqtt = crate::transport::mqtt::MqttShared::default();
    let device_limits = crate::transport::limits::DeviceLimits::new(&config.limits);
    let gateway_limits =
        crate::transport::limits::DeviceLimits::new(&config.limits.of_gateway_devices());
    let http_polls = crate::transport::http::Polls::new(config.http_device.max_polls);
    let state = Arc::new(AppState {
        inflight: Arc::new(Semaphore::new(config.engine.max_in_flight.max(1))),
        config,
        services,
        engine: Arc::new(engine),
        metrics,
        jwt_secret,
        rt: tokio::runtime::Handle::current(),
        mqtt_accepting: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        shutdown,
        sessions,
        mqtt,
        device_limits,
        gateway_limits,
        http_polls,
    });

    // Rules are reloaded on change; an invalid directory keeps the running chains (logged).
    state
        .engine
        .watch(state.config.rules_dir.clone(), state.shutdown.clone());
    let router = crate::api::router(state.clone());
    let http_task = tokio::spawn(crate::api::serve::serve(
        http_listener,
        router,
        crate::api::serve::ConnLimits::from_config(&state.config.http),
        state.shutdown.clone(),
    ));
    let metrics_task = metrics_listener.map(|listener| {
        tokio::spawn(crate::api::serve::serve(
            listener,
            crate::api::metrics_router(state.clone()),
            crate::api::serve::ConnLimits::from_config(&state.config.http),
            state.shutdown.clone(),
        ))
    });
    crate::observability::spawn_metrics_upkeep(state.metrics.clone(), state.shutdown.clone());

    let device_state_task =
        crate::services::device_state::spawn(state.services.clone(), state.shutdown.clone());
    tokio::spawn(run_device_events(state.clone(), state_events));
    spawn_rpc_sweeper(&state);
    crate::services::retention::spawn(
        state.services.store.clone(),
        crate::services::retention::Cleanup::from_config(&state.config.retention),
        state.shutdown.clone(),
    );
    state
        .services
        .live
        .spawn(state.services.bus.clone(), state.shutdown.clone());
    let (tls, tls_cert) = match tls {
        Some((listener, cert)) => (Some(listener), Some(cert)),
        None => (None, None),
    };
    if let Some(cert) = &tls_cert {
        spawn_tls_reload_on_sighup(cert.clone(), state.shutdown.clone());
    }
    let mqtt = crate::transport::mqtt::spawn(state.clone(), mqtt_listener, tls)?;
    state.mqtt_accepting.store(true, Ordering::SeqCst);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        http = %http_addr,
        mqtt = %mqtt_addr,
        mqtts = mqtts_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        metrics = metrics_addr.map_or_else(|| "on the HTTP port".to_owned(), |a| a.to_string()),
        storage = state.services.store.backend(),
        bus = if state.config.redis_url.is_some() { "redis" } else { "local" },
        node = %state.config.node_id,
        "ferroboard started"
    );
    Ok(RunningApp {
        http_addr,
        mqtt_addr,
        mqtts_addr,
        metrics_addr,
        tls_cert,
        state,
        mqtt: Some(mqtt),
        http_task,
        metrics_task,
        device_state_task,
        writer_stop,
        writer_task,
    })
}

/// The whole shutdown, at most (the operator contract promises 10 s; docs/configuration.md).
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(9);
/// Kept back from the writer's drain for closing storage and ending the MQTT thread.
const CLOSE_RESERVE: Duration = Duration::from_millis(1500);

impl RunningApp {
    /// Turns readiness off and keeps serving for `shutdown.drain_ms` (load balancers move new
    /// clients elsewhere), then stops accepting, closes sessions (MQTT 5: DISCONNECT 0x8B),
    /// finishes what is in flight, writes the device states, commits what was queued, and closes
    /// storage — within `SHUTDOWN_BUDGET`; what a step could not finish in its share is logged
    /// as dropped.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_BUDGET;
        let left = |cap: Duration| {
            cap.min(deadline.saturating_duration_since(tokio::time::Instant::now()))
        };
        let state = self.state.clone();
        state.draining.store(true, Ordering::SeqCst);
        let drain = Duration::from_millis(state.config.shutdown.drain_ms);
        if !drain.is_zero() {
            tracing::info!(
                drain_ms = state.config.shutdown.drain_ms,
                "shutting down: not ready; still serving during the drain window"
            );
            tokio::time::sleep(left(drain)).await;
        }
        state.mqtt_accepting.store(false, Ordering::SeqCst);
        state.shutdown.cancel();
        state
            .sessions
            .close_all(crate::bus::CloseReason::ServerShutdown);
        let mqtt = self.mqtt.take();
        if let Some(mqtt) = &mqtt
            && tokio::time::timeout(left(Duration::from_secs(3)), mqtt.server.stop(true))
                .await
                .is_err()
        {
            tracing::warn!("MQTT connections did not close within 3 s; stopping the MQTT runtime");
        }
        let max = u32::try_from(state.config.engine.max_in_flight.max(1)).unwrap_or(u32::MAX);
        let in_flight = tokio::time::timeout(
            left(Duration::from_secs(2)),
            state.inflight.acquire_many(max),
        );
        let http = tokio::time::timeout(left(Duration::from_secs(2)), &mut self.http_task);
        let (in_flight, http) = tokio::join!(in_flight, http);
        if http.is_err() {
            self.http_task.abort();
            tracing::warn!("HTTP requests still running after 2 s at shutdown were cut off");
        }
        if let Some(task) = self.metrics_task.take()
            && tokio::time::timeout(left(Duration::from_millis(500)), task)
                .await
                .is_err()
        {
            tracing::warn!("the metrics listener did not stop within 0.5 s at shutdown");
        }
        if in_flight.is_err() {
            let busy = max as usize - state.inflight.available_permits().min(max as usize);
            tracing::warn!(
                messages = busy,
                "messages still in processing at shutdown; their senders were not acknowledged"
            );
        }
        // The device-state task writes its last changes through the writer: before it stops.
        if tokio::time::timeout(left(Duration::from_secs(1)), &mut self.device_state_task)
            .await
            .is_err()
        {
            self.device_state_task.abort();
            tracing::warn!(
                "device states not written within 1 s at shutdown; the latest activity times were dropped"
            );
        }
        self.writer_stop.cancel();
        let drain = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(CLOSE_RESERVE);
        if tokio::time::timeout(drain, &mut self.writer_task)
            .await
            .is_err()
        {
            let waiting = state.services.writer.waiting();
            self.writer_task.abort();
            tracing::error!(
                waiting_requests = waiting,
                waited_ms = drain.as_millis() as u64,
                "storage writer did not drain in time at shutdown: the batch being committed and {waiting} waiting write request(s) were dropped, none of them acknowledged"
            );
        }
        if tokio::time::timeout(
            left(Duration::from_millis(500)),
            state.services.store.close(),
        )
        .await
        .is_err()
        {
            tracing::warn!("database connections did not close within 0.5 s at shutdown");
        }
        if let Some(mqtt) = mqtt {
            // The server has stopped (or was given up on); end its runtime so the thread exits.
            mqtt.system.stop();
            let joined = tokio::task::spawn_blocking(move || mqtt.thread.join());
            if tokio::time::timeout(left(Duration::from_secs(1)), joined)
                .await
                .is_err()
            {
                tracing::warn!("MQTT runtime thread did not exit in time");
            }
        }
        tracing::info!("ferroboard stopped");
        Ok(())
    }
}

/// The MQTT-over-TLS listener when `mqtts_addr` is set: a certificate or key that cannot be used
/// stops the start with an error naming the file, never a silently missing listener.
fn tls_listener(
    config: &Config,
) -> anyhow::Result<
    Option<(
        crate::transport::mqtt::TlsListener,
        Arc<crate::transport::mqtt::tls::ReloadableCert>,
    )>,
> {
    use crate::transport::mqtt::tls;
    let Some(addr) = &config.mqtts_addr else {
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        anyhow::bail!("mqtts_addr is set, so tls_cert and tls_key must be set too");
    };
    let reloadable = tls::ReloadableCert::load(cert, key)
        .map_err(|e| anyhow::anyhow!("TLS certificate for MQTT over TLS: {e}"))?;
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen for MQTT over TLS on {addr}"))?;
    let config = tls::server_config(reloadable.clone())?;
    Ok(Some((
        crate::transport::mqtt::TlsListener { listener, config },
        reloadable,
    )))
}

/// SIGHUP reads the TLS certificate and key again; a bad file keeps the one in use (logged).
fn spawn_tls_reload_on_sighup(
    cert: Arc<crate::transport::mqtt::tls::ReloadableCert>,
    stop: CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: the TLS certificate reloads only on restart");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    match cert.reload() {
                        Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                        Err(e) => tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; the one in use stays"),
                    }
                }
            }
        }
    });
}

/// Runs connectivity events (CONNECT_EVENT, ...) through the rule engine until shutdown.
async fn run_device_events(state: Arc<AppState>, mut events: tokio::sync::mpsc::Receiver<Msg>) {
    loop {
        let msg = tokio::select! {
            () = state.shutdown.cancelled() => return,
            msg = events.recv() => match msg {
                Some(msg) => msg,
                None => return,
            },
        };
        let (device, event) = (msg.originator.uuid(), msg.msg_type.as_str().to_owned());
        if let Err(e) = state.ingest(vec![msg]).await {
            tracing::warn!(%device, event, error = %e, "device state event not processed");
        }
    }
}

/// Marks overdue persistent RPCs EXPIRED every second until shutdown.
fn spawn_rpc_sweeper(state: &Arc<AppState>) {
    let (services, stop) = (state.services.clone(), state.shutdown.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => services.rpc.expire_overdue().await,
            }
        }
    });
}
