//! The group-commit writer: many producers, one transaction and one fsync
//! for all the submissions waiting, every completion fired; the next
//! transaction staged while one commits, completed only after its own
//! commit.

mod store_common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Barrier, Mutex};

use myqtt_core::store::{
    Backend, Batch, KvPairs, KvStore, KvWrite, MemoryBackend, MessageId, Op, OpOutcome, Quotas,
    SessionKey, Side, Store, StoreError, StoreWriter, WriterConfig,
};
use store_common::{TempDir, message};

fn enqueue_batch(writer: &StoreWriter, key: &SessionKey, payload: &[u8]) -> Batch {
    let id = writer.new_message_id();
    let mut b = Batch::new();
    b.put_message(id, message("g/c", payload))
        .enqueue(key.clone(), id);
    b
}

/// A store whose first `apply` waits for a signal: lets a test queue many
/// submissions behind one commit, deterministically.
#[derive(Debug)]
struct Gated {
    inner: Arc<dyn Store>,
    gate: Mutex<Option<std_mpsc::Receiver<()>>>,
}

impl Store for Gated {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn new_message_id(&self) -> MessageId {
        self.inner.new_message_id()
    }
    fn apply(&self, ops: &[Op]) -> Result<Vec<OpOutcome>, StoreError> {
        let gate = self.gate.lock().expect("gate").take();
        if let Some(gate) = gate {
            gate.recv().expect("gate opened");
        }
        self.inner.apply(ops)
    }
    fn quotas(&self) -> Quotas {
        self.inner.quotas()
    }
    fn set_quotas(&self, q: Quotas) {
        self.inner.set_quotas(q);
    }
    fn stats(&self) -> myqtt_core::store::StoreStats {
        self.inner.stats()
    }
    fn clients(&self, side: Side) -> Result<Vec<myqtt_core::ByteStr>, StoreError> {
        self.inner.clients(side)
    }
    fn session(
        &self,
        k: &SessionKey,
    ) -> Result<Option<myqtt_core::store::SessionRecord>, StoreError> {
        self.inner.session(k)
    }
    fn sessions(&self, side: Side) -> Result<Vec<myqtt_core::store::SessionRecord>, StoreError> {
        self.inner.sessions(side)
    }
    fn subscriptions(
        &self,
        k: &SessionKey,
    ) -> Result<Vec<myqtt_core::store::SubscriptionRecord>, StoreError> {
        self.inner.subscriptions(k)
    }
    fn inflight(
        &self,
        k: &SessionKey,
    ) -> Result<Vec<myqtt_core::store::InflightRecord>, StoreError> {
        self.inner.inflight(k)
    }
    fn incoming(
        &self,
        k: &SessionKey,
    ) -> Result<Vec<myqtt_core::store::IncomingRecord>, StoreError> {
        self.inner.incoming(k)
    }
    fn queue(&self, k: &SessionKey) -> Result<Vec<myqtt_core::store::QueuedMessage>, StoreError> {
        self.inner.queue(k)
    }
    fn queue_len(&self, k: &SessionKey) -> (u64, u64) {
        self.inner.queue_len(k)
    }
    fn retained(&self) -> Result<Vec<myqtt_core::store::StoredMessage>, StoreError> {
        self.inner.retained()
    }
    fn wills(&self) -> Result<Vec<myqtt_core::store::WillRecord>, StoreError> {
        self.inner.wills()
    }
    fn load(&self, side: Side) -> Result<myqtt_core::store::Loaded, StoreError> {
        self.inner.load(side)
    }
}

#[test]
fn submissions_waiting_behind_a_commit_share_the_next_transaction_and_fsync() {
    const PRODUCERS: usize = 16;
    let dir = TempDir::new("group");
    let inner: Arc<dyn Store> =
        Arc::new(myqtt_core::store::RedbStore::open(dir.path()).expect("open"));
    let (open_gate, gate) = std_mpsc::channel();
    let store = Arc::new(Gated {
        inner,
        gate: Mutex::new(Some(gate)),
    });
    let writer = Arc::new(StoreWriter::spawn(store.clone()).expect("spawn"));
    let fsyncs_before = writer.stats().fsyncs;
    let all_submitted = Arc::new(Barrier::new(PRODUCERS + 1));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|i| {
            let writer = Arc::clone(&writer);
            let all_submitted = Arc::clone(&all_submitted);
            std::thread::spawn(move || {
                let key = SessionKey::broker(format!("p{i}"));
                let commit = writer
                    .submit_blocking(enqueue_batch(&writer, &key, b"m"))
                    .expect("submit");
                all_submitted.wait();
                commit.wait()
            })
        })
        .collect();
    all_submitted.wait();
    open_gate.send(()).expect("open the gate");
    for p in producers {
        let outcomes = p.join().expect("producer").expect("committed");
        assert!(
            matches!(outcomes[1], OpOutcome::Enqueued { .. }),
            "{outcomes:?}"
        );
    }
    let stats = writer.stats();
    assert_eq!(stats.submissions, PRODUCERS as u64);
    assert_eq!(stats.ops, 2 * PRODUCERS as u64);
    // The first transaction took what had arrived before the gate closed it;
    // everything queued behind it went into the next one.
    assert!(stats.batches <= 2, "{stats:?}");
    assert_eq!(stats.fsyncs - fsyncs_before, stats.batches);
    assert_eq!(store.stats().queued, PRODUCERS as u64);
}

