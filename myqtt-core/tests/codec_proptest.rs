//! Property tests: decoding arbitrary bytes never panics at any level;
//! encode-then-decode is the identity for arbitrary valid packets of every
//! type and level; `encoded_len` is the number of bytes `encode` writes.

use bytes::{Bytes, BytesMut};
use myqtt_core::ByteStr;
use myqtt_core::codec::{
    AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    Decoder, Disconnect, DisconnectProperties, LastWill, Packet, PacketId, ProtocolVersion, PubAck,
    Publish, PublishProperties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscribeProperties, SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties,
    UserProperties, WillProperties, encode, encoded_len,
};
use myqtt_core::topic::{TopicFilter, TopicName};
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use proptest::sample::select;

// --- leaf strategies ----------------------------------------------------------

fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(vec![
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ])
}

fn byte_str() -> impl Strategy<Value = ByteStr> {
    // Any characters but U+0000, multi-byte ones included.
    "[^\u{0}]{0,12}".prop_map(ByteStr::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|n| PacketId::new(n).unwrap())
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    "[a-zA-Z0-9 $_é/-]{1,20}".prop_map(|s| TopicName::new(s).unwrap())
}

fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![Just("+".to_owned()), "[a-z0-9$]{0,4}"];
    (of("[a-z]{1,4}"), vec(level, 1..4), any::<bool>()).prop_filter_map(
        "a valid filter",
        |(share, levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                f.push_str(if f.is_empty() { "#" } else { "/#" });
            }
            if let Some(group) = share {
                f = format!("$share/{group}/{f}");
            }
            TopicFilter::new(f).ok()
        },
    )
}

fn user_properties() -> impl Strategy<Value = UserProperties> {
    vec((byte_str(), byte_str()), 0..3)
}

fn nonzero_u16() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn nonzero_u32() -> impl Strategy<Value = u32> {
    1..=u32::MAX
}

fn subscription_id() -> impl Strategy<Value = u32> {
    1..=268_435_455u32
}

fn reason(codes: &[ReasonCode]) -> impl Strategy<Value = ReasonCode> + use<> {
    select(codes.to_vec())
}

/// Every defined reason code, for filtering per packet type.
fn all_reason_codes() -> Vec<ReasonCode> {
    (0..=255u8)
        .filter_map(|b| ReasonCode::try_from(b).ok())
        .collect()
}

fn reason_for(packet_type: myqtt_core::codec::PacketType) -> impl Strategy<Value = ReasonCode> {
    select(
        all_reason_codes()
            .into_iter()
            .filter(|rc| rc.is_allowed_in(packet_type))
            .collect::<Vec<_>>(),
    )
}

// --- properties -----------------------------------------------------------------

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        of(any::<u32>()),
        of(nonzero_u16()),
        of(nonzero_u32()),
        of(any::<u16>()),
        of(any::<bool>()),
        of(any::<bool>()),
        user_properties(),
        of((byte_str(), of(binary()))),
    )
        .prop_map(
            |(sei, rm, mps, tam, rri, rpi, user_properties, auth)| ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties,
                authentication_method: auth.as_ref().map(|(m, _)| m.clone()),
                authentication_data: auth.and_then(|(_, d)| d),
            },
        )
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        of(any::<u32>()),
        of(any::<bool>()),
        of(any::<u32>()),
        of(byte_str()),
        of(topic_name()),
        of(binary()),
        user_properties(),
    )
        .prop_map(
            |(wdi, pfi, mei, ct, rt, cd, user_properties)| WillProperties {
                will_delay_interval: wdi,
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                content_type: ct,
                response_topic: rt,
                correlation_data: cd,
                user_properties,
            },
        )
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            of(any::<u32>()),
            of(nonzero_u16()),
            of(select(vec![QoS::AtMostOnce, QoS::AtLeastOnce])),
            of(any::<bool>()),
            of(nonzero_u32()),
            of(byte_str()),
            of(any::<u16>()),
            of(byte_str()),
        ),
        (
            user_properties(),
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<u16>()),
            of(byte_str()),
            of(byte_str()),
            of((byte_str(), of(binary()))),
        ),
    )
        .prop_map(
            |((sei, rm, mq, ra, mps, aci, tam, rs), (up, wsa, sia, ssa, ska, ri, sr, auth))| {
                ConnAckProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: up,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: auth.as_ref().map(|(m, _)| m.clone()),
                    authentication_data: auth.and_then(|(_, d)| d),
                }
            },
        )
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        of(any::<bool>()),
        of(any::<u32>()),
        of(nonzero_u16()),
        of(topic_name()),
        of(binary()),
        user_properties(),
        vec(subscription_id(), 0..3),
        of(byte_str()),
    )
        .prop_map(
            |(pfi, mei, ta, rt, cd, user_properties, sids, ct)| PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                topic_alias: ta,
                response_topic: rt,
                correlation_data: cd,
                user_properties,
                subscription_identifiers: sids,
                content_type: ct,
            },
        )
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (of(byte_str()), user_properties()).prop_map(|(reason_string, user_properties)| AckProperties {
        reason_string,
        user_properties,
    })
}

