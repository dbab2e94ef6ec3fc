//! MQTT 3.1.1 glue: CONNECT return codes, PUBLISH acks, SUBSCRIBE grants, session commands.

use std::rc::Rc;
use std::sync::Arc;

use ntex_mqtt::v3::{self, codec::QoS};
use ntex_mqtt::{Control, Reason};
use ntex_util::time::Seconds;
use tokio::sync::mpsc;

use super::registry::SessionCmd;
use super::session::{self, Admission, SessionError};
use super::topics::Subscription;
use super::uplink::{DeviceSession, Outcome};
use crate::app::AppState;

pub type Session = v3::Session<Rc<DeviceSession>>;

pub async fn connect(state: &Arc<AppState>, hs: v3::Connect) -> Result<v3::ConnectAck<Rc<DeviceSession>>, SessionError> {
    let pkt = hs.packet();
    let admission = session::admit(
        state,
        &pkt.client_id,
        pkt.username.as_deref(),
        pkt.password.as_deref(),
    )
    .await;
    let keep_alive = pkt.keep_alive;
    Ok(match admission {
        Admission::Accepted(sess, rx) => {
            ntex_rt::spawn(commands(hs.sink(), rx));
            let idle = session::idle_timeout(keep_alive).map_or(Seconds::ZERO, Seconds);
            hs.ack(sess, false).idle_timeout(idle)
        }
        Admission::NoCredentials => hs.bad_username_or_pwd(),
        Admission::NotAuthorized => hs.not_authorized(),
        Admission::Unavailable => hs.service_unavailable(),
    })
}

async fn commands(sink: v3::MqttSink, mut rx: mpsc::Receiver<SessionCmd>) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            SessionCmd::Close(_) => {
                sink.close();
                break;
            }
        }
    }
}

pub async fn publish(sess: &Session, p: v3::Publish) -> Result<(), SessionError> {
    let payload = p.read_all().await.map_err(|e| SessionError::Payload(format!("{e:?}")))?;
    match sess.publish(p.publish_topic(), payload).await {
        Outcome::Accepted | Outcome::TopicInvalid => Ok(()),
        Outcome::Unsupported(what) => {
            tracing::warn!(topic = p.publish_topic(), "{what} over MQTT are not served yet; message acknowledged and dropped");
            Ok(())
        }
        Outcome::InvalidPayload(e) => {
            tracing::info!(device = %sess.device.id, error = %e, "invalid payload from an MQTT 3.1.1 client; closing the connection");
            Err(SessionError::InvalidPayload(e))
        }
        Outcome::Failed(e) => {
            tracing::warn!(device = %sess.device.id, error = %e, "message not processed; closing the MQTT 3.1.1 connection so the device re-sends");
            Err(SessionError::Failed(e))
        }
    }
}

pub async fn protocol(_sess: &Session, msg: v3::ProtocolMessage) -> Result<v3::ProtocolMessageAck, SessionError> {
    Ok(match msg {
        v3::ProtocolMessage::Subscribe(mut s) => {
            for mut sub in s.iter_mut() {
                match Subscription::parse(sub.topic()) {
                    Some(_) => sub.confirm(sub.qos().min(QoS::AtLeastOnce)),
                    None => {
                        tracing::debug!(filter = %sub.topic(), "SUBSCRIBE to a filter devices may not use; refused");
                        sub.fail();
                    }
                }
            }
            s.ack()
        }
        v3::ProtocolMessage::Unsubscribe(s) => s.ack(),
        v3::ProtocolMessage::Ping(p) => p.ack(),
        v3::ProtocolMessage::Disconnect(d) => d.ack(),
        v3::ProtocolMessage::PublishRelease(r) => r.ack(),
    })
}

pub async fn control(_sess: &Session, ctl: Control<SessionError>) -> Result<Option<v3::codec::Encoded>, SessionError> {
    if let Control::Stop(Reason::Protocol(e)) = &ctl {
        tracing::debug!(error = %e.get_ref(), "MQTT 3.1.1 protocol error; connection closed");
    }
    Ok(None)
}
