//! QoS 1 and QoS 2 flows between a client and a server session (MQTT 3.1.1
//! and 5.0 §4.3, §4.4, §4.6): delivery, acknowledgement, loss and
//! retransmission across a reconnect, manual acknowledgement order, and
//! packet-id allocation.

mod session_harness;

use myqtt_core::codec::{
    AckProperties, Disconnect, Packet, PacketId, PacketType, ProtocolVersion, PubAck, QoS,
    ReasonCode, SubscribeProperties, SubscriptionOptions,
};
use myqtt_core::session::{
    AckMode, Event, Outgoing, Session, SessionConfig, SessionError, SessionSnapshot, SessionState,
    Ticket,
};
use myqtt_core::topic::TopicFilter;
use session_harness::{Dir, Pair, message, payloads, types};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn acked(events: &[Event]) -> Vec<(Ticket, u16, ReasonCode)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PublishAcked {
                ticket,
                packet_id,
                reason_code,
                ..
            } => Some((*ticket, packet_id.get(), *reason_code)),
            _ => None,
        })
        .collect()
}

fn manual() -> SessionConfig {
    SessionConfig::builder()
        .ack_mode(AckMode::Manual)
        .build()
        .unwrap()
}

#[test]
fn qos1_publish_is_delivered_once_and_acknowledged_at_both_levels() {
    // [MQTT-4.3.2-1]..[MQTT-4.3.2-4]
    for version in [V311, V5] {
        let mut pair = Pair::connected(version);
        let ticket = pair
            .client
            .publish(pair.now, message("a/b", QoS::AtLeastOnce, "hi"))
            .unwrap();
        pair.drive();
        assert_eq!(payloads(&pair.server_publishes()), ["hi"]);
        assert_eq!(pair.server_publishes()[0].topic.as_str(), "a/b");
        assert_eq!(types(&pair.to_client)[1..], [PacketType::PubAck]);
        assert_eq!(
            acked(&pair.client_events),
            [(ticket, 1, ReasonCode::Success)]
        );
        assert_eq!(pair.client.state().outgoing_len(), 0);
    }
}

#[test]
fn server_to_client_qos1_flow_is_the_same_machinery() {
    let mut pair = Pair::connected(V5);
    let ticket = pair
        .server
        .publish(pair.now, message("t", QoS::AtLeastOnce, "down"))
        .unwrap();
    pair.drive();
    assert_eq!(payloads(&pair.client_publishes()), ["down"]);
    assert_eq!(
        acked(&pair.server_events),
        [(ticket, 1, ReasonCode::Success)]
    );
}

#[test]
fn qos2_publish_completes_the_four_packet_handshake_and_is_delivered_once() {
    // [MQTT-4.3.3-1]..[MQTT-4.3.3-12]
    for version in [V311, V5] {
        let mut pair = Pair::connected(version);
        let ticket = pair
            .client
            .publish(pair.now, message("q2", QoS::ExactlyOnce, "x"))
            .unwrap();
        pair.drive();
        assert_eq!(
            types(&pair.to_server)[1..],
            [PacketType::Publish, PacketType::PubRel]
        );
        assert_eq!(
            types(&pair.to_client)[1..],
            [PacketType::PubRec, PacketType::PubComp]
        );
        assert_eq!(pair.server_publishes().len(), 1);
        assert_eq!(
            acked(&pair.client_events),
            [(ticket, 1, ReasonCode::Success)]
        );
        assert!(pair.client.state().is_empty());
        assert!(pair.server.state().is_empty());
    }
}

#[test]
fn qos0_publish_has_no_packet_id_and_no_acknowledgement() {
    // [MQTT-4.3.1-1]
    let mut pair = Pair::connected(V5);
    pair.client
        .publish(pair.now, message("z", QoS::AtMostOnce, "0"))
        .unwrap();
    pair.drive();
    let sent = pair.publishes_to_server();
    assert_eq!((sent[0].packet_id, sent[0].dup), (None, false));
    assert_eq!(pair.to_client.len(), 1); // the CONNACK only
    assert!(acked(&pair.client_events).is_empty());
}

