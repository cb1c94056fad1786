//! DISCONNECT and AUTH (MQTT 3.1.1 §3.14, MQTT 5.0 §3.14–3.15).

use super::ReasonCode;
use super::properties::{AuthProperties, DisconnectProperties};

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
