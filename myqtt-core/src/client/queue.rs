//! The two bounded queues between the application and the connection task:
//! [`RecvQueue`] (received messages and connection events, taken by
//! `get_next` or the callback thread) and [`SendQueue`] (the count of
//! messages accepted for sending, with waiting for room).
//!
//! Both are a std mutex and condvar, for blocking waits from any thread,
//! plus a tokio `Notify`, for async waits. The mutexes are held only for
//! short critical sections, never across an await or a user callback.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::error::{ClientError, CloseReason};
use super::message::Message;
use super::{ConnEvent, QoS};
use crate::codec::PacketId;

/// How many connection events wait for the callback thread at most; older
/// ones are dropped first.
const MAX_EVENTS: usize = 64;

/// Blocks on `cond` until `deadline` (forever for `None`).
fn wait_until<'a, T>(
    cond: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> (MutexGuard<'a, T>, bool) {
    match deadline {
        None => (
            cond.wait(guard).unwrap_or_else(PoisonError::into_inner),
            false,
        ),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (guard, true);
            }
            let (g, _) = cond
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner);
            (g, false)
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct RecvInner {
    pub(crate) messages: VecDeque<Message>,
    pub(crate) events: VecDeque<ConnEvent>,
    /// Set once the client has closed for good: waits end.
    pub(crate) closed: Option<CloseReason>,
    pub(crate) dropped: u64,
    /// Incoming QoS 2 messages the application took (with their
    /// connection's epoch) whose acknowledgement the connection task has
    /// not applied yet: if their connection dies first, the next one must
    /// not deliver the server's resend again [MQTT-4.3.3-10].
    pub(crate) taken_qos2: Vec<(u64, PacketId)>,
}

impl RecvInner {
    /// Takes the next message; a QoS 2 one is remembered as taken when
    /// taking acknowledges (`remember`).
    fn take(&mut self, remember: bool) -> Option<Message> {
        let m = self.messages.pop_front()?;
        if remember
            && m.qos() == QoS::ExactlyOnce
            && let Some(id) = m.packet_id()
        {
            self.taken_qos2.push((m.epoch, id));
        }
        Some(m)
    }
}

/// Received messages waiting for the application, and connection events
/// waiting for the callback thread.
#[derive(Debug)]
pub(crate) struct RecvQueue {
    inner: Mutex<RecvInner>,
    cond: Condvar,
    notify: Notify,
    limit: usize,
    /// Taking a QoS 1/2 message acknowledges it (no manual
    /// acknowledgement): taken QoS 2 ids are remembered.
    remember_taken: bool,
}

