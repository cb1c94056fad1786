//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP
//! (MQTT 3.1.1 §3.3–3.7, MQTT 5.0 §3.3–3.7).

use bytes::Bytes;

use super::error::{DecodeError, EncodeError};
use super::properties::{AckProperties, PropertyList, PublishProperties};
use super::wire::{Reader, Sink};
use super::{PacketId, PacketType, ProtocolVersion, QoS, ReasonCode};
use crate::bytestr::ByteStr;
use crate::topic::{TopicError, TopicName};

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

impl Publish {
    /// Decodes a PUBLISH body; `dup`, `qos` and `retain` come from the
    /// fixed header, already checked.
    ///
    // Design: this is the hot path of every connection. Before MQTT 5 the
    // packet is built in one expression, so the (empty, 160-byte) property
    // struct is written in place rather than built and then moved.
    #[inline]
    pub(crate) fn decode(
        mut r: Reader,
        version: ProtocolVersion,
        (dup, qos, retain): (bool, QoS, bool),
    ) -> Result<Self, DecodeError> {
        let topic = r.utf8()?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(r.packet_id(PacketType::Publish)?)
        };
        if !version.is_v5() {
            return Ok(Self {
                dup,
                qos,
                retain,
                topic: topic_name(topic)?,
                packet_id,
                properties: PublishProperties::default(),
                payload: r.into_rest(),
            });
        }
        if r.skip_empty_properties() {
            // The common MQTT 5 case, built in place like the one above.
            // Without properties there is no Topic Alias to stand for an
            // empty topic (MQTT 5.0 §3.3.2.1, §3.3.2.3.4).
            if topic.is_empty() {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
            return Ok(Self {
                dup,
                qos,
                retain,
                topic: topic_name(topic)?,
                packet_id,
                properties: PublishProperties::default(),
                payload: r.into_rest(),
            });
        }
        let properties = PublishProperties::decode(&mut r)?;
        let topic = if topic.is_empty() {
            if properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
            TopicName::empty_for_alias()
        } else {
            topic_name(topic)?
        };
        Ok(Self {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload: r.into_rest(),
        })
    }

    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if self.qos == QoS::AtMostOnce {
            if self.dup {
                return Err(EncodeError::DupAtQoS0);
            }
        } else if self.packet_id.is_none() {
            return Err(EncodeError::MissingPacketId);
        }
        if version.is_v5() {
            if self.topic.is_empty() && self.properties.topic_alias.is_none() {
                return Err(EncodeError::EmptyTopic);
            }
            self.properties.check()
        } else if self.topic.is_empty() {
            Err(EncodeError::EmptyTopic)
        } else {
            Ok(())
        }
    }

    /// The low nibble of the fixed header: DUP, QoS, RETAIN.
    pub(crate) fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | (self.qos.as_u8() << 1) | u8::from(self.retain)
    }

    #[inline]
    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, dst: &mut S) {
        dst.binary(self.topic.as_byte_str().as_bytes());
        if self.qos != QoS::AtMostOnce
            && let Some(id) = self.packet_id
        {
            dst.u16(id.get());
        }
        if version.is_v5() {
            if self.properties.is_empty() {
                dst.u8(0);
            } else {
                self.properties.write(dst);
            }
        }
        dst.slice(&self.payload);
    }
}

/// Checks a PUBLISH topic name: [MQTT-3.3.2-2] no wildcards;
/// [MQTT-4.7.3-1] not empty; [MQTT-1.5.3-2] no U+0000.
#[inline]
fn topic_name(topic: ByteStr) -> Result<TopicName, DecodeError> {
    TopicName::from_byte_str(topic).map_err(|e| match e {
        TopicError::NullCharacter => DecodeError::NullCharacter,
        other => DecodeError::InvalidTopicName(other),
    })
}

impl PubAck {
    /// Decodes the body of a PUBACK, PUBREC, PUBREL or PUBCOMP.
    pub(crate) fn decode(
        r: &mut Reader,
        version: ProtocolVersion,
        packet_type: PacketType,
    ) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id(packet_type)?;
        if !version.is_v5() || r.is_empty() {
            // MQTT 5.0 §3.4.2.1: no reason code means Success.
            return Ok(Self::new(packet_id));
        }
        let code = r.u8()?;
        let reason_code = ReasonCode::try_from(code)
            .ok()
            .filter(|rc| rc.is_allowed_in(packet_type))
            .ok_or(DecodeError::InvalidReasonCode { packet_type, code })?;
        // MQTT 5.0 §3.4.2.2.1: no property length means no properties.
        let properties = if r.is_empty() {
            AckProperties::default()
        } else {
            AckProperties::decode(r, packet_type)?
        };
        Ok(Self {
            packet_id,
            reason_code,
            properties,
        })
    }

    pub(crate) fn check(
        &self,
        version: ProtocolVersion,
        packet_type: PacketType,
    ) -> Result<(), EncodeError> {
        if !version.is_v5() {
            return Ok(());
        }
        if !self.reason_code.is_allowed_in(packet_type) {
            return Err(EncodeError::ReasonCodeNotAllowed {
                packet_type,
                code: self.reason_code,
            });
        }
        self.properties.check()
    }

    /// Writes the body; at MQTT 5 in the shortest form the specification
    /// allows (MQTT 5.0 §3.4.2.1, §3.4.2.2.1).
    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, dst: &mut S) {
        dst.u16(self.packet_id.get());
        if !version.is_v5() {
            return;
        }
        let no_properties = self.properties.is_empty();
        if self.reason_code == ReasonCode::Success && no_properties {
            return;
        }
        dst.u8(self.reason_code.as_u8());
        if !no_properties {
            self.properties.write(dst);
        }
    }
}
