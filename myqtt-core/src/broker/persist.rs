//! Durable storage of the broker's state: what the connections and the
//! router write through the group-commit [`StoreWriter`], and what
//! [`Broker::restore`] brings back at start.
//!
//! Only persistent sessions (session expiry > 0, or MQTT 3.1.x clean
//! session 0) are written; a broker without a store makes no store call at
//! all. The rules (see `doc/storage.md`):
//!
//! - a QoS 1/2 PUBLISH is acknowledged only after the commit holding the
//!   message and its queue entries (and, at QoS 2, its packet id awaiting
//!   PUBREL) completed;
//! - a stored message is sent to a subscriber only after the commit that
//!   moves it from the queue to the in-flight table completed, and the
//!   PUBREL of an outgoing QoS 2 flow only after the commit that records
//!   its PUBREC, so a crash never makes a QoS 2 duplicate [MQTT-4.3.3-10].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::hooks::{DropReason, Event, Message};
use super::registry::{Delivery, PendingWill, Refused, Routed, SessionHandle, SubRecord, lock};
use super::{Broker, EventKind, HookChain};
use crate::ByteStr;
use crate::codec::{PacketId, Publish, QoS};
use crate::hash::{IdMap, IdSet};
use crate::session::{Outgoing, SessionSnapshot, SessionState, Ticket};
use crate::store::{
    Batch, Commit, InflightState, Loaded, MessageId, OpOutcome, QueuedDelivery, Refusal,
    SessionKey, Side, StoreConfig, StoreError, StoreWriter, StoredMessage, Timestamp,
    TrySubmitError,
};

/// The broker's store: its writer thread.
#[derive(Debug)]
pub(crate) struct Persist {
    pub(crate) writer: StoreWriter,
}

impl Persist {
    /// Opens the store of `config` and reads everything it holds.
    pub(crate) fn open(config: &StoreConfig) -> Result<(Self, Loaded), StoreError> {
        let store = config.open()?;
        let loaded = store.load(Side::Broker)?;
        let writer = StoreWriter::spawn(store).map_err(|e| StoreError::Open {
            path: config.path().to_path_buf(),
            source: Arc::new(e),
        })?;
        Ok((Self { writer }, loaded))
    }

    /// Submits `batch` in order with every other submission, without
    /// waiting for its commit; a full writer queue waits for room.
    pub(crate) async fn submit(&self, batch: Batch) -> Option<Commit> {
        match self.writer.submit(batch).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot submit to the store");
                None
            }
        }
    }

    /// Submits from synchronous code: in order unless the writer's queue
    /// is full, when a task submits it a little later.
    pub(crate) fn submit_now(&self, broker: &Broker, batch: Batch) {
        match self.writer.try_submit(batch) {
            Ok(_) => {}
            Err(TrySubmitError::Full(batch)) => {
                tracing::warn!("store writer queue full; submitting from a task");
                let b = broker.clone();
                broker.handle().spawn(async move {
                    if let Some(p) = b.persist() {
                        let _ = p.submit(batch).await;
                    }
                });
            }
            Err(TrySubmitError::Closed) => {
                tracing::error!("the store writer has stopped");
            }
        }
    }
}

/// What a connection knows of its session's stored records (kept in the
/// mailbox while the session is detached).
#[derive(Debug, Default)]
pub(crate) struct Track {
    /// Stored messages handed to the protocol state, not sent yet.
    pub(crate) unsent: IdMap<Ticket, MessageId>,
    /// Outgoing flows with an in-flight record, by packet id.
    pub(crate) inflight: IdSet<u16>,
    /// Incoming QoS 2 packet ids with a record.
    pub(crate) incoming: HashSet<u16>,
    /// QoS 1 messages sent from the queue whose in-flight record is not
    /// written yet.
    pub(crate) sent: SentQos1,
}

