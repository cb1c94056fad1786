//! The connection task: the only code that touches a client's socket and
//! its sans-IO [`Session`].
//!
//! One `tokio::select!` loop over: the context's shutdown signal, commands
//! from the application, and the link's I/O (socket reads, socket writes
//! when the write buffer is not empty, the session's timer, a TCP connect
//! in progress, or the backoff timer before a reconnection).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::ByteStr;
use crate::Ctx;
use crate::codec::{
    AckProperties, ConnAck, Connect, Disconnect, Packet, PacketId, Publish, ReasonCode,
    SubscribeProperties, SubscriptionOptions, UnsubscribeProperties,
};
use crate::net::{NetError, PacketReader, PacketWriter};
use crate::session::{
    AckMode, Event, IncomingQos2, Outgoing, Session, SessionConfig, SessionState, Ticket,
};
use crate::topic::TopicFilter;

use super::error::{ClientError, CloseReason};
use super::message::{PublishOutcome, SubscribeOutcome, UnsubscribeOutcome};
use super::pending::Resolver;
use super::{CloseInfo, ConnEvent, ConnectInfo, PublishResolver, ReconnectInfo, Shared, Status};

/// Packets decoded from the read buffer in one go before the loop looks at
/// its other branches again.
const READ_BATCH: usize = 64;
/// Commands taken in one go.
const COMMAND_BATCH: usize = 256;
/// While more than this many bytes wait in the write buffer, no new
/// commands are taken: publishes then wait in the send queue, which the
/// application sees filling up (backpressure from a slow socket).
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Filters per SUBSCRIBE when subscriptions are made again.
const RESUBSCRIBE_CHUNK: usize = 64;

/// What the application asks of the connection task.
pub(crate) enum Command {
    Publish {
        publish: Publish,
        done: PublishResolver,
    },
    Subscribe {
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: SubscribeProperties,
        done: Resolver<SubscribeOutcome>,
    },
    Unsubscribe {
        filters: Vec<TopicFilter>,
        properties: UnsubscribeProperties,
        done: Resolver<UnsubscribeOutcome>,
    },
    Ping {
        done: Resolver<Duration>,
        sent: Instant,
    },
    Ack {
        epoch: u64,
        packet_id: PacketId,
        reason_code: ReasonCode,
        properties: AckProperties,
    },
    Close {
        done: Resolver<()>,
    },
    Shutdown {
        done: Resolver<()>,
    },
    /// The last `Conn` handle was dropped.
    Dropped,
}

impl Command {
    /// Completes a command that arrives after the client closed: close and
    /// shutdown succeed (there is nothing left to do), the rest fail with
    /// [`ClientError::Closed`].
    pub(crate) fn reject(self, reason: &CloseReason) {
        let error = || ClientError::Closed(reason.clone());
        match self {
            Self::Publish { done, .. } => done.resolver.resolve(Err(error())),
            Self::Subscribe { done, .. } => done.resolve(Err(error())),
            Self::Unsubscribe { done, .. } => done.resolve(Err(error())),
            Self::Ping { done, .. } => done.resolve(Err(error())),
            Self::Close { done } | Self::Shutdown { done } => done.resolve(Ok(())),
            Self::Ack { .. } | Self::Dropped => {}
        }
    }
}

/// Starts the connection task; `first` completes at the first CONNACK.
pub(super) fn spawn(
    ctx: &Ctx,
    shared: Arc<Shared>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    first: Resolver<ConnectInfo>,
) {
    let span = tracing::debug_span!(
        "mqtt_client",
        client_id = %shared.opts.client_id,
        peer = %shared.opts.addr(),
    );
    let config = session_config(&shared.opts);
    let driver = Driver {
        config,
        cmd_rx,
        shutdown: ctx.shutdown_signal(),
        link: Link::Down {
            state: initial_state(&shared.opts),
            retry_at: Some(Instant::now()),
        },
        first: Some(first),
        publishes: BTreeMap::new(),
        unsent: VecDeque::new(),
        subscribes: HashMap::new(),
        unsubscribes: HashMap::new(),
        pings: Vec::new(),
        subscriptions: Vec::new(),
        restoring: None,
        attempt: 0,
        taken: 0,
        queue_len: 0,
        assigned_client_id: None,
        finished: false,
        shared,
    };
    ctx.spawn(driver.run().instrument(span));
}

/// The session state a client starts with: empty, but with a client store
/// the incoming QoS 2 packet ids its application took in an earlier run and
/// whose PUBREL had not come, awaiting it, so the server's resends are not
/// delivered again [MQTT-4.3.3-10].
fn initial_state(opts: &super::ConnectOptions) -> SessionState {
    let empty = || SessionState::new(opts.send_queue_limit);
    let Some(store) = &opts.store else {
        return empty();
    };
    let key = crate::store::SessionKey::client(opts.client_id.clone());
    let incoming = match store.incoming(&key) {
        Ok(i) if !i.is_empty() => i,
        Ok(_) => return empty(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the client's store");
            return empty();
        }
    };
    let mut snapshot = empty().snapshot();
    snapshot.incoming = incoming
        .iter()
        .map(|r| (r.packet_id, IncomingQos2::AwaitingRelease))
        .collect();
    SessionState::restore(snapshot).unwrap_or_else(|_| empty())
}

