//! MQTT 5 glue: CONNACK reason codes and properties, PUBACK reason codes, SUBACK, DISCONNECT reasons.

use std::sync::Arc;

use ntex_mqtt::v5::codec::{
    ConnectAckReason, Disconnect, PublishAckReason, QoS, SubscribeAckReason, UnsubscribeAckReason,
};
use ntex_mqtt::v5::{self, PublishAck};
use ntex_mqtt::{Control, Reason};
use tracing::Instrument as _;

use super::gate::{self, Gate, Refusal};
use super::provision::{ProvisionSession, Provisioned};
use super::session::{self, Admission, Conn, SessionError};
use super::sink::Sink;
use super::tls;
use super::uplink::Outcome;
use crate::state::AppState;

pub type Session = v5::Session<Conn>;

pub async fn connect(
    state: &Arc<AppState>,
    gate: &Gate,
    hs: v5::Connect,
) -> Result<v5::ConnectAck<Conn>, SessionError> {
    let (ack, code) = answer_connect(state, gate, hs).await;
    crate::observability::metrics::connack("5", code as u8);
    Ok(ack)
}

/// The CONNACK for a CONNECT, with its reason code (for the metric).
async fn answer_connect(
    state: &Arc<AppState>,
    gate: &Gate,
    hs: v5::Connect,
) -> (v5::ConnectAck<Conn>, ConnectAckReason) {
    let pkt = hs.packet();
    let Some(slot) = gate.enter() else {
        gate::refused(Refusal::ConnectionLimit, &pkt.client_id);
        return refuse(hs, ConnectAckReason::ServerBusy);
    };
    let connect = session::Connect {
        client_id: &pkt.client_id,
        username: pkt.username.as_deref(),
        password: pkt.password.as_deref(),
        certificate: tls::peer_certificate(hs.io()),
        chain: tls::peer_chain(hs.io()),
    };
    let peer_max_packet = pkt.max_packet_size.map(std::num::NonZeroU32::get);
    let admission = session::admit(state, connect, Sink::V5(hs.sink())).await;
    let keep_alive = pkt.keep_alive;
    let client_id = pkt.client_id.to_string();
    match admission {
        Admission::Accepted(sess) => {
            sess.slot.set(Some(slot));
            sess.peer_max_packet.set(peer_max_packet);
            // ntex-mqtt 9.0.0 maps keep-alive 0 to a 30 s idle timeout; MQTT says 0 means none.
            let idle = session::idle_timeout(keep_alive).unwrap_or(u16::MAX);
            let ack = hs
                .ack(Conn::Device(sess))
                .keep_alive(idle)
                .with(|ack| ack.max_qos = QoS::AtLeastOnce);
            (ack, ConnectAckReason::Success)
        }
        Admission::Provision(sess) => {
            sess.slot.set(Some(slot));
            let idle = session::idle_timeout(keep_alive).unwrap_or(u16::MAX);
            let ack = hs
                .ack(Conn::Provision(sess))
                .keep_alive(idle)
                .with(|ack| ack.max_qos = QoS::AtLeastOnce);
            (ack, ConnectAckReason::Success)
        }
        Admission::NoCredentials => {
            gate::refused(Refusal::NoCredentials, &client_id);
            refuse(hs, ConnectAckReason::BadUserNameOrPassword)
        }
        Admission::NotAuthorized => {
            gate::refused(Refusal::NotAuthorized, &client_id);
            refuse(hs, ConnectAckReason::NotAuthorized)
        }
        Admission::Unavailable => {
            gate::refused(Refusal::Unavailable, &client_id);
            refuse(hs, ConnectAckReason::ServerUnavailable)
        }
    }
}

fn refuse(hs: v5::Connect, reason: ConnectAckReason) -> (v5::ConnectAck<Conn>, ConnectAckReason) {
    (hs.failed(reason), reason)
}

pub async fn publish(conn: &Session, p: v5::Publish) -> Result<PublishAck, SessionError> {
    let started = std::time::Instant::now();
    let qos1 = p.qos() == QoS::AtLeastOnce;
    let result = answer_publish(conn, p).await;
    if qos1 && result.is_ok() {
        crate::observability::metrics::publish_acked("5", started);
    }
    result
}