/// QoS 1 messages sent from their queue entry without an in-flight record
/// yet. A QoS 1 PUBLISH is not held for its record (a QoS 1 message may
/// arrive twice), so the record only tells a restart to resend it with DUP
/// and its packet id [MQTT-4.4.0-1] rather than as a new PUBLISH from the
/// queue. Most subscribers acknowledge within milliseconds: the entry is
/// then simply dequeued (one op instead of writing the record, dequeuing
/// and deleting the record, and usually nothing written at all when the
/// entry was stored in the same group commit). A flow still unacknowledged
/// after [`SentQos1::MOVE_AFTER_MS`], or when its connection closes, gets its
/// record then. Until then a crash brings the message back from the queue:
/// sent again as a new PUBLISH, at least once as QoS 1 promises.
#[derive(Debug, Default)]
pub(crate) struct SentQos1 {
    /// Packet id -> (message, serial, sent at in the broker's timer
    /// milliseconds).
    by_id: IdMap<PacketId, (MessageId, u64, u64)>,
    /// (packet id, serial), oldest first; acknowledged flows are skipped
    /// lazily (their serial no longer matches).
    order: std::collections::VecDeque<(PacketId, u64)>,
    serial: u64,
}

impl SentQos1 {
    /// How long a QoS 1 flow may wait for its PUBACK before its in-flight
    /// record is written (measured on the broker's sweep clock, so the
    /// record comes between about 0.9 and 1.2 s after the send).
    pub(crate) const MOVE_AFTER_MS: u64 = 1000;

    pub(crate) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Message `id` was sent with packet id `pid` at `at` (timer ms).
    pub(crate) fn insert(&mut self, pid: PacketId, id: MessageId, at: u64) {
        self.serial += 1;
        self.by_id.insert(pid, (id, self.serial, at));
        self.order.push_back((pid, self.serial));
    }

    /// The message sent with `pid`, acknowledged now.
    pub(crate) fn take(&mut self, pid: PacketId) -> Option<MessageId> {
        let (id, _, _) = self.by_id.remove(&pid)?;
        self.skip_done();
        Some(id)
    }

    /// Drops acknowledged flows from the front of `order`.
    fn skip_done(&mut self) {
        while let Some(&(pid, serial)) = self.order.front() {
            if self.by_id.get(&pid).is_some_and(|e| e.1 == serial) {
                break;
            }
            self.order.pop_front();
        }
        if self.by_id.is_empty() {
            self.order.clear();
        }
    }

    /// When the oldest flow is due for its record (timer ms).
    pub(crate) fn due(&self) -> Option<u64> {
        let &(pid, _) = self.order.front()?;
        self.by_id
            .get(&pid)
            .map(|e| e.2.saturating_add(Self::MOVE_AFTER_MS))
    }

    /// Removes the flows sent at or before `until` (every flow when
    /// `None`), oldest first, handing each to `f`.
    pub(crate) fn take_due(&mut self, until: Option<u64>, mut f: impl FnMut(PacketId, MessageId)) {
        while let Some(&(pid, serial)) = self.order.front() {
            match self.by_id.get(&pid) {
                Some(&(id, s, at)) if s == serial => {
                    if until.is_some_and(|u| at > u) {
                        break;
                    }
                    self.by_id.remove(&pid);
                    f(pid, id);
                }
                _ => {}
            }
            self.order.pop_front();
        }
        if self.by_id.is_empty() {
            self.order.clear();
        }
    }
}

/// Moves stored message `id`, sent with packet id `pid`, from `key`'s queue
/// to its in-flight table in `b` (the record first: it keeps the message),
/// and notes the record in `inflight`.
pub(crate) fn move_to_inflight(
    b: &mut Batch,
    inflight: &mut IdSet<u16>,
    (key, pid): (&SessionKey, PacketId),
    state: InflightState,
    id: MessageId,
) {
    b.put_inflight(key.clone(), pid, state, Some(id));
    b.push(crate::store::Op::DequeueMessage {
        key: key.clone(),
        message: id,
    });
    inflight.insert(pid.get());
}

/// Messages routed with a store, not submitted yet: their store ops, and
/// the deliveries to persistent sessions, which wait until the batch
/// holding their queue entries is submitted. A connection stages every
/// PUBLISH of one read into one `Staged` (one submission, one commit).
#[derive(Debug, Default)]
pub(crate) struct Staged {
    pub(crate) batch: Batch,
    pub(crate) deliveries: Vec<(Arc<SessionHandle>, Delivery)>,
    pub(crate) checks: Checks,
    /// When the messages staged so far were received (read once per
    /// `Staged`: the PUBLISH packets of one read arrived together).
    pub(crate) received: Option<Timestamp>,
}

/// Which ops of a submission enqueued which message for which client, to
/// report quota refusals and drops once it is committed.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    pub(crate) list: Vec<EnqueueCheck>,
    /// The clients of every check's `Enqueue` ops, in op order.
    pub(crate) clients: Vec<ByteStr>,
}

