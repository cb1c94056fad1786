//! Hooks: every verdict enforced on every path, deferred CONNECT answers,
//! time limits failing closed, events, and what a hook can do with the
//! broker handle.

mod broker_util;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use broker_util::*;
use bytes::Bytes;
use myqtt_core::broker::hooks::{
    Access, AclRequest, ClientInfo, ConnectRequest, ConnectVerdict, DropReason, Event,
    FailurePolicy, Hook, HookError, HookPolicy, Interests, Message, PublishVerdict, Reply,
};
use myqtt_core::broker::{BrokerConfig, WeakBroker};
use myqtt_core::codec::{Packet, ProtocolVersion, PubAck, QoS, ReasonCode};

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn config_with(hook: Arc<dyn Hook>) -> BrokerConfig {
    BrokerConfig::builder().hook(hook).build().unwrap()
}

/// Decides on publishes by topic: `ok/..`, `rewrite/..`, `discard/..`,
/// `close/..`.
struct ByTopic;

impl Hook for ByTopic {
    fn on_publish(&self, _: &Arc<ClientInfo>, msg: &Message) -> Reply<PublishVerdict> {
        let t = msg.topic.as_str();
        Reply::Ready(if t.starts_with("rewrite/") {
            let mut m = msg.clone();
            m.topic = topic("rewritten");
            m.payload = Bytes::from_static(b"new body");
            PublishVerdict::Rewrite(Box::new(m))
        } else if t.starts_with("discard/") {
            PublishVerdict::Discard
        } else if t.starts_with("close/") {
            PublishVerdict::CloseConnection
        } else {
            PublishVerdict::Ok
        })
    }
}

#[test]
fn publish_verdicts_route_rewrite_discard_or_close() {
    with_broker(config_with(Arc::new(ByTopic)), |ctx, addr| async move {
        let mut s = Raw::connect(addr, V5, "s", true).await;
        s.subscribe("#", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        assert_eq!(
            p.publish("ok/1", b"a", QoS::AtLeastOnce, false).await,
            ReasonCode::Success
        );
        assert_eq!(s.recv_publish().await.topic.as_str(), "ok/1");
        p.publish("rewrite/1", b"a", QoS::AtLeastOnce, false).await;
        let m = s.recv_publish().await;
        assert_eq!(
            (m.topic.as_str(), m.payload.as_ref()),
            ("rewritten", &b"new body"[..])
        );
        // A discarded QoS 1 / QoS 2 message still completes the flow, with
        // 0x10 at MQTT 5, and is neither routed nor retained.
        assert_eq!(
            p.publish("discard/1", b"a", QoS::AtLeastOnce, true).await,
            ReasonCode::NoMatchingSubscribers
        );
        assert_eq!(
            p.publish("discard/2", b"a", QoS::ExactlyOnce, true).await,
            ReasonCode::NoMatchingSubscribers
        );
        s.expect_nothing().await;
        assert_eq!(ctx.broker().retained_count(), 0);
        let mut legacy = Raw::connect(addr, V311, "legacy", true).await;
        assert_eq!(
            legacy
                .publish("discard/3", b"a", QoS::ExactlyOnce, false)
                .await,
            ReasonCode::Success
        );
        s.expect_nothing().await;
        // Close: not routed, the publisher is disconnected.
        p.send(Packet::Publish(publish(
            "close/1",
            b"a",
            QoS::AtLeastOnce,
            false,
            9,
        )))
        .await;
        let got = p.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::NotAuthorized),
            "{got:?}"
        );
        s.expect_nothing().await;
    });
}

/// Denies publishing and subscribing under `secret/`, and delivering
/// `private/..` to anyone but `owner`.
struct Acl;

impl Hook for Acl {
    fn acl_check(&self, req: &AclRequest<'_>) -> Reply<bool> {
        Reply::Ready(match req.access {
            Access::Publish | Access::Subscribe => !req.topic.starts_with("secret/"),
            Access::Deliver => {
                !req.topic.starts_with("private/") || req.client.client_id == "owner"
            }
        })
    }

    fn interests(&self) -> Interests {
        Interests {
            deliver_acl: true,
            messages: true,
            ..Interests::default()
        }
    }
}

