//! [`SessionState`]: what outlives a network connection for a persistent
//! session (MQTT 3.1.1 §4.1, MQTT 5.0 §4.1 "Session State").
//!
//! It holds the packet-id allocator, the outgoing QoS 1/2 messages in
//! flight (in send order), the incoming QoS 2 packet ids not yet released,
//! and the queue of messages waiting for a send window. A storage layer
//! reads it with [`SessionState::snapshot`] and rebuilds it with
//! [`SessionState::restore`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::codec::{PacketId, Publish, QoS};

use super::SessionError;

/// The default maximum number of messages waiting in a session's queue
/// (the same figure as mosquitto's `max_queued_messages`).
pub const DEFAULT_MAX_QUEUE_LEN: usize = 1000;

// Evaluated at compile time: 1 is non-zero.
const FIRST_PACKET_ID: PacketId = match PacketId::new(1) {
    Some(id) => id,
    None => panic!("1 is a valid packet id"),
};

/// Names one application message handed to a session, so that the events
/// about it ([`super::Event::PublishAcked`], [`super::Event::PublishDropped`])
/// can be matched with the call that queued it.
///
/// Tickets are unique within one [`SessionState`] and increase in the order
/// messages were handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

impl Ticket {
    /// A ticket with the given number (for a storage layer restoring one).
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// The ticket's number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A message waiting in the queue for a send window (or for a connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The message's ticket.
    pub ticket: Ticket,
    /// The message; no packet id, DUP 0, no topic alias.
    pub publish: Publish,
    /// When the message entered the session: its MQTT 5 Message Expiry
    /// Interval counts from here [MQTT-3.3.2-5], [MQTT-3.3.2-6].
    pub queued_at: Instant,
}

impl QueuedMessage {
    /// True once the message's expiry interval has passed at `now`
    /// [MQTT-3.3.2-5]. Messages without an interval never expire.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.publish
            .properties
            .message_expiry_interval
            .is_some_and(|secs| {
                now.saturating_duration_since(self.queued_at)
                    >= Duration::from_secs(u64::from(secs))
            })
    }
}

/// One entry of the outgoing inflight table: a QoS 1 or QoS 2 flow that
/// this side started and the peer has not finished.
// Most entries are `Publish`; boxing it would cost an allocation per message
// to save space only on the short-lived `Release` entries.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// PUBLISH sent, awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
    ///
    /// `publish` is the stored copy: it carries its packet id, DUP 0, the
    /// real topic (never a topic alias [MQTT-3.3.2-7]) and the Message
    /// Expiry Interval as it was queued.
    Publish {
        /// The message's ticket.
        ticket: Ticket,
        /// The stored message (`publish.packet_id` is `Some`).
        publish: Publish,
        /// When the message entered the session.
        queued_at: Instant,
    },
    /// PUBREL sent, awaiting PUBCOMP (QoS 2). The message itself is with the
    /// peer already, so only its packet id is kept.
    Release {
        /// The message's ticket.
        ticket: Ticket,
        /// The packet id the PUBREL carries.
        packet_id: PacketId,
    },
}

impl Outgoing {
    /// The packet id of the flow.
    pub fn packet_id(&self) -> Option<PacketId> {
        match self {
            Self::Publish { publish, .. } => publish.packet_id,
            Self::Release { packet_id, .. } => Some(*packet_id),
        }
    }

    /// The ticket of the message.
    pub fn ticket(&self) -> Ticket {
        match self {
            Self::Publish { ticket, .. } | Self::Release { ticket, .. } => *ticket,
        }
    }
}

/// Where an incoming QoS 2 message is in its flow (MQTT 5.0 §4.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncomingQos2 {
    /// Delivered to the application, which has not acknowledged it yet
    /// (manual acknowledgement): no PUBREC sent. A repeat PUBLISH with this
    /// id is not delivered again [MQTT-4.3.3-10].
    ///
    /// These entries belong to one connection: the application has not taken
    /// ownership of the message [MQTT-4.3.3-8], so attaching the state to a
    /// new connection forgets them and the peer's resent PUBLISH is delivered
    /// afresh.
    AwaitingAck,
    /// PUBREC sent, PUBREL not yet received: a repeat PUBLISH is answered
    /// with PUBREC and not delivered [MQTT-4.3.3-10].
    AwaitingRelease,
}

