//! A listener restarted on its store delivers what was queued as it would
//! have been delivered before (QoS, RETAIN flag, subscription identifiers),
//! and keeps counting MQTT 5 session and message expiry on the wall clock
//! across the downtime.
//!
//! The expiry tests write the store directly with records whose
//! disconnect and receive times lie in the past, as a listener that stopped
//! a minute ago would have left them: no test waits for time to pass.

mod storage_util;

use storage_util::temp_dir;

use std::path::PathBuf;
use std::time::Duration;

use myqtt_core::client::{ConnectOptions, PublishMessage, Subscription};
use myqtt_core::codec::{ProtocolVersion, PublishProperties, QoS, SubscribeProperties};
use myqtt_core::store::{
    Batch, OpOutcome, RedbStore, SessionKey, SessionRecord, Store, StoreConfig, StoredMessage,
    SubscriptionRecord, Timestamp,
};
use myqtt_core::topic::{TopicFilter, TopicName};
use myqtt_core::{Conn, Ctx};

const WAIT: Duration = Duration::from_secs(10);

/// A context with a redb store in `dir` and a listener; its port.
fn start(dir: &PathBuf) -> (Ctx, u16) {
    let ctx = Ctx::builder()
        .worker_threads(2)
        .storage(StoreConfig::new(dir))
        .build()
        .unwrap();
    let port = ctx
        .create_listener("127.0.0.1", 0)
        .unwrap()
        .local_addr()
        .port();
    (ctx, port)
}

fn persistent(port: u16, id: &str) -> ConnectOptions {
    ConnectOptions::new("127.0.0.1", port)
        .client_id(id)
        .protocol(ProtocolVersion::V5)
        .clean_start(false)
        .session_expiry_interval(3600)
}

fn subscribe_with_id(conn: &Conn, sub: Subscription, id: u32) {
    let props = SubscribeProperties {
        subscription_identifier: Some(id),
        ..SubscribeProperties::default()
    };
    let out = conn.subscribe_many(vec![sub], props).wait(WAIT).unwrap();
    assert!(out.all_granted(), "{out:?}");
}

#[test]
fn a_queued_message_keeps_its_delivery_qos_retain_flag_and_subscription_ids_across_a_restart() {
    let dir = temp_dir("restart-delivery");
    {
        let (ctx, port) = start(&dir);
        let sub = Conn::connect_blocking(&ctx, persistent(port, "deliv-sub")).unwrap();
        // d/+ granted QoS 1 with Retain As Published; d/x granted QoS 2: the
        // session's highest granted QoS is 2, but a message on d/y matches
        // only the QoS 1 subscription.
        subscribe_with_id(
            &sub,
            Subscription::new("d/+", QoS::AtLeastOnce)
                .unwrap()
                .retain_as_published(true),
            5,
        );
        subscribe_with_id(&sub, Subscription::new("d/x", QoS::ExactlyOnce).unwrap(), 9);
        sub.close().wait(WAIT).unwrap();
        let publ = Conn::connect_blocking(&ctx, persistent(port, "deliv-pub")).unwrap();
        let m = PublishMessage::new("d/y", "kept")
            .unwrap()
            .qos(QoS::ExactlyOnce)
            .retain(true);
        publ.publish_blocking(m, WAIT).unwrap().wait(WAIT).unwrap();
        publ.close().wait(WAIT).unwrap();
        ctx.exit();
    }
    let (ctx, port) = start(&dir);
    let sub = Conn::connect_blocking(&ctx, persistent(port, "deliv-sub")).unwrap();
    assert!(sub.session_present(), "[MQTT-3.2.2-2] the session is back");
    let m = sub
        .get_next(Some(WAIT))
        .unwrap()
        .expect("the queued message");
    assert_eq!(m.payload().as_ref(), b"kept");
    // [MQTT-3.8.4-8]: the lower of the message QoS and the matching
    // subscription's granted QoS, not the session's highest.
    assert_eq!(m.qos(), QoS::AtLeastOnce);
    // [MQTT-3.3.1-12]: Retain As Published keeps the RETAIN flag.
    assert!(m.retain(), "RETAIN as published");
    // [MQTT-3.3.4-3]: the identifier of the matching subscription.
    assert_eq!(m.properties().subscription_identifiers, vec![5]);
    sub.close().wait(WAIT).unwrap();
    ctx.exit();
    drop(ctx);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A QoS 1 message on `topic` received at `received_at`, with an MQTT 5
/// Message Expiry Interval.
fn message(
    topic: &str,
    payload: &str,
    expiry: Option<u32>,
    received_at: Timestamp,
) -> StoredMessage {
    let publish = myqtt_core::codec::Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new(topic).unwrap(),
        packet_id: None,
        properties: PublishProperties {
            message_expiry_interval: expiry,
            ..PublishProperties::default()
        }
        .into(),
        payload: bytes::Bytes::from(payload.to_owned()),
    };
    StoredMessage::new(publish, received_at)
}

