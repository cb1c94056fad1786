//! MQTT 5.0 properties (§2.2.2), one struct per packet family so that a
//! property can only be set where the specification allows it.

use std::sync::Arc;

use bytes::Bytes;

use super::error::{DecodeError, EncodeError};
use super::wire::{Reader, Sink, check_len, measure};
use super::{PacketType, QoS};
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

/// The properties of a [`Publish`](super::Publish), behind a shared
/// pointer: the common empty set is one null pointer and allocates nothing,
/// and a clone (one per subscriber when the broker fans a message out) is a
/// reference count.
///
/// Reads go through `Deref`: `publish.properties.topic_alias` works whether
/// or not anything is set (an empty set reads as
/// [`PublishProperties::default`]). Writes go through
/// [`make_mut`](Self::make_mut), which allocates on first use and copies a
/// set shared with a clone (as [`Arc::make_mut`] does), through
/// [`update`](Self::update), which allocates only if the result is not
/// empty, or through [`get_mut`](Self::get_mut), which never allocates for
/// an empty set. Equality compares the properties, not the pointers.
///
/// ```
/// use myqtt_core::codec::{PublishProperties, PublishProps};
///
/// let mut props = PublishProps::default();
/// assert!(props.is_empty() && props.topic_alias.is_none());
/// props.update(|p| p.topic_alias = None); // still nothing allocated
/// assert!(props.get_mut().is_none());
/// props.make_mut().topic_alias = Some(7);
/// assert_eq!(props.topic_alias, Some(7));
/// let expected = PublishProperties { topic_alias: Some(7), ..Default::default() };
/// assert_eq!(props, PublishProps::from(expected));
/// ```
///
// Design: a `Publish` moves by value through the decoder, the session and
// the broker. With its 160 bytes of properties inline it was 232 bytes (and
// `Packet` 264): every move a `memcpy`, every drop a walk over eight empty
// fields. Behind a pointer it is 80 bytes and an empty set drops with one
// test (doc/benchmarks.md, "Codec").
#[derive(Clone, Default)]
pub struct PublishProps(Option<Arc<PublishProperties>>);

/// What an unallocated [`PublishProps`] reads as.
static NO_PUBLISH_PROPERTIES: PublishProperties = PublishProperties {
    payload_format_indicator: None,
    message_expiry_interval: None,
    topic_alias: None,
    response_topic: None,
    correlation_data: None,
    user_properties: Vec::new(),
    subscription_identifiers: Vec::new(),
    content_type: None,
};

impl PublishProps {
    /// No properties (allocates nothing).
    pub const fn new() -> Self {
        Self(None)
    }

    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(PublishProperties::is_empty)
    }

    /// The properties, for writing: allocates an empty set first if there
    /// is none, and copies a set shared with a clone.
    pub fn make_mut(&mut self) -> &mut PublishProperties {
        Arc::make_mut(self.0.get_or_insert_with(Arc::default))
    }

    /// The properties for writing if there are any (copied first if shared
    /// with a clone); `None`, allocating nothing, for an empty set.
    pub fn get_mut(&mut self) -> Option<&mut PublishProperties> {
        self.0.as_mut().map(Arc::make_mut)
    }

    /// Runs `f` on the properties, allocating only when there were none
    /// and `f` leaves some: clearing a property of an empty set is free.
    pub fn update(&mut self, f: impl FnOnce(&mut PublishProperties)) {
        if let Some(p) = self.get_mut() {
            f(p);
        } else {
            let mut p = PublishProperties::default();
            f(&mut p);
            *self = p.into();
        }
    }

    /// Takes the properties out, leaving an empty set.
    pub fn take(&mut self) -> PublishProperties {
        self.0.take().map(Arc::unwrap_or_clone).unwrap_or_default()
    }

    /// The properties by value (copied if shared with a clone).
    pub fn into_inner(self) -> PublishProperties {
        self.0.map(Arc::unwrap_or_clone).unwrap_or_default()
    }
}

impl std::ops::Deref for PublishProps {
    type Target = PublishProperties;

    #[inline]
    fn deref(&self) -> &PublishProperties {
        self.0.as_deref().unwrap_or(&NO_PUBLISH_PROPERTIES)
    }
}

