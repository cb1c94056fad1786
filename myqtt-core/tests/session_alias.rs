//! MQTT 5 topic aliases both ways (MQTT 5.0 §3.3.2.3.4): assignment up to
//! the peer's Topic Alias Maximum, resolution on receipt, the errors, and
//! that aliases never outlive a connection [MQTT-3.3.2-7].

mod session_harness;

use myqtt_core::codec::{Packet, PacketType, ProtocolVersion, Publish, QoS, ReasonCode};
use myqtt_core::session::{Event, SessionConfig, SessionError};
use myqtt_core::topic::TopicName;
use session_harness::{Dir, Pair, message};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn aliases(outgoing: u16, maximum: u16) -> SessionConfig {
    SessionConfig::builder()
        .outgoing_topic_aliases(outgoing)
        .topic_alias_maximum(maximum)
        .build()
        .unwrap()
}

/// (topic on the wire, alias on the wire) of each PUBLISH.
fn wire(publishes: &[&Publish]) -> Vec<(String, Option<u16>)> {
    publishes
        .iter()
        .map(|p| (p.topic.to_string(), p.properties.topic_alias))
        .collect()
}

fn topics(publishes: &[&Publish]) -> Vec<String> {
    publishes.iter().map(|p| p.topic.to_string()).collect()
}

#[test]
fn client_assigns_an_alias_once_then_sends_the_alias_alone_and_the_server_resolves_it() {
    let mut pair = Pair::connected_with(V5, aliases(5, 0), aliases(0, 5));
    let Packet::ConnAck(connack) = &pair.to_client[0] else {
        panic!("CONNACK")
    };
    assert_eq!(connack.properties.topic_alias_maximum, Some(5));
    for n in ["1", "2", "3"] {
        pair.client
            .publish(pair.now, message("sensors/temp", QoS::AtMostOnce, n))
            .unwrap();
    }
    pair.drive();
    assert_eq!(
        wire(&pair.publishes_to_server()),
        [
            ("sensors/temp".to_owned(), Some(1)),
            (String::new(), Some(1)),
            (String::new(), Some(1)),
        ]
    );
    // The broker sees the real topic and no alias.
    let delivered = pair.server_publishes();
    assert_eq!(topics(&delivered), ["sensors/temp"; 3]);
    assert!(delivered.iter().all(|p| p.properties.topic_alias.is_none()));
}

#[test]
fn server_assigns_aliases_within_the_clients_topic_alias_maximum_first_come_first_served() {
    // [MQTT-3.1.2-26]: never above what the client's CONNECT allowed.
    let mut pair = Pair::connected_with(V5, aliases(0, 1), aliases(10, 0));
    let Packet::Connect(connect) = &pair.to_server[0] else {
        panic!("CONNECT")
    };
    assert_eq!(connect.properties.topic_alias_maximum, Some(1));
    for topic in ["a", "b", "a", "b"] {
        pair.server
            .publish(pair.now, message(topic, QoS::AtMostOnce, "x"))
            .unwrap();
    }
    pair.drive();
    assert_eq!(
        wire(&pair.publishes_to_client()),
        [
            ("a".to_owned(), Some(1)),
            ("b".to_owned(), None),
            (String::new(), Some(1)),
            ("b".to_owned(), None),
        ]
    );
    assert_eq!(topics(&pair.client_publishes()), ["a", "b", "a", "b"]);
}

#[test]
fn no_aliases_are_sent_when_the_peer_allows_none() {
    // [MQTT-3.1.2-27], [MQTT-3.2.2-18]
    let mut pair = Pair::connected_with(V5, aliases(5, 0), aliases(5, 0));
    pair.client
        .publish(pair.now, message("t", QoS::AtMostOnce, "x"))
        .unwrap();
    pair.server
        .publish(pair.now, message("t", QoS::AtMostOnce, "y"))
        .unwrap();
    pair.drive();
    assert_eq!(pair.publishes_to_server()[0].properties.topic_alias, None);
    assert_eq!(pair.publishes_to_client()[0].properties.topic_alias, None);
}

