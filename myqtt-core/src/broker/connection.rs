//! One task per client connection: it reads packets, drives the sans-IO
//! [`Session`] (QoS flows, packet ids, keep-alive, flow control, topic
//! aliases), applies the broker's rules and hooks to what the session
//! reports, routes PUBLISH packets, takes deliveries from the client's
//! mailbox, and writes what the session wants sent, batched.
//!
// Design: a single `tokio::select!` loop over (packet read | socket
// writable while bytes wait | mailbox wake-up | control signal: a command
// (takeover, kick, shutdown) or the broker's timer sweep (keep-alive,
// giving back idle memory; see `sweep.rs`: no timer per connection)). No lock is
// held across an await; the session state belongs to this task alone while
// the connection lives. What the task keeps while it waits is what an idle
// connection costs: the futures it waits on are poll functions of a few
// words, and empty queues and buffers are given back (`shrink_idle`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use super::chain::{EventKind, HookChain, PublishOutcome};
use super::hooks::{
    Access, AclRequest, ClientInfo, ConnectRequest, ConnectVerdict, DropReason, Event, Message,
    Transport,
};
use super::persist::{self, Checks, SentQos1, Staged, Track};
use super::registry::{
    ClaimError, ConnShared, Control, Delivery, Routed, SessionHandle, SubRecord, lock,
};
use super::router::Scratch;
use super::sweep::NEVER;
use super::{Broker, Detach, TaskGuard, assigned_client_id, clean_properties};
use crate::ByteStr;
use crate::codec::{
    AckProperties, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect,
    DisconnectProperties, LastWill, Packet, PacketId, PacketType, ProtocolVersion, Publish, QoS,
    ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use crate::net::{NetError, PacketReader, PacketWriter};
use crate::session::{self, LazyDeque, Session, SessionError, SessionState};
use crate::store::{
    Batch, Commit, IncomingRecord, InflightState, Op, OpOutcome, SessionKey, SessionRecord,
    StoreError, SubscriptionRecord, Timestamp,
};
use crate::topic::TopicFilter;

/// How long a closing connection may take to flush what it has queued.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// The most PUBLISH packets of one connection the hooks decide on in one
/// batch ([`super::hooks::Hook::on_publish_batch`]). Only packets already
/// read are batched, and one read of 16 KiB holds about 220 small ones: 64
/// cut such a read in four round trips to a hook answering from another
/// thread (a Python listener with an `on_publish` handler took 0.57 µs of
/// CPU per 64-byte message with 64, 0.50 µs with 256).
const HOOK_BATCH: usize = 256;

/// How long after its buffers and queues were last found empty but
/// allocated a connection gives their memory back ([`Conn::shrink_idle`]):
/// an idle connection then holds no buffer, while a busy one reallocates
/// at most once per period instead of after every packet.
const SHRINK_AFTER: Duration = Duration::from_millis(100);

/// Why a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// The client sent DISCONNECT with this reason (any but 0x00 publishes
    /// the will [MQTT-3.14.4-3]).
    Disconnect(ReasonCode),
    /// The socket closed or failed without a DISCONNECT.
    Lost,
    /// The client broke the protocol (or timed out): the reason code of the
    /// MQTT 5 DISCONNECT, and a reason string.
    Violation(ReasonCode, String),
    /// Another connection took the session over.
    TakenOver,
    /// The application or a hook kicked the client.
    Kicked { with_will: bool },
    /// The context is shutting down.
    Shutdown,
    /// A hook's verdict on a PUBLISH was to close the connection.
    HookClose,
}

impl Ending {
    /// The reason reported to hooks (MQTT 5 terms).
    fn reason(&self) -> ReasonCode {
        match self {
            Self::Disconnect(r) | Self::Violation(r, _) => *r,
            Self::Lost => ReasonCode::UnspecifiedError,
            Self::TakenOver => ReasonCode::SessionTakenOver,
            Self::Kicked { .. } => ReasonCode::AdministrativeAction,
            Self::Shutdown => ReasonCode::ServerShuttingDown,
            Self::HookClose => ReasonCode::NotAuthorized,
        }
    }

    /// The DISCONNECT the server sends (MQTT 5 only), if it ends the
    /// connection itself.
    fn server_disconnect(&self) -> Option<(ReasonCode, Option<&str>)> {
        match self {
            Self::Disconnect(_) | Self::Lost => None,
            Self::Violation(r, s) => Some((*r, Some(s.as_str()))),
            Self::TakenOver => Some((ReasonCode::SessionTakenOver, None)),
            Self::Kicked { .. } => Some((ReasonCode::AdministrativeAction, None)),
            Self::Shutdown => Some((ReasonCode::ServerShuttingDown, None)),
            Self::HookClose => Some((ReasonCode::NotAuthorized, Some("publish refused"))),
        }
    }

    /// Whether the will is published: on any close but a DISCONNECT with
    /// reason 0x00 [MQTT-3.1.2-8] (3.1.1) / [MQTT-3.1.2-10] (5.0): only
    /// 0x00 deletes it [MQTT-3.14.4-3], so 0x04 and every error reason a
    /// client sends publish it; not on a kick without will; at the broker's
    /// own shutdown as configured (`wills_on_shutdown`).
    fn publishes_will(&self, on_shutdown: bool) -> bool {
        match self {
            Self::Disconnect(r) => *r != ReasonCode::Success,
            Self::Kicked { with_will } => *with_will,
            Self::Shutdown => on_shutdown,
            Self::Lost | Self::Violation(..) | Self::TakenOver | Self::HookClose => true,
        }
    }
}

/// Work from the session that waits for the hooks.
enum Pending {
    Publish(Publish),
    /// A PUBLISH on a broker with a store (acknowledged after its commit).
    Stored(Publish),
    Subscribe(Subscribe),
}

/// Work left by an earlier turn ([`Conn::catch_up`]).
enum CatchUp {
    Nothing,
    /// Retained messages owed to new subscriptions.
    Backlog,
    /// Whole packets left in the read buffer.
    Buffered,
}

/// The awaited part of acting on a [`Wake`].
enum Step {
    /// Packets arrived: decode and handle them.
    Read,
    /// Messages wait in the mailbox.
    Mail,
    /// The connection's time was due; `read`: bytes were just read while reading was
    /// paused.
    Timer { read: bool },
    /// A store commit completed.
    Stored(Box<Result<Vec<OpOutcome>, StoreError>>),
}

/// What woke the connection's loop.
enum Wake {
    Read(Result<bool, NetError>),
    Written(Result<(), NetError>),
    Flushed(Result<(), NetError>),
    Mail,
    /// A command, or the connection's timer is due.
    Control,
    /// Boxed: the store's error is large, and rare.
    Stored(Box<Result<Vec<OpOutcome>, StoreError>>),
}

/// What a connection does once a store commit completed.
#[allow(clippy::large_enum_variant)] // short-lived
enum After {
    /// Acknowledge PUBLISH packets (PUBACK / PUBREC), in their order
    /// [MQTT-4.6.0-2].
    Acks(Vec<(PacketId, ReasonCode)>),
    /// Hand a held packet to the session (a PUBREC or PUBREL whose record
    /// change had to be durable first).
    Feed(Packet),
    /// Write packets held until their in-flight records were durable.
    Send(Vec<Packet>),
}

/// A session's stored records, allocated on first change: a connection
/// without a store never pays for them.
#[derive(Default)]
struct TrackBox(Option<Box<Track>>);

impl TrackBox {
    fn new(track: Track, persistent: bool) -> Self {
        Self(persistent.then(|| Box::new(track)))
    }

    fn into_inner(self) -> Track {
        self.0.map(|t| *t).unwrap_or_default()
    }
}

impl std::ops::Deref for TrackBox {
    type Target = Track;

