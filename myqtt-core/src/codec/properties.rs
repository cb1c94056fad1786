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

// --- decoding helpers -------------------------------------------------------

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

/// Stores `value` in `slot`, refusing a second occurrence.
fn set<T>(slot: &mut Option<T>, property: u32, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty { id: property });
    }
    *slot = Some(value);
    Ok(())
}

/// A byte that must be 0 or 1.
fn read_bool(r: &mut Reader, property: u32) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(DecodeError::InvalidPropertyValue {
            id: property,
            value: u32::from(v),
        }),
    }
}

/// A two-byte integer that must not be 0.
fn read_nonzero_u16(r: &mut Reader, property: u32) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::InvalidPropertyValue {
            id: property,
            value: 0,
        }),
        v => Ok(v),
    }
}

/// A four-byte integer that must not be 0.
fn read_nonzero_u32(r: &mut Reader, property: u32) -> Result<u32, DecodeError> {
    match r.u32()? {
        0 => Err(DecodeError::InvalidPropertyValue {
            id: property,
            value: 0,
        }),
        v => Ok(v),
    }
}

/// A Subscription Identifier: 1..=268,435,455.
fn read_subscription_id(r: &mut Reader) -> Result<u32, DecodeError> {
    match r.varint()? {
        0 => Err(DecodeError::InvalidPropertyValue {
            id: id::SUBSCRIPTION_IDENTIFIER,
            value: 0,
        }),
        v => Ok(v),
    }
}

/// A Response Topic: a topic name, without wildcards [MQTT-3.3.2-14].
fn read_topic(r: &mut Reader) -> Result<TopicName, DecodeError> {
    TopicName::new(r.string()?).map_err(DecodeError::InvalidTopicName)
}

fn read_user_property(r: &mut Reader, list: &mut UserProperties) -> Result<(), DecodeError> {
    let name = r.string()?;
    let value = r.string()?;
    list.push((name, value));
    Ok(())
}

fn not_allowed(property: u32, packet_type: PacketType) -> DecodeError {
    DecodeError::PropertyNotAllowed {
        id: property,
        packet_type,
    }
}

// --- encoding helpers -------------------------------------------------------

fn put_u8_prop(dst: &mut impl Sink, property: u32, v: Option<u8>) {
    if let Some(v) = v {
        dst.varint(property);
        dst.u8(v);
    }
}

fn put_bool_prop(dst: &mut impl Sink, property: u32, v: Option<bool>) {
    put_u8_prop(dst, property, v.map(u8::from));
}

fn put_u16_prop(dst: &mut impl Sink, property: u32, v: Option<u16>) {
    if let Some(v) = v {
        dst.varint(property);
        dst.u16(v);
    }
}

fn put_u32_prop(dst: &mut impl Sink, property: u32, v: Option<u32>) {
    if let Some(v) = v {
        dst.varint(property);
        dst.u32(v);
    }
}

fn put_bin_prop(dst: &mut impl Sink, property: u32, v: Option<&[u8]>) {
    if let Some(v) = v {
        dst.varint(property);
        dst.binary(v);
    }
}

fn put_str_prop(dst: &mut impl Sink, property: u32, v: Option<&ByteStr>) {
    put_bin_prop(dst, property, v.map(|s| s.as_bytes().as_ref()));
}