/// Applies `ops` to the client's store, if it has one (durable when this
/// returns; the connection task waits for it, which only clients with a
/// store and incoming QoS 2 messages pay).
fn store_apply(opts: &super::ConnectOptions, ops: &[crate::store::Op]) {
    if let Some(store) = &opts.store
        && let Err(e) = store.apply(ops)
    {
        tracing::error!(error = %e, "cannot update the client's store");
    }
}

/// The session configuration the options ask for. The client always uses
/// manual acknowledgement in the session: a QoS 1/2 message is acknowledged
/// when the application takes it (or acks it).
fn session_config(opts: &super::ConnectOptions) -> SessionConfig {
    let mut b = SessionConfig::builder()
        .receive_maximum(opts.receive_maximum.unwrap_or(u16::MAX))
        .topic_alias_maximum(opts.topic_alias_maximum)
        .outgoing_topic_aliases(opts.outgoing_topic_aliases)
        .max_inflight(opts.max_inflight)
        .ack_mode(AckMode::Manual);
    if let Some(n) = opts.maximum_packet_size {
        b = b.maximum_packet_size(n);
    }
    if let Some(t) = opts.ping_timeout {
        b = b.ping_timeout(t);
    }
    // The options were checked: every value is in range.
    b.build().unwrap_or_default()
}

/// The read half of a transport. Boxed so that other transports
/// (WebSocket) can plug in beside TCP.
type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a transport.
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;
/// An open transport: its two halves and the socket's number
/// ([`crate::broker::hooks::socket_number`]).
type Opened = (BoxRead, BoxWrite, Option<i64>);
type ConnectFuture = Pin<Box<dyn Future<Output = std::io::Result<Opened>> + Send>>;

/// Opens a TCP connection with TCP_NODELAY on.
async fn connect_tcp(host: String, port: u16) -> std::io::Result<Opened> {
    let stream = TcpStream::connect((host.as_str(), port)).await?;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
    let socket = crate::broker::hooks::socket_number(&stream);
    let (r, w) = stream.into_split();
    Ok((Box::new(r), Box::new(w), socket))
}

/// Opens a TCP connection and performs the WebSocket handshake to `url`
/// (subprotocol `mqtt` [MQTT-6.0.0-4]).
async fn connect_ws(host: String, port: u16, url: String) -> std::io::Result<Opened> {
    let stream = TcpStream::connect((host.as_str(), port)).await?;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
    let socket = crate::broker::hooks::socket_number(&stream);
    let ws = crate::net::ws::connect(stream, &url).await?;
    let (r, w) = tokio::io::split(ws);
    Ok((Box::new(r), Box::new(w), socket))
}

/// The network side of the client.
enum Link {
    /// No connection; `retry_at` is when the next attempt starts.
    Down {
        state: SessionState,
        retry_at: Option<Instant>,
    },
    /// A TCP connection is being made.
    Connecting {
        state: SessionState,
        fut: ConnectFuture,
        deadline: Instant,
    },
    /// A TCP connection with a session on it; CONNACK received once
    /// `session.is_connected()`.
    Up(Box<Up>),
    /// Only while moving between variants.
    Gone,
}

struct Up {
    session: Session,
    reader: PacketReader<BoxRead>,
    writer: PacketWriter<BoxWrite>,
    /// The CONNACK deadline, until CONNACK has come.
    connack_deadline: Option<Instant>,
    /// CONNACK with success received (the session may have closed since).
    connected: bool,
    /// This connection's number (see `Shared::epoch`).
    epoch: u64,
    /// The socket's number, told once connected.
    socket: Option<i64>,
}

/// What the link's I/O produced.
enum IoEvent {
    Retry,
    TcpConnected(std::io::Result<Opened>),
    ConnectTimeout,
    Packet(Box<Result<Option<Packet>, NetError>>),
    Wrote(Result<(), NetError>),
    Timer,
}

/// Waits for the link's next I/O event. Cancel-safe: every branch is.
async fn next_io(link: &mut Link) -> IoEvent {
    match link {
        Link::Down {
            retry_at: Some(at), ..
        } => {
            tokio::time::sleep_until((*at).into()).await;
            IoEvent::Retry
        }
        Link::Down { retry_at: None, .. } | Link::Gone => std::future::pending().await,
        Link::Connecting { fut, deadline, .. } => {
            tokio::select! {
                r = fut.as_mut() => IoEvent::TcpConnected(r),
                () = tokio::time::sleep_until((*deadline).into()) => IoEvent::ConnectTimeout,
            }
        }
        Link::Up(up) => {
            let deadline = match (up.connack_deadline, up.session.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Up { reader, writer, .. } = &mut **up;
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = reader.read() => IoEvent::Packet(Box::new(r)),
                r = writer.write_some(), if writer.pending() > 0 => IoEvent::Wrote(r),
                () = timer => IoEvent::Timer,
            }
        }
    }
}

