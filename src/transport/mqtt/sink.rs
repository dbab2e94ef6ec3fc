//! One outbound interface over the MQTT 3.1.1 and 5 sinks: publish with a QoS (telling a missing
//! PUBACK from a closed connection), close with a reason.

use std::time::Duration;

use ntex_bytes::{ByteString, Bytes};
use ntex_mqtt::error::SendPacketError;
use ntex_mqtt::{v3, v5};

use crate::bus::CloseReason;

#[derive(Clone)]
pub enum Sink {
    V3(v3::MqttSink),
    V5(v5::MqttSink),
}

/// Why a publish did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// QoS 1: no PUBACK within the timeout (the device may or may not have the message).
    #[error("no PUBACK within {0:?}")]
    AckTimeout(Duration),
    /// The connection is closed or closed before the PUBACK.
    #[error("connection closed")]
    Disconnected,
    /// The packet could not be sent on this connection (e.g. it cannot be encoded).
    #[error("publish refused: {0}")]
    Refused(String),
}

impl From<SendPacketError> for PublishError {
    fn from(e: SendPacketError) -> Self {
        match e {
            SendPacketError::Disconnected => Self::Disconnected,
            other => Self::Refused(other.to_string()),
        }
    }
}

impl Sink {
    /// QoS 0: returns once written; QoS 1: once the device's PUBACK arrived, at most `timeout`.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos1: bool,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        self.publish_with(topic, payload, qos1, timeout, None).await
    }

    /// `publish` with an MQTT 5 user property (left out on 3.1.1, which has none).
    pub async fn publish_with(
        &self,
        topic: &str,
        payload: Bytes,
        qos1: bool,
        timeout: Duration,
        property: Option<(&str, String)>,
    ) -> Result<(), PublishError> {
        if !qos1 {
            return self.publish_at_most_once_with(topic, payload, property);
        }
        let kind = crate::observability::metrics::out_type(topic);
        let topic = ByteString::from(topic);
        let result = match self {
            Self::V3(s) => {
                with_timeout(timeout, async {
                    s.publish(topic)
                        .send_at_least_once(payload)
                        .await
                        .map_err(PublishError::from)
                })
                .await
            }
            Self::V5(s) => {
                with_timeout(timeout, async {
                    v5_publish(s, topic, property)
                        .send_at_least_once(payload)
                        .await
                        .map(|_| ())
                        .map_err(PublishError::from)
                })
                .await
            }
        };
        if result.is_ok() {
            metrics::counter!("ferroboard_messages_out_total", "type" => kind).increment(1);
        }
        result
    }

    /// QoS 0: written to the connection now, in order with what is written next.
    pub fn publish_at_most_once(&self, topic: &str, payload: Bytes) -> Result<(), PublishError> {
        self.publish_at_most_once_with(topic, payload, None)
    }

    fn publish_at_most_once_with(
        &self,
        topic: &str,
        payload: Bytes,
        property: Option<(&str, String)>,
    ) -> Result<(), PublishError> {
        let kind = crate::observability::metrics::out_type(topic);
        let topic = ByteString::from(topic);
        let result = match self {
            Self::V3(s) => s.publish(topic).send_at_most_once(payload),
            Self::V5(s) => v5_publish(s, topic, property).send_at_most_once(payload),
        }
        .map_err(PublishError::from);
        if result.is_ok() {
            metrics::counter!("ferroboard_messages_out_total", "type" => kind).increment(1);
        }
        result
    }

    /// Resolves once a publish would be written at once (the device's receive window has room
    /// and the write buffer is not full); false when the connection closed. Waiters are served
    /// in the order they came.
    pub async fn ready(&self) -> bool {
        match self {
            Self::V3(s) => s.ready().await,
            Self::V5(s) => s.ready().await,
        }
    }

    /// Whether this is an MQTT 5 connection.
    pub fn is_v5(&self) -> bool {
        matches!(self, Self::V5(_))
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        match self {
            Self::V3(s) => s.is_open(),
            Self::V5(s) => s.is_open(),
        }
    }

    pub fn close(&self, reason: CloseReason) {
        match self {
            Self::V3(s) => s.close(),
            Self::V5(s) => {
                use ntex_mqtt::v5::codec::{Disconnect, DisconnectReasonCode as R};
                let code = match reason {
                    CloseReason::ServerShutdown => R::ServerShuttingDown,
                    CloseReason::TakenOver => R::SessionTakenOver,
                    CloseReason::Administrative | CloseReason::ProfileChanged => {
                        R::AdministrativeAction
                    }
                };
                s.close_with_reason(Disconnect::new(code));
            }
        }
    }
}

/// An MQTT 5 PUBLISH with an optional user property.
fn v5_publish(
    s: &v5::MqttSink,
    topic: ByteString,
    property: Option<(&str, String)>,
) -> v5::PublishBuilder {
    s.publish(topic).properties(|p| {
        if let Some((key, value)) = property {
            p.user_properties
                .push((ByteString::from(key), ByteString::from(value)));
        }
    })
}

async fn with_timeout(
    timeout: Duration,
    fut: impl Future<Output = Result<(), PublishError>>,
) -> Result<(), PublishError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(PublishError::AckTimeout(timeout)),
    }
}