impl Checks {
    /// True when no op enqueued a message.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Shifts every op index by `n` (ops submitted in front of them).
    pub(crate) fn offset(&mut self, n: usize) {
        for c in &mut self.list {
            c.first += n;
        }
    }
}

/// The `Enqueue` ops of one message in its submission.
#[derive(Debug)]
pub(crate) struct EnqueueCheck {
    pub(crate) message: Arc<Routed>,
    pub(crate) id: MessageId,
    /// The index of the first `Enqueue` op in its submission.
    pub(crate) first: usize,
    /// Its clients in [`Checks::clients`], one per `Enqueue` op.
    pub(crate) clients: std::ops::Range<usize>,
}

/// The MQTT 5 PUBLISH a message is stored as.
pub(crate) fn publish_of(m: &Message) -> Publish {
    Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.clone(),
        packet_id: None,
        properties: m.properties.clone(),
        payload: m.payload.clone(),
    }
}

fn message_of(p: Publish) -> Message {
    Message {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties,
    }
}

/// The `Instant` a wall-clock time stands for (the message expiry keeps
/// counting across restarts).
fn instant_of(t: Timestamp, now: Instant, wall: Timestamp) -> Instant {
    let ago = Duration::from_millis(wall.as_unix_millis().saturating_sub(t.as_unix_millis()));
    now.checked_sub(ago).unwrap_or(now)
}

impl Broker {
    /// The store, if the broker has one.
    pub(crate) fn persist(&self) -> Option<&Persist> {
        self.inner.persist.as_ref()
    }

    /// Builds the store batch for a message just routed: the message once,
    /// one queue entry per persistent session it goes to, the retained
    /// record.
    pub(crate) fn stage(
        &self,
        routed: &Arc<Routed>,
        mut deferred: Vec<(Arc<SessionHandle>, Delivery)>,
    ) -> Option<Staged> {
        let mut staged = Staged::default();
        self.stage_into(routed, &mut deferred, &mut staged)
            .then_some(staged)
    }

    /// Adds the store ops of a message just routed to `into` (the message
    /// once, one queue entry per persistent session it goes to, the
    /// retained record) and moves the `deferred` deliveries there; false
    /// when it needs none.
    pub(crate) fn stage_into(
        &self,
        routed: &Arc<Routed>,
        deferred: &mut Vec<(Arc<SessionHandle>, Delivery)>,
        into: &mut Staged,
    ) -> bool {
        let Some(p) = self.persist() else {
            return false;
        };
        let m = &routed.message;
        let retain = m.retain && self.inner.config.retain_available;
        if deferred.is_empty() && !retain {
            return false;
        }
        let received = *into.received.get_or_insert_with(Timestamp::now);
        let batch = &mut into.batch;
        if !deferred.is_empty() {
            let id = p.writer.new_message_id();
            batch.put_message(id, StoredMessage::new(publish_of(m), received));
            let first = batch.len();
            let checks = &mut into.checks;
            let start = checks.clients.len();
            for (s, mut d) in deferred.drain(..) {
                d.stored = Some(id);
                // The delivery QoS, RETAIN flag and subscription ids go with
                // the entry: a restart delivers it as it would have been.
                batch.enqueue_with(
                    SessionKey::broker(s.client_id.clone()),
                    id,
                    QueuedDelivery {
                        qos: d.qos,
                        retain: d.retain,
                        subscription_ids: d.sub_ids.clone(),
                    },
                );
                checks.clients.push(s.client_id.clone());
                into.deliveries.push((s, d));
            }
            checks.list.push(EnqueueCheck {
                message: Arc::clone(routed),
                id,
                first,
                clients: start..checks.clients.len(),
            });
        }
        if retain {
            if m.payload.is_empty() {
                batch.remove_retained(m.topic.clone());
            } else {
                batch.put_retained(StoredMessage::new(publish_of(m), received));
            }
        }
        true
    }

    /// Queues the deliveries of a staged message (its batch is submitted).
    pub(crate) fn push_staged(
        &self,
        deliveries: &mut Vec<(Arc<SessionHandle>, Delivery)>,
        chain: &HookChain,
    ) {
        let mut undo = Batch::new();
        for (session, d) in deliveries.drain(..) {
            let id = d.stored;
            let msg = Arc::clone(&d.msg);
            match session.push(d) {
                Ok(()) | Err(Refused::Skipped) => {}
                Err(Refused::Dropped(why)) => {
                    self.count_drop();
                    chain.emit(EventKind::Messages, || {
                        Event::Dropped(&session.client_id, &msg.message, why)
                    });
                    if let Some(id) = id {
                        undo.push(crate::store::Op::DequeueMessage {
                            key: SessionKey::broker(session.client_id.clone()),
                            message: id,
                        });
                    }
                }
            }
        }
        if !undo.is_empty()
            && let Some(p) = self.persist()
        {
            p.submit_now(self, undo);
        }
    }

