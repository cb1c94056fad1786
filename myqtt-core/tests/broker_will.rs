//! Will messages: published on an abnormal close only, with retain, the
//! MQTT 5 will delay and will properties; kicks with and without the will.

mod broker_util;

use std::time::{Duration, Instant};

use broker_util::*;
use bytes::Bytes;
use myqtt_core::codec::{
    Connect, Disconnect, DisconnectProperties, Packet, ProtocolVersion, QoS, ReasonCode,
};

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn with_will(version: ProtocolVersion, id: &str, retain: bool) -> Connect {
    let mut c = connect_packet(version, id, true, 0);
    c.will = Some(will("status/x", b"gone", QoS::AtLeastOnce, retain));
    c
}

#[test]
fn the_will_is_published_when_the_connection_drops_without_disconnect() {
    // [MQTT-3.1.2-8] (3.1.1)
    for version in [V311, V5] {
        with_default_broker(|_, addr| async move {
            let mut watcher = Raw::connect(addr, version, "w", true).await;
            watcher.subscribe("status/#", QoS::AtLeastOnce).await;
            let (client, _) = Raw::connect_with(addr, with_will(version, "c", false)).await;
            drop(client); // the socket closes, no DISCONNECT
            let m = watcher.recv_publish().await;
            assert_eq!(
                (m.topic.as_str(), m.payload.as_ref()),
                ("status/x", &b"gone"[..])
            );
            assert_eq!(m.qos, QoS::AtLeastOnce);
        });
    }
}

#[test]
fn the_will_is_not_published_after_a_normal_disconnect() {
    // [MQTT-3.1.2-10] (3.1.1) / [MQTT-3.1.2-10] (5.0)
    for version in [V311, V5] {
        with_default_broker(|_, addr| async move {
            let mut watcher = Raw::connect(addr, version, "w", true).await;
            watcher.subscribe("status/#", QoS::AtLeastOnce).await;
            let (client, _) = Raw::connect_with(addr, with_will(version, "c", false)).await;
            client.disconnect().await;
            watcher.expect_nothing().await;
        });
    }
}

#[test]
fn an_mqtt5_disconnect_with_0x04_publishes_the_will() {
    // MQTT 5.0 §3.14.2.1
    with_default_broker(|_, addr| async move {
        let mut watcher = Raw::connect(addr, V5, "w", true).await;
        watcher.subscribe("status/#", QoS::AtLeastOnce).await;
        let (client, _) = Raw::connect_with(addr, with_will(V5, "c", false)).await;
        client
            .disconnect_with(ReasonCode::DisconnectWithWillMessage)
            .await;
        assert_eq!(watcher.recv_publish().await.payload.as_ref(), b"gone");
    });
}

#[test]
fn an_mqtt5_disconnect_with_an_error_reason_publishes_the_will() {
    // [MQTT-3.14.4-3]: only DISCONNECT 0x00 deletes the will; any other
    // reason the client sends leaves it to be published.
    for reason in [
        ReasonCode::UnspecifiedError,
        ReasonCode::ImplementationSpecificError,
        ReasonCode::MessageRateTooHigh,
    ] {
        with_default_broker(|_, addr| async move {
            let mut watcher = Raw::connect(addr, V5, "w", true).await;
            watcher.subscribe("status/#", QoS::AtLeastOnce).await;
            let (client, _) = Raw::connect_with(addr, with_will(V5, "c", false)).await;
            client.disconnect_with(reason).await;
            assert_eq!(
                watcher.recv_publish().await.payload.as_ref(),
                b"gone",
                "{reason:?}"
            );
        });
    }
}

#[test]
fn a_protocol_violation_publishes_the_will() {
    with_default_broker(|_, addr| async move {
        let mut watcher = Raw::connect(addr, V311, "w", true).await;
        watcher.subscribe("status/#", QoS::AtLeastOnce).await;
        let (mut client, _) = Raw::connect_with(addr, with_will(V311, "c", false)).await;
        client
            .send(Packet::Connect(Box::new(connect_packet(
                V311, "c", true, 0,
            ))))
            .await;
        assert_eq!(watcher.recv_publish().await.payload.as_ref(), b"gone");
    });
}

#[test]
fn a_disconnect_setting_session_expiry_after_0_gets_0x82_and_publishes_the_will() {
    // [MQTT-3.14.2-2] (5.0): not a valid DISCONNECT; the server answers with
    // DISCONNECT 0x82 and the will goes out as on any other protocol error.
    with_default_broker(|_, addr| async move {
        let mut watcher = Raw::connect(addr, V5, "w", true).await;
        watcher.subscribe("status/#", QoS::AtLeastOnce).await;
        let (mut client, _) = Raw::connect_with(addr, with_will(V5, "c", false)).await;
        let mut d = Disconnect::with_reason(ReasonCode::Success);
        d.properties = DisconnectProperties {
            session_expiry_interval: Some(30),
            ..DisconnectProperties::default()
        };
        client.send(Packet::Disconnect(d)).await;
        let got = client.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError),
            "{got:?}"
        );
        assert_eq!(watcher.recv_publish().await.payload.as_ref(), b"gone");
    });
}

