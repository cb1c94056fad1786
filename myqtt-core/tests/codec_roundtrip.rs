//! Round trips: every control packet, at every protocol level it exists at,
//! encodes to bytes that decode to the same packet, and `encoded_len` is the
//! number of bytes written.

use bytes::{Bytes, BytesMut};
use myqtt_core::ByteStr;
use myqtt_core::codec::{
    AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    Decoder, Disconnect, DisconnectProperties, LastWill, Packet, PacketId, ProtocolVersion, PubAck,
    Publish, PublishProperties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscribeProperties, SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties,
    WillProperties, encode, encoded_len,
};
use myqtt_core::topic::{TopicFilter, TopicName};

const ALL: [ProtocolVersion; 3] = [
    ProtocolVersion::V31,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn s(text: &str) -> ByteStr {
    ByteStr::from(text)
}

fn users() -> Vec<(ByteStr, ByteStr)> {
    vec![
        (s("region"), s("eu")),
        (s("region"), s("us")),
        (s("ключ"), s("")),
    ]
}

/// Encodes at `version`, checks the length, decodes with a decoder at the
/// same level and returns what came back.
fn round_trip(packet: &Packet, version: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).unwrap_or_else(|e| panic!("encode {packet:?}: {e}"));
    assert_eq!(
        buf.len(),
        encoded_len(packet, version),
        "encoded_len of {packet:?} at {version:?}"
    );
    let mut decoder = Decoder::default();
    if !matches!(packet, Packet::Connect(_)) {
        decoder.set_version(version);
    }
    let decoded = decoder
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("decode {packet:?}: {e}"));
    assert!(buf.is_empty(), "the whole packet is consumed");
    decoded.expect("a whole packet was in the buffer")
}

fn assert_round_trip(packet: &Packet, version: ProtocolVersion) {
    assert_eq!(&round_trip(packet, version), packet, "at {version:?}");
}

fn connect(protocol: ProtocolVersion, rich: bool) -> Connect {
    let will_properties = if rich {
        WillProperties {
            will_delay_interval: Some(30),
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(3600),
            content_type: Some(s("text/plain")),
            response_topic: Some(TopicName::new("replies/1").unwrap()),
            correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
            user_properties: users(),
        }
    } else {
        WillProperties::default()
    };
    let properties = if rich {
        ConnectProperties {
            session_expiry_interval: Some(u32::MAX),
            receive_maximum: Some(20),
            maximum_packet_size: Some(1 << 20),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: users(),
            authentication_method: Some(s("SCRAM-SHA-256")),
            authentication_data: Some(Bytes::from_static(b"client-first")),
        }
    } else {
        ConnectProperties::default()
    };
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: s("client-1"),
        will: Some(LastWill {
            topic: TopicName::new("status/client-1").unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: will_properties,
        }),
        username: Some(s("alice")),
        password: Some(Bytes::from_static(&[0, 0xFF, 7])),
        properties,
    }
}

#[test]
fn connect_round_trips_at_every_level() {
    for v in ALL {
        let packet = Packet::Connect(Box::new(connect(v, v.is_v5())));
        // A CONNECT is written at its own level whatever level is asked for.
        assert_round_trip(&packet, ProtocolVersion::V311);
        assert_round_trip(&packet, v);
    }
}

