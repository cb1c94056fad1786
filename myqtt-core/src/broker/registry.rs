//! The session registry: one [`SessionHandle`] per client id, holding the
//! client's mailbox (messages routed to it and not yet taken by its
//! connection), its subscriptions, and its detached protocol state while it
//! is offline; and the table of live connections.
//!
//! This is the in-memory store. A durable store plugs in behind the same
//! types: a session's persistent parts are the [`SessionState`] (inflight
//! flows and queue), the mailbox queue, the subscriptions and the expiry.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::sync::Notify;

use super::hooks::{ClientInfo, DropReason, Message};
use crate::ByteStr;
use crate::codec::{LastWill, QoS, ReasonCode, SubscriptionOptions};
use crate::session::{LazyDeque, SessionState};
use crate::topic::TopicFilter;

/// Locks a std mutex, ignoring poisoning: the data behind these locks stays
/// consistent across a panic (every critical section is a few field
/// updates), and a panic elsewhere must not take the broker down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A message as the broker routes it: one allocation shared by every
/// subscriber it goes to.
#[derive(Debug)]
pub(crate) struct Routed {
    /// The message (no topic alias, no subscription identifiers).
    pub(crate) message: Message,
    /// When it entered the broker: the MQTT 5 Message Expiry Interval
    /// counts from here [MQTT-3.3.2-6].
    pub(crate) created: Instant,
}

impl Routed {
    /// The remaining message expiry interval at `now`: `Ok(None)` when the
    /// message has none, `Err(())` when it has expired [MQTT-3.3.2-5].
    pub(crate) fn remaining_expiry(&self, now: Instant) -> Result<Option<u32>, ()> {
        match self.message.properties.message_expiry_interval {
            None => Ok(None),
            Some(secs) => {
                let waited = now.saturating_duration_since(self.created).as_secs();
                match u64::from(secs).checked_sub(waited) {
                    Some(left) if left > 0 => Ok(Some(left as u32)),
                    _ => Err(()),
                }
            }
        }
    }
}

/// One message on its way to one client.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The shared message.
    pub(crate) msg: Arc<Routed>,
    /// The QoS it is delivered at: the lower of the publish QoS and the
    /// subscription's granted QoS [MQTT-3.8.4-8] (5.0) / [MQTT-3.8.4-6].
    pub(crate) qos: QoS,
    /// The RETAIN flag it is delivered with.
    pub(crate) retain: bool,
    /// MQTT 5 subscription identifiers of every matching subscription
    /// [MQTT-3.3.4-3].
    pub(crate) sub_ids: Vec<u32>,
    /// The stored message this delivery's queue entry refers to (a
    /// persistent session on a broker with a store).
    pub(crate) stored: Option<crate::store::MessageId>,
}

/// A wake-up for the one task that waits on it, set from any thread; a
/// wake-up while nobody waits is kept for the next wait (like
/// `Notify::notify_one`).
///
/// Its wait is a poll function ([`Signal::poll_wait`]): the waiting task
/// keeps no future for it between wake-ups, where a `Notified` future would
/// cost 64 bytes in every idle connection's task.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    /// Wakes the waiting task, or the next one to wait.
    pub(crate) fn notify(&self) {
        self.set.store(true, Ordering::Release);
        let waker = lock(&self.waker).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// `Ready` once notified since the last `Ready`; registers the task's
    /// waker otherwise.
    pub(crate) fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.set.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        {
            let mut slot = lock(&self.waker);
            match &*slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // A notification between the first check and the registration
        // found no waker (or the old one): it is seen here.
        if self.set.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Forgets the waiting task and any notification not yet seen: a waker
    /// keeps its task's memory alive, and the task that waited here has
    /// ended.
    pub(crate) fn reset(&self) {
        self.set.store(false, Ordering::Release);
        let waker = lock(&self.waker).take();
        drop(waker);
    }

    /// Waits for [`notify`](Self::notify); a future of one word.
    pub(crate) fn wait(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_wait(cx))
    }
}

/// A command for a live connection, from another task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Another connection with the same client id takes the session over.
    TakeOver,
    /// The application or a hook kicks the client.
    Kick {
        /// Publish the client's will as for an abnormal close.
        with_will: bool,
    },
    /// The context is shutting down. Sent to every live connection by one
    /// task of the broker, so that a connection does not need a watch on
    /// the shutdown signal of its own (memory per idle connection).
    Shutdown,
}

