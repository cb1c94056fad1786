//! A listener with a store: what survives a clean restart (sessions,
//! subscriptions, queued messages, retained messages), for redb and (with
//! the `sled` feature) sled; and the `listener` example program's refusal to
//! start on a corrupt store or on a store another process has open.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod storage_util;

use storage_util::temp_dir;

use myqtt_core::broker::BrokerConfig;
use myqtt_core::client::{ConnectOptions, PublishMessage};
use myqtt_core::codec::{ProtocolVersion, QoS};
use myqtt_core::store::{BackendKind, StoreConfig};
use myqtt_core::{Conn, Ctx, CtxError};

const WAIT: Duration = Duration::from_secs(10);

fn ctx_with_store(dir: &Path, backend: BackendKind) -> Ctx {
    Ctx::builder()
        .worker_threads(2)
        .broker(BrokerConfig::builder().build().unwrap())
        .storage(StoreConfig::new(dir).backend(backend))
        .build()
        .unwrap()
}

fn client(ctx: &Ctx, port: u16, id: &str, protocol: ProtocolVersion) -> Conn {
    let mut o = ConnectOptions::new("127.0.0.1", port)
        .client_id(id)
        .protocol(protocol)
        .clean_start(false);
    if protocol == ProtocolVersion::V5 {
        o = o.session_expiry_interval(3600);
    }
    Conn::connect_blocking(ctx, o).unwrap()
}

