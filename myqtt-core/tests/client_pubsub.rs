//! Publish / subscribe round trips through a real mosquitto at QoS 0, 1
//! and 2, retained messages, unsubscribe, callbacks, and the bounded
//! queues.

mod client_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use client_support::{Mosquitto, Proxy, WAIT, fake_server, wait_until};
use myqtt_core::Ctx;
use myqtt_core::client::{ClientError, Conn, ConnectOptions, PublishMessage, Subscription};
use myqtt_core::codec::{Packet, ProtocolVersion, QoS, ReasonCode, SubscribeProperties};

fn ctx() -> Ctx {
    Ctx::builder().worker_threads(1).build().unwrap()
}

fn connect(ctx: &Ctx, port: u16, v: ProtocolVersion, id: &str) -> Conn {
    Conn::connect_blocking(
        ctx,
        ConnectOptions::new("127.0.0.1", port)
            .protocol(v)
            .client_id(id),
    )
    .unwrap()
}

fn msg(topic: &str, payload: &str, qos: QoS) -> PublishMessage {
    PublishMessage::new(topic, Bytes::copy_from_slice(payload.as_bytes()))
        .unwrap()
        .qos(qos)
}

const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

#[test]
fn messages_round_trip_at_every_qos_and_level() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    for v in [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ] {
        let conn = connect(&ctx, broker.port, v, &format!("rt-{v:?}"));
        let sub = conn.subscribe("rt/#", QoS::ExactlyOnce).wait(WAIT).unwrap();
        assert_eq!(sub.granted_qos(), [Some(QoS::ExactlyOnce)]);
        for qos in QOS {
            let topic = format!("rt/{}", qos.as_u8());
            let h = conn
                .publish_blocking(msg(&topic, "hello", qos), WAIT)
                .unwrap();
            let outcome = h.wait(WAIT).unwrap();
            assert!(outcome.reason_code.is_success());
            // A QoS 1/2 flow carries a packet id [MQTT-2.3.1-1]; QoS 0 none.
            assert_eq!(outcome.packet_id.is_some(), qos != QoS::AtMostOnce);
            assert_eq!(h.packet_id(), outcome.packet_id);
            let m = conn.get_next(Some(WAIT)).unwrap().expect("message");
            assert_eq!(m.topic().as_str(), topic);
            assert_eq!(m.payload().as_ref(), b"hello");
            // Delivered at the lower of publish and granted QoS.
            assert_eq!(m.qos(), qos, "{v:?}");
            assert!(!m.retain());
        }
        conn.close().wait(WAIT).unwrap();
    }
}

#[test]
fn delivery_qos_is_the_lower_of_publish_and_granted_qos() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    let conn = connect(&ctx, broker.port, ProtocolVersion::V311, "down");
    conn.subscribe("down/t", QoS::AtLeastOnce)
        .wait(WAIT)
        .unwrap();
    conn.publish_blocking(msg("down/t", "x", QoS::ExactlyOnce), WAIT)
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert_eq!(
        conn.get_next(Some(WAIT)).unwrap().unwrap().qos(),
        QoS::AtLeastOnce
    );
}

#[test]
fn subscribe_many_returns_one_code_per_filter_in_order() {
    // [MQTT-3.9.3-1]
    let broker = Mosquitto::start();
    let ctx = ctx();
    let conn = connect(&ctx, broker.port, ProtocolVersion::V5, "many");
    let subs = vec![
        Subscription::new("a/+", QoS::AtMostOnce).unwrap(),
        Subscription::new("b/#", QoS::ExactlyOnce).unwrap(),
        Subscription::new("c", QoS::AtLeastOnce)
            .unwrap()
            .no_local(true),
    ];
    let out = conn
        .subscribe_many(subs, SubscribeProperties::default())
        .wait(WAIT)
        .unwrap();
    assert_eq!(
        out.reason_codes,
        [
            ReasonCode::Success,
            ReasonCode::GrantedQoS2,
            ReasonCode::GrantedQoS1
        ]
    );
    assert!(out.all_granted());
    // No Local: our own message on "c" does not come back [MQTT-3.8.3-3],
    // while the one on "b/x" published after it does.
    conn.publish_blocking(msg("c", "own", QoS::AtLeastOnce), WAIT)
        .unwrap()
        .wait(WAIT)
        .unwrap();
    conn.publish_blocking(msg("b/x", "other", QoS::AtLeastOnce), WAIT)
        .unwrap()
        .wait(WAIT)
        .unwrap();
    let m = conn.get_next(Some(WAIT)).unwrap().unwrap();
    assert_eq!(m.topic().as_str(), "b/x");
}