impl From<PublishProperties> for PublishProps {
    /// Allocates for `p`, unless it is empty.
    fn from(p: PublishProperties) -> Self {
        if p.is_empty() {
            Self(None)
        } else {
            Self(Some(Arc::new(p)))
        }
    }
}

impl From<PublishProps> for PublishProperties {
    fn from(p: PublishProps) -> Self {
        p.into_inner()
    }
}

impl PartialEq for PublishProps {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for PublishProps {}

impl std::fmt::Debug for PublishProps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
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

// ---------------------------------------------------------------------------
// Wire format (MQTT 5.0 §2.2.2): a Variable Byte Integer length, then
// identifier/value pairs. Identifiers are Variable Byte Integers; all the
// defined ones fit one byte.

/// Property identifiers (MQTT 5.0 §2.2.2.2, table 2-4).
pub(crate) mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u32 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u32 = 0x02;
    pub const CONTENT_TYPE: u32 = 0x03;
    pub const RESPONSE_TOPIC: u32 = 0x08;
    pub const CORRELATION_DATA: u32 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u32 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u32 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u32 = 0x12;
    pub const SERVER_KEEP_ALIVE: u32 = 0x13;
    pub const AUTHENTICATION_METHOD: u32 = 0x15;
    pub const AUTHENTICATION_DATA: u32 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u32 = 0x17;
    pub const WILL_DELAY_INTERVAL: u32 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u32 = 0x19;
    pub const RESPONSE_INFORMATION: u32 = 0x1A;
    pub const SERVER_REFERENCE: u32 = 0x1C;
    pub const REASON_STRING: u32 = 0x1F;
    pub const RECEIVE_MAXIMUM: u32 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u32 = 0x22;
    pub const TOPIC_ALIAS: u32 = 0x23;
    pub const MAXIMUM_QOS: u32 = 0x24;
    pub const RETAIN_AVAILABLE: u32 = 0x25;
    pub const USER_PROPERTY: u32 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u32 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u32 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u32 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u32 = 0x2A;
}

/// The specification's name of a property identifier, for error messages.
pub(crate) fn property_name(property: u32) -> &'static str {
    match property {
        id::PAYLOAD_FORMAT_INDICATOR => "Payload Format Indicator",
        id::MESSAGE_EXPIRY_INTERVAL => "Message Expiry Interval",
        id::CONTENT_TYPE => "Content Type",
        id::RESPONSE_TOPIC => "Response Topic",
        id::CORRELATION_DATA => "Correlation Data",
        id::SUBSCRIPTION_IDENTIFIER => "Subscription Identifier",
        id::SESSION_EXPIRY_INTERVAL => "Session Expiry Interval",
        id::ASSIGNED_CLIENT_IDENTIFIER => "Assigned Client Identifier",
        id::SERVER_KEEP_ALIVE => "Server Keep Alive",
        id::AUTHENTICATION_METHOD => "Authentication Method",
        id::AUTHENTICATION_DATA => "Authentication Data",
        id::REQUEST_PROBLEM_INFORMATION => "Request Problem Information",
        id::WILL_DELAY_INTERVAL => "Will Delay Interval",
        id::REQUEST_RESPONSE_INFORMATION => "Request Response Information",
        id::RESPONSE_INFORMATION => "Response Information",
        id::SERVER_REFERENCE => "Server Reference",
        id::REASON_STRING => "Reason String",
        id::RECEIVE_MAXIMUM => "Receive Maximum",
        id::TOPIC_ALIAS_MAXIMUM => "Topic Alias Maximum",
        id::TOPIC_ALIAS => "Topic Alias",
        id::MAXIMUM_QOS => "Maximum QoS",
        id::RETAIN_AVAILABLE => "Retain Available",
        id::USER_PROPERTY => "User Property",
        id::MAXIMUM_PACKET_SIZE => "Maximum Packet Size",
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => "Wildcard Subscription Available",
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => "Subscription Identifier Available",
        id::SHARED_SUBSCRIPTION_AVAILABLE => "Shared Subscription Available",
        _ => "unknown",
    }
}

