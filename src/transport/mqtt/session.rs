//! A device session: CONNECT admission, per-session state shared by uplink and downlink, the
//! error type that ends a session, and the keep-alive rule.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use super::sink::Sink;
use crate::bus::mailbox::SessionFlags;
use crate::bus::{Event, RpcRequest};
use crate::domain::Device;
use crate::domain::profile::MqttSettings;
use crate::services::device_auth::{AuthResult, Credentials};
use crate::state::AppState;

/// Errors that end a session; MQTT 5 clients get the matching DISCONNECT reason.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    #[error("processing failed, nothing acknowledged: {0}")]
    Failed(String),
    #[error("cannot read the payload: {0}")]
    Payload(String),
    #[error("rate limit {0} exceeded")]
    RateLimited(String),
    #[error("{0}")]
    Malformed(String),
    #[error("topic '{0}' is not allowed here")]
    TopicInvalid(String),
}

impl SessionError {
    pub fn v5_reason(&self) -> ntex_mqtt::v5::codec::DisconnectReasonCode {
        use ntex_mqtt::v5::codec::DisconnectReasonCode as R;
        match self {
            Self::InvalidPayload(_) => R::PayloadFormatInvalid,
            Self::Failed(_) => R::UnspecifiedError,
            Self::Payload(_) => R::MalformedPacket,
            Self::RateLimited(_) => R::MessageRateTooHigh,
            Self::Malformed(_) => R::ImplementationSpecificError,
            Self::TopicInvalid(_) => R::TopicNameInvalid,
        }
    }
}

impl TryFrom<SessionError> for ntex_mqtt::v5::PublishAck {
    type Error = SessionError;

    fn try_from(e: SessionError) -> Result<Self, Self::Error> {
        Err(e)
    }
}

impl From<std::convert::Infallible> for SessionError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

/// A granted subscription: the filter (its `+` replaced by ids for outgoing topics) and QoS 1 or 0.
#[derive(Clone, Debug)]
pub struct Granted {
    pub filter: String,
    pub qos1: bool,
}

/// Server-side RPC bookkeeping of one session (request ids and the requests waiting for the
/// device's answer belong to the device: `bus::SentRpcs`).
#[derive(Default)]
pub struct RpcState {
    /// Received before the device subscribed to RPC requests.
    pub queued: VecDeque<RpcRequest>,
    /// RPC ids whose publish has not finished yet (written at QoS 0, PUBACK or failure at QoS 1).
    pub sending: HashSet<uuid::Uuid>,
    /// The latest RPCs finished on this session, oldest first (at most `RECENTLY_DONE_KEPT`):
    /// one-way RPCs delivered and two-way RPCs answered. A copy offered again (its final state
    /// may not be stored yet) is not re-sent.
    pub recently_done: VecDeque<uuid::Uuid>,
}

/// How many finished RPC ids a session remembers.
const RECENTLY_DONE_KEPT: usize = 32;

impl RpcState {
    /// Whether the RPC is held here already: queued for an RPC subscription or being sent. A
    /// copy of it (a re-offer) is ignored.
    pub fn holds(&self, rpc: uuid::Uuid) -> bool {
        self.sending.contains(&rpc) || self.queued.iter().any(|r| r.rpc == rpc)
    }

    /// Records an RPC as finished on this session: a one-way RPC delivered, a two-way RPC answered.
    pub fn done(&mut self, rpc: uuid::Uuid) {
        if self.recently_done.len() >= RECENTLY_DONE_KEPT {
            self.recently_done.pop_front();
        }
        self.recently_done.push_back(rpc);
    }

    /// Whether the RPC is among the latest finished on this session.
    pub fn recently_done(&self, rpc: uuid::Uuid) -> bool {
        self.recently_done.contains(&rpc)
    }
}

/// State of one authenticated device connection (lives on its MQTT worker thread).
pub struct DeviceSession {
    pub state: Arc<AppState>,
    /// Shared with the device's connectivity state.
    pub device: Arc<Device>,
    /// The MQTT settings of the device's profile when the session opened (a change closes it).
    pub settings: Arc<MqttSettings>,
    pub session: u64,
    /// What the registry and this worker's mailbox know of the session: its queued commands and
    /// its close request.
    pub flags: Arc<SessionFlags>,
    pub sink: Sink,
    pub attributes_sub: RefCell<Option<Granted>>,
    pub rpc_sub: RefCell<Option<Granted>>,
    /// Response families the device subscribed to (only their QoS matters).
    pub response_subs: RefCell<Vec<Granted>>,
    pub rpc: RefCell<RpcState>,
    /// Client-side RPC requests waiting for the rules' answer: request id → v2 topic family.
    pub client_rpc: RefCell<HashMap<String, bool>>,
    /// Firmware and software chunk requests: sizes by request id, answers in flight.
    pub chunks: super::chunks::Chunks,
    /// The Maximum Packet Size the device announced in its MQTT 5 CONNECT.
    pub peer_max_packet: Cell<Option<u32>>,
    /// The device's rate limits, shared with its other sessions (earlier ones included).
    pub limits: Arc<crate::transport::limits::SessionLimits>,
    pub closed: Cell<bool>,
    /// The session's place under `mqtt.max_connections`, freed when it ends.
    pub slot: Cell<Option<super::gate::Slot>>,
    pub role: Role,
}