#[test]
fn v5_pubrec_with_a_failure_reason_code_ends_the_flow_without_pubrel() {
    // [MQTT-4.3.3-4], [MQTT-4.4.0-2]: the message counts as acknowledged.
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), manual());
    let ticket = pair
        .client
        .publish(pair.now, message("q", QoS::ExactlyOnce, "no"))
        .unwrap();
    pair.drive();
    let packet_id = pair.server_publishes()[0].packet_id.unwrap();
    pair.server
        .ack_with(
            pair.now,
            packet_id,
            ReasonCode::QuotaExceeded,
            AckProperties::default(),
        )
        .unwrap();
    pair.drive();
    assert_eq!(
        acked(&pair.client_events),
        [(ticket, 1, ReasonCode::QuotaExceeded)]
    );
    assert!(!types(&pair.to_server).contains(&PacketType::PubRel));
    assert!(pair.client.state().is_empty());
    // The receiver forgot the id: the same id is a new message [MQTT-4.3.3-9].
    assert!(pair.server.state().is_empty());
}

#[test]
fn repeated_qos2_publish_before_pubrel_is_acknowledged_but_not_delivered_again() {
    // [MQTT-4.3.3-10]. Driven by hand: this "client" never answers PUBREC.
    let mut pair = Pair::connected(V5);
    let now = pair.now;
    let server = &mut pair.server;
    let mut p = message("d", QoS::ExactlyOnce, "once");
    p.packet_id = Some(id(7));
    server
        .handle_packet(now, Packet::Publish(p.clone()))
        .unwrap();
    p.dup = true;
    server
        .handle_packet(now, Packet::Publish(p.clone()))
        .unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Publish(_)))
            .count(),
        1
    );
    let sent: Vec<Packet> = std::iter::from_fn(|| server.poll_transmit()).collect();
    assert_eq!(types(&sent), [PacketType::PubRec, PacketType::PubRec]);
    // After PUBREL and PUBCOMP the id starts a new message [MQTT-4.3.3-12].
    server
        .handle_packet(now, Packet::PubRel(PubAck::new(id(7))))
        .unwrap();
    assert_eq!(
        server.poll_transmit(),
        Some(Packet::PubComp(PubAck::new(id(7))))
    );
    server.handle_packet(now, Packet::Publish(p)).unwrap();
    assert!(matches!(server.poll_event(), Some(Event::Publish(_))));
}

#[test]
fn qos1_publish_whose_puback_was_lost_is_resent_with_dup_in_order_on_reconnect() {
    // [MQTT-4.4.0-1], [MQTT-4.6.0-1], [MQTT-3.3.1-1]
    let mut pair = Pair::connected(V5);
    for (i, payload) in ["m1", "m2", "m3"].into_iter().enumerate() {
        if i < 2 {
            pair.lose_next(Dir::ToClient, PacketType::PubAck);
        }
        pair.client
            .publish(pair.now, message("r", QoS::AtLeastOnce, payload))
            .unwrap();
        pair.drive();
    }
    assert_eq!(pair.client.state().outgoing_len(), 2);
    pair.to_server.clear();
    pair.reconnect();
    let resent = pair.publishes_to_server();
    assert_eq!(payloads(&resent), ["m1", "m2"]);
    assert!(resent.iter().all(|p| p.dup));
    assert_eq!(
        resent
            .iter()
            .map(|p| p.packet_id.unwrap().get())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    // At least once: the server saw them twice, and the flows completed.
    assert_eq!(
        payloads(&pair.server_publishes()),
        ["m1", "m2", "m3", "m1", "m2"]
    );
    assert_eq!(pair.client.state().outgoing_len(), 0);
}

#[test]
fn qos2_is_delivered_exactly_once_when_the_pubrec_is_lost() {
    // The PUBLISH is resent with DUP; the server still holds the id and
    // answers PUBREC without a second delivery [MQTT-4.3.3-10].
    for version in [V311, V5] {
        let mut pair = Pair::connected(version);
        pair.lose_next(Dir::ToClient, PacketType::PubRec);
        let ticket = pair
            .client
            .publish(pair.now, message("x", QoS::ExactlyOnce, "1"))
            .unwrap();
        pair.drive();
        assert_eq!(pair.server.state().incoming_qos2().count(), 1);
        pair.reconnect();
        assert!(pair.publishes_to_server().last().unwrap().dup);
        assert_eq!(pair.server_publishes().len(), 1);
        assert_eq!(
            acked(&pair.client_events),
            [(ticket, 1, ReasonCode::Success)]
        );
        assert!(pair.client.state().is_empty() && pair.server.state().is_empty());
    }
}

#[test]
fn qos2_is_delivered_exactly_once_when_the_pubcomp_is_lost() {
    // The PUBREL is resent; the server forgot the id and still answers
    // PUBCOMP [MQTT-4.3.3-11] (0x92 at MQTT 5, MQTT 5.0 §3.7.2.1).
    for (version, code) in [
        (V311, ReasonCode::Success),
        (V5, ReasonCode::PacketIdentifierNotFound),
    ] {
        let mut pair = Pair::connected(version);
        pair.lose_next(Dir::ToClient, PacketType::PubComp);
        let ticket = pair
            .client
            .publish(pair.now, message("x", QoS::ExactlyOnce, "1"))
            .unwrap();
        pair.drive();
        assert!(matches!(
            pair.client.state().outgoing().next(),
            Some(Outgoing::Release { .. })
        ));
        pair.to_server.clear();
        pair.reconnect();
        assert_eq!(
            types(&pair.to_server),
            [PacketType::Connect, PacketType::PubRel]
        );
        assert_eq!(pair.server_publishes().len(), 1);
        assert_eq!(acked(&pair.client_events), [(ticket, 1, code)]);
        assert_eq!(pair.server.stats().unexpected_acks, 1);
    }
}

#[test]
fn inflight_flows_are_resent_publishes_in_send_order_and_pubrels_in_pubrec_order() {
    // [MQTT-4.6.0-1], [MQTT-4.6.0-4]: 1 and 3 reach PUBREC (3's first), 2
    // and 4 get no answer.
    let mut pair = Pair::connected(V5);
    for n in ["1", "2", "3", "4"] {
        pair.client
            .publish(pair.now, message("o", QoS::ExactlyOnce, n))
            .unwrap();
    }
    let publishes: Vec<Packet> = std::iter::from_fn(|| pair.client.poll_transmit()).collect();
    assert_eq!(publishes.len(), 4);
    pair.client
        .handle_packet(pair.now, Packet::PubRec(PubAck::new(id(3))))
        .unwrap();
    pair.client
        .handle_packet(pair.now, Packet::PubRec(PubAck::new(id(1))))
        .unwrap();
    pair.disconnect();
    pair.to_server.clear();
    pair.connect(false);
    let resent: Vec<(PacketType, u16)> = pair
        .to_server
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((PacketType::Publish, p.packet_id?.get())),
            Packet::PubRel(r) => Some((PacketType::PubRel, r.packet_id.get())),
            _ => None,
        })
        .take(4) // the resend burst; the new flows for 2 and 4 follow
        .collect();
    assert_eq!(
        resent,
        [
            (PacketType::Publish, 2),
            (PacketType::Publish, 4),
            (PacketType::PubRel, 3),
            (PacketType::PubRel, 1),
        ]
    );
}