async fn answer_publish(conn: &Session, p: v5::Publish) -> Result<PublishAck, SessionError> {
    let payload = p
        .read_all()
        .await
        .map_err(|e| SessionError::Payload(format!("{e:?}")))?;
    let sess = match &**conn {
        Conn::Device(sess) => sess,
        Conn::Provision(prov) => {
            return match prov.publish(p.publish_topic(), &payload).await {
                Provisioned::Answered => Ok(p.ack()),
                // The DISCONNECT carries the reason (0x90 or 0x83).
                Provisioned::TopicInvalid => {
                    Err(SessionError::TopicInvalid(p.publish_topic().to_owned()))
                }
                Provisioned::Malformed(e) => {
                    tracing::info!(error = %e, "provision request refused; closing the connection");
                    Err(SessionError::Malformed(e))
                }
            };
        }
    };
    let qos1 = p.qos() == QoS::AtLeastOnce;
    let span = crate::observability::trace::message_span(sess.device.id.0, p.publish_topic());
    let outcome = sess
        .publish(p.publish_topic(), payload)
        .instrument(span.clone())
        .await;
    let label = outcome.label();
    let result = answer(sess, p, qos1, outcome);
    if qos1 && result.is_ok() {
        crate::observability::trace::puback(&span, label);
    }
    result
}

/// The PUBACK for a device PUBLISH's outcome, or why the connection closes.
fn answer(
    sess: &session::DeviceSession,
    p: v5::Publish,
    qos1: bool,
    outcome: Outcome,
) -> Result<PublishAck, SessionError> {
    match outcome {
        Outcome::Accepted => Ok(p.ack()),
        Outcome::TopicInvalid => Ok(PublishAck::new(PublishAckReason::TopicNameInvalid)),
        Outcome::NotGateway => Ok(PublishAck::new(PublishAckReason::NotAuthorized)
            .reason("the device is not a gateway".into())),
        Outcome::InvalidPayload(e) if qos1 => {
            tracing::debug!(device = %sess.device.id, error = %e, "invalid payload");
            Ok(PublishAck::new(PublishAckReason::PayloadFormatInvalid).reason(truncate(&e).into()))
        }
        Outcome::InvalidPayload(e) => Err(SessionError::InvalidPayload(e)),
        Outcome::RateLimited(limit) => Err(SessionError::RateLimited(limit.to_owned())),
        Outcome::Malformed(e) => Err(SessionError::Malformed(e)),
        Outcome::Failed(e) if qos1 => {
            tracing::warn!(device = %sess.device.id, error = %e, "message not processed; PUBACK carries an error");
            Ok(PublishAck::new(PublishAckReason::UnspecifiedError)
                .reason("not stored; retry".into()))
        }
        Outcome::Failed(e) => {
            tracing::warn!(device = %sess.device.id, error = %e, "QoS 0 message not processed");
            Ok(p.ack())
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

pub async fn protocol(
    conn: &Session,
    msg: v5::ProtocolMessage,
) -> Result<v5::ProtocolMessageAck, SessionError> {
    let sess = match &**conn {
        Conn::Device(sess) => sess,
        Conn::Provision(prov) => return Ok(provision_protocol(prov, msg)),
    };
    Ok(match msg {
        v5::ProtocolMessage::Subscribe(mut s) => {
            for mut sub in s.iter_mut() {
                match sess.subscribe(sub.topic(), sub.options().qos != QoS::AtMostOnce) {
                    Some(qos1) => sub.confirm(if qos1 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    }),
                    None => {
                        tracing::debug!(filter = ?sub.topic(), "SUBSCRIBE to a filter devices may not use; refused");
                        sub.fail(SubscribeAckReason::TopicFilterInvalid);
                    }
                }
            }
            s.ack()
        }
        v5::ProtocolMessage::Unsubscribe(mut s) => {
            for mut unsub in s.iter_mut() {
                if sess.unsubscribe(unsub.topic()) {
                    unsub.success();
                } else {
                    unsub.fail(UnsubscribeAckReason::TopicFilterInvalid);
                }
            }
            s.ack()
        }
        v5::ProtocolMessage::Ping(p) => {
            sess.ping();
            p.ack()
        }
        v5::ProtocolMessage::Disconnect(d) => d.ack(),
        other => other.ack(),
    })
}

fn provision_protocol(prov: &ProvisionSession, msg: v5::ProtocolMessage) -> v5::ProtocolMessageAck {
    match msg {
        v5::ProtocolMessage::Subscribe(mut s) => {
            for mut sub in s.iter_mut() {
                if prov.subscribe(sub.topic()) {
                    let qos = sub.options().qos.min(QoS::AtLeastOnce);
                    sub.confirm(qos);
                } else {
                    sub.fail(SubscribeAckReason::TopicFilterInvalid);
                }
            }
            s.ack()
        }
        other => other.ack(),
    }
}

pub async fn control(
    _sess: &Session,
    ctl: Control<SessionError>,
) -> Result<Option<v5::codec::Encoded>, SessionError> {
    Ok(match ctl {
        Control::Stop(Reason::Error(e)) => {
            let err = e.get_ref();
            tracing::debug!(error = %err, "closing MQTT 5 session");
            Some(v5::codec::Packet::from(Disconnect::new(err.v5_reason())).into())
        }
        Control::Stop(Reason::Protocol(e)) => {
            tracing::debug!(error = %e.get_ref(), "MQTT 5 protocol error; connection closed");
            None
        }
        _ => None,
    })
}
