//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (MQTT 3.1.1 §3.8–3.11,
//! MQTT 5.0 §3.8–3.11).

use super::error::{DecodeError, EncodeError};
use super::properties::{AckProperties, PropertyList, SubscribeProperties, UnsubscribeProperties};
use super::wire::{Reader, Sink};
use super::{PacketId, PacketType, ProtocolVersion, QoS, ReasonCode};
use crate::topic::TopicFilter;

/// What to do with retained messages when a subscription is made
/// (MQTT 5.0 §3.8.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not already exist.
    SendAtSubscribeIfNew = 1,
    /// 2: do not send retained messages.
    DoNotSend = 2,
}

/// The options byte of one SUBSCRIBE entry (MQTT 5.0 §3.8.3.1). At levels 3
/// and 4 only `qos` is on the wire; the others keep their defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// The maximum QoS the client wants to receive.
    pub qos: QoS,
    /// Do not send the client its own publications [MQTT-3.8.3-3].
    pub no_local: bool,
    /// Keep the RETAIN flag as published when forwarding.
    pub retain_as_published: bool,
    /// What to do with retained messages at subscribe time.
    pub retain_handling: RetainHandling,
}

/// A SUBSCRIBE packet; never has zero filters [MQTT-3.8.3-3].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet id (non-zero).
    pub packet_id: PacketId,
    /// The filters with their options, in order.
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
    /// MQTT 5 properties; empty at levels 3 and 4.
    pub properties: SubscribeProperties,
}

/// A SUBACK packet: one reason code per filter, in the SUBSCRIBE's order.
///
/// Codes are in MQTT 5 terms: `Success`/`GrantedQoS1`/`GrantedQoS2`, or a
/// failure, which levels 3 and 4 carry as 0x80.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE's packet id.
    pub packet_id: PacketId,
    /// One per filter.
    pub reason_codes: Vec<ReasonCode>,
    /// MQTT 5 properties; empty at levels 3 and 4.
    pub properties: AckProperties,
}

/// An UNSUBSCRIBE packet; never has zero filters [MQTT-3.10.3-2].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet id (non-zero).
    pub packet_id: PacketId,
    /// The filters to remove, in order.
    pub filters: Vec<TopicFilter>,
    /// MQTT 5 properties; empty at levels 3 and 4.
    pub properties: UnsubscribeProperties,
}

/// An UNSUBACK packet. At MQTT 5 one reason code per filter; at levels 3
/// and 4 `reason_codes` is empty on the wire (decoded as empty, ignored when
/// encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The UNSUBSCRIBE's packet id.
    pub packet_id: PacketId,
    /// One per filter (MQTT 5 only).
    pub reason_codes: Vec<ReasonCode>,
    /// MQTT 5 properties; empty at levels 3 and 4.
    pub properties: AckProperties,
}

