//! Byte-literal decode tests: the examples and structures the specifications
//! give (MQTT 3.1.1, OASIS 2014; MQTT 5.0, OASIS 2019), each citing its
//! section.

use bytes::{Bytes, BytesMut};
use myqtt_core::codec::{
    ConnAck, DecodeError, Decoder, Disconnect, Packet, PacketId, ProtocolVersion, PubAck, Publish,
    PublishProps, QoS, ReasonCode, SubscriptionOptions, encode, encoded_len,
};
use myqtt_core::topic::TopicName;

fn decoder(version: Option<ProtocolVersion>) -> Decoder {
    let mut d = Decoder::default();
    if let Some(v) = version {
        d.set_version(v);
    }
    d
}

/// Decodes exactly one packet from `bytes` and checks nothing is left over.
fn decode_one(version: Option<ProtocolVersion>, bytes: &[u8]) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decoder(version)
        .decode(&mut buf)
        .unwrap()
        .expect("a whole packet");
    assert!(buf.is_empty());
    packet
}

/// `body` with the fixed header of a packet of `first` byte prepended.
fn with_header(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first, u8::try_from(body.len()).expect("short body")];
    v.extend_from_slice(body);
    v
}

#[test]
fn connect_variable_header_example_of_311_section_3_1_2_10() {
    // MQTT 3.1.1 §3.1.2.10, figure 3.6: "MQTT", level 4, flags 0xCE (user
    // name, password, will QoS 1, will, clean session), keep alive 10.
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xCE, 0x00, 0x0A];
    // Payload (§3.1.3): client id, will topic, will message, user name, password.
    body.extend_from_slice(&[0x00, 0x02, b'c', b'1']);
    body.extend_from_slice(&[0x00, 0x01, b'w']);
    body.extend_from_slice(&[0x00, 0x03, b'b', b'y', b'e']);
    body.extend_from_slice(&[0x00, 0x01, b'u']);
    body.extend_from_slice(&[0x00, 0x01, b'p']);
    let Packet::Connect(c) = decode_one(None, &with_header(0x10, &body)) else {
        panic!()
    };
    assert_eq!(c.protocol, ProtocolVersion::V311);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 10);
    assert_eq!(c.client_id, "c1");
    let will = c.will.as_ref().expect("will flag is set");
    assert_eq!(will.qos, QoS::AtLeastOnce);
    assert!(!will.retain);
    assert_eq!(will.topic.as_str(), "w");
    assert_eq!(&will.payload[..], b"bye");
    assert_eq!(c.username.as_deref(), Some("u"));
    assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
}

#[test]
fn connect_variable_header_example_of_50_section_3_1_2_11() {
    // MQTT 5.0 §3.1.2.11, figure 3-6: as 3.1.1 but version 5 and properties
    // of length 5: Session Expiry Interval (17) = 10.
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xCE, 0x00, 0x0A];
    body.extend_from_slice(&[0x05, 0x11, 0x00, 0x00, 0x00, 0x0A]);
    body.extend_from_slice(&[0x00, 0x02, b'c', b'1']);
    body.push(0x00); // will properties (§3.1.3.2): none
    body.extend_from_slice(&[0x00, 0x01, b'w']);
    body.extend_from_slice(&[0x00, 0x03, b'b', b'y', b'e']);
    body.extend_from_slice(&[0x00, 0x01, b'u']);
    body.extend_from_slice(&[0x00, 0x01, b'p']);
    let Packet::Connect(c) = decode_one(None, &with_header(0x10, &body)) else {
        panic!()
    };
    assert_eq!(c.protocol, ProtocolVersion::V5);
    assert_eq!(c.keep_alive, 10);
    assert_eq!(c.properties.session_expiry_interval, Some(10));
    assert_eq!(c.will.as_ref().map(|w| w.qos), Some(QoS::AtLeastOnce));
}

#[test]
fn mqtt31_connect_carries_protocol_name_mqisdp_level_3() {
    // MQTT 3.1 §3.1: protocol name "MQIsdp", version 3.
    let body = [
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3C, 0x00, 0x01, b'x',
    ];
    let Packet::Connect(c) = decode_one(None, &with_header(0x10, &body)) else {
        panic!()
    };
    assert_eq!(c.protocol, ProtocolVersion::V31);
    assert_eq!(c.keep_alive, 60);
    assert!(c.clean_start);
}

