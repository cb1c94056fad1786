//! [`Event`]: what a session reports to the application (client) or the
//! broker (server), drained with [`super::Session::poll_event`].

use crate::codec::{
    AckProperties, Auth, ConnAck, Connect, Disconnect, PacketId, PacketType, Publish, ReasonCode,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};

use super::Ticket;

/// Why a message was discarded without being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Its MQTT 5 Message Expiry Interval passed while it waited in the queue
    /// [MQTT-3.3.2-5].
    Expired,
    /// The PUBLISH would exceed the peer's Maximum Packet Size; it is
    /// discarded as if sent [MQTT-3.1.2-25] (5.0), [MQTT-3.2.2-15].
    PacketTooLarge,
    /// The server's Maximum QoS is below the message's [MQTT-3.2.2-11].
    QoSNotSupported,
    /// The server does not support retained messages [MQTT-3.2.2-14].
    RetainNotSupported,
    /// The session state was discarded (clean start, or the server had no
    /// session [MQTT-3.2.2-5]) while the message was in flight.
    SessionDiscarded,
}

/// Something the application or broker must know or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Server: a client sent CONNECT. Answer with
    /// [`super::Session::accept`] or [`super::Session::reject`].
    Connect(Box<Connect>),
    /// Client: the server's CONNACK. A failure reason code means the session
    /// has closed.
    ConnAck(ConnAck),
    /// An application message from the peer. The topic is the real one (a
    /// topic alias is resolved and removed). With [`super::AckMode::Manual`]
    /// a QoS 1/2 message waits for [`super::Session::ack`] with its packet id.
    Publish(Publish),
    /// An outgoing QoS 1/2 flow ended: PUBACK (QoS 1), PUBCOMP (QoS 2), or a
    /// PUBREC with a failure reason code, which ends the flow
    /// [MQTT-4.3.3-4], [MQTT-4.4.0-2].
    PublishAcked {
        /// The message's ticket.
        ticket: Ticket,
        /// The packet id the flow used (free again now).
        packet_id: PacketId,
        /// The acknowledgement's reason code (always success before MQTT 5).
        reason_code: ReasonCode,
        /// The acknowledgement's properties (MQTT 5).
        properties: AckProperties,
    },
    /// A message was discarded without being delivered.
    PublishDropped {
        /// The message's ticket.
        ticket: Ticket,
        /// The message.
        publish: Publish,
        /// Why.
        reason: DropReason,
    },
    /// Server: a SUBSCRIBE; answer with [`super::Session::suback`].
    Subscribe(Subscribe),
    /// Server: an UNSUBSCRIBE; answer with [`super::Session::unsuback`].
    Unsubscribe(Unsubscribe),
    /// Client: the SUBACK for a [`super::Session::subscribe`].
    SubAck(SubAck),
    /// Client: the UNSUBACK for a [`super::Session::unsubscribe`].
    UnsubAck(UnsubAck),
    /// Client: the PINGRESP for a [`super::Session::ping`] (automatic
    /// keep-alive pings are not reported).
    Pong,
    /// An MQTT 5 AUTH packet from the peer.
    Auth(Auth),
    /// The peer sent DISCONNECT; the session has closed.
    Disconnected(Disconnect),
    /// An acknowledgement matched no flow (counted in
    /// [`super::Stats::unexpected_acks`]). PUBACK, PUBCOMP, SUBACK and
    /// UNSUBACK are ignored; a PUBREL is still answered with PUBCOMP
    /// [MQTT-4.3.3-11] (reason 0x92 at MQTT 5), and an MQTT 5 PUBREC with
    /// PUBREL 0x92. After a reconnect this is normal recovery.
    UnexpectedAck {
        /// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK or UNSUBACK.
        packet_type: PacketType,
        /// The id it carried.
        packet_id: PacketId,
    },
}
