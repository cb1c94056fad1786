//! Flow control and limits between a client and a server session: MQTT 5
//! Receive Maximum (§4.9), the bounded queue, Message Expiry (§3.3.2.3.3),
//! Maximum Packet Size (§3.1.2.11.4, §3.2.2.3.6) and Maximum QoS.

mod session_harness;

use std::time::Duration;

use myqtt_core::ByteStr;
use myqtt_core::codec::{
    AckProperties, ConnAckProperties, Packet, PacketId, PacketType, ProtocolVersion, Publish, QoS,
    ReasonCode,
};
use myqtt_core::session::{
    AckMode, DropReason, Event, Session, SessionConfig, SessionError, SessionState,
};
use session_harness::{Pair, message, payloads};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn manual_with_receive_maximum(n: u16) -> SessionConfig {
    SessionConfig::builder()
        .ack_mode(AckMode::Manual)
        .receive_maximum(n)
        .build()
        .unwrap()
}

fn dropped(events: &[Event]) -> Vec<(String, DropReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PublishDropped {
                publish, reason, ..
            } => Some((
                String::from_utf8_lossy(&publish.payload).into_owned(),
                *reason,
            )),
            _ => None,
        })
        .collect()
}

fn expiring(topic: &str, payload: &'static str, secs: u32) -> Publish {
    let mut p = message(topic, QoS::AtLeastOnce, payload);
    p.properties.make_mut().message_expiry_interval = Some(secs);
    p
}

#[test]
fn the_send_window_is_the_peers_receive_maximum_and_the_queue_drains_as_acks_arrive() {
    // [MQTT-3.3.4-7], [MQTT-4.9.0-2]
    let mut pair =
        Pair::connected_with(V5, SessionConfig::default(), manual_with_receive_maximum(2));
    let Packet::ConnAck(connack) = &pair.to_client[0] else {
        panic!("CONNACK first")
    };
    assert_eq!(connack.properties.receive_maximum, Some(2));
    assert_eq!(pair.client.peer_limits().receive_maximum, 2);
    for n in ["1", "2", "3", "4", "5"] {
        pair.client
            .publish(pair.now, message("w", QoS::AtLeastOnce, n))
            .unwrap();
    }
    pair.drive();
    assert_eq!(payloads(&pair.server_publishes()), ["1", "2"]);
    assert_eq!(pair.client.state().queue_len(), 3);
    for (acked, delivered) in [(1, 3), (2, 4), (3, 5), (4, 5), (5, 5)] {
        pair.server.ack(pair.now, id(acked)).unwrap();
        pair.drive();
        assert_eq!(pair.server_publishes().len(), delivered);
        assert!(pair.client.state().outgoing_len() <= 2);
    }
    assert_eq!(
        payloads(&pair.server_publishes()),
        ["1", "2", "3", "4", "5"]
    );
    assert!(pair.client.state().is_empty());
}

#[test]
fn a_qos2_flow_holds_its_window_slot_until_pubcomp() {
    // §4.9: the quota comes back on PUBCOMP, not on PUBREC.
    let server = SessionConfig::builder().receive_maximum(1).build().unwrap();
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), server);
    pair.lose_next(session_harness::Dir::ToClient, PacketType::PubComp);
    pair.client
        .publish(pair.now, message("q", QoS::ExactlyOnce, "a"))
        .unwrap();
    pair.client
        .publish(pair.now, message("q", QoS::ExactlyOnce, "b"))
        .unwrap();
    pair.drive();
    assert_eq!(payloads(&pair.server_publishes()), ["a"]);
    assert_eq!(pair.client.state().queue_len(), 1);
}

#[test]
fn qos0_is_not_held_back_by_a_full_window_when_nothing_is_queued() {
    // [MQTT-3.3.4-8]: only QoS > 0 PUBLISH packets count.
    let mut pair =
        Pair::connected_with(V5, SessionConfig::default(), manual_with_receive_maximum(1));
    pair.client
        .publish(pair.now, message("w", QoS::AtLeastOnce, "1"))
        .unwrap();
    pair.client
        .publish(pair.now, message("w", QoS::AtMostOnce, "fast"))
        .unwrap();
    pair.drive();
    assert_eq!(payloads(&pair.server_publishes()), ["1", "fast"]);
}

#[test]
fn more_incoming_qos1_than_our_receive_maximum_is_a_0x93_protocol_error() {
    // [MQTT-3.3.4-9]: a peer that ignores the window is disconnected.
    let mut pair =
        Pair::connected_with(V5, SessionConfig::default(), manual_with_receive_maximum(1));
    for n in [1, 2] {
        let mut p = message("w", QoS::AtLeastOnce, "x");
        p.packet_id = Some(id(n));
        pair.inject_to_server(&Packet::Publish(p));
    }
    assert_eq!(
        pair.server_errors,
        [SessionError::ReceiveMaximumExceeded { maximum: 1 }]
    );
    assert_eq!(
        pair.server_errors[0].reason_code(),
        ReasonCode::ReceiveMaximumExceeded
    );
    let Some(Packet::Disconnect(d)) = pair.to_client.last() else {
        panic!("no DISCONNECT")
    };
    assert_eq!(d.reason_code, ReasonCode::ReceiveMaximumExceeded);
    assert!(pair.server.is_closed());
    assert_eq!(pair.server_publishes().len(), 1);
}

