//! The records a store keeps, the write operations ([`Op`]) that change
//! them and what each operation did ([`OpOutcome`]).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ByteStr;
use crate::codec::{LastWill, PacketId, ProtocolVersion, Publish, QoS, SubscriptionOptions};
use crate::topic::{TopicFilter, TopicName};

/// A wall-clock instant, stored as milliseconds since the Unix epoch.
///
/// Stored times are wall-clock (not monotonic) on purpose: they must keep
/// their meaning across a restart, so that MQTT 5 message expiry and session
/// expiry keep counting while the process is down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// The current wall-clock time (a clock read: the store's callers pass
    /// times in, this is a convenience for them).
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// `t`, rounded down to the millisecond; times before 1970 become the
    /// epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self(ms)
    }

    /// The instant `ms` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// This instant plus `secs` seconds (saturating).
    pub const fn plus_secs(self, secs: u32) -> Self {
        Self(self.0.saturating_add(secs as u64 * 1000))
    }

    /// Whole seconds from `earlier` to `self`; 0 if `earlier` is later.
    pub const fn secs_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0) / 1000
    }
}

/// Which side of the protocol a per-client record belongs to.
///
/// One store can hold both a listener's sessions and the state of
/// persistent clients the same program runs; the two never mix, even for
/// equal client ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// Records a listener keeps for the clients connected to it.
    Broker,
    /// Records a client connection keeps about itself (its own outgoing
    /// in-flight messages and offline publish queue, MyQtt's `offline_pub`).
    Client,
}

impl Side {
    pub(crate) const fn tag(self) -> u8 {
        match self {
            Self::Broker => b'b',
            Self::Client => b'c',
        }
    }

    pub(crate) const fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            b'b' => Some(Self::Broker),
            b'c' => Some(Self::Client),
            _ => None,
        }
    }
}

/// Names the owner of per-client records: a side and a client id.
///
/// The client id is only ever a byte string inside the database's keys; it
/// is never part of a file name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey {
    /// Listener side or client side.
    pub side: Side,
    /// The MQTT client identifier.
    pub client_id: ByteStr,
}

impl SessionKey {
    /// A listener's record about client `client_id`.
    pub fn broker(client_id: impl Into<ByteStr>) -> Self {
        Self {
            side: Side::Broker,
            client_id: client_id.into(),
        }
    }

    /// A client connection's record about itself, `client_id` being its own
    /// id.
    pub fn client(client_id: impl Into<ByteStr>) -> Self {
        Self {
            side: Side::Client,
            client_id: client_id.into(),
        }
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}:{:?}", self.side, self.client_id.as_str())
    }
}

/// Identifies one stored application message.
///
/// A message is stored once however many offline queues and in-flight
/// tables refer to it; it is deleted in the same transaction that drops its
/// last reference. Ids come from [`crate::store::Store::new_message_id`] and
/// are never reused by one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub(crate) u64);

impl MessageId {
    /// The id's value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// An application message as stored: the PUBLISH and when it was received.
///
/// On disk it is an MQTT 5 PUBLISH encoded by the [`crate::codec`] behind a
/// small header of the store's own. The PUBLISH's `packet_id`, `dup` and
/// `topic_alias` are not stored (they belong to one connection): a loaded
/// message has `packet_id: None` and `dup: false`, except in
/// [`InflightRecord`]s, where they are set for the resend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The message; its topic must be set (not only an alias).
    pub publish: Publish,
    /// When the listener (or, client side, the program) received it: MQTT 5
    /// message expiry counts from here, across restarts.
    pub received_at: Timestamp,
}

impl StoredMessage {
    /// A stored message for `publish` received at `received_at`.
    pub fn new(publish: Publish, received_at: Timestamp) -> Self {
        Self {
            publish,
            received_at,
        }
    }

    /// The Message Expiry Interval still to run at `now`: `None` when the
    /// message does not expire, `Some(0)` when it has expired. A forwarded
    /// PUBLISH carries this reduced value [MQTT-3.3.2-6].
    pub fn remaining_expiry(&self, now: Timestamp) -> Option<u32> {
        let interval = self.publish.properties.message_expiry_interval?;
        let waited = now.secs_since(self.received_at);
        Some(u32::try_from(u64::from(interval).saturating_sub(waited)).unwrap_or(0))
    }