fn restart_keeps_retained_subscriptions_and_queues(backend: BackendKind, name: &str) {
    let dir = temp_dir(name);
    {
        let ctx = ctx_with_store(&dir, backend);
        let port = ctx
            .create_listener("127.0.0.1", 0)
            .unwrap()
            .local_addr()
            .port();
        // Two persistent subscribers (MQTT 5 with an expiry, 3.1.1 with
        // clean session 0), offline once subscribed.
        for (id, v) in [
            ("sub5", ProtocolVersion::V5),
            ("sub4", ProtocolVersion::V311),
        ] {
            let s = client(&ctx, port, id, v);
            s.subscribe("r/#", QoS::ExactlyOnce).wait(WAIT).unwrap();
            s.close().wait(WAIT).unwrap();
        }
        let p = client(&ctx, port, "pub", ProtocolVersion::V5);
        for i in 0..5 {
            let qos = if i % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            let m = PublishMessage::new("r/q", format!("m{i}"))
                .unwrap()
                .qos(qos);
            p.publish_blocking(m, WAIT).unwrap().wait(WAIT).unwrap();
        }
        let m = PublishMessage::new("r/kept", "retained")
            .unwrap()
            .qos(QoS::AtLeastOnce)
            .retain(true);
        p.publish_blocking(m, WAIT).unwrap().wait(WAIT).unwrap();
        p.close().wait(WAIT).unwrap();
        assert_eq!(ctx.broker().retained_count(), 1);
        ctx.exit();
    }
    // A new process (context) on the same store.
    let ctx = ctx_with_store(&dir, backend);
    assert_eq!(
        ctx.broker().retained_count(),
        1,
        "the retained message is back"
    );
    assert_eq!(
        ctx.broker().subscription_count(),
        2,
        "both subscriptions are back"
    );
    let port = ctx
        .create_listener("127.0.0.1", 0)
        .unwrap()
        .local_addr()
        .port();
    for (id, v) in [
        ("sub5", ProtocolVersion::V5),
        ("sub4", ProtocolVersion::V311),
    ] {
        let s = client(&ctx, port, id, v);
        // [MQTT-3.2.2-2]: the stored session is present.
        assert!(s.session_present(), "{id}: session present after restart");
        let mut got = Vec::new();
        while got.len() < 6 {
            let m = s.get_next(Some(WAIT)).unwrap().expect("a queued message");
            got.push(String::from_utf8(m.payload().to_vec()).unwrap());
        }
        // The queue in order, then the retained message (queued for the
        // subscription too, as it was published while it existed).
        assert_eq!(got, ["m0", "m1", "m2", "m3", "m4", "retained"], "{id}");
        s.close().wait(WAIT).unwrap();
    }
    // A new subscriber gets the retained message from the store.
    let fresh = Conn::connect_blocking(&ctx, ConnectOptions::new("127.0.0.1", port)).unwrap();
    fresh.subscribe("r/#", QoS::AtLeastOnce).wait(WAIT).unwrap();
    let m = fresh
        .get_next(Some(WAIT))
        .unwrap()
        .expect("the retained message");
    assert_eq!(m.payload().as_ref(), b"retained");
    fresh.close().wait(WAIT).unwrap();
    drop(fresh);
    ctx.exit();
    drop(ctx);
    // Delivered and acknowledged messages are gone from the store: a third
    // start finds the sessions with empty queues.
    let ctx = ctx_with_store(&dir, backend);
    let port = ctx
        .create_listener("127.0.0.1", 0)
        .unwrap()
        .local_addr()
        .port();
    let s = client(&ctx, port, "sub5", ProtocolVersion::V5);
    assert!(s.session_present());
    assert!(
        s.get_next(Some(Duration::from_millis(300)))
            .unwrap()
            .is_none(),
        "an acknowledged message is not delivered again"
    );
    drop(s);
    ctx.exit();
    drop(ctx);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn redb_restart_keeps_retained_subscriptions_and_queued_messages() {
    restart_keeps_retained_subscriptions_and_queues(BackendKind::Redb, "restart-redb");
}

#[cfg(feature = "sled")]
#[test]
fn sled_restart_keeps_retained_subscriptions_and_queued_messages() {
    restart_keeps_retained_subscriptions_and_queues(BackendKind::Sled, "restart-sled");
}

#[test]
fn a_locked_store_stops_a_second_context_with_a_clear_error() {
    let dir = temp_dir("ctx-locked");
    let first = ctx_with_store(&dir, BackendKind::Redb);
    let err = Ctx::builder()
        .storage(StoreConfig::new(&dir))
        .build()
        .unwrap_err();
    assert!(matches!(err, CtxError::Store(_)), "{err}");
    assert!(err.to_string().contains("already open"), "{err}");
    first.exit();
    let _ = std::fs::remove_dir_all(&dir);
}

fn listener_program(dir: &Path) -> Command {
    let mut c = Command::new(storage_util::listener_program());
    c.arg("--storage").arg(dir).args(["--port", "0"]);
    c
}

#[test]
fn the_listener_program_refuses_a_corrupt_store_and_leaves_it_untouched() {
    let dir = temp_dir("listener-corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("store.redb");
    std::fs::write(&file, b"this is not a database").unwrap();
    let out = listener_program(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt"), "{err}");
    assert!(err.contains("left untouched"), "{err}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"this is not a database",
        "a corrupt store is never wiped"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_listener_program_refuses_a_store_another_process_has_open() {
    let dir = temp_dir("listener-locked");
    let mut first = listener_program(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on "), "{line:?}");
    let out = listener_program(&dir).output().unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already open") && err.contains(&format!("process {}", first.id())),
        "{err}"
    );
    // Once the first process is gone (killed), the store opens again.
    let mut again = listener_program(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(again.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    again.kill().unwrap();
    again.wait().unwrap();
    assert!(line.starts_with("listening on "), "{line:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exiting_a_context_releases_its_store_while_handles_to_it_live_on() {
    // A client connection made through the context keeps the context (and
    // its broker) alive; exit() still closes the store, so a new context
    // opens the same folder at once, with what was committed.
    let dir = temp_dir("release");
    let ctx = ctx_with_store(&dir, BackendKind::Redb);
    let port = ctx
        .create_listener("127.0.0.1", 0)
        .unwrap()
        .local_addr()
        .port();
    let c = client(&ctx, port, "keeper", ProtocolVersion::V5);
    let m = PublishMessage::new("kept/r", "v")
        .unwrap()
        .qos(QoS::AtLeastOnce)
        .retain(true);
    c.publish_blocking(m, WAIT).unwrap().wait(WAIT).unwrap();
    let alive = ctx.clone();
    ctx.exit();
    let again = ctx_with_store(&dir, BackendKind::Redb);
    assert_eq!(again.broker().retained_count(), 1);
    again.exit();
    drop((c, alive, ctx));
    let _ = std::fs::remove_dir_all(&dir);
}