#[test]
fn receive_maximum_is_not_enforced_before_mqtt5_but_max_inflight_is_applied() {
    let client = SessionConfig::builder().max_inflight(1).build().unwrap();
    let mut pair = Pair::connected_with(V311, client, manual_with_receive_maximum(1));
    for n in ["1", "2"] {
        pair.client
            .publish(pair.now, message("w", QoS::AtLeastOnce, n))
            .unwrap();
    }
    pair.drive();
    assert_eq!(payloads(&pair.server_publishes()), ["1"]);
    let mut p = message("w", QoS::AtLeastOnce, "raw");
    p.packet_id = Some(id(99));
    pair.inject_to_server(&Packet::Publish(p));
    assert!(pair.server_errors.is_empty());
    assert_eq!(pair.server_publishes().len(), 2);
}

#[test]
fn a_full_queue_refuses_the_message_and_counts_the_drop() {
    let server = manual_with_receive_maximum(1);
    let mut pair = Pair::with_configs(V5, SessionConfig::default(), server);
    pair.client = Session::client(SessionConfig::default(), SessionState::new(2), pair.now);
    pair.connect(true);
    for n in ["in flight", "queued 1", "queued 2"] {
        pair.client
            .publish(pair.now, message("w", QoS::AtLeastOnce, n))
            .unwrap();
    }
    let refused = pair
        .client
        .publish(pair.now, message("w", QoS::AtLeastOnce, "no room"));
    assert_eq!(refused, Err(SessionError::QueueFull { max: 2 }));
    assert_eq!(
        (
            pair.client.state().queue_len(),
            pair.client.state().dropped()
        ),
        (2, 1)
    );
}

#[test]
fn messages_queued_for_an_offline_client_are_delivered_on_reconnect() {
    let mut pair = Pair::connected(V5);
    pair.disconnect();
    let stored = pair.stored.as_mut().unwrap();
    stored
        .enqueue(pair.now, message("off", QoS::AtLeastOnce, "while away"))
        .unwrap();
    pair.connect(false);
    assert_eq!(payloads(&pair.client_publishes()), ["while away"]);
}

#[test]
fn expiry_interval_is_reduced_by_the_time_waited_and_expired_messages_are_dropped() {
    // [MQTT-3.3.2-5], [MQTT-3.3.2-6]: a server holds two messages for an
    // offline client for 4 s.
    let mut pair = Pair::connected(V5);
    pair.disconnect();
    let stored = pair.stored.as_mut().unwrap();
    stored.enqueue(pair.now, expiring("e", "long", 10)).unwrap();
    stored.enqueue(pair.now, expiring("e", "short", 3)).unwrap();
    stored
        .enqueue(pair.now, message("e", QoS::AtLeastOnce, "forever"))
        .unwrap();
    pair.now += Duration::from_millis(4_500);
    pair.connect(false);
    let got = pair.client_publishes();
    assert_eq!(payloads(&got), ["long", "forever"]);
    assert_eq!(got[0].properties.message_expiry_interval, Some(6));
    assert_eq!(got[1].properties.message_expiry_interval, None);
    assert_eq!(
        dropped(&pair.server_events),
        [("short".to_owned(), DropReason::Expired)]
    );
    assert_eq!(pair.server.state().dropped(), 1);
}

#[test]
fn expiry_applies_to_messages_waiting_for_the_send_window() {
    let client = manual_with_receive_maximum(1);
    let mut pair = Pair::connected_with(V5, client, SessionConfig::default());
    pair.server
        .publish(pair.now, message("w", QoS::AtLeastOnce, "first"))
        .unwrap();
    pair.server
        .publish(pair.now, expiring("w", "waits", 10))
        .unwrap();
    pair.server
        .publish(pair.now, expiring("w", "too late", 2))
        .unwrap();
    pair.drive();
    pair.advance(Duration::from_secs(3));
    pair.client.ack(pair.now, id(1)).unwrap();
    pair.drive();
    let got = pair.client_publishes();
    assert_eq!(payloads(&got), ["first", "waits"]);
    assert_eq!(got[1].properties.message_expiry_interval, Some(7));
    assert_eq!(
        dropped(&pair.server_events),
        [("too late".to_owned(), DropReason::Expired)]
    );
}

#[test]
fn a_message_in_flight_is_resent_even_after_its_expiry_interval() {
    // [MQTT-4.3.3-7]: delivery has started, so it is completed.
    let mut pair = Pair::connected(V5);
    pair.lose_next(session_harness::Dir::ToServer, PacketType::Publish);
    pair.client
        .publish(pair.now, expiring("x", "late", 5))
        .unwrap();
    pair.drive();
    pair.disconnect();
    pair.now += Duration::from_secs(60);
    pair.connect(false);
    let got = pair.server_publishes();
    assert_eq!(payloads(&got), ["late"]);
    assert_eq!(got[0].properties.message_expiry_interval, Some(1));
}

