//! Losing the connection: handles that complete with an error instead of
//! hanging, automatic reconnection with restored subscriptions, resumed
//! in-flight flows of persistent sessions, and the offline publish queue.

mod client_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use client_support::{Mosquitto, Proxy, WAIT, wait_until};
use myqtt_core::Ctx;
use myqtt_core::client::{
    ClientError, CloseInfo, CloseReason, Conn, ConnectOptions, PublishMessage, ReconnectInfo,
    ReconnectOptions, Status,
};
use myqtt_core::codec::{Packet, ProtocolVersion, QoS, ReasonCode};

fn ctx() -> Ctx {
    Ctx::builder().worker_threads(1).build().unwrap()
}

fn fast_reconnect() -> ReconnectOptions {
    ReconnectOptions::default()
        .initial_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
}

fn msg(topic: &str, payload: &str, qos: QoS) -> PublishMessage {
    PublishMessage::new(topic, payload.to_string())
        .unwrap()
        .qos(qos)
}

fn direct(ctx: &Ctx, port: u16, id: &str) -> Conn {
    Conn::connect_blocking(ctx, ConnectOptions::new("127.0.0.1", port).client_id(id)).unwrap()
}

/// Records what the close and reconnect callbacks are told.
#[derive(Default)]
struct Events {
    closes: Mutex<Vec<CloseInfo>>,
    reconnects: Mutex<Vec<ReconnectInfo>>,
}

fn record(conn: &Conn) -> Arc<Events> {
    let ev = Arc::new(Events::default());
    let (a, b) = (Arc::clone(&ev), Arc::clone(&ev));
    conn.set_on_close(move |_, info| a.closes.lock().unwrap().push(info.clone()));
    conn.set_on_reconnect(move |_, info| b.reconnects.lock().unwrap().push(info.clone()));
    ev
}

fn publishes(sent: &[Packet]) -> Vec<myqtt_core::codec::Publish> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_pending_qos1_publish_fails_when_the_broker_dies_mid_flight() {
    let mut broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", proxy.port).client_id("doomed"),
    )
    .unwrap();
    let ev = record(&conn);
    // The PUBLISH leaves the client but never reaches the broker.
    proxy.hold();
    let h = conn
        .try_publish(msg("t", "lost", QoS::AtLeastOnce))
        .unwrap();
    assert!(proxy.wait_sent(|p| !publishes(p).is_empty()));
    assert!(h.packet_id().is_some());
    broker.kill();
    // The handle completes with an error instead of hanging.
    let err = h.wait(WAIT).unwrap_err();
    assert!(
        matches!(err, ClientError::ConnectionLost(CloseReason::PeerClosed)),
        "{err:?}"
    );
    assert_eq!(conn.wait_closed(WAIT), Some(CloseReason::PeerClosed));
    assert_eq!(conn.status(), Status::Closed);
    assert!(wait_until(WAIT, || !ev.closes.lock().unwrap().is_empty()));
    assert_eq!(
        ev.closes.lock().unwrap()[0],
        CloseInfo {
            reason: CloseReason::PeerClosed,
            reconnecting: false
        }
    );
    // Without reconnection, later calls fail at once.
    assert!(matches!(
        conn.try_publish(msg("t", "x", QoS::AtMostOnce)),
        Err(ClientError::Closed(CloseReason::PeerClosed))
    ));
    assert!(matches!(
        conn.get_next(Some(WAIT)),
        Err(ClientError::Closed(_))
    ));
    assert!(conn.ping().wait(WAIT).is_err());
    assert!(conn.subscribe("t", QoS::AtMostOnce).wait(WAIT).is_err());
}

