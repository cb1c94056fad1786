//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP
//! (MQTT 3.1.1 §3.3–3.7, MQTT 5.0 §3.3–3.7).

use bytes::Bytes;

use super::properties::{AckProperties, PublishProperties};
use super::{PacketId, QoS, ReasonCode};
use crate::topic::TopicName;

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Re-delivery flag; always false at QoS 0 [MQTT-3.3.1-2].
    pub dup: bool,
    /// Quality of service.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// The topic; empty only when `properties.topic_alias` names it (MQTT 5).
    pub topic: TopicName,
    /// Present exactly when `qos` is 1 or 2 [MQTT-2.3.1-5].
    pub packet_id: Option<PacketId>,
    /// MQTT 5 properties; empty at levels 3 and 4.
    pub properties: PublishProperties,
    /// The application message; shared with the receive buffer, never copied.
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP: a packet id, and at MQTT 5 a reason
/// code and properties. Which of the four it is, is said by [`super::Packet`].
///
/// At MQTT 5 a reason code of `Success` with no properties is encoded in the
/// short form (remaining length 2) [MQTT 5.0 §3.4.2.1].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAck {
    /// The packet id being acknowledged.
    pub packet_id: PacketId,
    /// The outcome; always `Success` at levels 3 and 4.
    pub reason_code: ReasonCode,
    /// MQTT 5 properties; empty at levels 3 and 4.
    pub properties: AckProperties,
}

impl PubAck {
    /// A successful acknowledgement without properties.
    pub fn new(packet_id: PacketId) -> Self {
        Self {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }
}