/// What a session is beyond its device's own API.
pub enum Role {
    Device,
    /// A gateway's connection, with the sessions of the devices behind it.
    Gateway(super::gateway::Gateway),
    /// A device behind a gateway: its traffic goes through the gateway's connection.
    SubDevice(super::gateway::SubDevice),
}

impl DeviceSession {
    /// A new session of `device` registered as `session`, with nothing subscribed yet.
    pub fn new(
        state: Arc<AppState>,
        device: Arc<Device>,
        settings: Arc<MqttSettings>,
        session: (u64, Arc<SessionFlags>),
        sink: Sink,
        limits: Arc<crate::transport::limits::SessionLimits>,
        role: Role,
    ) -> Self {
        let (session, flags) = session;
        Self {
            limits,
            settings,
            state,
            device,
            session,
            flags,
            sink,
            attributes_sub: RefCell::new(None),
            rpc_sub: RefCell::new(None),
            response_subs: RefCell::new(Vec::new()),
            rpc: RefCell::new(RpcState::default()),
            client_rpc: RefCell::new(HashMap::new()),
            chunks: super::chunks::Chunks::default(),
            peer_max_packet: Cell::new(None),
            closed: Cell::new(false),
            slot: Cell::new(None),
            role,
        }
    }
}

/// Tells other nodes that `device` has a session here now (they close theirs) and records the
/// connection (CONNECT_EVENT, `active`).
pub fn announce_opened(state: &Arc<AppState>, device: &Arc<Device>, session: u64) {
    let services = state.services.clone();
    let event = Event::SessionOpened {
        device: device.id.0,
        node: state.config.node_id.clone(),
        session,
    };
    let connected = device.clone();
    state.rt.spawn(async move {
        if let Err(e) = services.bus.publish(event).await {
            tracing::warn!(error = %e, "session take-over not announced to other nodes");
        }
        services.device_state.connected(&connected).await;
    });
}

impl Drop for DeviceSession {
    /// Requests still queued were never published: they go back to QUEUED for the next session.
    /// Those waiting for a reply were delivered (a publish in flight holds the session) and stay
    /// DELIVERED: the device is not asked twice, and its answer from a later session still counts.
    fn drop(&mut self) {
        self.state.sessions.unregister(self.device.id, self.session);
        super::downlink::detach(self.session);
        let queued: Vec<RpcRequest> = self.rpc.borrow_mut().queued.drain(..).collect();
        let services = self.state.services.clone();
        let device = self.device.clone();
        self.state.rt.spawn(async move {
            for req in queued {
                services
                    .rpc
                    .undelivered(&req, crate::services::rpc::Undelivered::NotSent)
                    .await;
            }
            services.device_state.disconnected(&device).await;
        });
        metrics::counter!("ferroboard_mqtt_disconnects_total").increment(1);
        tracing::debug!(device = %self.device.id, "session closed");
    }
}

/// What an accepted connection is: a device's session or a provisioning connection.
#[derive(Clone)]
pub enum Conn {
    Device(Rc<DeviceSession>),
    Provision(Rc<super::provision::ProvisionSession>),
}

/// The result of authenticating a CONNECT.
pub enum Admission {
    Accepted(Rc<DeviceSession>),
    /// A provisioning connection (`provision` as user name or client id).
    Provision(Rc<super::provision::ProvisionSession>),
    NoCredentials,
    NotAuthorized,
    Unavailable,
}

/// What the CONNECT carried.
pub struct Connect<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// The DER of the TLS client's leaf certificate.
    pub certificate: Option<Vec<u8>>,
    /// The certificates the client sent after its leaf.
    pub chain: Vec<Vec<u8>>,
}