    /// Reports what a committed submission's queue entries met: quota
    /// refusals (the delivery is withdrawn) and entries dropped for room.
    pub(crate) fn check_enqueued(
        &self,
        outcomes: &[OpOutcome],
        checks: &Checks,
        chain: &HookChain,
    ) {
        for check in &checks.list {
            let clients = checks
                .clients
                .get(check.clients.clone())
                .unwrap_or_default();
            for (i, client) in clients.iter().enumerate() {
                let Some(outcome) = outcomes.get(check.first + i) else {
                    break;
                };
                self.check_one(outcome, client, check, chain);
            }
        }
    }

    fn check_one(
        &self,
        outcome: &OpOutcome,
        client: &ByteStr,
        check: &EnqueueCheck,
        chain: &HookChain,
    ) {
        for d in outcome.dropped() {
            self.count_drop();
            tracing::debug!(client_id = %d.key.client_id, "queued message dropped by a store quota");
            if let Some(s) = self.registry().get(d.key.client_id.as_str()) {
                s.count_drop();
                let mut mb = lock(&s.mailbox);
                let mut gone = None;
                mb.queue.retain(|q| {
                    if q.stored.map(MessageId::get) == Some(d.message.get()) && gone.is_none() {
                        gone = Some(Arc::clone(&q.msg));
                        false
                    } else {
                        true
                    }
                });
                drop(mb);
                if let Some(m) = gone {
                    chain.emit(EventKind::Messages, || {
                        Event::Dropped(&d.key.client_id, &m.message, DropReason::QueueFull)
                    });
                }
            }
        }
        if let OpOutcome::Refused(Refusal::Quota { .. }) = outcome {
            self.count_drop();
            tracing::debug!(client_id = %client, "message refused by a store quota");
            if let Some(s) = self.registry().get(client.as_str()) {
                s.count_drop();
                lock(&s.mailbox)
                    .queue
                    .retain(|q| q.stored != Some(check.id));
            }
            chain.emit(EventKind::Messages, || {
                Event::Dropped(client, &check.message.message, DropReason::QueueFull)
            });
        }
    }

    /// Submits a staged message from synchronous code (the broker's own
    /// publish, wills), then queues its deliveries.
    pub(crate) fn submit_staged_detached(&self, staged: Staged, chain: &HookChain) {
        let Some(p) = self.persist() else {
            return;
        };
        let Staged {
            batch,
            mut deliveries,
            checks,
            ..
        } = staged;
        match p.writer.try_submit(batch) {
            Ok(commit) => {
                self.push_staged(&mut deliveries, chain);
                if !checks.is_empty() {
                    let b = self.clone();
                    let chain = self.chain();
                    self.handle().spawn(async move {
                        if let Ok(outcomes) = commit.await {
                            b.check_enqueued(&outcomes, &checks, &chain);
                        }
                    });
                }
            }
            Err(TrySubmitError::Full(batch)) => {
                let b = self.clone();
                let chain = self.chain();
                self.handle().spawn(async move {
                    let Some(p) = b.persist() else { return };
                    let commit = p.submit(batch).await;
                    b.push_staged(&mut deliveries, &chain);
                    if let Some(Ok(outcomes)) = match commit {
                        Some(c) => Some(c.await),
                        None => None,
                    } {
                        b.check_enqueued(&outcomes, &checks, &chain);
                    }
                });
            }
            Err(TrySubmitError::Closed) => {
                tracing::error!("the store writer has stopped");
                self.push_staged(&mut deliveries, chain);
            }
        }
    }

