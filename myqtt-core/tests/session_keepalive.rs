//! Keep-alive on both sides with simulated time (MQTT 3.1.1 §3.1.2.10,
//! MQTT 5.0 §3.1.2.10 and §3.2.2.3.14).

mod session_harness;

use std::time::Duration;

use myqtt_core::codec::{ConnAckProperties, Packet, PacketType, ProtocolVersion, QoS, ReasonCode};
use myqtt_core::session::{Event, SessionConfig, SessionError};
use session_harness::{Dir, Pair, message};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn count(packets: &[Packet], packet_type: PacketType) -> usize {
    packets
        .iter()
        .filter(|p| p.packet_type() == packet_type)
        .count()
}

fn pair_with_keep_alive(version: ProtocolVersion, keep_alive: u16) -> Pair {
    let mut pair = Pair::new(version);
    pair.keep_alive = keep_alive;
    pair.connect(true);
    pair
}

#[test]
fn server_closes_a_silent_client_after_one_and_a_half_keep_alives() {
    // [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0). The client's PINGREQ
    // is lost, so the server hears nothing after the CONNECT.
    for version in [V311, V5] {
        let mut pair = pair_with_keep_alive(version, 10);
        let start = pair.now;
        pair.lose_next(Dir::ToServer, PacketType::PingReq);
        assert_eq!(pair.server.poll_timeout(), Some(start + secs(15)));
        pair.advance(Duration::from_millis(14_999));
        assert!(pair.server_errors.is_empty());
        pair.advance(Duration::from_millis(1));
        assert_eq!(
            pair.server_errors,
            [SessionError::KeepAliveTimeout(secs(10))]
        );
        assert_eq!(
            pair.server_errors[0].reason_code(),
            ReasonCode::KeepAliveTimeout
        );
        assert!(pair.server.is_closed());
        if version == V5 {
            let Some(Packet::Disconnect(d)) = pair.to_client.last() else {
                panic!("DISCONNECT")
            };
            assert_eq!(d.reason_code, ReasonCode::KeepAliveTimeout);
            assert!(matches!(
                pair.client_events.last(),
                Some(Event::Disconnected(_))
            ));
        } else {
            // No DISCONNECT from a 3.1.1 server: it just closes.
            assert_eq!(count(&pair.to_client, PacketType::Disconnect), 0);
        }
    }
}

#[test]
fn client_pings_after_a_keep_alive_of_silence_and_nothing_expires_while_pings_are_answered() {
    // [MQTT-3.1.2-23] (3.1.1) / [MQTT-3.1.2-20] (5.0), [MQTT-3.12.4-1]
    let mut pair = pair_with_keep_alive(V5, 10);
    pair.advance(Duration::from_millis(9_999));
    assert_eq!(count(&pair.to_server, PacketType::PingReq), 0);
    pair.advance(secs(86));
    assert_eq!(count(&pair.to_server, PacketType::PingReq), 9);
    assert_eq!(count(&pair.to_client, PacketType::PingResp), 9);
    assert!(pair.client_errors.is_empty() && pair.server_errors.is_empty());
    assert!(pair.client.is_connected() && pair.server.is_connected());
    // Automatic pings are not reported to the application.
    assert!(!pair.client_events.contains(&Event::Pong));
}

#[test]
fn no_ping_and_no_expiry_while_the_client_keeps_sending() {
    let mut pair = pair_with_keep_alive(V311, 10);
    for _ in 0..20 {
        pair.advance(secs(6));
        pair.client
            .publish(pair.now, message("t", QoS::AtMostOnce, "tick"))
            .unwrap();
        pair.drive();
    }
    assert_eq!(pair.server_publishes().len(), 20);
    assert_eq!(count(&pair.to_server, PacketType::PingReq), 0);
    assert!(pair.server.is_connected() && pair.server_errors.is_empty());
}

#[test]
fn client_gives_up_when_no_pingresp_comes_within_the_ping_timeout() {
    let client = SessionConfig::builder()
        .ping_timeout(secs(3))
        .build()
        .unwrap();
    let mut pair = Pair::with_configs(V5, client, SessionConfig::default());
    pair.keep_alive = 10;
    pair.connect(true);
    pair.lose_next(Dir::ToClient, PacketType::PingResp);
    pair.advance(Duration::from_millis(12_999));
    assert!(pair.client_errors.is_empty());
    pair.advance(Duration::from_millis(1));
    assert_eq!(pair.client_errors, [SessionError::PingTimeout(secs(3))]);
    assert!(pair.client.is_closed());
    // 0x8D is the server's to send: the client just closes.
    assert_eq!(count(&pair.to_server, PacketType::Disconnect), 0);
}

#[test]
fn the_ping_timeout_defaults_to_one_keep_alive_interval() {
    let mut pair = pair_with_keep_alive(V311, 10);
    pair.lose_next(Dir::ToClient, PacketType::PingResp);
    pair.advance(Duration::from_millis(19_999));
    assert!(pair.client_errors.is_empty());
    pair.advance(Duration::from_millis(1));
    assert_eq!(pair.client_errors, [SessionError::PingTimeout(secs(10))]);
}

#[test]
fn keep_alive_zero_turns_the_mechanism_off() {
    let mut pair = pair_with_keep_alive(V5, 0);
    assert_eq!(
        (pair.client.poll_timeout(), pair.server.poll_timeout()),
        (None, None)
    );
    pair.advance(secs(100_000));
    assert_eq!(pair.to_server.len(), 1);
    assert!(pair.client.is_connected() && pair.server.is_connected());
}

#[test]
fn server_keep_alive_replaces_the_clients_value_on_both_sides() {
    // [MQTT-3.2.2-21], [MQTT-3.1.2-21]
    let mut pair = Pair::new(V5);
    pair.keep_alive = 60;
    pair.connack_properties = ConnAckProperties {
        server_keep_alive: Some(4),
        ..ConnAckProperties::default()
    };
    pair.connect(true);
    assert_eq!(
        (pair.client.keep_alive(), pair.server.keep_alive()),
        (secs(4), secs(4))
    );
    pair.advance(secs(4));
    assert_eq!(count(&pair.to_server, PacketType::PingReq), 1);
}

#[test]
fn explicit_ping_is_answered_with_a_pong_event() {
    let mut pair = Pair::connected(V311);
    pair.client.ping(pair.now).unwrap();
    pair.drive();
    assert_eq!(pair.client_events.last(), Some(&Event::Pong));
    assert!(pair.server.ping(pair.now).is_err());
}

#[test]
fn a_ping_timeout_too_long_to_represent_never_fires_and_never_panics() {
    let client = SessionConfig::builder()
        .ping_timeout(Duration::MAX)
        .build()
        .unwrap();
    let mut pair = Pair::with_configs(V5, client, SessionConfig::default());
    pair.keep_alive = 10;
    pair.connect(true);
    pair.lose_next(Dir::ToClient, PacketType::PingResp);
    pair.advance(secs(12));
    assert_eq!(count(&pair.to_server, PacketType::PingReq), 1);
    assert_eq!(pair.client.poll_timeout(), None);
    assert!(pair.client.is_connected());
}