    fn deref(&self) -> &Track {
        static EMPTY: std::sync::LazyLock<Track> = std::sync::LazyLock::new(Track::default);
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl std::ops::DerefMut for TrackBox {
    fn deref_mut(&mut self) -> &mut Track {
        self.0.get_or_insert_with(Box::default)
    }
}

/// An acknowledgement the session sees only once its record change (the
/// batch) is committed.
struct Held(Packet, Batch);

/// A store commit the connection waits for, in submission order.
struct StoreWait {
    commit: Option<Commit>,
    after: After,
    checks: Checks,
}

/// The PUBLISH packets of one read, with a store: their store ops and
/// held-back deliveries, and their acknowledgements, which wait for the
/// one submission that carries them all (made at the end of the read, or
/// before any other submission, so everything keeps its order).
#[derive(Default)]
struct Group {
    staged: Staged,
    /// Acknowledgements owed once the group's commit completed, in PUBLISH
    /// order [MQTT-4.6.0-2].
    acks: Vec<(PacketId, ReasonCode)>,
}

impl Group {
    /// Something waits for the group's submission.
    fn is_active(&self) -> bool {
        !self.acks.is_empty() || !self.staged.batch.is_empty() || !self.staged.deliveries.is_empty()
    }
}

/// The front commit of `q` (an entry without a commit is ready at once).
async fn front_done(q: &mut LazyDeque<StoreWait>) -> Result<Vec<OpOutcome>, StoreError> {
    std::future::poll_fn(|cx| match q.front_mut() {
        Some(StoreWait {
            commit: Some(c), ..
        }) => std::pin::Pin::new(c).poll(cx),
        _ => std::task::Poll::Ready(Ok(Vec::new())),
    })
    .await
}

/// Counts a connection against the limit while it lives.
struct ConnSlot(Broker);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.registry().connected.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a socket that has not connected yet while it lives.
struct PreConnect(Broker);

impl Drop for PreConnect {
    fn drop(&mut self) {
        self.0.registry().connecting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection past CONNACK.
#[allow(clippy::struct_excessive_bools)] // independent states of the loop
struct Conn<R, W> {
    broker: Broker,
    reader: PacketReader<R>,
    writer: PacketWriter<W>,
    session: Session,
    version: ProtocolVersion,
    info: Arc<ClientInfo>,
    shared: Arc<ConnShared>,
    handle: Arc<SessionHandle>,
    chain: Arc<HookChain>,
    chain_version: u64,
    /// Boxed: most clients have none, and it is large.
    will: Option<Box<LastWill>>,
    /// Session expiry in seconds; `u32::MAX` never expires.
    session_expiry: u32,
    /// Routing's reusable buffers, allocated by the first PUBLISH and
    /// given back when the connection goes quiet.
    scratch: Option<Box<Scratch>>,
    /// The mailbox's queue is swapped with this one to drain it (given
    /// back when idle).
    spare: LazyDeque<Delivery>,
    /// The session is written to the broker's store.
    persistent: bool,
    /// The session's stored records (when `persistent`).
    track: TrackBox,
    /// Store commits awaited before acting, oldest first (only
    /// connections with a store have some).
    pending: LazyDeque<StoreWait>,
    /// The PUBLISH packets of the current read, with a store: one
    /// submission and one commit for them all (kept, empty, while the
    /// connection is busy).
    group: Option<Box<Group>>,
    /// Store ops nobody waits for (removals after acknowledgements, QoS 1
    /// moves to in-flight), sent with the connection's next submission or
    /// at the next loop turn: one submission for a burst of packets.
    out: Batch,
    /// Retained messages owed to new subscriptions, handed to the session
    /// only while the write buffer is below the high-water mark.
    backlog: LazyDeque<Delivery>,
    /// [`BrokerConfig::write_high_water`](super::BrokerConfig): no packet is
    /// read and no message taken while this many bytes wait for the socket
    /// (saturated to `u32`: 4 bytes less per connection).
    high_water: u32,
    /// Whole packets may be left in the read buffer: decoding stopped at the
    /// write high-water mark.
    more_buffered: bool,
    /// The transport buffers writes until flushed (WebSocket frames).
    flush_after_write: bool,
    /// Bytes were written since the last flush.
    unflushed: bool,
    /// When empty buffers and queues are given back ([`Self::shrink_idle`]),
    /// in milliseconds of the broker's connection timers; [`NEVER`] while
    /// nothing waits for that.
    shrink_at: u64,
    _slot: ConnSlot,
}

/// Serves one client connection until it closes.
pub(crate) fn serve<R, W>(
    broker: Broker,
    guard: TaskGuard,
    (read, write): (R, W),
    peer: SocketAddr,
    local: SocketAddr,
    (transport, socket): (Transport, Option<i64>),
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // A plain function around one async block that holds only two
    // pointers: an async block keeps its captured arguments for its whole
    // life, so they go to the boxed start-up future instead, which is freed
    // once the connection is up.
    let span = tracing::debug_span!("conn", %peer, client_id = tracing::field::Empty);
    let start = boxed(start(broker, read, write, peer, local, (transport, socket)));
    async move {
        let conn = start.await;
        if let Some(mut conn) = conn {
            let ending = conn.run().await;
            let close = boxed(conn.close(ending));
            close.await;
        }
        drop(guard);
    }
    .instrument(span)
}

/// Applies the limit on sockets waiting for CONNECT, then runs the
/// handshake.
async fn start<R, W>(
    broker: Broker,
    read: R,
    write: W,
    peer: SocketAddr,
    local: SocketAddr,
    transport: (Transport, Option<i64>),
) -> Option<Box<Conn<R, W>>>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let limit = broker.config().max_connections;
    let waiting = broker.registry().connecting.fetch_add(1, Ordering::AcqRel) + 1;
    let pre_connect = PreConnect(broker.clone());
    if limit > 0 && waiting > limit {
        tracing::warn!(
            limit,
            "socket closed: too many connections waiting for CONNECT"
        );
        return None;
    }
    // Until the client is authenticated it may send only a small first
    // packet; the full limit applies from the CONNACK on.
    let reader = PacketReader::new(read, broker.config().max_connect_packet_size());
    let writer = PacketWriter::new(write);
    let conn = handshake(broker, reader, writer, peer, local, transport).await;
    drop(pre_connect);
    conn
}

/// Moves a future to the heap. A plain function, so the unboxed future is
/// a temporary of this frame and never takes room in the caller's state.
fn boxed<F: std::future::Future>(f: F) -> std::pin::Pin<Box<F>> {
    Box::pin(f)
}

/// Writes part of the buffer when bytes wait, else flushes the transport.
/// Cancel-safe either way; the future is a poll function of two words.
fn write_or_flush<W: AsyncWrite + Unpin>(
    writer: &mut PacketWriter<W>,
    pending: bool,
) -> impl std::future::Future<Output = Result<(), NetError>> + '_ {
    std::future::poll_fn(move |cx| {
        if pending {
            writer.poll_write_some(cx)
        } else {
            writer.poll_flush_io(cx)
        }
    })
}

/// Writes what the session queued, then flushes and closes the write side,
/// within [`CLOSE_FLUSH`].
async fn finish<W: AsyncWrite + Unpin>(
    session: &mut Session,
    writer: &mut PacketWriter<W>,
    version: ProtocolVersion,
) {
    while let Some(p) = session.poll_transmit() {
        if let Err(e) = writer.queue(&p, version) {
            tracing::error!(error = %e, "cannot encode a packet");
        }
    }
    let _ = tokio::time::timeout(CLOSE_FLUSH, writer.shutdown()).await;
}

/// Reads the CONNECT, applies the broker's checks and hooks, claims the
/// client's session and answers CONNACK. `None` when the connection ends
/// there.
#[allow(clippy::too_many_lines)] // one linear sequence of CONNECT checks
async fn handshake<R, W>(
    broker: Broker,
    mut reader: PacketReader<R>,
    mut writer: PacketWriter<W>,
    peer: SocketAddr,
    local: SocketAddr,
    (transport, socket): (Transport, Option<i64>),
) -> Option<Box<Conn<R, W>>>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut shutdown = broker.shutdown_signal();
    let config = broker.config().clone();
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let first = tokio::select! {
        r = tokio::time::timeout_at(deadline, reader.read()) => r,
        () = crate::broker::signalled(&mut shutdown) => return None,
    };
    let connect = match first {
        Err(_) => {
            tracing::debug!("no CONNECT within the connect timeout; closing");
            return None;
        }
        Ok(Ok(Some(Packet::Connect(c)))) => {
            reader
                .decoder_mut()
                .set_max_packet_size(config.max_packet_size());
            c
        }
        Ok(Ok(_)) => return None,
        Ok(Err(NetError::Decode(e))) => {
            tracing::warn!(error = %e, "invalid CONNECT; closing");
            if let DecodeError::UnsupportedProtocol { level, .. } = &e {
                // [MQTT-3.1.2-2]: CONNACK 0x01 (3.1.1) / 0x84 (5.0), then close.
                let version = if *level == 5 {
                    ProtocolVersion::V5
                } else {
                    ProtocolVersion::V311
                };
                let connack = Packet::ConnAck(Box::new(ConnAck {
                    session_present: false,
                    reason_code: ReasonCode::UnsupportedProtocolVersion,
                    properties: ConnAckProperties::default(),
                }));
                if writer.queue(&connack, version).is_ok() {
                    let _ = tokio::time::timeout(CLOSE_FLUSH, writer.shutdown()).await;
                }
            }
            return None;
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "connection failed before CONNECT");
            return None;
        }
    };

    let now = Instant::now();
    let mut session = Session::server(broker.session_config(), now);
    if let Err(e) = session.handle_packet(now, Packet::Connect(connect)) {
        tracing::warn!(error = %e, "CONNECT refused by the session");
        return None;
    }
    let Some(session::Event::Connect(connect)) = session.poll_event() else {
        return None;
    };
    let Connect {
        protocol: version,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    } = *connect;
    let v5 = version.is_v5();

    macro_rules! refuse {
        ($code:expr, $why:expr) => {{
            let code: ReasonCode = $code;
            let why: &str = $why;
            tracing::info!(reason = ?code, why, "connection refused");
            let connack = ConnAck {
                session_present: false,
                reason_code: code,
                properties: ConnAckProperties {
                    reason_string: v5.then(|| ByteStr::from(why)),
                    ..ConnAckProperties::default()
                },
            };
            if session.reject(Instant::now(), connack).is_ok() {
                finish(&mut session, &mut writer, version).await;
            }
            return None;
        }};
    }

    if properties.authentication_method.is_some() {
        // Enhanced authentication is not offered (MQTT 5.0 §4.12).
        refuse!(
            ReasonCode::BadAuthenticationMethod,
            "enhanced authentication is not supported"
        );
    }

    // Client identifier rules.
    let mut assigned = None;
    let client_id = if client_id.is_empty() {
        if version == ProtocolVersion::V31 {
            refuse!(
                ReasonCode::ClientIdentifierNotValid,
                "MQTT 3.1 requires a client identifier"
            );
        }
        if version == ProtocolVersion::V311 && !clean_start {
            // [MQTT-3.1.3-8]
            refuse!(
                ReasonCode::ClientIdentifierNotValid,
                "[MQTT-3.1.3-8] an empty client identifier needs clean session 1"
            );
        }
        // [MQTT-3.1.3-6] (3.1.1) / [MQTT-3.1.3-6] (5.0): assign a unique one.
        let id = assigned_client_id(broker.registry().next_id());
        assigned = Some(id.clone());
        id
    } else {
        // Kept for the connection's life (and the session's): copied out
        // of the read buffer so that it does not keep the buffer alive.
        super::own_small_str(&client_id)
    };
    let username = username.as_ref().map(super::own_small_str);
    tracing::Span::current().record("client_id", client_id.as_str());

    // The connection limit.
    let count = broker.registry().connected.fetch_add(1, Ordering::AcqRel) + 1;
    let slot = ConnSlot(broker.clone());
    if config.max_connections > 0 && count > config.max_connections {
        tracing::warn!(
            limit = config.max_connections,
            "connection refused: too many connections"
        );
        refuse!(ReasonCode::ServerBusy, "too many connections");
    }

    // The session expiry in force for this connection.
    let requested_expiry = if v5 {
        properties.session_expiry_interval.unwrap_or(0)
    } else if clean_start {
        0
    } else {
        u32::MAX
    };
    let session_expiry = requested_expiry.min(config.max_session_expiry);
    let keep_alive_in_force = match (v5, config.server_keep_alive) {
        (true, Some(secs)) => secs,
        _ => keep_alive,
    };

    let info = Arc::new(ClientInfo {
        client_id: client_id.clone(),
        username,
        peer,
        local,
        protocol: version,
        keep_alive: keep_alive_in_force,
        tls: false,
        transport,
        socket,
    });

    // The hooks decide.
    let chain = broker.chain();
    let chain_version = broker.chain_version();
    if !chain.is_empty() {
        let req = ConnectRequest {
            client: &info,
            password: password.as_ref(),
            clean_start,
            will: will.as_ref(),
            properties: &properties,
        };
        let verdict = tokio::select! {
            v = chain.on_connect(&req) => v,
            () = crate::broker::signalled(&mut shutdown) => return None,
        };
        if let ConnectVerdict::Refuse(code) = verdict {
            let code = if code.is_success() || !code.is_allowed_in(PacketType::ConnAck) {
                ReasonCode::NotAuthorized
            } else {
                code
            };
            refuse!(code, "refused by a hook");
        }
    }
    if let Some(w) = &will {
        if w.qos > config.maximum_qos {
            // [MQTT-3.2.2-12] (5.0)
            refuse!(ReasonCode::QoSNotSupported, "will QoS above the maximum");
        }
        if w.retain && !config.retain_available {
            // [MQTT-3.2.2-13] (5.0)
            refuse!(
                ReasonCode::RetainNotSupported,
                "retained wills are not supported"
            );
        }
    }

