//! The README's first command: a myqtt listener embedded in this process,
//! plus a client talking to it.
//!
//! It starts a listener on `--host`/`--port` (default 127.0.0.1:1883),
//! connects a client to it, subscribes, publishes one message at each QoS
//! and a retained welcome message, prints what comes back, then keeps the
//! listener running until Ctrl-C so other clients can use it:
//!
//! ```text
//! cargo run --release -p myqtt-core --example demo
//! mosquitto_sub -h 127.0.0.1 -p 1883 -t 'myqtt/#' -v     # in another terminal
//! ```
//!
//! `--storage PATH` keeps sessions, queued and retained messages in a store
//! on disk (redb): run it twice and the retained welcome message of the
//! first run comes back from the store. `--once` exits after the exchange
//! (used by the test suite).

use std::process::ExitCode;
use std::time::Duration;

use myqtt_core::Ctx;
use myqtt_core::client::{Conn, ConnectOptions, PublishMessage};
use myqtt_core::codec::QoS;
use myqtt_core::store::StoreConfig;

const WAIT: Duration = Duration::from_secs(10);

struct Args {
    host: String,
    port: u16,
    once: bool,
    storage: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        host: "127.0.0.1".into(),
        port: 1883,
        once: false,
        storage: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--host" => args.host = it.next().ok_or("--host needs a value")?,
            "--port" => {
                let v = it.next().ok_or("--port needs a value")?;
                args.port = v.parse().map_err(|e| format!("--port {v}: {e}"))?;
            }
            "--once" => args.once = true,
            "--storage" => args.storage = Some(it.next().ok_or("--storage needs a value")?),
            "-h" | "--help" => {
                return Err(
                    "usage: demo [--host HOST] [--port PORT] [--storage PATH] [--once]".into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Subscribes, publishes at QoS 0, 1 and 2 and a retained message, and
/// prints each message as it comes back through the listener.
fn exchange(ctx: &Ctx, host: &str, port: u16) -> Result<(), String> {
    let opts = ConnectOptions::new(host, port).client_id("myqtt-demo");
    let conn = Conn::connect_blocking(ctx, opts).map_err(|e| format!("connect: {e}"))?;
    let granted = conn
        .subscribe("myqtt/demo/#", QoS::ExactlyOnce)
        .wait(WAIT)
        .map_err(|e| format!("subscribe: {e}"))?;
    println!(
        "client: subscribed to myqtt/demo/# (granted {:?})",
        granted.granted_qos()
    );
    let mut sent = Vec::new();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("myqtt/demo/qos{}", qos.as_u8());
        let msg = PublishMessage::new(&topic, format!("hello at QoS {}", qos.as_u8()))
            .map_err(|e| e.to_string())?
            .qos(qos);
        conn.publish_blocking(msg, WAIT)
            .and_then(|h| h.wait(WAIT))
            .map_err(|e| format!("publish at QoS {}: {e}", qos.as_u8()))?;
        sent.push(topic);
    }
    let welcome = PublishMessage::new("myqtt/demo/welcome", "retained: new subscribers get this")
        .map_err(|e| e.to_string())?
        .qos(QoS::AtLeastOnce)
        .retain(true);
    conn.publish_blocking(welcome, WAIT)
        .and_then(|h| h.wait(WAIT))
        .map_err(|e| format!("retained publish: {e}"))?;
    sent.push("myqtt/demo/welcome".into());
    // Each sent message comes back once; a retained welcome kept in the
    // store by an earlier run may come first.
    let mut missing = sent;
    while !missing.is_empty() {
        let m = conn
            .get_next(Some(WAIT))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("nothing came back for {}", missing.join(", ")))?;
        let topic = m.topic().as_str();
        let note = if m.retain() {
            " [retained, from the store]"
        } else {
            ""
        };
        println!(
            "client: received {topic} (QoS {}): {}{note}",
            m.qos().as_u8(),
            String::from_utf8_lossy(m.payload())
        );
        if !m.retain() {
            missing.retain(|t| t != topic);
        }
    }
    conn.close().wait(WAIT).map_err(|e| format!("close: {e}"))?;
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = Ctx::builder();
    if let Some(path) = &args.storage {
        builder = builder.storage(StoreConfig::new(path));
    }
    let ctx = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match ctx.create_listener(&args.host, args.port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}:{}: {e}", args.host, args.port);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr();
    println!("listener: listening on {}:{}", addr.ip(), addr.port());
    if let Err(e) = exchange(&ctx, &addr.ip().to_string(), addr.port()) {
        eprintln!("demo failed: {e}");
        return ExitCode::FAILURE;
    }
    println!("demo: all messages made the round trip");
    if args.once {
        ctx.exit();
        return ExitCode::SUCCESS;
    }
    println!(
        "listener: still running; try `mosquitto_sub -h {} -p {} -t 'myqtt/#' -v` (Ctrl-C stops)",
        addr.ip(),
        addr.port()
    );
    let outcome = ctx.wait_listeners(true);
    println!("listener: stopping ({outcome:?})");
    ctx.exit();
    ExitCode::SUCCESS
}
