//! Outgoing QoS 1 flows of a persistent session with a store: an
//! unacknowledged message is resent after a restart with DUP and its packet
//! id [MQTT-4.4.0-1], an acknowledged one never comes back. A QoS 1
//! message goes out from its queue entry; its in-flight record is written
//! when its connection closes (a clean restart) or once it has waited
//! `SentQos1::MOVE_AFTER_MS` (1 s) for its PUBACK (so a later crash also
//! resends it with DUP); see `doc/storage.md`.

mod broker_util;
mod storage_util;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use broker_util::Raw;
use myqtt_core::Ctx;
use myqtt_core::broker::BrokerConfig;
use myqtt_core::codec::{Packet, ProtocolVersion, PubAck, Publish, QoS};
use myqtt_core::store::StoreConfig;
use storage_util::{start_listener, temp_dir};

const V311: ProtocolVersion = ProtocolVersion::V311;

fn ctx_with_store(dir: &Path) -> (Ctx, SocketAddr) {
    let ctx = Ctx::builder()
        .worker_threads(2)
        .broker(BrokerConfig::builder().build().unwrap())
        .storage(StoreConfig::new(dir))
        .build()
        .unwrap();
    let addr = ctx.create_listener("127.0.0.1", 0).unwrap().local_addr();
    (ctx, addr)
}

/// The next PUBLISH, not acknowledged.
async fn next_publish(raw: &mut Raw) -> Publish {
    match raw.recv().await {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// A persistent (clean session 0) MQTT 3.1.1 subscriber of `t` at QoS 1,
/// and a publisher that publishes `payloads` to it at QoS 1 (each
/// acknowledged, so stored). Returns the subscriber and what it received,
/// unacknowledged.
async fn publish_to_subscriber(addr: SocketAddr, payloads: &[&str]) -> (Raw, Vec<Publish>) {
    let mut sub = Raw::connect(addr, V311, "inflight-sub", false).await;
    sub.subscribe("inflight/t", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(addr, V311, "inflight-pub", true).await;
    for p in payloads {
        publisher
            .publish("inflight/t", p.as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    publisher.disconnect().await;
    let mut got = Vec::new();
    for _ in payloads {
        got.push(next_publish(&mut sub).await);
    }
    (sub, got)
}

async fn puback(raw: &mut Raw, p: &Publish) {
    raw.send(Packet::PubAck(PubAck::new(p.packet_id.expect("QoS 1"))))
        .await;
}

#[test]
fn a_clean_restart_resends_the_unacknowledged_qos1_message_with_dup_and_its_packet_id() {
    let dir = temp_dir("inflight-clean");
    let first = {
        let (ctx, addr) = ctx_with_store(&dir);
        let got = ctx.block_on(async move {
            let (mut sub, got) = publish_to_subscriber(addr, &["acked", "pending"]).await;
            assert_eq!(&got[0].payload[..], b"acked");
            assert!(!got[0].dup && !got[1].dup);
            puback(&mut sub, &got[0]).await;
            // The PUBACK is read before the close: a PINGREQ round trip
            // behind it.
            sub.send(Packet::PingReq).await;
            assert!(matches!(sub.recv().await, Packet::PingResp));
            sub.disconnect().await;
            got
        });
        ctx.exit();
        got
    };
    let (ctx, addr) = ctx_with_store(&dir);
    ctx.block_on(async move {
        let mut sub = Raw::connect(addr, V311, "inflight-sub", false).await;
        let again = next_publish(&mut sub).await;
        assert_eq!(&again.payload[..], b"pending");
        assert!(again.dup, "resent with DUP [MQTT-3.3.1-1]");
        assert_eq!(
            again.packet_id, first[1].packet_id,
            "resent with its packet id [MQTT-4.4.0-1]"
        );
        puback(&mut sub, &again).await;
        // The acknowledged message does not come back.
        sub.expect_nothing().await;
        sub.disconnect().await;
    });
    ctx.exit();
    // Both acknowledgements were durable: nothing is left for the session.
    let (ctx, addr) = ctx_with_store(&dir);
    ctx.block_on(async move {
        let mut sub = Raw::connect(addr, V311, "inflight-sub", false).await;
        sub.expect_nothing().await;
        sub.disconnect().await;
    });
    ctx.exit();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_qos1_message_unacknowledged_for_a_while_comes_back_with_dup_after_a_crash() {
    let dir = temp_dir("inflight-crash");
    let mut listener = start_listener(&dir, 0, "redb");
    let port = listener.port;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sub, first) = rt.block_on(publish_to_subscriber(addr, &["slow"]));
    // The record is written once the flow has waited a second for its
    // PUBACK (this test is about that timer): give it twice that.
    std::thread::sleep(Duration::from_secs(2));
    listener.child.kill().unwrap(); // SIGKILL: no close, no flush
    listener.child.wait().unwrap();
    drop(sub);
    let mut listener = start_listener(&dir, port, "redb");
    let port = listener.port;
    rt.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut sub = Raw::connect(addr, V311, "inflight-sub", false).await;
        let again = next_publish(&mut sub).await;
        assert_eq!(&again.payload[..], b"slow");
        assert!(again.dup, "resent with DUP from its in-flight record");
        assert_eq!(again.packet_id, first[0].packet_id, "[MQTT-4.4.0-1]");
        puback(&mut sub, &again).await;
        sub.disconnect().await;
    });
    listener.child.kill().unwrap();
    listener.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
