//! MQTT over WebSocket against the listener: the same broker serves TCP and
//! WebSocket clients.

mod broker_util;

use broker_util::*;
use myqtt_core::codec::{Packet, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions};
use myqtt_core::net::{PacketReader, PacketWriter, ws};

#[test]
fn a_websocket_client_subscribes_and_receives_what_a_tcp_client_publishes() {
    // [MQTT-6.0.0-1] [MQTT-6.0.0-4]
    with_default_broker(|ctx, tcp_addr| async move {
        let listener = ctx.create_ws_listener("127.0.0.1", 0).unwrap();
        let addr = listener.local_addr();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let url = format!("ws://{addr}/mqtt");
        let ws = tokio::time::timeout(WAIT, ws::connect(stream, &url))
            .await
            .expect("handshake in time")
            .unwrap();
        let (r, w) = tokio::io::split(ws);
        let mut reader = PacketReader::new(r, 0);
        reader.decoder_mut().set_version(ProtocolVersion::V5);
        let mut writer = PacketWriter::new(w);
        let v5 = ProtocolVersion::V5;
        let connect = connect_packet(v5, "over-ws", true, 0);
        writer
            .queue(&Packet::Connect(Box::new(connect)), v5)
            .unwrap();
        let subscribe = Subscribe {
            packet_id: pid(1),
            filters: vec![(
                filter("ws/#"),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..SubscriptionOptions::default()
                },
            )],
            properties: myqtt_core::codec::SubscribeProperties::default(),
        };
        writer.queue(&Packet::Subscribe(subscribe), v5).unwrap();
        tokio::time::timeout(WAIT, writer.flush())
            .await
            .expect("flush in time")
            .unwrap();
        match tokio::time::timeout(WAIT, reader.read())
            .await
            .expect("connack in time")
            .unwrap()
        {
            Some(Packet::ConnAck(c)) => assert_eq!(c.reason_code, ReasonCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        assert!(matches!(
            reader.read().await.unwrap(),
            Some(Packet::SubAck(_))
        ));
        let clients = ctx.broker().clients();
        assert_eq!(
            clients[0].info.transport,
            myqtt_core::broker::hooks::Transport::WebSocket
        );
        let mut p = Raw::connect(tcp_addr, ProtocolVersion::V311, "tcp", true).await;
        p.publish("ws/x", b"across", QoS::AtLeastOnce, false).await;
        match reader.read().await.unwrap() {
            Some(Packet::Publish(m)) => assert_eq!(m.payload.as_ref(), b"across"),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    });
}
