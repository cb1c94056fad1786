//! The listener's broker logic: who gets which message, sessions, retained
//! and will messages, and the [`hooks`] a program uses to decide.
//!
//! # Layout
//!
//! - [`Broker`] (this file): the shared broker of one [`crate::Ctx`], and
//!   what the application or a hook can do with it: publish as the broker,
//!   kick clients, list clients.
//! - `config.rs`: [`BrokerConfig`], limits and policies with documented
//!   defaults.
//! - `connection.rs`: one task per client connection, driving the sans-IO
//!   [`crate::session::Session`] over a framed byte stream.
//! - `router.rs`: the subscription trie and retained tree behind locks, and
//!   the fan-out of one message to its subscribers' mailboxes.
//! - `registry.rs`: sessions by client id (mailbox, subscriptions, detached
//!   state) and live connections; the in-memory store.
//! - `sweep.rs`: the connections' timers (keep alive, idle shrink), swept
//!   by the broker's ticker task instead of a timer per connection.
//! - `chain.rs`: runs the installed hooks in order.
//! - [`hooks`]: the hook trait and its types.

mod chain;
mod config;
mod connection;
pub mod hooks;
mod persist;
mod registry;
mod router;
mod sweep;
mod sys;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

pub(crate) use chain::EventKind;
pub use config::{BrokerConfig, BrokerConfigBuilder, ConfigError, DuplicateClientId};
pub(crate) use connection::serve;

use self::chain::HookChain;
use self::hooks::{ClientInfo, DropReason, Event, Hook, Message};
use self::registry::{
    Control, Delivery, Mailbox, PendingWill, Registry, Routed, SessionHandle, lock,
};
use self::router::{Router, Scratch};
use crate::ByteStr;
use crate::codec::{LastWill, PublishProperties, PublishProps, SubscriptionOptions};
use crate::session::{AckMode, SessionConfig};
use crate::topic::TopicFilter;

/// What is left of a session that was just marked ended: its undelivered
/// messages and a will still waiting for its delay.
type Ended = (VecDeque<Delivery>, Option<PendingWill>);

/// Why a broker operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker (its context) is gone.
    #[error("the broker has shut down")]
    Gone,
    /// A message to publish has an empty topic.
    #[error("[MQTT-4.7.3-1] a message needs a topic of at least one character")]
    EmptyTopic,
}

/// A client as [`Broker::clients`] lists it.
#[derive(Debug, Clone)]
pub struct ClientSummary {
    /// Address, client id, user name, protocol, keep-alive.
    pub info: Arc<ClientInfo>,
    /// The session's subscriptions with their options (granted QoS).
    pub subscriptions: Vec<(TopicFilter, SubscriptionOptions)>,
    /// Messages dropped for this client's session so far (queue full,
    /// expired, too large, denied).
    pub dropped: u64,
}

/// What [`Broker::detach`] needs to know about a closing connection.
pub(crate) struct Detach<'a> {
    pub(crate) session: &'a Arc<SessionHandle>,
    pub(crate) conn: &'a registry::ConnShared,
    pub(crate) state: crate::session::SessionState,
    /// The will, if this close publishes it.
    pub(crate) will: Option<LastWill>,
    /// Seconds; `u32::MAX` never expires.
    pub(crate) session_expiry: u32,
    /// Another connection takes the session: it decides its fate.
    pub(crate) taken_over: bool,
    /// The stored records of `state` (brokers with a store).
    pub(crate) track: Option<persist::Track>,
    /// The protocol level, for the stored session record.
    pub(crate) protocol: crate::codec::ProtocolVersion,
    /// The broker is shutting down.
    pub(crate) shutdown: bool,
}

/// Counts live tasks so shutdown can wait for them to finish.
#[derive(Debug, Default)]
pub(crate) struct TaskCounter {
    live: AtomicUsize,
    idle: Notify,
}

/// Held by a counted task; dropping it counts the task out.
#[derive(Debug)]
pub(crate) struct TaskGuard(Arc<BrokerInner>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.tasks.idle.notify_waiters();
        }
    }
}

/// The broker shared by every listener of a context: sessions,
/// subscriptions and retained messages, and the installed hooks.
///
/// Cheap to clone. Hooks get a [`WeakBroker`] (see
/// [`Hook::installed`]) and the application gets one from
/// [`crate::Ctx::broker`].
#[derive(Clone)]
pub struct Broker {
    inner: Arc<BrokerInner>,
}

/// A weak handle on a [`Broker`]: does not keep it alive.
#[derive(Clone, Debug)]
pub struct WeakBroker(Weak<BrokerInner>);

impl WeakBroker {
    /// The broker, if it still exists.
    pub fn upgrade(&self) -> Option<Broker> {
        self.0.upgrade().map(|inner| Broker { inner })
    }

    /// Publishes as the broker; see [`Broker::publish`].
    pub fn publish(&self, msg: Message) -> Result<usize, BrokerError> {
        self.upgrade().ok_or(BrokerError::Gone)?.publish(msg)
    }

    /// Queues a message for one client; see [`Broker::publish_to`].
    pub fn publish_to(&self, client_id: &str, msg: Message) -> Result<bool, BrokerError> {
        self.upgrade()
            .ok_or(BrokerError::Gone)?
            .publish_to(client_id, msg)
    }

    /// Kicks a client by id; see [`Broker::kick_client`].
    pub fn kick_client(&self, client_id: &str, with_will: bool) -> Result<bool, BrokerError> {
        Ok(self
            .upgrade()
            .ok_or(BrokerError::Gone)?
            .kick_client(client_id, with_will))
    }