#[test]
fn an_invalid_filter_fails_at_once() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    let conn = connect(&ctx, broker.port, ProtocolVersion::V311, "bad");
    let err = conn
        .subscribe("a/#/b", QoS::AtMostOnce)
        .wait(WAIT)
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidTopic(_)), "{err:?}");
    assert!(PublishMessage::new("a/+", "x").is_err()); // [MQTT-3.3.2-2]
}

#[test]
fn a_retained_message_reaches_a_later_subscriber_with_the_retain_flag() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let topic = format!("ret/{v:?}");
        let publisher = connect(&ctx, broker.port, v, &format!("ret-pub-{v:?}"));
        publisher
            .publish_blocking(msg(&topic, "kept", QoS::AtLeastOnce).retain(true), WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
        let sub = connect(&ctx, broker.port, v, &format!("ret-sub-{v:?}"));
        sub.subscribe(&topic, QoS::AtLeastOnce).wait(WAIT).unwrap();
        let m = sub.get_next(Some(WAIT)).unwrap().unwrap();
        // [MQTT-3.3.1-8] (3.1.1) / [MQTT-3.3.1-9] (5.0)
        assert!(m.retain());
        assert_eq!(m.payload().as_ref(), b"kept");
        // An empty retained payload clears it [MQTT-3.3.1-10] (3.1.1).
        publisher
            .publish_blocking(msg(&topic, "", QoS::AtLeastOnce).retain(true), WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
        let _cleared = sub.get_next(Some(WAIT)).unwrap().unwrap();
        let late = connect(&ctx, broker.port, v, &format!("ret-late-{v:?}"));
        late.subscribe(&topic, QoS::AtLeastOnce).wait(WAIT).unwrap();
        late.subscribe("ret/marker", QoS::AtLeastOnce)
            .wait(WAIT)
            .unwrap();
        publisher
            .publish_blocking(msg("ret/marker", "m", QoS::AtLeastOnce), WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
        let first = late.get_next(Some(WAIT)).unwrap().unwrap();
        assert_eq!(first.topic().as_str(), "ret/marker", "retained not cleared");
    }
}

#[test]
fn after_unsubscribe_nothing_more_arrives_on_that_filter() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let conn = connect(&ctx, broker.port, v, &format!("unsub-{v:?}"));
        conn.subscribe("u/a", QoS::AtLeastOnce).wait(WAIT).unwrap();
        conn.subscribe("u/b", QoS::AtLeastOnce).wait(WAIT).unwrap();
        let out = conn.unsubscribe("u/a").wait(WAIT).unwrap();
        assert_eq!(out.reason_codes, [ReasonCode::Success]);
        // Same publisher, so in order: "u/b" arriving first means "u/a" was
        // not delivered.
        conn.publish_blocking(msg("u/a", "gone", QoS::AtLeastOnce), WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
        conn.publish_blocking(msg("u/b", "here", QoS::AtLeastOnce), WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
        let m = conn.get_next(Some(WAIT)).unwrap().unwrap();
        assert_eq!(m.topic().as_str(), "u/b");
    }
}

#[test]
fn a_v5_puback_reason_code_is_reported() {
    // mosquitto answers a QoS 1 PUBLISH nobody subscribes to with 0x10.
    let broker = Mosquitto::start();
    let ctx = ctx();
    let conn = connect(&ctx, broker.port, ProtocolVersion::V5, "nomatch");
    let out = conn
        .publish_blocking(msg("nobody/here", "x", QoS::AtLeastOnce), WAIT)
        .unwrap()
        .wait(WAIT)
        .unwrap();
    assert_eq!(out.reason_code, ReasonCode::NoMatchingSubscribers);
}

#[test]
fn the_message_callback_gets_messages_in_order_and_may_publish_from_inside() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    let conn = connect(&ctx, broker.port, ProtocolVersion::V311, "echo");
    conn.subscribe("in/#", QoS::AtLeastOnce).wait(WAIT).unwrap();
    let observer = connect(&ctx, broker.port, ProtocolVersion::V311, "observer");
    observer
        .subscribe("out/#", QoS::AtLeastOnce)
        .wait(WAIT)
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    conn.set_on_msg(move |c, m| {
        seen2.lock().unwrap().push(m.payload().clone());
        // Publishing and waiting for the PUBACK from inside the callback
        // must not deadlock.
        let echo = PublishMessage::new("out/echo", m.payload().clone())
            .unwrap()
            .qos(QoS::AtLeastOnce);
        let h = c.publish_blocking(echo, WAIT).unwrap();
        h.wait(WAIT).unwrap();
    });
    let n = 50;
    for i in 0..n {
        conn.publish_blocking(msg("in/x", &i.to_string(), QoS::AtLeastOnce), WAIT)
            .unwrap();
    }
    for i in 0..n {
        let m = observer.get_next(Some(WAIT)).unwrap().expect("echo");
        assert_eq!(m.payload().as_ref(), i.to_string().as_bytes());
    }
    let seen = seen.lock().unwrap();
    let expected: Vec<Bytes> = (0..n).map(|i| Bytes::from(i.to_string())).collect();
    assert_eq!(*seen, expected);
}

