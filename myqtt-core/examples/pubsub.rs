//! Connects to an MQTT broker, subscribes, publishes one message at each
//! QoS and prints what comes back. Exits 0 when all three came back.
//!
//! ```text
//! cargo run --example pubsub -- --host 127.0.0.1 --port 1883 [--mqtt5]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use myqtt_core::Ctx;
use myqtt_core::client::{Conn, ConnectOptions, PublishMessage};
use myqtt_core::codec::{ProtocolVersion, QoS};

const WAIT: Duration = Duration::from_secs(10);

struct Args {
    host: String,
    port: u16,
    protocol: ProtocolVersion,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        host: "127.0.0.1".into(),
        port: 1883,
        protocol: ProtocolVersion::V311,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--host" => args.host = it.next().ok_or("--host needs a value")?,
            "--port" => {
                let v = it.next().ok_or("--port needs a value")?;
                args.port = v.parse().map_err(|e| format!("--port {v}: {e}"))?;
            }
            "--mqtt5" => args.protocol = ProtocolVersion::V5,
            "-h" | "--help" => {
                return Err("usage: pubsub [--host HOST] [--port PORT] [--mqtt5]".into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = Ctx::new()?;
    let opts = ConnectOptions::new(args.host.clone(), args.port)
        .protocol(args.protocol)
        .client_id(format!("myqtt-pubsub-{}", std::process::id()));
    let conn = Conn::connect_blocking(&ctx, opts)?;
    println!(
        "connected to {}:{} ({:?})",
        args.host, args.port, args.protocol
    );
    let topic = format!("myqtt/pubsub/{}", std::process::id());
    let sub = conn
        .subscribe(&format!("{topic}/#"), QoS::ExactlyOnce)
        .wait(WAIT)?;
    println!("subscribed to {topic}/#: granted {:?}", sub.granted_qos());
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let msg = PublishMessage::new(
            &format!("{topic}/{}", qos.as_u8()),
            format!("hello at QoS {}", qos.as_u8()),
        )?
        .qos(qos);
        let outcome = conn.publish_blocking(msg, WAIT)?.wait(WAIT)?;
        println!(
            "published at QoS {} (packet id {:?}): {:?}",
            qos.as_u8(),
            outcome.packet_id.map(myqtt_core::codec::PacketId::get),
            outcome.reason_code
        );
        let m = conn
            .get_next(Some(WAIT))?
            .ok_or("no message came back in time")?;
        println!(
            "received {} at QoS {}: {}",
            m.topic(),
            m.qos().as_u8(),
            String::from_utf8_lossy(m.payload())
        );
    }
    let rtt = conn.ping().wait(WAIT)?;
    println!("ping round trip: {rtt:?}");
    conn.close().wait(WAIT)?;
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
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
