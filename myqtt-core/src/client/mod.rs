//! [`Conn`]: an MQTT 3.1 / 3.1.1 / 5.0 client connection, driven by one
//! task on the [`Ctx`]'s runtime.
//!
//! # Layout
//!
//! - `mod.rs`: [`Conn`], the application's handle: publish, subscribe,
//!   receive, acknowledge, callbacks, close.
//! - `options.rs`: [`ConnectOptions`] and [`ReconnectOptions`], builders
//!   with documented defaults.
//! - `driver.rs` (internal): the connection task. It owns the socket and
//!   the sans-IO [`Session`](crate::session::Session), and is the only
//!   place that touches either; one `tokio::select!` loop over commands,
//!   socket reads, socket writes and the session's timer.
//! - `pending.rs`: [`Pending`] and [`PublishHandle`]: results the task
//!   completes later, awaitable or waitable with a timeout from any
//!   thread. They always complete, with an error if the connection is
//!   lost or closed.
//! - `queue.rs` (internal): the bounded receive and send queues.
//! - `dispatch.rs` (internal): the callback thread.
//! - `message.rs`: [`Message`], [`PublishMessage`], [`Subscription`] and
//!   the outcomes of operations.
//! - `error.rs`: [`ClientError`] and [`CloseReason`].
//!
//! # Every call works from async code and from plain threads
//!
//! Operations return at once with a [`Pending`] (or a [`PublishHandle`]),
//! which can be `.await`ed or waited on with [`Pending::wait`] from any
//! thread that is not a tokio worker. Blocking waits take a timeout, so a
//! binding can wait in slices and stay interruptible.
//!
//! # Queues and callbacks
//!
//! Received messages go to a bounded receive queue, taken with
//! [`Conn::get_next`], [`Conn::try_next`], [`Conn::next`], or by the
//! message callback ([`Conn::set_on_msg`]), which runs on a dedicated
//! thread, never on the connection task: a slow callback never delays keep
//! alive or acknowledgements. QoS 1/2 messages are acknowledged when the
//! application takes them (see [`ConnectOptions::receive_queue_limit`]).
//!
//! Publishing goes through a bounded send queue. A publish from inside a
//! callback never deadlocks: the connection task never waits for the
//! application, so room in the send queue always comes back as the server
//! acknowledges. While the socket is slow to take bytes (more than 256 KiB
//! waiting to be written), the task takes no new commands, so the send
//! queue fills and publishers wait or get [`ClientError::QueueFull`].
//!
//! # Publishing while disconnected (the one rule)
//!
//! With automatic reconnection on ([`ConnectOptions::reconnect`]), a
//! publish while the connection is down is accepted at every QoS into the
//! send queue, up to [`ConnectOptions::send_queue_limit`], and sent, in
//! order, after the reconnection. Without automatic reconnection a lost
//! connection closes the client, and every later publish fails at once
//! with [`ClientError::Closed`]. Subscribe, unsubscribe and ping need a
//! live connection and fail with [`ClientError::NotConnected`] during a
//! reconnection.
//!
//! # What happens to messages in flight when the connection is lost
//!
//! QoS 1/2 messages already sent and not yet acknowledged are resumed
//! (resent with DUP, in order [MQTT-4.4.0-1]) when the client reconnects
//! and the session persists on the server (Clean Session 0 at 3.1.1, a
//! Session Expiry Interval above 0 at MQTT 5); their handles stay pending
//! until the acknowledgement. Otherwise their handles complete at once with
//! [`ClientError::ConnectionLost`]. When the client closes, every pending
//! handle completes with an error.

mod dispatch;
mod driver;
mod error;
mod message;
mod options;
mod pending;
mod queue;

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use crate::Ctx;
use crate::codec::{
    AckProperties, ConnAckProperties, PacketId, ProtocolVersion, QoS, ReasonCode,
    SubscribeProperties, UnsubscribeProperties,
};
use crate::topic::TopicFilter;

pub use error::{ClientError, CloseReason};
pub use message::{
    Message, PublishMessage, PublishOutcome, SubscribeOutcome, Subscription, UnsubscribeOutcome,
};
pub use options::{ConnectOptions, ReconnectOptions};
pub use pending::Pending;