    /// Kicks clients by user name; see [`Broker::kick_username`].
    pub fn kick_username(&self, username: &str, with_will: bool) -> Result<usize, BrokerError> {
        Ok(self
            .upgrade()
            .ok_or(BrokerError::Gone)?
            .kick_username(username, with_will))
    }

    /// Lists the connected clients; see [`Broker::clients`].
    pub fn clients(&self) -> Result<Vec<ClientSummary>, BrokerError> {
        Ok(self.upgrade().ok_or(BrokerError::Gone)?.clients())
    }
}

pub(crate) struct BrokerInner {
    config: BrokerConfig,
    /// The protocol settings of every connection, derived from `config`.
    session_config: Arc<SessionConfig>,
    handle: tokio::runtime::Handle,
    shutdown: watch::Receiver<bool>,
    /// The installed hooks. A std lock is fine: it is held to clone an
    /// `Arc`, and connections re-read it only when `chain_version` moved.
    chain: RwLock<Arc<HookChain>>,
    chain_version: AtomicU64,
    router: Router,
    registry: Registry,
    tasks: TaskCounter,
    /// Messages dropped anywhere (queue full, expired, too large, ...).
    dropped: AtomicU64,
    started: Instant,
    /// The connections' timers, swept by the ticker task.
    timers: sweep::Timers,
    /// The durable store; `None`: memory only, no store call anywhere.
    persist: Option<persist::Persist>,
}