// --- reading and writing a list ---------------------------------------------

/// Reads a property list: its length, then calls `each(id, reader)` for
/// every property until the list is used up.
#[inline]
fn decode_list(
    r: &mut Reader,
    mut each: impl FnMut(u32, &mut Reader) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let len = r.varint()? as usize;
    if len == 0 {
        return Ok(());
    }
    r.limited(len, |list| {
        while !list.is_empty() {
            let property = list.varint()?;
            each(property, list)?;
        }
        Ok(())
    })
}

fn not_allowed(property: u32, packet_type: PacketType) -> DecodeError {
    DecodeError::PropertyNotAllowed {
        id: property,
        packet_type,
    }
}

/// A property list that can be checked, measured and written.
pub(crate) trait PropertyList {
    /// Writes the properties without the length prefix.
    fn write_content<S: Sink>(&self, dst: &mut S);

    /// Fails if a string or binary property is too long, or a value is one
    /// the receiver must reject.
    fn check(&self) -> Result<(), EncodeError>;

    /// Writes the length prefix and the properties.
    fn write<S: Sink>(&self, dst: &mut S) {
        let len = measure(|c| self.write_content(c));
        // The whole packet is checked against the remaining-length limit
        // before anything is written, so `len` fits a Variable Byte Integer.
        dst.varint(len as u32);
        self.write_content(dst);
    }
}

// --- one property: how it is read, written and checked ----------------------

/// The codec of one property, by the shape of its value (MQTT 5.0 §2.2.2.2,
/// table 2-4): read (a second occurrence refused, unless the property may
/// repeat), written (nothing when unset) and checked before encoding. The
/// per-packet tables of `property_list!` name one for each property.
trait Kind {
    /// The type of the struct field that holds the property.
    type Field;
    /// Reads the value of `property` (its identifier is read) into `slot`.
    fn read(slot: &mut Self::Field, property: u32, r: &mut Reader) -> Result<(), DecodeError>;
    /// Writes the identifier and the value, if set.
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Self::Field);
    /// Refuses a value the receiver would reject; `field` names a string or
    /// binary value in the error.
    fn check(
        _property: u32,
        _field: &'static str,
        _value: &Self::Field,
    ) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// Stores `value` in `slot`, refusing a second occurrence.
#[inline]
fn set<T>(slot: &mut Option<T>, property: u32, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty { id: property });
    }
    *slot = Some(value);
    Ok(())
}

/// A value of `property` the receiver must reject.
fn invalid(property: u32, value: u32) -> DecodeError {
    DecodeError::InvalidPropertyValue {
        id: property,
        value,
    }
}

/// Refuses 0 where the specification does.
fn check_nonzero(property: u32, v: Option<u32>) -> Result<(), EncodeError> {
    match v {
        Some(0) => Err(EncodeError::InvalidPropertyValue {
            id: property,
            value: 0,
        }),
        _ => Ok(()),
    }
}

/// Four-byte Integer.
struct U32;
/// Two-byte Integer.
struct U16;
/// Two-byte Integer that must not be 0.
struct NonZeroU16;
/// Four-byte Integer that must not be 0.
struct NonZeroU32;
/// Byte that must be 0 or 1.
struct Bool;
/// Maximum QoS: a byte, 0 or 1.
struct MaxQoS;
/// Topic Alias: a Two-byte Integer, not 0 [MQTT-3.3.2-8].
struct TopicAlias;
/// UTF-8 Encoded String.
struct Str;
/// Binary Data.
struct Bin;
/// Response Topic: a topic name, without wildcards [MQTT-3.3.2-14].
struct Topic;
/// User Property: a string pair that may repeat (MQTT 5.0 §3.1.2.11.8).
struct User;
/// Subscription Identifier of a SUBSCRIBE: a Variable Byte Integer,
/// 1..=268,435,455.
struct SubId;
/// Subscription Identifiers of a PUBLISH: may repeat (MQTT 5.0 §3.3.2.3.8).
struct SubIds;

