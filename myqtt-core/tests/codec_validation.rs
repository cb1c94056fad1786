//! One test per validation rule: the decoder refuses the packet with the
//! error variant naming the rule, and that error knows its MQTT 5 reason
//! code (MQTT 5.0 §4.13). Encoder refusals are at the end.

use bytes::{Bytes, BytesMut};
use myqtt_core::ByteStr;
use myqtt_core::codec::{
    AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    DecodeError, Decoder, EncodeError, Packet, PacketId, PacketType, ProtocolVersion, PubAck,
    Publish, PublishProps, QoS, ReasonCode, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, Unsubscribe, UnsubscribeProperties, encode,
};
use myqtt_core::topic::{TopicError, TopicFilter, TopicName};

const V3: Option<ProtocolVersion> = Some(ProtocolVersion::V31);
const V4: Option<ProtocolVersion> = Some(ProtocolVersion::V311);
const V5: Option<ProtocolVersion> = Some(ProtocolVersion::V5);

fn decode(version: Option<ProtocolVersion>, bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    let mut d = Decoder::default();
    if let Some(v) = version {
        d.set_version(v);
    }
    d.decode(&mut BytesMut::from(bytes))
}

/// Asserts that `bytes` are refused with `expected`, whose reason code is
/// `reason`, and that the message starts with a specification reference.
#[track_caller]
fn assert_rejected(
    version: Option<ProtocolVersion>,
    bytes: &[u8],
    expected: &DecodeError,
    reason: ReasonCode,
) {
    let err = decode(version, bytes).expect_err("the packet must be refused");
    assert_eq!(&err, expected);
    assert_eq!(err.reason_code(), reason, "reason code of {err}");
    assert!(
        err.to_string().starts_with("[MQTT"),
        "message cites the spec: {err}"
    );
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first, u8::try_from(body.len()).unwrap()];
    v.extend_from_slice(body);
    v
}

/// An MQTT 5 QoS 1 PUBLISH to "t" with the given property bytes.
fn publish5(properties: &[u8]) -> Vec<u8> {
    let mut body = vec![
        0x00,
        0x01,
        b't',
        0x00,
        0x01,
        u8::try_from(properties.len()).unwrap(),
    ];
    body.extend_from_slice(properties);
    body.push(b'x');
    packet(0x32, &body)
}

/// A CONNECT with the given protocol name, level, flags and the rest.
fn connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, u8::try_from(name.len()).unwrap()];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0x00, 0x3C]);
    body.extend_from_slice(rest);
    packet(0x10, &body)
}

/// A CONNECT at level 5 with the given properties and client id "c".
fn connect5(properties: &[u8]) -> Vec<u8> {
    let mut rest = vec![u8::try_from(properties.len()).unwrap()];
    rest.extend_from_slice(properties);
    rest.extend_from_slice(&[0x00, 0x01, b'c']);
    connect(b"MQTT", 5, 0x02, &rest)
}

// --- fixed header -----------------------------------------------------------

#[test]
fn reserved_fixed_header_flags_are_rejected_mqtt_2_2_2_2() {
    for (bytes, packet_type, flags) in [
        (&[0x60, 0x02, 0x00, 0x01][..], PacketType::PubRel, 0b0000),
        (&[0x80, 0x02, 0x00, 0x01][..], PacketType::Subscribe, 0b0000),
        (
            &[0xA3, 0x02, 0x00, 0x01][..],
            PacketType::Unsubscribe,
            0b0011,
        ),
        (&[0x41, 0x02, 0x00, 0x01][..], PacketType::PubAck, 0b0001),
        (&[0xC8, 0x00][..], PacketType::PingReq, 0b1000),
        (&[0xE2, 0x00][..], PacketType::Disconnect, 0b0010),
    ] {
        for v in [V3, V4, V5] {
            assert_rejected(
                v,
                bytes,
                &DecodeError::InvalidFixedHeaderFlags { packet_type, flags },
                ReasonCode::MalformedPacket,
            );
        }
    }
}

#[test]
fn pubrel_subscribe_and_unsubscribe_require_flags_0010() {
    assert!(decode(V4, &[0x62, 0x02, 0x00, 0x01]).unwrap().is_some());
    assert!(
        decode(V4, &packet(0x82, &[0x00, 0x01, 0x00, 0x01, b'a', 0x00]))
            .unwrap()
            .is_some()
    );
    assert!(
        decode(V4, &packet(0xA2, &[0x00, 0x01, 0x00, 0x01, b'a']))
            .unwrap()
            .is_some()
    );
}

#[test]
fn packet_type_0_is_rejected() {
    for v in [None, V3, V4, V5] {
        assert_rejected(
            v,
            &[0x00, 0x00],
            &DecodeError::InvalidPacketType { packet_type: 0 },
            ReasonCode::MalformedPacket,
        );
    }
}

