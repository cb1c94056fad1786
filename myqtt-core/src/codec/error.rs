//! Codec errors: why bytes are not a valid packet ([`DecodeError`]) and why
//! a packet cannot be written at a protocol level ([`EncodeError`]).
//!
//! Every decode error names the normative statement it enforces, as
//! `[MQTT-x.y.z-n]` (3.1.1 numbering first, the 5.0 number after it when it
//! differs), or the section as `[MQTT 5.0 §x.y]` where the specification
//! states the rule without a number. [`DecodeError::reason_code`] gives the
//! MQTT 5 reason code a server or client answers with (MQTT 5.0 §4.13).

use super::properties::property_name;
use super::{PacketType, ProtocolVersion, ReasonCode};
use crate::bytestr::ByteStr;
use crate::topic::TopicError;

/// Why received bytes are not a valid control packet.
///
/// After any of these the connection must be closed (MQTT 5.0 §4.13); at
/// MQTT 5 the reason code of [`DecodeError::reason_code`] goes in the
/// DISCONNECT (or the CONNACK, when decoding the CONNECT failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A Variable Byte Integer (remaining length, property length,
    /// subscription identifier) runs over four bytes or is not in its
    /// shortest form.
    #[error(
        "[MQTT 5.0 §1.5.5] variable byte integer is longer than four bytes or not in its shortest \
         form [MQTT-1.5.5-1]"
    )]
    MalformedVariableByteInteger,

    /// The packet is bigger than the maximum packet size this side accepts.
    /// Detected from the fixed header alone, before the body is buffered.
    #[error(
        "[MQTT-3.1.2-24] [MQTT-3.2.2-15] packet of {size} bytes exceeds the maximum packet size of {max} bytes"
    )]
    PacketTooLarge {
        /// Size of the whole packet (fixed header included).
        size: u32,
        /// The limit in force.
        max: u32,
    },

    /// Packet type 0 (forbidden at every level) or 15 (AUTH) before MQTT 5.
    #[error(
        "[MQTT 3.1.1 §2.2.1, 5.0 §2.1.2] packet type {packet_type} is reserved at this protocol level"
    )]
    InvalidPacketType {
        /// The high nibble of the first byte.
        packet_type: u8,
    },

    /// The low nibble of the first byte is not what the packet type requires
    /// (0b0010 for PUBREL, SUBSCRIBE and UNSUBSCRIBE, 0 for the others but
    /// PUBLISH).
    #[error(
        "[MQTT-2.2.2-2] (5.0: [MQTT-2.1.3-1]) invalid fixed header flags {flags:#06b} for {packet_type:?}"
    )]
    InvalidFixedHeaderFlags {
        /// The packet's type.
        packet_type: PacketType,
        /// The low nibble as received.
        flags: u8,
    },

    /// Before the CONNECT (server side), only a CONNECT may arrive.
    #[error("[MQTT-3.1.0-1] the first packet must be CONNECT, got packet type {packet_type}")]
    FirstPacketNotConnect {
        /// The high nibble of the first byte.
        packet_type: u8,
    },

    /// The remaining length ends before the packet's fields do.
    #[error(
        "[MQTT 3.1.1 §2.2.3, 5.0 §4.13.1] remaining length is shorter than the packet's fields"
    )]
    Truncated,

    /// Bytes are left over after the last field of the packet.
    #[error("[MQTT 3.1.1 §2.2.3, 5.0 §4.13.1] {extra} unexpected bytes after the packet's fields")]
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },

    /// A string is not well-formed UTF-8 (surrogates included).
    #[error("[MQTT-1.5.3-1] (5.0: [MQTT-1.5.4-1]) string is not well-formed UTF-8")]
    InvalidUtf8,

    /// A string contains U+0000.
    #[error("[MQTT-1.5.3-2] (5.0: [MQTT-1.5.4-2]) string contains the null character U+0000")]
    NullCharacter,

    /// A topic name (PUBLISH, Will, Response Topic) is invalid: wildcards
    /// [MQTT-3.3.2-2], or empty.
    #[error(transparent)]
    InvalidTopicName(TopicError),

    /// A topic filter (SUBSCRIBE, UNSUBSCRIBE) is invalid.
    #[error(transparent)]
    InvalidTopicFilter(TopicError),

    /// An MQTT 5 PUBLISH has an empty topic name and no Topic Alias.
    #[error("[MQTT 5.0 §3.3.2.1] PUBLISH has a zero-length topic name and no topic alias")]
    EmptyTopicWithoutAlias,

    /// A packet identifier is 0.
    #[error("[MQTT-2.3.1-1] (5.0: [MQTT-2.2.1-3]) packet identifier 0 in {packet_type:?}")]
    ZeroPacketId {
        /// The packet that carried it.
        packet_type: PacketType,
    },

    /// A PUBLISH has both QoS bits set.
    #[error("[MQTT-3.3.1-4] PUBLISH with QoS 3")]
    InvalidQoS,

    /// A QoS 0 PUBLISH has the DUP flag set.
    #[error("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")]
    DupAtQoS0,

    /// A property identifier is unknown, or not allowed in this packet.
    #[error(
        "[MQTT 5.0 §2.2.2.2] property {} ({id:#04x}) is not allowed in {packet_type:?}",
        property_name(*.id)
    )]
    PropertyNotAllowed {
        /// The property identifier.
        id: u32,
        /// The packet that carried it (CONNECT for Will properties).
        packet_type: PacketType,
    },

    /// A property other than User Property (and Subscription Identifier in
    /// PUBLISH) appears twice.
    #[error("[MQTT 5.0 §2.2.2.2] property {} ({id:#04x}) appears more than once", property_name(*.id))]
    DuplicateProperty {
        /// The property identifier.
        id: u32,
    },

    /// A property value is outside its allowed range: a zero Receive
    /// Maximum, Maximum Packet Size or Subscription Identifier, a byte flag
    /// other than 0 or 1, a Maximum QoS other than 0 or 1.
    #[error(
        "[MQTT 5.0 §2.2.2.2] property {} ({id:#04x}) has the invalid value {value}",
        property_name(*.id)
    )]
    InvalidPropertyValue {
        /// The property identifier.
        id: u32,
        /// The value received.
        value: u32,
    },

    /// A PUBLISH carries Topic Alias 0.
    #[error("[MQTT-3.3.2-8] topic alias 0 is not allowed")]
    TopicAliasZero,

    /// Authentication Data without an Authentication Method.
    #[error("[MQTT 5.0 §3.1.2.11.10] authentication data without an authentication method")]
    AuthenticationDataWithoutMethod,

    /// A SUBSCRIBE without any topic filter.
    #[error("[MQTT-3.8.3-3] SUBSCRIBE must contain at least one topic filter")]
    SubscribeWithoutFilters,

    /// An UNSUBSCRIBE without any topic filter.
    #[error("[MQTT-3.10.3-2] UNSUBSCRIBE must contain at least one topic filter")]
    UnsubscribeWithoutFilters,

    /// Subscription options with reserved bits set or QoS 3.
    #[error(
        "[MQTT-3.8.3-4] (5.0: [MQTT-3.8.3-5]) subscription options {options:#010b} have reserved bits set or QoS 3"
    )]
    InvalidSubscriptionOptions {
        /// The options byte as received.
        options: u8,
    },

    /// Retain Handling 3 in the subscription options.
    #[error("[MQTT 5.0 §3.8.3.1] retain handling 3 is a protocol error")]
    InvalidRetainHandling,

    /// Maximum QoS 3 in MQTT 5 subscription options (before MQTT 5 it is
    /// [`Self::InvalidSubscriptionOptions`], a malformed packet).
    #[error("[MQTT 5.0 §3.8.3.1] subscription Maximum QoS 3 is a protocol error")]
    InvalidSubscriptionQoS,

    /// No Local set on a shared subscription.
    #[error("[MQTT-3.8.3-4] no local must not be set on a shared subscription")]
    NoLocalOnSharedSubscription,

    /// The reserved bit of the CONNECT flags is set.
    #[error("[MQTT-3.1.2-3] the reserved bit of the CONNECT flags is set")]
    ConnectReservedFlag,

    /// Will QoS is not 0 while the Will flag is 0.
    #[error("[MQTT-3.1.2-13] (5.0: [MQTT-3.1.2-11]) will QoS must be 0 when the will flag is 0")]
    WillQoSWithoutWill,

    /// Will Retain is set while the Will flag is 0.
    #[error("[MQTT-3.1.2-15] (5.0: [MQTT-3.1.2-13]) will retain must be 0 when the will flag is 0")]
    WillRetainWithoutWill,

    /// Will QoS is 3.
    #[error("[MQTT-3.1.2-14] (5.0: [MQTT-3.1.2-12]) will QoS 3")]
    InvalidWillQoS,

    /// At levels 3 and 4 the Password flag needs the User Name flag.
    #[error("[MQTT-3.1.2-22] password flag set without the user name flag")]
    PasswordWithoutUsername,

    /// The CONNECT's protocol name and level are not one of "MQIsdp"/3,
    /// "MQTT"/4, "MQTT"/5. A server answers with CONNACK
    /// `UnsupportedProtocolVersion` encoded at level 4 (return code 0x01)
    /// or, for a level 5 client, at level 5 (0x84).
    #[error("[MQTT-3.1.2-1] [MQTT-3.1.2-2] unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol {
        /// The protocol name received.
        name: ByteStr,
        /// The protocol level received.
        level: u8,
    },

    /// The CONNACK acknowledge flags have reserved bits set (at level 3 the
    /// whole byte is reserved).
    #[error("[MQTT 3.1.1 §3.2.2.1, 5.0 §3.2.2.1] reserved CONNACK flags set: {flags:#010b}")]
    ConnAckReservedFlags {
        /// The flags byte as received.
        flags: u8,
    },

    /// A CONNACK refusing the connection has Session Present set.
    #[error("[MQTT-3.2.2-4] (5.0: [MQTT-3.2.2-6]) session present set in a refusing CONNACK")]
    SessionPresentWithError,

    /// A reason code (or 3.1.1 return code) not defined for this packet.
    #[error("[MQTT 5.0 §2.4] reason code {code:#04x} is not allowed in {packet_type:?}")]
    InvalidReasonCode {
        /// The packet that carried it.
        packet_type: PacketType,
        /// The byte as received.
        code: u8,
    },
}