#[test]
fn acl_decisions_are_enforced_on_publish_subscribe_delivery_retained_and_will_paths() {
    with_broker(config_with(Arc::new(Acl)), |ctx, addr| async move {
        let mut all = Raw::connect(addr, V5, "all", true).await;
        all.subscribe("#", QoS::AtMostOnce).await;
        let mut owner = Raw::connect(addr, V5, "owner", true).await;
        owner.subscribe("private/#", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        // Publish denied: PUBACK 0x87, not routed, not retained.
        assert_eq!(
            p.publish("secret/x", b"no", QoS::AtLeastOnce, true).await,
            ReasonCode::NotAuthorized
        );
        assert_eq!(ctx.broker().retained_count(), 0);
        // Subscribe denied: SUBACK 0x87, and it never receives.
        let mut sneaky = Raw::connect(addr, V5, "sneaky", true).await;
        assert_eq!(
            sneaky.subscribe("secret/#", QoS::AtMostOnce).await,
            ReasonCode::NotAuthorized
        );
        ctx.broker()
            .publish(Message {
                topic: topic("secret/from-broker"),
                payload: Bytes::from_static(b"x"),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: myqtt_core::codec::PublishProps::new(),
            })
            .unwrap();
        assert_eq!(
            all.recv_publish().await.topic.as_str(),
            "secret/from-broker"
        );
        sneaky.expect_nothing().await;
        // Delivery denied for everyone but the owner, live and retained.
        p.publish("private/y", b"mine", QoS::AtLeastOnce, true)
            .await;
        assert_eq!(owner.recv_publish().await.payload.as_ref(), b"mine");
        all.expect_nothing().await;
        let mut late = Raw::connect(addr, V5, "late", true).await;
        late.subscribe("private/#", QoS::AtMostOnce).await;
        late.expect_nothing().await;
        // A will to a denied topic is not published.
        let mut c = connect_packet(V311, "willer", true, 0);
        c.will = Some(will("secret/will", b"w", QoS::AtMostOnce, true));
        let (c, _) = Raw::connect_with(addr, c).await;
        drop(c);
        let mut c = connect_packet(V311, "willer2", true, 0);
        c.will = Some(will("open/will", b"w2", QoS::AtMostOnce, false));
        let (c, _) = Raw::connect_with(addr, c).await;
        drop(c);
        // The allowed will arrives; the denied one (dropped first) never did.
        let m = all.recv_publish().await;
        assert_eq!(m.topic.as_str(), "open/will");
        all.expect_nothing().await;
        // Only the allowed "private/y" is retained; the denied retained will
        // is not.
        assert_eq!(ctx.broker().retained_count(), 1);
    });
}

/// Defers every CONNECT to the test, which answers through a channel (how
/// PyMyQtt's CONNACK_DEFERRED + send_connect_reply is built).
#[derive(Default)]
struct Deferred {
    pending: Mutex<Vec<(String, tokio::sync::oneshot::Sender<ConnectVerdict>)>>,
}

impl Hook for Deferred {
    fn on_connect(&self, req: &ConnectRequest<'_>) -> Reply<ConnectVerdict> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending
            .lock()
            .unwrap()
            .push((req.client.client_id.to_string(), tx));
        Reply::later(async move { rx.await.map_err(|_| HookError("dropped".into())) })
    }
}

impl Deferred {
    fn answer(&self, client_id: &str, verdict: ConnectVerdict) -> bool {
        let mut pending = self.pending.lock().unwrap();
        match pending.iter().position(|(id, _)| id == client_id) {
            Some(i) => {
                let (_, tx) = pending.remove(i);
                tx.send(verdict).is_ok()
            }
            None => false,
        }
    }
}

#[test]
fn a_deferred_connect_is_answered_later_with_accept_or_a_refusal_code() {
    let hook = Arc::new(Deferred::default());
    with_broker(config_with(hook.clone()), |_, addr| async move {
        let accept = tokio::spawn(Raw::connect_with(addr, connect_packet(V5, "yes", true, 0)));
        let refuse5 = tokio::spawn(Raw::connect_with(addr, connect_packet(V5, "no5", true, 0)));
        let refuse3 = tokio::spawn(Raw::connect_with(
            addr,
            connect_packet(V311, "no3", true, 0),
        ));
        eventually("three deferred CONNECTs", || {
            hook.pending.lock().unwrap().len() == 3
        })
        .await;
        assert!(hook.answer("yes", ConnectVerdict::Accept));
        let refusal = ConnectVerdict::Refuse(ReasonCode::BadUserNameOrPassword);
        assert!(hook.answer("no5", refusal.clone()));
        assert!(hook.answer("no3", refusal));
        let (_c, ack) = accept.await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::Success);
        let (_, ack) = refuse5.await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
        // 3.1.1 return code 4.
        let (mut c, ack) = refuse3.await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
        assert!(c.closed().await.is_empty());
    });
}

