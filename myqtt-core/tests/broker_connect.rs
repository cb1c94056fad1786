//! The listener's CONNECT handling, sessions, takeover, keep-alive and
//! shutdown, checked with raw packets over real sockets.

mod broker_util;

use std::time::{Duration, Instant};

use broker_util::*;
use myqtt_core::Ctx;
use myqtt_core::broker::{BrokerConfig, DuplicateClientId};
use myqtt_core::codec::{Packet, ProtocolVersion, QoS, ReasonCode};

const V31: ProtocolVersion = ProtocolVersion::V31;
const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn a_listener_on_port_zero_reports_the_port_it_bound_and_listeners_share_one_broker() {
    with_default_broker(|ctx, addr| async move {
        assert_ne!(addr.port(), 0);
        let second = ctx.create_listener("127.0.0.1", 0).unwrap();
        assert_ne!(second.local_addr().port(), addr.port());
        assert_eq!(ctx.listeners().len(), 2);
        // A subscriber on one listener receives a publish made on the other.
        let mut sub = Raw::connect(addr, V311, "sub", true).await;
        sub.subscribe("a/b", QoS::AtMostOnce).await;
        let mut publisher = Raw::connect(second.local_addr(), V5, "pub", true).await;
        publisher.publish("a/b", b"x", QoS::AtMostOnce, false).await;
        assert_eq!(sub.recv_publish().await.payload.as_ref(), b"x");
    });
}

