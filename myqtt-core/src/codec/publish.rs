//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP
//! (MQTT 3.1.1 §3.3–3.7, MQTT 5.0 §3.3–3.7).

use bytes::{Buf, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::properties::{AckProperties, PropertyList, PublishProperties, PublishProps};
use super::wire::{Reader, Sink};
use super::{Packet, PacketId, PacketType, ProtocolVersion, QoS, ReasonCode};
use crate::topic::{RawTopic, TopicError, TopicName};

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
    /// MQTT 5 properties; empty at levels 3 and 4. Allocated only when
    /// one is set (see [`PublishProps`]).
    pub properties: PublishProps,
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
    /// Decodes a whole PUBLISH packet, `frame`, whose fixed header
    /// (`header_len` bytes, first byte `first`) has been checked, into what
    /// [`Decoder::decode`](super::Decoder::decode) returns.
    ///
    // Design: this is the hot path of every connection (doc/benchmarks.md,
    // "Codec"). The variable header is read straight from the frame's bytes,
    // without a cursor. A topic of at most `TopicName::INLINE_CAPACITY`
    // bytes (nearly all) is copied into the packet, so the payload, the
    // frame itself advanced past the variable header, is the packet's only
    // handle on the receive buffer: one reference count, not two. The
    // packet is built in one expression, in the caller's return slot. A
    // property list, rare, is decoded out of line so that its large stack
    // frame is not paid for by every packet.
    #[inline(always)]
    #[allow(clippy::inline_always)] // PUBLISH decode hot path; measured with callgrind
    pub(crate) fn decode(
        frame: BytesMut,
        header_len: usize,
        first: u8,
        version: ProtocolVersion,
    ) -> Result<Option<Packet>, DecodeError> {
        let flags = publish_flags(first)?;
        // Topic Name: a two-byte length, then UTF-8 [MQTT-3.3.2-1].
        let Some(&[hi, lo]) = frame.get(header_len..).and_then(<[u8]>::first_chunk) else {
            return Err(DecodeError::Truncated);
        };
        let topic_start = header_len + 2;
        let topic_end = topic_start + usize::from(u16::from_be_bytes([hi, lo]));
        let Some(topic) = frame.get(topic_start..topic_end) else {
            return Err(DecodeError::Truncated);
        };
        // A topic too long to be stored inline (rare) shares the frame,
        // out of line: the common path below handles one kind of topic,
        // without an `Option` to build and test and move.
        if topic.len() > TopicName::INLINE_CAPACITY {
            return Self::decode_shared_topic(frame, topic_start..topic_end, flags, version);
        }
        // The topic's own error comes first, as the fields are in this
        // order [MQTT-1.5.3-1]. The topic is copied before the frame is
        // frozen (see below).
        let topic = RawTopic::copy(topic).map_err(|_| DecodeError::InvalidUtf8)?;
        // Design: `freeze` reads the frame's handle with wider loads than
        // `split_to` wrote it with: frozen right after the split, it
        // stalls on store forwarding (~5 ns); after the topic's copy, not.
        Self::decode_after_topic(frame.freeze(), topic_end, flags, topic, version)
    }

    /// [`Publish::decode`] for a topic longer than
    /// [`TopicName::INLINE_CAPACITY`]: the name shares the frame.
    #[inline(never)]
    fn decode_shared_topic(
        frame: BytesMut,
        topic: std::ops::Range<usize>,
        flags: (bool, QoS, bool),
        version: ProtocolVersion,
    ) -> Result<Option<Packet>, DecodeError> {
        let frame = frame.freeze();
        let topic_end = topic.end;
        // [MQTT-1.5.3-1], first as in `decode`.
        let topic = RawTopic::share(&frame, topic).map_err(|_| DecodeError::InvalidUtf8)?;
        Self::decode_after_topic(frame, topic_end, flags, topic, version)
    }

    /// The rest of [`Publish::decode`] once the topic is read (its UTF-8
    /// checked, its name check pending): `frame[topic_end..]` holds the
    /// packet id (QoS 1 and 2), the MQTT 5 properties and the payload.
    #[inline(always)]
    #[allow(clippy::inline_always)] // PUBLISH decode hot path; measured with callgrind
    fn decode_after_topic(
        frame: Bytes,
        topic_end: usize,
        flags: (bool, QoS, bool),
        topic: RawTopic,
        version: ProtocolVersion,
    ) -> Result<Option<Packet>, DecodeError> {
        let (dup, qos, retain) = flags;
        let bytes: &[u8] = &frame;
        let Some((packet_id, pos)) = variable_header_end(bytes, topic_end, qos, version)? else {
            let publish = Self::decode_with_properties(frame, topic_end, flags, topic)?;
            return Ok(Some(Packet::Publish(publish)));
        };
        // Design: the payload is cut before the topic's name check, not
        // after: the other order runs 13 fewer instructions but is ~3 ns
        // slower (`decode_loop`), `advance` then reading the frozen handle
        // just stored (doc/benchmarks.md, "Codec").
        let payload = rest(frame, pos);
        // Without properties there is no Topic Alias to stand for an empty
        // topic (MQTT 5.0 §3.3.2.1, §3.3.2.3.4).
        if version.is_v5() && topic.is_empty() {
            return Err(DecodeError::EmptyTopicWithoutAlias);
        }
        let topic = topic_name(topic)?;
        Ok(Some(Packet::Publish(Self {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties: PublishProps::new(),
            payload,
        })))
    }

    /// The end of [`Publish::decode`] for an MQTT 5 PUBLISH with a
    /// non-empty property list: `frame[topic_end..]` holds the packet id
    /// (QoS 1 and 2), the properties and the payload.
    #[inline(never)]
    fn decode_with_properties(
        frame: Bytes,
        topic_end: usize,
        (dup, qos, retain): (bool, QoS, bool),
        topic: RawTopic,
    ) -> Result<Self, DecodeError> {
        let mut r = Reader::new(frame, topic_end);
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(r.packet_id(PacketType::Publish)?)
        };
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
            properties: properties.into(),
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
        dst.binary(self.topic.as_bytes());
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

/// DUP, QoS and RETAIN of a PUBLISH first byte; QoS 3 is malformed
/// [MQTT-3.3.1-4].
#[inline]
fn publish_flags(first: u8) -> Result<(bool, QoS, bool), DecodeError> {
    let qos = QoS::try_from((first >> 1) & 0x03).map_err(|_| DecodeError::InvalidQoS)?;
    Ok((first & 0x08 != 0, qos, first & 0x01 != 0))
}

/// Reads what follows the topic name in a PUBLISH whose frame is `bytes`:
/// the packet id (QoS 1 and 2) and, at MQTT 5, an empty property list.
/// Gives the packet id and where the payload starts, or `None` when an MQTT
/// 5 property list is not empty.
#[inline(always)]
#[allow(clippy::inline_always)] // PUBLISH decode hot path; measured with callgrind
fn variable_header_end(
    bytes: &[u8],
    topic_end: usize,
    qos: QoS,
    version: ProtocolVersion,
) -> Result<Option<(Option<PacketId>, usize)>, DecodeError> {
    let mut pos = topic_end;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        let Some(&[hi, lo]) = bytes.get(pos..).and_then(<[u8]>::first_chunk) else {
            return Err(DecodeError::Truncated);
        };
        pos += 2;
        // [MQTT-2.3.1-1]
        Some(
            PacketId::new(u16::from_be_bytes([hi, lo])).ok_or(DecodeError::ZeroPacketId {
                packet_type: PacketType::Publish,
            })?,
        )
    };
    if version.is_v5() {
        match bytes.get(pos) {
            // The common MQTT 5 case: an empty property list.
            Some(0) => pos += 1,
            Some(_) => return Ok(None),
            None => return Err(DecodeError::Truncated),
        }
    }
    Ok(Some((packet_id, pos)))
}

/// The payload: `frame` from `pos` on (no new handle, no reference count).
/// `pos` is within the frame: every field before it was bounds-checked.
#[inline(always)]
#[allow(clippy::inline_always)] // PUBLISH decode hot path; measured with callgrind
fn rest(mut frame: Bytes, pos: usize) -> Bytes {
    frame.advance(pos.min(frame.len()));
    frame
}

/// Checks a PUBLISH topic name: [MQTT-3.3.2-2] no wildcards;
/// [MQTT-4.7.3-1] not empty; [MQTT-1.5.3-2] no U+0000.
#[inline(always)]
#[allow(clippy::inline_always)] // PUBLISH decode hot path; measured with callgrind
fn topic_name(topic: RawTopic) -> Result<TopicName, DecodeError> {
    topic.into_name().map_err(|e| match e {
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