/// What other tasks know of a live connection.
#[derive(Debug)]
pub(crate) struct ConnShared {
    /// Who is connected.
    pub(crate) info: Arc<ClientInfo>,
    /// A pending command.
    pub(crate) control: Mutex<Option<Control>>,
    /// Wakes the connection when `control` is set, or when its timer is
    /// due (`due` cleared).
    pub(crate) notify: Signal,
    /// When the connection wants to be woken next, in milliseconds of the
    /// broker's connection timers ([`super::sweep::Timers`]);
    /// [`super::sweep::NEVER`] for no time.
    pub(crate) due: AtomicU64,
}

impl ConnShared {
    /// Asks the connection to act on `control`.
    pub(crate) fn command(&self, control: Control) {
        let mut slot = lock(&self.control);
        // A takeover or kick already pending is not replaced by a weaker
        // one; the shutdown replaces a kick.
        let replaces = matches!(
            (*slot, control),
            (None | Some(Control::Kick { .. }), Control::Shutdown)
                | (None, _)
                | (_, Control::TakeOver)
        );
        if replaces {
            *slot = Some(control);
        }
        drop(slot);
        self.notify.notify();
    }
}

/// One subscription of a session, as the session remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubRecord {
    /// The options, with the granted QoS.
    pub(crate) options: SubscriptionOptions,
    /// The MQTT 5 subscription identifier.
    pub(crate) id: Option<u32>,
}

/// A will waiting for its delay (MQTT 5 Will Delay Interval) or for the end
/// of its session.
#[derive(Debug)]
pub(crate) struct PendingWill {
    pub(crate) will: LastWill,
    pub(crate) client: Arc<ClientInfo>,
}

/// The part of a session other tasks write to.
#[derive(Debug)]
pub(crate) struct Mailbox {
    /// Messages routed to the client, not yet taken by its connection.
    pub(crate) queue: LazyDeque<Delivery>,
    /// The connection the session is attached to.
    pub(crate) conn: Option<Arc<ConnShared>>,
    /// The protocol state while no connection is attached (boxed, like
    /// the other rarely present parts: every session has a mailbox).
    pub(crate) state: Option<Box<SessionState>>,
    /// The session has ended; nothing is queued any more.
    pub(crate) ended: bool,
    /// Bumped at every attach and detach; delayed tasks (will delay,
    /// session expiry) act only if it has not changed since they started.
    pub(crate) generation: u64,
    /// A will whose delay has not passed yet.
    pub(crate) pending_will: Option<Box<PendingWill>>,
    /// The stored records of the protocol state while no connection is
    /// attached (brokers with a store).
    pub(crate) track: Option<Box<super::persist::Track>>,
}

/// A client's session: alive from its first CONNECT until it ends (clean
/// start, expiry, or a clean-session disconnect).
#[derive(Debug)]
pub(crate) struct SessionHandle {
    /// Unique per session: the subscriber key in the subscription trie.
    pub(crate) key: u64,
    /// The client id.
    pub(crate) client_id: ByteStr,
    /// Queue limit for the mailbox (saturated to `u32`: it shares a word
    /// with the flags below).
    limit: u32,
    /// Mirrors `mailbox.conn.is_some()`, read without the lock by shared
    /// subscription picks.
    online: AtomicBool,
    /// The session is written to the broker's store.
    persistent: AtomicBool,
    /// Messages dropped because the mailbox was full.
    dropped: AtomicU64,
    pub(crate) mailbox: Mutex<Mailbox>,
    /// Wakes the attached connection when a delivery is queued.
    pub(crate) wake: Signal,
    /// The session's subscriptions (for unsubscribing all at its end, and
    /// for listing clients). An ordered map: empty, it is three words.
    pub(crate) subscriptions: Mutex<BTreeMap<TopicFilter, SubRecord>>,
}

/// The mailbox capacity of a connected session when the queue limit is
/// smaller: the mailbox is then only a hand-off between the publisher's task
/// and the subscriber's connection, which takes its whole content at once.
/// Without it, `max_queued_messages(0)` would refuse every message even to
/// connected clients.
pub(crate) const HANDOFF_CAPACITY: usize = 64;