#[test]
fn connack_structure_of_311_section_3_2() {
    // MQTT 3.1.1 §3.2: 0x20, remaining length 2, flags (session present), return code.
    let Packet::ConnAck(ack) = decode_one(Some(ProtocolVersion::V311), &[0x20, 0x02, 0x01, 0x00])
    else {
        panic!()
    };
    assert_eq!(
        ack,
        Box::new(ConnAck {
            session_present: true,
            reason_code: ReasonCode::Success,
            properties: myqtt_core::codec::ConnAckProperties::default()
        })
    );
    let Packet::ConnAck(refused) =
        decode_one(Some(ProtocolVersion::V311), &[0x20, 0x02, 0x00, 0x05])
    else {
        panic!()
    };
    assert_eq!(
        refused.reason_code,
        ReasonCode::NotAuthorized,
        "0x05: not authorized"
    );
}

#[test]
fn connack_structure_of_50_section_3_2_with_property_length() {
    // MQTT 5.0 §3.2.2: flags, reason code 0x87, properties: Reason String "no".
    let bytes = [0x20, 0x08, 0x00, 0x87, 0x05, 0x1F, 0x00, 0x02, b'n', b'o'];
    let Packet::ConnAck(ack) = decode_one(Some(ProtocolVersion::V5), &bytes) else {
        panic!()
    };
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    assert_eq!(ack.properties.reason_string.as_deref(), Some("no"));
}

#[test]
fn publish_with_packet_identifier_example_of_311_section_3_3_2_3() {
    // MQTT 3.1.1 §3.3.2.3, figure 3.11: topic "a/b", packet identifier 10.
    let body = [0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i'];
    let packet = decode_one(Some(ProtocolVersion::V311), &with_header(0x32, &body));
    assert_eq!(
        packet,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::new("a/b").unwrap(),
            packet_id: PacketId::new(10),
            properties: PublishProps::new(),
            payload: Bytes::from_static(b"hi"),
        })
    );
}

#[test]
fn publish_fixed_header_flags_of_311_section_3_3_1() {
    // MQTT 3.1.1 §3.3.1: DUP bit 3, QoS bits 2-1, RETAIN bit 0.
    let body = [0x00, 0x01, b't', 0x12, 0x34];
    let Packet::Publish(p) = decode_one(Some(ProtocolVersion::V311), &with_header(0x3D, &body))
    else {
        panic!()
    };
    assert!(p.dup && p.retain);
    assert_eq!(p.qos, QoS::ExactlyOnce);
    assert_eq!(p.packet_id.map(PacketId::get), Some(0x1234));
    assert!(p.payload.is_empty());
}

#[test]
fn mqtt5_publish_with_property_length_of_50_section_3_3_2_3() {
    // MQTT 5.0 §3.3.2.3: properties follow the packet identifier; here Topic
    // Alias (0x23) = 1 and Payload Format Indicator (0x01) = 1.
    let body = [
        0x00, 0x01, b't', 0x00, 0x01, 0x05, 0x23, 0x00, 0x01, 0x01, 0x01, b'x',
    ];
    let Packet::Publish(p) = decode_one(Some(ProtocolVersion::V5), &with_header(0x32, &body))
    else {
        panic!()
    };
    assert_eq!(p.properties.topic_alias, Some(1));
    assert_eq!(p.properties.payload_format_indicator, Some(true));
    assert_eq!(&p.payload[..], b"x");
}

#[test]
fn puback_pubrec_pubrel_pubcomp_structures_of_311_sections_3_4_to_3_7() {
    let v = Some(ProtocolVersion::V311);
    let id = PacketId::new(0x0102).unwrap();
    assert_eq!(
        decode_one(v, &[0x40, 0x02, 0x01, 0x02]),
        Packet::PubAck(PubAck::new(id))
    );
    assert_eq!(
        decode_one(v, &[0x50, 0x02, 0x01, 0x02]),
        Packet::PubRec(PubAck::new(id))
    );
    // §3.6.1: PUBREL's fixed header flags are 0010.
    assert_eq!(
        decode_one(v, &[0x62, 0x02, 0x01, 0x02]),
        Packet::PubRel(PubAck::new(id))
    );
    assert_eq!(
        decode_one(v, &[0x70, 0x02, 0x01, 0x02]),
        Packet::PubComp(PubAck::new(id))
    );
}