struct NeverAnswers;

impl Hook for NeverAnswers {
    fn on_connect(&self, _: &ConnectRequest<'_>) -> Reply<ConnectVerdict> {
        Reply::later(std::future::pending())
    }
    fn on_publish(&self, _: &Arc<ClientInfo>, _: &Message) -> Reply<PublishVerdict> {
        Reply::later(async { Err(HookError("backend down".into())) })
    }
}

#[test]
fn a_hook_that_times_out_or_fails_refuses_by_default() {
    let config = BrokerConfig::builder()
        .hook(Arc::new(NeverAnswers))
        .hook_policy(HookPolicy {
            timeout: Duration::from_millis(200),
            on_failure: FailurePolicy::FailClosed,
        })
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let (_, ack) = Raw::connect_with(addr, connect_packet(V5, "c", true, 0)).await;
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    });
}

#[test]
fn a_fail_open_policy_lets_a_failed_hook_pass() {
    let config = BrokerConfig::builder()
        .hook(Arc::new(NeverAnswers))
        .hook_policy(HookPolicy {
            timeout: Duration::from_millis(200),
            on_failure: FailurePolicy::FailOpen,
        })
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let mut s = Raw::connect(addr, V5, "s", true).await;
        s.subscribe("t", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        assert_eq!(
            p.publish("t", b"x", QoS::AtLeastOnce, false).await,
            ReasonCode::Success
        );
        assert_eq!(s.recv_publish().await.payload.as_ref(), b"x");
    });
}

/// Records events as strings, and greets each client through the broker
/// handle it was given.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    broker: OnceLock<WeakBroker>,
}

impl Hook for Recorder {
    fn installed(&self, broker: &WeakBroker) {
        let _ = self.broker.set(broker.clone());
    }

    fn interests(&self) -> Interests {
        Interests {
            lifecycle: true,
            messages: true,
            packets: true,
            deliver_acl: false,
        }
    }

    fn on_event(&self, event: &Event<'_>) {
        let line = match event {
            Event::ListenerStarted(_) => "listener started".to_string(),
            Event::ListenerStopping(_) => "listener stopping".to_string(),
            Event::Connected(c) => {
                if let Some(b) = self.broker.get() {
                    b.publish(Message {
                        topic: topic("welcome"),
                        payload: Bytes::copy_from_slice(c.client_id.as_bytes()),
                        qos: QoS::AtMostOnce,
                        retain: false,
                        properties: myqtt_core::codec::PublishProps::new(),
                    })
                    .unwrap();
                }
                format!("connected {}", c.client_id)
            }
            Event::Disconnected(c, r) => format!("disconnected {} {r:?}", c.client_id),
            Event::Subscribed(c, f, _, r) => format!("subscribed {} {f} {r:?}", c.client_id),
            Event::Unsubscribed(c, f) => format!("unsubscribed {} {f}", c.client_id),
            Event::Delivered(c, m) => format!("delivered {} {}", c.client_id, m.topic),
            Event::Dropped(id, m, why) => format!("dropped {id} {} {why:?}", m.topic),
            Event::PacketReceived(c, p) => {
                format!("received {} {:?}", c.client_id, p.packet_type())
            }
            Event::PacketSent(c, p) => format!("sent {} {:?}", c.client_id, p.packet_type()),
            Event::Tick => "tick".to_string(),
            _ => "other".to_string(),
        };
        self.events.lock().unwrap().push(line);
    }
}

impl Recorder {
    fn has(&self, line: &str) -> bool {
        self.events.lock().unwrap().iter().any(|l| l == line)
    }
}

