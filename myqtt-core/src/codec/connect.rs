//! CONNECT and CONNACK (MQTT 3.1.1 §3.1–3.2, MQTT 5.0 §3.1–3.2).

use bytes::Bytes;

use super::properties::{ConnAckProperties, ConnectProperties, WillProperties};
use super::{ProtocolVersion, QoS, ReasonCode};
use crate::bytestr::ByteStr;
use crate::topic::TopicName;

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol name and level: "MQIsdp"/3, "MQTT"/4 or "MQTT"/5.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns the mechanism off.
    pub keep_alive: u16,
    /// May be empty (the server then assigns one, or refuses at 3.1.1 when
    /// clean session is 0 [MQTT-3.1.3-8]).
    pub client_id: ByteStr,
    /// The Will message, if the Will flag is set.
    pub will: Option<LastWill>,
    /// User name, if the User Name flag is set.
    pub username: Option<ByteStr>,
    /// Password (binary data), if the Password flag is set.
    pub password: Option<Bytes>,
    /// MQTT 5 properties; empty at levels 3 and 4.
    pub properties: ConnectProperties,
}

/// The Will message of a CONNECT (MQTT 3.1.1 §3.1.2.5, MQTT 5.0 §3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Where the will is published.
    pub topic: TopicName,
    /// The will's payload.
    pub payload: Bytes,
    /// The will's QoS.
    pub qos: QoS,
    /// Whether the will is published as a retained message.
    pub retain: bool,
    /// MQTT 5 will properties; empty at levels 3 and 4.
    pub properties: WillProperties,
}

/// A CONNACK packet.
///
/// `reason_code` is in MQTT 5 terms at every level: the codec writes
/// `UnsupportedProtocolVersion` as 3.1.1 return code 0x01,
/// `ClientIdentifierNotValid` as 0x02, `ServerUnavailable` as 0x03,
/// `BadUserNameOrPassword` as 0x04 and `NotAuthorized` as 0x05 (MQTT 3.1.1
/// §3.2.2.3), other failures as the closest of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a stored session [MQTT-3.2.2-2].
    pub session_present: bool,
    /// The outcome of the connection attempt.
    pub reason_code: ReasonCode,
    /// MQTT 5 properties; empty at levels 3 and 4.
    pub properties: ConnAckProperties,
}
