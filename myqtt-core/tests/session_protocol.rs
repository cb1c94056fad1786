//! The connection handshake, the packets each role may receive, requests
//! and their acknowledgements, and the session state across connections
//! (MQTT 3.1.1 and 5.0 §3.1, §3.2, §3.8–3.14, §4.1).

mod session_harness;

use std::time::Instant;

use myqtt_core::codec::{
    AckProperties, ConnAck, ConnAckProperties, Disconnect, Packet, PacketId, PacketType,
    ProtocolVersion, QoS, ReasonCode, SubAck, SubscribeProperties, SubscriptionOptions,
    UnsubscribeProperties,
};
use myqtt_core::session::{
    DropReason, Event, Outgoing, Role, Session, SessionConfig, SessionError, SessionState,
};
use myqtt_core::topic::TopicFilter;
use session_harness::{Dir, Pair, message, payloads, types};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn filters(fs: &[&str]) -> Vec<(TopicFilter, SubscriptionOptions)> {
    fs.iter()
        .map(|f| {
            (
                TopicFilter::new(*f).unwrap(),
                SubscriptionOptions::default(),
            )
        })
        .collect()
}

fn success(session_present: bool) -> ConnAck {
    ConnAck {
        session_present,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties::default(),
    }
}

#[test]
fn the_first_packet_from_a_client_must_be_connect() {
    // [MQTT-3.1.0-1]. Straight to the session: the decoder refuses it too.
    let mut server = Session::server(SessionConfig::default(), Instant::now());
    let err = server
        .handle_packet(Instant::now(), Packet::PingReq)
        .unwrap_err();
    assert_eq!(
        err,
        SessionError::FirstPacketNotConnect(PacketType::PingReq)
    );
    assert!(err.to_string().starts_with("[MQTT-3.1.0-1]"));
    assert!(server.is_closed());
    assert_eq!(server.poll_transmit(), None);
}

#[test]
fn a_second_connect_is_a_protocol_error() {
    // [MQTT-3.1.0-2]
    for version in [V311, V5] {
        let mut pair = Pair::connected(version);
        let connect = pair.connect_packet(true);
        pair.inject_to_server(&Packet::Connect(Box::new(connect)));
        assert_eq!(pair.server_errors, [SessionError::SecondConnect]);
        assert!(pair.server.is_closed());
        let disconnects = pair
            .to_client
            .iter()
            .filter(|p| matches!(p, Packet::Disconnect(_)));
        assert_eq!(disconnects.count(), usize::from(version == V5));
    }
}

#[test]
fn the_first_packet_from_a_server_must_be_connack_and_only_one_comes() {
    // [MQTT-3.2.0-1], [MQTT-3.2.0-2]
    let now = Instant::now();
    let mut client = Session::client(SessionConfig::default(), SessionState::default(), now);
    let pair = Pair::new(V5);
    client.connect(now, pair.connect_packet(true)).unwrap();
    let err = client.handle_packet(now, Packet::PingResp).unwrap_err();
    assert_eq!(
        err,
        SessionError::FirstPacketNotConnAck(PacketType::PingResp)
    );

    let mut pair = Pair::connected(V5);
    pair.inject_to_client(&Packet::ConnAck(Box::new(success(false))));
    assert_eq!(pair.client_errors, [SessionError::SecondConnAck]);
}

#[test]
fn packets_of_the_wrong_direction_are_protocol_errors() {
    let mut pair = Pair::connected(V5);
    let suback = SubAck {
        packet_id: id(1),
        reason_codes: vec![ReasonCode::Success],
        properties: AckProperties::default(),
    };
    pair.inject_to_server(&Packet::SubAck(suback));
    assert_eq!(
        pair.server_errors,
        [SessionError::UnexpectedPacket {
            packet: PacketType::SubAck,
            from: Role::Client
        }]
    );
    let mut pair = Pair::connected(V5);
    pair.inject_to_client(&Packet::PingReq);
    assert_eq!(
        pair.client_errors,
        [SessionError::UnexpectedPacket {
            packet: PacketType::PingReq,
            from: Role::Server
        }]
    );
    let Some(Packet::Disconnect(d)) = pair.to_server.last() else {
        panic!("no DISCONNECT")
    };
    assert_eq!(d.reason_code, ReasonCode::ProtocolError);
}

