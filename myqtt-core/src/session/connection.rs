//! Connection state: what is rebuilt for every network connection (the
//! peer's limits, keep-alive deadlines, topic aliases, acknowledgements
//! waiting for the application, client requests waiting for their ack).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::codec::{AckProperties, PacketId, PacketType, QoS, ReasonCode};

use super::alias::{InboundAliases, OutboundAliases};
use super::state::LazyDeque;

/// The peer's limits for this connection, as its CONNECT (seen by a server)
/// or CONNACK (seen by a client) announced them. Before MQTT 5, and for
/// properties the peer left out, the protocol's defaults apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// How many QoS 1/2 PUBLISH packets the peer accepts unacknowledged
    /// (default 65535).
    pub receive_maximum: u16,
    /// The largest packet the peer accepts, if it said.
    pub maximum_packet_size: Option<u32>,
    /// The highest topic alias the peer accepts (default 0: none).
    pub topic_alias_maximum: u16,
    /// The highest QoS the server accepts (client side; default QoS 2).
    pub maximum_qos: QoS,
    /// Whether the server accepts retained messages (client side; default
    /// true).
    pub retain_available: bool,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            receive_maximum: u16::MAX,
            maximum_packet_size: None,
            topic_alias_maximum: 0,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
        }
    }
}

/// Counters over the life of one [`super::Session`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets handed to [`super::Session::handle_packet`].
    pub packets_received: u64,
    /// Packets returned by [`super::Session::poll_transmit`] or still queued
    /// for it.
    pub packets_sent: u64,
    /// Acknowledgements that matched no flow and were ignored (or, for a
    /// PUBREL or an MQTT 5 PUBREC, answered with reason 0x92).
    pub unexpected_acks: u64,
}

/// An incoming QoS 1/2 PUBLISH whose acknowledgement waits for the
/// application (manual mode), in order of reception.
#[derive(Debug, Clone)]
pub(crate) struct PendingAck {
    pub(crate) packet_id: PacketId,
    pub(crate) qos: QoS,
    /// Set by `ack`: the reason code and properties to send.
    pub(crate) response: Option<(ReasonCode, AckProperties)>,
}

/// A client's SUBSCRIBE or UNSUBSCRIBE awaiting SUBACK or UNSUBACK.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingRequest {
    pub(crate) kind: PacketType,
    pub(crate) filters: usize,
}

/// The topic aliases of a connection, both directions.
#[derive(Debug, Default)]
pub(crate) struct Aliases {
    pub(crate) inbound: InboundAliases,
    pub(crate) outbound: OutboundAliases,
}

/// The per-connection half of a session.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    /// Keep alive in force, in seconds (as on the wire); zero turns the
    /// mechanism off.
    pub(crate) keep_alive_secs: u16,
    pub(crate) last_received: Instant,
    pub(crate) last_sent: Instant,
    /// Client: when the outstanding PINGREQ went out.
    pub(crate) ping_sent_at: Option<Instant>,
    /// Client: the outstanding PINGREQ came from `ping()`, so its PINGRESP
    /// is reported.
    pub(crate) ping_requested: bool,
    pub(crate) peer: PeerLimits,
    /// Topic aliases; boxed, and `None` while neither side may use any
    /// (most connections): a pointer instead of two tables per connection.
    pub(crate) aliases: Option<Box<Aliases>>,
    pub(crate) pending_acks: LazyDeque<PendingAck>,
    /// How many of `pending_acks` are QoS 1 (they count against this side's
    /// Receive Maximum together with the incoming QoS 2 table).
    /// (`u32`: it shares a word with the fields above.)
    pub(crate) pending_qos1: u32,
    /// Client: SUBSCRIBE/UNSUBSCRIBE ids awaiting their ack; they are
    /// skipped by the packet-id allocator.
    pub(crate) pending_requests: BTreeMap<PacketId, PendingRequest>,
    /// Client: the Clean Start flag of the CONNECT sent.
    pub(crate) clean_start: bool,
    /// Flows in flight from an earlier connection whose PUBLISH is not
    /// resent yet, in order: the peer's Receive Maximum on this connection
    /// is smaller than the number of flows [MQTT-3.3.4-9]. Boxed and
    /// usually `None`: it costs an idle connection one pointer.
    #[allow(clippy::box_collection)] // a pointer, not a 32-byte VecDeque, per connection
    pub(crate) held_resends: Option<Box<VecDeque<PacketId>>>,
}

impl ConnectionState {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            keep_alive_secs: 0,
            last_received: now,
            last_sent: now,
            ping_sent_at: None,
            ping_requested: false,
            peer: PeerLimits::default(),
            aliases: None,
            pending_acks: LazyDeque::new(),
            pending_qos1: 0,
            pending_requests: BTreeMap::new(),
            clean_start: false,
            held_resends: None,
        }
    }

    /// The keep alive in force.
    pub(crate) fn keep_alive(&self) -> Duration {
        Duration::from_secs(u64::from(self.keep_alive_secs))
    }
}