#[test]
fn minimal_connect_round_trips_at_every_level() {
    for v in ALL {
        let packet = Packet::Connect(Box::new(Connect {
            protocol: v,
            clean_start: false,
            keep_alive: 0,
            client_id: ByteStr::new(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }));
        assert_round_trip(&packet, v);
    }
}

#[test]
fn mqtt5_connect_may_carry_a_password_without_a_user_name() {
    let mut c = connect(ProtocolVersion::V5, false);
    c.username = None;
    assert_round_trip(&Packet::Connect(Box::new(c)), ProtocolVersion::V5);
}

#[test]
fn connect_sets_the_decoders_protocol_level() {
    for v in ALL {
        let mut buf = BytesMut::new();
        encode(&Packet::Connect(Box::new(connect(v, false))), v, &mut buf).unwrap();
        let mut decoder = Decoder::default();
        assert_eq!(decoder.version(), None);
        decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(decoder.version(), Some(v));
    }
}

#[test]
fn connack_round_trips_at_every_level() {
    let canonical = [
        ReasonCode::Success,
        ReasonCode::UnsupportedProtocolVersion,
        ReasonCode::ClientIdentifierNotValid,
        ReasonCode::ServerUnavailable,
        ReasonCode::BadUserNameOrPassword,
        ReasonCode::NotAuthorized,
    ];
    for v in ALL {
        for rc in canonical {
            let packet = Packet::ConnAck(Box::new(ConnAck {
                // MQTT 3.1 has no Session Present flag.
                session_present: rc.is_success() && v != ProtocolVersion::V31,
                reason_code: rc,
                properties: ConnAckProperties::default(),
            }));
            assert_round_trip(&packet, v);
        }
    }
}

#[test]
fn mqtt5_connack_round_trips_with_every_property() {
    let packet = Packet::ConnAck(Box::new(ConnAck {
        session_present: true,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties {
            session_expiry_interval: Some(120),
            receive_maximum: Some(100),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            maximum_packet_size: Some(65_536),
            assigned_client_identifier: Some(s("auto-7f3a")),
            topic_alias_maximum: Some(5),
            reason_string: Some(s("welcome")),
            user_properties: users(),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(false),
            shared_subscription_available: Some(true),
            server_keep_alive: Some(30),
            response_information: Some(s("replies/")),
            server_reference: Some(s("other.example:1883")),
            authentication_method: Some(s("SCRAM-SHA-256")),
            authentication_data: Some(Bytes::from_static(b"server-final")),
        },
    }));
    assert_round_trip(&packet, ProtocolVersion::V5);
}

#[test]
fn mqtt5_connack_keeps_failure_codes_that_311_cannot_express() {
    let packet = Packet::ConnAck(Box::new(ConnAck {
        session_present: false,
        reason_code: ReasonCode::QuotaExceeded,
        properties: ConnAckProperties::default(),
    }));
    assert_round_trip(&packet, ProtocolVersion::V5);
}

fn publish(qos: QoS, properties: PublishProperties) -> Publish {
    Publish {
        dup: qos != QoS::AtMostOnce,
        qos,
        retain: true,
        topic: TopicName::new("sensors/kitchen/temp").unwrap(),
        packet_id: (qos != QoS::AtMostOnce).then(|| id(513)),
        properties: properties.into(),
        payload: Bytes::from_static(b"21.5"),
    }
}

#[test]
fn publish_round_trips_at_every_level_and_qos() {
    for v in ALL {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            assert_round_trip(
                &Packet::Publish(publish(qos, PublishProperties::default())),
                v,
            );
        }
    }
}

#[test]
fn mqtt5_publish_round_trips_with_every_property() {
    let properties = PublishProperties {
        payload_format_indicator: Some(true),
        message_expiry_interval: Some(60),
        topic_alias: Some(3),
        response_topic: Some(TopicName::new("replies/kitchen").unwrap()),
        correlation_data: Some(Bytes::from_static(&[9; 16])),
        user_properties: users(),
        // Subscription Identifier may repeat in a PUBLISH (MQTT 5.0 §3.3.2.3.8).
        subscription_identifiers: vec![1, 268_435_455, 128],
        content_type: Some(s("application/json")),
    };
    assert_round_trip(
        &Packet::Publish(publish(QoS::AtLeastOnce, properties)),
        ProtocolVersion::V5,
    );
}

#[test]
fn mqtt5_publish_may_name_its_topic_by_alias_only() {
    let mut p = publish(
        QoS::AtMostOnce,
        PublishProperties {
            topic_alias: Some(7),
            ..PublishProperties::default()
        },
    );
    p.topic = TopicName::empty_for_alias();
    assert_round_trip(&Packet::Publish(p), ProtocolVersion::V5);
}

#[test]
fn publish_with_empty_payload_round_trips() {
    for v in ALL {
        let mut p = publish(QoS::ExactlyOnce, PublishProperties::default());
        p.payload = Bytes::new();
        assert_round_trip(&Packet::Publish(p), v);
    }
}

#[test]
fn publish_acknowledgements_round_trip_at_every_level() {
    type Wrap = fn(PubAck) -> Packet;
    let kinds: [Wrap; 4] = [
        Packet::PubAck,
        Packet::PubRec,
        Packet::PubRel,
        Packet::PubComp,
    ];
    for v in ALL {
        for wrap in kinds {
            assert_round_trip(&wrap(PubAck::new(id(65_535))), v);
        }
    }
}

