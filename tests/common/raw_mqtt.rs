//! MQTT 3.1.1 on a raw socket, for tests that count packets or hold connections: CONNECT with a
//! token, QoS 1 PUBLISH, PUBACK.

use std::time::Duration;

use rumqttc::mqttbytes::{QoS, v4 as m4};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::TestApp;

const WAIT: Duration = Duration::from_secs(10);

/// Sends CONNECT with `token` as user name; returns the socket and the CONNACK return code.
pub async fn connect_as(app: &TestApp, client_id: &str, token: &str) -> (TcpStream, u8) {
    let mut sock = TcpStream::connect(("127.0.0.1", app.mqtt_port))
        .await
        .expect("connect");
    let mut bytes = bytes::BytesMut::new();
    let mut pkt = m4::Connect::new(client_id);
    pkt.keep_alive = 60;
    pkt.set_login(token, "");
    pkt.write(&mut bytes).expect("encode");
    sock.write_all(&bytes).await.expect("write");
    let mut ack = [0u8; 4];
    tokio::time::timeout(WAIT, sock.read_exact(&mut ack))
        .await
        .expect("CONNACK in time")
        .expect("CONNACK");
    assert_eq!(ack[..2], [0x20, 2], "CONNACK: {ack:?}");
    (sock, ack[3])
}

/// CONNECT with a new client id each time.
pub async fn connect(app: &TestApp, token: &str) -> (TcpStream, u8) {
    connect_as(app, &format!("c-{}", uuid::Uuid::new_v4().simple()), token).await
}

/// An accepted session.
pub async fn session(app: &TestApp, token: &str) -> TcpStream {
    let (sock, rc) = connect(app, token).await;
    assert_eq!(rc, 0, "CONNECT accepted");
    sock
}

/// Sends a QoS 1 PUBLISH with packet id `pkid`.
pub async fn publish_qos1(sock: &mut TcpStream, topic: &str, pkid: u16, payload: &str) {
    let mut bytes = bytes::BytesMut::new();
    let mut pkt = m4::Publish::new(topic, QoS::AtLeastOnce, payload);
    pkt.pkid = pkid;
    pkt.write(&mut bytes).expect("encode");
    sock.write_all(&bytes).await.expect("write");
}

/// Waits for the PUBACK of `pkid` (the next packet must be it).
pub async fn puback(sock: &mut TcpStream, pkid: u16) {
    let mut ack = [0u8; 4];
    tokio::time::timeout(WAIT, sock.read_exact(&mut ack))
        .await
        .expect("PUBACK in time")
        .expect("PUBACK");
    let [hi, lo] = pkid.to_be_bytes();
    assert_eq!(ack, [0x40, 2, hi, lo], "PUBACK of {pkid}");
}