    // Claim the client's session (taking it over from a live connection).
    let shared = Arc::new(ConnShared {
        info: Arc::clone(&info),
        control: std::sync::Mutex::new(None),
        notify: super::registry::Signal::default(),
        due: std::sync::atomic::AtomicU64::new(super::sweep::NEVER),
    });
    let claimed = tokio::select! {
        c = claim(&broker, &client_id, clean_start, &shared) => c,
        () = crate::broker::signalled(&mut shutdown) => Err(ClaimError::ShuttingDown),
    };
    let (handle, state, track) = match claimed {
        Ok(c) => c,
        Err(e) => {
            let why = match e {
                ClaimError::Duplicate => "client identifier in use",
                ClaimError::Timeout => "the previous connection did not close in time",
                ClaimError::ShuttingDown => "server shutting down",
            };
            refuse!(e.reason_code(), why);
        }
    };
    let session_present = state.is_some();
    let state = state.unwrap_or_else(|| SessionState::new(config.max_queued_messages));
    let mut track = track.unwrap_or_default();
    let mut persistent = false;
    if let Some(p) = broker.persist() {
        // [MQTT-3.1.2-4] (3.1.1) / MQTT 5.0 §4.1: a session that outlives
        // the connection is written to the store; the record is durable
        // before CONNACK.
        persistent = session_expiry > 0;
        let was = handle.is_persistent();
        handle.set_persistent(persistent);
        let key = SessionKey::broker(client_id.clone());
        let mut b = Batch::new();
        if persistent {
            b.put_session(SessionRecord {
                key,
                protocol: version,
                expiry_interval: session_expiry,
                disconnected_at: None,
            });
            b.remove_will(client_id.clone());
        } else if was {
            b.remove_session(key);
            b.remove_will(client_id.clone());
            track = Track::default();
        }
        if !b.is_empty()
            && let Some(c) = p.submit(b).await
            && let Err(e) = c.await
        {
            tracing::error!(error = %e, "cannot store the session");
        }
    }

    let mut connack_props = ConnAckProperties::default();
    if v5 {
        if session_expiry != requested_expiry {
            connack_props.session_expiry_interval = Some(session_expiry);
        }
        connack_props.assigned_client_identifier = assigned;
        connack_props.server_keep_alive = config.server_keep_alive;
        if config.maximum_qos < QoS::ExactlyOnce {
            connack_props.maximum_qos = Some(config.maximum_qos);
        }
        if !config.retain_available {
            connack_props.retain_available = Some(false);
        }
    }
    let connack = ConnAck {
        session_present,
        reason_code: ReasonCode::Success,
        properties: connack_props,
    };
    let now = Instant::now();
    let accepted = session.accept(now, connack, state);
    tracing::debug!(
        ?version,
        clean_start,
        session_present,
        keep_alive = keep_alive_in_force,
        "client connected"
    );
    chain.emit(EventKind::Lifecycle, || Event::Connected(&info));
    // Past CONNACK: the broker's sweeps look at this connection's timers.
    broker.timers().register(&shared);
    let conn = Box::new(Conn {
        broker,
        reader,
        writer,
        session,
        version,
        info,
        shared,
        handle,
        chain,
        chain_version,
        will: will.map(|mut w| {
            super::own_will(&mut w);
            Box::new(w)
        }),
        session_expiry,
        scratch: None,
        spare: LazyDeque::new(),
        persistent,
        track: TrackBox::new(track, persistent),
        pending: LazyDeque::new(),
        group: None,
        out: Batch::new(),
        backlog: LazyDeque::new(),
        high_water: u32::try_from(config.write_high_water).unwrap_or(u32::MAX),
        more_buffered: false,
        flush_after_write: transport != Transport::Tcp,
        unflushed: false,
        shrink_at: NEVER,
        _slot: slot,
    });
    if let Err(e) = accepted {
        // A packet held since the CONNECT broke the protocol.
        let ending = Conn::<R, W>::violation(&e);
        conn.close(ending).await;
        return None;
    }
    Some(conn)
}

/// Finds or creates the session of `client_id` and attaches it to `conn`;
/// returns it with its detached state when the session is resumed.
async fn claim(
    broker: &Broker,
    client_id: &ByteStr,
    clean_start: bool,
    conn: &Arc<ConnShared>,
) -> Result<(Arc<SessionHandle>, Option<SessionState>, Option<Track>), ClaimError> {
    let config = broker.config();
    let registry = broker.registry();
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let fresh = |old: Option<&Arc<SessionHandle>>| {
        let h = Arc::new(SessionHandle::new(
            registry.next_id(),
            client_id.clone(),
            config.max_queued_messages,
        ));
        h.attach_locked(&mut lock(&h.mailbox), Arc::clone(conn));
        registry.install(old, &h).then_some(h)
    };
    loop {
        let Some(old) = registry.get(client_id) else {
            if let Some(h) = fresh(None) {
                return Ok((h, None, None));
            }
            continue;
        };
        let detached = registry.detached.notified();
        tokio::pin!(detached);
        detached.as_mut().enable();
        {
            let mut mb = lock(&old.mailbox);
            if mb.ended {
                drop(mb);
                if let Some(h) = fresh(Some(&old)) {
                    return Ok((h, None, None));
                }
                continue;
            }
            match &mb.conn {
                None if clean_start => {
                    // Clean start discards the old session [MQTT-3.1.2-4]
                    // (5.0) / [MQTT-3.1.2-6] (3.1.1).
                    drop(mb);
                    broker.end_session(&old);
                    if let Some(h) = fresh(Some(&old)) {
                        return Ok((h, None, None));
                    }
                    continue;
                }
                None => {
                    // Resume the stored session [MQTT-3.1.2-4] (3.1.1).
                    let state = mb.state.take().map(|s| *s);
                    let track = mb.track.take().map(|t| *t);
                    old.attach_locked(&mut mb, Arc::clone(conn));
                    drop(mb);
                    return Ok((old, state, track));
                }
                Some(live) => {
                    if config.duplicate_client_id == super::DuplicateClientId::Reject {
                        return Err(ClaimError::Duplicate);
                    }
                    // [MQTT-3.1.4-2] (3.1.1) / [MQTT-3.1.4-3] (5.0)
                    live.command(Control::TakeOver);
                }
            }
        }
        if tokio::time::timeout_at(deadline, detached).await.is_err() {
            return Err(ClaimError::Timeout);
        }
    }
}

