//! [`SessionError`]: protocol violations by the peer, timeouts, and misuse
//! of the session API.

use std::time::Duration;

use crate::codec::{PacketId, PacketType, ReasonCode};

use super::Role;

/// Why a session operation failed.
///
/// Errors from [`super::Session::handle_packet`] and
/// [`super::Session::handle_timeout`] are fatal: the session has closed
/// itself (queueing an MQTT 5 DISCONNECT with [`reason_code`](Self::reason_code)
/// where the protocol allows one), and the I/O layer should send what
/// [`super::Session::poll_transmit`] still returns, then close the network
/// connection. Errors from the other methods leave the session as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    // --- the peer broke the protocol ---
    /// The client's first packet was not CONNECT.
    #[error("[MQTT-3.1.0-1] the first packet from a client must be CONNECT, got {0:?}")]
    FirstPacketNotConnect(PacketType),
    /// The client sent CONNECT twice on one connection.
    #[error("[MQTT-3.1.0-2] a second CONNECT on the same network connection is a protocol error")]
    SecondConnect,
    /// The server's first packet was neither CONNACK nor AUTH.
    #[error("[MQTT-3.2.0-1] the first packet from the server must be CONNACK, got {0:?}")]
    FirstPacketNotConnAck(PacketType),
    /// The server sent CONNACK twice.
    #[error("[MQTT-3.2.0-2] the server sent a second CONNACK")]
    SecondConnAck,
    /// The server said a session was present although the client asked for a
    /// clean start.
    #[error(
        "[MQTT-3.2.2-4] the server reported Session Present after a clean start; the client has no session state"
    )]
    UnexpectedSessionPresent,
    /// A packet the peer's role never sends, or that is not allowed at this
    /// point or protocol level.
    #[error(
        "[MQTT-4.8.0-1] (3.1.1) / [MQTT-4.13.1-1] (5.0) protocol error: {packet:?} is not accepted from the {from} here"
    )]
    UnexpectedPacket {
        /// The packet's type.
        packet: PacketType,
        /// Who sent it.
        from: Role,
    },
    /// A QoS 1 or 2 PUBLISH arrived without a packet id.
    #[error(
        "[MQTT-2.3.1-1] (3.1.1) / [MQTT-2.2.1-3] (5.0) a QoS 1 or QoS 2 PUBLISH must carry a packet identifier"
    )]
    MissingPacketId,
    /// The peer exceeded this side's Receive Maximum.
    #[error(
        "[MQTT-3.3.4-7] / [MQTT-3.3.4-9] more than Receive Maximum ({maximum}) QoS 1 and QoS 2 PUBLISH packets unacknowledged"
    )]
    ReceiveMaximumExceeded {
        /// This side's Receive Maximum.
        maximum: u16,
    },
    /// A PUBLISH carried Topic Alias 0.
    #[error("[MQTT-3.3.2-8] a Topic Alias of 0 is not permitted")]
    TopicAliasZero,
    /// A PUBLISH carried a Topic Alias above this side's Topic Alias Maximum.
    #[error(
        "[MQTT-3.3.2-9] / [MQTT-3.3.2-11] topic alias {alias} is greater than the Topic Alias Maximum {maximum}"
    )]
    TopicAliasTooLarge {
        /// The alias received.
        alias: u16,
        /// This side's Topic Alias Maximum.
        maximum: u16,
    },
    /// A PUBLISH named its topic only by an alias that has no mapping on this
    /// connection.
    #[error(
        "[MQTT-3.3.2-7] topic alias {0} has no topic mapped on this network connection (MQTT 5.0 §3.3.2.3.4)"
    )]
    TopicAliasUnknown(u16),
    /// A PUBLISH had an empty topic name and no topic alias.
    #[error(
        "[MQTT-4.7.3-1] a PUBLISH with a zero-length topic name must carry a Topic Alias (MQTT 5.0 §3.3.2.3.4)"
    )]
    EmptyTopicWithoutAlias,
    /// A PUBREL arrived for a QoS 2 message this side has not sent PUBREC for.
    #[error("[MQTT-4.3.3-4] PUBREL for packet id {0} before this side sent PUBREC")]
    PubRelBeforePubRec(PacketId),
    /// A SUBACK or UNSUBACK does not have one reason code per topic filter.
    #[error(
        "[MQTT-3.8.4-6] / [MQTT-3.11.3-1] {packet:?} for packet id {packet_id} has {got} reason codes for {expected} topic filters"
    )]
    AckReasonCount {
        /// SUBACK or UNSUBACK.
        packet: PacketType,
        /// Its packet id.
        packet_id: PacketId,
        /// Reason codes received.
        got: usize,
        /// Topic filters sent.
        expected: usize,
    },
    /// No packet from the client within one and a half keep-alive intervals.
    #[error(
        "[MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0) nothing received from the client within 1.5 x keep alive ({0:?})"
    )]
    KeepAliveTimeout(Duration),
    /// No PINGRESP from the server in time.
    #[error(
        "no PINGRESP within {0:?} of PINGREQ (MQTT 5.0 §3.1.2.10: the client closes the connection)"
    )]
    PingTimeout(Duration),

    // --- misuse of the API (the session is unchanged) ---
    /// The operation belongs to the other role.
    #[error("{operation} is not available to a {role} session")]
    WrongRole {
        /// The method called.
        operation: &'static str,
        /// This session's role.
        role: Role,
    },
    /// The operation does not fit the connection's current phase.
    #[error("{0}")]
    InvalidPhase(&'static str),
    /// The session has closed.
    #[error("the session is closed")]
    Closed,
    /// The queue is full; the message was dropped (and counted).
    #[error("the session's queue is full ({max} messages); message dropped")]
    QueueFull {
        /// The queue's maximum length.
        max: usize,
    },
    /// Every packet id is in use.
    #[error("[MQTT-2.3.1-2] (3.1.1) / [MQTT-2.2.1-3] (5.0) no unused packet identifier is left")]
    PacketIdsExhausted,
    /// No incoming message waits for an acknowledgement with this id.
    #[error("no incoming message awaits acknowledgement with packet id {0}")]
    UnknownPacketId(PacketId),
    /// [`super::Session::ack`] in automatic acknowledgement mode.
    #[error("ack() needs AckMode::Manual")]
    NotManualAckMode,
    /// A message handed to the session had an empty topic name.
    #[error("[MQTT-4.7.3-1] a message to publish needs a topic name of at least one character")]
    EmptyTopic,
    /// SUBSCRIBE or UNSUBSCRIBE without topic filters.
    #[error(
        "[MQTT-3.8.3-3] (3.1.1) / [MQTT-3.8.3-2] (5.0), [MQTT-3.10.3-2] SUBSCRIBE and UNSUBSCRIBE need at least one topic filter"
    )]
    NoTopicFilters,
    /// A reason code that does not fit the call (success to reject, failure
    /// to accept).
    #[error("reason code {0:?} does not fit this call")]
    WrongReasonCode(ReasonCode),
    /// A configuration value is out of range.
    #[error("invalid session configuration: {0}")]
    InvalidConfig(&'static str),
    /// A snapshot handed to [`super::SessionState::restore`] is inconsistent.
    #[error("invalid session snapshot: {0}")]
    InvalidSnapshot(&'static str),
}

impl SessionError {
    /// True when the peer broke the protocol or timed out: the session has
    /// closed and the network connection must be closed.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::FirstPacketNotConnect(_)
                | Self::SecondConnect
                | Self::FirstPacketNotConnAck(_)
                | Self::SecondConnAck
                | Self::UnexpectedSessionPresent
                | Self::UnexpectedPacket { .. }
                | Self::MissingPacketId
                | Self::ReceiveMaximumExceeded { .. }
                | Self::TopicAliasZero
                | Self::TopicAliasTooLarge { .. }
                | Self::TopicAliasUnknown(_)
                | Self::EmptyTopicWithoutAlias
                | Self::PubRelBeforePubRec(_)
                | Self::AckReasonCount { .. }
                | Self::KeepAliveTimeout(_)
                | Self::PingTimeout(_)
        )
    }

    /// The MQTT 5 reason code this error causes (the DISCONNECT's).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::MissingPacketId => ReasonCode::MalformedPacket,
            Self::ReceiveMaximumExceeded { .. } => ReasonCode::ReceiveMaximumExceeded,
            Self::TopicAliasZero | Self::TopicAliasTooLarge { .. } => ReasonCode::TopicAliasInvalid,
            Self::KeepAliveTimeout(_) | Self::PingTimeout(_) => ReasonCode::KeepAliveTimeout,
            Self::QueueFull { .. } => ReasonCode::QuotaExceeded,
            Self::EmptyTopic => ReasonCode::TopicNameInvalid,
            Self::NoTopicFilters => ReasonCode::TopicFilterInvalid,
            Self::UnknownPacketId(_) => ReasonCode::PacketIdentifierNotFound,
            Self::PacketIdsExhausted => ReasonCode::ImplementationSpecificError,
            Self::FirstPacketNotConnect(_)
            | Self::SecondConnect
            | Self::FirstPacketNotConnAck(_)
            | Self::SecondConnAck
            | Self::UnexpectedSessionPresent
            | Self::UnexpectedPacket { .. }
            | Self::TopicAliasUnknown(_)
            | Self::EmptyTopicWithoutAlias
            | Self::PubRelBeforePubRec(_)
            | Self::AckReasonCount { .. } => ReasonCode::ProtocolError,
            Self::WrongRole { .. }
            | Self::InvalidPhase(_)
            | Self::Closed
            | Self::NotManualAckMode
            | Self::WrongReasonCode(_)
            | Self::InvalidConfig(_)
            | Self::InvalidSnapshot(_) => ReasonCode::UnspecifiedError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_their_statement_and_reason_code() {
        let e = SessionError::TopicAliasTooLarge {
            alias: 9,
            maximum: 4,
        };
        assert!(e.to_string().contains("[MQTT-3.3.2-9]"));
        assert_eq!(e.reason_code(), ReasonCode::TopicAliasInvalid);
        assert!(e.is_fatal());
        assert_eq!(
            SessionError::SecondConnect.reason_code(),
            ReasonCode::ProtocolError
        );
        assert!(
            SessionError::SecondConnect
                .to_string()
                .starts_with("[MQTT-3.1.0-2]")
        );
    }

    #[test]
    fn api_misuse_is_not_fatal() {
        assert!(!SessionError::QueueFull { max: 1 }.is_fatal());
        assert!(!SessionError::Closed.is_fatal());
    }
}
