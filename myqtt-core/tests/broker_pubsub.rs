//! Routing: QoS 0/1/2 both ways, wildcards, `$` topics, overlapping and
//! shared subscriptions, MQTT 5 options and properties, offline queues and
//! redelivery, checked with raw packets over real sockets.

mod broker_util;

use std::time::Duration;

use broker_util::*;
use bytes::Bytes;
use myqtt_core::broker::BrokerConfig;
use myqtt_core::broker::hooks::Message;
use myqtt_core::codec::{
    Packet, ProtocolVersion, PubAck, PublishProperties, PublishProps, QoS, ReasonCode,
    RetainHandling, SubscribeProperties, SubscriptionOptions,
};

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

#[test]
fn messages_are_delivered_at_the_lower_of_publish_and_granted_qos() {
    // [MQTT-3.8.4-6] (3.1.1) / [MQTT-3.8.4-8] (5.0)
    for version in [V311, V5] {
        with_default_broker(|_, addr| async move {
            let mut s0 = Raw::connect(addr, version, "s0", true).await;
            let mut s2 = Raw::connect(addr, version, "s2", true).await;
            assert_eq!(
                s0.subscribe("q", QoS::AtMostOnce).await,
                ReasonCode::Success
            );
            assert_eq!(
                s2.subscribe("q", QoS::ExactlyOnce).await,
                ReasonCode::GrantedQoS2
            );
            let mut p = Raw::connect(addr, version, "p", true).await;
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let payload = [qos.as_u8()];
                let rc = p.publish("q", &payload, qos, false).await;
                assert!(rc.is_success());
                let got = s0.recv_publish().await;
                assert_eq!(
                    (got.qos, got.payload.as_ref()),
                    (QoS::AtMostOnce, &payload[..])
                );
                let got = s2.recv_publish().await;
                assert_eq!((got.qos, got.payload.as_ref()), (qos, &payload[..]));
                assert_eq!(got.packet_id.is_some(), qos != QoS::AtMostOnce);
            }
        });
    }
}

#[test]
fn wildcard_filters_match_and_a_publish_to_a_wildcard_topic_is_refused() {
    // [MQTT-3.3.2-2]: a topic name with wildcards is malformed; MQTT 5
    // clients get DISCONNECT 0x90 Topic Name invalid.
    with_default_broker(|_, addr| async move {
        let mut s = Raw::connect(addr, V5, "s", true).await;
        s.subscribe("a/+/c", QoS::AtMostOnce).await;
        s.subscribe("x/#", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V311, "p", true).await;
        p.publish("a/b/c", b"1", QoS::AtMostOnce, false).await;
        p.publish("a/b/d", b"no", QoS::AtMostOnce, false).await;
        p.publish("x", b"2", QoS::AtMostOnce, false).await; // `#` matches the parent
        p.publish("x/y/z", b"3", QoS::AtMostOnce, false).await;
        for want in [b"1", b"2", b"3"] {
            assert_eq!(s.recv_publish().await.payload.as_ref(), want);
        }
        s.expect_nothing().await;

        let mut bad = Raw::connect(addr, V5, "bad", true).await;
        // PUBLISH to "a/#": topic names cannot hold wildcards.
        bad.send_bytes(&[0x30, 0x06, 0x00, 0x03, b'a', b'/', b'#', 0x00])
            .await;
        let got = bad.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::TopicNameInvalid),
            "{got:?}"
        );
        s.expect_nothing().await;
    });
}

#[test]
fn a_multi_level_wildcard_does_not_receive_dollar_topics() {
    // [MQTT-4.7.2-1]
    with_default_broker(|ctx, addr| async move {
        let mut all = Raw::connect(addr, V311, "all", true).await;
        all.subscribe("#", QoS::AtMostOnce).await;
        all.subscribe("+/broker/uptime", QoS::AtMostOnce).await;
        let mut sys = Raw::connect(addr, V311, "sys", true).await;
        sys.subscribe("$SYS/#", QoS::AtMostOnce).await;
        ctx.broker()
            .publish(Message {
                topic: topic("$SYS/broker/uptime"),
                payload: Bytes::from_static(b"42"),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: PublishProps::new(),
            })
            .unwrap();
        assert_eq!(
            sys.recv_publish().await.topic.as_str(),
            "$SYS/broker/uptime"
        );
        all.expect_nothing().await;
    });
}

