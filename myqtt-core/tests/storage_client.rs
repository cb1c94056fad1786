//! A client program with a store (MyQtt's `offline_pub`): it publishes
//! QoS 1 messages while the broker is down, is killed with SIGKILL, starts
//! again with the same store and client id, and the messages arrive.
//!
//! The client program is this test binary run again with
//! `MYQTT_CLIENT_CHILD` set; the broker is the `listener` example with a
//! store of its own (so the subscriber's offline session survives it).

mod storage_util;

use storage_util::temp_dir;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use myqtt_core::client::{ConnectOptions, PublishMessage, ReconnectOptions};
use myqtt_core::codec::{ProtocolVersion, QoS};
use myqtt_core::store::{Side, StoreConfig};
use myqtt_core::{Conn, Ctx};

const WAIT: Duration = Duration::from_secs(10);
const CHILD: &str = "MYQTT_CLIENT_CHILD";
const MESSAGES: usize = 5;

fn options(port: u16, id: &str) -> ConnectOptions {
    ConnectOptions::new("127.0.0.1", port)
        .client_id(id)
        .protocol(ProtocolVersion::V5)
        .clean_start(false)
        .session_expiry_interval(3600)
        .reconnect(
            ReconnectOptions::default()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(100)),
        )
}

/// The client program: `MYQTT_CLIENT_CHILD=port:store-dir`. It connects,
/// then on "publish" from stdin publishes while the broker is down and
/// says "queued"; started again it resumes and says "resumed" once its
/// store is empty.
fn child(spec: &str) {
    let (port, dir) = spec.split_once(':').unwrap();
    let port: u16 = port.parse().unwrap();
    let store = StoreConfig::new(dir).open().unwrap();
    let ctx = Ctx::new().unwrap();
    let key = myqtt_core::store::SessionKey::client("offline-pub");
    let resuming = store.queue_len(&key).0 > 0;
    let conn =
        Conn::connect_blocking(&ctx, options(port, "offline-pub").store(store.clone())).unwrap();
    let mut out = std::io::stdout();
    if resuming {
        // Wait until every resumed message was acknowledged and removed.
        while store.queue_len(&key).0 > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        writeln!(out, "resumed").unwrap();
        out.flush().unwrap();
        conn.close().wait(WAIT).ok();
        return;
    }
    writeln!(out, "connected").unwrap();
    out.flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    for i in 0..MESSAGES {
        let m = PublishMessage::new("offline/t", format!("m{i}"))
            .unwrap()
            .qos(QoS::AtLeastOnce);
        // Returns once the message is in the store.
        conn.publish_blocking(m, WAIT).unwrap();
    }
    assert_eq!(store.load(Side::Client).unwrap().sessions.len(), 1);
    writeln!(out, "queued").unwrap();
    out.flush().unwrap();
    // Killed by the test from here on.
    std::io::stdin().read_line(&mut line).ok();
}

fn spawn_child(port: u16, dir: &Path) -> (Child, ChildStdin, BufReader<ChildStdout>) {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_restarted_client_program_resumes_its_offline_publishes",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{port}:{}", dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = c.stdin.take().unwrap();
    let stdout = BufReader::new(c.stdout.take().unwrap());
    (c, stdin, stdout)
}

/// Reads the child's stdout until a line equal to `want`.
fn expect_line(out: &mut BufReader<ChildStdout>, want: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "the client program ended before saying {want:?}");
        // The test harness may have started the line ("test ... ").
        if line.trim_end().ends_with(want) {
            return;
        }
    }
}

fn start_listener(dir: &Path, port: u16) -> (Child, u16) {
    let mut child = Command::new(storage_util::listener_program())
        .arg("--storage")
        .arg(dir)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no listening line: {line:?}"));
    (child, port)
}

#[test]
fn a_restarted_client_program_resumes_its_offline_publishes() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let broker_dir = temp_dir("client-resume-broker");
    let client_dir = temp_dir("client-resume-client");
    let (mut broker, port) = start_listener(&broker_dir, 0);
    let ctx = Ctx::new().unwrap();
    // A persistent subscriber, offline from now on.
    let sub = Conn::connect_blocking(&ctx, options(port, "offline-sub")).unwrap();
    sub.subscribe("offline/#", QoS::AtLeastOnce)
        .wait(WAIT)
        .unwrap();
    sub.close().wait(WAIT).unwrap();

    let (mut c1, mut c1_in, mut c1_out) = spawn_child(port, &client_dir);
    expect_line(&mut c1_out, "connected");
    // The broker goes down; the client publishes into its store.
    broker.kill().unwrap();
    broker.wait().unwrap();
    writeln!(c1_in, "publish").unwrap();
    expect_line(&mut c1_out, "queued");
    c1.kill().unwrap(); // SIGKILL: nothing but the store remains
    c1.wait().unwrap();

    let (mut broker, port) = start_listener(&broker_dir, port);
    let (mut c2, _c2_in, mut c2_out) = spawn_child(port, &client_dir);
    expect_line(&mut c2_out, "resumed");
    c2.wait().unwrap();

    let sub = Conn::connect_blocking(&ctx, options(port, "offline-sub")).unwrap();
    let mut got = Vec::new();
    while got.len() < MESSAGES {
        let m = sub
            .get_next(Some(WAIT))
            .unwrap()
            .expect("a message published while the broker was down");
        got.push(String::from_utf8(m.payload().to_vec()).unwrap());
    }
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
    sub.close().wait(WAIT).unwrap();
    broker.kill().unwrap();
    broker.wait().unwrap();
    let _ = std::fs::remove_dir_all(&broker_dir);
    let _ = std::fs::remove_dir_all(&client_dir);
}
