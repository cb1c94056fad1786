//! The client decodes every packet of a large read: acknowledgements that
//! arrive together, many more than the connection task handles in one
//! batch, all complete their publishes.
//!
//! The server here is a raw socket that answers CONNACK, waits for every
//! PUBLISH, then writes all the PUBACKs in a single write, so the client
//! finds them in one read.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use myqtt_core::Ctx;
use myqtt_core::client::{Conn, ConnectOptions, PublishMessage};
use myqtt_core::codec::{
    ConnAck, ConnAckProperties, Decoder, Packet, ProtocolVersion, PubAck, QoS, ReasonCode, encode,
};

const WAIT: Duration = Duration::from_secs(10);
/// Far more than the packets the connection task decodes per batch (64).
const MESSAGES: usize = 300;

/// Accepts one client, acknowledges its CONNECT, collects `MESSAGES`
/// QoS 1 PUBLISH packets, then sends every PUBACK in one write. Keeps the
/// socket open until `done` fires.
fn ack_in_one_write(listener: &TcpListener, done: &mpsc::Receiver<()>) {
    let (mut sock, _) = listener.accept().expect("accept");
    let mut decoder = Decoder::new(1 << 20);
    let mut buf = BytesMut::new();
    let mut ids = Vec::new();
    let mut chunk = [0u8; 4096];
    while ids.len() < MESSAGES {
        let n = sock.read(&mut chunk).expect("read");
        assert!(n > 0, "the client closed early");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(p) = decoder.decode(&mut buf).expect("decode") {
            match p {
                Packet::Connect(_) => {
                    let mut out = BytesMut::new();
                    let connack = Packet::ConnAck(Box::new(ConnAck {
                        session_present: false,
                        reason_code: ReasonCode::Success,
                        properties: ConnAckProperties::default(),
                    }));
                    encode(&connack, ProtocolVersion::V311, &mut out).expect("encode");
                    sock.write_all(&out).expect("write CONNACK");
                }
                Packet::Publish(p) => ids.push(p.packet_id.expect("QoS 1 has a packet id")),
                _ => {}
            }
        }
    }
    let mut out = BytesMut::new();
    for id in ids {
        encode(
            &Packet::PubAck(PubAck::new(id)),
            ProtocolVersion::V311,
            &mut out,
        )
        .expect("encode");
    }
    sock.write_all(&out).expect("write PUBACKs");
    let _ = done.recv_timeout(WAIT);
}

#[test]
fn acknowledgements_arriving_in_one_read_complete_every_publish() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done_tx, done_rx) = mpsc::channel();
    let server = thread::spawn(move || ack_in_one_write(&listener, &done_rx));

    let ctx = Ctx::builder().worker_threads(1).build().unwrap();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", port)
            .client_id("read-batch")
            .max_inflight(1000),
    )
    .unwrap();
    let handles: Vec<_> = (0..MESSAGES)
        .map(|i| {
            let m = PublishMessage::new("batch/t", Bytes::from(i.to_string()))
                .unwrap()
                .qos(QoS::AtLeastOnce);
            conn.publish_blocking(m, WAIT).unwrap()
        })
        .collect();
    // [MQTT-4.3.2-1] each PUBACK completes the QoS 1 flow with its id: none
    // may be lost because it came in the same read as many others.
    let deadline = Instant::now() + WAIT;
    let completed = handles
        .iter()
        .filter(|h| {
            h.wait(deadline.saturating_duration_since(Instant::now()))
                .is_ok()
        })
        .count();
    let _ = done_tx.send(());
    server.join().unwrap();
    assert_eq!(completed, MESSAGES);
}