use driver::Command;
use pending::Resolver;
use queue::{RecvQueue, SendQueue};

/// Where a [`Conn`] is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The first connection is being made.
    Connecting,
    /// Connected: CONNACK with success received.
    Connected,
    /// The connection was lost; automatic reconnection is under way.
    Reconnecting,
    /// Closed for good.
    Closed,
}

/// What the last successful CONNACK said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// Whether the server resumed a stored session [MQTT-3.2.2-2].
    pub session_present: bool,
    /// The protocol level in use.
    pub protocol: ProtocolVersion,
    /// The client identifier in use: the one configured, or the one the
    /// server assigned (MQTT 5 Assigned Client Identifier).
    pub client_id: String,
    /// The CONNACK's MQTT 5 properties (server limits, keep alive,
    /// assigned id).
    pub properties: ConnAckProperties,
}

/// Told to the close callback when a network connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// Why it ended.
    pub reason: CloseReason,
    /// True when automatic reconnection follows; false when the client is
    /// closed for good.
    pub reconnecting: bool,
}

/// Told to the reconnect callback once a reconnection is complete: CONNACK
/// received and, when the server had no session, the subscriptions made
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectInfo {
    /// The CONNACK.
    pub connect: ConnectInfo,
    /// How many subscriptions were made again because the server reported
    /// no session (0 when it resumed the session).
    pub resubscribed: usize,
    /// Reconnections so far on this client, this one included.
    pub count: u64,
}

/// A connection event, for the callback thread.
#[derive(Debug, Clone)]
pub(crate) enum ConnEvent {
    Closed(CloseInfo),
    Reconnected(Box<ReconnectInfo>),
}

/// A publish in progress: its packet id (once the message is sent, QoS
/// 1/2) and its completion.
///
/// Await it, or [`wait`](Self::wait) for it with a timeout from any thread.
/// It always completes: with the PUBACK (QoS 1) or PUBCOMP (QoS 2), with
/// [`PublishOutcome::reason_code`] `Success` once a QoS 0 message was
/// handed to the socket, or with an error when the server refuses it
/// (an MQTT 5 failure reason code), the session drops it, the connection is
/// lost without resumption, or the client closes.
#[derive(Debug, Clone)]
pub struct PublishHandle {
    pending: Pending<PublishOutcome>,
    packet_id: Arc<AtomicU16>,
    qos: QoS,
}

impl PublishHandle {
    /// The packet id of the QoS 1/2 flow, once the message has been sent
    /// (`None` before, and always at QoS 0).
    pub fn packet_id(&self) -> Option<PacketId> {
        PacketId::new(self.packet_id.load(Ordering::Acquire))
    }

    /// The message's QoS.
    pub fn qos(&self) -> QoS {
        self.qos
    }

    /// True once the publish has completed.
    pub fn is_done(&self) -> bool {
        self.pending.is_done()
    }

    /// The outcome, if complete, without waiting.
    pub fn try_result(&self) -> Option<Result<PublishOutcome, ClientError>> {
        self.pending.try_result()
    }

    /// Blocks until the publish completes or `timeout` passes
    /// ([`ClientError::Timeout`]; the publish goes on).
    pub fn wait(&self, timeout: Duration) -> Result<PublishOutcome, ClientError> {
        self.pending.wait(timeout)
    }

    /// Waits asynchronously for at most `timeout`.
    pub async fn wait_async(&self, timeout: Duration) -> Result<PublishOutcome, ClientError> {
        self.pending.wait_async(timeout).await
    }

    /// The completion as a [`Pending`].
    pub fn pending(&self) -> &Pending<PublishOutcome> {
        &self.pending
    }
}

impl std::future::IntoFuture for PublishHandle {
    type Output = Result<PublishOutcome, ClientError>;
    type IntoFuture = Pending<PublishOutcome>;

    fn into_future(self) -> Pending<PublishOutcome> {
        self.pending
    }
}

impl std::future::IntoFuture for &PublishHandle {
    type Output = Result<PublishOutcome, ClientError>;
    type IntoFuture = Pending<PublishOutcome>;