#[test]
fn hooks_receive_the_events_they_asked_for_and_can_publish_as_the_broker() {
    let hook = Arc::new(Recorder::default());
    let config = BrokerConfig::builder()
        .hook(hook.clone())
        .tick_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let mut w = Raw::connect(addr, V311, "watcher", true).await;
        w.subscribe("welcome", QoS::AtMostOnce).await;
        let mut c = Raw::connect(addr, V5, "c1", true).await;
        assert_eq!(w.recv_publish().await.payload.as_ref(), b"c1");
        c.subscribe("e/+", QoS::AtLeastOnce).await;
        c.unsubscribe(&["e/+"]).await;
        c.disconnect().await;
        for line in [
            "listener started",
            "connected watcher",
            "subscribed watcher welcome Success",
            "delivered watcher welcome",
            "subscribed c1 e/+ GrantedQoS1",
            "unsubscribed c1 e/+",
            "received c1 Subscribe",
            "sent c1 SubAck",
            "disconnected c1 Success",
            "tick",
        ] {
            eventually(line, || hook.has(line)).await;
        }
    });
}

#[test]
fn a_hook_added_at_run_time_applies_to_connected_clients() {
    with_default_broker(|ctx, addr| async move {
        let mut s = Raw::connect(addr, V5, "s", true).await;
        s.subscribe("#", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        assert_eq!(
            p.publish("discard/x", b"1", QoS::AtLeastOnce, false).await,
            ReasonCode::Success
        );
        s.recv_publish().await;
        ctx.broker().add_hook(Arc::new(ByTopic));
        assert_eq!(
            p.publish("discard/x", b"2", QoS::AtLeastOnce, false).await,
            ReasonCode::NoMatchingSubscribers
        );
        s.expect_nothing().await;
    });
}

#[test]
fn clients_are_listed_with_address_identity_protocol_keep_alive_and_subscriptions() {
    with_default_broker(|ctx, addr| async move {
        let mut connect = connect_packet(V5, "listed", true, 30);
        connect.username = Some("alice".into());
        let (mut c, _) = Raw::connect_with(addr, connect).await;
        c.subscribe("b/#", QoS::AtLeastOnce).await;
        c.subscribe("a", QoS::AtMostOnce).await;
        let local = c.writer.local_addr().unwrap();
        let list = ctx.broker().clients();
        assert_eq!(list.len(), 1);
        let info = &list[0].info;
        assert_eq!(info.client_id, "listed");
        assert_eq!(info.username.as_deref(), Some("alice"));
        assert_eq!(info.peer, local);
        assert_eq!(info.local, addr);
        assert_eq!(info.protocol, V5);
        assert_eq!(info.keep_alive, 30);
        let subs: Vec<_> = list[0]
            .subscriptions
            .iter()
            .map(|(f, o)| (f.as_str().to_string(), o.qos))
            .collect();
        assert_eq!(
            subs,
            [
                ("a".to_string(), QoS::AtMostOnce),
                ("b/#".to_string(), QoS::AtLeastOnce)
            ]
        );
    });
}

#[test]
fn a_discarded_qos2_message_completes_the_whole_flow() {
    // The publisher gets PUBREC (0x10), sends PUBREL, gets PUBCOMP: it never
    // hangs (MyQtt left it waiting).
    with_broker(config_with(Arc::new(ByTopic)), |_, addr| async move {
        let mut p = Raw::connect(addr, V5, "p", true).await;
        p.send(Packet::Publish(publish(
            "discard/q2",
            b"x",
            QoS::ExactlyOnce,
            false,
            5,
        )))
        .await;
        match p.recv().await {
            Packet::PubRec(a) => {
                assert_eq!(a.packet_id, pid(5));
                assert_eq!(a.reason_code, ReasonCode::NoMatchingSubscribers);
            }
            other => panic!("{other:?}"),
        }
        p.send(Packet::PubRel(PubAck::new(pid(5)))).await;
        assert!(
            matches!(p.recv().await, Packet::PubComp(a) if a.packet_id == pid(5) && a.reason_code == ReasonCode::Success)
        );
    });
}

#[test]
fn a_dropped_message_is_reported_with_why() {
    let hook = Arc::new(Recorder::default());
    let config = BrokerConfig::builder().hook(hook.clone()).build().unwrap();
    with_broker(config, |_, addr| async move {
        let mut connect = connect_packet(V5, "tiny", true, 0);
        connect.properties.maximum_packet_size = Some(32);
        let (mut tiny, _) = Raw::connect_with(addr, connect).await;
        tiny.subscribe("big", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        p.publish("big", &[1; 100], QoS::AtMostOnce, false).await;
        eventually("a drop", || {
            hook.has(&format!("dropped tiny big {:?}", DropReason::TooLarge))
        })
        .await;
    });
}

/// On its first `Dropped` event, sends a SUBSCRIBE over a blocking socket
/// and waits (up to [`WAIT`]) for the SUBACK, recording whether it came.
struct SubscribeOnDrop {
    stream: Mutex<Option<std::net::TcpStream>>,
    suback: OnceLock<bool>,
}

impl Hook for SubscribeOnDrop {
    fn interests(&self) -> Interests {
        Interests {
            messages: true,
            ..Interests::default()
        }
    }

    fn on_event(&self, e: &Event<'_>) {
        use std::io::{Read, Write};
        if !matches!(e, Event::Dropped(..)) {
            return;
        }
        let Some(mut stream) = self.stream.lock().unwrap().take() else {
            return;
        };
        let mut buf = bytes::BytesMut::new();
        let subscribe = myqtt_core::codec::Subscribe {
            packet_id: pid(1),
            filters: vec![(
                filter("x"),
                myqtt_core::codec::SubscriptionOptions::default(),
            )],
            properties: myqtt_core::codec::SubscribeProperties::default(),
        };
        myqtt_core::codec::encode(&Packet::Subscribe(subscribe), V311, &mut buf).unwrap();
        stream.write_all(&buf).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut suback = [0u8; 5];
        // Hand this runtime worker's duties to another thread while waiting,
        // so only a lock can keep the SUBSCRIBE from being answered.
        let got = tokio::task::block_in_place(|| stream.read_exact(&mut suback).is_ok())
            && suback[0] == 0x90;
        self.suback.set(got).unwrap();
    }
}

#[test]
fn a_drop_event_hook_runs_after_the_subscription_trie_is_unlocked() {
    // The hook blocks until another client's SUBSCRIBE is answered; a
    // SUBSCRIBE needs the trie's write lock, so it is answered only if the
    // router reports drops after releasing its read lock.
    use std::io::{Read, Write};
    let hook = Arc::new(SubscribeOnDrop {
        stream: Mutex::new(None),
        suback: OnceLock::new(),
    });
    let config = BrokerConfig::builder()
        .max_queued_messages(1)
        .hook(hook.clone())
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let mut other = std::net::TcpStream::connect(addr).unwrap();
        let mut buf = bytes::BytesMut::new();
        let connect = connect_packet(V311, "other", true, 0);
        myqtt_core::codec::encode(&Packet::Connect(Box::new(connect)), V311, &mut buf).unwrap();
        other.write_all(&buf).unwrap();
        let mut connack = [0u8; 4];
        other.read_exact(&mut connack).unwrap();
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
        *hook.stream.lock().unwrap() = Some(other);

        let mut off = Raw::connect(addr, V311, "off", false).await;
        off.subscribe("t", QoS::AtLeastOnce).await;
        off.disconnect().await;
        let mut p = Raw::connect(addr, V311, "pub", true).await;
        p.publish("t", b"1", QoS::AtLeastOnce, false).await;
        // The offline queue holds one message: this one is dropped.
        p.publish("t", b"2", QoS::AtLeastOnce, false).await;
        eventually("the hook to finish", || hook.suback.get().is_some()).await;
        assert_eq!(
            hook.suback.get(),
            Some(&true),
            "the SUBSCRIBE waited for the hook: drops were reported under the trie lock"
        );
    });
}