impl DecodeError {
    /// The MQTT 5 reason code this error causes (MQTT 5.0 §4.13): 0x81
    /// Malformed Packet when the bytes cannot be parsed, 0x82 Protocol Error
    /// when they parse to something the specification forbids, or the more
    /// specific code where one exists.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::UnsupportedProtocol { .. } => ReasonCode::UnsupportedProtocolVersion,
            Self::TopicAliasZero => ReasonCode::TopicAliasInvalid,
            Self::InvalidTopicName(_) => ReasonCode::TopicNameInvalid,
            Self::InvalidTopicFilter(_) => ReasonCode::TopicFilterInvalid,
            Self::FirstPacketNotConnect { .. }
            | Self::EmptyTopicWithoutAlias
            | Self::ZeroPacketId { .. }
            | Self::DupAtQoS0
            | Self::DuplicateProperty { .. }
            | Self::InvalidPropertyValue { .. }
            | Self::AuthenticationDataWithoutMethod
            | Self::SubscribeWithoutFilters
            | Self::UnsubscribeWithoutFilters
            | Self::InvalidRetainHandling
            | Self::InvalidSubscriptionQoS
            | Self::NoLocalOnSharedSubscription
            | Self::SessionPresentWithError => ReasonCode::ProtocolError,
            Self::MalformedVariableByteInteger
            | Self::InvalidPacketType { .. }
            | Self::InvalidFixedHeaderFlags { .. }
            | Self::Truncated
            | Self::TrailingBytes { .. }
            | Self::InvalidUtf8
            | Self::NullCharacter
            | Self::InvalidQoS
            | Self::PropertyNotAllowed { .. }
            | Self::InvalidSubscriptionOptions { .. }
            | Self::ConnectReservedFlag
            | Self::WillQoSWithoutWill
            | Self::WillRetainWithoutWill
            | Self::InvalidWillQoS
            | Self::PasswordWithoutUsername
            | Self::ConnAckReservedFlags { .. }
            | Self::InvalidReasonCode { .. } => ReasonCode::MalformedPacket,
        }
    }

    /// True when a server should answer with CONNACK "unsupported protocol
    /// version" rather than just close the connection.
    pub fn is_unsupported_protocol(&self) -> bool {
        matches!(self, Self::UnsupportedProtocol { .. })
    }
}