    /// True when the message has a Message Expiry Interval that has run out
    /// at `now`; such a message must not be sent [MQTT-3.3.2-5].
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.remaining_expiry(now) == Some(0)
    }
}

/// The part of a session that is not a subscription, a message or a packet
/// id: one small record per client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Whose session.
    pub key: SessionKey,
    /// The protocol level the client last connected with.
    pub protocol: ProtocolVersion,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires
    /// (MQTT 5.0 §3.1.2.11.2). 3.1.1 persistent sessions use `u32::MAX`.
    pub expiry_interval: u32,
    /// When the client disconnected; `None` while it is connected. Session
    /// expiry counts from here, across restarts.
    pub disconnected_at: Option<Timestamp>,
}

impl SessionRecord {
    /// When the session expires: `None` while connected or when the
    /// interval is `u32::MAX`.
    pub fn expires_at(&self) -> Option<Timestamp> {
        if self.expiry_interval == u32::MAX {
            return None;
        }
        self.disconnected_at
            .map(|t| t.plus_secs(self.expiry_interval))
    }
}

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// The filter, shared-subscription prefix included.
    pub filter: TopicFilter,
    /// The options it was made with.
    pub options: SubscriptionOptions,
    /// The MQTT 5 Subscription Identifier, if one was given.
    pub identifier: Option<u32>,
}

/// Where an outgoing QoS 1 or 2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InflightState {
    /// QoS 1 PUBLISH sent, PUBACK awaited.
    AwaitingPubAck,
    /// QoS 2 PUBLISH sent, PUBREC awaited.
    AwaitingPubRec,
    /// QoS 2 PUBREC received and PUBREL sent, PUBCOMP awaited. The message
    /// itself is no longer needed: only the packet id is kept.
    AwaitingPubComp,
}

impl InflightState {
    pub(crate) const fn tag(self) -> u8 {
        match self {
            Self::AwaitingPubAck => 1,
            Self::AwaitingPubRec => 2,
            Self::AwaitingPubComp => 3,
        }
    }

    pub(crate) const fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::AwaitingPubAck),
            2 => Some(Self::AwaitingPubRec),
            3 => Some(Self::AwaitingPubComp),
            _ => None,
        }
    }
}

/// An outgoing QoS 1/2 message awaiting its acknowledgement, as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InflightRecord {
    /// The packet id it was sent with.
    pub packet_id: PacketId,
    /// What is awaited.
    pub state: InflightState,
    /// The message with `packet_id` set and `dup` true, ready to be resent
    /// [MQTT-4.4.0-1]; `None` in [`InflightState::AwaitingPubComp`].
    pub message: Option<StoredMessage>,
    /// The message's id, `None` in [`InflightState::AwaitingPubComp`].
    pub message_id: Option<MessageId>,
}

/// An incoming QoS 2 packet id whose PUBREL has not come yet: a PUBLISH with
/// this id must not be delivered again [MQTT-4.3.3-10].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncomingRecord {
    /// The packet id.
    pub packet_id: PacketId,
    /// When the PUBLISH arrived.
    pub received_at: Timestamp,
}

/// One entry of an offline queue, as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Its position: increasing in queue order, unique in the store. Pass it
    /// to [`Op::Dequeue`].
    pub seq: u64,
    /// The stored message it refers to.
    pub message_id: MessageId,
    /// The message.
    pub message: StoredMessage,
    /// How it is delivered, as decided when it was queued; `None` for an
    /// entry queued without one (or written by a store format before it was
    /// kept).
    pub delivery: Option<QueuedDelivery>,
}

/// How one queued message is delivered to its client: what the listener
/// decided when it matched the client's subscriptions, kept with the queue
/// entry so that a restart delivers it the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueuedDelivery {
    /// The delivery QoS: the lower of the message's QoS and the matching
    /// subscription's granted QoS [MQTT-3.8.4-8].
    pub qos: QoS,
    /// The RETAIN flag it is delivered with (Retain As Published
    /// [MQTT-3.3.1-12], [MQTT-3.3.1-13]).
    pub retain: bool,
    /// MQTT 5 subscription identifiers of the matching subscriptions
    /// [MQTT-3.3.4-3].
    pub subscription_ids: Vec<u32>,
}

/// A will message waiting to be published (MQTT 5 Will Delay Interval, or
/// a will kept across a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillRecord {
    /// The client whose will it is (listener side).
    pub client_id: ByteStr,
    /// The will.
    pub will: LastWill,
    /// When it is due to be published.
    pub due_at: Timestamp,
}