impl Kind for U32 {
    type Field = Option<u32>;
    #[inline]
    fn read(slot: &mut Option<u32>, property: u32, r: &mut Reader) -> Result<(), DecodeError> {
        set(slot, property, r.u32()?)
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Option<u32>) {
        if let Some(v) = *value {
            dst.varint(property);
            dst.u32(v);
        }
    }
}

impl Kind for U16 {
    type Field = Option<u16>;
    #[inline]
    fn read(slot: &mut Option<u16>, property: u32, r: &mut Reader) -> Result<(), DecodeError> {
        set(slot, property, r.u16()?)
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Option<u16>) {
        if let Some(v) = *value {
            dst.varint(property);
            dst.u16(v);
        }
    }
}

impl Kind for NonZeroU16 {
    type Field = Option<u16>;
    #[inline]
    fn read(slot: &mut Option<u16>, property: u32, r: &mut Reader) -> Result<(), DecodeError> {
        match r.u16()? {
            0 => Err(invalid(property, 0)),
            v => set(slot, property, v),
        }
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Option<u16>) {
        U16::put(dst, property, value);
    }
    fn check(property: u32, _: &'static str, value: &Option<u16>) -> Result<(), EncodeError> {
        check_nonzero(property, value.map(u32::from))
    }
}

impl Kind for NonZeroU32 {
    type Field = Option<u32>;
    #[inline]
    fn read(slot: &mut Option<u32>, property: u32, r: &mut Reader) -> Result<(), DecodeError> {
        match r.u32()? {
            0 => Err(invalid(property, 0)),
            v => set(slot, property, v),
        }
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Option<u32>) {
        U32::put(dst, property, value);
    }
    fn check(property: u32, _: &'static str, value: &Option<u32>) -> Result<(), EncodeError> {
        check_nonzero(property, *value)
    }
}

impl Kind for Bool {
    type Field = Option<bool>;
    #[inline]
    fn read(slot: &mut Option<bool>, property: u32, r: &mut Reader) -> Result<(), DecodeError> {
        match r.u8()? {
            0 => set(slot, property, false),
            1 => set(slot, property, true),
            v => Err(invalid(property, u32::from(v))),
        }
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Option<bool>) {
        if let Some(v) = *value {
            dst.varint(property);
            dst.u8(u8::from(v));
        }
    }
}

impl Kind for MaxQoS {
    type Field = Option<QoS>;
    #[inline]
    fn read(slot: &mut Option<QoS>, property: u32, r: &mut Reader) -> Result<(), DecodeError> {
        match r.u8()? {
            0 => set(slot, property, QoS::AtMostOnce),
            1 => set(slot, property, QoS::AtLeastOnce),
            v => Err(invalid(property, u32::from(v))),
        }
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Option<QoS>) {
        if let Some(qos) = *value {
            dst.varint(property);
            dst.u8(qos.as_u8());
        }
    }
    fn check(property: u32, _: &'static str, value: &Option<QoS>) -> Result<(), EncodeError> {
        if *value == Some(QoS::ExactlyOnce) {
            return Err(EncodeError::InvalidPropertyValue {
                id: property,
                value: 2,
            });
        }
        Ok(())
    }
}

impl Kind for TopicAlias {
    type Field = Option<u16>;
    #[inline]
    fn read(slot: &mut Option<u16>, property: u32, r: &mut Reader) -> Result<(), DecodeError> {
        match r.u16()? {
            // [MQTT-3.3.2-8]
            0 => Err(DecodeError::TopicAliasZero),
            alias => set(slot, property, alias),
        }
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Option<u16>) {
        U16::put(dst, property, value);
    }
    fn check(property: u32, _: &'static str, value: &Option<u16>) -> Result<(), EncodeError> {
        check_nonzero(property, value.map(u32::from))
    }
}

impl Kind for Str {
    type Field = Option<ByteStr>;
    #[inline]
    fn read(slot: &mut Option<ByteStr>, property: u32, r: &mut Reader) -> Result<(), DecodeError> {
        set(slot, property, r.string()?)
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Option<ByteStr>) {
        if let Some(s) = value {
            dst.varint(property);
            dst.binary(s.as_bytes());
        }
    }
    fn check(_: u32, field: &'static str, value: &Option<ByteStr>) -> Result<(), EncodeError> {
        value
            .as_ref()
            .map_or(Ok(()), |s| check_len(field, s.as_bytes()))
    }
}

