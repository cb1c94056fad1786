//! Interoperability with real peers: the Debian `mosquitto_pub` and
//! `mosquitto_sub` clients against the myqtt listener at MQTT 3.1, 3.1.1
//! and 5.0, at QoS 0/1/2, with retained messages and wills. The tools must
//! be installed (package mosquitto-clients); the tests fail if they are not.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use myqtt_core::Ctx;

const WAIT: Duration = Duration::from_secs(10);

fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    c.stdin(Stdio::null());
    c
}

/// A child process that is killed (by its own pid) if the test fails
/// before it exits.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn(mut c: Command, name: &str) -> Spawned {
    Spawned(
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {name} ({e}): install the Debian package mosquitto-clients")
            }),
    )
}

fn run(mut c: Command, name: &str) -> Output {
    let out = c.output().unwrap_or_else(|e| {
        panic!("cannot run {name} ({e}): install the Debian package mosquitto-clients")
    });
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits for `cond`, polling; panics after [`WAIT`].
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a child to exit and returns its stdout; kills it (by its own
/// pid) after [`WAIT`].
fn finish(mut spawned: Spawned, name: &str) -> String {
    let child = &mut spawned.0;
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut out = String::new();
            child
                .stdout
                .take()
                .expect("stdout")
                .read_to_string(&mut out)
                .expect("read");
            let mut err = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err)
                .expect("read");
            assert!(status.success(), "{name} failed: {err}");
            return out;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True once a client with this id is connected with a subscription.
fn subscribed(ctx: &Ctx, client_id: &str) -> bool {
    ctx.broker()
        .clients()
        .iter()
        .any(|c| c.info.client_id == client_id && !c.subscriptions.is_empty())
}

#[test]
fn mosquitto_clients_publish_and_subscribe_at_every_protocol_level_and_qos() {
    let ctx = Ctx::new().unwrap();
    let port = ctx
        .create_listener("127.0.0.1", 0)
        .unwrap()
        .port()
        .to_string();
    for version in ["31", "311", "5"] {
        for qos in ["0", "1", "2"] {
            let topic = format!("interop/{version}/{qos}");
            let id = format!("sub-{version}-{qos}");
            let mut sub = tool("mosquitto_sub");
            sub.args([
                "-V", version, "-p", &port, "-q", qos, "-t", &topic, "-C", "2", "-v",
            ])
            .args(["-i", &id]);
            let sub = spawn(sub, "mosquitto_sub");
            eventually("the subscription", || subscribed(&ctx, &id));
            // One publisher at the subscriber's level, one at another.
            let other = if version == "5" { "311" } else { "5" };
            for pv in [version, other] {
                let mut publisher = tool("mosquitto_pub");
                publisher.args([
                    "-V",
                    pv,
                    "-p",
                    &port,
                    "-q",
                    qos,
                    "-t",
                    &topic,
                    "-m",
                    &format!("hello from {pv}"),
                ]);
                run(publisher, "mosquitto_pub");
            }
            let out = finish(sub, "mosquitto_sub");
            assert_eq!(
                out.lines().collect::<Vec<_>>(),
                [
                    format!("{topic} hello from {version}"),
                    format!("{topic} hello from {other}")
                ],
                "MQTT {version} QoS {qos}"
            );
        }
    }
    ctx.exit();
}

#[test]
fn mosquitto_clients_see_retained_messages_and_wills() {
    let ctx = Ctx::new().unwrap();
    let port = ctx
        .create_listener("127.0.0.1", 0)
        .unwrap()
        .port()
        .to_string();
    for version in ["31", "311", "5"] {
        // Retained: published first, received by a later subscriber.
        let topic = format!("retained/{version}");
        let mut publisher = tool("mosquitto_pub");
        publisher.args([
            "-V", version, "-p", &port, "-q", "1", "-r", "-t", &topic, "-m", "kept",
        ]);
        run(publisher, "mosquitto_pub");
        let mut sub = tool("mosquitto_sub");
        sub.args(["-V", version, "-p", &port, "-t", &topic, "-C", "1", "-v"]);
        let out = finish(spawn(sub, "mosquitto_sub"), "mosquitto_sub");
        assert_eq!(out.trim(), format!("{topic} kept"), "MQTT {version}");

        // Will: a subscriber with a will is killed; another receives it.
        let will_topic = format!("will/{version}");
        let mut watcher = tool("mosquitto_sub");
        watcher.args([
            "-V",
            version,
            "-p",
            &port,
            "-q",
            "1",
            "-t",
            &will_topic,
            "-C",
            "1",
            "-v",
            "-i",
            "watcher",
        ]);
        let watcher = spawn(watcher, "mosquitto_sub");
        let mut doomed = tool("mosquitto_sub");
        doomed.args([
            "-V",
            version,
            "-p",
            &port,
            "-t",
            "nothing",
            "--will-topic",
            &will_topic,
            "--will-payload",
            "died",
            "--will-qos",
            "1",
            "-i",
            "doomed",
            "-i",
            "doomed",
        ]);
        let mut doomed = spawn(doomed, "mosquitto_sub");
        eventually("both subscriptions", || {
            subscribed(&ctx, "watcher") && subscribed(&ctx, "doomed")
        });
        doomed.0.kill().expect("kill the client we started"); // no DISCONNECT
        let _ = doomed.0.wait();
        let out = finish(watcher, "mosquitto_sub");
        assert_eq!(out.trim(), format!("{will_topic} died"), "MQTT {version}");
    }
    ctx.exit();
}
