//! Sans-IO MQTT codec: control packets to bytes and back, for protocol
//! level 3 (MQTT 3.1, "MQIsdp"), 4 (3.1.1) and 5 (5.0).
//!
//! The types here are the engine's one representation of a packet at every
//! protocol level; the level only decides what goes on the wire. Reason
//! codes are MQTT 5's everywhere ([`ReasonCode`]) and are mapped to the
//! older return codes when encoding for levels 3 and 4.

mod connect;
mod disconnect;
mod error;
mod frame;
mod properties;
mod publish;
mod reason;
mod subscribe;
mod wire;

use std::fmt;
use std::num::NonZeroU16;

pub use connect::{ConnAck, Connect, LastWill};
pub use disconnect::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError};
pub use frame::{Decoder, encode, encoded_len};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, PublishProps, SubscribeProperties, UnsubscribeProperties, UserProperties,
    WillProperties,
};
pub use publish::{PubAck, Publish};
pub use reason::ReasonCode;
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};

/// The protocol level of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V31 = 3,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V311 = 4,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    V5 = 5,
}

impl ProtocolVersion {
    /// The protocol level byte of a CONNECT.
    pub const fn level(self) -> u8 {
        self as u8
    }

    /// The protocol name a CONNECT at this level carries.
    pub const fn protocol_name(self) -> &'static str {
        match self {
            Self::V31 => "MQIsdp",
            Self::V311 | Self::V5 => "MQTT",
        }
    }

    /// True for MQTT 5.0.
    pub const fn is_v5(self) -> bool {
        matches!(self, Self::V5)
    }
}

/// Quality of service of a message (MQTT 3.1.1 §4.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// 0: at most once.
    #[default]
    AtMostOnce = 0,
    /// 1: at least once.
    AtLeastOnce = 1,
    /// 2: exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS as its wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for QoS {
    type Error = u8;

    /// Fails with the byte for 3 and above [MQTT-3.3.1-4].
    fn try_from(b: u8) -> Result<Self, u8> {
        match b {
            0 => Ok(Self::AtMostOnce),
            1 => Ok(Self::AtLeastOnce),
            2 => Ok(Self::ExactlyOnce),
            other => Err(other),
        }
    }
}

/// A packet identifier: non-zero by construction [MQTT-2.3.1-1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// `None` for 0, which no packet may use.
    pub const fn new(id: u16) -> Option<Self> {
        match NonZeroU16::new(id) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    /// The id's value (1..=65535).
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The next id after this one, wrapping from 65535 to 1.
    pub const fn next(self) -> Self {
        match NonZeroU16::new(self.0.get().wrapping_add(1)) {
            Some(n) => Self(n),
            None => Self(NonZeroU16::MIN),
        }
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The type of a control packet: the high nibble of its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names are the specification's
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    /// MQTT 5 only.
    Auth = 15,
}

/// An MQTT control packet.
///
/// The packets a connection sees once (CONNECT, CONNACK) or rarely (AUTH)
/// are boxed, so that a `Packet` is no bigger than a PUBLISH needs and
/// moves cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is the packet of the same name
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(Box<ConnAck>),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubAck),
    PubRel(PubAck),
    PubComp(PubAck),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Box<Auth>),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every decoded packet is moved by value from the decoder to the
    /// session and on to the broker: the rare and large packets (CONNECT,
    /// CONNACK, AUTH) and PUBLISH properties are boxed so that these moves
    /// stay a few registers wide (doc/benchmarks.md, "Codec"). A topic name
    /// of up to 40 bytes is stored inline (48 bytes with its length and
    /// tag), which makes a `Publish` 96 bytes instead of 80 but saves a
    /// reference count on the receive buffer.
    #[test]
    fn packets_stay_small_enough_to_move_cheaply() {
        assert_eq!(std::mem::size_of::<crate::topic::TopicName>(), 48);
        assert!(
            std::mem::size_of::<Publish>() <= 96,
            "Publish is {} bytes",
            std::mem::size_of::<Publish>()
        );
        assert!(
            std::mem::size_of::<Packet>() <= 104,
            "Packet is {} bytes",
            std::mem::size_of::<Packet>()
        );
        assert_eq!(std::mem::size_of::<PublishProps>(), 8);
    }
}
