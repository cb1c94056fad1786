//! MQTT 5.0 reason codes (§2.4) and their MQTT 3.1 / 3.1.1 counterparts.

/// An MQTT 5.0 reason code (MQTT 5.0 §2.4, table 2-6).
///
/// The engine works in MQTT 5 terms everywhere; the codec maps these to the
/// MQTT 3.1.1 CONNACK return codes and SUBACK return codes when it encodes for
/// an older protocol level, and back when it decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)] // the names are the specification's
pub enum ReasonCode {
    /// Success, Normal disconnection, or Granted QoS 0, depending on the packet.
    Success = 0x00,
    GrantedQoS1 = 0x01,
    GrantedQoS2 = 0x02,
    DisconnectWithWillMessage = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QoSNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

impl ReasonCode {
    /// The code's byte on the wire.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// True for codes below 0x80 (success); 0x80 and above are failures.
    pub const fn is_success(self) -> bool {
        (self as u8) < 0x80
    }
}

impl TryFrom<u8> for ReasonCode {
    type Error = u8;

    /// Fails with the byte itself when it is not a defined reason code.
    fn try_from(b: u8) -> Result<Self, u8> {
        use ReasonCode as R;
        Ok(match b {
            0x00 => R::Success,
            0x01 => R::GrantedQoS1,
            0x02 => R::GrantedQoS2,
            0x04 => R::DisconnectWithWillMessage,
            0x10 => R::NoMatchingSubscribers,
            0x11 => R::NoSubscriptionExisted,
            0x18 => R::ContinueAuthentication,
            0x19 => R::ReAuthenticate,
            0x80 => R::UnspecifiedError,
            0x81 => R::MalformedPacket,
            0x82 => R::ProtocolError,
            0x83 => R::ImplementationSpecificError,
            0x84 => R::UnsupportedProtocolVersion,
            0x85 => R::ClientIdentifierNotValid,
            0x86 => R::BadUserNameOrPassword,
            0x87 => R::NotAuthorized,
            0x88 => R::ServerUnavailable,
            0x89 => R::ServerBusy,
            0x8A => R::Banned,
            0x8B => R::ServerShuttingDown,
            0x8C => R::BadAuthenticationMethod,
            0x8D => R::KeepAliveTimeout,
            0x8E => R::SessionTakenOver,
            0x8F => R::TopicFilterInvalid,
            0x90 => R::TopicNameInvalid,
            0x91 => R::PacketIdentifierInUse,
            0x92 => R::PacketIdentifierNotFound,
            0x93 => R::ReceiveMaximumExceeded,
            0x94 => R::TopicAliasInvalid,
            0x95 => R::PacketTooLarge,
            0x96 => R::MessageRateTooHigh,
            0x97 => R::QuotaExceeded,
            0x98 => R::AdministrativeAction,
            0x99 => R::PayloadFormatInvalid,
            0x9A => R::RetainNotSupported,
            0x9B => R::QoSNotSupported,
            0x9C => R::UseAnotherServer,
            0x9D => R::ServerMoved,
            0x9E => R::SharedSubscriptionsNotSupported,
            0x9F => R::ConnectionRateExceeded,
            0xA0 => R::MaximumConnectTime,
            0xA1 => R::SubscriptionIdentifiersNotSupported,
            0xA2 => R::WildcardSubscriptionsNotSupported,
            other => return Err(other),
        })
    }
}

use super::PacketType;

impl ReasonCode {
    /// True if MQTT 5 allows this code in a packet of type `packet_type`
    /// (MQTT 5.0 §2.4 table 2-6 and each packet's reason code table).
    pub fn is_allowed_in(self, packet_type: PacketType) -> bool {
        use ReasonCode as R;
        match packet_type {
            PacketType::ConnAck => matches!(
                self,
                R::Success
                    | R::UnspecifiedError
                    | R::MalformedPacket
                    | R::ProtocolError
                    | R::ImplementationSpecificError
                    | R::UnsupportedProtocolVersion
                    | R::ClientIdentifierNotValid
                    | R::BadUserNameOrPassword
                    | R::NotAuthorized
                    | R::ServerUnavailable
                    | R::ServerBusy
                    | R::Banned
                    | R::BadAuthenticationMethod
                    | R::TopicNameInvalid
                    | R::PacketTooLarge
                    | R::QuotaExceeded
                    | R::PayloadFormatInvalid
                    | R::RetainNotSupported
                    | R::QoSNotSupported
                    | R::UseAnotherServer
                    | R::ServerMoved
                    | R::ConnectionRateExceeded
            ),
            PacketType::PubAck | PacketType::PubRec => matches!(
                self,
                R::Success
                    | R::NoMatchingSubscribers
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicNameInvalid
                    | R::PacketIdentifierInUse
                    | R::QuotaExceeded
                    | R::PayloadFormatInvalid
            ),
            PacketType::PubRel | PacketType::PubComp => {
                matches!(self, R::Success | R::PacketIdentifierNotFound)
            }
            PacketType::SubAck => matches!(
                self,
                R::Success
                    | R::GrantedQoS1
                    | R::GrantedQoS2
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicFilterInvalid
                    | R::PacketIdentifierInUse
                    | R::QuotaExceeded
                    | R::SharedSubscriptionsNotSupported
                    | R::SubscriptionIdentifiersNotSupported
                    | R::WildcardSubscriptionsNotSupported
            ),
            PacketType::UnsubAck => matches!(
                self,
                R::Success
                    | R::NoSubscriptionExisted
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicFilterInvalid
                    | R::PacketIdentifierInUse
            ),
            PacketType::Disconnect => !matches!(
                self,
                R::GrantedQoS1
                    | R::GrantedQoS2
                    | R::NoMatchingSubscribers
                    | R::NoSubscriptionExisted
                    | R::ContinueAuthentication
                    | R::ReAuthenticate
                    | R::ClientIdentifierNotValid
                    | R::UnsupportedProtocolVersion
                    | R::BadUserNameOrPassword
                    | R::ServerUnavailable
                    | R::Banned
                    | R::BadAuthenticationMethod
                    | R::PacketIdentifierInUse
                    | R::PacketIdentifierNotFound
            ),
            PacketType::Auth => {
                matches!(
                    self,
                    R::Success | R::ContinueAuthentication | R::ReAuthenticate
                )
            }
            PacketType::Connect
            | PacketType::Publish
            | PacketType::Subscribe
            | PacketType::Unsubscribe
            | PacketType::PingReq
            | PacketType::PingResp => false,
        }
    }