impl fmt::Debug for BrokerInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.config)
            .field("sessions", &self.registry.session_count())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Broker {
    /// A broker running its tasks on `handle`, stopping when `shutdown`
    /// turns true.
    ///
    /// With a storage configuration, the store is opened (a corrupt or
    /// locked store is an error, never wiped) and its sessions, retained
    /// messages and wills are brought back.
    pub(crate) fn new(
        config: BrokerConfig,
        handle: tokio::runtime::Handle,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, crate::store::StoreError> {
        let (persist, loaded) = match &config.storage {
            Some(sc) => {
                let (p, l) = persist::Persist::open(sc)?;
                (Some(p), Some(l))
            }
            None => (None, None),
        };
        let hooks = config.hooks.clone();
        let chain = HookChain::new(hooks, config.hook_policy);
        let session_config = Arc::new(session_config(&config));
        let broker = Self {
            inner: Arc::new(BrokerInner {
                config,
                session_config,
                handle,
                shutdown,
                chain: RwLock::new(Arc::new(chain)),
                chain_version: AtomicU64::new(0),
                router: Router::default(),
                registry: Registry::default(),
                tasks: TaskCounter::default(),
                dropped: AtomicU64::new(0),
                started: Instant::now(),
                timers: sweep::Timers::default(),
                persist,
            }),
        };
        let weak = broker.downgrade();
        for hook in broker.chain().hooks() {
            hook.installed(&weak);
        }
        if let Some(loaded) = loaded {
            let _enter = broker.inner.handle.enter();
            broker.restore(loaded);
        }
        broker.start_ticker();
        sys::start(&broker);
        Ok(broker)
    }

    /// Commits what was submitted, then closes the store: its files and its
    /// folder's lock are released even while handles to this broker live
    /// on (a new context may open the same path at once). Called by
    /// [`crate::Ctx::exit`] once the connections are closed; later store
    /// writes fail (logged). Blocks up to `timeout`; not from a runtime
    /// thread.
    pub(crate) fn release_store(&self, timeout: Duration) {
        if let Some(p) = self.persist()
            && !p.writer.release(timeout)
        {
            tracing::warn!("the store writer did not finish in time");
        }
    }

    /// The store's writer statistics (batches, submissions, ops, fsyncs),
    /// if the broker has a store.
    pub fn store_stats(&self) -> Option<crate::store::WriterStats> {
        self.persist().map(|p| p.writer.stats())
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// A weak handle, for hooks.
    pub fn downgrade(&self) -> WeakBroker {
        WeakBroker(Arc::downgrade(&self.inner))
    }

    /// Installs a hook at the end of the chain. Connections use it from
    /// their next decision on.
    pub fn add_hook(&self, hook: Arc<dyn Hook>) {
        hook.installed(&self.downgrade());
        let mut slot = self
            .inner
            .chain
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut hooks: Vec<Arc<dyn Hook>> = slot.hooks().cloned().collect();
        hooks.push(hook);
        *slot = Arc::new(HookChain::new(hooks, self.inner.config.hook_policy));
        self.inner.chain_version.fetch_add(1, Ordering::Release);
    }

    /// The current hook chain.
    pub(crate) fn chain(&self) -> Arc<HookChain> {
        Arc::clone(
            &self
                .inner
                .chain
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// A version number that changes whenever a hook is added.
    pub(crate) fn chain_version(&self) -> u64 {
        self.inner.chain_version.load(Ordering::Acquire)
    }

    /// The protocol settings of a new connection.
    pub(crate) fn session_config(&self) -> Arc<SessionConfig> {
        Arc::clone(&self.inner.session_config)
    }

    pub(crate) fn router(&self) -> &Router {
        &self.inner.router
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The connections' timers ([`sweep`]).
    pub(crate) fn timers(&self) -> &sweep::Timers {
        &self.inner.timers
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    /// A receiver that turns true when the context shuts down.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.clone()
    }

    /// Counts a task in; shutdown waits for it.
    pub(crate) fn enter_task(&self) -> TaskGuard {
        self.inner.tasks.live.fetch_add(1, Ordering::AcqRel);
        TaskGuard(Arc::clone(&self.inner))
    }

    /// Waits until every counted task (connection) has finished.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let idle = self.inner.tasks.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inner.tasks.live.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Counts a dropped message.
    pub(crate) fn count_drop(&self) {
        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages dropped so far: mailbox full, expired, too large for the
    /// client, denied on delivery, or left when a session ended.
    pub fn dropped_count(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Connected clients.
    pub fn connection_count(&self) -> usize {
        self.inner.registry.connected.load(Ordering::Relaxed)
    }

    /// Sessions, connected or not.
    pub fn session_count(&self) -> usize {
        self.inner.registry.session_count()
    }

    /// Subscriptions (a share group membership counts as one).
    pub fn subscription_count(&self) -> usize {
        self.inner.router.subscription_count()
    }

    /// Retained messages.
    pub fn retained_count(&self) -> usize {
        self.inner.router.retained_count()
    }

    /// How long the broker has run.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Publishes `msg` as the broker: routed to every matching subscription
    /// and retained if its retain flag is set, without publish hooks (the
    /// broker is not a client), with the delivery ACL still checked per
    /// subscriber when a hook asks for it. Returns how many clients it was
    /// queued for.
    ///
    /// Callable from any thread, hooks included; it never waits.
    pub fn publish(&self, mut msg: Message) -> Result<usize, BrokerError> {
        if msg.topic.is_empty() {
            return Err(BrokerError::EmptyTopic);
        }
        clean_properties(&mut msg.properties);
        let routed = Arc::new(Routed {
            message: msg,
            created: Instant::now(),
        });
        let chain = self.chain();
        Ok(self.route(&routed, None, &mut Scratch::default(), &chain))
    }

    /// Queues `msg` for the one client whose session has id `client_id`
    /// (connected, or offline with a persistent session for QoS 1/2), as
    /// the broker: no subscription needed, no publish hooks, not retained.
    /// Returns false when there is no such session or its queue refused the
    /// message (full, or QoS 0 for an offline session). Never waits.
    ///
    /// How a hook answers one client (PyMyQtt's `conn.pub` on the listener
    /// side, mosquitto's `broker_publish` with a client id).
    pub fn publish_to(&self, client_id: &str, mut msg: Message) -> Result<bool, BrokerError> {
        if msg.topic.is_empty() {
            return Err(BrokerError::EmptyTopic);
        }
        let Some(session) = self.inner.registry.get(client_id) else {
            return Ok(false);
        };
        clean_properties(&mut msg.properties);
        let qos = msg.qos;
        // With a store, a QoS 1/2 message for a persistent session is
        // written before it is queued, as routed messages are (never as a
        // retained message: this one is not retained).
        let store = qos != crate::codec::QoS::AtMostOnce
            && session.is_persistent()
            && self.persist().is_some();
        if store {
            msg.retain = false;
        }
        let delivery = registry::Delivery {
            msg: Arc::new(Routed {
                message: msg,
                created: Instant::now(),
            }),
            qos,
            retain: false,
            sub_ids: Vec::new(),
            stored: None,
        };
        if store {
            let routed = Arc::clone(&delivery.msg);
            let chain = self.chain();
            if let Some(staged) = self.stage(&routed, vec![(session, delivery)]) {
                self.submit_staged_detached(staged, &chain);
            }
            return Ok(true);
        }
        match session.push(delivery) {
            Ok(()) => Ok(true),
            Err(registry::Refused::Dropped(why)) => {
                self.count_drop();
                tracing::debug!(client_id, ?why, "message for one client dropped");
                Ok(false)
            }
            Err(registry::Refused::Skipped) => Ok(false),
        }
    }

    /// Routes (and retains) a message; returns the number of clients it
    /// matched. `chain` gets the drop events.
    pub(crate) fn route(
        &self,
        routed: &Arc<Routed>,
        origin: Option<u64>,
        scratch: &mut Scratch,
        chain: &HookChain,
    ) -> usize {
        let (matched, staged) = self.route_staged(routed, origin, scratch, chain);
        if let Some(staged) = staged {
            self.submit_staged_detached(staged, chain);
        }
        matched
    }

    /// Routes (and retains) a message; with a store, the deliveries to
    /// persistent sessions are held back in the returned [`persist::Staged`]
    /// until its batch is submitted.
    pub(crate) fn route_staged(
        &self,
        routed: &Arc<Routed>,
        origin: Option<u64>,
        scratch: &mut Scratch,
        chain: &HookChain,
    ) -> (usize, Option<persist::Staged>) {
        let mut staged = persist::Staged::default();
        let (matched, any) = self.route_into(routed, origin, scratch, chain, &mut staged);
        (matched, any.then_some(staged))
    }

    /// Routes (and retains) a message; with a store, its store ops and the
    /// deliveries to persistent sessions (held back until those ops are
    /// submitted) are added to `into`. The number of clients it matched,
    /// and whether anything was added.
    pub(crate) fn route_into(
        &self,
        routed: &Arc<Routed>,
        origin: Option<u64>,
        scratch: &mut Scratch,
        chain: &HookChain,
        into: &mut persist::Staged,
    ) -> (usize, bool) {
        if routed.message.retain && self.inner.config.retain_available {
            self.inner.router.retain(routed);
        }
        let defer = self.inner.persist.is_some();
        let stats = self
            .inner
            .router
            .route(routed, origin, scratch, defer, |session, why| {
                self.count_drop();
                chain.emit(EventKind::Messages, || {
                    Event::Dropped(&session.client_id, &routed.message, why)
                });
            });
        if !defer {
            return (stats.matched, false);
        }
        let added = self.stage_into(routed, &mut scratch.deferred, into);
        (stats.matched, added)
    }

    /// Kicks the client connected with `client_id`: MQTT 5 clients get
    /// DISCONNECT 0x98 Administrative action. With `with_will` its will is
    /// published as after an abnormal close; without, it is discarded.
    /// False if no such client is connected.
    pub fn kick_client(&self, client_id: &str, with_will: bool) -> bool {
        let Some(session) = self.inner.registry.get(client_id) else {
            return false;
        };
        let conn = lock(&session.mailbox).conn.clone();
        match conn {
            Some(conn) => {
                conn.command(Control::Kick { with_will });
                true
            }
            None => false,
        }
    }

    /// Kicks every client connected with user name `username` (see
    /// [`kick_client`](Self::kick_client)); returns how many.
    pub fn kick_username(&self, username: &str, with_will: bool) -> usize {
        let conns: Vec<_> = self
            .inner
            .registry
            .live()
            .into_iter()
            .filter(|(c, _)| c.info.username.as_deref() == Some(username))
            .map(|(c, _)| c)
            .collect();
        for c in &conns {
            c.command(Control::Kick { with_will });
        }
        conns.len()
    }

    /// The connected clients with their subscriptions.
    pub fn clients(&self) -> Vec<ClientSummary> {
        let conns: Vec<_> = self
            .inner
            .registry
            .live()
            .into_iter()
            .map(|(c, s)| (Arc::clone(&c.info), s))
            .collect();
        conns
            .into_iter()
            .map(|(info, session)| {
                let mut subscriptions: Vec<_> = lock(&session.subscriptions)
                    .iter()
                    .map(|(f, r)| (f.clone(), r.options))
                    .collect();
                subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
                ClientSummary {
                    info,
                    subscriptions,
                    dropped: session.dropped(),
                }
            })
            .collect()
    }

    /// Ends a session: its subscriptions go, its queued messages are
    /// dropped, a will waiting for its delay is published now.
    pub(crate) fn end_session(&self, session: &Arc<SessionHandle>) {
        let ended = Self::end_locked(&mut lock(&session.mailbox));
        if let Some(ended) = ended {
            self.finish_end(session, ended);
        }
    }

    /// Ends a session as [`end_session`](Self::end_session) does, if its
    /// generation is still `generation` (when given): checked in the same
    /// critical section that marks it ended, so a session resumed after an
    /// expiry timer fired is not ended under its new connection.
    pub(crate) fn end_session_if(&self, session: &Arc<SessionHandle>, generation: Option<u64>) {
        let ended = {
            let mut mb = lock(&session.mailbox);
            if generation.is_some_and(|g| g != mb.generation) {
                None
            } else {
                Self::end_locked(&mut mb)
            }
        };
        if let Some(ended) = ended {
            self.finish_end(session, ended);
        }
    }

    /// Marks a session ended under its mailbox lock, so no connection can
    /// attach to it from then on; `None` if it had already ended. The rest
    /// is done by [`Self::finish_end`] outside the lock.
    fn end_locked(mb: &mut Mailbox) -> Option<Ended> {
        if mb.ended {
            return None;
        }
        mb.ended = true;
        mb.state = None;
        Some((mb.queue.take(), mb.pending_will.take().map(|w| *w)))
    }

    /// The second half of ending a session: subscriptions, registry entry,
    /// dropped messages, a delayed will published now.
    fn finish_end(&self, session: &Arc<SessionHandle>, (queue, will): Ended) {
        let subs = std::mem::take(&mut *lock(&session.subscriptions));
        self.inner.router.unsubscribe_all(subs.keys(), session.key);
        self.inner.registry.remove(session);
        if session.is_persistent() {
            session.set_persistent(false);
            if let Some(p) = self.persist() {
                let mut b = crate::store::Batch::new();
                b.remove_session(crate::store::SessionKey::broker(session.client_id.clone()));
                if will.is_some() {
                    b.remove_will(session.client_id.clone());
                }
                p.submit_now(self, b);
            }
        }
        if !queue.is_empty() {
            let chain = self.chain();
            for d in &queue {
                self.count_drop();
                chain.emit(EventKind::Messages, || {
                    Event::Dropped(&session.client_id, &d.msg.message, DropReason::SessionEnded)
                });
            }
        }
        tracing::debug!(client_id = %session.client_id, "session ended");
        if let Some(PendingWill { will, client }) = will {
            self.spawn_will(client, will);
        }
    }

    /// Detaches a closing connection from its session: the session is kept
    /// (with its state) for its expiry interval, or ended now; the will is
    /// scheduled after its delay or returned to be published now.
    pub(crate) fn detach(&self, d: Detach<'_>) -> Option<LastWill> {
        let Detach {
            session,
            conn,
            state,
            will,
            session_expiry,
            taken_over,
            track,
            protocol,
            shutdown,
        } = d;
        let delay = will
            .as_ref()
            .and_then(|w| w.properties.will_delay_interval)
            .unwrap_or(0);
        // At shutdown without a store the session ends with the process:
        // its will cannot wait for a delay [MQTT-3.1.2-8] (5.0 §3.1.3.2.2).
        let delayed = delay > 0 && session_expiry > 0 && !(shutdown && self.persist().is_none());
        let mut will_now = None;
        let (generation, ended) = {
            let mut mb = lock(&session.mailbox);
            // The same allocation: `conn` is alive, so its address is
            // not reused meanwhile.
            let ours = mb
                .conn
                .as_ref()
                .is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), conn));
            let generation = if ours {
                session.detach_locked(&mut mb)
            } else {
                mb.generation
            };
            // A session with expiry 0 ends with its connection, a takeover
            // included: the new connection starts afresh (3.1.1
            // [MQTT-3.1.2-6]; 5.0 §3.1.4).
            if session_expiry > 0 {
                mb.state = Some(Box::new(state));
                mb.track = track.map(Box::new);
            }
            // Ended under the same lock as the detach: a connection
            // claiming the client id meanwhile never resumes it.
            let ended = if session_expiry == 0 {
                Self::end_locked(&mut mb)
            } else {
                None
            };
            if let Some(w) = will {
                if delayed {
                    // [MQTT-3.1.3-9] (5.0): wait for the delay; a new
                    // connection to the session cancels it.
                    mb.pending_will = Some(Box::new(PendingWill {
                        will: w,
                        client: Arc::clone(&conn.info),
                    }));
                } else {
                    will_now = Some(w);
                }
            }
            (generation, ended)
        };
        self.inner.registry.detached.notify_waiters();
        if let Some(p) = self.persist()
            && session.is_persistent()
            && !taken_over
            && session_expiry > 0
        {
            // The expiry counts from this wall-clock time, across restarts.
            let now = crate::store::Timestamp::now();
            let mut b = crate::store::Batch::new();
            b.put_session(crate::store::SessionRecord {
                key: crate::store::SessionKey::broker(session.client_id.clone()),
                protocol,
                expiry_interval: session_expiry,
                disconnected_at: Some(now),
            });
            if delayed && let Some(pw) = &lock(&session.mailbox).pending_will {
                b.put_will(crate::store::WillRecord {
                    client_id: session.client_id.clone(),
                    will: pw.will.clone(),
                    due_at: now.plus_secs(delay.min(session_expiry)),
                });
            }
            p.submit_now(self, b);
        }
        if let Some(ended) = ended {
            self.finish_end(session, ended);
        } else if !taken_over && session_expiry != u32::MAX {
            let expiry = Duration::from_secs(u64::from(session_expiry));
            self.after(session, generation, expiry, move |b, s| {
                b.end_session_if(s, Some(generation));
            });
        }
        if delayed {
            let wait = Duration::from_secs(u64::from(delay.min(session_expiry)));
            self.after(session, generation, wait, move |b, s| {
                let pending = {
                    let mut mb = lock(&s.mailbox);
                    if mb.generation == generation {
                        mb.pending_will.take().map(|w| *w)
                    } else {
                        None
                    }
                };
                if let Some(PendingWill { will, client }) = pending {
                    b.forget_will(&client.client_id);
                    b.spawn_will(client, will);
                }
            });
        }
        will_now
    }

    /// Publishes a will from a task (its hooks may answer later).
    pub(crate) fn spawn_will(&self, client: Arc<ClientInfo>, will: LastWill) {
        let broker = self.clone();
        self.inner.handle.spawn(async move {
            broker.publish_will(&client, will).await;
        });
    }

    /// Publishes a client's will through the same checks as its PUBLISH
    /// packets: the publish ACL and the on_publish verdict; a refused will
    /// is never routed nor retained.
    pub(crate) async fn publish_will(&self, client: &Arc<ClientInfo>, will: LastWill) {
        let msg = will_message(will);
        let chain = self.chain();
        let msg = if chain.is_empty() {
            msg
        } else {
            if !chain.publish_allowed(client, &msg).await {
                tracing::debug!(client_id = %client.client_id, "will refused by the ACL");
                return;
            }
            if let chain::PublishOutcome::Route(m) = chain.on_publish(client, msg).await {
                m
            } else {
                tracing::debug!(client_id = %client.client_id, "will discarded by a hook");
                return;
            }
        };
        let mut msg = msg;
        clean_properties(&mut msg.properties);
        own_small_parts(&mut msg);
        let routed = Arc::new(Routed {
            message: msg,
            created: Instant::now(),
        });
        let n = self.route(&routed, None, &mut Scratch::default(), &chain);
        tracing::debug!(client_id = %client.client_id, topic = %routed.message.topic, subscribers = n, "will published");
    }

    /// Schedules `f` after `delay`, unless the session's generation moved
    /// (it was reattached) meanwhile. The check here is only a shortcut:
    /// the session can be resumed right after it, so `f` checks the
    /// generation again in the critical section where it acts.
    pub(crate) fn after(
        &self,
        session: &Arc<SessionHandle>,
        generation: u64,
        delay: Duration,
        f: impl FnOnce(&Self, &Arc<SessionHandle>) + Send + 'static,
    ) {
        let broker = self.downgrade();
        let session = Arc::downgrade(session);
        let mut shutdown = self.shutdown_signal();
        self.inner.handle.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = crate::broker::signalled(&mut shutdown) => return,
            }
            let (Some(broker), Some(session)) = (broker.upgrade(), session.upgrade()) else {
                return;
            };
            let current = lock(&session.mailbox).generation;
            if current == generation {
                f(&broker, &session);
            }
        });
    }

    /// Tells every live connection that the context is shutting down. A
    /// connection that attaches after this sees the signal itself
    /// ([`Self::is_shutting_down`]) once attached to its session.
    fn shutdown_connections(&self) {
        for (c, _) in self.inner.registry.live() {
            c.command(Control::Shutdown);
        }
    }

    /// True once the shutdown signal is set (or its sender is gone).
    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow() || self.inner.shutdown.has_changed().is_err()
    }

    /// Starts the broker's ticker task: the hooks' periodic tick and the
    /// retained messages' expiry every `tick_interval`, the connections'
    /// timers every [`sweep::SWEEP_EVERY`], and the shutdown of live
    /// connections.
    fn start_ticker(&self) {
        let interval = self.inner.config.tick_interval;
        let broker = self.downgrade();
        let mut shutdown = self.shutdown_signal();
        self.inner.handle.spawn(async move {
            let period = if interval.is_zero() {
                Duration::from_secs(60)
            } else {
                interval
            };
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            let mut sweep = tokio::time::interval(sweep::SWEEP_EVERY);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let tick = tokio::select! {
                    _ = ticker.tick() => true,
                    _ = sweep.tick() => false,
                    () = crate::broker::signalled(&mut shutdown) => {
                        if let Some(broker) = broker.upgrade() {
                            broker.shutdown_connections();
                        }
                        return;
                    }
                };
                let Some(broker) = broker.upgrade() else {
                    return;
                };
                let now = Instant::now();
                if !tick {
                    broker.timers().sweep(now);
                    continue;
                }
                if !interval.is_zero() {
                    broker.chain().emit(EventKind::Lifecycle, || Event::Tick);
                }
                broker.router().sweep_retained(now);
            }
        });
    }
}

