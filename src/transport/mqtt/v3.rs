//! MQTT 3.1.1 glue: CONNECT return codes, PUBLISH acks, SUBSCRIBE grants, session commands.

use std::rc::Rc;
use std::sync::Arc;

use ntex_mqtt::v3::{self, codec::QoS};
use ntex_mqtt::{Control, Reason};
use ntex_util::time::Seconds;
use tracing::Instrument as _;

use super::gate::{self, Gate, Refusal};
use super::provision::{ProvisionSession, Provisioned};
use super::session::{self, Admission, Conn, SessionError};
use super::sink::Sink;
use super::tls;
use super::uplink::Outcome;
use crate::state::AppState;

pub type Session = v3::Session<Conn>;

/// Devices choose how often they send invalid payloads: one line a second at most.
static INVALID_PAYLOAD_LOG: crate::observability::LogLimiter =
    crate::observability::LogLimiter::per_second();

pub async fn connect(
    state: &Arc<AppState>,
    gate: &Gate,
    hs: v3::Connect,
) -> Result<v3::ConnectAck<Conn>, SessionError> {
    let (ack, code) = answer_connect(state, gate, hs).await;
    crate::observability::metrics::connack("3", code);
    Ok(ack)
}

/// The CONNACK for a CONNECT, with its return code (for the metric).
async fn answer_connect(
    state: &Arc<AppState>,
    gate: &Gate,
    hs: v3::Connect,
) -> (v3::ConnectAck<Conn>, u8) {
    let pkt = hs.packet();
    let Some(slot) = gate.enter() else {
        gate::refused(Refusal::ConnectionLimit, &pkt.client_id);
        return (hs.service_unavailable(), 3);
    };
    let connect = session::Connect {
        client_id: &pkt.client_id,
        username: pkt.username.as_deref(),
        password: pkt.password.as_deref(),
        certificate: tls::peer_certificate(hs.io()),
        chain: tls::peer_chain(hs.io()),
    };
    let admission = session::admit(state, connect, Sink::V3(hs.sink())).await;
    let keep_alive = pkt.keep_alive;
    let client_id = pkt.client_id.to_string();
    match admission {
        Admission::Accepted(sess) => {
            sess.slot.set(Some(slot));
            let idle = session::idle_timeout(keep_alive).map_or(Seconds::ZERO, Seconds);
            (hs.ack(Conn::Device(sess), false).idle_timeout(idle), 0)
        }
        Admission::Provision(sess) => {
            sess.slot.set(Some(slot));
            let idle = session::idle_timeout(keep_alive).map_or(Seconds::ZERO, Seconds);
            (hs.ack(Conn::Provision(sess), false).idle_timeout(idle), 0)
        }
        Admission::NoCredentials => {
            gate::refused(Refusal::NoCredentials, &client_id);
            (hs.bad_username_or_pwd(), 4)
        }
        Admission::NotAuthorized => {
            gate::refused(Refusal::NotAuthorized, &client_id);
            (hs.not_authorized(), 5)
        }
        Admission::Unavailable => {
            gate::refused(Refusal::Unavailable, &client_id);
            (hs.service_unavailable(), 3)
        }
    }
}

pub async fn publish(conn: &Session, p: v3::Publish) -> Result<(), SessionError> {
    let started = std::time::Instant::now();
    let qos1 = p.qos() == QoS::AtLeastOnce;
    let result = answer_publish(conn, p).await;
    if qos1 && result.is_ok() {
        crate::observability::metrics::publish_acked("3", started);
    }
    result
}

async fn answer_publish(conn: &Session, p: v3::Publish) -> Result<(), SessionError> {
    let payload = p
        .read_all()
        .await
        .map_err(|e| SessionError::Payload(format!("{e:?}")))?;
    let sess = match &**conn {
        Conn::Device(sess) => sess,
        Conn::Provision(prov) => return provision_publish(prov, p.publish_topic(), &payload).await,
    };
    let qos1 = p.qos() == QoS::AtLeastOnce;
    let span = crate::observability::trace::message_span(sess.device.id.0, p.publish_topic());
    let outcome = sess
        .publish(p.publish_topic(), payload)
        .instrument(span.clone())
        .await;
    let label = outcome.label();
    let result = answer(sess, qos1, outcome);
    if qos1 && result.is_ok() {
        crate::observability::trace::puback(&span, label);
    }
    result
}