#[test]
fn qos0_messages_beyond_the_receive_queue_limit_are_dropped_and_counted() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", broker.port)
            .client_id("small")
            .receive_queue_limit(5),
    )
    .unwrap();
    conn.subscribe("flood", QoS::AtMostOnce).wait(WAIT).unwrap();
    let publisher = connect(&ctx, broker.port, ProtocolVersion::V311, "flooder");
    for i in 0..20 {
        publisher
            .publish_blocking(msg("flood", &i.to_string(), QoS::AtMostOnce), WAIT)
            .unwrap();
    }
    assert!(wait_until(WAIT, || conn.dropped_messages() == 15));
    assert_eq!(conn.receive_queue_len(), 5);
    let first = conn.try_next().unwrap().unwrap();
    assert_eq!(first.payload().as_ref(), b"0");
}

#[test]
fn qos1_messages_wait_at_the_server_until_the_application_takes_them() {
    // A QoS 1 message is acknowledged only when the application takes it,
    // so the server's send window (here mosquitto's max_inflight_messages)
    // bounds what waits in the receive queue; the rest stays at the server.
    let broker =
        Mosquitto::start_with("allow_anonymous true\npersistence false\nmax_inflight_messages 3\n");
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", proxy.port)
            .client_id("window")
            .receive_queue_limit(3),
    )
    .unwrap();
    conn.subscribe("win", QoS::AtLeastOnce).wait(WAIT).unwrap();
    let publisher = connect(&ctx, broker.port, ProtocolVersion::V311, "winpub");
    for i in 0..10 {
        publisher
            .publish_blocking(msg("win", &i.to_string(), QoS::AtLeastOnce), WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
    }
    assert!(wait_until(WAIT, || conn.receive_queue_len() == 3));
    // Nothing was acknowledged yet: a ping round trip orders the check.
    conn.ping().wait(WAIT).unwrap();
    let pubacks = |p: &[Packet]| p.iter().filter(|p| matches!(p, Packet::PubAck(_))).count();
    assert_eq!(pubacks(&proxy.sent()), 0);
    assert_eq!(conn.receive_queue_len(), 3);
    // Every message arrives, in order, as they are taken.
    for i in 0..10 {
        let m = conn.get_next(Some(WAIT)).unwrap().expect("message");
        assert_eq!(m.payload().as_ref(), i.to_string().as_bytes());
    }
    assert!(proxy.wait_sent(|p| pubacks(p) == 10));
    assert_eq!(conn.dropped_messages(), 0);
}

#[test]
fn the_send_queue_is_bounded_and_try_publish_refuses_when_full() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", proxy.port)
            .client_id("sendq")
            .max_inflight(1)
            .send_queue_limit(3),
    )
    .unwrap();
    proxy.hold();
    // One in flight (left the queue), three queued behind it.
    let first = conn.try_publish(msg("q", "0", QoS::AtLeastOnce)).unwrap();
    assert!(wait_until(WAIT, || first.packet_id().is_some()));
    let queued: Vec<_> = (1..=3)
        .map(|i| {
            conn.try_publish(msg("q", &i.to_string(), QoS::AtLeastOnce))
                .unwrap()
        })
        .collect();
    assert!(wait_until(WAIT, || conn.send_queue_len() == 3));
    let err = conn
        .try_publish(msg("q", "4", QoS::AtLeastOnce))
        .unwrap_err();
    assert!(
        matches!(err, ClientError::QueueFull { limit: 3 }),
        "{err:?}"
    );
    let err = conn
        .publish_blocking(msg("q", "4", QoS::AtLeastOnce), Duration::from_millis(50))
        .unwrap_err();
    assert!(matches!(err, ClientError::QueueFull { .. }), "{err:?}");
    assert!(!first.is_done());
    proxy.release();
    first.wait(WAIT).unwrap();
    for h in &queued {
        h.wait(WAIT).unwrap();
    }
    assert_eq!(conn.send_queue_len(), 0);
    // Packet ids of the flows are distinct.
    let mut ids: Vec<_> = queued.iter().map(|h| h.packet_id().unwrap()).collect();
    ids.push(first.packet_id().unwrap());
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
    let published = proxy
        .sent()
        .iter()
        .filter(|p| matches!(p, Packet::Publish(_)))
        .count();
    assert_eq!(published, 4);
}