#[test]
fn a_retained_will_is_stored() {
    // [MQTT-3.1.2-17] (3.1.1)
    with_default_broker(|_, addr| async move {
        let (client, _) = Raw::connect_with(addr, with_will(V311, "c", true)).await;
        drop(client);
        // Poll until the will is in. Each attempt is a fresh connection and a
        // fresh subscription, so what arrives can only be the stored copy
        // (a live copy to an existing subscription has retain 0,
        // [MQTT-3.3.1-9]).
        let deadline = Instant::now() + WAIT;
        loop {
            let mut late = Raw::connect(addr, V311, "late", true).await;
            late.subscribe("status/x", QoS::AtMostOnce).await;
            // A live copy (retain 0) means this probe subscribed first: retry.
            if let Some(Packet::Publish(m)) = late.recv_within(QUIET).await
                && m.retain
            {
                assert_eq!(m.payload.as_ref(), b"gone");
                break;
            }
            assert!(Instant::now() < deadline, "the retained will never came");
        }
    });
}

#[test]
fn the_will_delay_holds_the_will_and_a_reconnection_cancels_it() {
    // MQTT 5.0 §3.1.3.2.2, [MQTT-3.1.3-9]
    with_default_broker(|_, addr| async move {
        let mut watcher = Raw::connect(addr, V5, "w", true).await;
        watcher.subscribe("status/#", QoS::AtLeastOnce).await;
        let delayed = |id: &str| {
            let mut c = with_will(V5, id, false);
            c.clean_start = false;
            c.properties.session_expiry_interval = Some(60);
            if let Some(w) = c.will.as_mut() {
                w.properties.will_delay_interval = Some(1);
                w.properties.user_properties = vec![("why".into(), "lost".into())];
                w.properties.content_type = Some("text/plain".into());
            }
            c
        };
        // Dropped, and not back in time: published after about 1 s, with
        // the will properties as message properties.
        let (client, _) = Raw::connect_with(addr, delayed("late")).await;
        let dropped_at = Instant::now();
        drop(client);
        let m = watcher.recv_publish().await;
        assert!(dropped_at.elapsed() >= Duration::from_millis(900));
        assert_eq!(
            m.properties.user_properties,
            [("why".into(), "lost".into())]
        );
        assert_eq!(m.properties.content_type.as_deref(), Some("text/plain"));
        // Dropped, then reconnected within the delay: never published.
        let (client, _) = Raw::connect_with(addr, delayed("back")).await;
        drop(client);
        let (again, ack) = Raw::connect_with(addr, delayed("back")).await;
        assert!(ack.session_present);
        tokio::time::sleep(Duration::from_millis(1300)).await; // past the delay
        watcher.expect_nothing().await;
        again.disconnect().await;
    });
}

#[test]
fn a_kick_closes_the_client_with_or_without_its_will() {
    with_default_broker(|ctx, addr| async move {
        let mut watcher = Raw::connect(addr, V5, "w", true).await;
        watcher.subscribe("status/#", QoS::AtLeastOnce).await;
        let (mut quiet, _) = Raw::connect_with(addr, with_will(V5, "quiet", false)).await;
        assert!(ctx.broker().kick_client("quiet", false));
        let got = quiet.closed().await;
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::AdministrativeAction),
            "{got:?}"
        );
        watcher.expect_nothing().await;
        let mut loud = connect_packet(V311, "loud", true, 0);
        loud.will = Some(will("status/loud", b"kicked", QoS::AtMostOnce, false));
        loud.username = Some("bob".into());
        let (mut loud, _) = Raw::connect_with(addr, loud).await;
        assert_eq!(ctx.broker().kick_username("bob", true), 1);
        assert!(loud.closed().await.is_empty());
        assert_eq!(
            watcher.recv_publish().await.payload,
            Bytes::from_static(b"kicked")
        );
        assert!(!ctx.broker().kick_client("nobody", true));
    });
}

/// Connects a client with a retained will (with `delay` seconds of will
/// delay at MQTT 5), shuts the listener down, and says whether the will was
/// retained.
fn will_retained_after_shutdown(wills_on_shutdown: bool, delay: Option<u32>) -> bool {
    let config = myqtt_core::broker::BrokerConfig::builder()
        .wills_on_shutdown(wills_on_shutdown)
        .build()
        .unwrap();
    let ctx = myqtt_core::Ctx::builder()
        .worker_threads(2)
        .shutdown_grace(Duration::from_secs(5))
        .broker(config)
        .build()
        .unwrap();
    let addr = ctx.create_listener("127.0.0.1", 0).unwrap().local_addr();
    let client = ctx.block_on(async move {
        let mut connect = with_will(V5, "c", true);
        connect.properties.session_expiry_interval = Some(60);
        if let Some(w) = connect.will.as_mut() {
            w.properties.will_delay_interval = delay;
        }
        let (client, _) = Raw::connect_with(addr, connect).await;
        client
    });
    let broker = ctx.broker().clone();
    assert_eq!(broker.retained_count(), 0);
    ctx.exit(); // waits for the connections to close
    drop(client);
    broker.retained_count() == 1
}

#[test]
fn wills_are_published_when_the_listener_shuts_down() {
    // The server closes the connection without a DISCONNECT 0x00 from the
    // client: the will is published [MQTT-3.1.2-8], MQTT 5.0 §3.1.2.5.
    assert!(will_retained_after_shutdown(true, None));
    // Without a store the session ends with the process: a delayed will
    // cannot wait.
    assert!(will_retained_after_shutdown(true, Some(30)));
    assert!(!will_retained_after_shutdown(false, None));
}