/// Why a delivery was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Dropped, counted, and reported.
    Dropped(DropReason),
    /// Not queued by policy: QoS 0 for an offline session.
    Skipped,
}

impl SessionHandle {
    pub(crate) fn new(key: u64, client_id: ByteStr, limit: usize) -> Self {
        Self {
            key,
            client_id,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            online: AtomicBool::new(false),
            persistent: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            mailbox: Mutex::new(Mailbox {
                queue: LazyDeque::new(),
                conn: None,
                state: None,
                ended: false,
                generation: 0,
                pending_will: None,
                track: None,
            }),
            wake: Signal::default(),
            subscriptions: Mutex::new(BTreeMap::new()),
        }
    }

    /// True while a connection is attached.
    pub(crate) fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// True when the session is written to the broker's store.
    pub(crate) fn is_persistent(&self) -> bool {
        self.persistent.load(Ordering::Relaxed)
    }

    /// Marks the session as written to the store (or not).
    pub(crate) fn set_persistent(&self, yes: bool) {
        self.persistent.store(yes, Ordering::Relaxed);
    }

    /// Messages dropped at this session's mailbox.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Counts a drop made elsewhere (by the connection's protocol state).
    pub(crate) fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// True if [`push`](Self::push) would queue a delivery of `qos` now
    /// (the session has not ended, is not offline for QoS 0, and its
    /// mailbox is not full): shared subscriptions pick such a member.
    pub(crate) fn has_room(&self, qos: QoS) -> bool {
        let mb = lock(&self.mailbox);
        let online = mb.conn.is_some();
        let limit = if online {
            (self.limit as usize).max(HANDOFF_CAPACITY)
        } else {
            self.limit as usize
        };
        !mb.ended && (online || qos != QoS::AtMostOnce) && mb.queue.len() < limit
    }

    /// Queues a delivery without waiting: the publisher never waits for a
    /// subscriber. A full mailbox drops the message.
    ///
    /// An offline session stores QoS 1 and QoS 2 messages [MQTT-3.1.2-5]
    /// (3.1.1); QoS 0 messages are not queued for it (the specification
    /// lets a server store them or not; mosquitto's default is not to).
    pub(crate) fn push(&self, delivery: Delivery) -> Result<(), Refused> {
        let mut mb = lock(&self.mailbox);
        if mb.ended {
            return Err(Refused::Dropped(DropReason::SessionEnded));
        }
        let online = mb.conn.is_some();
        if !online && delivery.qos == QoS::AtMostOnce {
            return Err(Refused::Skipped);
        }
        let limit = if online {
            (self.limit as usize).max(HANDOFF_CAPACITY)
        } else {
            self.limit as usize
        };
        if mb.queue.len() >= limit {
            drop(mb);
            self.count_drop();
            return Err(Refused::Dropped(DropReason::QueueFull));
        }
        let was_empty = mb.queue.is_empty();
        mb.queue.push_back(delivery);
        drop(mb);
        if online && was_empty {
            // One wake-up per batch: the connection drains the whole queue.
            self.wake.notify();
        }
        Ok(())
    }

    /// Marks the session attached to `conn` (the caller holds the lock).
    pub(crate) fn attach_locked(&self, mb: &mut Mailbox, conn: Arc<ConnShared>) {
        mb.conn = Some(conn);
        mb.generation += 1;
        mb.pending_will = None;
        self.online.store(true, Ordering::Relaxed);
        if !mb.queue.is_empty() {
            self.wake.notify();
        }
    }

    /// Marks the session detached (the caller holds the lock).
    pub(crate) fn detach_locked(&self, mb: &mut Mailbox) -> u64 {
        mb.conn = None;
        // The session may stay offline for long: it must not keep the
        // ended connection's task alive through its waker.
        self.wake.reset();
        mb.generation += 1;
        self.online.store(false, Ordering::Relaxed);
        mb.generation
    }
}

/// Why a session lookup at CONNECT cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimError {
    /// The client id is connected and the policy is to reject.
    Duplicate,
    /// The old connection did not let go in time.
    Timeout,
    /// The broker is shutting down.
    ShuttingDown,
}

