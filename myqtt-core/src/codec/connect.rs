//! CONNECT and CONNACK (MQTT 3.1.1 §3.1–3.2, MQTT 5.0 §3.1–3.2).

use bytes::Bytes;

use super::error::{DecodeError, EncodeError};
use super::properties::{ConnAckProperties, ConnectProperties, PropertyList, WillProperties};
use super::wire::{Reader, Sink, check_len};
use super::{PacketType, ProtocolVersion, QoS, ReasonCode};
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

// CONNECT flags (MQTT 3.1.1 §3.1.2.3, MQTT 5.0 §3.1.2.3).
const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN_START: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const FLAG_WILL_QOS_SHIFT: u8 = 3;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;

impl Connect {
    /// Decodes a CONNECT body; the protocol level it carries decides the
    /// rest of the layout.
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let name = r.string()?;
        let level = r.u8()?;
        let protocol = match (name.as_bytes().as_ref(), level) {
            (b"MQIsdp", 3) => ProtocolVersion::V31,
            (b"MQTT", 4) => ProtocolVersion::V311,
            (b"MQTT", 5) => ProtocolVersion::V5,
            // [MQTT-3.1.2-1] [MQTT-3.1.2-2]
            _ => return Err(DecodeError::UnsupportedProtocol { name, level }),
        };
        let flags = r.u8()?;
        if flags & FLAG_RESERVED != 0 {
            return Err(DecodeError::ConnectReservedFlag); // [MQTT-3.1.2-3]
        }
        let will_flag = flags & FLAG_WILL != 0;
        let will_qos_bits = (flags >> FLAG_WILL_QOS_SHIFT) & 0x03;
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        if !will_flag && will_qos_bits != 0 {
            return Err(DecodeError::WillQoSWithoutWill);
        }
        if !will_flag && will_retain {
            return Err(DecodeError::WillRetainWithoutWill);
        }
        let will_qos = QoS::try_from(will_qos_bits).map_err(|_| DecodeError::InvalidWillQoS)?;
        let has_username = flags & FLAG_USERNAME != 0;
        let has_password = flags & FLAG_PASSWORD != 0;
        // MQTT 5 lifts this rule (MQTT 5.0 §3.1.2.9).
        if has_password && !has_username && !protocol.is_v5() {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let properties = if protocol.is_v5() {
            ConnectProperties::decode(r)?
        } else {
            ConnectProperties::default()
        };

        let client_id = r.string()?;
        let will = if will_flag {
            let properties = if protocol.is_v5() {
                WillProperties::decode(r)?
            } else {
                WillProperties::default()
            };
            let topic = TopicName::new(r.string()?).map_err(DecodeError::InvalidTopicName)?;
            let payload = r.binary()?;
            Some(LastWill {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(r.string()?)
        } else {
            None
        };
        let password = if has_password {
            Some(r.binary()?)
        } else {
            None
        };
        Ok(Self {
            protocol,
            clean_start: flags & FLAG_CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        let v5 = self.protocol.is_v5();
        check_len("client identifier", self.client_id.as_bytes())?;
        if let Some(will) = &self.will {
            if will.topic.is_empty() {
                return Err(EncodeError::EmptyTopic);
            }
            check_len("will payload", &will.payload)?;
            if v5 {
                will.properties.check()?;
            }
        }
        if let Some(username) = &self.username {
            check_len("user name", username.as_bytes())?;
        }
        if let Some(password) = &self.password {
            check_len("password", password)?;
            if self.username.is_none() && !v5 {
                return Err(EncodeError::PasswordWithoutUsername);
            }
        }
        if v5 { self.properties.check() } else { Ok(()) }
    }

    pub(crate) fn write<S: Sink>(&self, dst: &mut S) {
        let v5 = self.protocol.is_v5();
        dst.binary(self.protocol.protocol_name().as_bytes());
        dst.u8(self.protocol.level());
        let mut flags = 0;
        if self.clean_start {
            flags |= FLAG_CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | (will.qos.as_u8() << FLAG_WILL_QOS_SHIFT);
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        dst.u8(flags);
        dst.u16(self.keep_alive);
        if v5 {
            self.properties.write(dst);
        }
        dst.binary(self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if v5 {
                will.properties.write(dst);
            }
            dst.binary(will.topic.as_bytes());
            dst.binary(&will.payload);
        }
        if let Some(username) = &self.username {
            dst.binary(username.as_bytes());
        }
        if let Some(password) = &self.password {
            dst.binary(password);
        }
    }
}

impl ConnAck {
    /// Decodes a CONNACK body at `version`.
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        // MQTT 3.1 has no Session Present flag: the whole byte is reserved.
        let reserved = if version == ProtocolVersion::V31 {
            0xFF
        } else {
            0xFE
        };
        if flags & reserved != 0 {
            return Err(DecodeError::ConnAckReservedFlags { flags });
        }
        let session_present = flags & 0x01 != 0;
        let code = r.u8()?;
        let invalid = DecodeError::InvalidReasonCode {
            packet_type: PacketType::ConnAck,
            code,
        };
        let reason_code = if version.is_v5() {
            ReasonCode::try_from(code)
                .ok()
                .filter(|rc| rc.is_allowed_in(PacketType::ConnAck))
                .ok_or(invalid)?
        } else {
            ReasonCode::from_connack_return_code(code).ok_or(invalid)?
        };
        if session_present && !reason_code.is_success() {
            return Err(DecodeError::SessionPresentWithError);
        }
        let properties = if version.is_v5() {
            ConnAckProperties::decode(r)?
        } else {
            ConnAckProperties::default()
        };
        Ok(Self {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if !self.reason_code.is_allowed_in(PacketType::ConnAck) {
            return Err(EncodeError::ReasonCodeNotAllowed {
                packet_type: PacketType::ConnAck,
                code: self.reason_code,
            });
        }
        if self.session_present && !self.reason_code.is_success() {
            return Err(EncodeError::SessionPresentWithError);
        }
        if version.is_v5() {
            self.properties.check()
        } else {
            Ok(())
        }
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, dst: &mut S) {
        let session_present = self.session_present && version != ProtocolVersion::V31;
        dst.u8(u8::from(session_present));
        if version.is_v5() {
            dst.u8(self.reason_code.as_u8());
            self.properties.write(dst);
        } else {
            dst.u8(self.reason_code.to_connack_return_code());
        }
    }
}
