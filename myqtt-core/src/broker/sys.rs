//! `$SYS` topics: the broker's own figures, published every
//! [`BrokerConfig::sys_interval`](super::BrokerConfig::sys_interval) as
//! retained QoS 0 messages, each only when its value changed.
//!
//! Topics starting with `$` are the server's [MQTT-4.7.2-1]: a subscription
//! to `#` or `+/...` does not receive them, `$SYS/#` does.

use std::collections::HashMap;

use bytes::Bytes;

use crate::codec::{PublishProperties, QoS};
use crate::topic::TopicName;

use super::Broker;
use super::hooks::Message;

/// The figures, as (topic, value) pairs, in a fixed order.
fn figures(broker: &Broker) -> Vec<(&'static str, String)> {
    let mut v = vec![
        (
            "$SYS/broker/version",
            format!("myqtt {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", broker.uptime().as_secs()),
        ),
        (
            "$SYS/broker/clients/connected",
            broker.connection_count().to_string(),
        ),
        (
            "$SYS/broker/clients/total",
            broker.session_count().to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            broker.subscription_count().to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            broker.retained_count().to_string(),
        ),
        (
            "$SYS/broker/messages/dropped",
            broker.dropped_count().to_string(),
        ),
    ];
    if let Some(s) = broker.store_stats() {
        v.push(("$SYS/broker/store/commits", s.batches.to_string()));
        v.push(("$SYS/broker/store/fsyncs", s.fsyncs.to_string()));
    }
    v
}

/// Starts the publishing task when the interval is not zero. It holds the
/// broker weakly and ends with the broker's shutdown.
pub(super) fn start(broker: &Broker) {
    let interval = broker.config().sys_interval;
    if interval.is_zero() {
        return;
    }
    let weak = broker.downgrade();
    let mut shutdown = broker.shutdown_signal();
    broker.inner.handle.spawn(async move {
        let mut last: HashMap<&'static str, String> = HashMap::new();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = super::signalled(&mut shutdown) => return,
            }
            let Some(broker) = weak.upgrade() else {
                return;
            };
            for (topic, value) in figures(&broker) {
                if last.get(topic) == Some(&value) {
                    continue;
                }
                let Ok(name) = TopicName::new(topic) else {
                    tracing::error!(topic, "invalid $SYS topic");
                    continue;
                };
                let message = Message {
                    topic: name,
                    payload: Bytes::from(value.clone().into_bytes()),
                    qos: QoS::AtMostOnce,
                    retain: true,
                    properties: PublishProperties::default(),
                };
                if let Err(e) = broker.publish(message) {
                    tracing::error!(topic, error = %e, "cannot publish a $SYS figure");
                }
                last.insert(topic, value);
            }
        }
    });
}