#[test]
fn unknown_acks_are_ignored_and_counted() {
    let mut pair = Pair::connected(V5);
    pair.inject_to_client(&Packet::PubAck(PubAck::new(id(42))));
    pair.inject_to_client(&Packet::PubComp(PubAck::new(id(43))));
    assert_eq!(pair.client.stats().unexpected_acks, 2);
    assert!(pair.client.is_connected());
    assert!(pair.client_events.contains(&Event::UnexpectedAck {
        packet_type: PacketType::PubAck,
        packet_id: id(42)
    }));
}

#[test]
fn unknown_pubrec_is_answered_with_pubrel_0x92_at_v5() {
    let mut pair = Pair::connected(V5);
    pair.inject_to_client(&Packet::PubRec(PubAck::new(id(9))));
    let Some(Packet::PubRel(rel)) = pair.to_server.last() else {
        panic!("no PUBREL")
    };
    assert_eq!(
        (rel.packet_id, rel.reason_code),
        (id(9), ReasonCode::PacketIdentifierNotFound)
    );
}

#[test]
fn pubrel_for_a_message_not_yet_acknowledged_by_pubrec_is_a_protocol_error() {
    // [MQTT-4.3.3-4]: PUBREL answers PUBREC, which was never sent.
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), manual());
    let mut p = message("m", QoS::ExactlyOnce, "x");
    p.packet_id = Some(id(5));
    pair.inject_to_server(&Packet::Publish(p));
    pair.inject_to_server(&Packet::PubRel(PubAck::new(id(5))));
    assert_eq!(
        pair.server_errors,
        [SessionError::PubRelBeforePubRec(id(5))]
    );
    let Some(Packet::Disconnect(d)) = pair.to_client.last() else {
        panic!("no DISCONNECT")
    };
    assert_eq!(d.reason_code, ReasonCode::ProtocolError);
}

