//! `Broker::publish_to`: a message queued for one client by its id, with no
//! subscription, as a hook answers one client (PyMyQtt's `conn.pub` on the
//! listener side).

mod broker_util;

use broker_util::*;
use bytes::Bytes;
use myqtt_core::broker::BrokerError;
use myqtt_core::broker::hooks::Message;
use myqtt_core::codec::{ProtocolVersion, PublishProps, QoS};
use myqtt_core::topic::TopicName;

fn message(t: &str, qos: QoS) -> Message {
    Message {
        topic: topic(t),
        payload: Bytes::from_static(b"just for you"),
        qos,
        retain: true,
        properties: PublishProps::new(),
    }
}

#[test]
fn publish_to_reaches_only_the_named_client_without_a_subscription() {
    with_default_broker(|ctx, addr| async move {
        let mut a = Raw::connect(addr, ProtocolVersion::V311, "a", true).await;
        let mut b = Raw::connect(addr, ProtocolVersion::V5, "b", true).await;
        b.subscribe("#", QoS::AtLeastOnce).await;
        assert_eq!(
            ctx.broker()
                .publish_to("a", message("direct", QoS::AtLeastOnce)),
            Ok(true)
        );
        let got = a.recv_publish().await;
        assert_eq!(
            (got.topic.as_str(), got.payload.as_ref(), got.qos),
            ("direct", &b"just for you"[..], QoS::AtLeastOnce)
        );
        // Not retained: the message was for one client, not the topic.
        assert!(!got.retain);
        a.ack(&got).await;
        b.expect_nothing().await;
        assert_eq!(ctx.broker().retained_count(), 0);
    });
}

#[test]
fn publish_to_an_unknown_client_or_an_empty_topic_is_refused() {
    with_default_broker(|ctx, _addr| async move {
        assert_eq!(
            ctx.broker()
                .publish_to("nobody", message("t", QoS::AtMostOnce)),
            Ok(false)
        );
        let mut m = message("t", QoS::AtMostOnce);
        m.topic = TopicName::empty_for_alias();
        // [MQTT-4.7.3-1]
        assert_eq!(
            ctx.broker().publish_to("nobody", m),
            Err(BrokerError::EmptyTopic)
        );
    });
}

#[test]
fn publish_to_an_offline_persistent_session_queues_qos1_but_not_qos0() {
    with_default_broker(|ctx, addr| async move {
        let c = Raw::connect(addr, ProtocolVersion::V311, "away", false).await;
        c.disconnect().await;
        eventually("the session to go offline", || {
            ctx.broker().connection_count() == 0
        })
        .await;
        assert_eq!(
            ctx.broker()
                .publish_to("away", message("q0", QoS::AtMostOnce)),
            Ok(false)
        );
        assert_eq!(
            ctx.broker()
                .publish_to("away", message("q1", QoS::AtLeastOnce)),
            Ok(true)
        );
        let mut back = Raw::connect(addr, ProtocolVersion::V311, "away", false).await;
        let got = back.recv_publish().await;
        assert_eq!(got.topic.as_str(), "q1");
        back.ack(&got).await;
        back.expect_nothing().await;
    });
}