fn put_user_properties(dst: &mut impl Sink, list: &UserProperties) {
    for (name, value) in list {
        dst.varint(id::USER_PROPERTY);
        dst.binary(name.as_bytes());
        dst.binary(value.as_bytes());
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

fn check_str(field: &'static str, v: Option<&ByteStr>) -> Result<(), EncodeError> {
    v.map_or(Ok(()), |s| check_len(field, s.as_bytes()))
}

fn check_bin(field: &'static str, v: Option<&Bytes>) -> Result<(), EncodeError> {
    v.map_or(Ok(()), |b| check_len(field, b))
}

fn check_user_properties(list: &UserProperties) -> Result<(), EncodeError> {
    for (name, value) in list {
        check_len("user property name", name.as_bytes())?;
        check_len("user property value", value.as_bytes())?;
    }
    Ok(())
}

fn check_nonzero(property: u32, v: Option<u32>) -> Result<(), EncodeError> {
    match v {
        Some(0) => Err(EncodeError::InvalidPropertyValue {
            id: property,
            value: 0,
        }),
        _ => Ok(()),
    }
}

fn check_subscription_id(v: u32) -> Result<(), EncodeError> {
    if v == 0 || v > super::wire::MAX_VARINT {
        Err(EncodeError::InvalidPropertyValue {
            id: id::SUBSCRIPTION_IDENTIFIER,
            value: v,
        })
    } else {
        Ok(())
    }
}

// --- per packet -------------------------------------------------------------

impl ConnectProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        decode_list(r, |property, r| match property {
            id::SESSION_EXPIRY_INTERVAL => set(&mut p.session_expiry_interval, property, r.u32()?),
            id::RECEIVE_MAXIMUM => set(
                &mut p.receive_maximum,
                property,
                read_nonzero_u16(r, property)?,
            ),
            id::MAXIMUM_PACKET_SIZE => set(
                &mut p.maximum_packet_size,
                property,
                read_nonzero_u32(r, property)?,
            ),
            id::TOPIC_ALIAS_MAXIMUM => set(&mut p.topic_alias_maximum, property, r.u16()?),
            id::REQUEST_RESPONSE_INFORMATION => set(
                &mut p.request_response_information,
                property,
                read_bool(r, property)?,
            ),
            id::REQUEST_PROBLEM_INFORMATION => set(
                &mut p.request_problem_information,
                property,
                read_bool(r, property)?,
            ),
            id::USER_PROPERTY => read_user_property(r, &mut p.user_properties),
            id::AUTHENTICATION_METHOD => set(&mut p.authentication_method, property, r.string()?),
            id::AUTHENTICATION_DATA => set(&mut p.authentication_data, property, r.binary()?),
            _ => Err(not_allowed(property, PacketType::Connect)),
        })?;
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::AuthenticationDataWithoutMethod);
        }
        Ok(p)
    }
}