#[test]
fn manual_acks_are_sent_in_the_order_the_publishes_arrived() {
    // [MQTT-4.6.0-2], [MQTT-4.6.0-3]
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), manual());
    for (n, qos) in [
        ("a", QoS::AtLeastOnce),
        ("b", QoS::ExactlyOnce),
        ("c", QoS::AtLeastOnce),
    ] {
        pair.client.publish(pair.now, message("m", qos, n)).unwrap();
    }
    pair.drive();
    let ids: Vec<PacketId> = pair
        .server_publishes()
        .iter()
        .map(|p| p.packet_id.unwrap())
        .collect();
    assert_eq!(pair.to_client.len(), 1, "nothing acknowledged before ack()");
    pair.server.ack(pair.now, ids[2]).unwrap();
    pair.server.ack(pair.now, ids[1]).unwrap();
    pair.drive();
    assert_eq!(pair.to_client.len(), 1, "c and b wait for a");
    pair.server.ack(pair.now, ids[0]).unwrap();
    pair.drive();
    let acks: Vec<(PacketType, u16)> = pair.to_client[1..]
        .iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some((PacketType::PubAck, a.packet_id.get())),
            Packet::PubRec(a) => Some((PacketType::PubRec, a.packet_id.get())),
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        [
            (PacketType::PubAck, 1),
            (PacketType::PubRec, 2),
            (PacketType::PubAck, 3)
        ]
    );
    assert_eq!(acked(&pair.client_events).len(), 3);
}

#[test]
fn ack_of_an_unknown_id_or_in_automatic_mode_is_refused() {
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), manual());
    assert_eq!(
        pair.server.ack(pair.now, id(3)),
        Err(SessionError::UnknownPacketId(id(3)))
    );
    assert_eq!(
        pair.client.ack(pair.now, id(3)),
        Err(SessionError::NotManualAckMode)
    );
}

#[test]
fn unacknowledged_manual_qos2_is_delivered_again_on_the_next_connection() {
    // The application never took ownership [MQTT-4.3.3-8], so the resent
    // PUBLISH is a delivery, not a duplicate.
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), manual());
    pair.client
        .publish(pair.now, message("m", QoS::ExactlyOnce, "x"))
        .unwrap();
    pair.drive();
    pair.reconnect();
    assert_eq!(payloads(&pair.server_publishes()), ["x", "x"]);
    assert!(pair.server_publishes()[1].dup);
}

#[test]
fn manual_qos2_acknowledged_after_the_connection_dropped_is_not_delivered_again() {
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), manual());
    pair.client
        .publish(pair.now, message("m", QoS::ExactlyOnce, "x"))
        .unwrap();
    pair.drive();
    let packet_id = pair.server_publishes()[0].packet_id.unwrap();
    pair.server
        .disconnect(pair.now, Disconnect::normal())
        .unwrap();
    pair.server.ack(pair.now, packet_id).unwrap();
    pair.reconnect();
    assert_eq!(pair.server_publishes().len(), 1);
    assert!(pair.client.state().is_empty());
}

#[test]
fn packet_ids_wrap_around_and_skip_ids_in_use() {
    // [MQTT-2.2.1-3]: a new id is one not in use. 65535 and 2 are in flight
    // (restored from storage), 65534 goes to a SUBSCRIBE.
    let now = std::time::Instant::now();
    let mut snapshot: SessionSnapshot = SessionState::default().snapshot();
    snapshot.next_packet_id = id(65534);
    snapshot.next_ticket = 2;
    snapshot.outgoing = vec![
        Outgoing::Release {
            ticket: Ticket::new(0),
            packet_id: id(65535),
        },
        Outgoing::Release {
            ticket: Ticket::new(1),
            packet_id: id(2),
        },
    ];
    let mut pair = Pair::new(V5);
    pair.now = now;
    pair.client = Session::client(
        SessionConfig::default(),
        SessionState::restore(snapshot).unwrap(),
        now,
    );
    pair.stored = Some(SessionState::default());
    // The PUBRELs get no answer, so both ids stay in use.
    pair.lose_next(Dir::ToServer, PacketType::PubRel);
    pair.lose_next(Dir::ToServer, PacketType::PubRel);
    pair.connect(false);
    let filter = TopicFilter::new("s/#").unwrap();
    let sub = pair.client.subscribe(
        pair.now,
        vec![(filter, SubscriptionOptions::default())],
        SubscribeProperties::default(),
    );
    assert_eq!(sub, Ok(id(65534)));
    for n in ["a", "b", "c"] {
        pair.client
            .publish(pair.now, message("w", QoS::AtLeastOnce, n))
            .unwrap();
    }
    pair.drive();
    let ids: Vec<u16> = pair
        .publishes_to_server()
        .iter()
        .map(|p| p.packet_id.unwrap().get())
        .collect();
    assert_eq!(ids, [1, 3, 4]);
}

