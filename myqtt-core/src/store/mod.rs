//! Durable storage: everything a listener (or a persistent client) must
//! keep across a restart, behind one [`Store`] trait.
//!
//! # Layout
//!
//! - [`Store`]: the trait; one list of [`Op`]s is applied in one
//!   transaction, read methods bring everything back at start.
//! - [`KvStore`]: its one implementation, over any ordered byte key-value
//!   [`Backend`]. The aliases name the backends: [`MemoryStore`] (tests,
//!   storage-less listeners), [`RedbStore`] (the default on disk) and
//!   `SledStore` (cargo feature `sled`).
//! - [`StoreConfig`]: opens a store folder (created if missing, locked
//!   against a second opener, never wiped when unreadable).
//! - [`StoreWriter`]: the group-commit writer thread. Many producers submit
//!   [`Batch`]es; the writer applies all that are waiting in one
//!   transaction and one fsync, then completes each producer's [`Commit`].
//!
//! # What is stored
//!
//! Sessions ([`SessionRecord`]: expiry interval, disconnect time, protocol
//! level), subscriptions with options and identifier, outgoing in-flight
//! QoS 1/2 messages with their packet id and state, incoming QoS 2 packet
//! ids awaiting PUBREL, per-client offline queues in order, retained
//! messages and pending wills. Per-client records exist for a listener's
//! clients ([`Side::Broker`]) and for a program's own persistent client
//! connections ([`Side::Client`]).
//!
//! Messages are MQTT 5 PUBLISH packets written by [`crate::codec`] behind a
//! small versioned header (see `format.rs`); one message is stored once
//! however many queues refer to it. Every record is its own key, so each
//! write touches only what changed (no snapshots). Client ids and topics
//! are bytes inside keys, never file or folder names: no path traversal.
//!
//! # Durability rule
//!
//! A QoS 1/2 PUBLISH is acknowledged to its publisher only after the
//! [`Commit`] holding it has completed; the removal that follows a
//! subscriber's PUBACK/PUBCOMP is committed the same way, so a crash never
//! resends a QoS 2 message that was already completed [MQTT-4.3.3-10]
//! nor loses an acknowledged one. `doc/storage.md` has the whole story.

mod engine;
mod error;
mod format;
mod memory;
mod open;
mod redb_store;
#[cfg(feature = "sled")]
mod sled_store;
mod types;
mod writer;

pub use engine::{Backend, KvPairs, KvStore, KvWrite, Sealed};
pub use error::StoreError;
pub use memory::{MemoryBackend, MemoryStore};
pub use open::{BackendKind, StoreConfig};
pub use redb_store::{RedbBackend, RedbStore};
#[cfg(feature = "sled")]
pub use sled_store::{SledBackend, SledStore};
pub use types::{
    Batch, Dropped, IncomingRecord, InflightRecord, InflightState, Loaded, MessageId, Op,
    OpOutcome, QueuedDelivery, QueuedMessage, QuotaKind, QuotaPolicy, Quotas, Refusal, SessionKey,
    SessionRecord, Side, StoreStats, StoredMessage, StoredSession, SubscriptionRecord, Timestamp,
    WillRecord,
};
pub use writer::{Commit, StoreWriter, TrySubmitError, WriterConfig, WriterStats};

use crate::ByteStr;