impl Kind for Bin {
    type Field = Option<Bytes>;
    #[inline]
    fn read(slot: &mut Option<Bytes>, property: u32, r: &mut Reader) -> Result<(), DecodeError> {
        set(slot, property, r.binary()?)
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Option<Bytes>) {
        if let Some(b) = value {
            dst.varint(property);
            dst.binary(b);
        }
    }
    fn check(_: u32, field: &'static str, value: &Option<Bytes>) -> Result<(), EncodeError> {
        value.as_ref().map_or(Ok(()), |b| check_len(field, b))
    }
}

impl Kind for Topic {
    type Field = Option<TopicName>;
    #[inline]
    fn read(
        slot: &mut Option<TopicName>,
        property: u32,
        r: &mut Reader,
    ) -> Result<(), DecodeError> {
        let topic = TopicName::new(r.string()?).map_err(DecodeError::InvalidTopicName)?;
        set(slot, property, topic)
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Option<TopicName>) {
        if let Some(t) = value {
            dst.varint(property);
            dst.binary(t.as_bytes());
        }
    }
}

impl Kind for User {
    type Field = UserProperties;
    #[inline]
    fn read(slot: &mut UserProperties, _: u32, r: &mut Reader) -> Result<(), DecodeError> {
        let name = r.string()?;
        let value = r.string()?;
        slot.push((name, value));
        Ok(())
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &UserProperties) {
        for (name, value) in value {
            dst.varint(property);
            dst.binary(name.as_bytes());
            dst.binary(value.as_bytes());
        }
    }
    fn check(_: u32, _: &'static str, value: &UserProperties) -> Result<(), EncodeError> {
        for (name, value) in value {
            check_len("user property name", name.as_bytes())?;
            check_len("user property value", value.as_bytes())?;
        }
        Ok(())
    }
}

impl Kind for SubId {
    type Field = Option<u32>;
    #[inline]
    fn read(slot: &mut Option<u32>, property: u32, r: &mut Reader) -> Result<(), DecodeError> {
        match r.varint()? {
            0 => Err(invalid(property, 0)),
            v => set(slot, property, v),
        }
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Option<u32>) {
        if let Some(sub) = *value {
            dst.varint(property);
            dst.varint(sub);
        }
    }
    fn check(property: u32, _: &'static str, value: &Option<u32>) -> Result<(), EncodeError> {
        match *value {
            Some(v) if v == 0 || v > super::wire::MAX_VARINT => {
                Err(EncodeError::InvalidPropertyValue {
                    id: property,
                    value: v,
                })
            }
            _ => Ok(()),
        }
    }
}

impl Kind for SubIds {
    type Field = Vec<u32>;
    #[inline]
    fn read(slot: &mut Vec<u32>, property: u32, r: &mut Reader) -> Result<(), DecodeError> {
        let mut one = None;
        SubId::read(&mut one, property, r)?;
        slot.extend(one);
        Ok(())
    }
    fn put<S: Sink>(dst: &mut S, property: u32, value: &Vec<u32>) {
        for &sub in value {
            SubId::put(dst, property, &Some(sub));
        }
    }
    fn check(property: u32, field: &'static str, value: &Vec<u32>) -> Result<(), EncodeError> {
        value
            .iter()
            .try_for_each(|&sub| SubId::check(property, field, &Some(sub)))
    }
}

// --- per packet -------------------------------------------------------------

