//! Configured limits and the context's lifetime: topic depth, maximum QoS,
//! and shutting everything down when the context is dropped.

mod broker_util;

use broker_util::*;
use myqtt_core::Ctx;
use myqtt_core::broker::BrokerConfig;
use myqtt_core::codec::{Packet, ProtocolVersion, QoS, ReasonCode};

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn a_publish_deeper_than_the_topic_level_limit_is_refused_and_not_routed() {
    let config = BrokerConfig::builder().max_topic_levels(2).build().unwrap();
    with_broker(config, |_, addr| async move {
        let mut s = Raw::connect(addr, V311, "s", true).await;
        s.subscribe("#", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        assert_eq!(
            p.publish("a/b/c", b"deep", QoS::AtLeastOnce, false).await,
            ReasonCode::TopicNameInvalid
        );
        // 3.1.1 cannot carry the code: the flow completes, nothing is routed.
        let mut p3 = Raw::connect(addr, V311, "p3", true).await;
        assert_eq!(
            p3.publish("a/b/c", b"deep", QoS::ExactlyOnce, false).await,
            ReasonCode::Success
        );
        s.expect_nothing().await;
        p.publish("a/b", b"ok", QoS::AtLeastOnce, false).await;
        assert_eq!(s.recv_publish().await.payload.as_ref(), b"ok");
    });
}

#[test]
fn subscriptions_are_granted_at_most_the_maximum_qos_and_mqtt5_publishers_above_it_are_disconnected()
 {
    let config = BrokerConfig::builder()
        .maximum_qos(QoS::AtLeastOnce)
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let (mut p, ack) = Raw::connect_with(addr, connect_packet(V5, "p", true, 0)).await;
        assert_eq!(ack.properties.maximum_qos, Some(QoS::AtLeastOnce));
        let mut s = Raw::connect(addr, V5, "s", true).await;
        assert_eq!(
            s.subscribe("m", QoS::ExactlyOnce).await,
            ReasonCode::GrantedQoS1
        );
        p.send(Packet::Publish(publish(
            "m",
            b"x",
            QoS::ExactlyOnce,
            false,
            1,
        )))
        .await;
        let got = p.closed().await;
        // [MQTT-3.2.2-12] (5.0)
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::QoSNotSupported),
            "{got:?}"
        );
    });
}

#[test]
fn dropping_the_context_closes_listeners_and_connections() {
    let ctx = Ctx::builder().worker_threads(1).build().unwrap();
    let addr = ctx.create_listener("127.0.0.1", 0).unwrap().local_addr();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = client_rt.block_on(Raw::connect(addr, V5, "c", true));
    drop(ctx);
    client_rt.block_on(async {
        let got = c.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ServerShuttingDown),
            "{got:?}"
        );
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    });
}

#[test]
fn a_stopped_listener_refuses_new_connections_while_the_broker_serves_the_others() {
    with_default_broker(|ctx, addr| async move {
        let extra = ctx.create_listener("127.0.0.1", 0).unwrap();
        let mut c = Raw::connect(addr, V311, "stays", true).await;
        let extra_addr = extra.local_addr();
        extra.stop();
        eventually("the listener to stop", || {
            std::net::TcpStream::connect(extra_addr).is_err()
        })
        .await;
        c.send(Packet::PingReq).await;
        assert_eq!(c.recv().await, Packet::PingResp);
        assert!(extra.is_stopped());
    });
}
