//! Pieces both protocol versions share: CONNECT handling into a `DeviceSession`, the error type,
//! and the keep-alive rule.

use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::auth::{self, AuthResult, Credentials};
use super::registry::SessionCmd;
use super::uplink::DeviceSession;
use crate::app::AppState;

/// Errors that end a session; MQTT 5 clients get the matching DISCONNECT reason.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    #[error("processing failed, nothing acknowledged: {0}")]
    Failed(String),
    #[error("cannot read the payload: {0}")]
    Payload(String),
}

impl SessionError {
    pub fn v5_reason(&self) -> ntex_mqtt::v5::codec::DisconnectReasonCode {
        use ntex_mqtt::v5::codec::DisconnectReasonCode as R;
        match self {
            Self::InvalidPayload(_) => R::PayloadFormatInvalid,
            Self::Failed(_) => R::UnspecifiedError,
            Self::Payload(_) => R::MalformedPacket,
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

/// The result of authenticating a CONNECT.
pub enum Admission {
    Accepted(Rc<DeviceSession>, mpsc::Receiver<SessionCmd>),
    NoCredentials,
    NotAuthorized,
    Unavailable,
}

/// Authenticates on the main runtime and registers the session (closing an older one of the device).
pub async fn admit(state: &Arc<AppState>, client_id: &str, username: Option<&str>, password: Option<&[u8]>) -> Admission {
    if !state.mqtt_accepting.load(std::sync::atomic::Ordering::SeqCst) {
        return Admission::Unavailable;
    }
    let store = state.services.store.clone();
    let (client_id, username, password) = (
        client_id.to_owned(),
        username.map(str::to_owned),
        password.map(<[u8]>::to_vec),
    );
    let lookup = state.rt.spawn(async move {
        let creds = Credentials {
            client_id: &client_id,
            username: username.as_deref(),
            password: password.as_deref(),
        };
        auth::authenticate(&store, &creds).await
    });
    let result = match lookup.await {
        Ok(r) => r,
        Err(e) => AuthResult::Unavailable(crate::storage::StorageError::Database(e.to_string())),
    };
    match result {
        AuthResult::Accepted(device) => {
            let (tx, rx) = mpsc::channel(state.config.mqtt.outbound_queue.max(1));
            let session = state.sessions.register(device.id, tx);
            tracing::debug!(device = %device.id, name = %device.name, "device connected");
            let sess = DeviceSession {
                state: state.clone(),
                device: *device,
                session,
            };
            Admission::Accepted(Rc::new(sess), rx)
        }
        AuthResult::NoCredentials => Admission::NoCredentials,
        AuthResult::NotAuthorized => Admission::NotAuthorized,
        AuthResult::Unavailable(e) => {
            tracing::error!(error = %e, "credential lookup failed; CONNECT answered 'server unavailable'");
            Admission::Unavailable
        }
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
}
