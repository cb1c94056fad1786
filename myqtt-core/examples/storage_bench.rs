//! QoS 1, one publisher to one subscriber, 64-byte payloads, through a
//! listener with or without a store: messages/s, and with a store the
//! fsyncs/s and messages per fsync of its group commit.
//!
//! ```text
//! cargo run --release --example storage_bench -- [--storage DIR [--backend redb|sled] [--hash-size N]] [--count N] [--window N]
//! ```
//!
//! `--hash-size` sets the backend's page cache (N × 4 KiB; default 8192
//! pages, 32 MiB).
//!
//! `--window` is how many QoS 1 messages the publisher keeps in flight
//! (default 4000): with a store, about half of them share each fsync.
//!
//! Both clients use persistent sessions (the subscriber's messages are
//! written to the store, queued, moved to in-flight and removed after its
//! PUBACK; the publisher's PUBACK waits for the commit).

#![allow(clippy::cast_precision_loss)] // rates, for display only

use std::time::{Duration, Instant};

use myqtt_core::client::{ConnectOptions, PublishMessage};
use myqtt_core::codec::{ProtocolVersion, QoS};
use myqtt_core::store::{BackendKind, StoreConfig};
use myqtt_core::{Conn, Ctx};

const WAIT: Duration = Duration::from_secs(60);
/// QoS 1 messages the publisher keeps in flight, by default.
const WINDOW: u16 = 4000;

#[allow(clippy::too_many_lines)] // one benchmark run, read top to bottom
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut storage = None;
    let mut backend = BackendKind::Redb;
    let mut count = 50_000_u64;
    let mut window = WINDOW;
    let mut hash_size = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--storage" => storage = args.next(),
            "--backend" => {
                backend = match args.next().as_deref() {
                    Some("sled") => BackendKind::Sled,
                    _ => BackendKind::Redb,
                }
            }
            "--count" => count = args.next().and_then(|c| c.parse().ok()).unwrap_or(count),
            "--window" => window = args.next().and_then(|c| c.parse().ok()).unwrap_or(window),
            "--hash-size" => hash_size = args.next().and_then(|c| c.parse().ok()),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    // The publisher is never slowed down by the subscriber: the queue
    // holds everything in flight between them.
    let config = myqtt_core::broker::BrokerConfig::builder()
        .max_queued_messages(1_000_000)
        .build()?;
    let mut b = Ctx::builder().broker(config);
    if let Some(dir) = &storage {
        let _ = std::fs::remove_dir_all(dir);
        let mut store = StoreConfig::new(dir).backend(backend);
        if let Some(n) = hash_size {
            store = store.hash_size(n);
        }
        b = b.storage(store);
    }
    let ctx = b.build()?;
    let port = ctx.create_listener("127.0.0.1", 0)?.local_addr().port();
    let opts = |id: &str| {
        ConnectOptions::new("127.0.0.1", port)
            .client_id(id)
            .protocol(ProtocolVersion::V5)
            .clean_start(false)
            .session_expiry_interval(600)
            .max_inflight(window)
            .receive_queue_limit(usize::from(window).max(10_000))
            .send_queue_limit(usize::from(window).max(10_000))
    };
    let sub = Conn::connect_blocking(&ctx, opts("bench-sub"))?;
    sub.subscribe("bench/t", QoS::AtLeastOnce).wait(WAIT)?;
    let publ = Conn::connect_blocking(&ctx, opts("bench-pub"))?;
    let payload = bytes::Bytes::from(vec![b'x'; 64]);
    let before = ctx.broker().store_stats();
    let cpu_before = cpu_ms();
    let start = Instant::now();
    let receiver = std::thread::spawn(move || {
        let mut n = 0;
        while n < count {
            match sub.get_next(Some(WAIT)) {
                Ok(Some(_)) => n += 1,
                _ => break,
            }
        }
        n
    });
    let mut handles = std::collections::VecDeque::new();
    for _ in 0..count {
        let m = PublishMessage::new("bench/t", payload.clone())?.qos(QoS::AtLeastOnce);
        handles.push_back(publ.publish_blocking(m, WAIT)?);
        if handles.len() >= usize::from(window)
            && let Some(h) = handles.pop_front()
        {
            h.wait(WAIT)?;
        }
    }
    for h in handles {
        h.wait(WAIT)?;
    }
    let got = receiver.join().map_err(|_| "receiver panicked")?;
    let secs = start.elapsed().as_secs_f64();
    let cpu_after = cpu_ms();
    let rate = got as f64 / secs;
    let label = match (&storage, backend) {
        (None, _) => "memory",
        (Some(_), BackendKind::Redb) => "redb",
        (Some(_), BackendKind::Sled) => "sled",
    };
    print!("{label} (window {window}): {got} messages in {secs:.2} s: {rate:.0} messages/s");
    if let (Some(a), Some(b)) = (before, ctx.broker().store_stats()) {
        let fsyncs = b.fsyncs - a.fsyncs;
        print!(
            ", {:.0} fsyncs/s, {:.1} messages per fsync, {:.2} key writes per message ({} submissions in {} commits)",
            fsyncs as f64 / secs,
            got as f64 / fsyncs.max(1) as f64,
            (b.writes - a.writes) as f64 / got.max(1) as f64,
            b.submissions - a.submissions,
            b.batches - a.batches
        );
    }
    // CPU time is steadier than wall-clock rates on a shared machine.
    if let (Some((all0, s0, c0)), Some((all1, s1, c1))) = (cpu_before, cpu_after) {
        let per = |ms: u64| ms as f64 * 1000.0 / got.max(1) as f64;
        print!(
            "; CPU {:.1} us/message (store writer threads {:.1}: staging {:.1}, committing {:.1})",
            per(all1 - all0),
            per(s1 + c1 - s0 - c0),
            per(s1 - s0),
            per(c1 - c0)
        );
    }
    println!();
    ctx.exit();
    if let Some(dir) = &storage {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// CPU time (user + system, ms) of the whole process and of the store
/// writer's two threads (staging, committing), from `/proc` (Linux only).
fn cpu_ms() -> Option<(u64, u64, u64)> {
    // Clock ticks per second: 100 on Linux.
    let ticks = |stat: &str| -> Option<u64> {
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = f.get(11)?.parse().ok()?;
        let stime: u64 = f.get(12)?.parse().ok()?;
        Some((utime + stime) * 10)
    };
    let all = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let (mut staging, mut committing) = (0, 0);
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let cpu = || {
            std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|s| ticks(&s))
                .unwrap_or(0)
        };
        if comm.starts_with("myqtt-store") {
            staging += cpu();
        } else if comm.starts_with("myqtt-commit") {
            committing += cpu();
        }
    }
    Some((all, staging, committing))
}