/// The per-connection protocol settings for `config`: manual
/// acknowledgement, so a PUBLISH is acknowledged only once the broker has
/// decided (and the reason code can say what happened).
fn session_config(config: &BrokerConfig) -> SessionConfig {
    let mut b = SessionConfig::builder()
        .receive_maximum(config.receive_maximum)
        .topic_alias_maximum(config.topic_alias_maximum)
        .outgoing_topic_aliases(config.outgoing_topic_aliases)
        .max_inflight(config.max_inflight)
        .ack_mode(AckMode::Manual);
    if config.max_packet_size > 0 {
        b = b.maximum_packet_size(config.max_packet_size);
    }
    // The broker configuration was checked: these values are valid.
    b.build().unwrap_or_default()
}

/// Properties a forwarded message must not carry from its publisher: the
/// topic alias is per connection (MQTT 5.0 §3.3.2.3.4), and subscription
/// identifiers are the receiver's own [MQTT-3.3.4-3].
fn clean_properties(p: &mut PublishProps) {
    if p.topic_alias.is_some() || !p.subscription_identifiers.is_empty() {
        let p = p.make_mut();
        p.topic_alias = None;
        p.subscription_identifiers.clear();
    }
}

/// Values shorter than this are copied out of the read buffer before the
/// broker keeps them: a zero-copy slice pins its whole read chunk (16 KiB
/// or more), so a one-byte retained message would hold the chunk.
const COPY_BELOW: usize = 1024;