// --- packets ------------------------------------------------------------------------

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    let will = of((
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        will_properties(),
    ));
    (
        any::<bool>(),
        any::<u16>(),
        byte_str(),
        will,
        of(byte_str()),
        of(binary()),
        connect_properties(),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, props)| {
                // Levels 3 and 4 need a user name for a password [MQTT-3.1.2-22].
                let password = if v5 || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will: will.map(|(topic, payload, qos, retain, p)| LastWill {
                        topic,
                        payload,
                        qos,
                        retain,
                        properties: if v5 { p } else { WillProperties::default() },
                    }),
                    username,
                    password,
                    properties: if v5 {
                        props
                    } else {
                        ConnectProperties::default()
                    },
                }))
            },
        )
}

fn connack(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    if v.is_v5() {
        (
            any::<bool>(),
            reason_for(myqtt_core::codec::PacketType::ConnAck),
            connack_properties(),
        )
            .prop_map(|(sp, reason_code, properties)| {
                Packet::ConnAck(Box::new(ConnAck {
                    session_present: sp && reason_code.is_success(),
                    reason_code,
                    properties,
                }))
            })
            .boxed()
    } else {
        let codes = reason(&[
            ReasonCode::Success,
            ReasonCode::UnsupportedProtocolVersion,
            ReasonCode::ClientIdentifierNotValid,
            ReasonCode::ServerUnavailable,
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::NotAuthorized,
        ]);
        (any::<bool>(), codes)
            .prop_map(move |(sp, reason_code)| {
                Packet::ConnAck(Box::new(ConnAck {
                    session_present: sp && reason_code.is_success() && v != ProtocolVersion::V31,
                    reason_code,
                    properties: ConnAckProperties::default(),
                }))
            })
            .boxed()
    }
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        publish_properties(),
        any::<bool>(),
        binary(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, id, properties, alias_only, payload)| {
                let at_least_once = qos != QoS::AtMostOnce;
                let properties = if v5 {
                    properties
                } else {
                    PublishProperties::default()
                };
                let topic = if v5 && alias_only && properties.topic_alias.is_some() {
                    TopicName::empty_for_alias()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && at_least_once,
                    qos,
                    retain,
                    topic,
                    packet_id: at_least_once.then_some(id),
                    properties: properties.into(),
                    payload,
                })
            },
        )
}

fn pub_ack_family(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    use myqtt_core::codec::PacketType as T;
    let kind = select(vec![T::PubAck, T::PubRec, T::PubRel, T::PubComp]);
    (kind, packet_id(), any::<u8>(), ack_properties()).prop_map(move |(kind, id, pick, props)| {
        let allowed: Vec<_> = all_reason_codes()
            .into_iter()
            .filter(|rc| rc.is_allowed_in(kind))
            .collect();
        let ack = if v.is_v5() {
            PubAck {
                packet_id: id,
                reason_code: allowed[usize::from(pick) % allowed.len()],
                properties: props,
            }
        } else {
            PubAck::new(id)
        };
        match kind {
            T::PubAck => Packet::PubAck(ack),
            T::PubRec => Packet::PubRec(ack),
            T::PubRel => Packet::PubRel(ack),
            _ => Packet::PubComp(ack),
        }
    })
}

