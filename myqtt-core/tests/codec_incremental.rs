//! Incremental decoding: "need more bytes" is `Ok(None)`, whole packets come
//! off the front of the buffer in order, and the maximum packet size is
//! enforced from the fixed header before the body arrives.

use bytes::{Bytes, BytesMut};
use myqtt_core::ByteStr;
use myqtt_core::codec::{
    Connect, ConnectProperties, DecodeError, Decoder, Packet, PacketId, ProtocolVersion, PubAck,
    Publish, PublishProperties, QoS, encode,
};
use myqtt_core::topic::TopicName;

fn publish(payload_len: usize) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new("a/b").unwrap(),
        packet_id: PacketId::new(7),
        properties: PublishProperties {
            message_expiry_interval: Some(9),
            ..Default::default()
        }
        .into(),
        payload: Bytes::from(vec![0xA5; payload_len]),
    })
}

fn encoded(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).unwrap();
    buf.to_vec()
}

#[test]
fn feeding_a_packet_byte_by_byte_yields_none_until_the_last_byte() {
    // 200 bytes of payload: a two-byte remaining length, split mid-way too.
    let packet = publish(200);
    let bytes = encoded(&packet, ProtocolVersion::V5);
    let mut decoder = Decoder::default();
    decoder.set_version(ProtocolVersion::V5);
    let mut buf = BytesMut::new();
    for (i, &b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[b]);
        let got = decoder.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            assert_eq!(got, None, "after {} of {} bytes", i + 1, bytes.len());
            assert_eq!(buf.len(), i + 1, "partial packets stay in the buffer");
        } else {
            assert_eq!(got, Some(packet.clone()));
        }
    }
    assert!(buf.is_empty());
}

#[test]
fn connect_fed_byte_by_byte_sets_the_level_only_when_complete() {
    let packet = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 30,
        client_id: ByteStr::from("c"),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }));
    let bytes = encoded(&packet, ProtocolVersion::V5);
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    for &b in &bytes[..bytes.len() - 1] {
        buf.extend_from_slice(&[b]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.version(), None);
    }
    buf.extend_from_slice(&bytes[bytes.len() - 1..]);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(packet)));
    assert_eq!(decoder.version(), Some(ProtocolVersion::V5));
}

#[test]
fn two_packets_in_one_buffer_decode_in_order() {
    let first = publish(3);
    let second = Packet::PubAck(PubAck::new(PacketId::new(7).unwrap()));
    let mut buf = BytesMut::new();
    encode(&first, ProtocolVersion::V311, &mut buf).unwrap();
    encode(&second, ProtocolVersion::V311, &mut buf).unwrap();
    buf.extend_from_slice(&[0xC0]); // the first byte of a third packet
    let mut decoder = Decoder::default();
    decoder.set_version(ProtocolVersion::V311);
    let Some(Packet::Publish(p)) = decoder.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(
        &p.payload[..],
        &[0xA5; 3],
        "properties are not on the wire at 3.1.1"
    );
    assert_eq!(decoder.decode(&mut buf).unwrap(), Some(second));
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert_eq!(&buf[..], &[0xC0]);
}

#[test]
fn empty_buffer_needs_more_bytes() {
    let mut decoder = Decoder::default();
    assert_eq!(decoder.decode(&mut BytesMut::new()), Ok(None));
}

#[test]
fn oversize_packet_is_rejected_from_the_fixed_header_alone() {
    // The buffer holds only the fixed header of a 1,000,000-byte body.
    let mut decoder = Decoder::new(1024);
    decoder.set_version(ProtocolVersion::V311);
    let mut buf = BytesMut::from(&[0x30, 0xC0, 0x84, 0x3D][..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: 1 + 3 + 1_000_000,
            max: 1024
        })
    );
    assert_eq!(buf.len(), 4, "fixed-header errors leave the buffer alone");
}

#[test]
fn packet_exactly_at_the_maximum_size_is_accepted() {
    let packet = publish(10);
    let bytes = encoded(&packet, ProtocolVersion::V311);
    let size = u32::try_from(bytes.len()).unwrap();
    let mut decoder = Decoder::new(size);
    decoder.set_version(ProtocolVersion::V311);
    assert!(
        decoder
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap()
            .is_some()
    );
    decoder.set_max_packet_size(size - 1);
    assert_eq!(
        decoder.decode(&mut BytesMut::from(&bytes[..])),
        Err(DecodeError::PacketTooLarge {
            size,
            max: size - 1
        })
    );
}

#[test]
fn a_zero_maximum_packet_size_means_the_protocol_maximum() {
    let decoder = Decoder::new(0);
    assert_eq!(decoder.max_packet_size(), Decoder::DEFAULT_MAX_PACKET_SIZE);
    assert_eq!(Decoder::DEFAULT_MAX_PACKET_SIZE, 268_435_460);
}

#[test]
fn a_partial_remaining_length_needs_more_bytes() {
    let mut decoder = Decoder::default();
    decoder.set_version(ProtocolVersion::V311);
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80][..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}
