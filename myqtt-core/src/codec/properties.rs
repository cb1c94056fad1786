//! MQTT 5.0 properties (§2.2.2), one struct per packet family so that a
//! property can only be set where the specification allows it.

use bytes::Bytes;

use crate::bytestr::ByteStr;
use crate::topic::TopicName;

/// User properties: name/value pairs, order kept, duplicates allowed
/// (MQTT 5.0 §3.1.2.11.8).
pub type UserProperties = Vec<(ByteStr, ByteStr)>;

/// Properties of a CONNECT (MQTT 5.0 §3.1.2.11).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)] // the names are the specification's
pub struct ConnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub user_properties: UserProperties,
    pub authentication_method: Option<ByteStr>,
    pub authentication_data: Option<Bytes>,
}

/// Properties of a Will message inside CONNECT (MQTT 5.0 §3.1.3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct WillProperties {
    pub will_delay_interval: Option<u32>,
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<ByteStr>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
}

/// Properties of a CONNACK (MQTT 5.0 §3.2.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ConnAckProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_qos: Option<crate::codec::QoS>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<u32>,
    pub assigned_client_identifier: Option<ByteStr>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<ByteStr>,
    pub user_properties: UserProperties,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<ByteStr>,
    pub server_reference: Option<ByteStr>,
    pub authentication_method: Option<ByteStr>,
    pub authentication_data: Option<Bytes>,
}

/// Properties of a PUBLISH (MQTT 5.0 §3.3.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PublishProperties {
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    /// Non-zero [MQTT-3.3.2-8].
    pub topic_alias: Option<u16>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
    /// Each in 1..=268,435,455; only server-to-client [MQTT-3.3.4-6].
    pub subscription_identifiers: Vec<u32>,
    pub content_type: Option<ByteStr>,
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK
/// (MQTT 5.0 §3.4.2.2 and the sections that refer to it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct AckProperties {
    pub reason_string: Option<ByteStr>,
    pub user_properties: UserProperties,
}

/// Properties of a SUBSCRIBE (MQTT 5.0 §3.8.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SubscribeProperties {
    /// In 1..=268,435,455 [MQTT-3.8.2.1.2].
    pub subscription_identifier: Option<u32>,
    pub user_properties: UserProperties,
}

/// Properties of an UNSUBSCRIBE (MQTT 5.0 §3.10.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UnsubscribeProperties {
    pub user_properties: UserProperties,
}

/// Properties of a DISCONNECT (MQTT 5.0 §3.14.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct DisconnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<ByteStr>,
    pub user_properties: UserProperties,
    pub server_reference: Option<ByteStr>,
}

/// Properties of an AUTH (MQTT 5.0 §3.15.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct AuthProperties {
    pub authentication_method: Option<ByteStr>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<ByteStr>,
    pub user_properties: UserProperties,
}