impl ClaimError {
    pub(crate) fn reason_code(self) -> ReasonCode {
        match self {
            Self::Duplicate => ReasonCode::ClientIdentifierNotValid,
            Self::Timeout => ReasonCode::ServerBusy,
            Self::ShuttingDown => ReasonCode::ServerUnavailable,
        }
    }
}

/// All sessions by client id, and the live connections.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) sessions: Mutex<HashMap<ByteStr, Arc<SessionHandle>>>,
    /// Wakes the connections waiting to take a session over whenever a
    /// session is detached (one for all sessions: takeovers are rare, and
    /// a waiter checks its own session again).
    pub(crate) detached: Notify,
    next_key: AtomicU64,
    /// Connections past CONNACK.
    pub(crate) connected: AtomicUsize,
    /// Sockets accepted whose CONNECT is not handled yet.
    pub(crate) connecting: AtomicUsize,
}

impl Registry {
    /// A fresh unique number (session keys, connection ids, assigned ids).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The session of `client_id`, if any.
    pub(crate) fn get(&self, client_id: &str) -> Option<Arc<SessionHandle>> {
        lock(&self.sessions).get(client_id).cloned()
    }

    /// Makes `new` the session of its client id, unless the registry holds
    /// a session other than `old` for it (another connection won a race).
    pub(crate) fn install(
        &self,
        old: Option<&Arc<SessionHandle>>,
        new: &Arc<SessionHandle>,
    ) -> bool {
        let mut sessions = lock(&self.sessions);
        let current = sessions.get(new.client_id.as_str());
        let expected = match (current, old) {
            (None, _) => true,
            (Some(c), Some(o)) => Arc::ptr_eq(c, o),
            (Some(_), None) => false,
        };
        if expected {
            sessions.insert(new.client_id.clone(), Arc::clone(new));
        }
        expected
    }

    /// Removes `handle` from the registry if it is still the session of its
    /// client id.
    pub(crate) fn remove(&self, handle: &Arc<SessionHandle>) {
        let mut sessions = lock(&self.sessions);
        if sessions
            .get(handle.client_id.as_str())
            .is_some_and(|c| Arc::ptr_eq(c, handle))
        {
            sessions.remove(handle.client_id.as_str());
        }
    }

    /// The live connections with their sessions (a session's mailbox
    /// names the connection attached to it, so no table of connections is
    /// kept: one entry less per client).
    pub(crate) fn live(&self) -> Vec<(Arc<ConnShared>, Arc<SessionHandle>)> {
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        sessions
            .into_iter()
            .filter_map(|s| {
                let conn = lock(&s.mailbox).conn.clone();
                conn.map(|c| (c, s))
            })
            .collect()
    }

    /// The number of sessions (connected or not).
    pub(crate) fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use super::{SessionHandle, Signal};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_signal_sent_before_the_wait_is_kept_for_it_once() {
        let s = Signal::default();
        let mut cx = Context::from_waker(Waker::noop());
        s.notify();
        assert_eq!(s.poll_wait(&mut cx), Poll::Ready(()));
        assert_eq!(s.poll_wait(&mut cx), Poll::Pending, "consumed");
    }

    #[test]
    fn a_signal_wakes_the_task_that_waits() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let s = Signal::default();
        assert_eq!(s.poll_wait(&mut cx), Poll::Pending);
        s.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(s.poll_wait(&mut cx), Poll::Ready(()));
        // A second wait registers again; a notification wakes it again.
        assert_eq!(s.poll_wait(&mut cx), Poll::Pending);
        s.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_reset_signal_lets_go_of_the_waker_and_of_an_unseen_notification() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let s = Signal::default();
        assert_eq!(s.poll_wait(&mut Context::from_waker(&waker)), Poll::Pending);
        assert_eq!(Arc::strong_count(&count), 3, "the signal holds a waker");
        s.reset();
        assert_eq!(Arc::strong_count(&count), 2, "and gave it back");
        s.notify();
        s.reset();
        assert_eq!(
            s.poll_wait(&mut Context::from_waker(Waker::noop())),
            Poll::Pending
        );
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    /// Every client has a session handle, connected or not: it stays small
    /// (the detached state, the pending will and the stored records are
    /// boxed, the subscription map is an ordered map).
    #[test]
    fn a_session_handle_stays_small() {
        let size = std::mem::size_of::<SessionHandle>();
        assert!(size <= 184, "a session handle is {size} bytes");
    }
}