/// A plain-data copy of a [`SessionState`], for a storage layer.
///
/// [`SessionState::restore`] checks it before rebuilding a state from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// Where the packet-id allocator resumes its search.
    pub next_packet_id: PacketId,
    /// The number the next [`Ticket`] gets.
    pub next_ticket: u64,
    /// Outgoing flows in flight, in send order (a flow moves to the end when
    /// its PUBREL is sent, so PUBRELs are resent in PUBREC order
    /// [MQTT-4.6.0-4]).
    pub outgoing: Vec<Outgoing>,
    /// Incoming QoS 2 packet ids not yet released, in order of reception.
    pub incoming: Vec<(PacketId, IncomingQos2)>,
    /// Messages waiting for a send window, oldest first.
    pub queue: Vec<QueuedMessage>,
    /// The queue's maximum length.
    pub max_queue_len: usize,
    /// How many messages this session discarded without delivering them.
    pub dropped: u64,
}

/// A hash map keyed by packet id (see [`crate::hash::IdHasher`]).
pub(crate) type IdMap<V> = crate::hash::IdMap<PacketId, V>;

/// A queue that is one pointer while it holds nothing: its `VecDeque` is
/// allocated by the first push and given back by [`Self::release_empty`].
#[allow(clippy::box_collection)] // a pointer, not a 32-byte `VecDeque`
#[derive(Debug, Clone)]
pub(crate) struct LazyDeque<T>(Option<Box<VecDeque<T>>>);

impl<T> LazyDeque<T> {
    pub(crate) fn new() -> Self {
        Self(None)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(VecDeque::is_empty)
    }

    pub(crate) fn push_back(&mut self, item: T) {
        self.0.get_or_insert_default().push_back(item);
    }

    pub(crate) fn pop_front(&mut self) -> Option<T> {
        self.0.as_deref_mut().and_then(VecDeque::pop_front)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.as_deref().map_or(0, VecDeque::len)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.0.as_deref().map_or(0, VecDeque::capacity)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.as_deref().into_iter().flat_map(VecDeque::iter)
    }

    pub(crate) fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        if let Some(q) = self.0.as_deref_mut() {
            q.retain(keep);
        }
    }

    pub(crate) fn front(&self) -> Option<&T> {
        self.0.as_deref().and_then(VecDeque::front)
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0
            .as_deref_mut()
            .into_iter()
            .flat_map(VecDeque::iter_mut)
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut().and_then(VecDeque::front_mut)
    }

    /// Drops everything queued (the memory stays until released).
    pub(crate) fn clear(&mut self) {
        if let Some(q) = self.0.as_deref_mut() {
            q.clear();
        }
    }

    /// True when the queue is empty but still allocated.
    pub(crate) fn holds_empty(&self) -> bool {
        self.0.as_deref().is_some_and(VecDeque::is_empty)
    }

    /// Takes everything queued, giving back the memory.
    pub(crate) fn take(&mut self) -> VecDeque<T> {
        self.0.take().map(|q| *q).unwrap_or_default()
    }

    /// Gives back the memory of an empty queue.
    pub(crate) fn release_empty(&mut self) {
        if self.holds_empty() {
            self.0 = None;
        }
    }
}

/// A map keyed by packet id that iterates in insertion order, and can move
/// an entry to the end.
// Design: `order` maps an increasing sequence number to the id, `by_id` the
// id to its sequence number and value; removal and move are O(log n). Both
// live in one box allocated by the first entry and dropped by `shrink_idle`
// once empty: most sessions are idle most of the time, and an empty map then
// costs one pointer instead of two tables.
#[derive(Debug, Clone)]
pub(crate) struct IdOrderMap<V> {
    inner: Option<Box<IdOrderInner<V>>>,
}