impl SubscriptionOptions {
    /// Decodes an options byte for `filter` ([MQTT-3.8.3-4]; 5.0:
    /// [MQTT-3.8.3-5], §3.8.3.1, [MQTT-3.8.3-4]).
    fn decode(
        options: u8,
        version: ProtocolVersion,
        filter: &TopicFilter,
    ) -> Result<Self, DecodeError> {
        let invalid = DecodeError::InvalidSubscriptionOptions { options };
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if options & reserved != 0 {
            return Err(invalid);
        }
        let qos = QoS::try_from(options & 0x03).map_err(|_| {
            if version.is_v5() {
                // MQTT 5.0 §3.8.3.1: a Protocol Error, not a malformed packet.
                DecodeError::InvalidSubscriptionQoS
            } else {
                invalid
            }
        })?;
        if !version.is_v5() {
            return Ok(Self {
                qos,
                ..Self::default()
            });
        }
        let no_local = options & 0x04 != 0;
        let retain_as_published = options & 0x08 != 0;
        let retain_handling = match (options >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        if no_local && filter.is_shared() {
            return Err(DecodeError::NoLocalOnSharedSubscription);
        }
        Ok(Self {
            qos,
            no_local,
            retain_as_published,
            retain_handling,
        })
    }

    /// The options byte; only QoS before MQTT 5.
    fn to_byte(self, version: ProtocolVersion) -> u8 {
        if version.is_v5() {
            self.qos.as_u8()
                | (u8::from(self.no_local) << 2)
                | (u8::from(self.retain_as_published) << 3)
                | ((self.retain_handling as u8) << 4)
        } else {
            self.qos.as_u8()
        }
    }
}

fn read_filter(r: &mut Reader) -> Result<TopicFilter, DecodeError> {
    TopicFilter::new(r.string()?).map_err(DecodeError::InvalidTopicFilter)
}

fn invalid_code(packet_type: PacketType, code: ReasonCode) -> EncodeError {
    EncodeError::ReasonCodeNotAllowed { packet_type, code }
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id(PacketType::Subscribe)?;
        let properties = if version.is_v5() {
            SubscribeProperties::decode(r)?
        } else {
            SubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = read_filter(r)?;
            let options = SubscriptionOptions::decode(r.u8()?, version, &filter)?;
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::SubscribeWithoutFilters); // [MQTT-3.8.3-3]
        }
        Ok(Self {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::SubscribeWithoutFilters);
        }
        if version.is_v5() {
            if self
                .filters
                .iter()
                .any(|(f, o)| o.no_local && f.is_shared())
            {
                return Err(EncodeError::NoLocalOnSharedSubscription);
            }
            self.properties.check()?;
        }
        Ok(())
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, dst: &mut S) {
        dst.u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(dst);
        }
        for (filter, options) in &self.filters {
            dst.binary(filter.as_byte_str().as_bytes());
            dst.u8(options.to_byte(version));
        }
    }
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_type = PacketType::SubAck;
        let packet_id = r.packet_id(packet_type)?;
        let properties = if version.is_v5() {
            AckProperties::decode(r, packet_type)?
        } else {
            AckProperties::default()
        };
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8()?;
            let rc = if version.is_v5() {
                ReasonCode::try_from(code)
                    .ok()
                    .filter(|rc| rc.is_allowed_in(packet_type))
            } else {
                ReasonCode::from_suback_return_code(code)
            };
            reason_codes.push(rc.ok_or(DecodeError::InvalidReasonCode { packet_type, code })?);
        }
        Ok(Self {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if let Some(&code) = self
            .reason_codes
            .iter()
            .find(|rc| !rc.is_allowed_in(PacketType::SubAck))
        {
            return Err(invalid_code(PacketType::SubAck, code));
        }
        if version.is_v5() {
            self.properties.check()
        } else {
            Ok(())
        }
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, dst: &mut S) {
        dst.u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(dst);
            for rc in &self.reason_codes {
                dst.u8(rc.as_u8());
            }
        } else {
            for rc in &self.reason_codes {
                dst.u8(rc.to_suback_return_code());
            }
        }
    }
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id(PacketType::Unsubscribe)?;
        let properties = if version.is_v5() {
            UnsubscribeProperties::decode(r)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(read_filter(r)?);
        }
        if filters.is_empty() {
            return Err(DecodeError::UnsubscribeWithoutFilters); // [MQTT-3.10.3-2]
        }
        Ok(Self {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::UnsubscribeWithoutFilters);
        }
        if version.is_v5() {
            self.properties.check()
        } else {
            Ok(())
        }
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, dst: &mut S) {
        dst.u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(dst);
        }
        for filter in &self.filters {
            dst.binary(filter.as_byte_str().as_bytes());
        }
    }
}

impl UnsubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_type = PacketType::UnsubAck;
        let packet_id = r.packet_id(packet_type)?;
        if !version.is_v5() {
            return Ok(Self {
                packet_id,
                reason_codes: Vec::new(),
                properties: AckProperties::default(),
            });
        }
        let properties = AckProperties::decode(r, packet_type)?;
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8()?;
            let rc = ReasonCode::try_from(code)
                .ok()
                .filter(|rc| rc.is_allowed_in(packet_type));
            reason_codes.push(rc.ok_or(DecodeError::InvalidReasonCode { packet_type, code })?);
        }
        Ok(Self {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if !version.is_v5() {
            return Ok(());
        }
        if let Some(&code) = self
            .reason_codes
            .iter()
            .find(|rc| !rc.is_allowed_in(PacketType::UnsubAck))
        {
            return Err(invalid_code(PacketType::UnsubAck, code));
        }
        self.properties.check()
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, dst: &mut S) {
        dst.u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(dst);
            for rc in &self.reason_codes {
                dst.u8(rc.as_u8());
            }
        }
    }
}
