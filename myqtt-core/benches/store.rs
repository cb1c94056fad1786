//! Store throughput through the group-commit writer: each message of 64
//! bytes is enqueued (one commit, as a listener does before acknowledging a
//! QoS 1 PUBLISH) and then dequeued (one commit, as after the subscriber's
//! PUBACK), by many concurrent producers on a tokio runtime.
//!
//! Prints messages/s, fsyncs/s and messages per fsync for memory, redb and
//! (with `--features sled`) sled, at several producer counts.
//!
//! `cargo bench -p myqtt-core --bench store [--features sled]`;
//! `MYQTT_BENCH_MESSAGES` sets the messages per run (default 20000).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use myqtt_core::codec::{Publish, PublishProps, QoS};
use myqtt_core::store::{
    Batch, MemoryStore, OpOutcome, SessionKey, Store, StoreConfig, StoreWriter, StoredMessage,
    Timestamp,
};
use myqtt_core::topic::TopicName;

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self(std::env::temp_dir().join(format!("myqtt-bench-{tag}-{}-{nanos}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    messages: u64,
    elapsed: Duration,
    fsyncs: u64,
    batches: u64,
}

fn run(store: Arc<dyn Store>, producers: usize, messages: usize) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let writer = Arc::new(StoreWriter::spawn(store).expect("writer"));
    let topic = TopicName::new("bench/store").expect("topic");
    let payload = Bytes::from(vec![0x5A; 64]);
    let per_producer = messages / producers;
    let fsyncs_before = writer.stats().fsyncs;
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..producers)
            .map(|p| {
                let writer = Arc::clone(&writer);
                let topic = topic.clone();
                let payload = payload.clone();
                tokio::spawn(async move {
                    let key = SessionKey::broker(format!("sub-{p}"));
                    for _ in 0..per_producer {
                        let publish = Publish {
                            dup: false,
                            qos: QoS::AtLeastOnce,
                            retain: false,
                            topic: topic.clone(),
                            packet_id: None,
                            properties: PublishProps::new(),
                            payload: payload.clone(),
                        };
                        let id = writer.new_message_id();
                        let mut b = Batch::new();
                        b.put_message(id, StoredMessage::new(publish, Timestamp::now()))
                            .enqueue(key.clone(), id);
                        let out = writer.commit(b).await.expect("enqueue commit");
                        let OpOutcome::Enqueued { seq, .. } = out[1] else {
                            panic!("refused: {out:?}");
                        };
                        let mut b = Batch::new();
                        b.dequeue(key.clone(), seq);
                        writer.commit(b).await.expect("dequeue commit");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("producer");
        }
    });
    let elapsed = start.elapsed();
    let stats = writer.stats();
    Run {
        messages: (per_producer * producers) as u64,
        elapsed,
        fsyncs: stats.fsyncs - fsyncs_before,
        batches: stats.batches,
    }
}

fn report(backend: &str, producers: usize, r: &Run) {
    let secs = r.elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let (messages, fsyncs, batches) = (r.messages as f64, r.fsyncs as f64, r.batches as f64);
    let per_fsync = if r.fsyncs == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}", messages / fsyncs)
    };
    println!(
        "{backend:<6} producers {producers:>4}: {:>9.0} msg/s  {:>7.0} fsyncs/s  {per_fsync:>6} msg/fsync  {:>6.1} submissions/batch ({} batches)",
        messages / secs,
        fsyncs / secs,
        2.0 * messages / batches,
        r.batches,
    );
}

fn main() {
    let messages: usize = std::env::var("MYQTT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    println!(
        "enqueue + dequeue of {messages} messages of 64 B, each a separate commit through the group-commit writer"
    );
    let mut backends: Vec<&str> = vec!["memory", "redb"];
    if cfg!(feature = "sled") {
        backends.push("sled");
    }
    for backend in backends {
        for producers in [1, 16, 256] {
            // Fewer messages for the one-producer run: one fsync each.
            let n = if producers == 1 {
                messages / 20
            } else {
                messages
            };
            let scratch = Scratch::new(backend);
            let store: Arc<dyn Store> = match backend {
                "memory" => Arc::new(MemoryStore::new()),
                "redb" => StoreConfig::new(&scratch.0).open().expect("redb"),
                _ => StoreConfig::new(&scratch.0)
                    .backend(myqtt_core::store::BackendKind::Sled)
                    .open()
                    .expect("sled"),
            };
            let r = run(store, producers, n);
            report(backend, producers, &r);
        }
    }
}