/// The property codec of a packet family, from one table: `ID => field:
/// Kind`, with the error name of a string or binary value in parentheses.
/// The table's order is the order of writing (and of the checks); any
/// property not in it is refused as not allowed in the packet. `in
/// PacketType::X` generates `decode(r)`; `in packet_type` generates
/// `decode(r, packet_type)` for the acknowledgements, which share one
/// struct; `+ auth` adds the rule that Authentication Data needs an
/// Authentication Method.
macro_rules! property_list {
    ($ty:ident in PacketType::$variant:ident $(+ $then:ident)? { $($table:tt)+ }) => {
        impl $ty {
            property_list!(@decode r, (r: &mut Reader), PacketType::$variant, ($($then)?), $($table)+);
        }
        property_list!(@encode $ty, $($table)+);
    };
    ($ty:ident in packet_type { $($table:tt)+ }) => {
        impl $ty {
            property_list!(@decode r, (r: &mut Reader, packet_type: PacketType), packet_type, (), $($table)+);
        }
        property_list!(@encode $ty, $($table)+);
    };
    (@decode $r:ident, ($($sig:tt)*), $packet_type:expr, ($($then:ident)?),
        $($id:ident => $field:ident: $kind:ident $(($name:literal))?,)+) => {
        pub(crate) fn decode($($sig)*) -> Result<Self, DecodeError> {
            let mut p = Self::default();
            decode_list($r, |property, r| match property {
                $(id::$id => $kind::read(&mut p.$field, property, r),)+
                _ => Err(not_allowed(property, $packet_type)),
            })?;
            $(property_list!(@then $then, p);)?
            Ok(p)
        }
    };
    (@then auth, $p:ident) => {
        if $p.authentication_data.is_some() && $p.authentication_method.is_none() {
            return Err(DecodeError::AuthenticationDataWithoutMethod);
        }
    };
    (@encode $ty:ident, $($id:ident => $field:ident: $kind:ident $(($name:literal))?,)+) => {
        impl PropertyList for $ty {
            fn write_content<S: Sink>(&self, dst: &mut S) {
                $($kind::put(dst, id::$id, &self.$field);)+
            }

            fn check(&self) -> Result<(), EncodeError> {
                $($kind::check(id::$id, property_list!(@name $($name)?), &self.$field)?;)+
                Ok(())
            }
        }
    };
    (@name) => { "" };
    (@name $name:literal) => { $name };
}

// Authentication Data without an Authentication Method is a Protocol Error
// (MQTT 5.0 §3.1.2.11.10, §3.2.2.3.18, §3.15.2.2.3): `+ auth`.
property_list!(ConnectProperties in PacketType::Connect + auth {
    SESSION_EXPIRY_INTERVAL => session_expiry_interval: U32,
    RECEIVE_MAXIMUM => receive_maximum: NonZeroU16,
    MAXIMUM_PACKET_SIZE => maximum_packet_size: NonZeroU32,
    TOPIC_ALIAS_MAXIMUM => topic_alias_maximum: U16,
    REQUEST_RESPONSE_INFORMATION => request_response_information: Bool,
    REQUEST_PROBLEM_INFORMATION => request_problem_information: Bool,
    USER_PROPERTY => user_properties: User,
    AUTHENTICATION_METHOD => authentication_method: Str("authentication method"),
    AUTHENTICATION_DATA => authentication_data: Bin("authentication data"),
});

property_list!(WillProperties in PacketType::Connect {
    WILL_DELAY_INTERVAL => will_delay_interval: U32,
    PAYLOAD_FORMAT_INDICATOR => payload_format_indicator: Bool,
    MESSAGE_EXPIRY_INTERVAL => message_expiry_interval: U32,
    CONTENT_TYPE => content_type: Str("content type"),
    RESPONSE_TOPIC => response_topic: Topic,
    CORRELATION_DATA => correlation_data: Bin("correlation data"),
    USER_PROPERTY => user_properties: User,
});

property_list!(ConnAckProperties in PacketType::ConnAck + auth {
    SESSION_EXPIRY_INTERVAL => session_expiry_interval: U32,
    RECEIVE_MAXIMUM => receive_maximum: NonZeroU16,
    MAXIMUM_QOS => maximum_qos: MaxQoS,
    RETAIN_AVAILABLE => retain_available: Bool,
    MAXIMUM_PACKET_SIZE => maximum_packet_size: NonZeroU32,
    ASSIGNED_CLIENT_IDENTIFIER => assigned_client_identifier: Str("assigned client identifier"),
    TOPIC_ALIAS_MAXIMUM => topic_alias_maximum: U16,
    REASON_STRING => reason_string: Str("reason string"),
    USER_PROPERTY => user_properties: User,
    WILDCARD_SUBSCRIPTION_AVAILABLE => wildcard_subscription_available: Bool,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE => subscription_identifiers_available: Bool,
    SHARED_SUBSCRIPTION_AVAILABLE => shared_subscription_available: Bool,
    SERVER_KEEP_ALIVE => server_keep_alive: U16,
    RESPONSE_INFORMATION => response_information: Str("response information"),
    SERVER_REFERENCE => server_reference: Str("server reference"),
    AUTHENTICATION_METHOD => authentication_method: Str("authentication method"),
    AUTHENTICATION_DATA => authentication_data: Bin("authentication data"),
});