#[test]
fn subscribe_and_unsubscribe_are_answered_with_their_acks_as_events() {
    // [MQTT-3.8.4-1], [MQTT-3.8.4-2], [MQTT-3.10.4-4]
    for version in [V311, V5] {
        let mut pair = Pair::connected(version);
        let sub = pair
            .client
            .subscribe(
                pair.now,
                filters(&["a/+", "b/#"]),
                SubscribeProperties::default(),
            )
            .unwrap();
        let unsub = pair
            .client
            .unsubscribe(
                pair.now,
                vec![TopicFilter::new("a/+").unwrap()],
                UnsubscribeProperties::default(),
            )
            .unwrap();
        pair.drive();
        assert_ne!(sub, unsub);
        assert!(matches!(&pair.server_events[1], Event::Subscribe(s) if s.packet_id == sub));
        assert!(matches!(&pair.client_events[1], Event::SubAck(s) if s.packet_id == sub));
        assert!(matches!(&pair.client_events[2], Event::UnsubAck(u) if u.packet_id == unsub));
    }
}

#[test]
fn subscribe_without_filters_is_refused() {
    let mut pair = Pair::connected(V5);
    let r = pair
        .client
        .subscribe(pair.now, Vec::new(), SubscribeProperties::default());
    assert_eq!(r, Err(SessionError::NoTopicFilters));
    let r = pair
        .client
        .unsubscribe(pair.now, Vec::new(), UnsubscribeProperties::default());
    assert_eq!(r, Err(SessionError::NoTopicFilters));
}

#[test]
fn a_suback_without_one_reason_code_per_filter_is_a_protocol_error() {
    // [MQTT-3.8.4-6] (5.0) / [MQTT-3.9.3-1]
    let mut pair = Pair::connected(V5);
    pair.lose_next(Dir::ToServer, PacketType::Subscribe);
    let sub = pair
        .client
        .subscribe(
            pair.now,
            filters(&["a", "b"]),
            SubscribeProperties::default(),
        )
        .unwrap();
    pair.drive();
    let suback = SubAck {
        packet_id: sub,
        reason_codes: vec![ReasonCode::Success],
        properties: AckProperties::default(),
    };
    pair.inject_to_client(&Packet::SubAck(suback));
    assert!(matches!(
        pair.client_errors.as_slice(),
        [SessionError::AckReasonCount {
            got: 1,
            expected: 2,
            ..
        }]
    ));
}

#[test]
fn a_suback_for_an_unknown_packet_id_is_ignored_and_counted() {
    let mut pair = Pair::connected(V311);
    let suback = SubAck {
        packet_id: id(77),
        reason_codes: vec![ReasonCode::Success],
        properties: AckProperties::default(),
    };
    pair.inject_to_client(&Packet::SubAck(suback));
    assert!(pair.client_errors.is_empty());
    assert_eq!(pair.client.stats().unexpected_acks, 1);
}

#[test]
fn the_session_writes_its_own_limits_into_connect_and_connack() {
    let client = SessionConfig::builder()
        .receive_maximum(10)
        .maximum_packet_size(1000)
        .topic_alias_maximum(3)
        .build()
        .unwrap();
    let server = SessionConfig::builder()
        .receive_maximum(20)
        .build()
        .unwrap();
    let pair = Pair::connected_with(V5, client, server);
    let Packet::Connect(connect) = &pair.to_server[0] else {
        panic!("CONNECT")
    };
    let p = &connect.properties;
    assert_eq!(
        (
            p.receive_maximum,
            p.maximum_packet_size,
            p.topic_alias_maximum
        ),
        (Some(10), Some(1000), Some(3))
    );
    let Packet::ConnAck(connack) = &pair.to_client[0] else {
        panic!("CONNACK")
    };
    assert_eq!(connack.properties.receive_maximum, Some(20));
    assert_eq!(pair.server.peer_limits().receive_maximum, 10);
    assert_eq!(pair.client.peer_limits().receive_maximum, 20);
}