/// A copy of `b` with its own allocation when it is small (see
/// [`COPY_BELOW`]); large values stay shared, where the slice is most of
/// its chunk.
fn own_small(b: &bytes::Bytes) -> bytes::Bytes {
    if b.len() < COPY_BELOW {
        bytes::Bytes::copy_from_slice(b)
    } else {
        b.clone()
    }
}

pub(crate) fn own_small_str(s: &ByteStr) -> ByteStr {
    if s.len() < COPY_BELOW {
        ByteStr::from(s.as_str())
    } else {
        s.clone()
    }
}

/// A copy of `t` that pins no read buffer: an inline name (see
/// [`TopicName::INLINE_CAPACITY`](crate::topic::TopicName::INLINE_CAPACITY))
/// owns its bytes already and is cloned; a longer one is copied when small.
fn own_small_topic(t: &crate::topic::TopicName) -> crate::topic::TopicName {
    if t.is_inline() || t.as_str().len() >= COPY_BELOW {
        return t.clone();
    }
    crate::topic::TopicName::new(ByteStr::from(t.as_str())).unwrap_or_else(|_| t.clone())
}

/// Messages whose topic and payload take at most this many bytes are
/// copied into the current thread's copy chunk (see
/// [`own_topic_and_payload`]).
const CHUNKED_BELOW: usize = 256;
/// The size of a copy chunk.
const CHUNK: usize = 4096;