#[test]
fn overlapping_subscriptions_deliver_one_copy_with_every_subscription_identifier() {
    // MQTT 5.0 §3.3.4: one copy at the highest QoS; [MQTT-3.3.4-3].
    with_default_broker(|_, addr| async move {
        let mut s = Raw::connect(addr, V5, "s", true).await;
        let props = |id| SubscribeProperties {
            subscription_identifier: Some(id),
            ..SubscribeProperties::default()
        };
        s.subscribe_with(vec![(filter("o/+"), opts(QoS::AtMostOnce))], props(7))
            .await;
        s.subscribe_with(vec![(filter("o/#"), opts(QoS::AtLeastOnce))], props(9))
            .await;
        let mut legacy = Raw::connect(addr, V311, "legacy", true).await;
        legacy
            .subscribe_with(
                vec![
                    (filter("o/+"), opts(QoS::AtMostOnce)),
                    (filter("o/#"), opts(QoS::AtLeastOnce)),
                ],
                SubscribeProperties::default(),
            )
            .await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        p.publish("o/x", b"once", QoS::AtLeastOnce, false).await;
        let got = s.recv_publish().await;
        assert_eq!(got.qos, QoS::AtLeastOnce);
        let mut ids = got.properties.subscription_identifiers.clone();
        ids.sort_unstable();
        assert_eq!(ids, [7, 9]);
        s.expect_nothing().await;
        assert_eq!(legacy.recv_publish().await.qos, QoS::AtLeastOnce);
        legacy.expect_nothing().await;
    });
}

#[test]
fn several_filters_in_one_subscribe_get_one_result_each() {
    // [MQTT-3.8.4-5] (3.1.1) / [MQTT-3.8.4-6] (5.0)
    let config = BrokerConfig::builder()
        .max_topic_levels(3)
        .maximum_qos(QoS::AtLeastOnce)
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let mut s = Raw::connect(addr, V5, "s", true).await;
        let codes = s
            .subscribe_with(
                vec![
                    (filter("a"), opts(QoS::AtMostOnce)),
                    (filter("b"), opts(QoS::ExactlyOnce)),
                    (filter("c/d/e/f"), opts(QoS::AtMostOnce)),
                ],
                SubscribeProperties::default(),
            )
            .await;
        assert_eq!(
            codes,
            [
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::TopicFilterInvalid
            ]
        );
        let mut s = Raw::connect(addr, V311, "s3", true).await;
        let codes = s
            .subscribe_with(
                vec![
                    (filter("a"), opts(QoS::ExactlyOnce)),
                    (filter("c/d/e/f"), opts(QoS::AtMostOnce)),
                ],
                SubscribeProperties::default(),
            )
            .await;
        // 3.1.1 carries any failure as 0x80.
        assert_eq!(
            codes,
            [ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError]
        );
    });
}