/// A SUBSCRIBE waiting for its SUBACK.
struct SubRequest {
    filters: Vec<(TopicFilter, SubscriptionOptions)>,
    properties: SubscribeProperties,
    /// `None` for a subscription made again after a reconnection.
    done: Option<Resolver<SubscribeOutcome>>,
}

/// A subscription to make again when the server has no session.
struct Remembered {
    filter: TopicFilter,
    options: SubscriptionOptions,
    properties: SubscribeProperties,
}

/// How an attempt to connect failed, or why a connection ended.
enum Loss {
    /// Before CONNACK: the attempt failed.
    Attempt(ClientError),
    /// After CONNACK.
    Connection(CloseReason),
}

struct Driver {
    shared: Arc<Shared>,
    config: SessionConfig,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    shutdown: watch::Receiver<bool>,
    link: Link,
    /// Completes at the first CONNACK.
    first: Option<Resolver<ConnectInfo>>,
    /// Publishes awaiting their outcome, by ticket.
    publishes: BTreeMap<Ticket, PublishResolver>,
    /// Tickets still in the session's queue (not yet handed to the socket),
    /// in order.
    unsent: VecDeque<Ticket>,
    subscribes: HashMap<PacketId, SubRequest>,
    unsubscribes: HashMap<PacketId, (usize, Vec<TopicFilter>, Resolver<UnsubscribeOutcome>)>,
    pings: Vec<(Instant, Resolver<Duration>)>,
    /// Granted subscriptions, to make again when the server lost the session.
    subscriptions: Vec<Remembered>,
    /// After a reconnection: SUBACKs still awaited for subscriptions made
    /// again, and how many there were.
    restoring: Option<(usize, usize, ConnectInfo)>,
    /// Failed attempts since the last successful CONNACK.
    attempt: u32,
    /// Publish commands taken since the send queue was last accounted.
    taken: usize,
    /// The session queue's length at the last accounting.
    queue_len: usize,
    /// An MQTT 5 Assigned Client Identifier, reused on reconnection.
    assigned_client_id: Option<String>,
    finished: bool,
}

impl Driver {
    async fn run(mut self) {
        loop {
            if self.finished {
                return;
            }
            let exit = self.shutdown.has_changed().is_err() || *self.shutdown.borrow();
            if exit {
                self.close_gracefully(CloseReason::ContextExit, None).await;
                continue;
            }
            let mut batch = Vec::new();
            let backlogged =
                matches!(&self.link, Link::Up(up) if up.writer.pending() > WRITE_HIGH_WATER);
            tokio::select! {
                r = self.shutdown.changed() => {
                    if r.is_err() || *self.shutdown.borrow() {
                        self.close_gracefully(CloseReason::ContextExit, None).await;
                    }
                }
                n = self.cmd_rx.recv_many(&mut batch, COMMAND_BATCH), if !backlogged => {
                    if n == 0 {
                        // Every sender is gone (cannot happen while `Shared`
                        // lives, which this task holds).
                        self.close_gracefully(CloseReason::Dropped, None).await;
                    }
                    for cmd in batch {
                        if self.finished {
                            let reason = self.shared.lock_status().close_reason.clone();
                            cmd.reject(&reason.unwrap_or(CloseReason::Dropped));
                        } else {
                            self.command(cmd).await;
                        }
                    }
                }
                ev = next_io(&mut self.link) => self.io(ev),
            }
            self.after_step();
        }
    }

    // ----- commands -----