#[test]
fn a_rejected_connect_closes_both_sides_without_session_present() {
    // [MQTT-3.2.2-6], [MQTT-3.2.2-7] (5.0)
    let now = Instant::now();
    let pair = Pair::new(V5);
    let mut server = Session::server(SessionConfig::default(), now);
    server
        .handle_packet(now, Packet::Connect(Box::new(pair.connect_packet(false))))
        .unwrap();
    assert!(server.is_awaiting_accept());
    assert!(matches!(server.poll_event(), Some(Event::Connect(_))));
    let mut refusal = success(true);
    refusal.reason_code = ReasonCode::NotAuthorized;
    assert_eq!(
        server.accept(now, refusal.clone(), SessionState::default()),
        Err(SessionError::WrongReasonCode(ReasonCode::NotAuthorized))
    );
    server.reject(now, refusal).unwrap();
    let Some(Packet::ConnAck(sent)) = server.poll_transmit() else {
        panic!("CONNACK")
    };
    assert!(!sent.session_present);
    assert!(server.is_closed());

    let mut client = Session::client(SessionConfig::default(), SessionState::default(), now);
    client.connect(now, pair.connect_packet(false)).unwrap();
    client.handle_packet(now, Packet::ConnAck(sent)).unwrap();
    assert!(matches!(client.poll_event(), Some(Event::ConnAck(c)) if !c.reason_code.is_success()));
    assert!(client.is_closed());
}

#[test]
fn packets_sent_right_after_connect_are_held_until_the_broker_accepts() {
    let now = Instant::now();
    let pair = Pair::new(V311);
    let mut server = Session::server(SessionConfig::default(), now);
    server
        .handle_packet(now, Packet::Connect(Box::new(pair.connect_packet(true))))
        .unwrap();
    let mut p = message("early", QoS::AtLeastOnce, "x");
    p.packet_id = Some(id(1));
    server.handle_packet(now, Packet::Publish(p)).unwrap();
    assert_eq!(server.poll_transmit(), None);
    let _ = server.poll_event();
    server
        .accept(now, success(false), SessionState::default())
        .unwrap();
    let sent: Vec<Packet> = std::iter::from_fn(|| server.poll_transmit()).collect();
    assert_eq!(types(&sent), [PacketType::ConnAck, PacketType::PubAck]);
    assert!(matches!(server.poll_event(), Some(Event::Publish(_))));
}

#[test]
fn a_session_present_after_clean_start_is_refused_by_the_client() {
    // [MQTT-3.2.2-4]
    let now = Instant::now();
    let pair = Pair::new(V5);
    let mut client = Session::client(SessionConfig::default(), SessionState::default(), now);
    client.connect(now, pair.connect_packet(true)).unwrap();
    let err = client
        .handle_packet(now, Packet::ConnAck(Box::new(success(true))))
        .unwrap_err();
    assert_eq!(err, SessionError::UnexpectedSessionPresent);
}

#[test]
fn the_client_discards_its_session_state_when_the_server_has_none() {
    // [MQTT-3.2.2-5]: the server lost the session; in-flight messages are
    // reported dropped, queued ones are kept and sent.
    let mut pair = Pair::connected(V5);
    pair.lose_next(Dir::ToClient, PacketType::PubAck);
    pair.client
        .publish(pair.now, message("t", QoS::AtLeastOnce, "lost"))
        .unwrap();
    pair.drive();
    pair.disconnect();
    pair.client
        .publish(pair.now, message("t", QoS::AtLeastOnce, "queued"))
        .unwrap();
    assert_eq!(pair.client.state().queue_len(), 1);
    pair.stored = None;
    pair.connect(false);
    let dropped: Vec<_> = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::PublishDropped { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, [DropReason::SessionDiscarded]);
    assert_eq!(payloads(&pair.server_publishes()), ["lost", "queued"]);
    assert!(pair.client.state().is_empty());
}