/// [`ByTopic`]'s verdicts, given for a whole batch at once; records the
/// size of every batch it is asked about.
#[derive(Default)]
struct BatchByTopic {
    sizes: Mutex<Vec<usize>>,
}

impl Hook for BatchByTopic {
    fn on_publish_batch(
        &self,
        client: &Arc<ClientInfo>,
        msgs: &Arc<Vec<Message>>,
    ) -> Reply<Vec<PublishVerdict>> {
        self.sizes.lock().unwrap().push(msgs.len());
        let verdicts = msgs
            .iter()
            .map(|m| match ByTopic.on_publish(client, m) {
                Reply::Ready(v) => v,
                Reply::Later(_) => PublishVerdict::Discard,
            })
            .collect();
        // Deferred, as a hook answering from another thread does.
        Reply::later(async move { Ok(verdicts) })
    }
}

/// Encodes several packets into one buffer, so they reach the listener in
/// one read.
fn one_write(version: ProtocolVersion, packets: &[Packet]) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    for p in packets {
        myqtt_core::codec::encode(p, version, &mut buf).unwrap();
    }
    buf.to_vec()
}

fn publish_packet(t: &str, qos: QoS, id: u16) -> Packet {
    Packet::Publish(publish(t, t.as_bytes(), qos, false, id))
}