    fn into_future(self) -> Pending<PublishOutcome> {
        self.pending.clone()
    }
}

/// A connection being made, from [`Conn::start_connect`]. Dropping it
/// before it completes abandons the connection.
#[derive(Debug)]
pub struct Connecting {
    conn: Conn,
    first: Pending<ConnectInfo>,
}

impl Connecting {
    /// True once the first CONNACK (or a failure) has come.
    pub fn is_done(&self) -> bool {
        self.first.is_done()
    }

    /// Blocks until connected or failed, or `timeout` passes
    /// ([`ClientError::Timeout`]; connecting goes on and can be waited on
    /// again).
    pub fn wait(&self, timeout: Duration) -> Result<Conn, ClientError> {
        self.first.wait(timeout)?;
        Ok(self.conn.clone())
    }
}

impl std::future::IntoFuture for Connecting {
    type Output = Result<Conn, ClientError>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.first.await?;
            Ok(self.conn)
        })
    }
}

/// The connection task's end of a [`PublishHandle`].
#[derive(Debug)]
pub(crate) struct PublishResolver {
    resolver: Resolver<PublishOutcome>,
    packet_id: Arc<AtomicU16>,
    qos: QoS,
}

impl PublishResolver {
    fn set_packet_id(&self, id: PacketId) {
        self.packet_id.store(id.get(), Ordering::Release);
    }
}

fn publish_pair(qos: QoS) -> (PublishResolver, PublishHandle) {
    let (resolver, pending) = pending::pair();
    let packet_id = Arc::new(AtomicU16::new(0));
    (
        PublishResolver {
            resolver,
            packet_id: Arc::clone(&packet_id),
            qos,
        },
        PublishHandle {
            pending,
            packet_id,
            qos,
        },
    )
}

type MsgHandler = Arc<dyn Fn(&Conn, Message) + Send + Sync>;
type CloseHandler = Arc<dyn Fn(&Conn, &CloseInfo) + Send + Sync>;
type ReconnectHandler = Arc<dyn Fn(&Conn, &ReconnectInfo) + Send + Sync>;

#[derive(Default)]
#[allow(clippy::struct_field_names)] // on_msg, on_close, on_reconnect are the API's names
struct Handlers {
    on_msg: Option<MsgHandler>,
    on_close: Option<CloseHandler>,
    on_reconnect: Option<ReconnectHandler>,
}

/// What the application can read about the connection.
#[derive(Debug)]
struct StatusInfo {
    status: Status,
    connect: Option<ConnectInfo>,
    close_reason: Option<CloseReason>,
    reconnects: u64,
    /// The connected socket's number.
    socket: Option<i64>,
}

/// State shared by the [`Conn`] handles, the connection task and the
/// callback thread.
pub(crate) struct Shared {
    opts: ConnectOptions,
    recv: RecvQueue,
    send: SendQueue,
    cmd_tx: mpsc::UnboundedSender<Command>,
    /// The number of the current network connection; a received message
    /// carries the number of the one it came on.
    epoch: AtomicU64,
    /// A std mutex: short critical sections, never held across an await.
    status: Mutex<StatusInfo>,
    status_cond: Condvar,
    status_notify: Notify,
    /// Set by the application, read by the callback thread for every call.
    handlers: Mutex<Handlers>,
    dispatcher_started: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("host", &self.opts.host)
            .field("port", &self.opts.port)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock_status(&self) -> MutexGuard<'_, StatusInfo> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_handlers(&self) -> MutexGuard<'_, Handlers> {
        self.handlers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Updates the status and wakes whoever waits on it.
    fn update_status(&self, f: impl FnOnce(&mut StatusInfo)) {
        f(&mut self.lock_status());
        self.status_cond.notify_all();
        self.status_notify.notify_waiters();
    }

    fn send_command(&self, cmd: Command) {
        // A send fails only when the task has ended: the command completes
        // as it would have in the task's last moments.
        if let Err(mpsc::error::SendError(cmd)) = self.cmd_tx.send(cmd) {
            let reason = self
                .lock_status()
                .close_reason
                .clone()
                .unwrap_or(CloseReason::Dropped);
            cmd.reject(&reason);
        }
    }
}

/// The handle's owner: dropping the last [`Conn`] closes the connection.
#[derive(Debug)]
struct ConnInner {
    shared: Arc<Shared>,
    ctx: Ctx,
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        self.shared.send_command(Command::Dropped);
    }
}