/// Writes, as a listener stopped a minute ago would have left them: a
/// session of `client` disconnected then with `expiry`, subscribed to `e/#`,
/// with `queued` in its offline queue.
fn write_session(store: &dyn Store, client: &str, expiry: u32, queued: Vec<StoredMessage>) {
    let minute_ago = Timestamp::from_unix_millis(Timestamp::now().as_unix_millis() - 60_000);
    let key = SessionKey::broker(client);
    let mut b = Batch::new();
    b.put_session(SessionRecord {
        key: key.clone(),
        protocol: ProtocolVersion::V5,
        expiry_interval: expiry,
        disconnected_at: Some(minute_ago),
    });
    b.put_subscription(
        key.clone(),
        SubscriptionRecord {
            filter: TopicFilter::new("e/#").unwrap(),
            options: myqtt_core::codec::SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..myqtt_core::codec::SubscriptionOptions::default()
            },
            identifier: None,
        },
    );
    for m in queued {
        let id = store.new_message_id();
        b.put_message(id, m).enqueue(key.clone(), id);
    }
    let out = store.apply(&b.ops).unwrap();
    assert!(out.iter().all(OpOutcome::is_applied), "{out:?}");
}

#[test]
fn session_and_message_expiry_keep_counting_while_the_listener_is_down() {
    let dir = temp_dir("restart-expiry");
    let minute_ago = Timestamp::from_unix_millis(Timestamp::now().as_unix_millis() - 60_000);
    {
        let store = RedbStore::open(&dir).unwrap();
        // Disconnected a minute ago with a 5 s Session Expiry Interval:
        // expired while the listener was down.
        write_session(
            &store,
            "short",
            5,
            vec![message("e/gone", "lost with its session", None, minute_ago)],
        );
        // Disconnected a minute ago with a 1 h interval: still there.
        write_session(
            &store,
            "long",
            3600,
            vec![
                // Received a minute ago with 10 s to live: expired.
                message("e/a", "expired", Some(10), minute_ago),
                // 600 s to live: about 540 s left.
                message("e/b", "in time", Some(600), minute_ago),
                message("e/c", "no expiry", None, minute_ago),
            ],
        );
    }
    let (ctx, port) = start(&dir);
    // [MQTT-3.2.2-3]: the expired session is gone: session present 0 and
    // nothing of its queue.
    let short = Conn::connect_blocking(&ctx, persistent(port, "short")).unwrap();
    assert!(!short.session_present(), "the expired session is gone");
    assert!(
        short
            .get_next(Some(Duration::from_millis(300)))
            .unwrap()
            .is_none(),
        "the expired session's queue is gone with it"
    );
    short.close().wait(WAIT).unwrap();
    // [MQTT-3.2.2-2]: the other session is back with its queue, less the
    // message whose expiry passed while the listener was down
    // [MQTT-3.3.2-5]; the one with time left carries what is left of its
    // interval [MQTT-3.3.2-6].
    let long = Conn::connect_blocking(&ctx, persistent(port, "long")).unwrap();
    assert!(long.session_present(), "the unexpired session is back");
    let b = long.get_next(Some(WAIT)).unwrap().expect("e/b");
    assert_eq!(b.payload().as_ref(), b"in time");
    let left = b
        .properties()
        .message_expiry_interval
        .expect("an expiry interval");
    assert!(
        (530..=540).contains(&left),
        "600 s less the minute down, got {left}"
    );
    let c = long.get_next(Some(WAIT)).unwrap().expect("e/c");
    assert_eq!(c.payload().as_ref(), b"no expiry");
    assert_eq!(c.properties().message_expiry_interval, None);
    assert!(
        long.get_next(Some(Duration::from_millis(300)))
            .unwrap()
            .is_none(),
        "the expired message is not delivered"
    );
    long.close().wait(WAIT).unwrap();
    ctx.exit();
    drop(ctx);
    let _ = std::fs::remove_dir_all(&dir);
}