#[test]
fn mqtt5_acknowledgements_round_trip_with_reason_and_properties() {
    let rich = AckProperties {
        reason_string: Some(s("no one listening")),
        user_properties: users(),
    };
    let cases = [
        Packet::PubAck(PubAck {
            packet_id: id(1),
            reason_code: ReasonCode::NoMatchingSubscribers,
            properties: rich.clone(),
        }),
        // Reason code without properties: the three-byte form.
        Packet::PubRec(PubAck {
            packet_id: id(2),
            reason_code: ReasonCode::QuotaExceeded,
            properties: AckProperties::default(),
        }),
        Packet::PubRel(PubAck {
            packet_id: id(3),
            reason_code: ReasonCode::PacketIdentifierNotFound,
            properties: rich.clone(),
        }),
        // Success with properties: the reason code must still be written.
        Packet::PubComp(PubAck {
            packet_id: id(4),
            reason_code: ReasonCode::Success,
            properties: rich,
        }),
    ];
    for packet in &cases {
        assert_round_trip(packet, ProtocolVersion::V5);
    }
}

fn filter(f: &str) -> TopicFilter {
    TopicFilter::new(f).unwrap()
}

#[test]
fn subscribe_round_trips_at_every_level() {
    for v in ALL {
        let packet = Packet::Subscribe(Subscribe {
            packet_id: id(10),
            filters: vec![
                (
                    filter("a/b"),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    },
                ),
                (
                    filter("c/+/#"),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..Default::default()
                    },
                ),
                (filter("$share/g/x"), SubscriptionOptions::default()),
            ],
            properties: SubscribeProperties::default(),
        });
        assert_round_trip(&packet, v);
    }
}

#[test]
fn mqtt5_subscribe_round_trips_with_every_option_and_property() {
    let packet = Packet::Subscribe(Subscribe {
        packet_id: id(11),
        filters: vec![
            (
                filter("a/#"),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            ),
            (
                filter("$share/workers/jobs/+"),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: RetainHandling::SendAtSubscribeIfNew,
                },
            ),
        ],
        properties: SubscribeProperties {
            subscription_identifier: Some(268_435_455),
            user_properties: users(),
        },
    });
    assert_round_trip(&packet, ProtocolVersion::V5);
}

#[test]
fn suback_round_trips_at_every_level() {
    for v in ALL {
        let packet = Packet::SubAck(SubAck {
            packet_id: id(10),
            reason_codes: vec![
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS2,
                ReasonCode::UnspecifiedError,
            ],
            properties: AckProperties::default(),
        });
        assert_round_trip(&packet, v);
    }
}

#[test]
fn mqtt5_suback_round_trips_with_specific_failures_and_properties() {
    let packet = Packet::SubAck(SubAck {
        packet_id: id(12),
        reason_codes: vec![
            ReasonCode::GrantedQoS1,
            ReasonCode::SharedSubscriptionsNotSupported,
            ReasonCode::WildcardSubscriptionsNotSupported,
            ReasonCode::TopicFilterInvalid,
        ],
        properties: AckProperties {
            reason_string: Some(s("partly")),
            user_properties: users(),
        },
    });
    assert_round_trip(&packet, ProtocolVersion::V5);
}

#[test]
fn unsubscribe_round_trips_at_every_level() {
    for v in ALL {
        let properties = if v.is_v5() {
            UnsubscribeProperties {
                user_properties: users(),
            }
        } else {
            UnsubscribeProperties::default()
        };
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id: id(77),
            filters: vec![filter("a/b"), filter("#"), filter("$share/g/+")],
            properties,
        });
        assert_round_trip(&packet, v);
    }
}

#[test]
fn unsuback_round_trips_at_every_level() {
    for v in ALL {
        let (reason_codes, properties) = if v.is_v5() {
            (
                vec![
                    ReasonCode::Success,
                    ReasonCode::NoSubscriptionExisted,
                    ReasonCode::NotAuthorized,
                ],
                AckProperties {
                    reason_string: Some(s("done")),
                    user_properties: users(),
                },
            )
        } else {
            (Vec::new(), AckProperties::default())
        };
        let packet = Packet::UnsubAck(UnsubAck {
            packet_id: id(77),
            reason_codes,
            properties,
        });
        assert_round_trip(&packet, v);
    }
}

#[test]
fn pings_round_trip_at_every_level() {
    for v in ALL {
        assert_round_trip(&Packet::PingReq, v);
        assert_round_trip(&Packet::PingResp, v);
    }
}