    /// The MQTT 3.1 / 3.1.1 CONNACK return code for this reason code
    /// (MQTT 3.1.1 §3.2.2.3): the five refusals 3.1.1 knows, and the closest
    /// of them for the MQTT 5 failures it does not.
    pub const fn to_connack_return_code(self) -> u8 {
        use ReasonCode as R;
        match self {
            R::Success => 0x00,
            R::UnsupportedProtocolVersion => 0x01,
            R::ClientIdentifierNotValid => 0x02,
            R::BadUserNameOrPassword | R::BadAuthenticationMethod => 0x04,
            R::NotAuthorized | R::Banned => 0x05,
            _ => 0x03,
        }
    }

    /// The reason code for an MQTT 3.1 / 3.1.1 CONNACK return code; `None`
    /// for the reserved values 6..=255.
    pub const fn from_connack_return_code(code: u8) -> Option<Self> {
        match code {
            0x00 => Some(Self::Success),
            0x01 => Some(Self::UnsupportedProtocolVersion),
            0x02 => Some(Self::ClientIdentifierNotValid),
            0x03 => Some(Self::ServerUnavailable),
            0x04 => Some(Self::BadUserNameOrPassword),
            0x05 => Some(Self::NotAuthorized),
            _ => None,
        }
    }

    /// The MQTT 3.1 / 3.1.1 SUBACK return code: the granted QoS, or 0x80
    /// for any failure (MQTT 3.1.1 §3.9.3).
    pub const fn to_suback_return_code(self) -> u8 {
        match self {
            Self::Success => 0x00,
            Self::GrantedQoS1 => 0x01,
            Self::GrantedQoS2 => 0x02,
            _ => 0x80,
        }
    }

    /// The reason code for an MQTT 3.1 / 3.1.1 SUBACK return code; 0x80
    /// becomes `UnspecifiedError`, other values are `None`.
    pub const fn from_suback_return_code(code: u8) -> Option<Self> {
        match code {
            0x00 => Some(Self::Success),
            0x01 => Some(Self::GrantedQoS1),
            0x02 => Some(Self::GrantedQoS2),
            0x80 => Some(Self::UnspecifiedError),
            _ => None,
        }
    }
}
