//! The myqtt client over WebSocket (MQTT 5.0 §6): it connects
//! with `ws://host:port/path` to a myqtt WebSocket listener, subprotocol
//! `mqtt`, packets in binary frames [MQTT-6.0.0-1] [MQTT-6.0.0-4].

use std::time::Duration;

use bytes::Bytes;
use myqtt_core::Ctx;
use myqtt_core::broker::BrokerConfig;
use myqtt_core::broker::hooks::Transport;
use myqtt_core::client::{Conn, ConnectOptions, PublishMessage};
use myqtt_core::codec::{ProtocolVersion, QoS};

const WAIT: Duration = Duration::from_secs(5);

fn ws_client(ctx: &Ctx, port: u16, version: ProtocolVersion, id: &str) -> Conn {
    Conn::connect_blocking(
        ctx,
        ConnectOptions::new("127.0.0.1", port)
            .protocol(version)
            .client_id(id)
            .websocket("/mqtt"),
    )
    .expect("connect over WebSocket")
}

#[test]
fn a_qos1_message_round_trips_between_myqtt_clients_over_a_websocket_listener() {
    let ctx = Ctx::builder()
        .worker_threads(2)
        .broker(BrokerConfig::default())
        .build()
        .unwrap();
    let listener = ctx.create_ws_listener("127.0.0.1", 0).unwrap();
    assert_eq!(listener.transport(), Transport::WebSocket);
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let sub = ws_client(&ctx, listener.port(), version, "ws-sub");
        let granted = sub.subscribe("ws/#", QoS::AtLeastOnce).wait(WAIT).unwrap();
        assert_eq!(granted.granted_qos(), [Some(QoS::AtLeastOnce)]);
        let publisher = ws_client(&ctx, listener.port(), version, "ws-pub");
        let message = PublishMessage::new("ws/t", Bytes::from_static(b"over ws"))
            .unwrap()
            .qos(QoS::AtLeastOnce);
        let outcome = publisher
            .publish_blocking(message, WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
        assert!(outcome.reason_code.is_success(), "{outcome:?}");
        let got = sub.get_next(Some(WAIT)).unwrap().expect("a message");
        assert_eq!(got.topic().as_str(), "ws/t");
        assert_eq!(got.payload().as_ref(), b"over ws");
        assert_eq!(got.qos(), QoS::AtLeastOnce);
        let clients = ctx.broker().clients();
        assert_eq!(clients.len(), 2);
        assert!(
            clients
                .iter()
                .all(|c| c.info.transport == Transport::WebSocket),
            "{clients:?}"
        );
        publisher.close().wait(WAIT).unwrap();
        sub.close().wait(WAIT).unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        while ctx.broker().connection_count() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "clients still connected"
            );
            std::thread::yield_now();
        }
    }
    ctx.exit();
}

#[test]
fn a_plain_mqtt_client_is_not_served_by_a_websocket_listener() {
    // Without the WebSocket handshake nothing is read as MQTT: the CONNECT
    // goes unanswered and the connection fails.
    let ctx = Ctx::builder()
        .worker_threads(2)
        .broker(BrokerConfig::default())
        .build()
        .unwrap();
    let listener = ctx.create_ws_listener("127.0.0.1", 0).unwrap();
    let plain = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", listener.port())
            .client_id("plain")
            .connect_timeout(Duration::from_secs(1)),
    );
    assert!(plain.is_err());
    ctx.exit();
}