/// Authenticates on the main runtime and registers the session (closing an older one of the device,
/// on this node and, through the bus, on others).
pub async fn admit(state: &Arc<AppState>, connect: Connect<'_>, sink: Sink) -> Admission {
    if !state
        .mqtt_accepting
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Admission::Unavailable;
    }
    if super::provision::is_provisioning(connect.client_id, connect.username) {
        return Admission::Provision(super::provision::ProvisionSession::new(state.clone(), sink));
    }
    // A credentials change committed while the lookup ran is caught below (revoked_since).
    let authenticated_at = std::time::Instant::now();
    let result = lookup(state, &connect).await;
    let device = match result {
        AuthResult::Accepted(device) => Arc::<Device>::from(device),
        AuthResult::NoCredentials => return Admission::NoCredentials,
        AuthResult::NotAuthorized => return Admission::NotAuthorized,
        AuthResult::Unavailable(e) => {
            tracing::error!(error = %e, "credential lookup failed; CONNECT answered 'server unavailable'");
            return Admission::Unavailable;
        }
    };
    if state.sessions.revoked_since(device.id, authenticated_at) {
        return Admission::NotAuthorized;
    }
    let settings = match profile_settings(state, &device).await {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!(device = %device.id, error = %e, "settings of the device's profile unavailable; CONNECT answered 'server unavailable'");
            return Admission::Unavailable;
        }
    };
    let address = super::downlink::address(state.config.mqtt.outbound_queue);
    let flags = address.flags();
    let session = state
        .sessions
        .register_mailbox(device.id, Some(device.profile_id), address);
    // A revocation between the check above and the registration found no session to close.
    if state.sessions.revoked_since(device.id, authenticated_at) {
        state.sessions.unregister(device.id, session);
        return Admission::NotAuthorized;
    }
    tracing::debug!(device = %device.id, name = %device.name, "device connected");
    announce_opened(state, &device, session);
    let role = if crate::services::gateway::is_gateway(&device) {
        Role::Gateway(super::gateway::Gateway::new(state, device.id))
    } else {
        Role::Device
    };
    let limits = state.device_limits.of(device.id);
    let sess = Rc::new(DeviceSession::new(
        state.clone(),
        device,
        settings,
        (session, flags),
        sink,
        limits,
        role,
    ));
    // Before anything yields: commands sent since the registration wait in the mailbox.
    super::downlink::attach(&sess);
    Admission::Accepted(sess)
}

/// The settings of the device's profile, read on the main runtime.
async fn profile_settings(
    state: &Arc<AppState>,
    device: &Device,
) -> Result<Arc<MqttSettings>, crate::domain::StorageError> {
    let services = state.services.clone();
    let device = device.clone();
    let read = state
        .rt
        .spawn(async move { services.profile_settings.of(&services.store, &device).await });
    read.await
        .unwrap_or_else(|e| Err(crate::domain::StorageError::Database(e.to_string())))
}

async fn lookup(state: &Arc<AppState>, connect: &Connect<'_>) -> AuthResult {
    let services = state.services.clone();
    let (client_id, username, password, certificate) = (
        connect.client_id.to_owned(),
        connect.username.map(str::to_owned),
        connect.password.map(<[u8]>::to_vec),
        connect.certificate.clone(),
    );
    let chain = connect.chain.clone();
    let lookup = state.rt.spawn(async move {
        let creds = Credentials {
            client_id: &client_id,
            username: username.as_deref(),
            password: password.as_deref(),
            certificate: certificate.as_deref(),
            chain: &chain,
        };
        services.authenticate_device(&creds).await
    });
    match lookup.await {
        Ok(r) => r,
        Err(e) => AuthResult::Unavailable(crate::domain::StorageError::Database(e.to_string())),
    }
}

/// Idle timeout for a keep-alive: 1.5 × keep-alive; `None` for keep-alive 0 (no timeout).
pub fn idle_timeout(keep_alive: u16) -> Option<u16> {
    (keep_alive != 0).then(|| u16::try_from(u32::from(keep_alive) * 3 / 2).unwrap_or(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_is_enforced_at_one_and_a_half() {
        assert_eq!(idle_timeout(0), None);
        assert_eq!(idle_timeout(60), Some(90));
        assert_eq!(idle_timeout(u16::MAX), Some(u16::MAX));
    }

    fn request(oneway: bool) -> RpcRequest {
        RpcRequest {
            rpc: uuid::Uuid::new_v4(),
            request_id: 0,
            method: "m".to_owned(),
            params: "{}".to_owned(),
            oneway,
            persistent: false,
            expiration_time: i64::MAX,
            traceparent: None,
        }
    }

    #[test]
    fn an_rpc_is_held_while_queued_or_sending() {
        let mut state = RpcState::default();
        let (queued, sending, other) = (request(false), request(true), request(false));
        state.queued.push_back(queued.clone());
        state.sending.insert(sending.rpc);
        assert!(state.holds(queued.rpc));
        assert!(state.holds(sending.rpc));
        assert!(!state.holds(other.rpc));
        state.sending.clear();
        assert!(!state.holds(sending.rpc), "sent: no longer held here");
    }

    #[test]
    fn finished_ids_are_bounded() {
        let mut state = RpcState::default();
        let first = uuid::Uuid::new_v4();
        state.done(first);
        for _ in 1..RECENTLY_DONE_KEPT {
            state.done(uuid::Uuid::new_v4());
        }
        assert!(state.recently_done(first));
        state.done(uuid::Uuid::new_v4());
        assert_eq!(state.recently_done.len(), RECENTLY_DONE_KEPT);
        assert!(!state.recently_done(first), "oldest forgotten");
    }
}