#[test]
fn mqtt5_puback_short_forms_of_50_section_3_4_2_1() {
    // MQTT 5.0 §3.4.2.1: remaining length 2 means Success, no properties;
    // remaining length 3 carries a reason code without a property length.
    let v = Some(ProtocolVersion::V5);
    let Packet::PubAck(ok) = decode_one(v, &[0x40, 0x02, 0x00, 0x01]) else {
        panic!()
    };
    assert_eq!(ok.reason_code, ReasonCode::Success);
    let Packet::PubAck(nomatch) = decode_one(v, &[0x40, 0x03, 0x00, 0x01, 0x10]) else {
        panic!()
    };
    assert_eq!(nomatch.reason_code, ReasonCode::NoMatchingSubscribers);
    assert_eq!(
        nomatch.properties,
        myqtt_core::codec::AckProperties::default()
    );
}

#[test]
fn subscribe_payload_example_of_311_section_3_8_3() {
    // MQTT 3.1.1 §3.8.3, figure 3.23: "a/b" QoS 1, "c/d" QoS 2, packet id 10.
    let body = [
        0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd', 0x02,
    ];
    let Packet::Subscribe(s) = decode_one(Some(ProtocolVersion::V311), &with_header(0x82, &body))
    else {
        panic!()
    };
    assert_eq!(s.packet_id.get(), 10);
    let got: Vec<_> = s.filters.iter().map(|(f, o)| (f.as_str(), o.qos)).collect();
    assert_eq!(got, [("a/b", QoS::AtLeastOnce), ("c/d", QoS::ExactlyOnce)]);
}

#[test]
fn subscription_options_byte_of_50_section_3_8_3_1() {
    // MQTT 5.0 §3.8.3.1: QoS bits 0-1, No Local bit 2, Retain As Published
    // bit 3, Retain Handling bits 4-5. 0x2E = RH 2, RAP, NL, QoS 2.
    let body = [0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x2E];
    let Packet::Subscribe(s) = decode_one(Some(ProtocolVersion::V5), &with_header(0x82, &body))
    else {
        panic!()
    };
    assert_eq!(
        s.filters[0].1,
        SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: myqtt_core::codec::RetainHandling::DoNotSend,
        }
    );
}

#[test]
fn suback_return_codes_example_of_311_section_3_9_3() {
    // MQTT 3.1.1 §3.9.3, figure 3.26: 0x00, 0x01, 0x02 granted, 0x80 failure.
    let body = [0x00, 0x0A, 0x00, 0x01, 0x02, 0x80];
    let Packet::SubAck(ack) = decode_one(Some(ProtocolVersion::V311), &with_header(0x90, &body))
    else {
        panic!()
    };
    assert_eq!(
        ack.reason_codes,
        [
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError
        ]
    );
}

#[test]
fn unsubscribe_payload_example_of_311_section_3_10_3() {
    // MQTT 3.1.1 §3.10.3, figure 3.30: "a/b", "c/d".
    let body = [
        0x00, 0x0B, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'd',
    ];
    let Packet::Unsubscribe(u) = decode_one(Some(ProtocolVersion::V311), &with_header(0xA2, &body))
    else {
        panic!()
    };
    let got: Vec<_> = u
        .filters
        .iter()
        .map(myqtt_core::topic::TopicFilter::as_str)
        .collect();
    assert_eq!(got, ["a/b", "c/d"]);
}

#[test]
fn unsuback_pings_and_disconnect_structures_of_311_sections_3_11_to_3_14() {
    let v = Some(ProtocolVersion::V311);
    let Packet::UnsubAck(u) = decode_one(v, &[0xB0, 0x02, 0x00, 0x0B]) else {
        panic!()
    };
    assert_eq!(u.packet_id.get(), 11);
    assert!(u.reason_codes.is_empty());
    assert_eq!(decode_one(v, &[0xC0, 0x00]), Packet::PingReq);
    assert_eq!(decode_one(v, &[0xD0, 0x00]), Packet::PingResp);
    assert_eq!(
        decode_one(v, &[0xE0, 0x00]),
        Packet::Disconnect(Disconnect::normal())
    );
}

