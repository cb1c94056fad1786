//! [`KvStore`]: the one implementation of [`Store`] over any ordered byte
//! key-value [`Backend`] (memory, redb, sled).
//!
//! The backends only store bytes; record layout, message reference counts,
//! queue order and quotas live here, so every backend behaves the same and
//! one test suite covers them all.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::Store;
use super::error::StoreError;
use super::format::{self as f, Bad};
use super::types::{
    Dropped, IncomingRecord, InflightRecord, InflightState, MessageId, Op, OpOutcome,
    QueuedDelivery, QueuedMessage, QuotaKind, QuotaPolicy, Quotas, Refusal, SessionKey,
    SessionRecord, Side, StoreStats, StoredMessage, SubscriptionRecord, WillRecord,
};
use crate::ByteStr;
use crate::codec::PacketId;
use crate::hash::{IdHash, Keyed};

/// One key's new value (`None`: delete), as handed to [`Backend::commit`].
pub type KvWrite = (Vec<u8>, Option<Vec<u8>>);

/// Keys with their values, as [`Backend::scan_prefix`] returns them.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// An ordered byte key-value database that commits a list of writes
/// atomically and durably. Implement it to add a backend; [`KvStore`] does
/// the rest.
pub trait Backend: std::fmt::Debug + Send + Sync + 'static {
    /// A short name for errors and stats: "memory", "redb", "sled".
    fn name(&self) -> &'static str;

    /// Where the data lives, for error messages.
    fn location(&self) -> PathBuf;

    /// True when a commit reaches stable storage (and so costs an fsync).
    fn is_durable(&self) -> bool;

    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every key starting with `prefix`, with its value, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, StoreError>;

    /// Applies `writes` in one atomic transaction, durable when this
    /// returns `Ok` (for a durable backend). Each key appears once.
    fn commit(&self, writes: Vec<KvWrite>) -> Result<(), StoreError>;

    /// [`Backend::commit`] of writes the store keeps reading while they
    /// are committed (a pipelined [`super::StoreWriter`] prepares the next
    /// transaction meanwhile). The default copies them; override it when
    /// the database can take borrowed bytes.
    fn commit_ref(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        self.commit(writes.to_vec())
    }
}

/// A transaction's writes, sealed by [`super::Store::seal`] and waiting for
/// [`super::Store::commit_sealed`]. Opaque.
#[derive(Debug, Default)]
pub struct Sealed {
    /// Sorted by key, each key once; shared with the store, which reads
    /// through them until they are committed.
    writes: Option<Arc<Vec<KvWrite>>>,
}

impl Sealed {
    /// True when the transaction writes nothing (no commit, no fsync).
    pub fn is_empty(&self) -> bool {
        self.writes.as_ref().is_none_or(|w| w.is_empty())
    }
}

/// A [`Store`] over a [`Backend`]. Use it through the aliases
/// [`super::MemoryStore`], [`super::RedbStore`] and (feature `sled`)
/// `SledStore`.
///
// Design: the `Mutex<State>` is held for the whole of `apply`, commit
// included, and by the readers, so indexes and disk always agree for an
// observer. Only the writer thread normally applies, so it is uncontended.
pub struct KvStore<B: Backend> {
    backend: B,
    next_message: AtomicU64,
    state: Mutex<State>,
    /// Signalled when the store becomes quiet (no open or committing
    /// transaction) and when a reader is done.
    quiet: Condvar,
}

impl<B: Backend> std::fmt::Debug for KvStore<B> {
    /// The backend and the counters; not the indexes, which can be large.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("backend", &self.backend)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// In-memory indexes rebuilt from the keys at open.
#[derive(Debug, Default)]
struct State {
    quotas: Quotas,
    /// Every stored message: its size and how many queue entries and
    /// in-flight records refer to it.
    messages: HashMap<u64, MessageInfo, IdHash>,
    /// Messages stored inline in their only queue entry (not under their
    /// own key): message id -> that entry's key.
    inline: HashMap<u64, Vec<u8>, IdHash>,
    queues: HashMap<SessionKey, ClientQueue, Keyed>,
    /// Every queue entry by seq: the global age order DropOldest uses.
    /// (The owner is shared with its queue: no copy of a peer's client id,
    /// whose bytes the connections share, per entry.)
    order: BTreeMap<u64, Arc<SessionKey>>,
    inflight: HashMap<SessionKey, HashMap<u16, InflightEntry, IdHash>, Keyed>,
    /// Retained topics and their sizes.
    retained: HashMap<Vec<u8>, u64, Keyed>,
    /// Bytes of messages that something refers to.
    referenced_bytes: u64,
    retained_bytes: u64,
    next_seq: u64,
    stats: StoreStats,
    poisoned: Option<String>,
    /// The transaction [`Store::stage`] applies to, until sealed.
    open: Option<Tx>,
    /// The sealed transaction being committed: reads during staging see
    /// through it (it is not in the backend yet).
    committing: Option<Arc<Vec<KvWrite>>>,
    /// The last committed transaction's writes, freed by the staging
    /// thread that allocated them (see [`Store::stage`]).
    committed: Option<Arc<Vec<KvWrite>>>,
    /// Readers waiting for the store to be quiet: no new transaction opens
    /// meanwhile.
    readers_waiting: usize,
    /// How many writes the next transaction's map is sized for.
    tx_hint: usize,
}

impl State {
    /// No transaction is open or being committed: indexes and backend
    /// agree.
    fn is_quiet(&self) -> bool {
        self.open.is_none() && self.committing.is_none()
    }
}

/// The write of `key` in sorted, unique `writes` (its new value, or
/// `None` for a delete), if they touch it.
fn overlay_get<'a>(writes: &'a [KvWrite], key: &[u8]) -> Option<&'a KvWrite> {
    writes
        .binary_search_by(|(k, _)| k.as_slice().cmp(key))
        .ok()
        .and_then(|i| writes.get(i))
}

#[derive(Debug, Clone, Copy)]
struct MessageInfo {
    size: u64,
    refs: u32,
}

/// One client's offline queue. Kept while the session lasts, even empty:
/// a queue that empties and fills again costs no copy of its key.
#[derive(Debug)]
struct ClientQueue {
    owner: Arc<SessionKey>,
    /// seq -> (message id, message size).
    entries: BTreeMap<u64, (u64, u64)>,
    bytes: u64,
    /// message id -> seq, built the first time an entry is looked up by
    /// message far from the front (see [`ClientQueue::seq_of`]) and kept
    /// while the queue has entries.
    by_message: Option<HashMap<u64, u64, IdHash>>,
}