#[test]
fn reconnects_after_the_broker_restarts_and_subscribes_again() {
    let mut broker = Mosquitto::start();
    let ctx = ctx();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let conn = Conn::connect_blocking(
            &ctx,
            ConnectOptions::new("127.0.0.1", broker.port)
                .protocol(v)
                .client_id(format!("phoenix-{v:?}"))
                .reconnect(fast_reconnect()),
        )
        .unwrap();
        let ev = record(&conn);
        conn.subscribe("r/#", QoS::AtLeastOnce).wait(WAIT).unwrap();
        conn.subscribe("s/#", QoS::ExactlyOnce).wait(WAIT).unwrap();
        broker.restart();
        // The reconnection is reported once the subscriptions are made
        // again: the restarted broker has no session [MQTT-3.2.2-1].
        assert!(wait_until(WAIT, || !ev
            .reconnects
            .lock()
            .unwrap()
            .is_empty()));
        let info = ev.reconnects.lock().unwrap()[0].clone();
        assert!(!info.connect.session_present);
        assert_eq!((info.resubscribed, info.count), (1, 1));
        assert_eq!(conn.reconnect_count(), 1);
        assert!(conn.is_connected());
        let closes = ev.closes.lock().unwrap().clone();
        assert_eq!(closes.len(), 1);
        assert!(closes[0].reconnecting);
        let publisher = direct(&ctx, broker.port, "pub");
        publisher
            .publish_blocking(msg("r/1", "back", QoS::AtLeastOnce), WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
        publisher
            .publish_blocking(msg("s/1", "too", QoS::ExactlyOnce), WAIT)
            .unwrap()
            .wait(WAIT)
            .unwrap();
        let m = conn.get_next(Some(WAIT)).unwrap().expect("r/1");
        assert_eq!((m.topic().as_str(), m.qos()), ("r/1", QoS::AtLeastOnce));
        let m = conn.get_next(Some(WAIT)).unwrap().expect("s/1");
        assert_eq!((m.topic().as_str(), m.qos()), ("s/1", QoS::ExactlyOnce));
        conn.close().wait(WAIT).unwrap();
    }
}

#[test]
fn a_persistent_session_resumes_in_flight_flows_with_dup_in_order() {
    // [MQTT-4.4.0-1]: on reconnection with a session, unacknowledged
    // PUBLISH packets are resent with DUP set [MQTT-3.3.1-1], in the
    // original order [MQTT-4.6.0-1].
    let broker = Mosquitto::start();
    let ctx = ctx();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let proxy = Proxy::start(broker.port);
        let watcher = direct(&ctx, broker.port, &format!("watch-{v:?}"));
        let topic = format!("p/{v:?}");
        watcher
            .subscribe(&format!("{topic}/#"), QoS::ExactlyOnce)
            .wait(WAIT)
            .unwrap();
        let conn = Conn::connect_blocking(
            &ctx,
            ConnectOptions::new("127.0.0.1", proxy.port)
                .protocol(v)
                .client_id(format!("persist-{v:?}"))
                .clean_start(false)
                .session_expiry_interval(300)
                .reconnect(fast_reconnect()),
        )
        .unwrap();
        let ev = record(&conn);
        proxy.hold();
        let h1 = conn
            .try_publish(msg(&format!("{topic}/1"), "one", QoS::AtLeastOnce))
            .unwrap();
        let h2 = conn
            .try_publish(msg(&format!("{topic}/2"), "two", QoS::ExactlyOnce))
            .unwrap();
        assert!(proxy.wait_sent(|p| publishes(p).len() == 2));
        let first: Vec<_> = publishes(&proxy.sent());
        assert!(first.iter().all(|p| !p.dup));
        proxy.cut_and_wait();
        proxy.release();
        assert!(wait_until(WAIT, || !ev
            .reconnects
            .lock()
            .unwrap()
            .is_empty()));
        assert!(ev.reconnects.lock().unwrap()[0].connect.session_present);
        let o1 = h1.wait(WAIT).unwrap();
        let o2 = h2.wait(WAIT).unwrap();
        assert_eq!(o1.packet_id, first[0].packet_id);
        assert_eq!(o2.packet_id, first[1].packet_id);
        let all = publishes(&proxy.sent());
        assert_eq!(all.len(), 4, "{all:?}");
        for (resent, original) in all[2..].iter().zip(&first) {
            assert!(resent.dup);
            assert_eq!(resent.packet_id, original.packet_id);
            assert_eq!(resent.topic, original.topic);
        }
        let m1 = watcher.get_next(Some(WAIT)).unwrap().unwrap();
        let m2 = watcher.get_next(Some(WAIT)).unwrap().unwrap();
        assert_eq!(m1.payload().as_ref(), b"one");
        assert_eq!(m2.payload().as_ref(), b"two");
        conn.close().wait(WAIT).unwrap();
    }
}

#[test]
fn without_a_persistent_session_in_flight_handles_fail_at_the_loss() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", proxy.port)
            .client_id("clean")
            .reconnect(fast_reconnect()),
    )
    .unwrap();
    proxy.hold();
    let h = conn
        .try_publish(msg("c", "gone", QoS::AtLeastOnce))
        .unwrap();
    assert!(proxy.wait_sent(|p| !publishes(p).is_empty()));
    proxy.cut_and_wait();
    proxy.release();
    let err = h.wait(WAIT).unwrap_err();
    assert!(matches!(err, ClientError::ConnectionLost(_)), "{err:?}");
    assert!(conn.wait_connected(WAIT));
}