#[test]
fn unsubscribe_reports_a_result_per_filter_and_stops_delivery() {
    // [MQTT-3.10.4-1] [MQTT-3.10.4-5] (3.1.1); MQTT 5.0 §3.11.3.
    with_default_broker(|_, addr| async move {
        let mut s = Raw::connect(addr, V5, "s", true).await;
        s.subscribe("u/1", QoS::AtMostOnce).await;
        let codes = s.unsubscribe(&["u/1", "u/2"]).await;
        assert_eq!(
            codes,
            [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
        );
        let mut p = Raw::connect(addr, V311, "p", true).await;
        p.publish("u/1", b"x", QoS::AtMostOnce, false).await;
        s.expect_nothing().await;
        let mut s3 = Raw::connect(addr, V311, "s3", true).await;
        s3.subscribe("u/1", QoS::AtMostOnce).await;
        assert!(s3.unsubscribe(&["u/1"]).await.is_empty());
    });
}

#[test]
fn no_local_subscriptions_do_not_receive_their_own_messages() {
    // [MQTT-3.8.3-3] (5.0)
    with_default_broker(|_, addr| async move {
        let mut c = Raw::connect(addr, V5, "me", true).await;
        let options = SubscriptionOptions {
            no_local: true,
            ..opts(QoS::AtMostOnce)
        };
        c.subscribe_with(vec![(filter("n"), options)], SubscribeProperties::default())
            .await;
        let mut other = Raw::connect(addr, V5, "other", true).await;
        other.subscribe("n", QoS::AtMostOnce).await;
        c.publish("n", b"mine", QoS::AtMostOnce, false).await;
        assert_eq!(other.recv_publish().await.payload.as_ref(), b"mine");
        c.expect_nothing().await;
        other.publish("n", b"theirs", QoS::AtMostOnce, false).await;
        assert_eq!(c.recv_publish().await.payload.as_ref(), b"theirs");
    });
}

#[test]
fn the_retain_flag_is_forwarded_only_to_retain_as_published_subscriptions() {
    // [MQTT-3.3.1-12] (5.0); 3.1.1 forwards RETAIN 0 [MQTT-3.3.1-9].
    with_default_broker(|_, addr| async move {
        let mut rap = Raw::connect(addr, V5, "rap", true).await;
        let options = SubscriptionOptions {
            retain_as_published: true,
            ..opts(QoS::AtMostOnce)
        };
        rap.subscribe_with(vec![(filter("r"), options)], SubscribeProperties::default())
            .await;
        let mut plain = Raw::connect(addr, V5, "plain", true).await;
        plain.subscribe("r", QoS::AtMostOnce).await;
        let mut legacy = Raw::connect(addr, V311, "legacy", true).await;
        legacy.subscribe("r", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        p.publish("r", b"kept", QoS::AtMostOnce, true).await;
        assert!(rap.recv_publish().await.retain);
        assert!(!plain.recv_publish().await.retain);
        assert!(!legacy.recv_publish().await.retain);
    });
}

#[test]
fn a_repeated_qos2_publish_before_pubrel_is_delivered_once() {
    // [MQTT-4.3.3-2] (3.1.1) / [MQTT-4.3.3-10] (5.0)
    for version in [V311, V5] {
        with_default_broker(|_, addr| async move {
            let mut s = Raw::connect(addr, version, "s", true).await;
            s.subscribe("d", QoS::ExactlyOnce).await;
            let mut p = Raw::connect(addr, version, "p", true).await;
            let first = publish("d", b"once", QoS::ExactlyOnce, false, 7);
            let mut again = first.clone();
            again.dup = true;
            p.send(Packet::Publish(first)).await;
            assert!(matches!(p.recv().await, Packet::PubRec(a) if a.packet_id == pid(7)));
            p.send(Packet::Publish(again)).await;
            assert!(matches!(p.recv().await, Packet::PubRec(a) if a.packet_id == pid(7)));
            p.send(Packet::PubRel(PubAck::new(pid(7)))).await;
            assert!(matches!(p.recv().await, Packet::PubComp(a) if a.packet_id == pid(7)));
            assert_eq!(s.recv_publish().await.payload.as_ref(), b"once");
            s.expect_nothing().await;
        });
    }
}

#[test]
fn unacknowledged_messages_are_resent_with_dup_when_the_session_resumes() {
    // [MQTT-4.4.0-1] [MQTT-3.3.1-1]
    with_default_broker(|_, addr| async move {
        let mut s = Raw::connect(addr, V311, "s", false).await;
        s.subscribe("r", QoS::AtLeastOnce).await;
        let mut p = Raw::connect(addr, V311, "p", true).await;
        p.publish("r", b"m", QoS::AtLeastOnce, false).await;
        let first = match s.recv().await {
            Packet::Publish(p) => p,
            other => panic!("{other:?}"),
        };
        assert!(!first.dup);
        drop(s); // no PUBACK
        let (mut s, ack) = Raw::connect_with(addr, connect_packet(V311, "s", false, 0)).await;
        assert!(ack.session_present);
        let again = s.recv_publish().await;
        assert!(again.dup);
        assert_eq!(again.packet_id, first.packet_id);
        assert_eq!(again.payload, first.payload);
    });
}

#[test]
fn messages_for_an_offline_persistent_session_are_queued_up_to_the_limit() {
    let config = BrokerConfig::builder()
        .max_queued_messages(3)
        .build()
        .unwrap();
    with_broker(config, |ctx, addr| async move {
        let s = Raw::connect(addr, V311, "off", false).await;
        let mut s = s;
        s.subscribe("q", QoS::AtLeastOnce).await;
        s.disconnect().await;
        let mut p = Raw::connect(addr, V311, "p", true).await;
        // QoS 0 messages are not queued for offline sessions (sent first:
        // the PUBACKs below prove it was routed).
        p.publish("q", b"q0", QoS::AtMostOnce, false).await;
        for i in 0..5u8 {
            p.publish("q", &[i], QoS::AtLeastOnce, false).await;
        }
        assert_eq!(ctx.broker().dropped_count(), 2);
        let (mut s, ack) = Raw::connect_with(addr, connect_packet(V311, "off", false, 0)).await;
        assert!(ack.session_present);
        for i in 0..3u8 {
            assert_eq!(s.recv_publish().await.payload.as_ref(), [i]);
        }
        s.expect_nothing().await;
    });
}

#[test]
fn max_queued_messages_0_still_delivers_to_connected_subscribers() {
    // Queue limit 0 means nothing waits for an offline session; a connected
    // subscriber still receives every message at QoS 0 and 1.
    let config = BrokerConfig::builder()
        .max_queued_messages(0)
        .build()
        .unwrap();
    with_broker(config, |ctx, addr| async move {
        let mut s = Raw::connect(addr, V311, "s", true).await;
        s.subscribe("t/#", QoS::AtLeastOnce).await;
        let mut p = Raw::connect(addr, V311, "p", true).await;
        p.publish("t/0", b"zero", QoS::AtMostOnce, false).await;
        assert_eq!(s.recv_publish().await.payload.as_ref(), b"zero");
        p.publish("t/1", b"one", QoS::AtLeastOnce, false).await;
        let m = s.recv_publish().await;
        assert_eq!((m.qos, m.payload.as_ref()), (QoS::AtLeastOnce, &b"one"[..]));
        s.ack(&m).await;
        assert_eq!(ctx.broker().dropped_count(), 0);
        // Offline, nothing is queued.
        let mut off = Raw::connect(addr, V311, "off", false).await;
        off.subscribe("t/#", QoS::AtLeastOnce).await;
        off.disconnect().await;
        p.publish("t/2", b"two", QoS::AtLeastOnce, false).await;
        eventually("the drop for the offline session", || {
            ctx.broker().dropped_count() == 1
        })
        .await;
    });
}

#[test]
fn the_send_window_holds_at_most_max_inflight_messages() {
    let config = BrokerConfig::builder().max_inflight(2).build().unwrap();
    with_broker(config, |_, addr| async move {
        let mut s = Raw::connect(addr, V311, "s", true).await;
        s.subscribe("w", QoS::AtLeastOnce).await;
        let mut p = Raw::connect(addr, V311, "p", true).await;
        for i in 0..4u8 {
            p.publish("w", &[i], QoS::AtLeastOnce, false).await;
        }
        let mut got = Vec::new();
        for _ in 0..2 {
            match s.recv().await {
                Packet::Publish(m) => got.push(m),
                other => panic!("{other:?}"),
            }
        }
        s.expect_nothing().await;
        // Each PUBACK opens the window for the next one, in order.
        for m in got {
            s.ack(&m).await;
        }
        assert_eq!(s.recv_publish().await.payload.as_ref(), [2]);
        assert_eq!(s.recv_publish().await.payload.as_ref(), [3]);
    });
}

#[test]
fn shared_subscriptions_deliver_each_message_to_one_member_of_the_group() {
    // MQTT 5.0 §4.8.2
    with_default_broker(|_, addr| async move {
        let mut a = Raw::connect(addr, V5, "a", true).await;
        let mut b = Raw::connect(addr, V5, "b", true).await;
        let mut plain = Raw::connect(addr, V5, "plain", true).await;
        a.subscribe("$share/g/jobs/+", QoS::AtLeastOnce).await;
        b.subscribe("$share/g/jobs/+", QoS::AtLeastOnce).await;
        plain.subscribe("jobs/+", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        for i in 0..10u8 {
            p.publish("jobs/x", &[i], QoS::AtLeastOnce, false).await;
        }
        for _ in 0..10 {
            plain.recv_publish().await;
        }
        let mut seen = Vec::new();
        while let Some(Packet::Publish(m)) = a.recv_within(QUIET).await {
            a.ack(&m).await;
            seen.push(m.payload[0]);
        }
        let from_a = seen.len();
        while let Some(Packet::Publish(m)) = b.recv_within(QUIET).await {
            b.ack(&m).await;
            seen.push(m.payload[0]);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<u8>>(), "each exactly once");
        assert!(from_a > 0 && from_a < 10, "both members got some: {from_a}");
    });
}

#[test]
fn a_shared_message_goes_to_another_member_when_the_chosen_one_is_full() {
    // MQTT 5.0 §4.8.2: the server picks a member that can take it; a full
    // queue at one member is not a reason to drop the message.
    let config = BrokerConfig::builder()
        .max_queued_messages(2)
        .build()
        .unwrap();
    with_broker(config, |ctx, addr| async move {
        let mut persistent = connect_packet(V5, "a", false, 0);
        persistent.properties.session_expiry_interval = Some(60);
        for id in ["a", "b"] {
            persistent.client_id = id.into();
            let (mut c, _) = Raw::connect_with(addr, persistent.clone()).await;
            c.subscribe("$share/g/jobs", QoS::AtLeastOnce).await;
            if id == "a" {
                c.subscribe("fill", QoS::AtLeastOnce).await;
            }
            c.disconnect().await;
        }
        let mut p = Raw::connect(addr, V5, "p", true).await;
        // a's queue is full.
        p.publish("fill", b"f1", QoS::AtLeastOnce, false).await;
        p.publish("fill", b"f2", QoS::AtLeastOnce, false).await;
        // One of these is a's turn; both fit in b's queue.
        p.publish("jobs", b"j1", QoS::AtLeastOnce, false).await;
        p.publish("jobs", b"j2", QoS::AtLeastOnce, false).await;
        assert_eq!(
            ctx.broker().dropped_count(),
            0,
            "a shared message was dropped"
        );
        persistent.client_id = "b".into();
        let (mut b, ack) = Raw::connect_with(addr, persistent).await;
        assert!(ack.session_present);
        let mut got = Vec::new();
        for _ in 0..2 {
            let m = b.recv_publish().await;
            b.ack(&m).await;
            got.push(m.payload);
        }
        got.sort();
        assert_eq!(got, [&b"j1"[..], &b"j2"[..]]);
    });
}

#[test]
fn mqtt5_properties_are_forwarded_unchanged_and_expiry_counts_down() {
    // [MQTT-3.3.2-6] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-20]
    with_default_broker(|_, addr| async move {
        let mut s = Raw::connect(addr, V5, "s", true).await;
        s.subscribe("req", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        let mut m = publish("req", b"body", QoS::AtLeastOnce, false, 1);
        m.properties = PublishProperties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(100),
            response_topic: Some(topic("reply/here")),
            correlation_data: Some(Bytes::from_static(b"corr")),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            content_type: Some("text/plain".into()),
            ..PublishProperties::default()
        }
        .into();
        p.publish_packet(m.clone()).await;
        let got = s.recv_publish().await;
        let want = m.properties;
        assert_eq!(got.properties.response_topic, want.response_topic);
        assert_eq!(got.properties.correlation_data, want.correlation_data);
        assert_eq!(got.properties.user_properties, want.user_properties);
        assert_eq!(got.properties.content_type, want.content_type);
        assert_eq!(got.properties.payload_format_indicator, Some(true));
        let left = got.properties.message_expiry_interval.unwrap();
        assert!((99..=100).contains(&left), "{left}");
    });
}

#[test]
fn an_expired_message_is_not_delivered_to_a_returning_session() {
    // [MQTT-3.3.2-5]
    with_default_broker(|ctx, addr| async move {
        let mut connect = connect_packet(V5, "late", false, 0);
        connect.properties.session_expiry_interval = Some(60);
        let (mut s, _) = Raw::connect_with(addr, connect.clone()).await;
        s.subscribe("exp", QoS::AtLeastOnce).await;
        s.disconnect().await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        let mut m = publish("exp", b"short", QoS::AtLeastOnce, false, 1);
        m.properties.make_mut().message_expiry_interval = Some(1);
        p.publish_packet(m).await;
        p.publish("exp", b"long", QoS::AtLeastOnce, false).await;
        tokio::time::sleep(Duration::from_millis(1100)).await; // let it expire
        let (mut s, ack) = Raw::connect_with(addr, connect).await;
        assert!(ack.session_present);
        assert_eq!(s.recv_publish().await.payload.as_ref(), b"long");
        s.expect_nothing().await;
        assert_eq!(ctx.broker().dropped_count(), 1);
    });
}

#[test]
fn topic_aliases_from_a_client_are_resolved_before_routing() {
    // MQTT 5.0 §3.3.2.3.4
    with_default_broker(|_, addr| async move {
        let mut s = Raw::connect(addr, V5, "s", true).await;
        s.subscribe("long/topic/name", QoS::AtMostOnce).await;
        let (mut p, ack) = Raw::connect_with(addr, connect_packet(V5, "p", true, 0)).await;
        assert_eq!(ack.properties.topic_alias_maximum, Some(10));
        let mut first = publish("long/topic/name", b"1", QoS::AtMostOnce, false, 0);
        first.properties.make_mut().topic_alias = Some(3);
        p.send(Packet::Publish(first)).await;
        let mut second = publish("long/topic/name", b"2", QoS::AtMostOnce, false, 0);
        second.topic = myqtt_core::topic::TopicName::empty_for_alias();
        second.properties.make_mut().topic_alias = Some(3);
        p.send(Packet::Publish(second)).await;
        for want in [b"1", b"2"] {
            let got = s.recv_publish().await;
            assert_eq!(got.topic.as_str(), "long/topic/name");
            assert_eq!(got.properties.topic_alias, None);
            assert_eq!(got.payload.as_ref(), want);
        }
    });
}

#[test]
fn a_client_past_the_receive_maximum_is_disconnected_with_0x93() {
    // [MQTT-3.3.4-9] (5.0)
    let config = BrokerConfig::builder().receive_maximum(2).build().unwrap();
    with_broker(config, |_, addr| async move {
        let (mut p, ack) = Raw::connect_with(addr, connect_packet(V5, "p", true, 0)).await;
        assert_eq!(ack.properties.receive_maximum, Some(2));
        for id in 1..=3 {
            // QoS 2 without PUBREL: each stays unacknowledged.
            p.send(Packet::Publish(publish(
                "rm",
                b"x",
                QoS::ExactlyOnce,
                false,
                id,
            )))
            .await;
        }
        let got = p.closed().await;
        assert!(
            matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::ReceiveMaximumExceeded),
            "{got:?}"
        );
    });
}

#[test]
fn a_message_too_large_for_a_client_is_not_sent_to_it() {
    // [MQTT-3.1.2-24] (5.0): the client's Maximum Packet Size.
    with_default_broker(|ctx, addr| async move {
        let mut connect = connect_packet(V5, "small", true, 0);
        connect.properties.maximum_packet_size = Some(64);
        let (mut small, _) = Raw::connect_with(addr, connect).await;
        small.subscribe("size", QoS::AtMostOnce).await;
        let mut big = Raw::connect(addr, V5, "big", true).await;
        big.subscribe("size", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        p.publish("size", &[7; 200], QoS::AtMostOnce, false).await;
        p.publish("size", b"fits", QoS::AtMostOnce, false).await;
        assert_eq!(big.recv_publish().await.payload.len(), 200);
        assert_eq!(big.recv_publish().await.payload.as_ref(), b"fits");
        assert_eq!(small.recv_publish().await.payload.as_ref(), b"fits");
        assert_eq!(ctx.broker().dropped_count(), 1);
    });
}

#[test]
fn a_publish_with_no_subscriber_is_acknowledged_with_0x10_at_mqtt5() {
    with_default_broker(|_, addr| async move {
        let mut p = Raw::connect(addr, V5, "p", true).await;
        assert_eq!(
            p.publish("nobody", b"x", QoS::AtLeastOnce, false).await,
            ReasonCode::NoMatchingSubscribers
        );
        assert_eq!(
            p.publish("nobody", b"x", QoS::ExactlyOnce, false).await,
            ReasonCode::NoMatchingSubscribers
        );
    });
}

#[test]
fn retain_handling_decides_whether_retained_messages_come_at_subscribe() {
    // MQTT 5.0 §3.8.3.1: 0 always, 1 only for a new subscription, 2 never.
    with_default_broker(|_, addr| async move {
        let mut p = Raw::connect(addr, V5, "p", true).await;
        p.publish("rh", b"kept", QoS::AtMostOnce, true).await;
        // Wait until the broker has stored it: a QoS 0 publish can still be
        // in flight when another connection subscribes. Each probe is a fresh
        // subscription, so only the stored copy can reach it.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let mut probe = Raw::connect(addr, V5, "probe", true).await;
            probe.subscribe("rh", QoS::AtMostOnce).await;
            // A live copy (retain 0) means the probe subscribed first: retry.
            if let Some(Packet::Publish(m)) = probe.recv_within(QUIET).await
                && m.retain
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the retained message was never stored"
            );
        }
        let mut s = Raw::connect(addr, V5, "s", true).await;
        let with = |rh| SubscriptionOptions {
            retain_handling: rh,
            ..opts(QoS::AtMostOnce)
        };
        for (rh, expect) in [
            (RetainHandling::DoNotSend, false),
            (RetainHandling::SendAtSubscribeIfNew, false), // exists now
            (RetainHandling::SendAtSubscribe, true),
        ] {
            s.send(Packet::Subscribe(myqtt_core::codec::Subscribe {
                packet_id: pid(1),
                filters: vec![(filter("rh"), with(rh))],
                properties: SubscribeProperties::default(),
            }))
            .await;
            assert!(matches!(s.recv().await, Packet::SubAck(_)));
            if expect {
                let m = s.recv_publish().await;
                assert!(m.retain);
            } else {
                s.expect_nothing().await;
            }
        }
        let mut fresh = Raw::connect(addr, V5, "fresh", true).await;
        fresh
            .subscribe_with(
                vec![(filter("rh"), with(RetainHandling::SendAtSubscribeIfNew))],
                SubscribeProperties::default(),
            )
            .await;
        assert!(fresh.recv_publish().await.retain);
    });
}

#[test]
fn a_slow_subscriber_does_not_slow_the_others() {
    let config = BrokerConfig::builder()
        .max_queued_messages(50)
        .build()
        .unwrap();
    with_broker(config, |ctx, addr| async move {
        let mut slow = Raw::connect(addr, V311, "slow", true).await;
        slow.subscribe("flood", QoS::AtMostOnce).await;
        let mut fast = Raw::connect(addr, V311, "fast", true).await;
        fast.subscribe("flood", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V311, "p", true).await;
        let payload = vec![0_u8; 16 * 1024];
        let count = 2000_u64;
        let reader = tokio::spawn(async move {
            let mut got = 0;
            // Every message, or until nothing more comes: a QoS 0 message
            // the broker had to drop for `fast` itself (its queue of 50
            // full while its reader was starved of CPU) never arrives.
            while got < count {
                match fast.recv_within(Duration::from_secs(2)).await {
                    Some(Packet::Publish(_)) => got += 1,
                    Some(other) => panic!("expected PUBLISH, got {other:?}"),
                    None => break,
                }
            }
            (fast, got)
        });
        for _ in 0..count {
            // QoS 1: the publisher's PUBACKs keep coming while `slow`
            // never reads.
            p.publish("flood", &payload, QoS::AtLeastOnce, false).await;
        }
        let (fast, got) = reader.await.unwrap();
        let dropped = |id: &str| {
            ctx.broker()
                .clients()
                .into_iter()
                .find(|c| c.info.client_id == id)
                .unwrap()
                .dropped
        };
        let (slow_dropped, fast_dropped) = (dropped("slow"), dropped("fast"));
        // Nothing is lost silently: what `fast` did not get was dropped
        // for it, and counted.
        assert_eq!(got + fast_dropped, count);
        assert!(slow_dropped > 0, "the slow one dropped");
        // `fast` keeps up (it loses messages only when its own reader is
        // starved, a few percent of the runs on a loaded machine, and far
        // fewer than `slow`).
        assert!(
            fast_dropped < slow_dropped,
            "{fast_dropped} >= {slow_dropped}"
        );
        assert!(ctx.broker().dropped_count() >= slow_dropped + fast_dropped);
        drop((slow, fast));
    });
}

#[test]
fn the_broker_assigns_topic_aliases_to_what_it_sends_when_configured() {
    // MQTT 5.0 §3.3.2.3.4: the second message on a topic carries only the
    // alias.
    let config = BrokerConfig::builder()
        .outgoing_topic_aliases(4)
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let mut connect = connect_packet(V5, "s", true, 0);
        connect.properties.topic_alias_maximum = Some(2);
        let (mut s, _) = Raw::connect_with(addr, connect).await;
        s.subscribe("alias/me", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        p.publish("alias/me", b"1", QoS::AtMostOnce, false).await;
        p.publish("alias/me", b"2", QoS::AtMostOnce, false).await;
        let first = s.recv_publish().await;
        let alias = first.properties.topic_alias.expect("an alias is assigned");
        assert_eq!(first.topic.as_str(), "alias/me");
        let second = s.recv_publish().await;
        assert_eq!(second.properties.topic_alias, Some(alias));
        assert!(second.topic.is_empty());
        assert_eq!(second.payload.as_ref(), b"2");
    });
}
