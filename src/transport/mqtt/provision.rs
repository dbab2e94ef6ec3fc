//! Provisioning connections: a CONNECT with user name or client id `provision` may only publish a
//! request to `/provision/request` and subscribe to `/provision/response`; the answer
//! (`services::provisioning`) is published there, and the connection is closed 60 s later.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ntex_bytes::Bytes;

use super::sink::Sink;
use crate::services::provisioning::ProvisionError;
use crate::state::AppState;

/// The user name or client id that opens a provisioning connection.
pub const PROVISION_LOGIN: &str = "provision";
pub const REQUEST_TOPIC: &str = "/provision/request";
pub const RESPONSE_TOPIC: &str = "/provision/response";
/// How long a provisioning connection stays after its answer.
const CLOSE_AFTER: Duration = Duration::from_secs(60);

/// Whether the CONNECT asks for a provisioning connection.
pub fn is_provisioning(client_id: &str, username: Option<&str>) -> bool {
    username == Some(PROVISION_LOGIN) || client_id == PROVISION_LOGIN
}

pub struct ProvisionSession {
    pub state: Arc<AppState>,
    pub sink: Sink,
    /// The connection's place under `mqtt.max_connections`.
    pub slot: Cell<Option<super::gate::Slot>>,
    answered: Cell<bool>,
}

/// What became of a PUBLISH on a provisioning connection.
pub enum Provisioned {
    /// Answered (whatever the status); the answer follows the PUBACK.
    Answered,
    /// Not `/provision/request`: `0x90` and close.
    TopicInvalid,
    /// Not a provision request, or the server failed: `0x83` and close.
    Malformed(String),
}

impl ProvisionSession {
    pub fn new(state: Arc<AppState>, sink: Sink) -> Rc<Self> {
        Rc::new(Self {
            state,
            sink,
            slot: Cell::new(None),
            answered: Cell::new(false),
        })
    }

    pub async fn publish(self: &Rc<Self>, topic: &str, payload: &[u8]) -> Provisioned {
        if topic != REQUEST_TOPIC {
            return Provisioned::TopicInvalid;
        }
        let body = match crate::domain::payload::parse_lenient(payload) {
            Ok(body) => body,
            Err(e) => return Provisioned::Malformed(format!("provision request: {e}")),
        };
        let services = self.state.services.clone();
        let answer = self
            .state
            .rt
            .spawn(async move { services.provision(&body).await })
            .await;
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(ProvisionError::Malformed(e))) => return Provisioned::Malformed(e),
            Ok(Err(e)) => return Provisioned::Malformed(e.to_string()),
            Err(e) => return Provisioned::Malformed(format!("provisioning task failed: {e}")),
        };
        self.answer(Bytes::from(answer.to_string()));
        Provisioned::Answered
    }

    /// Publishes the answer after the PUBACK (QoS 1, with or without a subscription), and closes
    /// the connection `CLOSE_AFTER` later unless the device went first.
    fn answer(self: &Rc<Self>, payload: Bytes) {
        let sess = self.clone();
        let timeout = Duration::from_millis(self.state.config.mqtt.ack_timeout_ms);
        let first = !self.answered.replace(true);
        ntex_rt::spawn(async move {
            // Let the PUBACK go out first.
            tokio::task::yield_now().await;
            if let Err(e) = sess
                .sink
                .publish(RESPONSE_TOPIC, payload, true, timeout)
                .await
            {
                tracing::debug!(error = %e, "provision response not delivered");
            }
            if first {
                tokio::time::sleep(CLOSE_AFTER).await;
                if sess.sink.is_open() {
                    sess.sink.close(crate::bus::CloseReason::Administrative);
                }
            }
        });
    }

    /// Only `/provision/response` may be subscribed to.
    pub fn subscribe(&self, filter: &str) -> bool {
        filter == RESPONSE_TOPIC
    }
}
