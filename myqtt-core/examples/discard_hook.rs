//! A listener with a hook that discards every message published to one
//! topic (default `secret`), as MyQttD's on_publish handlers do: the
//! publisher's QoS 1/2 flow still completes (MQTT 5 clients see reason
//! 0x10 No matching subscribers), and nothing is routed or retained.
//!
//! ```text
//! cargo run --example discard_hook -- --port 1883 --topic secret
//! mosquitto_sub -p 1883 -t '#' -v &
//! mosquitto_pub -p 1883 -t secret -m hidden -q 1   # not delivered
//! mosquitto_pub -p 1883 -t public -m shown         # delivered
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use myqtt_core::Ctx;
use myqtt_core::broker::BrokerConfig;
use myqtt_core::broker::hooks::{ClientInfo, Hook, Message, PublishVerdict, Reply};

/// Discards messages published to one topic and counts them.
struct DiscardTopic {
    topic: String,
    discarded: AtomicU64,
}

impl Hook for DiscardTopic {
    fn on_publish(&self, client: &Arc<ClientInfo>, msg: &Message) -> Reply<PublishVerdict> {
        if msg.topic.as_str() == self.topic {
            let n = self.discarded.fetch_add(1, Ordering::Relaxed) + 1;
            eprintln!(
                "discarded message {n} from {} on {}",
                client.client_id, msg.topic
            );
            Reply::Ready(PublishVerdict::Discard)
        } else {
            Reply::Ready(PublishVerdict::Ok)
        }
    }
}

fn main() -> ExitCode {
    let mut host = "127.0.0.1".to_string();
    let mut port: u16 = 1883;
    let mut topic = "secret".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next();
        match (a.as_str(), value) {
            ("--host", Some(v)) => host = v,
            ("--port", Some(v)) => {
                if let Ok(p) = v.parse() {
                    port = p;
                } else {
                    eprintln!("invalid port {v:?}");
                    return ExitCode::from(2);
                }
            }
            ("--topic", Some(v)) => topic = v,
            _ => {
                eprintln!("usage: discard_hook [--host HOST] [--port PORT] [--topic TOPIC]");
                return ExitCode::from(2);
            }
        }
    }
    let hook = Arc::new(DiscardTopic {
        topic,
        discarded: AtomicU64::new(0),
    });
    let config = match BrokerConfig::builder().hook(hook).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = match Ctx::builder().broker(config).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match ctx.create_listener(&host, port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr();
    let mut out = std::io::stdout().lock();
    if writeln!(out, "listening on {}:{}", addr.ip(), addr.port())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    ctx.wait_listeners(true);
    ctx.exit();
    ExitCode::SUCCESS
}