impl<R, W> Conn<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    /// Picks up the current hook chain if a hook was added since; one
    /// atomic load when nothing changed.
    fn refresh_chain(&mut self) {
        let v = self.broker.chain_version();
        if v != self.chain_version {
            self.chain = self.broker.chain();
            self.chain_version = v;
        }
    }

    /// The main loop; returns why the connection ends.
    #[allow(clippy::too_many_lines)] // one select over every source of work, and its dispatch
    async fn run(&mut self) -> Ending {
        let mut connecting = true;
        let high_water = self.high_water();
        // The shutdown arrives as a control command
        // ([`Broker::shutdown_connections`]); one set before this
        // connection was attached to its session is seen here.
        if self.broker.is_shutting_down() {
            return Ending::Shutdown;
        }
        // Act on what packets held by the session's accept reported; packets
        // that arrived right behind the CONNECT are decoded by the first
        // turn of the loop (`catch_up`).
        if let Err(ending) = self.settle(Instant::now()).await {
            return ending;
        }
        self.more_buffered = true;
        loop {
            if self.persistent {
                if let Some(due) = self.track.sent.due() {
                    // The sweep's clock: one load, no clock read per turn.
                    let now = self.broker.timers().coarse_millis();
                    if due <= now {
                        self.record_sent(now.checked_sub(SentQos1::MOVE_AFTER_MS));
                    }
                }
                let stored = boxed(self.transmit_stored());
                stored.await;
            } else {
                self.flush_transmit();
            }
            if self.unsubmitted() {
                // The store ops of what the last turn read (one submission
                // for a whole read of PUBLISH packets), and those nobody
                // waits for.
                let submitted = boxed(self.submit(Batch::new()));
                let _ = submitted.await;
            }
            // Decided apart from the awaits, so they share the frame of the
            // read path's own `read_buffered` below: no larger state.
            match self.catch_up() {
                CatchUp::Nothing => {}
                CatchUp::Backlog => {
                    // Boxed: only after subscriptions that matched
                    // retained messages.
                    let backlog = boxed(self.drain_backlog());
                    if let Err(ending) = backlog.await {
                        return ending;
                    }
                    continue;
                }
                CatchUp::Buffered => {
                    if let Err(ending) = self.read_buffered(Instant::now()).await {
                        return ending;
                    }
                    continue;
                }
            }
            if connecting {
                // The CONNECT, CONNACK and the packets right behind them
                // are handled: what they allocated is given back now, while
                // the next connection's handshake can reuse it, rather than
                // after the timer, which would leave holes in the heap.
                connecting = false;
                self.shrink_idle();
            }
            self.arm_timer();
            let can_take =
                self.writer.pending() < high_water && self.session.state().queue_len() == 0;
            let pending_write = self.writer.pending() > 0;
            let stored = !self.pending.is_empty();
            let flush = self.unflushed && !pending_write;
            // A peer that does not read what it asked for (retained
            // messages, acks) is not read from either: its requests stay in
            // the socket instead of growing the write buffer.
            let can_read = self.writer.pending() < high_water;
            // A block: the `Wake` is gone before the awaits below.
            let step = {
                let wake = tokio::select! {
                    r = front_done(&mut self.pending), if stored => Wake::Stored(Box::new(r)),
                    r = self.reader.fill(), if can_read => Wake::Read(r),
                    r = write_or_flush(&mut self.writer, pending_write), if pending_write || flush => {
                        if pending_write { Wake::Written(r) } else { Wake::Flushed(r) }
                    }
                    // Signals, not `Notified` futures: nothing kept between
                    // turns (see `Signal`).
                    () = self.handle.wake.wait(), if can_take => Wake::Mail,
                    // Commands, and the broker's sweep when this
                    // connection's time is due (see `sweep`).
                    () = self.shared.notify.wait() => Wake::Control,
                };
                // What woke the loop is acted on in two parts: the synchronous
                // part here, the awaits below, once the `Wake` (and any read's
                // result) is gone, so none of them is kept in the future across
                // an await.
                match wake {
                    Wake::Read(r) => match self.on_read(r) {
                        Ok(()) => Step::Read,
                        Err(ending) => return ending,
                    },
                    Wake::Written(r) => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "write failed");
                            return Ending::Lost;
                        }
                        self.unflushed = self.flush_after_write;
                        continue;
                    }
                    Wake::Flushed(r) => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "flush failed");
                            return Ending::Lost;
                        }
                        self.unflushed = false;
                        continue;
                    }
                    Wake::Mail => Step::Mail,
                    Wake::Control => {
                        let command = lock(&self.shared.control).take();
                        match command {
                            Some(Control::TakeOver) => return Ending::TakenOver,
                            Some(Control::Kick { with_will }) => {
                                return Ending::Kicked { with_will };
                            }
                            Some(Control::Shutdown) => return Ending::Shutdown,
                            // No command: the sweep found this connection
                            // due (or a command was already taken; nothing
                            // below acts before its time).
                            None => {}
                        }
                        let now = self.broker.timers().now_millis(Instant::now());
                        if self.shrink_at != NEVER && self.shrink_at <= now {
                            self.shrink_at = NEVER;
                            self.shrink_idle();
                        }
                        let mut read = false;
                        if self.writer.pending() >= high_water {
                            // Reading is paused (the peer is slow to read what
                            // it is owed), so its PINGREQs may be waiting in the
                            // socket: take what has arrived before judging the
                            // keep alive [MQTT-3.1.2-24]. At most one read per
                            // keep-alive period, so memory stays bounded.
                            use futures_util::FutureExt as _;
                            if let Some(r) = self.reader.fill().now_or_never() {
                                if let Err(ending) = self.on_read(r) {
                                    return ending;
                                }
                                read = true;
                            }
                        }
                        Step::Timer { read }
                    }
                    Wake::Stored(r) => Step::Stored(r),
                }
            };
            let done = match step {
                Step::Read => self.read_buffered(Instant::now()).await,
                Step::Mail => {
                    if self.drain() {
                        let checked = boxed(self.drain_checked());
                        checked.await;
                    }
                    // Drops the session reported (too large, expired).
                    self.settle(Instant::now()).await
                }
                Step::Timer { read } => {
                    if read {
                        // Boxed: rare.
                        let buffered = boxed(self.read_buffered(Instant::now()));
                        if let Err(ending) = buffered.await {
                            return ending;
                        }
                    }
                    if let Err(e) = self.session.handle_timeout(Instant::now()) {
                        tracing::info!(error = %e, "keep-alive expired");
                        return Self::violation(&e);
                    }
                    Ok(())
                }
                Step::Stored(r) => {
                    // Boxed: only connections with a store get here.
                    let stored = boxed(self.on_stored(*r));
                    stored.await
                }
            };
            if let Err(ending) = done {
                return ending;
            }
        }
    }

    /// [`Conn::high_water`] in bytes.
    fn high_water(&self) -> usize {
        self.high_water as usize
    }

    /// Asks the broker's sweep ([`super::sweep`]) to wake this connection
    /// at its next deadline: the keep-alive expiry, or [`SHRINK_AFTER`]
    /// after it first holds idle memory. The sweep wakes it through its
    /// control signal, at most [`super::sweep::SWEEP_EVERY`] late.
    fn arm_timer(&mut self) {
        let timers = self.broker.timers();
        if self.shrink_at == NEVER && self.holds_idle_memory() {
            self.shrink_at = timers.due_millis(Instant::now() + SHRINK_AFTER);
            timers.arm(&self.shared.due, self.shrink_at);
        }
        if let Some(at) = self.session.poll_timeout() {
            timers.arm(&self.shared.due, timers.due_millis(at));
        }
        if let Some(due) = self.track.sent.due() {
            timers.arm(&self.shared.due, due);
        }
    }

    /// True when a buffer or queue of this connection is empty but still
    /// allocated ([`Self::shrink_idle`] would give it back).
    fn holds_idle_memory(&self) -> bool {
        self.session.holds_idle_memory()
            || self.reader.holds_idle_memory()
            || self.scratch.is_some()
            || self.spare.holds_empty()
            || self.backlog.holds_empty()
            || self.pending.holds_empty()
            || self.group.as_ref().is_some_and(|g| !g.is_active())
    }

    /// Gives back the memory of every empty buffer and queue of the
    /// connection, its session and its mailbox: an idle connection holds
    /// only its fixed-size state. Nothing queued is dropped.
    fn shrink_idle(&mut self) {
        self.session.shrink_idle();
        self.reader.shrink_idle();
        self.scratch = None;
        self.spare.release_empty();
        self.backlog.release_empty();
        self.pending.release_empty();
        if self.group.as_ref().is_some_and(|g| !g.is_active()) {
            self.group = None;
        }
        lock(&self.handle.mailbox).queue.release_empty();
    }

    /// A read completed: `Ok` when bytes arrived (the caller decodes
    /// them), the ending when the stream ended or failed.
    fn on_read(&self, r: Result<bool, NetError>) -> Result<(), Ending> {
        match r {
            Ok(true) => Ok(()),
            Ok(false) => {
                if self.reader.has_partial() {
                    tracing::debug!("connection closed by the client in the middle of a packet");
                } else {
                    tracing::debug!("connection closed by the client");
                }
                Err(Ending::Lost)
            }
            Err(e) => {
                tracing::debug!(error = %e, "read failed");
                Err(Ending::Lost)
            }
        }
    }

    /// Hands a packet to the session.
    fn take(&mut self, packet: Packet, now: Instant) -> Result<(), Ending> {
        self.refresh_chain();
        self.chain.emit(EventKind::Packets, || {
            Event::PacketReceived(&self.info, &packet)
        });
        if let Err(e) = self.session.handle_packet(now, packet) {
            tracing::warn!(error = %e, "protocol violation; closing");
            return Err(Self::violation(&e));
        }
        Ok(())
    }

    /// [`Self::take`] for a session with stored records: an
    /// acknowledgement's record change is written first; a PUBREC or PUBREL
    /// that must wait for its commit before the session sees it
    /// ([`Self::store_ack`]) is returned with its batch, for
    /// [`Self::hold_ack`].
    fn take_stored(&mut self, packet: Packet, now: Instant) -> Result<Option<Box<Held>>, Ending> {
        self.refresh_chain();
        self.chain.emit(EventKind::Packets, || {
            Event::PacketReceived(&self.info, &packet)
        });
        let packet = match self.store_ack(packet) {
            Ok(packet) => packet,
            Err(held) => return Ok(Some(held)),
        };
        if let Err(e) = self.session.handle_packet(now, packet) {
            tracing::warn!(error = %e, "protocol violation; closing");
            return Err(Self::violation(&e));
        }
        Ok(None)
    }

    /// [`Self::take_stored`] for a session with stored records, else
    /// [`Self::take`].
    fn take_stored_if(
        &mut self,
        packet: Packet,
        now: Instant,
    ) -> Result<Option<Box<Held>>, Ending> {
        if self.persistent {
            self.take_stored(packet, now)
        } else {
            self.take(packet, now).map(|()| None)
        }
    }

    /// Submits the record change of a held acknowledgement; the session
    /// sees the packet once it is committed.
    async fn hold_ack(&mut self, held: Box<Held>) {
        let Held(packet, b) = *held;
        let commit = self.submit(b).await;
        self.pending.push_back(StoreWait {
            commit,
            after: After::Feed(packet),
            checks: Checks::default(),
        });
    }

    /// [`Self::take_stored`] and, when the packet is held, [`Self::hold_ack`]
    /// (boxed: rare, and its future stays off the read loop's frame).
    async fn take_stored_all(&mut self, packet: Packet, now: Instant) -> Result<(), Ending> {
        if let Some(held) = self.take_stored(packet, now)? {
            let hold = boxed(self.hold_ack(held));
            hold.await;
        }
        Ok(())
    }

    /// Decodes and acts on every whole packet buffered (one clock reading
    /// serves the batch).
    async fn read_buffered(&mut self, now: Instant) -> Result<(), Ending> {
        self.refresh_chain();
        if !self.chain.is_empty() {
            // Boxed: only connections of a broker with hooks get here.
            let batched = boxed(self.read_buffered_batched(now));
            return batched.await;
        }
        loop {
            // A separate statement: the decoded packet is moved out before
            // any await, so no packet-sized temporary spans it.
            let next = self.reader.try_read_buffered();
            let Some(packet) = self.buffered(next)? else {
                return Ok(());
            };
            if self.persistent {
                if let Some(held) = self.take_stored(packet, now)? {
                    // Boxed: rare, and off the common path's frames.
                    let hold = boxed(self.hold_ack(held));
                    hold.await;
                }
            } else {
                self.take(packet, now)?;
            }
            self.settle(now).await?;
            // Stop at the high-water mark (or with retained messages still
            // owed): the rest stays buffered, and the loop comes back for it
            // once the writer has drained.
            if self.writer.pending() >= self.high_water() || self.owes_backlog() {
                self.more_buffered = true;
                return Ok(());
            }
        }
    }

    /// [`Self::read_buffered`] with hooks installed: consecutive PUBLISH packets (up to
    /// [`HOOK_BATCH`]) go to the session before any is acted on, so the
    /// hooks decide on them together ([`Self::publish_batch`]): one answer
    /// for many packets instead of one round trip per packet. Any other
    /// packet is taken only after the PUBLISH packets before it are
    /// settled, so everything else keeps its order.
    async fn read_buffered_batched(&mut self, now: Instant) -> Result<(), Ending> {
        // PUBLISH packets taken by the session and not settled yet.
        let mut unsettled = 0usize;
        loop {
            // A separate statement: the decoded packet is moved out before
            // any await, so no packet-sized temporary spans it.
            let next = self.reader.try_read_buffered();
            if unsettled > 0 && !matches!(next, Ok(Some(Packet::Publish(_)))) {
                // The end of a batch: the PUBLISH packets before are acted
                // on first. What was read is held on the heap across the
                // settle (rare), so the loop's future does not grow by a
                // packet.
                let held = Box::new(next);
                self.settle(now).await?;
                let Some(packet) = self.buffered(*held)? else {
                    return Ok(());
                };
                if self.persistent {
                    let stored = boxed(self.take_stored_all(packet, now));
                    stored.await?;
                } else {
                    self.take(packet, now)?;
                }
            } else {
                let Some(packet) = self.buffered(next)? else {
                    return Ok(());
                };
                let publish = matches!(packet, Packet::Publish(_));
                let taken = match self.take_stored_if(packet, now) {
                    Ok(Some(held)) => {
                        // Boxed: rare, and off the common path's frames.
                        let hold = boxed(self.hold_ack(held));
                        hold.await;
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(ending) => Err(ending),
                };
                if let Err(ending) = taken {
                    if unsettled > 0 {
                        // The packets before the one that broke the
                        // protocol are acted on first, as if read one by
                        // one.
                        self.settle(now).await?;
                    }
                    return Err(ending);
                }
                if publish && unsettled + 1 < HOOK_BATCH {
                    unsettled += 1;
                    continue;
                }
            }
            unsettled = 0;
            self.settle(now).await?;
            // Stop at the high-water mark (or with retained messages still
            // owed): the rest stays buffered, and the loop comes back for it
            // once the writer has drained.
            if self.writer.pending() >= self.high_water() || self.owes_backlog() {
                self.more_buffered = true;
                return Ok(());
            }
        }
    }

    /// The next buffered packet, `None` once the buffer holds no whole
    /// packet (then nothing more is buffered), or how the connection ends
    /// when it is malformed.
    fn buffered(&mut self, r: Result<Option<Packet>, NetError>) -> Result<Option<Packet>, Ending> {
        match r {
            Ok(Some(packet)) => Ok(Some(packet)),
            Ok(None) => {
                self.more_buffered = false;
                Ok(None)
            }
            Err(e) => Err(Self::read_failed(e)),
        }
    }

    /// How the connection ends when reading a packet failed.
    fn read_failed(e: NetError) -> Ending {
        if let NetError::Decode(e) = e {
            tracing::warn!(error = %e, "malformed packet; closing");
            Ending::Violation(e.reason_code(), e.to_string())
        } else {
            tracing::debug!(error = %e, "read failed");
            Ending::Lost
        }
    }

    fn violation(e: &SessionError) -> Ending {
        Ending::Violation(e.reason_code(), e.to_string())
    }

    /// Acts on everything the session reported, awaiting hooks where one
    /// must decide.
    // Design: the common path is synchronous (`process_events`); only work
    // that waits for hooks is awaited, boxed, so the connection's future
    // stays small and no large future is moved per packet.
    async fn settle(&mut self, now: Instant) -> Result<(), Ending> {
        loop {
            // Separate statements, so no large temporary spans the await.
            let Some(pending) = self.process_events(now)? else {
                return Ok(());
            };
            let work = boxed(self.complete(now, pending));
            work.await?;
        }
    }

    /// Finishes an event that needs the hooks.
    async fn complete(&mut self, now: Instant, pending: Pending) -> Result<(), Ending> {
        match pending {
            Pending::Publish(p) => self.publish_batch(now, p, false).await,
            Pending::Stored(p) if !self.chain.is_empty() => self.publish_batch(now, p, true).await,
            Pending::Stored(p) => self.on_publish_stored(now, p).await,
            Pending::Subscribe(s) => {
                self.on_subscribe(now, s).await;
                Ok(())
            }
        }
    }

    /// Writes the record change an acknowledgement makes; returns the
    /// packet to handle now, or, with its batch, one held until the change
    /// is durable (PUBREC of an outgoing QoS 2 flow: no PUBREL before its
    /// record says so; PUBREL of an incoming one: no PUBCOMP before its id
    /// is forgotten, or a reused id would be taken for a duplicate
    /// [MQTT-4.3.3-10]). Changes nobody waits for go with the next
    /// submission.
    fn store_ack(&mut self, packet: Packet) -> Result<Packet, Box<Held>> {
        let key = || SessionKey::broker(self.handle.client_id.clone());
        match &packet {
            Packet::PubAck(a) if !self.track.sent.is_empty() => {
                // A QoS 1 flow sent from its queue entry: the entry goes.
                if let Some(id) = self.track.sent.take(a.packet_id) {
                    self.out.push(Op::DequeueMessage {
                        key: key(),
                        message: id,
                    });
                } else if self.track.inflight.remove(&a.packet_id.get()) {
                    self.out.remove_inflight(key(), a.packet_id);
                }
                return Ok(packet);
            }
            Packet::PubAck(a) | Packet::PubComp(a) => {
                if self.track.inflight.remove(&a.packet_id.get()) {
                    self.out.remove_inflight(key(), a.packet_id);
                }
                return Ok(packet);
            }
            _ => {}
        }
        let mut b = Batch::new();
        match &packet {
            Packet::PubRec(a) if self.track.inflight.contains(&a.packet_id.get()) => {
                if a.reason_code.is_success() {
                    b.put_inflight(key(), a.packet_id, InflightState::AwaitingPubComp, None);
                } else {
                    self.track.inflight.remove(&a.packet_id.get());
                    b.remove_inflight(key(), a.packet_id);
                }
            }
            Packet::PubRel(a) if self.track.incoming.contains(&a.packet_id.get()) => {
                self.track.incoming.remove(&a.packet_id.get());
                b.remove_incoming(key(), a.packet_id);
            }
            _ => return Ok(packet),
        }
        Err(Box::new(Held(packet, b)))
    }

    /// Acts on completed store commits, in order: the one that completed,
    /// then every following one already done.
    async fn on_stored(&mut self, first: Result<Vec<OpOutcome>, StoreError>) -> Result<(), Ending> {
        use futures_util::FutureExt as _;
        let mut r = first;
        loop {
            let Some(p) = self.pending.pop_front() else {
                return Ok(());
            };
            self.complete_stored(p, r).await?;
            r = match self.pending.front_mut() {
                None => return Ok(()),
                Some(StoreWait { commit: None, .. }) => Ok(Vec::new()),
                Some(StoreWait {
                    commit: Some(c), ..
                }) => match c.now_or_never() {
                    Some(r) => r,
                    None => return Ok(()),
                },
            };
        }
    }

    /// Does what waited for one commit.
    async fn complete_stored(
        &mut self,
        p: StoreWait,
        r: Result<Vec<OpOutcome>, StoreError>,
    ) -> Result<(), Ending> {
        let outcomes = match r {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; closing the connection");
                return Err(Ending::Violation(
                    ReasonCode::ImplementationSpecificError,
                    "the server cannot store the message".into(),
                ));
            }
        };
        if !p.checks.is_empty() {
            self.broker
                .check_enqueued(&outcomes, &p.checks, &self.chain);
        }
        let now = Instant::now();
        match p.after {
            After::Acks(acks) => {
                for (packet_id, code) in acks {
                    if let Err(e) =
                        self.session
                            .ack_with(now, packet_id, code, AckProperties::default())
                    {
                        tracing::error!(error = %e, "cannot acknowledge a PUBLISH");
                    }
                }
            }
            After::Feed(packet) => {
                if let Err(e) = self.session.handle_packet(now, packet) {
                    tracing::warn!(error = %e, "protocol violation; closing");
                    return Err(Self::violation(&e));
                }
                self.settle(now).await?;
            }
            After::Send(packets) => self.write_packets(packets),
        }
        Ok(())
    }

    /// Completes every pending commit before the connection closes, so
    /// the detached state matches the store (acknowledged flows move on).
    async fn settle_stored(&mut self) {
        while let Some(p) = self.pending.pop_front() {
            let r = match p.commit {
                Some(c) => match tokio::time::timeout(CLOSE_FLUSH, c).await {
                    Ok(r) => r,
                    Err(_) => return,
                },
                None => Ok(Vec::new()),
            };
            let p = StoreWait { commit: None, ..p };
            if Box::pin(self.complete_stored(p, r)).await.is_err() {
                return;
            }
        }
    }

    /// Sends what the session queued; PUBLISH packets of stored messages
    /// wait until their move from the queue to the in-flight table is
    /// durable, and so does everything behind them.
    async fn transmit_stored(&mut self) {
        if self.track.unsent.is_empty() && self.pending.is_empty() {
            self.flush_transmit();
            return;
        }
        let mut packets = Vec::new();
        let mut b = Batch::new();
        let mut hold = false;
        while let Some(p) = self.session.poll_transmit() {
            if let Packet::Publish(pb) = &p
                && pb.qos != QoS::AtMostOnce
                && !pb.dup
                && let Some(pid) = pb.packet_id
            {
                // By packet id, not a scan of every flow in flight.
                let ticket = self
                    .session
                    .state()
                    .outgoing
                    .get(pid)
                    .map(session::Outgoing::ticket);
                if let Some(id) = ticket.and_then(|t| self.track.unsent.remove(&t)) {
                    if pb.qos == QoS::AtLeastOnce {
                        // Its queue entry stands for it until the PUBACK
                        // (see `SentQos1`): a QoS 1 message may arrive
                        // twice, so nothing waits.
                        let at = self.broker.timers().coarse_millis();
                        self.track.sent.insert(pid, id, at);
                    } else {
                        // Sent only once its in-flight record is durable: a
                        // crash must not leave it in the queue as well, to
                        // be sent again as a new message [MQTT-4.3.3-10].
                        hold = true;
                        let key = SessionKey::broker(self.handle.client_id.clone());
                        persist::move_to_inflight(
                            &mut b,
                            &mut self.track.inflight,
                            (&key, pid),
                            InflightState::AwaitingPubRec,
                            id,
                        );
                    }
                }
            }
            packets.push(p);
        }
        if packets.is_empty() {
            return;
        }
        let commit = if b.is_empty() {
            None
        } else if hold {
            self.submit(b).await
        } else {
            self.out.ops.append(&mut b.ops);
            None
        };
        if commit.is_none() && self.pending.is_empty() {
            self.write_packets(packets);
        } else {
            self.pending.push_back(StoreWait {
                commit,
                after: After::Send(packets),
                checks: Checks::default(),
            });
        }
    }

    /// Writes the in-flight records of the QoS 1 flows sent from the queue
    /// at or before `until` (timer ms; every one when `None`), still
    /// unacknowledged (see [`SentQos1`]).
    fn record_sent(&mut self, until: Option<u64>) {
        let key = SessionKey::broker(self.handle.client_id.clone());
        let Self { track, out, .. } = self;
        let Track { sent, inflight, .. } = &mut **track;
        sent.take_due(until, |pid, id| {
            persist::move_to_inflight(
                out,
                inflight,
                (&key, pid),
                InflightState::AwaitingPubAck,
                id,
            );
        });
    }

    /// Removes a stored message's queue entry (it will not be delivered).
    fn unstore(&mut self, id: Option<crate::store::MessageId>) {
        if let Some(id) = id {
            self.out.push(Op::DequeueMessage {
                key: SessionKey::broker(self.handle.client_id.clone()),
                message: id,
            });
        }
    }

    /// Store ops wait for a submission: the current read's group, or ops
    /// nobody waits for.
    fn unsubmitted(&self) -> bool {
        !self.out.is_empty() || self.group.as_ref().is_some_and(|g| g.is_active())
    }

    /// Submits `b` behind the ops waiting in `out`, in one submission
    /// (after the current read's group, in one submission of its own);
    /// returns its commit.
    async fn submit(&mut self, mut b: Batch) -> Option<Commit> {
        if self.group.as_ref().is_some_and(|g| g.is_active()) {
            self.submit_group().await;
        }
        let p = self.broker.persist()?;
        let mut all = std::mem::take(&mut self.out);
        all.ops.append(&mut b.ops);
        if all.is_empty() {
            return None;
        }
        p.submit(all).await
    }

    /// Submits the store ops of the PUBLISH packets read so far (behind
    /// the ops waiting in `out`), hands their deliveries to the persistent
    /// sessions (the store sees "queued" before "in flight"), and queues
    /// their acknowledgements behind the commit: one submission, one
    /// commit, and one wake-up for a whole read.
    async fn submit_group(&mut self) {
        let Some(g) = self.group.as_deref_mut() else {
            return;
        };
        let mut all = std::mem::take(&mut self.out);
        let prefix = all.len();
        // The next read's vectors start at this one's sizes instead of
        // growing again message by message (an idle connection gives them
        // back with the group, see `shrink_idle`).
        let ops = Vec::with_capacity(g.staged.batch.len());
        if prefix == 0 {
            all.ops = std::mem::replace(&mut g.staged.batch.ops, ops);
        } else {
            all.ops.append(&mut g.staged.batch.ops);
            g.staged.batch.ops = ops;
        }
        let sized = Checks {
            list: Vec::with_capacity(g.staged.checks.list.len()),
            clients: Vec::with_capacity(g.staged.checks.clients.len()),
        };
        let mut checks = std::mem::replace(&mut g.staged.checks, sized);
        checks.offset(prefix);
        let n_acks = g.acks.len();
        let acks = std::mem::replace(&mut g.acks, Vec::with_capacity(n_acks));
        // The next read's messages are received later.
        g.staged.received = None;
        let commit = match self.broker.persist() {
            Some(p) if !all.is_empty() => p.submit(all).await,
            _ => None,
        };
        if let Some(g) = self.group.as_deref_mut() {
            self.broker
                .push_staged(&mut g.staged.deliveries, &self.chain);
        }
        if commit.is_some() || !acks.is_empty() {
            self.pending.push_back(StoreWait {
                commit,
                after: After::Acks(acks),
                checks,
            });
        }
    }

    /// Acts on what the session reported, up to the first event that needs
    /// the hooks, which is returned.
    fn process_events(&mut self, now: Instant) -> Result<Option<Pending>, Ending> {
        while let Some(event) = self.session.poll_event() {
            match event {
                session::Event::Publish(p) => {
                    self.refresh_chain();
                    if self.broker.persist().is_some() {
                        // With a store: acknowledged after the commit.
                        return Ok(Some(Pending::Stored(p)));
                    } else if self.chain.is_empty() {
                        self.on_publish_plain(now, p)?;
                    } else {
                        return Ok(Some(Pending::Publish(p)));
                    }
                }
                session::Event::Subscribe(s) => return Ok(Some(Pending::Subscribe(s))),
                session::Event::Unsubscribe(u) => self.on_unsubscribe(now, &u),
                session::Event::PublishDropped {
                    publish,
                    reason,
                    ticket,
                } => {
                    if self.persistent {
                        let id = self.track.unsent.remove(&ticket);
                        self.unstore(id);
                    }
                    let why = match reason {
                        session::DropReason::Expired => DropReason::Expired,
                        session::DropReason::PacketTooLarge => DropReason::TooLarge,
                        _ => DropReason::SessionEnded,
                    };
                    tracing::debug!(topic = %publish.topic, ?why, "message dropped");
                    let msg = Message {
                        topic: publish.topic,
                        payload: publish.payload,
                        qos: publish.qos,
                        retain: publish.retain,
                        properties: publish.properties,
                    };
                    self.dropped(&msg, why);
                }
                session::Event::Disconnected(d) => {
                    if self.version.is_v5()
                        && let Some(secs) = d.properties.session_expiry_interval
                    {
                        if self.session_expiry == 0 && secs != 0 {
                            // [MQTT-3.14.2-2]: not a valid DISCONNECT. The
                            // session took it and is closed, so the
                            // server's DISCONNECT 0x82 goes straight to the
                            // writer (reason code only: it fits any
                            // Maximum Packet Size the client set).
                            let answer = Packet::Disconnect(Disconnect::with_reason(
                                ReasonCode::ProtocolError,
                            ));
                            if let Err(e) = self.writer.queue(&answer, self.version) {
                                tracing::error!(error = %e, "cannot encode a packet");
                            }
                            return Err(Ending::Violation(
                                    ReasonCode::ProtocolError,
                                    "[MQTT-3.14.2-2] session expiry set in DISCONNECT after 0 in CONNECT".into(),
                                ));
                        }
                        self.session_expiry = secs.min(self.broker.config().max_session_expiry);
                    }
                    tracing::debug!(reason = ?d.reason_code, "client disconnected");
                    return Err(Ending::Disconnect(d.reason_code));
                }
                session::Event::Auth(_) => {
                    // No authentication method was agreed, so AUTH is a
                    // protocol error (MQTT 5.0 §4.12).
                    return Err(Ending::Violation(
                        ReasonCode::ProtocolError,
                        "AUTH without an authentication method".into(),
                    ));
                }
                session::Event::UnexpectedAck {
                    packet_type,
                    packet_id,
                } => {
                    tracing::debug!(?packet_type, %packet_id, "acknowledgement for no flow");
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Reports a message that will not reach this client.
    fn dropped(&self, msg: &Message, why: DropReason) {
        self.broker.count_drop();
        self.handle.count_drop();
        self.chain.emit(EventKind::Messages, || {
            Event::Dropped(&self.info.client_id, msg, why)
        });
    }

    /// The checks every PUBLISH from the client passes before any routing:
    /// the message, its packet id, and the refusal code when its topic is
    /// too deep.
    fn publish_prelude(
        &mut self,
        p: Publish,
    ) -> Result<(Message, Option<PacketId>, Option<ReasonCode>), Ending> {
        let (maximum_qos, retain_available, max_levels) = {
            let c = self.broker.config();
            (c.maximum_qos, c.retain_available, c.max_topic_levels)
        };
        let Publish {
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload,
            ..
        } = p;
        if qos > maximum_qos {
            // [MQTT-3.2.2-12] (5.0)
            return Err(Ending::Violation(
                ReasonCode::QoSNotSupported,
                format!("[MQTT-3.2.2-12] QoS {} is above the maximum", qos.as_u8()),
            ));
        }
        if retain && !retain_available && self.version.is_v5() {
            // [MQTT-3.3.1-8] (5.0)
            return Err(Ending::Violation(
                ReasonCode::RetainNotSupported,
                "[MQTT-3.3.1-8] retained messages are not supported".into(),
            ));
        }
        let mut msg = Message {
            topic,
            payload,
            qos,
            retain,
            properties,
        };
        clean_properties(&mut msg.properties);
        let refused = if max_levels > 0 && msg.topic.level_count() > max_levels {
            tracing::warn!(
                topic = %msg.topic,
                limit = max_levels,
                "publish refused: too many topic levels"
            );
            Some(ReasonCode::TopicNameInvalid)
        } else {
            None
        };
        Ok((msg, packet_id, refused))
    }

    /// Completes the client's QoS 1/2 flow whatever happened to the
    /// message; MQTT 5 clients learn the outcome from the reason code.
    fn publish_done(&mut self, now: Instant, packet_id: Option<PacketId>, reason: ReasonCode) {
        if let Some(id) = packet_id {
            let code = if self.version.is_v5() {
                reason
            } else {
                ReasonCode::Success
            };
            if let Err(e) = self
                .session
                .ack_with(now, id, code, AckProperties::default())
            {
                tracing::error!(error = %e, "cannot acknowledge a PUBLISH");
            }
        }
    }

    /// An application message from the client when no hook is installed.
    fn on_publish_plain(&mut self, now: Instant, p: Publish) -> Result<(), Ending> {
        let (msg, packet_id, refused) = self.publish_prelude(p)?;
        let reason = match refused {
            Some(code) => code,
            None => self.route(now, msg),
        };
        self.publish_done(now, packet_id, reason);
        Ok(())
    }

    /// An application message from the client, decided by the hooks: the
    /// publish ACL, then the on_publish verdict (and rewrite).
    async fn on_publish_hooked(&mut self, now: Instant, p: Publish) -> Result<(), Ending> {
        let (msg, packet_id, refused) = self.publish_prelude(p)?;
        let reason = match refused {
            Some(code) => code,
            None => self.hooked_reason(now, msg).await?,
        };
        self.publish_done(now, packet_id, reason);
        Ok(())
    }

    /// A PUBLISH on a broker with a store: routed as without one, then
    /// acknowledged once its records are durable.
    async fn on_publish_stored(&mut self, now: Instant, p: Publish) -> Result<(), Ending> {
        let qos = p.qos;
        let (msg, packet_id, refused) = self.publish_prelude(p)?;
        let reason = match refused {
            Some(code) => code,
            None if self.chain.is_empty() => self.route(now, msg),
            None => self.hooked_reason(now, msg).await?,
        };
        let v5 = self.version.is_v5();
        if !self.ack_after_commit(qos, packet_id, v5, reason) {
            self.publish_done(now, packet_id, reason);
        }
        Ok(())
    }

    /// A PUBLISH for the hooks, decided together with the PUBLISH packets
    /// the session reported right behind it (up to [`HOOK_BATCH`]): the
    /// prelude checks and the publish ACL message by message, then each
    /// hook's `on_publish_batch` once for them all, then the verdicts
    /// applied in packet order: routed (or the rewrite), acknowledged
    /// (a discarded QoS 1/2 message too), and at a close verdict the
    /// connection ends there, the messages behind it neither routed nor
    /// acknowledged. `stored`: the broker has a store (acknowledged after
    /// the commit).
    async fn publish_batch(
        &mut self,
        now: Instant,
        first: Publish,
        stored: bool,
    ) -> Result<(), Ending> {
        /// How far one message of the batch got before the hooks.
        enum Step {
            /// Refused with this code (too deep, or the ACL said no).
            Refused(ReasonCode),
            /// Asked of the publish hooks.
            Asked,
        }
        if !matches!(self.session.peek_event(), Some(session::Event::Publish(_))) {
            return if stored {
                self.on_publish_stored(now, first).await
            } else {
                self.on_publish_hooked(now, first).await
            };
        }
        // Short-lived, and full batches are the busy case: sized once (20
        // KiB at most) rather than grown four times from 16.
        let mut batch = Vec::with_capacity(HOOK_BATCH);
        batch.push(first);
        while batch.len() < HOOK_BATCH
            && matches!(self.session.peek_event(), Some(session::Event::Publish(_)))
        {
            if let Some(session::Event::Publish(p)) = self.session.poll_event() {
                batch.push(p);
            }
        }
        // The checks every PUBLISH passes; one that breaks the protocol ends
        // the batch there, after the messages before it are dealt with.
        let mut steps = Vec::with_capacity(batch.len());
        let mut asked = Vec::with_capacity(batch.len());
        let mut violation = None;
        for p in batch {
            let qos = p.qos;
            match self.publish_prelude(p) {
                Ok((_, packet_id, Some(code))) => steps.push((qos, packet_id, Step::Refused(code))),
                Ok((msg, packet_id, None)) => {
                    steps.push((qos, packet_id, Step::Asked));
                    asked.push(msg);
                }
                Err(ending) => {
                    violation = Some(ending);
                    break;
                }
            }
        }
        let chain = Arc::clone(&self.chain);
        // The publish ACL, message by message.
        let mut kept = Vec::with_capacity(asked.len());
        let mut msgs = asked.into_iter();
        for step in &mut steps {
            if !matches!(step.2, Step::Asked) {
                continue;
            }
            let Some(msg) = msgs.next() else { break };
            if chain.publish_allowed(&self.info, &msg).await {
                kept.push(msg);
            } else {
                step.2 = Step::Refused(ReasonCode::NotAuthorized);
            }
        }
        asked = kept;
        let mut outcomes = chain.on_publish_batch(&self.info, asked).await.into_iter();
        let v5 = self.version.is_v5();
        for (qos, packet_id, step) in steps {
            let reason = match step {
                Step::Refused(code) => code,
                Step::Asked => match outcomes.next() {
                    Some(outcome) => self.outcome_reason(now, outcome)?,
                    None => return Err(Ending::HookClose),
                },
            };
            if !stored || !self.ack_after_commit(qos, packet_id, v5, reason) {
                self.publish_done(now, packet_id, reason);
            }
        }
        match violation {
            Some(ending) => Err(ending),
            None => Ok(()),
        }
    }

    /// The ACL and publish hooks' decision on a message, routed if they
    /// let it through; the reason code for its acknowledgement.
    async fn hooked_reason(&mut self, now: Instant, msg: Message) -> Result<ReasonCode, Ending> {
        let chain = Arc::clone(&self.chain);
        if !chain.publish_allowed(&self.info, &msg).await {
            return Ok(ReasonCode::NotAuthorized);
        }
        let outcome = chain.on_publish(&self.info, msg).await;
        self.outcome_reason(now, outcome)
    }

    /// Acts on the publish hooks' decision on a message: routes it, or
    /// gives the reason code of a discarded one; a hook closing the
    /// connection ends it.
    fn outcome_reason(
        &mut self,
        now: Instant,
        outcome: PublishOutcome,
    ) -> Result<ReasonCode, Ending> {
        match outcome {
            PublishOutcome::Route(m) if !m.topic.is_empty() => Ok(self.route(now, m)),
            PublishOutcome::Route(_) | PublishOutcome::Discard => {
                Ok(ReasonCode::NoMatchingSubscribers)
            }
            PublishOutcome::Close => Err(Ending::HookClose),
        }
    }

    /// With a store: queues the acknowledgement of a PUBLISH behind the
    /// commit of its message, queue entries and (QoS 2) packet id, staged
    /// in the current read's group; true if it was queued (false:
    /// acknowledge now).
    fn ack_after_commit(
        &mut self,
        qos: QoS,
        packet_id: Option<PacketId>,
        v5: bool,
        reason: ReasonCode,
    ) -> bool {
        if self.broker.persist().is_none() {
            return false;
        }
        if let Some(id) = packet_id
            && qos == QoS::ExactlyOnce
            && self.persistent
        {
            // [MQTT-4.3.3-10]: a resent PUBLISH with this id, even
            // after a restart, is not delivered again.
            self.group
                .get_or_insert_default()
                .staged
                .batch
                .put_incoming(
                    SessionKey::broker(self.handle.client_id.clone()),
                    IncomingRecord {
                        packet_id: id,
                        received_at: Timestamp::now(),
                    },
                );
            self.track.incoming.insert(id.get());
        }
        let active = self.group.as_ref().is_some_and(|g| g.is_active());
        if !active && self.pending.is_empty() {
            // Nothing stored, nothing before it waits: acknowledged now.
            return false;
        }
        if let Some(id) = packet_id {
            // With a store: acknowledged only once the message, its queue
            // entries and (QoS 2) its packet id are durable, and after the
            // PUBLISH packets before it [MQTT-4.6.0-2].
            let code = if v5 { reason } else { ReasonCode::Success };
            self.group.get_or_insert_default().acks.push((id, code));
        }
        true
    }

    /// Routes one message from this client; the reason code for its ack.
    fn route(&mut self, now: Instant, mut msg: Message) -> ReasonCode {
        clean_properties(&mut msg.properties);
        // It may be retained or queued for long: small parts get their own
        // allocation instead of pinning the read buffer. The topic of the
        // previous message, already copied, is shared when it is the same.
        match self
            .scratch
            .as_ref()
            .and_then(|s| s.known_topic(&msg.topic))
        {
            Some(topic) => super::own_small_parts_but_topic(&mut msg, topic.clone()),
            None => super::own_small_parts(&mut msg),
        }
        let routed = Arc::new(Routed {
            message: msg,
            created: now,
        });
        let scratch = self.scratch.get_or_insert_default();
        let matched = if self.broker.persist().is_some() {
            // Staged with the other PUBLISH packets of this read: one
            // submission for them all.
            let group = self.group.get_or_insert_default();
            self.broker
                .route_into(
                    &routed,
                    Some(self.handle.key),
                    scratch,
                    &self.chain,
                    &mut group.staged,
                )
                .0
        } else {
            self.broker
                .route_staged(&routed, Some(self.handle.key), scratch, &self.chain)
                .0
        };
        if matched == 0 {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        }
    }

    async fn on_subscribe(&mut self, now: Instant, s: Subscribe) {
        let sub_id = s.properties.subscription_identifier;
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for (filter, options) in s.filters {
            let code = self
                .subscribe_one(now, &filter, options, sub_id, &mut retained)
                .await;
            self.chain.emit(EventKind::Lifecycle, || {
                Event::Subscribed(&self.info, &filter, options, code)
            });
            codes.push(code);
        }
        let suback = SubAck {
            packet_id: s.packet_id,
            reason_codes: codes,
            properties: AckProperties::default(),
        };
        if let Err(e) = self.session.suback(now, suback) {
            tracing::error!(error = %e, "cannot send SUBACK");
        }
        // Sent after the SUBACK, as the write buffer allows (the run loop
        // drains the backlog).
        for (msg, qos) in retained {
            self.backlog.push_back(Delivery {
                msg,
                qos,
                // [MQTT-3.3.1-8] (3.1.1) / [MQTT-3.3.1-9] (5.0)
                retain: true,
                sub_ids: sub_id.into_iter().collect(),
                stored: None,
            });
        }
    }

    /// Work left by an earlier turn that stopped at the write high-water
    /// mark: retained messages owed to new subscriptions, then packets left
    /// in the read buffer; nothing while the writer has no room.
    fn catch_up(&self) -> CatchUp {
        if self.writer.pending() >= self.high_water() {
            CatchUp::Nothing
        } else if self.owes_backlog() {
            CatchUp::Backlog
        } else if self.more_buffered {
            CatchUp::Buffered
        } else {
            CatchUp::Nothing
        }
    }

    /// Hands retained messages owed to new subscriptions to the session
    /// until the write buffer reaches the high-water mark.
    async fn drain_backlog(&mut self) -> Result<(), Ending> {
        let now = Instant::now();
        while self.writer.pending() < self.high_water() {
            let Some(d) = self.backlog.pop_front() else {
                break;
            };
            self.deliver(now, d).await;
            if self.persistent {
                // Stored messages the session sends go out as the store
                // allows ([`Self::transmit_stored`]).
                let stored = boxed(self.transmit_stored());
                stored.await;
            } else {
                self.flush_transmit();
            }
        }
        self.settle(now).await
    }

    async fn subscribe_one(
        &mut self,
        now: Instant,
        filter: &TopicFilter,
        options: SubscriptionOptions,
        sub_id: Option<u32>,
        retained: &mut Vec<(Arc<Routed>, QoS)>,
    ) -> ReasonCode {
        let (maximum_qos, retain_available, max_levels) = {
            let c = self.broker.config();
            (c.maximum_qos, c.retain_available, c.max_topic_levels)
        };
        if max_levels > 0 && filter.level_count() > max_levels {
            tracing::warn!(%filter, limit = max_levels, "subscription refused: too many topic levels");
            return ReasonCode::TopicFilterInvalid;
        }
        let granted = options.qos.min(maximum_qos);
        self.refresh_chain();
        if !self.chain.is_empty() {
            let chain = Arc::clone(&self.chain);
            let allowed = chain
                .acl(&AclRequest {
                    client: &self.info,
                    access: Access::Subscribe,
                    topic: filter.as_str(),
                    qos: options.qos,
                    payload: None,
                    retain: false,
                })
                .await;
            if !allowed {
                tracing::debug!(%filter, "subscription denied by the ACL");
                return ReasonCode::NotAuthorized;
            }
        }
        let options = SubscriptionOptions {
            qos: granted,
            ..options
        };
        // Kept as long as the subscription: not a slice of the read buffer.
        let filter = &super::own_filter(filter);
        let existed = self
            .broker
            .router()
            .subscribe(filter, &self.handle, options, sub_id);
        lock(&self.handle.subscriptions).insert(
            filter.clone(),
            SubRecord {
                options,
                id: sub_id,
            },
        );
        if self.persistent {
            // Durable before SUBACK: a message acknowledged to its
            // publisher after this must reach the subscriber.
            let mut b = Batch::new();
            b.put_subscription(
                SessionKey::broker(self.handle.client_id.clone()),
                SubscriptionRecord {
                    filter: filter.clone(),
                    options,
                    identifier: sub_id,
                },
            );
            if let Some(c) = self.submit(b).await
                && let Err(e) = c.await
            {
                tracing::error!(error = %e, "cannot store a subscription");
            }
        }
        // Retained messages are not sent for a shared subscription
        // (MQTT 5.0 §4.8.2).
        let send_retained = retain_available
            && !filter.is_shared()
            && match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendAtSubscribeIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        if send_retained {
            for msg in self.broker.router().retained_for(filter, now) {
                let qos = msg.message.qos.min(granted);
                retained.push((msg, qos));
            }
        }
        match granted {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        }
    }

    fn on_unsubscribe(&mut self, now: Instant, u: &Unsubscribe) {
        let mut codes = Vec::with_capacity(u.filters.len());
        for filter in &u.filters {
            let existed = self.broker.router().unsubscribe(filter, self.handle.key);
            lock(&self.handle.subscriptions).remove(filter);
            if existed && self.persistent {
                self.out.remove_subscription(
                    SessionKey::broker(self.handle.client_id.clone()),
                    filter.clone(),
                );
            }
            if existed {
                self.chain.emit(EventKind::Lifecycle, || {
                    Event::Unsubscribed(&self.info, filter)
                });
            }
            codes.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        let unsuback = UnsubAck {
            packet_id: u.packet_id,
            reason_codes: codes,
            properties: AckProperties::default(),
        };
        if let Err(e) = self.session.unsuback(now, unsuback) {
            tracing::error!(error = %e, "cannot send UNSUBACK");
        }
    }

    /// Takes everything waiting in the mailbox into the session; returns
    /// true when a hook must check the deliveries ([`Self::drain_checked`]).
    fn drain(&mut self) -> bool {
        self.refresh_chain();
        if self.chain.interests().deliver_acl {
            return true;
        }
        let mut spare = self.take_mail();
        let now = Instant::now();
        while let Some(d) = spare.pop_front() {
            self.deliver_plain(now, d);
        }
        self.keep_spare(spare);
        false
    }

    /// Swaps the mailbox's queue with the spare one: what waits in the
    /// mailbox, in an empty queue's place.
    fn take_mail(&mut self) -> LazyDeque<Delivery> {
        let mut spare = std::mem::replace(&mut self.spare, LazyDeque::new());
        std::mem::swap(&mut lock(&self.handle.mailbox).queue, &mut spare);
        spare
    }

    /// Keeps the drained queue for the next drain, unless it grew large
    /// (its memory is given back after a burst).
    fn keep_spare(&mut self, spare: LazyDeque<Delivery>) {
        if spare.capacity() <= 64 {
            self.spare = spare;
        }
    }

    /// True when retained messages are owed to new subscriptions.
    fn owes_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Takes everything waiting in the mailbox into the session, each
    /// delivery checked by the delivery ACL.
    async fn drain_checked(&mut self) {
        let mut spare = self.take_mail();
        let now = Instant::now();
        while let Some(d) = spare.pop_front() {
            self.deliver_checked(now, d).await;
        }
        self.keep_spare(spare);
    }

    /// Hands one message to the session after the delivery ACL, when a
    /// hook asked for it.
    async fn deliver(&mut self, now: Instant, d: Delivery) {
        self.refresh_chain();
        if self.chain.interests().deliver_acl {
            // Boxed: a delivery held across the hook's await would grow
            // every caller's future.
            let checked = boxed(self.deliver_checked(now, d));
            checked.await;
        } else {
            self.deliver_plain(now, d);
        }
    }

    /// [`Self::deliver`] with the delivery ACL.
    async fn deliver_checked(&mut self, now: Instant, d: Delivery) {
        {
            let chain = Arc::clone(&self.chain);
            let m = &d.msg.message;
            let allowed = chain
                .acl(&AclRequest {
                    client: &self.info,
                    access: Access::Deliver,
                    topic: m.topic.as_str(),
                    qos: d.qos,
                    payload: Some(&m.payload),
                    retain: d.retain,
                })
                .await;
            if !allowed {
                self.dropped(m, DropReason::Denied);
                if self.persistent {
                    self.unstore(d.stored);
                }
                return;
            }
        }
        self.deliver_plain(now, d);
    }

    /// Hands one message to the session, which sends it when the window
    /// allows; a stored message is tracked until it is sent, or its queue
    /// entry removed if it is dropped.
    fn deliver_plain(&mut self, now: Instant, d: Delivery) {
        let stored = if self.persistent { d.stored } else { None };
        match self.hand_over(now, d) {
            Some(ticket) => {
                if let Some(id) = stored {
                    self.track.unsent.insert(ticket, id);
                }
            }
            None => self.unstore(stored),
        }
    }

    /// [`Self::deliver_plain`]: the message's ticket, `None` if dropped.
    fn hand_over(&mut self, now: Instant, d: Delivery) -> Option<session::Ticket> {
        let m = &d.msg.message;
        let Ok(expiry) = d.msg.remaining_expiry(now) else {
            // [MQTT-3.3.2-5]
            self.dropped(m, DropReason::Expired);
            return None;
        };
        let properties = if self.version.is_v5() {
            let mut p = m.properties.clone();
            // The remaining lifetime [MQTT-3.3.2-6]; every matching
            // subscription's identifier [MQTT-3.3.4-3]. A message without
            // properties stays without an allocation.
            p.update(|p| {
                p.message_expiry_interval = expiry;
                p.subscription_identifiers = d.sub_ids;
            });
            p
        } else {
            crate::codec::PublishProps::new()
        };
        let publish = Publish {
            dup: false,
            qos: d.qos,
            retain: d.retain,
            topic: m.topic.clone(),
            packet_id: None,
            properties,
            payload: m.payload.clone(),
        };
        match self.session.publish(now, publish) {
            Ok(ticket) => {
                self.chain
                    .emit(EventKind::Messages, || Event::Delivered(&self.info, m));
                Some(ticket)
            }
            Err(SessionError::QueueFull { .. }) => {
                self.dropped(m, DropReason::QueueFull);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot hand a message to the session");
                None
            }
        }
    }

    /// Encodes what the session wants sent into the write buffer.
    fn flush_transmit(&mut self) {
        let packets = self.chain.wants(EventKind::Packets);
        while let Some(p) = self.session.poll_transmit() {
            self.write_packet(&p, packets);
        }
    }

    /// Writes packets held for a store commit.
    fn write_packets(&mut self, list: Vec<Packet>) {
        let packets = self.chain.wants(EventKind::Packets);
        for p in list {
            self.write_packet(&p, packets);
        }
    }

    #[inline]
    fn write_packet(&mut self, p: &Packet, packets: bool) {
        if packets {
            self.chain
                .emit(EventKind::Packets, || Event::PacketSent(&self.info, p));
        }
        if let Err(e) = self.writer.queue(p, self.version) {
            tracing::error!(error = %e, "cannot encode a packet");
        }
    }

    /// Ends the connection: the MQTT 5 DISCONNECT the server owes, a
    /// bounded flush, the session detached or ended, the will.
    async fn close(mut self: Box<Self>, ending: Ending) {
        if self.group.as_ref().is_some_and(|g| g.is_active()) {
            let _ = self.submit(Batch::new()).await;
        }
        if !self.pending.is_empty() {
            self.settle_stored().await;
        }
        if !self.track.sent.is_empty() {
            // The detached session's flows have their records: a restart
            // resends them with DUP [MQTT-4.4.0-1].
            self.record_sent(None);
        }
        if !self.out.is_empty() {
            let _ = self.submit(Batch::new()).await;
        }
        let now = Instant::now();
        if self.session_expiry > 0 && self.owes_backlog() {
            // Retained QoS 1/2 messages still owed to new subscriptions are
            // messages pending transmission, part of the session state that
            // outlives the connection (MQTT 5.0 §4.1, 3.1.1 §4.1): the
            // session queues them for the next connection. QoS 0 ones go.
            let owed: Vec<Delivery> = self
                .backlog
                .take()
                .into_iter()
                .filter(|d| d.qos > QoS::AtMostOnce)
                .collect();
            for d in owed {
                self.deliver(now, d).await;
            }
        }
        if let Some((code, why)) = ending.server_disconnect() {
            let reason_string = why.map(|w| {
                // Keep the string small; it is informative only.
                let w = if w.len() > 200 {
                    w.get(..200).unwrap_or(w)
                } else {
                    w
                };
                ByteStr::from(w)
            });
            let d = Disconnect {
                reason_code: code,
                properties: DisconnectProperties {
                    reason_string,
                    ..DisconnectProperties::default()
                },
            };
            // A closed session (after its own error) has queued its own.
            let _ = self.session.disconnect(now, d);
        }
        let Self {
            broker,
            mut writer,
            mut session,
            version,
            info,
            shared,
            handle,
            chain,
            will,
            session_expiry,
            persistent,
            track,
            ..
        } = *self;
        // What is left to send goes into the write buffer; the session is
        // detached before the (bounded) flush, so a slow socket does not
        // delay a takeover or leave the session looking online.
        while let Some(p) = session.poll_transmit() {
            if let Err(e) = writer.queue(&p, version) {
                tracing::error!(error = %e, "cannot encode a packet");
            }
        }
        let state = session.into_state();
        let taken_over = ending == Ending::TakenOver;
        let will_now = broker.detach(Detach {
            session: &handle,
            conn: &shared,
            state,
            will: will
                .filter(|_| ending.publishes_will(broker.config().wills_on_shutdown))
                .map(|w| *w),
            shutdown: ending == Ending::Shutdown,
            session_expiry,
            taken_over,
            track: persistent.then(|| track.into_inner()),
            protocol: version,
        });
        let _ = tokio::time::timeout(CLOSE_FLUSH, writer.shutdown()).await;
        drop(writer);
        chain.emit(EventKind::Lifecycle, || {
            Event::Disconnected(&info, ending.reason())
        });
        tracing::debug!(reason = ?ending.reason(), "connection closed");
        if let Some(w) = will_now {
            broker.publish_will(&info, w).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

    use super::{Conn, Transport, serve};
    use crate::broker::{Broker, BrokerConfig};

    /// The connection task's future is what an idle connection costs
    /// besides its buffers and session: it must stay small (the handshake
    /// and close futures are boxed, the hook paths too).
    #[test]
    fn an_idle_connection_task_stays_small() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (signal, shutdown) = tokio::sync::watch::channel(false);
        let broker =
            Broker::new(BrokerConfig::default(), runtime.handle().clone(), shutdown).unwrap();
        let (near, far) = tokio::io::duplex(64);
        let task = serve(
            broker.clone(),
            broker.enter_task(),
            tokio::io::split(near),
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            (Transport::Tcp, None),
        );
        // Tokio's task cell is this future plus 112 bytes (header 32,
        // scheduler and task id 16, stage tag 8, trailer 48), rounded up to
        // 128: at most 272 bytes keeps an idle task at 384. No timer is in
        // it: the broker's sweep wakes the connection when it is due.
        let size = std::mem::size_of_val(&task);
        assert!(size <= 272, "the connection future is {size} bytes");
        let conn = std::mem::size_of::<Conn<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>>();
        assert!(conn <= 512, "a connection's state is {conn} bytes");
        drop((task, far, signal));
    }
}
