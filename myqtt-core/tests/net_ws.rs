//! MQTT over WebSocket (MQTT 3.1.1 §6): packets cross a real WebSocket
//! connection on 127.0.0.1 in binary frames, in both directions.

use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use myqtt_core::codec::{Packet, ProtocolVersion, Publish, PublishProps, QoS};
use myqtt_core::net::{self, ws};
use myqtt_core::topic::TopicName;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const LIMIT: Duration = Duration::from_secs(10);

fn publish(topic: &str, payload: impl Into<Bytes>) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: TopicName::new(topic).unwrap(),
        packet_id: None,
        properties: PublishProps::new(),
        payload: payload.into(),
    })
}

#[tokio::test]
async fn packets_cross_a_websocket_in_both_directions() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let stream = ws::accept(tcp).await.unwrap();
        let (mut reader, mut writer) = net::split(stream, 1 << 20);
        reader.decoder_mut().set_version(ProtocolVersion::V311);
        // Echo two packets back, in one write (one frame holding both).
        let first = reader.read().await.unwrap().unwrap();
        let second = reader.read().await.unwrap().unwrap();
        writer.queue(&second, ProtocolVersion::V311).unwrap();
        writer.queue(&first, ProtocolVersion::V311).unwrap();
        writer.flush().await.unwrap();
        assert!(
            reader.read().await.unwrap().is_none(),
            "client closes cleanly"
        );
    });

    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = ws::connect(tcp, &format!("ws://{addr}/mqtt"))
        .await
        .unwrap();
    let (mut reader, mut writer) = net::split(stream, 1 << 20);
    reader.decoder_mut().set_version(ProtocolVersion::V311);
    let (a, b) = (publish("a/b", &b"one"[..]), publish("c", vec![7u8; 70_000]));
    writer.queue(&a, ProtocolVersion::V311).unwrap();
    writer.flush().await.unwrap();
    writer.queue(&b, ProtocolVersion::V311).unwrap();
    writer.flush().await.unwrap();
    assert_eq!(
        timeout(LIMIT, reader.read()).await.unwrap().unwrap(),
        Some(b)
    );
    assert_eq!(
        timeout(LIMIT, reader.read()).await.unwrap().unwrap(),
        Some(a)
    );
    writer.shutdown().await.unwrap();
    timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_without_the_mqtt_subprotocol_is_refused() {
    // [MQTT-6.0.0-4]: the server selects "mqtt"; one not offered, no session.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        ws::accept(tcp).await.map(|_| ())
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    let client = tokio_tungstenite::client_async(request, tcp).await;
    assert!(client.is_err(), "handshake without subprotocol must fail");
    assert!(timeout(LIMIT, server).await.unwrap().unwrap().is_err());
}

#[tokio::test]
async fn a_text_frame_is_a_protocol_error() {
    // [MQTT-6.0.0-1]: MQTT control packets are sent in binary frames.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let stream = ws::accept(tcp).await.unwrap();
        let (mut reader, _writer) = net::split(stream, 1 << 20);
        reader.read().await.map(|_| ())
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut client, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    client.send(Message::Text("hello".into())).await.unwrap();
    let err = timeout(LIMIT, server).await.unwrap().unwrap().unwrap_err();
    assert!(err.to_string().contains("MQTT-6.0.0-1"), "{err}");
}

#[tokio::test]
async fn a_packet_written_without_flush_still_arrives() {
    // The listener and client loops write with `write_some` and never call
    // `flush`: a WebSocket frame must not wait in a buffer for a flush.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let stream = ws::accept(tcp).await.unwrap();
        let (mut reader, mut writer) = net::split(stream, 1 << 20);
        reader.decoder_mut().set_version(ProtocolVersion::V311);
        writer
            .queue(&Packet::PingResp, ProtocolVersion::V311)
            .unwrap();
        while writer.pending() > 0 {
            writer.write_some().await.unwrap();
        }
        // Keep the connection open, reading, until the client goes.
        reader.read().await.map(|_| ())
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = ws::connect(tcp, &format!("ws://{addr}/mqtt"))
        .await
        .unwrap();
    let (mut reader, mut writer) = net::split(stream, 1 << 20);
    reader.decoder_mut().set_version(ProtocolVersion::V311);
    let got = timeout(Duration::from_secs(2), reader.read()).await;
    assert_eq!(
        got.expect("PINGRESP arrives without a flush").unwrap(),
        Some(Packet::PingResp)
    );
    writer.shutdown().await.unwrap();
    timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
}
