//! [`Session`]: the sans-IO protocol state machine of one network
//! connection, client or server side.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::{
    AckProperties, Auth, ConnAck, Connect, Disconnect, Packet, PacketId, PacketType,
    ProtocolVersion, PubAck, Publish, QoS, ReasonCode, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties,
};
use crate::topic::TopicFilter;

use super::alias::{AliasPlan, InboundAliases, OutboundAliases};
use super::connection::{Aliases, ConnectionState, PendingAck, PendingRequest};
use super::size::packet_size;
use super::state::{IncomingQos2, LazyDeque, Outgoing, QueuedMessage};
use super::{
    AckMode, DropReason, Event, PeerLimits, SessionConfig, SessionError, SessionState, Stats,
    Ticket,
};

/// Which end of the connection a [`Session`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sends CONNECT.
    Client,
    /// The end that answers with CONNACK.
    Server,
}

impl Role {
    /// The other end.
    pub const fn peer(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Client => "client",
            Self::Server => "server",
        })
    }
}

/// What happens when the keep-alive deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Server: the client has been silent too long.
    ClientSilence,
    /// Client: time to send PINGREQ.
    Ping,
    /// Client: the PINGRESP is overdue.
    PingResponse,
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Client: `connect` not called yet. Server: waiting for CONNECT.
    Idle,
    /// Client: CONNECT sent, waiting for CONNACK. Server: CONNECT received,
    /// waiting for the broker's `accept` or `reject`.
    Connecting,
    /// CONNACK with success sent (server) or received (client).
    Connected,
    /// Nothing more is sent or accepted.
    Closed,
}

/// The protocol state of one MQTT network connection, client or server
/// side, with the [`SessionState`] it carries.
///
/// Sans-IO: the I/O layer decodes packets and hands them to
/// [`handle_packet`](Self::handle_packet), sends what
/// [`poll_transmit`](Self::poll_transmit) returns, gives what
/// [`poll_event`](Self::poll_event) returns to the application or broker,
/// and calls [`handle_timeout`](Self::handle_timeout) once the instant from
/// [`poll_timeout`](Self::poll_timeout) has come. Every method that may act
/// on time takes `now`; nothing here reads a clock.
///
/// The QoS 1/2 handshakes, packet ids, flow control, topic aliases and
/// keep-alive are handled here for both roles; the application (client) or
/// broker (server) only sees [`Event`]s and answers the ones that need an
/// answer (CONNECT, SUBSCRIBE, UNSUBSCRIBE).
// Design: one type for both roles. The QoS machinery (`on_publish`, the ack
// handlers, `pump`, `resend_inflight`) is shared; only the packets each role
// may receive and the connection handshake differ.
#[derive(Debug)]
pub struct Session {
    role: Role,
    /// Shared: a broker gives every connection the same one (one pointer
    /// per connection instead of a 40-byte copy).
    config: Arc<SessionConfig>,
    phase: Phase,
    version: ProtocolVersion,
    state: SessionState,
    conn: ConnectionState,
    transmit: LazyDeque<Packet>,
    events: LazyDeque<Event>,
    /// Server: packets that arrived after CONNECT, before the broker
    /// answered it; handled by `accept`.
    held: LazyDeque<Packet>,
    stats: Stats,
}

impl Session {
    /// A client session that will carry `state` (an empty
    /// [`SessionState::default`] for a new session). Call
    /// [`connect`](Self::connect) next.
    pub fn client(
        config: impl Into<Arc<SessionConfig>>,
        state: SessionState,
        now: Instant,
    ) -> Self {
        Self::new(Role::Client, config.into(), state, now)
    }

    /// A server session for a network connection just accepted; it waits
    /// for CONNECT [MQTT-3.1.0-1]. The session state is supplied by
    /// [`accept`](Self::accept). A server gives every session the same
    /// `Arc`.
    pub fn server(config: impl Into<Arc<SessionConfig>>, now: Instant) -> Self {
        Self::new(Role::Server, config.into(), SessionState::default(), now)
    }

    fn new(role: Role, config: Arc<SessionConfig>, state: SessionState, now: Instant) -> Self {
        Self {
            role,
            config,
            phase: Phase::Idle,
            version: ProtocolVersion::V311,
            state,
            conn: ConnectionState::new(now),
            transmit: LazyDeque::new(),
            events: LazyDeque::new(),
            held: LazyDeque::new(),
            stats: Stats::default(),
        }
    }