    /// Brings back what the store holds: sessions (detached, with their
    /// subscriptions, in-flight flows, incoming QoS 2 ids and queues),
    /// retained messages and pending wills. Expired sessions are removed.
    #[allow(clippy::too_many_lines)] // one pass over the records, in order
    pub(crate) fn restore(&self, loaded: Loaded) {
        let Some(p) = self.persist() else {
            return;
        };
        let now = Instant::now();
        let wall = Timestamp::now();
        let mut cleanup = Batch::new();
        let config = &self.inner.config;
        for m in loaded.retained {
            if m.is_expired(wall) {
                cleanup.remove_retained(m.publish.topic.clone());
                continue;
            }
            let created = instant_of(m.received_at, now, wall);
            let routed = Arc::new(Routed {
                message: message_of(m.publish),
                created,
            });
            self.inner.router.retain(&routed);
        }
        let mut restored = 0_usize;
        for s in loaded.sessions {
            let Some(record) = s.session else {
                cleanup.remove_session(s.key);
                continue;
            };
            // A session that was connected when the process stopped counts
            // its expiry from now.
            let disconnected = record.disconnected_at.unwrap_or(wall);
            let expires = if record.expiry_interval == u32::MAX {
                None
            } else {
                Some(disconnected.plus_secs(record.expiry_interval))
            };
            if expires.is_some_and(|t| t <= wall) || record.expiry_interval == 0 {
                cleanup.remove_session(s.key);
                continue;
            }
            let client_id = s.key.client_id.clone();
            let handle = Arc::new(SessionHandle::new(
                self.inner.registry.next_id(),
                client_id.clone(),
                config.max_queued_messages,
            ));
            handle.set_persistent(true);
            let mut max_granted = QoS::AtMostOnce;
            {
                let mut subs = lock(&handle.subscriptions);
                for sub in s.subscriptions {
                    max_granted = max_granted.max(sub.options.qos);
                    self.inner
                        .router
                        .subscribe(&sub.filter, &handle, sub.options, sub.identifier);
                    subs.insert(
                        sub.filter,
                        SubRecord {
                            options: sub.options,
                            id: sub.identifier,
                        },
                    );
                }
            }
            let mut track = Track::default();
            let mut outgoing = Vec::new();
            let mut ticket = 0_u64;
            let mut last_id = None;
            for f in s.inflight {
                last_id = Some(f.packet_id);
                ticket += 1;
                track.inflight.insert(f.packet_id.get());
                match (f.state, f.message) {
                    (InflightState::AwaitingPubComp, _) | (_, None) => {
                        outgoing.push(Outgoing::Release {
                            ticket: Ticket::new(ticket),
                            packet_id: f.packet_id,
                        });
                    }
                    (state, Some(m)) => {
                        let queued_at = instant_of(m.received_at, now, wall);
                        let mut publish = m.publish;
                        publish.qos = if state == InflightState::AwaitingPubAck {
                            QoS::AtLeastOnce
                        } else {
                            QoS::ExactlyOnce
                        };
                        publish.packet_id = Some(f.packet_id);
                        publish.retain = false;
                        if publish.properties.topic_alias.is_some() {
                            publish.properties.make_mut().topic_alias = None;
                        }
                        outgoing.push(Outgoing::Publish {
                            ticket: Ticket::new(ticket),
                            publish,
                            queued_at,
                        });
                    }
                }
            }
            let mut incoming = Vec::new();
            for i in s.incoming {
                track.incoming.insert(i.packet_id.get());
                incoming.push((i.packet_id, crate::session::IncomingQos2::AwaitingRelease));
            }
            let snapshot = SessionSnapshot {
                next_packet_id: last_id.map_or(FIRST_PACKET_ID, PacketId::next),
                next_ticket: ticket + 1,
                outgoing,
                incoming,
                queue: Vec::new(),
                max_queue_len: config.max_queued_messages,
                dropped: 0,
            };
            let state = match SessionState::restore(snapshot) {
                Ok(st) => st,
                Err(e) => {
                    tracing::error!(client_id = %client_id, error = %e, "stored session state is inconsistent; starting it empty");
                    SessionState::new(config.max_queued_messages)
                }
            };
            {
                let mut mb = lock(&handle.mailbox);
                for q in s.queue {
                    let created = instant_of(q.message.received_at, now, wall);
                    let publish = q.message.publish;
                    // Entries written before the delivery was kept: the
                    // lower of the message QoS and the session's highest
                    // granted QoS, no RETAIN flag, no subscription ids.
                    let delivery = q.delivery.unwrap_or_else(|| QueuedDelivery {
                        qos: publish.qos.min(max_granted.max(QoS::AtLeastOnce)),
                        retain: false,
                        subscription_ids: Vec::new(),
                    });
                    mb.queue.push_back(Delivery {
                        msg: Arc::new(Routed {
                            message: message_of(publish),
                            created,
                        }),
                        qos: delivery.qos,
                        retain: delivery.retain,
                        sub_ids: delivery.subscription_ids,
                        stored: Some(q.message_id),
                    });
                }
                mb.state = Some(Box::new(state));
                mb.track = Some(Box::new(track));
            }
            if !self.inner.registry.install(None, &handle) {
                continue;
            }
            restored += 1;
            if let Some(t) = expires {
                let left =
                    Duration::from_millis(t.as_unix_millis().saturating_sub(wall.as_unix_millis()));
                self.after(&handle, 0, left, Self::end_session);
            }
        }
        for w in loaded.wills {
            let left = Duration::from_millis(
                w.due_at
                    .as_unix_millis()
                    .saturating_sub(wall.as_unix_millis()),
            );
            let client_id = w.client_id.clone();
            let will = w.will;
            let session = self.registry().get(client_id.as_str());
            let info = Arc::new(super::hooks::ClientInfo {
                client_id: client_id.clone(),
                username: None,
                peer: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                local: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                protocol: crate::codec::ProtocolVersion::V5,
                keep_alive: 0,
                tls: false,
                transport: super::hooks::Transport::Tcp,
                socket: None,
            });
            if let Some(s) = session {
                {
                    lock(&s.mailbox).pending_will =
                        Some(Box::new(PendingWill { will, client: info }));
                    self.after(&s, 0, left, |b, s| {
                        let pending = lock(&s.mailbox).pending_will.take().map(|w| *w);
                        if let Some(PendingWill { will, client }) = pending {
                            b.forget_will(&client.client_id);
                            b.spawn_will(client, will);
                        }
                    });
                }
            } else {
                // The session is gone: the will is due now.
                self.forget_will(&client_id);
                self.spawn_will(info, will);
            }
        }
        if !cleanup.is_empty() {
            p.submit_now(self, cleanup);
        }
        tracing::info!(
            backend = p.writer.backend_name(),
            sessions = restored,
            retained = self.retained_count(),
            "store loaded"
        );
    }