property_list!(PublishProperties in PacketType::Publish {
    PAYLOAD_FORMAT_INDICATOR => payload_format_indicator: Bool,
    MESSAGE_EXPIRY_INTERVAL => message_expiry_interval: U32,
    TOPIC_ALIAS => topic_alias: TopicAlias,
    RESPONSE_TOPIC => response_topic: Topic,
    CORRELATION_DATA => correlation_data: Bin("correlation data"),
    USER_PROPERTY => user_properties: User,
    SUBSCRIPTION_IDENTIFIER => subscription_identifiers: SubIds,
    CONTENT_TYPE => content_type: Str("content type"),
});

property_list!(AckProperties in packet_type {
    REASON_STRING => reason_string: Str("reason string"),
    USER_PROPERTY => user_properties: User,
});

property_list!(SubscribeProperties in PacketType::Subscribe {
    SUBSCRIPTION_IDENTIFIER => subscription_identifier: SubId,
    USER_PROPERTY => user_properties: User,
});

property_list!(UnsubscribeProperties in PacketType::Unsubscribe {
    USER_PROPERTY => user_properties: User,
});

property_list!(DisconnectProperties in PacketType::Disconnect {
    SESSION_EXPIRY_INTERVAL => session_expiry_interval: U32,
    REASON_STRING => reason_string: Str("reason string"),
    USER_PROPERTY => user_properties: User,
    SERVER_REFERENCE => server_reference: Str("server reference"),
});

property_list!(AuthProperties in PacketType::Auth + auth {
    AUTHENTICATION_METHOD => authentication_method: Str("authentication method"),
    AUTHENTICATION_DATA => authentication_data: Bin("authentication data"),
    REASON_STRING => reason_string: Str("reason string"),
    USER_PROPERTY => user_properties: User,
});

impl PublishProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval.is_none()
            && self.topic_alias.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
            && self.subscription_identifiers.is_empty()
            && self.content_type.is_none()
    }
}

impl AckProperties {
    /// True when no property is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

impl DisconnectProperties {
    /// True when no property is set.
    pub(crate) fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

impl AuthProperties {
    /// True when no property is set.
    pub(crate) fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_publish_properties_allocate_nothing_until_one_is_set() {
        let mut props = PublishProps::new();
        props.update(|p| p.topic_alias = None);
        assert!(props.get_mut().is_none(), "clearing an empty set allocated");
        assert!(props.is_empty());
        props.update(|p| p.topic_alias = Some(3));
        assert_eq!(props.get_mut().map(|p| p.topic_alias), Some(Some(3)));
        assert!(!props.is_empty());
    }

    #[test]
    fn publish_properties_compare_by_value_not_by_allocation() {
        let mut emptied = PublishProps::new();
        emptied.make_mut().topic_alias = Some(1);
        emptied.make_mut().topic_alias = None;
        assert!(emptied.get_mut().is_some());
        assert_eq!(emptied, PublishProps::new());
        assert_eq!(
            PublishProps::from(PublishProperties::default()),
            PublishProps::new()
        );
    }

    #[test]
    fn a_cloned_publish_property_set_is_copied_before_it_is_written() {
        let original = PublishProps::from(PublishProperties {
            message_expiry_interval: Some(60),
            ..PublishProperties::default()
        });
        let mut copy = original.clone();
        copy.make_mut().message_expiry_interval = Some(59);
        assert_eq!(original.message_expiry_interval, Some(60));
        assert_eq!(copy.message_expiry_interval, Some(59));
        assert_eq!(copy.take().message_expiry_interval, Some(59));
        assert!(copy.is_empty());
    }
}