#[test]
fn publishes_while_disconnected_are_queued_and_sent_after_reconnection() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let watcher = direct(&ctx, broker.port, "offline-watch");
    watcher
        .subscribe("o/#", QoS::ExactlyOnce)
        .wait(WAIT)
        .unwrap();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", proxy.port)
            .client_id("offline")
            .reconnect(fast_reconnect()),
    )
    .unwrap();
    proxy.refuse(true);
    proxy.cut_and_wait();
    assert!(wait_until(WAIT, || conn.status() == Status::Reconnecting));
    // The one rule: with reconnection on, every QoS is queued.
    let handles: Vec<_> = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .map(|q| {
            conn.try_publish(msg(&format!("o/{}", q.as_u8()), "later", q))
                .unwrap()
        })
        .collect();
    assert!(wait_until(WAIT, || conn.send_queue_len() == 3));
    assert!(handles.iter().all(|h| !h.is_done()));
    // Subscribe and ping need the connection.
    assert!(matches!(
        conn.ping().wait(WAIT),
        Err(ClientError::NotConnected)
    ));
    proxy.refuse(false);
    for h in &handles {
        h.wait(WAIT).unwrap();
    }
    assert_eq!(conn.send_queue_len(), 0);
    for q in 0..3 {
        let m = watcher
            .get_next(Some(WAIT))
            .unwrap()
            .expect("queued message");
        assert_eq!(m.topic().as_str(), format!("o/{q}"));
    }
}

#[test]
fn reconnection_gives_up_after_its_last_attempt() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", proxy.port)
            .client_id("quitter")
            .reconnect(fast_reconnect().max_attempts(3)),
    )
    .unwrap();
    let ev = record(&conn);
    proxy.refuse(true);
    let queued = {
        proxy.cut_and_wait();
        assert!(wait_until(WAIT, || conn.status() == Status::Reconnecting));
        conn.try_publish(msg("q", "never", QoS::AtLeastOnce))
            .unwrap()
    };
    assert_eq!(conn.wait_closed(WAIT), Some(CloseReason::ReconnectGaveUp));
    assert!(matches!(
        queued.wait(WAIT),
        Err(ClientError::Closed(CloseReason::ReconnectGaveUp))
    ));
    assert!(wait_until(WAIT, || ev.closes.lock().unwrap().len() == 2));
    let closes = ev.closes.lock().unwrap().clone();
    assert!(closes[0].reconnecting && !closes[1].reconnecting);
    assert!(proxy.connections() >= 1);
}

#[test]
fn a_session_taken_over_by_the_same_client_id_closes_the_first_connection() {
    // [MQTT-3.1.4-3]: the server disconnects the existing client (mosquitto
    // 2.0.11 closes the socket; later versions send DISCONNECT 0x8E).
    let broker = Mosquitto::start();
    let ctx = ctx();
    let o = ConnectOptions::new("127.0.0.1", broker.port)
        .protocol(ProtocolVersion::V5)
        .client_id("twin");
    let first = Conn::connect_blocking(&ctx, o.clone()).unwrap();
    let second = Conn::connect_blocking(&ctx, o).unwrap();
    let reason = first.wait_closed(WAIT).expect("closed");
    assert!(
        matches!(
            &reason,
            CloseReason::PeerClosed
                | CloseReason::ServerDisconnect {
                    reason_code: ReasonCode::SessionTakenOver,
                    ..
                }
        ),
        "{reason}"
    );
    assert!(second.is_connected());
}

#[test]
fn a_server_disconnect_reason_code_is_reported() {
    // MQTT 5 CONNACK success, then DISCONNECT 0x8B Server shutting down.
    let port = client_support::fake_server(&[0x20, 0x03, 0x00, 0x00, 0x00, 0xE0, 0x02, 0x8B, 0x00]);
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", port).protocol(ProtocolVersion::V5),
    )
    .unwrap();
    let reason = conn.wait_closed(WAIT).expect("closed");
    let err = ClientError::Closed(reason);
    assert_eq!(
        err.reason_code(),
        Some(ReasonCode::ServerShuttingDown),
        "{err}"
    );
}

#[test]
fn exiting_the_context_closes_the_connection_and_completes_handles() {
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port);
    let ctx = ctx();
    let conn = Conn::connect_blocking(
        &ctx,
        ConnectOptions::new("127.0.0.1", proxy.port).client_id("ctx-exit"),
    )
    .unwrap();
    proxy.hold();
    let h = conn.try_publish(msg("x", "y", QoS::AtLeastOnce)).unwrap();
    assert!(proxy.wait_sent(|p| !publishes(p).is_empty()));
    ctx.exit();
    assert!(h.wait(WAIT).is_err());
    assert_eq!(conn.close_reason(), Some(CloseReason::ContextExit));
}