impl PropertyList for ConnectProperties {
    fn write_content<S: Sink>(&self, dst: &mut S) {
        put_u32_prop(
            dst,
            id::SESSION_EXPIRY_INTERVAL,
            self.session_expiry_interval,
        );
        put_u16_prop(dst, id::RECEIVE_MAXIMUM, self.receive_maximum);
        put_u32_prop(dst, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_u16_prop(dst, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_bool_prop(
            dst,
            id::REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        put_bool_prop(
            dst,
            id::REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        put_user_properties(dst, &self.user_properties);
        put_str_prop(
            dst,
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin_prop(
            dst,
            id::AUTHENTICATION_DATA,
            self.authentication_data.as_deref(),
        );
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_nonzero(id::RECEIVE_MAXIMUM, self.receive_maximum.map(u32::from))?;
        check_nonzero(id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size)?;
        check_user_properties(&self.user_properties)?;
        check_str("authentication method", self.authentication_method.as_ref())?;
        check_bin("authentication data", self.authentication_data.as_ref())
    }
}

impl WillProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        decode_list(r, |property, r| match property {
            id::WILL_DELAY_INTERVAL => set(&mut p.will_delay_interval, property, r.u32()?),
            id::PAYLOAD_FORMAT_INDICATOR => set(
                &mut p.payload_format_indicator,
                property,
                read_bool(r, property)?,
            ),
            id::MESSAGE_EXPIRY_INTERVAL => set(&mut p.message_expiry_interval, property, r.u32()?),
            id::CONTENT_TYPE => set(&mut p.content_type, property, r.string()?),
            id::RESPONSE_TOPIC => set(&mut p.response_topic, property, read_topic(r)?),
            id::CORRELATION_DATA => set(&mut p.correlation_data, property, r.binary()?),
            id::USER_PROPERTY => read_user_property(r, &mut p.user_properties),
            _ => Err(not_allowed(property, PacketType::Connect)),
        })?;
        Ok(p)
    }
}

impl PropertyList for WillProperties {
    fn write_content<S: Sink>(&self, dst: &mut S) {
        put_u32_prop(dst, id::WILL_DELAY_INTERVAL, self.will_delay_interval);
        put_bool_prop(
            dst,
            id::PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_indicator,
        );
        put_u32_prop(
            dst,
            id::MESSAGE_EXPIRY_INTERVAL,
            self.message_expiry_interval,
        );
        put_str_prop(dst, id::CONTENT_TYPE, self.content_type.as_ref());
        put_bin_prop(
            dst,
            id::RESPONSE_TOPIC,
            self.response_topic.as_ref().map(TopicName::as_bytes),
        );
        put_bin_prop(dst, id::CORRELATION_DATA, self.correlation_data.as_deref());
        put_user_properties(dst, &self.user_properties);
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_str("content type", self.content_type.as_ref())?;
        check_bin("correlation data", self.correlation_data.as_ref())?;
        check_user_properties(&self.user_properties)
    }
}

impl ConnAckProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        decode_list(r, |property, r| match property {
            id::SESSION_EXPIRY_INTERVAL => set(&mut p.session_expiry_interval, property, r.u32()?),
            id::RECEIVE_MAXIMUM => set(
                &mut p.receive_maximum,
                property,
                read_nonzero_u16(r, property)?,
            ),
            id::MAXIMUM_QOS => {
                let qos = if read_bool(r, property)? {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                set(&mut p.maximum_qos, property, qos)
            }
            id::RETAIN_AVAILABLE => set(&mut p.retain_available, property, read_bool(r, property)?),
            id::MAXIMUM_PACKET_SIZE => set(
                &mut p.maximum_packet_size,
                property,
                read_nonzero_u32(r, property)?,
            ),
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                set(&mut p.assigned_client_identifier, property, r.string()?)
            }
            id::TOPIC_ALIAS_MAXIMUM => set(&mut p.topic_alias_maximum, property, r.u16()?),
            id::REASON_STRING => set(&mut p.reason_string, property, r.string()?),
            id::USER_PROPERTY => read_user_property(r, &mut p.user_properties),
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => set(
                &mut p.wildcard_subscription_available,
                property,
                read_bool(r, property)?,
            ),
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => set(
                &mut p.subscription_identifiers_available,
                property,
                read_bool(r, property)?,
            ),
            id::SHARED_SUBSCRIPTION_AVAILABLE => set(
                &mut p.shared_subscription_available,
                property,
                read_bool(r, property)?,
            ),
            id::SERVER_KEEP_ALIVE => set(&mut p.server_keep_alive, property, r.u16()?),
            id::RESPONSE_INFORMATION => set(&mut p.response_information, property, r.string()?),
            id::SERVER_REFERENCE => set(&mut p.server_reference, property, r.string()?),
            id::AUTHENTICATION_METHOD => set(&mut p.authentication_method, property, r.string()?),
            id::AUTHENTICATION_DATA => set(&mut p.authentication_data, property, r.binary()?),
            _ => Err(not_allowed(property, PacketType::ConnAck)),
        })?;
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::AuthenticationDataWithoutMethod);
        }
        Ok(p)
    }
}