thread_local! {
    /// The unused rest of this thread's copy chunk.
    static COPIES: std::cell::RefCell<bytes::BytesMut> =
        std::cell::RefCell::new(bytes::BytesMut::new());
}

/// A copy of `parts`, one after the other, taken from this thread's copy
/// chunk (at most [`CHUNKED_BELOW`] bytes in all).
fn chunk_copy(parts: &[&[u8]]) -> bytes::BytesMut {
    let n = parts.iter().map(|p| p.len()).sum();
    COPIES.with_borrow_mut(|chunk| {
        if chunk.capacity() - chunk.len() < n {
            *chunk = bytes::BytesMut::with_capacity(CHUNK.max(n));
        }
        for p in parts {
            chunk.extend_from_slice(p);
        }
        chunk.split_to(n)
    })
}

/// Copies a small topic and a small payload out of the read buffer; false
/// (nothing done) when either is large.
///
/// Design: this runs for every message routed. Two separate copies would
/// cost two allocations, and two more at their first clone (a `Bytes` made
/// from a `Vec` allocates its shared header when first cloned, and every
/// delivery clones both). A message that is not retained, the common case,
/// goes into the thread's copy chunk (4 KiB, shared by the messages copied
/// into it): no allocation per message, and clones allocate nothing. A
/// chunk lives while any of its messages does, so a retained message, which
/// may live for ever, gets one exact allocation for both parts instead. A
/// topic stored inline (most) owns its bytes: only the payload is copied.
fn own_topic_and_payload(m: &mut Message) -> bool {
    if m.topic.is_inline() {
        own_payload(m);
        return true;
    }
    let topic = m.topic.as_str().as_bytes();
    if topic.len() >= COPY_BELOW || m.payload.len() >= COPY_BELOW {
        return false;
    }

    let n = topic.len() + m.payload.len();
    let mut both = if !m.retain && n <= CHUNKED_BELOW {
        chunk_copy(&[topic, &m.payload])
    } else {
        let mut buf = bytes::BytesMut::with_capacity(n);
        buf.extend_from_slice(topic);
        buf.extend_from_slice(&m.payload);
        buf
    };
    let payload = both.split_off(topic.len()).freeze();
    let Ok(topic) = ByteStr::from_utf8(both.freeze()) else {
        return false;
    };
    let Ok(topic) = crate::topic::TopicName::new(topic) else {
        return false;
    };
    m.topic = topic;
    m.payload = payload;
    true
}