impl RecvQueue {
    pub(crate) fn new(limit: usize, remember_taken: bool) -> Self {
        Self {
            inner: Mutex::new(RecvInner::default()),
            cond: Condvar::new(),
            notify: Notify::new(),
            limit,
            remember_taken,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, RecvInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        self.cond.notify_all();
        self.notify.notify_waiters();
    }

    /// Adds a received message. A QoS 0 message is dropped (and counted)
    /// when the queue is full; QoS 1/2 messages are bounded by the server's
    /// send window instead, since they are acknowledged only when taken.
    /// Returns false when the message was dropped.
    pub(crate) fn push_message(&self, message: Message) -> bool {
        {
            let mut q = self.lock();
            if message.qos() == QoS::AtMostOnce && q.messages.len() >= self.limit {
                q.dropped += 1;
                return false;
            }
            q.messages.push_back(message);
        }
        self.wake();
        true
    }

    /// Adds a connection event for the callback thread.
    pub(crate) fn push_event(&self, event: ConnEvent) {
        {
            let mut q = self.lock();
            if q.events.len() >= MAX_EVENTS {
                q.events.pop_front();
            }
            q.events.push_back(event);
        }
        self.wake();
    }

    /// Marks the client closed for good and wakes every waiter.
    pub(crate) fn close(&self, reason: CloseReason) {
        self.lock().closed.get_or_insert(reason);
        self.wake();
    }

    /// Wakes waiters to look again (a callback was set).
    pub(crate) fn poke(&self) {
        self.wake();
    }

    /// At the CONNACK of connection `epoch`: when the server resumed the
    /// session, removes the unacknowledged QoS 1/2 messages of earlier
    /// connections, which it sends again [MQTT-4.4.0-1].
    ///
    /// Returns the packet ids of the QoS 2 messages of earlier connections
    /// the application took before this purge (no later take can return
    /// one: they are gone), and forgets them: the session state must treat
    /// them as delivered [MQTT-4.3.3-10].
    pub(crate) fn purge_before(&self, epoch: u64, session_present: bool) -> Vec<PacketId> {
        let mut q = self.lock();
        if session_present {
            q.messages
                .retain(|m| m.qos() == QoS::AtMostOnce || m.epoch >= epoch);
        }
        let mut taken = Vec::new();
        q.taken_qos2.retain(|(e, id)| {
            if *e < epoch {
                taken.push(*id);
                false
            } else {
                true
            }
        });
        taken
    }

    /// Puts a message taken by [`RecvQueue::next_for_dispatch`] back at the
    /// front, untaken (the callback was removed meanwhile).
    pub(crate) fn put_back(&self, m: Message) {
        let mut q = self.lock();
        if let Some(id) = m.packet_id()
            && let Some(i) = q.taken_qos2.iter().rposition(|t| *t == (m.epoch, id))
        {
            q.taken_qos2.remove(i);
        }
        q.messages.push_front(m);
    }

    /// The connection task applied the acknowledgement of `id` (taken on
    /// connection `epoch`): no need to remember it any more.
    pub(crate) fn forget_taken(&self, epoch: u64, id: PacketId) {
        let mut q = self.lock();
        if let Some(i) = q.taken_qos2.iter().position(|t| *t == (epoch, id)) {
            q.taken_qos2.swap_remove(i);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().messages.len()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// The next message, without waiting. `Err` once the client has closed
    /// and every message was taken.
    pub(crate) fn try_pop(&self) -> Result<Option<Message>, ClientError> {
        let mut q = self.lock();
        match q.take(self.remember_taken) {
            Some(m) => Ok(Some(m)),
            None => match &q.closed {
                Some(r) => Err(ClientError::Closed(r.clone())),
                None => Ok(None),
            },
        }
    }

    /// The next message, waiting up to `timeout` (`None`: forever).
    pub(crate) fn pop_blocking(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Message>, ClientError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut q = self.lock();
        loop {
            if let Some(m) = q.take(self.remember_taken) {
                return Ok(Some(m));
            }
            if let Some(r) = &q.closed {
                return Err(ClientError::Closed(r.clone()));
            }
            let (g, timed_out) = wait_until(&self.cond, q, deadline);
            if timed_out {
                return Ok(None);
            }
            q = g;
        }
    }

    /// The next message, waiting asynchronously.
    pub(crate) async fn pop_async(&self) -> Result<Message, ClientError> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(m) = self.try_pop()? {
                return Ok(m);
            }
            notified.await;
        }
    }

    /// For the callback thread: waits until there is a message (when
    /// `take_messages`) or an event, or the client closed with nothing
    /// left. `None` means: closed and drained.
    pub(crate) fn next_for_dispatch(
        &self,
        take_messages: impl Fn() -> bool,
        poll: Duration,
    ) -> Option<Dispatch> {
        let mut q = self.lock();
        loop {
            if let Some(e) = q.events.pop_front() {
                return Some(Dispatch::Event(e));
            }
            if take_messages()
                && let Some(m) = q.take(self.remember_taken)
            {
                return Some(Dispatch::Message(m));
            }
            if q.closed.is_some() && (q.messages.is_empty() || !take_messages()) {
                return None;
            }
            // Woken by pushes; the poll interval also lets the thread see
            // that the Conn was dropped.
            let (g, timed_out) = wait_until(&self.cond, q, Instant::now().checked_add(poll));
            q = g;
            if timed_out {
                return Some(Dispatch::Idle);
            }
        }
    }
}

/// What the callback thread got.
pub(crate) enum Dispatch {
    Message(Message),
    Event(ConnEvent),
    Idle,
}

#[derive(Debug)]
struct SendInner {
    len: usize,
    closed: Option<CloseReason>,
}

/// The count of messages in the send queue: accepted by a publish call,
/// not yet handed to the socket.
#[derive(Debug)]
pub(crate) struct SendQueue {
    inner: Mutex<SendInner>,
    cond: Condvar,
    notify: Notify,
    limit: usize,
}

impl SendQueue {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(SendInner {
                len: 0,
                closed: None,
            }),
            cond: Condvar::new(),
            notify: Notify::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, SendInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }

