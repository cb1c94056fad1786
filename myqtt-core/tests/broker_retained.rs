//! Retained messages: set, replace, clear, delivery on subscribe with the
//! retain flag and the downgraded QoS, and not for shared subscriptions.

mod broker_util;

use broker_util::*;
use myqtt_core::broker::BrokerConfig;
use myqtt_core::codec::{Packet, ProtocolVersion, QoS, ReasonCode};

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn a_retained_message_is_delivered_to_later_subscribers_with_the_retain_flag() {
    // [MQTT-3.3.1-6] [MQTT-3.3.1-8] (3.1.1)
    for version in [V311, V5] {
        with_default_broker(|ctx, addr| async move {
            let mut p = Raw::connect(addr, version, "p", true).await;
            p.publish("r/a", b"first", QoS::ExactlyOnce, true).await;
            assert_eq!(ctx.broker().retained_count(), 1);
            let mut s = Raw::connect(addr, version, "s", true).await;
            s.subscribe("r/+", QoS::AtLeastOnce).await;
            let m = s.recv_publish().await;
            assert!(m.retain);
            assert_eq!(m.payload.as_ref(), b"first");
            // Delivered at the lower of the stored and the granted QoS.
            assert_eq!(m.qos, QoS::AtLeastOnce);
        });
    }
}

#[test]
fn a_new_retained_message_replaces_the_old_and_an_empty_one_clears_it() {
    // [MQTT-3.3.1-5] [MQTT-3.3.1-10] [MQTT-3.3.1-11] (3.1.1)
    with_default_broker(|ctx, addr| async move {
        let mut p = Raw::connect(addr, V311, "p", true).await;
        p.publish("r", b"one", QoS::AtMostOnce, true).await;
        p.publish("r", b"two", QoS::AtLeastOnce, true).await;
        let mut s = Raw::connect(addr, V311, "s", true).await;
        s.subscribe("r", QoS::AtMostOnce).await;
        assert_eq!(s.recv_publish().await.payload.as_ref(), b"two");
        s.expect_nothing().await;
        // Clearing is itself forwarded to current subscribers, with RETAIN 0.
        p.publish("r", b"", QoS::AtLeastOnce, true).await;
        let cleared = s.recv_publish().await;
        assert!(cleared.payload.is_empty() && !cleared.retain);
        assert_eq!(ctx.broker().retained_count(), 0);
        let mut late = Raw::connect(addr, V311, "late", true).await;
        late.subscribe("r", QoS::AtMostOnce).await;
        late.expect_nothing().await;
    });
}

#[test]
fn retained_messages_are_not_sent_for_a_shared_subscription() {
    // MQTT 5.0 §4.8.2
    with_default_broker(|ctx, addr| async move {
        let mut p = Raw::connect(addr, V5, "p", true).await;
        p.publish("work", b"old", QoS::AtMostOnce, true).await;
        // A QoS 0 publish has no ack: wait until it is stored, or it could
        // reach the new subscription live.
        eventually("the retained message", || {
            ctx.broker().retained_count() == 1
        })
        .await;
        let mut s = Raw::connect(addr, V5, "s", true).await;
        s.subscribe("$share/g/work", QoS::AtMostOnce).await;
        s.expect_nothing().await;
    });
}

#[test]
fn a_filter_starting_with_a_wildcard_does_not_return_dollar_topics() {
    // [MQTT-4.7.2-1]
    with_default_broker(|ctx, addr| async move {
        ctx.broker()
            .publish(myqtt_core::broker::hooks::Message {
                topic: topic("$SYS/version"),
                payload: bytes::Bytes::from_static(b"1"),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: myqtt_core::codec::PublishProperties::default(),
            })
            .unwrap();
        let mut s = Raw::connect(addr, V311, "s", true).await;
        s.subscribe("#", QoS::AtMostOnce).await;
        s.expect_nothing().await;
        s.subscribe("$SYS/+", QoS::AtMostOnce).await;
        assert!(s.recv_publish().await.retain);
    });
}

#[test]
fn retained_messages_can_be_turned_off() {
    let config = BrokerConfig::builder()
        .retain_available(false)
        .build()
        .unwrap();
    with_broker(config, |ctx, addr| async move {
        // MQTT 5 clients are told, and a retained PUBLISH is a protocol
        // error (0x9A).
        let (mut c, ack) = Raw::connect_with(addr, connect_packet(V5, "c", true, 0)).await;
        assert_eq!(ack.properties.retain_available, Some(false));
        c.send(Packet::Publish(publish(
            "x",
            b"r",
            QoS::AtMostOnce,
            true,
            0,
        )))
        .await;
        let got = c.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::RetainNotSupported),
            "{got:?}"
        );
        // 3.1.1 clients' retained messages are routed, not stored.
        let mut s = Raw::connect(addr, V311, "s", true).await;
        s.subscribe("x", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V311, "p", true).await;
        p.publish("x", b"r", QoS::AtLeastOnce, true).await;
        assert_eq!(s.recv_publish().await.payload.as_ref(), b"r");
        assert_eq!(ctx.broker().retained_count(), 0);
    });
}

#[test]
fn an_expired_retained_message_is_not_delivered() {
    // [MQTT-3.3.2-5]
    with_default_broker(|ctx, addr| async move {
        let mut p = Raw::connect(addr, V5, "p", true).await;
        let mut m = publish("exp", b"soon gone", QoS::AtMostOnce, true, 0);
        m.properties.message_expiry_interval = Some(1);
        p.publish_packet(m).await;
        eventually("retained", || ctx.broker().retained_count() == 1).await;
        let mut s = Raw::connect(addr, V5, "s", true).await;
        s.subscribe("exp", QoS::AtMostOnce).await;
        let got = s.recv_publish().await;
        assert_eq!(got.properties.message_expiry_interval, Some(1));
        eventually("expiry", || ctx.broker().retained_count() == 0).await;
        let mut late = Raw::connect(addr, V5, "late", true).await;
        late.subscribe("exp", QoS::AtMostOnce).await;
        late.expect_nothing().await;
    });
}

