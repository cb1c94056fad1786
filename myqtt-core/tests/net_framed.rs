//! `PacketReader` memory: no read buffer until bytes arrive, none after
//! `shrink_idle` once drained, and packets larger than the first read (or
//! split across reads) still decode whole.

use bytes::{Bytes, BytesMut};
use myqtt_core::codec::{Packet, ProtocolVersion, Publish, PublishProperties, QoS, encode};
use myqtt_core::net::PacketReader;
use myqtt_core::topic::TopicName;
use tokio::io::AsyncWriteExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A reader past the CONNECT (the decoder knows the protocol level).
fn reader(io: tokio::io::DuplexStream) -> PacketReader<tokio::io::DuplexStream> {
    let mut reader = PacketReader::new(io, 1 << 20);
    reader.decoder_mut().set_version(ProtocolVersion::V311);
    reader
}

fn publish_bytes(payload_len: usize) -> (Publish, BytesMut) {
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: TopicName::new(myqtt_core::ByteStr::from("a/b")).unwrap(),
        packet_id: None,
        properties: PublishProperties::default().into(),
        payload: Bytes::from(vec![7u8; payload_len]),
    };
    let mut wire = BytesMut::new();
    encode(
        &Packet::Publish(publish.clone()),
        ProtocolVersion::V311,
        &mut wire,
    )
    .unwrap();
    (publish, wire)
}

#[test]
fn a_reader_holds_no_buffer_until_bytes_arrive_nor_once_drained_and_shrunk() {
    runtime().block_on(async {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut reader = reader(near);
        assert_eq!(
            reader.buffer_capacity(),
            0,
            "a new reader allocates nothing"
        );
        far.write_all(&[0xC0, 0x00]).await.unwrap(); // PINGREQ
        assert_eq!(reader.read().await.unwrap(), Some(Packet::PingReq));
        assert!(reader.buffer_capacity() > 0);
        assert!(reader.holds_idle_memory(), "drained but still allocated");
        reader.shrink_idle();
        assert_eq!(reader.buffer_capacity(), 0);
        assert!(!reader.holds_idle_memory());
        // And it reads again after giving its buffer back.
        far.write_all(&[0xC0, 0x00]).await.unwrap();
        assert_eq!(reader.read().await.unwrap(), Some(Packet::PingReq));
    });
}

#[test]
fn a_packet_larger_than_the_first_read_is_decoded_whole() {
    runtime().block_on(async {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut reader = reader(near);
        let (publish, wire) = publish_bytes(5000);
        far.write_all(&wire).await.unwrap();
        assert_eq!(reader.read().await.unwrap(), Some(Packet::Publish(publish)));
    });
}

#[test]
fn a_partial_packet_is_kept_by_shrink_idle_and_completed_by_later_bytes() {
    runtime().block_on(async {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut reader = reader(near);
        let (publish, wire) = publish_bytes(100);
        far.write_all(&wire[..10]).await.unwrap();
        assert!(reader.fill().await.unwrap());
        assert_eq!(reader.try_read_buffered().unwrap(), None);
        reader.shrink_idle();
        assert!(reader.has_partial(), "buffered bytes are not given back");
        far.write_all(&wire[10..]).await.unwrap();
        assert_eq!(reader.read().await.unwrap(), Some(Packet::Publish(publish)));
    });
}