#[test]
fn packet_type_15_is_auth_only_at_mqtt5() {
    for v in [V3, V4] {
        assert_rejected(
            v,
            &[0xF0, 0x00],
            &DecodeError::InvalidPacketType { packet_type: 15 },
            ReasonCode::MalformedPacket,
        );
    }
    assert!(matches!(
        decode(V5, &[0xF0, 0x00]),
        Ok(Some(Packet::Auth(_)))
    ));
}

#[test]
fn first_packet_must_be_connect_mqtt_3_1_0_1() {
    assert_rejected(
        None,
        &[0xC0, 0x00],
        &DecodeError::FirstPacketNotConnect { packet_type: 12 },
        ReasonCode::ProtocolError,
    );
    // Refused from the first byte, before the rest arrives.
    assert_rejected(
        None,
        &[0x30],
        &DecodeError::FirstPacketNotConnect { packet_type: 3 },
        ReasonCode::ProtocolError,
    );
}

#[test]
fn remaining_length_over_four_bytes_is_malformed() {
    assert_rejected(
        V4,
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        &DecodeError::MalformedVariableByteInteger,
        ReasonCode::MalformedPacket,
    );
    // Detected as soon as the fourth length byte has its continuation bit.
    assert_rejected(
        V4,
        &[0x30, 0x80, 0x80, 0x80, 0x80],
        &DecodeError::MalformedVariableByteInteger,
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn remaining_length_not_in_shortest_form_is_malformed_mqtt_1_5_5_1() {
    assert_rejected(
        V4,
        &[0xC0, 0x80, 0x00],
        &DecodeError::MalformedVariableByteInteger,
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn packet_larger_than_the_maximum_is_rejected_with_packet_too_large() {
    let mut d = Decoder::new(16);
    d.set_version(ProtocolVersion::V5);
    // Fixed header only: 0x30, remaining length 15 -> 17 bytes in all.
    let err = d
        .decode(&mut BytesMut::from(&[0x30, 0x0F][..]))
        .unwrap_err();
    assert_eq!(err, DecodeError::PacketTooLarge { size: 17, max: 16 });
    assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
}

// --- body length ------------------------------------------------------------

#[test]
fn remaining_length_shorter_than_the_fields_is_malformed() {
    // CONNECT whose remaining length ends inside the protocol name.
    assert_rejected(
        None,
        &[0x10, 0x03, 0x00, 0x04, b'M'],
        &DecodeError::Truncated,
        ReasonCode::MalformedPacket,
    );
    // PUBACK with a one-byte packet identifier.
    assert_rejected(
        V4,
        &[0x40, 0x01, 0x00],
        &DecodeError::Truncated,
        ReasonCode::MalformedPacket,
    );
    // MQTT 5 property length running past the packet.
    assert_rejected(
        V5,
        &packet(0x30, &[0x00, 0x01, b't', 0x09, 0x01]),
        &DecodeError::Truncated,
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn bytes_after_the_last_field_are_malformed() {
    assert_rejected(
        V4,
        &[0xC0, 0x01, 0x00],
        &DecodeError::TrailingBytes { extra: 1 },
        ReasonCode::MalformedPacket,
    );
    assert_rejected(
        V4,
        &[0x40, 0x03, 0x00, 0x01, 0x00],
        &DecodeError::TrailingBytes { extra: 1 },
        ReasonCode::MalformedPacket,
    );
    assert_rejected(
        V4,
        &[0xE0, 0x01, 0x00],
        &DecodeError::TrailingBytes { extra: 1 },
        ReasonCode::MalformedPacket,
    );
    assert_rejected(
        None,
        &connect(b"MQTT", 4, 0x02, &[0x00, 0x01, b'c', 0xAA, 0xBB]),
        &DecodeError::TrailingBytes { extra: 2 },
        ReasonCode::MalformedPacket,
    );
}

// --- strings and topics -----------------------------------------------------

#[test]
fn malformed_utf8_is_rejected_mqtt_1_5_3_1() {
    // 0xC3 0x28: an invalid two-byte sequence.
    assert_rejected(
        V4,
        &packet(0x30, &[0x00, 0x02, 0xC3, 0x28]),
        &DecodeError::InvalidUtf8,
        ReasonCode::MalformedPacket,
    );
    // ED A0 80 encodes the surrogate U+D800, which UTF-8 excludes.
    assert_rejected(
        None,
        &connect(b"MQTT", 4, 0x02, &[0x00, 0x03, 0xED, 0xA0, 0x80]),
        &DecodeError::InvalidUtf8,
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn null_character_in_a_string_is_rejected_mqtt_1_5_3_2() {
    assert_rejected(
        V5,
        &packet(0x30, &[0x00, 0x03, b'a', 0x00, b'b', 0x00]),
        &DecodeError::NullCharacter,
        ReasonCode::MalformedPacket,
    );
    assert_rejected(
        None,
        &connect(b"MQTT", 4, 0x02, &[0x00, 0x01, 0x00]),
        &DecodeError::NullCharacter,
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn wildcards_in_a_topic_name_are_rejected_mqtt_3_3_2_2() {
    for topic in [&b"a/+"[..], b"#", b"a/#"] {
        let mut body = vec![0x00, u8::try_from(topic.len()).unwrap()];
        body.extend_from_slice(topic);
        assert_rejected(
            V4,
            &packet(0x30, &body),
            &DecodeError::InvalidTopicName(TopicError::WildcardInName),
            ReasonCode::TopicNameInvalid,
        );
    }
}

#[test]
fn empty_topic_name_is_rejected_before_mqtt5_mqtt_4_7_3_1() {
    assert_rejected(
        V4,
        &packet(0x30, &[0x00, 0x00, b'x']),
        &DecodeError::InvalidTopicName(TopicError::Empty),
        ReasonCode::TopicNameInvalid,
    );
}

#[test]
fn mqtt5_empty_topic_name_without_topic_alias_is_a_protocol_error() {
    assert_rejected(
        V5,
        &packet(0x30, &[0x00, 0x00, 0x00, b'x']),
        &DecodeError::EmptyTopicWithoutAlias,
        ReasonCode::ProtocolError,
    );
}

#[test]
fn mqtt5_empty_topic_name_with_properties_but_no_topic_alias_is_a_protocol_error() {
    // MQTT 5.0 §3.3.2.1: a zero-length topic needs a Topic Alias; here the
    // property list is not empty (Message Expiry Interval 60) but names none.
    assert_rejected(
        V5,
        &packet(
            0x30,
            &[0x00, 0x00, 0x05, 0x02, 0x00, 0x00, 0x00, 0x3C, b'x'],
        ),
        &DecodeError::EmptyTopicWithoutAlias,
        ReasonCode::ProtocolError,
    );
}

#[test]
fn wildcards_in_the_will_topic_are_rejected() {
    assert_rejected(
        None,
        &connect(
            b"MQTT",
            4,
            0x06,
            &[0x00, 0x01, b'c', 0x00, 0x01, b'#', 0x00, 0x00],
        ),
        &DecodeError::InvalidTopicName(TopicError::WildcardInName),
        ReasonCode::TopicNameInvalid,
    );
}

#[test]
fn invalid_topic_filters_are_rejected() {
    assert_rejected(
        V4,
        &packet(0x82, &[0x00, 0x01, 0x00, 0x03, b'a', b'#', b'b', 0x00]),
        &DecodeError::InvalidTopicFilter(TopicError::MisplacedMultiLevelWildcard),
        ReasonCode::TopicFilterInvalid,
    );
    assert_rejected(
        V4,
        &packet(0xA2, &[0x00, 0x01, 0x00, 0x00]),
        &DecodeError::InvalidTopicFilter(TopicError::Empty),
        ReasonCode::TopicFilterInvalid,
    );
}

// --- PUBLISH ----------------------------------------------------------------

#[test]
fn packet_id_0_is_rejected_mqtt_2_3_1_1() {
    for (bytes, packet_type) in [
        (
            packet(0x32, &[0x00, 0x01, b't', 0x00, 0x00]),
            PacketType::Publish,
        ),
        (
            packet(0x82, &[0x00, 0x00, 0x00, 0x01, b'a', 0x00]),
            PacketType::Subscribe,
        ),
        (
            packet(0xA2, &[0x00, 0x00, 0x00, 0x01, b'a']),
            PacketType::Unsubscribe,
        ),
        (vec![0x40, 0x02, 0x00, 0x00], PacketType::PubAck),
        (vec![0x62, 0x02, 0x00, 0x00], PacketType::PubRel),
        (vec![0x90, 0x03, 0x00, 0x00, 0x00], PacketType::SubAck),
    ] {
        assert_rejected(
            V4,
            &bytes,
            &DecodeError::ZeroPacketId { packet_type },
            ReasonCode::ProtocolError,
        );
    }
}

#[test]
fn publish_with_qos_3_is_rejected_mqtt_3_3_1_4() {
    assert_rejected(
        V4,
        &[0x36],
        &DecodeError::InvalidQoS,
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn dup_on_a_qos_0_publish_is_rejected_mqtt_3_3_1_2() {
    assert_rejected(
        V5,
        &packet(0x38, &[0x00, 0x01, b't', 0x00]),
        &DecodeError::DupAtQoS0,
        ReasonCode::ProtocolError,
    );
}

// --- properties -------------------------------------------------------------

#[test]
fn duplicate_properties_are_a_protocol_error() {
    // Message Expiry Interval twice.
    assert_rejected(
        V5,
        &publish5(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]),
        &DecodeError::DuplicateProperty { id: 0x02 },
        ReasonCode::ProtocolError,
    );
    // Subscription Identifier twice in a SUBSCRIBE (it may repeat only in PUBLISH).
    assert_rejected(
        V5,
        &packet(
            0x82,
            &[
                0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'a', 0x00,
            ],
        ),
        &DecodeError::DuplicateProperty { id: 0x0B },
        ReasonCode::ProtocolError,
    );
    // Receive Maximum twice in a CONNECT.
    assert_rejected(
        None,
        &connect5(&[0x21, 0x00, 0x01, 0x21, 0x00, 0x02]),
        &DecodeError::DuplicateProperty { id: 0x21 },
        ReasonCode::ProtocolError,
    );
}

#[test]
fn user_property_and_publish_subscription_identifier_may_repeat() {
    let props = [
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'w', 0x0B,
        0x01, 0x0B, 0x02,
    ];
    let Some(Packet::Publish(p)) = decode(V5, &publish5(&props)).unwrap() else {
        panic!()
    };
    assert_eq!(p.properties.user_properties.len(), 2);
    assert_eq!(p.properties.subscription_identifiers, [1, 2]);
}

#[test]
fn a_property_not_allowed_in_the_packet_is_malformed() {
    // Topic Alias (0x23) in a CONNECT.
    assert_rejected(
        None,
        &connect5(&[0x23, 0x00, 0x01]),
        &DecodeError::PropertyNotAllowed {
            id: 0x23,
            packet_type: PacketType::Connect,
        },
        ReasonCode::MalformedPacket,
    );
    // Session Expiry Interval (0x11) in a PUBLISH.
    assert_rejected(
        V5,
        &publish5(&[0x11, 0, 0, 0, 1]),
        &DecodeError::PropertyNotAllowed {
            id: 0x11,
            packet_type: PacketType::Publish,
        },
        ReasonCode::MalformedPacket,
    );
    // An identifier no property has.
    assert_rejected(
        V5,
        &[0x40, 0x05, 0x00, 0x01, 0x00, 0x01, 0x7F],
        &DecodeError::PropertyNotAllowed {
            id: 0x7F,
            packet_type: PacketType::PubAck,
        },
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn receive_maximum_0_is_a_protocol_error() {
    assert_rejected(
        None,
        &connect5(&[0x21, 0x00, 0x00]),
        &DecodeError::InvalidPropertyValue { id: 0x21, value: 0 },
        ReasonCode::ProtocolError,
    );
}

#[test]
fn maximum_packet_size_0_is_a_protocol_error() {
    assert_rejected(
        None,
        &connect5(&[0x27, 0, 0, 0, 0]),
        &DecodeError::InvalidPropertyValue { id: 0x27, value: 0 },
        ReasonCode::ProtocolError,
    );
}

#[test]
fn topic_alias_0_is_rejected_mqtt_3_3_2_8() {
    assert_rejected(
        V5,
        &publish5(&[0x23, 0x00, 0x00]),
        &DecodeError::TopicAliasZero,
        ReasonCode::TopicAliasInvalid,
    );
}

#[test]
fn payload_format_indicator_over_1_is_a_protocol_error() {
    assert_rejected(
        V5,
        &publish5(&[0x01, 0x02]),
        &DecodeError::InvalidPropertyValue { id: 0x01, value: 2 },
        ReasonCode::ProtocolError,
    );
}

#[test]
fn request_problem_information_over_1_is_a_protocol_error() {
    assert_rejected(
        None,
        &connect5(&[0x17, 0x02]),
        &DecodeError::InvalidPropertyValue { id: 0x17, value: 2 },
        ReasonCode::ProtocolError,
    );
}

#[test]
fn maximum_qos_over_1_is_a_protocol_error() {
    assert_rejected(
        V5,
        &packet(0x20, &[0x00, 0x00, 0x02, 0x24, 0x02]),
        &DecodeError::InvalidPropertyValue { id: 0x24, value: 2 },
        ReasonCode::ProtocolError,
    );
}

#[test]
fn subscription_identifier_0_is_a_protocol_error() {
    assert_rejected(
        V5,
        &packet(
            0x82,
            &[0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, b'a', 0x00],
        ),
        &DecodeError::InvalidPropertyValue { id: 0x0B, value: 0 },
        ReasonCode::ProtocolError,
    );
    assert_rejected(
        V5,
        &publish5(&[0x0B, 0x00]),
        &DecodeError::InvalidPropertyValue { id: 0x0B, value: 0 },
        ReasonCode::ProtocolError,
    );
}

#[test]
fn authentication_data_without_method_is_a_protocol_error() {
    assert_rejected(
        None,
        &connect5(&[0x16, 0x00, 0x01, 0xAB]),
        &DecodeError::AuthenticationDataWithoutMethod,
        ReasonCode::ProtocolError,
    );
}

#[test]
fn response_topic_with_wildcards_is_rejected_mqtt_3_3_2_14() {
    assert_rejected(
        V5,
        &publish5(&[0x08, 0x00, 0x01, b'+']),
        &DecodeError::InvalidTopicName(TopicError::WildcardInName),
        ReasonCode::TopicNameInvalid,
    );
}

// --- SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------

#[test]
fn subscribe_without_filters_is_rejected_mqtt_3_8_3_3() {
    assert_rejected(
        V4,
        &[0x82, 0x02, 0x00, 0x01],
        &DecodeError::SubscribeWithoutFilters,
        ReasonCode::ProtocolError,
    );
    assert_rejected(
        V5,
        &[0x82, 0x03, 0x00, 0x01, 0x00],
        &DecodeError::SubscribeWithoutFilters,
        ReasonCode::ProtocolError,
    );
}

#[test]
fn unsubscribe_without_filters_is_rejected_mqtt_3_10_3_2() {
    assert_rejected(
        V4,
        &[0xA2, 0x02, 0x00, 0x01],
        &DecodeError::UnsubscribeWithoutFilters,
        ReasonCode::ProtocolError,
    );
}

#[test]
fn subscription_options_with_reserved_bits_are_malformed_mqtt_3_8_3_5() {
    // Bits 7-6 at MQTT 5, bits 7-2 before.
    for (version, options) in [(V5, 0x40), (V5, 0x80), (V4, 0x04), (V3, 0x10)] {
        let mut body = vec![0x00, 0x01];
        if version == V5 {
            body.push(0x00); // property length
        }
        body.extend_from_slice(&[0x00, 0x01, b'a', options]);
        assert_rejected(
            version,
            &packet(0x82, &body),
            &DecodeError::InvalidSubscriptionOptions { options },
            ReasonCode::MalformedPacket,
        );
    }
}

#[test]
fn subscription_qos_3_is_malformed() {
    assert_rejected(
        V4,
        &packet(0x82, &[0x00, 0x01, 0x00, 0x01, b'a', 0x03]),
        &DecodeError::InvalidSubscriptionOptions { options: 0x03 },
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn subscription_maximum_qos_3_is_a_protocol_error_at_mqtt5() {
    // MQTT 5.0 §3.8.3.1: "It is a Protocol Error if the Maximum QoS field
    // has the value 3."
    assert_rejected(
        V5,
        &packet(0x82, &[0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x03]),
        &DecodeError::InvalidSubscriptionQoS,
        ReasonCode::ProtocolError,
    );
}

#[test]
fn retain_handling_3_is_a_protocol_error() {
    assert_rejected(
        V5,
        &packet(0x82, &[0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30]),
        &DecodeError::InvalidRetainHandling,
        ReasonCode::ProtocolError,
    );
}

#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error_mqtt_3_8_3_4() {
    let mut body = vec![0x00, 0x01, 0x00, 0x00, 0x0A];
    body.extend_from_slice(b"$share/g/a");
    body.push(0x04);
    assert_rejected(
        V5,
        &packet(0x82, &body),
        &DecodeError::NoLocalOnSharedSubscription,
        ReasonCode::ProtocolError,
    );
}

// --- CONNECT ----------------------------------------------------------------

#[test]
fn connect_reserved_flag_is_malformed_mqtt_3_1_2_3() {
    assert_rejected(
        None,
        &connect(b"MQTT", 4, 0x03, &[0x00, 0x01, b'c']),
        &DecodeError::ConnectReservedFlag,
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn will_qos_without_will_flag_is_malformed_mqtt_3_1_2_13() {
    assert_rejected(
        None,
        &connect(b"MQTT", 4, 0x08, &[0x00, 0x01, b'c']),
        &DecodeError::WillQoSWithoutWill,
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn will_retain_without_will_flag_is_malformed_mqtt_3_1_2_15() {
    assert_rejected(
        None,
        &connect(b"MQTT", 5, 0x20, &[0x00, 0x00, 0x01, b'c']),
        &DecodeError::WillRetainWithoutWill,
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn will_qos_3_is_malformed_mqtt_3_1_2_14() {
    assert_rejected(
        None,
        &connect(
            b"MQTT",
            4,
            0x1C,
            &[0x00, 0x01, b'c', 0x00, 0x01, b'w', 0x00, 0x00],
        ),
        &DecodeError::InvalidWillQoS,
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn password_without_user_name_is_rejected_at_levels_3_and_4_mqtt_3_1_2_22() {
    let rest = [0x00, 0x01, b'c', 0x00, 0x01, b'p'];
    for (name, level) in [(&b"MQIsdp"[..], 3), (b"MQTT", 4)] {
        assert_rejected(
            None,
            &connect(name, level, 0x42, &rest),
            &DecodeError::PasswordWithoutUsername,
            ReasonCode::MalformedPacket,
        );
    }
}

#[test]
fn mqtt5_allows_a_password_without_a_user_name() {
    let bytes = connect(
        b"MQTT",
        5,
        0x42,
        &[0x00, 0x00, 0x01, b'c', 0x00, 0x01, b'p'],
    );
    let Some(Packet::Connect(c)) = decode(None, &bytes).unwrap() else {
        panic!()
    };
    assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
    assert_eq!(c.username, None);
}

#[test]
fn unknown_protocol_name_or_level_is_unsupported_protocol_version() {
    for (name, level) in [
        (&b"MQTT"[..], 6),
        (b"MQTT", 3),
        (b"MQIsdp", 4),
        (b"MQTX", 4),
        (b"", 4),
    ] {
        let err = decode(None, &connect(name, level, 0x02, &[0x00, 0x01, b'c'])).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnsupportedProtocol {
                name: ByteStr::from(std::str::from_utf8(name).unwrap()),
                level
            }
        );
        // A server answers CONNACK 0x84, or return code 0x01 when encoded at 3.1.1.
        assert_eq!(err.reason_code(), ReasonCode::UnsupportedProtocolVersion);
        assert!(err.is_unsupported_protocol());
        assert_eq!(err.reason_code().to_connack_return_code(), 0x01);
    }
}

#[test]
fn a_second_connect_is_decoded_and_resets_the_level() {
    // Refusing a second CONNECT [MQTT-3.1.0-2] is the session's job; the
    // decoder reports it faithfully.
    let mut d = Decoder::default();
    d.set_version(ProtocolVersion::V5);
    let mut buf = BytesMut::from(&connect(b"MQTT", 4, 0x02, &[0x00, 0x01, b'c'])[..]);
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Connect(_)))));
    assert_eq!(d.version(), Some(ProtocolVersion::V311));
}

// --- CONNACK and reason codes -------------------------------------------------

#[test]
fn mqtt31_connack_has_no_session_present_flag() {
    assert_rejected(
        V3,
        &[0x20, 0x02, 0x01, 0x00],
        &DecodeError::ConnAckReservedFlags { flags: 0x01 },
        ReasonCode::MalformedPacket,
    );
    assert_rejected(
        V4,
        &[0x20, 0x02, 0x02, 0x00],
        &DecodeError::ConnAckReservedFlags { flags: 0x02 },
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn session_present_with_a_refusal_is_a_protocol_error_mqtt_3_2_2_4() {
    assert_rejected(
        V4,
        &[0x20, 0x02, 0x01, 0x05],
        &DecodeError::SessionPresentWithError,
        ReasonCode::ProtocolError,
    );
}

#[test]
fn reason_codes_not_allowed_in_the_packet_are_rejected() {
    let cases: [(Option<ProtocolVersion>, &[u8], PacketType, u8); 7] = [
        // 3.1.1 CONNACK return codes stop at 5.
        (V4, &[0x20, 0x02, 0x00, 0x06], PacketType::ConnAck, 0x06),
        // 3.1.1 SUBACK: 0, 1, 2 or 0x80.
        (
            V4,
            &[0x90, 0x03, 0x00, 0x01, 0x03],
            PacketType::SubAck,
            0x03,
        ),
        // Topic Filter invalid is not a PUBACK reason.
        (
            V5,
            &[0x40, 0x03, 0x00, 0x01, 0x8F],
            PacketType::PubAck,
            0x8F,
        ),
        // 0x03 is no reason code at all.
        (
            V5,
            &[0x50, 0x03, 0x00, 0x01, 0x03],
            PacketType::PubRec,
            0x03,
        ),
        // Granted QoS 1 is not a CONNACK reason.
        (
            V5,
            &[0x20, 0x03, 0x00, 0x01, 0x00],
            PacketType::ConnAck,
            0x01,
        ),
        // Continue authentication is not a DISCONNECT reason.
        (V5, &[0xE0, 0x01, 0x18], PacketType::Disconnect, 0x18),
        // Success is the only AUTH code under 0x18.
        (V5, &[0xF0, 0x01, 0x87], PacketType::Auth, 0x87),
    ];
    for (version, bytes, packet_type, code) in cases {
        assert_rejected(
            version,
            bytes,
            &DecodeError::InvalidReasonCode { packet_type, code },
            ReasonCode::MalformedPacket,
        );
    }
}

// --- encoder refusals ---------------------------------------------------------

fn encode_err(packet: &Packet, version: ProtocolVersion) -> EncodeError {
    let mut buf = BytesMut::new();
    let err = encode(packet, version, &mut buf).expect_err("encode must refuse");
    assert!(buf.is_empty(), "nothing is written on error");
    err
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

#[test]
fn auth_cannot_be_encoded_before_mqtt5() {
    let auth = Packet::Auth(Box::new(Auth {
        reason_code: ReasonCode::Success,
        properties: AuthProperties::default(),
    }));
    assert_eq!(
        encode_err(&auth, ProtocolVersion::V311),
        EncodeError::NotAvailable {
            packet_type: PacketType::Auth,
            version: ProtocolVersion::V311
        }
    );
}

#[test]
fn strings_longer_than_65535_bytes_cannot_be_encoded() {
    let props = ConnAckProperties {
        reason_string: Some(ByteStr::from("r".repeat(65_536))),
        ..ConnAckProperties::default()
    };
    let packet = Packet::ConnAck(Box::new(ConnAck {
        session_present: false,
        reason_code: ReasonCode::Success,
        properties: props,
    }));
    assert_eq!(
        encode_err(&packet, ProtocolVersion::V5),
        EncodeError::FieldTooLong {
            field: "reason string",
            len: 65_536
        }
    );
}

fn qos1_publish() -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new("t").unwrap(),
        packet_id: Some(pid(1)),
        properties: PublishProps::new(),
        payload: Bytes::new(),
    }
}

#[test]
fn publish_encoding_enforces_packet_id_dup_and_topic_rules() {
    let mut no_id = qos1_publish();
    no_id.packet_id = None;
    assert_eq!(
        encode_err(&Packet::Publish(no_id), ProtocolVersion::V311),
        EncodeError::MissingPacketId
    );

    let mut dup0 = qos1_publish();
    dup0.qos = QoS::AtMostOnce;
    dup0.dup = true;
    assert_eq!(
        encode_err(&Packet::Publish(dup0), ProtocolVersion::V5),
        EncodeError::DupAtQoS0
    );

    let mut alias_only = qos1_publish();
    alias_only.topic = TopicName::empty_for_alias();
    alias_only.properties.make_mut().topic_alias = Some(1);
    // No topic aliases before MQTT 5.
    assert_eq!(
        encode_err(&Packet::Publish(alias_only.clone()), ProtocolVersion::V311),
        EncodeError::EmptyTopic
    );
    alias_only.properties.make_mut().topic_alias = None;
    assert_eq!(
        encode_err(&Packet::Publish(alias_only), ProtocolVersion::V5),
        EncodeError::EmptyTopic
    );

    let mut alias0 = qos1_publish();
    alias0.properties.make_mut().topic_alias = Some(0);
    assert_eq!(
        encode_err(&Packet::Publish(alias0), ProtocolVersion::V5),
        EncodeError::InvalidPropertyValue { id: 0x23, value: 0 }
    );
}

#[test]
fn subscribe_and_unsubscribe_without_filters_cannot_be_encoded() {
    let sub = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: Vec::new(),
        properties: SubscribeProperties::default(),
    });
    assert_eq!(
        encode_err(&sub, ProtocolVersion::V311),
        EncodeError::SubscribeWithoutFilters
    );
    let unsub = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(1),
        filters: Vec::new(),
        properties: UnsubscribeProperties::default(),
    });
    assert_eq!(
        encode_err(&unsub, ProtocolVersion::V5),
        EncodeError::UnsubscribeWithoutFilters
    );
}

#[test]
fn no_local_on_a_shared_subscription_cannot_be_encoded() {
    let sub = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![(
            TopicFilter::new("$share/g/a").unwrap(),
            SubscriptionOptions {
                no_local: true,
                ..Default::default()
            },
        )],
        properties: SubscribeProperties::default(),
    });
    assert_eq!(
        encode_err(&sub, ProtocolVersion::V5),
        EncodeError::NoLocalOnSharedSubscription
    );
}

#[test]
fn password_without_user_name_cannot_be_encoded_before_mqtt5() {
    let c = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        keep_alive: 0,
        client_id: ByteStr::from("c"),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"p")),
        properties: ConnectProperties::default(),
    }));
    assert_eq!(
        encode_err(&c, ProtocolVersion::V311),
        EncodeError::PasswordWithoutUsername
    );
}

#[test]
fn reason_codes_a_packet_cannot_carry_are_refused() {
    let ack = Packet::PubAck(PubAck {
        packet_id: pid(1),
        reason_code: ReasonCode::GrantedQoS1,
        properties: AckProperties::default(),
    });
    assert_eq!(
        encode_err(&ack, ProtocolVersion::V5),
        EncodeError::ReasonCodeNotAllowed {
            packet_type: PacketType::PubAck,
            code: ReasonCode::GrantedQoS1
        }
    );
    let suback = Packet::SubAck(SubAck {
        packet_id: pid(1),
        reason_codes: vec![ReasonCode::NoMatchingSubscribers],
        properties: AckProperties::default(),
    });
    assert_eq!(
        encode_err(&suback, ProtocolVersion::V311),
        EncodeError::ReasonCodeNotAllowed {
            packet_type: PacketType::SubAck,
            code: ReasonCode::NoMatchingSubscribers
        }
    );
}

#[test]
fn refusing_connack_with_session_present_cannot_be_encoded() {
    let c = Packet::ConnAck(Box::new(ConnAck {
        session_present: true,
        reason_code: ReasonCode::NotAuthorized,
        properties: ConnAckProperties::default(),
    }));
    assert_eq!(
        encode_err(&c, ProtocolVersion::V311),
        EncodeError::SessionPresentWithError
    );
}

#[test]
fn subscription_identifier_out_of_range_cannot_be_encoded() {
    let sub = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![(
            TopicFilter::new("a").unwrap(),
            SubscriptionOptions::default(),
        )],
        properties: SubscribeProperties {
            subscription_identifier: Some(268_435_456),
            user_properties: Vec::new(),
        },
    });
    assert_eq!(
        encode_err(&sub, ProtocolVersion::V5),
        EncodeError::InvalidPropertyValue {
            id: 0x0B,
            value: 268_435_456
        }
    );
}

// --- topic names on both sides of the inline capacity -------------------------

/// A QoS 1 PUBLISH (MQTT 3.1.1) to `topic` with packet id `id`.
fn publish4(topic: &[u8], id: u16) -> Vec<u8> {
    let mut body = u16::try_from(topic.len()).unwrap().to_be_bytes().to_vec();
    body.extend_from_slice(topic);
    body.extend_from_slice(&id.to_be_bytes());
    body.push(b'x');
    packet(0x32, &body)
}

#[test]
fn topic_name_rules_hold_for_inline_and_shared_topics_mqtt_3_3_2_2() {
    // A topic of up to TopicName::INLINE_CAPACITY bytes is copied out of
    // the frame, a longer one shares it: the checks are the same.
    for len in [
        1,
        TopicName::INLINE_CAPACITY - 1,
        TopicName::INLINE_CAPACITY,
        TopicName::INLINE_CAPACITY + 1,
        100, // the remaining length stays one byte (`packet`)
    ] {
        for (last, expected, reason) in [
            // [MQTT-3.3.2-2]
            (
                &b"+"[..],
                DecodeError::InvalidTopicName(TopicError::WildcardInName),
                ReasonCode::TopicNameInvalid,
            ),
            (
                b"#",
                DecodeError::InvalidTopicName(TopicError::WildcardInName),
                ReasonCode::TopicNameInvalid,
            ),
            // [MQTT-1.5.3-2]
            (
                b"\0",
                DecodeError::NullCharacter,
                ReasonCode::MalformedPacket,
            ),
            // [MQTT-1.5.3-1]: a lone continuation byte.
            (
                b"\x80",
                DecodeError::InvalidUtf8,
                ReasonCode::MalformedPacket,
            ),
        ] {
            let mut topic = vec![b'a'; len - 1];
            topic.extend_from_slice(last);
            assert_rejected(V4, &publish4(&topic, 7), &expected, reason);
        }
        let topic = vec![b'a'; len];
        let Ok(Some(Packet::Publish(p))) = decode(V4, &publish4(&topic, 7)) else {
            panic!("a valid {len}-byte topic is accepted");
        };
        assert_eq!(p.topic.as_bytes(), &topic[..]);
        assert_eq!(p.topic.is_inline(), len <= TopicName::INLINE_CAPACITY);
    }
}

#[test]
fn a_topic_error_and_a_zero_packet_id_are_reported_in_wire_order() {
    // The topic's UTF-8 comes before the packet id [MQTT-1.5.3-1]; the
    // packet id [MQTT-2.3.1-1] before the wildcard check [MQTT-3.3.2-2].
    for len in [TopicName::INLINE_CAPACITY, TopicName::INLINE_CAPACITY + 1] {
        let mut topic = vec![b'a'; len - 1];
        topic.push(0xFF);
        assert_rejected(
            V4,
            &publish4(&topic, 0),
            &DecodeError::InvalidUtf8,
            ReasonCode::MalformedPacket,
        );
        *topic.last_mut().unwrap() = b'+';
        assert_rejected(
            V4,
            &publish4(&topic, 0),
            &DecodeError::ZeroPacketId {
                packet_type: PacketType::Publish,
            },
            ReasonCode::ProtocolError,
        );
    }
}