    // ----- inspection -----

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The protocol level of the connection (3.1.1 until CONNECT is sent or
    /// received).
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.version
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// True once CONNACK with success was sent (server) or received
    /// (client), until the session closes.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// True when the server has received CONNECT and waits for the broker's
    /// [`accept`](Self::accept) or [`reject`](Self::reject). Packets that
    /// arrive meanwhile are held; the I/O layer may pause reading.
    pub fn is_awaiting_accept(&self) -> bool {
        self.role == Role::Server && self.phase == Phase::Connecting
    }

    /// True once the session has closed: after a DISCONNECT either way, a
    /// refused connection, or an error from
    /// [`handle_packet`](Self::handle_packet) or
    /// [`handle_timeout`](Self::handle_timeout). The I/O layer sends what is
    /// left in [`poll_transmit`](Self::poll_transmit), then closes the
    /// network connection.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The session state carried by this connection.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// Detaches the session state, to store it or attach it to the client's
    /// next connection.
    pub fn into_state(self) -> SessionState {
        self.state
    }

    /// The peer's limits on this connection.
    pub fn peer_limits(&self) -> PeerLimits {
        self.conn.peer
    }

    /// The keep-alive interval in force (zero when off). A server's Server
    /// Keep Alive replaces the client's value on both sides [MQTT-3.2.2-21],
    /// [MQTT-3.2.2-22].
    pub fn keep_alive(&self) -> Duration {
        self.conn.keep_alive()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// True when queues or tables of this session are empty but still hold
    /// memory from earlier packets: [`shrink_idle`](Self::shrink_idle)
    /// would give something back.
    pub fn holds_idle_memory(&self) -> bool {
        self.transmit.holds_empty()
            || self.events.holds_empty()
            || self.held.holds_empty()
            || self.conn.pending_acks.holds_empty()
            || self.state.holds_idle_memory()
    }

    /// Gives back the memory of every empty queue and table (a `VecDeque`
    /// keeps room for at least four packets after its first use, about
    /// 1 KB), so an idle connection costs only the session's fixed size.
    /// Nothing queued is dropped.
    ///
    /// The I/O layer calls it when the connection has gone quiet, not after
    /// every packet: a busy connection would allocate again at once.
    pub fn shrink_idle(&mut self) {
        self.transmit.release_empty();
        self.events.release_empty();
        self.held.release_empty();
        self.conn.pending_acks.release_empty();
        self.state.shrink_idle();
    }

    // ----- the sans-IO interface -----

    /// Handles one packet received from the peer at `now`.
    ///
    /// An error means the peer broke the protocol: the session has closed
    /// and queued an MQTT 5 DISCONNECT with the error's reason code where
    /// one is allowed [MQTT-4.13.1-1].
    pub fn handle_packet(&mut self, now: Instant, packet: Packet) -> Result<(), SessionError> {
        if self.phase == Phase::Closed {
            return Err(SessionError::Closed);
        }
        self.stats.packets_received += 1;
        self.conn.last_received = now;
        tracing::debug!(role = %self.role, packet = ?packet.packet_type(), "received");
        let result = match self.role {
            Role::Server => self.server_packet(now, packet),
            Role::Client => self.client_packet(now, packet),
        };
        result.map_err(|e| self.fail(now, e))
    }

    /// Acts on the keep-alive deadlines at `now`: a client sends PINGREQ
    /// when it has sent nothing for a keep-alive interval; an error means the
    /// peer stayed silent too long and the session has closed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        let Some((deadline, timer)) = self.deadline() else {
            return Ok(());
        };
        if now < deadline {
            return Ok(());
        }
        match timer {
            Timer::ClientSilence => {
                let timeout = self.conn.keep_alive();
                Err(self.fail(now, SessionError::KeepAliveTimeout(timeout)))
            }
            Timer::PingResponse => {
                let timeout = self.ping_timeout();
                Err(self.fail(now, SessionError::PingTimeout(timeout)))
            }
            Timer::Ping => {
                self.send(now, Packet::PingReq);
                self.conn.ping_sent_at = Some(now);
                Ok(())
            }
        }
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) must be
    /// called at, if any. Only a connected session has timers: the I/O
    /// layer bounds the CONNECT / CONNACK exchange itself.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline().map(|(at, _)| at)
    }

    /// The keep-alive deadline in force and what happens at it. A deadline
    /// too far to represent is no deadline.
    fn deadline(&self) -> Option<(Instant, Timer)> {
        let keep_alive = self.conn.keep_alive();
        if self.phase != Phase::Connected || keep_alive.is_zero() {
            return None;
        }
        match (self.role, self.conn.ping_sent_at) {
            // [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0): one and a half
            // keep-alive intervals.
            (Role::Server, _) => self
                .conn
                .last_received
                .checked_add(keep_alive * 3 / 2)
                .map(|at| (at, Timer::ClientSilence)),
            (Role::Client, Some(sent)) => sent
                .checked_add(self.ping_timeout())
                .map(|at| (at, Timer::PingResponse)),
            // [MQTT-3.1.2-23] (3.1.1) / [MQTT-3.1.2-20] (5.0)
            (Role::Client, None) => self
                .conn
                .last_sent
                .checked_add(keep_alive)
                .map(|at| (at, Timer::Ping)),
        }
    }

    /// The next packet to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        self.transmit.pop_front()
    }

    /// The next event for the application or broker.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The event [`poll_event`](Self::poll_event) would return next, left
    /// in place (to gather consecutive events of one kind).
    pub fn peek_event(&self) -> Option<&Event> {
        self.events.front()
    }

    // ----- client operations -----

    /// Client: sends CONNECT. The session writes this side's Receive
    /// Maximum, Maximum Packet Size and Topic Alias Maximum (from the
    /// [`SessionConfig`]) into its MQTT 5 properties. With Clean Start the
    /// session state is discarded first [MQTT-3.1.2-4] (5.0) /
    /// [MQTT-3.1.2-6] (3.1.1).
    pub fn connect(&mut self, now: Instant, mut connect: Connect) -> Result<(), SessionError> {
        self.require_role(Role::Client, "connect")?;
        if self.phase != Phase::Idle {
            return Err(SessionError::InvalidPhase(
                "connect() is called once per session",
            ));
        }
        self.version = connect.protocol;
        self.conn.keep_alive_secs = connect.keep_alive;
        self.conn.clean_start = connect.clean_start;
        if connect.clean_start {
            self.discard_session();
        }
        if self.version.is_v5() {
            let p = &mut connect.properties;
            p.receive_maximum = self.advertised_receive_maximum();
            p.maximum_packet_size = self.config.maximum_packet_size;
            p.topic_alias_maximum = self.advertised_topic_alias_maximum();
        }
        self.phase = Phase::Connecting;
        self.send(now, Packet::Connect(Box::new(connect)));
        Ok(())
    }

    /// Client: sends SUBSCRIBE with a fresh packet id and returns the id;
    /// [`Event::SubAck`] reports the result.
    pub fn subscribe(
        &mut self,
        now: Instant,
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: SubscribeProperties,
    ) -> Result<PacketId, SessionError> {
        self.require_role(Role::Client, "subscribe")?;
        self.require_open()?;
        if filters.is_empty() {
            return Err(SessionError::NoTopicFilters);
        }
        let packet_id = self.allocate_request_id()?;
        self.conn.pending_requests.insert(
            packet_id,
            PendingRequest {
                kind: PacketType::Subscribe,
                filters: filters.len(),
            },
        );
        self.send(
            now,
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            }),
        );
        Ok(packet_id)
    }

    /// Client: sends UNSUBSCRIBE with a fresh packet id and returns the id;
    /// [`Event::UnsubAck`] reports the result.
    pub fn unsubscribe(
        &mut self,
        now: Instant,
        filters: Vec<TopicFilter>,
        properties: UnsubscribeProperties,
    ) -> Result<PacketId, SessionError> {
        self.require_role(Role::Client, "unsubscribe")?;
        self.require_open()?;
        if filters.is_empty() {
            return Err(SessionError::NoTopicFilters);
        }
        let packet_id = self.allocate_request_id()?;
        self.conn.pending_requests.insert(
            packet_id,
            PendingRequest {
                kind: PacketType::Unsubscribe,
                filters: filters.len(),
            },
        );
        self.send(
            now,
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            }),
        );
        Ok(packet_id)
    }

    /// Client: sends PINGREQ (unless one is outstanding); the PINGRESP is
    /// reported as [`Event::Pong`].
    pub fn ping(&mut self, now: Instant) -> Result<(), SessionError> {
        self.require_role(Role::Client, "ping")?;
        self.require_connected()?;
        if self.conn.ping_sent_at.is_none() {
            self.send(now, Packet::PingReq);
            self.conn.ping_sent_at = Some(now);
        }
        self.conn.ping_requested = true;
        Ok(())
    }

    // ----- server operations -----

    /// Server: accepts the CONNECT reported by [`Event::Connect`], sending
    /// `connack` (which must carry a success reason code) and attaching
    /// `state`: the client's stored session when `connack.session_present`,
    /// else a new one [MQTT-3.1.2-4], [MQTT-3.1.2-5].
    ///
    /// The session writes this side's limits from the [`SessionConfig`]
    /// into the MQTT 5 properties; a Server Keep Alive set by the caller
    /// replaces the client's keep alive [MQTT-3.2.2-21]. Then the messages
    /// in flight are resent [MQTT-4.4.0-1] and packets held since the
    /// CONNECT are handled: an error from one of those closes the session
    /// as [`handle_packet`](Self::handle_packet) would.
    pub fn accept(
        &mut self,
        now: Instant,
        mut connack: ConnAck,
        state: SessionState,
    ) -> Result<(), SessionError> {
        self.require_role(Role::Server, "accept")?;
        if self.phase != Phase::Connecting {
            return Err(SessionError::InvalidPhase(
                "accept() answers a CONNECT not yet answered",
            ));
        }
        if !connack.reason_code.is_success() {
            return Err(SessionError::WrongReasonCode(connack.reason_code));
        }
        self.state = state;
        if self.version.is_v5() {
            let p = &mut connack.properties;
            p.receive_maximum = self.advertised_receive_maximum();
            p.maximum_packet_size = self.config.maximum_packet_size;
            p.topic_alias_maximum = self.advertised_topic_alias_maximum();
            if let Some(secs) = p.server_keep_alive {
                self.conn.keep_alive_secs = secs;
            }
        }
        self.start_connection(now);
        let session_present = connack.session_present;
        self.send(now, Packet::ConnAck(Box::new(connack)));
        self.attach(now, session_present);
        while let Some(packet) = self.held.pop_front() {
            if self.phase != Phase::Connected {
                break;
            }
            if let Err(e) = self.connected_packet(now, packet) {
                return Err(self.fail(now, e));
            }
        }
        Ok(())
    }

    /// Server: refuses the CONNECT with `connack` (a failure reason code),
    /// then closes [MQTT-3.2.2-7] (5.0) / [MQTT-3.2.2-5] (3.1.1). Session
    /// Present is cleared [MQTT-3.2.2-6] (5.0) / [MQTT-3.2.2-4] (3.1.1) and
    /// held packets are discarded [MQTT-3.1.4-6] (5.0).
    pub fn reject(&mut self, now: Instant, mut connack: ConnAck) -> Result<(), SessionError> {
        self.require_role(Role::Server, "reject")?;
        if self.phase != Phase::Connecting {
            return Err(SessionError::InvalidPhase(
                "reject() answers a CONNECT not yet answered",
            ));
        }
        if connack.reason_code.is_success() {
            return Err(SessionError::WrongReasonCode(connack.reason_code));
        }
        connack.session_present = false;
        self.held.clear();
        self.send(now, Packet::ConnAck(Box::new(connack)));
        self.phase = Phase::Closed;
        Ok(())
    }

    /// Server: answers an [`Event::Subscribe`] [MQTT-3.8.4-1].
    pub fn suback(&mut self, now: Instant, suback: SubAck) -> Result<(), SessionError> {
        self.require_role(Role::Server, "suback")?;
        self.require_connected()?;
        self.send(now, Packet::SubAck(suback));
        Ok(())
    }

    /// Server: answers an [`Event::Unsubscribe`] [MQTT-3.10.4-4].
    pub fn unsuback(&mut self, now: Instant, unsuback: UnsubAck) -> Result<(), SessionError> {
        self.require_role(Role::Server, "unsuback")?;
        self.require_connected()?;
        self.send(now, Packet::UnsubAck(unsuback));
        Ok(())
    }

    // ----- both roles -----

    /// Hands an application message to the session and returns its ticket.
    ///
    /// The session assigns the packet id, sends it as soon as the connection
    /// and the send window allow (in order: a message never overtakes one
    /// queued before it), and reports the outcome for QoS 1/2 as
    /// [`Event::PublishAcked`] or [`Event::PublishDropped`]. `packet_id`,
    /// `dup` and any topic alias in `publish` are ignored. Allowed at any
    /// time once the session state is attached (a client: always; a server:
    /// from [`accept`](Self::accept) on), even closed: the message stays in
    /// the session state.
    ///
    /// Fails with [`SessionError::QueueFull`] when it must wait and the queue
    /// is full (the drop is counted), [`SessionError::EmptyTopic`], or
    /// [`SessionError::InvalidPhase`] on a server before `accept` (queue for
    /// an offline client with [`SessionState::enqueue`] instead).
    pub fn publish(&mut self, now: Instant, publish: Publish) -> Result<Ticket, SessionError> {
        if self.role == Role::Server && matches!(self.phase, Phase::Idle | Phase::Connecting) {
            return Err(SessionError::InvalidPhase(
                "a server session has no session state before accept()",
            ));
        }
        let message = self.state.admit(now, publish)?;
        // Held-back resends go first [MQTT-4.6.0-1].
        let goes_now = self.phase == Phase::Connected
            && self.state.queue.is_empty()
            && self.conn.held_resends.is_none()
            && (message.publish.qos == QoS::AtMostOnce
                || self.state.outgoing.len() < self.send_window());
        if goes_now && !message.is_expired(now) {
            // Nothing queued before it and room in the window: straight to
            // the wire, as `pump` would send it, without a trip through the
            // queue.
            let packet_id = if message.publish.qos == QoS::AtMostOnce {
                Some(None)
            } else {
                let pending = &self.conn.pending_requests;
                self.state
                    .free_packet_id(|id| pending.contains_key(&id))
                    .map(Some)
            };
            if let Some(packet_id) = packet_id {
                let ticket = message.ticket;
                self.send_new(now, message, packet_id);
                return Ok(ticket);
            }
        }
        let ticket = self.state.push_queued(message, goes_now)?;
        self.pump(now);
        Ok(ticket)
    }

    /// Manual acknowledgement: acknowledges the incoming QoS 1/2 message
    /// with `packet_id` with success. See [`ack_with`](Self::ack_with).
    pub fn ack(&mut self, now: Instant, packet_id: PacketId) -> Result<(), SessionError> {
        self.ack_with(
            now,
            packet_id,
            ReasonCode::Success,
            AckProperties::default(),
        )
    }

    /// Manual acknowledgement with an MQTT 5 reason code and properties.
    ///
    /// PUBACK / PUBREC go out in the order the PUBLISH packets arrived
    /// [MQTT-4.6.0-2], [MQTT-4.6.0-3]: acknowledging a later message first
    /// holds its ack until the earlier ones are acknowledged. A PUBREC with a
    /// failure code ends the QoS 2 flow [MQTT-4.3.3-9]. After the connection
    /// closed, acknowledging a QoS 2 message still records it in the session
    /// state, so the peer's resent PUBLISH is answered with PUBREC and not
    /// delivered again.
    pub fn ack_with(
        &mut self,
        now: Instant,
        packet_id: PacketId,
        reason_code: ReasonCode,
        properties: AckProperties,
    ) -> Result<(), SessionError> {
        if self.config.ack_mode != AckMode::Manual {
            return Err(SessionError::NotManualAckMode);
        }
        let version = self.version;
        let entry = self
            .conn
            .pending_acks
            .iter_mut()
            .find(|a| a.packet_id == packet_id && a.response.is_none())
            .ok_or(SessionError::UnknownPacketId(packet_id))?;
        let packet_type = if entry.qos == QoS::AtLeastOnce {
            PacketType::PubAck
        } else {
            PacketType::PubRec
        };
        if version.is_v5() && !reason_code.is_allowed_in(packet_type) {
            return Err(SessionError::WrongReasonCode(reason_code));
        }
        entry.response = Some((reason_code, properties));
        self.flush_acks(now);
        Ok(())
    }

    /// Records that the application took the incoming QoS 2 message with
    /// `packet_id`, received on an earlier network connection whose PUBREC
    /// could not go out: call it before the CONNACK that resumes the
    /// session. The id is then kept as awaiting PUBREL, so the peer's resend
    /// is answered with PUBREC and not delivered again, until the PUBREL
    /// [MQTT-4.3.3-10]. Returns false when the state holds no such
    /// unacknowledged id.
    pub fn mark_delivered(&mut self, packet_id: PacketId) -> bool {
        match self.state.incoming.get_mut(packet_id) {
            Some(s @ IncomingQos2::AwaitingAck) => {
                *s = IncomingQos2::AwaitingRelease;
                true
            }
            _ => false,
        }
    }

    /// Sends an MQTT 5 AUTH packet (enhanced authentication, MQTT 5.0 §4.12).
    pub fn auth(&mut self, now: Instant, auth: Auth) -> Result<(), SessionError> {
        self.require_open()?;
        if !self.version.is_v5() {
            return Err(SessionError::InvalidPhase("AUTH exists in MQTT 5 only"));
        }
        self.send(now, Packet::Auth(Box::new(auth)));
        Ok(())
    }

    /// Ends the connection: sends DISCONNECT where the protocol allows it
    /// (a client always; a server at MQTT 5 after a successful CONNACK
    /// [MQTT-3.14.0-1]) and closes the session. The session state stays for
    /// [`into_state`](Self::into_state).
    pub fn disconnect(&mut self, now: Instant, disconnect: Disconnect) -> Result<(), SessionError> {
        match (self.role, self.phase) {
            (_, Phase::Closed) => return Err(SessionError::Closed),
            (Role::Client, Phase::Connecting | Phase::Connected) => {
                self.send(now, Packet::Disconnect(disconnect));
            }
            (Role::Server, Phase::Connected) if self.version.is_v5() => {
                self.send(now, Packet::Disconnect(disconnect));
            }
            _ => {}
        }
        self.phase = Phase::Closed;
        Ok(())
    }

    // ----- incoming packets -----

    fn server_packet(&mut self, now: Instant, packet: Packet) -> Result<(), SessionError> {
        match (self.phase, packet) {
            (Phase::Idle, Packet::Connect(connect)) => {
                self.on_connect(connect);
                Ok(())
            }
            (Phase::Idle, p) => Err(SessionError::FirstPacketNotConnect(p.packet_type())),
            (_, Packet::Connect(_)) => Err(SessionError::SecondConnect),
            (Phase::Connecting, Packet::Auth(auth)) if self.version.is_v5() => {
                self.events.push_back(Event::Auth(*auth));
                Ok(())
            }
            (Phase::Connecting, p) => {
                self.held.push_back(p);
                Ok(())
            }
            (_, p) => self.connected_packet(now, p),
        }
    }

    fn client_packet(&mut self, now: Instant, packet: Packet) -> Result<(), SessionError> {
        match (self.phase, packet) {
            (Phase::Idle, p) => Err(SessionError::UnexpectedPacket {
                packet: p.packet_type(),
                from: Role::Server,
            }),
            (Phase::Connecting, Packet::ConnAck(connack)) => self.on_connack(now, *connack),
            (Phase::Connecting, Packet::Auth(auth)) if self.version.is_v5() => {
                self.events.push_back(Event::Auth(*auth));
                Ok(())
            }
            (Phase::Connecting, p) => Err(SessionError::FirstPacketNotConnAck(p.packet_type())),
            (_, Packet::ConnAck(_)) => Err(SessionError::SecondConnAck),
            (_, p) => self.connected_packet(now, p),
        }
    }

    /// Server: records what the CONNECT says about the client and reports it.
    fn on_connect(&mut self, connect: Box<Connect>) {
        self.version = connect.protocol;
        self.conn.keep_alive_secs = connect.keep_alive;
        if self.version.is_v5() {
            let p = &connect.properties;
            let peer = &mut self.conn.peer;
            peer.receive_maximum = p.receive_maximum.filter(|&n| n > 0).unwrap_or(u16::MAX);
            peer.maximum_packet_size = p.maximum_packet_size;
            peer.topic_alias_maximum = p.topic_alias_maximum.unwrap_or(0);
        }
        self.phase = Phase::Connecting;
        self.events.push_back(Event::Connect(connect));
    }

    /// Client: the server's answer to CONNECT.
    fn on_connack(&mut self, now: Instant, connack: ConnAck) -> Result<(), SessionError> {
        if !connack.reason_code.is_success() {
            // The server closes the connection [MQTT-3.2.2-7] (5.0).
            self.phase = Phase::Closed;
            self.events.push_back(Event::ConnAck(connack));
            return Ok(());
        }
        if connack.session_present && self.conn.clean_start {
            return Err(SessionError::UnexpectedSessionPresent);
        }
        if self.version.is_v5() {
            let p = &connack.properties;
            let peer = &mut self.conn.peer;
            peer.receive_maximum = p.receive_maximum.filter(|&n| n > 0).unwrap_or(u16::MAX);
            peer.maximum_packet_size = p.maximum_packet_size;
            peer.topic_alias_maximum = p.topic_alias_maximum.unwrap_or(0);
            peer.maximum_qos = p.maximum_qos.unwrap_or(QoS::ExactlyOnce);
            peer.retain_available = p.retain_available.unwrap_or(true);
            if let Some(secs) = p.server_keep_alive {
                // [MQTT-3.2.2-21]
                self.conn.keep_alive_secs = secs;
            }
        }
        self.start_connection(now);
        let session_present = connack.session_present;
        self.events.push_back(Event::ConnAck(connack));
        self.attach(now, session_present);
        Ok(())
    }

    /// Packets after the CONNECT / CONNACK exchange, for either role.
    fn connected_packet(&mut self, now: Instant, packet: Packet) -> Result<(), SessionError> {
        let server = self.role == Role::Server;
        match packet {
            Packet::Publish(publish) => self.on_publish(now, publish)?,
            Packet::PubAck(ack) => self.on_puback(now, ack),
            Packet::PubRec(ack) => self.on_pubrec(now, ack),
            Packet::PubRel(ack) => self.on_pubrel(now, &ack)?,
            Packet::PubComp(ack) => self.on_pubcomp(now, ack),
            Packet::Subscribe(s) if server => self.events.push_back(Event::Subscribe(s)),
            Packet::Unsubscribe(u) if server => self.events.push_back(Event::Unsubscribe(u)),
            // [MQTT-3.12.4-1]
            Packet::PingReq if server => self.send(now, Packet::PingResp),
            Packet::SubAck(s) if !server => self.on_suback(s)?,
            Packet::UnsubAck(u) if !server => self.on_unsuback(u)?,
            Packet::PingResp if !server => {
                self.conn.ping_sent_at = None;
                if std::mem::take(&mut self.conn.ping_requested) {
                    self.events.push_back(Event::Pong);
                }
            }
            // Before MQTT 5 only the client sends DISCONNECT.
            Packet::Disconnect(d) if server || self.version.is_v5() => {
                self.phase = Phase::Closed;
                self.events.push_back(Event::Disconnected(d));
            }
            Packet::Auth(auth) if self.version.is_v5() => self.events.push_back(Event::Auth(*auth)),
            p => {
                return Err(SessionError::UnexpectedPacket {
                    packet: p.packet_type(),
                    from: self.role.peer(),
                });
            }
        }
        Ok(())
    }

    /// An incoming PUBLISH: resolve its alias, deliver it once, acknowledge.
    fn on_publish(&mut self, now: Instant, mut publish: Publish) -> Result<(), SessionError> {
        match self.conn.aliases.as_deref_mut() {
            Some(a) => a.inbound.resolve(&mut publish)?,
            // No alias allowed: one used is refused as before.
            None => InboundAliases::default().resolve(&mut publish)?,
        }
        let manual = self.config.ack_mode == AckMode::Manual;
        match publish.qos {
            QoS::AtMostOnce => self.events.push_back(Event::Publish(publish)),
            QoS::AtLeastOnce => {
                let packet_id = publish.packet_id.ok_or(SessionError::MissingPacketId)?;
                self.check_receive_maximum()?;
                self.events.push_back(Event::Publish(publish));
                if manual {
                    self.conn.pending_acks.push_back(PendingAck {
                        packet_id,
                        qos: QoS::AtLeastOnce,
                        response: None,
                    });
                    self.conn.pending_qos1 = self.conn.pending_qos1.saturating_add(1);
                } else {
                    // [MQTT-4.3.2-4]
                    self.send(now, Packet::PubAck(PubAck::new(packet_id)));
                }
            }
            QoS::ExactlyOnce => {
                let packet_id = publish.packet_id.ok_or(SessionError::MissingPacketId)?;
                match self.state.incoming.get(packet_id) {
                    // A repeat before PUBREL: PUBREC again, no second delivery
                    // [MQTT-4.3.3-10].
                    Some(IncomingQos2::AwaitingRelease) => {
                        self.send(now, Packet::PubRec(PubAck::new(packet_id)));
                    }
                    // The application has not acknowledged the first copy yet;
                    // its ack will answer this one too [MQTT-4.3.3-10].
                    Some(IncomingQos2::AwaitingAck) => {}
                    None => {
                        self.check_receive_maximum()?;
                        self.events.push_back(Event::Publish(publish));
                        if manual {
                            self.state
                                .incoming
                                .push_back(packet_id, IncomingQos2::AwaitingAck);
                            self.conn.pending_acks.push_back(PendingAck {
                                packet_id,
                                qos: QoS::ExactlyOnce,
                                response: None,
                            });
                        } else {
                            // [MQTT-4.3.3-8]
                            self.state
                                .incoming
                                .push_back(packet_id, IncomingQos2::AwaitingRelease);
                            self.send(now, Packet::PubRec(PubAck::new(packet_id)));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A new QoS 1/2 PUBLISH may not take the peer past this side's Receive
    /// Maximum [MQTT-3.3.4-7], [MQTT-3.3.4-9]. Only MQTT 5 advertises one.
    fn check_receive_maximum(&self) -> Result<(), SessionError> {
        let maximum = self.config.receive_maximum;
        let unacknowledged = self.conn.pending_qos1 as usize + self.state.incoming.len();
        if self.version.is_v5() && unacknowledged >= usize::from(maximum) {
            return Err(SessionError::ReceiveMaximumExceeded { maximum });
        }
        Ok(())
    }

    fn on_puback(&mut self, now: Instant, ack: PubAck) {
        let id = ack.packet_id;
        match self.state.outgoing.get(id) {
            Some(Outgoing::Publish { publish, .. }) if publish.qos == QoS::AtLeastOnce => {
                if let Some(entry) = self.state.outgoing.remove(id) {
                    self.acked(entry.ticket(), ack);
                }
                self.pump(now);
            }
            _ => self.unexpected_ack(PacketType::PubAck, id),
        }
    }

    fn on_pubrec(&mut self, now: Instant, ack: PubAck) {
        let id = ack.packet_id;
        match self.state.outgoing.get(id) {
            Some(Outgoing::Publish {
                publish, ticket, ..
            }) if publish.qos == QoS::ExactlyOnce => {
                let ticket = *ticket;
                if ack.reason_code.is_success() {
                    // The flow moves to the back: PUBRELs go (and are resent)
                    // in the order PUBRECs arrived [MQTT-4.6.0-4]; the
                    // PUBLISH is never sent again [MQTT-4.3.3-6].
                    self.state.outgoing.push_back(
                        id,
                        Outgoing::Release {
                            ticket,
                            packet_id: id,
                        },
                    );
                    // [MQTT-4.3.3-4]
                    self.send(now, Packet::PubRel(PubAck::new(id)));
                } else {
                    // A failing PUBREC ends the flow [MQTT-4.4.0-2].
                    self.state.outgoing.remove(id);
                    self.acked(ticket, ack);
                    self.pump(now);
                }
            }
            // A repeated PUBREC: the peer still waits for the PUBREL.
            Some(Outgoing::Release { .. }) => self.send(now, Packet::PubRel(PubAck::new(id))),
            _ => {
                self.unexpected_ack(PacketType::PubRec, id);
                if self.version.is_v5() {
                    let rel = PubAck {
                        packet_id: id,
                        reason_code: ReasonCode::PacketIdentifierNotFound,
                        properties: AckProperties::default(),
                    };
                    self.send(now, Packet::PubRel(rel));
                }
            }
        }
    }

    fn on_pubrel(&mut self, now: Instant, rel: &PubAck) -> Result<(), SessionError> {
        let id = rel.packet_id;
        let reason_code = match self.state.incoming.get(id) {
            Some(IncomingQos2::AwaitingRelease) => {
                // After PUBCOMP the id is free for a new message [MQTT-4.3.3-12].
                self.state.incoming.remove(id);
                ReasonCode::Success
            }
            Some(IncomingQos2::AwaitingAck) => return Err(SessionError::PubRelBeforePubRec(id)),
            None => {
                // Normal after a lost PUBCOMP; 0x92 tells an MQTT 5 peer so
                // (MQTT 5.0 §3.7.2.1).
                self.unexpected_ack(PacketType::PubRel, id);
                if self.version.is_v5() {
                    ReasonCode::PacketIdentifierNotFound
                } else {
                    ReasonCode::Success
                }
            }
        };
        // Every PUBREL is answered [MQTT-4.3.3-11] (5.0) / [MQTT-4.3.3-2] (3.1.1).
        let comp = PubAck {
            packet_id: id,
            reason_code,
            properties: AckProperties::default(),
        };
        self.send(now, Packet::PubComp(comp));
        Ok(())
    }

    fn on_pubcomp(&mut self, now: Instant, ack: PubAck) {
        let id = ack.packet_id;
        if let Some(Outgoing::Release { ticket, .. }) = self.state.outgoing.get(id) {
            let ticket = *ticket;
            self.state.outgoing.remove(id);
            self.acked(ticket, ack);
            self.pump(now);
        } else {
            self.unexpected_ack(PacketType::PubComp, id);
        }
    }

    fn on_suback(&mut self, suback: SubAck) -> Result<(), SessionError> {
        let id = suback.packet_id;
        match self.conn.pending_requests.get(&id) {
            Some(req) if req.kind == PacketType::Subscribe => {
                // One reason code per filter [MQTT-3.8.4-6] (5.0) /
                // [MQTT-3.8.4-5] (3.1.1).
                if suback.reason_codes.len() != req.filters {
                    return Err(SessionError::AckReasonCount {
                        packet: PacketType::SubAck,
                        packet_id: id,
                        got: suback.reason_codes.len(),
                        expected: req.filters,
                    });
                }
                self.conn.pending_requests.remove(&id);
                self.events.push_back(Event::SubAck(suback));
            }
            _ => self.unexpected_ack(PacketType::SubAck, id),
        }
        Ok(())
    }

    fn on_unsuback(&mut self, unsuback: UnsubAck) -> Result<(), SessionError> {
        let id = unsuback.packet_id;
        match self.conn.pending_requests.get(&id) {
            Some(req) if req.kind == PacketType::Unsubscribe => {
                // MQTT 5 only: one reason code per filter [MQTT-3.11.3-1].
                if self.version.is_v5() && unsuback.reason_codes.len() != req.filters {
                    return Err(SessionError::AckReasonCount {
                        packet: PacketType::UnsubAck,
                        packet_id: id,
                        got: unsuback.reason_codes.len(),
                        expected: req.filters,
                    });
                }
                self.conn.pending_requests.remove(&id);
                self.events.push_back(Event::UnsubAck(unsuback));
            }
            _ => self.unexpected_ack(PacketType::UnsubAck, id),
        }
        Ok(())
    }

    fn acked(&mut self, ticket: Ticket, ack: PubAck) {
        self.events.push_back(Event::PublishAcked {
            ticket,
            packet_id: ack.packet_id,
            reason_code: ack.reason_code,
            properties: ack.properties,
        });
    }

    fn unexpected_ack(&mut self, packet_type: PacketType, packet_id: PacketId) {
        // Normal after a reconnect, so not a warning.
        tracing::debug!(role = %self.role, ?packet_type, %packet_id, "ack matches no flow");
        self.stats.unexpected_acks += 1;
        self.events.push_back(Event::UnexpectedAck {
            packet_type,
            packet_id,
        });
    }

    // ----- outgoing messages -----

    /// The most outgoing QoS 1/2 flows in flight at once.
    fn send_window(&self) -> usize {
        usize::from(self.conn.peer.receive_maximum.min(self.config.max_inflight))
    }

    /// Moves queued messages onto the wire while the send window allows.
    fn pump(&mut self, now: Instant) {
        if self.phase != Phase::Connected {
            return;
        }
        let window = self.send_window();
        if self.conn.held_resends.is_some() {
            self.pump_held_resends(now, window);
            if self.conn.held_resends.is_some() {
                // New messages, QoS 0 too, wait behind the resends
                // [MQTT-4.6.0-1], [MQTT-4.6.0-6].
                return;
            }
        }
        while let Some(front) = self.state.queue.front() {
            let (expired, qos) = (front.is_expired(now), front.publish.qos);
            if expired {
                // Not started onward delivery in time [MQTT-3.3.2-5].
                if let Some(m) = self.state.queue.pop_front() {
                    self.drop_message(m.ticket, m.publish, DropReason::Expired);
                }
                continue;
            }
            let packet_id = if qos == QoS::AtMostOnce {
                None
            } else {
                // Send quota [MQTT-3.3.4-7], [MQTT-3.3.4-9], [MQTT-4.9.0-2].
                if self.state.outgoing.len() >= window {
                    break;
                }
                let pending = &self.conn.pending_requests;
                let Some(id) = self.state.free_packet_id(|id| pending.contains_key(&id)) else {
                    break;
                };
                Some(id)
            };
            let Some(message) = self.state.queue.pop_front() else {
                break;
            };
            self.send_new(now, message, packet_id);
        }
    }

    /// Sends a message for the first time with `packet_id` (QoS 1/2: a free
    /// id, marked used only if the message is sent), and records it in
    /// flight.
    fn send_new(&mut self, now: Instant, message: QueuedMessage, packet_id: Option<PacketId>) {
        let QueuedMessage {
            ticket,
            mut publish,
            queued_at,
        } = message;
        if self.role == Role::Client {
            // Only a server sends Subscription Identifiers [MQTT-3.3.4-6].
            if !publish.properties.subscription_identifiers.is_empty() {
                publish
                    .properties
                    .make_mut()
                    .subscription_identifiers
                    .clear();
            }
            if publish.qos > self.conn.peer.maximum_qos {
                return self.drop_message(ticket, publish, DropReason::QoSNotSupported);
            }
            if publish.retain && !self.conn.peer.retain_available {
                return self.drop_message(ticket, publish, DropReason::RetainNotSupported);
            }
        }
        publish.packet_id = packet_id;
        if packet_id.is_none() {
            // QoS 0: nothing stays in flight, so the message itself goes on
            // the wire, uncopied.
            match wire_publish_owned(&mut self.conn, self.version, now, publish, queued_at, false) {
                Ok(packet) => self.send(now, packet),
                // Discarded as if sent [MQTT-3.1.2-25] (5.0).
                Err(publish) => self.drop_message(ticket, publish, DropReason::PacketTooLarge),
            }
            return;
        }
        let Some(packet) = wire_publish(
            &mut self.conn,
            self.version,
            now,
            &publish,
            queued_at,
            false,
        ) else {
            // Discarded as if sent [MQTT-3.1.2-25] (5.0).
            return self.drop_message(ticket, publish, DropReason::PacketTooLarge);
        };
        if let Some(id) = packet_id {
            self.state.mark_packet_id_used(id);
            self.state.outgoing.push_back(
                id,
                Outgoing::Publish {
                    ticket,
                    publish,
                    queued_at,
                },
            );
        }
        self.send(now, packet);
    }

    /// Resends the flows in flight, in order, on a new connection
    /// [MQTT-4.4.0-1], [MQTT-4.6.0-1]: PUBLISH with DUP 1 [MQTT-3.3.1-1]
    /// for those awaiting PUBACK / PUBREC, PUBREL for those awaiting PUBCOMP.
    ///
    /// Every flow counts against the peer's Receive Maximum of this
    /// connection [MQTT-3.3.4-9]: a PUBREL (whose PUBLISH the peer already
    /// holds) goes at once, while PUBLISH packets go only while the window
    /// has room; the rest wait in order in `held_resends` and go, still
    /// with DUP, as acknowledgements free the window, before any new
    /// message ([`Self::pump`]).
    fn resend_inflight(&mut self, now: Instant) {
        let window = self.send_window();
        let ids: Vec<PacketId> = self.state.outgoing.ids().collect();
        let mut held = VecDeque::new();
        let mut active = 0usize;
        for id in ids {
            let is_release = matches!(self.state.outgoing.get(id), Some(Outgoing::Release { .. }));
            if is_release {
                active += 1;
                self.send(now, Packet::PubRel(PubAck::new(id)));
            } else if active < window && held.is_empty() {
                if self.resend_publish(now, id) {
                    active += 1;
                }
            } else {
                held.push_back(id);
            }
        }
        self.conn.held_resends = (!held.is_empty()).then(|| Box::new(held));
    }

    /// Resends the PUBLISH of the flow `id` with DUP; false when it is no
    /// longer in flight or was dropped as too large for this peer.
    fn resend_publish(&mut self, now: Instant, id: PacketId) -> bool {
        let packet = match self.state.outgoing.get(id) {
            Some(Outgoing::Publish {
                publish, queued_at, ..
            }) => wire_publish(&mut self.conn, self.version, now, publish, *queued_at, true),
            _ => return false,
        };
        if let Some(packet) = packet {
            self.send(now, packet);
            return true;
        }
        // Too large for this connection's peer [MQTT-3.1.2-25] (5.0).
        if let Some(Outgoing::Publish {
            ticket, publish, ..
        }) = self.state.outgoing.remove(id)
        {
            self.drop_message(ticket, publish, DropReason::PacketTooLarge);
        }
        false
    }

    /// Resends held-back flows while the window has room.
    fn pump_held_resends(&mut self, now: Instant, window: usize) {
        let Some(mut held) = self.conn.held_resends.take() else {
            return;
        };
        // Flows acknowledged (or ended) before their resend are skipped.
        held.retain(|&id| self.state.outgoing.contains(id));
        while let Some(&id) = held.front() {
            if self.state.outgoing.len() - held.len() >= window {
                break;
            }
            held.pop_front();
            self.resend_publish(now, id);
        }
        if !held.is_empty() {
            self.conn.held_resends = Some(held);
        }
    }

    fn drop_message(&mut self, ticket: Ticket, publish: Publish, reason: DropReason) {
        tracing::debug!(role = %self.role, topic = %publish.topic, ?reason, "message dropped");
        self.state.dropped += 1;
        self.events.push_back(Event::PublishDropped {
            ticket,
            publish,
            reason,
        });
    }

    /// Forgets the flows in flight both ways (clean start, or no session on
    /// the server [MQTT-3.2.2-5]). The queue stays: those messages were
    /// never sent.
    fn discard_session(&mut self) {
        for (packet_id, entry) in self.state.outgoing.take_all() {
            match entry {
                Outgoing::Publish {
                    ticket, publish, ..
                } => {
                    self.drop_message(ticket, publish, DropReason::SessionDiscarded);
                }
                // The peer took ownership with its PUBREC [MQTT-4.3.3-8];
                // only the id's release is lost.
                Outgoing::Release { ticket, .. } => self.acked(ticket, PubAck::new(packet_id)),
            }
        }
        self.state.incoming.clear();
    }

    // ----- connection lifecycle -----

    /// Per-connection state at CONNACK: aliases and deadlines.
    fn start_connection(&mut self, now: Instant) {
        let inbound = if self.version.is_v5() {
            self.config.topic_alias_maximum
        } else {
            0
        };
        let outbound = self
            .conn
            .peer
            .topic_alias_maximum
            .min(self.config.outgoing_topic_aliases);
        self.conn.aliases = (inbound > 0 || outbound > 0).then(|| {
            Box::new(Aliases {
                inbound: InboundAliases::new(inbound),
                outbound: OutboundAliases::new(outbound),
            })
        });
        self.conn.last_received = now;
        self.phase = Phase::Connected;
    }

    /// Attaches the session state to the new connection.
    fn attach(&mut self, now: Instant, session_present: bool) {
        if !session_present {
            self.discard_session();
        }
        // Messages the application never acknowledged were not taken over
        // [MQTT-4.3.3-8]: the peer resends them and they are delivered anew.
        self.state
            .incoming
            .retain(|s| *s == IncomingQos2::AwaitingRelease);
        self.resend_inflight(now);
        self.pump(now);
    }

    /// Closes the session after a fatal error, queueing an MQTT 5
    /// DISCONNECT where one is allowed [MQTT-3.14.0-1], [MQTT-4.13.1-1]. A
    /// client whose server stopped answering pings just closes: 0x8D is a
    /// server's reason code (MQTT 5.0 §3.14.2.1).
    fn fail(&mut self, now: Instant, error: SessionError) -> SessionError {
        if error.is_fatal() {
            tracing::warn!(role = %self.role, %error, "closing the connection");
            let silent = matches!(error, SessionError::PingTimeout(_));
            if self.phase == Phase::Connected && self.version.is_v5() && !silent {
                self.send(
                    now,
                    Packet::Disconnect(Disconnect::with_reason(error.reason_code())),
                );
            }
            self.phase = Phase::Closed;
        }
        error
    }

    // ----- sending -----

    /// Queues a packet for the I/O layer; packets other than PUBLISH lose
    /// optional properties that would take them over the peer's Maximum
    /// Packet Size.
    fn send(&mut self, now: Instant, mut packet: Packet) {
        if self.phase == Phase::Closed {
            return;
        }
        if !matches!(packet, Packet::Publish(_)) {
            self.fit_to_peer(&mut packet);
        }
        tracing::debug!(role = %self.role, packet = ?packet.packet_type(), "sending");
        self.conn.last_sent = now;
        self.stats.packets_sent += 1;
        self.transmit.push_back(packet);
    }

    /// Strips the Reason String, then the User Properties, while the packet
    /// exceeds the peer's Maximum Packet Size: [MQTT-3.2.2-19],
    /// [MQTT-3.2.2-20] (CONNACK), [MQTT-3.4.2-2], [MQTT-3.4.2-3] (PUBACK),
    /// [MQTT-3.5.2-2], [MQTT-3.5.2-3] (PUBREC), [MQTT-3.6.2-2],
    /// [MQTT-3.6.2-3] (PUBREL), [MQTT-3.7.2-2], [MQTT-3.7.2-3] (PUBCOMP),
    /// [MQTT-3.9.2-1], [MQTT-3.9.2-2] (SUBACK), [MQTT-3.11.2-1],
    /// [MQTT-3.11.2-2] (UNSUBACK), [MQTT-3.14.2-3], [MQTT-3.14.2-4]
    /// (DISCONNECT), [MQTT-3.15.2-2], [MQTT-3.15.2-3] (AUTH).
    fn fit_to_peer(&self, packet: &mut Packet) {
        if !self.version.is_v5() || self.conn.peer.maximum_packet_size.is_none() {
            return;
        }
        if !exceeds(self.conn.peer.maximum_packet_size, packet, self.version) {
            return;
        }
        if let Some((reason_string, _)) = optional_properties(packet) {
            *reason_string = None;
        }
        if !exceeds(self.conn.peer.maximum_packet_size, packet, self.version) {
            return;
        }
        if let Some((_, user_properties)) = optional_properties(packet) {
            user_properties.clear();
        }
    }

    /// Sends the manual acknowledgements that are due, in order of reception.
    fn flush_acks(&mut self, now: Instant) {
        while self
            .conn
            .pending_acks
            .front()
            .is_some_and(|a| a.response.is_some())
        {
            let Some(PendingAck {
                packet_id,
                qos,
                response: Some((reason_code, properties)),
            }) = self.conn.pending_acks.pop_front()
            else {
                break;
            };
            let ack = PubAck {
                packet_id,
                reason_code,
                properties,
            };
            if qos == QoS::AtLeastOnce {
                self.conn.pending_qos1 = self.conn.pending_qos1.saturating_sub(1);
                self.send(now, Packet::PubAck(ack));
            } else {
                if reason_code.is_success() {
                    if let Some(s) = self.state.incoming.get_mut(packet_id) {
                        *s = IncomingQos2::AwaitingRelease;
                    }
                } else {
                    // A failing PUBREC ends the flow: the id may carry a new
                    // message next [MQTT-4.3.3-9].
                    self.state.incoming.remove(packet_id);
                }
                self.send(now, Packet::PubRec(ack));
            }
        }
    }

    // ----- helpers -----

    fn ping_timeout(&self) -> Duration {
        self.config.ping_timeout.unwrap_or(self.conn.keep_alive())
    }

    fn advertised_receive_maximum(&self) -> Option<u16> {
        // Absent means 65535 (MQTT 5.0 §3.1.2.11.3).
        (self.config.receive_maximum != u16::MAX).then_some(self.config.receive_maximum)
    }

    fn advertised_topic_alias_maximum(&self) -> Option<u16> {
        (self.config.topic_alias_maximum > 0).then_some(self.config.topic_alias_maximum)
    }

    fn allocate_request_id(&mut self) -> Result<PacketId, SessionError> {
        let pending = &self.conn.pending_requests;
        self.state
            .allocate_packet_id(|id| pending.contains_key(&id))
            .ok_or(SessionError::PacketIdsExhausted)
    }

    fn require_role(&self, role: Role, operation: &'static str) -> Result<(), SessionError> {
        if self.role == role {
            Ok(())
        } else {
            Err(SessionError::WrongRole {
                operation,
                role: self.role,
            })
        }
    }

    fn require_open(&self) -> Result<(), SessionError> {
        match self.phase {
            Phase::Connecting | Phase::Connected => Ok(()),
            Phase::Idle => Err(SessionError::InvalidPhase(
                "the connection is not established",
            )),
            Phase::Closed => Err(SessionError::Closed),
        }
    }

    fn require_connected(&self) -> Result<(), SessionError> {
        match self.phase {
            Phase::Connected => Ok(()),
            Phase::Closed => Err(SessionError::Closed),
            Phase::Idle | Phase::Connecting => Err(SessionError::InvalidPhase(
                "the connection is not established",
            )),
        }
    }
}

/// The copy of a stored message that goes on the wire at `now`: DUP as
/// given, the Message Expiry Interval reduced by the time the message waited
/// [MQTT-3.3.2-6], a topic alias per the outbound policy. `None` when it
/// would exceed the peer's Maximum Packet Size; an alias is committed only
/// for a packet that is sent.
fn wire_publish(
    conn: &mut ConnectionState,
    version: ProtocolVersion,
    now: Instant,
    stored: &Publish,
    queued_at: Instant,
    dup: bool,
) -> Option<Packet> {
    wire_publish_owned(conn, version, now, stored.clone(), queued_at, dup).ok()
}

/// [`wire_publish`] for a message that is not kept (QoS 0): it becomes the
/// packet; given back unchanged but for DUP and the expiry when too large.
#[allow(clippy::result_large_err)] // `Ok` is as large: boxing `Err` would only add an allocation
fn wire_publish_owned(
    conn: &mut ConnectionState,
    version: ProtocolVersion,
    now: Instant,
    mut wire: Publish,
    queued_at: Instant,
    dup: bool,
) -> Result<Packet, Publish> {
    wire.dup = dup;
    if let Some(secs) = wire.properties.message_expiry_interval {
        let waited =
            u32::try_from(now.saturating_duration_since(queued_at).as_secs()).unwrap_or(u32::MAX);
        // At least 1: a flow already started is never expired [MQTT-4.3.3-7].
        wire.properties.make_mut().message_expiry_interval =
            Some(secs.saturating_sub(waited).max(1));
    }
    let plan = conn
        .aliases
        .as_deref()
        .map_or(AliasPlan::None, |a| a.outbound.plan(&wire.topic));
    // An alias in use replaces the topic on the wire: kept to give the
    // message back whole, or to commit a new alias.
    let topic = (plan != AliasPlan::None).then(|| wire.topic.clone());
    OutboundAliases::apply(plan, &mut wire);
    let packet = Packet::Publish(wire);
    let too_large = exceeds(conn.peer.maximum_packet_size, &packet, version);
    match packet {
        Packet::Publish(mut wire) if too_large => {
            if let Some(topic) = topic {
                wire.topic = topic;
            }
            wire.properties.update(|p| p.topic_alias = None);
            Err(wire)
        }
        packet => {
            if let (Some(topic), Some(a)) = (&topic, conn.aliases.as_deref_mut()) {
                a.outbound.commit(plan, topic);
            }
            Ok(packet)
        }
    }
}

/// True when `packet` is larger than `maximum` (when there is one).
fn exceeds(maximum: Option<u32>, packet: &Packet, version: ProtocolVersion) -> bool {
    maximum.is_some_and(|max| {
        packet_size(packet, version) > usize::try_from(max).unwrap_or(usize::MAX)
    })
}

/// The Reason String and User Properties of a packet that has them as
/// optional extras (every MQTT 5 packet but PUBLISH, CONNECT, SUBSCRIBE,
/// UNSUBSCRIBE and the pings).
fn optional_properties(
    packet: &mut Packet,
) -> Option<(
    &mut Option<crate::ByteStr>,
    &mut crate::codec::UserProperties,
)> {
    match packet {
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => Some((
            &mut a.properties.reason_string,
            &mut a.properties.user_properties,
        )),
        Packet::SubAck(s) => Some((
            &mut s.properties.reason_string,
            &mut s.properties.user_properties,
        )),
        Packet::UnsubAck(u) => Some((
            &mut u.properties.reason_string,
            &mut u.properties.user_properties,
        )),
        Packet::ConnAck(c) => Some((
            &mut c.properties.reason_string,
            &mut c.properties.user_properties,
        )),
        Packet::Disconnect(d) => Some((
            &mut d.properties.reason_string,
            &mut d.properties.user_properties,
        )),
        Packet::Auth(a) => Some((
            &mut a.properties.reason_string,
            &mut a.properties.user_properties,
        )),
        _ => None,
    }
}