    /// Takes one place, without waiting.
    pub(crate) fn try_reserve(&self) -> Result<(), ClientError> {
        let mut q = self.lock();
        Self::reserve_locked(&mut q, self.limit)
    }

    fn reserve_locked(q: &mut SendInner, limit: usize) -> Result<(), ClientError> {
        if let Some(r) = &q.closed {
            return Err(ClientError::Closed(r.clone()));
        }
        if q.len >= limit {
            return Err(ClientError::QueueFull { limit });
        }
        q.len += 1;
        Ok(())
    }

    /// Takes one place, waiting up to `timeout` for room.
    pub(crate) fn reserve_blocking(&self, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut q = self.lock();
        loop {
            match Self::reserve_locked(&mut q, self.limit) {
                Err(ClientError::QueueFull { .. }) => {}
                other => return other,
            }
            let (g, timed_out) = wait_until(&self.cond, q, deadline);
            if timed_out {
                return Err(ClientError::QueueFull { limit: self.limit });
            }
            q = g;
        }
    }

    /// Takes one place, waiting asynchronously for room.
    pub(crate) async fn reserve_async(&self) -> Result<(), ClientError> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_reserve() {
                Err(ClientError::QueueFull { .. }) => {}
                other => return other,
            }
            notified.await;
        }
    }

    /// Gives `n` places back.
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        {
            let mut q = self.lock();
            q.len = q.len.saturating_sub(n);
        }
        self.cond.notify_all();
        self.notify.notify_waiters();
    }

    /// Refuses further reservations and wakes waiters.
    pub(crate) fn close(&self, reason: CloseReason) {
        self.lock().closed.get_or_insert(reason);
        self.cond.notify_all();
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_queue_refuses_beyond_its_limit_and_frees_on_release() {
        let q = SendQueue::new(2);
        assert!(q.try_reserve().is_ok());
        assert!(q.try_reserve().is_ok());
        assert!(matches!(
            q.try_reserve(),
            Err(ClientError::QueueFull { limit: 2 })
        ));
        assert!(matches!(
            q.reserve_blocking(Duration::from_millis(5)),
            Err(ClientError::QueueFull { .. })
        ));
        q.release(1);
        assert_eq!(q.len(), 1);
        assert!(q.try_reserve().is_ok());
    }

    #[test]
    fn a_blocked_reservation_is_woken_by_a_release() {
        let q = std::sync::Arc::new(SendQueue::new(1));
        q.try_reserve().unwrap();
        let q2 = std::sync::Arc::clone(&q);
        let waiter = std::thread::spawn(move || q2.reserve_blocking(Duration::from_secs(10)));
        q.release(1);
        assert!(waiter.join().unwrap().is_ok());
    }

    #[test]
    fn a_closed_send_queue_refuses_with_the_reason() {
        let q = SendQueue::new(1);
        q.close(CloseReason::Closed);
        assert!(matches!(
            q.try_reserve(),
            Err(ClientError::Closed(CloseReason::Closed))
        ));
    }
}