#[test]
fn an_unsupported_protocol_level_gets_connack_0x01_at_3_1_1() {
    // [MQTT-3.1.2-2]
    with_default_broker(|_, addr| async move {
        let mut raw = Raw::open(addr, V311).await;
        // CONNECT, protocol "MQTT" level 6.
        raw.send_bytes(&[
            0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06, 0x02, 0x00, 0x3C, 0x00, 0x01,
            b'c',
        ])
        .await;
        match raw.recv().await {
            Packet::ConnAck(c) => {
                assert_eq!(c.reason_code, ReasonCode::UnsupportedProtocolVersion);
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
        assert!(raw.closed().await.is_empty());
    });
}

#[test]
fn an_unsupported_protocol_name_at_level_5_gets_connack_0x84() {
    // [MQTT-3.1.2-1]: MQTT 5 clients get the MQTT 5 reason code.
    with_default_broker(|_, addr| async move {
        let mut raw = Raw::open(addr, V5).await;
        raw.send_bytes(&[
            0x10, 0x0E, 0x00, 0x04, b'M', b'Q', b'X', b'X', 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00,
            0x01, b'c',
        ])
        .await;
        match raw.recv().await {
            Packet::ConnAck(c) => {
                assert_eq!(c.reason_code, ReasonCode::UnsupportedProtocolVersion);
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
        assert!(raw.closed().await.is_empty());
    });
}

#[test]
fn an_empty_client_id_with_clean_session_0_is_rejected_at_3_1_1() {
    // [MQTT-3.1.3-8]
    with_default_broker(|_, addr| async move {
        let (mut raw, connack) = Raw::connect_with(addr, connect_packet(V311, "", false, 0)).await;
        assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
        assert!(raw.closed().await.is_empty());
    });
}

#[test]
fn an_empty_client_id_is_rejected_at_3_1() {
    with_default_broker(|_, addr| async move {
        let (_, connack) = Raw::connect_with(addr, connect_packet(V31, "", true, 0)).await;
        assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    });
}

#[test]
fn an_empty_client_id_gets_an_assigned_identifier() {
    // [MQTT-3.1.3-6]; MQTT 5 clients learn it from Assigned Client Identifier.
    with_default_broker(|ctx, addr| async move {
        let (_c, connack) = Raw::connect_with(addr, connect_packet(V5, "", true, 0)).await;
        assert_eq!(connack.reason_code, ReasonCode::Success);
        let id = connack
            .properties
            .assigned_client_identifier
            .expect("an assigned client identifier");
        assert!(!id.is_empty());
        let (_d, connack) = Raw::connect_with(addr, connect_packet(V311, "", true, 0)).await;
        assert_eq!(connack.reason_code, ReasonCode::Success);
        eventually("both clients listed", || ctx.broker().clients().len() == 2).await;
        let ids: Vec<_> = ctx
            .broker()
            .clients()
            .into_iter()
            .map(|c| c.info.client_id.to_string())
            .collect();
        assert!(ids.contains(&id.to_string()));
        assert_ne!(ids[0], ids[1]);
    });
}

#[test]
fn a_first_packet_other_than_connect_closes_the_connection() {
    // [MQTT-3.1.0-1]
    with_default_broker(|_, addr| async move {
        let mut raw = Raw::open(addr, V311).await;
        raw.send(Packet::PingReq).await;
        assert!(raw.closed().await.is_empty());
    });
}

#[test]
fn a_second_connect_is_a_protocol_error_that_closes_the_connection() {
    // [MQTT-3.1.0-2]: at MQTT 5 with DISCONNECT 0x82 first.
    with_default_broker(|_, addr| async move {
        let mut raw = Raw::connect(addr, V5, "twice", true).await;
        raw.send(Packet::Connect(Box::new(connect_packet(
            V5, "twice", true, 0,
        ))))
        .await;
        let got = raw.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError),
            "{got:?}"
        );
        let mut raw = Raw::connect(addr, V311, "twice311", true).await;
        raw.send(Packet::Connect(Box::new(connect_packet(
            V311, "twice311", true, 0,
        ))))
        .await;
        assert!(raw.closed().await.is_empty());
    });
}

#[test]
fn session_present_is_set_only_when_a_stored_session_is_resumed() {
    // [MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-3.2.2-3] (3.1.1)
    with_default_broker(|_, addr| async move {
        let (c, ack) = Raw::connect_with(addr, connect_packet(V311, "p", false, 0)).await;
        assert!(!ack.session_present, "no session existed yet");
        c.disconnect().await;
        let (c, ack) = Raw::connect_with(addr, connect_packet(V311, "p", false, 0)).await;
        assert!(ack.session_present, "clean session 0 resumes the session");
        c.disconnect().await;
        let (c, ack) = Raw::connect_with(addr, connect_packet(V311, "p", true, 0)).await;
        assert!(!ack.session_present, "clean session 1 discards it");
        c.disconnect().await;
        // Clean session 1 ends the session at disconnect [MQTT-3.1.2-6].
        let (c, ack) = Raw::connect_with(addr, connect_packet(V311, "p", false, 0)).await;
        assert!(!ack.session_present);
        c.disconnect().await;
    });
}

#[test]
fn an_mqtt5_session_lives_for_its_expiry_interval() {
    with_default_broker(|ctx, addr| async move {
        // Session Expiry 0 (the default): the session ends at disconnect.
        let (c, _) = Raw::connect_with(addr, connect_packet(V5, "e", false, 0)).await;
        c.disconnect().await;
        let (c, ack) = Raw::connect_with(addr, connect_packet(V5, "e", false, 0)).await;
        assert!(!ack.session_present);
        c.disconnect().await;
        // Session Expiry 1 s: present after a quick reconnect, gone later.
        let mut connect = connect_packet(V5, "e", false, 0);
        connect.properties.session_expiry_interval = Some(1);
        let (c, _) = Raw::connect_with(addr, connect.clone()).await;
        c.disconnect().await;
        let (c, ack) = Raw::connect_with(addr, connect.clone()).await;
        assert!(ack.session_present);
        c.disconnect().await;
        let gone = Instant::now();
        eventually("the session to expire", || {
            ctx.broker().session_count() == 0
        })
        .await;
        assert!(gone.elapsed() >= Duration::from_millis(900));
        let (_c, ack) = Raw::connect_with(addr, connect).await;
        assert!(!ack.session_present);
    });
}

#[test]
fn a_duplicate_client_id_takes_the_session_over_and_closes_the_old_connection() {
    // [MQTT-3.1.4-3] (5.0): the old connection gets DISCONNECT 0x8E.
    with_default_broker(|ctx, addr| async move {
        // A session that outlives its connection (expiry > 0) is taken over
        // with its state; one of expiry 0 is not (see the test below).
        let mut persistent = connect_packet(V5, "dup", false, 0);
        persistent.properties.session_expiry_interval = Some(60);
        let (mut old, _) = Raw::connect_with(addr, persistent.clone()).await;
        old.subscribe("t", QoS::AtLeastOnce).await;
        let (mut new, ack) = Raw::connect_with(addr, persistent).await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert!(
            ack.session_present,
            "the session is taken over, not discarded"
        );
        let got = old.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SessionTakenOver),
            "{got:?}"
        );
        // The subscription came along.
        ctx.broker()
            .publish(myqtt_core::broker::hooks::Message {
                topic: topic("t"),
                payload: bytes::Bytes::from_static(b"after"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: myqtt_core::codec::PublishProperties::default(),
            })
            .unwrap();
        assert_eq!(new.recv_publish().await.payload.as_ref(), b"after");
        // At 3.1.1 the old connection is simply closed [MQTT-3.1.4-2].
        let mut old = Raw::connect(addr, V311, "dup311", true).await;
        let _new = Raw::connect(addr, V311, "dup311", true).await;
        assert!(old.closed().await.is_empty());
    });
}

#[test]
fn a_takeover_ends_a_session_that_lasts_only_as_long_as_its_connection() {
    // 5.0 §3.1.4: with Session Expiry 0 "the original Session is ended on
    // the takeover"; 3.1.1 [MQTT-3.1.2-6]: a clean session lasts as long as
    // the network connection. The new connection (clean start 0) gets no
    // session present and none of the old subscriptions.
    for (version, clean) in [(V5, false), (V311, true)] {
        with_default_broker(|ctx, addr| async move {
            let mut old = Raw::connect(addr, version, "short", clean).await;
            old.subscribe("t", QoS::AtLeastOnce).await;
            let (mut new, ack) =
                Raw::connect_with(addr, connect_packet(version, "short", false, 0)).await;
            assert_eq!(ack.reason_code, ReasonCode::Success);
            assert!(!ack.session_present, "{version:?}: a new session");
            old.closed().await;
            let matched = ctx
                .broker()
                .publish(myqtt_core::broker::hooks::Message {
                    topic: topic("t"),
                    payload: bytes::Bytes::from_static(b"nobody"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: myqtt_core::codec::PublishProperties::default(),
                })
                .unwrap();
            assert_eq!(matched, 0, "{version:?}: the old subscription is gone");
            new.expect_nothing().await;
        });
    }
}

#[test]
fn a_duplicate_client_id_is_refused_when_the_policy_says_reject() {
    let config = BrokerConfig::builder()
        .duplicate_client_id(DuplicateClientId::Reject)
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let mut first = Raw::connect(addr, V311, "only", true).await;
        let (_, ack) = Raw::connect_with(addr, connect_packet(V311, "only", true, 0)).await;
        assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
        // The first connection is untouched.
        first.send(Packet::PingReq).await;
        assert_eq!(first.recv().await, Packet::PingResp);
    });
}