/// An MQTT client connection.
///
/// Cheap to clone; every clone is the same connection. Dropping the last
/// clone closes it as [`close`](Self::close) does (with DISCONNECT, so the
/// will is not published). Callbacks receive a `&Conn` and may publish,
/// subscribe or close from inside.
///
/// ```no_run
/// use std::time::Duration;
/// use myqtt_core::Ctx;
/// use myqtt_core::client::{Conn, ConnectOptions, PublishMessage};
/// use myqtt_core::codec::QoS;
///
/// let ctx = Ctx::new()?;
/// let conn = Conn::connect_blocking(&ctx, ConnectOptions::new("127.0.0.1", 1883))?;
/// conn.subscribe("sensors/#", QoS::AtLeastOnce).wait(Duration::from_secs(5))?;
/// let msg = PublishMessage::new("sensors/1", "21.5")?.qos(QoS::AtLeastOnce);
/// conn.publish_blocking(msg, Duration::from_secs(5))?.wait(Duration::from_secs(5))?;
/// if let Some(m) = conn.get_next(Some(Duration::from_secs(5)))? {
///     println!("{} {:?}", m.topic(), m.payload());
/// }
/// conn.close().wait(Duration::from_secs(5))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Conn {
    inner: Arc<ConnInner>,
}

impl Conn {
    /// Connects: TCP connection, CONNECT, CONNACK, all within the connect
    /// timeout. The connection task runs on `ctx`'s runtime; this future
    /// may be awaited on any runtime.
    ///
    /// A refused connection fails with [`ClientError::ConnectionRefused`]
    /// carrying the CONNACK's reason code. Automatic reconnection applies
    /// only after a first successful connection.
    pub async fn connect(ctx: &Ctx, opts: ConnectOptions) -> Result<Self, ClientError> {
        Self::start_connect(ctx, opts)?.await
    }

    /// [`connect`](Self::connect), blocking this thread (not a tokio
    /// worker) for at most the connect timeout.
    pub fn connect_blocking(ctx: &Ctx, opts: ConnectOptions) -> Result<Self, ClientError> {
        let limit = opts.connect_timeout + Duration::from_secs(1);
        Self::start_connect(ctx, opts)?.wait(limit)
    }

    /// Starts connecting and returns at once: wait for the result in slices
    /// with [`Connecting::wait`] (a binding stays interruptible that way),
    /// or await it. Fails at once only for invalid options or an exiting
    /// context.
    pub fn start_connect(ctx: &Ctx, opts: ConnectOptions) -> Result<Connecting, ClientError> {
        let (conn, first) = Self::start(ctx, opts)?;
        Ok(Connecting { conn, first })
    }