impl PropertyList for ConnAckProperties {
    fn write_content<S: Sink>(&self, dst: &mut S) {
        put_u32_prop(
            dst,
            id::SESSION_EXPIRY_INTERVAL,
            self.session_expiry_interval,
        );
        put_u16_prop(dst, id::RECEIVE_MAXIMUM, self.receive_maximum);
        put_u8_prop(dst, id::MAXIMUM_QOS, self.maximum_qos.map(QoS::as_u8));
        put_bool_prop(dst, id::RETAIN_AVAILABLE, self.retain_available);
        put_u32_prop(dst, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_str_prop(
            dst,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_ref(),
        );
        put_u16_prop(dst, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_str_prop(dst, id::REASON_STRING, self.reason_string.as_ref());
        put_user_properties(dst, &self.user_properties);
        put_bool_prop(
            dst,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        put_bool_prop(
            dst,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        put_bool_prop(
            dst,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        put_u16_prop(dst, id::SERVER_KEEP_ALIVE, self.server_keep_alive);
        put_str_prop(
            dst,
            id::RESPONSE_INFORMATION,
            self.response_information.as_ref(),
        );
        put_str_prop(dst, id::SERVER_REFERENCE, self.server_reference.as_ref());
        put_str_prop(
            dst,
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin_prop(
            dst,
            id::AUTHENTICATION_DATA,
            self.authentication_data.as_deref(),
        );
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_nonzero(id::RECEIVE_MAXIMUM, self.receive_maximum.map(u32::from))?;
        check_nonzero(id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size)?;
        if self.maximum_qos == Some(QoS::ExactlyOnce) {
            return Err(EncodeError::InvalidPropertyValue {
                id: id::MAXIMUM_QOS,
                value: 2,
            });
        }
        check_str(
            "assigned client identifier",
            self.assigned_client_identifier.as_ref(),
        )?;
        check_str("reason string", self.reason_string.as_ref())?;
        check_user_properties(&self.user_properties)?;
        check_str("response information", self.response_information.as_ref())?;
        check_str("server reference", self.server_reference.as_ref())?;
        check_str("authentication method", self.authentication_method.as_ref())?;
        check_bin("authentication data", self.authentication_data.as_ref())
    }
}

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

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        decode_list(r, |property, r| match property {
            id::PAYLOAD_FORMAT_INDICATOR => set(
                &mut p.payload_format_indicator,
                property,
                read_bool(r, property)?,
            ),
            id::MESSAGE_EXPIRY_INTERVAL => set(&mut p.message_expiry_interval, property, r.u32()?),
            id::TOPIC_ALIAS => match r.u16()? {
                // [MQTT-3.3.2-8]
                0 => Err(DecodeError::TopicAliasZero),
                alias => set(&mut p.topic_alias, property, alias),
            },
            id::RESPONSE_TOPIC => set(&mut p.response_topic, property, read_topic(r)?),
            id::CORRELATION_DATA => set(&mut p.correlation_data, property, r.binary()?),
            id::USER_PROPERTY => read_user_property(r, &mut p.user_properties),
            // The one property besides User Property that may repeat here
            // (MQTT 5.0 §3.3.2.3.8).
            id::SUBSCRIPTION_IDENTIFIER => {
                p.subscription_identifiers.push(read_subscription_id(r)?);
                Ok(())
            }
            id::CONTENT_TYPE => set(&mut p.content_type, property, r.string()?),
            _ => Err(not_allowed(property, PacketType::Publish)),
        })?;
        Ok(p)
    }
}

impl PropertyList for PublishProperties {
    fn write_content<S: Sink>(&self, dst: &mut S) {
        put_bool_prop(
            dst,
            id::PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_indicator,
        );
        put_u32_prop(
            dst,
            id::MESSAGE_EXPIRY_INTERVAL,
            self.message_expiry_interval,
        );
        put_u16_prop(dst, id::TOPIC_ALIAS, self.topic_alias);
        put_bin_prop(
            dst,
            id::RESPONSE_TOPIC,
            self.response_topic.as_ref().map(TopicName::as_bytes),
        );
        put_bin_prop(dst, id::CORRELATION_DATA, self.correlation_data.as_deref());
        put_user_properties(dst, &self.user_properties);
        for &sub in &self.subscription_identifiers {
            dst.varint(id::SUBSCRIPTION_IDENTIFIER);
            dst.varint(sub);
        }
        put_str_prop(dst, id::CONTENT_TYPE, self.content_type.as_ref());
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_nonzero(id::TOPIC_ALIAS, self.topic_alias.map(u32::from))?;
        check_bin("correlation data", self.correlation_data.as_ref())?;
        check_user_properties(&self.user_properties)?;
        for &sub in &self.subscription_identifiers {
            check_subscription_id(sub)?;
        }
        check_str("content type", self.content_type.as_ref())
    }
}

impl AckProperties {
    /// True when no property is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }

    pub(crate) fn decode(r: &mut Reader, packet_type: PacketType) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        decode_list(r, |property, r| match property {
            id::REASON_STRING => set(&mut p.reason_string, property, r.string()?),
            id::USER_PROPERTY => read_user_property(r, &mut p.user_properties),
            _ => Err(not_allowed(property, packet_type)),
        })?;
        Ok(p)
    }
}

impl PropertyList for AckProperties {
    fn write_content<S: Sink>(&self, dst: &mut S) {
        put_str_prop(dst, id::REASON_STRING, self.reason_string.as_ref());
        put_user_properties(dst, &self.user_properties);
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_str("reason string", self.reason_string.as_ref())?;
        check_user_properties(&self.user_properties)
    }
}

impl SubscribeProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        decode_list(r, |property, r| match property {
            id::SUBSCRIPTION_IDENTIFIER => set(
                &mut p.subscription_identifier,
                property,
                read_subscription_id(r)?,
            ),
            id::USER_PROPERTY => read_user_property(r, &mut p.user_properties),
            _ => Err(not_allowed(property, PacketType::Subscribe)),
        })?;
        Ok(p)
    }
}

impl PropertyList for SubscribeProperties {
    fn write_content<S: Sink>(&self, dst: &mut S) {
        if let Some(sub) = self.subscription_identifier {
            dst.varint(id::SUBSCRIPTION_IDENTIFIER);
            dst.varint(sub);
        }
        put_user_properties(dst, &self.user_properties);
    }

