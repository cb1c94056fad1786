//! [`StoreWriter`]: group commit. One dedicated thread applies the
//! submissions of many producers in one transaction (one fsync) and then
//! completes each producer's [`Commit`].
//!
//! Producers are tokio tasks (`submit(..).await`) or plain threads
//! (`submit_blocking`); the channel between them and the writer is bounded,
//! so a slow disk slows producers down instead of growing memory.
//!
//! The writer is a pipeline of two threads. The *stager* applies each
//! submission as it arrives to the store's open transaction
//! ([`Store::stage`]: indexes, coalescing, encoding) while the *committer*
//! commits the previous transaction ([`Store::commit_sealed`]: the
//! database's commit and its fsync). When the committer is free, the
//! stager seals the open transaction ([`Store::seal`]) and hands it over
//! with its submissions, whose [`Commit`]s complete only once it is
//! committed. The slower the disk, the more submissions each transaction
//! takes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Store;
use super::engine::Sealed;
use super::error::StoreError;
use super::types::{Batch, MessageId, Op, OpOutcome};

type Reply = Result<Vec<OpOutcome>, StoreError>;

struct Request {
    batch: Batch,
    done: oneshot::Sender<Reply>,
    /// Set by [`StoreWriter::release`]: the thread ends after this round,
    /// drops the store and says so here.
    release: Option<std::sync::mpsc::Sender<()>>,
    /// Sent by the committer when it is free: not a submission.
    wake: bool,
}

/// Sizes of the [`StoreWriter`]'s channel and transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// Submissions that may wait for the writer before producers block.
    /// Default 4096; 0 is taken as 1.
    pub queue_capacity: usize,
    /// Operations past which the writer stops adding submissions to a
    /// transaction (one submission is never split). Default 65536; 0 is
    /// taken as 1.
    pub max_batch_ops: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 4096,
            max_batch_ops: 65_536,
        }
    }
}

/// What the writer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions the writer ran (each is at most one commit and one
    /// fsync).
    pub batches: u64,
    /// Submissions completed.
    pub submissions: u64,
    /// Operations applied.
    pub ops: u64,
    /// Durable syncs done by the store (see [`super::StoreStats::fsyncs`]).
    pub fsyncs: u64,
    /// Key writes the store handed to its backend (see
    /// [`super::StoreStats::writes`]).
    pub writes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    submissions: AtomicU64,
    ops: AtomicU64,
}

/// The group-commit writer thread of one store.
///
/// ```
/// use myqtt_core::store::{Batch, MemoryStore, SessionKey, StoreWriter, StoredMessage, Timestamp};
/// use myqtt_core::codec::{Publish, PublishProps, QoS};
/// use myqtt_core::topic::TopicName;
/// use std::sync::Arc;
///
/// let writer = StoreWriter::spawn(Arc::new(MemoryStore::new())).unwrap();
/// let id = writer.new_message_id();
/// let publish = Publish {
///     dup: false, qos: QoS::AtLeastOnce, retain: false,
///     topic: TopicName::new("a/b").unwrap(), packet_id: None,
///     properties: PublishProps::new(), payload: "hi".into(),
/// };
/// let mut batch = Batch::new();
/// batch.put_message(id, StoredMessage::new(publish, Timestamp::now()))
///      .enqueue(SessionKey::broker("sub-1"), id);
/// // From a thread; from tokio: `writer.submit(batch).await?.await?`.
/// let outcomes = writer.submit_blocking(batch)?.wait()?;
/// assert_eq!(outcomes.len(), 2);
/// # Ok::<(), myqtt_core::store::StoreError>(())
/// ```
pub struct StoreWriter {
    tx: Option<mpsc::Sender<Request>>,
    // Weak: the writer thread holds the only strong reference the writer
    // makes, so `release` can close the store while this handle lives on.
    store: Weak<dyn Store>,
    backend_name: &'static str,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("backend", &self.backend_name)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl StoreWriter {
    /// Starts the writer thread for `store` with the default
    /// [`WriterConfig`].
    pub fn spawn(store: Arc<dyn Store>) -> std::io::Result<Self> {
        Self::with_config(store, WriterConfig::default())
    }