/// Counts the SUBSCRIBE filters the broker has processed.
struct CountSubscribes(std::sync::atomic::AtomicUsize);

impl myqtt_core::broker::hooks::Hook for CountSubscribes {
    fn interests(&self) -> myqtt_core::broker::hooks::Interests {
        myqtt_core::broker::hooks::Interests {
            lifecycle: true,
            ..Default::default()
        }
    }

    fn on_event(&self, e: &myqtt_core::broker::hooks::Event<'_>) {
        if let myqtt_core::broker::hooks::Event::Subscribed(..) = e {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[test]
fn a_client_that_does_not_read_is_not_read_from_past_the_write_high_water_mark() {
    // Each SUBSCRIBE owes the client 1 MiB of retained messages at QoS 0. A
    // client that keeps subscribing without reading must not grow the
    // broker's write buffer without bound: past the high-water mark the
    // broker stops reading its packets (and sends retained messages only as
    // the buffer drains), so most SUBSCRIBEs wait in the socket.
    use myqtt_core::codec::{Subscribe, SubscribeProperties, SubscriptionOptions};
    use std::sync::atomic::Ordering;
    const RETAINED: usize = 32;
    const SUBSCRIBES: u16 = 64;
    let hook = std::sync::Arc::new(CountSubscribes(std::sync::atomic::AtomicUsize::new(0)));
    let config = BrokerConfig::builder().hook(hook.clone()).build().unwrap();
    with_broker(config, |ctx, addr| async move {
        let mut p = Raw::connect(addr, V311, "p", true).await;
        let payload = vec![7u8; 32 * 1024];
        for i in 0..RETAINED {
            p.publish(&format!("r/{i}"), &payload, QoS::AtMostOnce, true)
                .await;
        }
        eventually("retained stored", || {
            ctx.broker().retained_count() == RETAINED
        })
        .await;
        let mut s = Raw::connect(addr, V311, "s", true).await;
        for i in 1..=SUBSCRIBES {
            s.send(Packet::Subscribe(Subscribe {
                packet_id: pid(i),
                filters: vec![(filter("r/#"), SubscriptionOptions::default())],
                properties: SubscribeProperties::default(),
            }))
            .await;
        }
        eventually("the first SUBSCRIBE", || hook.0.load(Ordering::SeqCst) > 0).await;
        // Give an unbounded broker time to process them all.
        p.expect_nothing().await;
        let processed = hook.0.load(Ordering::SeqCst);
        assert!(
            processed < usize::from(SUBSCRIBES) / 2,
            "{processed} of {SUBSCRIBES} SUBSCRIBEs processed by a broker whose client reads nothing"
        );
        // Once the client reads, everything is answered and delivered.
        let (mut subacks, mut publishes) = (0, 0);
        while subacks < SUBSCRIBES {
            match s.recv_within(WAIT).await {
                Some(Packet::SubAck(_)) => subacks += 1,
                Some(Packet::Publish(_)) => publishes += 1,
                other => panic!(
                    "unexpected {other:?} after {subacks} SUBACKs, {publishes} messages, {} processed",
                    hook.0.load(Ordering::SeqCst)
                ),
            }
        }
        while publishes < usize::from(SUBSCRIBES) * RETAINED {
            assert!(matches!(s.recv().await, Packet::Publish(_)));
            publishes += 1;
        }
        assert_eq!(hook.0.load(Ordering::SeqCst), usize::from(SUBSCRIBES));
    });
}

#[test]
fn retained_qos1_messages_still_owed_at_a_disconnect_stay_with_a_persistent_session() {
    // Retained messages sent on SUBSCRIBE are messages pending transmission,
    // session state that outlives the connection (§4.1): those the broker
    // had not handed to the session yet (the client was slow to read) are
    // delivered on the next connection.
    const RETAINED: usize = 64;
    with_default_broker(|ctx, addr| async move {
        let mut p = Raw::connect(addr, V311, "p", true).await;
        let payload = vec![7u8; 128 * 1024];
        for i in 0..RETAINED {
            p.publish(&format!("r/{i}"), &payload, QoS::AtLeastOnce, true)
                .await;
        }
        eventually("retained stored", || {
            ctx.broker().retained_count() == RETAINED
        })
        .await;
        let connected = |id: &str| {
            ctx.broker()
                .clients()
                .iter()
                .any(|c| c.info.client_id == id)
        };
        // 8 MiB owed: more than the sockets' buffers hold.
        let mut s = Raw::connect(addr, V311, "slow", false).await;
        s.send(Packet::Subscribe(myqtt_core::codec::Subscribe {
            packet_id: pid(1),
            filters: vec![(
                filter("r/#"),
                myqtt_core::codec::SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            )],
            properties: myqtt_core::codec::SubscribeProperties::default(),
        }))
        .await;
        assert!(matches!(s.recv().await, Packet::SubAck(_)));
        drop(s);
        eventually("the slow client gone", || !connected("slow")).await;
        let (mut s, ack) = Raw::connect_with(addr, connect_packet(V311, "slow", false, 0)).await;
        assert!(ack.session_present);
        let mut topics = std::collections::BTreeSet::new();
        while topics.len() < RETAINED {
            match s.recv_within(WAIT).await {
                Some(Packet::Publish(m)) => {
                    s.ack(&m).await;
                    topics.insert(m.topic.to_string());
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => break,
            }
        }
        assert_eq!(topics.len(), RETAINED, "retained messages lost: {topics:?}");
    });
}