#[test]
fn a_connection_past_the_limit_is_refused_as_server_busy() {
    let config = BrokerConfig::builder().max_connections(1).build().unwrap();
    with_broker(config, |_, addr| async move {
        let _one = Raw::connect(addr, V5, "one", true).await;
        let (_, ack) = Raw::connect_with(addr, connect_packet(V5, "two", true, 0)).await;
        assert_eq!(ack.reason_code, ReasonCode::ServerBusy);
        // 3.1.1 clients get return code 3, Server unavailable.
        let (_, ack) = Raw::connect_with(addr, connect_packet(V311, "three", true, 0)).await;
        assert_eq!(ack.reason_code, ReasonCode::ServerUnavailable);
    });
}

#[test]
fn a_silent_client_is_closed_after_one_and_a_half_keep_alive_intervals() {
    // [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0); MQTT 5 gets 0x8D.
    with_default_broker(|_, addr| async move {
        let start = Instant::now();
        let (mut v5, _) = Raw::connect_with(addr, connect_packet(V5, "ka5", true, 1)).await;
        let (mut v311, _) = Raw::connect_with(addr, connect_packet(V311, "ka3", true, 1)).await;
        let got = v5.closed().await;
        assert!(
            start.elapsed() >= Duration::from_millis(1400),
            "{:?}",
            start.elapsed()
        );
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KeepAliveTimeout),
            "{got:?}"
        );
        assert!(v311.closed().await.is_empty());
    });
}

#[test]
fn pings_keep_a_connection_alive() {
    with_default_broker(|_, addr| async move {
        let (mut c, _) = Raw::connect_with(addr, connect_packet(V311, "pinger", true, 1)).await;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            c.send(Packet::PingReq).await;
            assert_eq!(c.recv().await, Packet::PingResp); // [MQTT-3.12.4-1]
        }
    });
}

#[test]
fn server_keep_alive_overrides_the_mqtt5_client_value() {
    // [MQTT-3.2.2-21]
    let config = BrokerConfig::builder()
        .server_keep_alive(Some(1))
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let (mut c, ack) = Raw::connect_with(addr, connect_packet(V5, "ska", true, 600)).await;
        assert_eq!(ack.properties.server_keep_alive, Some(1));
        let got = c.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KeepAliveTimeout),
            "{got:?}"
        );
    });
}

#[test]
fn a_connection_without_connect_is_closed_after_the_connect_timeout() {
    let config = BrokerConfig::builder()
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let mut raw = Raw::open(addr, V311).await;
        assert!(raw.closed().await.is_empty());
    });
}