#[test]
fn a_publish_larger_than_the_peers_maximum_packet_size_is_dropped_not_sent() {
    // [MQTT-3.1.2-24], [MQTT-3.1.2-25]: discarded as if sent; it takes no
    // packet id and no window slot.
    let client = SessionConfig::builder()
        .maximum_packet_size(64)
        .build()
        .unwrap();
    let mut pair = Pair::connected_with(V5, client, SessionConfig::default());
    assert_eq!(pair.server.peer_limits().maximum_packet_size, Some(64));
    let big = "x".repeat(100).leak();
    pair.server
        .publish(pair.now, message("big", QoS::AtLeastOnce, big))
        .unwrap();
    pair.server
        .publish(pair.now, message("small", QoS::AtLeastOnce, "ok"))
        .unwrap();
    pair.drive();
    assert_eq!(payloads(&pair.client_publishes()), ["ok"]);
    assert_eq!(pair.client_publishes()[0].packet_id, Some(id(1)));
    assert_eq!(
        dropped(&pair.server_events),
        [(big.to_owned(), DropReason::PacketTooLarge)]
    );
    assert!(pair.server.state().is_empty());
}

#[test]
fn a_client_respects_the_servers_maximum_packet_size_too() {
    // [MQTT-3.2.2-15]
    let server = SessionConfig::builder()
        .maximum_packet_size(40)
        .build()
        .unwrap();
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), server);
    let big = "y".repeat(50).leak();
    pair.client
        .publish(pair.now, message("t", QoS::AtMostOnce, big))
        .unwrap();
    pair.drive();
    assert!(pair.server_publishes().is_empty());
    assert_eq!(
        dropped(&pair.client_events),
        [(big.to_owned(), DropReason::PacketTooLarge)]
    );
}

#[test]
fn reason_string_then_user_properties_are_stripped_from_acks_that_would_be_too_large() {
    // [MQTT-3.4.2-2], [MQTT-3.4.2-3]: the client accepts 30-byte packets.
    let client = SessionConfig::builder()
        .maximum_packet_size(30)
        .build()
        .unwrap();
    let server = SessionConfig::builder()
        .ack_mode(AckMode::Manual)
        .build()
        .unwrap();
    let mut pair = Pair::connected_with(V5, client, server);
    let pair_of = |k: &str, v: &str| (ByteStr::from(k), ByteStr::from(v));
    let fits = AckProperties {
        reason_string: Some(ByteStr::from("short")),
        ..Default::default()
    };
    let long_reason = AckProperties {
        reason_string: Some(ByteStr::from("a reason string far too long to fit")),
        user_properties: vec![pair_of("k", "v")],
    };
    let many_properties = AckProperties {
        reason_string: Some(ByteStr::from("r")),
        user_properties: vec![pair_of("key-1", "value-1"), pair_of("key-2", "value-2")],
    };
    for n in ["1", "2", "3"] {
        pair.client
            .publish(pair.now, message("a", QoS::AtLeastOnce, n))
            .unwrap();
    }
    pair.drive();
    for (n, properties) in [(1, fits.clone()), (2, long_reason), (3, many_properties)] {
        pair.server
            .ack_with(pair.now, id(n), ReasonCode::Success, properties)
            .unwrap();
    }
    pair.drive();
    let acks: Vec<&AckProperties> = pair
        .to_client
        .iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some(&a.properties),
            _ => None,
        })
        .collect();
    let kept_user_property = AckProperties {
        reason_string: None,
        user_properties: vec![pair_of("k", "v")],
    };
    assert_eq!(
        acks,
        [&fits, &kept_user_property, &AckProperties::default()]
    );
}

#[test]
fn a_client_does_not_send_above_the_servers_maximum_qos_or_retain_when_unavailable() {
    // [MQTT-3.2.2-11], [MQTT-3.2.2-14]
    let mut pair = Pair::new(V5);
    pair.connack_properties = ConnAckProperties {
        maximum_qos: Some(QoS::AtLeastOnce),
        retain_available: Some(false),
        ..ConnAckProperties::default()
    };
    pair.connect(true);
    pair.client
        .publish(pair.now, message("q", QoS::ExactlyOnce, "qos2"))
        .unwrap();
    let mut retained = message("q", QoS::AtMostOnce, "retained");
    retained.retain = true;
    pair.client.publish(pair.now, retained).unwrap();
    pair.client
        .publish(pair.now, message("q", QoS::AtLeastOnce, "fine"))
        .unwrap();
    pair.drive();
    assert_eq!(payloads(&pair.server_publishes()), ["fine"]);
    assert_eq!(
        dropped(&pair.client_events),
        [
            ("qos2".to_owned(), DropReason::QoSNotSupported),
            ("retained".to_owned(), DropReason::RetainNotSupported),
        ]
    );
}