    /// Spawns the connection task; the pending completes at the first
    /// CONNACK.
    fn start(ctx: &Ctx, opts: ConnectOptions) -> Result<(Self, Pending<ConnectInfo>), ClientError> {
        opts.check()?;
        if ctx.is_exiting() {
            return Err(ClientError::Closed(CloseReason::ContextExit));
        }
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            recv: RecvQueue::new(opts.receive_queue_limit, !opts.manual_ack),
            send: SendQueue::new(opts.send_queue_limit),
            cmd_tx,
            epoch: AtomicU64::new(0),
            status: Mutex::new(StatusInfo {
                status: Status::Connecting,
                connect: None,
                close_reason: None,
                reconnects: 0,
                socket: None,
            }),
            status_cond: Condvar::new(),
            status_notify: Notify::new(),
            handlers: Mutex::new(Handlers::default()),
            dispatcher_started: AtomicBool::new(false),
            opts,
        });
        let (first_tx, first) = pending::pair();
        driver::spawn(ctx, Arc::clone(&shared), cmd_rx, first_tx);
        let conn = Self {
            inner: Arc::new(ConnInner {
                shared,
                ctx: ctx.clone(),
            }),
        };
        conn.resume_stored();
        Ok((conn, first))
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The context the connection runs on.
    pub fn ctx(&self) -> &Ctx {
        &self.inner.ctx
    }

    /// The options the connection was made with.
    pub fn options(&self) -> &ConnectOptions {
        &self.shared().opts
    }

    // ----- status -----

    /// Where the connection is in its life.
    pub fn status(&self) -> Status {
        self.shared().lock_status().status
    }

    /// The socket of the network connection while connected (its file
    /// descriptor on Unix, its `SOCKET` on Windows), `None` otherwise:
    /// for logging or socket options, not for reading or writing (the
    /// connection's task owns the stream).
    pub fn socket(&self) -> Option<i64> {
        let s = self.shared().lock_status();
        if s.status == Status::Connected {
            s.socket
        } else {
            None
        }
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        self.status() == Status::Connected
    }

    /// What the last successful CONNACK said.
    pub fn connect_info(&self) -> Option<ConnectInfo> {
        self.shared().lock_status().connect.clone()
    }

    /// Whether the server resumed a session at the last CONNACK.
    pub fn session_present(&self) -> bool {
        self.connect_info().is_some_and(|c| c.session_present)
    }

    /// The client identifier in use (configured or assigned by the server).
    pub fn client_id(&self) -> String {
        self.connect_info()
            .map_or_else(|| self.shared().opts.client_id.clone(), |c| c.client_id)
    }

    /// How many automatic reconnections have succeeded.
    pub fn reconnect_count(&self) -> u64 {
        self.shared().lock_status().reconnects
    }

    /// Why the client closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared().lock_status().close_reason.clone()
    }

    /// Blocks until the client has closed for good or `timeout` passes;
    /// the close reason, or `None` on timeout.
    pub fn wait_closed(&self, timeout: Duration) -> Option<CloseReason> {
        self.wait_status(timeout, |s| s.close_reason.clone())
    }

    /// Blocks until the client is connected (again) or `timeout` passes;
    /// false on timeout or once closed.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        self.wait_status(timeout, |s| match s.status {
            Status::Connected => Some(true),
            Status::Closed => Some(false),
            _ => None,
        })
        .unwrap_or(false)
    }

    fn wait_status<T>(
        &self,
        timeout: Duration,
        check: impl Fn(&StatusInfo) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now().checked_add(timeout);
        let shared = self.shared();
        let mut s = shared.lock_status();
        loop {
            if let Some(v) = check(&s) {
                return Some(v);
            }
            let left = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return None;
            }
            s = shared
                .status_cond
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits asynchronously until the client has closed for good.
    pub async fn closed(&self) -> CloseReason {
        let shared = self.shared();
        loop {
            let notified = shared.status_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = shared.lock_status().close_reason.clone() {
                return r;
            }
            notified.await;
        }
    }

    // ----- publish -----

    /// Publishes without waiting: fails with [`ClientError::QueueFull`]
    /// when the send queue is full.
    pub fn try_publish(&self, msg: PublishMessage) -> Result<PublishHandle, ClientError> {
        self.shared().send.try_reserve()?;
        Ok(self.enqueue_publish(msg))
    }

    /// Publishes, waiting asynchronously for room in the send queue.
    ///
    /// Returns once the message is queued; await the handle for the
    /// acknowledgement.
    pub async fn publish(&self, msg: PublishMessage) -> Result<PublishHandle, ClientError> {
        self.shared().send.reserve_async().await?;
        Ok(self.enqueue_publish(msg))
    }

    /// Publishes, blocking this thread up to `timeout` for room in the send
    /// queue ([`ClientError::QueueFull`] after it). Safe to call from the
    /// message callback.
    pub fn publish_blocking(
        &self,
        msg: PublishMessage,
        timeout: Duration,
    ) -> Result<PublishHandle, ClientError> {
        self.shared().send.reserve_blocking(timeout)?;
        Ok(self.enqueue_publish(msg))
    }

    /// Sends a publish whose place in the send queue is reserved.
    fn enqueue_publish(&self, msg: PublishMessage) -> PublishHandle {
        let (done, handle) = publish_pair(msg.qos);
        let publish = msg.into_publish();
        if publish.qos != QoS::AtMostOnce
            && let Some(store) = &self.shared().opts.store
            && let Some(seq) = self.store_publish(store, &publish)
        {
            self.forget_on_ack(handle.pending.share(), seq);
        }
        self.shared()
            .send_command(Command::Publish { publish, done });
        handle
    }

    /// The store key of this client's own records.
    fn store_key(&self) -> crate::store::SessionKey {
        crate::store::SessionKey::client(self.shared().opts.client_id.clone())
    }

    /// Writes an outgoing QoS 1/2 message to the client's store (durable
    /// when this returns); its queue sequence number.
    fn store_publish(
        &self,
        store: &Arc<dyn crate::store::Store>,
        publish: &crate::codec::Publish,
    ) -> Option<u64> {
        use crate::store::{Op, OpOutcome, StoredMessage, Timestamp};
        let id = store.new_message_id();
        let ops = [
            Op::PutMessage {
                id,
                message: StoredMessage::new(publish.clone(), Timestamp::now()),
            },
            Op::Enqueue {
                key: self.store_key(),
                message: id,
                delivery: None,
            },
        ];
        match store.apply(&ops) {
            Ok(outcomes) => match outcomes.get(1) {
                Some(OpOutcome::Enqueued { seq, .. }) => Some(*seq),
                other => {
                    tracing::warn!(outcome = ?other, "message not stored");
                    None
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot store an outgoing message");
                None
            }
        }
    }

    /// With a client store (and taking acknowledges): records the packet id
    /// of a QoS 2 message the application takes, durably, before the
    /// application sees it. A restarted client program then answers the
    /// server's DUP resend with PUBREC instead of delivering it again
    /// [MQTT-4.3.3-10]; the record goes when the PUBREL comes.
    fn remember_taken(&self, m: &Message) {
        let opts = &self.shared().opts;
        let (Some(store), Some(packet_id)) = (&opts.store, m.packet_id()) else {
            return;
        };
        if opts.manual_ack || m.qos() != QoS::ExactlyOnce {
            return;
        }
        let op = crate::store::Op::PutIncoming {
            key: self.store_key(),
            record: crate::store::IncomingRecord {
                packet_id,
                received_at: crate::store::Timestamp::now(),
            },
        };
        if let Err(e) = store.apply(&[op]) {
            tracing::error!(error = %e, "cannot store an incoming QoS 2 packet id");
        }
    }

    /// Removes a stored message once its publish flow completes.
    fn forget_on_ack(&self, done: Pending<PublishOutcome>, seq: u64) {
        let Some(store) = self.shared().opts.store.clone() else {
            return;
        };
        let key = self.store_key();
        self.inner.ctx.spawn(async move {
            if (&done).await.is_ok() {
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = store.apply(&[crate::store::Op::Dequeue { key, seq }]) {
                        tracing::error!(error = %e, "cannot remove an acknowledged message");
                    }
                })
                .await;
            }
        });
    }

    /// Publishes again what the client's store holds from an earlier run
    /// (messages published and not acknowledged), oldest first.
    fn resume_stored(&self) {
        let Some(store) = self.shared().opts.store.clone() else {
            return;
        };
        let queue = match store.queue(&self.store_key()) {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the client's store");
                return;
            }
        };
        if !queue.is_empty() {
            tracing::info!(messages = queue.len(), "resuming stored messages");
        }
        for q in queue {
            if self.shared().send.try_reserve().is_err() {
                // The rest waits for the next start.
                break;
            }
            let mut publish = q.message.publish;
            publish.packet_id = None;
            publish.dup = false;
            let (done, handle) = publish_pair(publish.qos);
            self.forget_on_ack(handle.pending.share(), q.seq);
            self.shared()
                .send_command(Command::Publish { publish, done });
        }
    }

    /// Messages in the send queue: accepted and not yet handed to the
    /// socket.
    pub fn send_queue_len(&self) -> usize {
        self.shared().send.len()
    }

    /// The send queue's limit.
    pub fn send_queue_limit(&self) -> usize {
        self.shared().send.limit()
    }

    // ----- subscribe -----

    /// Subscribes to one filter at `qos`; the outcome holds the granted QoS
    /// or the failure code. An invalid filter completes at once with
    /// [`ClientError::InvalidTopic`].
    pub fn subscribe(&self, filter: &str, qos: QoS) -> Pending<SubscribeOutcome> {
        match Subscription::new(filter, qos) {
            Ok(s) => self.subscribe_many(vec![s], SubscribeProperties::default()),
            Err(e) => Pending::ready(Err(e)),
        }
    }

    /// Subscribes to several filters in one SUBSCRIBE; the outcome has one
    /// reason code per filter, in order [MQTT-3.9.3-1]. Granted filters are
    /// remembered and made again after a reconnection to a server without
    /// the session.
    pub fn subscribe_many(
        &self,
        subscriptions: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Pending<SubscribeOutcome> {
        let (done, pending) = pending::pair();
        self.shared().send_command(Command::Subscribe {
            filters: subscriptions
                .into_iter()
                .map(|s| (s.filter, s.options))
                .collect(),
            properties,
            done,
        });
        pending
    }

    /// Unsubscribes from one filter.
    pub fn unsubscribe(&self, filter: &str) -> Pending<UnsubscribeOutcome> {
        match TopicFilter::new(filter) {
            Ok(f) => self.unsubscribe_many(vec![f], UnsubscribeProperties::default()),
            Err(e) => Pending::ready(Err(e.into())),
        }
    }

    /// Unsubscribes from several filters in one UNSUBSCRIBE.
    pub fn unsubscribe_many(
        &self,
        filters: Vec<TopicFilter>,
        properties: UnsubscribeProperties,
    ) -> Pending<UnsubscribeOutcome> {
        let (done, pending) = pending::pair();
        self.shared().send_command(Command::Unsubscribe {
            filters,
            properties,
            done,
        });
        pending
    }

    /// Sends PINGREQ; completes with the round-trip time at the PINGRESP.
    pub fn ping(&self) -> Pending<Duration> {
        let (done, pending) = pending::pair();
        self.shared().send_command(Command::Ping {
            done,
            sent: Instant::now(),
        });
        pending
    }

    // ----- receive -----

    /// The next received message, waiting up to `timeout` (`None`: no
    /// limit); `Ok(None)` on timeout. Once the client has closed and the
    /// queue is empty: [`ClientError::Closed`].
    ///
    /// Without manual acknowledgement, taking a QoS 1/2 message
    /// acknowledges it.
    pub fn get_next(&self, timeout: Option<Duration>) -> Result<Option<Message>, ClientError> {
        let m = self.shared().recv.pop_blocking(timeout)?;
        if let Some(m) = &m {
            self.remember_taken(m);
            self.auto_ack(m.epoch, m.packet_id());
        }
        Ok(m)
    }

    /// The next received message if one is waiting.
    pub fn try_next(&self) -> Result<Option<Message>, ClientError> {
        let m = self.shared().recv.try_pop()?;
        if let Some(m) = &m {
            self.remember_taken(m);
            self.auto_ack(m.epoch, m.packet_id());
        }
        Ok(m)
    }

    /// The next received message, waiting asynchronously.
    pub async fn next(&self) -> Result<Message, ClientError> {
        let m = self.shared().recv.pop_async().await?;
        self.remember_taken(&m);
        self.auto_ack(m.epoch, m.packet_id());
        Ok(m)
    }

    /// Messages received and not yet taken.
    pub fn receive_queue_len(&self) -> usize {
        self.shared().recv.len()
    }

    /// QoS 0 messages dropped because the receive queue was full.
    pub fn dropped_messages(&self) -> u64 {
        self.shared().recv.dropped()
    }

    /// Without manual acknowledgement, a QoS 1/2 message is acknowledged
    /// when the application takes it.
    fn auto_ack(&self, epoch: u64, packet_id: Option<PacketId>) {
        if !self.shared().opts.manual_ack {
            self.send_ack(
                epoch,
                packet_id,
                ReasonCode::Success,
                AckProperties::default(),
            );
        }
    }

    fn send_ack(
        &self,
        epoch: u64,
        packet_id: Option<PacketId>,
        reason_code: ReasonCode,
        properties: AckProperties,
    ) {
        if let Some(packet_id) = packet_id {
            self.shared().send_command(Command::Ack {
                epoch,
                packet_id,
                reason_code,
                properties,
            });
        }
    }

    /// Acknowledges a QoS 1/2 message (with
    /// [`ConnectOptions::manual_ack`]); a QoS 0 message needs nothing.
    ///
    /// The PUBACK / PUBREC go out in the order the messages arrived: an ack
    /// for a later message waits for the earlier ones [MQTT-4.6.0-2],
    /// [MQTT-4.6.0-3]. A message that came on an earlier network connection
    /// cannot be acknowledged ([`ClientError::StaleAck`]): the server sends
    /// it again.
    pub fn ack(&self, msg: &Message) -> Result<(), ClientError> {
        self.ack_with(msg, ReasonCode::Success, AckProperties::default())
    }

    /// [`ack`](Self::ack) with an MQTT 5 reason code and properties (a
    /// failure code refuses the message).
    pub fn ack_with(
        &self,
        msg: &Message,
        reason_code: ReasonCode,
        properties: AckProperties,
    ) -> Result<(), ClientError> {
        if !self.shared().opts.manual_ack {
            return Err(ClientError::NotManualAck);
        }
        if msg.packet_id().is_none() {
            return Ok(());
        }
        if msg.epoch != self.shared().epoch.load(Ordering::Acquire) {
            return Err(ClientError::StaleAck);
        }
        if self.status() == Status::Closed {
            return Err(ClientError::Closed(
                self.close_reason().unwrap_or(CloseReason::Closed),
            ));
        }
        self.send_ack(msg.epoch, msg.packet_id(), reason_code, properties);
        Ok(())
    }

    // ----- callbacks -----

    /// Sets the message callback. From now on received messages go to it,
    /// one at a time, in order, on this connection's callback thread (never
    /// on the connection task). The callback may publish, subscribe or
    /// close. Without manual acknowledgement a QoS 1/2 message is
    /// acknowledged when the callback returns.
    pub fn set_on_msg(&self, handler: impl Fn(&Conn, Message) + Send + Sync + 'static) {
        self.shared().lock_handlers().on_msg = Some(Arc::new(handler));
        self.start_dispatcher();
    }

    /// Removes the message callback; messages wait for
    /// [`get_next`](Self::get_next) again.
    pub fn clear_on_msg(&self) {
        self.shared().lock_handlers().on_msg = None;
    }

    /// Sets the callback told when a network connection ends (with the
    /// reason, and whether a reconnection follows). Runs on the callback
    /// thread.
    pub fn set_on_close(&self, handler: impl Fn(&Conn, &CloseInfo) + Send + Sync + 'static) {
        self.shared().lock_handlers().on_close = Some(Arc::new(handler));
        self.start_dispatcher();
    }

    /// Sets the callback told when an automatic reconnection is complete.
    /// Runs on the callback thread.
    pub fn set_on_reconnect(
        &self,
        handler: impl Fn(&Conn, &ReconnectInfo) + Send + Sync + 'static,
    ) {
        self.shared().lock_handlers().on_reconnect = Some(Arc::new(handler));
        self.start_dispatcher();
    }

    fn start_dispatcher(&self) {
        if !self
            .shared()
            .dispatcher_started
            .swap(true, Ordering::AcqRel)
        {
            dispatch::start(Arc::downgrade(&self.inner), Arc::clone(&self.inner.shared));
        }
        self.shared().recv.poke();
    }

    // ----- close -----

    /// Closes: sends DISCONNECT (normal disconnection: the server discards
    /// the will [MQTT-3.1.2-10] (3.1.1) / [MQTT-3.1.2-10] (5.0)), waits for
    /// it to be flushed, closes the socket. Completes once done.
    pub fn close(&self) -> Pending<()> {
        let (done, pending) = pending::pair();
        self.shared().send_command(Command::Close { done });
        pending
    }

    /// Drops the socket without DISCONNECT, so the server publishes the will
    /// [MQTT-3.1.2-8].
    pub fn shutdown(&self) -> Pending<()> {
        let (done, pending) = pending::pair();
        self.shared().send_command(Command::Shutdown { done });
        pending
    }
}