/// Copies the payload of `m` out of the read buffer when it is small: into
/// the thread's copy chunk in transit, into its own allocation when
/// retained (see [`own_topic_and_payload`]).
fn own_payload(m: &mut Message) {
    if !m.retain && m.payload.len() <= CHUNKED_BELOW {
        m.payload = chunk_copy(&[&m.payload]).freeze();
    } else {
        m.payload = own_small(&m.payload);
    }
}

/// Copies the small parts of a message the broker may keep for long
/// (retained, queued for an offline session) out of the connection's read
/// buffer, so they do not pin it.
pub(crate) fn own_small_parts(m: &mut Message) {
    if !own_topic_and_payload(m) {
        m.payload = own_small(&m.payload);
        m.topic = own_small_topic(&m.topic);
    }
    own_small_properties(m);
}

/// [`own_small_parts`] for a message whose topic is replaced by `topic`,
/// an own copy of the same name (the route cache's): only the payload and
/// the properties are copied.
pub(crate) fn own_small_parts_but_topic(m: &mut Message, topic: crate::topic::TopicName) {
    m.topic = topic;
    own_payload(m);
    own_small_properties(m);
}

/// The properties' part of [`own_small_parts`].
fn own_small_properties(m: &mut Message) {
    let Some(p) = m.properties.get_mut() else {
        return;
    };
    own_application_properties(
        &mut p.response_topic,
        &mut p.correlation_data,
        &mut p.content_type,
        &mut p.user_properties,
    );
}

/// The application properties a message and a will share (MQTT 5.0
/// §3.1.3.2, §3.3.2.3), copied out of a read buffer ([`own_small_parts`]).
fn own_application_properties(
    response_topic: &mut Option<crate::topic::TopicName>,
    correlation_data: &mut Option<bytes::Bytes>,
    content_type: &mut Option<ByteStr>,
    user_properties: &mut crate::codec::UserProperties,
) {
    if let Some(t) = response_topic.as_ref() {
        *response_topic = Some(own_small_topic(t));
    }
    if let Some(c) = correlation_data.as_ref() {
        *correlation_data = Some(own_small(c));
    }
    if let Some(c) = content_type.as_ref() {
        *content_type = Some(own_small_str(c));
    }
    for (k, v) in user_properties.iter_mut() {
        *k = own_small_str(k);
        *v = own_small_str(v);
    }
}

/// Copies the small parts of a will out of the CONNECT's read buffer: the
/// connection keeps its will for its whole life, and a slice would keep the
/// buffer alive with it.
pub(crate) fn own_will(w: &mut LastWill) {
    w.payload = own_small(&w.payload);
    w.topic = own_small_topic(&w.topic);
    let p = &mut w.properties;
    own_application_properties(
        &mut p.response_topic,
        &mut p.correlation_data,
        &mut p.content_type,
        &mut p.user_properties,
    );
}

/// A copy of a subscription filter with its own allocation (see
/// [`own_small_parts`]).
pub(crate) fn own_filter(f: &TopicFilter) -> TopicFilter {
    TopicFilter::new(own_small_str(f.as_byte_str())).unwrap_or_else(|_| f.clone())
}

/// A will as an application message (MQTT 5 will properties become the
/// message's properties, MQTT 5.0 §3.1.3.2).
fn will_message(will: LastWill) -> Message {
    let wp = will.properties;
    Message {
        topic: will.topic,
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        properties: PublishProperties {
            payload_format_indicator: wp.payload_format_indicator,
            message_expiry_interval: wp.message_expiry_interval,
            topic_alias: None,
            response_topic: wp.response_topic,
            correlation_data: wp.correlation_data,
            user_properties: wp.user_properties,
            subscription_identifiers: Vec::new(),
            content_type: wp.content_type,
        }
        .into(),
    }
}

/// A unique client id for a client that sent none.
pub(crate) fn assigned_client_id(n: u64) -> ByteStr {
    ByteStr::from(format!("myqtt-{n:016x}"))
}