/// Everything a store holds for one client, as [`crate::store::Store::load`]
/// returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Whose records these are.
    pub key: SessionKey,
    /// The session record, if one was stored (a client-side store may hold
    /// only a queue).
    pub session: Option<SessionRecord>,
    /// Subscriptions, in filter byte order.
    pub subscriptions: Vec<SubscriptionRecord>,
    /// Outgoing in-flight messages in the order they were first sent.
    pub inflight: Vec<InflightRecord>,
    /// Incoming QoS 2 packet ids awaiting PUBREL, by packet id.
    pub incoming: Vec<IncomingRecord>,
    /// The offline queue, oldest first.
    pub queue: Vec<QueuedMessage>,
}

/// Everything one side of a store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Per-client records, by client id.
    pub sessions: Vec<StoredSession>,
    /// Retained messages, by topic (listener side only; empty client side).
    pub retained: Vec<StoredMessage>,
    /// Pending wills, by client id (listener side only).
    pub wills: Vec<WillRecord>,
}

/// One write operation. A list of them is applied in one transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Creates or replaces a session record.
    PutSession(SessionRecord),
    /// Deletes a client's session record, subscriptions, in-flight messages,
    /// incoming packet ids and offline queue (not its will).
    RemoveSession(SessionKey),
    /// Creates or replaces one subscription.
    PutSubscription {
        /// Whose.
        key: SessionKey,
        /// The subscription.
        subscription: SubscriptionRecord,
    },
    /// Deletes one subscription.
    RemoveSubscription {
        /// Whose.
        key: SessionKey,
        /// Which.
        filter: TopicFilter,
    },
    /// Stores an application message under an id from
    /// [`crate::store::Store::new_message_id`]. It is kept while an
    /// [`Op::Enqueue`] or [`Op::PutInflight`] refers to it; one that nothing
    /// refers to at the end of the transaction is not kept.
    PutMessage {
        /// Its id.
        id: MessageId,
        /// The message.
        message: StoredMessage,
    },
    /// Appends a stored message to a client's offline queue; subject to the
    /// [`Quotas`].
    Enqueue {
        /// Whose queue.
        key: SessionKey,
        /// Which message.
        message: MessageId,
        /// How it is to be delivered (kept with the entry); `None`: the
        /// reader decides.
        delivery: Option<QueuedDelivery>,
    },
    /// Removes one entry from a client's offline queue.
    Dequeue {
        /// Whose queue.
        key: SessionKey,
        /// The entry's [`QueuedMessage::seq`] (or [`OpOutcome::Enqueued`]'s).
        seq: u64,
    },
    /// Removes the oldest entry of `key`'s queue that refers to
    /// `message` (a listener knows which message it hands to a client, not
    /// the entry's sequence number). [`OpOutcome::NotFound`] if none.
    DequeueMessage {
        /// The queue's session.
        key: SessionKey,
        /// The message the entry refers to.
        message: MessageId,
    },
    /// Creates or updates an outgoing in-flight message. A packet id seen
    /// for the first time takes the next place in send order; an update
    /// (a state change) keeps its place.
    PutInflight {
        /// Whose.
        key: SessionKey,
        /// The packet id.
        packet_id: PacketId,
        /// What is awaited.
        state: InflightState,
        /// The message; required unless `state` is `AwaitingPubComp`, and
        /// dropped in that state.
        message: Option<MessageId>,
    },
    /// Deletes an outgoing in-flight message (PUBACK or PUBCOMP received).
    RemoveInflight {
        /// Whose.
        key: SessionKey,
        /// The packet id.
        packet_id: PacketId,
    },
    /// Records an incoming QoS 2 packet id awaiting PUBREL.
    PutIncoming {
        /// Whose.
        key: SessionKey,
        /// The record.
        record: IncomingRecord,
    },
    /// Deletes an incoming QoS 2 packet id (PUBREL received).
    RemoveIncoming {
        /// Whose.
        key: SessionKey,
        /// The packet id.
        packet_id: PacketId,
    },
    /// Creates or replaces the retained message of its topic; subject to
    /// [`Quotas::max_store_bytes`]. (A retained PUBLISH with an empty
    /// payload deletes: send [`Op::RemoveRetained`] for it.)
    PutRetained(StoredMessage),
    /// Deletes the retained message of a topic.
    RemoveRetained(TopicName),
    /// Creates or replaces a client's pending will.
    PutWill(Box<WillRecord>),
    /// Deletes a client's pending will.
    RemoveWill(ByteStr),
}