fn subscription_options() -> impl Strategy<Value = SubscriptionOptions> {
    let rh = select(vec![
        RetainHandling::SendAtSubscribe,
        RetainHandling::SendAtSubscribeIfNew,
        RetainHandling::DoNotSend,
    ]);
    (qos(), any::<bool>(), any::<bool>(), rh).prop_map(|(qos, no_local, rap, retain_handling)| {
        SubscriptionOptions {
            qos,
            no_local,
            retain_as_published: rap,
            retain_handling,
        }
    })
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    let props =
        (of(subscription_id()), user_properties()).prop_map(|(sid, up)| SubscribeProperties {
            subscription_identifier: sid,
            user_properties: up,
        });
    (
        packet_id(),
        vec((topic_filter(), subscription_options()), 1..4),
        props,
    )
        .prop_map(move |(packet_id, filters, properties)| {
            let filters = filters
                .into_iter()
                .map(|(f, o)| {
                    let o = if !v5 {
                        SubscriptionOptions {
                            qos: o.qos,
                            ..Default::default()
                        }
                    } else if f.is_shared() {
                        SubscriptionOptions {
                            no_local: false,
                            ..o
                        } // [MQTT-3.8.3-4]
                    } else {
                        o
                    };
                    (f, o)
                })
                .collect();
            let properties = if v5 {
                properties
            } else {
                SubscribeProperties::default()
            };
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

fn suback(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    if v.is_v5() {
        (
            packet_id(),
            vec(reason_for(myqtt_core::codec::PacketType::SubAck), 0..5),
            ack_properties(),
        )
            .prop_map(|(packet_id, reason_codes, properties)| {
                Packet::SubAck(SubAck {
                    packet_id,
                    reason_codes,
                    properties,
                })
            })
            .boxed()
    } else {
        let codes = reason(&[
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ]);
        (packet_id(), vec(codes, 0..5))
            .prop_map(|(packet_id, reason_codes)| {
                Packet::SubAck(SubAck {
                    packet_id,
                    reason_codes,
                    properties: AckProperties::default(),
                })
            })
            .boxed()
    }
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    (packet_id(), vec(topic_filter(), 1..4), user_properties()).prop_map(
        move |(packet_id, filters, up)| {
            let properties = UnsubscribeProperties {
                user_properties: if v5 { up } else { Vec::new() },
            };
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        },
    )
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    (
        packet_id(),
        vec(reason_for(myqtt_core::codec::PacketType::UnsubAck), 0..5),
        ack_properties(),
    )
        .prop_map(move |(packet_id, codes, props)| {
            Packet::UnsubAck(if v5 {
                UnsubAck {
                    packet_id,
                    reason_codes: codes,
                    properties: props,
                }
            } else {
                UnsubAck {
                    packet_id,
                    reason_codes: Vec::new(),
                    properties: AckProperties::default(),
                }
            })
        })
}

fn disconnect(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    if !v.is_v5() {
        return Just(Packet::Disconnect(Disconnect::normal())).boxed();
    }
    let props = (
        of(any::<u32>()),
        of(byte_str()),
        user_properties(),
        of(byte_str()),
    )
        .prop_map(|(sei, rs, up, sr)| DisconnectProperties {
            session_expiry_interval: sei,
            reason_string: rs,
            user_properties: up,
            server_reference: sr,
        });
    (reason_for(myqtt_core::codec::PacketType::Disconnect), props)
        .prop_map(|(reason_code, properties)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        })
        .boxed()
}

fn auth() -> impl Strategy<Value = Packet> {
    let props = (
        of((byte_str(), of(binary()))),
        of(byte_str()),
        user_properties(),
    )
        .prop_map(|(auth, rs, up)| AuthProperties {
            authentication_method: auth.as_ref().map(|(m, _)| m.clone()),
            authentication_data: auth.and_then(|(_, d)| d),
            reason_string: rs,
            user_properties: up,
        });
    (reason_for(myqtt_core::codec::PacketType::Auth), props).prop_map(
        |(reason_code, properties)| {
            Packet::Auth(Box::new(Auth {
                reason_code,
                properties,
            }))
        },
    )
}

/// Any valid packet at level `v`.
fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut choices = vec![
        connect(v).boxed(),
        connack(v),
        publish(v).boxed(),
        pub_ack_family(v).boxed(),
        subscribe(v).boxed(),
        suback(v),
        unsubscribe(v).boxed(),
        unsuback(v).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(v),
    ];
    if v.is_v5() {
        choices.push(auth().boxed());
    }
    proptest::strategy::Union::new(choices).boxed()
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}

/// Decodes everything in `buf` until it needs more bytes or fails.
fn drain(decoder: &mut Decoder, bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = decoder.decode(&mut buf) {}
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_the_identity((v, packet) in versioned_packet()) {
        let mut buf = BytesMut::new();
        encode(&packet, v, &mut buf).unwrap();
        prop_assert_eq!(buf.len(), encoded_len(&packet, v));
        let mut decoder = Decoder::default();
        if !matches!(packet, Packet::Connect(_)) {
            decoder.set_version(v);
        }
        let decoded = decoder.decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(packet));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn encoded_len_is_the_number_of_bytes_written((v, packet) in versioned_packet()) {
        let mut buf = BytesMut::from(&b"prefix"[..]);
        encode(&packet, v, &mut buf).unwrap();
        prop_assert_eq!(buf.len() - 6, encoded_len(&packet, v));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        v in of(version()),
        bytes in vec(any::<u8>(), 0..256),
    ) {
        let mut decoder = Decoder::new(200);
        if let Some(v) = v {
            decoder.set_version(v);
        }
        drain(&mut decoder, &bytes);
    }

    #[test]
    fn decoding_arbitrary_bodies_behind_a_valid_header_never_panics(
        v in version(),
        first in any::<u8>(),
        body in vec(any::<u8>(), 0..120),
    ) {
        // A consistent fixed header gets every body parser exercised.
        let mut bytes = vec![first, u8::try_from(body.len()).unwrap()];
        bytes.extend_from_slice(&body);
        let mut decoder = Decoder::default();
        decoder.set_version(v);
        drain(&mut decoder, &bytes);
        drain(&mut Decoder::default(), &bytes);
    }

    #[test]
    fn decoding_mutated_valid_packets_never_panics(
        (v, packet) in versioned_packet(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut buf = BytesMut::new();
        encode(&packet, v, &mut buf).unwrap();
        let mut bytes = buf.to_vec();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        let mut decoder = Decoder::default();
        decoder.set_version(v);
        drain(&mut decoder, &bytes);
    }
}