#[test]
fn disconnect_round_trips_at_every_level() {
    for v in ALL {
        assert_round_trip(&Packet::Disconnect(Disconnect::normal()), v);
    }
}

#[test]
fn mqtt5_disconnect_round_trips_with_reason_and_properties() {
    let packets = [
        Packet::Disconnect(Disconnect::with_reason(
            ReasonCode::DisconnectWithWillMessage,
        )),
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::ServerMoved,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some(s("maintenance")),
                user_properties: users(),
                server_reference: Some(s("b.example")),
            },
        }),
    ];
    for p in &packets {
        assert_round_trip(p, ProtocolVersion::V5);
    }
}

#[test]
fn auth_round_trips_at_mqtt5() {
    let packets = [
        Packet::Auth(Box::new(Auth {
            reason_code: ReasonCode::Success,
            properties: AuthProperties::default(),
        })),
        Packet::Auth(Box::new(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM-SHA-256")),
                authentication_data: Some(Bytes::from_static(b"r=abc,s=def,i=4096")),
                reason_string: Some(s("step 2")),
                user_properties: users(),
            },
        })),
        Packet::Auth(Box::new(Auth {
            reason_code: ReasonCode::ReAuthenticate,
            properties: AuthProperties::default(),
        })),
    ];
    for p in &packets {
        assert_round_trip(p, ProtocolVersion::V5);
    }
}

#[test]
fn fields_a_level_cannot_carry_are_left_out() {
    // A PUBACK with an MQTT 5 reason and properties, sent at 3.1.1, is the
    // plain four-byte PUBACK.
    let packet = Packet::PubAck(PubAck {
        packet_id: id(5),
        reason_code: ReasonCode::NoMatchingSubscribers,
        properties: AckProperties {
            reason_string: Some(s("x")),
            user_properties: Vec::new(),
        },
    });
    let mut buf = BytesMut::new();
    encode(&packet, ProtocolVersion::V311, &mut buf).unwrap();
    assert_eq!(&buf[..], &[0x40, 0x02, 0x00, 0x05]);
    assert_eq!(
        round_trip(&packet, ProtocolVersion::V311),
        Packet::PubAck(PubAck::new(id(5)))
    );
}

#[test]
fn connack_failures_map_to_the_closest_311_return_code() {
    // MQTT 3.1.1 §3.2.2.3 has five refusals; MQTT 5 failures map onto them.
    for (rc, code) in [
        (ReasonCode::ServerBusy, 0x03),
        (ReasonCode::Banned, 0x05),
        (ReasonCode::BadAuthenticationMethod, 0x04),
        (ReasonCode::UnsupportedProtocolVersion, 0x01),
    ] {
        let packet = Packet::ConnAck(Box::new(ConnAck {
            session_present: false,
            reason_code: rc,
            properties: ConnAckProperties::default(),
        }));
        let mut buf = BytesMut::new();
        encode(&packet, ProtocolVersion::V311, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0x20, 0x02, 0x00, code], "{rc:?}");
    }
}

#[test]
fn suback_failures_are_0x80_before_mqtt5() {
    let packet = Packet::SubAck(SubAck {
        packet_id: id(1),
        reason_codes: vec![ReasonCode::NotAuthorized, ReasonCode::GrantedQoS2],
        properties: AckProperties::default(),
    });
    let mut buf = BytesMut::new();
    encode(&packet, ProtocolVersion::V311, &mut buf).unwrap();
    assert_eq!(&buf[..], &[0x90, 0x04, 0x00, 0x01, 0x80, 0x02]);
}

#[test]
fn decoded_payloads_share_the_receive_buffer() {
    let packet = Packet::Publish(publish(QoS::AtLeastOnce, PublishProperties::default()));
    let mut buf = BytesMut::new();
    encode(&packet, ProtocolVersion::V311, &mut buf).unwrap();
    let payload_at = buf.len() - 4;
    let expected_ptr = buf[payload_at..].as_ptr();
    let mut decoder = Decoder::default();
    decoder.set_version(ProtocolVersion::V311);
    let Some(Packet::Publish(p)) = decoder.decode(&mut buf).unwrap() else {
        panic!("expected a PUBLISH")
    };
    assert_eq!(
        p.payload.as_ptr(),
        expected_ptr,
        "payload is a slice of the buffer, not a copy"
    );
}