    /// Removes a will's record (published or cancelled).
    pub(crate) fn forget_will(&self, client_id: &ByteStr) {
        if let Some(p) = self.persist() {
            let mut b = Batch::new();
            b.remove_will(client_id.clone());
            p.submit_now(self, b);
        }
    }
}

// Evaluated at compile time: 1 is non-zero.
const FIRST_PACKET_ID: PacketId = match PacketId::new(1) {
    Some(id) => id,
    None => panic!("1 is a valid packet id"),
};

#[cfg(test)]
mod tests {
    use super::SentQos1;
    use crate::codec::PacketId;
    use crate::store::MessageId;

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).expect("non-zero")
    }

    fn ids(sent: &mut SentQos1, until: Option<u64>) -> Vec<(u16, u64)> {
        let mut out = Vec::new();
        sent.take_due(until, |pid, id| out.push((pid.get(), id.get())));
        out
    }

    #[test]
    fn flows_acknowledged_in_time_never_get_a_record_and_late_ones_do_oldest_first() {
        let mut sent = SentQos1::default();
        sent.insert(pid(1), MessageId(10), 100);
        sent.insert(pid(2), MessageId(20), 150);
        sent.insert(pid(3), MessageId(30), 200);
        assert_eq!(sent.due(), Some(100 + SentQos1::MOVE_AFTER_MS));
        // Acknowledged: its queue entry is what goes.
        assert_eq!(sent.take(pid(1)).map(MessageId::get), Some(10));
        assert_eq!(sent.take(pid(1)), None, "once");
        assert_eq!(sent.due(), Some(150 + SentQos1::MOVE_AFTER_MS));
        // Packet id 2 acknowledged, then reused for a later message: the
        // stale place in the order is skipped, the new flow is not taken
        // as old.
        assert_eq!(sent.take(pid(2)).map(MessageId::get), Some(20));
        sent.insert(pid(2), MessageId(40), 900);
        assert_eq!(ids(&mut sent, Some(500)), [(3, 30)]);
        assert_eq!(sent.due(), Some(900 + SentQos1::MOVE_AFTER_MS));
        assert_eq!(ids(&mut sent, Some(500)), []);
        // At close, every flow left.
        assert_eq!(ids(&mut sent, None), [(2, 40)]);
        assert!(sent.is_empty());
        assert_eq!(sent.due(), None);
    }
}
