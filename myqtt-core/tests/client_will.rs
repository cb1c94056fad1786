//! The will: published by mosquitto after `shutdown()` (socket dropped
//! without DISCONNECT), not after `close()` (DISCONNECT sent).

mod client_support;

use std::time::Duration;

use client_support::{Mosquitto, WAIT};
use myqtt_core::Ctx;
use myqtt_core::client::{CloseReason, Conn, ConnectOptions, PublishMessage};
use myqtt_core::codec::{ProtocolVersion, QoS};

fn ctx() -> Ctx {
    Ctx::builder().worker_threads(1).build().unwrap()
}

fn with_will(port: u16, v: ProtocolVersion, id: &str, retain: bool) -> ConnectOptions {
    ConnectOptions::new("127.0.0.1", port)
        .protocol(v)
        .client_id(id)
        .will(&format!("will/{id}"), "gone", QoS::AtLeastOnce, retain)
        .unwrap()
}

fn watcher(ctx: &Ctx, port: u16, id: &str) -> Conn {
    let c =
        Conn::connect_blocking(ctx, ConnectOptions::new("127.0.0.1", port).client_id(id)).unwrap();
    c.subscribe("will/#", QoS::AtLeastOnce).wait(WAIT).unwrap();
    c.subscribe("marker", QoS::AtLeastOnce).wait(WAIT).unwrap();
    c
}

#[test]
fn shutdown_without_disconnect_makes_the_server_publish_the_will() {
    // [MQTT-3.1.2-8]: the will is published when the connection closes
    // without DISCONNECT.
    let broker = Mosquitto::start();
    let ctx = ctx();
    let w = watcher(&ctx, broker.port, "watch-1");
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let id = format!("dying-{v:?}");
        let conn = Conn::connect_blocking(&ctx, with_will(broker.port, v, &id, false)).unwrap();
        conn.shutdown().wait(WAIT).unwrap();
        assert_eq!(conn.close_reason(), Some(CloseReason::Shutdown));
        let m = w.get_next(Some(WAIT)).unwrap().expect("the will");
        assert_eq!(m.topic().as_str(), format!("will/{id}"));
        assert_eq!(m.payload().as_ref(), b"gone");
        assert_eq!(m.qos(), QoS::AtLeastOnce);
    }
}

#[test]
fn close_with_disconnect_discards_the_will() {
    // [MQTT-3.1.2-10] (3.1.1) / [MQTT-3.1.2-10] (5.0): after a normal
    // DISCONNECT the will is deleted without being published.
    let broker = Mosquitto::start();
    let ctx = ctx();
    let w = watcher(&ctx, broker.port, "watch-2");
    let marker_pub =
        Conn::connect_blocking(&ctx, ConnectOptions::new("127.0.0.1", broker.port)).unwrap();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let id = format!("polite-{v:?}");
        let conn = Conn::connect_blocking(&ctx, with_will(broker.port, v, &id, false)).unwrap();
        conn.close().wait(WAIT).unwrap();
        assert_eq!(conn.close_reason(), Some(CloseReason::Closed));
        // The DISCONNECT was flushed before close completed; a marker
        // published afterwards arrives first if no will was published.
        marker_pub
            .publish_blocking(
                PublishMessage::new("marker", "m")
                    .unwrap()
                    .qos(QoS::AtLeastOnce),
                WAIT,
            )
            .unwrap()
            .wait(WAIT)
            .unwrap();
        let m = w.get_next(Some(WAIT)).unwrap().expect("marker");
        assert_eq!(m.topic().as_str(), "marker", "a will was published");
    }
}

#[test]
fn a_retained_will_reaches_later_subscribers() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        with_will(broker.port, ProtocolVersion::V5, "retained-will", true),
    )
    .unwrap();
    conn.shutdown().wait(WAIT).unwrap();
    // Poll until mosquitto has published the will, then subscribe late.
    let late = Conn::connect_blocking(&ctx, ConnectOptions::new("127.0.0.1", broker.port)).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let m = loop {
        late.subscribe("will/retained-will", QoS::AtLeastOnce)
            .wait(WAIT)
            .unwrap();
        if let Some(m) = late.get_next(Some(Duration::from_millis(100))).unwrap() {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "no retained will");
    };
    assert!(m.retain());
    assert_eq!(m.payload().as_ref(), b"gone");
}