#[test]
fn many_concurrent_producers_all_get_their_completion() {
    const THREADS: usize = 8;
    const EACH: usize = 100;
    let dir = TempDir::new("many");
    let store: Arc<dyn Store> =
        Arc::new(myqtt_core::store::RedbStore::open(dir.path()).expect("open"));
    let writer = Arc::new(StoreWriter::spawn(store.clone()).expect("spawn"));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                let key = SessionKey::broker(format!("t{t}"));
                let mut seqs = Vec::new();
                for i in 0..EACH {
                    let out = writer
                        .submit_blocking(enqueue_batch(&writer, &key, &i.to_be_bytes()))
                        .expect("submit")
                        .wait()
                        .expect("commit");
                    let OpOutcome::Enqueued { seq, .. } = out[1] else {
                        panic!("{out:?}")
                    };
                    seqs.push(seq);
                }
                seqs
            })
        })
        .collect();
    for (t, th) in threads.into_iter().enumerate() {
        let seqs = th.join().expect("thread");
        let queued: Vec<u64> = store
            .queue(&SessionKey::broker(format!("t{t}")))
            .expect("read")
            .iter()
            .map(|q| q.seq)
            .collect();
        assert_eq!(
            queued, seqs,
            "each producer's entries are there, in its order"
        );
    }
    let stats = writer.stats();
    assert_eq!(stats.submissions, (THREADS * EACH) as u64);
    assert!(stats.batches <= stats.submissions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_tasks_await_their_commits() {
    let store: Arc<dyn Store> = Arc::new(myqtt_core::store::MemoryStore::new());
    let writer = Arc::new(
        StoreWriter::with_config(
            store.clone(),
            WriterConfig {
                queue_capacity: 8,
                max_batch_ops: 64,
            },
        )
        .expect("spawn"),
    );
    let tasks: Vec<_> = (0..200)
        .map(|i: u32| {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move {
                let key = SessionKey::broker("async");
                writer
                    .commit(enqueue_batch(&writer, &key, &i.to_be_bytes()))
                    .await
            })
        })
        .collect();
    for t in tasks {
        let out = t.await.expect("task").expect("commit");
        assert!(out.iter().all(OpOutcome::is_applied));
    }
    assert_eq!(store.queue_len(&SessionKey::broker("async")).0, 200);
}

#[test]
fn closing_the_writer_completes_what_was_submitted() {
    let store: Arc<dyn Store> = Arc::new(myqtt_core::store::MemoryStore::new());
    let writer = StoreWriter::spawn(store.clone()).expect("spawn");
    let key = SessionKey::broker("close");
    let commits: Vec<_> = (0..50u8)
        .map(|i| {
            writer
                .submit_blocking(enqueue_batch(&writer, &key, &[i]))
                .expect("submit")
        })
        .collect();
    writer.close();
    for c in commits {
        assert!(c.wait().is_ok());
    }
    assert_eq!(store.queue_len(&key).0, 50);
}

#[test]
fn releasing_a_shared_writer_commits_then_drops_the_store_and_refuses_more() {
    let store: Arc<dyn Store> = Arc::new(myqtt_core::store::MemoryStore::new());
    let writer = StoreWriter::spawn(store.clone()).expect("spawn");
    let key = SessionKey::broker("release");
    let commits: Vec<_> = (0..20u8)
        .map(|i| {
            writer
                .submit_blocking(enqueue_batch(&writer, &key, &[i]))
                .expect("submit")
        })
        .collect();
    assert!(writer.release(std::time::Duration::from_secs(10)));
    for c in commits {
        assert!(c.wait().is_ok());
    }
    assert_eq!(store.queue_len(&key).0, 20);
    // The writer thread's reference is gone: only the test's is left.
    assert_eq!(Arc::strong_count(&store), 1);
    assert!(matches!(
        writer
            .submit_blocking(Batch::new())
            .map(myqtt_core::store::Commit::wait),
        Err(StoreError::WriterClosed) | Ok(Err(_))
    ));
}

/// A memory backend that runs `before` ahead of every commit: the commit
/// fails with its error (a full disk), or waits while it blocks.
struct Hooked {
    inner: MemoryBackend,
    before: Box<dyn Fn() -> Result<(), StoreError> + Send + Sync>,
}

impl Hooked {
    fn new(before: impl Fn() -> Result<(), StoreError> + Send + Sync + 'static) -> Self {
        Self {
            inner: MemoryBackend::default(),
            before: Box::new(before),
        }
    }
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooked").finish_non_exhaustive()
    }
}