#[test]
fn aliases_are_per_connection_and_the_inflight_copy_keeps_the_real_topic() {
    // [MQTT-3.3.2-7]: the resent PUBLISH names its topic again.
    let mut pair = Pair::connected_with(V5, aliases(5, 0), aliases(0, 5));
    pair.client
        .publish(pair.now, message("x/y", QoS::AtLeastOnce, "1"))
        .unwrap();
    pair.lose_next(Dir::ToClient, PacketType::PubAck);
    pair.client
        .publish(pair.now, message("x/y", QoS::AtLeastOnce, "2"))
        .unwrap();
    pair.drive();
    assert_eq!(
        wire(&pair.publishes_to_server())[1],
        (String::new(), Some(1))
    );
    pair.to_server.clear();
    pair.reconnect();
    let resent = pair.publishes_to_server();
    assert_eq!(wire(&resent), [("x/y".to_owned(), Some(1))]);
    assert!(resent[0].dup);
    assert_eq!(topics(&pair.server_publishes()), ["x/y"; 3]);
}

fn aliased(topic: Option<&str>, alias: u16) -> Packet {
    let mut p = message("placeholder", QoS::AtMostOnce, "x");
    p.topic = topic.map_or_else(TopicName::empty_for_alias, |t| TopicName::new(t).unwrap());
    p.properties.make_mut().topic_alias = Some(alias);
    Packet::Publish(p)
}

#[test]
fn an_alias_above_our_topic_alias_maximum_is_a_0x94_error() {
    // [MQTT-3.3.2-9]
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), aliases(0, 2));
    pair.inject_to_server(&aliased(Some("t"), 3));
    assert_eq!(
        pair.server_errors,
        [SessionError::TopicAliasTooLarge {
            alias: 3,
            maximum: 2
        }]
    );
    let Some(Packet::Disconnect(d)) = pair.to_client.last() else {
        panic!("no DISCONNECT")
    };
    assert_eq!(d.reason_code, ReasonCode::TopicAliasInvalid);
}

#[test]
fn alias_zero_is_a_0x94_error() {
    // [MQTT-3.3.2-8]. Straight to the session: the codec refuses it too.
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), aliases(0, 2));
    let err = pair
        .server
        .handle_packet(pair.now, aliased(Some("t"), 0))
        .unwrap_err();
    assert_eq!(
        (err.clone(), err.reason_code()),
        (SessionError::TopicAliasZero, ReasonCode::TopicAliasInvalid)
    );
    assert!(pair.server.is_closed());
}

#[test]
fn an_alias_with_no_mapping_on_this_connection_is_a_protocol_error() {
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), aliases(0, 2));
    pair.inject_to_server(&aliased(None, 2));
    assert_eq!(pair.server_errors, [SessionError::TopicAliasUnknown(2)]);
    assert_eq!(
        pair.server_errors[0].reason_code(),
        ReasonCode::ProtocolError
    );
    assert!(pair.server_publishes().is_empty());
}

#[test]
fn a_later_publish_may_remap_an_alias_to_another_topic() {
    // MQTT 5.0 §3.3.2.3.4: a topic with an alias sets the mapping anew.
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), aliases(0, 2));
    for packet in [
        aliased(Some("one"), 1),
        aliased(Some("two"), 1),
        aliased(None, 1),
    ] {
        pair.inject_to_server(&packet);
    }
    assert_eq!(topics(&pair.server_publishes()), ["one", "two", "two"]);
}

#[test]
fn client_side_aliases_from_the_server_are_resolved_in_the_event() {
    // [MQTT-3.3.2-10]: every value up to our maximum is accepted.
    let mut pair = Pair::connected_with(V5, aliases(0, 3), SessionConfig::default());
    pair.inject_to_client(&aliased(Some("down/link"), 3));
    pair.inject_to_client(&aliased(None, 3));
    let got: Vec<_> = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::Publish(p) => Some((p.topic.to_string(), p.properties.topic_alias)),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [
            ("down/link".to_owned(), None),
            ("down/link".to_owned(), None)
        ]
    );
}