#[derive(Debug, Clone)]
struct IdOrderInner<V> {
    next_seq: u64,
    by_id: IdMap<(u64, V)>,
    order: BTreeMap<u64, PacketId>,
}

impl<V> Default for IdOrderMap<V> {
    fn default() -> Self {
        Self { inner: None }
    }
}

impl<V> IdOrderMap<V> {
    /// True when the map is empty but still holds memory from earlier
    /// entries.
    pub(crate) fn holds_idle_memory(&self) -> bool {
        self.inner.is_some() && self.is_empty()
    }

    /// Gives back the memory of an empty map (a `HashMap` keeps its table
    /// and a `BTreeMap` its root node after the last removal).
    pub(crate) fn shrink_idle(&mut self) {
        if self.is_empty() {
            self.inner = None;
        }
    }

    fn inner_mut(&mut self) -> &mut IdOrderInner<V> {
        self.inner.get_or_insert_with(|| {
            Box::new(IdOrderInner {
                next_seq: 0,
                by_id: IdMap::default(),
                order: BTreeMap::new(),
            })
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |m| m.by_id.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn contains(&self, id: PacketId) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|m| m.by_id.contains_key(&id))
    }

    pub(crate) fn get(&self, id: PacketId) -> Option<&V> {
        self.inner.as_ref()?.by_id.get(&id).map(|(_, v)| v)
    }

    pub(crate) fn get_mut(&mut self, id: PacketId) -> Option<&mut V> {
        self.inner.as_mut()?.by_id.get_mut(&id).map(|(_, v)| v)
    }

    /// Inserts at the end; an existing entry with the same id is replaced
    /// and moved to the end.
    pub(crate) fn push_back(&mut self, id: PacketId, value: V) {
        let m = self.inner_mut();
        let seq = m.next_seq;
        m.next_seq += 1;
        if let Some((old_seq, _)) = m.by_id.insert(id, (seq, value)) {
            m.order.remove(&old_seq);
        }
        m.order.insert(seq, id);
    }

    pub(crate) fn remove(&mut self, id: PacketId) -> Option<V> {
        let m = self.inner.as_mut()?;
        let (seq, value) = m.by_id.remove(&id)?;
        m.order.remove(&seq);
        Some(value)
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.inner.iter().flat_map(|m| m.order.values().copied())
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (PacketId, &V)> + '_ {
        self.inner.iter().flat_map(|m| {
            m.order
                .values()
                .filter_map(|id| m.by_id.get(id).map(|(_, v)| (*id, v)))
        })
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let Some(m) = self.inner.as_mut() else {
            return;
        };
        let order = &mut m.order;
        m.by_id.retain(|_, (seq, v)| {
            let k = keep(v);
            if !k {
                order.remove(seq);
            }
            k
        });
    }

    /// Removes every entry and returns them in order.
    pub(crate) fn take_all(&mut self) -> Vec<(PacketId, V)> {
        let Some(m) = self.inner.take() else {
            return Vec::new();
        };
        let IdOrderInner {
            order, mut by_id, ..
        } = *m;
        order
            .into_values()
            .filter_map(|id| by_id.remove(&id).map(|(_, v)| (id, v)))
            .collect()
    }

    pub(crate) fn clear(&mut self) {
        if let Some(m) = self.inner.as_mut() {
            m.by_id.clear();
            m.order.clear();
        }
    }
}

/// The state of an MQTT session that outlives a network connection.
///
/// A [`super::Session`] owns one while a connection is up; detach it with
/// [`super::Session::into_state`] and attach it to the next connection of
/// the same client. While detached, a server can still
/// [`enqueue`](Self::enqueue) messages for the client.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub(crate) next_packet_id: PacketId,
    pub(crate) next_ticket: u64,
    pub(crate) outgoing: IdOrderMap<Outgoing>,
    pub(crate) incoming: IdOrderMap<IncomingQos2>,
    /// One pointer while empty (most sessions, most of the time).
    pub(crate) queue: LazyDeque<QueuedMessage>,
    pub(crate) max_queue_len: usize,
    pub(crate) dropped: u64,
}

