//! Many connections at once: 1,000 clients publishing and subscribing at
//! QoS 1, nothing lost, order kept per publisher.

mod broker_util;

use broker_util::*;
use myqtt_core::broker::BrokerConfig;
use myqtt_core::codec::{Packet, ProtocolVersion, PubAck, QoS};

const CLIENTS: usize = 1000;
const MESSAGES: usize = 10;

#[test]
fn a_thousand_connections_publish_and_subscribe_at_qos1_without_loss() {
    let config = BrokerConfig::builder().build().unwrap();
    with_broker(config, |ctx, addr| async move {
        // Everyone connects and subscribes to its own topic first.
        let mut clients = Vec::with_capacity(CLIENTS);
        let mut connecting = tokio::task::JoinSet::new();
        for i in 0..CLIENTS {
            connecting.spawn(async move {
                let version = if i % 2 == 0 {
                    ProtocolVersion::V311
                } else {
                    ProtocolVersion::V5
                };
                let mut c = Raw::connect(addr, version, &format!("load-{i}"), true).await;
                c.subscribe(&format!("load/{i}"), QoS::AtLeastOnce).await;
                (i, c)
            });
        }
        while let Some(r) = connecting.join_next().await {
            clients.push(r.unwrap());
        }
        assert_eq!(ctx.broker().connection_count(), CLIENTS);
        // Then each publishes to the next one's topic while receiving from
        // the previous one, all at once.
        let mut running = tokio::task::JoinSet::new();
        for (i, mut c) in clients {
            running.spawn(async move {
                let next = (i + 1) % CLIENTS;
                let mut received = Vec::new();
                let mut acked = 0;
                for n in 0..MESSAGES {
                    let id = c.next_id();
                    let mut p = publish(
                        &format!("load/{next}"),
                        format!("{i}:{n}").as_bytes(),
                        QoS::AtLeastOnce,
                        false,
                        id.get(),
                    );
                    p.packet_id = Some(id);
                    c.send(Packet::Publish(p)).await;
                }
                while acked < MESSAGES || received.len() < MESSAGES {
                    match c.recv().await {
                        Packet::PubAck(_) => acked += 1,
                        Packet::Publish(m) => {
                            let id = m.packet_id.expect("QoS 1");
                            c.send(Packet::PubAck(PubAck::new(id))).await;
                            received.push(String::from_utf8(m.payload.to_vec()).unwrap());
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                let prev = (i + CLIENTS - 1) % CLIENTS;
                let want: Vec<String> = (0..MESSAGES).map(|n| format!("{prev}:{n}")).collect();
                assert_eq!(received, want, "client {i}: all, in order");
                c
            });
        }
        let mut done = Vec::with_capacity(CLIENTS);
        while let Some(r) = running.join_next().await {
            done.push(r.unwrap());
        }
        assert_eq!(done.len(), CLIENTS);
        assert_eq!(ctx.broker().dropped_count(), 0);
    });
}