mod lossy_network {
    //! Exactly once at QoS 2 and at least once at QoS 1, whatever single
    //! packets the network loses before the connection breaks [MQTT-4.3.2],
    //! [MQTT-4.3.3], [MQTT-4.4.0-1].

    use proptest::prelude::*;

    use super::*;

    const LOSSES: [Option<(Dir, PacketType)>; 5] = [
        None,
        Some((Dir::ToServer, PacketType::Publish)),
        Some((Dir::ToClient, PacketType::PubRec)),
        Some((Dir::ToServer, PacketType::PubRel)),
        Some((Dir::ToClient, PacketType::PubComp)),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_message_completes_and_qos2_is_delivered_exactly_once(
            batches in prop::collection::vec(
                prop::collection::vec((0..LOSSES.len(), any::<bool>()), 1..6),
                1..4,
            ),
            version in prop::sample::select(vec![V311, V5]),
        ) {
            let mut pair = Pair::connected(version);
            let mut sent = Vec::new();
            for batch in &batches {
                for (loss, qos2) in batch {
                    if let Some((dir, packet_type)) = LOSSES[*loss] {
                        pair.lose_next(dir, if *qos2 { packet_type } else {
                            match packet_type {
                                PacketType::PubRec | PacketType::PubComp => PacketType::PubAck,
                                other => other,
                            }
                        });
                    }
                    let qos = if *qos2 { QoS::ExactlyOnce } else { QoS::AtLeastOnce };
                    let payload: &'static str = format!("m{}", sent.len()).leak();
                    pair.client.publish(pair.now, message("p", qos, payload)).unwrap();
                    sent.push((payload, qos));
                }
                pair.drive();
                pair.reconnect();
            }
            prop_assert!(pair.client.state().is_empty());
            prop_assert!(pair.server.state().is_empty());
            let delivered = payloads(&pair.server_publishes());
            for (payload, qos) in &sent {
                let n = delivered.iter().filter(|d| d.as_str() == *payload).count();
                if *qos == QoS::ExactlyOnce {
                    prop_assert_eq!(n, 1, "{} at QoS 2", payload);
                } else {
                    prop_assert!(n >= 1, "{} at QoS 1", payload);
                }
            }
            prop_assert_eq!(acked(&pair.client_events).len(), sent.len());
        }
    }
}

#[test]
fn resends_after_a_reconnect_respect_a_smaller_receive_maximum_and_keep_their_order() {
    // [MQTT-3.3.4-9]: no more unacknowledged QoS 1/2 PUBLISH packets than the
    // peer's Receive Maximum on this connection, resends included; held-back
    // resends go first, in order, with DUP [MQTT-4.6.0-1], [MQTT-3.3.1-1].
    let manual = |n: u16| {
        SessionConfig::builder()
            .ack_mode(AckMode::Manual)
            .receive_maximum(n)
            .build()
            .unwrap()
    };
    let mut pair = Pair::connected_with(V5, SessionConfig::default(), manual(10));
    for payload in ["m1", "m2", "m3", "m4", "m5"] {
        pair.client
            .publish(pair.now, message("r", QoS::AtLeastOnce, payload))
            .unwrap();
    }
    pair.drive();
    assert_eq!(pair.client.state().outgoing_len(), 5);
    pair.server_config = manual(2);
    pair.to_server.clear();
    pair.reconnect();
    pair.client
        .publish(pair.now, message("r", QoS::AtMostOnce, "new0"))
        .unwrap();
    pair.client
        .publish(pair.now, message("r", QoS::AtLeastOnce, "new1"))
        .unwrap();
    pair.drive();
    assert_eq!(payloads(&pair.publishes_to_server()), ["m1", "m2"]);
    let mut acked = 0;
    loop {
        let ids: Vec<PacketId> = pair
            .publishes_to_server()
            .iter()
            .filter_map(|p| p.packet_id)
            .collect();
        assert!(
            ids.len() - acked <= 2,
            "{} unacknowledged after {acked} acks",
            ids.len() - acked
        );
        let Some(&next) = ids.get(acked) else { break };
        pair.server.ack(pair.now, next).unwrap();
        acked += 1;
        pair.drive();
    }
    let sent = pair.publishes_to_server();
    assert_eq!(
        payloads(&sent),
        ["m1", "m2", "m3", "m4", "m5", "new0", "new1"]
    );
    assert!(sent[..5].iter().all(|p| p.dup));
    assert!(!sent[6].dup);
    assert!(pair.client.state().is_empty());
}
