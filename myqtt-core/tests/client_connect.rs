//! Client connection against a real mosquitto: protocol levels, refused
//! connections with their CONNACK codes, credentials, timeouts, keep alive
//! and ping.

mod client_support;

use std::time::Duration;

use client_support::{Mosquitto, Proxy, WAIT, fake_server, password_file};
use myqtt_core::Ctx;
use myqtt_core::client::{ClientError, CloseReason, Conn, ConnectOptions, Status};
use myqtt_core::codec::{Packet, ProtocolVersion, ReasonCode};

fn ctx() -> Ctx {
    Ctx::builder().worker_threads(1).build().unwrap()
}

fn opts(port: u16, v: ProtocolVersion) -> ConnectOptions {
    ConnectOptions::new("127.0.0.1", port)
        .protocol(v)
        .connect_timeout(Duration::from_secs(5))
}

#[test]
fn connects_at_every_protocol_level_without_a_session() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    for v in [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ] {
        let conn = Conn::connect_blocking(&ctx, opts(broker.port, v).client_id(format!("c-{v:?}")))
            .unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert_eq!(conn.status(), Status::Connected);
        let info = conn.connect_info().unwrap();
        assert_eq!(info.protocol, v);
        // A clean session is never present [MQTT-3.2.2-1] (3.1.1) / [MQTT-3.2.2-2] (5.0).
        assert!(!info.session_present);
        conn.close().wait(WAIT).unwrap();
        assert_eq!(conn.status(), Status::Closed);
    }
}

#[test]
fn an_empty_client_id_gets_an_assigned_identifier_at_mqtt_5() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    let conn = Conn::connect_blocking(&ctx, opts(broker.port, ProtocolVersion::V5)).unwrap();
    let info = conn.connect_info().unwrap();
    let assigned = info.properties.assigned_client_identifier.clone();
    assert!(assigned.is_some(), "MQTT 5.0 §3.2.2.3.7: {info:?}");
    assert_eq!(conn.client_id(), assigned.unwrap().to_string());
}

#[test]
fn an_empty_client_id_with_a_persistent_session_is_refused_with_its_code() {
    // [MQTT-3.1.3-8]: CONNACK return code 0x02, identifier rejected.
    let broker = Mosquitto::start();
    let ctx = ctx();
    let err = Conn::connect_blocking(
        &ctx,
        opts(broker.port, ProtocolVersion::V311).clean_start(false),
    )
    .unwrap_err();
    assert_eq!(
        err.reason_code(),
        Some(ReasonCode::ClientIdentifierNotValid),
        "{err}"
    );
    assert!(
        matches!(err, ClientError::ConnectionRefused { code: 0x85, .. }),
        "{err:?}"
    );
}

#[test]
fn a_refused_anonymous_connection_carries_not_authorized_at_both_levels() {
    let broker = Mosquitto::start_with("allow_anonymous false\npersistence false\n");
    let ctx = ctx();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let err = Conn::connect_blocking(&ctx, opts(broker.port, v).client_id("anon")).unwrap_err();
        // 3.1.1 return code 0x05 reads as 0x87 Not authorized.
        assert_eq!(
            err.reason_code(),
            Some(ReasonCode::NotAuthorized),
            "{v:?}: {err}"
        );
    }
}