#[test]
fn a_connect_over_the_first_packet_limit_is_refused_before_authentication() {
    // The full packet size limit (256 MiB by default) applies only once the
    // client is connected; before, a CONNECT is held to a small limit.
    let config = BrokerConfig::builder()
        .max_connect_packet_size(1024)
        .build()
        .unwrap();
    with_broker(config, |_, addr| async move {
        let mut big = connect_packet(V311, "big", true, 0);
        big.username = Some("u".into());
        big.password = Some(bytes::Bytes::from(vec![b'p'; 2048]));
        let mut raw = Raw::open(addr, V311).await;
        raw.send(Packet::Connect(Box::new(big))).await;
        assert!(
            raw.closed().await.is_empty(),
            "no CONNACK for an oversized CONNECT"
        );
        // A connected client may send larger packets.
        let mut ok = Raw::connect(addr, V311, "ok", true).await;
        ok.subscribe("t", QoS::AtMostOnce).await;
        ok.publish("t", &[0u8; 4096], QoS::AtMostOnce, false).await;
        assert_eq!(ok.recv_publish().await.payload.len(), 4096);
    });
}

#[test]
fn sockets_waiting_to_connect_count_against_the_connection_limit() {
    // With max_connections 1, one silent socket may wait for its CONNECT
    // (until the connect timeout); a second is closed at once.
    let config = BrokerConfig::builder().max_connections(1).build().unwrap();
    with_broker(config, |_, addr| async move {
        let mut first = Raw::open(addr, V311).await;
        let mut second = Raw::open(addr, V311).await;
        let started = Instant::now();
        let mut closed = 0;
        tokio::select! {
            got = first.closed() => { assert!(got.is_empty()); closed += 1; }
            got = second.closed() => { assert!(got.is_empty()); closed += 1; }
        }
        assert_eq!(closed, 1);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "closed by the limit, not the 10 s connect timeout"
        );
    });
}

#[test]
fn a_malformed_packet_closes_only_that_connection() {
    // MQTT 5.0 §4.13: DISCONNECT with 0x81 Malformed Packet, then close.
    with_default_broker(|_, addr| async move {
        let mut other = Raw::connect(addr, V5, "bystander", true).await;
        other.subscribe("x", QoS::AtMostOnce).await;
        let mut bad = Raw::connect(addr, V5, "bad", true).await;
        // SUBSCRIBE with reserved flags 0b0000 instead of 0b0010.
        bad.send_bytes(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, b'x'])
            .await;
        let got = bad.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::MalformedPacket),
            "{got:?}"
        );
        // A 3.1.1 connection is just closed.
        let mut bad = Raw::connect(addr, V311, "bad311", true).await;
        bad.send_bytes(&[0x30, 0x02, 0x00, 0x05]).await; // PUBLISH, topic runs past the end
        assert!(bad.closed().await.is_empty());
        // The bystander still works.
        let mut p = Raw::connect(addr, V311, "p", true).await;
        p.publish("x", b"still here", QoS::AtMostOnce, false).await;
        assert_eq!(other.recv_publish().await.payload.as_ref(), b"still here");
    });
}

#[test]
fn a_packet_over_the_maximum_size_closes_the_connection_with_0x95() {
    let config = BrokerConfig::builder().max_packet_size(64).build().unwrap();
    with_broker(config, |_, addr| async move {
        let (mut c, ack) = Raw::connect_with(addr, connect_packet(V5, "big", true, 0)).await;
        assert_eq!(ack.properties.maximum_packet_size, Some(64));
        c.send(Packet::Publish(publish(
            "t",
            &[0; 100],
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await;
        let got = c.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PacketTooLarge),
            "{got:?}"
        );
    });
}

#[test]
fn exiting_the_context_sends_mqtt5_clients_server_shutting_down() {
    let ctx = Ctx::builder().worker_threads(1).build().unwrap();
    let addr = ctx.create_listener("127.0.0.1", 0).unwrap().local_addr();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut v5, mut v311) = client_rt.block_on(async {
        (
            Raw::connect(addr, V5, "s5", true).await,
            Raw::connect(addr, V311, "s3", true).await,
        )
    });
    ctx.exit();
    client_rt.block_on(async {
        let got = v5.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ServerShuttingDown),
            "{got:?}"
        );
        assert!(v311.closed().await.is_empty());
        // The listener no longer accepts.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    });
}