impl Default for SessionState {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_QUEUE_LEN)
    }
}

impl SessionState {
    /// An empty session whose queue holds at most `max_queue_len` messages.
    ///
    /// `0` means no message ever waits: one that cannot be sent at once is
    /// dropped. The default ([`SessionState::default`]) is
    /// [`DEFAULT_MAX_QUEUE_LEN`].
    pub fn new(max_queue_len: usize) -> Self {
        Self {
            next_packet_id: FIRST_PACKET_ID,
            next_ticket: 0,
            outgoing: IdOrderMap::default(),
            incoming: IdOrderMap::default(),
            queue: LazyDeque::new(),
            max_queue_len,
            dropped: 0,
        }
    }

    /// True when nothing is in flight, pending or queued.
    pub fn is_empty(&self) -> bool {
        self.outgoing.is_empty() && self.incoming.is_empty() && self.queue.is_empty()
    }

    /// Outgoing QoS 1/2 flows in flight, in send order (`.rev()` starts
    /// with the latest).
    pub fn outgoing(&self) -> impl DoubleEndedIterator<Item = &Outgoing> + '_ {
        self.outgoing.iter().map(|(_, o)| o)
    }

    /// How many outgoing QoS 1/2 flows are in flight.
    pub fn outgoing_len(&self) -> usize {
        self.outgoing.len()
    }

    /// Incoming QoS 2 packet ids not yet released, in order of reception.
    pub fn incoming_qos2(&self) -> impl Iterator<Item = (PacketId, IncomingQos2)> + '_ {
        self.incoming.iter().map(|(id, s)| (id, *s))
    }

    /// Messages waiting for a send window, oldest first.
    pub fn queued(&self) -> impl Iterator<Item = &QueuedMessage> + '_ {
        self.queue.iter()
    }

    /// How many messages wait in the queue.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// True when an empty table or queue of this state still holds memory
    /// from earlier traffic ([`shrink_idle`](Self::shrink_idle) gives it
    /// back).
    pub fn holds_idle_memory(&self) -> bool {
        self.outgoing.holds_idle_memory()
            || self.incoming.holds_idle_memory()
            || self.queue.holds_empty()
    }

    /// Gives back the memory of the tables and the queue that are empty, so
    /// that an idle session costs only its fixed size. Entries are kept.
    pub fn shrink_idle(&mut self) {
        self.outgoing.shrink_idle();
        self.incoming.shrink_idle();
        self.queue.release_empty();
    }

    /// The queue's maximum length.
    pub fn max_queue_len(&self) -> usize {
        self.max_queue_len
    }

    /// Changes the queue's maximum length; messages already queued stay.
    pub fn set_max_queue_len(&mut self, max_queue_len: usize) {
        self.max_queue_len = max_queue_len;
    }

    /// How many messages the session discarded without delivering them:
    /// queue full, expired, too large for the peer, or session discarded.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Queues a message for the client this session belongs to, while no
    /// connection is attached (a connected [`super::Session`] takes messages
    /// through [`super::Session::publish`]).
    ///
    /// Fails with [`SessionError::QueueFull`] (the drop is counted) or
    /// [`SessionError::EmptyTopic`].
    pub fn enqueue(&mut self, now: Instant, publish: Publish) -> Result<Ticket, SessionError> {
        let message = self.admit(now, publish)?;
        self.push_queued(message, false)
    }

    /// Checks and normalises a message handed to the session, giving it a
    /// ticket.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        mut publish: Publish,
    ) -> Result<QueuedMessage, SessionError> {
        if publish.topic.is_empty() {
            return Err(SessionError::EmptyTopic);
        }
        publish.packet_id = None;
        publish.dup = false;
        // Aliases belong to one connection; the session assigns its own
        // [MQTT-3.3.2-7].
        if publish.properties.topic_alias.is_some() {
            publish.properties.make_mut().topic_alias = None;
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        Ok(QueuedMessage {
            ticket,
            publish,
            queued_at: now,
        })
    }

    /// Appends to the queue unless it is full; `bypass_limit` is for a
    /// message that is about to be sent at once.
    pub(crate) fn push_queued(
        &mut self,
        message: QueuedMessage,
        bypass_limit: bool,
    ) -> Result<Ticket, SessionError> {
        if !bypass_limit && self.queue.len() >= self.max_queue_len {
            self.dropped += 1;
            return Err(SessionError::QueueFull {
                max: self.max_queue_len,
            });
        }
        let ticket = message.ticket;
        self.queue.push_back(message);
        Ok(ticket)
    }

    /// The next packet id that is neither in the outgoing inflight table nor
    /// `busy`, searching upwards from the last one handed out and wrapping
    /// from 65535 to 1 ([MQTT-2.3.1-2] (3.1.1) / [MQTT-2.2.1-3] (5.0)). The search resumes after it only once
    /// [`Self::mark_packet_id_used`] is called.
    pub(crate) fn free_packet_id(&self, busy: impl Fn(PacketId) -> bool) -> Option<PacketId> {
        let start = self.next_packet_id;
        let mut id = start;
        loop {
            if !self.outgoing.contains(id) && !busy(id) {
                return Some(id);
            }
            id = id.next();
            if id == start {
                return None;
            }
        }
    }

    /// Moves the allocator past `id`, which is now in use.
    pub(crate) fn mark_packet_id_used(&mut self, id: PacketId) {
        self.next_packet_id = id.next();
    }

    /// [`Self::free_packet_id`] and [`Self::mark_packet_id_used`] in one.
    pub(crate) fn allocate_packet_id(
        &mut self,
        busy: impl Fn(PacketId) -> bool,
    ) -> Option<PacketId> {
        let id = self.free_packet_id(busy)?;
        self.mark_packet_id_used(id);
        Some(id)
    }

    /// A plain-data copy of the state, for a storage layer.
    pub fn snapshot(&self) -> SessionSnapshot {
        SessionSnapshot {
            next_packet_id: self.next_packet_id,
            next_ticket: self.next_ticket,
            outgoing: self.outgoing().cloned().collect(),
            incoming: self.incoming_qos2().collect(),
            queue: self.queue.iter().cloned().collect(),
            max_queue_len: self.max_queue_len,
            dropped: self.dropped,
        }
    }

    /// Rebuilds a state from a snapshot, checking that it is consistent:
    /// every outgoing PUBLISH is QoS 1 or 2 and has a packet id, no packet id
    /// appears twice in a table, and no ticket is at or above `next_ticket`.
    pub fn restore(snapshot: SessionSnapshot) -> Result<Self, SessionError> {
        let mut state = Self::new(snapshot.max_queue_len);
        state.next_packet_id = snapshot.next_packet_id;
        state.next_ticket = snapshot.next_ticket;
        state.dropped = snapshot.dropped;
        let check_ticket = |t: Ticket| {
            if t.0 >= snapshot.next_ticket {
                Err(SessionError::InvalidSnapshot(
                    "a ticket is not below next_ticket",
                ))
            } else {
                Ok(())
            }
        };
        for entry in snapshot.outgoing {
            check_ticket(entry.ticket())?;
            if let Outgoing::Publish { publish, .. } = &entry
                && publish.qos == QoS::AtMostOnce
            {
                return Err(SessionError::InvalidSnapshot(
                    "an outgoing PUBLISH has QoS 0",
                ));
            }
            let id = entry.packet_id().ok_or(SessionError::InvalidSnapshot(
                "an outgoing PUBLISH has no packet id",
            ))?;
            if state.outgoing.contains(id) {
                return Err(SessionError::InvalidSnapshot(
                    "an outgoing packet id appears twice",
                ));
            }
            state.outgoing.push_back(id, entry);
        }
        for (id, s) in snapshot.incoming {
            if state.incoming.contains(id) {
                return Err(SessionError::InvalidSnapshot(
                    "an incoming packet id appears twice",
                ));
            }
            state.incoming.push_back(id, s);
        }
        for message in snapshot.queue {
            check_ticket(message.ticket)?;
            if message.publish.topic.is_empty() {
                return Err(SessionError::InvalidSnapshot(
                    "a queued message has no topic",
                ));
            }
            state.queue.push_back(message);
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::PublishProps;
    use crate::topic::TopicName;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    fn message(topic: &str, qos: QoS) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: TopicName::new(topic).unwrap(),
            packet_id: None,
            properties: PublishProps::new(),
            payload: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn id_order_map_iterates_in_insertion_order_and_moves_to_the_back() {
        let mut m = IdOrderMap::default();
        m.push_back(id(3), 'a');
        m.push_back(id(1), 'b');
        m.push_back(id(2), 'c');
        m.push_back(id(3), 'd');
        assert_eq!(
            m.iter().map(|(i, v)| (i.get(), *v)).collect::<Vec<_>>(),
            [(1, 'b'), (2, 'c'), (3, 'd')]
        );
        assert_eq!(m.remove(id(2)), Some('c'));
        m.retain(|v| *v != 'b');
        assert_eq!(m.ids().map(PacketId::get).collect::<Vec<_>>(), [3]);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn packet_ids_skip_ids_in_flight_and_wrap_to_one() {
        // [MQTT-2.2.1-3]: a new packet gets an id that is not in use.
        let mut s = SessionState {
            next_packet_id: id(65534),
            ..SessionState::default()
        };
        let t = Ticket(0);
        s.outgoing.push_back(
            id(65535),
            Outgoing::Release {
                ticket: t,
                packet_id: id(65535),
            },
        );
        s.outgoing.push_back(
            id(1),
            Outgoing::Release {
                ticket: t,
                packet_id: id(1),
            },
        );
        assert_eq!(s.allocate_packet_id(|_| false), Some(id(65534)));
        assert_eq!(s.allocate_packet_id(|i| i == id(2)), Some(id(3)));
    }

    #[test]
    fn an_emptied_packet_id_map_gives_its_tables_back_and_keeps_entries_otherwise() {
        let t = Ticket::new(0);
        let release = |n| Outgoing::Release {
            ticket: t,
            packet_id: id(n),
        };
        let mut m: IdOrderMap<Outgoing> = IdOrderMap::default();
        assert!(!m.holds_idle_memory(), "a new map allocates nothing");
        m.push_back(id(1), release(1));
        m.push_back(id(2), release(2));
        m.shrink_idle();
        assert_eq!(m.ids().collect::<Vec<_>>(), [id(1), id(2)], "entries stay");
        m.remove(id(1));
        m.remove(id(2));
        assert!(m.holds_idle_memory(), "the tables outlive their entries");
        m.shrink_idle();
        assert!(!m.holds_idle_memory());
        // Still usable, in order.
        m.push_back(id(3), release(3));
        m.push_back(id(1), release(1));
        assert_eq!(m.ids().collect::<Vec<_>>(), [id(3), id(1)]);
    }

    #[test]
    fn a_drained_queue_gives_its_room_back() {
        let now = Instant::now();
        let mut s = SessionState::new(10);
        assert!(s.enqueue(now, message("a", QoS::AtLeastOnce)).is_ok());
        s.shrink_idle();
        assert_eq!(s.queue_len(), 1, "a queued message stays");
        assert!(!s.holds_idle_memory());
        s.queue.clear();
        assert!(s.holds_idle_memory());
        s.shrink_idle();
        assert!(!s.holds_idle_memory());
        assert_eq!(s.queue.capacity(), 0);
    }

    #[test]
    fn packet_ids_run_out_when_every_id_is_busy() {
        let mut s = SessionState::default();
        assert_eq!(s.allocate_packet_id(|_| true), None);
        assert_eq!(s.allocate_packet_id(|i| i != id(40_000)), Some(id(40_000)));
    }

    #[test]
    fn a_full_queue_refuses_and_counts_the_drop() {
        let now = Instant::now();
        let mut s = SessionState::new(1);
        assert!(s.enqueue(now, message("a", QoS::AtLeastOnce)).is_ok());
        assert_eq!(
            s.enqueue(now, message("b", QoS::AtLeastOnce)),
            Err(SessionError::QueueFull { max: 1 })
        );
        assert_eq!((s.queue_len(), s.dropped()), (1, 1));
    }

    #[test]
    fn enqueue_clears_connection_specific_fields() {
        let now = Instant::now();
        let mut s = SessionState::default();
        let mut p = message("a", QoS::ExactlyOnce);
        p.dup = true;
        p.packet_id = Some(id(9));
        p.properties.make_mut().topic_alias = Some(4);
        s.enqueue(now, p).unwrap();
        let q = s.queued().next().unwrap();
        assert!(!q.publish.dup);
        assert_eq!(q.publish.packet_id, None);
        assert_eq!(q.publish.properties.topic_alias, None);
    }

    #[test]
    fn queued_message_expires_after_its_interval() {
        // [MQTT-3.3.2-5]
        let now = Instant::now();
        let mut p = message("a", QoS::AtMostOnce);
        p.properties.make_mut().message_expiry_interval = Some(10);
        let q = QueuedMessage {
            ticket: Ticket(0),
            publish: p,
            queued_at: now,
        };
        assert!(!q.is_expired(now + Duration::from_millis(9_999)));
        assert!(q.is_expired(now + Duration::from_secs(10)));
    }

    #[test]
    fn snapshot_and_restore_round_trip() {
        let now = Instant::now();
        let mut s = SessionState::new(7);
        s.enqueue(now, message("q", QoS::AtLeastOnce)).unwrap();
        let mut p = message("o", QoS::AtLeastOnce);
        p.packet_id = Some(id(5));
        s.outgoing.push_back(
            id(5),
            Outgoing::Publish {
                ticket: Ticket(1),
                publish: p,
                queued_at: now,
            },
        );
        s.outgoing.push_back(
            id(2),
            Outgoing::Release {
                ticket: Ticket(0),
                packet_id: id(2),
            },
        );
        s.incoming.push_back(id(9), IncomingQos2::AwaitingRelease);
        s.next_ticket = 2;
        let snap = s.snapshot();
        let back = SessionState::restore(snap.clone()).unwrap();
        assert_eq!(back.snapshot(), snap);
        assert_eq!(
            back.outgoing()
                .filter_map(Outgoing::packet_id)
                .map(PacketId::get)
                .collect::<Vec<_>>(),
            [5, 2]
        );
    }

    #[test]
    fn restore_rejects_duplicate_ids_and_qos0_in_flight() {
        let now = Instant::now();
        let release = |n| Outgoing::Release {
            ticket: Ticket(0),
            packet_id: id(n),
        };
        let mut snap = SessionState::default().snapshot();
        snap.next_ticket = 1;
        snap.outgoing = vec![release(4), release(4)];
        assert!(matches!(
            SessionState::restore(snap.clone()),
            Err(SessionError::InvalidSnapshot(_))
        ));
        let mut p = message("o", QoS::AtMostOnce);
        p.packet_id = Some(id(1));
        snap.outgoing = vec![Outgoing::Publish {
            ticket: Ticket(0),
            publish: p,
            queued_at: now,
        }];
        assert!(matches!(
            SessionState::restore(snap.clone()),
            Err(SessionError::InvalidSnapshot(_))
        ));
        snap.outgoing = vec![release(1)];
        snap.next_ticket = 0;
        assert!(matches!(
            SessionState::restore(snap),
            Err(SessionError::InvalidSnapshot(_))
        ));
    }
}