/// How many entries from the front [`ClientQueue::seq_of`] looks at
/// before it indexes the queue by message.
const FRONT_LOOK: usize = 32;

impl ClientQueue {
    fn insert(&mut self, seq: u64, id: u64, size: u64) {
        self.entries.insert(seq, (id, size));
        self.bytes += size;
        if let Some(ix) = &mut self.by_message
            && ix.insert(id, seq).is_some()
        {
            // A message queued twice for one client (not something the
            // broker does): the oldest entry must be found first, which
            // the scan does.
            self.by_message = None;
        }
    }

    /// Removes entry `seq`: its message id and size.
    fn remove(&mut self, seq: u64) -> Option<(u64, u64)> {
        let (id, size) = self.entries.remove(&seq)?;
        self.bytes -= size;
        if self.entries.is_empty() {
            self.by_message = None;
        } else if let Some(ix) = &mut self.by_message {
            ix.remove(&id);
        }
        Some((id, size))
    }

    /// The seq of the oldest entry referring to message `id`. A subscriber
    /// acknowledges mostly the oldest entries, found near the front; one
    /// that acknowledges out of order (or in reverse, on purpose) makes
    /// the queue index its entries by message once, so each lookup stays
    /// O(1) instead of a scan of everything in flight.
    fn seq_of(&mut self, id: u64) -> Option<u64> {
        if let Some(ix) = &self.by_message {
            return ix.get(&id).copied();
        }
        let mut looked = 0;
        for (seq, (m, _)) in &self.entries {
            if *m == id {
                return Some(*seq);
            }
            looked += 1;
            if looked == FRONT_LOOK {
                break;
            }
        }
        if self.entries.len() <= FRONT_LOOK {
            return None;
        }
        let mut ix = HashMap::with_capacity_and_hasher(self.entries.len(), IdHash::default());
        for (seq, (m, _)) in &self.entries {
            if ix.insert(*m, *seq).is_some() {
                // Queued twice: no index; the scan finds the oldest.
                return self
                    .entries
                    .iter()
                    .find(|(_, (m, _))| *m == id)
                    .map(|(seq, _)| *seq);
            }
        }
        let found = ix.get(&id).copied();
        self.by_message = Some(ix);
        found
    }
}

/// Adds entry `seq` (message `id` of `size` bytes) to `key`'s queue,
/// created if missing (the key is copied only then), and to `order`.
fn push_entry(
    queues: &mut HashMap<SessionKey, ClientQueue, Keyed>,
    order: &mut BTreeMap<u64, Arc<SessionKey>>,
    key: &SessionKey,
    seq: u64,
    (id, size): (u64, u64),
) {
    let q = match queues.get_mut(key) {
        Some(q) => q,
        None => queues.entry(key.clone()).or_insert_with(|| ClientQueue {
            owner: Arc::new(key.clone()),
            entries: BTreeMap::new(),
            bytes: 0,
            by_message: None,
        }),
    };
    q.insert(seq, id, size);
    order.insert(seq, Arc::clone(&q.owner));
}

#[derive(Debug, Clone, Copy)]
struct InflightEntry {
    seq: u64,
    message: Option<u64>,
}

/// One key's pending write in a [`Tx`].
#[derive(Debug)]
struct Write {
    /// The new value; `None` deletes.
    value: Option<Vec<u8>>,
    /// The key was absent before this transaction: deleting it again
    /// writes nothing at all, so a message stored, delivered and
    /// acknowledged within one group commit never touches the disk.
    fresh: bool,
}

/// The writes of one transaction, last write per key winning.
#[derive(Debug, Default)]
struct Tx {
    /// By key; sorted once, when the transaction is sealed (a hash map:
    /// keys share long prefixes, which an ordered map compares again and
    /// again on every insert). Keys hold peer-chosen client ids: a
    /// randomly seeded hasher.
    writes: HashMap<Vec<u8>, Write, Keyed>,
    /// Messages whose reference count dropped to 0 (or that were put): they
    /// are deleted at the end unless referenced again meanwhile.
    released: HashSet<u64, IdHash>,
    /// Queue entries created here for messages put here: (message id,
    /// entry key). At the end, a message whose only reference is such an
    /// entry is stored inline in it.
    fresh_entries: Vec<(u64, Vec<u8>)>,
    /// Entries holding their message inline that this transaction deletes:
    /// (message id, entry key). A message still referenced then is written
    /// under its own key.
    unqueued_inline: Vec<(u64, Vec<u8>)>,
    /// Inline messages gone with their entry: no key of their own to
    /// delete.
    inline_freed: HashSet<u64, IdHash>,
}

impl Tx {
    fn with_capacity(n: usize) -> Self {
        Self {
            writes: HashMap::with_capacity_and_hasher(n, Keyed::default()),
            ..Self::default()
        }
    }

    fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        match self.writes.entry(k) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().value = Some(v),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Write {
                    value: Some(v),
                    fresh: false,
                });
            }
        }
    }

    /// A put of a key known to be absent from the backend.
    fn put_new(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.writes.insert(
            k,
            Write {
                value: Some(v),
                fresh: true,
            },
        );
    }

    fn delete(&mut self, k: Vec<u8>) {
        match self.writes.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) if e.get().fresh => {
                e.remove();
            }
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().value = None,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Write {
                    value: None,
                    fresh: false,
                });
            }
        }
    }

    /// What to hand to [`Backend::commit`].
    fn into_writes(self) -> Vec<KvWrite> {
        let mut writes: Vec<KvWrite> = self.writes.into_iter().map(|(k, w)| (k, w.value)).collect();
        writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        writes
    }

    /// Whether `k` exists after this transaction's writes so far; `None`
    /// when the transaction has not touched it.
    fn exists(&self, k: &[u8]) -> Option<bool> {
        self.writes.get(k).map(|w| w.value.is_some())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave State half-written
    // without also poisoning it through `poisoned`; keep going.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B: Backend> KvStore<B> {
    /// Opens a store over `backend`: checks the format marker (writing it
    /// into an empty store) and rebuilds the in-memory indexes.
    pub fn from_backend(backend: B, quotas: Quotas) -> Result<Self, StoreError> {
        let store = Self {
            backend,
            next_message: AtomicU64::new(1),
            state: Mutex::new(State {
                quotas,
                next_seq: 1,
                ..State::default()
            }),
            quiet: Condvar::new(),
        };
        store.check_format()?;
        store.rebuild()?;
        Ok(store)
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn corrupt(&self, key: &[u8], why: &Bad) -> StoreError {
        StoreError::Corrupt {
            path: self.backend.location(),
            reason: format!("record {}: {why}", describe_key(key)),
        }
    }

    fn check_format(&self) -> Result<(), StoreError> {
        match self.backend.get(f::META_KEY)? {
            Some(v) if v.as_slice() == [f::FORMAT_VERSION] => Ok(()),
            Some(v) => match v.as_slice() {
                [found] => Err(StoreError::UnsupportedFormat {
                    path: self.backend.location(),
                    found: *found,
                    supported: f::FORMAT_VERSION,
                }),
                _ => Err(self.corrupt(f::META_KEY, &"bad format marker".into())),
            },
            None => {
                if self.backend.scan_prefix(&[])?.is_empty() {
                    self.backend
                        .commit(vec![(f::META_KEY.to_vec(), Some(vec![f::FORMAT_VERSION]))])
                } else {
                    Err(StoreError::Corrupt {
                        path: self.backend.location(),
                        reason: "records without a format marker: not a myqtt store".into(),
                    })
                }
            }
        }
    }

    fn rebuild(&self) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let mut max_message = 0;
        for (k, v) in self.backend.scan_prefix(&[f::MESSAGE])? {
            let id =
                f::u64_suffix(k.get(1..).unwrap_or_default()).map_err(|e| self.corrupt(&k, &e))?;
            max_message = max_message.max(id);
            st.messages.insert(
                id,
                MessageInfo {
                    size: v.len() as u64,
                    refs: 0,
                },
            );
        }
        for (k, v) in self.backend.scan_prefix(&[f::QUEUE])? {
            let (key, rest) = f::split_client_key(&k).map_err(|e| self.corrupt(&k, &e))?;
            let seq = f::u64_suffix(rest).map_err(|e| self.corrupt(&k, &e))?;
            let (id, _, inline) = f::decode_queue_record(&v).map_err(|e| self.corrupt(&k, &e))?;
            if let Some(record) = inline {
                max_message = max_message.max(id.0);
                st.messages.insert(
                    id.0,
                    MessageInfo {
                        size: record.len() as u64,
                        refs: 0,
                    },
                );
                st.inline.insert(id.0, k.clone());
            }
            let size = st
                .add_ref(id.0)
                .ok_or_else(|| self.corrupt(&k, &"refers to a missing message".into()))?;
            st.next_seq = st.next_seq.max(seq + 1);
            let st = &mut *st;
            push_entry(&mut st.queues, &mut st.order, &key, seq, (id.0, size));
        }
        for (k, v) in self.backend.scan_prefix(&[f::INFLIGHT])? {
            let (key, rest) = f::split_client_key(&k).map_err(|e| self.corrupt(&k, &e))?;
            let pid = f::packet_id_suffix(rest).map_err(|e| self.corrupt(&k, &e))?;
            let (_, seq, message) = f::decode_inflight(&v).map_err(|e| self.corrupt(&k, &e))?;
            if let Some(id) = message {
                st.add_ref(id.0)
                    .ok_or_else(|| self.corrupt(&k, &"refers to a missing message".into()))?;
            }
            st.next_seq = st.next_seq.max(seq + 1);
            st.inflight.entry(key).or_default().insert(
                pid.get(),
                InflightEntry {
                    seq,
                    message: message.map(|m| m.0),
                },
            );
        }
        for (k, v) in self.backend.scan_prefix(&[f::RETAINED])? {
            st.retained_bytes += v.len() as u64;
            st.retained
                .insert(k.get(1..).unwrap_or_default().to_vec(), v.len() as u64);
        }
        // Unreferenced messages cannot be left by a commit (the last
        // reference and the message go together); were one found, it is
        // unreachable, and goes at the next commit.
        let orphans: Vec<u64> = st
            .messages
            .iter()
            .filter(|(_, m)| m.refs == 0)
            .map(|(id, _)| *id)
            .collect();
        if !orphans.is_empty() {
            tracing::warn!(
                count = orphans.len(),
                "store holds unreferenced messages; they will be deleted"
            );
            let mut tx = Tx::default();
            tx.released.extend(orphans);
            st.collect_garbage(&mut tx);
            self.backend.commit(tx.into_writes())?;
        }
        self.next_message.store(max_message + 1, Ordering::Relaxed);
        Ok(())
    }

    fn exists(&self, st: &State, tx: &Tx, key: &[u8]) -> Result<bool, StoreError> {
        match tx.exists(key) {
            Some(v) => Ok(v),
            None => Ok(self.get_committed(st, key)?.is_some()),
        }
    }

    /// The value of `key` as of the transactions sealed so far: the one
    /// being committed, else the backend.
    fn get_committed(&self, st: &State, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(w) = &st.committing
            && let Some((_, v)) = overlay_get(w, key)
        {
            return Ok(v.clone());
        }
        self.backend.get(key)
    }

    /// The keys under `prefix` as of the transactions sealed so far.
    fn keys_committed(&self, st: &State, prefix: &[u8]) -> Result<BTreeSet<Vec<u8>>, StoreError> {
        let mut keys: BTreeSet<Vec<u8>> = self
            .backend
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        if let Some(w) = &st.committing {
            let start = w.partition_point(|(k, _)| k.as_slice() < prefix);
            for (k, v) in w.get(start..).unwrap_or_default() {
                if !k.starts_with(prefix) {
                    break;
                }
                if v.is_some() {
                    keys.insert(k.clone());
                } else {
                    keys.remove(k);
                }
            }
        }
        Ok(keys)
    }

    /// Deletes every key under `prefix`, committed or written earlier in
    /// this transaction. True if there was one.
    fn delete_prefix(&self, st: &State, tx: &mut Tx, prefix: &[u8]) -> Result<bool, StoreError> {
        let mut keys = self.keys_committed(st, prefix)?;
        keys.retain(|k| tx.exists(k) != Some(false));
        keys.extend(
            tx.writes
                .iter()
                .filter(|(k, w)| k.starts_with(prefix) && w.value.is_some())
                .map(|(k, _)| k.clone()),
        );
        let found = !keys.is_empty();
        for k in keys {
            tx.delete(k);
        }
        Ok(found)
    }

    /// Applies `ops` in order to `tx`; the first failure poisons the store
    /// (its indexes may no longer match the transaction) and is returned.
    fn apply_ops(
        &self,
        st: &mut State,
        tx: &mut Tx,
        ops: &[Op],
    ) -> Result<Vec<OpOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            match self.apply_op(st, tx, op) {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    st.poisoned = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(outcomes)
    }

    fn apply_op(&self, st: &mut State, tx: &mut Tx, op: &Op) -> Result<OpOutcome, StoreError> {
        Ok(match op {
            Op::PutSession(s) => {
                tx.put(f::session_key(&s.key), f::encode_session(s));
                OpOutcome::Done
            }
            Op::RemoveSession(key) => self.remove_session(st, tx, key)?,
            Op::PutSubscription { key, subscription } => {
                tx.put(
                    f::subscription_key(key, &subscription.filter),
                    f::encode_subscription(subscription),
                );
                OpOutcome::Done
            }
            Op::RemoveSubscription { key, filter } => {
                self.remove_key(st, tx, f::subscription_key(key, filter))?
            }
            Op::PutMessage { id, message } => st.put_message(tx, *id, message),
            Op::Enqueue {
                key,
                message,
                delivery,
            } => st.enqueue(tx, key, *message, delivery.as_ref()),
            Op::Dequeue { key, seq } => st.dequeue(tx, key, *seq),
            Op::DequeueMessage { key, message } => {
                let seq = st.queues.get_mut(key).and_then(|q| q.seq_of(message.0));
                match seq {
                    Some(seq) => st.dequeue(tx, key, seq),
                    None => OpOutcome::NotFound,
                }
            }
            Op::PutInflight {
                key,
                packet_id,
                state,
                message,
            } => st.put_inflight(tx, key, *packet_id, *state, *message),
            Op::RemoveInflight { key, packet_id } => st.remove_inflight(tx, key, *packet_id),
            Op::PutIncoming { key, record } => {
                tx.put(
                    f::incoming_key(key, record.packet_id),
                    f::encode_incoming(record),
                );
                OpOutcome::Done
            }
            Op::RemoveIncoming { key, packet_id } => {
                self.remove_key(st, tx, f::incoming_key(key, *packet_id))?
            }
            Op::PutRetained(message) => st.put_retained(tx, message),
            Op::RemoveRetained(topic) => {
                let topic = topic.as_bytes();
                match st.retained.remove(topic.as_ref()) {
                    Some(size) => {
                        st.retained_bytes -= size;
                        tx.delete(f::retained_key(topic));
                        OpOutcome::Done
                    }
                    None => OpOutcome::NotFound,
                }
            }
            Op::PutWill(w) => {
                let Ok(value) = f::encode_will(w) else {
                    return Ok(invalid("will cannot be encoded in an MQTT 5 CONNECT"));
                };
                tx.put(f::will_key(&w.client_id), value);
                OpOutcome::Done
            }
            Op::RemoveWill(client_id) => self.remove_key(st, tx, f::will_key(client_id))?,
        })
    }

    fn remove_session(
        &self,
        st: &mut State,
        tx: &mut Tx,
        key: &SessionKey,
    ) -> Result<OpOutcome, StoreError> {
        let mut found = false;
        for kind in [f::SESSION, f::SUBSCRIPTION, f::INCOMING] {
            found |= self.delete_prefix(st, tx, &f::client_prefix(kind, key))?;
        }
        if let Some(q) = st.queues.remove(key) {
            found |= !q.entries.is_empty();
            for (seq, (id, _)) in q.entries {
                st.order.remove(&seq);
                st.unqueue(tx, key, seq, id);
                st.release(tx, id);
            }
        }
        if let Some(table) = st.inflight.remove(key) {
            found |= !table.is_empty();
            for (pid, e) in table {
                if let Some(pid) = PacketId::new(pid) {
                    tx.delete(f::inflight_key(key, pid));
                }
                if let Some(id) = e.message {
                    st.release(tx, id);
                }
            }
        }
        Ok(done_if(found))
    }

    /// The end of a transaction, before garbage collection. A message whose
    /// inline queue entry went and that something still refers to (it
    /// moved to the in-flight table) is written under its own key. A
    /// message put here whose only reference is a queue entry created here
    /// is stored inline in that entry instead of under its own key: one
    /// record to write now and to delete later instead of two (the common
    /// case of a 1→1 message whose subscriber's acknowledgement comes in
    /// the next group commit).
    fn settle_inline(&self, st: &mut State, tx: &mut Tx) -> Result<(), StoreError> {
        for (id, k) in std::mem::take(&mut tx.unqueued_inline) {
            if st.messages.get(&id).is_none_or(|m| m.refs == 0) {
                tx.inline_freed.insert(id);
                continue;
            }
            // The entry was created by an earlier transaction: the backend
            // has it.
            let v = self
                .get_committed(st, &k)?
                .ok_or_else(|| self.corrupt(&k, &"queue entry missing".into()))?;
            let (_, _, record) = f::decode_queue_record(&v).map_err(|e| self.corrupt(&k, &e))?;
            let record = record.ok_or_else(|| self.corrupt(&k, &"message not inline".into()))?;
            tx.put(f::message_key(MessageId(id)), record.to_vec());
        }
        for (id, k) in std::mem::take(&mut tx.fresh_entries) {
            if st.messages.get(&id).is_none_or(|m| m.refs != 1) {
                continue;
            }
            let mk = f::message_key_bytes(MessageId(id));
            let mk = mk.as_slice();
            let fresh = |w: Option<&Write>| w.is_some_and(|w| w.fresh && w.value.is_some());
            if !fresh(tx.writes.get(&k)) || !fresh(tx.writes.get(mk)) {
                continue;
            }
            let Some(Write {
                value: Some(record),
                ..
            }) = tx.writes.remove(mk)
            else {
                continue;
            };
            if let Some(Write {
                value: Some(entry), ..
            }) = tx.writes.get_mut(&k)
                && f::can_inline(entry)
            {
                *entry = f::inline_queue_entry(entry, &record);
                st.inline.insert(id, k);
                continue;
            }
            // Not inlined after all: the message keeps its own key.
            tx.put_new(mk.to_vec(), record);
        }
        Ok(())
    }

    /// Ends the open transaction `tx`: inline messages settled, garbage
    /// collected, its writes handed out and kept as `committing` until
    /// committed. A poisoned store discards it.
    fn seal_open(&self, st: &mut State, tx: Option<Tx>) -> Result<Sealed, StoreError> {
        if let Some(why) = &st.poisoned {
            return Err(StoreError::Poisoned(why.clone()));
        }
        let Some(mut tx) = tx else {
            return Ok(Sealed::default());
        };
        if let Err(e) = self.settle_inline(st, &mut tx) {
            st.poisoned = Some(e.to_string());
            return Err(e);
        }
        st.collect_garbage(&mut tx);
        if tx.writes.is_empty() {
            return Ok(Sealed::default());
        }
        // The next transaction's map starts about as large as this one
        // grew (a fresh entry put and deleted again left it).
        st.tx_hint = tx.writes.len().saturating_mul(2).min(1 << 16);
        let writes = Arc::new(tx.into_writes());
        st.committing = Some(Arc::clone(&writes));
        Ok(Sealed {
            writes: Some(writes),
        })
    }

    fn remove_key(&self, st: &State, tx: &mut Tx, k: Vec<u8>) -> Result<OpOutcome, StoreError> {
        let found = self.exists(st, tx, &k)?;
        if found {
            tx.delete(k);
        }
        Ok(done_if(found))
    }

    /// Runs `f` once the store is quiet (no transaction open or being
    /// committed), so what it reads from the backend matches the indexes;
    /// no transaction opens while a reader waits.
    fn read<T>(&self, f: impl FnOnce(&State) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let st = self.quiet_state();
        let r = f(&st);
        drop(st);
        self.quiet.notify_all();
        r
    }

    /// The state, once no transaction is open or being committed.
    fn quiet_state(&self) -> MutexGuard<'_, State> {
        let mut st = lock(&self.state);
        st.readers_waiting += 1;
        while !st.is_quiet() && st.poisoned.is_none() {
            st = self.quiet.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st.readers_waiting -= 1;
        st
    }

    fn load_message(&self, st: &State, id: MessageId) -> Result<StoredMessage, StoreError> {
        if let Some(k) = st.inline.get(&id.0) {
            let v = self
                .backend
                .get(k)?
                .ok_or_else(|| self.corrupt(k, &"queue entry missing".into()))?;
            let (_, _, record) = f::decode_queue_record(&v).map_err(|e| self.corrupt(k, &e))?;
            let record = record.ok_or_else(|| self.corrupt(k, &"message not inline".into()))?;
            return f::decode_message(record).map_err(|e| self.corrupt(k, &e));
        }
        let k = f::message_key(id);
        let v = self
            .backend
            .get(&k)?
            .ok_or_else(|| self.corrupt(&k, &"message missing".into()))?;
        f::decode_message(&v).map_err(|e| self.corrupt(&k, &e))
    }

    fn scan_client(&self, kind: u8, key: &SessionKey) -> Result<KvPairs, StoreError> {
        self.backend.scan_prefix(&f::client_prefix(kind, key))
    }

    fn subscriptions_unlocked(
        &self,
        key: &SessionKey,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let prefix_len = f::client_prefix(f::SUBSCRIPTION, key).len();
        self.scan_client(f::SUBSCRIPTION, key)?
            .iter()
            .map(|(k, v)| {
                f::decode_subscription(k.get(prefix_len..).unwrap_or_default(), v)
                    .map_err(|e| self.corrupt(k, &e))
            })
            .collect()
    }

    fn inflight_unlocked(
        &self,
        st: &State,
        key: &SessionKey,
    ) -> Result<Vec<InflightRecord>, StoreError> {
        let mut records = Vec::new();
        for (k, v) in self.scan_client(f::INFLIGHT, key)? {
            let (_, rest) = f::split_client_key(&k).map_err(|e| self.corrupt(&k, &e))?;
            let packet_id = f::packet_id_suffix(rest).map_err(|e| self.corrupt(&k, &e))?;
            let (state, seq, message_id) =
                f::decode_inflight(&v).map_err(|e| self.corrupt(&k, &e))?;
            let message = match message_id {
                Some(id) => {
                    let mut m = self.load_message(st, id)?;
                    m.publish.packet_id = Some(packet_id);
                    m.publish.dup = true;
                    Some(m)
                }
                None => None,
            };
            records.push((
                seq,
                InflightRecord {
                    packet_id,
                    state,
                    message,
                    message_id,
                },
            ));
        }
        records.sort_by_key(|(seq, _)| *seq);
        Ok(records.into_iter().map(|(_, r)| r).collect())
    }

    fn incoming_unlocked(&self, key: &SessionKey) -> Result<Vec<IncomingRecord>, StoreError> {
        self.scan_client(f::INCOMING, key)?
            .iter()
            .map(|(k, v)| {
                f::split_client_key(k)
                    .and_then(|(_, rest)| f::packet_id_suffix(rest))
                    .and_then(|pid| f::decode_incoming(pid, v))
                    .map_err(|e| self.corrupt(k, &e))
            })
            .collect()
    }

    fn queue_unlocked(
        &self,
        st: &State,
        key: &SessionKey,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let mut cache: HashMap<MessageId, StoredMessage> = HashMap::new();
        let mut out = Vec::new();
        for (k, v) in self.scan_client(f::QUEUE, key)? {
            let (_, rest) = f::split_client_key(&k).map_err(|e| self.corrupt(&k, &e))?;
            let seq = f::u64_suffix(rest).map_err(|e| self.corrupt(&k, &e))?;
            let (message_id, delivery, inline) =
                f::decode_queue_record(&v).map_err(|e| self.corrupt(&k, &e))?;
            let message = if let Some(record) = inline {
                f::decode_message(record).map_err(|e| self.corrupt(&k, &e))?
            } else if let Some(m) = cache.get(&message_id) {
                m.clone()
            } else {
                let m = self.load_message(st, message_id)?;
                cache.insert(message_id, m.clone());
                m
            };
            out.push(QueuedMessage {
                seq,
                message_id,
                message,
                delivery,
            });
        }
        Ok(out)
    }

    fn session_unlocked(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        let k = f::session_key(key);
        self.backend
            .get(&k)?
            .map(|v| f::decode_session(key.clone(), &v).map_err(|e| self.corrupt(&k, &e)))
            .transpose()
    }

    fn clients_unlocked(&self, side: Side) -> Result<Vec<ByteStr>, StoreError> {
        let mut ids = BTreeSet::new();
        for kind in [
            f::SESSION,
            f::SUBSCRIPTION,
            f::INFLIGHT,
            f::INCOMING,
            f::QUEUE,
        ] {
            for (k, _) in self.backend.scan_prefix(&[kind, side.tag()])? {
                let (key, _) = f::split_client_key(&k).map_err(|e| self.corrupt(&k, &e))?;
                ids.insert(key.client_id);
            }
        }
        Ok(ids.into_iter().collect())
    }
}