    /// Starts the writer thread for `store`.
    pub fn with_config(store: Arc<dyn Store>, config: WriterConfig) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let wake = tx.downgrade();
        let counters = Arc::new(Counters::default());
        let backend_name = store.backend_name();
        let weak = Arc::downgrade(&store);
        let thread = std::thread::Builder::new()
            .name(format!("myqtt-store-{backend_name}"))
            .spawn({
                let counters = Arc::clone(&counters);
                move || {
                    let released = run(&*store, rx, &wake, &counters, config.max_batch_ops.max(1));
                    // The store (its files and folder lock) closes here, when
                    // no one else holds it.
                    drop(store);
                    if let Some(ack) = released {
                        let _ = ack.send(());
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            backend_name,
            store: weak,
            counters,
            thread: Some(thread),
        })
    }

    /// The store written to (for reads and [`Store::new_message_id`]);
    /// `None` once [`released`](Self::release) and closed.
    pub fn store(&self) -> Option<Arc<dyn Store>> {
        self.store.upgrade()
    }

    /// The store's backend name.
    pub fn backend_name(&self) -> &'static str {
        self.backend_name
    }

    /// A fresh message id ([`Store::new_message_id`]); after
    /// [`release`](Self::release), an id no submission can use (they all
    /// fail with [`StoreError::WriterClosed`]).
    pub fn new_message_id(&self) -> MessageId {
        self.store
            .upgrade()
            .map_or(MessageId(0), |s| s.new_message_id())
    }

    /// Commits what was submitted before, then ends the writer thread and
    /// closes the store (its files and the folder's lock, unless someone
    /// else holds the store), waiting up to `timeout`; later submissions
    /// fail with [`StoreError::WriterClosed`]. For a shared writer (a
    /// broker's) whose handle outlives its use: dropping the writer does the
    /// same. True once the thread is done.
    ///
    /// # Panics
    ///
    /// When called from inside a tokio runtime (it blocks).
    pub fn release(&self, timeout: Duration) -> bool {
        let Some(tx) = &self.tx else {
            return true;
        };
        let (ack, acked) = std::sync::mpsc::channel();
        let (done, _) = oneshot::channel();
        let req = Request {
            batch: Batch::new(),
            done,
            release: Some(ack),
            wake: false,
        };
        if tx.blocking_send(req).is_err() {
            // The thread has ended already.
            return true;
        }
        acked.recv_timeout(timeout).is_ok()
    }

    fn request(batch: impl Into<Batch>) -> (Request, Commit) {
        let (done, rx) = oneshot::channel();
        (
            Request {
                batch: batch.into(),
                done,
                release: None,
                wake: false,
            },
            Commit { rx },
        )
    }

    /// Queues `batch` for the next transaction, waiting (asynchronously)
    /// while the channel is full. Await the returned [`Commit`] before
    /// acknowledging anything the batch records.
    pub async fn submit(&self, batch: impl Into<Batch>) -> Result<Commit, StoreError> {
        let (req, commit) = Self::request(batch);
        let tx = self.tx.as_ref().ok_or(StoreError::WriterClosed)?;
        tx.send(req).await.map_err(|_| StoreError::WriterClosed)?;
        Ok(commit)
    }

    /// [`StoreWriter::submit`] for plain threads: blocks while the channel
    /// is full.
    ///
    /// # Panics
    ///
    /// When called from inside a tokio runtime (use `submit` there).
    pub fn submit_blocking(&self, batch: impl Into<Batch>) -> Result<Commit, StoreError> {
        let (req, commit) = Self::request(batch);
        let tx = self.tx.as_ref().ok_or(StoreError::WriterClosed)?;
        tx.blocking_send(req)
            .map_err(|_| StoreError::WriterClosed)?;
        Ok(commit)
    }

