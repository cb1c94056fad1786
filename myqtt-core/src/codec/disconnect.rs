//! DISCONNECT and AUTH (MQTT 3.1.1 §3.14, MQTT 5.0 §3.14–3.15).

use super::error::{DecodeError, EncodeError};
use super::properties::{AuthProperties, DisconnectProperties, PropertyList};
use super::wire::{Reader, Sink};
use super::{PacketType, ProtocolVersion, ReasonCode};

/// A DISCONNECT packet. At levels 3 and 4 it has no body: the reason code
/// is `Success` and the properties are empty. At MQTT 5 it may be sent by
/// either side [MQTT 5.0 §3.14].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Why the connection ends; `Success` is a normal disconnection.
    pub reason_code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A normal disconnection without properties.
    pub fn normal() -> Self {
        Self::with_reason(ReasonCode::Success)
    }

    /// A disconnection with `reason_code` and no properties.
    pub fn with_reason(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }
}

/// An AUTH packet (MQTT 5 only): a step of enhanced authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// `Success`, `ContinueAuthentication` or `ReAuthenticate` [MQTT-3.15.2-1].
    pub reason_code: ReasonCode,
    /// Authentication method and data.
    pub properties: AuthProperties,
}

/// Reads the reason code of a DISCONNECT or AUTH: absent means Success.
fn read_reason(r: &mut Reader, packet_type: PacketType) -> Result<ReasonCode, DecodeError> {
    if r.is_empty() {
        return Ok(ReasonCode::Success);
    }
    let code = r.u8()?;
    ReasonCode::try_from(code)
        .ok()
        .filter(|rc| rc.is_allowed_in(packet_type))
        .ok_or(DecodeError::InvalidReasonCode { packet_type, code })
}

fn check_reason(code: ReasonCode, packet_type: PacketType) -> Result<(), EncodeError> {
    if code.is_allowed_in(packet_type) {
        Ok(())
    } else {
        Err(EncodeError::ReasonCodeNotAllowed { packet_type, code })
    }
}

impl Disconnect {
    /// Decodes a DISCONNECT body: empty before MQTT 5; at MQTT 5 the reason
    /// code and the property length may each be left out (MQTT 5.0
    /// §3.14.2.1, §3.14.2.2.1).
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        if !version.is_v5() {
            return Ok(Self::normal());
        }
        let reason_code = read_reason(r, PacketType::Disconnect)?;
        let properties = if r.is_empty() {
            DisconnectProperties::default()
        } else {
            DisconnectProperties::decode(r)?
        };
        Ok(Self {
            reason_code,
            properties,
        })
    }

    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if !version.is_v5() {
            return Ok(());
        }
        check_reason(self.reason_code, PacketType::Disconnect)?;
        self.properties.check()
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, dst: &mut S) {
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

impl Auth {
    /// Decodes an AUTH body (MQTT 5.0 §3.15.2): an empty body is Success
    /// without properties.
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let reason_code = read_reason(r, PacketType::Auth)?;
        let properties = if r.is_empty() {
            AuthProperties::default()
        } else {
            AuthProperties::decode(r)?
        };
        Ok(Self {
            reason_code,
            properties,
        })
    }

    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        check_reason(self.reason_code, PacketType::Auth)?;
        self.properties.check()
    }

    pub(crate) fn write<S: Sink>(&self, dst: &mut S) {
        if self.reason_code == ReasonCode::Success && self.properties.is_empty() {
            return;
        }
        dst.u8(self.reason_code.as_u8());
        self.properties.write(dst);
    }
}