#[test]
fn an_async_publish_and_next_work() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let conn = Conn::connect(
            &ctx,
            ConnectOptions::new("127.0.0.1", broker.port).protocol(ProtocolVersion::V5),
        )
        .await
        .unwrap();
        conn.subscribe("async/t", QoS::ExactlyOnce).await.unwrap();
        for qos in QOS {
            let h = conn.publish(msg("async/t", "a", qos)).await.unwrap();
            h.await.unwrap();
            let m = conn.next().await.unwrap();
            assert_eq!(m.qos(), qos);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[test]
fn outgoing_topic_aliases_replace_the_topic_after_its_first_use() {
    // MQTT 5.0 §3.3.2.3.4: after the first PUBLISH maps the alias, later
    // ones may carry the alias and an empty topic name.
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", proxy.port)
            .protocol(ProtocolVersion::V5)
            .client_id("aliaser")
            .outgoing_topic_aliases(4),
    )
    .unwrap();
    conn.subscribe("alias/t", QoS::AtLeastOnce)
        .wait(WAIT)
        .unwrap();
    for i in 0..2 {
        conn.publish_blocking(msg("alias/t", &i.to_string(), QoS::AtLeastOnce), WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
        let m = conn.get_next(Some(WAIT)).unwrap().unwrap();
        assert_eq!(m.topic().as_str(), "alias/t");
    }
    let sent: Vec<_> = proxy
        .sent()
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].topic.as_str(), "alias/t");
    assert!(sent[0].properties.topic_alias.is_some());
    assert!(sent[1].topic.is_empty());
    assert_eq!(
        sent[1].properties.topic_alias,
        sent[0].properties.topic_alias
    );
}

#[test]
fn a_callback_publishing_through_a_tiny_send_queue_never_deadlocks() {
    // The callback waits for room in a two-message send queue while
    // messages keep arriving: the connection task never waits for the
    // callback, so acknowledgements keep freeing room.
    let broker = Mosquitto::start();
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", broker.port)
            .client_id("tiny")
            .max_inflight(1)
            .send_queue_limit(2),
    )
    .unwrap();
    conn.subscribe("ping/#", QoS::AtLeastOnce)
        .wait(WAIT)
        .unwrap();
    let observer = connect(&ctx, broker.port, ProtocolVersion::V311, "tiny-obs");
    observer
        .subscribe("pong/#", QoS::AtLeastOnce)
        .wait(WAIT)
        .unwrap();
    conn.set_on_msg(|c, m| {
        for _ in 0..3 {
            let reply = PublishMessage::new("pong/x", m.payload().clone())
                .unwrap()
                .qos(QoS::AtLeastOnce);
            c.publish_blocking(reply, WAIT).unwrap();
        }
    });
    let feeder = connect(&ctx, broker.port, ProtocolVersion::V311, "tiny-feed");
    let n = 30;
    for i in 0..n {
        feeder
            .publish_blocking(msg("ping/x", &i.to_string(), QoS::AtLeastOnce), WAIT)
            .unwrap();
    }
    for i in 0..n * 3 {
        let m = observer.get_next(Some(WAIT)).unwrap().expect("reply");
        assert_eq!(m.payload().as_ref(), (i / 3).to_string().as_bytes());
    }
}

#[test]
fn a_burst_longer_than_one_read_round_loses_no_packet() {
    // 200 QoS 0 PUBLISH packets right behind the CONNACK, in one write: the
    // client decodes them over several rounds of its read loop and must
    // deliver every one, in order [MQTT-4.6.0-6].
    let mut bytes = vec![0x20, 0x02, 0x00, 0x00];
    for i in 0..200u8 {
        bytes.extend_from_slice(&[0x30, 4, 0, 1, b't', i]);
    }
    let port = fake_server(Box::leak(bytes.into_boxed_slice()));
    let ctx = Ctx::new().unwrap();
    let conn = Conn::connect_blocking(&ctx, ConnectOptions::new("127.0.0.1", port)).unwrap();
    for i in 0..200u8 {
        let m = conn
            .get_next(Some(WAIT))
            .unwrap()
            .expect("every message of the burst arrives");
        assert_eq!(m.payload().as_ref(), &[i]);
    }
}