/// A list of [`Op`]s built with short method calls; what a producer submits
/// to the [`crate::store::StoreWriter`] as one atomic unit.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The operations, applied in order.
    pub ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds any operation.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Adds [`Op::PutMessage`].
    pub fn put_message(&mut self, id: MessageId, message: StoredMessage) -> &mut Self {
        self.push(Op::PutMessage { id, message })
    }

    /// Adds [`Op::Enqueue`] without a [`QueuedDelivery`].
    pub fn enqueue(&mut self, key: SessionKey, message: MessageId) -> &mut Self {
        self.push(Op::Enqueue {
            key,
            message,
            delivery: None,
        })
    }

    /// Adds [`Op::Enqueue`] with how the entry is to be delivered.
    pub fn enqueue_with(
        &mut self,
        key: SessionKey,
        message: MessageId,
        delivery: QueuedDelivery,
    ) -> &mut Self {
        self.push(Op::Enqueue {
            key,
            message,
            delivery: Some(delivery),
        })
    }

    /// Adds [`Op::Dequeue`].
    pub fn dequeue(&mut self, key: SessionKey, seq: u64) -> &mut Self {
        self.push(Op::Dequeue { key, seq })
    }

    /// Adds [`Op::PutInflight`].
    pub fn put_inflight(
        &mut self,
        key: SessionKey,
        packet_id: PacketId,
        state: InflightState,
        message: Option<MessageId>,
    ) -> &mut Self {
        self.push(Op::PutInflight {
            key,
            packet_id,
            state,
            message,
        })
    }

    /// Adds [`Op::RemoveInflight`].
    pub fn remove_inflight(&mut self, key: SessionKey, packet_id: PacketId) -> &mut Self {
        self.push(Op::RemoveInflight { key, packet_id })
    }

    /// Adds [`Op::PutSession`].
    pub fn put_session(&mut self, session: SessionRecord) -> &mut Self {
        self.push(Op::PutSession(session))
    }

    /// Adds [`Op::RemoveSession`].
    pub fn remove_session(&mut self, key: SessionKey) -> &mut Self {
        self.push(Op::RemoveSession(key))
    }

    /// Adds [`Op::PutSubscription`].
    pub fn put_subscription(
        &mut self,
        key: SessionKey,
        subscription: SubscriptionRecord,
    ) -> &mut Self {
        self.push(Op::PutSubscription { key, subscription })
    }

    /// Adds [`Op::RemoveSubscription`].
    pub fn remove_subscription(&mut self, key: SessionKey, filter: TopicFilter) -> &mut Self {
        self.push(Op::RemoveSubscription { key, filter })
    }

    /// Adds [`Op::PutIncoming`].
    pub fn put_incoming(&mut self, key: SessionKey, record: IncomingRecord) -> &mut Self {
        self.push(Op::PutIncoming { key, record })
    }

    /// Adds [`Op::RemoveIncoming`].
    pub fn remove_incoming(&mut self, key: SessionKey, packet_id: PacketId) -> &mut Self {
        self.push(Op::RemoveIncoming { key, packet_id })
    }

    /// Adds [`Op::PutRetained`].
    pub fn put_retained(&mut self, message: StoredMessage) -> &mut Self {
        self.push(Op::PutRetained(message))
    }

    /// Adds [`Op::RemoveRetained`].
    pub fn remove_retained(&mut self, topic: TopicName) -> &mut Self {
        self.push(Op::RemoveRetained(topic))
    }

    /// Adds [`Op::PutWill`].
    pub fn put_will(&mut self, will: WillRecord) -> &mut Self {
        self.push(Op::PutWill(Box::new(will)))
    }

    /// Adds [`Op::RemoveWill`].
    pub fn remove_will(&mut self, client_id: ByteStr) -> &mut Self {
        self.push(Op::RemoveWill(client_id))
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there is no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl From<Vec<Op>> for Batch {
    fn from(ops: Vec<Op>) -> Self {
        Self { ops }
    }
}

/// What one [`Op`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    /// Applied.
    Done,
    /// Nothing to remove: the record was not there (removals are
    /// idempotent).
    NotFound,
    /// [`Op::Enqueue`] applied: the entry's place, and the entries the
    /// quota policy dropped to make room (each one is a dropped message the
    /// listener reports to its hooks).
    Enqueued {
        /// The new entry's [`QueuedMessage::seq`].
        seq: u64,
        /// Entries removed by [`QuotaPolicy::DropOldest`].
        dropped: Vec<Dropped>,
    },
    /// Not applied; the rest of the list was.
    Refused(Refusal),
}

