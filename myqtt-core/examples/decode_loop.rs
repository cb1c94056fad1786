//! A fixed decode workload: decodes copies of the 64-byte QoS 1 PUBLISH of
//! the `codec` benchmark from one receive buffer, for instruction counts
//! and for a quick timing on a loaded machine (doc/benchmarks.md, "Codec").
//!
//! ```sh
//! cargo build --profile bench -p myqtt-core --example decode_loop
//! # instructions per decode: the difference of two runs, divided by 10,000
//! valgrind --tool=callgrind target/release/examples/decode_loop v5 1000
//! valgrind --tool=callgrind target/release/examples/decode_loop v5 11000
//! # time per decode: 3000 rounds of 1000 packets
//! target/release/examples/decode_loop v5 1000 3000
//! # the same, the packets kept and dropped outside the timed part
//! target/release/examples/decode_loop v5 1000 3000 keep
//! ```
//!
//! With a third argument it repeats the decode of COUNT packets ROUNDS
//! times (the buffer is refilled outside the timed part) and prints the
//! time per decode as the minimum and the median over the rounds. A round
//! takes well under a scheduler time slice, so on a machine shared with
//! other work the minimum is a round that ran undisturbed.

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use myqtt_core::codec::{
    Decoder, Packet, PacketId, ProtocolVersion, Publish, PublishProps, QoS, encode,
};
use myqtt_core::topic::TopicName;

fn main() {
    let mut args = std::env::args().skip(1);
    let version = match args.next().as_deref() {
        Some("v311") => ProtocolVersion::V311,
        Some("v5") | None => ProtocolVersion::V5,
        Some(other) => {
            eprintln!("usage: decode_loop [v311|v5] [COUNT] [ROUNDS] (not {other:?})");
            std::process::exit(2);
        }
    };
    let count: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rounds: Option<usize> = args.next().and_then(|s| s.parse().ok());
    let keep = args.next().as_deref() == Some("keep");
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new("sensors/building-7/floor-3/temperature").expect("valid topic"),
        packet_id: PacketId::new(4242),
        properties: PublishProps::new(),
        payload: Bytes::from(vec![0x5A; 64]),
    });
    let mut one = BytesMut::new();
    encode(&packet, version, &mut one).expect("encodable");
    let mut decoder = Decoder::default();
    decoder.set_version(version);
    let fill = || {
        let mut buf = BytesMut::with_capacity(one.len() * count as usize);
        for _ in 0..count {
            buf.extend_from_slice(&one);
        }
        buf
    };
    let Some(rounds) = rounds else {
        let mut buf = fill();
        assert_eq!(decode_all(&mut decoder, &mut buf), count);
        return;
    };
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut buf = fill();
        let mut kept = Vec::with_capacity(if keep { count as usize } else { 0 });
        let start = Instant::now();
        let n = if keep {
            while let Ok(Some(p)) = decoder.decode(black_box(&mut buf)) {
                kept.push(p);
            }
            u32::try_from(kept.len()).unwrap_or(u32::MAX)
        } else {
            decode_all(&mut decoder, &mut buf)
        };
        let elapsed = start.elapsed();
        assert_eq!(n, count);
        drop(kept);
        times.push(elapsed.as_secs_f64() * 1e9 / f64::from(count));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{version:?} {}-byte packet{}: {:.1} ns/decode min, {:.1} median ({rounds} rounds of {count})",
        one.len(),
        if keep { ", kept" } else { "" },
        times[0],
        times[times.len() / 2],
    );
}

/// Decodes every packet in `buf`, dropping each (as the benchmark does).
fn decode_all(decoder: &mut Decoder, buf: &mut BytesMut) -> u32 {
    let mut decoded = 0;
    while let Ok(Some(p)) = decoder.decode(black_box(buf)) {
        black_box(p);
        decoded += 1;
    }
    decoded
}
