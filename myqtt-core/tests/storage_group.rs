//! With a store, the QoS 1 PUBLISH packets a connection reads together are
//! written in one store submission and one commit, and their PUBACKs still
//! go out in PUBLISH order [MQTT-4.6.0-2], each after the commit holding
//! its message.

mod broker_util;

mod storage_util;

use storage_util::temp_dir;

use std::time::Duration;

use broker_util::*;
use myqtt_core::Ctx;
use myqtt_core::codec::{Packet, ProtocolVersion, QoS, ReasonCode, encode};
use myqtt_core::store::StoreConfig;

#[test]
fn publishes_read_together_share_one_submission_and_are_acknowledged_in_order() {
    const COUNT: u16 = 50;
    let dir = temp_dir("group");
    let ctx = Ctx::builder()
        .worker_threads(2)
        .shutdown_grace(Duration::from_secs(2))
        .storage(StoreConfig::new(&dir))
        .build()
        .expect("context");
    let addr = ctx
        .create_listener("127.0.0.1", 0)
        .expect("listener")
        .local_addr();
    let v = ProtocolVersion::V311;
    ctx.block_on(async {
        // A persistent subscriber (Clean Session 0) that goes offline: its
        // messages are queued in the store, and the publisher's session is
        // the only one writing.
        let mut sub = Raw::connect(addr, v, "group-sub", false).await;
        assert_eq!(
            sub.subscribe("group/t", QoS::AtLeastOnce).await,
            ReasonCode::GrantedQoS1
        );
        drop(sub);
        eventually("the subscriber's session detached", || {
            ctx.broker().clients().is_empty()
        })
        .await;
        let mut publisher = Raw::connect(addr, v, "group-pub", true).await;
        let before = ctx.broker().store_stats().expect("a store");
        // Every PUBLISH in one write: the listener reads them together.
        let mut buf = bytes::BytesMut::new();
        for i in 1..=COUNT {
            let p = publish(
                "group/t",
                i.to_string().as_bytes(),
                QoS::AtLeastOnce,
                false,
                i,
            );
            encode(&Packet::Publish(p), v, &mut buf).expect("encode");
        }
        publisher.send_bytes(&buf).await;
        for i in 1..=COUNT {
            match publisher.recv().await {
                // [MQTT-4.6.0-2]: in the order of the PUBLISH packets.
                Packet::PubAck(a) => assert_eq!(a.packet_id, pid(i)),
                other => panic!("expected PUBACK {i}, got {other:?}"),
            }
        }
        let after = ctx.broker().store_stats().expect("a store");
        let submissions = after.submissions - before.submissions;
        // One per read of the socket (a few at most), not one per PUBLISH.
        assert!(
            (1..=5).contains(&submissions),
            "{submissions} submissions for {COUNT} PUBLISH packets"
        );
        // The acknowledged messages are in the store: the subscriber gets
        // them all, in order, when it comes back.
        let (mut sub, connack) =
            Raw::connect_with(addr, connect_packet(v, "group-sub", false, 0)).await;
        assert!(connack.session_present);
        for i in 1..=COUNT {
            match sub.recv().await {
                Packet::Publish(p) => assert_eq!(p.payload.as_ref(), i.to_string().as_bytes()),
                other => panic!("expected message {i}, got {other:?}"),
            }
        }
    });
    ctx.exit();
    let _ = std::fs::remove_dir_all(&dir);
}
