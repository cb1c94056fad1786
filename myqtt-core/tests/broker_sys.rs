//! `$SYS` topics: the broker's figures, retained, updated as they change,
//! never matched by `#` [MQTT-4.7.2-1].

mod broker_util;

use std::time::Duration;

use broker_util::*;
use myqtt_core::broker::BrokerConfig;
use myqtt_core::codec::{ProtocolVersion, QoS};

const V311: ProtocolVersion = ProtocolVersion::V311;

fn sys_config() -> BrokerConfig {
    BrokerConfig::builder()
        .sys_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

#[test]
fn the_connected_clients_figure_is_retained_and_follows_connections() {
    with_broker(sys_config(), |_, addr| async move {
        let mut watcher = Raw::connect(addr, V311, "watcher", true).await;
        watcher
            .subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce)
            .await;
        let value = |m: myqtt_core::codec::Publish| String::from_utf8(m.payload.to_vec()).unwrap();
        // The figure arrives (retained, or the next change) and reaches 1.
        let mut seen = value(watcher.recv_publish().await);
        while seen != "1" {
            seen = value(watcher.recv_publish().await);
        }
        let other = Raw::connect(addr, V311, "other", true).await;
        while seen != "2" {
            seen = value(watcher.recv_publish().await);
        }
        other.disconnect().await;
        while seen != "1" {
            seen = value(watcher.recv_publish().await);
        }
    });
}

#[test]
fn sys_topics_are_retained_but_not_matched_by_a_multi_level_wildcard() {
    // [MQTT-4.7.2-1]
    with_broker(sys_config(), |ctx, addr| async move {
        eventually("$SYS figures retained", || {
            ctx.broker().retained_count() >= 7
        })
        .await;
        let mut all = Raw::connect(addr, V311, "all", true).await;
        all.subscribe("#", QoS::AtMostOnce).await;
        all.expect_nothing().await;
        let mut sys = Raw::connect(addr, V311, "sys", true).await;
        sys.subscribe("$SYS/broker/version", QoS::AtMostOnce).await;
        let m = sys.recv_publish().await;
        assert!(m.retain);
        assert!(m.payload.starts_with(b"myqtt "));
    });
}

#[test]
fn no_sys_topics_by_default() {
    with_default_broker(|ctx, addr| async move {
        let mut sys = Raw::connect(addr, V311, "sys", true).await;
        sys.subscribe("$SYS/#", QoS::AtMostOnce).await;
        sys.expect_nothing().await;
        assert_eq!(ctx.broker().retained_count(), 0);
    });
}