fn done_if(found: bool) -> OpOutcome {
    if found {
        OpOutcome::Done
    } else {
        OpOutcome::NotFound
    }
}

fn invalid(why: &'static str) -> OpOutcome {
    OpOutcome::Refused(Refusal::Invalid(why))
}

/// A key for an error message: its kind letter and bytes, escaped.
fn describe_key(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

impl State {
    fn put_message(&mut self, tx: &mut Tx, id: MessageId, message: &StoredMessage) -> OpOutcome {
        if self.messages.contains_key(&id.0) {
            return invalid("message id already stored");
        }
        if let Err(why) = f::check_message(message) {
            return invalid(why);
        }
        let Ok(value) = f::encode_message(message) else {
            return invalid("message cannot be encoded as an MQTT 5 PUBLISH");
        };
        self.messages.insert(
            id.0,
            MessageInfo {
                size: value.len() as u64,
                refs: 0,
            },
        );
        tx.put_new(f::message_key(id), value);
        // Deleted at the end of the transaction if nothing refers to it.
        tx.released.insert(id.0);
        OpOutcome::Done
    }

    fn dequeue(&mut self, tx: &mut Tx, key: &SessionKey, seq: u64) -> OpOutcome {
        let Some(q) = self.queues.get_mut(key) else {
            return OpOutcome::NotFound;
        };
        let Some((id, _)) = q.remove(seq) else {
            return OpOutcome::NotFound;
        };
        self.order.remove(&seq);
        self.unqueue(tx, key, seq, id);
        self.release(tx, id);
        OpOutcome::Done
    }

    /// Deletes queue entry `seq` of `key`, which refers to message `id`;
    /// notes it if it held the message inline.
    fn unqueue(&mut self, tx: &mut Tx, key: &SessionKey, seq: u64, id: u64) {
        let k = f::queue_key(key, seq);
        if self.inline.get(&id) == Some(&k) {
            self.inline.remove(&id);
            tx.unqueued_inline.push((id, k.clone()));
        }
        tx.delete(k);
    }

    fn put_inflight(
        &mut self,
        tx: &mut Tx,
        key: &SessionKey,
        packet_id: PacketId,
        state: InflightState,
        message: Option<MessageId>,
    ) -> OpOutcome {
        let message = match (state, message) {
            (InflightState::AwaitingPubComp, _) => None,
            (_, Some(m)) => Some(m),
            (_, None) => {
                return invalid("an in-flight PUBLISH awaiting PUBACK or PUBREC needs its message");
            }
        };
        if let Some(m) = message
            && self.add_ref(m.0).is_none()
        {
            return OpOutcome::Refused(Refusal::UnknownMessage(m));
        }
        let previous = self
            .inflight
            .get(key)
            .and_then(|t| t.get(&packet_id.get()))
            .copied();
        let seq = match previous {
            Some(e) => {
                if let Some(old) = e.message {
                    self.release(tx, old);
                }
                e.seq
            }
            None => self.take_seq(),
        };
        let k = f::inflight_key(key, packet_id);
        let v = f::encode_inflight(state, seq, message);
        if previous.is_some() {
            tx.put(k, v);
        } else {
            tx.put_new(k, v);
        }
        let entry = InflightEntry {
            seq,
            message: message.map(|m| m.0),
        };
        // The table stays while the session lasts, even empty: no copy of
        // the key per message.
        if let Some(table) = self.inflight.get_mut(key) {
            table.insert(packet_id.get(), entry);
        } else {
            self.inflight
                .entry(key.clone())
                .or_default()
                .insert(packet_id.get(), entry);
        }
        OpOutcome::Done
    }

    fn remove_inflight(&mut self, tx: &mut Tx, key: &SessionKey, packet_id: PacketId) -> OpOutcome {
        let Some(table) = self.inflight.get_mut(key) else {
            return OpOutcome::NotFound;
        };
        let Some(e) = table.remove(&packet_id.get()) else {
            return OpOutcome::NotFound;
        };
        tx.delete(f::inflight_key(key, packet_id));
        if let Some(id) = e.message {
            self.release(tx, id);
        }
        OpOutcome::Done
    }

    fn put_retained(&mut self, tx: &mut Tx, message: &StoredMessage) -> OpOutcome {
        if let Err(why) = f::check_message(message) {
            return invalid(why);
        }
        let Ok(value) = f::encode_message(message) else {
            return invalid("message cannot be encoded as an MQTT 5 PUBLISH");
        };
        let topic = message.publish.topic.as_bytes().to_vec();
        let size = value.len() as u64;
        let old = self.retained.get(&topic).copied().unwrap_or(0);
        let max = self.quotas.max_store_bytes;
        let total = self.referenced_bytes + self.retained_bytes - old + size;
        // A replacement that does not grow is always accepted.
        if max > 0 && total > max && size > old {
            self.stats.refused += 1;
            return OpOutcome::Refused(Refusal::Quota {
                kind: QuotaKind::StoreBytes,
                dropped: Vec::new(),
            });
        }
        self.retained_bytes = self.retained_bytes - old + size;
        tx.put(f::retained_key(&topic), value);
        self.retained.insert(topic, size);
        OpOutcome::Done
    }

    fn enqueue(
        &mut self,
        tx: &mut Tx,
        key: &SessionKey,
        id: MessageId,
        delivery: Option<&QueuedDelivery>,
    ) -> OpOutcome {
        let Some(info) = self.messages.get(&id.0).copied() else {
            return OpOutcome::Refused(Refusal::UnknownMessage(id));
        };
        let quotas = self.quotas;
        let drop_oldest = quotas.policy == QuotaPolicy::DropOldest;
        let mut dropped = Vec::new();
        if let Err(kind) = self.make_room(tx, key, info.size, id, drop_oldest, &mut dropped) {
            self.stats.refused += 1;
            self.stats.dropped += dropped.len() as u64;
            return OpOutcome::Refused(Refusal::Quota { kind, dropped });
        }
        self.add_ref(id.0);
        let seq = self.take_seq();
        push_entry(
            &mut self.queues,
            &mut self.order,
            key,
            seq,
            (id.0, info.size),
        );
        let k = f::queue_key(key, seq);
        if tx
            .writes
            .get(f::message_key_bytes(id).as_slice())
            .is_some_and(|w| w.fresh && w.value.is_some())
        {
            tx.fresh_entries.push((id.0, k.clone()));
        }
        tx.put_new(k, f::encode_queue_entry(id, delivery));
        self.stats.dropped += dropped.len() as u64;
        OpOutcome::Enqueued { seq, dropped }
    }

    /// Checks the quotas for a new entry of `size` bytes in `key`'s queue,
    /// dropping old entries into `dropped` if `drop_oldest`.
    fn make_room(
        &mut self,
        tx: &mut Tx,
        key: &SessionKey,
        size: u64,
        id: MessageId,
        drop_oldest: bool,
        dropped: &mut Vec<Dropped>,
    ) -> Result<(), QuotaKind> {
        let quotas = self.quotas;
        if quotas.max_queued_bytes > 0 && size > quotas.max_queued_bytes {
            return Err(QuotaKind::QueuedBytes); // can never fit
        }
        // Per-client quotas: this client's oldest entries make room. Once
        // the queue is empty the entry fits, so this never drops in vain.
        loop {
            let (len, bytes, oldest) = self.queues.get(key).map_or((0, 0, None), |q| {
                (
                    q.entries.len() as u64,
                    q.bytes,
                    q.entries.keys().next().copied(),
                )
            });
            let kind = if quotas.max_queued_messages > 0 && len + 1 > quotas.max_queued_messages {
                QuotaKind::QueuedMessages
            } else if quotas.max_queued_bytes > 0 && bytes + size > quotas.max_queued_bytes {
                QuotaKind::QueuedBytes
            } else {
                break;
            };
            match oldest {
                Some(seq) if drop_oldest => dropped.push(self.drop_entry(tx, key, seq, kind)),
                _ => return Err(kind),
            }
        }
        if quotas.max_store_bytes == 0 {
            return Ok(());
        }
        // Store quota: a message nothing refers to yet adds its bytes.
        let cost = |st: &Self| match st.messages.get(&id.0) {
            Some(m) if m.refs > 0 => 0,
            _ => size,
        };
        let over = |st: &Self| st.referenced_bytes + st.retained_bytes + cost(st);
        if over(self) <= quotas.max_store_bytes {
            return Ok(());
        }
        // Dropping every queue entry frees at most the bytes the queues
        // refer to: if even that is not enough, drop nothing.
        let queued: u64 = self.queues.values().map(|q| q.bytes).sum();
        if !drop_oldest || over(self).saturating_sub(queued) > quotas.max_store_bytes {
            return Err(QuotaKind::StoreBytes);
        }
        // The oldest entries of all queues make room.
        while over(self) > quotas.max_store_bytes {
            let oldest = self.order.iter().next().map(|(s, k)| (*s, Arc::clone(k)));
            let Some((seq, owner)) = oldest else {
                return Err(QuotaKind::StoreBytes);
            };
            dropped.push(self.drop_entry(tx, &owner, seq, QuotaKind::StoreBytes));
        }
        Ok(())
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// One more reference to message `id`; its size, `None` if unknown.
    fn add_ref(&mut self, id: u64) -> Option<u64> {
        let m = self.messages.get_mut(&id)?;
        if m.refs == 0 {
            self.referenced_bytes += m.size;
        }
        m.refs += 1;
        Some(m.size)
    }

    /// One reference fewer; the message goes at the end of the
    /// transaction if none is left then.
    fn release(&mut self, tx: &mut Tx, id: u64) {
        if let Some(m) = self.messages.get_mut(&id) {
            m.refs = m.refs.saturating_sub(1);
            if m.refs == 0 {
                self.referenced_bytes -= m.size;
                tx.released.insert(id);
            }
        }
    }

    fn drop_entry(
        &mut self,
        tx: &mut Tx,
        key: &SessionKey,
        seq: u64,
        reason: QuotaKind,
    ) -> Dropped {
        let mut message = 0;
        if let Some((id, _)) = self.queues.get_mut(key).and_then(|q| q.remove(seq)) {
            message = id;
        }
        self.order.remove(&seq);
        self.unqueue(tx, key, seq, message);
        self.release(tx, message);
        Dropped {
            key: key.clone(),
            seq,
            message: MessageId(message),
            reason,
        }
    }

    fn collect_garbage(&mut self, tx: &mut Tx) {
        for id in std::mem::take(&mut tx.released) {
            if self.messages.get(&id).is_some_and(|m| m.refs == 0) {
                self.messages.remove(&id);
                if !tx.inline_freed.contains(&id) {
                    tx.delete(f::message_key(MessageId(id)));
                }
            }
        }
    }
}

impl<B: Backend> Store for KvStore<B> {
    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    fn new_message_id(&self) -> MessageId {
        MessageId(self.next_message.fetch_add(1, Ordering::Relaxed))
    }

    fn apply(&self, ops: &[Op]) -> Result<Vec<OpOutcome>, StoreError> {
        // After whatever the writer staged or is committing.
        let mut st = self.quiet_state();
        if let Some(why) = &st.poisoned {
            return Err(StoreError::Poisoned(why.clone()));
        }
        let mut tx = Tx::default();
        let outcomes = self.apply_ops(&mut st, &mut tx, ops)?;
        if let Err(e) = self.settle_inline(&mut st, &mut tx) {
            st.poisoned = Some(e.to_string());
            return Err(e);
        }
        st.collect_garbage(&mut tx);
        st.stats.ops += ops.len() as u64;
        if tx.writes.is_empty() {
            return Ok(outcomes);
        }
        let writes = tx.into_writes();
        let n = writes.len() as u64;
        if let Err(e) = self.backend.commit(writes) {
            st.poisoned = Some(e.to_string());
            return Err(e);
        }
        st.stats.commits += 1;
        st.stats.writes += n;
        if self.backend.is_durable() {
            st.stats.fsyncs += 1;
        }
        Ok(outcomes)
    }

    fn pipelined(&self) -> bool {
        true
    }

    fn stage(&self, ops: &[Op]) -> Result<Vec<OpOutcome>, StoreError> {
        let mut st = lock(&self.state);
        // No transaction opens while a reader waits for a quiet store.
        while st.open.is_none() && st.readers_waiting > 0 && st.poisoned.is_none() {
            st = self.quiet.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        if let Some(why) = &st.poisoned {
            return Err(StoreError::Poisoned(why.clone()));
        }
        // Freed here, after the lock: the keys and values go back to the
        // allocator of the thread that made them (freeing them on the
        // committing thread left this one's allocator without a cache,
        // about a third of its time in malloc).
        let garbage = st.committed.take();
        let hint = st.tx_hint;
        let mut tx = st.open.take().unwrap_or_else(|| Tx::with_capacity(hint));
        let outcomes = match self.apply_ops(&mut st, &mut tx, ops) {
            Ok(o) => o,
            Err(e) => {
                drop(st);
                self.quiet.notify_all();
                return Err(e);
            }
        };
        st.stats.ops += ops.len() as u64;
        st.open = Some(tx);
        drop(st);
        drop(garbage);
        Ok(outcomes)
    }

    fn seal(&self) -> Result<Sealed, StoreError> {
        let mut st = lock(&self.state);
        // One transaction commits at a time, in order.
        while st.committing.is_some() && st.poisoned.is_none() {
            st = self.quiet.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        let tx = st.open.take();
        let sealed = self.seal_open(&mut st, tx);
        let quiet = st.is_quiet();
        drop(st);
        if quiet {
            self.quiet.notify_all();
        }
        sealed
    }

    fn commit_sealed(&self, sealed: Sealed) -> Result<(), StoreError> {
        let Some(writes) = sealed.writes else {
            return Ok(());
        };
        // Without the state lock: the next transaction is staged meanwhile,
        // reading through `committing`.
        let r = self.backend.commit_ref(&writes);
        let mut st = lock(&self.state);
        st.committed = st.committing.take();
        match &r {
            Ok(()) => {
                st.stats.commits += 1;
                st.stats.writes += writes.len() as u64;
                if self.backend.is_durable() {
                    st.stats.fsyncs += 1;
                }
            }
            Err(e) => st.poisoned = Some(e.to_string()),
        }
        drop(st);
        self.quiet.notify_all();
        r
    }

    fn quotas(&self) -> Quotas {
        lock(&self.state).quotas
    }

    fn set_quotas(&self, quotas: Quotas) {
        lock(&self.state).quotas = quotas;
    }

    fn stats(&self) -> StoreStats {
        let st = lock(&self.state);
        StoreStats {
            messages: st.messages.len() as u64,
            message_bytes: st.referenced_bytes,
            queued: st.order.len() as u64,
            retained: st.retained.len() as u64,
            retained_bytes: st.retained_bytes,
            ..st.stats
        }
    }

    fn clients(&self, side: Side) -> Result<Vec<ByteStr>, StoreError> {
        self.read(|_| self.clients_unlocked(side))
    }

    fn session(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        self.read(|_| self.session_unlocked(key))
    }

    fn sessions(&self, side: Side) -> Result<Vec<SessionRecord>, StoreError> {
        self.read(|_| {
            self.backend
                .scan_prefix(&[f::SESSION, side.tag()])?
                .iter()
                .map(|(k, v)| {
                    f::split_client_key(k)
                        .and_then(|(key, _)| f::decode_session(key, v))
                        .map_err(|e| self.corrupt(k, &e))
                })
                .collect()
        })
    }

    fn subscriptions(&self, key: &SessionKey) -> Result<Vec<SubscriptionRecord>, StoreError> {
        self.read(|_| self.subscriptions_unlocked(key))
    }

    fn inflight(&self, key: &SessionKey) -> Result<Vec<InflightRecord>, StoreError> {
        self.read(|st| self.inflight_unlocked(st, key))
    }

    fn incoming(&self, key: &SessionKey) -> Result<Vec<IncomingRecord>, StoreError> {
        self.read(|_| self.incoming_unlocked(key))
    }

    fn queue(&self, key: &SessionKey) -> Result<Vec<QueuedMessage>, StoreError> {
        self.read(|st| self.queue_unlocked(st, key))
    }

    fn queue_len(&self, key: &SessionKey) -> (u64, u64) {
        lock(&self.state)
            .queues
            .get(key)
            .map_or((0, 0), |q| (q.entries.len() as u64, q.bytes))
    }

    fn retained(&self) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(|_| {
            self.backend
                .scan_prefix(&[f::RETAINED])?
                .iter()
                .map(|(k, v)| f::decode_message(v).map_err(|e| self.corrupt(k, &e)))
                .collect()
        })
    }

    fn wills(&self) -> Result<Vec<WillRecord>, StoreError> {
        self.read(|_| {
            self.backend
                .scan_prefix(&[f::WILL])?
                .iter()
                .map(|(k, v)| {
                    f::split_will_key(k)
                        .and_then(|id| f::decode_will(id, v))
                        .map_err(|e| self.corrupt(k, &e))
                })
                .collect()
        })
    }

    fn load(&self, side: Side) -> Result<super::Loaded, StoreError> {
        self.read(|st| {
            let mut sessions = Vec::new();
            for client_id in self.clients_unlocked(side)? {
                let key = SessionKey { side, client_id };
                sessions.push(super::StoredSession {
                    session: self.session_unlocked(&key)?,
                    subscriptions: self.subscriptions_unlocked(&key)?,
                    inflight: self.inflight_unlocked(st, &key)?,
                    incoming: self.incoming_unlocked(&key)?,
                    queue: self.queue_unlocked(st, &key)?,
                    key,
                });
            }
            Ok(super::Loaded {
                sessions,
                retained: Vec::new(),
                wills: Vec::new(),
            })
        })
        .and_then(|mut loaded| {
            if side == Side::Broker {
                loaded.retained = self.retained()?;
                loaded.wills = self.wills()?;
            }
            Ok(loaded)
        })
    }
}