impl Backend for Hooked {
    fn name(&self) -> &'static str {
        "hooked"
    }
    fn location(&self) -> PathBuf {
        PathBuf::from("<hooked>")
    }
    fn is_durable(&self) -> bool {
        true
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, StoreError> {
        self.inner.scan_prefix(prefix)
    }
    fn commit(&self, writes: Vec<KvWrite>) -> Result<(), StoreError> {
        (self.before)()?;
        self.inner.commit(writes)
    }
}

#[test]
fn a_failed_commit_fails_every_submission_in_it_and_poisons_the_store() {
    let fail = Arc::new(AtomicBool::new(false));
    let backend = Hooked::new({
        let fail = Arc::clone(&fail);
        move || {
            if fail.load(Ordering::SeqCst) {
                return Err(StoreError::Backend {
                    backend: "hooked",
                    message: "disk full".into(),
                });
            }
            Ok(())
        }
    });
    let store: Arc<dyn Store> =
        Arc::new(KvStore::from_backend(backend, Quotas::default()).expect("open"));
    let writer = StoreWriter::spawn(store.clone()).expect("spawn");
    let key = SessionKey::broker("f");
    writer
        .submit_blocking(enqueue_batch(&writer, &key, b"ok"))
        .expect("submit")
        .wait()
        .expect("commit");
    fail.store(true, Ordering::SeqCst);
    let err = writer
        .submit_blocking(enqueue_batch(&writer, &key, b"lost"))
        .expect("submit")
        .wait()
        .expect_err("the commit failed");
    assert!(err.to_string().contains("disk full"), "{err}");
    // The store's indexes may no longer match its disk: it refuses writes.
    fail.store(false, Ordering::SeqCst);
    let err = writer
        .submit_blocking(enqueue_batch(&writer, &key, b"after"))
        .expect("submit")
        .wait()
        .expect_err("poisoned");
    assert!(matches!(err, StoreError::Poisoned(_)), "{err:?}");
    assert_eq!(
        store.queue(&key).expect("read").len(),
        1,
        "only the first entry is stored"
    );
}

#[test]
fn a_submission_staged_while_a_commit_runs_completes_only_after_its_own_commit() {
    use futures_util::FutureExt as _;
    use myqtt_core::codec::PacketId;
    use myqtt_core::store::InflightState;
    let armed = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = std_mpsc::channel();
    let (open, gate) = std_mpsc::channel();
    // Once armed, each commit announces itself on `started` and waits for
    // a signal on `gate`.
    let backend = Hooked::new({
        let armed = Arc::clone(&armed);
        let (started, gate) = (Mutex::new(started_tx), Mutex::new(gate));
        move || {
            if armed.load(Ordering::SeqCst) {
                started
                    .lock()
                    .expect("started")
                    .send(())
                    .expect("test alive");
                gate.lock().expect("gate").recv().expect("gate opened");
            }
            Ok(())
        }
    });
    let store: Arc<dyn Store> =
        Arc::new(KvStore::from_backend(backend, Quotas::default()).expect("open"));
    let writer = StoreWriter::spawn(store.clone()).expect("spawn");
    armed.store(true, Ordering::SeqCst);
    let key = SessionKey::broker("s");
    let id = writer.new_message_id();
    let mut first = Batch::new();
    first
        .put_message(id, message("p/q", b"m"))
        .enqueue(key.clone(), id);
    let c1 = writer.submit_blocking(first).expect("submit");
    // The first transaction is in the backend's commit, not done.
    started.recv().expect("first commit started");
    let ops_before = store.stats().ops;
    // The message moves to the in-flight table: its queue entry (which
    // holds it inline) is read from the transaction being committed.
    let pid = PacketId::new(1).expect("non-zero");
    let mut second = Batch::new();
    second
        .put_inflight(key.clone(), pid, InflightState::AwaitingPubAck, Some(id))
        .push(Op::DequeueMessage {
            key: key.clone(),
            message: id,
        });
    let mut c2 = writer.submit_blocking(second).expect("submit");
    // Staged while the first commit runs (the store counts staged ops)...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.stats().ops < ops_before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "not staged while the first commit ran"
        );
        std::thread::yield_now();
    }
    // ...but not acknowledged: its own commit has not happened.
    assert!((&mut c2).now_or_never().is_none());
    open.send(()).expect("open the first gate");
    let r1 = c1.wait().expect("first committed");
    assert!(matches!(r1[1], OpOutcome::Enqueued { .. }), "{r1:?}");
    started.recv().expect("second commit started");
    assert!(
        (&mut c2).now_or_never().is_none(),
        "completed before its commit"
    );
    open.send(()).expect("open the second gate");
    let r2 = c2.wait().expect("second committed");
    assert_eq!(r2, vec![OpOutcome::Done, OpOutcome::Done]);
    assert_eq!(writer.stats().batches, 2);
    // What both commits left: the message in flight, the queue empty.
    let inflight = store.inflight(&key).expect("read");
    assert_eq!(inflight.len(), 1);
    assert_eq!(
        inflight[0]
            .message
            .as_ref()
            .map(|m| m.publish.payload.to_vec()),
        Some(b"m".to_vec())
    );
    assert!(store.queue(&key).expect("read").is_empty());
    armed.store(false, Ordering::SeqCst);
}