#[test]
fn unlock_listeners_releases_a_waiting_thread() {
    let ctx = Ctx::new().unwrap();
    ctx.create_listener("127.0.0.1", 0).unwrap();
    let waiter = {
        let ctx = ctx.clone();
        std::thread::spawn(move || ctx.wait_listeners(false))
    };
    // The waiter may not be waiting yet: unlock until it returns.
    while !waiter.is_finished() {
        ctx.unlock_listeners();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(waiter.join().unwrap(), myqtt_core::WaitOutcome::Unlocked);
    ctx.exit();
}

#[test]
fn packets_sent_right_behind_the_connect_are_handled_in_order() {
    with_default_broker(|_, addr| async move {
        let mut raw = Raw::open(addr, V311).await;
        let mut bytes = bytes::BytesMut::new();
        for p in [
            Packet::Connect(Box::new(connect_packet(V311, "eager", true, 0))),
            Packet::Subscribe(myqtt_core::codec::Subscribe {
                packet_id: pid(1),
                filters: vec![(
                    filter("e"),
                    myqtt_core::codec::SubscriptionOptions::default(),
                )],
                properties: myqtt_core::codec::SubscribeProperties::default(),
            }),
            Packet::Publish(publish("e", b"to myself", QoS::AtMostOnce, false, 0)),
        ] {
            myqtt_core::codec::encode(&p, V311, &mut bytes).unwrap();
        }
        raw.send_bytes(&bytes).await;
        assert!(
            matches!(raw.recv().await, Packet::ConnAck(c) if c.reason_code == ReasonCode::Success)
        );
        assert!(matches!(raw.recv().await, Packet::SubAck(_)));
        assert_eq!(raw.recv_publish().await.payload.as_ref(), b"to myself");
    });
}

#[test]
fn a_listener_waiter_waits_in_slices_without_missing_an_unlock() {
    let ctx = Ctx::new().unwrap();
    let mut waiter = ctx.listener_waiter();
    assert_eq!(waiter.wait(Some(Duration::from_millis(20)), false), None);
    // An unlock between two slices is seen by the next one.
    ctx.unlock_listeners();
    assert_eq!(
        waiter.wait(Some(Duration::from_millis(20)), false),
        Some(myqtt_core::WaitOutcome::Unlocked)
    );
    assert_eq!(waiter.wait(Some(Duration::from_millis(20)), false), None);
    ctx.exit();
    assert_eq!(
        waiter.wait(None, false),
        Some(myqtt_core::WaitOutcome::Exited)
    );
}

#[test]
fn pings_of_a_client_that_is_slow_to_read_keep_it_alive_while_reading_is_paused() {
    // The broker stops reading a peer whose write buffer is past the high
    // water mark; its PINGREQs still count [MQTT-3.1.2-24] (3.1.1) /
    // [MQTT-3.1.2-22] (5.0): the client is not closed for keep alive.
    use myqtt_core::codec::{Subscribe, SubscribeProperties, SubscriptionOptions};
    const RETAINED: usize = 64;
    with_default_broker(|ctx, addr| async move {
        let mut p = Raw::connect(addr, V311, "p", true).await;
        let payload = vec![7u8; 128 * 1024];
        for i in 0..RETAINED {
            p.publish(&format!("r/{i}"), &payload, QoS::AtMostOnce, true)
                .await;
        }
        eventually("retained stored", || {
            ctx.broker().retained_count() == RETAINED
        })
        .await;
        // 4 x 8 MiB owed: far more than the sockets' buffers hold.
        let (mut s, _) = Raw::connect_with(addr, connect_packet(V311, "slow", true, 1)).await;
        for i in 1..=4 {
            s.send(Packet::Subscribe(Subscribe {
                packet_id: pid(i),
                filters: vec![(filter("r/#"), SubscriptionOptions::default())],
                properties: SubscribeProperties::default(),
            }))
            .await;
        }
        // Pings for three keep-alive expiries (1.5 s each), nothing read.
        let start = Instant::now();
        let mut pings = 0;
        while start.elapsed() < Duration::from_millis(4500) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.send(Packet::PingReq).await;
            pings += 1;
        }
        let connected = |id: &str| {
            ctx.broker()
                .clients()
                .iter()
                .any(|c| c.info.client_id == id)
        };
        assert!(connected("slow"), "closed while its PINGREQs waited unread");
        // Reading everything now: every PINGREQ is answered.
        let mut pongs = 0;
        while pongs < pings {
            match s.recv().await {
                Packet::PingResp => pongs += 1,
                Packet::Publish(_) | Packet::SubAck(_) => {}
                other => panic!("unexpected {other:?} after {pongs} PINGRESPs"),
            }
        }
        assert!(connected("slow"));
    });
}