    /// Submits `batch` without waiting, in order with every other
    /// submission; gives the batch back if the writer's queue is full (the
    /// caller then awaits [`StoreWriter::submit`]).
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`] with the batch, or
    /// [`TrySubmitError::Closed`] once the writer has shut down.
    pub fn try_submit(&self, batch: impl Into<Batch>) -> Result<Commit, TrySubmitError> {
        let (req, commit) = Self::request(batch);
        let tx = self.tx.as_ref().ok_or(TrySubmitError::Closed)?;
        match tx.try_send(req) {
            Ok(()) => Ok(commit),
            Err(mpsc::error::TrySendError::Full(req)) => Err(TrySubmitError::Full(req.batch)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TrySubmitError::Closed),
        }
    }

    /// Submits `batch` and waits for its commit.
    pub async fn commit(&self, batch: impl Into<Batch>) -> Result<Vec<OpOutcome>, StoreError> {
        self.submit(batch).await?.await
    }

    /// Counters so far.
    pub fn stats(&self) -> WriterStats {
        let store = self.store.upgrade().map(|s| s.stats());
        WriterStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            submissions: self.counters.submissions.load(Ordering::Relaxed),
            ops: self.counters.ops.load(Ordering::Relaxed),
            fsyncs: store.as_ref().map_or(0, |s| s.fsyncs),
            writes: store.map_or(0, |s| s.writes),
        }
    }

    /// Stops accepting submissions, lets the writer finish those already
    /// queued, and waits for its thread. Dropping the writer does the same.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            // The thread only returns or panics inside the store; a panic
            // there has already completed every pending Commit with an
            // error (their senders were dropped).
            let _ = thread.join();
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One sealed transaction handed to the committer, with its submissions'
/// replies.
struct Round {
    work: Work,
    /// Each submission's completion and its ops' outcomes (or why it was
    /// not staged).
    replies: Vec<(oneshot::Sender<Reply>, Reply)>,
    submissions: u64,
    ops: u64,
}

/// What the committer does for a round.
enum Work {
    /// Commit this transaction, staged already.
    Sealed(Result<Sealed, StoreError>),
    /// A store that does not stage ([`Store::pipelined`] false): apply
    /// these ops in one transaction; `lens` says how many ops each
    /// submission has, in order.
    Apply { ops: Vec<Op>, lens: Vec<usize> },
}

/// The writer thread (the stager) and, scoped inside it, the committer.
/// Returns the acknowledgement to send once the store is dropped, when
/// [`StoreWriter::release`] ended it.
fn run(
    store: &dyn Store,
    mut rx: mpsc::Receiver<Request>,
    wake: &mpsc::WeakSender<Request>,
    counters: &Counters,
    max_ops: usize,
) -> Option<std::sync::mpsc::Sender<()>> {
    // Free: no transaction is being committed.
    let idle = AtomicBool::new(true);
    // Rendezvous: a sealed transaction waits here while the previous one
    // commits.
    let (hand, handed) = std::sync::mpsc::sync_channel::<Round>(0);
    std::thread::scope(|scope| {
        let idle = &idle;
        let committer = std::thread::Builder::new()
            .name(format!("myqtt-commit-{}", store.backend_name()))
            .spawn_scoped(scope, move || {
                commit_rounds(store, &handed, idle, wake, counters);
            });
        if let Err(e) = committer {
            tracing::error!(error = %e, "cannot start the store's committer thread");
            return None;
        }
        // Dropping `hand` ends the committer after the last round; the
        // scope waits for it.
        let released = stage_rounds(store, &mut rx, &hand, idle, max_ops);
        drop(hand);
        released
    })
}

/// The round the stager is building.
#[derive(Default)]
struct Staging {
    replies: Vec<(oneshot::Sender<Reply>, Reply)>,
    released: Option<std::sync::mpsc::Sender<()>>,
    submissions: u64,
    ops: usize,
    /// For a store that does not stage: the round's ops, and how many each
    /// submission has.
    unstaged: Vec<Op>,
    lens: Vec<usize>,
}

impl Staging {
    /// Stages one request (a wake-up stages nothing).
    fn take(&mut self, req: Request, store: &dyn Store, pipelined: bool) {
        if req.wake {
            return;
        }
        if let Some(ack) = req.release {
            self.released = Some(ack);
        }
        let mut batch = req.batch;
        let n = batch.len();
        let outcome = if n == 0 || !pipelined {
            self.lens.push(n);
            self.unstaged.append(&mut batch.ops);
            Ok(Vec::new())
        } else {
            store.stage(&batch.ops)
        };
        self.replies.push((req.done, outcome));
        self.submissions += 1;
        self.ops += n;
    }
}

/// The stager: applies submissions to the open transaction as they come,
/// and seals it for the committer as soon as that one is free.
fn stage_rounds(
    store: &dyn Store,
    rx: &mut mpsc::Receiver<Request>,
    hand: &std::sync::mpsc::SyncSender<Round>,
    idle: &AtomicBool,
    max_ops: usize,
) -> Option<std::sync::mpsc::Sender<()>> {
    let pipelined = store.pipelined();
    let mut closed = false;
    let mut st = Staging::default();
    loop {
        let busy = !idle.load(Ordering::Acquire);
        if !closed && (st.replies.is_empty() || (busy && st.ops < max_ops && st.released.is_none()))
        {
            // Nothing staged, or the committer is busy: wait for a
            // submission (or the committer's wake-up).
            match rx.blocking_recv() {
                Some(req) => st.take(req, store, pipelined),
                None => closed = true,
            }
        }
        // Everything else already waiting.
        while !closed && st.ops < max_ops && st.released.is_none() {
            match rx.try_recv() {
                Ok(req) => st.take(req, store, pipelined),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
            }
        }
        if st.replies.is_empty() {
            if closed {
                return st.released;
            }
            continue;
        }
        let ending = closed || st.released.is_some();
        if idle.load(Ordering::Acquire) || st.ops >= max_ops || ending {
            idle.store(false, Ordering::Release);
            let released = st.released.take();
            let st_round = std::mem::take(&mut st);
            let work = if pipelined {
                // Waits while the previous transaction commits.
                Work::Sealed(store.seal())
            } else {
                Work::Apply {
                    ops: st_round.unstaged,
                    lens: st_round.lens,
                }
            };
            let round = Round {
                work,
                replies: st_round.replies,
                submissions: st_round.submissions,
                ops: st_round.ops as u64,
            };
            if hand.send(round).is_err() || ending {
                // Later submissions fail: the receiver goes with this
                // thread.
                return released;
            }
        }
    }
}

/// The committer: commits each sealed transaction, then completes its
/// submissions.
fn commit_rounds(
    store: &dyn Store,
    handed: &std::sync::mpsc::Receiver<Round>,
    idle: &AtomicBool,
    wake: &mpsc::WeakSender<Request>,
    counters: &Counters,
) {
    while let Ok(round) = handed.recv() {
        let mut replies = round.replies;
        let result = match round.work {
            Work::Sealed(sealed) => sealed.and_then(|s| store.commit_sealed(s)),
            Work::Apply { ops, lens } => store.apply(&ops).map(|outcomes| {
                let mut outcomes = outcomes.into_iter();
                for ((_, reply), len) in replies.iter_mut().zip(lens) {
                    *reply = Ok(outcomes.by_ref().take(len).collect());
                }
            }),
        };
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.ops.fetch_add(round.ops, Ordering::Relaxed);
        counters
            .submissions
            .fetch_add(round.submissions, Ordering::Relaxed);
        // Free again: the stager may seal the next transaction while the
        // submissions of this one are completed.
        idle.store(true, Ordering::Release);
        if let Some(tx) = wake.upgrade() {
            let (done, _) = oneshot::channel();
            // A full queue wakes the stager anyway.
            let _ = tx.try_send(Request {
                batch: Batch::new(),
                done,
                release: None,
                wake: true,
            });
        }
        match result {
            Ok(()) => {
                for (done, reply) in replies {
                    // A producer that stopped waiting is not an error.
                    let _ = done.send(reply);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed");
                for (done, _) in replies {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Why [`StoreWriter::try_submit`] did not take a batch.
#[derive(Debug)]
pub enum TrySubmitError {
    /// The writer's queue is full: here is the batch back.
    Full(Batch),
    /// The writer has shut down.
    Closed,
}

/// The completion of one submission: resolves once its transaction is
/// committed (durably, on a disk backend), with one [`OpOutcome`] per op.
///
/// `.await` it from async code, or call [`Commit::wait`] from a thread.
#[derive(Debug)]
#[must_use = "a submission is committed only when its Commit completes"]
pub struct Commit {
    rx: oneshot::Receiver<Reply>,
}

impl Commit {
    /// Blocks the thread until the commit completes.
    ///
    /// # Panics
    ///
    /// When called from inside a tokio runtime (`.await` the `Commit`
    /// there).
    pub fn wait(self) -> Reply {
        self.rx
            .blocking_recv()
            .unwrap_or(Err(StoreError::WriterClosed))
    }
}

impl Future for Commit {
    type Output = Reply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StoreError::WriterClosed)))
    }
}
