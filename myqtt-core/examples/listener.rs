//! A standalone MQTT listener (broker) on `--host` (default 127.0.0.1) and
//! `--port` (default 1883; 0 picks a free port). It prints one line,
//! `listening on HOST:PORT`, once bound, and runs until Ctrl-C or SIGTERM.
//! `--max-packet-size BYTES` limits the packets clients may send (MQTT 5:
//! DISCONNECT 0x95 beyond it); the default is the protocol's own limit.
//!
//! `--storage PATH` keeps sessions, subscriptions, queued and in-flight
//! messages, retained messages and wills in a store in folder `PATH`
//! (created if missing), so they survive a restart or a crash;
//! `--backend redb|sled` picks the backend (sled needs the `sled` cargo
//! feature) and `--hash-size N` is PyMyQtt's cache-size hint. A corrupt
//! store, or one another process has open, stops the listener with an
//! error (exit status 1); the store is never wiped.
//!
//! `--max-queued-messages N` (default 1000) is how many messages may wait
//! for one client (offline with a persistent session, or slow); more are
//! dropped and counted.
//!
//! `--sys-interval SECS` (default 10, as mosquitto; 0 turns it off) is how
//! often the listener publishes its figures under `$SYS/broker/`
//! (`mosquitto_sub -t '$SYS/#' -v`).
//!
//! ```text
//! cargo run --example listener -- --port 1883
//! mosquitto_sub -p 1883 -t 'a/#' -v &
//! mosquitto_pub -p 1883 -t a/b -m hello
//! ```

use std::io::Write;
use std::process::ExitCode;

use myqtt_core::broker::BrokerConfig;
use myqtt_core::store::{BackendKind, StoreConfig};
use myqtt_core::{Ctx, WaitOutcome};

struct Args {
    host: String,
    port: u16,
    storage: Option<String>,
    backend: BackendKind,
    hash_size: u32,
    max_packet_size: u32,
    max_queued_messages: usize,
    sys_interval: u64,
}

fn usage() -> &'static str {
    "usage: listener [--host HOST] [--port PORT] [--max-packet-size BYTES] [--max-queued-messages N] [--sys-interval SECS] [--storage PATH [--backend redb|sled] [--hash-size N]]"
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        host: "127.0.0.1".into(),
        port: 1883,
        storage: None,
        backend: BackendKind::Redb,
        hash_size: 0,
        max_packet_size: 0,
        max_queued_messages: 1000,
        sys_interval: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--host" => args.host = value("--host")?,
            "--port" => {
                let v = value("--port")?;
                args.port = v.parse().map_err(|_| format!("invalid port {v:?}"))?;
            }
            "--storage" => args.storage = Some(value("--storage")?),
            "--backend" => {
                args.backend = match value("--backend")?.as_str() {
                    "redb" => BackendKind::Redb,
                    "sled" => BackendKind::Sled,
                    other => return Err(format!("unknown backend {other:?} (redb or sled)")),
                };
            }
            "--hash-size" => {
                let v = value("--hash-size")?;
                args.hash_size = v.parse().map_err(|_| format!("invalid hash size {v:?}"))?;
            }
            "--max-packet-size" => {
                let v = value("--max-packet-size")?;
                args.max_packet_size = v
                    .parse()
                    .map_err(|_| format!("invalid packet size {v:?}"))?;
            }
            "--max-queued-messages" => {
                let v = value("--max-queued-messages")?;
                args.max_queued_messages = v
                    .parse()
                    .map_err(|_| format!("invalid message count {v:?}"))?;
            }
            "--sys-interval" => {
                let v = value("--sys-interval")?;
                args.sys_interval = v
                    .parse()
                    .map_err(|_| format!("invalid interval {v:?} (seconds)"))?;
            }
            "-h" | "--help" => return Err(usage().into()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    Ok(args)
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
        builder = builder.storage(
            StoreConfig::new(path)
                .backend(args.backend)
                .hash_size(args.hash_size),
        );
    }
    let config = match BrokerConfig::builder()
        .max_packet_size(args.max_packet_size)
        .max_queued_messages(args.max_queued_messages)
        .sys_interval(std::time::Duration::from_secs(args.sys_interval))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let ctx = match builder.broker(config).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match ctx.create_listener(&args.host, args.port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr();
    let mut out = std::io::stdout().lock();
    // One line, flushed, so scripts can wait for it.
    if writeln!(out, "listening on {}:{}", addr.ip(), addr.port())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    let outcome = ctx.wait_listeners(true);
    if outcome == WaitOutcome::Signal {
        eprintln!("stopping");
    }
    ctx.exit();
    ExitCode::SUCCESS
}