#[test]
fn a_disconnect_from_the_client_closes_the_server_session_and_keeps_its_state() {
    let mut pair = Pair::connected(V311);
    pair.server
        .publish(pair.now, message("t", QoS::AtLeastOnce, "x"))
        .unwrap();
    pair.lose_next(Dir::ToClient, PacketType::Publish);
    pair.drive();
    pair.client
        .disconnect(pair.now, Disconnect::normal())
        .unwrap();
    pair.drive();
    assert!(matches!(
        pair.server_events.last(),
        Some(Event::Disconnected(_))
    ));
    assert!(pair.server.is_closed() && pair.client.is_closed());
    assert_eq!(
        pair.server.handle_packet(pair.now, Packet::PingReq),
        Err(SessionError::Closed)
    );
    // The lost QoS 1 message stays in the session state for next time.
    assert_eq!(pair.server.state().outgoing_len(), 1);
}

#[test]
fn role_specific_operations_are_refused_to_the_other_role() {
    let mut pair = Pair::connected(V5);
    let r = pair
        .server
        .subscribe(pair.now, filters(&["a"]), SubscribeProperties::default());
    assert!(matches!(
        r,
        Err(SessionError::WrongRole {
            role: Role::Server,
            ..
        })
    ));
    let r = pair
        .client
        .accept(pair.now, success(false), SessionState::default());
    assert!(matches!(
        r,
        Err(SessionError::WrongRole {
            role: Role::Client,
            ..
        })
    ));
}

#[test]
fn a_snapshot_restored_from_storage_resumes_the_flows() {
    // The storage layer persists the session state and rebuilds it; the
    // resumed session completes a QoS 2 flow and sends the queued message.
    let server = SessionConfig::builder().receive_maximum(1).build().unwrap();
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), server);
    pair.lose_next(Dir::ToClient, PacketType::PubComp);
    pair.client
        .publish(pair.now, message("q", QoS::ExactlyOnce, "first"))
        .unwrap();
    pair.client
        .publish(pair.now, message("q", QoS::AtLeastOnce, "second"))
        .unwrap();
    pair.drive();
    pair.disconnect();
    let snapshot = pair.client.state().snapshot();
    assert!(matches!(
        snapshot.outgoing.as_slice(),
        [Outgoing::Release { .. }]
    ));
    assert_eq!(snapshot.queue.len(), 1);
    let restored = SessionState::restore(snapshot).unwrap();
    pair.client = Session::client(pair.client_config.clone(), restored, pair.now);
    pair.connect(false);
    assert_eq!(payloads(&pair.server_publishes()), ["first", "second"]);
    assert!(pair.client.state().is_empty());
    assert_eq!(
        pair.to_server
            .iter()
            .filter(|p| matches!(p, Packet::PubRel(r) if r.packet_id == id(1)))
            .count(),
        2
    );
}

#[test]
fn a_server_session_takes_messages_only_once_its_state_is_attached() {
    let now = Instant::now();
    let pair = Pair::new(V5);
    let mut server = Session::server(SessionConfig::default(), now);
    let early = server.publish(now, message("t", QoS::AtMostOnce, "x"));
    assert!(matches!(early, Err(SessionError::InvalidPhase(_))));
    server
        .handle_packet(now, Packet::Connect(Box::new(pair.connect_packet(true))))
        .unwrap();
    server
        .accept(now, success(false), SessionState::default())
        .unwrap();
    assert!(
        server
            .publish(now, message("t", QoS::AtMostOnce, "x"))
            .is_ok()
    );
}