/// Why a packet cannot be encoded at the requested protocol level.
///
/// The encoder refuses to write what the receiving side would have to treat
/// as malformed or as a protocol error, where that is cheap to detect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The body exceeds the largest remaining length, 268,435,455 bytes.
    #[error(
        "[MQTT 3.1.1 §2.2.3, 5.0 §2.1.4] remaining length {remaining_length} exceeds 268,435,455"
    )]
    PacketTooLarge {
        /// The body length that was computed.
        remaining_length: usize,
    },

    /// The packet type does not exist at this level (AUTH before MQTT 5).
    #[error("[MQTT 5.0 §3.15] {packet_type:?} does not exist at protocol {version:?}")]
    NotAvailable {
        /// The packet's type.
        packet_type: PacketType,
        /// The level asked for.
        version: ProtocolVersion,
    },

    /// A string or binary field is longer than its two-byte length prefix
    /// allows (65,535 bytes).
    #[error("[MQTT 3.1.1 §1.5.3, 5.0 §1.5.4, §1.5.6] {field} is {len} bytes, more than 65,535")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },

    /// A QoS 1 or 2 PUBLISH without a packet identifier.
    #[error("[MQTT-2.3.1-1] (5.0: [MQTT-2.2.1-3]) PUBLISH at QoS > 0 needs a packet identifier")]
    MissingPacketId,

    /// A QoS 0 PUBLISH with DUP set.
    #[error("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")]
    DupAtQoS0,

    /// An empty topic name without a Topic Alias, or at a level without
    /// topic aliases.
    #[error("[MQTT-4.7.3-1] empty topic name without a topic alias")]
    EmptyTopic,

    /// A SUBSCRIBE with no filters.
    #[error("[MQTT-3.8.3-3] SUBSCRIBE must contain at least one topic filter")]
    SubscribeWithoutFilters,

    /// An UNSUBSCRIBE with no filters.
    #[error("[MQTT-3.10.3-2] UNSUBSCRIBE must contain at least one topic filter")]
    UnsubscribeWithoutFilters,

    /// No Local on a shared subscription.
    #[error("[MQTT-3.8.3-4] no local must not be set on a shared subscription")]
    NoLocalOnSharedSubscription,

    /// A password without a user name at levels 3 and 4.
    #[error("[MQTT-3.1.2-22] password without user name")]
    PasswordWithoutUsername,

    /// A reason code this packet cannot carry.
    #[error("[MQTT 5.0 §2.4] reason code {code:?} is not allowed in {packet_type:?}")]
    ReasonCodeNotAllowed {
        /// The packet's type.
        packet_type: PacketType,
        /// The offending code.
        code: ReasonCode,
    },

    /// A refusing CONNACK with Session Present set.
    #[error("[MQTT-3.2.2-4] (5.0: [MQTT-3.2.2-6]) session present set in a refusing CONNACK")]
    SessionPresentWithError,

    /// A property value the receiver must reject (zero Receive Maximum,
    /// Maximum Packet Size, Topic Alias or Subscription Identifier; a
    /// Subscription Identifier over 268,435,455; Maximum QoS 2).
    #[error(
        "[MQTT 5.0 §2.2.2.2] property {} ({id:#04x}) has the invalid value {value}",
        property_name(*.id)
    )]
    InvalidPropertyValue {
        /// The property identifier.
        id: u32,
        /// The value.
        value: u32,
    },
}