/// Everything that must outlive a process, behind one object-safe trait
/// (`Arc<dyn Store>`).
///
/// Writes go through [`Store::apply`], normally called by the
/// [`StoreWriter`] thread only. Reads may come from any thread; they see
/// whole transactions only.
pub trait Store: std::fmt::Debug + Send + Sync + 'static {
    /// "memory", "redb" or "sled".
    fn backend_name(&self) -> &'static str;

    /// A fresh id for [`Op::PutMessage`]; never returned twice by one store,
    /// even across restarts.
    fn new_message_id(&self) -> MessageId;

    /// Applies `ops` in order, in one transaction: all of them are durable
    /// when this returns `Ok` (one fsync on a disk backend), none of them
    /// after an `Err`. One outcome per op; a refused op leaves the others
    /// applied.
    ///
    /// After an `Err` from the backend the store is poisoned: it refuses
    /// further writes until it is opened again.
    fn apply(&self, ops: &[Op]) -> Result<Vec<OpOutcome>, StoreError>;

    /// True when the store implements [`Store::stage`], [`Store::seal`]
    /// and [`Store::commit_sealed`], so the [`StoreWriter`] stages one
    /// transaction while the previous one commits; otherwise the writer
    /// applies each group of submissions with [`Store::apply`]. The
    /// default is false.
    fn pipelined(&self) -> bool {
        false
    }

    /// Applies `ops` in order to the store's open transaction (opened if
    /// there is none), without committing: their outcomes now, durable
    /// only once [`Store::seal`] and [`Store::commit_sealed`] have run. Ops
    /// staged later see these. For the pipelined [`StoreWriter`]: while one
    /// transaction commits, the next one is staged.
    ///
    /// The default applies and commits at once ([`Store::apply`]).
    fn stage(&self, ops: &[Op]) -> Result<Vec<OpOutcome>, StoreError> {
        self.apply(ops)
    }

    /// Ends the open transaction: its writes, to hand to
    /// [`Store::commit_sealed`]. Waits while an earlier sealed transaction
    /// is being committed (one at a time, in order). An `Err` (a poisoned
    /// store) discards the staged ops.
    ///
    /// The default has nothing to seal.
    fn seal(&self) -> Result<Sealed, StoreError> {
        Ok(Sealed::default())
    }

    /// Commits a sealed transaction (one fsync on a disk backend), possibly
    /// while the next one is staged from another thread. After an `Err`
    /// the store is poisoned.
    ///
    /// The default has nothing to commit.
    fn commit_sealed(&self, sealed: Sealed) -> Result<(), StoreError> {
        drop(sealed);
        Ok(())
    }

    /// The quotas in force.
    fn quotas(&self) -> Quotas;

    /// Changes the quotas; entries already stored are kept even if they
    /// exceed the new limits.
    fn set_quotas(&self, quotas: Quotas);

    /// Counters and sizes.
    fn stats(&self) -> StoreStats;

    /// Every client id with at least one record on `side`, in byte order.
    fn clients(&self, side: Side) -> Result<Vec<ByteStr>, StoreError>;

    /// One client's session record.
    fn session(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError>;

    /// Every session record of `side`, by client id.
    fn sessions(&self, side: Side) -> Result<Vec<SessionRecord>, StoreError>;

    /// One client's subscriptions, by filter.
    fn subscriptions(&self, key: &SessionKey) -> Result<Vec<SubscriptionRecord>, StoreError>;

    /// One client's outgoing in-flight messages, in the order they were
    /// first sent, ready to be resent with DUP set [MQTT-4.4.0-1].
    fn inflight(&self, key: &SessionKey) -> Result<Vec<InflightRecord>, StoreError>;

    /// One client's incoming QoS 2 packet ids awaiting PUBREL.
    fn incoming(&self, key: &SessionKey) -> Result<Vec<IncomingRecord>, StoreError>;

    /// One client's offline queue, oldest first.
    fn queue(&self, key: &SessionKey) -> Result<Vec<QueuedMessage>, StoreError>;

    /// Entries and bytes in one client's offline queue (from memory, no
    /// disk read).
    fn queue_len(&self, key: &SessionKey) -> (u64, u64);

    /// Every retained message, by topic.
    fn retained(&self) -> Result<Vec<StoredMessage>, StoreError>;

    /// Every pending will, by client id.
    fn wills(&self) -> Result<Vec<WillRecord>, StoreError>;

    /// Everything `side` holds: what a listener (or a client) reads once at
    /// start.
    fn load(&self, side: Side) -> Result<Loaded, StoreError>;
}