    fn check(&self) -> Result<(), EncodeError> {
        if let Some(sub) = self.subscription_identifier {
            check_subscription_id(sub)?;
        }
        check_user_properties(&self.user_properties)
    }
}

impl UnsubscribeProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        decode_list(r, |property, r| match property {
            id::USER_PROPERTY => read_user_property(r, &mut p.user_properties),
            _ => Err(not_allowed(property, PacketType::Unsubscribe)),
        })?;
        Ok(p)
    }
}

impl PropertyList for UnsubscribeProperties {
    fn write_content<S: Sink>(&self, dst: &mut S) {
        put_user_properties(dst, &self.user_properties);
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_user_properties(&self.user_properties)
    }
}

impl DisconnectProperties {
    /// True when no property is set.
    pub(crate) fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        decode_list(r, |property, r| match property {
            id::SESSION_EXPIRY_INTERVAL => set(&mut p.session_expiry_interval, property, r.u32()?),
            id::REASON_STRING => set(&mut p.reason_string, property, r.string()?),
            id::USER_PROPERTY => read_user_property(r, &mut p.user_properties),
            id::SERVER_REFERENCE => set(&mut p.server_reference, property, r.string()?),
            _ => Err(not_allowed(property, PacketType::Disconnect)),
        })?;
        Ok(p)
    }
}

impl PropertyList for DisconnectProperties {
    fn write_content<S: Sink>(&self, dst: &mut S) {
        put_u32_prop(
            dst,
            id::SESSION_EXPIRY_INTERVAL,
            self.session_expiry_interval,
        );
        put_str_prop(dst, id::REASON_STRING, self.reason_string.as_ref());
        put_user_properties(dst, &self.user_properties);
        put_str_prop(dst, id::SERVER_REFERENCE, self.server_reference.as_ref());
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_str("reason string", self.reason_string.as_ref())?;
        check_user_properties(&self.user_properties)?;
        check_str("server reference", self.server_reference.as_ref())
    }
}

impl AuthProperties {
    /// True when no property is set.
    pub(crate) fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        decode_list(r, |property, r| match property {
            id::AUTHENTICATION_METHOD => set(&mut p.authentication_method, property, r.string()?),
            id::AUTHENTICATION_DATA => set(&mut p.authentication_data, property, r.binary()?),
            id::REASON_STRING => set(&mut p.reason_string, property, r.string()?),
            id::USER_PROPERTY => read_user_property(r, &mut p.user_properties),
            _ => Err(not_allowed(property, PacketType::Auth)),
        })?;
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::AuthenticationDataWithoutMethod);
        }
        Ok(p)
    }
}

impl PropertyList for AuthProperties {
    fn write_content<S: Sink>(&self, dst: &mut S) {
        put_str_prop(
            dst,
            id::AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin_prop(
            dst,
            id::AUTHENTICATION_DATA,
            self.authentication_data.as_deref(),
        );
        put_str_prop(dst, id::REASON_STRING, self.reason_string.as_ref());
        put_user_properties(dst, &self.user_properties);
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_str("authentication method", self.authentication_method.as_ref())?;
        check_bin("authentication data", self.authentication_data.as_ref())?;
        check_str("reason string", self.reason_string.as_ref())?;
        check_user_properties(&self.user_properties)
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
