//! Codec benchmarks: decode and encode of a QoS 1 PUBLISH with a 64-byte and
//! a 4 KiB payload, at MQTT 3.1.1 and 5.0.
//!
//! Decoding is measured the way a connection uses the decoder: many packets
//! arrive in one receive buffer and are taken off its front one by one.
//! Filling the buffer is not timed. `decode_publish_qos1` times the decode
//! and the drop of each packet (releasing its one handle on the receive
//! buffer, the payload: an atomic reference-count decrement; the 38-byte
//! topic is stored inline in the packet); `decode_publish_qos1_kept`
//! keeps the packets, as a connection handing them on does, and drops them
//! outside the timed part.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use myqtt_core::codec::{
    Decoder, Packet, PacketId, ProtocolVersion, Publish, PublishProps, QoS, encode,
};
use myqtt_core::topic::TopicName;

/// Packets per receive buffer in the decode benchmark.
const BATCH: u64 = 1000;

fn publish(payload_len: usize) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new("sensors/building-7/floor-3/temperature").unwrap(),
        packet_id: PacketId::new(4242),
        properties: PublishProps::new(),
        payload: Bytes::from(vec![0x5A; payload_len]),
    })
}

fn versions() -> [(&'static str, ProtocolVersion); 2] {
    [("v311", ProtocolVersion::V311), ("v5", ProtocolVersion::V5)]
}

fn decode(c: &mut Criterion) {
    decode_group(c, "decode_publish_qos1", false);
    decode_group(c, "decode_publish_qos1_kept", true);
}

/// Decodes batches of `BATCH` packets; with `keep`, the decoded packets are
/// pushed to a vector dropped after the timed part.
fn decode_group(c: &mut Criterion, group_name: &str, keep: bool) {
    let mut group = c.benchmark_group(group_name);
    for (name, version) in versions() {
        for size in [64, 4096] {
            let mut one = BytesMut::new();
            encode(&publish(size), version, &mut one).unwrap();
            group.throughput(Throughput::Bytes(one.len() as u64));
            group.bench_function(format!("{name}/{size}B"), |b| {
                let mut decoder = Decoder::default();
                decoder.set_version(version);
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(BATCH);
                        let mut buf = BytesMut::with_capacity(one.len() * n as usize);
                        for _ in 0..n {
                            buf.extend_from_slice(&one);
                        }
                        let mut kept: Vec<Packet> =
                            Vec::with_capacity(if keep { n as usize } else { 0 });
                        let start = Instant::now();
                        if keep {
                            for _ in 0..n {
                                kept.push(decoder.decode(black_box(&mut buf)).unwrap().unwrap());
                            }
                        } else {
                            for _ in 0..n {
                                black_box(decoder.decode(black_box(&mut buf)).unwrap());
                            }
                        }
                        total += start.elapsed();
                        black_box(&kept);
                        left -= n;
                    }
                    total
                });
            });
        }
    }
    group.finish();
}

fn encode_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_publish_qos1");
    for (name, version) in versions() {
        for size in [64, 4096] {
            let packet = publish(size);
            let mut buf = BytesMut::with_capacity(8192);
            encode(&packet, version, &mut buf).unwrap();
            group.throughput(Throughput::Bytes(buf.len() as u64));
            group.bench_function(format!("{name}/{size}B"), |b| {
                b.iter(|| {
                    buf.clear();
                    encode(black_box(&packet), version, &mut buf).unwrap();
                    black_box(buf.len())
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decode, encode_publish);
criterion_main!(benches);