#[test]
fn publish_packets_read_together_are_decided_in_one_batch_and_applied_in_order() {
    let hook = Arc::new(BatchByTopic::default());
    with_broker(config_with(hook.clone()), |_, addr| async move {
        let mut s = Raw::connect(addr, V5, "s", true).await;
        s.subscribe("#", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        let burst = one_write(
            V5,
            &[
                publish_packet("ok/1", QoS::AtLeastOnce, 1),
                publish_packet("discard/2", QoS::AtLeastOnce, 2),
                publish_packet("rewrite/3", QoS::AtLeastOnce, 3),
                publish_packet("ok/4", QoS::AtMostOnce, 0),
                publish_packet("ok/5", QoS::AtLeastOnce, 5),
            ],
        );
        p.send_bytes(&burst).await;
        // Acknowledged in PUBLISH order [MQTT-4.6.0-2]; the discarded QoS 1
        // message too, with 0x10.
        let mut acks = Vec::new();
        for _ in 0..4 {
            match p.recv().await {
                Packet::PubAck(a) => acks.push((a.packet_id.get(), a.reason_code)),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        assert_eq!(
            acks,
            [
                (1, ReasonCode::Success),
                (2, ReasonCode::NoMatchingSubscribers),
                (3, ReasonCode::Success),
                (5, ReasonCode::Success),
            ]
        );
        let mut routed = Vec::new();
        for _ in 0..4 {
            routed.push(s.recv_publish().await.topic.as_str().to_owned());
        }
        assert_eq!(routed, ["ok/1", "rewritten", "ok/4", "ok/5"]);
        s.expect_nothing().await;
        let sizes = hook.sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 5, "{sizes:?}");
        assert!(sizes.iter().any(|&n| n > 1), "never batched: {sizes:?}");
    });
}

#[test]
fn a_close_verdict_in_a_batch_closes_at_its_packet_and_routes_nothing_after_it() {
    let hook = Arc::new(BatchByTopic::default());
    with_broker(config_with(hook), |_, addr| async move {
        let mut s = Raw::connect(addr, V5, "s", true).await;
        s.subscribe("#", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V5, "p", true).await;
        let burst = one_write(
            V5,
            &[
                publish_packet("ok/1", QoS::AtLeastOnce, 1),
                publish_packet("close/2", QoS::AtLeastOnce, 2),
                publish_packet("ok/3", QoS::AtLeastOnce, 3),
            ],
        );
        p.send_bytes(&burst).await;
        let got = p.closed().await;
        assert!(
            matches!(
                got.as_slice(),
                [Packet::PubAck(a), Packet::Disconnect(d)]
                    if a.packet_id.get() == 1 && d.reason_code == ReasonCode::NotAuthorized
            ),
            "{got:?}"
        );
        assert_eq!(s.recv_publish().await.topic.as_str(), "ok/1");
        s.expect_nothing().await;
    });
}

#[test]
fn a_hook_with_only_on_publish_decides_a_batch_message_by_message() {
    // ByTopic answers one message at a time: the default batch call.
    with_broker(config_with(Arc::new(ByTopic)), |_, addr| async move {
        let mut s = Raw::connect(addr, V311, "s", true).await;
        s.subscribe("#", QoS::AtMostOnce).await;
        let mut p = Raw::connect(addr, V311, "p", true).await;
        let burst = one_write(
            V311,
            &[
                publish_packet("discard/1", QoS::AtMostOnce, 0),
                publish_packet("ok/2", QoS::AtMostOnce, 0),
                publish_packet("rewrite/3", QoS::AtMostOnce, 0),
                publish_packet("ok/4", QoS::AtLeastOnce, 4),
            ],
        );
        p.send_bytes(&burst).await;
        match p.recv().await {
            Packet::PubAck(a) => assert_eq!(a.packet_id.get(), 4),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        let mut routed = Vec::new();
        for _ in 0..3 {
            routed.push(s.recv_publish().await.topic.as_str().to_owned());
        }
        assert_eq!(routed, ["ok/2", "rewritten", "ok/4"]);
    });
}

#[test]
fn a_subscribe_between_publish_packets_keeps_its_place() {
    let hook = Arc::new(BatchByTopic::default());
    with_broker(config_with(hook), |_, addr| async move {
        let mut p = Raw::connect(addr, V5, "p", true).await;
        let subscribe = Packet::Subscribe(myqtt_core::codec::Subscribe {
            packet_id: pid(2),
            filters: vec![(
                filter("ok/#"),
                myqtt_core::codec::SubscriptionOptions::default(),
            )],
            properties: myqtt_core::codec::SubscribeProperties::default(),
        });
        // The client subscribes to its own messages in the middle of the
        // burst: only the messages after the SUBSCRIBE come back to it.
        let burst = one_write(
            V5,
            &[
                publish_packet("ok/1", QoS::AtLeastOnce, 1),
                subscribe,
                publish_packet("ok/3", QoS::AtLeastOnce, 3),
                publish_packet("ok/4", QoS::AtMostOnce, 0),
            ],
        );
        p.send_bytes(&burst).await;
        let mut seen = Vec::new();
        while seen.len() < 5 {
            seen.push(match p.recv().await {
                Packet::PubAck(a) => format!("puback {}", a.packet_id.get()),
                Packet::SubAck(a) => format!("suback {}", a.packet_id.get()),
                Packet::Publish(m) => format!("publish {}", m.topic.as_str()),
                other => panic!("unexpected {other:?}"),
            });
        }
        assert_eq!(&seen[..2], ["puback 1", "suback 2"]);
        assert!(seen.contains(&"publish ok/3".to_owned()), "{seen:?}");
        assert!(seen.contains(&"publish ok/4".to_owned()), "{seen:?}");
        assert!(!seen.contains(&"publish ok/1".to_owned()), "{seen:?}");
        p.expect_nothing().await;
    });
}

/// Remembers the socket number each CONNECT came on.
#[derive(Default)]
struct Sockets(Mutex<Vec<Option<i64>>>);

impl Hook for Sockets {
    fn on_connect(&self, req: &ConnectRequest<'_>) -> Reply<ConnectVerdict> {
        self.0.lock().unwrap().push(req.client.socket);
        Reply::Ready(ConnectVerdict::Accept)
    }
}

#[test]
fn a_hook_is_told_the_socket_each_client_connected_on() {
    let hook = Arc::new(Sockets::default());
    with_broker(config_with(hook.clone()), |_, addr| async move {
        let _a = Raw::connect(addr, V311, "a", true).await;
        let _b = Raw::connect(addr, V5, "b", true).await;
        let seen = hook.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen.iter().all(|s| s.is_some_and(|n| n >= 0)), "{seen:?}");
        // Two live connections: two different sockets.
        assert_ne!(seen[0], seen[1]);
    });
}

#[test]
fn with_a_store_a_batch_is_acknowledged_in_order_after_its_commits() {
    let dir = std::env::temp_dir().join(format!("myqtt-hook-batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let hook = Arc::new(BatchByTopic::default());
    let config = BrokerConfig::builder()
        .hook(hook.clone())
        .storage(myqtt_core::store::StoreConfig::new(&dir))
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let mut s = Raw::connect(addr, V311, "s", true).await;
        s.subscribe("#", QoS::AtLeastOnce).await;
        // A persistent session [MQTT-3.1.2-4]: its PUBLISH packets are
        // acknowledged once their records are durable, in order
        // [MQTT-4.6.0-2].
        let mut p = Raw::connect(addr, V311, "p", false).await;
        let burst = one_write(
            V311,
            &[
                publish_packet("ok/1", QoS::AtLeastOnce, 1),
                publish_packet("discard/2", QoS::AtLeastOnce, 2),
                publish_packet("ok/3", QoS::AtLeastOnce, 3),
            ],
        );
        p.send_bytes(&burst).await;
        let mut acks = Vec::new();
        for _ in 0..3 {
            match p.recv().await {
                Packet::PubAck(a) => acks.push(a.packet_id.get()),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        assert_eq!(acks, [1, 2, 3]);
        let mut routed = Vec::new();
        for _ in 0..2 {
            routed.push(s.recv_publish().await.topic.as_str().to_owned());
        }
        assert_eq!(routed, ["ok/1", "ok/3"]);
        let sizes = hook.sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 3, "{sizes:?}");
    });
    let _ = std::fs::remove_dir_all(&dir);
}
