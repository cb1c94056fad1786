//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (MQTT 3.1.1 §3.8–3.11,
//! MQTT 5.0 §3.8–3.11).

use super::properties::{AckProperties, SubscribeProperties, UnsubscribeProperties};
use super::{PacketId, QoS, ReasonCode};
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