#[test]
fn credentials_are_sent_and_a_wrong_password_is_refused() {
    let mut broker = Mosquitto::start_with("allow_anonymous false\npersistence false\n");
    let file = password_file(broker.dir(), "alice", "secret");
    // Restart with the password file now that it exists.
    let dir = broker.dir().clone();
    drop(std::mem::replace(
        &mut broker,
        Mosquitto::start_with(&format!(
            "allow_anonymous false\npersistence false\npassword_file {}\n",
            file.display()
        )),
    ));
    let ctx = ctx();
    let good = opts(broker.port, ProtocolVersion::V5)
        .client_id("alice-1")
        .username("alice")
        .password("secret");
    let conn = Conn::connect_blocking(&ctx, good).unwrap();
    assert!(conn.is_connected());
    let bad = opts(broker.port, ProtocolVersion::V5)
        .client_id("alice-2")
        .username("alice")
        .password("wrong");
    let err = Conn::connect_blocking(&ctx, bad).unwrap_err();
    assert!(
        matches!(
            err.reason_code(),
            Some(ReasonCode::BadUserNameOrPassword | ReasonCode::NotAuthorized)
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unsupported_protocol_connack_is_surfaced_with_its_code() {
    // A 3.1.1 server that does not speak the level asked for answers with
    // return code 0x01 [MQTT-3.1.2-2].
    let port = fake_server(&[0x20, 0x02, 0x00, 0x01]);
    let ctx = ctx();
    let err = Conn::connect_blocking(&ctx, opts(port, ProtocolVersion::V311)).unwrap_err();
    assert_eq!(
        err.reason_code(),
        Some(ReasonCode::UnsupportedProtocolVersion),
        "{err}"
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ctx = ctx();
    let o = opts(port, ProtocolVersion::V311).connect_timeout(Duration::from_millis(300));
    let err = Conn::connect_blocking(&ctx, o).unwrap_err();
    assert!(matches!(err, ClientError::ConnectTimeout), "{err:?}");
    drop(listener);
}

#[test]
fn nobody_listening_is_a_connect_error() {
    let port = client_support::free_port();
    let ctx = ctx();
    let err = Conn::connect_blocking(&ctx, opts(port, ProtocolVersion::V311)).unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
}

#[test]
fn ping_measures_a_round_trip() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let conn = Conn::connect_blocking(&ctx, opts(broker.port, v)).unwrap();
        let rtt = conn.ping().wait(WAIT).unwrap();
        assert!(rtt < WAIT);
    }
}

#[test]
fn keep_alive_sends_pingreq_when_the_client_is_idle() {
    // [MQTT-3.1.2-23] (3.1.1) / [MQTT-3.1.2-20] (5.0)
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let conn = Conn::connect_blocking(&ctx, opts(proxy.port, ProtocolVersion::V311).keep_alive(1))
        .unwrap();
    assert!(proxy.wait_sent(|p| p.iter().filter(|p| **p == Packet::PingReq).count() >= 2));
    assert!(conn.is_connected());
}

#[test]
fn an_async_connect_and_ping_work_from_another_runtime() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = Conn::connect(&ctx, opts(broker.port, ProtocolVersion::V5))
            .await
            .unwrap();
        conn.ping().await.unwrap();
        conn.close().await.unwrap();
        assert_eq!(conn.closed().await, CloseReason::Closed);
    });
}

#[test]
fn connecting_can_be_waited_on_in_slices() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    let connecting = Conn::start_connect(&ctx, opts(broker.port, ProtocolVersion::V311)).unwrap();
    let conn = loop {
        match connecting.wait(Duration::from_millis(1)) {
            Ok(c) => break c,
            Err(ClientError::Timeout) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert!(connecting.is_done());
    assert!(conn.is_connected());
}

#[test]
fn close_is_idempotent_and_later_calls_fail_with_the_close_reason() {
    let broker = Mosquitto::start();
    let ctx = ctx();
    let conn = Conn::connect_blocking(&ctx, opts(broker.port, ProtocolVersion::V5)).unwrap();
    conn.close().wait(WAIT).unwrap();
    conn.close().wait(WAIT).unwrap();
    conn.shutdown().wait(WAIT).unwrap();
    let closed = |e: ClientError| matches!(e, ClientError::Closed(CloseReason::Closed));
    assert!(closed(conn.ping().wait(WAIT).unwrap_err()));
    assert!(closed(
        conn.subscribe("a", myqtt_core::codec::QoS::AtMostOnce)
            .wait(WAIT)
            .unwrap_err()
    ));
    assert!(closed(conn.get_next(Some(WAIT)).unwrap_err()));
}

#[test]
fn the_mqtt5_limits_are_advertised_in_connect() {
    // The values advertised are the values enforced (MQTT 5.0 §3.1.2.11).
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let o = opts(proxy.port, ProtocolVersion::V5)
        .receive_maximum(7)
        .maximum_packet_size(4096)
        .topic_alias_maximum(3)
        .session_expiry_interval(60)
        .user_property("k", "v");
    let _conn = Conn::connect_blocking(&ctx, o).unwrap();
    let sent = proxy.sent();
    let Some(Packet::Connect(c)) = sent.first() else {
        panic!("first packet {sent:?}");
    };
    let p = &c.properties;
    assert_eq!(p.receive_maximum, Some(7));
    assert_eq!(p.maximum_packet_size, Some(4096));
    assert_eq!(p.topic_alias_maximum, Some(3));
    assert_eq!(p.session_expiry_interval, Some(60));
    assert_eq!(p.user_properties.len(), 1);
}
