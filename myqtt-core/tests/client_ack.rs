//! Acknowledgement of received QoS 1/2 messages: automatic when the
//! application takes the message, or manual, always in arrival order.

mod client_support;

use std::time::Duration;

use client_support::{Mosquitto, Proxy, WAIT, wait_until};
use myqtt_core::Ctx;
use myqtt_core::client::{ClientError, Conn, ConnectOptions, PublishMessage, ReconnectOptions};
use myqtt_core::codec::{Packet, PacketId, ProtocolVersion, QoS};

fn ctx() -> Ctx {
    Ctx::builder().worker_threads(1).build().unwrap()
}

fn send(publisher: &Conn, topic: &str, payload: &str, qos: QoS) {
    publisher
        .publish_blocking(
            PublishMessage::new(topic, payload.to_string())
                .unwrap()
                .qos(qos),
            WAIT,
        )
        .unwrap()
        .wait(WAIT)
        .unwrap();
}

/// Packet ids of the acknowledgements (PUBACK or PUBREC) the client sent.
fn acks(sent: &[Packet]) -> Vec<PacketId> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) | Packet::PubRec(a) => Some(a.packet_id),
            _ => None,
        })
        .collect()
}

fn through_proxy(ctx: &Ctx, proxy: &Proxy, id: &str, manual: bool) -> Conn {
    Conn::connect_blocking(
        ctx,
        ConnectOptions::new("127.0.0.1", proxy.port)
            .protocol(ProtocolVersion::V5)
            .client_id(id)
            .manual_ack(manual),
    )
    .unwrap()
}

#[test]
fn manual_acks_go_out_in_arrival_order_at_qos1_and_qos2() {
    // [MQTT-4.6.0-2] PUBACKs and [MQTT-4.6.0-3] PUBRECs in the order the
    // PUBLISH packets were received.
    let broker = Mosquitto::start();
    let ctx = ctx();
    let publisher = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", broker.port).client_id("acker-pub"),
    )
    .unwrap();
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let proxy = Proxy::start(broker.port);
        let conn = through_proxy(&ctx, &proxy, &format!("acker-{}", qos.as_u8()), true);
        conn.subscribe("m", qos).wait(WAIT).unwrap();
        send(&publisher, "m", "1", qos);
        send(&publisher, "m", "2", qos);
        let m1 = conn.get_next(Some(WAIT)).unwrap().unwrap();
        let m2 = conn.get_next(Some(WAIT)).unwrap().unwrap();
        assert_eq!(m1.payload().as_ref(), b"1");
        // Acknowledging the later message first sends nothing yet; the ping
        // round trip orders the check after anything the ack would send.
        conn.ack(&m2).unwrap();
        conn.ping().wait(WAIT).unwrap();
        assert!(acks(&proxy.sent()).is_empty(), "{:?}", proxy.sent());
        conn.ack(&m1).unwrap();
        let (id1, id2) = (m1.packet_id().unwrap(), m2.packet_id().unwrap());
        assert!(proxy.wait_sent(|p| acks(p).len() == 2));
        assert_eq!(acks(&proxy.sent()), [id1, id2]);
        conn.close().wait(WAIT).unwrap();
    }
}

#[test]
fn taking_a_message_acknowledges_it_without_manual_ack() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let conn = through_proxy(&ctx, &proxy, "auto", false);
    conn.subscribe("a", QoS::AtLeastOnce).wait(WAIT).unwrap();
    let publisher =
        Conn::connect_blocking(&ctx, ConnectOptions::new("127.0.0.1", broker.port)).unwrap();
    send(&publisher, "a", "x", QoS::AtLeastOnce);
    assert!(wait_until(WAIT, || conn.receive_queue_len() == 1));
    conn.ping().wait(WAIT).unwrap();
    assert!(acks(&proxy.sent()).is_empty());
    let m = conn.try_next().unwrap().unwrap();
    assert!(proxy.wait_sent(|p| acks(p) == [m.packet_id().unwrap()]));
    // Acking explicitly needs manual mode.
    assert!(matches!(conn.ack(&m), Err(ClientError::NotManualAck)));
}

#[test]
fn unacknowledged_messages_come_again_after_reconnection_and_old_acks_are_stale() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", proxy.port)
            .client_id("forgetful")
            .clean_start(false)
            .manual_ack(true)
            .reconnect(ReconnectOptions::default().initial_delay(Duration::from_millis(20))),
    )
    .unwrap();
    conn.subscribe("f", QoS::AtLeastOnce).wait(WAIT).unwrap();
    let publisher =
        Conn::connect_blocking(&ctx, ConnectOptions::new("127.0.0.1", broker.port)).unwrap();
    send(&publisher, "f", "1", QoS::AtLeastOnce);
    send(&publisher, "f", "2", QoS::AtLeastOnce);
    // "1" is taken, "2" still waits in the queue; neither is acknowledged.
    let old1 = conn.get_next(Some(WAIT)).unwrap().unwrap();
    assert!(wait_until(WAIT, || conn.receive_queue_len() == 1));
    proxy.cut_and_wait();
    assert!(wait_until(WAIT, || conn.reconnect_count() == 1));
    // The server resumed the session and sends both again with DUP
    // [MQTT-4.4.0-1]; the queued copy of "2" from the old connection was
    // dropped, so each arrives once.
    assert!(conn.session_present());
    conn.ping().wait(WAIT).unwrap();
    assert_eq!(conn.receive_queue_len(), 2);
    assert!(matches!(conn.ack(&old1), Err(ClientError::StaleAck)));
    let new1 = conn.get_next(Some(WAIT)).unwrap().unwrap();
    let new2 = conn.get_next(Some(WAIT)).unwrap().unwrap();
    assert_eq!(
        (new1.payload().as_ref(), new2.payload().as_ref()),
        (&b"1"[..], &b"2"[..])
    );
    assert!(new1.dup() && new2.dup());
    conn.ack(&new1).unwrap();
    conn.ack(&new2).unwrap();
    let ids = [new1.packet_id().unwrap(), new2.packet_id().unwrap()];
    assert!(proxy.wait_sent(|p| acks(p) == ids));
}