#[test]
fn mqtt5_disconnect_short_forms_of_50_section_3_14_2() {
    // MQTT 5.0 §3.14.2.1: remaining length 0 is Normal disconnection; a lone
    // reason code needs no property length.
    let v = Some(ProtocolVersion::V5);
    assert_eq!(
        decode_one(v, &[0xE0, 0x00]),
        Packet::Disconnect(Disconnect::normal())
    );
    assert_eq!(
        decode_one(v, &[0xE0, 0x01, 0x8E]),
        Packet::Disconnect(Disconnect::with_reason(ReasonCode::SessionTakenOver))
    );
}

#[test]
fn mqtt5_auth_structure_of_50_section_3_15() {
    // MQTT 5.0 §3.15: 0xF0; reason 0x18 Continue authentication; properties:
    // Authentication Method "X".
    let bytes = [0xF0, 0x06, 0x18, 0x04, 0x15, 0x00, 0x01, b'X'];
    let Packet::Auth(a) = decode_one(Some(ProtocolVersion::V5), &bytes) else {
        panic!()
    };
    assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication);
    assert_eq!(a.properties.authentication_method.as_deref(), Some("X"));
}

/// The remaining-length encodings of MQTT 3.1.1 §2.2.3 table 2.4 and MQTT
/// 5.0 §1.5.5 table 1-1: the first and last value of each byte count.
const REMAINING_LENGTHS: [(u32, &[u8]); 8] = [
    (0, &[0x00]),
    (127, &[0x7F]),
    (128, &[0x80, 0x01]),
    (16_383, &[0xFF, 0x7F]),
    (16_384, &[0x80, 0x80, 0x01]),
    (2_097_151, &[0xFF, 0xFF, 0x7F]),
    (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
];

#[test]
fn remaining_length_encodings_of_311_section_2_2_3_are_read_from_the_fixed_header() {
    // A one-byte limit makes the decoder report the size it read from the
    // fixed header alone: 1 type byte + the length bytes + the value.
    for (value, encoded) in REMAINING_LENGTHS {
        let mut bytes = vec![0x30];
        bytes.extend_from_slice(encoded);
        let mut d = Decoder::new(1);
        d.set_version(ProtocolVersion::V311);
        let size = 1 + encoded.len() as u32 + value;
        assert_eq!(
            d.decode(&mut BytesMut::from(&bytes[..])),
            Err(DecodeError::PacketTooLarge { size, max: 1 }),
            "remaining length {value}"
        );
    }
}

fn publish_with_remaining_length(remaining: usize) -> Packet {
    // Topic "t" takes 3 bytes; QoS 0 has no packet id.
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: TopicName::new("t").unwrap(),
        packet_id: None,
        properties: PublishProps::new(),
        payload: Bytes::from(vec![0u8; remaining - 3]),
    })
}

#[test]
fn remaining_length_encodings_of_311_section_2_2_3_are_written_and_decoded() {
    for (value, encoded) in REMAINING_LENGTHS {
        if !(3..=2_097_152).contains(&value) {
            continue; // too small for a PUBLISH / too big to build in a unit test
        }
        let packet = publish_with_remaining_length(value as usize);
        let mut buf = BytesMut::new();
        encode(&packet, ProtocolVersion::V311, &mut buf).unwrap();
        assert_eq!(&buf[1..=encoded.len()], encoded, "remaining length {value}");
        let mut d = decoder(Some(ProtocolVersion::V311));
        assert_eq!(d.decode(&mut buf).unwrap(), Some(packet));
    }
}

#[test]
fn largest_remaining_length_is_measured_and_one_more_is_refused() {
    // 268,435,455 is the largest remaining length (§2.2.3). The zeroed
    // payload is allocated lazily by the system and never written here.
    let largest = publish_with_remaining_length(268_435_455);
    assert_eq!(
        encoded_len(&largest, ProtocolVersion::V311),
        1 + 4 + 268_435_455
    );
    let too_big = publish_with_remaining_length(268_435_456);
    let mut buf = BytesMut::new();
    assert_eq!(
        encode(&too_big, ProtocolVersion::V311, &mut buf),
        Err(myqtt_core::codec::EncodeError::PacketTooLarge {
            remaining_length: 268_435_456
        })
    );
    assert!(buf.is_empty(), "nothing is written on error");
}