/// Completes once `flag` is true (or its sender is gone, which means the
/// same: the owner has shut down).
pub(crate) async fn signalled(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(part: &[u8], chunk: &bytes::Bytes) -> bool {
        let range = chunk.as_ptr_range();
        range.contains(&part.as_ptr())
    }

    #[test]
    fn small_parts_of_a_kept_message_do_not_point_into_the_read_buffer() {
        // A read chunk holding a tiny PUBLISH next to a large one.
        let mut raw = b"t/1xuserv".to_vec();
        raw.extend(std::iter::repeat_n(0u8, 16 * 1024));
        let chunk = bytes::Bytes::from(raw);
        let topic = ByteStr::from_utf8(chunk.slice(0..3)).unwrap();
        let mut msg = Message {
            topic: crate::topic::TopicName::new(topic).unwrap(),
            payload: chunk.slice(3..4),
            qos: crate::codec::QoS::AtMostOnce,
            retain: true,
            properties: PublishProps::new(),
        };
        msg.properties.make_mut().user_properties.push((
            ByteStr::from_utf8(chunk.slice(4..8)).unwrap(),
            ByteStr::from_utf8(chunk.slice(8..9)).unwrap(),
        ));
        let large = chunk.slice(9..);
        let mut big = msg.clone();
        big.payload = large.clone();
        own_small_parts(&mut msg);
        own_small_parts(&mut big);
        assert_eq!(msg.payload.as_ref(), b"x");
        assert_eq!(msg.topic.as_str(), "t/1");
        assert!(!inside(&msg.payload, &chunk));
        assert!(!inside(msg.topic.as_str().as_bytes(), &chunk));
        let (k, v) = &msg.properties.user_properties[0];
        assert!(!inside(k.as_str().as_bytes(), &chunk) && !inside(v.as_str().as_bytes(), &chunk));
        // A large payload stays shared: copying it would gain nothing.
        assert!(inside(&big.payload, &chunk));
        let filter = TopicFilter::new(ByteStr::from_utf8(chunk.slice(0..3)).unwrap()).unwrap();
        assert!(!inside(own_filter(&filter).as_str().as_bytes(), &chunk));
    }

    #[test]
    fn small_messages_in_transit_share_a_copy_chunk_and_retained_ones_do_not() {
        // A topic longer than the inline capacity shares the read buffer:
        // it is copied with the payload.
        let long = "t/".repeat(crate::topic::TopicName::INLINE_CAPACITY);
        let read = bytes::Bytes::from(format!("{long}xyz"));
        let message = |retain| Message {
            topic: crate::topic::TopicName::new(
                ByteStr::from_utf8(read.slice(0..long.len())).unwrap(),
            )
            .unwrap(),
            payload: read.slice(long.len()..),
            qos: crate::codec::QoS::AtMostOnce,
            retain,
            properties: PublishProperties::default().into(),
        };
        assert!(!message(false).topic.is_inline());
        let (mut a, mut b, mut r) = (message(false), message(false), message(true));
        own_small_parts(&mut a);
        own_small_parts(&mut b);
        own_small_parts(&mut r);
        for m in [&a, &b, &r] {
            assert_eq!(
                (m.topic.as_str(), m.payload.as_ref()),
                (&*long, &b"xyz"[..])
            );
            assert!(!inside(&m.payload, &read));
            assert!(!inside(m.topic.as_bytes(), &read));
        }
        // In transit: copied one after the other into the same chunk.
        let end_of_a = a.payload.as_ptr() as usize + a.payload.len();
        assert_eq!(b.topic.as_str().as_ptr() as usize, end_of_a);
        // Retained: its own allocation, not the chunk's next bytes.
        let end_of_b = b.payload.as_ptr() as usize + b.payload.len();
        assert_ne!(r.topic.as_str().as_ptr() as usize, end_of_b);
    }

    #[test]
    fn an_inline_topic_is_kept_and_only_the_payload_is_copied() {
        let read = bytes::Bytes::from_static(b"t/1xyz");
        let message = |retain| Message {
            topic: crate::topic::TopicName::new(ByteStr::from_utf8(read.slice(0..3)).unwrap())
                .unwrap(),
            payload: read.slice(3..),
            qos: crate::codec::QoS::AtMostOnce,
            retain,
            properties: PublishProperties::default().into(),
        };
        assert!(message(false).topic.is_inline());
        let (mut a, mut b, mut r) = (message(false), message(false), message(true));
        own_small_parts(&mut a);
        own_small_parts(&mut b);
        own_small_parts(&mut r);
        for m in [&a, &b, &r] {
            assert_eq!((m.topic.as_str(), m.payload.as_ref()), ("t/1", &b"xyz"[..]));
            assert!(m.topic.is_inline());
            assert!(!inside(&m.payload, &read));
        }
        // In transit: the payloads one after the other in the same chunk.
        let end_of_a = a.payload.as_ptr() as usize + a.payload.len();
        assert_eq!(b.payload.as_ptr() as usize, end_of_a);
        // Retained: its own allocation, not the chunk's next bytes.
        let end_of_b = b.payload.as_ptr() as usize + b.payload.len();
        assert_ne!(r.payload.as_ptr() as usize, end_of_b);
    }

    #[test]
    fn an_expiry_timer_of_an_older_generation_does_not_end_a_resumed_session() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_stop, shutdown) = watch::channel(false);
        let broker = Broker::new(BrokerConfig::default(), rt.handle().clone(), shutdown).unwrap();
        let session = Arc::new(SessionHandle::new(1, ByteStr::from("c"), 10));
        // The timer was armed for this (detached) generation...
        let armed = lock(&session.mailbox).generation;
        // ...and the session was resumed after it fired.
        let conn = Arc::new(registry::ConnShared {
            info: Arc::new(ClientInfo {
                client_id: ByteStr::from("c"),
                username: None,
                peer: ([127, 0, 0, 1], 1).into(),
                local: ([127, 0, 0, 1], 2).into(),
                protocol: crate::codec::ProtocolVersion::V5,
                keep_alive: 0,
                tls: false,
                transport: hooks::Transport::Tcp,
                socket: None,
            }),
            control: std::sync::Mutex::new(None),
            notify: registry::Signal::default(),
            due: AtomicU64::new(sweep::NEVER),
        });
        session.attach_locked(&mut lock(&session.mailbox), conn);
        broker.end_session_if(&session, Some(armed));
        assert!(
            !lock(&session.mailbox).ended,
            "the resumed session lives on"
        );
        let current = lock(&session.mailbox).generation;
        broker.end_session_if(&session, Some(current));
        assert!(lock(&session.mailbox).ended);
    }
}