/// What a device PUBLISH's outcome means for the connection: PUBACK (Ok) or closed.
fn answer(sess: &session::DeviceSession, qos1: bool, outcome: Outcome) -> Result<(), SessionError> {
    match outcome {
        Outcome::Accepted | Outcome::TopicInvalid => Ok(()),
        // No reason code to say so: acknowledged, dropped and logged (ThingsBoard leaves the
        // PUBACK out, and a QoS 1 client waits for ever).
        Outcome::NotGateway => Ok(()),
        // The profile's "send PUBACK on PUBLISH message validation failure".
        Outcome::InvalidPayload(e) if qos1 && sess.settings.send_ack_on_validation_exception => {
            if let Some(suppressed) = INVALID_PAYLOAD_LOG.allow() {
                tracing::info!(device = %sess.device.id, error = %e, suppressed, "invalid payload from an MQTT 3.1.1 client; acknowledged as its profile asks (sendAckOnValidationException)");
            }
            Ok(())
        }
        Outcome::InvalidPayload(e) => {
            if let Some(suppressed) = INVALID_PAYLOAD_LOG.allow() {
                tracing::info!(device = %sess.device.id, error = %e, suppressed, "invalid payload from an MQTT 3.1.1 client; closing the connection");
            }
            Err(SessionError::InvalidPayload(e))
        }
        Outcome::RateLimited(limit) => Err(SessionError::RateLimited(limit.to_owned())),
        Outcome::Malformed(e) => Err(SessionError::Malformed(e)),
        Outcome::Failed(e) => {
            tracing::warn!(device = %sess.device.id, error = %e, "message not processed; closing the MQTT 3.1.1 connection so the device re-sends");
            Err(SessionError::Failed(e))
        }
    }
}

/// MQTT 3.1.1 has no reason codes: anything but an answered request closes the connection.
async fn provision_publish(
    prov: &Rc<ProvisionSession>,
    topic: &str,
    payload: &[u8],
) -> Result<(), SessionError> {
    match prov.publish(topic, payload).await {
        Provisioned::Answered => Ok(()),
        Provisioned::TopicInvalid => Err(SessionError::TopicInvalid(topic.to_owned())),
        Provisioned::Malformed(e) => Err(SessionError::Malformed(e)),
    }
}

pub async fn protocol(
    conn: &Session,
    msg: v3::ProtocolMessage,
) -> Result<v3::ProtocolMessageAck, SessionError> {
    let sess = match &**conn {
        Conn::Device(sess) => sess,
        Conn::Provision(prov) => return Ok(provision_protocol(prov, msg)),
    };
    Ok(match msg {
        v3::ProtocolMessage::Subscribe(mut s) => {
            for mut sub in s.iter_mut() {
                match sess.subscribe(sub.topic(), sub.qos() != QoS::AtMostOnce) {
                    Some(qos1) => sub.confirm(if qos1 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    }),
                    None => {
                        tracing::debug!(filter = ?sub.topic(), "SUBSCRIBE to a filter devices may not use; refused");
                        sub.fail();
                    }
                }
            }
            s.ack()
        }
        v3::ProtocolMessage::Unsubscribe(s) => {
            for filter in s.iter() {
                sess.unsubscribe(filter);
            }
            s.ack()
        }
        v3::ProtocolMessage::Ping(p) => {
            sess.ping();
            p.ack()
        }
        v3::ProtocolMessage::Disconnect(d) => d.ack(),
        v3::ProtocolMessage::PublishRelease(r) => r.ack(),
    })
}

fn provision_protocol(prov: &ProvisionSession, msg: v3::ProtocolMessage) -> v3::ProtocolMessageAck {
    match msg {
        v3::ProtocolMessage::Subscribe(mut s) => {
            for mut sub in s.iter_mut() {
                if prov.subscribe(sub.topic()) {
                    sub.confirm(sub.qos().min(QoS::AtLeastOnce));
                } else {
                    sub.fail();
                }
            }
            s.ack()
        }
        v3::ProtocolMessage::Unsubscribe(s) => s.ack(),
        v3::ProtocolMessage::Ping(p) => p.ack(),
        v3::ProtocolMessage::Disconnect(d) => d.ack(),
        v3::ProtocolMessage::PublishRelease(r) => r.ack(),
    }
}

pub async fn control(
    _sess: &Session,
    ctl: Control<SessionError>,
) -> Result<Option<v3::codec::Encoded>, SessionError> {
    if let Control::Stop(Reason::Protocol(e)) = &ctl {
        tracing::debug!(error = %e.get_ref(), "MQTT 3.1.1 protocol error; connection closed");
    }
    Ok(None)
}