impl OpOutcome {
    /// The queue entries this op dropped to make room (each one a dropped
    /// message to report); empty for most ops.
    pub fn dropped(&self) -> &[Dropped] {
        match self {
            Self::Enqueued { dropped, .. } | Self::Refused(Refusal::Quota { dropped, .. }) => {
                dropped
            }
            _ => &[],
        }
    }

    /// True unless the op was refused.
    pub fn is_applied(&self) -> bool {
        !matches!(self, Self::Refused(_))
    }
}

/// Why an [`Op`] was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A quota is full and the policy is [`QuotaPolicy::RefuseNew`], or
    /// [`QuotaPolicy::DropOldest`] could not make enough room.
    Quota {
        /// The quota that is full.
        kind: QuotaKind,
        /// Entries DropOldest removed before finding that the new one could
        /// not fit all the same (rare: when other references keep the
        /// dropped entries' messages stored). Usually empty.
        dropped: Vec<Dropped>,
    },
    /// The operation names a message id the store does not hold.
    UnknownMessage(MessageId),
    /// The operation is malformed (a caller bug), e.g. a message without a
    /// topic or an in-flight QoS 1 entry without a message.
    Invalid(&'static str),
}

/// Which quota decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// [`Quotas::max_queued_messages`].
    QueuedMessages,
    /// [`Quotas::max_queued_bytes`].
    QueuedBytes,
    /// [`Quotas::max_store_bytes`].
    StoreBytes,
}

/// A queue entry removed by [`QuotaPolicy::DropOldest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Whose queue it was in.
    pub key: SessionKey,
    /// The entry's place.
    pub seq: u64,
    /// The message it referred to (deleted with it when nothing else
    /// refers to it).
    pub message: MessageId,
    /// The quota that made room.
    pub reason: QuotaKind,
}

/// What to do with a new queue entry that would exceed a quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum QuotaPolicy {
    /// Refuse the new entry ([`Refusal::Quota`]). The default: a store never
    /// silently loses something it already holds.
    #[default]
    RefuseNew,
    /// Drop the oldest entries (of that client's queue for a per-client
    /// quota, of all queues for the store quota) until the new one fits.
    DropOldest,
}

/// Limits on what a store holds. `0` means "no limit" everywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Quotas {
    /// Most entries in one client's offline queue. Default 0 (no limit).
    pub max_queued_messages: u64,
    /// Most bytes of stored messages one client's offline queue refers to
    /// (a message shared by several queues counts in each). Default 0.
    pub max_queued_bytes: u64,
    /// Most bytes of messages and retained messages in the store, each
    /// stored message counted once. Checked when a queue entry or a
    /// retained message is added; in-flight messages (bounded by Receive
    /// Maximum) are never refused. Default 0.
    pub max_store_bytes: u64,
    /// What happens past a queue quota. A retained message past
    /// `max_store_bytes` is always refused. Default
    /// [`QuotaPolicy::RefuseNew`].
    pub policy: QuotaPolicy,
}

/// Counters and sizes of a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Durable syncs to disk (one per commit for redb and sled, 0 for
    /// memory).
    pub fsyncs: u64,
    /// Operations applied.
    pub ops: u64,
    /// Key writes (puts and deletes) handed to the backend: what the
    /// operations left once coalesced within their transactions.
    pub writes: u64,
    /// Queue entries dropped by [`QuotaPolicy::DropOldest`].
    pub dropped: u64,
    /// Operations refused by a quota.
    pub refused: u64,
    /// Stored messages now held.
    pub messages: u64,
    /// Their bytes, as stored.
    pub message_bytes: u64,
    /// Offline queue entries now held, all clients together.
    pub queued: u64,
    /// Retained messages now held.
    pub retained: u64,
    /// Their bytes, as stored.
    pub retained_bytes: u64,
}