    async fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Publish { publish, done } => {
                self.taken += 1;
                let result = match &mut self.link {
                    Link::Up(up) => up.session.publish(now, publish),
                    Link::Down { state, .. } | Link::Connecting { state, .. } => {
                        state.enqueue(now, publish)
                    }
                    Link::Gone => return,
                };
                match result {
                    Ok(ticket) => {
                        self.publishes.insert(ticket, done);
                        self.unsent.push_back(ticket);
                    }
                    Err(e) => done.resolver.resolve(Err(e.into())),
                }
            }
            Command::Subscribe {
                filters,
                properties,
                done,
            } => {
                let Some(up) = self.connected_mut() else {
                    return done.resolve(Err(ClientError::NotConnected));
                };
                match up
                    .session
                    .subscribe(now, filters.clone(), properties.clone())
                {
                    Ok(id) => {
                        self.subscribes.insert(
                            id,
                            SubRequest {
                                filters,
                                properties,
                                done: Some(done),
                            },
                        );
                    }
                    Err(e) => done.resolve(Err(e.into())),
                }
            }
            Command::Unsubscribe {
                filters,
                properties,
                done,
            } => {
                let Some(up) = self.connected_mut() else {
                    return done.resolve(Err(ClientError::NotConnected));
                };
                let n = filters.len();
                match up.session.unsubscribe(now, filters.clone(), properties) {
                    Ok(id) => {
                        self.unsubscribes.insert(id, (n, filters, done));
                    }
                    Err(e) => done.resolve(Err(e.into())),
                }
            }
            Command::Ping { done, sent } => {
                let Some(up) = self.connected_mut() else {
                    return done.resolve(Err(ClientError::NotConnected));
                };
                match up.session.ping(now) {
                    Ok(()) => self.pings.push((sent, done)),
                    Err(e) => done.resolve(Err(e.into())),
                }
            }
            Command::Ack {
                epoch,
                packet_id,
                reason_code,
                properties,
            } => {
                if let Link::Up(up) = &mut self.link
                    && up.epoch == epoch
                {
                    if let Err(e) = up.session.ack_with(now, packet_id, reason_code, properties) {
                        tracing::debug!("acknowledgement of {packet_id} ignored: {e}");
                    }
                    self.shared.recv.forget_taken(epoch, packet_id);
                }
            }
            Command::Close { done } => {
                self.close_gracefully(CloseReason::Closed, Some(done)).await;
            }
            Command::Shutdown { done } => {
                // Dropping the socket without DISCONNECT: the server
                // publishes the will [MQTT-3.1.2-8].
                self.link = Link::Gone;
                self.finish(CloseReason::Shutdown);
                done.resolve(Ok(()));
            }
            Command::Dropped => self.close_gracefully(CloseReason::Dropped, None).await,
        }
    }

    fn connected_mut(&mut self) -> Option<&mut Up> {
        match &mut self.link {
            Link::Up(up) if up.session.is_connected() => Some(up),
            _ => None,
        }
    }

    /// Sends DISCONNECT if connected, flushes within the connect timeout,
    /// closes the socket and finishes.
    async fn close_gracefully(&mut self, reason: CloseReason, done: Option<Resolver<()>>) {
        if let Link::Up(up) = &mut self.link {
            let now = Instant::now();
            // [MQTT-3.14.4-1] DISCONNECT is the last packet the client sends.
            if up.session.disconnect(now, Disconnect::normal()).is_ok() {
                let version = up.session.protocol_version();
                while let Some(p) = up.session.poll_transmit() {
                    if let Err(e) = up.writer.queue(&p, version) {
                        tracing::error!("cannot encode {:?}: {e}", p.packet_type());
                    }
                }
                let limit = self.shared.opts.connect_timeout;
                match tokio::time::timeout(limit, up.writer.shutdown()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!("DISCONNECT not flushed: {e}"),
                    Err(_) => tracing::debug!("DISCONNECT not flushed within {limit:?}"),
                }
            }
        }
        self.link = Link::Gone;
        self.finish(reason);
        if let Some(done) = done {
            done.resolve(Ok(()));
        }
    }

    // ----- I/O -----

    fn io(&mut self, ev: IoEvent) {
        let now = Instant::now();
        match ev {
            IoEvent::Retry => self.start_connecting(now),
            IoEvent::TcpConnected(Ok(stream)) => self.tcp_connected(now, stream),
            IoEvent::TcpConnected(Err(e)) => self.lost(Loss::Attempt(ClientError::Connect {
                addr: self.shared.opts.addr(),
                message: e.to_string(),
            })),
            IoEvent::ConnectTimeout => self.lost(Loss::Attempt(ClientError::ConnectTimeout)),
            IoEvent::Packet(r) => self.read(now, *r),
            IoEvent::Wrote(Ok(())) => {}
            IoEvent::Wrote(Err(e)) => self.io_error(&e),
            IoEvent::Timer => self.timer(now),
        }
    }

    fn start_connecting(&mut self, now: Instant) {
        let Link::Down { state, .. } = std::mem::replace(&mut self.link, Link::Gone) else {
            return;
        };
        let (host, port) = (self.shared.opts.host.clone(), self.shared.opts.port);
        tracing::debug!(attempt = self.attempt, "connecting");
        let fut: ConnectFuture = match self.shared.opts.websocket_url() {
            Some(url) => Box::pin(connect_ws(host, port, url)),
            None => Box::pin(connect_tcp(host, port)),
        };
        self.link = Link::Connecting {
            state,
            fut,
            deadline: now + self.shared.opts.connect_timeout,
        };
    }

    fn tcp_connected(&mut self, now: Instant, (r, w, socket): Opened) {
        let Link::Connecting {
            state, deadline, ..
        } = std::mem::replace(&mut self.link, Link::Gone)
        else {
            return;
        };
        let opts = &self.shared.opts;
        let max_packet = opts.maximum_packet_size.unwrap_or(0);
        let mut reader = PacketReader::new(r, max_packet);
        reader.decoder_mut().set_version(opts.protocol);
        let epoch = self.shared.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let mut session = Session::client(self.config.clone(), state, now);
        let reconnecting = self.first.is_none();
        let clean_start = if reconnecting && opts.protocol.is_v5() && opts.session_persists() {
            // Resume the session the first connection opened.
            false
        } else {
            opts.clean_start
        };
        let client_id = match (&self.assigned_client_id, reconnecting) {
            (Some(id), true) => id.clone(),
            _ => opts.client_id.clone(),
        };
        let connect = Connect {
            protocol: opts.protocol,
            clean_start,
            keep_alive: opts.keep_alive,
            client_id: ByteStr::from(client_id),
            will: opts.will.clone(),
            username: opts.username.as_deref().map(ByteStr::from),
            password: opts.password.clone(),
            properties: opts.properties.clone(),
        };
        if let Err(e) = session.connect(now, connect) {
            tracing::error!("cannot start the session: {e}");
            self.link = Link::Down {
                state: session.into_state(),
                retry_at: None,
            };
            return self.lost(Loss::Attempt(e.into()));
        }
        self.link = Link::Up(Box::new(Up {
            session,
            reader,
            writer: PacketWriter::new(w),
            connack_deadline: Some(deadline),
            connected: false,
            epoch,
            socket,
        }));
    }

    fn read(&mut self, now: Instant, first: Result<Option<Packet>, NetError>) {
        let mut next = first;
        for round in 1..=READ_BATCH {
            let packet = match next {
                Ok(Some(p)) => p,
                Ok(None) => return self.lost(self.loss(CloseReason::PeerClosed)),
                Err(e) => return self.io_error(&e),
            };
            let Link::Up(up) = &mut self.link else {
                return;
            };
            if let Packet::ConnAck(c) = &packet
                && c.reason_code.is_success()
            {
                // A resumed session: the server sends the unacknowledged
                // messages again. The ones still waiting for the
                // application go, and the QoS 2 ones it took (whose PUBREC
                // the lost connection could not send) count as delivered
                // before the session resumes, so their resends are answered
                // with PUBREC and not delivered twice [MQTT-4.3.3-10].
                let taken = self.shared.recv.purge_before(up.epoch, c.session_present);
                if c.session_present {
                    for id in taken {
                        up.session.mark_delivered(id);
                    }
                } else if self.shared.opts.store.is_some() {
                    // No session: the stored QoS 2 ids go with it.
                    let key = crate::store::SessionKey::client(self.shared.opts.client_id.clone());
                    let ops: Vec<_> = up
                        .session
                        .state()
                        .incoming_qos2()
                        .map(|(packet_id, _)| crate::store::Op::RemoveIncoming {
                            key: key.clone(),
                            packet_id,
                        })
                        .collect();
                    store_apply(&self.shared.opts, &ops);
                }
            }
            if let Packet::PubRel(rel) = &packet
                && self.shared.opts.store.is_some()
            {
                // The id's record goes before the PUBCOMP frees the id for
                // a new message [MQTT-4.3.3-12]: a stale one would make a
                // restarted client swallow that message.
                let key = crate::store::SessionKey::client(self.shared.opts.client_id.clone());
                store_apply(
                    &self.shared.opts,
                    &[crate::store::Op::RemoveIncoming {
                        key,
                        packet_id: rel.packet_id,
                    }],
                );
            }
            if let Err(e) = up.session.handle_packet(now, packet) {
                tracing::warn!("the server broke the protocol: {e}");
                self.process_events(now);
                self.flush_transmit_best_effort();
                return self.lost(self.loss(CloseReason::ProtocolError(e.to_string())));
            }
            self.process_events(now);
            if self.finished {
                return;
            }
            if round == READ_BATCH {
                // Leave the rest buffered: the next `reader.read()` decodes
                // it before touching the socket. Decoding one more here would
                // lose it.
                return;
            }
            let Link::Up(up) = &mut self.link else {
                return;
            };
            next = match up.reader.try_read_buffered() {
                Ok(Some(p)) => Ok(Some(p)),
                Ok(None) => return,
                Err(e) => Err(e),
            };
        }
    }

    fn io_error(&mut self, e: &NetError) {
        let reason = match e {
            NetError::Io(io) => CloseReason::Io(io.to_string()),
            other => {
                tracing::warn!("the server sent an invalid packet: {other}");
                CloseReason::ProtocolError(other.to_string())
            }
        };
        self.lost(self.loss(reason));
    }

    /// A loss before CONNACK is a failed attempt.
    fn loss(&self, reason: CloseReason) -> Loss {
        match &self.link {
            Link::Up(up) if up.connected => Loss::Connection(reason),
            _ => Loss::Attempt(ClientError::Connect {
                addr: self.shared.opts.addr(),
                message: reason.to_string(),
            }),
        }
    }

    fn timer(&mut self, now: Instant) {
        let Link::Up(up) = &mut self.link else {
            return;
        };
        if up.connack_deadline.is_some_and(|d| now >= d) {
            return self.lost(Loss::Attempt(ClientError::ConnectTimeout));
        }
        if let Err(e) = up.session.handle_timeout(now) {
            tracing::debug!("{e}");
            self.lost(Loss::Connection(CloseReason::PingTimeout));
        }
    }

    /// Queues what the session has to send; the loop's write branch sends
    /// it.
    fn transmit(&mut self) {
        let Link::Up(up) = &mut self.link else {
            return;
        };
        let version = up.session.protocol_version();
        while let Some(p) = up.session.poll_transmit() {
            if let Err(e) = up.writer.queue(&p, version) {
                tracing::error!("cannot encode {:?}: {e}", p.packet_type());
            }
        }
    }

    /// Before closing after a protocol error: one try to send the
    /// DISCONNECT the session queued, without waiting.
    fn flush_transmit_best_effort(&mut self) {
        self.transmit();
        if let Link::Up(up) = &mut self.link {
            let write = std::pin::pin!(up.writer.write_some());
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let _ = write.poll(&mut cx);
        }
    }

    // ----- session events -----

    fn process_events(&mut self, now: Instant) {
        loop {
            let Link::Up(up) = &mut self.link else {
                return;
            };
            let Some(ev) = up.session.poll_event() else {
                return;
            };
            let epoch = up.epoch;
            match ev {
                Event::ConnAck(c) => self.connack(now, c),
                Event::Publish(p) => {
                    let message = super::Message { publish: p, epoch };
                    if !self.shared.recv.push_message(message) {
                        tracing::debug!("receive queue full: QoS 0 message dropped");
                    }
                }
                Event::PublishAcked {
                    ticket,
                    packet_id,
                    reason_code,
                    properties,
                } => {
                    if let Some(done) = self.publishes.remove(&ticket) {
                        done.set_packet_id(packet_id);
                        let result = if reason_code.is_success() {
                            Ok(PublishOutcome {
                                packet_id: Some(packet_id),
                                reason_code,
                                properties,
                            })
                        } else {
                            Err(ClientError::refused(
                                reason_code,
                                properties.reason_string.map(|s| s.to_string()),
                            ))
                        };
                        done.resolver.resolve(result);
                    }
                }
                Event::PublishDropped { ticket, reason, .. } => {
                    if let Some(done) = self.publishes.remove(&ticket) {
                        done.resolver.resolve(Err(ClientError::Dropped(reason)));
                    }
                }
                Event::SubAck(s) => self.suback(s),
                Event::UnsubAck(u) => {
                    if let Some((n, filters, done)) = self.unsubscribes.remove(&u.packet_id) {
                        self.subscriptions.retain(|r| !filters.contains(&r.filter));
                        let reason_codes = if u.reason_codes.is_empty() {
                            vec![ReasonCode::Success; n]
                        } else {
                            u.reason_codes
                        };
                        done.resolve(Ok(UnsubscribeOutcome {
                            reason_codes,
                            properties: u.properties,
                        }));
                    }
                }
                Event::Pong => {
                    for (sent, done) in self.pings.drain(..) {
                        done.resolve(Ok(now.saturating_duration_since(sent)));
                    }
                }
                Event::Disconnected(d) => {
                    let reason = CloseReason::ServerDisconnect {
                        reason_code: d.reason_code,
                        reason_string: d.properties.reason_string.map(|s| s.to_string()),
                    };
                    return self.lost(Loss::Connection(reason));
                }
                Event::UnexpectedAck {
                    packet_type,
                    packet_id,
                } => tracing::debug!("unexpected {packet_type:?} for {packet_id} ignored"),
                Event::Auth(_) => {
                    tracing::debug!("AUTH ignored: enhanced authentication is not supported");
                }
                Event::Connect(_) | Event::Subscribe(_) | Event::Unsubscribe(_) => {
                    tracing::error!("server-side event on a client session");
                }
            }
            if self.finished {
                return;
            }
        }
    }

    fn connack(&mut self, now: Instant, c: ConnAck) {
        if !c.reason_code.is_success() {
            let reason_string = c.properties.reason_string.as_ref().map(ToString::to_string);
            return self.lost(Loss::Attempt(ClientError::ConnectionRefused {
                reason_code: c.reason_code,
                code: c.reason_code.as_u8(),
                reason_string,
            }));
        }
        let Link::Up(up) = &mut self.link else {
            return;
        };
        up.connack_deadline = None;
        up.connected = true;
        let socket = up.socket;
        if let Some(id) = &c.properties.assigned_client_identifier {
            self.assigned_client_id = Some(id.to_string());
        }
        let client_id = self
            .assigned_client_id
            .clone()
            .unwrap_or_else(|| self.shared.opts.client_id.clone());
        let info = ConnectInfo {
            session_present: c.session_present,
            protocol: self.shared.opts.protocol,
            client_id,
            properties: c.properties,
        };
        self.attempt = 0;
        self.shared.update_status(|s| {
            s.status = Status::Connected;
            s.connect = Some(info.clone());
            s.socket = socket;
        });
        tracing::debug!(session_present = info.session_present, "connected");
        if let Some(first) = self.first.take() {
            first.resolve(Ok(info));
            return;
        }
        let resubscribe = if info.session_present {
            0
        } else {
            self.resubscribe(now)
        };
        if resubscribe == 0 {
            self.reconnected(info, 0);
        } else {
            self.restoring = Some((resubscribe, resubscribe, info));
        }
    }

    /// Makes the remembered subscriptions again; returns how many SUBSCRIBE
    /// packets went out.
    fn resubscribe(&mut self, now: Instant) -> usize {
        let Link::Up(up) = &mut self.link else {
            return 0;
        };
        let mut plain = Vec::new();
        let mut packets = Vec::new();
        for r in &self.subscriptions {
            if r.properties == SubscribeProperties::default() {
                plain.push((r.filter.clone(), r.options));
            } else {
                packets.push((vec![(r.filter.clone(), r.options)], r.properties.clone()));
            }
        }
        for chunk in plain.chunks(RESUBSCRIBE_CHUNK) {
            packets.push((chunk.to_vec(), SubscribeProperties::default()));
        }
        let mut sent = 0;
        for (filters, properties) in packets {
            match up
                .session
                .subscribe(now, filters.clone(), properties.clone())
            {
                Ok(id) => {
                    sent += 1;
                    self.subscribes.insert(
                        id,
                        SubRequest {
                            filters,
                            properties,
                            done: None,
                        },
                    );
                }
                Err(e) => tracing::warn!("cannot subscribe again: {e}"),
            }
        }
        sent
    }

    fn reconnected(&mut self, connect: ConnectInfo, resubscribed: usize) {
        let mut count = 0;
        self.shared.update_status(|s| {
            s.reconnects += 1;
            count = s.reconnects;
        });
        self.shared
            .recv
            .push_event(ConnEvent::Reconnected(Box::new(ReconnectInfo {
                connect,
                resubscribed,
                count,
            })));
    }

    fn suback(&mut self, s: crate::codec::SubAck) {
        let Some(req) = self.subscribes.remove(&s.packet_id) else {
            return;
        };
        for ((filter, options), code) in req.filters.iter().zip(&s.reason_codes) {
            if code.is_success() {
                self.subscriptions.retain(|r| r.filter != *filter);
                self.subscriptions.push(Remembered {
                    filter: filter.clone(),
                    options: *options,
                    properties: req.properties.clone(),
                });
            } else if req.done.is_none() {
                tracing::warn!("the server refused {filter} on resubscription: {code:?}");
            }
        }
        match req.done {
            Some(done) => done.resolve(Ok(SubscribeOutcome {
                reason_codes: s.reason_codes,
                properties: s.properties,
            })),
            None => {
                if let Some((left, total, info)) = self.restoring.take() {
                    if left <= 1 {
                        self.reconnected(info, total);
                    } else {
                        self.restoring = Some((left - 1, total, info));
                    }
                }
            }
        }
    }

    // ----- losing the connection -----

    /// A failed attempt or a lost connection: reconnect with backoff, or
    /// close.
    fn lost(&mut self, loss: Loss) {
        let now = Instant::now();
        let state = match std::mem::replace(&mut self.link, Link::Gone) {
            Link::Up(up) => up.session.into_state(),
            Link::Down { state, .. } | Link::Connecting { state, .. } => state,
            Link::Gone => SessionState::new(self.shared.opts.send_queue_limit),
        };
        self.link = Link::Down {
            state,
            retry_at: None,
        };
        self.shared.update_status(|s| s.socket = None);
        self.restoring = None;
        let reason = match &loss {
            Loss::Attempt(e) => CloseReason::Io(e.to_string()),
            Loss::Connection(r) => r.clone(),
        };
        for (_, req) in self.subscribes.drain() {
            if let Some(done) = req.done {
                done.resolve(Err(ClientError::ConnectionLost(reason.clone())));
            }
        }
        for (_, (_, _, done)) in self.unsubscribes.drain() {
            done.resolve(Err(ClientError::ConnectionLost(reason.clone())));
        }
        for (_, done) in self.pings.drain(..) {
            done.resolve(Err(ClientError::ConnectionLost(reason.clone())));
        }

        if let Some(first) = self.first.take() {
            // The first connection failed: no reconnection.
            let Loss::Attempt(e) = loss else {
                return;
            };
            tracing::debug!("connection failed: {e}");
            first.resolve(Err(e));
            let reason = CloseReason::Io("the first connection failed".into());
            return self.finish(reason);
        }
        let Some(reconnect) = self.shared.opts.reconnect.clone() else {
            return self.finish(reason);
        };
        match loss {
            Loss::Connection(reason) => {
                tracing::debug!("connection lost: {reason}");
                self.attempt = 0;
                if !self.shared.opts.session_persists() {
                    // In-flight messages will not be resumed.
                    self.fail_in_flight(&reason);
                }
                self.shared
                    .update_status(|s| s.status = Status::Reconnecting);
                self.shared.recv.push_event(ConnEvent::Closed(CloseInfo {
                    reason,
                    reconnecting: true,
                }));
            }
            Loss::Attempt(e) => {
                tracing::debug!("reconnection attempt failed: {e}");
                self.attempt = self.attempt.saturating_add(1);
                if reconnect.max_attempts > 0 && self.attempt >= reconnect.max_attempts {
                    return self.finish(CloseReason::ReconnectGaveUp);
                }
            }
        }
        let delay = reconnect.delay(self.attempt);
        if let Link::Down { retry_at, .. } = &mut self.link {
            *retry_at = Some(now + delay);
        }
    }

    /// Completes the handles of QoS 1/2 messages sent and not acknowledged.
    fn fail_in_flight(&mut self, reason: &CloseReason) {
        let Link::Down { state, .. } = &self.link else {
            return;
        };
        for o in state.outgoing() {
            let Some(done) = self.publishes.remove(&o.ticket()) else {
                continue;
            };
            match o {
                // PUBREC received: the server owns the message
                // [MQTT-4.3.3-8]; only the release is lost.
                Outgoing::Release { packet_id, .. } => done.resolver.resolve(Ok(PublishOutcome {
                    packet_id: Some(*packet_id),
                    reason_code: ReasonCode::Success,
                    properties: AckProperties::default(),
                })),
                Outgoing::Publish { .. } => done
                    .resolver
                    .resolve(Err(ClientError::ConnectionLost(reason.clone()))),
            }
        }
    }

    /// Closes for good: every pending operation completes with an error,
    /// the queues close, the close callback is told.
    fn finish(&mut self, reason: CloseReason) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.link = Link::Gone;
        // First, so that a command sent from now on completes with this
        // reason (`Shared::send_command`).
        self.shared.update_status(|s| {
            s.status = Status::Closed;
            s.close_reason = Some(reason.clone());
        });
        let error = if reason.is_local() {
            ClientError::Closed(reason.clone())
        } else {
            ClientError::ConnectionLost(reason.clone())
        };
        if let Some(first) = self.first.take() {
            first.resolve(Err(error.clone()));
        }
        for (_, done) in std::mem::take(&mut self.publishes) {
            done.resolver.resolve(Err(error.clone()));
        }
        for (_, req) in self.subscribes.drain() {
            if let Some(done) = req.done {
                done.resolve(Err(error.clone()));
            }
        }
        for (_, (_, _, done)) in self.unsubscribes.drain() {
            done.resolve(Err(error.clone()));
        }
        for (_, done) in self.pings.drain(..) {
            done.resolve(Err(error.clone()));
        }
        self.unsent.clear();
        self.shared.send.close(reason.clone());
        self.shared.send.release(usize::MAX);
        // Commands still queued complete now; later sends fail and
        // complete the same way (`Shared::send_command`).
        self.cmd_rx.close();
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            cmd.reject(&reason);
        }
        self.shared.recv.push_event(ConnEvent::Closed(CloseInfo {
            reason: reason.clone(),
            reconnecting: false,
        }));
        self.shared.recv.close(reason);
        tracing::debug!("closed");
    }

    // ----- bookkeeping after every step -----

    /// Sends what the session queued, and updates the send queue's count
    /// and the handles of messages that left the session's queue.
    fn after_step(&mut self) {
        if self.finished {
            return;
        }
        self.process_events(Instant::now());
        if self.finished {
            return;
        }
        self.transmit();
        let state = match &self.link {
            Link::Up(up) => up.session.state(),
            Link::Down { state, .. } | Link::Connecting { state, .. } => state,
            Link::Gone => return,
        };
        let queue_len = state.queue_len();
        let released = (self.taken + self.queue_len).saturating_sub(queue_len);
        self.taken = 0;
        self.queue_len = queue_len;
        let head = state.queued().next().map(|m| m.ticket);
        let mut sent_now = Vec::new();
        while let Some(&t) = self.unsent.front() {
            if head.is_some_and(|h| t >= h) {
                break;
            }
            self.unsent.pop_front();
            sent_now.push(t);
        }
        if !sent_now.is_empty() {
            let mut need_ids = 0usize;
            for t in &sent_now {
                match self.publishes.get(t) {
                    Some(p) if p.qos == crate::codec::QoS::AtMostOnce => {
                        if let Some(done) = self.publishes.remove(t) {
                            done.resolver.resolve(Ok(PublishOutcome {
                                packet_id: None,
                                reason_code: ReasonCode::Success,
                                properties: AckProperties::default(),
                            }));
                        }
                    }
                    Some(_) => need_ids += 1,
                    None => {}
                }
            }
            // The flows just sent are the latest in flight: walk back from
            // the end only until each has its packet id, so a large window
            // is not scanned at every step.
            sent_now.sort_unstable();
            let mut found = 0;
            for o in state.outgoing().rev() {
                if found == need_ids {
                    break;
                }
                if let (Outgoing::Publish { ticket, .. }, Some(id)) = (o, o.packet_id())
                    && sent_now.binary_search(ticket).is_ok()
                    && let Some(done) = self.publishes.get(ticket)
                {
                    done.set_packet_id(id);
                    found += 1;
                }
            }
        }
        self.shared.send.release(released);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The runtime dropped the task (context exit) before it finished:
        // complete everything.
        if !self.finished {
            self.finish(CloseReason::ContextExit);
        }
    }
}
